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
};

// Upper bounds on encoded sizes, for sizing buffers.
constexpr size_t kMaxChannelStateWire = 2 + 1 + 60 + 12 * 33 + 4 * 8 + 32 + 2 * 65;  // 653
constexpr size_t kMaxThreadStateWire = 2 + 1 + 60 + 8 + 4 * 33 + 8 + 65;             // 276
constexpr size_t kMaxChannelUpdateWire = 2 + 1 + 8 + 20 + 4 * 33 + 8 + 8 + kMaxThreadStateWire + 65;
constexpr size_t kMaxThreadUpdateWire = 2 + 20 + 8 + 8 + 2 * 33 + 65;
constexpr size_t kMaxOf(size_t a, size_t b) noexcept { return a > b ? a : b; }
// Room for any one message of any kind.
constexpr size_t kMaxWireMessage =
    kMaxOf(kMaxOf(kMaxChannelStateWire, kMaxThreadStateWire), kMaxOf(kMaxChannelUpdateWire, kMaxThreadUpdateWire));

// Reads the kind of a message (checks version and kind byte only).
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

// Thread payment request. Errors as above.
[[nodiscard]] Status encode_thread_update(const ThreadUpdate& u, uint8_t* out, size_t cap, size_t* written) noexcept;
[[nodiscard]] Status decode_thread_update(const uint8_t* in, size_t len, ThreadUpdate& out) noexcept;

}  // namespace picopay
