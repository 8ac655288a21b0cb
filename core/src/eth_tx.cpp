// picopay core: the device's own deposit transaction (eth_tx.hpp).
#include "picopay/eth_tx.hpp"

#include <cstring>

#include "picopay/keccak.hpp"

namespace picopay {

namespace {

void put_word(uint8_t*& p, const U256& v) noexcept {
  u256_to_be32(v, p);
  p += 32;
}
void put_word_u64(uint8_t*& p, uint64_t v) noexcept { put_word(p, U256::from_u64(v)); }

// RLP (Yellow Paper, Appendix B) into a caller's buffer whose size was checked before.
struct Rlp {
  uint8_t* p;
  // A header for a string (base 0x80) or a list (base 0xc0) of `len` bytes of payload.
  void header(uint8_t base, size_t len) noexcept {
    if (len <= 55) {
      *p++ = static_cast<uint8_t>(base + len);
      return;
    }
    uint8_t n = 0;
    for (size_t v = len; v != 0; v >>= 8) ++n;
    *p++ = static_cast<uint8_t>(base + 55 + n);
    for (uint8_t i = n; i > 0; --i) *p++ = static_cast<uint8_t>(len >> (8 * (i - 1)));
  }
  static size_t header_size(size_t len) noexcept {
    size_t n = 1;
    if (len > 55)
      for (size_t v = len; v != 0; v >>= 8) ++n;
    return n;
  }
  // A byte string; a single byte below 0x80 is its own encoding.
  void bytes(const uint8_t* d, size_t len) noexcept {
    if (len == 1 && d[0] < 0x80) {
      *p++ = d[0];
      return;
    }
    header(0x80, len);
    std::memcpy(p, d, len);
    p += len;
  }
  static size_t bytes_size(const uint8_t* d, size_t len) noexcept {
    return (len == 1 && d[0] < 0x80) ? 1 : header_size(len) + len;
  }
  // An unsigned integer: minimal big-endian, zero is the empty string.
  void uint(const U256& v) noexcept {
    uint8_t be[32];
    u256_to_be32(v, be);
    const size_t n = u256_byte_length(v);
    bytes(be + 32 - n, n);
  }
  static size_t uint_size(const U256& v) noexcept {
    uint8_t be[32];
    u256_to_be32(v, be);
    const size_t n = u256_byte_length(v);
    return bytes_size(be + 32 - n, n);
  }
  void uint64(uint64_t v) noexcept { uint(U256::from_u64(v)); }
};

// The 9 fields of a legacy transaction; the calldata is written in place (at `data`,
// inside the list) by the caller's encode step. `tail` holds the last three fields:
// (chainId, 0, 0) for the signing hash, (v, r, s) for the raw transaction.
struct LegacyTail {
  U256 a, b, c;
};

size_t legacy_size(const EthTxParams& p, const U256& value, const LegacyTail& t, size_t* payload) noexcept {
  const size_t n = Rlp::uint_size(U256::from_u64(p.nonce)) + Rlp::uint_size(p.gasPriceWei) +
                   Rlp::uint_size(U256::from_u64(p.gasLimit)) + (1 + 20) + Rlp::uint_size(value) +
                   Rlp::header_size(kUserAuthorizedUpdateCalldataSize) + kUserAuthorizedUpdateCalldataSize +
                   Rlp::uint_size(t.a) + Rlp::uint_size(t.b) + Rlp::uint_size(t.c);
  *payload = n;
  return Rlp::header_size(n) + n;
}

// Writes the legacy transaction list into out (size checked by the caller).
Status legacy_write(const ChannelState& s, const Signature& sigHub, const EthTxParams& p, const LegacyTail& t,
                    uint8_t* out, size_t cap, size_t* written) noexcept {
  size_t payload = 0;
  const size_t total = legacy_size(p, s.pendingDepositWeiUser, t, &payload);
  if (total > cap) {
    *written = total;
    return Status::BufferTooSmall;
  }
  Rlp w{out};
  w.header(0xc0, payload);
  w.uint64(p.nonce);
  w.uint(p.gasPriceWei);
  w.uint64(p.gasLimit);
  w.bytes(s.contractAddress.bytes, 20);
  w.uint(s.pendingDepositWeiUser);
  w.header(0x80, kUserAuthorizedUpdateCalldataSize);
  size_t n = 0;
  const Status e = encode_user_authorized_update_call(s, sigHub, w.p, kUserAuthorizedUpdateCalldataSize, &n);
  if (e != Status::Ok) return e;
  w.p += n;
  w.uint(t.a);
  w.uint(t.b);
  w.uint(t.c);
  *written = static_cast<size_t>(w.p - out);
  return Status::Ok;
}

}  // namespace

Status encode_user_authorized_update_call(const ChannelState& s, const Signature& sigHub, uint8_t* out, size_t cap,
                                          size_t* written) noexcept {
  *written = kUserAuthorizedUpdateCalldataSize;
  if (cap < kUserAuthorizedUpdateCalldataSize) return Status::BufferTooSmall;
  uint8_t* p = out;
  std::memcpy(p, kUserAuthorizedUpdateSelector, 4);
  p += 4;
  // address recipient (left-padded to a word)
  std::memset(p, 0, 12);
  std::memcpy(p + 12, s.recipient.bytes, 20);
  p += 32;
  // uint256[2] weiBalances [hub, user], uint256[2] tokenBalances [hub, user]
  put_word(p, s.balanceWeiHub);
  put_word(p, s.balanceWeiUser);
  put_word(p, s.balanceTokenHub);
  put_word(p, s.balanceTokenUser);
  // uint256[4] pendingWeiUpdates [depositHub, withdrawalHub, depositUser, withdrawalUser], tokens alike
  put_word(p, s.pendingDepositWeiHub);
  put_word(p, s.pendingWithdrawalWeiHub);
  put_word(p, s.pendingDepositWeiUser);
  put_word(p, s.pendingWithdrawalWeiUser);
  put_word(p, s.pendingDepositTokenHub);
  put_word(p, s.pendingWithdrawalTokenHub);
  put_word(p, s.pendingDepositTokenUser);
  put_word(p, s.pendingWithdrawalTokenUser);
  // uint256[2] txCount [global, chain], bytes32 threadRoot, uint256 threadCount, uint256 timeout
  put_word_u64(p, s.txCountGlobal);
  put_word_u64(p, s.txCountChain);
  std::memcpy(p, s.threadRoot.bytes, 32);
  p += 32;
  put_word_u64(p, s.threadCount);
  put_word_u64(p, s.timeout);
  // string sigHub: the offset of its tail (after the 19 head words), its length, its
  // bytes right-padded to a word boundary.
  put_word_u64(p, 19 * 32);
  put_word_u64(p, kSignatureTextSize - 1);
  char text[kSignatureTextSize];
  signature_to_hex(sigHub, text);
  std::memset(p, 0, 160);
  std::memcpy(p, text, kSignatureTextSize - 1);
  return Status::Ok;
}

Status eth_tx_check_bounds(const EthTxParams& p, const EthTxBounds& b) noexcept {
  if (p.chainId != b.chainId) return Status::WrongContract;
  if (p.gasLimit == 0 || p.gasPriceWei > b.maxGasPriceWei) return Status::OutOfBounds;
  U256 fee{};
  if (u256_mul(p.gasPriceWei, U256::from_u64(p.gasLimit), fee) != Status::Ok || fee > b.maxFeeWei)
    return Status::OutOfBounds;
  return Status::Ok;
}

Status sign_user_deposit_tx(const Signer& signer, const PrivateKey& key, const SignedChannelState& s,
                            const EthTxParams& p, const EthTxBounds& b, uint8_t* out, size_t cap, size_t* written,
                            Hash32* txHash) noexcept {
  *written = 0;
  if (s.state.pendingDepositWeiUser.is_zero() || !s.hasSigHub || !s.hasSigUser) return Status::BadArgs;
  Status e = eth_tx_check_bounds(p, b);
  if (e != Status::Ok) return e;
  if (cap < kMaxUserAuthorizedUpdateTx) {
    *written = kMaxUserAuthorizedUpdateTx;
    return Status::BufferTooSmall;
  }
  // EIP-155: sign keccak256(rlp([nonce, gasPrice, gasLimit, to, value, data, chainId, 0, 0])).
  size_t n = 0;
  e = legacy_write(s.state, s.sigHub, p, LegacyTail{U256::from_u64(p.chainId), U256::zero(), U256::zero()}, out, cap,
                   &n);
  if (e != Status::Ok) return e;
  Hash32 digest{};
  keccak256(out, n, digest.bytes);
  Signature sig{};
  e = signer.sign_digest(key, digest, sig);
  if (e != Status::Ok) return e;
  // v = chainId * 2 + 35 + recovery id (the signer's v is 27 + recovery id).
  U256 v{};
  if (u256_add(U256::from_u64(p.chainId), U256::from_u64(p.chainId), v) != Status::Ok ||
      u256_add(v, U256::from_u64(35u + (sig.v - 27u)), v) != Status::Ok)
    return Status::OutOfBounds;
  U256 r{}, sv{};
  (void)u256_from_be(sig.r, 32, r);
  (void)u256_from_be(sig.s, 32, sv);
  e = legacy_write(s.state, s.sigHub, p, LegacyTail{v, r, sv}, out, cap, &n);
  if (e != Status::Ok) return e;
  *written = n;
  if (txHash != nullptr) keccak256(out, n, txHash->bytes);
  return Status::Ok;
}

// ---- relay messages ----

namespace {
uint8_t* put_u64(uint8_t* p, uint64_t v) noexcept {
  for (int i = 7; i >= 0; --i) *p++ = static_cast<uint8_t>(v >> (8 * i));
  return p;
}
uint64_t get_u64(const uint8_t*& p) noexcept {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | *p++;
  return v;
}
Status check_len(const uint8_t* in, size_t len, uint8_t kind, size_t want) noexcept {
  if (len == 0) return Status::Truncated;
  if (in[0] != kind) return Status::BadKind;
  if (len < want) return Status::Truncated;
  if (len > want) return Status::TrailingBytes;
  return Status::Ok;
}
}  // namespace

void relay_offer_encode(const RelayOfferMsg& m, uint8_t out[kRelayOfferSize]) noexcept {
  uint8_t* p = out;
  *p++ = kRelayOffer;
  p = put_u64(p, m.tx.chainId);
  p = put_u64(p, m.tx.nonce);
  u256_to_be32(m.tx.gasPriceWei, p);
  p += 32;
  p = put_u64(p, m.tx.gasLimit);
  p = put_u64(p, m.facts.txCountGlobal);
  p = put_u64(p, m.facts.txCountChain);
  *p++ = m.facts.status == ChainChannelStatus::Open ? 0 : 1;
  (void)put_u64(p, m.facts.blockTime);
}

Status relay_offer_decode(const uint8_t* in, size_t len, RelayOfferMsg& out) noexcept {
  const Status e = check_len(in, len, kRelayOffer, kRelayOfferSize);
  if (e != Status::Ok) return e;
  const uint8_t* p = in + 1;
  RelayOfferMsg m{};
  m.tx.chainId = get_u64(p);
  m.tx.nonce = get_u64(p);
  (void)u256_from_be(p, 32, m.tx.gasPriceWei);
  p += 32;
  m.tx.gasLimit = get_u64(p);
  m.facts.txCountGlobal = get_u64(p);
  m.facts.txCountChain = get_u64(p);
  const uint8_t st = *p++;
  if (st > 1) return Status::OutOfBounds;
  m.facts.status = st == 0 ? ChainChannelStatus::Open : ChainChannelStatus::InDispute;
  m.facts.blockTime = get_u64(p);
  m.facts.known = true;
  m.facts.emptied = false;
  out = m;
  return Status::Ok;
}

void relay_receipt_encode(const RelayReceiptMsg& m, uint8_t out[kRelayReceiptSize]) noexcept {
  uint8_t* p = out;
  *p++ = kRelayReceipt;
  std::memcpy(p, m.txHash.bytes, 32);
  p += 32;
  *p++ = m.status;
  p = put_u64(p, m.gasUsed);
  (void)put_u64(p, m.blockNumber);
}

Status relay_receipt_decode(const uint8_t* in, size_t len, RelayReceiptMsg& out) noexcept {
  const Status e = check_len(in, len, kRelayReceipt, kRelayReceiptSize);
  if (e != Status::Ok) return e;
  const uint8_t* p = in + 1;
  RelayReceiptMsg m{};
  std::memcpy(m.txHash.bytes, p, 32);
  p += 32;
  m.status = *p++;
  if (m.status > 2) return Status::OutOfBounds;
  m.gasUsed = get_u64(p);
  m.blockNumber = get_u64(p);
  out = m;
  return Status::Ok;
}

}  // namespace picopay
