// The signing policy (policy.hpp, docs/signing-policy.md).
#include "picopay/policy.hpp"

namespace picopay {

namespace {

bool any_nonzero(const U256& a, const U256& b) noexcept { return !a.is_zero() || !b.is_zero(); }

bool thread_args_equal(const SignedThreadState& a, const SignedThreadState& b) noexcept {
  return a.state == b.state && a.hasSigA == b.hasSigA && (!a.hasSigA || a.sigA == b.sigA);
}

// A pending op's timeout lies in (now, now + max]; unchecked when the clock is unknown.
Status check_timeout(uint64_t timeout, uint64_t now, const PolicyLimits& l) noexcept {
  if (now == 0) return Status::Ok;
  if (timeout <= now || timeout - now > l.maxTimeoutSeconds) return Status::TimeoutOutOfBounds;
  return Status::Ok;
}

// (c): the fact asserted by ConfirmPending / Invalidation / EmptyChannel, on chain.
Status check_chain_fact(bool hasChainAccess, const ChainFacts& c, const ChannelState& prev,
                        UpdateReason reason) noexcept {
  if (!hasChainAccess || !c.known) return Status::NeedsChain;
  switch (reason) {
    case UpdateReason::ConfirmPending:
      // The authorized update carrying prev's pending ops executed: txCount[1] reached it.
      return c.txCountChain >= prev.txCountChain ? Status::Ok : Status::NotOnChain;
    case UpdateReason::Invalidation:
      // Not executed, and it never can be: the contract refuses a state whose timeout
      // has passed (block.timestamp < timeout), and block time never goes back.
      if (c.txCountChain >= prev.txCountChain) return Status::NotOnChain;
      if (prev.timeout == 0 || c.blockTime < prev.timeout) return Status::NotOnChain;
      return Status::Ok;
    case UpdateReason::EmptyChannel:
      // Connext's EmptyChannel records what emptyChannel(WithChallenge) left on chain:
      // nothing in the channel, no dispute running, and the new state (txCountGlobal
      // prev + 1, every balance and pending field zero, no threads, txCountChain prev's)
      // supersedes the state the contract applied (txCount[0] <= prev's) and carries a
      // txCountChain not behind the contract's txCount[1], so the next authorized update
      // (a new deposit, txCountChain + 1) is one the contract takes.
      if (!c.emptied || c.status != ChainChannelStatus::Open) return Status::NotOnChain;
      if (c.txCountGlobal > prev.txCountGlobal || c.txCountChain > prev.txCountChain) return Status::NotOnChain;
      // Pending operations of prev that the contract could still run (an authorized
      // update takes a state newer than its txCount[0] until its timeout) would add funds
      // the empty state does not show: only once they can no longer run.
      if (channel_blocks_updates(prev) && c.txCountGlobal < prev.txCountGlobal &&
          (prev.timeout == 0 || c.blockTime < prev.timeout))
        return Status::NotOnChain;
      return Status::Ok;
    default:
      return Status::BadReason;
  }
}

bool matches_any(const ChannelUpdate* reqs, size_t n, const ChannelUpdate& u) noexcept {
  if (reqs == nullptr) return false;
  for (size_t i = 0; i < n; ++i)
    if (policy_update_matches(reqs[i], u)) return true;
  return false;
}

// |proposed - current| * 10000 <= current * bps
bool within_spread(const U256& proposed, const U256& current, uint32_t bps) noexcept {
  U256 diff, lhs, rhs;
  if (proposed >= current) (void)u256_sub(proposed, current, diff);
  else (void)u256_sub(current, proposed, diff);
  if (u256_mul(diff, U256::from_u64(10000), lhs) != Status::Ok) return false;
  if (u256_mul(current, U256::from_u64(bps), rhs) != Status::Ok) return true;  // huge current: any diff fits
  return lhs <= rhs;
}

}  // namespace

bool policy_rate_within(const U256& proposed, const U256& reference, uint32_t bps) noexcept {
  return within_spread(proposed, reference, bps);
}

PolicyLimits policy_limits_default() noexcept { return PolicyLimits{86400, 200, 86400}; }

Status exchange_amounts(const ExchangeArgs& a, ExchangeAmounts& out) noexcept {
  out = ExchangeAmounts{};
  if (a.exchangeRate.is_zero()) return Status::BadArgs;
  if (a.weiToSell.is_zero() == a.tokensToSell.is_zero()) return Status::BadArgs;  // exactly one
  if (!a.weiToSell.is_zero()) {
    out.weiSold = a.weiToSell;
    return u256_mul(a.weiToSell, a.exchangeRate, out.tokensBought);  // exact: an integer rate
  }
  U256 wei, rem;
  Status s = u256_divmod(a.tokensToSell, a.exchangeRate, wei, rem);
  if (s != Status::Ok) return s;
  if (wei.is_zero()) return Status::BadArgs;  // fewer tokens than one wei's worth: nothing to sell
  out.weiBought = wei;                        // rounded down
  out.tokensKept = rem;                       // stays with the seller
  return u256_sub(a.tokensToSell, rem, out.tokensSold);
}

bool policy_update_matches(const ChannelUpdate& a, const ChannelUpdate& b) noexcept {
  if (a.reason != b.reason) return false;
  switch (a.reason) {
    case UpdateReason::Payment:
      return a.payment.recipient == b.payment.recipient && a.payment.amountWei == b.payment.amountWei &&
             a.payment.amountToken == b.payment.amountToken;
    case UpdateReason::Exchange:
      return a.exchange.seller == b.exchange.seller && a.exchange.weiToSell == b.exchange.weiToSell &&
             a.exchange.tokensToSell == b.exchange.tokensToSell && a.exchange.exchangeRate == b.exchange.exchangeRate;
    case UpdateReason::ProposePendingDeposit:
      return a.deposit.depositWeiHub == b.deposit.depositWeiHub && a.deposit.depositWeiUser == b.deposit.depositWeiUser &&
             a.deposit.depositTokenHub == b.deposit.depositTokenHub &&
             a.deposit.depositTokenUser == b.deposit.depositTokenUser && a.deposit.timeout == b.deposit.timeout;
    case UpdateReason::ProposePendingWithdrawal:
      return a.withdrawal.recipient == b.withdrawal.recipient &&
             a.withdrawal.withdrawalWeiHub == b.withdrawal.withdrawalWeiHub &&
             a.withdrawal.withdrawalWeiUser == b.withdrawal.withdrawalWeiUser &&
             a.withdrawal.withdrawalTokenHub == b.withdrawal.withdrawalTokenHub &&
             a.withdrawal.withdrawalTokenUser == b.withdrawal.withdrawalTokenUser &&
             a.withdrawal.timeout == b.withdrawal.timeout;
    case UpdateReason::ConfirmPending:
    case UpdateReason::EmptyChannel:
      return a.chainTx.transactionHash == b.chainTx.transactionHash;
    case UpdateReason::Invalidation:
      return a.invalidation.previousValidTxCount == b.invalidation.previousValidTxCount &&
             a.invalidation.lastInvalidTxCount == b.invalidation.lastInvalidTxCount;
    case UpdateReason::OpenThread:
    case UpdateReason::CloseThread:
      return thread_args_equal(a.thread.thread, b.thread.thread);
    default:
      return false;
  }
}

Status policy_check_chain_status(const ChainFacts& c, const ChannelState& prev, UpdateReason reason) noexcept {
  if (!c.known) return Status::Ok;
  if (c.status == ChainChannelStatus::InDispute) return Status::ChannelInDispute;
  if (c.emptied && reason != UpdateReason::EmptyChannel) {
    const bool holds = !prev.balanceWeiHub.is_zero() || !prev.balanceWeiUser.is_zero() ||
                       !prev.balanceTokenHub.is_zero() || !prev.balanceTokenUser.is_zero() ||
                       channel_blocks_updates(prev) || prev.threadCount != 0;
    if (holds) return Status::ChannelInDispute;
  }
  return Status::Ok;
}

Status policy_user_accepts_request(const UserPolicyInput& in, const ChannelState& prev,
                                   const ChannelUpdate& u) noexcept {
  // A skip repeats prev's contents (b) whatever the chain did: it is how a proposal the
  // hub refuses on an emptied channel is given up before EmptyChannel.
  Status st = channel_is_skip(prev, u) ? Status::Ok : policy_check_chain_status(in.chain, prev, u.reason);
  if (st != Status::Ok) return st;
  const UserRequests* rq = in.requests;
  switch (u.reason) {
    case UpdateReason::Payment:
      // The user pays what it decides to pay, never because the hub asks.
      return Status::NotRequested;
    case UpdateReason::Exchange: {
      const ExchangeArgs& a = u.exchange;
      if (rq == nullptr || !rq->exchange.active || a.seller != Party::User) return Status::NotRequested;
      const ExchangeRequest& r = rq->exchange;
      const bool same = r.sellWei ? (a.weiToSell == r.amount && a.tokensToSell.is_zero())
                                  : (a.tokensToSell == r.amount && a.weiToSell.is_zero());
      if (!same) return Status::NotRequested;
      if (a.exchangeRate < r.minRate || a.exchangeRate > r.maxRate) return Status::RateOutOfBounds;
      return Status::Ok;
    }
    case UpdateReason::ProposePendingDeposit: {
      const DepositArgs& a = u.deposit;
      if (any_nonzero(a.depositWeiUser, a.depositTokenUser)) {
        // The user's own money goes in only as it asked (it pays the transaction).
        if (rq == nullptr || !rq->deposit.active || a.depositWeiUser != rq->deposit.weiUser ||
            a.depositTokenUser != rq->deposit.tokenUser)
          return Status::NotRequested;
      }
      // Hub collateral only adds hub funds: the user's balances are untouched (b).
      return check_timeout(a.timeout, in.now, in.limits);
    }
    case UpdateReason::ProposePendingWithdrawal: {
      const WithdrawalArgs& a = u.withdrawal;
      if (any_nonzero(a.withdrawalWeiUser, a.withdrawalTokenUser)) {
        if (rq == nullptr || !rq->withdrawal.active || a.recipient != rq->withdrawal.recipient ||
            a.withdrawalWeiUser != rq->withdrawal.weiUser || a.withdrawalTokenUser != rq->withdrawal.tokenUser)
          return Status::NotRequested;
      } else if (a.recipient != in.user) {
        return Status::NotRequested;  // a hub-only withdrawal names the user as recipient
      }
      return check_timeout(a.timeout, in.now, in.limits);
    }
    case UpdateReason::ConfirmPending:
    case UpdateReason::Invalidation:
    case UpdateReason::EmptyChannel:
      // Invalidation of a half-signed state repeats prev's contents (b).
      if (channel_is_skip(prev, u)) return Status::Ok;
      return check_chain_fact(in.hasChainAccess, in.chain, prev, u.reason);
    case UpdateReason::OpenThread: {
      const ThreadState& t = u.thread.thread.state;
      if (t.receiver == in.user && t.sender != in.user)
        return in.acceptIncomingThreads ? Status::Ok : Status::Unauthorized;  // hub funds locked (b)
      return Status::NotRequested;  // locking the user's funds: only the user decides
    }
    case UpdateReason::CloseThread: {
      const ThreadState& t = u.thread.thread.state;
      if (in.threadLatest == nullptr) return Status::ThreadNotFound;
      const ThreadState& mine = *in.threadLatest;
      if (t.sender == in.user) {
        // Payer: any state it signed; an older one pays the payee less (b).
        if (t.txCount > mine.txCount) return Status::StateConflict;
        if (t.txCount == mine.txCount && !(t == mine)) return Status::StateConflict;
        return Status::Ok;
      }
      if (t.receiver == in.user) {
        // Payee: at least what it holds; an older state takes back received payments.
        if (t == mine || thread_check_transition(mine, t) == Status::Ok) return Status::Ok;
        return Status::StaleState;
      }
      return Status::WrongParty;
    }
    default:
      return Status::BadReason;
  }
}

Status policy_hub_countersigns(const HubPolicyInput& in, const ChannelState& prev, const ChannelUpdate& u) noexcept {
  Status st = channel_is_skip(prev, u) ? Status::Ok : policy_check_chain_status(in.chain, prev, u.reason);
  if (st != Status::Ok) return st;
  const bool requested = matches_any(in.requests, in.requestCount, u);
  switch (u.reason) {
    case UpdateReason::Payment:
      if (u.payment.recipient == Party::Hub) return Status::Ok;  // the user pays the hub (b)
      return requested ? Status::Ok : Status::NotRequested;
    case UpdateReason::Exchange: {
      if (requested) return Status::Ok;
      const ExchangeArgs& a = u.exchange;
      if (!in.rate.known || in.rate.tokensPerWei.is_zero()) return Status::StaleRate;
      if (in.rate.time > in.now + 60 || (in.now > in.rate.time && in.now - in.rate.time > in.limits.maxRateAgeSeconds))
        return Status::StaleRate;
      if (!within_spread(a.exchangeRate, in.rate.tokensPerWei, in.limits.maxSpreadBps)) return Status::RateOutOfBounds;
      // What the hub gives out (exchange_amounts: the one rounding rule).
      ExchangeAmounts x{};
      if (Status xs = exchange_amounts(a, x); xs != Status::Ok) return xs;
      const U256 wei = a.seller == Party::User ? x.weiBought : x.weiSold;
      const U256 tok = a.seller == Party::User ? x.tokensBought : x.tokensSold;
      if (wei > in.inventoryWei || tok > in.inventoryToken) return Status::NoInventory;
      return Status::Ok;
    }
    case UpdateReason::ProposePendingDeposit: {
      const DepositArgs& a = u.deposit;
      // Hub funds go in only as the hub decided (its reserve pays them).
      if (any_nonzero(a.depositWeiHub, a.depositTokenHub) && !requested) return Status::NotRequested;
      return check_timeout(a.timeout, in.now, in.limits);
    }
    case UpdateReason::ProposePendingWithdrawal: {
      const WithdrawalArgs& a = u.withdrawal;
      // The user withdraws its own balance (to any recipient); hub funds only as decided.
      if (any_nonzero(a.withdrawalWeiHub, a.withdrawalTokenHub) && !requested) return Status::NotRequested;
      return check_timeout(a.timeout, in.now, in.limits);
    }
    case UpdateReason::ConfirmPending:
    case UpdateReason::Invalidation:
    case UpdateReason::EmptyChannel:
      // Invalidation of a half-signed state repeats prev's contents (b).
      if (channel_is_skip(prev, u)) return Status::Ok;
      return check_chain_fact(in.hasChainAccess, in.chain, prev, u.reason);
    case UpdateReason::OpenThread: {
      const ThreadState& t = u.thread.thread.state;
      if (t.sender == prev.user) return Status::Ok;  // the payer locks its own funds
      return requested ? Status::Ok : Status::NotRequested;  // the mirror locks hub funds
    }
    case UpdateReason::CloseThread: {
      const ThreadState& t = u.thread.thread.state;
      if (t.receiver == prev.user) return Status::Ok;  // the payee closes with the payer's signed state
      return requested ? Status::Ok : Status::NotRequested;  // payer channel: the state of the payee's close
    }
    default:
      return Status::BadReason;
  }
}

}  // namespace picopay
