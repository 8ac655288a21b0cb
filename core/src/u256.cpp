#include "picopay/u256.hpp"

namespace picopay {

int u256_cmp(const U256& a, const U256& b) noexcept {
  for (int i = 3; i >= 0; --i) {
    if (a.w[i] != b.w[i]) return a.w[i] < b.w[i] ? -1 : 1;
  }
  return 0;
}

Status u256_add(const U256& a, const U256& b, U256& out) noexcept {
  U256 r;
  uint64_t carry = 0;
  for (int i = 0; i < 4; ++i) {
    const uint64_t s = a.w[i] + carry;
    const uint64_t c1 = s < carry ? 1u : 0u;
    r.w[i] = s + b.w[i];
    carry = c1 + (r.w[i] < s ? 1u : 0u);
  }
  if (carry) return Status::Overflow;
  out = r;
  return Status::Ok;
}

Status u256_sub(const U256& a, const U256& b, U256& out) noexcept {
  if (u256_cmp(a, b) < 0) return Status::Underflow;
  U256 r;
  uint64_t borrow = 0;
  for (int i = 0; i < 4; ++i) {
    const uint64_t d = a.w[i] - b.w[i];
    const uint64_t b1 = a.w[i] < b.w[i] ? 1u : 0u;
    r.w[i] = d - borrow;
    borrow = b1 + (d < borrow ? 1u : 0u);
  }
  out = r;
  return Status::Ok;
}

namespace {
// 32-bit limbs keep the multiply portable to 32-bit MCUs (no __int128).
void to_u32(const U256& v, uint32_t out[8]) noexcept {
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = static_cast<uint32_t>(v.w[i]);
    out[2 * i + 1] = static_cast<uint32_t>(v.w[i] >> 32);
  }
}
U256 from_u32(const uint32_t in[8]) noexcept {
  U256 r;
  for (int i = 0; i < 4; ++i) r.w[i] = static_cast<uint64_t>(in[2 * i]) | (static_cast<uint64_t>(in[2 * i + 1]) << 32);
  return r;
}
}  // namespace

Status u256_mul(const U256& a, const U256& b, U256& out) noexcept {
  uint32_t x[8], y[8], r[16] = {};
  to_u32(a, x);
  to_u32(b, y);
  for (int i = 0; i < 8; ++i) {
    if (x[i] == 0) continue;
    uint64_t carry = 0;
    for (int j = 0; j < 8; ++j) {
      const uint64_t t = static_cast<uint64_t>(x[i]) * y[j] + r[i + j] + carry;
      r[i + j] = static_cast<uint32_t>(t);
      carry = t >> 32;
    }
    r[i + 8] = static_cast<uint32_t>(carry);
  }
  for (int i = 8; i < 16; ++i) {
    if (r[i]) return Status::Overflow;
  }
  out = from_u32(r);
  return Status::Ok;
}

namespace {
void shl1(U256& v) noexcept {
  for (int i = 3; i > 0; --i) v.w[i] = (v.w[i] << 1) | (v.w[i - 1] >> 63);
  v.w[0] <<= 1;
}
int bit_length(const U256& v) noexcept {
  for (int i = 3; i >= 0; --i) {
    if (v.w[i]) {
      int n = 64;
      while (!(v.w[i] >> (n - 1))) --n;
      return i * 64 + n;
    }
  }
  return 0;
}
// Divides v in place by d (1..2^32-1) and returns the remainder.
uint32_t div_small(U256& v, uint32_t d) noexcept {
  uint32_t x[8];
  to_u32(v, x);
  uint64_t rem = 0;
  for (int i = 7; i >= 0; --i) {
    const uint64_t cur = (rem << 32) | x[i];
    x[i] = static_cast<uint32_t>(cur / d);
    rem = cur % d;
  }
  v = from_u32(x);
  return static_cast<uint32_t>(rem);
}
}  // namespace

Status u256_divmod(const U256& a, const U256& b, U256& quotient, U256& remainder) noexcept {
  if (b.is_zero()) return Status::BadArgs;
  U256 q = U256::zero(), r = U256::zero();
  for (int i = bit_length(a) - 1; i >= 0; --i) {
    shl1(r);
    r.w[0] |= (a.w[i / 64] >> (i % 64)) & 1u;
    shl1(q);
    if (u256_cmp(r, b) >= 0) {
      (void)u256_sub(r, b, r);
      q.w[0] |= 1u;
    }
  }
  quotient = q;
  remainder = r;
  return Status::Ok;
}

Status u256_parse_decimal(const char* s, size_t len, U256& out) noexcept {
  if (s == nullptr || len == 0) return Status::BadDecimal;
  if (len > 1 && s[0] == '0') return Status::BadDecimal;
  U256 v = U256::zero();
  const U256 ten = U256::from_u64(10);
  for (size_t i = 0; i < len; ++i) {
    if (s[i] < '0' || s[i] > '9') return Status::BadDecimal;
    if (u256_mul(v, ten, v) != Status::Ok) return Status::Overflow;
    if (u256_add(v, U256::from_u64(static_cast<uint64_t>(s[i] - '0')), v) != Status::Ok) return Status::Overflow;
  }
  out = v;
  return Status::Ok;
}

namespace {
int hex_nibble(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Status u256_parse_hex(const char* s, size_t len, U256& out) noexcept {
  if (s == nullptr || len < 3 || len > 66 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return Status::BadHex;
  U256 v = U256::zero();
  for (size_t i = 2; i < len; ++i) {
    const int n = hex_nibble(s[i]);
    if (n < 0) return Status::BadHex;
    for (int k = 3; k > 0; --k) v.w[k] = (v.w[k] << 4) | (v.w[k - 1] >> 60);
    v.w[0] = (v.w[0] << 4) | static_cast<uint64_t>(n);
  }
  out = v;
  return Status::Ok;
}

Status u256_to_decimal(const U256& v, char* out, size_t cap, size_t* written) noexcept {
  char tmp[kU256DecimalMax];
  size_t n = 0;
  U256 x = v;
  do {
    tmp[n++] = static_cast<char>('0' + div_small(x, 10));
  } while (!x.is_zero());
  if (written) *written = n;
  if (out == nullptr || cap < n + 1) return Status::BufferTooSmall;
  for (size_t i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  out[n] = '\0';
  return Status::Ok;
}

void u256_to_be32(const U256& v, uint8_t out[32]) noexcept {
  for (int i = 0; i < 4; ++i) {
    const uint64_t limb = v.w[3 - i];
    for (int j = 0; j < 8; ++j) out[i * 8 + j] = static_cast<uint8_t>(limb >> (56 - 8 * j));
  }
}

Status u256_from_be(const uint8_t* in, size_t len, U256& out) noexcept {
  if (len > 32) return Status::OutOfBounds;
  U256 v = U256::zero();
  for (size_t i = 0; i < len; ++i) {
    const size_t bytepos = len - 1 - i;  // 0 = least significant
    v.w[bytepos / 8] |= static_cast<uint64_t>(in[i]) << (8 * (bytepos % 8));
  }
  out = v;
  return Status::Ok;
}

size_t u256_byte_length(const U256& v) noexcept {
  return static_cast<size_t>((bit_length(v) + 7) / 8);
}

}  // namespace picopay
