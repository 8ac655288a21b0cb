// picopay core: Ethereum value types — Address (EIP-55), Hash32, Signature, PrivateKey.
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/status.hpp"

namespace picopay {

// A 20-byte Ethereum account address.
struct Address {
  uint8_t bytes[20];
  bool is_zero() const noexcept;
};
bool operator==(const Address& a, const Address& b) noexcept;
inline bool operator!=(const Address& a, const Address& b) noexcept { return !(a == b); }

// A 32-byte hash (keccak-256 output, bytes32).
struct Hash32 {
  uint8_t bytes[32];
  bool is_zero() const noexcept;
};
bool operator==(const Hash32& a, const Hash32& b) noexcept;
inline bool operator!=(const Hash32& a, const Hash32& b) noexcept { return !(a == b); }
// Lexicographic byte order (as Buffer.compare), -1/0/1.
int hash32_cmp(const Hash32& a, const Hash32& b) noexcept;

// A secp256k1 ECDSA signature as Ethereum carries it: r || s || v, v = 27 + recovery id.
// In text: "0x" + 130 hex chars (eth_sign form).
struct Signature {
  uint8_t r[32];
  uint8_t s[32];
  uint8_t v;  // always 27 or 28 once parsed or produced by the core
};
bool operator==(const Signature& a, const Signature& b) noexcept;
inline bool operator!=(const Signature& a, const Signature& b) noexcept { return !(a == b); }

// A secp256k1 private key (32 bytes, big-endian scalar). Wipe with secure_wipe() after use.
struct PrivateKey {
  uint8_t bytes[32];
};

// Text sizes including the terminating NUL.
constexpr size_t kAddressTextSize = 43;     // "0x" + 40 hex + NUL
constexpr size_t kHash32TextSize = 67;      // "0x" + 64 hex + NUL
constexpr size_t kSignatureTextSize = 133;  // "0x" + 130 hex + NUL

// Parses "0x" + 40 hex digits. All-lowercase and all-uppercase digits are accepted as
// they are; a mixed-case address must carry a valid EIP-55 checksum.
// Errors: BadHex (shape), BadChecksum (mixed case, wrong EIP-55 checksum). Source: EIP-55.
[[nodiscard]] Status address_parse(const char* s, size_t len, Address& out) noexcept;

// Writes the EIP-55 checksummed form ("0x" + 40 hex, NUL-terminated) into out[43].
// Source: EIP-55 (hex digit i is uppercase iff nibble i of keccak256(lowercase hex) >= 8).
void address_to_eip55(const Address& a, char out[kAddressTextSize]) noexcept;

// Parses "0x" + 64 hex digits. Errors: BadHex.
[[nodiscard]] Status hash32_parse(const char* s, size_t len, Hash32& out) noexcept;
// Writes "0x" + 64 lowercase hex, NUL-terminated.
void hash32_to_hex(const Hash32& h, char out[kHash32TextSize]) noexcept;

// Parses "0x" + 130 hex digits: r (32 bytes) || s (32 bytes) || v (1 byte). v may be
// 0, 1, 27 or 28 and is normalised to 27/28. Range and high-S checks are the signer's
// job (signer.hpp). Errors: BadHex, BadRecoveryId (v not in {0, 1, 27, 28}).
[[nodiscard]] Status signature_parse(const char* s, size_t len, Signature& out) noexcept;
// Writes "0x" + 130 lowercase hex (r || s || v), NUL-terminated.
void signature_to_hex(const Signature& sig, char out[kSignatureTextSize]) noexcept;

// Parses "0x" + 64 hex digits into a private key (range is checked by the signer).
// Errors: BadHex.
[[nodiscard]] Status private_key_parse(const char* s, size_t len, PrivateKey& out) noexcept;

}  // namespace picopay
