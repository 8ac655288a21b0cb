// The signing policy (policy.hpp, docs/signing-policy.md): for each reason and side,
// the harmful class is refused with its Status and the harmless / requested / chain-
// verified one accepted.
#include <gtest/gtest.h>

#include <cstring>

#include "picopay/policy.hpp"
#include "test_util.hpp"

using namespace picopay;
using picopay_test::u;

namespace {

constexpr uint64_t kNow = 1800000000;

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    user_ = picopay_test::addr("0x1111111111111111111111111111111111111111");
    hub_ = picopay_test::addr("0x2222222222222222222222222222222222222222");
    third_ = picopay_test::addr("0x3333333333333333333333333333333333333333");
    payee_ = picopay_test::addr("0x4444444444444444444444444444444444444444");
    prev_ = channel_state_zero();
    prev_.contractAddress = picopay_test::addr("0x7d73424a8256c0b2ba245e5d5a3de8820e45f390");
    prev_.user = prev_.recipient = user_;
    prev_.balanceWeiHub = u(1000);
    prev_.balanceWeiUser = u(500);
    prev_.balanceTokenHub = u(100000);
    prev_.balanceTokenUser = u(3000);
    prev_.txCountGlobal = 10;
    prev_.txCountChain = 2;
    std::memset(&req_, 0, sizeof req_);
    user_in_ = UserPolicyInput{user_, &req_, false, ChainFacts{}, kNow, false, nullptr, policy_limits_default()};
    hub_in_ = HubPolicyInput{nullptr, 0, HubRate{true, u(100), kNow - 60}, kNow, u(1000000), u(1000000), true,
                             ChainFacts{}, policy_limits_default()};
  }

  ChannelUpdate withdrawal(const Address& to, uint64_t weiUser, uint64_t weiHub) const {
    ChannelUpdate x = channel_update_make(UpdateReason::ProposePendingWithdrawal);
    x.withdrawal.recipient = to;
    x.withdrawal.withdrawalWeiUser = u(weiUser);
    x.withdrawal.withdrawalWeiHub = u(weiHub);
    x.withdrawal.timeout = kNow + 3600;
    return x;
  }
  ChannelUpdate deposit(uint64_t weiUser, uint64_t weiHub) const {
    ChannelUpdate x = channel_update_make(UpdateReason::ProposePendingDeposit);
    x.deposit.depositWeiUser = u(weiUser);
    x.deposit.depositWeiHub = u(weiHub);
    x.deposit.timeout = kNow + 3600;
    return x;
  }
  ChannelUpdate exchange(Party seller, uint64_t wei, uint64_t tokens, uint64_t rate) const {
    ChannelUpdate x = channel_update_make(UpdateReason::Exchange);
    x.exchange.seller = seller;
    x.exchange.weiToSell = u(wei);
    x.exchange.tokensToSell = u(tokens);
    x.exchange.exchangeRate = u(rate);
    return x;
  }
  ChannelUpdate thread_update(UpdateReason r, const Address& sender, const Address& receiver, uint64_t txCount,
                              uint64_t sent) const {
    ChannelUpdate x = channel_update_make(r);
    ThreadState& t = x.thread.thread.state;
    t = thread_state_zero();
    t.contractAddress = prev_.contractAddress;
    t.sender = sender;
    t.receiver = receiver;
    t.threadId = 1;
    t.balanceWeiSender = u(100 - sent);
    t.balanceWeiReceiver = u(sent);
    t.txCount = txCount;
    x.thread.thread.hasSigA = true;
    x.thread.thread.sigA.v = 27;
    return x;
  }
  ChainFacts facts(uint64_t txCountChain, uint64_t blockTime) const {
    return ChainFacts{true, prev_.txCountGlobal, txCountChain, ChainChannelStatus::Open, false, blockTime};
  }
  Status user(const ChannelUpdate& x) const { return policy_user_accepts_request(user_in_, prev_, x); }
  Status hub(const ChannelUpdate& x) const { return policy_hub_countersigns(hub_in_, prev_, x); }

  Address user_, hub_, third_, payee_;
  ChannelState prev_;
  UserRequests req_;
  UserPolicyInput user_in_;
  HubPolicyInput hub_in_;
};

// ---------------------------------------------------------------- user side

TEST_F(PolicyTest, UserNeverPaysOnRequest) {
  ChannelUpdate p = channel_update_make(UpdateReason::Payment);
  p.payment.recipient = Party::Hub;
  p.payment.amountWei = u(1);
  EXPECT_EQ(user(p), Status::NotRequested);
}

TEST_F(PolicyTest, UserWithdrawalOnlyAsRequested) {
  // The attack of the issue: the hub asks to move the whole balance to a third address.
  EXPECT_EQ(user(withdrawal(third_, 500, 0)), Status::NotRequested);
  req_.withdrawal = WithdrawalRequest{true, third_, u(500), u(0)};
  EXPECT_EQ(user(withdrawal(third_, 500, 0)), Status::Ok);  // what the user asked for
  EXPECT_EQ(user(withdrawal(hub_, 500, 0)), Status::NotRequested);   // another recipient
  EXPECT_EQ(user(withdrawal(third_, 499, 0)), Status::NotRequested);  // another amount
  ChannelUpdate tok = withdrawal(third_, 500, 0);
  tok.withdrawal.withdrawalTokenUser = u(1);
  EXPECT_EQ(user(tok), Status::NotRequested);
  req_.withdrawal.active = false;
  EXPECT_EQ(user(withdrawal(third_, 500, 0)), Status::NotRequested);  // no longer wanted
  // A hub-only withdrawal touches nothing of the user's, if it names the user.
  EXPECT_EQ(user(withdrawal(user_, 0, 300)), Status::Ok);
  EXPECT_EQ(user(withdrawal(third_, 0, 300)), Status::NotRequested);
}

TEST_F(PolicyTest, UserDepositsOnlyOwnRequestedFundsCollateralAlways) {
  EXPECT_EQ(user(deposit(0, 700)), Status::Ok);  // hub collateral: adds hub funds only
  EXPECT_EQ(user(deposit(10, 0)), Status::NotRequested);
  EXPECT_EQ(user(deposit(10, 700)), Status::NotRequested);
  req_.deposit = DepositRequest{true, u(10), u(0)};
  EXPECT_EQ(user(deposit(10, 0)), Status::Ok);
  EXPECT_EQ(user(deposit(11, 0)), Status::NotRequested);
  ChannelUpdate past = deposit(0, 700);
  past.deposit.timeout = kNow;
  EXPECT_EQ(user(past), Status::TimeoutOutOfBounds);
  ChannelUpdate far = deposit(0, 700);
  far.deposit.timeout = kNow + 86400 + 1;  // blocks the channel longer than a day
  EXPECT_EQ(user(far), Status::TimeoutOutOfBounds);
  user_in_.now = 0;  // a device without a clock cannot bound it
  EXPECT_EQ(user(far), Status::Ok);
}

TEST_F(PolicyTest, UserExchangeOnlyAsRequestedWithinTolerance) {
  EXPECT_EQ(user(exchange(Party::User, 10, 0, 100)), Status::NotRequested);
  req_.exchange = ExchangeRequest{true, true, u(10), u(95), u(105)};
  EXPECT_EQ(user(exchange(Party::User, 10, 0, 100)), Status::Ok);
  EXPECT_EQ(user(exchange(Party::User, 10, 0, 94)), Status::RateOutOfBounds);
  EXPECT_EQ(user(exchange(Party::User, 10, 0, 106)), Status::RateOutOfBounds);
  EXPECT_EQ(user(exchange(Party::User, 11, 0, 100)), Status::NotRequested);
  EXPECT_EQ(user(exchange(Party::User, 0, 1000, 100)), Status::NotRequested);  // the other side
  EXPECT_EQ(user(exchange(Party::Hub, 10, 0, 100)), Status::NotRequested);
}

TEST_F(PolicyTest, UserChainFactsNeeded) {
  ChannelState pending = prev_;
  pending.pendingDepositWeiHub = u(700);
  pending.txCountChain = 3;
  pending.timeout = kNow + 100;
  ChannelUpdate confirm = channel_update_make(UpdateReason::ConfirmPending);
  ChannelUpdate inval = channel_update_make(UpdateReason::Invalidation);
  inval.invalidation.previousValidTxCount = 9;
  inval.invalidation.lastInvalidTxCount = 10;
  ChannelUpdate empty = channel_update_make(UpdateReason::EmptyChannel);
  // No chain access at all: refuses, and says why.
  for (const ChannelUpdate* x : {&confirm, &inval, &empty})
    EXPECT_EQ(policy_user_accepts_request(user_in_, pending, *x), Status::NeedsChain);
  // Chain access but nothing read yet.
  user_in_.hasChainAccess = true;
  for (const ChannelUpdate* x : {&confirm, &inval, &empty})
    EXPECT_EQ(policy_user_accepts_request(user_in_, pending, *x), Status::NeedsChain);
  // The deposit has not happened: no ConfirmPending; it can still happen: no Invalidation.
  user_in_.chain = facts(2, kNow);
  EXPECT_EQ(policy_user_accepts_request(user_in_, pending, confirm), Status::NotOnChain);
  EXPECT_EQ(policy_user_accepts_request(user_in_, pending, inval), Status::NotOnChain);
  EXPECT_EQ(policy_user_accepts_request(user_in_, pending, empty), Status::NotOnChain);
  // Lapsed: Invalidation fine.
  user_in_.chain = facts(2, kNow + 100);
  EXPECT_EQ(policy_user_accepts_request(user_in_, pending, inval), Status::Ok);
  EXPECT_EQ(policy_user_accepts_request(user_in_, pending, confirm), Status::NotOnChain);
  // Executed: ConfirmPending fine, Invalidation never.
  user_in_.chain = facts(3, kNow + 200);
  EXPECT_EQ(policy_user_accepts_request(user_in_, pending, confirm), Status::Ok);
  EXPECT_EQ(policy_user_accepts_request(user_in_, pending, inval), Status::NotOnChain);
  user_in_.chain.emptied = true;
  EXPECT_EQ(policy_user_accepts_request(user_in_, pending, empty), Status::Ok);
}

TEST_F(PolicyTest, DisputeAndEmptiedChannelTakeNoOffChainUpdate) {
  user_in_.hasChainAccess = true;
  user_in_.chain = facts(2, kNow);
  user_in_.chain.status = ChainChannelStatus::InDispute;
  hub_in_.chain = user_in_.chain;
  ChannelUpdate p = channel_update_make(UpdateReason::Payment);
  p.payment.recipient = Party::Hub;
  p.payment.amountWei = u(1);
  EXPECT_EQ(user(deposit(0, 700)), Status::ChannelInDispute);
  EXPECT_EQ(hub(p), Status::ChannelInDispute);
  user_in_.chain.status = ChainChannelStatus::Open;
  user_in_.chain.emptied = true;
  hub_in_.chain = user_in_.chain;
  EXPECT_EQ(hub(p), Status::ChannelInDispute);  // balances still in the off-chain state
  ChannelUpdate empty = channel_update_make(UpdateReason::EmptyChannel);
  EXPECT_EQ(hub(empty), Status::Ok);
  EXPECT_EQ(user(empty), Status::Ok);
  // Once the off-chain state is empty too, the channel is usable again.
  ChannelState zero = prev_;
  zero.balanceWeiHub = zero.balanceWeiUser = zero.balanceTokenHub = zero.balanceTokenUser = U256::zero();
  EXPECT_EQ(policy_hub_countersigns(hub_in_, zero, deposit(5, 0)), Status::Ok);
}

TEST_F(PolicyTest, UserThreadRules) {
  // The mirror of a thread to this user (payee channel, hub funds locked).
  ChannelUpdate mirror = thread_update(UpdateReason::OpenThread, third_, user_, 0, 0);
  EXPECT_EQ(user(mirror), Status::Unauthorized);  // not a payee
  user_in_.acceptIncomingThreads = true;
  EXPECT_EQ(user(mirror), Status::Ok);
  // A thread locking the user's own funds is only opened by the user's own decision.
  EXPECT_EQ(user(thread_update(UpdateReason::OpenThread, user_, third_, 0, 0)), Status::NotRequested);
  // Payer channel CloseThread: any state the user signed, not newer than its latest.
  ChannelUpdate latest = thread_update(UpdateReason::CloseThread, user_, payee_, 5, 40);
  const ThreadState mine = latest.thread.thread.state;
  EXPECT_EQ(user(latest), Status::ThreadNotFound);
  user_in_.threadLatest = &mine;
  EXPECT_EQ(user(latest), Status::Ok);
  EXPECT_EQ(user(thread_update(UpdateReason::CloseThread, user_, payee_, 3, 20)), Status::Ok);  // pays less
  EXPECT_EQ(user(thread_update(UpdateReason::CloseThread, user_, payee_, 6, 60)), Status::StateConflict);
  EXPECT_EQ(user(thread_update(UpdateReason::CloseThread, user_, payee_, 5, 41)), Status::StateConflict);
  // Payee channel CloseThread: at least what the payee holds.
  ChannelUpdate in5 = thread_update(UpdateReason::CloseThread, third_, user_, 5, 40);
  const ThreadState held = in5.thread.thread.state;
  user_in_.threadLatest = &held;
  EXPECT_EQ(user(in5), Status::Ok);
  EXPECT_EQ(user(thread_update(UpdateReason::CloseThread, third_, user_, 7, 60)), Status::Ok);
  EXPECT_EQ(user(thread_update(UpdateReason::CloseThread, third_, user_, 3, 20)), Status::StaleState);
}

// ---------------------------------------------------------------- hub side

TEST_F(PolicyTest, HubPaymentsOnlyFromTheUser) {
  ChannelUpdate p = channel_update_make(UpdateReason::Payment);
  p.payment.recipient = Party::Hub;
  p.payment.amountWei = u(5);
  EXPECT_EQ(hub(p), Status::Ok);
  p.payment.recipient = Party::User;
  EXPECT_EQ(hub(p), Status::NotRequested);
  hub_in_.requests = &p;
  hub_in_.requestCount = 1;
  EXPECT_EQ(hub(p), Status::Ok);
}

TEST_F(PolicyTest, HubExchangeAtItsRateWithinSpreadAgeInventory) {
  EXPECT_EQ(hub(exchange(Party::User, 10, 0, 100)), Status::Ok);
  EXPECT_EQ(hub(exchange(Party::User, 10, 0, 102)), Status::Ok);   // +2 %: the bound
  EXPECT_EQ(hub(exchange(Party::User, 10, 0, 103)), Status::RateOutOfBounds);
  EXPECT_EQ(hub(exchange(Party::User, 0, 980, 98)), Status::Ok);  // -2 %: the bound
  EXPECT_EQ(hub(exchange(Party::User, 0, 970, 97)), Status::RateOutOfBounds);
  EXPECT_EQ(hub(exchange(Party::User, 10, 0, 1)), Status::RateOutOfBounds);  // the user's rate
  hub_in_.rate.time = kNow - 86400 - 1;
  EXPECT_EQ(hub(exchange(Party::User, 10, 0, 100)), Status::StaleRate);
  hub_in_.rate.time = kNow - 86400;
  EXPECT_EQ(hub(exchange(Party::User, 10, 0, 100)), Status::Ok);
  hub_in_.rate.known = false;
  EXPECT_EQ(hub(exchange(Party::User, 10, 0, 100)), Status::StaleRate);
  hub_in_.rate.known = true;
  hub_in_.inventoryToken = u(999);  // 10 wei at 100 gives out 1000 tokens
  EXPECT_EQ(hub(exchange(Party::User, 10, 0, 100)), Status::NoInventory);
  hub_in_.inventoryToken = u(1000);
  EXPECT_EQ(hub(exchange(Party::User, 10, 0, 100)), Status::Ok);
  hub_in_.inventoryWei = u(9);  // 1000 tokens at 100 gives out 10 wei
  EXPECT_EQ(hub(exchange(Party::User, 0, 1000, 100)), Status::NoInventory);
}

TEST_F(PolicyTest, HubDepositsAndWithdrawalsNeverDrawOnItsReserveUnasked) {
  EXPECT_EQ(hub(deposit(50, 0)), Status::Ok);            // the user's own funds
  EXPECT_EQ(hub(deposit(50, 1)), Status::NotRequested);  // draws on the hub's reserve
  EXPECT_EQ(hub(withdrawal(third_, 500, 0)), Status::Ok);  // the user's balance, anywhere
  EXPECT_EQ(hub(withdrawal(user_, 0, 1)), Status::NotRequested);
  ChannelUpdate col = deposit(0, 700);
  hub_in_.requests = &col;
  hub_in_.requestCount = 1;
  EXPECT_EQ(hub(col), Status::Ok);
  ChannelUpdate other = col;
  other.deposit.depositWeiHub = u(701);
  EXPECT_EQ(hub(other), Status::NotRequested);
  ChannelUpdate late = deposit(50, 0);
  late.deposit.timeout = kNow + 86400 * 30;
  EXPECT_EQ(hub(late), Status::TimeoutOutOfBounds);
}

TEST_F(PolicyTest, HubChainFactsNeeded) {
  ChannelState pending = prev_;
  pending.pendingDepositWeiUser = u(50);
  pending.txCountChain = 3;
  pending.timeout = kNow + 100;
  ChannelUpdate confirm = channel_update_make(UpdateReason::ConfirmPending);
  hub_in_.hasChainAccess = false;
  EXPECT_EQ(policy_hub_countersigns(hub_in_, pending, confirm), Status::NeedsChain);
  hub_in_.hasChainAccess = true;
  EXPECT_EQ(policy_hub_countersigns(hub_in_, pending, confirm), Status::NeedsChain);
  hub_in_.chain = facts(2, kNow);
  EXPECT_EQ(policy_hub_countersigns(hub_in_, pending, confirm), Status::NotOnChain);
  hub_in_.chain = facts(3, kNow);
  EXPECT_EQ(policy_hub_countersigns(hub_in_, pending, confirm), Status::Ok);
  ChannelUpdate empty = channel_update_make(UpdateReason::EmptyChannel);
  EXPECT_EQ(policy_hub_countersigns(hub_in_, pending, empty), Status::NotOnChain);
}

// EmptyChannel (c): both sides sign it only when the chain shows the channel emptied,
// no dispute running, and the new state (txCountGlobal prev + 1, txCountChain prev's)
// neither predates the state the contract applied nor lags its txCount[1].
TEST_F(PolicyTest, EmptyChannelOnlyWithTheChainsCounts) {
  user_in_.hasChainAccess = true;
  ChannelUpdate empty = channel_update_make(UpdateReason::EmptyChannel);
  auto both_u = [&](const ChannelUpdate& x) {
    const Status a = user(x), b = hub(x);
    EXPECT_EQ(a, b);
    return a;
  };
  auto both = [&](const ChainFacts& f) {
    user_in_.chain = f;
    hub_in_.chain = f;
    return both_u(empty);
  };
  ChainFacts f = facts(2, kNow);  // txCount [10, 2], as prev_
  EXPECT_EQ(both(f), Status::NotOnChain);  // open with funds: not emptied
  f.emptied = true;
  EXPECT_EQ(both(f), Status::Ok);
  f.txCountGlobal = 9;  // an older state applied, emptied (our newer one was never put on chain)
  EXPECT_EQ(both(f), Status::Ok);
  f.txCountChain = 1;  // an authorized update of ours never ran (invalidated): ours stays ahead
  EXPECT_EQ(both(f), Status::Ok);
  f = facts(2, kNow);
  f.emptied = true;
  f.txCountGlobal = 11;  // the chain holds a state newer than our latest: not ours to record
  EXPECT_EQ(both(f), Status::NotOnChain);
  f.txCountGlobal = 10;
  f.txCountChain = 3;  // the contract ran an authorized update our latest does not know
  EXPECT_EQ(both(f), Status::NotOnChain);
  f.txCountChain = 2;
  f.status = ChainChannelStatus::InDispute;  // ThreadDispute after an empty: threads still out
  EXPECT_EQ(both(f), Status::ChannelInDispute);
  f.status = ChainChannelStatus::Open;
  f.known = false;
  EXPECT_EQ(both(f), Status::NeedsChain);
  // A pending deposit of the latest state that the contract could still run (its
  // txCountGlobal above the chain's, its timeout ahead): emptying it off chain would
  // lose the deposit once it runs. Not before the timeout has passed.
  ChannelState pending = prev_;
  pending.balanceWeiHub = pending.balanceWeiUser = pending.balanceTokenHub = pending.balanceTokenUser = U256::zero();
  pending.pendingDepositWeiUser = u(700);
  pending.txCountChain = 3;
  pending.timeout = kNow + 100;
  f = facts(2, kNow);
  f.emptied = true;
  f.txCountGlobal = 9;
  user_in_.chain = hub_in_.chain = f;
  EXPECT_EQ(policy_user_accepts_request(user_in_, pending, empty), Status::NotOnChain);
  EXPECT_EQ(policy_hub_countersigns(hub_in_, pending, empty), Status::NotOnChain);
  f.blockTime = kNow + 100;
  user_in_.chain = hub_in_.chain = f;
  EXPECT_EQ(policy_user_accepts_request(user_in_, pending, empty), Status::Ok);
  EXPECT_EQ(policy_hub_countersigns(hub_in_, pending, empty), Status::Ok);
  // A skip (the Invalidation of a half-signed latest + 1) repeats prev's contents: it
  // passes on an emptied channel and in a dispute, so a refused proposal can be given up.
  ChannelUpdate skip = channel_update_make(UpdateReason::Invalidation);
  skip.txCountGlobal = prev_.txCountGlobal + 2;
  skip.invalidation.previousValidTxCount = prev_.txCountGlobal;
  skip.invalidation.lastInvalidTxCount = prev_.txCountGlobal + 1;
  f = facts(2, kNow);
  f.emptied = true;
  user_in_.chain = hub_in_.chain = f;
  EXPECT_EQ(both_u(skip), Status::Ok);
  ChannelUpdate pay = channel_update_make(UpdateReason::Payment);
  pay.payment.recipient = Party::Hub;
  pay.payment.amountWei = u(1);
  EXPECT_EQ(hub(pay), Status::ChannelInDispute);
}

TEST_F(PolicyTest, HubThreadRules) {
  // Payer channel: the payer locks its own funds.
  EXPECT_EQ(hub(thread_update(UpdateReason::OpenThread, user_, payee_, 0, 0)), Status::Ok);
  // Payee channel: hub collateral is locked only for a mirror the hub requested.
  ChannelUpdate mirror = thread_update(UpdateReason::OpenThread, third_, user_, 0, 0);
  EXPECT_EQ(hub(mirror), Status::NotRequested);
  hub_in_.requests = &mirror;
  hub_in_.requestCount = 1;
  EXPECT_EQ(hub(mirror), Status::Ok);
  // Payee channel close: the payer-signed state the payee holds.
  EXPECT_EQ(hub(thread_update(UpdateReason::CloseThread, third_, user_, 5, 40)), Status::Ok);
  // Payer channel close: exactly the state of the payee's close (the hub's request).
  ChannelUpdate close = thread_update(UpdateReason::CloseThread, user_, payee_, 5, 40);
  EXPECT_EQ(hub(close), Status::NotRequested);
  hub_in_.requests = &close;
  EXPECT_EQ(hub(close), Status::Ok);
  // A payer closing with an older state than the payee closed with would make the hub
  // pay the payee more than it gets from the payer.
  EXPECT_EQ(hub(thread_update(UpdateReason::CloseThread, user_, payee_, 3, 20)), Status::NotRequested);
}

TEST_F(PolicyTest, UpdateMatchesComparesArgsNotTxCountOrSig) {
  ChannelUpdate a = deposit(0, 700);
  ChannelUpdate b = a;
  b.txCountGlobal = 99;
  b.sig.v = 28;
  EXPECT_TRUE(policy_update_matches(a, b));
  b.deposit.timeout += 1;
  EXPECT_FALSE(policy_update_matches(a, b));
  ChannelUpdate t1 = thread_update(UpdateReason::CloseThread, user_, payee_, 5, 40);
  ChannelUpdate t2 = t1;
  t2.thread.thread.sigA.r[0] ^= 1;
  EXPECT_FALSE(policy_update_matches(t1, t2));
  ChannelUpdate t3 = t1;
  t3.reason = UpdateReason::OpenThread;
  EXPECT_FALSE(policy_update_matches(t1, t3));
}

}  // namespace
