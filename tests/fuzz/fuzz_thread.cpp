// libFuzzer target: the thread state machine (thread_next_state / thread_accept,
// core/include/picopay/channel.hpp).
//
// Input: one byte choosing a fixed thread state (fixtures.hpp) ++ a wire ThreadUpdate as
// a payer would send it to the payee. Applied as it came and re-signed by the sender's
// real key. For every accepted update: the transition check passes, the result equals
// what thread_propose builds and signs, and the signed state re-encodes canonically.
#include <cstring>

#include "fixtures.hpp"
#include "picopay/codec.hpp"

using namespace picopay;
using namespace picopay_fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const ThreadState prev = thread_scenario(data[0]);
  ThreadUpdate u_in{};
  if (decode_thread_update(data + 1, size - 1, u_in) != Status::Ok) return 0;
  const Signer& sg = signer();

  ThreadState built{};
  const Status nst = thread_next_state(prev, u_in, built);
  {
    ThreadState next{};
    if (thread_accept(sg, prev, u_in, next) == Status::Ok) {
      FUZZ_CHECK(nst == Status::Ok);
      FUZZ_CHECK(next == built);
    }
  }
  if (nst != Status::Ok) return 0;
  FUZZ_CHECK(thread_check_transition(prev, built) == Status::Ok);
  FUZZ_CHECK(thread_check_bounds(built) == Status::Ok);

  const PrivateKey* key = key_for(prev.sender);
  FUZZ_CHECK(key != nullptr);
  ThreadUpdate u = u_in;
  FUZZ_CHECK(sg.sign_eth(*key, thread_hash(built), u.sig) == Status::Ok);
  ThreadState next{};
  FUZZ_CHECK(thread_accept(sg, prev, u, next) == Status::Ok);
  FUZZ_CHECK(next == built);

  // A payment of the same amounts, one txCount on, as the sender proposes it.
  if (u.txCount == prev.txCount + 1) {
    ThreadUpdate p{};
    ThreadState pn{};
    FUZZ_CHECK(thread_propose(sg, *key, prev, u.amountWei, u.amountToken, p, pn) == Status::Ok);
    FUZZ_CHECK(pn == built);
    FUZZ_CHECK(p.sig == u.sig);
  }

  // The signed state and the update re-encode canonically.
  SignedThreadState s{};
  s.state = next;
  s.hasSigA = true;
  s.sigA = u.sig;
  uint8_t a[kMaxWireMessage], b[kMaxWireMessage];
  size_t na = 0, nb = 0;
  FUZZ_CHECK(encode_thread_state(s, a, sizeof a, &na) == Status::Ok);
  SignedThreadState back{};
  FUZZ_CHECK(decode_thread_state(a, na, back) == Status::Ok);
  FUZZ_CHECK(back.state == next && back.hasSigA && back.sigA == u.sig);
  FUZZ_CHECK(encode_thread_state(back, b, sizeof b, &nb) == Status::Ok);
  FUZZ_CHECK(na == nb && std::memcmp(a, b, na) == 0);
  FUZZ_CHECK(encode_thread_update(u, a, sizeof a, &na) == Status::Ok);
  ThreadUpdate ub{};
  FUZZ_CHECK(decode_thread_update(a, na, ub) == Status::Ok);
  FUZZ_CHECK(encode_thread_update(ub, b, sizeof b, &nb) == Status::Ok);
  FUZZ_CHECK(na == nb && std::memcmp(a, b, na) == 0);
  return 0;
}
