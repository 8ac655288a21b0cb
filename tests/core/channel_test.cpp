// Channel and thread state machines (channel.hpp): each UpdateReason through
// channel_propose (one role) and channel_accept (the other), checked against the exact
// expected next state; negative tests for each rule; check_transition on hand-built
// states; thread sets; the thread payment machine.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "picopay/channel.hpp"
#include "picopay/policy.hpp"
#include "picopay/signer.hpp"
#include "picopay/state.hpp"
#include "test_util.hpp"

using namespace picopay;
using picopay_test::u;

namespace {

PrivateKey key_fill(uint8_t b) {
  PrivateKey k;
  std::memset(k.bytes, b, 32);
  return k;
}

constexpr size_t kCap = 8;

struct Threads {
  ThreadState items[kCap];
  Hash32 scratch[kCap + 2];
  ThreadSet set;
  Threads() : items{}, scratch{}, set{items, 0, kCap, scratch} {}
  Threads(const Threads&) = delete;
  Threads& operator=(const Threads&) = delete;
};

class ChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(signer_.init(), Status::Ok);
    userKey_ = key_fill(0x22);
    hubKey_ = key_fill(0x33);
    thirdKey_ = key_fill(0x44);
    payeeKey_ = key_fill(0x55);
    ASSERT_EQ(signer_.address_of(userKey_, user_), Status::Ok);
    ASSERT_EQ(signer_.address_of(hubKey_, hub_), Status::Ok);
    ASSERT_EQ(signer_.address_of(thirdKey_, third_), Status::Ok);
    ASSERT_EQ(signer_.address_of(payeeKey_, payee_), Status::Ok);
    ctx_.hub = hub_;
    contract_ = picopay_test::addr("0x7d73424a8256c0b2ba245e5d5a3de8820e45f390");
    prev_ = channel_state_zero();
    prev_.contractAddress = contract_;
    prev_.user = user_;
    prev_.recipient = user_;
    prev_.balanceWeiHub = u(1000);
    prev_.balanceWeiUser = u(500);
    prev_.balanceTokenHub = u(2000);
    prev_.balanceTokenUser = u(300);
    prev_.txCountGlobal = 10;
    prev_.txCountChain = 2;
  }

  const PrivateKey& key_of(Party p) const { return p == Party::User ? userKey_ : hubKey_; }
  static Party other(Party p) { return p == Party::User ? Party::Hub : Party::User; }

  // proposer builds and signs; the other party accepts. Returns the accepted state.
  // On any error returns it (from propose first, then accept).
  Status round_trip(Party proposer, const ChannelState& prev, const ThreadSet& threads, ChannelUpdate& u,
                    ChannelState& next) {
    ChannelState proposed = channel_state_zero();
    Status st = channel_propose(ctx_, signer_, key_of(proposer), proposer, prev, threads, u, proposed);
    if (st != Status::Ok) return st;
    EXPECT_EQ(u.txCountGlobal, prev.txCountGlobal + 1);
    Hash32 h{};
    ChannelState accepted = channel_state_zero();
    st = channel_accept(ctx_, signer_, other(proposer), prev, threads, u, accepted, h);
    if (st != Status::Ok) return st;
    EXPECT_EQ(proposed, accepted) << "proposer and receiver rebuilt different states";
    EXPECT_EQ(h, channel_hash(accepted));
    Address signer_addr;
    EXPECT_EQ(signer_.recover_eth(h, u.sig, signer_addr), Status::Ok);
    EXPECT_EQ(signer_addr, proposer == Party::User ? prev.user : hub_);
    next = accepted;
    return Status::Ok;
  }

  // The receiver's verdict on an update request (already proposed or hand-made).
  Status accept(Party receiver, const ChannelState& prev, const ThreadSet& threads, const ChannelUpdate& u) {
    ChannelState next = channel_state_zero();
    Hash32 h{};
    return channel_accept(ctx_, signer_, receiver, prev, threads, u, next, h);
  }

  // Signs `state` with `key` (eth_sign over the channel hash) into u.sig.
  void sign_state_into(ChannelUpdate& u, const ChannelState& state, const PrivateKey& key) {
    ASSERT_EQ(signer_.sign_eth(key, channel_hash(state), u.sig), Status::Ok);
  }

  SignedThreadState make_thread(const Address& sender, const PrivateKey& senderKey, const Address& receiver,
                                uint64_t id, uint64_t wei, uint64_t token) {
    SignedThreadState t;
    std::memset(&t, 0, sizeof t);
    t.state = thread_state_zero();
    t.state.contractAddress = contract_;
    t.state.sender = sender;
    t.state.receiver = receiver;
    t.state.threadId = id;
    t.state.balanceWeiSender = u(wei);
    t.state.balanceTokenSender = u(token);
    t.hasSigA = true;
    EXPECT_EQ(signer_.sign_eth(senderKey, thread_hash(t.state), t.sigA), Status::Ok);
    return t;
  }
  void resign(SignedThreadState& t, const PrivateKey& k) {
    ASSERT_EQ(signer_.sign_eth(k, thread_hash(t.state), t.sigA), Status::Ok);
  }

  Hash32 root_over(const std::vector<ThreadState>& states) {
    std::vector<Hash32> leaves;
    for (const ThreadState& t : states) leaves.push_back(thread_hash(t));
    size_t n = leaves.size();
    leaves.resize(n + 1);
    Hash32 r{};
    EXPECT_EQ(thread_root_in_place(leaves.data(), n, n + 1, r), Status::Ok);
    return r;
  }

  Signer signer_;
  PrivateKey userKey_, hubKey_, thirdKey_, payeeKey_;
  Address user_, hub_, third_, payee_, contract_;
  ChannelContext ctx_;
  ChannelState prev_;
};

ChannelUpdate payment(Party recipient, uint64_t wei, uint64_t token) {
  ChannelUpdate x = channel_update_make(UpdateReason::Payment);
  x.payment.recipient = recipient;
  x.payment.amountWei = u(wei);
  x.payment.amountToken = u(token);
  return x;
}

}  // namespace

// ================================================================== positive paths

TEST_F(ChannelTest, UpdateMakeIsZeroedWithReason) {
  ChannelUpdate x = channel_update_make(UpdateReason::Exchange);
  EXPECT_EQ(x.reason, UpdateReason::Exchange);
  EXPECT_EQ(x.txCountGlobal, 0u);
  EXPECT_TRUE(x.exchange.weiToSell.is_zero());
  EXPECT_TRUE(x.payment.amountWei.is_zero());
}

TEST_F(ChannelTest, PaymentUserToHub) {
  Threads th;
  prev_.timeout = 0;
  ChannelUpdate x = payment(Party::Hub, 100, 7);
  ChannelState next;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::Ok);
  ChannelState want = prev_;
  want.balanceWeiUser = u(400);
  want.balanceWeiHub = u(1100);
  want.balanceTokenUser = u(293);
  want.balanceTokenHub = u(2007);
  want.txCountGlobal = 11;
  want.timeout = 0;
  EXPECT_EQ(next, want);
}

TEST_F(ChannelTest, PaymentHubToUser) {
  Threads th;
  ChannelUpdate x = payment(Party::User, 1000, 0);  // the hub's whole wei balance
  ChannelState next;
  ASSERT_EQ(round_trip(Party::Hub, prev_, th.set, x, next), Status::Ok);
  ChannelState want = prev_;
  want.balanceWeiUser = u(1500);
  want.balanceWeiHub = u(0);
  want.txCountGlobal = 11;
  EXPECT_EQ(next, want);
}

// Connext's rule: on a state with pending operations only ConfirmPending, Invalidation
// (or EmptyChannel) may follow, so a pending withdrawal is never carried into a second
// state with the same txCountChain (the contract would execute it twice).
TEST_F(ChannelTest, NothingButConfirmOrInvalidationOnPendingOps) {
  Threads th;
  SignedThreadState t = make_thread(user_, userKey_, payee_, 1, 10, 0);
  ChannelState withdrawing = prev_;
  withdrawing.balanceWeiUser = u(400);
  withdrawing.pendingWithdrawalWeiUser = u(100);
  withdrawing.timeout = 1900000000;
  ChannelState depositing = prev_;
  depositing.pendingDepositWeiUser = u(50);
  depositing.timeout = 1900000000;
  ChannelState timeoutOnly = prev_;
  timeoutOnly.timeout = 1900000000;
  for (const ChannelState* base : {&withdrawing, &depositing, &timeoutOnly}) {
    EXPECT_TRUE(channel_blocks_updates(*base));
    std::vector<ChannelUpdate> refused;
    refused.push_back(payment(Party::Hub, 10, 0));
    refused.push_back(payment(Party::User, 10, 0));
    ChannelUpdate ex = channel_update_make(UpdateReason::Exchange);
    ex.exchange.seller = Party::User;
    ex.exchange.weiToSell = u(1);
    ex.exchange.exchangeRate = u(2);
    refused.push_back(ex);
    ChannelUpdate dep = channel_update_make(UpdateReason::ProposePendingDeposit);
    dep.deposit.depositWeiUser = u(1);
    dep.deposit.timeout = 1900000100;
    refused.push_back(dep);
    ChannelUpdate wd = channel_update_make(UpdateReason::ProposePendingWithdrawal);
    wd.withdrawal.recipient = user_;
    wd.withdrawal.withdrawalWeiUser = u(1);
    wd.withdrawal.timeout = 1900000100;
    refused.push_back(wd);
    ChannelUpdate open = channel_update_make(UpdateReason::OpenThread);
    open.thread.thread = t;
    refused.push_back(open);
    for (ChannelUpdate& x : refused) {
      ChannelState next;
      x.txCountGlobal = base->txCountGlobal + 1;
      EXPECT_EQ(channel_next_state(ctx_, *base, th.set, x, next), Status::PendingOperation)
          << update_reason_name(x.reason);
      const Party proposer =
          x.reason == UpdateReason::Payment && x.payment.recipient == Party::User ? Party::Hub : Party::User;
      EXPECT_EQ(round_trip(proposer, *base, th.set, x, next), Status::PendingOperation)
          << update_reason_name(x.reason);
    }
  }
  // ConfirmPending and Invalidation still follow.
  ChannelState next;
  ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
  EXPECT_EQ(round_trip(Party::User, withdrawing, th.set, c, next), Status::Ok);
  EXPECT_FALSE(channel_blocks_updates(next));
  ChannelUpdate inv = channel_update_make(UpdateReason::Invalidation);
  inv.invalidation.previousValidTxCount = withdrawing.txCountGlobal - 1;
  inv.invalidation.lastInvalidTxCount = withdrawing.txCountGlobal;
  EXPECT_EQ(round_trip(Party::User, withdrawing, th.set, inv, next), Status::Ok);
  EXPECT_EQ(next.balanceWeiUser, u(500));
  EXPECT_FALSE(channel_blocks_updates(next));
  EXPECT_FALSE(channel_blocks_updates(prev_));
}

TEST_F(ChannelTest, ExchangeUserSellsWei) {
  Threads th;
  ChannelUpdate x = channel_update_make(UpdateReason::Exchange);
  x.exchange.seller = Party::User;
  x.exchange.weiToSell = u(10);
  x.exchange.exchangeRate = u(5);
  ChannelState next;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::Ok);
  ChannelState want = prev_;
  want.balanceWeiUser = u(490);
  want.balanceWeiHub = u(1010);
  want.balanceTokenUser = u(350);
  want.balanceTokenHub = u(1950);
  want.txCountGlobal = 11;
  EXPECT_EQ(next, want);
}

TEST_F(ChannelTest, ExchangeUserSellsTokens) {
  Threads th;
  ChannelUpdate x = channel_update_make(UpdateReason::Exchange);
  x.exchange.seller = Party::User;
  x.exchange.tokensToSell = u(50);
  x.exchange.exchangeRate = u(5);
  ChannelState next;
  ASSERT_EQ(round_trip(Party::Hub, prev_, th.set, x, next), Status::Ok);
  ChannelState want = prev_;
  want.balanceTokenUser = u(250);
  want.balanceTokenHub = u(2050);
  want.balanceWeiUser = u(510);
  want.balanceWeiHub = u(990);
  want.txCountGlobal = 11;
  EXPECT_EQ(next, want);
}

// Connext v1's rule for amounts that do not divide evenly (docs/tokens.md): 53 tokens at
// 5 per wei buy 10 wei (rounded down); 50 tokens are sold, the remainder 3 stays with the
// seller, on either side.
TEST_F(ChannelTest, ExchangeRemainderStaysWithTheSeller) {
  Threads th;
  ChannelUpdate x = channel_update_make(UpdateReason::Exchange);
  x.exchange.seller = Party::User;
  x.exchange.tokensToSell = u(53);
  x.exchange.exchangeRate = u(5);
  ExchangeAmounts a{};
  ASSERT_EQ(exchange_amounts(x.exchange, a), Status::Ok);
  EXPECT_EQ(a.weiBought, u(10));
  EXPECT_EQ(a.tokensSold, u(50));
  EXPECT_EQ(a.tokensKept, u(3));
  ChannelState next;
  ASSERT_EQ(round_trip(Party::Hub, prev_, th.set, x, next), Status::Ok);
  ChannelState want = prev_;
  want.balanceTokenUser = u(250);  // 300 - 50, not - 53
  want.balanceTokenHub = u(2050);
  want.balanceWeiUser = u(510);
  want.balanceWeiHub = u(990);
  want.txCountGlobal = 11;
  EXPECT_EQ(next, want);
  // The hub as seller: the same rule, the remainder stays in the hub's balance.
  x.exchange.seller = Party::Hub;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::Ok);
  want = prev_;
  want.balanceTokenHub = u(1950);
  want.balanceTokenUser = u(350);
  want.balanceWeiHub = u(1010);
  want.balanceWeiUser = u(490);
  want.txCountGlobal = 11;
  EXPECT_EQ(next, want);
}

TEST_F(ChannelTest, ProposePendingDeposit) {
  Threads th;
  ChannelUpdate x = channel_update_make(UpdateReason::ProposePendingDeposit);
  x.deposit.depositWeiUser = u(100);
  x.deposit.depositTokenHub = u(50);
  x.deposit.timeout = 1900000000;
  ChannelState next;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::Ok);
  ChannelState want = prev_;
  want.pendingDepositWeiUser = u(100);
  want.pendingDepositTokenHub = u(50);
  want.timeout = 1900000000;
  want.txCountGlobal = 11;
  want.txCountChain = 3;
  EXPECT_EQ(next, want);
}

TEST_F(ChannelTest, ProposePendingWithdrawal) {
  Threads th;
  ChannelUpdate x = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  x.withdrawal.recipient = third_;
  x.withdrawal.withdrawalWeiUser = u(200);
  x.withdrawal.withdrawalTokenHub = u(100);
  x.withdrawal.timeout = 1900000000;
  ChannelState next;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::Ok);
  ChannelState want = prev_;
  want.recipient = third_;
  want.balanceWeiUser = u(300);
  want.pendingWithdrawalWeiUser = u(200);
  want.balanceTokenHub = u(1900);
  want.pendingWithdrawalTokenHub = u(100);
  want.timeout = 1900000000;
  want.txCountGlobal = 11;
  want.txCountChain = 3;
  EXPECT_EQ(next, want);
}

TEST_F(ChannelTest, ConfirmPendingSettlesPerApplyPendingUpdates) {
  Threads th;
  // hub wei: deposit 30 > withdrawal 10 -> balance += 20
  // user wei: deposit 20 < withdrawal 50 -> already taken out: balance unchanged
  // hub token: deposit 40, no withdrawal -> += 40; user token: withdrawal 5 -> unchanged
  prev_.pendingDepositWeiHub = u(30);
  prev_.pendingWithdrawalWeiHub = u(10);
  prev_.pendingDepositWeiUser = u(20);
  prev_.pendingWithdrawalWeiUser = u(50);
  prev_.pendingDepositTokenHub = u(40);
  prev_.pendingWithdrawalTokenUser = u(5);
  prev_.recipient = third_;
  prev_.timeout = 1900000000;
  for (Party proposer : {Party::Hub, Party::User}) {
    ChannelUpdate x = channel_update_make(UpdateReason::ConfirmPending);
    std::memset(x.chainTx.transactionHash.bytes, 0xAB, 32);
    ChannelState next;
    ASSERT_EQ(round_trip(proposer, prev_, th.set, x, next), Status::Ok);
    ChannelState want = prev_;
    want.balanceWeiHub = u(1020);
    want.balanceTokenHub = u(2040);
    want.pendingDepositWeiHub = want.pendingWithdrawalWeiHub = U256::zero();
    want.pendingDepositWeiUser = want.pendingWithdrawalWeiUser = U256::zero();
    want.pendingDepositTokenHub = want.pendingWithdrawalTokenUser = U256::zero();
    want.recipient = user_;
    want.timeout = 0;
    want.txCountGlobal = 11;
    EXPECT_EQ(next, want);
  }
}

TEST_F(ChannelTest, DepositThenConfirmEndToEnd) {
  Threads th;
  ChannelUpdate d = channel_update_make(UpdateReason::ProposePendingDeposit);
  d.deposit.depositWeiUser = u(100);
  d.deposit.timeout = 1900000000;
  ChannelState s1, s2;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, d, s1), Status::Ok);
  ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
  ASSERT_EQ(round_trip(Party::Hub, s1, th.set, c, s2), Status::Ok);
  EXPECT_EQ(s2.balanceWeiUser, u(600));
  EXPECT_FALSE(channel_has_pending(s2));
  EXPECT_EQ(s2.txCountGlobal, 12u);
  EXPECT_EQ(s2.txCountChain, 3u);
  EXPECT_EQ(s2.timeout, 0u);
}

TEST_F(ChannelTest, InvalidationRestoresBalances) {
  Threads th;
  ChannelUpdate w = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  w.withdrawal.recipient = user_;
  w.withdrawal.withdrawalWeiUser = u(200);
  w.withdrawal.withdrawalTokenHub = u(100);
  w.withdrawal.timeout = 1900000000;
  ChannelState s1, s2;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, w, s1), Status::Ok);
  ChannelUpdate inv = channel_update_make(UpdateReason::Invalidation);
  inv.invalidation.previousValidTxCount = 10;
  inv.invalidation.lastInvalidTxCount = 11;
  ASSERT_EQ(round_trip(Party::Hub, s1, th.set, inv, s2), Status::Ok);
  ChannelState want = prev_;
  want.txCountGlobal = 12;
  want.txCountChain = 3;  // never decreases
  want.timeout = 0;
  EXPECT_EQ(s2, want);
}

TEST_F(ChannelTest, InvalidationClearsPendingDeposits) {
  Threads th;
  prev_.pendingDepositWeiUser = u(100);
  prev_.pendingDepositTokenHub = u(7);
  prev_.timeout = 1900000000;
  ChannelUpdate inv = channel_update_make(UpdateReason::Invalidation);
  inv.invalidation.previousValidTxCount = 9;
  inv.invalidation.lastInvalidTxCount = 10;
  ChannelState next;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, inv, next), Status::Ok);
  ChannelState want = prev_;
  want.pendingDepositWeiUser = want.pendingDepositTokenHub = U256::zero();
  want.timeout = 0;
  want.txCountGlobal = 11;
  EXPECT_EQ(next, want);
}

TEST_F(ChannelTest, InvalidationBadArgs) {
  Threads th;
  prev_.pendingDepositWeiUser = u(100);
  ChannelUpdate inv = channel_update_make(UpdateReason::Invalidation);
  inv.invalidation.previousValidTxCount = 9;
  inv.invalidation.lastInvalidTxCount = 9;  // must be prev.txCountGlobal (10)
  ChannelState next;
  EXPECT_EQ(round_trip(Party::Hub, prev_, th.set, inv, next), Status::BadArgs);
  inv.invalidation.previousValidTxCount = 10;
  inv.invalidation.lastInvalidTxCount = 10;  // previousValid must be lower
  EXPECT_EQ(round_trip(Party::Hub, prev_, th.set, inv, next), Status::BadArgs);
}

// Invalidation of a half-signed state: the user proposed prev + 1, the hub never
// countersigned it; prev + 2 repeats prev's contents, so the half-signed state can never
// become the latest.
TEST_F(ChannelTest, InvalidationOfHalfSignedStateSkipsIt) {
  Threads th;
  ChannelUpdate halfSigned = payment(Party::Hub, 7, 0);
  ChannelState n1;
  ASSERT_EQ(channel_propose(ctx_, signer_, userKey_, Party::User, prev_, th.set, halfSigned, n1), Status::Ok);
  ChannelUpdate skip = channel_update_make(UpdateReason::Invalidation);
  skip.invalidation.previousValidTxCount = prev_.txCountGlobal;
  skip.invalidation.lastInvalidTxCount = prev_.txCountGlobal + 1;
  EXPECT_TRUE(channel_is_skip(prev_, skip));
  ChannelState proposed, accepted;
  Hash32 h;
  ASSERT_EQ(channel_propose(ctx_, signer_, userKey_, Party::User, prev_, th.set, skip, proposed), Status::Ok);
  EXPECT_EQ(skip.txCountGlobal, prev_.txCountGlobal + 2);
  ASSERT_EQ(channel_accept(ctx_, signer_, Party::Hub, prev_, th.set, skip, accepted, h), Status::Ok);
  EXPECT_EQ(proposed, accepted);
  ChannelState want = prev_;
  want.txCountGlobal = prev_.txCountGlobal + 2;
  EXPECT_EQ(accepted, want);
  EXPECT_EQ(channel_check_transition(prev_, accepted, skip), Status::Ok);
  // A hub that did countersign prev + 1 cannot accept a skip built on prev: from its
  // state the update means something else, and the signature does not match.
  ChannelState n1h;
  Hash32 h1;
  ASSERT_EQ(channel_accept(ctx_, signer_, Party::Hub, prev_, th.set, halfSigned, n1h, h1), Status::Ok);
  ChannelState x;
  EXPECT_NE(channel_accept(ctx_, signer_, Party::Hub, n1h, th.set, skip, x, h), Status::Ok);
  // Wrong shapes.
  ChannelUpdate bad = skip;
  bad.invalidation.previousValidTxCount = prev_.txCountGlobal - 1;
  EXPECT_EQ(channel_next_state(ctx_, prev_, th.set, bad, x), Status::BadArgs);
  bad = skip;
  bad.txCountGlobal = prev_.txCountGlobal + 1;
  EXPECT_EQ(channel_next_state(ctx_, prev_, th.set, bad, x), Status::BadTxCount);
  // Never on pending operations: a pending withdrawal lives in exactly one state.
  ChannelState pending = prev_;
  pending.pendingWithdrawalWeiUser = u(5);
  pending.timeout = 1900000000;
  EXPECT_EQ(channel_next_state(ctx_, pending, th.set, skip, x), Status::PendingOperation);
}

TEST_F(ChannelTest, OpenAndCloseThreadInPayerChannel) {
  Threads th;
  SignedThreadState t1 = make_thread(user_, userKey_, payee_, 1, 100, 10);
  SignedThreadState t2 = make_thread(user_, userKey_, payee_, 2, 50, 0);
  ChannelUpdate o1 = channel_update_make(UpdateReason::OpenThread);
  o1.thread.thread = t1;
  ChannelState s1, s2, s3;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, o1, s1), Status::Ok);
  ChannelState want = prev_;
  want.balanceWeiUser = u(400);
  want.balanceTokenUser = u(290);
  want.threadCount = 1;
  want.threadRoot = root_over({t1.state});
  want.txCountGlobal = 11;
  EXPECT_EQ(s1, want);
  ASSERT_EQ(thread_set_apply(th.set, o1), Status::Ok);
  ASSERT_EQ(th.set.count, 1u);
  EXPECT_EQ(th.items[0], t1.state);

  ChannelUpdate o2 = channel_update_make(UpdateReason::OpenThread);
  o2.thread.thread = t2;
  ASSERT_EQ(round_trip(Party::User, s1, th.set, o2, s2), Status::Ok);
  EXPECT_EQ(s2.threadCount, 2u);
  EXPECT_EQ(s2.balanceWeiUser, u(350));
  EXPECT_EQ(s2.threadRoot, root_over({t1.state, t2.state}));
  ASSERT_EQ(thread_set_apply(th.set, o2), Status::Ok);
  ASSERT_EQ(th.set.count, 2u);
  EXPECT_EQ(thread_set_find(th.set, user_, payee_, 2), th.items[0] == t2.state ? 0 : 1);

  // Close t1 at sender 60 wei / 4 token, receiver 40 wei / 6 token.
  SignedThreadState f1 = t1;
  f1.state.balanceWeiSender = u(60);
  f1.state.balanceWeiReceiver = u(40);
  f1.state.balanceTokenSender = u(4);
  f1.state.balanceTokenReceiver = u(6);
  f1.state.txCount = 3;
  resign(f1, userKey_);
  ChannelUpdate c1 = channel_update_make(UpdateReason::CloseThread);
  c1.thread.thread = f1;
  ASSERT_EQ(round_trip(Party::User, s2, th.set, c1, s3), Status::Ok);
  want = s2;
  want.balanceWeiUser = u(350 + 60);
  want.balanceTokenUser = u(290 + 4);
  want.balanceWeiHub = u(1000 + 40);
  want.balanceTokenHub = u(2000 + 6);
  want.threadCount = 1;
  want.threadRoot = root_over({t2.state});
  want.txCountGlobal = 13;
  EXPECT_EQ(s3, want);
  ASSERT_EQ(thread_set_apply(th.set, c1), Status::Ok);
  ASSERT_EQ(th.set.count, 1u);
  EXPECT_EQ(th.items[0], t2.state);
  EXPECT_EQ(thread_set_find(th.set, user_, payee_, 1), -1);
}

TEST_F(ChannelTest, OpenAndCloseThreadInPayeeChannel) {
  Threads th;
  ChannelState payeeChan = prev_;
  payeeChan.user = payee_;
  payeeChan.recipient = payee_;
  SignedThreadState t = make_thread(user_, userKey_, payee_, 9, 100, 10);
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = t;
  // The mirror in the payee's channel: the payee proposes it on the hub's request (the
  // hub may still propose it in the pure functions).
  ChannelState s1, s2;
  EXPECT_EQ(channel_check_proposer(payeeChan, Party::User, o), Status::Ok);
  EXPECT_EQ(channel_check_proposer(payeeChan, Party::Hub, o), Status::Ok);
  PrivateKey savedUserKey = userKey_;
  userKey_ = payeeKey_;  // the channel's user is the payee
  {
    ChannelUpdate y = o;
    ChannelState hubProposed;
    ASSERT_EQ(round_trip(Party::Hub, payeeChan, th.set, y, hubProposed), Status::Ok);
  }
  ASSERT_EQ(round_trip(Party::User, payeeChan, th.set, o, s1), Status::Ok);
  ChannelState want = payeeChan;
  want.balanceWeiHub = u(900);
  want.balanceTokenHub = u(1990);
  want.threadCount = 1;
  want.threadRoot = root_over({t.state});
  want.txCountGlobal = 11;
  EXPECT_EQ(s1, want);
  ASSERT_EQ(thread_set_apply(th.set, o), Status::Ok);

  SignedThreadState f = t;
  f.state.balanceWeiSender = u(60);
  f.state.balanceWeiReceiver = u(40);
  f.state.balanceTokenSender = u(4);
  f.state.balanceTokenReceiver = u(6);
  f.state.txCount = 5;
  resign(f, savedUserKey);  // signed by the thread's sender (the payer)
  ChannelUpdate c = channel_update_make(UpdateReason::CloseThread);
  c.thread.thread = f;
  ASSERT_EQ(round_trip(Party::Hub, s1, th.set, c, s2), Status::Ok);
  want = s1;
  want.balanceWeiUser = u(500 + 40);
  want.balanceTokenUser = u(300 + 6);
  want.balanceWeiHub = u(900 + 60);
  want.balanceTokenHub = u(1990 + 4);
  want.threadCount = 0;
  want.threadRoot = Hash32{};
  want.txCountGlobal = 12;
  EXPECT_EQ(s2, want);
  userKey_ = savedUserKey;
}

TEST_F(ChannelTest, EmptyChannelZeroes) {
  Threads th;
  SignedThreadState t = make_thread(user_, userKey_, payee_, 1, 100, 0);
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = t;
  ChannelState s1, s2;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, o, s1), Status::Ok);
  ASSERT_EQ(thread_set_apply(th.set, o), Status::Ok);
  s1.pendingDepositWeiUser = u(5);  // as stored: a lapsed deposit
  ChannelUpdate e = channel_update_make(UpdateReason::EmptyChannel);
  std::memset(e.chainTx.transactionHash.bytes, 0xCD, 32);
  ASSERT_EQ(round_trip(Party::Hub, s1, th.set, e, s2), Status::Ok);
  EXPECT_TRUE(s2.balanceWeiHub.is_zero() && s2.balanceWeiUser.is_zero());
  EXPECT_TRUE(s2.balanceTokenHub.is_zero() && s2.balanceTokenUser.is_zero());
  EXPECT_FALSE(channel_has_pending(s2));
  EXPECT_EQ(s2.threadCount, 0u);
  EXPECT_TRUE(s2.threadRoot.is_zero());
  EXPECT_EQ(s2.txCountGlobal, s1.txCountGlobal + 1);
  EXPECT_GE(s2.txCountChain, s1.txCountChain);
  EXPECT_EQ(s2.contractAddress, contract_);
  EXPECT_EQ(s2.user, user_);
  ASSERT_EQ(thread_set_apply(th.set, e), Status::Ok);
  EXPECT_EQ(th.set.count, 0u);
}

// ================================================================== negative paths

TEST_F(ChannelTest, WrongTxCountGlobal) {
  Threads th;
  ChannelUpdate x = payment(Party::Hub, 1, 0);
  ChannelState next;
  ASSERT_EQ(channel_propose(ctx_, signer_, userKey_, Party::User, prev_, th.set, x, next), Status::Ok);
  for (uint64_t bad : {uint64_t{10}, uint64_t{12}, uint64_t{0}}) {
    ChannelUpdate y = x;
    y.txCountGlobal = bad;
    EXPECT_EQ(accept(Party::Hub, prev_, th.set, y), Status::BadTxCount) << bad;
    ChannelState n2;
    EXPECT_EQ(channel_next_state(ctx_, prev_, th.set, y, n2), Status::BadTxCount) << bad;
  }
  EXPECT_EQ(accept(Party::Hub, prev_, th.set, x), Status::Ok);
}

TEST_F(ChannelTest, TxCountGlobalAtTheCounterBound) {
  Threads th;
  prev_.txCountGlobal = kMaxCounter - 1;
  ChannelUpdate x = payment(Party::Hub, 1, 0);
  ChannelState next;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::Ok);
  EXPECT_EQ(next.txCountGlobal, kMaxCounter);
  ChannelUpdate y = payment(Party::Hub, 1, 0);
  ChannelState after;
  EXPECT_EQ(round_trip(Party::User, next, th.set, y, after), Status::BadTxCount);
}

TEST_F(ChannelTest, PaymentOverdraftIsUnderflow) {
  Threads th;
  ChannelUpdate x = payment(Party::Hub, 501, 0);
  ChannelState next;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::Underflow);
  x = payment(Party::Hub, 0, 301);
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::Underflow);
  x = payment(Party::User, 1001, 0);
  EXPECT_EQ(round_trip(Party::Hub, prev_, th.set, x, next), Status::Underflow);
}

TEST_F(ChannelTest, PayingYourselfIsUnauthorized) {
  Threads th;
  ChannelUpdate x = payment(Party::User, 1, 0);
  EXPECT_EQ(channel_check_proposer(prev_, Party::User, x), Status::Unauthorized);
  ChannelState next;
  EXPECT_EQ(channel_propose(ctx_, signer_, userKey_, Party::User, prev_, th.set, x, next), Status::Unauthorized);
  x = payment(Party::Hub, 1, 0);
  EXPECT_EQ(channel_check_proposer(prev_, Party::Hub, x), Status::Unauthorized);
  EXPECT_EQ(channel_check_proposer(prev_, Party::User, x), Status::Ok);
  // The receiver refuses it too: a user-signed "pay the user" request.
  ChannelUpdate y = payment(Party::User, 1, 0);
  y.txCountGlobal = 11;
  ChannelState built;
  ASSERT_EQ(channel_next_state(ctx_, prev_, th.set, y, built), Status::Ok);
  sign_state_into(y, built, userKey_);
  EXPECT_EQ(accept(Party::Hub, prev_, th.set, y), Status::Unauthorized);
}

TEST_F(ChannelTest, ForgedSignatureByThirdKeyIsWrongSigner) {
  Threads th;
  ChannelUpdate x = payment(Party::Hub, 100, 0);
  ChannelState next;
  ASSERT_EQ(channel_propose(ctx_, signer_, userKey_, Party::User, prev_, th.set, x, next), Status::Ok);
  sign_state_into(x, next, thirdKey_);
  EXPECT_EQ(accept(Party::Hub, prev_, th.set, x), Status::WrongSigner);
  // and the hub's own signature does not pass as the user's
  sign_state_into(x, next, hubKey_);
  EXPECT_EQ(accept(Party::Hub, prev_, th.set, x), Status::WrongSigner);
}

TEST_F(ChannelTest, SignatureOverADifferentStateIsRefused) {
  Threads th;
  ChannelUpdate x = payment(Party::Hub, 100, 0);
  ChannelState next;
  ASSERT_EQ(channel_propose(ctx_, signer_, userKey_, Party::User, prev_, th.set, x, next), Status::Ok);
  ChannelUpdate y = x;
  y.payment.amountWei = u(99);  // args changed after signing
  EXPECT_EQ(accept(Party::Hub, prev_, th.set, y), Status::WrongSigner);
  y = x;
  ChannelState other = next;
  other.timeout = 5;
  sign_state_into(y, other, userKey_);
  EXPECT_EQ(accept(Party::Hub, prev_, th.set, y), Status::WrongSigner);
}

TEST_F(ChannelTest, DepositWhilePendingIsPendingOperation) {
  Threads th;
  prev_.pendingWithdrawalWeiUser = u(1);
  prev_.timeout = 1900000000;
  ChannelUpdate x = channel_update_make(UpdateReason::ProposePendingDeposit);
  x.deposit.depositWeiUser = u(100);
  x.deposit.timeout = 1900000001;
  ChannelState next;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::PendingOperation);
  ChannelUpdate w = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  w.withdrawal.recipient = user_;
  w.withdrawal.withdrawalWeiUser = u(1);
  w.withdrawal.timeout = 1900000001;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, w, next), Status::PendingOperation);
}

TEST_F(ChannelTest, DepositWithZeroTimeoutIsBadArgs) {
  Threads th;
  ChannelUpdate x = channel_update_make(UpdateReason::ProposePendingDeposit);
  x.deposit.depositWeiUser = u(100);
  x.deposit.timeout = 0;
  ChannelState next;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::BadArgs);
}

TEST_F(ChannelTest, WithdrawalMoreThanBalance) {
  Threads th;
  ChannelUpdate w = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  w.withdrawal.recipient = user_;
  w.withdrawal.withdrawalWeiUser = u(501);
  w.withdrawal.timeout = 1900000000;
  ChannelState next;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, w, next), Status::Underflow);
  w.withdrawal.withdrawalWeiUser = U256::zero();
  w.withdrawal.withdrawalTokenHub = u(2001);
  EXPECT_EQ(round_trip(Party::Hub, prev_, th.set, w, next), Status::Underflow);
}

TEST_F(ChannelTest, ExchangeBadArgs) {
  Threads th;
  ChannelUpdate x = channel_update_make(UpdateReason::Exchange);
  x.exchange.seller = Party::User;
  x.exchange.weiToSell = u(10);
  x.exchange.tokensToSell = u(50);
  x.exchange.exchangeRate = u(5);
  ChannelState next;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::BadArgs) << "both amounts";
  x.exchange.weiToSell = U256::zero();
  x.exchange.tokensToSell = u(4);  // less than one wei's worth at rate 5
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::BadArgs) << "buys no whole wei";
  x.exchange.tokensToSell = U256::zero();
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::BadArgs) << "nothing to sell";
  x.exchange.tokensToSell = u(50);
  x.exchange.exchangeRate = U256::zero();
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, x, next), Status::BadArgs) << "zero rate";
}

TEST_F(ChannelTest, CloseThreadNotOpenIsThreadNotFound) {
  Threads th;
  SignedThreadState t = make_thread(user_, userKey_, payee_, 1, 100, 0);
  ChannelUpdate c = channel_update_make(UpdateReason::CloseThread);
  c.thread.thread = t;
  ChannelState next;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, c, next), Status::ThreadNotFound);
  EXPECT_EQ(thread_set_apply(th.set, c), Status::ThreadNotFound);
}

TEST_F(ChannelTest, OpeningTheSameThreadTwiceIsThreadExists) {
  Threads th;
  SignedThreadState t = make_thread(user_, userKey_, payee_, 1, 100, 0);
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = t;
  ChannelState s1, s2;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, o, s1), Status::Ok);
  ASSERT_EQ(thread_set_apply(th.set, o), Status::Ok);
  ChannelUpdate again = channel_update_make(UpdateReason::OpenThread);
  again.thread.thread = make_thread(user_, userKey_, payee_, 1, 10, 0);  // same key, other amounts
  EXPECT_EQ(round_trip(Party::User, s1, th.set, again, s2), Status::ThreadExists);
}

TEST_F(ChannelTest, ThreadOfAnotherContractIsWrongContract) {
  Threads th;
  SignedThreadState t = make_thread(user_, userKey_, payee_, 1, 100, 0);
  t.state.contractAddress = third_;
  resign(t, userKey_);
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = t;
  ChannelState next;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, o, next), Status::WrongContract);
}

TEST_F(ChannelTest, ThreadNotInvolvingTheChannelUserIsWrongParty) {
  Threads th;
  SignedThreadState t = make_thread(third_, thirdKey_, payee_, 1, 100, 0);
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = t;
  ChannelState next;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, o, next), Status::WrongParty);
}

TEST_F(ChannelTest, ThreadStateNotSignedBySender) {
  Threads th;
  // Payer channel: the user proposes, the hub must refuse a sigA not by the sender.
  SignedThreadState t = make_thread(user_, userKey_, payee_, 1, 100, 0);
  resign(t, thirdKey_);
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = t;
  ChannelState next;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, o, next), Status::WrongSigner);
  resign(t, payeeKey_);  // signed by the thread's receiver instead of its sender
  o.thread.thread = t;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, o, next), Status::WrongSigner);
  // The receiver checks it even if the proposer did not: a hand-made request.
  ChannelUpdate h = o;
  h.txCountGlobal = prev_.txCountGlobal + 1;
  ChannelState built;
  ASSERT_EQ(channel_next_state(ctx_, prev_, th.set, h, built), Status::Ok);
  sign_state_into(h, built, userKey_);
  EXPECT_EQ(accept(Party::Hub, prev_, th.set, h), Status::WrongSigner);
  // Payee channel: the hub proposes, the payee must refuse.
  ChannelState payeeChan = prev_;
  payeeChan.user = payee_;
  payeeChan.recipient = payee_;
  SignedThreadState pt = make_thread(user_, userKey_, payee_, 2, 100, 0);
  resign(pt, thirdKey_);
  ChannelUpdate po = channel_update_make(UpdateReason::OpenThread);
  po.thread.thread = pt;
  po.txCountGlobal = payeeChan.txCountGlobal + 1;
  ASSERT_EQ(channel_next_state(ctx_, payeeChan, th.set, po, built), Status::Ok);
  sign_state_into(po, built, hubKey_);
  EXPECT_EQ(accept(Party::User, payeeChan, th.set, po), Status::WrongSigner);
}

// channel.hpp, channel_check_proposer: "in the payee's channel only the hub opens a
// thread; otherwise either side" -- so the hub may propose OpenThread in the payer's
// channel (it holds the payer's sigA).
TEST_F(ChannelTest, OnlyThePayerOpensAThreadInThePayerChannel) {
  SignedThreadState t = make_thread(user_, userKey_, payee_, 1, 100, 0);
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = t;
  EXPECT_EQ(channel_check_proposer(prev_, Party::User, o), Status::Ok);
  EXPECT_EQ(channel_check_proposer(prev_, Party::Hub, o), Status::Unauthorized);
}

TEST_F(ChannelTest, ThreadInitialTxCountMustBeZero) {
  Threads th;
  SignedThreadState t = make_thread(user_, userKey_, payee_, 1, 100, 0);
  t.state.txCount = 1;
  resign(t, userKey_);
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = t;
  ChannelState next;
  EXPECT_EQ(round_trip(Party::User, prev_, th.set, o, next), Status::BadTxCount);
}

TEST_F(ChannelTest, CloseThreadWithChangedTotalsIsNotConserved) {
  Threads th;
  SignedThreadState t = make_thread(user_, userKey_, payee_, 1, 100, 0);
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = t;
  ChannelState s1, s2;
  ASSERT_EQ(round_trip(Party::User, prev_, th.set, o, s1), Status::Ok);
  ASSERT_EQ(thread_set_apply(th.set, o), Status::Ok);
  SignedThreadState f = t;
  f.state.balanceWeiSender = u(60);
  f.state.balanceWeiReceiver = u(50);  // 110 != 100
  f.state.txCount = 2;
  resign(f, userKey_);
  ChannelUpdate c = channel_update_make(UpdateReason::CloseThread);
  c.thread.thread = f;
  EXPECT_EQ(round_trip(Party::User, s1, th.set, c, s2), Status::NotConserved);
}

// ================================================================== check_transition

TEST_F(ChannelTest, CheckTransitionCatchesHandBuiltViolations) {
  ChannelUpdate x = payment(Party::Hub, 100, 0);
  x.txCountGlobal = 11;
  ChannelState next = prev_;
  next.balanceWeiUser = u(400);
  next.balanceWeiHub = u(1100);
  next.txCountGlobal = 11;
  ASSERT_EQ(channel_check_transition(prev_, next, x), Status::Ok);

  ChannelState bad = next;
  bad.balanceWeiHub = u(1101);  // one wei from nowhere
  EXPECT_EQ(channel_check_transition(prev_, bad, x), Status::NotConserved);
  bad = next;
  bad.balanceTokenUser = u(299);  // one token vanished
  EXPECT_EQ(channel_check_transition(prev_, bad, x), Status::NotConserved);
  bad = next;
  bad.pendingWithdrawalWeiUser = u(1);  // a withdrawal out of thin air raises committed wei
  EXPECT_EQ(channel_check_transition(prev_, bad, x), Status::NotConserved);
  bad = next;
  bad.txCountChain = 1;
  EXPECT_EQ(channel_check_transition(prev_, bad, x), Status::TxCountChainDecreased);
  bad = next;
  bad.txCountGlobal = 12;
  EXPECT_EQ(channel_check_transition(prev_, bad, x), Status::BadTxCount);
  bad = next;
  bad.txCountGlobal = 10;
  EXPECT_EQ(channel_check_transition(prev_, bad, x), Status::BadTxCount);
  bad = next;
  bad.contractAddress = third_;
  EXPECT_EQ(channel_check_transition(prev_, bad, x), Status::WrongContract);
  bad = next;
  bad.user = third_;
  EXPECT_EQ(channel_check_transition(prev_, bad, x), Status::WrongParty);
}

// ================================================================== thread sets

TEST_F(ChannelTest, ThreadSetApplyAddRemoveAndCapacity) {
  ThreadState items[2];
  Hash32 scratch[4];
  ThreadSet set{items, 0, 2, scratch};
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = make_thread(user_, userKey_, payee_, 1, 10, 0);
  ASSERT_EQ(thread_set_apply(set, o), Status::Ok);
  o.thread.thread = make_thread(user_, userKey_, payee_, 2, 10, 0);
  ASSERT_EQ(thread_set_apply(set, o), Status::Ok);
  EXPECT_EQ(set.count, 2u);
  o.thread.thread = make_thread(user_, userKey_, payee_, 3, 10, 0);
  EXPECT_EQ(thread_set_apply(set, o), Status::TooManyThreads);
  EXPECT_EQ(set.count, 2u);
  EXPECT_GE(thread_set_find(set, user_, payee_, 1), 0);
  EXPECT_GE(thread_set_find(set, user_, payee_, 2), 0);
  EXPECT_EQ(thread_set_find(set, user_, payee_, 3), -1);
  EXPECT_EQ(thread_set_find(set, payee_, user_, 1), -1);
  ChannelUpdate c = channel_update_make(UpdateReason::CloseThread);
  c.thread.thread = make_thread(user_, userKey_, payee_, 1, 10, 0);
  ASSERT_EQ(thread_set_apply(set, c), Status::Ok);
  EXPECT_EQ(set.count, 1u);
  EXPECT_EQ(thread_set_find(set, user_, payee_, 1), -1);
  EXPECT_EQ(thread_set_find(set, user_, payee_, 2), 0);
  EXPECT_EQ(thread_set_apply(set, c), Status::ThreadNotFound);
  ChannelUpdate p = payment(Party::Hub, 1, 0);
  ASSERT_EQ(thread_set_apply(set, p), Status::Ok);
  EXPECT_EQ(set.count, 1u);
}

TEST_F(ChannelTest, TooManyThreadsOnOpen) {
  ThreadState items[1];
  Hash32 scratch[3];
  ThreadSet set{items, 0, 1, scratch};
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = make_thread(user_, userKey_, payee_, 1, 10, 0);
  ChannelState s1, s2;
  ASSERT_EQ(round_trip(Party::User, prev_, set, o, s1), Status::Ok);
  ASSERT_EQ(thread_set_apply(set, o), Status::Ok);
  ChannelUpdate o2 = channel_update_make(UpdateReason::OpenThread);
  o2.thread.thread = make_thread(user_, userKey_, payee_, 2, 10, 0);
  EXPECT_EQ(round_trip(Party::User, s1, set, o2, s2), Status::TooManyThreads);
}

TEST(UpdateReasonNames, RoundTrip) {
  const char* names[] = {"Payment",        "Exchange",     "ProposePendingDeposit",
                         "ProposePendingWithdrawal", "ConfirmPending", "Invalidation",
                         "OpenThread",     "CloseThread",  "EmptyChannel"};
  for (int i = 1; i <= 9; ++i) {
    UpdateReason r = static_cast<UpdateReason>(i);
    ASSERT_NE(update_reason_name(r), nullptr);
    EXPECT_STREQ(update_reason_name(r), names[i - 1]);
    UpdateReason back;
    ASSERT_EQ(update_reason_parse(names[i - 1], std::strlen(names[i - 1]), back), Status::Ok);
    EXPECT_EQ(back, r);
  }
  EXPECT_EQ(update_reason_name(static_cast<UpdateReason>(0)), nullptr);
  EXPECT_EQ(update_reason_name(static_cast<UpdateReason>(10)), nullptr);
  UpdateReason r;
  EXPECT_EQ(update_reason_parse("payment", 7, r), Status::BadReason);
  EXPECT_EQ(update_reason_parse("Payment ", 8, r), Status::BadReason);
  EXPECT_EQ(update_reason_parse("", 0, r), Status::BadReason);
}

// ================================================================== thread machine

class ThreadTest : public ChannelTest {
 protected:
  ThreadState initial() {
    ThreadState t = thread_state_zero();
    t.contractAddress = contract_;
    t.sender = user_;
    t.receiver = payee_;
    t.threadId = 4;
    t.balanceWeiSender = u(100);
    t.balanceTokenSender = u(20);
    return t;
  }
};

TEST_F(ThreadTest, ProposeAcceptRoundTrip) {
  ThreadState prev = initial();
  for (int step = 1; step <= 5; ++step) {
    ThreadUpdate tu;
    ThreadState next, accepted;
    ASSERT_EQ(thread_propose(signer_, userKey_, prev, u(10), u(step % 2), tu, next), Status::Ok);
    EXPECT_EQ(tu.sender, user_);
    EXPECT_EQ(tu.threadId, 4u);
    EXPECT_EQ(tu.txCount, prev.txCount + 1);
    ASSERT_EQ(thread_accept(signer_, prev, tu, accepted), Status::Ok);
    EXPECT_EQ(accepted, next);
    ThreadState want = prev;
    ASSERT_EQ(u256_sub(prev.balanceWeiSender, u(10), want.balanceWeiSender), Status::Ok);
    ASSERT_EQ(u256_add(prev.balanceWeiReceiver, u(10), want.balanceWeiReceiver), Status::Ok);
    ASSERT_EQ(u256_sub(prev.balanceTokenSender, u(static_cast<uint64_t>(step % 2)), want.balanceTokenSender),
              Status::Ok);
    ASSERT_EQ(u256_add(prev.balanceTokenReceiver, u(static_cast<uint64_t>(step % 2)), want.balanceTokenReceiver),
              Status::Ok);
    want.txCount = prev.txCount + 1;
    EXPECT_EQ(next, want);
    EXPECT_EQ(signer_.verify_eth(thread_hash(next), tu.sig, user_), Status::Ok);
    EXPECT_EQ(thread_check_transition(prev, next), Status::Ok);
    prev = next;
  }
  EXPECT_EQ(prev.balanceWeiSender, u(50));
  EXPECT_EQ(prev.balanceWeiReceiver, u(50));
}

TEST_F(ThreadTest, TxCountNotIncreasing) {
  ThreadState prev = initial();
  prev.txCount = 5;
  ThreadUpdate tu;
  ThreadState next, out;
  ASSERT_EQ(thread_propose(signer_, userKey_, prev, u(1), u(0), tu, next), Status::Ok);
  ThreadState same = next;
  same.txCount = 5;
  tu.txCount = 5;
  ASSERT_EQ(signer_.sign_eth(userKey_, thread_hash(same), tu.sig), Status::Ok);
  EXPECT_EQ(thread_accept(signer_, prev, tu, out), Status::BadTxCount);
  tu.txCount = 4;
  EXPECT_EQ(thread_next_state(prev, tu, out), Status::BadTxCount);
  tu.txCount = kMaxCounter + 1;
  EXPECT_EQ(thread_next_state(prev, tu, out), Status::BadTxCount);
  tu.txCount = 9;  // a jump is allowed: strictly increasing
  EXPECT_EQ(thread_next_state(prev, tu, out), Status::Ok);
  EXPECT_EQ(thread_check_transition(prev, same), Status::BadTxCount);
}

TEST_F(ThreadTest, CheckTransitionConservationAndReceiverMonotonic) {
  ThreadState prev = initial();
  prev.balanceWeiReceiver = u(30);
  prev.balanceWeiSender = u(70);
  prev.txCount = 2;
  ThreadState next = prev;
  next.txCount = 3;
  next.balanceWeiReceiver = u(20);  // receiver decreases, total kept
  next.balanceWeiSender = u(80);
  EXPECT_EQ(thread_check_transition(prev, next), Status::NotConserved);
  next = prev;
  next.txCount = 3;
  next.balanceWeiReceiver = u(40);  // total changes: 110
  EXPECT_EQ(thread_check_transition(prev, next), Status::NotConserved);
  next = prev;
  next.txCount = 3;
  next.balanceTokenSender = u(19);  // token total changes
  EXPECT_EQ(thread_check_transition(prev, next), Status::NotConserved);
  next = prev;
  next.txCount = 3;
  next.contractAddress = third_;
  EXPECT_EQ(thread_check_transition(prev, next), Status::WrongContract);
  next = prev;
  next.txCount = 3;
  next.receiver = third_;
  EXPECT_EQ(thread_check_transition(prev, next), Status::WrongParty);
  next = prev;
  next.txCount = 3;
  next.threadId = 5;
  EXPECT_EQ(thread_check_transition(prev, next), Status::BadArgs);
}

TEST_F(ThreadTest, OverdraftIsUnderflow) {
  ThreadState prev = initial();
  ThreadUpdate tu;
  ThreadState next;
  EXPECT_EQ(thread_propose(signer_, userKey_, prev, u(101), u(0), tu, next), Status::Underflow);
  EXPECT_EQ(thread_propose(signer_, userKey_, prev, u(0), u(21), tu, next), Status::Underflow);
  EXPECT_EQ(thread_propose(signer_, userKey_, prev, u(0), u(0), tu, next), Status::BadArgs);
}

TEST_F(ThreadTest, WrongSenderSignature) {
  ThreadState prev = initial();
  ThreadUpdate tu;
  ThreadState next, out;
  ASSERT_EQ(thread_propose(signer_, userKey_, prev, u(10), u(0), tu, next), Status::Ok);
  ThreadUpdate forged = tu;
  ASSERT_EQ(signer_.sign_eth(thirdKey_, thread_hash(next), forged.sig), Status::Ok);
  EXPECT_EQ(thread_accept(signer_, prev, forged, out), Status::WrongSigner);
  forged = tu;
  ASSERT_EQ(signer_.sign_eth(payeeKey_, thread_hash(next), forged.sig), Status::Ok);  // the receiver
  EXPECT_EQ(thread_accept(signer_, prev, forged, out), Status::WrongSigner);
  forged = tu;
  forged.amountWei = u(11);  // signature over another state
  EXPECT_EQ(thread_accept(signer_, prev, forged, out), Status::WrongSigner);
  forged = tu;
  forged.sender = third_;
  EXPECT_EQ(thread_accept(signer_, prev, forged, out), Status::WrongParty);
  forged = tu;
  forged.threadId = 99;
  EXPECT_EQ(thread_accept(signer_, prev, forged, out), Status::BadArgs);
  EXPECT_EQ(thread_accept(signer_, prev, tu, out), Status::Ok);
}

// ================================================================== thread payments (full states)

class ThreadStateAcceptTest : public ThreadTest {
 protected:
  // The sender's state after paying `wei` in all, txCount `tx`, signed by `key`.
  SignedThreadState paid(uint64_t wei, uint64_t tx, const PrivateKey& key) {
    SignedThreadState s;
    s.state = initial();
    s.state.balanceWeiSender = u(100 - wei);
    s.state.balanceWeiReceiver = u(wei);
    s.state.txCount = tx;
    s.hasSigA = true;
    EXPECT_EQ(signer_.sign_eth(key, thread_hash(s.state), s.sigA), Status::Ok);
    return s;
  }
  SignedThreadState resign(SignedThreadState s) {
    EXPECT_EQ(signer_.sign_eth(userKey_, thread_hash(s.state), s.sigA), Status::Ok);
    return s;
  }
};

TEST_F(ThreadStateAcceptTest, CumulativeStatesAcceptedAcrossGaps) {
  const ThreadState prev = paid(10, 2, userKey_).state;
  EXPECT_EQ(thread_accept_state(signer_, prev, paid(11, 3, userKey_)), Status::Ok);
  EXPECT_EQ(thread_accept_state(signer_, prev, paid(60, 40, userKey_)), Status::Ok);  // 37 payments missed
  EXPECT_EQ(thread_accept_state(signer_, prev, paid(100, kMaxCounter, userKey_)), Status::Ok);
  EXPECT_EQ(thread_accept_state(signer_, thread_state_zero(), paid(10, 2, userKey_)), Status::WrongContract);
  // The same state: a re-send.
  EXPECT_EQ(thread_accept_state(signer_, prev, paid(10, 2, userKey_)), Status::Duplicate);
  // The increment path agrees with the full-state path on what the sender signed.
  ThreadUpdate tu;
  ThreadState next;
  ASSERT_EQ(thread_propose(signer_, userKey_, prev, u(5), u(0), tu, next), Status::Ok);
  SignedThreadState full;
  full.state = next;
  full.sigA = tu.sig;
  full.hasSigA = true;
  EXPECT_EQ(thread_accept_state(signer_, prev, full), Status::Ok);
}

TEST_F(ThreadStateAcceptTest, EvilSenderRefused) {
  const ThreadState prev = paid(10, 2, userKey_).state;
  EXPECT_EQ(thread_accept_state(signer_, prev, paid(9, 3, userKey_)), Status::NotConserved);  // payee's balance lowered
  EXPECT_EQ(thread_accept_state(signer_, prev, paid(10, 3, userKey_)), Status::BadArgs);      // nothing moves
  EXPECT_EQ(thread_accept_state(signer_, prev, paid(50, 1, userKey_)), Status::StaleState);   // replayed / older
  EXPECT_EQ(thread_accept_state(signer_, prev, paid(12, 2, userKey_)), Status::StateConflict);  // signed twice
  EXPECT_EQ(thread_accept_state(signer_, prev, paid(12, 2, thirdKey_)), Status::WrongSigner);   // not evidence
  EXPECT_EQ(thread_accept_state(signer_, prev, paid(12, 3, thirdKey_)), Status::WrongSigner);
  EXPECT_EQ(thread_accept_state(signer_, prev, paid(12, 3, payeeKey_)), Status::WrongSigner);  // the receiver's own
  SignedThreadState s = paid(12, 3, userKey_);
  s.state.balanceWeiSender = u(89);  // total 101: the deposit raised
  EXPECT_EQ(thread_accept_state(signer_, prev, resign(s)), Status::NotConserved);
  s = paid(12, 3, userKey_);
  s.state.balanceWeiSender = u(80);  // total 92
  EXPECT_EQ(thread_accept_state(signer_, prev, resign(s)), Status::NotConserved);
  s = paid(12, 3, userKey_);
  s.state.balanceTokenSender = u(19);  // token total changed
  EXPECT_EQ(thread_accept_state(signer_, prev, resign(s)), Status::NotConserved);
  s = paid(12, 3, userKey_);
  s.state.threadId = 5;
  EXPECT_EQ(thread_accept_state(signer_, prev, resign(s)), Status::BadArgs);
  s = paid(12, 3, userKey_);
  s.state.receiver = third_;
  EXPECT_EQ(thread_accept_state(signer_, prev, resign(s)), Status::WrongParty);
  s = paid(12, 3, userKey_);
  s.state.sender = third_;  // signed by the stored sender, naming another
  EXPECT_EQ(thread_accept_state(signer_, prev, resign(s)), Status::WrongParty);
  s = paid(12, 3, userKey_);
  s.state.contractAddress = third_;
  EXPECT_EQ(thread_accept_state(signer_, prev, resign(s)), Status::WrongContract);
  s = paid(12, 3, userKey_);
  s.hasSigA = false;
  EXPECT_EQ(thread_accept_state(signer_, prev, s), Status::BadArgs);
  s = paid(12, 3, userKey_);
  s.state.balanceWeiReceiver = u(13);  // signature over another (valid) state
  s.state.balanceWeiSender = u(87);
  EXPECT_EQ(thread_accept_state(signer_, prev, s), Status::WrongSigner);
}
