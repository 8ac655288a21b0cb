#include "picopay/hex.hpp"

namespace picopay {

int hex_digit_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Status hex_decode(const char* s, size_t len, uint8_t* out, size_t cap, size_t* out_len) noexcept {
  if (len % 2 != 0) return Status::BadHex;
  const size_t n = len / 2;
  if (out_len) *out_len = n;
  for (size_t i = 0; i < len; ++i) {
    if (hex_digit_value(s[i]) < 0) return Status::BadHex;
  }
  if (n > cap) return Status::BufferTooSmall;
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<uint8_t>((hex_digit_value(s[2 * i]) << 4) | hex_digit_value(s[2 * i + 1]));
  }
  return Status::Ok;
}

Status hex_decode_0x(const char* s, size_t len, uint8_t* out, size_t out_len) noexcept {
  if (s == nullptr || len != 2 + 2 * out_len || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return Status::BadHex;
  size_t n = 0;
  return hex_decode(s + 2, len - 2, out, out_len, &n);
}

void hex_encode(const uint8_t* in, size_t len, char* out, bool prefix) noexcept {
  static const char kDigits[] = "0123456789abcdef";
  size_t o = 0;
  if (prefix) {
    out[o++] = '0';
    out[o++] = 'x';
  }
  for (size_t i = 0; i < len; ++i) {
    out[o++] = kDigits[in[i] >> 4];
    out[o++] = kDigits[in[i] & 0xf];
  }
  out[o] = '\0';
}

void secure_wipe(void* p, size_t n) noexcept {
  volatile uint8_t* v = static_cast<volatile uint8_t*>(p);
  while (n--) *v++ = 0;
}

}  // namespace picopay
