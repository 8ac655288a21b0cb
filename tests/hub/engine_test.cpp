// The hub's engine without a broker or a chain (label agent): a real SQLite ledger file,
// the hub's engine fed inbound messages and chain results one turn at a time
// (Hub::open_engine / engine_turn), its publishes captured after COMMIT, its chain jobs
// captured by a fake chain port. Devices are the core's channel_propose with test keys.
// Pins what the chain worker changed: an update asserting a chain fact waits, unanswered,
// for the chain's answer (a re-sent copy gets nothing, another channel is answered
// meanwhile), the answer serves exactly that update, and a late or unasked answer changes
// nothing; and that a reserve reading of a block before a finished deposit's promises no
// collateral (the reader's readings and the sender's DepositDone race).
#include <gtest/gtest.h>

#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "hub.hpp"
#include "picopay/agent/collateral_request.hpp"
#include "picopay/codec.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "sim_device.hpp"
#include "support/process.hpp"

using namespace picopay;
using namespace picopay::hub;

namespace {

PrivateKey key_of(uint32_t index) { return testsupport::test_key(index); }

struct FakeChain : ChainPort {
  std::vector<ChainJob> jobs;
  void post(ChainJob j) override { jobs.push_back(std::move(j)); }
  size_t reads(const Address& user) const {
    size_t n = 0;
    for (const auto& j : jobs) n += j.kind == ChainJob::Kind::ReadChannel && j.user == user;
    return n;
  }
};

struct Published {
  std::string topic;
  Bytes payload;
  uint64_t corr;
};

// A device: its key, its latest double-signed state (as the hub's Acks make it).
struct Dev {
  PrivateKey key{};
  Address addr{};
  ChannelState latest{};
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testsupport::make_temp_dir("picopay-engine");
    ASSERT_EQ(signer_.init(), Status::Ok);
    ASSERT_EQ(signer_.address_of(key_of(0xABCDEF), hub_addr_), Status::Ok);
    contract_.bytes[19] = 0x42;
    Config c;
    c.db = dir_ + "/hub.db";
    c.contract = mqtt::topic_address(contract_);
    c.verify_threads = 0;
    configure(c);
    hub_ = std::make_unique<Hub>(c, key_of(0xABCDEF));
    std::string err;
    ASSERT_TRUE(hub_->open_engine(&chain_, [this](const std::string& t, const Bytes& p, uint64_t corr) {
      out_.push_back({t, p, corr});
    }, err)) << err;
  }
  // A test fixture's own settings (before the engine opens).
  virtual void configure(Config&) {}
  void TearDown() override {
    hub_.reset();
    if (!HasFailure()) testsupport::remove_tree(dir_);
  }

  Dev device(uint32_t i) {
    Dev d;
    d.key = key_of(i);
    EXPECT_EQ(signer_.address_of(d.key, d.addr), Status::Ok);
    d.latest = channel_state_zero();
    d.latest.contractAddress = contract_;
    d.latest.user = d.addr;
    d.latest.recipient = d.addr;
    return d;
  }

  // The device's next update, signed; `next` = the state it proposes.
  Bytes propose(const Dev& d, ChannelUpdate u, ChannelState& next) {
    ChannelContext ctx{hub_addr_};
    const ThreadSet none{nullptr, 0, 0, nullptr};
    EXPECT_EQ(channel_propose(ctx, signer_, d.key, Party::User, d.latest, none, u, next), Status::Ok);
    uint8_t buf[kMaxChannelUpdateWire];
    size_t n = 0;
    EXPECT_EQ(encode_channel_update(u, buf, sizeof buf, &n), Status::Ok);
    return Bytes(buf, buf + n);
  }

  static mqtt::Message msg(const std::string& topic, const Bytes& payload) {
    mqtt::Message m;
    m.topic = topic;
    m.payload = payload;
    return m;
  }
  mqtt::Message update(const Dev& d, const Bytes& b) { return msg(mqtt::topic_update(hub_addr_, d.addr), b); }

  // Replies published to `d` since the last call (status messages are not replies).
  std::vector<Reply> replies(const Dev& d) {
    std::vector<Reply> r;
    const std::string t = mqtt::topic_reply(d.addr);
    for (const auto& p : out_) {
      if (p.topic != t) continue;
      Reply x = reply_make(ReplyKind::Ack);
      EXPECT_EQ(decode_reply(p.payload.data(), p.payload.size(), x), Status::Ok);
      r.push_back(x);
    }
    std::vector<Published> rest;
    for (auto& p : out_)
      if (p.topic != t) rest.push_back(std::move(p));
    out_.swap(rest);
    return r;
  }
  std::vector<Bytes> reply_bytes(const Dev& d) {
    std::vector<Bytes> r;
    for (const auto& p : out_)
      if (p.topic == mqtt::topic_reply(d.addr)) r.push_back(p.payload);
    return r;
  }

  // The user's own deposit, countersigned (no chain fact asserted): the device's state is
  // then the pending deposit.
  void deposit(Dev& d, uint64_t wei) {
    ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingDeposit);
    u.deposit.depositWeiUser = U256::from_u64(wei);
    u.deposit.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;
    ChannelState next{};
    const Bytes b = propose(d, u, next);
    ASSERT_TRUE(hub_->engine_turn({update(d, b)}));
    auto r = replies(d);
    ASSERT_EQ(r.size(), 1u);
    ASSERT_EQ(r[0].kind, ReplyKind::Ack);
    d.latest = next;
  }

  // The chain's answer for `d`: the pending operations of its latest state executed.
  ChainResult executed(const Dev& d) {
    ChainResult r;
    r.kind = ChainResult::Kind::Facts;
    r.user = d.addr;
    r.facts.known = true;
    r.facts.txCountGlobal = d.latest.txCountGlobal;
    r.facts.txCountChain = d.latest.txCountChain;
    r.facts.status = ChainChannelStatus::Open;
    r.facts.emptied = false;
    r.facts.blockTime = static_cast<uint64_t>(std::time(nullptr));
    return r;
  }

  Bytes confirm(const Dev& d, ChannelState& next) {
    ChannelUpdate u = channel_update_make(UpdateReason::ConfirmPending);
    std::memset(u.chainTx.transactionHash.bytes, 0xab, 32);
    return propose(d, u, next);
  }

  std::string dir_;
  Signer signer_;
  Address hub_addr_{}, contract_{};
  FakeChain chain_;
  std::vector<Published> out_;
  std::unique_ptr<Hub> hub_;
};

}  // namespace

// A ConfirmPending waits for the chain: no reply and no signature until the answer; a
// re-sent copy neither gets one nor asks the chain again; another channel's update in the
// same batch is countersigned meanwhile. The answer (the deposit executed) gets it
// countersigned once; the same bytes again get the same stored Ack.
TEST_F(EngineTest, AConfirmPendingWaitsForTheChainWhileOtherChannelsAreAnswered) {
  Dev a = device(1), b = device(2);
  deposit(a, 1000);
  ChannelState next{};
  const Bytes cp = confirm(a, next);
  ASSERT_TRUE(hub_->engine_turn({update(a, cp)}));
  EXPECT_TRUE(replies(a).empty()) << "answered before the chain did";
  EXPECT_EQ(chain_.reads(a.addr), 1u) << "the chain was not asked (or asked twice)";

  // The device re-sends it; another device deposits in the same batch.
  ChannelUpdate ub = channel_update_make(UpdateReason::ProposePendingDeposit);
  ub.deposit.depositWeiUser = U256::from_u64(5);
  ub.deposit.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;
  ChannelState bnext{};
  const Bytes bb = propose(b, ub, bnext);
  ASSERT_TRUE(hub_->engine_turn({update(a, cp), update(b, bb), update(a, cp)}));
  EXPECT_TRUE(replies(a).empty()) << "a re-sent ConfirmPending was answered before the chain did";
  EXPECT_EQ(chain_.reads(a.addr), 1u) << "a re-sent copy asked the chain again";
  auto rb = replies(b);
  ASSERT_EQ(rb.size(), 1u) << "the other channel was not answered meanwhile";
  EXPECT_EQ(rb[0].kind, ReplyKind::Ack);

  ASSERT_TRUE(hub_->engine_turn({}, {executed(a)}));
  const std::vector<Bytes> first = reply_bytes(a);
  auto ra = replies(a);
  ASSERT_EQ(ra.size(), 1u) << "one answer, one signature";
  EXPECT_EQ(ra[0].kind, ReplyKind::Ack);
  EXPECT_EQ(ra[0].txCountGlobal, next.txCountGlobal);

  // The same answer again (late, duplicated): nothing is parked, nothing happens.
  ASSERT_TRUE(hub_->engine_turn({}, {executed(a)}));
  EXPECT_TRUE(replies(a).empty());
  // The same bytes again: the stored Ack, byte for byte (no second signature).
  ASSERT_TRUE(hub_->engine_turn({update(a, cp)}));
  EXPECT_EQ(reply_bytes(a), first);
}

// The chain could not be read (or shows nothing executed): the ConfirmPending is refused
// and the channel stays where it was; the next copy asks the chain again.
TEST_F(EngineTest, AConfirmPendingTheChainDoesNotShowIsRefused) {
  Dev a = device(1);
  deposit(a, 1000);
  ChannelState next{};
  const Bytes cp = confirm(a, next);
  ASSERT_TRUE(hub_->engine_turn({update(a, cp)}));
  ASSERT_TRUE(replies(a).empty());
  ChainResult unknown;
  unknown.kind = ChainResult::Kind::Facts;
  unknown.user = a.addr;
  unknown.facts.known = false;
  ASSERT_TRUE(hub_->engine_turn({}, {unknown}));
  auto r = replies(a);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, ReplyKind::Nack);
  EXPECT_EQ(r[0].state.state.txCountGlobal, a.latest.txCountGlobal) << "the Nack carries the unchanged latest state";

  // Chain read again: it shows the deposit not executed (txCountChain behind).
  ASSERT_TRUE(hub_->engine_turn({update(a, cp)}));
  EXPECT_EQ(chain_.reads(a.addr), 2u);
  ChainResult behind = executed(a);
  behind.facts.txCountChain = 0;
  behind.facts.txCountGlobal = 0;
  ASSERT_TRUE(hub_->engine_turn({}, {behind}));
  r = replies(a);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, ReplyKind::Nack);
  EXPECT_EQ(r[0].status, Status::NotOnChain);
}

// Updates of a channel that arrive while its ConfirmPending waits wait behind it and are
// applied after it, in order; an answer nobody asked for (another channel) changes nothing.
TEST_F(EngineTest, LaterUpdatesWaitBehindAndAnUnaskedAnswerChangesNothing) {
  Dev a = device(1), c = device(3);
  deposit(a, 1000);
  ChannelState next{};
  const Bytes cp = confirm(a, next);
  ASSERT_TRUE(hub_->engine_turn({update(a, cp)}));
  // A payment on top of the (not yet countersigned) ConfirmPending.
  Dev after = a;
  after.latest = next;
  ChannelUpdate pay = channel_update_make(UpdateReason::Payment);
  pay.payment.recipient = Party::Hub;
  pay.payment.amountWei = U256::from_u64(7);
  ChannelState pnext{};
  const Bytes pb = propose(after, pay, pnext);
  ASSERT_TRUE(hub_->engine_turn({update(a, pb)}));
  EXPECT_TRUE(replies(a).empty()) << "the payment overtook the waiting ConfirmPending";

  ASSERT_TRUE(hub_->engine_turn({}, {executed(c)}));  // unasked: c has nothing waiting
  EXPECT_TRUE(replies(c).empty());
  EXPECT_TRUE(replies(a).empty());

  ASSERT_TRUE(hub_->engine_turn({}, {executed(a)}));
  auto r = replies(a);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].kind, ReplyKind::Ack);
  EXPECT_EQ(r[0].txCountGlobal, next.txCountGlobal);
  EXPECT_EQ(r[1].kind, ReplyKind::Ack);
  EXPECT_EQ(r[1].txCountGlobal, pnext.txCountGlobal);
}

namespace {

// The hub deposits collateral on a payee's request (100 wei at least).
class EngineReserveTest : public EngineTest {
 protected:
  void configure(Config& c) override { c.collateral_wei = "100"; }

  // The chain worker's reading of the hub's reserve: `wei` at block `block`.
  static ChainResult reserve(uint64_t wei, uint64_t block) {
    ChainResult r;
    r.kind = ChainResult::Kind::Reserve;
    r.known = true;
    r.wei = U256::from_u64(wei);
    r.block = block;
    return r;
  }
  // The chain worker's answer for `d`'s deposit: mined in block `block`.
  static ChainResult deposit_done(const Dev& d, uint64_t block) {
    ChainResult r;
    r.kind = ChainResult::Kind::DepositDone;
    r.user = d.addr;
    std::memset(r.tx.bytes, 0xcd, 32);
    r.block = block;
    return r;
  }
  // `d`'s signed collateral request (it expects `wei`), on its collateral topic.
  mqtt::Message collateral(const Dev& d, uint64_t wei, uint64_t t) {
    const std::string j = agent::collateral_request_make(signer_, d.key, contract_, d.addr, U256::from_u64(wei), t);
    return msg(mqtt::topic_collateral(hub_addr_, d.addr), Bytes(j.begin(), j.end()));
  }
  // The hub's requests published to `d` since the last call, decoded.
  std::vector<HubRequest> requests(const Dev& d) {
    std::vector<HubRequest> r;
    std::vector<Published> rest;
    for (auto& p : out_) {
      if (p.topic != mqtt::topic_request(d.addr)) {
        rest.push_back(std::move(p));
        continue;
      }
      HubRequest q{};
      EXPECT_EQ(decode_hub_request(p.payload.data(), p.payload.size(), q), Status::Ok);
      r.push_back(q);
    }
    out_.swap(rest);
    return r;
  }
};

}  // namespace

// The reader thread's reserve readings and the sender's DepositDone race: a reading taken
// before a deposit was mined may arrive after its DepositDone took the job off the
// promised deposits. Such a reading (of a block before the deposit's) is never used, and
// the DepositDone drops the current reading of an older block: collateral is promised
// again only from a reading of the deposit's block or later.
TEST_F(EngineReserveTest, AReserveReadingOlderThanAFinishedDepositPromisesNothing) {
  Dev b = device(2), c = device(3), d = device(4), e = device(5);
  const uint64_t t = static_cast<uint64_t>(std::time(nullptr));
  ASSERT_TRUE(hub_->engine_turn({}, {reserve(1000, 10)}));

  // b is promised 600 and countersigns the deposit: a job for the chain.
  ASSERT_TRUE(hub_->engine_turn({collateral(b, 600, t)}));
  auto rb = requests(b);
  ASSERT_EQ(rb.size(), 1u) << "600 of 1000 wei free was not promised";
  ASSERT_EQ(rb[0].update.reason, UpdateReason::ProposePendingDeposit);
  ASSERT_EQ(rb[0].update.deposit.depositWeiHub, U256::from_u64(600));
  ChannelState next{};
  ASSERT_TRUE(hub_->engine_turn({update(b, propose(b, rb[0].update, next))}));
  auto ab = replies(b);
  ASSERT_EQ(ab.size(), 1u);
  ASSERT_EQ(ab[0].kind, ReplyKind::Ack);
  b.latest = next;
  size_t sent = 0;
  for (const auto& j : chain_.jobs) sent += j.kind == ChainJob::Kind::Deposit && j.user == b.addr;
  ASSERT_EQ(sent, 1u) << "the countersigned deposit did not go to the chain";

  // While the deposit waits for the chain, 400 are free: c's 600 are not promised.
  ASSERT_TRUE(hub_->engine_turn({collateral(c, 600, t)}));
  EXPECT_TRUE(requests(c).empty()) << "promised collateral the reserve does not hold (a deposit is on its way)";

  // The deposit is mined in block 11; the current reading (block 10) goes with it.
  ASSERT_TRUE(hub_->engine_turn({}, {deposit_done(b, 11)}));
  ASSERT_TRUE(hub_->engine_turn({collateral(d, 600, t)}));
  EXPECT_TRUE(requests(d).empty()) << "promised from a reading of a block before the deposit's";

  // A reading taken at block 10, arriving late: still 1000 wei, the deposit not in it.
  ASSERT_TRUE(hub_->engine_turn({}, {reserve(1000, 10)}));
  ASSERT_TRUE(hub_->engine_turn({collateral(e, 600, t)}));
  EXPECT_TRUE(requests(e).empty()) << "a stale reading counted the deposited 600 wei as free again";

  // A reading of block 11: 400 wei, the deposit made. 600 are refused, 400 promised.
  ASSERT_TRUE(hub_->engine_turn({}, {reserve(400, 11)}));
  ASSERT_TRUE(hub_->engine_turn({collateral(e, 600, t + 1)}));
  EXPECT_TRUE(requests(e).empty()) << "promised more than the reserve holds";
  ASSERT_TRUE(hub_->engine_turn({collateral(e, 400, t + 2)}));
  auto rc = requests(e);
  ASSERT_EQ(rc.size(), 1u) << "a fresh reading that holds it promised nothing";
  EXPECT_EQ(rc[0].update.reason, UpdateReason::ProposePendingDeposit);
  EXPECT_EQ(rc[0].update.deposit.depositWeiHub, U256::from_u64(400));
}
