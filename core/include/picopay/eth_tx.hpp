// picopay core: the one Ethereum transaction a device signs with its own key, so that
// its key never leaves it: ChannelManager.userAuthorizedUpdate carrying the
// hub-countersigned ProposePendingDeposit (the user's deposit), as a legacy EIP-155
// transaction. Allocation-free Solidity ABI and RLP encoding of exactly that call
// (the Linux chain adapter, agent/chain, has the general, allocating encoders).
//
// Who sends it: a relay that holds no key (a gateway, the hub) reads nonce, gas price and
// chain id from the chain and offers them (EthTxParams); the device builds the call
// itself from its own countersigned state, checks the offer against its own bounds
// (EthTxBounds) and signs. A lying relay can at worst make the device sign a transaction
// that wastes at most maxFeeWei of gas (a second deposit transaction of the same state
// reverts on chain: the contract wants txCountChain > its own). docs/firmware.md
// "Opening the channel on chain from the firmware".
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/policy.hpp"
#include "picopay/signer.hpp"
#include "picopay/state.hpp"
#include "picopay/status.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay {

// What the relay offers (read from the chain): chain id (eth_chainId), the device
// address's next nonce (eth_getTransactionCount pending), gas price in wei per gas, gas
// limit (gas units).
struct EthTxParams {
  uint64_t chainId;
  uint64_t nonce;
  U256 gasPriceWei;
  uint64_t gasLimit;
};

// The device's own limits (its configuration).
struct EthTxBounds {
  uint64_t chainId;     // the chain the device's ChannelManager lives on; must equal the offer's
  U256 maxGasPriceWei;  // wei per gas
  U256 maxFeeWei;       // gasPriceWei * gasLimit, wei
};

// The function signature and its selector (first 4 bytes of its keccak256), pinned by
// tests/core/eth_tx_test.cpp against the keccak of the text.
constexpr const char* kUserAuthorizedUpdateSignature =
    "userAuthorizedUpdate(address,uint256[2],uint256[2],uint256[4],uint256[4],uint256[2],bytes32,uint256,uint256,"
    "string)";
constexpr uint8_t kUserAuthorizedUpdateSelector[4] = {0xea, 0x68, 0x2e, 0x37};

// The calldata: selector, 19 head words (recipient, the 14 uint256 of the balance,
// pending and txCount arrays, threadRoot, threadCount, timeout, the string's offset),
// the string (sigHub as "0x" + 130 hex, as Connext's contract recovers it): 804 bytes.
constexpr size_t kUserAuthorizedUpdateCalldataSize = 4 + 19 * 32 + 32 + 160;
// The signed raw transaction's upper bound: list header (3) + nonce (9) + gasPrice (33)
// + gasLimit (9) + to (21) + value (33) + data (3 + 804) + v (9) + r (33) + s (33).
constexpr size_t kMaxUserAuthorizedUpdateTx = 3 + 9 + 33 + 9 + 21 + 33 + 3 + kUserAuthorizedUpdateCalldataSize + 9 + 33 + 33;

// Writes the calldata of userAuthorizedUpdate(s, sigHub) into out[0..804).
// Errors: BufferTooSmall (cap < 804; *written gets 804).
[[nodiscard]] Status encode_user_authorized_update_call(const ChannelState& s, const Signature& sigHub, uint8_t* out,
                                                        size_t cap, size_t* written) noexcept;

// Checks an offer against the device's bounds. Errors: WrongContract (another chain id:
// the device's contract is on bounds.chainId), OutOfBounds (gas price above
// maxGasPriceWei, gasPriceWei * gasLimit above maxFeeWei or overflowing, gasLimit 0).
[[nodiscard]] Status eth_tx_check_bounds(const EthTxParams& p, const EthTxBounds& b) noexcept;

// Signs the deposit transaction of `s` (the latest double-signed state, which must be a
// user deposit waiting for the chain: pendingDepositWeiUser > 0, both signatures; only
// the hub's is sent): to = s.contractAddress, value = s.pendingDepositWeiUser, data =
// the calldata above, nonce / gasPrice / gasLimit / chainId from `p` once
// eth_tx_check_bounds passes. Writes the raw transaction (for eth_sendRawTransaction:
// rlp([nonce, gasPrice, gasLimit, to, value, data, v, r, s]), v = chainId * 2 + 35 +
// recovery id, EIP-155) into out and its hash (keccak256 of the raw bytes) into
// *txHash (optional).
// Errors: BadArgs (no user deposit pending, or not double-signed), the bounds' errors,
// BufferTooSmall (cap < kMaxUserAuthorizedUpdateTx: nothing signed), the signer's
// errors (BadPrivateKey, CryptoUnavailable).
[[nodiscard]] Status sign_user_deposit_tx(const Signer& signer, const PrivateKey& key, const SignedChannelState& s,
                                          const EthTxParams& p, const EthTxBounds& b, uint8_t* out, size_t cap,
                                          size_t* written, Hash32* txHash) noexcept;

// ---- the relay's messages (docs/firmware.md "Opening the channel on chain") ----
// Device -> relay on picopay/v1/user/<device>/chain/up: kRelayAsk (1 byte: "read the
// chain for me") or kRelayTx followed by a raw transaction (sign_user_deposit_tx).
// Relay -> device on picopay/v1/user/<device>/chain/down: an offer (kRelayOfferSize
// bytes) or a receipt (kRelayReceiptSize bytes). Integers big-endian.
constexpr uint8_t kRelayAsk = 0x01;
constexpr uint8_t kRelayTx = 0x02;
constexpr uint8_t kRelayOffer = 0x01;
constexpr uint8_t kRelayReceipt = 0x02;

// An offer: the transaction parameters and the device channel's chain facts, read at
// one block: kind | chainId u64 | nonce u64 | gasPrice u256 | gasLimit u64 |
// txCountGlobal u64 | txCountChain u64 | status u8 (0 open, 1 in dispute) | blockTime u64.
struct RelayOfferMsg {
  EthTxParams tx;
  ChainFacts facts;  // facts.known is true once decoded
};
constexpr size_t kRelayOfferSize = 1 + 8 + 8 + 32 + 8 + 8 + 8 + 1 + 8;
// A receipt of a relayed transaction: kind | txHash 32 | status u8 (1 executed, 0
// reverted, 2 the node refused it) | gasUsed u64 | blockNumber u64.
struct RelayReceiptMsg {
  Hash32 txHash;
  uint8_t status;
  uint64_t gasUsed;
  uint64_t blockNumber;
};
constexpr size_t kRelayReceiptSize = 1 + 32 + 1 + 8 + 8;

// Encoders write exactly k*Size bytes into out.
void relay_offer_encode(const RelayOfferMsg& m, uint8_t out[kRelayOfferSize]) noexcept;
void relay_receipt_encode(const RelayReceiptMsg& m, uint8_t out[kRelayReceiptSize]) noexcept;
// Decoders. Errors: BadKind (first byte), Truncated / TrailingBytes (length), OutOfBounds
// (an offer's status byte above 1, a receipt's above 2).
[[nodiscard]] Status relay_offer_decode(const uint8_t* in, size_t len, RelayOfferMsg& out) noexcept;
[[nodiscard]] Status relay_receipt_decode(const uint8_t* in, size_t len, RelayReceiptMsg& out) noexcept;

}  // namespace picopay
