// Helpers shared by the core test suites: deterministic pseudo-random data, hex
// conversion of fixed-size values, and printers for gtest failure messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "picopay/hex.hpp"
#include "picopay/state.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay_test {

// SplitMix64: small, deterministic, seedable; good enough for test data.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform-ish in [0, n) for n > 0.
  uint64_t below(uint64_t n) { return next() % n; }
  uint8_t byte() { return static_cast<uint8_t>(next() & 0xFF); }
  void fill(uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) p[i] = byte();
  }
  std::vector<uint8_t> bytes(size_t n) {
    std::vector<uint8_t> v(n);
    fill(v.data(), n);
    return v;
  }

 private:
  uint64_t s_;
};

inline std::string to_hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(d[p[i] >> 4]);
    s.push_back(d[p[i] & 15]);
  }
  return s;
}
inline std::string to_hex(const std::vector<uint8_t>& v) { return to_hex(v.data(), v.size()); }

// Bare or 0x-prefixed even-length hex to bytes; aborts the test binary on bad input
// (test literals only).
inline std::vector<uint8_t> from_hex(const std::string& in) {
  std::string s = in;
  if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s = s.substr(2);
  std::vector<uint8_t> out(s.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = picopay::hex_digit_value(s[2 * i]);
    int lo = picopay::hex_digit_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0 || s.size() % 2 != 0) std::abort();
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return out;
}

inline picopay::Address addr(const std::string& text) {
  std::vector<uint8_t> b = from_hex(text);
  if (b.size() != 20) std::abort();
  picopay::Address a;
  std::memcpy(a.bytes, b.data(), 20);
  return a;
}

inline picopay::Hash32 h32(const std::string& text) {
  std::vector<uint8_t> b = from_hex(text);
  if (b.size() != 32) std::abort();
  picopay::Hash32 h;
  std::memcpy(h.bytes, b.data(), 32);
  return h;
}

inline picopay::U256 u(uint64_t v) { return picopay::U256::from_u64(v); }

inline picopay::U256 random_u256(Rng& r) {
  picopay::U256 v;
  for (auto& l : v.w) l = r.next();
  return v;
}

// A value of random byte length 0..32 (so small and large values both occur).
inline picopay::U256 random_u256_any_size(Rng& r) {
  picopay::U256 v = picopay::U256::zero();
  size_t bits = static_cast<size_t>(r.below(257));
  for (size_t i = 0; i < 4; ++i) {
    if (bits >= 64) {
      v.w[i] = r.next();
      bits -= 64;
    } else {
      v.w[i] = bits == 0 ? 0 : (r.next() >> (64 - bits));
      bits = 0;
    }
  }
  return v;
}

inline std::string dec(const picopay::U256& v) {
  char buf[picopay::kU256DecimalMax];
  size_t n = 0;
  if (picopay::u256_to_decimal(v, buf, sizeof buf, &n) != picopay::Status::Ok) return "<u256_to_decimal failed>";
  return std::string(buf, n);
}

}  // namespace picopay_test

namespace picopay {
// gtest printers (found by ADL) so failures show values, not raw bytes.
inline void PrintTo(const Status& s, std::ostream* os) { *os << status_name(s); }
inline void PrintTo(const U256& v, std::ostream* os) { *os << picopay_test::dec(v); }
inline void PrintTo(const Address& a, std::ostream* os) { *os << "0x" << picopay_test::to_hex(a.bytes, 20); }
inline void PrintTo(const Hash32& h, std::ostream* os) { *os << "0x" << picopay_test::to_hex(h.bytes, 32); }
inline void PrintTo(const Signature& s, std::ostream* os) {
  *os << "r=" << picopay_test::to_hex(s.r, 32) << " s=" << picopay_test::to_hex(s.s, 32) << " v=" << int(s.v);
}
}  // namespace picopay
