#include "picopay/signer.hpp"

#include <secp256k1.h>
#include <secp256k1_preallocated.h>
#include <secp256k1_recovery.h>

#include <cstring>

#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"
#include "picopay/state.hpp"

namespace picopay {

namespace {
// n/2 for secp256k1, big-endian.
constexpr uint8_t kHalfOrder[32] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4,
                                    0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0};
constexpr unsigned kFlags = SECP256K1_CONTEXT_SIGN | SECP256K1_CONTEXT_VERIFY;

// The Ethereum address of a public key: the last 20 bytes of keccak256 of the 64-byte
// uncompressed point (Yellow Paper, Appendix F).
void pubkey_address(const secp256k1_context* ctx, const secp256k1_pubkey& pub, Address& out) noexcept {
  uint8_t ser[65];
  size_t len = sizeof ser;
  secp256k1_ec_pubkey_serialize(ctx, ser, &len, &pub, SECP256K1_EC_UNCOMPRESSED);
  uint8_t h[32];
  keccak256(ser + 1, 64, h);
  std::memcpy(out.bytes, h + 12, 20);
}
}  // namespace

bool signature_s_is_low(const uint8_t s[32]) noexcept { return std::memcmp(s, kHalfOrder, 32) <= 0; }

Signer::~Signer() noexcept {
  if (ctx_ != nullptr) secp256k1_context_preallocated_destroy(ctx_);
  secure_wipe(ctx_buf_, sizeof ctx_buf_);
}

Status Signer::init(const uint8_t* seed32) noexcept {
  if (ctx_ != nullptr) return Status::Ok;
  if (secp256k1_context_preallocated_size(kFlags) > kContextBytes) return Status::CryptoUnavailable;
  secp256k1_context* ctx = secp256k1_context_preallocated_create(ctx_buf_, kFlags);
  if (ctx == nullptr) return Status::CryptoUnavailable;
  if (seed32 != nullptr && !secp256k1_context_randomize(ctx, seed32)) {
    secp256k1_context_preallocated_destroy(ctx);
    return Status::CryptoUnavailable;
  }
  ctx_ = ctx;
  return Status::Ok;
}

Status Signer::address_of(const PrivateKey& key, Address& out) const noexcept {
  if (ctx_ == nullptr) return Status::CryptoUnavailable;
  if (!secp256k1_ec_seckey_verify(ctx_, key.bytes)) return Status::BadPrivateKey;
  secp256k1_pubkey pub;
  if (!secp256k1_ec_pubkey_create(ctx_, &pub, key.bytes)) return Status::BadPrivateKey;
  pubkey_address(ctx_, pub, out);
  return Status::Ok;
}

Status Signer::sign_digest(const PrivateKey& key, const Hash32& digest, Signature& out) const noexcept {
  if (ctx_ == nullptr) return Status::CryptoUnavailable;
  if (!secp256k1_ec_seckey_verify(ctx_, key.bytes)) return Status::BadPrivateKey;
  secp256k1_ecdsa_recoverable_signature rsig;
  if (!secp256k1_ecdsa_sign_recoverable(ctx_, &rsig, digest.bytes, key.bytes, nullptr, nullptr))
    return Status::BadPrivateKey;
  uint8_t compact[64];
  int recid = 0;
  secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx_, compact, &recid, &rsig);
  std::memcpy(out.r, compact, 32);
  std::memcpy(out.s, compact + 32, 32);
  out.v = static_cast<uint8_t>(27 + recid);
  return Status::Ok;
}

Status Signer::sign_eth(const PrivateKey& key, const Hash32& hash, Signature& out) const noexcept {
  return sign_digest(key, eth_sign_hash(hash), out);
}

Status Signer::recover_digest(const Hash32& digest, const Signature& sig, Address& out) const noexcept {
  if (ctx_ == nullptr) return Status::CryptoUnavailable;
  // signature_parse normalises 0/1 to 27/28; in the struct only 27/28 are valid, so
  // one signature has one in-memory form.
  if (sig.v != 27 && sig.v != 28) return Status::BadRecoveryId;
  const int recid = sig.v - 27;
  if (!signature_s_is_low(sig.s)) return Status::HighS;
  uint8_t compact[64];
  std::memcpy(compact, sig.r, 32);
  std::memcpy(compact + 32, sig.s, 32);
  secp256k1_ecdsa_recoverable_signature rsig;
  if (!secp256k1_ecdsa_recoverable_signature_parse_compact(ctx_, &rsig, compact, recid)) return Status::BadSignature;
  // parse_compact accepts r or s = 0 only to fail later; recover rejects them.
  secp256k1_pubkey pub;
  if (!secp256k1_ecdsa_recover(ctx_, &pub, &rsig, digest.bytes)) return Status::BadSignature;
  pubkey_address(ctx_, pub, out);
  return Status::Ok;
}

Status Signer::recover_eth(const Hash32& hash, const Signature& sig, Address& out) const noexcept {
  return recover_digest(eth_sign_hash(hash), sig, out);
}

Status Signer::verify_eth(const Hash32& hash, const Signature& sig, const Address& expected) const noexcept {
  Address got;
  const Status st = recover_eth(hash, sig, got);
  if (st != Status::Ok) return st;
  return got == expected ? Status::Ok : Status::WrongSigner;
}

}  // namespace picopay
