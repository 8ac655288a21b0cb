// libFuzzer target: the firmware's chain relay messages (core/include/picopay/eth_tx.hpp,
// docs/firmware.md "Opening the channel on chain from the firmware"). The input is what a
// relay, which holds no key and may lie, publishes on picopay/v1/user/<device>/chain/down:
// an offer or a receipt. Whatever decodes must re-encode to exactly the same bytes; an
// offer the device's bounds accept must really be inside them (checked here without the
// core's own bound check), and only then does the device sign; the raw transaction must
// fit kMaxUserAuthorizedUpdateTx and its hash must be the keccak of its bytes.
#include <cstring>

#include "fixtures.hpp"
#include "fuzz_util.hpp"
#include "picopay/eth_tx.hpp"
#include "picopay/keccak.hpp"

using namespace picopay;
using namespace picopay_fuzz;

namespace {

// The device's bounds: chain 1337, at most 100 gwei per gas, at most 0.05 ETH of fee.
EthTxBounds bounds() {
  EthTxBounds b{};
  b.chainId = 1337;
  b.maxGasPriceWei = U256::from_u64(100000000000ULL);
  b.maxFeeWei = U256::from_u64(50000000000000000ULL);
  return b;
}

// The device's latest state: scenario 1 (a user deposit waiting for the chain), signed by
// both parties with the fixtures' keys.
const SignedChannelState& deposit_state() {
  static SignedChannelState s = [] {
    SignedChannelState out{};
    out.state = channel_scenario(1).prev;
    Hash32 h = channel_hash(out.state);
    if (signer().sign_eth(hub_key(), h, out.sigHub) != Status::Ok) std::abort();
    if (signer().sign_eth(user_key(), h, out.sigUser) != Status::Ok) std::abort();
    out.hasSigHub = out.hasSigUser = true;
    return out;
  }();
  return s;
}

void offer(const uint8_t* data, size_t size) {
  RelayOfferMsg m{};
  if (relay_offer_decode(data, size, m) != Status::Ok) return;
  FUZZ_CHECK(size == kRelayOfferSize);
  FUZZ_CHECK(m.facts.known);
  uint8_t back[kRelayOfferSize];
  relay_offer_encode(m, back);
  FUZZ_CHECK(std::memcmp(back, data, size) == 0);

  const EthTxBounds b = bounds();
  const Status within = eth_tx_check_bounds(m.tx, b);
  U256 fee{};
  const bool fee_ok = u256_mul(m.tx.gasPriceWei, U256::from_u64(m.tx.gasLimit), fee) == Status::Ok;
  const bool inside = m.tx.chainId == b.chainId && m.tx.gasLimit != 0 && !(m.tx.gasPriceWei > b.maxGasPriceWei) &&
                      fee_ok && !(fee > b.maxFeeWei);
  FUZZ_CHECK((within == Status::Ok) == inside);

  uint8_t raw[kMaxUserAuthorizedUpdateTx];
  size_t written = 0;
  Hash32 hash{};
  const Status signed_ = sign_user_deposit_tx(signer(), user_key(), deposit_state(), m.tx, b, raw, sizeof raw,
                                              &written, &hash);
  FUZZ_CHECK((signed_ == Status::Ok) == inside);
  if (signed_ != Status::Ok) {
    FUZZ_CHECK(written == 0);
    return;
  }
  FUZZ_CHECK(written > kUserAuthorizedUpdateCalldataSize && written <= kMaxUserAuthorizedUpdateTx);
  Hash32 again{};
  keccak256(raw, written, again.bytes);
  FUZZ_CHECK(std::memcmp(again.bytes, hash.bytes, 32) == 0);
}

void receipt(const uint8_t* data, size_t size) {
  RelayReceiptMsg m{};
  if (relay_receipt_decode(data, size, m) != Status::Ok) return;
  FUZZ_CHECK(size == kRelayReceiptSize);
  FUZZ_CHECK(m.status <= 2);
  uint8_t back[kRelayReceiptSize];
  relay_receipt_encode(m, back);
  FUZZ_CHECK(std::memcmp(back, data, size) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  offer(data, size);
  receipt(data, size);
  return 0;
}
