// libFuzzer target: what the chain adapter decodes from a node's answers below the JSON
// (agent/chain abi.hpp, events.hpp): ABI return data (AbiDecoder, Error(string) revert
// reasons), ChannelManager event logs (decode_event) and RLP (rlp_decode).
// Input: byte 0 picks the event topic (one of ChannelManager's events, or none), byte 1
// the number of extra topics; the rest is the data. Checks: no sanitizer finding, and
// whatever rlp_decode accepts re-encodes to the same bytes (it refuses non-canonical RLP).
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "picopay/chain/abi.hpp"
#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"

using namespace picopay;
using namespace picopay::chain;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static const char* const kEvents[] = {sig::kDidUpdateChannel,   sig::kDidStartExitChannel, sig::kDidEmptyChannel,
                                        sig::kDidStartExitThread, sig::kDidChallengeThread,  sig::kDidEmptyThread,
                                        sig::kDidNukeThreads,     sig::kDidHubContractWithdraw};
  const Bytes body(data + 2, data + size);

  // ABI words, as a view's return data.
  AbiDecoder d(body);
  const size_t n = d.words() < 24 ? d.words() + 1 : 24;
  for (size_t i = 0; i < n; ++i) {
    (void)d.u256(i);
    (void)d.u64(i);
    (void)d.address(i);
    (void)d.bytes32(i);
    (void)d.boolean(i);
    if (auto s = d.string(i)) FUZZ_CHECK(s->size() <= body.size());
  }
  const std::string reason = revert_reason(body);
  FUZZ_CHECK(reason.size() <= body.size());

  // An event log.
  Log log;
  const size_t ev = data[0] % 9;
  if (ev < 8) log.topics.push_back(keccak_text(kEvents[ev]));
  size_t extra = data[1] % 4, pos = 0;
  for (size_t t = 0; t < extra; ++t) {
    Hash32 h{};
    for (size_t k = 0; k < 32; ++k) h.bytes[k] = pos < body.size() ? body[pos++] : 0;
    log.topics.push_back(h);
  }
  log.data = body;
  if (auto e = decode_event(log)) {
    if (ev < 8) FUZZ_CHECK(e->kind != EventKind::Unknown);
  }

  // RLP.
  if (auto r = rlp_decode(body)) FUZZ_CHECK(rlp_encode(*r) == body);
  return 0;
}
