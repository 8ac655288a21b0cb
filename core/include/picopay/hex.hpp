// picopay core: hex text <-> bytes, for the 0x-hex forms Ethereum uses everywhere.
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/status.hpp"

namespace picopay {

// Decodes exactly `out_len` bytes from `s[0..len)`, which must be "0x" (or "0X")
// followed by 2*out_len hex digits of either case.
// Errors: BadHex (missing prefix, wrong length, non-hex digit).
[[nodiscard]] Status hex_decode_0x(const char* s, size_t len, uint8_t* out, size_t out_len) noexcept;

// Decodes a bare even-length hex string (no prefix) into out[0..cap); `*out_len` gets
// the byte count. Errors: BadHex (odd length, non-hex digit); BufferTooSmall.
[[nodiscard]] Status hex_decode(const char* s, size_t len, uint8_t* out, size_t cap, size_t* out_len) noexcept;

// Writes lowercase hex of in[0..len) into out, with "0x" if `prefix`, NUL-terminated.
// `out` must hold 2*len + (prefix ? 2 : 0) + 1 chars.
void hex_encode(const uint8_t* in, size_t len, char* out, bool prefix) noexcept;

// The value of one hex digit, or -1.
int hex_digit_value(char c) noexcept;

// Overwrites n bytes at p with zeros in a way the compiler may not elide (secrets).
void secure_wipe(void* p, size_t n) noexcept;

}  // namespace picopay
