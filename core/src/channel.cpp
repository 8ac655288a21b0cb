// Connext v1 channel and thread state machines (see channel.hpp for the rules).
#include "picopay/channel.hpp"
#include "picopay/policy.hpp"

#include <cstring>

namespace picopay {

namespace {

struct Reason {
  UpdateReason code;
  const char* name;
};
constexpr Reason kReasons[] = {
    {UpdateReason::Payment, "Payment"},
    {UpdateReason::Exchange, "Exchange"},
    {UpdateReason::ProposePendingDeposit, "ProposePendingDeposit"},
    {UpdateReason::ProposePendingWithdrawal, "ProposePendingWithdrawal"},
    {UpdateReason::ConfirmPending, "ConfirmPending"},
    {UpdateReason::Invalidation, "Invalidation"},
    {UpdateReason::OpenThread, "OpenThread"},
    {UpdateReason::CloseThread, "CloseThread"},
    {UpdateReason::EmptyChannel, "EmptyChannel"},
};

// a -= x, b += x (a payment of x from a to b). Errors: Underflow, Overflow.
Status move(U256& from, U256& to, const U256& x) noexcept {
  U256 f, t;
  Status st = u256_sub(from, x, f);
  if (st != Status::Ok) return st;
  st = u256_add(to, x, t);
  if (st != Status::Ok) return st;
  from = f;
  to = t;
  return Status::Ok;
}

Status add_to(U256& v, const U256& x) noexcept { return u256_add(v, x, v); }
Status sub_from(U256& v, const U256& x) noexcept { return u256_sub(v, x, v); }

// bal += max(0, a - b)
Status add_net(U256& bal, const U256& a, const U256& b) noexcept {
  if (a <= b) return Status::Ok;
  U256 net;
  (void)u256_sub(a, b, net);
  return add_to(bal, net);
}

void clear_pending(ChannelState& s) noexcept {
  s.pendingDepositWeiHub = s.pendingDepositWeiUser = U256::zero();
  s.pendingDepositTokenHub = s.pendingDepositTokenUser = U256::zero();
  s.pendingWithdrawalWeiHub = s.pendingWithdrawalWeiUser = U256::zero();
  s.pendingWithdrawalTokenHub = s.pendingWithdrawalTokenUser = U256::zero();
}

#define PP_TRY(expr)                         \
  do {                                       \
    const ::picopay::Status st_ = (expr);    \
    if (st_ != ::picopay::Status::Ok) return st_; \
  } while (0)

// Root over the open threads with `add` appended (if non-null) and index `skip`
// removed (if >= 0).
Status root_of(const ThreadSet& threads, const ThreadState* add, long skip, Hash32& root) noexcept {
  if (threads.scratch == nullptr) return Status::BufferTooSmall;
  size_t n = 0;
  for (size_t i = 0; i < threads.count; ++i) {
    if (static_cast<long>(i) == skip) continue;
    threads.scratch[n++] = thread_hash(threads.items[i]);
  }
  if (add != nullptr) threads.scratch[n++] = thread_hash(*add);
  return thread_root_in_place(threads.scratch, n, threads.capacity + 2, root);
}

}  // namespace

bool channel_blocks_updates(const ChannelState& s) noexcept { return channel_has_pending(s) || s.timeout != 0; }

bool channel_is_skip(const ChannelState& prev, const ChannelUpdate& u) noexcept {
  return u.reason == UpdateReason::Invalidation && prev.txCountGlobal < kMaxCounter &&
         u.invalidation.lastInvalidTxCount == prev.txCountGlobal + 1;
}

namespace {

bool payer_channel(const ChannelState& prev, const ThreadState& t) noexcept { return prev.user == t.sender; }

Status check_thread_belongs(const ChannelState& prev, const ThreadState& t) noexcept {
  if (t.contractAddress != prev.contractAddress) return Status::WrongContract;
  if (t.sender == t.receiver) return Status::BadArgs;
  if (prev.user != t.sender && prev.user != t.receiver) return Status::WrongParty;
  return Status::Ok;
}

Status next_open_thread(const ChannelState& prev, const ThreadSet& threads, const ThreadState& t,
                        ChannelState& next) noexcept {
  PP_TRY(check_thread_belongs(prev, t));
  PP_TRY(thread_check_bounds(t));
  if (t.txCount != 0) return Status::BadTxCount;
  if (!t.balanceWeiReceiver.is_zero() || !t.balanceTokenReceiver.is_zero()) return Status::BadArgs;
  if (t.balanceWeiSender.is_zero() && t.balanceTokenSender.is_zero()) return Status::BadArgs;
  if (thread_set_find(threads, t.sender, t.receiver, t.threadId) >= 0) return Status::ThreadExists;
  if (threads.count >= threads.capacity || prev.threadCount >= kMaxCounter) return Status::TooManyThreads;
  if (prev.threadCount != threads.count) return Status::BadArgs;  // caller's set out of sync
  // The payer locks its own balance; in the payee's channel the hub locks collateral.
  if (payer_channel(prev, t)) {
    PP_TRY(sub_from(next.balanceWeiUser, t.balanceWeiSender));
    PP_TRY(sub_from(next.balanceTokenUser, t.balanceTokenSender));
  } else {
    PP_TRY(sub_from(next.balanceWeiHub, t.balanceWeiSender));
    PP_TRY(sub_from(next.balanceTokenHub, t.balanceTokenSender));
  }
  next.threadCount = prev.threadCount + 1;
  return root_of(threads, &t, -1, next.threadRoot);
}

Status next_close_thread(const ChannelState& prev, const ThreadSet& threads, const ThreadState& t,
                         ChannelState& next) noexcept {
  PP_TRY(check_thread_belongs(prev, t));
  PP_TRY(thread_check_bounds(t));
  const long idx = thread_set_find(threads, t.sender, t.receiver, t.threadId);
  if (idx < 0) return Status::ThreadNotFound;
  if (prev.threadCount != threads.count || prev.threadCount == 0) return Status::BadArgs;
  const ThreadState& initial = threads.items[idx];
  if (!(initial == t)) PP_TRY(thread_check_transition(initial, t));
  if (payer_channel(prev, t)) {
    PP_TRY(add_to(next.balanceWeiUser, t.balanceWeiSender));
    PP_TRY(add_to(next.balanceTokenUser, t.balanceTokenSender));
    PP_TRY(add_to(next.balanceWeiHub, t.balanceWeiReceiver));
    PP_TRY(add_to(next.balanceTokenHub, t.balanceTokenReceiver));
  } else {
    PP_TRY(add_to(next.balanceWeiUser, t.balanceWeiReceiver));
    PP_TRY(add_to(next.balanceTokenUser, t.balanceTokenReceiver));
    PP_TRY(add_to(next.balanceWeiHub, t.balanceWeiSender));
    PP_TRY(add_to(next.balanceTokenHub, t.balanceTokenSender));
  }
  next.threadCount = prev.threadCount - 1;
  return root_of(threads, nullptr, idx, next.threadRoot);
}

Status next_exchange(const ExchangeArgs& a, ChannelState& next) noexcept {
  // The amounts (rounding, the remainder kept by the seller) come from exchange_amounts
  // (policy.hpp), the one place that decides them.
  ExchangeAmounts x{};
  PP_TRY(exchange_amounts(a, x));
  const bool user_sells = a.seller == Party::User;
  U256& seller_wei = user_sells ? next.balanceWeiUser : next.balanceWeiHub;
  U256& buyer_wei = user_sells ? next.balanceWeiHub : next.balanceWeiUser;
  U256& seller_tok = user_sells ? next.balanceTokenUser : next.balanceTokenHub;
  U256& buyer_tok = user_sells ? next.balanceTokenHub : next.balanceTokenUser;
  if (!x.weiSold.is_zero()) {
    PP_TRY(move(seller_wei, buyer_wei, x.weiSold));
    return move(buyer_tok, seller_tok, x.tokensBought);
  }
  PP_TRY(move(seller_tok, buyer_tok, x.tokensSold));
  return move(buyer_wei, seller_wei, x.weiBought);
}

Status next_chain_counter(const ChannelState& prev, ChannelState& next) noexcept {
  if (prev.txCountChain >= kMaxCounter) return Status::BadTxCount;
  next.txCountChain = prev.txCountChain + 1;
  return Status::Ok;
}

Party other(Party p) noexcept { return p == Party::Hub ? Party::User : Party::Hub; }

const Address& party_address(const ChannelContext& ctx, const ChannelState& s, Party p) noexcept {
  return p == Party::Hub ? ctx.hub : s.user;
}

bool is_thread_reason(UpdateReason r) noexcept {
  return r == UpdateReason::OpenThread || r == UpdateReason::CloseThread;
}

}  // namespace

const char* update_reason_name(UpdateReason r) noexcept {
  for (const Reason& e : kReasons) {
    if (e.code == r) return e.name;
  }
  return nullptr;
}

Status update_reason_parse(const char* s, size_t len, UpdateReason& out) noexcept {
  for (const Reason& e : kReasons) {
    if (std::strlen(e.name) == len && std::memcmp(e.name, s, len) == 0) {
      out = e.code;
      return Status::Ok;
    }
  }
  return Status::BadReason;
}

ChannelUpdate channel_update_make(UpdateReason reason) noexcept {
  ChannelUpdate u;
  std::memset(&u, 0, sizeof u);
  u.reason = reason;
  return u;
}

long thread_set_find(const ThreadSet& threads, const Address& sender, const Address& receiver,
                     uint64_t threadId) noexcept {
  for (size_t i = 0; i < threads.count; ++i) {
    const ThreadState& t = threads.items[i];
    if (t.threadId == threadId && t.sender == sender && t.receiver == receiver) return static_cast<long>(i);
  }
  return -1;
}

Status channel_next_state(const ChannelContext& ctx, const ChannelState& prev, const ThreadSet& threads,
                          const ChannelUpdate& u, ChannelState& next_out) noexcept {
  (void)ctx;
  PP_TRY(channel_check_bounds(prev));
  if (channel_is_skip(prev, u)) {
    // Invalidation of a half-signed state: prev.txCountGlobal + 1 was proposed and never
    // countersigned; the state after it repeats prev's contents at prev + 2, so the
    // half-signed one can never become the latest. Only on a state without pending ops
    // (a pending op never lives in two states).
    if (prev.txCountGlobal + 2 > kMaxCounter || u.txCountGlobal != prev.txCountGlobal + 2) return Status::BadTxCount;
    if (u.invalidation.previousValidTxCount != prev.txCountGlobal) return Status::BadArgs;
    if (channel_blocks_updates(prev)) return Status::PendingOperation;
    next_out = prev;
    next_out.txCountGlobal = u.txCountGlobal;
    return Status::Ok;
  }
  if (prev.txCountGlobal >= kMaxCounter || u.txCountGlobal != prev.txCountGlobal + 1) return Status::BadTxCount;
  ChannelState next = prev;
  next.txCountGlobal = u.txCountGlobal;
  // Connext's rule: on a state with pending operations only ConfirmPending or
  // Invalidation may follow, so a pending withdrawal or deposit is never carried into a
  // second state (the contract could execute both).
  // EmptyChannel records what the chain already did (it supersedes any pending op).
  if (channel_blocks_updates(prev) && u.reason != UpdateReason::ConfirmPending &&
      u.reason != UpdateReason::Invalidation && u.reason != UpdateReason::EmptyChannel)
    return Status::PendingOperation;
  switch (u.reason) {
    case UpdateReason::Payment: {
      const PaymentArgs& a = u.payment;
      if (a.recipient != Party::Hub && a.recipient != Party::User) return Status::BadArgs;
      if (a.amountWei.is_zero() && a.amountToken.is_zero()) return Status::BadArgs;
      const bool to_hub = a.recipient == Party::Hub;
      PP_TRY(move(to_hub ? next.balanceWeiUser : next.balanceWeiHub, to_hub ? next.balanceWeiHub : next.balanceWeiUser,
                  a.amountWei));
      PP_TRY(move(to_hub ? next.balanceTokenUser : next.balanceTokenHub,
                  to_hub ? next.balanceTokenHub : next.balanceTokenUser, a.amountToken));
      break;
    }
    case UpdateReason::Exchange:
      if (u.exchange.seller != Party::Hub && u.exchange.seller != Party::User) return Status::BadArgs;
      PP_TRY(next_exchange(u.exchange, next));
      break;
    case UpdateReason::ProposePendingDeposit: {
      const DepositArgs& a = u.deposit;
      if (a.depositWeiHub.is_zero() && a.depositWeiUser.is_zero() && a.depositTokenHub.is_zero() &&
          a.depositTokenUser.is_zero())
        return Status::BadArgs;
      if (a.timeout == 0 || a.timeout > kMaxCounter) return Status::BadArgs;
      next.pendingDepositWeiHub = a.depositWeiHub;
      next.pendingDepositWeiUser = a.depositWeiUser;
      next.pendingDepositTokenHub = a.depositTokenHub;
      next.pendingDepositTokenUser = a.depositTokenUser;
      next.recipient = prev.user;
      next.timeout = a.timeout;
      PP_TRY(next_chain_counter(prev, next));
      break;
    }
    case UpdateReason::ProposePendingWithdrawal: {
      const WithdrawalArgs& a = u.withdrawal;
      if (a.withdrawalWeiHub.is_zero() && a.withdrawalWeiUser.is_zero() && a.withdrawalTokenHub.is_zero() &&
          a.withdrawalTokenUser.is_zero())
        return Status::BadArgs;
      if (a.timeout == 0 || a.timeout > kMaxCounter || a.recipient.is_zero()) return Status::BadArgs;
      PP_TRY(sub_from(next.balanceWeiHub, a.withdrawalWeiHub));
      PP_TRY(sub_from(next.balanceWeiUser, a.withdrawalWeiUser));
      PP_TRY(sub_from(next.balanceTokenHub, a.withdrawalTokenHub));
      PP_TRY(sub_from(next.balanceTokenUser, a.withdrawalTokenUser));
      next.pendingWithdrawalWeiHub = a.withdrawalWeiHub;
      next.pendingWithdrawalWeiUser = a.withdrawalWeiUser;
      next.pendingWithdrawalTokenHub = a.withdrawalTokenHub;
      next.pendingWithdrawalTokenUser = a.withdrawalTokenUser;
      next.recipient = a.recipient;
      next.timeout = a.timeout;
      PP_TRY(next_chain_counter(prev, next));
      break;
    }
    case UpdateReason::ConfirmPending:
      if (!channel_has_pending(prev)) return Status::BadArgs;
      // ChannelManager._applyPendingUpdates: a larger deposit is added now; a larger
      // withdrawal was already taken out of the balance when it was proposed.
      PP_TRY(add_net(next.balanceWeiHub, prev.pendingDepositWeiHub, prev.pendingWithdrawalWeiHub));
      PP_TRY(add_net(next.balanceWeiUser, prev.pendingDepositWeiUser, prev.pendingWithdrawalWeiUser));
      PP_TRY(add_net(next.balanceTokenHub, prev.pendingDepositTokenHub, prev.pendingWithdrawalTokenHub));
      PP_TRY(add_net(next.balanceTokenUser, prev.pendingDepositTokenUser, prev.pendingWithdrawalTokenUser));
      clear_pending(next);
      next.recipient = prev.user;
      next.timeout = 0;
      break;
    case UpdateReason::Invalidation: {
      const InvalidationArgs& a = u.invalidation;
      if (!channel_has_pending(prev)) return Status::BadArgs;
      if (a.lastInvalidTxCount != prev.txCountGlobal || a.previousValidTxCount >= a.lastInvalidTxCount)
        return Status::BadArgs;
      // The pending ops never happened on chain: withdrawn amounts return.
      PP_TRY(add_net(next.balanceWeiHub, prev.pendingWithdrawalWeiHub, prev.pendingDepositWeiHub));
      PP_TRY(add_net(next.balanceWeiUser, prev.pendingWithdrawalWeiUser, prev.pendingDepositWeiUser));
      PP_TRY(add_net(next.balanceTokenHub, prev.pendingWithdrawalTokenHub, prev.pendingDepositTokenHub));
      PP_TRY(add_net(next.balanceTokenUser, prev.pendingWithdrawalTokenUser, prev.pendingDepositTokenUser));
      clear_pending(next);
      next.recipient = prev.user;
      next.timeout = 0;
      break;
    }
    case UpdateReason::OpenThread:
      PP_TRY(next_open_thread(prev, threads, u.thread.thread.state, next));
      break;
    case UpdateReason::CloseThread:
      PP_TRY(next_close_thread(prev, threads, u.thread.thread.state, next));
      break;
    case UpdateReason::EmptyChannel:
      next.balanceWeiHub = next.balanceWeiUser = U256::zero();
      next.balanceTokenHub = next.balanceTokenUser = U256::zero();
      clear_pending(next);
      next.recipient = prev.user;
      next.threadCount = 0;
      std::memset(next.threadRoot.bytes, 0, 32);
      next.timeout = 0;
      break;
    default:
      return Status::BadReason;
  }
  next_out = next;
  return Status::Ok;
}

Status channel_check_proposer(const ChannelState& prev, Party proposer, const ChannelUpdate& u) noexcept {
  switch (u.reason) {
    case UpdateReason::Payment:
      return u.payment.recipient == proposer ? Status::Unauthorized : Status::Ok;
    case UpdateReason::OpenThread: {
      // Payer channel: only the payer locks its own funds. Payee channel (the hub's
      // collateral is locked): the user proposes the mirror on the hub's request
      // (docs/mqtt-protocol.md); a hub proposal stays possible for the pure functions.
      const ThreadState& t = u.thread.thread.state;
      if (prev.user == t.sender && proposer != Party::User) return Status::Unauthorized;
      return Status::Ok;
    }
    default:
      return Status::Ok;
  }
}

Status channel_check_transition(const ChannelState& prev, const ChannelState& next,
                                const ChannelUpdate& u) noexcept {
  if (next.contractAddress != prev.contractAddress) return Status::WrongContract;
  if (next.user != prev.user) return Status::WrongParty;
  if (next.txCountGlobal != prev.txCountGlobal + (channel_is_skip(prev, u) ? 2 : 1)) return Status::BadTxCount;
  if (next.txCountChain < prev.txCountChain) return Status::TxCountChainDecreased;
  PP_TRY(channel_check_bounds(next));
  U256 pw, pt, nw, nt;
  if (channel_committed_wei(prev, pw) != Status::Ok || channel_committed_token(prev, pt) != Status::Ok ||
      channel_committed_wei(next, nw) != Status::Ok || channel_committed_token(next, nt) != Status::Ok)
    return Status::NotConserved;
  U256 ew = pw, et = pt;  // the expected committed totals of `next`
  const ThreadState& t = u.thread.thread.state;
  bool ok = true;
  switch (u.reason) {
    case UpdateReason::ConfirmPending:
      ok = u256_add(ew, prev.pendingDepositWeiHub, ew) == Status::Ok &&
           u256_add(ew, prev.pendingDepositWeiUser, ew) == Status::Ok &&
           u256_sub(ew, prev.pendingWithdrawalWeiHub, ew) == Status::Ok &&
           u256_sub(ew, prev.pendingWithdrawalWeiUser, ew) == Status::Ok &&
           u256_add(et, prev.pendingDepositTokenHub, et) == Status::Ok &&
           u256_add(et, prev.pendingDepositTokenUser, et) == Status::Ok &&
           u256_sub(et, prev.pendingWithdrawalTokenHub, et) == Status::Ok &&
           u256_sub(et, prev.pendingWithdrawalTokenUser, et) == Status::Ok;
      break;
    case UpdateReason::OpenThread:
      ok = u256_sub(ew, t.balanceWeiSender, ew) == Status::Ok && u256_sub(et, t.balanceTokenSender, et) == Status::Ok;
      if (next.threadCount != prev.threadCount + 1) return Status::NotConserved;
      break;
    case UpdateReason::CloseThread:
      ok = u256_add(ew, t.balanceWeiSender, ew) == Status::Ok && u256_add(ew, t.balanceWeiReceiver, ew) == Status::Ok &&
           u256_add(et, t.balanceTokenSender, et) == Status::Ok &&
           u256_add(et, t.balanceTokenReceiver, et) == Status::Ok;
      if (next.threadCount + 1 != prev.threadCount) return Status::NotConserved;
      break;
    case UpdateReason::EmptyChannel:
      ew = et = U256::zero();
      break;
    default:
      if (next.threadCount != prev.threadCount || next.threadRoot != prev.threadRoot) return Status::NotConserved;
      break;
  }
  if (!ok || nw != ew || nt != et) return Status::NotConserved;
  return Status::Ok;
}

namespace {
Status check_update(const ChannelContext& ctx, const Signer& signer, Party proposer, const ChannelState& prev,
                    const ThreadSet& threads, const ChannelUpdate& u, ChannelState& next) noexcept {
  PP_TRY(channel_check_proposer(prev, proposer, u));
  PP_TRY(channel_next_state(ctx, prev, threads, u, next));
  PP_TRY(channel_check_transition(prev, next, u));
  if (is_thread_reason(u.reason)) {
    const SignedThreadState& t = u.thread.thread;
    if (!t.hasSigA) return Status::BadArgs;
    PP_TRY(signer.verify_eth(thread_hash(t.state), t.sigA, t.state.sender));
  }
  return Status::Ok;
}
}  // namespace

Status channel_propose(const ChannelContext& ctx, const Signer& signer, const PrivateKey& key, Party self,
                       const ChannelState& prev, const ThreadSet& threads, ChannelUpdate& u,
                       ChannelState& next, Hash32* next_hash) noexcept {
  // `key` is `self`'s (a precondition: deriving the address here would cost an EC
  // multiplication, ~20 us, on every payment); a wrong key yields a signature the
  // counterparty refuses as WrongSigner.
  if (prev.txCountGlobal >= kMaxCounter) return Status::BadTxCount;
  u.txCountGlobal = prev.txCountGlobal + (channel_is_skip(prev, u) ? 2 : 1);
  ChannelState n;
  PP_TRY(check_update(ctx, signer, self, prev, threads, u, n));
  const Hash32 h = channel_hash(n);
  PP_TRY(signer.sign_eth(key, h, u.sig));
  next = n;
  if (next_hash != nullptr) *next_hash = h;
  return Status::Ok;
}

Status channel_accept(const ChannelContext& ctx, const Signer& signer, Party self, const ChannelState& prev,
                      const ThreadSet& threads, const ChannelUpdate& u, ChannelState& next,
                      Hash32& next_hash) noexcept {
  const Party proposer = other(self);
  ChannelState n;
  PP_TRY(check_update(ctx, signer, proposer, prev, threads, u, n));
  const Hash32 h = channel_hash(n);
  PP_TRY(signer.verify_eth(h, u.sig, party_address(ctx, prev, proposer)));
  next = n;
  next_hash = h;
  return Status::Ok;
}

Status thread_set_apply(ThreadSet& threads, const ChannelUpdate& u) noexcept {
  const ThreadState& t = u.thread.thread.state;
  switch (u.reason) {
    case UpdateReason::OpenThread:
      if (threads.count >= threads.capacity) return Status::TooManyThreads;
      if (thread_set_find(threads, t.sender, t.receiver, t.threadId) >= 0) return Status::ThreadExists;
      threads.items[threads.count++] = t;
      return Status::Ok;
    case UpdateReason::CloseThread: {
      const long idx = thread_set_find(threads, t.sender, t.receiver, t.threadId);
      if (idx < 0) return Status::ThreadNotFound;
      threads.items[idx] = threads.items[threads.count - 1];
      --threads.count;
      return Status::Ok;
    }
    case UpdateReason::EmptyChannel:
      threads.count = 0;
      return Status::Ok;
    default:
      return Status::Ok;
  }
}

// ------------------------------------------------------------------ threads

Status thread_check_transition(const ThreadState& prev, const ThreadState& next) noexcept {
  if (next.contractAddress != prev.contractAddress) return Status::WrongContract;
  if (next.sender != prev.sender || next.receiver != prev.receiver) return Status::WrongParty;
  if (next.threadId != prev.threadId) return Status::BadArgs;
  if (next.txCount <= prev.txCount || next.txCount > kMaxCounter) return Status::BadTxCount;
  if (next.balanceWeiReceiver < prev.balanceWeiReceiver || next.balanceTokenReceiver < prev.balanceTokenReceiver)
    return Status::NotConserved;
  U256 a, b;
  if (u256_add(prev.balanceWeiSender, prev.balanceWeiReceiver, a) != Status::Ok ||
      u256_add(next.balanceWeiSender, next.balanceWeiReceiver, b) != Status::Ok || a != b)
    return Status::NotConserved;
  if (u256_add(prev.balanceTokenSender, prev.balanceTokenReceiver, a) != Status::Ok ||
      u256_add(next.balanceTokenSender, next.balanceTokenReceiver, b) != Status::Ok || a != b)
    return Status::NotConserved;
  return Status::Ok;
}

Status thread_next_state(const ThreadState& prev, const ThreadUpdate& u, ThreadState& next_out) noexcept {
  if (u.sender != prev.sender) return Status::WrongParty;
  if (u.threadId != prev.threadId) return Status::BadArgs;
  if (u.amountWei.is_zero() && u.amountToken.is_zero()) return Status::BadArgs;
  if (u.txCount <= prev.txCount || u.txCount > kMaxCounter) return Status::BadTxCount;
  ThreadState next = prev;
  next.txCount = u.txCount;
  PP_TRY(move(next.balanceWeiSender, next.balanceWeiReceiver, u.amountWei));
  PP_TRY(move(next.balanceTokenSender, next.balanceTokenReceiver, u.amountToken));
  next_out = next;
  return Status::Ok;
}

Status thread_propose(const Signer& signer, const PrivateKey& key, const ThreadState& prev, const U256& amountWei,
                      const U256& amountToken, ThreadUpdate& u, ThreadState& next) noexcept {
  // `key` is prev.sender's (a precondition, as in channel_propose).
  if (prev.txCount >= kMaxCounter) return Status::BadTxCount;
  ThreadUpdate r;
  std::memset(&r, 0, sizeof r);
  r.sender = prev.sender;
  r.threadId = prev.threadId;
  r.txCount = prev.txCount + 1;
  r.amountWei = amountWei;
  r.amountToken = amountToken;
  ThreadState n;
  PP_TRY(thread_next_state(prev, r, n));
  PP_TRY(thread_check_transition(prev, n));
  PP_TRY(signer.sign_eth(key, thread_hash(n), r.sig));
  u = r;
  next = n;
  return Status::Ok;
}

Status thread_accept(const Signer& signer, const ThreadState& prev, const ThreadUpdate& u,
                     ThreadState& next) noexcept {
  ThreadState n;
  PP_TRY(thread_next_state(prev, u, n));
  PP_TRY(thread_check_transition(prev, n));
  PP_TRY(signer.verify_eth(thread_hash(n), u.sig, prev.sender));
  next = n;
  return Status::Ok;
}

Status thread_accept_state(const Signer& signer, const ThreadState& prev, const SignedThreadState& in) noexcept {
  const ThreadState& n = in.state;
  if (!in.hasSigA) return Status::BadArgs;
  if (n == prev) return Status::Duplicate;
  if (n.contractAddress != prev.contractAddress) return Status::WrongContract;
  if (n.sender != prev.sender || n.receiver != prev.receiver) return Status::WrongParty;
  if (n.threadId != prev.threadId) return Status::BadArgs;
  if (n.txCount < prev.txCount) return Status::StaleState;
  if (n.txCount == prev.txCount) {
    // Another state with our txCount: evidence only if the sender really signed it.
    PP_TRY(signer.verify_eth(thread_hash(n), in.sigA, prev.sender));
    return Status::StateConflict;
  }
  PP_TRY(thread_check_transition(prev, n));
  if (n.balanceWeiReceiver == prev.balanceWeiReceiver && n.balanceTokenReceiver == prev.balanceTokenReceiver)
    return Status::BadArgs;  // nothing paid
  return signer.verify_eth(thread_hash(n), in.sigA, prev.sender);
}

}  // namespace picopay
