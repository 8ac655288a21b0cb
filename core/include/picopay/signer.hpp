// picopay core: secp256k1 ECDSA for Ethereum, on libsecp256k1 with a preallocated
// context (no heap: the context lives inside the Signer object).
//
// Signing is RFC 6979 deterministic and always low-S (libsecp256k1). Verification
// rejects high-S (EIP-2) and v outside {27, 28} (parsing normalises 0/1 to 27/28).
// Addresses are the last 20 bytes of keccak256(uncompressed public key without 0x04)
// (Yellow Paper, Appendix F).
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/status.hpp"
#include "picopay/types.hpp"

struct secp256k1_context_struct;

namespace picopay {

class Signer {
 public:
  // Bytes reserved inside the object for the libsecp256k1 context
  // (secp256k1_context_preallocated_size(SIGN | VERIFY) must not exceed it).
  static constexpr size_t kContextBytes = 256;  // libsecp256k1 0.2-0.5 need 208

  Signer() noexcept = default;
  ~Signer() noexcept;
  Signer(const Signer&) = delete;
  Signer& operator=(const Signer&) = delete;

  // Creates the context in place. `seed32` (optional, 32 bytes of entropy) blinds the
  // signing computation against side channels (secp256k1_context_randomize).
  // Errors: CryptoUnavailable if the context does not fit kContextBytes or blinding fails.
  [[nodiscard]] Status init(const uint8_t* seed32 = nullptr) noexcept;
  bool ready() const noexcept { return ctx_ != nullptr; }

  // The Ethereum address of `key`. Errors: BadPrivateKey (0 or >= n), CryptoUnavailable.
  [[nodiscard]] Status address_of(const PrivateKey& key, Address& out) const noexcept;

  // Signs a 32-byte digest as is (no prefix): for transactions (EIP-155/EIP-1559).
  // v = 27 + recovery id. Errors: BadPrivateKey, CryptoUnavailable.
  [[nodiscard]] Status sign_digest(const PrivateKey& key, const Hash32& digest, Signature& out) const noexcept;

  // eth_sign: signs eth_sign_hash(hash) (EIP-191). This is how channel and thread state
  // hashes are signed. Errors: BadPrivateKey, CryptoUnavailable.
  [[nodiscard]] Status sign_eth(const PrivateKey& key, const Hash32& hash, Signature& out) const noexcept;

  // Recovers the signer of a raw digest.
  // Errors: BadRecoveryId (v not 27/28), HighS (s > n/2, EIP-2), BadSignature (r or s
  // zero or >= n, or no public key recovers), CryptoUnavailable.
  [[nodiscard]] Status recover_digest(const Hash32& digest, const Signature& sig, Address& out) const noexcept;

  // Recovers the signer of eth_sign_hash(hash). Errors: as recover_digest.
  [[nodiscard]] Status recover_eth(const Hash32& hash, const Signature& sig, Address& out) const noexcept;

  // Checks `sig` is `expected`'s eth_sign signature over `hash`.
  // Errors: as recover_digest, plus WrongSigner if it recovers to another address.
  [[nodiscard]] Status verify_eth(const Hash32& hash, const Signature& sig, const Address& expected) const noexcept;

 private:
  alignas(16) uint8_t ctx_buf_[kContextBytes];
  secp256k1_context_struct* ctx_ = nullptr;
};

// True if s (32 bytes big-endian) is <= n/2, the secp256k1 half order (EIP-2).
bool signature_s_is_low(const uint8_t s[32]) noexcept;

}  // namespace picopay
