// Connext v1 states: the docs/design.md §3 reference vector, exact preimage layouts, the
// eth_sign hash, the thread Merkle root (against an independent reimplementation),
// committed totals, pending flags and counter bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "picopay/keccak.hpp"
#include "picopay/signer.hpp"
#include "picopay/state.hpp"
#include "test_util.hpp"

using picopay::Address;
using picopay::ChannelState;
using picopay::Hash32;
using picopay::Status;
using picopay::ThreadState;
using picopay::U256;
using picopay_test::addr;
using picopay_test::h32;
using picopay_test::Rng;
using picopay_test::to_hex;
using picopay_test::u;

namespace {

ChannelState reference_state() {
  ChannelState s = picopay::channel_state_zero();
  s.contractAddress = addr("0x7d73424a8256c0b2ba245e5d5a3de8820e45f390");
  s.user = addr("0x1563915e194D8CfBA1943570603F7606A3115508");
  s.recipient = s.user;
  s.pendingDepositWeiUser = u(100);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  return s;
}

Hash32 keccak(const std::vector<uint8_t>& v) {
  Hash32 h;
  picopay::keccak256(v.data(), v.size(), h.bytes);
  return h;
}

std::vector<uint8_t> preimage(const ChannelState& s) {
  std::vector<uint8_t> v(picopay::kChannelPreimageSize);
  picopay::channel_preimage(s, v.data());
  return v;
}
std::vector<uint8_t> preimage(const ThreadState& s) {
  std::vector<uint8_t> v(picopay::kThreadPreimageSize);
  picopay::thread_preimage(s, v.data());
  return v;
}

// A value whose 32 big-endian bytes are all non-zero and distinct from neighbours.
U256 busy_u256(uint8_t seed) {
  uint8_t be[32];
  for (int i = 0; i < 32; ++i) be[i] = static_cast<uint8_t>(seed + 7 * i) | 1;
  U256 v;
  EXPECT_EQ(picopay::u256_from_be(be, 32, v), Status::Ok);
  return v;
}
Address busy_address(uint8_t seed) {
  Address a;
  for (int i = 0; i < 20; ++i) a.bytes[i] = static_cast<uint8_t>(seed + 13 * i) | 1;
  return a;
}
std::vector<uint8_t> be32(const U256& v) {
  std::vector<uint8_t> b(32);
  picopay::u256_to_be32(v, b.data());
  return b;
}
std::vector<uint8_t> be32(uint64_t v) { return be32(u(v)); }
std::vector<uint8_t> padded(const Address& a) {
  std::vector<uint8_t> b(12, 0);
  b.insert(b.end(), a.bytes, a.bytes + 20);
  return b;
}
std::vector<uint8_t> bytes_of(const Address& a) { return std::vector<uint8_t>(a.bytes, a.bytes + 20); }

struct FieldCase {
  const char* name;
  size_t offset;
  std::function<void(ChannelState&)> set;
  std::vector<uint8_t> window;  // what the preimage must hold at offset
};

// Independent thread root: pad odd with zero, sort, dedupe, pairwise keccak(min||max),
// lone element carried up.
Hash32 ref_root(std::vector<Hash32> leaves) {
  if (leaves.empty()) return Hash32{};
  if (leaves.size() % 2 == 1) leaves.push_back(Hash32{});
  auto less = [](const Hash32& a, const Hash32& b) { return std::memcmp(a.bytes, b.bytes, 32) < 0; };
  std::sort(leaves.begin(), leaves.end(), less);
  leaves.erase(std::unique(leaves.begin(), leaves.end()), leaves.end());
  while (leaves.size() > 1) {
    std::vector<Hash32> next;
    for (size_t i = 0; i < leaves.size(); i += 2) {
      if (i + 1 == leaves.size()) {
        next.push_back(leaves[i]);
        continue;
      }
      const Hash32& a = less(leaves[i], leaves[i + 1]) ? leaves[i] : leaves[i + 1];
      const Hash32& b = less(leaves[i], leaves[i + 1]) ? leaves[i + 1] : leaves[i];
      std::vector<uint8_t> cat(a.bytes, a.bytes + 32);
      cat.insert(cat.end(), b.bytes, b.bytes + 32);
      next.push_back(keccak(cat));
    }
    leaves = next;
  }
  return leaves[0];
}

Hash32 root_of(std::vector<Hash32> leaves) {
  size_t n = leaves.size();
  leaves.resize(n + 1);
  Hash32 root;
  std::memset(root.bytes, 0xEE, 32);
  Status st = picopay::thread_root_in_place(leaves.data(), n, n + 1, root);
  EXPECT_EQ(st, Status::Ok);
  return root;
}

std::vector<Hash32> random_hashes(Rng& rng, size_t n) {
  std::vector<Hash32> v(n);
  for (auto& h : v) rng.fill(h.bytes, 32);
  return v;
}

}  // namespace

// ----------------------------------------------------------------- reference vector

TEST(ChannelStateHash, ConnextReferenceVector) {
  ChannelState s = reference_state();
  EXPECT_EQ(picopay::channel_hash(s), h32("0x94d622244e6754b4b88fc5b13467fed24d6722f6416890d462b9dc109ba0dd97"));
}

TEST(ChannelStateHash, ConnextReferenceSignature) {
  picopay::Signer signer;
  ASSERT_EQ(signer.init(), Status::Ok);
  picopay::PrivateKey key;
  std::memset(key.bytes, 0x22, 32);
  picopay::Signature sig;
  ASSERT_EQ(signer.sign_eth(key, picopay::channel_hash(reference_state()), sig), Status::Ok);
  char text[picopay::kSignatureTextSize];
  picopay::signature_to_hex(sig, text);
  EXPECT_EQ(std::string(text),
            "0x16f1c52cfdfcac6b24a7eb7cef66e98568dea5c7fc49afbbe25b786d1da1fd111d3f7c772a27df6a61fdb9010d9ace38a5bbeb0a"
            "83902a1ba0c6fc61b97648851c");
}

TEST(EthSignHash, ReferenceValueAndDefinition) {
  Hash32 h = h32("0x94d622244e6754b4b88fc5b13467fed24d6722f6416890d462b9dc109ba0dd97");
  // ethers.hashMessage(getBytes(h))
  EXPECT_EQ(picopay::eth_sign_hash(h), h32("0x41c8df5c7df57165955b0d4a096e75ce8c8b11efff326d5491613c3d89e168a2"));
  Rng rng(191);
  for (int i = 0; i < 50; ++i) {
    Hash32 x;
    rng.fill(x.bytes, 32);
    std::string prefix = "\x19" "Ethereum Signed Message:\n32";
    std::vector<uint8_t> msg(prefix.begin(), prefix.end());
    msg.insert(msg.end(), x.bytes, x.bytes + 32);
    ASSERT_EQ(msg.size(), 60u);
    EXPECT_EQ(picopay::eth_sign_hash(x), keccak(msg));
  }
}

// ----------------------------------------------------------------- preimage layout

TEST(ChannelPreimage, SizeAndHashIsKeccakOfPreimage) {
  EXPECT_EQ(picopay::kChannelPreimageSize, 628u);
  ChannelState s = reference_state();
  std::vector<uint8_t> p = preimage(s);
  EXPECT_EQ(picopay::channel_hash(s), keccak(p));
  // reference state layout spot checks
  EXPECT_EQ(to_hex(p.data(), 20), "7d73424a8256c0b2ba245e5d5a3de8820e45f390");
  EXPECT_EQ(to_hex(p.data() + 20, 32), std::string(24, '0') + "1563915e194d8cfba1943570603f7606a3115508");
}

TEST(ChannelPreimage, EveryFieldWritesExactlyItsWindow) {
  std::vector<FieldCase> cases;
  auto add_u = [&](const char* name, size_t off, U256 ChannelState::*m, uint8_t seed) {
    U256 v = busy_u256(seed);
    cases.push_back({name, off, [m, v](ChannelState& s) { s.*m = v; }, be32(v)});
  };
  Address ca = busy_address(1), ua = busy_address(2), ra = busy_address(3);
  cases.push_back({"contractAddress", 0, [ca](ChannelState& s) { s.contractAddress = ca; }, bytes_of(ca)});
  cases.push_back({"user", 20, [ua](ChannelState& s) { s.user = ua; }, padded(ua)});
  cases.push_back({"recipient", 52, [ra](ChannelState& s) { s.recipient = ra; }, padded(ra)});
  add_u("balanceWeiHub", 84, &ChannelState::balanceWeiHub, 10);
  add_u("balanceWeiUser", 116, &ChannelState::balanceWeiUser, 11);
  add_u("balanceTokenHub", 148, &ChannelState::balanceTokenHub, 12);
  add_u("balanceTokenUser", 180, &ChannelState::balanceTokenUser, 13);
  add_u("pendingDepositWeiHub", 212, &ChannelState::pendingDepositWeiHub, 14);
  add_u("pendingWithdrawalWeiHub", 244, &ChannelState::pendingWithdrawalWeiHub, 15);
  add_u("pendingDepositWeiUser", 276, &ChannelState::pendingDepositWeiUser, 16);
  add_u("pendingWithdrawalWeiUser", 308, &ChannelState::pendingWithdrawalWeiUser, 17);
  add_u("pendingDepositTokenHub", 340, &ChannelState::pendingDepositTokenHub, 18);
  add_u("pendingWithdrawalTokenHub", 372, &ChannelState::pendingWithdrawalTokenHub, 19);
  add_u("pendingDepositTokenUser", 404, &ChannelState::pendingDepositTokenUser, 20);
  add_u("pendingWithdrawalTokenUser", 436, &ChannelState::pendingWithdrawalTokenUser, 21);
  const uint64_t c = 0x0010203040506070ULL;  // <= kMaxCounter, 7 significant bytes
  cases.push_back({"txCountGlobal", 468, [c](ChannelState& s) { s.txCountGlobal = c; }, be32(c)});
  cases.push_back({"txCountChain", 500, [c](ChannelState& s) { s.txCountChain = c + 1; }, be32(c + 1)});
  Hash32 root;
  for (int i = 0; i < 32; ++i) root.bytes[i] = static_cast<uint8_t>(0xA0 + i);
  cases.push_back({"threadRoot", 532, [root](ChannelState& s) { s.threadRoot = root; },
                   std::vector<uint8_t>(root.bytes, root.bytes + 32)});
  cases.push_back({"threadCount", 564, [c](ChannelState& s) { s.threadCount = c + 2; }, be32(c + 2)});
  cases.push_back({"timeout", 596, [c](ChannelState& s) { s.timeout = c + 3; }, be32(c + 3)});
  ASSERT_EQ(cases.size(), 20u);

  const std::vector<uint8_t> base = preimage(picopay::channel_state_zero());
  ASSERT_EQ(base, std::vector<uint8_t>(628, 0));
  size_t covered = 0;
  for (const FieldCase& fc : cases) {
    ChannelState s = picopay::channel_state_zero();
    fc.set(s);
    std::vector<uint8_t> want = base;
    std::copy(fc.window.begin(), fc.window.end(), want.begin() + static_cast<long>(fc.offset));
    EXPECT_EQ(to_hex(preimage(s)), to_hex(want)) << fc.name << " at offset " << fc.offset;
    covered += fc.window.size();
  }
  EXPECT_EQ(covered, 628u) << "windows must tile the whole preimage";
}

TEST(ThreadPreimage, EveryFieldWritesExactlyItsWindow) {
  EXPECT_EQ(picopay::kThreadPreimageSize, 252u);
  struct TCase {
    const char* name;
    size_t offset;
    std::function<void(ThreadState&)> set;
    std::vector<uint8_t> window;
  };
  std::vector<TCase> cases;
  Address ca = busy_address(5), sa = busy_address(6), ra = busy_address(7);
  cases.push_back({"contractAddress", 0, [ca](ThreadState& s) { s.contractAddress = ca; }, bytes_of(ca)});
  cases.push_back({"sender", 20, [sa](ThreadState& s) { s.sender = sa; }, bytes_of(sa)});
  cases.push_back({"receiver", 40, [ra](ThreadState& s) { s.receiver = ra; }, bytes_of(ra)});
  const uint64_t c = 0x001F2E3D4C5B6A79ULL;
  cases.push_back({"threadId", 60, [c](ThreadState& s) { s.threadId = c; }, be32(c)});
  U256 a = busy_u256(30), b = busy_u256(31), d = busy_u256(32), e = busy_u256(33);
  cases.push_back({"balanceWeiSender", 92, [a](ThreadState& s) { s.balanceWeiSender = a; }, be32(a)});
  cases.push_back({"balanceWeiReceiver", 124, [b](ThreadState& s) { s.balanceWeiReceiver = b; }, be32(b)});
  cases.push_back({"balanceTokenSender", 156, [d](ThreadState& s) { s.balanceTokenSender = d; }, be32(d)});
  cases.push_back({"balanceTokenReceiver", 188, [e](ThreadState& s) { s.balanceTokenReceiver = e; }, be32(e)});
  cases.push_back({"txCount", 220, [c](ThreadState& s) { s.txCount = c + 1; }, be32(c + 1)});
  const std::vector<uint8_t> base = preimage(picopay::thread_state_zero());
  ASSERT_EQ(base, std::vector<uint8_t>(252, 0));
  size_t covered = 0;
  for (const TCase& tc : cases) {
    ThreadState s = picopay::thread_state_zero();
    tc.set(s);
    std::vector<uint8_t> want = base;
    std::copy(tc.window.begin(), tc.window.end(), want.begin() + static_cast<long>(tc.offset));
    EXPECT_EQ(to_hex(preimage(s)), to_hex(want)) << tc.name << " at offset " << tc.offset;
    EXPECT_EQ(picopay::thread_hash(s), keccak(preimage(s))) << tc.name;
    covered += tc.window.size();
  }
  EXPECT_EQ(covered, 252u);
}

TEST(StateEquality, EveryFieldParticipates) {
  ChannelState a = reference_state();
  ChannelState b = a;
  EXPECT_EQ(a, b);
  b.timeout = 1;
  EXPECT_NE(a, b);
  b = a;
  b.threadRoot.bytes[31] = 1;
  EXPECT_NE(a, b);
  b = a;
  b.pendingWithdrawalTokenUser = u(1);
  EXPECT_NE(a, b);
  ThreadState t = picopay::thread_state_zero(), t2 = t;
  EXPECT_EQ(t, t2);
  t2.txCount = 1;
  EXPECT_NE(t, t2);
  t2 = t;
  t2.balanceTokenReceiver = u(1);
  EXPECT_NE(t, t2);
}

// ----------------------------------------------------------------- thread root

TEST(ThreadRoot, ZeroLeavesIsZeroHash) {
  Hash32 scratch[1];
  Hash32 root;
  std::memset(root.bytes, 0x5A, 32);
  ASSERT_EQ(picopay::thread_root_in_place(scratch, 0, 1, root), Status::Ok);
  EXPECT_TRUE(root.is_zero());
}

TEST(ThreadRoot, OneLeafIsKeccakOfZeroAndLeaf) {
  Rng rng(1);
  for (int i = 0; i < 20; ++i) {
    Hash32 leaf;
    rng.fill(leaf.bytes, 32);
    std::vector<uint8_t> cat(32, 0);  // zero sorts first (leaf is non-zero)
    cat.insert(cat.end(), leaf.bytes, leaf.bytes + 32);
    EXPECT_EQ(root_of({leaf}), keccak(cat));
  }
}

TEST(ThreadRoot, MatchesIndependentReimplementation) {
  Rng rng(2);
  for (size_t n : {2u, 3u, 4u, 5u, 6u, 7u, 8u, 9u, 16u, 17u, 33u}) {
    for (int trial = 0; trial < 10; ++trial) {
      std::vector<Hash32> leaves = random_hashes(rng, n);
      EXPECT_EQ(root_of(leaves), ref_root(leaves)) << "n = " << n;
    }
  }
}

TEST(ThreadRoot, TwoLeavesByHand) {
  Hash32 a = h32("0x" + std::string(62, '0') + "02"), b = h32("0x" + std::string(62, '0') + "01");
  std::vector<uint8_t> cat(b.bytes, b.bytes + 32);  // sorted: b < a
  cat.insert(cat.end(), a.bytes, a.bytes + 32);
  EXPECT_EQ(root_of({a, b}), keccak(cat));
}

TEST(ThreadRoot, DuplicatesAreDropped) {
  Rng rng(3);
  std::vector<Hash32> l = random_hashes(rng, 2);
  // {a, a, b}: odd -> pad zero -> dedupe {0, a, b}
  EXPECT_EQ(root_of({l[0], l[0], l[1]}), ref_root({l[0], l[0], l[1]}));
  EXPECT_EQ(root_of({l[0], l[0], l[1]}), root_of({l[0], l[1], Hash32{}}));
  // {a, a}: even, dedupe -> {a}: the root is a itself
  EXPECT_EQ(root_of({l[0], l[0]}), l[0]);
}

TEST(ThreadRoot, OrderIndependent) {
  Rng rng(4);
  for (size_t n : {2u, 3u, 5u, 8u}) {
    std::vector<Hash32> leaves = random_hashes(rng, n);
    Hash32 want = root_of(leaves);
    for (int p = 0; p < 20; ++p) {
      for (size_t i = n - 1; i > 0; --i) std::swap(leaves[i], leaves[static_cast<size_t>(rng.below(i + 1))]);
      ASSERT_EQ(root_of(leaves), want) << "n = " << n;
    }
  }
}

TEST(ThreadRoot, BufferTooSmallLeavesInputUntouched) {
  Rng rng(5);
  for (size_t n : {1u, 2u, 3u, 4u}) {
    std::vector<Hash32> leaves = random_hashes(rng, n + 1);
    std::vector<Hash32> copy = leaves;
    Hash32 root{};
    EXPECT_EQ(picopay::thread_root_in_place(leaves.data(), n, n, root), Status::BufferTooSmall) << n;
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(leaves[i], copy[i]) << "leaf " << i << " changed, n = " << n;
  }
}

TEST(ThreadRoot, RootOverThreadHashes) {
  // The real use: leaves are thread_hash of initial states.
  std::vector<Hash32> leaves;
  for (uint64_t id = 1; id <= 5; ++id) {
    ThreadState t = picopay::thread_state_zero();
    t.contractAddress = addr("0x7d73424a8256c0b2ba245e5d5a3de8820e45f390");
    t.sender = busy_address(9);
    t.receiver = busy_address(10);
    t.threadId = id;
    t.balanceWeiSender = u(1000 * id);
    leaves.push_back(picopay::thread_hash(t));
  }
  EXPECT_EQ(root_of(leaves), ref_root(leaves));
}

// ----------------------------------------------------------------- committed totals

TEST(CommittedTotals, BalancesPlusExcessWithdrawals) {
  ChannelState s = picopay::channel_state_zero();
  s.balanceWeiHub = u(1000);
  s.balanceWeiUser = u(200);
  s.pendingDepositWeiHub = u(5);
  s.pendingWithdrawalWeiHub = u(3);  // deposit larger: adds nothing
  s.pendingDepositWeiUser = u(4);
  s.pendingWithdrawalWeiUser = u(10);  // withdrawal larger by 6: already left the balance
  s.balanceTokenHub = u(7);
  s.balanceTokenUser = u(8);
  s.pendingWithdrawalTokenHub = u(100);  // +100
  s.pendingDepositTokenUser = u(50);     // +0
  U256 w, t;
  ASSERT_EQ(picopay::channel_committed_wei(s, w), Status::Ok);
  ASSERT_EQ(picopay::channel_committed_token(s, t), Status::Ok);
  EXPECT_EQ(w, u(1206));
  EXPECT_EQ(t, u(115));
}

TEST(CommittedTotals, Overflow) {
  ChannelState s = picopay::channel_state_zero();
  s.balanceWeiHub = U256::max();
  s.balanceWeiUser = u(1);
  U256 w;
  EXPECT_EQ(picopay::channel_committed_wei(s, w), Status::Overflow);
  s.balanceWeiUser = u(0);
  s.pendingWithdrawalWeiUser = u(1);
  EXPECT_EQ(picopay::channel_committed_wei(s, w), Status::Overflow);
  s = picopay::channel_state_zero();
  s.balanceTokenUser = U256::max();
  s.pendingWithdrawalTokenHub = u(2);
  s.pendingDepositTokenHub = u(1);
  EXPECT_EQ(picopay::channel_committed_token(s, w), Status::Overflow);
  ASSERT_EQ(picopay::channel_committed_wei(s, w), Status::Ok);  // wei side unaffected
  EXPECT_TRUE(w.is_zero());
}

TEST(Pending, EveryPendingFieldCounts) {
  U256 ChannelState::*fields[] = {
      &ChannelState::pendingDepositWeiHub,      &ChannelState::pendingDepositWeiUser,
      &ChannelState::pendingDepositTokenHub,    &ChannelState::pendingDepositTokenUser,
      &ChannelState::pendingWithdrawalWeiHub,   &ChannelState::pendingWithdrawalWeiUser,
      &ChannelState::pendingWithdrawalTokenHub, &ChannelState::pendingWithdrawalTokenUser,
  };
  ChannelState s = picopay::channel_state_zero();
  s.balanceWeiHub = u(5);
  s.timeout = 99;
  EXPECT_FALSE(picopay::channel_has_pending(s));
  for (auto f : fields) {
    ChannelState t = s;
    t.*f = U256{{0, 0, 0, 1}};  // only the top limb set
    EXPECT_TRUE(picopay::channel_has_pending(t));
  }
}

TEST(Bounds, ChannelCounters) {
  ChannelState s = picopay::channel_state_zero();
  s.txCountGlobal = s.txCountChain = s.threadCount = picopay::kMaxCounter;
  EXPECT_EQ(picopay::channel_check_bounds(s), Status::Ok);
  uint64_t ChannelState::*fields[] = {&ChannelState::txCountGlobal, &ChannelState::txCountChain,
                                      &ChannelState::threadCount};
  for (auto f : fields) {
    ChannelState t = s;
    t.*f = picopay::kMaxCounter + 1;
    EXPECT_EQ(picopay::channel_check_bounds(t), Status::OutOfBounds);
    t.*f = ~0ULL;
    EXPECT_EQ(picopay::channel_check_bounds(t), Status::OutOfBounds);
  }
  EXPECT_EQ(picopay::kMaxCounter, 9007199254740991ULL);
}

// docs/wire-format.md: the kMaxCounter bound applies to every counter, timeout included.
TEST(Bounds, ChannelTimeoutIsACounterToo) {
  ChannelState s = picopay::channel_state_zero();
  s.timeout = picopay::kMaxCounter;
  EXPECT_EQ(picopay::channel_check_bounds(s), Status::Ok);
  s.timeout = picopay::kMaxCounter + 1;
  EXPECT_EQ(picopay::channel_check_bounds(s), Status::OutOfBounds);
}

TEST(Bounds, ThreadCounters) {
  ThreadState t = picopay::thread_state_zero();
  t.threadId = t.txCount = picopay::kMaxCounter;
  EXPECT_EQ(picopay::thread_check_bounds(t), Status::Ok);
  ThreadState x = t;
  x.txCount = picopay::kMaxCounter + 1;
  EXPECT_EQ(picopay::thread_check_bounds(x), Status::OutOfBounds);
  x = t;
  x.threadId = picopay::kMaxCounter + 1;
  EXPECT_EQ(picopay::thread_check_bounds(x), Status::OutOfBounds);
}
