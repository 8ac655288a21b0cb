// Following the chain (docs/chain.md, "Following the chain"): the real picopay-hub and
// picopay-agent with an RPC URL, a real mosquitto (password per client, ACL) and the dev
// chain with a fresh ChannelManager (challenge period 60 s, the contract's minimum). No
// timing assertions: every wait is a bounded poll.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <cjson/cJSON.h>

#include "picopay/agent/json_state.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/demo/support.hpp"
#include "picopay/device/flows.hpp"
#include "picopay/device/state.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/codec.hpp"
#include "picopay/channel.hpp"
#include "picopay/signer.hpp"
#include "sim_device.hpp"

#include "support/e2e.hpp"
#include "support/wait.hpp"

using namespace picopay;
using namespace picopay::testsupport;
using namespace picopay::demo;

namespace {

const char* kDeposit = "1000000000000000000";
const uint64_t kPrice = 1000;
constexpr uint32_t kDeviceIndex = 1401;
constexpr uint32_t kPayerIndex = 1402, kPayeeIndex = 1403, kReopenIndex = 1404;

std::string json_str(const std::string& text, const char* field) {
  cJSON* j = cJSON_Parse(text.c_str());
  std::string out;
  const cJSON* f = j ? cJSON_GetObjectItem(j, field) : nullptr;
  if (f && cJSON_IsString(f)) out = f->valuestring;
  cJSON_Delete(j);
  return out;
}

class ChainWatch : public E2ESuite<ChainWatch> {
 protected:
  static void SetUpTestSuite() {
    std::string err;
    dev_key_ = key_hex(testsupport::test_key(kDeviceIndex));
    dev_addr_ = key_address(dev_key_);
    E2EOptions eo;
    eo.name = "chainwatch";
    eo.funded = {dev_key_, key_hex(testsupport::test_key(kPayerIndex)), key_hex(testsupport::test_key(kPayeeIndex)),
                 key_hex(testsupport::test_key(kReopenIndex))};
    ASSERT_TRUE(start_chain(eo, err)) << err;
    hub_cm_ = new chain::ChannelManagerClient(*hub_wallet_, cm_addr_);
    ASSERT_TRUE(hub_cm_->fund_reserve(U256::from_u64(1000000)).ok());  // the payee's collateral
    std::vector<BrokerUser> users = {{dev_addr_, "devpw"}};
    for (uint32_t i : {kPayerIndex, kPayeeIndex, kReopenIndex}) {
      auto login = device_broker_login(i);
      users.push_back({login.first, login.second});
    }
    ASSERT_TRUE(start_broker(users, "user test\ntopic read picopay/v1/#\n", err)) << err;
    start_hub();
    obs_ = new mqtt::Client(net_->observer_options("picopay-test-observer"));
    obs_->on_message([](const mqtt::Message& m) {
      std::lock_guard<std::mutex> l(mu_);
      (*status_)[m.topic] = std::string(m.payload.begin(), m.payload.end());
    });
    obs_->subscribe("picopay/v1/hub/+/status/+");
    obs_->subscribe("picopay/v1/user/+/status");
    ASSERT_TRUE(obs_->start(err)) << err;
    ASSERT_TRUE(obs_->wait_connected(10000));
  }

  // The hub in these tests is the attacker of the device's channel: its own watchtower
  // (which would answer even its own stale exit) runs once at start, then every hour.
  static void start_hub() {
    ASSERT_TRUE(hub_->start(net_->hub_argv({"--watchtower-interval", "3600"}), net_->hub_log()));
  }

  static void TearDownTestSuite() {
    if (obs_) obs_->stop();
    delete obs_;
    delete hub_cm_;
    stop_net();
  }

  static std::string status_of(const std::string& topic) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = status_->find(topic);
    return it == status_->end() ? "" : it->second;
  }

  // A SimDevice (the core's Session) that reads the chain itself for its chain facts.
  struct ChainView {
    std::unique_ptr<chain::Wallet> wallet;
    std::unique_ptr<chain::ChannelManagerClient> cm;
  };
  std::unique_ptr<testsupport::SimDevice> sim_device(uint32_t i, ChainView& v) {
    v.wallet = std::make_unique<chain::Wallet>(*rpc_, testsupport::test_key(i));
    EXPECT_TRUE(v.wallet->init().ok());
    v.cm = std::make_unique<chain::ChannelManagerClient>(*v.wallet, cm_addr_);
    chain::ChannelManagerClient* cm = v.cm.get();
    testsupport::SimOptions so;
    so.chain = [cm](const Address& user, ChainFacts& f) {
      auto oc = cm->channel(user);
      auto blk = rpc_->block_by_number("latest");
      if (!oc.ok() || !blk.ok()) return false;
      f.known = true;
      f.txCountGlobal = oc->txCountGlobal;
      f.txCountChain = oc->txCountChain;
      f.status = oc->status == chain::ChannelStatus::Open ? ChainChannelStatus::Open : ChainChannelStatus::InDispute;
      f.emptied = oc->status == chain::ChannelStatus::Open && oc->weiTotal.is_zero() && oc->tokenTotal.is_zero() &&
                  oc->txCountGlobal > 0 && oc->channelClosingTime == 0 && oc->threadCount == 0;
      f.blockTime = blk->timestamp;
      return true;
    };
    auto d = std::make_unique<testsupport::SimDevice>(i, hub_wallet_->address(), cm_addr_, so);
    mqtt::Options o;
    o.port = broker_->port();
    std::string err;
    EXPECT_TRUE(d->start(o, "pw-" + std::to_string(i), err)) << err;
    return d;
  }

  static inline std::string dev_key_, dev_addr_;
  static inline chain::ChannelManagerClient* hub_cm_ = nullptr;
  static inline mqtt::Client* obs_ = nullptr;
  static inline std::mutex mu_;
  static inline std::map<std::string, std::string>* status_ = new std::map<std::string, std::string>;
};

// The hub starts an exit on a paying device's channel with an older double-signed state.
// The device answers with its latest state (emptyChannelWithChallenge: the channel is
// emptied at once at the newer balances) and stops paying; the hub marks the channel and
// requests Connext's EmptyChannel, which the device proposes once its own chain read shows
// the channel empty at the state it answered with. The device stops paying when it
// answers, so at most its one proposal in flight comes between (see below). Then the
// device deposits again and the payments go on in the same channel.
TEST_F(ChainWatch, StaleExitByHubIsAnsweredThenEmptyChannelAndANewDepositReopen) {
  const std::string dir = work_ + "/dev";
  Address user{};
  ASSERT_EQ(address_parse(dev_addr_.c_str(), dev_addr_.size(), user), Status::Ok);
  auto agent = std::make_unique<Child>();
  ASSERT_TRUE(agent->start({bin_dir() + "/picopay-agent", "--name", "dev", "--state-dir", dir, "--broker",
                            "127.0.0.1:" + std::to_string(broker_->port()), "--password", "devpw", "--hub", hub_addr_,
                            "--contract", contract_, "--key", dev_key_, "--rpc", chain_->url(), "--meter", "stdin",
                            "--price-wei", std::to_string(kPrice), "--deposit-wei", kDeposit},
                           dir + ".log", true));
  uint64_t wh = 0;
  write_all(agent->stdin_fd(), "wh 0\n");
  // A double-signed state after the deposit with payments in it: the "older" state.
  device::AgentState s;
  SignedChannelState old{};
  ASSERT_TRUE(poll_until(
      [&] {
        wh += 1;
        write_all(agent->stdin_fd(), "wh " + std::to_string(wh) + "\n");
        std::string err;
        if (!device::state_load(dir, s, err)) return false;
        const ChannelState& c = s.channel.state;
        if (c.timeout != 0 || channel_has_pending(c) || c.balanceWeiHub.is_zero() || !s.channel.hasSigHub) return false;
        old = s.channel;
        return true;
      },
      60000));
  // More payments on top of it.
  ASSERT_TRUE(poll_until(
      [&] {
        wh += 1;
        write_all(agent->stdin_fd(), "wh " + std::to_string(wh) + "\n");
        std::string err;
        return device::state_load(dir, s, err) && s.channel.state.txCountGlobal >= old.state.txCountGlobal + 3;
      },
      60000));

  // The hub's stale exit, while the device keeps being metered.
  auto rc = hub_cm_->start_exit_with_update(old);
  ASSERT_TRUE(rc.ok()) << rc.error().to_string();
  chain::OnchainChannel oc{};
  ASSERT_TRUE(poll_until(
      [&] {
        wh += 1;
        write_all(agent->stdin_fd(), "wh " + std::to_string(wh) + "\n");
        auto c = hub_cm_->channel(user);
        if (!c) return false;
        oc = *c;
        return oc.status == chain::ChannelStatus::Open && oc.weiTotal.is_zero() && oc.txCountGlobal > 0;
      },
      50000))
      << "the channel was not emptied before the challenge period ended";
  // Emptied by the device's answer, at a state newer than the hub's exit.
  EXPECT_GT(oc.txCountGlobal, old.state.txCountGlobal);
  EXPECT_NE(read_text(dir + ".log").find("stale exit answered: emptyChannelWithChallenge txCountGlobal " +
                                     std::to_string(oc.txCountGlobal)),
            std::string::npos)
      << read_text(dir + ".log");

  // EmptyChannel right after the state put on chain (txCountGlobal G), after at most the
  // one proposal the device had in flight when it answered (it proposes nothing after):
  // - none: EmptyChannel at G + 1;
  // - a payment the hub countersigned before it saw the exit: the device's latest state is
  //   G + 1, EmptyChannel at G + 2 (the chain's txCount[0] G is not above it: allowed,
  //   docs/signing-policy.md);
  // - a payment the hub refused (ChannelInDispute), given up by its Invalidation (a skip
  //   at G + 2 repeats the contents of G): EmptyChannel at G + 3.
  const uint64_t g = oc.txCountGlobal;
  uint64_t empty_tx = 0;
  ASSERT_TRUE(poll_until(
      [&] {
        write_all(agent->stdin_fd(), "wh " + std::to_string(++wh) + "\n");
        const std::string l = read_text(dir + ".log");
        for (uint64_t n = g + 1; n <= g + 3; ++n)
          if (l.find("EmptyChannel " + std::to_string(n) + " double-signed") != std::string::npos) empty_tx = n;
        return empty_tx != 0;
      },
      60000))
      << read_text(dir + ".log") << "\n" << read_text(work_ + "/hub.log");
  {
    std::vector<device::HistoryEntry> h;
    std::string err;
    ASSERT_TRUE(device::history_load(dir, h, err)) << err;
    std::vector<std::pair<uint64_t, std::string>> between;  // double-signed after G, before EmptyChannel
    for (const auto& e : h)
      if (e.txCountGlobal > g && e.txCountGlobal < empty_tx) between.emplace_back(e.txCountGlobal, e.reason);
    std::vector<std::pair<uint64_t, std::string>> want;
    if (empty_tx == g + 2) want = {{g + 1, "Payment"}};
    if (empty_tx == g + 3) want = {{g + 2, "Invalidation"}};
    EXPECT_EQ(between, want) << "EmptyChannel at " << empty_tx << ", chain at " << g;
  }
  const std::string dlog = read_text(dir + ".log");
  EXPECT_NE(dlog.find("payments stopped"), std::string::npos) << dlog;
  const std::string hlog = read_text(work_ + "/hub.log");
  EXPECT_NE(hlog.find("only EmptyChannel is countersigned on it"), std::string::npos) << hlog;
  EXPECT_NE(hlog.find("EmptyChannel requested"), std::string::npos) << hlog;

  // A new deposit on chain, confirmed, and payments again in the same channel.
  ASSERT_TRUE(poll_until(
      [&] {
        write_all(agent->stdin_fd(), "wh " + std::to_string(++wh) + "\n");
        std::string err;
        if (!device::state_load(dir, s, err)) return false;
        const ChannelState& c = s.channel.state;
        return c.txCountGlobal > oc.txCountGlobal + 4 && !channel_has_pending(c) && !c.balanceWeiHub.is_zero();
      },
      90000))
      << read_text(dir + ".log");
  auto after = hub_cm_->channel(user);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->status, chain::ChannelStatus::Open);
  U256 both{};
  ASSERT_EQ(u256_add(s.channel.state.balanceWeiHub, s.channel.state.balanceWeiUser, both), Status::Ok);
  EXPECT_EQ(after->weiTotal, both);
  EXPECT_GT(after->txCountChain, oc.txCountChain);
  // The device says it is in use again (status JSON: no chain note).
  const std::string dev_topic = mqtt::topic_user_status(user);
  EXPECT_TRUE(poll_until([&] { return json_str(status_of(dev_topic), "chain").empty(); }, 20000))
      << status_of(dev_topic);
  agent->close_stdin();
  agent->stop(20000);
}

// The hub's side of an emptied channel, with a device whose messages the test controls:
// the channel takes no payment (also from a restarted hub: the mark is stored), the hub
// requests EmptyChannel, and refuses EmptyChannel proposals whose state is not the empty
// state at the chain's counts (a higher txCountChain, a balance left in it: the signature
// is over another state); the honest EmptyChannel is countersigned at the next
// txCountGlobal (nothing was stored at it), and a new deposit reopens the channel.
TEST_F(ChainWatch, EmptiedChannelTakesOnlyTheProperEmptyChannel) {
  ChainView v;
  auto d = sim_device(kReopenIndex, v);
  ASSERT_EQ(d->deposit(5000), Status::Ok);
  {
    const SignedChannelState st = d->latest();
    auto rc = v.cm->user_authorized_update(st.state, st.sigHub);
    ASSERT_TRUE(rc.ok()) << rc.error().to_string();
    ASSERT_EQ(d->confirm_pending(rc->transactionHash), Status::Ok);
  }
  ASSERT_EQ(d->pay(100), Status::Ok);
  const SignedChannelState old = d->latest();
  ASSERT_EQ(d->pay(100), Status::Ok);
  ASSERT_EQ(d->pay(100), Status::Ok);
  const SignedChannelState last = d->latest();
  // The hub's stale exit; the device answers at once (the user empties with its newer state).
  d->pause_requests(true);
  auto rc = hub_cm_->start_exit_with_update(old);
  ASSERT_TRUE(rc.ok()) << rc.error().to_string();
  auto ans = v.cm->empty_channel_with_challenge(last);
  ASSERT_TRUE(ans.ok()) << ans.error().to_string();
  auto oc = hub_cm_->channel(d->address());
  ASSERT_TRUE(oc.ok());
  ASSERT_EQ(oc->status, chain::ChannelStatus::Open);
  ASSERT_TRUE(oc->weiTotal.is_zero());
  ASSERT_EQ(oc->txCountGlobal, last.state.txCountGlobal);
  const std::string key = mqtt::topic_address(d->address());
  ASSERT_TRUE(poll_until([&] { return read_text(work_ + "/hub.log").find(key + ": emptied on chain") != std::string::npos; },
                         30000))
      << read_text(work_ + "/hub.log");

  auto send = [&](std::vector<uint8_t> bytes, uint64_t tx) {
    Reply r{};
    if (bytes.empty() || !d->publish_raw(mqtt::topic_update(hub_wallet_->address(), d->address()), bytes, tx))
      return Status::BadArgs;
    if (!d->wait_reply(tx, r, 20000)) return Status::IoError;
    return r.kind == ReplyKind::Ack ? Status::Ok : r.status;
  };
  const uint64_t next_tx = last.state.txCountGlobal + 1;
  // A payment: refused (the off-chain state still holds what the chain paid out).
  ChannelUpdate p = channel_update_make(UpdateReason::Payment);
  p.payment.recipient = Party::Hub;
  p.payment.amountWei = U256::from_u64(100);
  ChannelState pn{};
  EXPECT_EQ(send(d->build(p, pn), next_tx), Status::ChannelInDispute);
  // EmptyChannel proposals signing another state than the empty one at the chain's counts.
  Signer sg;
  ASSERT_EQ(sg.init(), Status::Ok);
  auto forged_empty = [&](const std::function<void(ChannelState&)>& change) {
    ChannelState n = last.state;
    n.balanceWeiHub = n.balanceWeiUser = n.balanceTokenHub = n.balanceTokenUser = U256::zero();
    n.txCountGlobal = next_tx;
    change(n);
    ChannelUpdate u = channel_update_make(UpdateReason::EmptyChannel);
    u.txCountGlobal = next_tx;
    EXPECT_EQ(sg.sign_eth(d->key(), channel_hash(n), u.sig), Status::Ok);
    uint8_t buf[kMaxChannelUpdateWire];
    size_t len = 0;
    EXPECT_EQ(encode_channel_update(u, buf, sizeof buf, &len), Status::Ok);
    return std::vector<uint8_t>(buf, buf + len);
  };
  EXPECT_EQ(send(forged_empty([](ChannelState& n) { n.txCountChain += 1; }), next_tx), Status::WrongSigner);
  EXPECT_EQ(send(forged_empty([&](ChannelState& n) { n.balanceWeiUser = last.state.balanceWeiUser; }), next_tx),
            Status::WrongSigner);
  EXPECT_EQ(send(forged_empty([&](ChannelState& n) { n.balanceWeiHub = last.state.balanceWeiHub; }), next_tx),
            Status::WrongSigner);
  // A restarted hub refuses the payment too (the mark is stored).
  hub_->stop(20000);
  start_hub();
  EXPECT_EQ(send(d->build(p, pn), next_tx), Status::ChannelInDispute);

  // The hub requested EmptyChannel; the device proposes it (its chain read shows the
  // channel empty at its latest state's counts) and the hub countersigns it.
  ASSERT_TRUE(poll_until(
      [&] {
        for (const auto& b : d->raw_requests()) {
          HubRequest q{};
          if (decode_hub_request(b.data(), b.size(), q) == Status::Ok && q.update.reason == UpdateReason::EmptyChannel)
            return true;
        }
        return false;
      },
      30000))
      << read_text(work_ + "/hub.log");
  d->pause_requests(false);
  ASSERT_TRUE(d->publish_raw(mqtt::topic_sync(hub_wallet_->address(), d->address()), {}, 0));  // the hub re-sends its head
  ASSERT_TRUE(d->wait_until([](testsupport::SimDevice& x) { return x.completed(UpdateReason::EmptyChannel) == 1; },
                            60000))
      << read_text(work_ + "/hub.log");
  const SignedChannelState e = d->latest();
  EXPECT_EQ(e.state.txCountGlobal, next_tx);
  EXPECT_EQ(e.state.txCountChain, oc->txCountChain);
  EXPECT_TRUE(e.state.balanceWeiHub.is_zero() && e.state.balanceWeiUser.is_zero());
  EXPECT_EQ(e.state.threadCount, 0u);
  EXPECT_TRUE(e.hasSigHub && e.hasSigUser);

  // A new deposit brings the channel back; payments continue.
  ASSERT_EQ(d->deposit(2000), Status::Ok);
  {
    const SignedChannelState st = d->latest();
    auto r2 = v.cm->user_authorized_update(st.state, st.sigHub);
    ASSERT_TRUE(r2.ok()) << r2.error().to_string();
    ASSERT_EQ(d->confirm_pending(r2->transactionHash), Status::Ok);
  }
  // The hub's follower sees the channel in use again (its next round), then payments go on.
  const std::string open_line = "chain: channel " + json::address_text(d->address()) + " open";
  ASSERT_TRUE(poll_until([&] { return read_text(work_ + "/hub.log").find(open_line) != std::string::npos; }, 30000))
      << read_text(work_ + "/hub.log");
  EXPECT_EQ(d->pay(100), Status::Ok);
  EXPECT_EQ(d->pay(100), Status::Ok);
  EXPECT_EQ(d->latest().state.balanceWeiHub, U256::from_u64(200));
  EXPECT_EQ(d->latest().state.balanceWeiUser, U256::from_u64(1800));
  d->stop();
}

// A payer pays a payee through a thread, the payee closes it (the hub pays the payee),
// and the payer, without countersigning the close, exits with the thread still open. The
// hub empties the channel (the chain holds its latest state) and starts the thread's
// dispute with the payee's final state; the payer's early nukeThreads is refused, so it
// cannot take back what it paid through the thread.
TEST_F(ChainWatch, PayerExitWithOpenThreadIsDisputedByTheHub) {
  ChainView pv, qv;
  auto payer = sim_device(kPayerIndex, pv);
  auto payee = sim_device(kPayeeIndex, qv);
  // The payer's deposit on chain, confirmed.
  ASSERT_EQ(payer->deposit(5000), Status::Ok);
  {
    const SignedChannelState s = payer->latest();
    auto rc = pv.cm->user_authorized_update(s.state, s.sigHub);
    ASSERT_TRUE(rc.ok()) << rc.error().to_string();
    ASSERT_EQ(payer->confirm_pending(rc->transactionHash), Status::Ok);
  }
  uint64_t id = 0;
  ASSERT_EQ(payer->open_thread(payee->address(), 300, &id, 60000), Status::Ok);
  ASSERT_TRUE(payee->wait_until([](testsupport::SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; },
                                90000))
      << "the mirror was not opened in the payee's channel";
  ASSERT_EQ(payer->thread_pay(payee->address(), id, 200), Status::Ok);
  SignedThreadState got{};
  ASSERT_TRUE(payee->wait_until(
      [&](testsupport::SimDevice& d) {
        return d.thread_latest(payer->address(), payee->address(), id, got) &&
               got.state.balanceWeiReceiver == U256::from_u64(200);
      },
      30000));
  // The payee closes; the payer never countersigns the close the hub then requests.
  payer->pause_requests(true);
  ASSERT_EQ(payer->close_thread(payee->address(), id), Status::Ok);
  ASSERT_TRUE(payee->wait_until([](testsupport::SimDevice& d) { return d.completed(UpdateReason::CloseThread) == 1; },
                                30000));
  const SignedChannelState last = payer->latest();
  ASSERT_EQ(last.state.threadCount, 1u);

  // The payer exits with its latest state (the thread open in it).
  auto rc = pv.cm->start_exit_with_update(last);
  ASSERT_TRUE(rc.ok()) << rc.error().to_string();
  chain::OnchainThread ot{};
  ASSERT_TRUE(poll_until(
      [&] {
        auto t = hub_cm_->thread(payer->address(), payee->address(), id);
        if (!t) return false;
        ot = *t;
        return ot.threadClosingTime != 0;
      },
      60000))
      << "the hub did not start the thread's dispute\n" << read_text(work_ + "/hub.log");
  EXPECT_EQ(ot.weiReceiver, U256::from_u64(200)) << "the dispute carries the payee's final state";
  EXPECT_EQ(ot.weiSender, U256::from_u64(100));
  auto oc = hub_cm_->channel(payer->address());
  ASSERT_TRUE(oc.ok());
  EXPECT_EQ(oc->status, chain::ChannelStatus::ThreadDispute);
  // nukeThreads by the payer while the thread dispute runs: refused.
  auto nuke = pv.cm->nuke_threads(payer->address());
  EXPECT_FALSE(nuke.ok()) << "nukeThreads pre-empted the thread dispute";
  EXPECT_NE(read_text(work_ + "/hub.log").find("dispute started (payee's final state"), std::string::npos);
  payer->stop();
  payee->stop();
}

}  // namespace
