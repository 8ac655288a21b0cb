// Web3 Secret Storage v3 keystores (see keystore_v3.hpp).
#include "picopay/keystore_v3.hpp"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sodium.h>

#include <cctype>
#include <cstring>

#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"

namespace picopay {
namespace {

constexpr uint64_t kMaxScryptN = 1ULL << 20;
constexpr uint64_t kMaxScryptMem = 1ULL << 30;
constexpr uint64_t kMaxPbkdf2C = 10000000;

struct Wipe {
  uint8_t* p;
  size_t n;
  ~Wipe() { OPENSSL_cleanse(p, n); }
};

bool hex_field(const cJSON* o, const char* k, uint8_t* out, size_t cap, size_t& n) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsString(v)) return false;
  const char* s = v->valuestring;
  size_t len = std::strlen(s);
  if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s += 2;
    len -= 2;
  }
  return hex_decode(s, len, out, cap, &n) == Status::Ok;
}

bool whole(const cJSON* o, const char* k, uint64_t& out) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0) return false;
  out = static_cast<uint64_t>(v->valuedouble);
  return static_cast<double>(out) == v->valuedouble;
}

bool derive(KeystoreKdf kdf, const char* pass, size_t len, const uint8_t* salt, size_t salt_len, uint64_t n,
            uint64_t r, uint64_t p, uint64_t c, uint8_t* dk, size_t dklen) {
  // scrypt from libsodium: OpenSSL's EVP_PBE_scrypt enforces RFC 7914's N < 2^(16 r), which
  // refuses keystores geth reads (the spec's own vector has n = 2^18, r = 1).
  if (kdf == KeystoreKdf::Scrypt) {
    if (sodium_init() < 0) return false;
    return crypto_pwhash_scryptsalsa208sha256_ll(reinterpret_cast<const uint8_t*>(pass), len, salt, salt_len, n,
                                                 static_cast<uint32_t>(r), static_cast<uint32_t>(p), dk, dklen) == 0;
  }
  return PKCS5_PBKDF2_HMAC(pass, static_cast<int>(len), salt, static_cast<int>(salt_len), static_cast<int>(c),
                           EVP_sha256(), static_cast<int>(dklen), dk) == 1;
}

bool aes128ctr(const uint8_t key[16], const uint8_t iv[16], const uint8_t* in, size_t n, uint8_t* out) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return false;
  int l1 = 0, l2 = 0;
  const bool ok = EVP_EncryptInit_ex(ctx, EVP_aes_128_ctr(), nullptr, key, iv) == 1 &&
                  EVP_EncryptUpdate(ctx, out, &l1, in, static_cast<int>(n)) == 1 &&
                  EVP_EncryptFinal_ex(ctx, out + l1, &l2) == 1 && static_cast<size_t>(l1 + l2) == n;
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

void mac_of(const uint8_t* dk, const uint8_t* ct, size_t n, uint8_t mac[32]) {
  uint8_t buf[16 + 64];
  std::memcpy(buf, dk + 16, 16);
  std::memcpy(buf + 16, ct, n);
  keccak256(buf, 16 + n, mac);
  OPENSSL_cleanse(buf, sizeof buf);
}

std::string hex(const uint8_t* p, size_t n) {
  std::string s(2 * n + 1, '\0');
  hex_encode(p, n, s.data(), false);
  s.resize(2 * n);
  return s;
}

}  // namespace

bool keystore_v3_looks_like(const std::string& text) noexcept {
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) continue;
    return c == '{';
  }
  return false;
}

Status keystore_v3_decrypt(const std::string& json, const char* pass, size_t len, PrivateKey& out,
                           std::string* why) noexcept {
  std::memset(&out, 0, sizeof out);
  auto bad = [&](Status st, const char* m) {
    if (why) *why = m;
    return st;
  };
  if (!pass) return bad(Status::BadArgs, "no passphrase");
  cJSON* root = cJSON_ParseWithLength(json.data(), json.size());
  if (!root) return bad(Status::Corrupt, "not JSON");
  struct Del {
    cJSON* p;
    ~Del() { cJSON_Delete(p); }
  } del{root};
  uint64_t version = 0;
  if (!whole(root, "version", version) || version != 3) return bad(Status::Corrupt, "not a version 3 keystore");
  const cJSON* crypto = cJSON_GetObjectItemCaseSensitive(root, "crypto");
  if (!crypto) crypto = cJSON_GetObjectItemCaseSensitive(root, "Crypto");  // geth writes both spellings
  if (!cJSON_IsObject(crypto)) return bad(Status::Corrupt, "no crypto object");
  const cJSON* cipher = cJSON_GetObjectItemCaseSensitive(crypto, "cipher");
  if (!cJSON_IsString(cipher) || std::strcmp(cipher->valuestring, "aes-128-ctr") != 0)
    return bad(Status::Corrupt, "cipher is not aes-128-ctr");
  uint8_t ct[64], iv[16], mac[32], salt[128];
  size_t ct_n = 0, iv_n = 0, mac_n = 0, salt_n = 0;
  // 32 bytes; geth also wrote keys with leading zero bytes dropped (30 or 31 bytes)
  if (!hex_field(crypto, "ciphertext", ct, sizeof ct, ct_n) || ct_n < 16 || ct_n > 32)
    return bad(Status::Corrupt, "ciphertext is not 16..32 bytes of hex");
  if (!hex_field(cJSON_GetObjectItemCaseSensitive(crypto, "cipherparams"), "iv", iv, sizeof iv, iv_n) || iv_n != 16)
    return bad(Status::Corrupt, "cipherparams.iv is not 16 bytes of hex");
  if (!hex_field(crypto, "mac", mac, sizeof mac, mac_n) || mac_n != 32)
    return bad(Status::Corrupt, "mac is not 32 bytes of hex");
  const cJSON* kdf = cJSON_GetObjectItemCaseSensitive(crypto, "kdf");
  const cJSON* kp = cJSON_GetObjectItemCaseSensitive(crypto, "kdfparams");
  if (!cJSON_IsString(kdf) || !cJSON_IsObject(kp)) return bad(Status::Corrupt, "no kdf or kdfparams");
  if (!hex_field(kp, "salt", salt, sizeof salt, salt_n)) return bad(Status::Corrupt, "kdfparams.salt is not hex");
  uint64_t dklen = 0, n = 0, r = 0, p = 0, c = 0;
  if (!whole(kp, "dklen", dklen) || dklen < 32 || dklen > 64) return bad(Status::Corrupt, "kdfparams.dklen not 32..64");
  KeystoreKdf k;
  if (std::strcmp(kdf->valuestring, "scrypt") == 0) {
    k = KeystoreKdf::Scrypt;
    if (!whole(kp, "n", n) || !whole(kp, "r", r) || !whole(kp, "p", p) || n < 2 || (n & (n - 1)) != 0 || r == 0 ||
        p == 0)
      return bad(Status::Corrupt, "scrypt n (a power of two), r, p missing or bad");
    if (n > kMaxScryptN || r * p > (1ULL << 20) || 128 * r * n > kMaxScryptMem)
      return bad(Status::Corrupt, "scrypt parameters above the bounds (n <= 2^20, memory <= 1 GiB)");
  } else if (std::strcmp(kdf->valuestring, "pbkdf2") == 0) {
    k = KeystoreKdf::Pbkdf2;
    const cJSON* prf = cJSON_GetObjectItemCaseSensitive(kp, "prf");
    if (!cJSON_IsString(prf) || std::strcmp(prf->valuestring, "hmac-sha256") != 0)
      return bad(Status::Corrupt, "pbkdf2 prf is not hmac-sha256");
    if (!whole(kp, "c", c) || c == 0 || c > kMaxPbkdf2C) return bad(Status::Corrupt, "pbkdf2 c missing or above 10^7");
  } else {
    return bad(Status::Corrupt, "kdf is neither scrypt nor pbkdf2");
  }
  uint8_t dk[64];
  Wipe wdk{dk, sizeof dk};
  if (!derive(k, pass, len, salt, salt_n, n, r, p, c, dk, dklen)) return bad(Status::IoError, "key derivation failed");
  uint8_t want[32];
  mac_of(dk, ct, ct_n, want);
  if (CRYPTO_memcmp(want, mac, 32) != 0) return bad(Status::BadSignature, "wrong passphrase or damaged keystore (MAC mismatch)");
  uint8_t plain[32];
  Wipe wp{plain, sizeof plain};
  if (!aes128ctr(dk, iv, ct, ct_n, plain)) return bad(Status::IoError, "aes-128-ctr failed");
  std::memcpy(out.bytes + (32 - ct_n), plain, ct_n);  // a shorter key is the same number, left-padded
  return Status::Ok;
}

Status keystore_v3_encrypt(const PrivateKey& key, const Address& address, const char* pass, size_t len,
                           const KeystoreParams& prm, std::string& out) noexcept {
  if (!pass || len == 0) return Status::BadArgs;
  uint8_t salt[32], iv[16], uuid[16];
  if (RAND_bytes(salt, sizeof salt) != 1 || RAND_bytes(iv, sizeof iv) != 1 || RAND_bytes(uuid, sizeof uuid) != 1)
    return Status::IoError;
  uuid[6] = static_cast<uint8_t>((uuid[6] & 0x0f) | 0x40);
  uuid[8] = static_cast<uint8_t>((uuid[8] & 0x3f) | 0x80);
  uint8_t dk[32];
  Wipe wdk{dk, sizeof dk};
  if (!derive(prm.kdf, pass, len, salt, sizeof salt, prm.scrypt_n, prm.scrypt_r, prm.scrypt_p, prm.pbkdf2_c, dk, 32))
    return Status::IoError;
  uint8_t ct[32], mac[32];
  if (!aes128ctr(dk, iv, key.bytes, 32, ct)) return Status::IoError;
  mac_of(dk, ct, 32, mac);
  const std::string u = hex(uuid, 16);
  const std::string id = u.substr(0, 8) + "-" + u.substr(8, 4) + "-" + u.substr(12, 4) + "-" + u.substr(16, 4) + "-" +
                         u.substr(20);
  std::string kdfparams;
  if (prm.kdf == KeystoreKdf::Scrypt)
    kdfparams = "\"kdf\":\"scrypt\",\"kdfparams\":{\"dklen\":32,\"n\":" + std::to_string(prm.scrypt_n) +
                ",\"p\":" + std::to_string(prm.scrypt_p) + ",\"r\":" + std::to_string(prm.scrypt_r) + ",\"salt\":\"" +
                hex(salt, sizeof salt) + "\"}";
  else
    kdfparams = "\"kdf\":\"pbkdf2\",\"kdfparams\":{\"c\":" + std::to_string(prm.pbkdf2_c) +
                ",\"dklen\":32,\"prf\":\"hmac-sha256\",\"salt\":\"" + hex(salt, sizeof salt) + "\"}";
  out = "{\"address\":\"" + hex(address.bytes, 20) + "\",\"crypto\":{\"cipher\":\"aes-128-ctr\",\"ciphertext\":\"" +
        hex(ct, 32) + "\",\"cipherparams\":{\"iv\":\"" + hex(iv, 16) + "\"}," + kdfparams + ",\"mac\":\"" +
        hex(mac, 32) + "\"},\"id\":\"" + id + "\",\"version\":3}\n";
  return Status::Ok;
}

}  // namespace picopay
