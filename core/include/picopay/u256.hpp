// picopay core: 256-bit unsigned integers for wei and token amounts (Solidity uint256).
//
// Fixed limbs, no heap. Arithmetic is checked: overflow and underflow are errors
// (Status::Overflow / Status::Underflow), never a silent wrap, because a wrapped
// balance is a stolen balance.
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/status.hpp"

namespace picopay {

struct U256 {
  // Little-endian 64-bit limbs: value = w[0] + w[1]*2^64 + w[2]*2^128 + w[3]*2^192.
  uint64_t w[4];

  static constexpr U256 zero() noexcept { return U256{{0, 0, 0, 0}}; }
  static constexpr U256 from_u64(uint64_t v) noexcept { return U256{{v, 0, 0, 0}}; }
  static constexpr U256 max() noexcept { return U256{{~0ULL, ~0ULL, ~0ULL, ~0ULL}}; }

  constexpr bool is_zero() const noexcept { return (w[0] | w[1] | w[2] | w[3]) == 0; }
  // True if the value fits in 64 bits; then `low64()` is the value.
  constexpr bool fits_u64() const noexcept { return (w[1] | w[2] | w[3]) == 0; }
  constexpr uint64_t low64() const noexcept { return w[0]; }
};

// Three-way compare: -1 if a < b, 0 if equal, 1 if a > b.
int u256_cmp(const U256& a, const U256& b) noexcept;
inline bool operator==(const U256& a, const U256& b) noexcept { return u256_cmp(a, b) == 0; }
inline bool operator!=(const U256& a, const U256& b) noexcept { return u256_cmp(a, b) != 0; }
inline bool operator<(const U256& a, const U256& b) noexcept { return u256_cmp(a, b) < 0; }
inline bool operator<=(const U256& a, const U256& b) noexcept { return u256_cmp(a, b) <= 0; }
inline bool operator>(const U256& a, const U256& b) noexcept { return u256_cmp(a, b) > 0; }
inline bool operator>=(const U256& a, const U256& b) noexcept { return u256_cmp(a, b) >= 0; }

// out = a + b. Errors: Overflow if the sum exceeds 2^256-1 (out is then unchanged).
[[nodiscard]] Status u256_add(const U256& a, const U256& b, U256& out) noexcept;
// out = a - b. Errors: Underflow if b > a (out is then unchanged).
[[nodiscard]] Status u256_sub(const U256& a, const U256& b, U256& out) noexcept;
// out = a * b. Errors: Overflow if the product exceeds 2^256-1 (out is then unchanged).
[[nodiscard]] Status u256_mul(const U256& a, const U256& b, U256& out) noexcept;
// quotient = a / b, remainder = a % b (either output may alias an input).
// Errors: BadArgs if b is zero (outputs unchanged).
[[nodiscard]] Status u256_divmod(const U256& a, const U256& b, U256& quotient, U256& remainder) noexcept;

// Parses a plain decimal string of `len` characters: digits only, no sign, no leading
// zero (except "0" itself), no whitespace, at most 2^256-1.
// Errors: BadDecimal (empty, non-digit, leading zero), Overflow (> 2^256-1).
[[nodiscard]] Status u256_parse_decimal(const char* s, size_t len, U256& out) noexcept;

// Parses "0x" followed by 1 to 64 hex digits (either case; leading zeros allowed).
// Errors: BadHex.
[[nodiscard]] Status u256_parse_hex(const char* s, size_t len, U256& out) noexcept;

// Longest decimal rendering of a U256 (78 digits) plus the terminating NUL.
constexpr size_t kU256DecimalMax = 79;

// Writes the decimal form, NUL-terminated, into out[0..cap); `*written` (optional)
// gets the length without the NUL. Errors: BufferTooSmall if cap is too small
// (`*written` then gets the needed length without the NUL).
[[nodiscard]] Status u256_to_decimal(const U256& v, char* out, size_t cap, size_t* written) noexcept;

// Big-endian 32-byte form, as in the ABI and in abi.encodePacked of a uint256.
void u256_to_be32(const U256& v, uint8_t out[32]) noexcept;
// From big-endian bytes, len 0..32 (shorter input is zero-extended on the left).
// Errors: OutOfBounds if len > 32.
[[nodiscard]] Status u256_from_be(const uint8_t* in, size_t len, U256& out) noexcept;
// Number of significant bytes (0 for zero, 32 for >= 2^248): the minimal big-endian length.
size_t u256_byte_length(const U256& v) noexcept;

}  // namespace picopay
