// Web3 Secret Storage v3 JSON keystores, as geth (`geth account new`), foundry
// (`cast wallet import`) and ethers write them: KDF scrypt or PBKDF2-HMAC-SHA256,
// cipher aes-128-ctr, MAC = keccak256(derivedKey[16..32] || ciphertext). Source:
// the Web3 Secret Storage Definition (ethereum.org, "web3-secret-storage");
// docs/operations.md "Keys". scrypt comes from libsodium, PBKDF2 and AES-128-CTR from
// OpenSSL (libcrypto), keccak from the core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "picopay/status.hpp"
#include "picopay/types.hpp"

namespace picopay {

enum class KeystoreKdf : uint8_t { Scrypt = 0, Pbkdf2 = 1 };

// The KDF cost of a new keystore. Defaults are geth's "standard" scrypt (n = 2^18, r = 8,
// p = 1: about 256 MiB and a second) and PBKDF2 c = 262144 as in the spec's example.
struct KeystoreParams {
  KeystoreKdf kdf = KeystoreKdf::Scrypt;
  uint64_t scrypt_n = 262144;  // a power of two >= 2
  uint32_t scrypt_r = 8;
  uint32_t scrypt_p = 1;
  uint32_t pbkdf2_c = 262144;
};

// True if `text` looks like a JSON keystore (first non-space character '{').
bool keystore_v3_looks_like(const std::string& text) noexcept;

// Decrypts the v3 keystore `json` with the passphrase into `out`.
// Errors: Corrupt if the JSON is malformed or not version 3, the cipher is not
// aes-128-ctr, the KDF is neither scrypt nor pbkdf2 (prf hmac-sha256), a hex field is
// bad, dklen < 32, or the KDF parameters exceed the bounds below (n <= 2^20, r*p <=
// 2^20, memory <= 1 GiB; c <= 10^7: a hostile file must not exhaust the machine);
// BadSignature if the MAC does not match (wrong passphrase or tampered file);
// IoError if libcrypto fails. `why` (optional) gets one line. `out` is zeroed on error.
[[nodiscard]] Status keystore_v3_decrypt(const std::string& json, const char* passphrase, size_t len,
                                         PrivateKey& out, std::string* why = nullptr) noexcept;

// Encrypts `key` (whose address is `address`, written lowercase without 0x as geth does)
// under the passphrase into a v3 keystore JSON text in `out` (random salt, iv and
// UUID v4 id from the OS). Errors: BadArgs for an empty passphrase; IoError if libcrypto
// or the random source fails.
[[nodiscard]] Status keystore_v3_encrypt(const PrivateKey& key, const Address& address, const char* passphrase,
                                         size_t len, const KeystoreParams& params, std::string& out) noexcept;

}  // namespace picopay
