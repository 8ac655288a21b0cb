// libFuzzer target: the channel state machine (core/include/picopay/channel.hpp).
//
// Input: one byte choosing a fixed channel scenario (fixtures.hpp) ++ a wire
// ChannelUpdate as a counterparty would send it. The update is applied by both roles:
//  - as it came (its signature is the fuzzer's: accepting it must mean the rebuilt
//    state is exactly what channel_next_state builds);
//  - re-signed by the proposer's real key (and a thread state inside re-signed by its
//    sender's key), so the fuzzer reaches every rule behind the signature check.
// For every accepted update: the result must pass channel_check_transition and the
// bounds, equal what channel_propose builds and signs for the same args, re-encode
// canonically (decode(encode(x)) == x, byte for byte), and the caller's thread set after
// thread_set_apply must hash to the new state's threadRoot and threadCount.
#include <cstring>

#include "fixtures.hpp"
#include "picopay/codec.hpp"

using namespace picopay;
using namespace picopay_fuzz;

namespace {

void check_canonical_update(const ChannelUpdate& u) {
  uint8_t a[kMaxWireMessage], b[kMaxWireMessage];
  size_t na = 0, nb = 0;
  FUZZ_CHECK(encode_channel_update(u, a, sizeof a, &na) == Status::Ok);
  ChannelUpdate back{};
  FUZZ_CHECK(decode_channel_update(a, na, back) == Status::Ok);
  FUZZ_CHECK(encode_channel_update(back, b, sizeof b, &nb) == Status::Ok);
  FUZZ_CHECK(na == nb && std::memcmp(a, b, na) == 0);
}

void check_state_roundtrip(const ChannelState& next, const Signature& sigUser, const Signature& sigHub) {
  SignedChannelState s{};
  s.state = next;
  s.hasSigUser = s.hasSigHub = true;
  s.sigUser = sigUser;
  s.sigHub = sigHub;
  uint8_t a[kMaxWireMessage], b[kMaxWireMessage];
  size_t na = 0, nb = 0;
  FUZZ_CHECK(encode_channel_state(s, a, sizeof a, &na) == Status::Ok);
  SignedChannelState back{};
  FUZZ_CHECK(decode_channel_state(a, na, back) == Status::Ok);
  FUZZ_CHECK(back.state == next);
  FUZZ_CHECK(back.hasSigUser && back.hasSigHub && back.sigUser == sigUser && back.sigHub == sigHub);
  FUZZ_CHECK(encode_channel_state(back, b, sizeof b, &nb) == Status::Ok);
  FUZZ_CHECK(na == nb && std::memcmp(a, b, na) == 0);
}

// After an accepted update: the caller's thread set follows the state.
void check_thread_set(const ChannelScenario& sc, const ChannelUpdate& u, const ChannelState& next) {
  ThreadSetBuf tb(sc.threads);
  FUZZ_CHECK(thread_set_apply(tb.set, u) == Status::Ok);
  FUZZ_CHECK(tb.set.count == next.threadCount);
  std::vector<ThreadState> now(tb.items.begin(), tb.items.begin() + static_cast<long>(tb.set.count));
  FUZZ_CHECK(root_of(now) == next.threadRoot);
}

void apply_as(const ChannelScenario& sc, Party self, const ChannelUpdate& u_in) {
  const ChannelContext ctx{hub_addr()};
  const Signer& sg = signer();
  const Party proposer = self == Party::Hub ? Party::User : Party::Hub;
  const PrivateKey& pkey = proposer == Party::Hub ? hub_key() : user_key();
  const PrivateKey& skey = self == Party::Hub ? hub_key() : user_key();

  ThreadSetBuf tb(sc.threads);
  ChannelState built{};
  const Status nst = channel_next_state(ctx, sc.prev, tb.set, u_in, built);

  // 1. As received.
  {
    ChannelState next{};
    Hash32 h{};
    const Status a = channel_accept(ctx, sg, self, sc.prev, tb.set, u_in, next, h);
    if (a == Status::Ok) {
      FUZZ_CHECK(nst == Status::Ok);
      FUZZ_CHECK(next == built);
      FUZZ_CHECK(h == channel_hash(next));
    }
  }
  if (nst != Status::Ok) return;

  // 2. Re-signed by the proposer's (and the thread sender's) real key.
  ChannelUpdate u = u_in;
  if (u.reason == UpdateReason::OpenThread || u.reason == UpdateReason::CloseThread) {
    if (const PrivateKey* tk = key_for(u.thread.thread.state.sender)) {
      FUZZ_CHECK(sg.sign_eth(*tk, thread_hash(u.thread.thread.state), u.thread.thread.sigA) == Status::Ok);
      u.thread.thread.hasSigA = true;
    }
  }
  ChannelState next_signed{};
  FUZZ_CHECK(channel_next_state(ctx, sc.prev, tb.set, u, next_signed) == Status::Ok);
  FUZZ_CHECK(next_signed == built);
  const Hash32 h_built = channel_hash(built);
  FUZZ_CHECK(sg.sign_eth(pkey, h_built, u.sig) == Status::Ok);

  ChannelState next{};
  Hash32 h{};
  const Status a = channel_accept(ctx, sg, self, sc.prev, tb.set, u, next, h);
  const Status pol = channel_check_proposer(sc.prev, proposer, u);
  const Status tr = channel_check_transition(sc.prev, built, u);
  if (pol == Status::Ok && tr == Status::Ok) {
    // Only a thread signature of an unknown sender may still be refused.
    if (a != Status::Ok) {
      FUZZ_CHECK(u.reason == UpdateReason::OpenThread || u.reason == UpdateReason::CloseThread);
      FUZZ_CHECK(key_for(u.thread.thread.state.sender) == nullptr);
      return;
    }
  } else {
    FUZZ_CHECK(a != Status::Ok);
    return;
  }
  FUZZ_CHECK(next == built);
  FUZZ_CHECK(h == h_built);
  FUZZ_CHECK(channel_check_bounds(next) == Status::Ok);
  FUZZ_CHECK(next.txCountGlobal == sc.prev.txCountGlobal + 1);

  // The proposer's side builds and signs the very same thing.
  {
    ChannelUpdate p = u;
    p.txCountGlobal = 0;
    ChannelState pn{};
    Hash32 ph{};
    FUZZ_CHECK(channel_propose(ctx, sg, pkey, proposer, sc.prev, tb.set, p, pn, &ph) == Status::Ok);
    FUZZ_CHECK(pn == built);
    FUZZ_CHECK(ph == h_built);
    FUZZ_CHECK(p.sig == u.sig);
    FUZZ_CHECK(p.txCountGlobal == u.txCountGlobal);
  }

  // Countersign and store: the double-signed state and the update round-trip.
  Signature counter{};
  FUZZ_CHECK(sg.sign_eth(skey, h, counter) == Status::Ok);
  FUZZ_CHECK(sg.verify_eth(h, counter, self == Party::Hub ? hub_addr() : user_addr()) == Status::Ok);
  const Signature& sigUser = self == Party::User ? counter : u.sig;
  const Signature& sigHub = self == Party::Hub ? counter : u.sig;
  check_state_roundtrip(next, sigUser, sigHub);
  check_canonical_update(u);
  check_thread_set(sc, u, next);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const ChannelScenario sc = channel_scenario(data[0]);
  ChannelUpdate u{};
  if (decode_channel_update(data + 1, size - 1, u) != Status::Ok) return 0;
  check_canonical_update(u);
  apply_as(sc, Party::Hub, u);
  apply_as(sc, Party::User, u);
  return 0;
}
