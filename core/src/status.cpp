#include "picopay/status.hpp"

#include <cstddef>

namespace picopay {

namespace {
struct Entry {
  const char* name;
  const char* message;
};
// Indexed by the enum value; keep in the order of status.hpp.
constexpr Entry kEntries[] = {
    {"Ok", "ok"},
    {"BufferTooSmall", "output buffer too small"},
    {"Truncated", "input ends before the value does"},
    {"TrailingBytes", "unexpected bytes after the value"},
    {"NonCanonical", "value is not in its one canonical encoding"},
    {"BadVersion", "unsupported wire format version"},
    {"BadKind", "unexpected or unknown message kind"},
    {"OutOfBounds", "a length, count or counter exceeds its bound"},
    {"BadHex", "malformed 0x-hex value"},
    {"BadDecimal", "malformed decimal amount (digits only, no sign, no leading zero)"},
    {"BadChecksum", "mixed-case address with a wrong EIP-55 checksum"},
    {"Overflow", "amount overflows uint256"},
    {"Underflow", "balance would go below zero"},
    {"BadPrivateKey", "private key is zero or not below the secp256k1 order"},
    {"BadSignature", "malformed or unrecoverable signature"},
    {"HighS", "signature s is above n/2 (EIP-2)"},
    {"BadRecoveryId", "signature v must be 0, 1, 27 or 28"},
    {"WrongSigner", "signature is not by the expected address"},
    {"CryptoUnavailable", "secp256k1 context unavailable"},
    {"BadTxCount", "txCount is not the next one"},
    {"TxCountChainDecreased", "txCountChain must never decrease"},
    {"NotConserved", "wei or token totals are not conserved"},
    {"WrongContract", "contract address differs from the channel's"},
    {"WrongParty", "party address differs from the channel's"},
    {"BadArgs", "update arguments are inconsistent"},
    {"BadReason", "update reason unknown or not allowed here"},
    {"PendingOperation", "channel has pending deposits or withdrawals"},
    {"ThreadNotFound", "thread is not open in this channel"},
    {"ThreadExists", "thread is already open"},
    {"TooManyThreads", "too many open threads"},
    {"Unauthorized", "this party may not propose this update"},
    {"IoError", "storage or entropy I/O failed"},
    {"NotFound", "no stored state"},
    {"Corrupt", "stored state fails its integrity check"},
    {"NotRequested", "the update changes what this party did not ask for"},
    {"NeedsChain", "the update asserts an on-chain fact this party cannot check"},
    {"NotOnChain", "the chain does not show the fact the update asserts"},
    {"RateOutOfBounds", "exchange rate outside the allowed spread or tolerance"},
    {"StaleRate", "exchange rate unknown or older than its maximum age"},
    {"NoInventory", "the hub's inventory does not cover the exchange"},
    {"ChannelInDispute", "the channel is in dispute or emptied on chain"},
    {"TimeoutOutOfBounds", "pending operation timeout in the past or too far ahead"},
    {"Busy", "a proposal is already in flight"},
    {"OutOfSync", "not synchronised with the hub's latest state yet"},
    {"StaleState", "state older than ours ignored"},
    {"StateConflict", "state with our txCountGlobal but other contents ignored"},
    {"NotDoubleSigned", "newer state without both signatures ignored"},
    {"UnknownState", "double-signed state we neither hold nor proposed"},
    {"Duplicate", "message already handled"},
    {"Halted", "session halted: it signs nothing until a person looks"},
};
constexpr size_t kCount = sizeof kEntries / sizeof kEntries[0];
static_assert(kCount == kStatusCount && kCount == static_cast<size_t>(Status::Halted) + 1, "status table out of sync with the enum");
}  // namespace

const char* status_name(Status s) noexcept {
  const auto i = static_cast<size_t>(s);
  return i < kCount ? kEntries[i].name : "Unknown";
}

const char* status_message(Status s) noexcept {
  const auto i = static_cast<size_t>(s);
  return i < kCount ? kEntries[i].message : "unknown error";
}

}  // namespace picopay
