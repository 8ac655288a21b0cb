// picopay core: the compact binary wire codec (docs/wire-format.md).
//
// Every message is: version (1 byte, kWireVersion) | kind (1 byte) | body. Encodings are
// canonical: each value has exactly one encoding, and the decoder refuses anything else
// (non-minimal integers, unknown flag bits, truncated input, trailing bytes, values over
// their stated bounds), so byte equality is value equality and a signature over a state
// never has two wire forms.
//
// Buffers are caller-owned. Encoders write into out[0..cap) and set `*written`; if cap
// is too small they return BufferTooSmall and set `*written` to the size needed
// (nothing useful is left in `out`). Decoders read exactly in[0..len).
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/channel.hpp"
#include "picopay/state.hpp"
#include "picopay/status.hpp"

namespace picopay {

constexpr uint8_t kWireVersion = 1;

enum class WireKind : uint8_t {
  ChannelState = 1,   // SignedChannelState (sync, storage)
  ThreadState = 2,    // SignedThreadState
  ChannelUpdate = 3,  // ChannelUpdate (update request)
  ThreadUpdate = 4,   // ThreadUpdate (thread payment request)
  HubRequest = 5,     // HubRequest (the hub asks the user to propose an update)
  ThreadPayment = 6,  // SignedThreadState, sigA required (thread payment: the sender's latest state)
  ReplyAck = 0x10,    // Reply kinds (docs/mqtt-protocol.md): Ack
  ReplyNack = 0x11,   //   Nack
  ReplySync = 0x12,   //   Sync
  ReplyRequestNack = 0x13,  // the user refuses a HubRequest
};

// Upper bounds on encoded sizes, for sizing buffers.
constexpr size_t kMaxChannelStateWire = 2 + 1 + 60 + 12 * 33 + 4 * 8 + 32 + 2 * 65;  // 653
constexpr size_t kMaxThreadStateWire = 2 + 1 + 60 + 8 + 4 * 33 + 8 + 65;             // 276
constexpr size_t kMaxChannelUpdateWire = 2 + 1 + 8 + 20 + 4 * 33 + 8 + 8 + kMaxThreadStateWire + 65;
constexpr size_t kMaxThreadUpdateWire = 2 + 20 + 8 + 8 + 2 * 33 + 65;
// HubRequest: envelope, contract, user, requestId, reason, the args of any reason, sig.
constexpr size_t kMaxHubRequestWire = 2 + 20 + 20 + 8 + 1 + (kMaxChannelUpdateWire - 2 - 1 - 8 - 65) + 65;
// Reply: envelope, varint, status, a full channel state.
constexpr size_t kMaxReplyWire = 2 + 8 + 1 + kMaxChannelStateWire;
constexpr size_t kMaxOf(size_t a, size_t b) noexcept { return a > b ? a : b; }
// Room for any one message of any kind.
constexpr size_t kMaxWireMessage =
    kMaxOf(kMaxOf(kMaxOf(kMaxChannelStateWire, kMaxThreadStateWire), kMaxOf(kMaxChannelUpdateWire, kMaxThreadUpdateWire)),
           kMaxOf(kMaxHubRequestWire, kMaxReplyWire));


// Reads the kind of a message (checks version and kind byte only; every WireKind above
// is known).
// Errors: Truncated, BadVersion, BadKind.
[[nodiscard]] Status wire_peek_kind(const uint8_t* in, size_t len, WireKind& kind) noexcept;

// Full channel state with its signatures. Errors (encode): BufferTooSmall, OutOfBounds
// (a counter > kMaxCounter), BadRecoveryId (a present signature's v not 27/28).
[[nodiscard]] Status encode_channel_state(const SignedChannelState& s, uint8_t* out, size_t cap,
                                          size_t* written) noexcept;
// Errors (decode): Truncated, TrailingBytes, BadVersion, BadKind, NonCanonical,
// OutOfBounds, BadRecoveryId, HighS.
[[nodiscard]] Status decode_channel_state(const uint8_t* in, size_t len, SignedChannelState& out) noexcept;

// Full thread state with the sender's signature. Errors as the channel state codec.
[[nodiscard]] Status encode_thread_state(const SignedThreadState& s, uint8_t* out, size_t cap,
                                         size_t* written) noexcept;
[[nodiscard]] Status decode_thread_state(const uint8_t* in, size_t len, SignedThreadState& out) noexcept;

// Channel update request. Errors as above, plus BadReason (unknown reason) and BadArgs
// (a Party code other than 0/1).
[[nodiscard]] Status encode_channel_update(const ChannelUpdate& u, uint8_t* out, size_t cap,
                                           size_t* written) noexcept;
[[nodiscard]] Status decode_channel_update(const uint8_t* in, size_t len, ChannelUpdate& out) noexcept;

// A thread payment (kind 0x06): the sender's latest, cumulative thread state with its
// sigA, the same body as a ThreadState message. Errors as encode/decode_thread_state,
// plus BadArgs (no sigA: encode refuses it, decode refuses the flag byte without it).
[[nodiscard]] Status encode_thread_payment(const SignedThreadState& s, uint8_t* out, size_t cap,
                                           size_t* written) noexcept;
[[nodiscard]] Status decode_thread_payment(const uint8_t* in, size_t len, SignedThreadState& out) noexcept;

// Thread payment request in the increment form (kind 0x04), no longer taken by payees on
// the thread topic (docs/wire-format.md). Errors as above.
[[nodiscard]] Status encode_thread_update(const ThreadUpdate& u, uint8_t* out, size_t cap, size_t* written) noexcept;
[[nodiscard]] Status decode_thread_update(const uint8_t* in, size_t len, ThreadUpdate& out) noexcept;

// ------------------------------------------------------------------ HubRequest

// The hub asks the user to propose an update (docs/mqtt-protocol.md: the user is the
// only proposer). It names the channel (contract, user), a request id chosen by the hub
// (increasing per channel, 1..kMaxCounter), and the reason and args of the update the
// hub wants, in `update` (update.txCountGlobal and update.sig are not part of a request
// and must be zero). `sig` is the hub's eth_sign signature over keccak256 of the
// request's wire bytes before the signature, so a device drops forgeries with one
// signature recovery (hub_request_verify).
// Wire: | 0x01 | 0x05 | contract (20) | user (20) | varint requestId | reason (u8) |
//       args as in ChannelUpdate | sig (65) |
struct HubRequest {
  Address contractAddress;
  Address user;
  uint64_t requestId;
  ChannelUpdate update;  // reason + args only
  Signature sig;
};

// Errors (encode): BufferTooSmall, OutOfBounds (requestId 0 or > kMaxCounter, counters),
// BadReason, BadArgs (a Party code, a thread state without sigA, update.txCountGlobal
// non-zero), BadRecoveryId.
[[nodiscard]] Status encode_hub_request(const HubRequest& r, uint8_t* out, size_t cap, size_t* written) noexcept;
// Errors (decode): Truncated, TrailingBytes, BadVersion, BadKind, NonCanonical,
// OutOfBounds (requestId 0 or counters), BadReason, BadArgs, BadRecoveryId, HighS.
[[nodiscard]] Status decode_hub_request(const uint8_t* in, size_t len, HubRequest& out) noexcept;

// keccak256 of the request's wire bytes without the trailing signature: the hash the hub
// eth_signs. Errors: those of encode_hub_request.
[[nodiscard]] Status hub_request_hash(const HubRequest& r, Hash32& out) noexcept;
// Signs `r` with the hub's key into r.sig. Errors: encode errors, BadPrivateKey,
// CryptoUnavailable.
[[nodiscard]] Status hub_request_sign(const Signer& signer, const PrivateKey& hub_key, HubRequest& r) noexcept;
// Checks r.sig is `hub`'s. Errors: encode errors, WrongSigner, HighS, BadSignature,
// BadRecoveryId.
[[nodiscard]] Status hub_request_verify(const Signer& signer, const HubRequest& r, const Address& hub) noexcept;

// ------------------------------------------------------------------ Reply

// The answer to an update request, a sync request or a hub request (docs/mqtt-protocol.md).
// Wire: | 0x01 | kind | varint txCountGlobal | body |
//   Ack (0x10):         sig (65, v 27/28, low-S): the replier's eth_sign signature over
//                       the state the update produced
//   Nack (0x11):        status (u8, a Status number, never Ok) | ChannelState wire (kind 0x01)
//   Sync (0x12):        ChannelState wire (kind 0x01)
//   RequestNack (0x13): status (u8, never Ok) | ChannelState wire: the user refuses a
//                       HubRequest; the varint is the request id, the state the user's latest
// txCountGlobal: Ack/Nack: the txCountGlobal of the update answered (0 if the update
// could not be decoded); Sync: the state's txCountGlobal; RequestNack: the request id.
// The state of Nack/Sync/RequestNack is the replier's latest double-signed state, or,
// for a channel with none yet, the genesis state (all zero, txCountGlobal 0, no
// signatures). The byte layout of 0x10..0x12 is the one agent/mqtt has used since v1.
enum class ReplyKind : uint8_t {
  Ack = 0x10,
  Nack = 0x11,
  Sync = 0x12,
  RequestNack = 0x13,
};

struct Reply {
  ReplyKind kind = ReplyKind::Ack;
  uint64_t txCountGlobal = 0;   // or the request id (RequestNack)
  Signature sig{};              // Ack
  Status status = Status::Ok;   // Nack, RequestNack
  SignedChannelState state{};   // Nack, Sync, RequestNack
};

// A zeroed reply of the given kind.
Reply reply_make(ReplyKind kind) noexcept;

// Errors (encode): BufferTooSmall, OutOfBounds (txCountGlobal > kMaxCounter), BadArgs
// (Nack/RequestNack with status Ok or not a known Status number), BadKind (unknown
// kind), BadRecoveryId (Ack sig v not 27/28), and the errors of encode_channel_state.
[[nodiscard]] Status encode_reply(const Reply& r, uint8_t* out, size_t cap, size_t* written) noexcept;
// Errors (decode): Truncated, TrailingBytes, BadVersion, BadKind (not a reply kind),
// NonCanonical / OutOfBounds (varint), BadRecoveryId, HighS, BadArgs (status Ok or
// unknown), and the errors of decode_channel_state.
[[nodiscard]] Status decode_reply(const uint8_t* in, size_t len, Reply& out) noexcept;

}  // namespace picopay
