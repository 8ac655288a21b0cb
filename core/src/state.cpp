#include "picopay/state.hpp"

#include <cstring>

#include "picopay/keccak.hpp"

namespace picopay {

ChannelState channel_state_zero() noexcept {
  ChannelState s;
  std::memset(&s, 0, sizeof s);
  return s;
}

ThreadState thread_state_zero() noexcept {
  ThreadState s;
  std::memset(&s, 0, sizeof s);
  return s;
}

bool operator==(const ChannelState& a, const ChannelState& b) noexcept {
  return a.contractAddress == b.contractAddress && a.user == b.user && a.recipient == b.recipient &&
         a.balanceWeiHub == b.balanceWeiHub && a.balanceWeiUser == b.balanceWeiUser &&
         a.balanceTokenHub == b.balanceTokenHub && a.balanceTokenUser == b.balanceTokenUser &&
         a.pendingDepositWeiHub == b.pendingDepositWeiHub && a.pendingDepositWeiUser == b.pendingDepositWeiUser &&
         a.pendingDepositTokenHub == b.pendingDepositTokenHub &&
         a.pendingDepositTokenUser == b.pendingDepositTokenUser &&
         a.pendingWithdrawalWeiHub == b.pendingWithdrawalWeiHub &&
         a.pendingWithdrawalWeiUser == b.pendingWithdrawalWeiUser &&
         a.pendingWithdrawalTokenHub == b.pendingWithdrawalTokenHub &&
         a.pendingWithdrawalTokenUser == b.pendingWithdrawalTokenUser && a.txCountGlobal == b.txCountGlobal &&
         a.txCountChain == b.txCountChain && a.threadRoot == b.threadRoot && a.threadCount == b.threadCount &&
         a.timeout == b.timeout;
}

bool operator==(const ThreadState& a, const ThreadState& b) noexcept {
  return a.contractAddress == b.contractAddress && a.sender == b.sender && a.receiver == b.receiver &&
         a.threadId == b.threadId && a.balanceWeiSender == b.balanceWeiSender &&
         a.balanceWeiReceiver == b.balanceWeiReceiver && a.balanceTokenSender == b.balanceTokenSender &&
         a.balanceTokenReceiver == b.balanceTokenReceiver && a.txCount == b.txCount;
}

namespace {
struct Packer {
  uint8_t* p;
  void address(const Address& a) noexcept {
    std::memcpy(p, a.bytes, 20);
    p += 20;
  }
  void address_padded(const Address& a) noexcept {
    std::memset(p, 0, 12);
    std::memcpy(p + 12, a.bytes, 20);
    p += 32;
  }
  void u256(const U256& v) noexcept {
    u256_to_be32(v, p);
    p += 32;
  }
  void u64(uint64_t v) noexcept { u256(U256::from_u64(v)); }
  void hash(const Hash32& h) noexcept {
    std::memcpy(p, h.bytes, 32);
    p += 32;
  }
};
}  // namespace

void channel_preimage(const ChannelState& s, uint8_t out[kChannelPreimageSize]) noexcept {
  Packer k{out};
  k.address(s.contractAddress);
  k.address_padded(s.user);
  k.address_padded(s.recipient);
  k.u256(s.balanceWeiHub);
  k.u256(s.balanceWeiUser);
  k.u256(s.balanceTokenHub);
  k.u256(s.balanceTokenUser);
  k.u256(s.pendingDepositWeiHub);
  k.u256(s.pendingWithdrawalWeiHub);
  k.u256(s.pendingDepositWeiUser);
  k.u256(s.pendingWithdrawalWeiUser);
  k.u256(s.pendingDepositTokenHub);
  k.u256(s.pendingWithdrawalTokenHub);
  k.u256(s.pendingDepositTokenUser);
  k.u256(s.pendingWithdrawalTokenUser);
  k.u64(s.txCountGlobal);
  k.u64(s.txCountChain);
  k.hash(s.threadRoot);
  k.u64(s.threadCount);
  k.u64(s.timeout);
}

Hash32 channel_hash(const ChannelState& s) noexcept {
  uint8_t pre[kChannelPreimageSize];
  channel_preimage(s, pre);
  Hash32 h;
  keccak256(pre, sizeof pre, h.bytes);
  return h;
}

void thread_preimage(const ThreadState& s, uint8_t out[kThreadPreimageSize]) noexcept {
  Packer k{out};
  k.address(s.contractAddress);
  k.address(s.sender);
  k.address(s.receiver);
  k.u64(s.threadId);
  k.u256(s.balanceWeiSender);
  k.u256(s.balanceWeiReceiver);
  k.u256(s.balanceTokenSender);
  k.u256(s.balanceTokenReceiver);
  k.u64(s.txCount);
}

Hash32 thread_hash(const ThreadState& s) noexcept {
  uint8_t pre[kThreadPreimageSize];
  thread_preimage(s, pre);
  Hash32 h;
  keccak256(pre, sizeof pre, h.bytes);
  return h;
}

Hash32 eth_sign_hash(const Hash32& hash) noexcept {
  static const char kPrefix[] = "\x19" "Ethereum Signed Message:\n32";
  Keccak256 k;
  k.update(reinterpret_cast<const uint8_t*>(kPrefix), sizeof kPrefix - 1);
  k.update(hash.bytes, 32);
  Hash32 out;
  k.final(out.bytes);
  return out;
}

namespace {
void hash_pair(const Hash32& a, const Hash32& b, Hash32& out) noexcept {
  const bool a_first = hash32_cmp(a, b) <= 0;
  Keccak256 k;
  k.update((a_first ? a : b).bytes, 32);
  k.update((a_first ? b : a).bytes, 32);
  k.final(out.bytes);
}
// Insertion sort: n is small (open threads of one channel) and this needs no heap.
void sort_hashes(Hash32* v, size_t n) noexcept {
  for (size_t i = 1; i < n; ++i) {
    const Hash32 x = v[i];
    size_t j = i;
    while (j > 0 && hash32_cmp(v[j - 1], x) > 0) {
      v[j] = v[j - 1];
      --j;
    }
    v[j] = x;
  }
}
}  // namespace

Status thread_root_in_place(Hash32* leaves, size_t n, size_t cap, Hash32& root) noexcept {
  if (n == 0) {
    std::memset(root.bytes, 0, 32);
    return Status::Ok;
  }
  if (cap < n + 1) return Status::BufferTooSmall;
  if (n % 2 != 0) {
    std::memset(leaves[n].bytes, 0, 32);
    ++n;
  }
  sort_hashes(leaves, n);
  size_t m = 1;  // dedupe
  for (size_t i = 1; i < n; ++i) {
    if (leaves[i] != leaves[m - 1]) leaves[m++] = leaves[i];
  }
  n = m;
  while (n > 1) {
    size_t out = 0;
    for (size_t i = 0; i < n; i += 2) {
      if (i + 1 < n) {
        hash_pair(leaves[i], leaves[i + 1], leaves[out]);
      } else {
        leaves[out] = leaves[i];
      }
      ++out;
    }
    n = out;
  }
  root = leaves[0];
  return Status::Ok;
}

namespace {
Status committed(const U256& hub, const U256& user, const U256& dep_hub, const U256& wd_hub, const U256& dep_user,
                 const U256& wd_user, U256& out) noexcept {
  U256 t;
  if (u256_add(hub, user, t) != Status::Ok) return Status::Overflow;
  U256 net;
  if (wd_hub > dep_hub) {
    (void)u256_sub(wd_hub, dep_hub, net);
    if (u256_add(t, net, t) != Status::Ok) return Status::Overflow;
  }
  if (wd_user > dep_user) {
    (void)u256_sub(wd_user, dep_user, net);
    if (u256_add(t, net, t) != Status::Ok) return Status::Overflow;
  }
  out = t;
  return Status::Ok;
}
}  // namespace

Status channel_committed_wei(const ChannelState& s, U256& out) noexcept {
  return committed(s.balanceWeiHub, s.balanceWeiUser, s.pendingDepositWeiHub, s.pendingWithdrawalWeiHub,
                   s.pendingDepositWeiUser, s.pendingWithdrawalWeiUser, out);
}

Status channel_committed_token(const ChannelState& s, U256& out) noexcept {
  return committed(s.balanceTokenHub, s.balanceTokenUser, s.pendingDepositTokenHub, s.pendingWithdrawalTokenHub,
                   s.pendingDepositTokenUser, s.pendingWithdrawalTokenUser, out);
}

bool channel_has_pending(const ChannelState& s) noexcept {
  return !(s.pendingDepositWeiHub.is_zero() && s.pendingDepositWeiUser.is_zero() &&
           s.pendingDepositTokenHub.is_zero() && s.pendingDepositTokenUser.is_zero() &&
           s.pendingWithdrawalWeiHub.is_zero() && s.pendingWithdrawalWeiUser.is_zero() &&
           s.pendingWithdrawalTokenHub.is_zero() && s.pendingWithdrawalTokenUser.is_zero());
}

Status channel_check_bounds(const ChannelState& s) noexcept {
  if (s.txCountGlobal > kMaxCounter || s.txCountChain > kMaxCounter || s.threadCount > kMaxCounter ||
      s.timeout > kMaxCounter)
    return Status::OutOfBounds;
  return Status::Ok;
}

Status thread_check_bounds(const ThreadState& s) noexcept {
  if (s.threadId > kMaxCounter || s.txCount > kMaxCounter) return Status::OutOfBounds;
  return Status::Ok;
}

}  // namespace picopay
