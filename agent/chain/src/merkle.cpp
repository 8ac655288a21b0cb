// Thread Merkle tree as the Connext v1 client builds it, and v1-format proofs.
// Tree: leaves; if their count is odd append a zero hash; sort ascending; dedupe; each
// level hashes pairs as keccak(min ++ max); a lone last element is carried up unchanged.
// Proof (for ChannelManager._isContained): leaf ++ the sibling at every level that has one.
#include <algorithm>
#include <cstring>

#include "picopay/chain/manager.hpp"
#include "picopay/keccak.hpp"

namespace picopay::chain {

static bool less(const Hash32& a, const Hash32& b) { return hash32_cmp(a, b) < 0; }

static Hash32 pair_hash(const Hash32& a, const Hash32& b) {
  uint8_t buf[64];
  const Hash32& lo = less(a, b) ? a : b;
  const Hash32& hi = less(a, b) ? b : a;
  std::memcpy(buf, lo.bytes, 32);
  std::memcpy(buf + 32, hi.bytes, 32);
  Hash32 h;
  keccak256(buf, 64, h.bytes);
  return h;
}

static std::vector<Hash32> base_level(std::vector<Hash32> leaves) {
  if (leaves.size() % 2 == 1) leaves.push_back(Hash32{});
  std::sort(leaves.begin(), leaves.end(), less);
  leaves.erase(std::unique(leaves.begin(), leaves.end()), leaves.end());
  return leaves;
}

static std::vector<Hash32> next_level(const std::vector<Hash32>& lv) {
  std::vector<Hash32> up;
  for (size_t i = 0; i < lv.size(); i += 2) up.push_back(i + 1 < lv.size() ? pair_hash(lv[i], lv[i + 1]) : lv[i]);
  return up;
}

Hash32 thread_tree_root(const std::vector<Hash32>& leaves) {
  if (leaves.empty()) return Hash32{};
  std::vector<Hash32> lv = base_level(leaves);
  while (lv.size() > 1) lv = next_level(lv);
  return lv[0];
}

Result<Bytes> thread_proof(const std::vector<Hash32>& leaves, const Hash32& leaf) {
  std::vector<Hash32> lv = base_level(leaves);
  auto it = std::find(lv.begin(), lv.end(), leaf);
  if (leaves.empty() || it == lv.end())
    return make_error(ErrorKind::NotFound, "thread state hash " + hash_hex(leaf) + " is not a leaf of the tree");
  size_t idx = static_cast<size_t>(it - lv.begin());
  Bytes proof(leaf.bytes, leaf.bytes + 32);
  while (lv.size() > 1) {
    size_t sib = (idx % 2 == 0) ? idx + 1 : idx - 1;
    if (sib < lv.size()) proof.insert(proof.end(), lv[sib].bytes, lv[sib].bytes + 32);
    lv = next_level(lv);
    idx /= 2;
  }
  return proof;
}

bool proof_is_contained(const Hash32& leaf, const Bytes& proof, const Hash32& root) {
  if (proof.size() < 32 || proof.size() % 32 != 0) return false;
  if (std::memcmp(proof.data(), leaf.bytes, 32) != 0) return false;
  Hash32 cur = leaf;
  for (size_t i = 32; i < proof.size(); i += 32) {
    Hash32 e;
    std::memcpy(e.bytes, proof.data() + i, 32);
    cur = pair_hash(cur, e);
  }
  return cur == root;
}

}  // namespace picopay::chain
