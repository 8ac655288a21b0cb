#include "picopay/types.hpp"

#include <cstring>

#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"

namespace picopay {

bool Address::is_zero() const noexcept {
  uint8_t acc = 0;
  for (uint8_t b : bytes) acc |= b;
  return acc == 0;
}
bool operator==(const Address& a, const Address& b) noexcept { return std::memcmp(a.bytes, b.bytes, 20) == 0; }

bool Hash32::is_zero() const noexcept {
  uint8_t acc = 0;
  for (uint8_t b : bytes) acc |= b;
  return acc == 0;
}
bool operator==(const Hash32& a, const Hash32& b) noexcept { return std::memcmp(a.bytes, b.bytes, 32) == 0; }
int hash32_cmp(const Hash32& a, const Hash32& b) noexcept {
  const int c = std::memcmp(a.bytes, b.bytes, 32);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

bool operator==(const Signature& a, const Signature& b) noexcept {
  return std::memcmp(a.r, b.r, 32) == 0 && std::memcmp(a.s, b.s, 32) == 0 && a.v == b.v;
}

void address_to_eip55(const Address& a, char out[kAddressTextSize]) noexcept {
  char lower[41];
  hex_encode(a.bytes, 20, lower, false);
  uint8_t h[32];
  keccak256(reinterpret_cast<const uint8_t*>(lower), 40, h);
  out[0] = '0';
  out[1] = 'x';
  for (int i = 0; i < 40; ++i) {
    const uint8_t nibble = (i % 2 == 0) ? (h[i / 2] >> 4) : (h[i / 2] & 0xf);
    char c = lower[i];
    if (c >= 'a' && c <= 'f' && nibble >= 8) c = static_cast<char>(c - 'a' + 'A');
    out[2 + i] = c;
  }
  out[42] = '\0';
}

Status address_parse(const char* s, size_t len, Address& out) noexcept {
  Address a;
  if (hex_decode_0x(s, len, a.bytes, 20) != Status::Ok) return Status::BadHex;
  bool has_lower = false, has_upper = false;
  for (size_t i = 2; i < len; ++i) {
    if (s[i] >= 'a' && s[i] <= 'f') has_lower = true;
    if (s[i] >= 'A' && s[i] <= 'F') has_upper = true;
  }
  if (has_lower && has_upper) {
    char expect[kAddressTextSize];
    address_to_eip55(a, expect);
    if (std::memcmp(expect + 2, s + 2, 40) != 0) return Status::BadChecksum;
  }
  out = a;
  return Status::Ok;
}

Status hash32_parse(const char* s, size_t len, Hash32& out) noexcept {
  Hash32 h;
  if (hex_decode_0x(s, len, h.bytes, 32) != Status::Ok) return Status::BadHex;
  out = h;
  return Status::Ok;
}

void hash32_to_hex(const Hash32& h, char out[kHash32TextSize]) noexcept { hex_encode(h.bytes, 32, out, true); }

Status signature_parse(const char* s, size_t len, Signature& out) noexcept {
  uint8_t raw[65];
  if (hex_decode_0x(s, len, raw, 65) != Status::Ok) return Status::BadHex;
  uint8_t v = raw[64];
  if (v == 0 || v == 1) v = static_cast<uint8_t>(v + 27);
  if (v != 27 && v != 28) return Status::BadRecoveryId;
  std::memcpy(out.r, raw, 32);
  std::memcpy(out.s, raw + 32, 32);
  out.v = v;
  return Status::Ok;
}

void signature_to_hex(const Signature& sig, char out[kSignatureTextSize]) noexcept {
  uint8_t raw[65];
  std::memcpy(raw, sig.r, 32);
  std::memcpy(raw + 32, sig.s, 32);
  raw[64] = sig.v;
  hex_encode(raw, 65, out, true);
}

Status private_key_parse(const char* s, size_t len, PrivateKey& out) noexcept {
  PrivateKey k;
  const Status st = hex_decode_0x(s, len, k.bytes, 32);
  if (st == Status::Ok) out = k;
  secure_wipe(&k, sizeof k);
  return st == Status::Ok ? Status::Ok : Status::BadHex;
}

}  // namespace picopay
