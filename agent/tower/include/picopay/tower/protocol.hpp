// picopay-tower over MQTT (docs/tower.md): topics, the check of a handed-over channel
// state, and the tower's signed acknowledgement.
//
// A device hands the tower its latest double-signed channel state: the core wire
// encoding of a SignedChannelState (docs/wire-format.md, kind 0x01) published on
// picopay/v1/tower/{tower}/user/{user}/state. The two signatures inside authenticate it:
// the tower keeps a state only if the user's signature recovers to `user`, the hub's to
// the contract's hub, it names the tower's contract, has timeout 0 (the only states an
// exit accepts) and a higher txCountGlobal than the one held. The topic proves nothing
// (the broker is untrusted); the topic's user must equal the state's user only so that
// a device's ACL-bound topic cannot carry another channel's state.
//
// The tower answers on picopay/v1/tower/{tower}/user/{user}/ack with an Ack signed by
// its own key (eth_sign over ack_digest): what it holds now for that channel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "picopay/signer.hpp"
#include "picopay/state.hpp"
#include "picopay/status.hpp"
#include "picopay/types.hpp"

namespace picopay::tower {

// device -> tower: SignedChannelState wire.  picopay/v1/tower/{tower}/user/{user}/state
std::string topic_state(const Address& tower, const Address& user);
// tower -> device: Ack wire.                 picopay/v1/tower/{tower}/user/{user}/ack
std::string topic_ack(const Address& tower, const Address& user);
// The tower's subscription:                  picopay/v1/tower/{tower}/user/+/state
std::string topic_state_filter(const Address& tower);
// device -> tower: ThreadHandover wire.    picopay/v1/tower/{tower}/user/{user}/thread
std::string topic_thread(const Address& tower, const Address& user);
// tower -> device: Ack wire (thread digest). picopay/v1/tower/{tower}/user/{user}/thread-ack
std::string topic_thread_ack(const Address& tower, const Address& user);
// The tower's subscription:                  picopay/v1/tower/{tower}/user/+/thread
std::string topic_thread_filter(const Address& tower);
// Parses picopay/v1/tower/{tower}/user/{user}/state (lowercase 0x addresses only).
// Returns false for any other shape.
bool parse_state_topic(const std::string& topic, Address& tower, Address& user);
// Parses picopay/v1/tower/{tower}/user/{user}/thread likewise.
bool parse_thread_topic(const std::string& topic, Address& tower, Address& user);

// Checks a handed-over state for the channel of `user` on `contract` whose hub is `hub`.
// Returns Ok if the tower may keep it. Errors: WrongContract (another contract),
// WrongParty (state.user is not `user`), BadArgs (a signature missing, or timeout != 0:
// the contract refuses time-sensitive states in an exit), and the signer's errors for a
// signature that does not verify: WrongSigner (recovers to someone else), BadSignature,
// HighS, BadRecoveryId. `signer` must be initialised.
[[nodiscard]] Status check_handover(const SignedChannelState& s, const Address& contract, const Address& hub,
                                    const Address& user, const Signer& signer) noexcept;

// A thread handover: the newest sender-signed thread state of a thread whose receiver
// is the device, with the receiver's own signature, so that only the device can make the
// tower keep (and later spend gas on) thread states for it. Wire:
//   ThreadState wire (docs/wire-format.md, kind 0x02, with sigA) | receiver sig 65 (r||s||v)
// The receiver signs (eth_sign) thread_handover_digest(contract, thread_hash(state)).
struct ThreadHandover {
  SignedThreadState thread{};
  Signature sigReceiver{};
};
// keccak256("picopay-tower-thr-v1" (20 bytes) || contract (20) || threadHash (32)).
Hash32 thread_handover_digest(const Address& contract, const Hash32& threadHash) noexcept;
// Errors: the thread state codec's, BadRecoveryId (sigReceiver v not 27/28).
[[nodiscard]] Status encode_thread_handover(const ThreadHandover& h, std::vector<uint8_t>& out);
// Errors: Truncated (under 65 bytes), the thread state codec's, BadRecoveryId, HighS.
[[nodiscard]] Status decode_thread_handover(const uint8_t* in, size_t len, ThreadHandover& out);
// Checks a thread handover for receiver `user` on `contract`. Errors: WrongContract,
// WrongParty (receiver is not `user`, or sender == receiver), BadArgs (no sigA), and the
// signer's errors if sigA does not verify for the sender or sigReceiver for `user`.
[[nodiscard]] Status check_thread_handover(const ThreadHandover& h, const Address& contract, const Address& user,
                                           const Signer& signer) noexcept;
// True if the contract's challengeThread would take `cand` over `cur` (the same thread):
// a higher txCount or more for the receiver (wei or tokens), and neither receiver balance
// lower. The tower keeps and answers with thread states by this rule.
bool thread_state_better(const ThreadState& cand, const ThreadState& cur) noexcept;

// A thread release: the receiver tells the tower that it no longer needs one of its
// threads guarded, so the tower deletes the thread's row (and the slot counts no longer
// against the receiver's limit). Only the receiver can release (its signature), only the
// named thread (sender, threadId), and only its own protection: a receiver releases a
// thread once the thread is closed in a channel state the tower acked (then the thread
// state can no longer matter in a dispute: docs/tower.md "Releasing a closed thread").
// Wire (kThreadReleaseWireSize = 95 bytes), published on .../thread like a handover:
//   0x01 | 0x21 | sender 20 | threadId u64 big-endian | sigReceiver 65 (r || s || v)
struct ThreadRelease {
  Address sender{};
  uint64_t threadId = 0;
  Signature sigReceiver{};
};
constexpr uint8_t kThreadReleaseKind = 0x21;
constexpr size_t kThreadReleaseWireSize = 2 + 20 + 8 + 65;
// keccak256("picopay-tower-rel-v1" (20 bytes) || contract (20) || receiver (20) ||
// sender (20) || threadId (32, big-endian)): what the receiver signs (eth_sign).
Hash32 thread_release_digest(const Address& contract, const Address& receiver, const Address& sender,
                             uint64_t threadId) noexcept;
// True if a payload on .../thread is a release (its kind byte), false for a handover.
bool is_thread_release(const uint8_t* in, size_t len) noexcept;
// Builds the release of thread (sender, threadId) on `contract` by its receiver.
// Errors: the signer's (BadPrivateKey).
[[nodiscard]] Status make_thread_release(const Address& contract, const Address& sender, uint64_t threadId,
                                         const PrivateKey& receiver_key, const Signer& signer,
                                         ThreadRelease& out) noexcept;
// Errors: BadRecoveryId (sigReceiver v not 27/28).
[[nodiscard]] Status encode_thread_release(const ThreadRelease& r, std::vector<uint8_t>& out);
// Errors: Truncated, TrailingBytes, BadVersion, BadKind, BadRecoveryId, HighS.
[[nodiscard]] Status decode_thread_release(const uint8_t* in, size_t len, ThreadRelease& out);
// Checks a release by receiver `user` on `contract`. Errors: WrongParty (sender is
// `user`), and the signer's errors if sigReceiver does not recover to `user`
// (WrongSigner, BadSignature, HighS, BadRecoveryId).
[[nodiscard]] Status check_thread_release(const ThreadRelease& r, const Address& contract, const Address& user,
                                          const Signer& signer) noexcept;

// What the tower did with a handover.
enum class AckResult : uint8_t {
  Stored = 0,    // the handed state is now the one held
  Held = 1,      // refused as not newer: the tower holds this or a newer state
  Refused = 2,   // refused (reason says why); the held state (if any) is unchanged
  Released = 3,  // a thread release was done: the tower holds nothing for the thread
                 // (txCountGlobal 0, stateHash zero, as the signature says)
};
const char* ack_result_name(AckResult r) noexcept;

// The tower's answer. Wire (kAckWireSize = 109 bytes):
//   0x01 | 0x20 | result u8 | reason u8 (picopay::Status, Ok unless Refused) |
//   txCountGlobal u64 big-endian | stateHash 32 | sig 65 (r || s || v, v 27/28)
// txCountGlobal / stateHash: the channel state the tower holds after this handover
// (0 and 32 zero bytes if none). sig: the tower's eth_sign over ack_digest().
struct Ack {
  AckResult result = AckResult::Stored;
  Status reason = Status::Ok;
  uint64_t txCountGlobal = 0;
  Hash32 stateHash{};
  Signature sig{};
};
constexpr size_t kAckWireSize = 2 + 2 + 8 + 32 + 65;
constexpr uint8_t kAckKind = 0x20;

// keccak256("picopay-tower-ack-v1" (20 bytes) || contract (20) || user (20) ||
// txCountGlobal (32, big-endian) || stateHash (32)): what the tower signs (eth_sign). The
// fixed prefix keeps it apart from channel/thread state hashes and transactions.
Hash32 ack_digest(const Address& contract, const Address& user, uint64_t txCountGlobal,
                  const Hash32& stateHash) noexcept;

// The same for thread acks (on .../thread-ack): txCountGlobal carries the thread's
// txCount, stateHash the thread_hash held; domain "picopay-tower-tha-v1" and the threadId
// (32, big-endian) after the user, so a thread ack never reads as a channel ack.
Hash32 thread_ack_digest(const Address& contract, const Address& user, uint64_t threadId, uint64_t txCount,
                         const Hash32& threadHash) noexcept;

// ---- device side ----
// Checks that `a` (from .../ack) is signed by `tower` for `user`'s channel on `contract`:
// Ok, or the signer's error (WrongSigner: not the tower, or about another channel or
// state). The device then compares a.txCountGlobal / a.stateHash with what it handed.
[[nodiscard]] Status verify_ack(const Ack& a, const Address& contract, const Address& tower, const Address& user,
                                const Signer& signer) noexcept;
// The same for a thread ack (.../thread-ack) about thread `threadId` of receiver `user`.
[[nodiscard]] Status verify_thread_ack(const Ack& a, const Address& contract, const Address& tower,
                                       const Address& user, uint64_t threadId, const Signer& signer) noexcept;
// Builds the handover of a sender-signed thread state by its receiver (receiver_key).
// Errors: BadArgs (no sigA), the signer's (BadPrivateKey).
[[nodiscard]] Status make_thread_handover(const SignedThreadState& t, const PrivateKey& receiver_key,
                                          const Signer& signer, ThreadHandover& out) noexcept;

// Errors: BadArgs (unknown result or reason, or a Released ack naming a state),
// BadRecoveryId (sig v not 27/28).
[[nodiscard]] Status encode_ack(const Ack& a, std::vector<uint8_t>& out);
// Errors: Truncated, TrailingBytes, BadVersion, BadKind, BadArgs (unknown result or
// reason, or Ok reason with Refused / a reason with Stored, Held or Released, or a
// Released ack naming a state), OutOfBounds
// (txCountGlobal > kMaxCounter), BadRecoveryId, HighS.
[[nodiscard]] Status decode_ack(const uint8_t* in, size_t len, Ack& out);

}  // namespace picopay::tower
