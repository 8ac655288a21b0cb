// picopay core: the one error enum every core and port function returns.
//
// Errors are values (DESIGN.md §2): no exceptions, no errno. Every function that can
// fail returns `Status` (or `Result<T>`), marked [[nodiscard]] so a caller cannot drop it.
#pragma once

#include <cstdint>

namespace picopay {

enum class Status : uint8_t {
  Ok = 0,

  // --- Buffers and parsing (hex, decimal, wire codec) ---
  BufferTooSmall,   // the caller's output buffer is too small; the needed size is reported
  Truncated,        // input ended before the value did
  TrailingBytes,    // input continues after a complete value
  NonCanonical,     // a value has another (shorter or normalised) encoding; refused
  BadVersion,       // wire version byte is not one this decoder speaks
  BadKind,          // wire message kind unknown or not the one expected
  OutOfBounds,      // a length or count exceeds its documented bound
  BadHex,           // not 0x-prefixed hex of the required length, or a non-hex digit
  BadDecimal,       // not a plain decimal number (digits only, no sign, no leading zero)
  BadChecksum,      // mixed-case address whose EIP-55 checksum is wrong
  Overflow,         // a checked add or multiply would exceed 2^256-1 (or the field's width)
  Underflow,        // a checked subtract would go below zero (a balance underflow)

  // --- Signatures (libsecp256k1, EIP-2, eth_sign) ---
  BadPrivateKey,    // zero or >= the secp256k1 group order
  BadSignature,     // r or s out of range, or the signature does not recover
  HighS,            // s > n/2: refused as EIP-2 demands
  BadRecoveryId,    // v not in {0, 1, 27, 28}
  WrongSigner,      // the signature is valid but recovers to another address
  CryptoUnavailable,// the signing context could not be created (buffer too small)

  // --- Channel and thread rules (DESIGN.md §4, ChannelManager) ---
  BadTxCount,       // txCountGlobal is not previous + 1 (or a thread txCount not increasing)
  TxCountChainDecreased, // txCountChain went down
  NotConserved,     // wei or token totals differ from what the contract would see
  WrongContract,    // contractAddress differs from the channel's
  WrongParty,       // user, hub, sender or receiver differs from the channel's
  BadArgs,          // the update's args are inconsistent or do not explain the change
  BadReason,        // update reason unknown or not allowed for this role/state
  PendingOperation, // the channel has pending deposits/withdrawals that block this update
  ThreadNotFound,   // the thread is not open in this channel
  ThreadExists,     // a thread with that (sender, receiver, threadId) is already open
  TooManyThreads,   // more open threads than kMaxThreads
  Unauthorized,     // this role may not propose this update (e.g. a user paying itself)

  // --- Port (storage, entropy, clock) ---
  IoError,          // the platform's storage or entropy source failed
  NotFound,         // no stored state yet
  Corrupt,          // stored bytes fail their integrity check
};

// A short, stable, human readable name ("Truncated", "HighS", ...) for logs and CLI
// errors. Never returns null.
const char* status_name(Status s) noexcept;

// A one-line English description of the error, for CLI messages. Never returns null.
const char* status_message(Status s) noexcept;

// A value or an error. `T` must be trivially copyable (the core has no heap).
template <typename T>
struct [[nodiscard]] Result {
  Status status;
  T value;
  constexpr bool ok() const noexcept { return status == Status::Ok; }
};

}  // namespace picopay
