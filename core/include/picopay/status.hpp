// picopay core: the one error enum every core and port function returns.
//
// Errors are values (DESIGN.md §2): no exceptions, no errno. Every function that can
// fail returns `Status` (or `Result<T>`), marked [[nodiscard]] so a caller cannot drop it.
//
// Every value has an explicit number: Status travels on the wire (the status byte of a
// Nack, docs/wire-format.md), so a number is never reused or renumbered; new values are
// appended. tests/core/status_test.cpp pins every number.
#pragma once

#include <cstdint>

namespace picopay {

enum class Status : uint8_t {
  Ok = 0,

  // --- Buffers and parsing (hex, decimal, wire codec) ---
  BufferTooSmall = 1,   // the caller's output buffer is too small; the needed size is reported
  Truncated = 2,        // input ended before the value did
  TrailingBytes = 3,    // input continues after a complete value
  NonCanonical = 4,     // a value has another (shorter or normalised) encoding; refused
  BadVersion = 5,       // wire version byte is not one this decoder speaks
  BadKind = 6,          // wire message kind unknown or not the one expected
  OutOfBounds = 7,      // a length or count exceeds its documented bound
  BadHex = 8,           // not 0x-prefixed hex of the required length, or a non-hex digit
  BadDecimal = 9,       // not a plain decimal number (digits only, no sign, no leading zero)
  BadChecksum = 10,      // mixed-case address whose EIP-55 checksum is wrong
  Overflow = 11,         // a checked add or multiply would exceed 2^256-1 (or the field's width)
  Underflow = 12,        // a checked subtract would go below zero (a balance underflow)

  // --- Signatures (libsecp256k1, EIP-2, eth_sign) ---
  BadPrivateKey = 13,    // zero or >= the secp256k1 group order
  BadSignature = 14,     // r or s out of range, or the signature does not recover
  HighS = 15,            // s > n/2: refused as EIP-2 demands
  BadRecoveryId = 16,    // v not in {0, 1, 27, 28}
  WrongSigner = 17,      // the signature is valid but recovers to another address
  CryptoUnavailable = 18,// the signing context could not be created (buffer too small)

  // --- Channel and thread rules (DESIGN.md §4, ChannelManager) ---
  BadTxCount = 19,       // txCountGlobal is not previous + 1 (or a thread txCount not increasing)
  TxCountChainDecreased = 20, // txCountChain went down
  NotConserved = 21,     // wei or token totals differ from what the contract would see
  WrongContract = 22,    // contractAddress differs from the channel's
  WrongParty = 23,       // user, hub, sender or receiver differs from the channel's
  BadArgs = 24,          // the update's args are inconsistent or do not explain the change
  BadReason = 25,        // update reason unknown or not allowed for this role/state
  PendingOperation = 26, // the channel has pending deposits/withdrawals that block this update
  ThreadNotFound = 27,   // the thread is not open in this channel
  ThreadExists = 28,     // a thread with that (sender, receiver, threadId) is already open
  TooManyThreads = 29,   // more open threads than kMaxThreads
  Unauthorized = 30,     // this role may not propose this update (e.g. a user paying itself)

  // --- Port (storage, entropy, clock) ---
  IoError = 31,          // the platform's storage or entropy source failed
  NotFound = 32,         // no stored state yet
  Corrupt = 33,          // stored bytes fail their integrity check

  // --- Signing policy (core/include/picopay/policy.hpp, docs/signing-policy.md) ---
  NotRequested = 34,     // the update changes what this party did not ask for (amount, rate, recipient)
  NeedsChain = 35,       // the update asserts an on-chain fact this party cannot check (no chain access / facts)
  NotOnChain = 36,       // the chain facts the caller read contradict what the update asserts
  RateOutOfBounds = 37,  // an exchange rate outside the allowed spread or the user's tolerance
  StaleRate = 38,        // the hub's exchange rate is older than its maximum age (or unknown)
  NoInventory = 39,      // the hub's inventory does not cover what an exchange would give out
  ChannelInDispute = 40, // the chain shows the channel in dispute (or emptied): no off-chain update
  TimeoutOutOfBounds = 41, // a pending operation's timeout is in the past or too far ahead

  // --- Device session (core/include/picopay/session.hpp) ---
  Busy = 42,             // a proposal is already in flight; try again after its reply
  OutOfSync = 43,        // the session has not confirmed the hub's latest state yet: it signs nothing
  StaleState = 44,       // a state older than ours (a replay, or the counterparty lost state): ignored
  StateConflict = 45,    // a state with our txCountGlobal but other contents: ignored
  NotDoubleSigned = 46,  // a newer state without both signatures: ignored
  UnknownState = 47,     // double-signed by us and the hub, yet neither our state nor our proposal: halted
  Duplicate = 48,        // a message already handled (same request id / txCount / thread txCount)
  Halted = 49,           // the session stopped signing after UnknownState or a bad hub countersignature
};

// One past the highest Status number (a wire decoder accepts 1 .. kStatusCount-1 in a Nack).
constexpr uint8_t kStatusCount = 50;

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
