// Fixed channel and thread states the state-machine targets apply fuzzed updates to, and
// that the seed generator builds valid updates against. Real keys (fuzz_util.hpp), real
// signatures, thread roots computed by the core.
#pragma once

#include <vector>

#include "fuzz_util.hpp"
#include "picopay/channel.hpp"
#include "picopay/state.hpp"
#include "picopay/u256.hpp"

namespace picopay_fuzz {

using picopay::U256;

inline U256 amount(uint64_t v) { return U256::from_u64(v); }

// A channel scenario: the latest state and the open threads' initial states.
struct ChannelScenario {
  picopay::ChannelState prev;
  std::vector<picopay::ThreadState> threads;
};

inline picopay::ThreadState thread_initial(const picopay::Address& sender, const picopay::Address& receiver,
                                           uint64_t id, uint64_t wei, uint64_t token) {
  picopay::ThreadState t = picopay::thread_state_zero();
  t.contractAddress = contract_addr();
  t.sender = sender;
  t.receiver = receiver;
  t.threadId = id;
  t.balanceWeiSender = amount(wei);
  t.balanceTokenSender = amount(token);
  return t;
}

inline picopay::Hash32 root_of(const std::vector<picopay::ThreadState>& ts) {
  std::vector<picopay::Hash32> leaves(ts.size() + 1);
  for (size_t i = 0; i < ts.size(); ++i) leaves[i] = picopay::thread_hash(ts[i]);
  picopay::Hash32 root{};
  if (picopay::thread_root_in_place(leaves.data(), ts.size(), leaves.size(), root) != picopay::Status::Ok)
    std::abort();
  return root;
}

constexpr size_t kChannelScenarios = 5;

// 0: funded, idle. 1: a pending deposit (both sides). 2: a pending withdrawal.
// 3: payer channel with two open threads (user -> other). 4: payee channel (the user
// receives) with one open thread (other -> user).
inline ChannelScenario channel_scenario(size_t i) {
  ChannelScenario c;
  picopay::ChannelState& s = c.prev;
  s = picopay::channel_state_zero();
  s.contractAddress = contract_addr();
  s.user = user_addr();
  s.recipient = user_addr();
  s.balanceWeiHub = amount(1000000000000000000ULL);
  s.balanceWeiUser = amount(2000000000000000000ULL);
  s.balanceTokenHub = amount(3000000);
  s.balanceTokenUser = amount(4000000);
  s.txCountGlobal = 41;
  s.txCountChain = 3;
  switch (i % kChannelScenarios) {
    case 0:
      break;
    case 1:
      s.pendingDepositWeiHub = amount(5000);
      s.pendingDepositWeiUser = amount(7000);
      s.pendingDepositTokenUser = amount(11);
      s.txCountChain = 4;
      s.timeout = 1900000000;
      break;
    case 2:
      s.pendingWithdrawalWeiUser = amount(300000);
      s.pendingWithdrawalTokenHub = amount(17);
      s.balanceWeiUser = amount(1999999999999700000ULL);
      s.recipient = other_addr();
      s.txCountChain = 4;
      s.timeout = 1900000000;
      break;
    case 3:
      c.threads.push_back(thread_initial(user_addr(), other_addr(), 1, 100000, 50));
      c.threads.push_back(thread_initial(user_addr(), other_addr(), 2, 70000, 0));
      s.balanceWeiUser = amount(2000000000000000000ULL - 170000);
      s.balanceTokenUser = amount(4000000 - 50);
      break;
    case 4:
      c.threads.push_back(thread_initial(other_addr(), user_addr(), 9, 90000, 30));
      s.balanceWeiHub = amount(1000000000000000000ULL - 90000);
      s.balanceTokenHub = amount(3000000 - 30);
      break;
  }
  s.threadCount = c.threads.size();
  s.threadRoot = root_of(c.threads);
  return c;
}

// A ThreadSet over a copy of the scenario's threads with room for `extra` more.
struct ThreadSetBuf {
  std::vector<picopay::ThreadState> items;
  std::vector<picopay::Hash32> scratch;
  picopay::ThreadSet set{};
  explicit ThreadSetBuf(const std::vector<picopay::ThreadState>& ts, size_t extra = 4) : items(ts) {
    size_t cap = ts.size() + extra;
    items.resize(cap);
    scratch.resize(cap + 2);
    set.items = items.data();
    set.count = ts.size();
    set.capacity = cap;
    set.scratch = scratch.data();
  }
};

// The key of a known address (hub, user, other), or null.
inline const picopay::PrivateKey* key_for(const picopay::Address& a) {
  if (a == hub_addr()) return &hub_key();
  if (a == user_addr()) return &user_key();
  if (a == other_addr()) return &other_key();
  return nullptr;
}

constexpr size_t kThreadScenarios = 2;

// 0: a fresh thread user -> other (txCount 0). 1: a thread other -> user after payments.
inline picopay::ThreadState thread_scenario(size_t i) {
  if (i % kThreadScenarios == 0) return thread_initial(user_addr(), other_addr(), 5, 1000000, 500);
  picopay::ThreadState t = thread_initial(other_addr(), user_addr(), 6, 800000, 400);
  t.balanceWeiReceiver = amount(200000);
  t.balanceTokenReceiver = amount(100);
  t.txCount = 12;
  return t;
}

}  // namespace picopay_fuzz
