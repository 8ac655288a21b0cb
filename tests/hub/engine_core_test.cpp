// The hub's engine core as pure functions (agent/hub/src/engine_core.hpp; label agent): no
// ledger, no broker, no chain. A channel view (Chan) and an update's bytes in, the Effects
// out: the writes the hub would make, the replies it would release after COMMIT, the chain
// jobs and the requests for other channels. Devices are the core's channel_propose with
// test keys; adversarial ones sign what the hub must refuse. The stored updates the step
// reads (duplicates) are the InsertUpdate writes of earlier steps, as the applier stores them.
#include <gtest/gtest.h>

#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine_core.hpp"
#include "hub_internal.hpp"
#include "picopay/agent/collateral_request.hpp"
#include "picopay/codec.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "sim_device.hpp"

// Inside the hub's namespace: its Effects, not the core session's (picopay::Effects).
namespace picopay::hub {
namespace {

struct Dev {
  PrivateKey key{};
  Address addr{};
  ChannelState latest{};
  std::vector<ThreadState> threads;  // the device's open threads (initial states)
};

template <class W>
size_t count(const Effects& fx) {
  size_t n = 0;
  for (const auto& w : fx.writes) n += std::holds_alternative<W>(w);
  return n;
}

// Nothing countersigned: no update, channel or history written.
bool nothing_signed(const Effects& fx) {
  return count<write::InsertUpdate>(fx) == 0 && count<write::SaveChannel>(fx) == 0 &&
         count<write::InsertHistory>(fx) == 0 && count<write::SaveDeposit>(fx) == 0;
}

class EngineCoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(signer_.init(), Status::Ok);
    hub_key_ = testsupport::test_key(0xABCDEF);
    ASSERT_EQ(signer_.address_of(hub_key_, hub_), Status::Ok);
    contract_.bytes[19] = 0x42;
    env_.hub = hub_;
    env_.contract = contract_;
    env_.signer = &signer_;
    env_.key = &hub_key_;
    env_.now_ms = 1000000;
    env_.unix_now = static_cast<uint64_t>(std::time(nullptr));
    env_.find_update = [this](const std::string& key, uint64_t tx, Bytes& req, Bytes& rep, bool& found,
                              std::string&) {
      auto it = stored_.find({key, tx});
      found = it != stored_.end();
      if (found) {
        req = it->second.first;
        rep = it->second.second;
      }
      return true;
    };
    env_.peer = [this](const Address& user, std::string& err) -> Chan* {
      auto it = chans_.find(mqtt::topic_address(user));
      if (it == chans_.end()) {
        err = "no such channel in this test";
        return nullptr;
      }
      return it->second.get();
    };
  }

  // A device with a funded channel (as if its deposits were confirmed).
  Dev device(uint32_t i, uint64_t user_wei, uint64_t hub_wei) {
    Dev d;
    d.key = testsupport::test_key(i);
    EXPECT_EQ(signer_.address_of(d.key, d.addr), Status::Ok);
    d.latest = channel_state_zero();
    d.latest.contractAddress = contract_;
    d.latest.user = d.addr;
    d.latest.recipient = d.addr;
    d.latest.balanceWeiUser = U256::from_u64(user_wei);
    d.latest.balanceWeiHub = U256::from_u64(hub_wei);
    d.latest.txCountGlobal = 3;
    d.latest.txCountChain = 1;
    return d;
  }

  // The hub's cached view of the device's channel (its latest state double-signed, nothing
  // pending).
  Chan& view(const Dev& d) {
    auto c = std::make_unique<Chan>();
    c->user = d.addr;
    c->key = mqtt::topic_address(d.addr);
    c->latest.state = d.latest;
    c->latest.hasSigUser = c->latest.hasSigHub = true;
    EXPECT_EQ(signer_.sign_eth(d.key, channel_hash(d.latest), c->latest.sigUser), Status::Ok);
    EXPECT_EQ(signer_.sign_eth(hub_key_, channel_hash(d.latest), c->latest.sigHub), Status::Ok);
    Chan& r = *c;
    chans_[mqtt::topic_address(d.addr)] = std::move(c);
    return r;
  }

  // The device's next update, signed with `key` (default: its own) on top of its latest.
  Bytes propose(const Dev& d, ChannelUpdate u, ChannelState& next, const PrivateKey* key = nullptr) {
    ChannelContext ctx{hub_};
    std::vector<ThreadState> room = d.threads;
    room.resize(d.threads.size() + 1);
    std::vector<Hash32> scratch(kThreadCap + 2);
    const ThreadSet ts{room.data(), d.threads.size(), room.size(), scratch.data()};
    EXPECT_EQ(channel_propose(ctx, signer_, key ? *key : d.key, Party::User, d.latest, ts, u, next), Status::Ok);
    uint8_t buf[kMaxChannelUpdateWire];
    size_t n = 0;
    EXPECT_EQ(encode_channel_update(u, buf, sizeof buf, &n), Status::Ok);
    return Bytes(buf, buf + n);
  }

  // An update channel_propose would not make (the proposer rule): the next state built
  // and signed by hand.
  Bytes forge(const Dev& d, ChannelUpdate u, ChannelState& next) {
    ChannelContext ctx{hub_};
    const ThreadSet none{nullptr, 0, 0, nullptr};
    u.txCountGlobal = d.latest.txCountGlobal + 1;
    EXPECT_EQ(channel_next_state(ctx, d.latest, none, u, next), Status::Ok);
    EXPECT_EQ(signer_.sign_eth(d.key, channel_hash(next), u.sig), Status::Ok);
    uint8_t buf[kMaxChannelUpdateWire];
    size_t n = 0;
    EXPECT_EQ(encode_channel_update(u, buf, sizeof buf, &n), Status::Ok);
    return Bytes(buf, buf + n);
  }

  Bytes payment(Dev& d, uint64_t wei, ChannelState& next) {
    ChannelUpdate u = channel_update_make(UpdateReason::Payment);
    u.payment.recipient = Party::Hub;
    u.payment.amountWei = U256::from_u64(wei);
    return propose(d, u, next);
  }

  // The payer's OpenThread of `wei` to `payee` (its initial state signed by the payer).
  Bytes open_thread(Dev& payer, const Dev& payee, uint64_t id, uint64_t wei, ChannelState& next) {
    ThreadState t = thread_state_zero();
    t.contractAddress = contract_;
    t.sender = payer.addr;
    t.receiver = payee.addr;
    t.threadId = id;
    t.balanceWeiSender = U256::from_u64(wei);
    ChannelUpdate u = channel_update_make(UpdateReason::OpenThread);
    u.thread.thread.state = t;
    u.thread.thread.hasSigA = true;
    EXPECT_EQ(signer_.sign_eth(payer.key, thread_hash(t), u.thread.thread.sigA), Status::Ok);
    const Bytes b = propose(payer, u, next);
    payer.threads.push_back(t);
    return b;
  }

  // One step, as the applier would run it: the step's stored updates become readable.
  Effects step(Chan& ch, const Bytes& payload) {
    Effects fx;
    engine_update(ch, payload, env_, fx);
    remember(fx);
    return fx;
  }
  void remember(const Effects& fx) {
    for (const auto& w : fx.writes)
      if (const auto* u = std::get_if<write::InsertUpdate>(&w)) stored_[{u->key, u->tx}] = {u->request, u->reply};
  }

  static Reply reply_of(const Out& o) {
    Reply r = reply_make(ReplyKind::Ack);
    EXPECT_EQ(decode_reply(o.payload.data(), o.payload.size(), r), Status::Ok);
    return r;
  }
  // The replies to `d` among the step's outputs (HubRequests are on another topic).
  static std::vector<Reply> replies(const Effects& fx, const Dev& d) {
    std::vector<Reply> r;
    for (const auto& o : fx.replies)
      if (o.topic == mqtt::topic_reply(d.addr)) r.push_back(reply_of(o));
    return r;
  }

  Signer signer_;
  PrivateKey hub_key_{};
  Address hub_{}, contract_{};
  EngineEnv env_;
  std::map<std::string, std::unique_ptr<Chan>> chans_;
  std::map<std::pair<std::string, uint64_t>, std::pair<Bytes, Bytes>> stored_;
};

}  // namespace

// A payment countersigned: exactly one InsertUpdate, SaveChannel and InsertHistory (in that
// order) and one Ack whose signature is the hub's over the new state; the view moves on.
TEST_F(EngineCoreTest, APaymentIsCountersignedWithOneUpdateChannelAndHistoryWrite) {
  Dev a = device(1, 100, 0);
  Chan& ch = view(a);
  ChannelState next{};
  const Bytes b = payment(a, 7, next);
  const Effects fx = step(ch, b);
  ASSERT_FALSE(fx.failed()) << fx.read_error;
  ASSERT_EQ(fx.writes.size(), 3u);
  const auto* iu = std::get_if<write::InsertUpdate>(&fx.writes[0]);
  ASSERT_NE(iu, nullptr);
  EXPECT_EQ(iu->tx, next.txCountGlobal);
  EXPECT_EQ(iu->request, b);
  EXPECT_TRUE(std::holds_alternative<write::SaveChannel>(fx.writes[1]));
  EXPECT_TRUE(std::holds_alternative<write::InsertHistory>(fx.writes[2]));
  ASSERT_EQ(fx.replies.size(), 1u);
  EXPECT_EQ(fx.replies[0].payload, iu->reply) << "the released reply is the stored one";
  const Reply r = reply_of(fx.replies[0]);
  EXPECT_EQ(r.kind, ReplyKind::Ack);
  EXPECT_EQ(r.txCountGlobal, next.txCountGlobal);
  Address signer_of{};
  ASSERT_EQ(signer_.recover_eth(channel_hash(next), r.sig, signer_of), Status::Ok);
  EXPECT_EQ(signer_of, hub_) << "the Ack is not the hub's signature on the proposed state";
  EXPECT_EQ(ch.latest.state, next);
  EXPECT_TRUE(fx.chain_jobs.empty());
  EXPECT_TRUE(fx.requests_for_other_channels.empty());
}

// The same bytes again get the stored reply, byte for byte, and write nothing; another
// update at the used txCountGlobal (a second state there) gets Nack BadTxCount and writes
// nothing: the hub never countersigns two states at one txCountGlobal.
TEST_F(EngineCoreTest, AReplayGetsTheStoredReplyAndAConflictANackWithoutAWrite) {
  Dev a = device(1, 100, 0);
  Chan& ch = view(a);
  const Dev before = a;
  ChannelState next{};
  const Bytes b = payment(a, 7, next);
  const Effects first = step(ch, b);
  ASSERT_EQ(first.replies.size(), 1u);

  const Effects again = step(ch, b);
  EXPECT_TRUE(again.writes.empty());
  ASSERT_EQ(again.replies.size(), 1u);
  EXPECT_EQ(again.replies[0].payload, first.replies[0].payload);

  Dev fork = before;
  ChannelState other{};
  const Bytes conflict = payment(fork, 8, other);
  ASSERT_EQ(other.txCountGlobal, next.txCountGlobal);
  const Effects fx = step(ch, conflict);
  EXPECT_TRUE(fx.writes.empty());
  const auto r = replies(fx, a);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, ReplyKind::Nack);
  EXPECT_EQ(r[0].status, Status::BadTxCount);
  EXPECT_EQ(r[0].state.state, next) << "the Nack carries the hub's latest state";
  EXPECT_EQ(ch.latest.state, next);
}

// An adversarial device: each proposal the hub must refuse gets a Nack, nothing is
// countersigned or written (beyond the request that the user invalidate a refused
// proposal), and the view stays where it was.
TEST_F(EngineCoreTest, AnAdversarialDevicesProposalsAreRefusedWithoutAWrite) {
  Dev a = device(1, 100, 50);
  Dev payer = device(2, 100, 0);
  view(payer);
  Chan& ch = view(a);
  const ChannelState start = a.latest;
  auto refused = [&](const char* what, Status why, const Bytes& b) {
    SCOPED_TRACE(what);
    const Effects fx = step(ch, b);
    EXPECT_TRUE(nothing_signed(fx));
    for (const auto& w : fx.writes) {  // only the Invalidation the hub then requests
      const auto* rq = std::get_if<write::SaveRequests>(&w);
      ASSERT_NE(rq, nullptr);
    }
    for (const auto& q : ch.requests) EXPECT_EQ(q.update.reason, UpdateReason::Invalidation);
    const auto r = replies(fx, a);
    ASSERT_GE(r.size(), 1u);
    EXPECT_EQ(r[0].kind, ReplyKind::Nack);
    EXPECT_EQ(r[0].status, why);
    EXPECT_EQ(ch.latest.state, start);
    EXPECT_TRUE(fx.requests_for_other_channels.empty());
    EXPECT_TRUE(fx.deposits.empty());
    ch.requests.clear();
  };
  ChannelState next{};
  {  // pays itself from the hub's balance
    ChannelUpdate u = channel_update_make(UpdateReason::Payment);
    u.payment.recipient = Party::User;
    u.payment.amountWei = U256::from_u64(10);
    refused("a payment to itself", Status::Unauthorized, forge(a, u, next));
  }
  {  // a forged signature: another key signs the user's payment
    const PrivateKey other = testsupport::test_key(99);
    ChannelUpdate u = channel_update_make(UpdateReason::Payment);
    u.payment.recipient = Party::Hub;
    u.payment.amountWei = U256::from_u64(1);
    refused("a forged signature", Status::WrongSigner, propose(a, u, next, &other));
  }
  {  // signed for another hub's channel (another ChannelManager)
    Dev elsewhere = a;
    elsewhere.latest.contractAddress.bytes[19] = 0x43;
    refused("another hub's channel", Status::WrongSigner, payment(elsewhere, 1, next));
  }
  {  // a thread opened with the hub's money: a mirror nobody requested (hub funds locked)
    Dev mirror = a;
    ThreadState t = thread_state_zero();
    t.contractAddress = contract_;
    t.sender = payer.addr;
    t.receiver = a.addr;
    t.threadId = 1;
    t.balanceWeiSender = U256::from_u64(20);
    ChannelUpdate u = channel_update_make(UpdateReason::OpenThread);
    u.thread.thread.state = t;
    u.thread.thread.hasSigA = true;
    ASSERT_EQ(signer_.sign_eth(payer.key, thread_hash(t), u.thread.thread.sigA), Status::Ok);
    refused("an unrequested mirror", Status::NotRequested, propose(mirror, u, next));
  }
  {  // a deposit the hub would fund, unrequested
    ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingDeposit);
    u.deposit.depositWeiHub = U256::from_u64(1000);
    u.deposit.timeout = env_.unix_now + 600;
    refused("an unrequested hub deposit", Status::NotRequested, propose(a, u, next));
  }
}

// An update asserting a chain fact (ConfirmPending) parks: a ReadChannel job, no reply, no
// write; the chain's answer (engine_replay_parked) gets it countersigned once.
TEST_F(EngineCoreTest, AConfirmPendingParksWithAReadChannelJobAndNoReply) {
  env_.has_chain = true;
  Dev a = device(1, 0, 0);
  Chan& ch = view(a);
  ChannelState next{};
  {
    ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingDeposit);
    u.deposit.depositWeiUser = U256::from_u64(1000);
    u.deposit.timeout = env_.unix_now + 600;
    const Effects fx = step(ch, propose(a, u, next));
    ASSERT_EQ(replies(fx, a).size(), 1u);
    a.latest = next;
  }
  ChannelUpdate cu = channel_update_make(UpdateReason::ConfirmPending);
  cu.chainTx.transactionHash.bytes[0] = 0xab;
  const Bytes cp = propose(a, cu, next);
  const Effects parked = step(ch, cp);
  EXPECT_TRUE(parked.replies.empty()) << "answered before the chain did";
  EXPECT_TRUE(parked.writes.empty());
  ASSERT_EQ(parked.chain_jobs.size(), 1u);
  EXPECT_EQ(parked.chain_jobs[0].kind, ChainJob::Kind::ReadChannel);
  EXPECT_EQ(parked.chain_jobs[0].user, a.addr);
  ASSERT_TRUE(ch.parked);

  const Effects resent = step(ch, cp);  // a re-sent copy: no answer, no second read
  EXPECT_TRUE(resent.replies.empty());
  EXPECT_TRUE(resent.chain_jobs.empty());

  ChainFacts f{};
  f.known = true;
  f.txCountGlobal = a.latest.txCountGlobal;
  f.txCountChain = a.latest.txCountChain;
  f.status = ChainChannelStatus::Open;
  f.blockTime = env_.unix_now;
  Effects fx;
  engine_replay_parked(ch, f, env_, fx);
  const auto r = replies(fx, a);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, ReplyKind::Ack);
  EXPECT_EQ(r[0].txCountGlobal, next.txCountGlobal);
  EXPECT_EQ(count<write::InsertUpdate>(fx), 1u);
  EXPECT_FALSE(ch.parked);
}

// A channel emptied on chain at txCount [2, 1], recorded by EmptyChannel (the empty state
// at 3), reopened by a new deposit: the ConfirmPending's chain read shows it open with
// txCount[1] 2, so the follower's emptied mark (a round behind) no longer refuses the
// payments after it. Without such a read (a state holding funds at a higher txCountChain
// is no proof: an Invalidation keeps it) the mark refuses them, and a dispute mark
// always does.
TEST_F(EngineCoreTest, AnEmptiedMarkOlderThanTheReopeningDepositsChainReadRefusesNothing) {
  env_.has_chain = true;
  std::map<std::string, ChainMark> marks;
  env_.mark = [&marks](const Address& user) -> const ChainMark* {
    auto it = marks.find(mqtt::topic_address(user));
    return it == marks.end() ? nullptr : &it->second;
  };
  ChainMark emptied{};
  emptied.emptied = true;
  emptied.since_block = 9;
  emptied.tx_count_global = 2;
  emptied.tx_count_chain = 1;
  auto pay = [&](Dev& d, Chan& ch, Status want) {
    ChannelState next{};
    const Effects fx = step(ch, payment(d, 7, next));
    const auto r = replies(fx, d);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].status, want);
    EXPECT_EQ(r[0].kind, want == Status::Ok ? ReplyKind::Ack : ReplyKind::Nack);
    if (want == Status::Ok) d.latest = next;
    else EXPECT_TRUE(nothing_signed(fx));
  };

  Dev a = device(1, 0, 0);  // the EmptyChannel state: [3, 1], nothing in it
  Chan& ch = view(a);
  marks[ch.key] = emptied;
  ChannelState next{};
  {
    ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingDeposit);
    u.deposit.depositWeiUser = U256::from_u64(1000);
    u.deposit.timeout = env_.unix_now + 600;
    const Effects fx = step(ch, propose(a, u, next));
    ASSERT_EQ(replies(fx, a).size(), 1u);
    EXPECT_EQ(replies(fx, a)[0].kind, ReplyKind::Ack);
    a.latest = next;
  }
  ChannelUpdate cu = channel_update_make(UpdateReason::ConfirmPending);
  cu.chainTx.transactionHash.bytes[0] = 0xab;
  const Effects parked = step(ch, propose(a, cu, next));
  ASSERT_EQ(parked.chain_jobs.size(), 1u);
  ChainFacts f{};
  f.known = true;
  f.txCountGlobal = a.latest.txCountGlobal;
  f.txCountChain = a.latest.txCountChain;  // 2: the deposit ran
  f.status = ChainChannelStatus::Open;
  f.blockTime = env_.unix_now;
  {
    Effects fx;
    engine_replay_parked(ch, f, env_, fx);
    ASSERT_EQ(replies(fx, a).size(), 1u);
    ASSERT_EQ(replies(fx, a)[0].kind, ReplyKind::Ack);
    a.latest = next;
  }
  ASSERT_TRUE(marks.count(ch.key)) << "the follower has not caught up yet";
  pay(a, ch, Status::Ok);
  pay(a, ch, Status::Ok);
  // The chain shows a dispute (the follower's next mark): refused again.
  ChainMark dispute{};
  dispute.dispute = true;
  dispute.tx_count_global = 2;
  dispute.tx_count_chain = 1;
  marks[ch.key] = dispute;
  pay(a, ch, Status::ChannelInDispute);

  // Funds at a txCountChain above the mark's, no chain read since: the mark refuses.
  Dev b = device(2, 100, 0);
  b.latest.txCountChain = 2;
  Chan& cb = view(b);
  marks[cb.key] = emptied;
  pay(b, cb, Status::ChannelInDispute);
}

// A payer's OpenThread: countersigned, and the payee's mirror is a request for the payee's
// channel in the Effects (the payee's view untouched: the applier routes it). A second
// OpenThread the payee's hub balance cannot also mirror, drained in the same step from the
// reorder buffer, is refused: the step counts the mirror it routes.
TEST_F(EngineCoreTest, AnOpenThreadRoutesTheMirrorToThePayeesChannel) {
  Dev payer = device(1, 100, 0);
  Dev payee = device(2, 0, 5);
  Chan& pc = view(payer);
  const Chan& yc = view(payee);
  ChannelState next1{}, next2{};
  const Bytes o1 = open_thread(payer, payee, 1, 5, next1);
  payer.latest = next1;
  const Bytes o2 = open_thread(payer, payee, 2, 5, next2);

  const Effects early = step(pc, o2);  // tx + 2 first: it waits
  EXPECT_TRUE(early.replies.empty());
  EXPECT_TRUE(early.writes.empty());

  const Effects fx = step(pc, o1);
  const auto r = replies(fx, payer);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].kind, ReplyKind::Ack);
  EXPECT_EQ(r[0].txCountGlobal, next1.txCountGlobal);
  EXPECT_EQ(r[1].kind, ReplyKind::Nack) << "a second mirror the payee's channel cannot hold";
  EXPECT_EQ(r[1].status, Status::Underflow);
  ASSERT_EQ(fx.requests_for_other_channels.size(), 1u);
  EXPECT_EQ(fx.requests_for_other_channels[0].to, payee.addr);
  EXPECT_EQ(fx.requests_for_other_channels[0].update.reason, UpdateReason::OpenThread);
  EXPECT_EQ(fx.requests_for_other_channels[0].update.thread.thread.state.threadId, 1u);
  EXPECT_TRUE(yc.requests.empty()) << "the step changed another channel's view";
  for (const auto& o : fx.replies) EXPECT_NE(o.topic, mqtt::topic_request(payee.addr));
  EXPECT_EQ(pc.latest.state, next1);
}

// Reordered delivery: tx + 2 waits unsigned in the view; tx + 1 gets both countersigned, in
// order, in one step.
TEST_F(EngineCoreTest, TheReorderBufferSignsTxPlusTwoAfterTxPlusOne) {
  Dev a = device(1, 100, 0);
  Chan& ch = view(a);
  ChannelState n1{}, n2{};
  const Bytes b1 = payment(a, 1, n1);
  a.latest = n1;
  const Bytes b2 = payment(a, 2, n2);

  const Effects early = step(ch, b2);
  EXPECT_TRUE(early.replies.empty());
  EXPECT_TRUE(early.writes.empty());
  EXPECT_FALSE(ch.future.empty());

  const Effects fx = step(ch, b1);
  const auto r = replies(fx, a);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].kind, ReplyKind::Ack);
  EXPECT_EQ(r[0].txCountGlobal, n1.txCountGlobal);
  EXPECT_EQ(r[1].kind, ReplyKind::Ack);
  EXPECT_EQ(r[1].txCountGlobal, n2.txCountGlobal);
  EXPECT_EQ(count<write::InsertUpdate>(fx), 2u);
  EXPECT_EQ(ch.latest.state, n2);
  EXPECT_TRUE(ch.future.empty());
}

// A read error of the environment stops the step with a typed error (the applier rolls
// the transaction back): here the stored update a duplicate needs cannot be read.
TEST_F(EngineCoreTest, AReadErrorIsATypedResultNotAReply) {
  Dev a = device(1, 100, 0);
  Chan& ch = view(a);
  ChannelState next{};
  const Bytes b = payment(a, 7, next);
  step(ch, b);
  env_.find_update = [](const std::string&, uint64_t, Bytes&, Bytes&, bool&, std::string& err) {
    err = "disk I/O error";
    return false;
  };
  stored_.clear();
  Effects fx;
  engine_update(ch, b, env_, fx);
  EXPECT_TRUE(fx.failed());
  EXPECT_EQ(fx.read_error, "disk I/O error");
  EXPECT_TRUE(fx.replies.empty()) << "a duplicate answered without its stored reply";
}

// The legacy proposal guard: a proposal the hub signed in an earlier version is out for
// latest + 1, so there the hub countersigns exactly that update (its timeout included) and
// nothing else, whatever the policy would otherwise allow.
TEST_F(EngineCoreTest, AtALegacyProposalsTxOnlyThatExactUpdateIsCountersigned) {
  Dev a = device(1, 100, 0);
  ChannelUpdate legacy = channel_update_make(UpdateReason::ProposePendingDeposit);
  legacy.deposit.depositWeiHub = U256::from_u64(1000);
  legacy.deposit.timeout = env_.unix_now + 600;
  auto legacy_view = [&]() -> Chan& {
    Chan& ch = view(a);
    ch.legacy_tx = a.latest.txCountGlobal + 1;
    ch.legacy_update = std::make_unique<ChannelUpdate>(legacy);
    Request r;
    r.id = 1;
    r.update = legacy;
    ch.requests.push_back(r);
    ch.last_request_id = 1;
    return ch;
  };
  ChannelState next{};
  {  // a payment (allowed anywhere else) at the legacy txCountGlobal
    Chan& ch = legacy_view();
    const Effects fx = step(ch, payment(a, 1, next));
    EXPECT_TRUE(nothing_signed(fx));
    const auto r = replies(fx, a);
    ASSERT_GE(r.size(), 1u);
    EXPECT_EQ(r[0].kind, ReplyKind::Nack);
    EXPECT_EQ(r[0].status, Status::NotRequested);
  }
  {  // the same deposit with another timeout: another state at that txCountGlobal
    Chan& ch = legacy_view();
    ChannelUpdate other = legacy;
    other.deposit.timeout = legacy.deposit.timeout + 1;
    const Effects fx = step(ch, propose(a, other, next));
    EXPECT_TRUE(nothing_signed(fx));
    const auto r = replies(fx, a);
    ASSERT_GE(r.size(), 1u);
    EXPECT_EQ(r[0].status, Status::NotRequested);
  }
  {  // exactly the legacy update: countersigned, the legacy rows dropped with the requests
    Chan& ch = legacy_view();
    const Effects fx = step(ch, propose(a, legacy, next));
    const auto r = replies(fx, a);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].kind, ReplyKind::Ack);
    EXPECT_EQ(count<write::InsertUpdate>(fx), 1u);
    EXPECT_EQ(count<write::SaveDeposit>(fx), 1u) << "the countersigned collateral deposit is not a stored job";
    ASSERT_EQ(fx.deposits.size(), 1u);
    EXPECT_EQ(ch.legacy_tx, 0u);
    bool dropped = false;
    for (const auto& w : fx.writes)
      if (const auto* q = std::get_if<write::SaveRequests>(&w)) dropped = dropped || q->delete_legacy;
    EXPECT_TRUE(dropped);
    EXPECT_TRUE(ch.requests.empty());
  }
}

// A payee's CloseThread: countersigned, and the payer's CloseThread (the same final state)
// is a request for the payer's channel.
TEST_F(EngineCoreTest, APayeesCloseThreadRoutesThePayersClose) {
  Dev payer = device(1, 100, 0);
  Dev payee = device(2, 0, 50);
  Chan& pc = view(payer);
  Chan& yc = view(payee);
  ChannelState n1{};
  ThreadState t{};
  {  // the payer's thread, countersigned in its channel
    const Bytes o = open_thread(payer, payee, 1, 10, n1);
    const Effects fx = step(pc, o);
    ASSERT_FALSE(fx.failed()) << fx.read_error;
    ASSERT_EQ(replies(fx, payer).size(), 1u);
    t = payer.threads.back();
  }
  // The payee's channel: the mirror requested, proposed by the payee, countersigned.
  ChannelUpdate mirror = channel_update_make(UpdateReason::OpenThread);
  {
    Effects queued;
    mirror.thread.thread.state = t;
    mirror.thread.thread.hasSigA = true;
    ASSERT_EQ(signer_.sign_eth(payer.key, thread_hash(t), mirror.thread.thread.sigA), Status::Ok);
    engine_add_request(yc, mirror, false, queued);
    ChannelState nm{};
    const Effects fx = step(yc, propose(payee, mirror, nm));
    const auto r = replies(fx, payee);
    ASSERT_EQ(r.size(), 1u);
    ASSERT_EQ(r[0].kind, ReplyKind::Ack) << status_name(r[0].status);
    payee.latest = nm;
    payee.threads.push_back(t);
  }
  // The payer paid 4 through the thread; the payee closes with that final state.
  ThreadState fin = t;
  fin.balanceWeiSender = U256::from_u64(6);
  fin.balanceWeiReceiver = U256::from_u64(4);
  fin.txCount = 1;
  ChannelUpdate cu = channel_update_make(UpdateReason::CloseThread);
  cu.thread.thread.state = fin;
  cu.thread.thread.hasSigA = true;
  ASSERT_EQ(signer_.sign_eth(payer.key, thread_hash(fin), cu.thread.thread.sigA), Status::Ok);
  ChannelState n2{};
  const Effects fx = step(yc, propose(payee, cu, n2));
  const auto r = replies(fx, payee);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, ReplyKind::Ack);
  ASSERT_EQ(fx.requests_for_other_channels.size(), 1u);
  EXPECT_EQ(fx.requests_for_other_channels[0].to, payer.addr);
  EXPECT_EQ(fx.requests_for_other_channels[0].update.reason, UpdateReason::CloseThread);
  EXPECT_EQ(thread_hash(fx.requests_for_other_channels[0].update.thread.thread.state), thread_hash(fin));
  EXPECT_TRUE(pc.requests.empty()) << "the step changed another channel's view";
}

// A payee's collateral request: promised (a deposit request out, stored) only with a
// fresh reserve reading that holds it; a replayed request (the same time), one signed by
// another key or one without a fresh reading promises nothing and writes nothing.
TEST_F(EngineCoreTest, ACollateralRequestIsPromisedOnlyOnceAndOnlyFromAFreshReserve) {
  env_.has_chain = true;
  env_.collateral_wei = U256::from_u64(100);
  env_.reserve_known = true;
  env_.reserve_wei = U256::from_u64(1000000);
  env_.reserve_at_ms = env_.now_ms - 1000;
  Dev a = device(1, 0, 0);
  Chan& ch = view(a);
  auto request = [&](const PrivateKey& key, uint64_t t) {
    const std::string j = agent::collateral_request_make(signer_, key, contract_, a.addr, U256::from_u64(500), t);
    return Bytes(j.begin(), j.end());
  };
  auto deposit_requests = [&](const Effects& fx) {
    size_t n = 0;
    for (const auto& o : fx.replies) n += o.topic == mqtt::topic_request(a.addr);
    return n;
  };
  {  // signed by someone else
    Effects fx;
    engine_collateral(ch, request(testsupport::test_key(99), env_.unix_now), env_, fx);
    EXPECT_TRUE(fx.writes.empty());
    EXPECT_TRUE(fx.replies.empty());
  }
  {  // no fresh reading of the reserve
    EngineEnv stale = env_;
    stale.reserve_at_ms = env_.now_ms - 60000;
    Effects fx;
    engine_collateral(ch, request(a.key, env_.unix_now - 1), stale, fx);
    EXPECT_TRUE(fx.writes.empty());
    EXPECT_EQ(deposit_requests(fx), 0u);
  }
  Effects fx;
  engine_collateral(ch, request(a.key, env_.unix_now), env_, fx);
  EXPECT_EQ(deposit_requests(fx), 1u);
  EXPECT_GE(count<write::SaveRequests>(fx), 1u) << "promised before it was stored";
  ASSERT_TRUE(ch.outstanding());
  EXPECT_EQ(ch.requests.front().update.reason, UpdateReason::ProposePendingDeposit);
  EXPECT_EQ(ch.requests.front().update.deposit.depositWeiHub, U256::from_u64(500));
  {  // the same request again
    Effects again;
    engine_collateral(ch, request(a.key, env_.unix_now), env_, again);
    EXPECT_TRUE(again.writes.empty());
    EXPECT_TRUE(again.replies.empty());
  }
}

}  // namespace picopay::hub
