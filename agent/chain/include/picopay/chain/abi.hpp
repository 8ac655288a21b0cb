// picopay chain adapter: Solidity ABI encoding/decoding (the types ChannelManager uses)
// and RLP (Yellow Paper, Appendix B).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "picopay/chain/error.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::chain {

using Bytes = std::vector<uint8_t>;

// keccak256 of a text (function or event signature).
Hash32 keccak_text(const std::string& s);
// The 4-byte selector of "name(type,...)".
Bytes selector(const std::string& signature);

// Encodes a call's arguments in order (Solidity ABI, head/tail). Static items (address,
// uint256, bytes32, bool, fixed arrays of them) go in the head; bytes and string are
// dynamic (offset in the head, length + right-padded data in the tail).
class AbiEncoder {
 public:
  AbiEncoder& address(const Address& a);
  AbiEncoder& u256(const U256& v);
  AbiEncoder& u64(uint64_t v) { return u256(U256::from_u64(v)); }
  AbiEncoder& bytes32(const Hash32& h);
  AbiEncoder& boolean(bool b);
  AbiEncoder& bytes(const Bytes& b);         // dynamic `bytes`
  AbiEncoder& string(const std::string& s);  // dynamic `string`
  // selector (may be empty: constructor arguments) ++ head ++ tail
  Bytes finish(const Bytes& selector4) const;

 private:
  struct Item {
    bool dynamic;
    Bytes data;  // static: 32 bytes; dynamic: length word + padded data
  };
  std::vector<Item> items_;
};

// Reads 32-byte words from return data or event data.
class AbiDecoder {
 public:
  explicit AbiDecoder(const Bytes& data, size_t base = 0) : d_(data), base_(base) {}
  size_t words() const noexcept { return (d_.size() - base_) / 32; }
  // Errors: BadJson ("ABI data too short") when word i is missing.
  Result<U256> u256(size_t i) const;
  Result<uint64_t> u64(size_t i) const;  // BadJson if it does not fit
  Result<Address> address(size_t i) const;
  Result<Hash32> bytes32(size_t i) const;
  Result<bool> boolean(size_t i) const;
  Result<std::string> string(size_t i) const;  // a dynamic string whose offset is word i

 private:
  const Bytes& d_;
  size_t base_;
};

// Decodes Error(string) revert data to its reason ("" if it is not that shape).
std::string revert_reason(const Bytes& data);

// RLP items. An item is a byte string or a list of items.
struct Rlp {
  bool is_list = false;
  Bytes str;
  std::vector<Rlp> list;
  static Rlp bytes(Bytes b) { Rlp r; r.str = std::move(b); return r; }
  static Rlp uint(const U256& v);  // minimal big-endian, 0 -> empty string
  static Rlp uint(uint64_t v) { return uint(U256::from_u64(v)); }
  static Rlp address(const Address& a) { return bytes(Bytes(a.bytes, a.bytes + 20)); }
  static Rlp list_of(std::vector<Rlp> items) { Rlp r; r.is_list = true; r.list = std::move(items); return r; }
};
Bytes rlp_encode(const Rlp& item);
// Decodes exactly one item spanning all of `data`. Errors: BadInput (malformed RLP).
Result<Rlp> rlp_decode(const Bytes& data);

}  // namespace picopay::chain
