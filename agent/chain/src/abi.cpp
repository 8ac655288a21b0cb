// Solidity ABI and RLP.
#include "picopay/chain/abi.hpp"

#include <cstring>

#include "picopay/keccak.hpp"

namespace picopay::chain {

Hash32 keccak_text(const std::string& s) {
  Hash32 h;
  keccak256(reinterpret_cast<const uint8_t*>(s.data()), s.size(), h.bytes);
  return h;
}

Bytes selector(const std::string& signature) {
  Hash32 h = keccak_text(signature);
  return Bytes(h.bytes, h.bytes + 4);
}

static Bytes word_of(const U256& v) {
  Bytes w(32);
  u256_to_be32(v, w.data());
  return w;
}

AbiEncoder& AbiEncoder::address(const Address& a) {
  Bytes w(32, 0);
  std::memcpy(w.data() + 12, a.bytes, 20);
  items_.push_back({false, std::move(w)});
  return *this;
}

AbiEncoder& AbiEncoder::u256(const U256& v) {
  items_.push_back({false, word_of(v)});
  return *this;
}

AbiEncoder& AbiEncoder::bytes32(const Hash32& h) {
  items_.push_back({false, Bytes(h.bytes, h.bytes + 32)});
  return *this;
}

AbiEncoder& AbiEncoder::boolean(bool b) { return u64(b ? 1 : 0); }

AbiEncoder& AbiEncoder::bytes(const Bytes& b) {
  Bytes d = word_of(U256::from_u64(b.size()));
  d.insert(d.end(), b.begin(), b.end());
  d.resize(32 + (b.size() + 31) / 32 * 32, 0);
  items_.push_back({true, std::move(d)});
  return *this;
}

AbiEncoder& AbiEncoder::string(const std::string& s) { return bytes(Bytes(s.begin(), s.end())); }

Bytes AbiEncoder::finish(const Bytes& sel) const {
  Bytes out = sel;
  size_t head = items_.size() * 32;
  Bytes tail;
  for (const auto& it : items_) {
    if (it.dynamic) {
      Bytes off = word_of(U256::from_u64(head + tail.size()));
      out.insert(out.end(), off.begin(), off.end());
      tail.insert(tail.end(), it.data.begin(), it.data.end());
    } else {
      out.insert(out.end(), it.data.begin(), it.data.end());
    }
  }
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

static Error short_data() { return make_error(ErrorKind::BadJson, "ABI data too short"); }

Result<U256> AbiDecoder::u256(size_t i) const {
  size_t at = base_ + i * 32;
  if (at + 32 > d_.size()) return short_data();
  U256 v;
  (void)u256_from_be(d_.data() + at, 32, v);
  return v;
}

Result<uint64_t> AbiDecoder::u64(size_t i) const {
  PPC_TRY(U256 v, u256(i));
  if (!v.fits_u64()) return make_error(ErrorKind::BadJson, "ABI value exceeds 64 bits");
  return v.low64();
}

Result<Address> AbiDecoder::address(size_t i) const {
  size_t at = base_ + i * 32;
  if (at + 32 > d_.size()) return short_data();
  Address a;
  std::memcpy(a.bytes, d_.data() + at + 12, 20);
  return a;
}

Result<Hash32> AbiDecoder::bytes32(size_t i) const {
  size_t at = base_ + i * 32;
  if (at + 32 > d_.size()) return short_data();
  Hash32 h;
  std::memcpy(h.bytes, d_.data() + at, 32);
  return h;
}

Result<bool> AbiDecoder::boolean(size_t i) const {
  PPC_TRY(U256 v, u256(i));
  return !v.is_zero();
}

Result<std::string> AbiDecoder::string(size_t i) const {
  PPC_TRY(uint64_t off, u64(i));
  if (off > d_.size()) return short_data();
  AbiDecoder inner(d_, base_ + off);
  PPC_TRY(uint64_t len, inner.u64(0));
  size_t at = base_ + off + 32;
  if (len > d_.size() || at + len > d_.size()) return short_data();
  return std::string(reinterpret_cast<const char*>(d_.data() + at), len);
}

std::string revert_reason(const Bytes& data) {
  static const Bytes sel = selector("Error(string)");
  if (data.size() < 4 + 64 || !std::equal(sel.begin(), sel.end(), data.begin())) return "";
  AbiDecoder d(data, 4);
  auto s = d.string(0);
  return s ? *s : "";
}

// ---------------------------------------------------------------- RLP

Rlp Rlp::uint(const U256& v) {
  uint8_t be[32];
  u256_to_be32(v, be);
  size_t n = u256_byte_length(v);
  return bytes(Bytes(be + 32 - n, be + 32));
}

static void put_length(Bytes& out, size_t len, uint8_t short_base, uint8_t long_base) {
  if (len < 56) {
    out.push_back(static_cast<uint8_t>(short_base + len));
    return;
  }
  uint8_t tmp[8];
  int n = 0;
  for (size_t l = len; l; l >>= 8) tmp[n++] = static_cast<uint8_t>(l & 0xff);
  out.push_back(static_cast<uint8_t>(long_base + n));
  while (n) out.push_back(tmp[--n]);
}

static void encode_into(const Rlp& it, Bytes& out) {
  if (!it.is_list) {
    if (it.str.size() == 1 && it.str[0] < 0x80) {
      out.push_back(it.str[0]);
      return;
    }
    put_length(out, it.str.size(), 0x80, 0xb7);
    out.insert(out.end(), it.str.begin(), it.str.end());
    return;
  }
  Bytes payload;
  for (const auto& x : it.list) encode_into(x, payload);
  put_length(out, payload.size(), 0xc0, 0xf7);
  out.insert(out.end(), payload.begin(), payload.end());
}

Bytes rlp_encode(const Rlp& item) {
  Bytes out;
  encode_into(item, out);
  return out;
}

static Error bad_rlp(const char* why) { return make_error(ErrorKind::BadInput, std::string("bad RLP: ") + why); }

static Result<Rlp> decode_at(const Bytes& d, size_t& pos, size_t end, int depth) {
  if (depth > 16) return bad_rlp("nesting too deep");
  if (pos >= end) return bad_rlp("truncated");
  uint8_t b = d[pos++];
  auto read_len = [&](size_t n, size_t& out) -> bool {
    if (n > 8 || pos + n > end || (n > 0 && d[pos] == 0)) return false;
    out = 0;
    for (size_t i = 0; i < n; ++i) out = (out << 8) | d[pos++];
    return out >= 56;
  };
  if (b < 0x80) return Rlp::bytes(Bytes{b});
  if (b <= 0xbf) {
    size_t len;
    if (b <= 0xb7) {
      len = b - 0x80u;
    } else if (!read_len(b - 0xb7u, len)) {
      return bad_rlp("bad long string length");
    }
    if (len > end - pos) return bad_rlp("string runs past the end");  // no wrap-around for huge lengths
    if (len == 1 && d[pos] < 0x80) return bad_rlp("non-canonical single byte");
    Rlp r = Rlp::bytes(Bytes(d.begin() + static_cast<long>(pos), d.begin() + static_cast<long>(pos + len)));
    pos += len;
    return r;
  }
  size_t len;
  if (b <= 0xf7) {
    len = b - 0xc0u;
  } else if (!read_len(b - 0xf7u, len)) {
    return bad_rlp("bad long list length");
  }
  if (len > end - pos) return bad_rlp("list runs past the end");  // no wrap-around for huge lengths
  size_t lend = pos + len;
  Rlp r = Rlp::list_of({});
  while (pos < lend) {
    PPC_TRY(Rlp x, decode_at(d, pos, lend, depth + 1));
    r.list.push_back(std::move(x));
  }
  return r;
}

Result<Rlp> rlp_decode(const Bytes& data) {
  size_t pos = 0;
  PPC_TRY(Rlp r, decode_at(data, pos, data.size(), 0));
  if (pos != data.size()) return bad_rlp("trailing bytes");
  return r;
}

}  // namespace picopay::chain
