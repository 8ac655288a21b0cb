// The money flows of docs/flows.md end to end: the real picopay-agent and picopay-hub
// over a real mosquitto (password per client, ACL) with the dev chain (ganache, a fresh
// ChannelManager). Top-up by hand (running agent and one-shot) and automatic refill;
// cooperative withdrawal to another address and "all"; with adversarial counterparts:
// a withdrawal above the balance, a device proposing to withdraw the hub's funds, a hub
// request (signed with the hub's key) asking the device to withdraw its own funds to an
// attacker. No timing assertions: every wait is a bounded poll.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <cjson/cJSON.h>

#include "picopay/agent/collateral_request.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/codec.hpp"
#include "picopay/demo/support.hpp"
#include "picopay/device/flows.hpp"
#include "picopay/device/state.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"

#include "support/e2e.hpp"
#include "support/wait.hpp"

using namespace picopay;
using namespace picopay::testsupport;
using namespace picopay::demo;

namespace {

const uint64_t kPrice = 1000000000000ull;  // 1e12 wei per Wh

class Flows : public E2ESuite<Flows> {
 protected:
  static void SetUpTestSuite() {
    std::string err;
    E2EOptions eo;
    eo.name = "flows-test";
    eo.devices = kKeys;
    ASSERT_TRUE(start_chain(eo, err)) << err;
    ASSERT_TRUE(net_->fund_reserve(dec("50000000000000000000"), err)) << err;
    // "test" plays the adversary that got hold of the hub's key: it may publish requests.
    ASSERT_TRUE(start_broker({{"hub2", "hub2pw"}},
                             "user hub2\ntopic readwrite picopay/v1/#\n\n"
                             "user test\ntopic read picopay/v1/#\ntopic write picopay/v1/user/+/request\n"
                             "topic write picopay/v1/hub/+/channel/+/collateral\n",
                             err))
        << err;
    ASSERT_TRUE(hub_->start(net_->hub_argv({"--verbose"}), net_->hub_log()));
    obs_ = new mqtt::Client(net_->observer_options("picopay-test-observer"));
    obs_->on_message([](const mqtt::Message& m) {
      std::lock_guard<std::mutex> l(mu_);
      if (m.topic.find("/status/0x") != std::string::npos)
        (*hub_status_)[m.topic.substr(m.topic.size() - 42)] = std::string(m.payload.begin(), m.payload.end());
      else if (m.topic.size() > 6 && m.topic.compare(m.topic.size() - 6, 6, "/reply") == 0 &&
               m.topic.find("/channel/") != std::string::npos)
        hub_replies_->push_back(m);
    });
    obs_->subscribe("picopay/v1/hub/+/status/+");
    obs_->subscribe("picopay/v1/hub/+/channel/+/reply");
    ASSERT_TRUE(obs_->start(err)) << err;
    ASSERT_TRUE(obs_->wait_connected(10000));
  }

  static void TearDownTestSuite() {
    if (obs_) obs_->stop();
    delete obs_;
    stop_net();
  }

  static std::string pw(int idx) { return device_password(keys_[static_cast<size_t>(idx)]); }

  std::vector<std::string> base_argv(const std::string& cmd, int idx, const std::string& dir) {
    auto v = net_->agent_argv(cmd, "dev" + std::to_string(idx), idx, dir);
    v.insert(v.end(), {"--price-wei", std::to_string(kPrice)});
    return v;
  }

  // Runs `picopay-agent CMD AMOUNT ...` to its end; returns its exit code and stdout.
  int run_cmd(const std::vector<std::string>& argv, std::string& out, const std::string& log) {
    Child c;
    EXPECT_TRUE(c.start(argv, log, false, true));
    out = read_all(c.stdout_fd());
    return c.wait(180000);
  }

  static bool hub_agrees(const device::AgentState& s) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = hub_status_->find(mqtt::topic_address(s.user));
    return it != hub_status_->end() && hub_status_agrees(it->second, s.channel.state);
  }

  static uint64_t hub_tx(const Address& user) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = hub_status_->find(mqtt::topic_address(user));
    if (it == hub_status_->end()) return 0;
    cJSON* h = cJSON_Parse(it->second.c_str());
    uint64_t t = h ? static_cast<uint64_t>(cJSON_GetObjectItem(h, "txCountGlobal")->valuedouble) : 0;
    cJSON_Delete(h);
    return t;
  }

  static U256 wallet(const std::string& addr) {
    Address a{};
    EXPECT_EQ(address_parse(addr.c_str(), addr.size(), a), Status::Ok);
    auto b = rpc_->balance(a);
    EXPECT_TRUE(b.ok());
    return b.ok() ? *b : U256::zero();
  }

  static chain::OnchainChannel onchain(const Address& user) {
    PrivateKey hk{};
    EXPECT_EQ(private_key_parse(hub_key_.c_str(), hub_key_.size(), hk), Status::Ok);
    chain::Wallet w(*rpc_, hk);
    EXPECT_TRUE(w.init());
    chain::ChannelManagerClient cm(w, cm_addr_);
    auto c = cm.channel(user);
    EXPECT_TRUE(c.ok());
    return c.ok() ? *c : chain::OnchainChannel{};
  }

  static cJSON* result_json(const std::string& out) {
    size_t p = out.rfind("{\"ok\"");
    return p == std::string::npos ? nullptr : cJSON_Parse(out.c_str() + p);
  }

  static std::vector<device::HistoryEntry> history(const std::string& dir) {
    std::vector<device::HistoryEntry> h;
    std::string err;
    EXPECT_TRUE(device::history_load(dir, h, err)) << err;
    return h;
  }

  static size_t count_event(const std::vector<device::HistoryEntry>& h, const std::string& ev) {
    size_t n = 0;
    for (auto& e : h) n += e.event == ev ? 1 : 0;
    return n;
  }

  static constexpr int kKeys = 8;
  static inline mqtt::Client* obs_ = nullptr;
  static inline std::mutex mu_;
  static inline std::map<std::string, std::string>* hub_status_ = new std::map<std::string, std::string>;
  static inline std::vector<mqtt::Message>* hub_replies_ = new std::vector<mqtt::Message>;
};

// A paying device tops up by hand while it runs, then withdraws part of its balance to
// another address without closing the channel; both flows go through the running agent's
// inbox, and the device keeps paying after each.
TEST_F(Flows, TopUpAndWithdrawWhileRunning) {
  const std::string dir = work_ + "/manual";
  auto argv = base_argv("run", 0, dir);
  argv.insert(argv.end(), {"--meter", "stdin", "--deposit-wei", "10000000000000000"});  // 0.01 ETH
  Child a;
  ASSERT_TRUE(a.start(argv, dir + ".log", true));
  for (int k = 0; k <= 10; ++k) write_all(a.stdin_fd(), "wh " + std::to_string(k * 100) + "\n");
  ASSERT_TRUE(poll_until([&] {
    device::AgentState s;
    return load(dir, s) && s.units_paid == 1000;
  }, 60000));
  // Top-up: 0.005 ETH through the running agent.
  std::string out;
  std::vector<std::string> dep = {bin_dir() + "/picopay-agent", "deposit", "5000000000000000", "--state-dir", dir};
  ASSERT_EQ(run_cmd(dep, out, dir + ".deposit.log"), 0) << out;
  cJSON* r = result_json(out);
  ASSERT_NE(r, nullptr) << out;
  EXPECT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
  EXPECT_GT(cJSON_GetObjectItem(r, "gasUsed")->valuedouble, 21000);
  std::printf("[flows] top-up (running agent): gas %.0f, %.0f ms end to end\n",
              cJSON_GetObjectItem(r, "gasUsed")->valuedouble, cJSON_GetObjectItem(r, "elapsedMs")->valuedouble);
  cJSON_Delete(r);
  // Keep paying after the top-up: 1000 Wh more.
  for (int k = 11; k <= 20; ++k) write_all(a.stdin_fd(), "wh " + std::to_string(k * 100) + "\n");
  ASSERT_TRUE(poll_until([&] {
    device::AgentState s;
    return load(dir, s) && s.units_paid == 2000;
  }, 60000));
  // Adversarial input: more than the balance is refused before anything is signed.
  device::AgentState before;
  ASSERT_TRUE(load(dir, before));
  std::vector<std::string> big = {bin_dir() + "/picopay-agent", "withdraw", "100000000000000000", "--state-dir", dir};
  EXPECT_EQ(run_cmd(big, out, dir + ".big.log"), 1) << out;
  device::AgentState after;
  ASSERT_TRUE(load(dir, after));
  EXPECT_EQ(after.channel.state.txCountGlobal, before.channel.state.txCountGlobal);
  EXPECT_EQ(after.channel.state.balanceWeiUser, before.channel.state.balanceWeiUser);
  // Cooperative withdrawal of 0.004 ETH to a fresh address: no close, no challenge period.
  const std::string recipient = key_address(random_key_hex());
  const U256 w0 = wallet(recipient);
  EXPECT_TRUE(w0.is_zero());
  std::vector<std::string> wd = {bin_dir() + "/picopay-agent", "withdraw", "4000000000000000", "--to", recipient,
                                 "--state-dir", dir};
  ASSERT_EQ(run_cmd(wd, out, dir + ".withdraw.log"), 0) << out;
  r = result_json(out);
  ASSERT_NE(r, nullptr) << out;
  std::printf("[flows] withdrawal (running agent): gas %.0f, %.0f ms end to end\n",
              cJSON_GetObjectItem(r, "gasUsed")->valuedouble, cJSON_GetObjectItem(r, "elapsedMs")->valuedouble);
  cJSON_Delete(r);
  EXPECT_EQ(wallet(recipient), dec("4000000000000000"));
  // Keeps paying after the withdrawal.
  for (int k = 21; k <= 25; ++k) write_all(a.stdin_fd(), "wh " + std::to_string(k * 100) + "\n");
  a.close_stdin();
  ASSERT_EQ(a.wait(120000), 0);
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  EXPECT_EQ(s.units_paid, 2500u);
  EXPECT_EQ(s.channel.state.balanceWeiHub, U256::from_u64(2500 * kPrice));
  // 0.01 + 0.005 - 0.004 ETH stays in the channel: hub + user.
  U256 sum{};
  ASSERT_EQ(u256_add(s.channel.state.balanceWeiHub, s.channel.state.balanceWeiUser, sum), Status::Ok);
  EXPECT_EQ(sum, dec("11000000000000000"));
  EXPECT_FALSE(channel_has_pending(s.channel.state));
  auto oc = onchain(s.user);
  EXPECT_EQ(oc.weiTotal, dec("11000000000000000"));
  EXPECT_EQ(oc.status, chain::ChannelStatus::Open);
  EXPECT_TRUE(poll_until([&] { return hub_agrees(s); }, 10000));
  auto h = history(dir);
  EXPECT_EQ(count_event(h, "deposit-confirmed"), 2u);  // the first deposit and the top-up
  EXPECT_EQ(count_event(h, "withdrawal-confirmed"), 1u);
  EXPECT_GE(count_event(h, "payment"), 3u);
  // The history table and its machine forms.
  EXPECT_NE(device::history_format(h, "table").find("withdrawal-confirmed"), std::string::npos);
  // The receipt: the latest double-signed state, verified by anyone with `picopay hash`
  // and `picopay recover` (docs/flows.md): the signers are the device and the hub.
  {
    cJSON* st = cJSON_Parse(device::status_json(s).c_str());
    ASSERT_NE(st, nullptr);
    char* ch = cJSON_PrintUnformatted(cJSON_GetObjectItem(st, "channel"));
    const std::string state = ch;
    const std::string sig_hub = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "channel"), "sigHub")->valuestring;
    const std::string sig_user = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "channel"), "sigUser")->valuestring;
    cJSON_free(ch);
    cJSON_Delete(st);
    Child hc;
    ASSERT_TRUE(hc.start({bin_dir() + "/picopay", "hash", "channel"}, dir + ".hash.log", true, true));
    write_all(hc.stdin_fd(), state);
    hc.close_stdin();
    std::string hash = read_all(hc.stdout_fd());
    ASSERT_EQ(hc.wait(30000), 0);
    while (!hash.empty() && (hash.back() == '\n' || hash.back() == '\r')) hash.pop_back();
    for (const auto& [sig, who] : {std::make_pair(sig_hub, hub_addr_), std::make_pair(sig_user, key_address(keys_[0]))}) {
      Child rc;
      ASSERT_TRUE(rc.start({bin_dir() + "/picopay", "recover", "--hash", hash, "--sig", sig}, dir + ".recover.log", false,
                           true));
      std::string signer = read_all(rc.stdout_fd());
      ASSERT_EQ(rc.wait(30000), 0);
      for (auto& c : signer) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      EXPECT_EQ(signer.substr(0, 42), who);
    }
  }
  std::string csv = device::history_format(h, "csv");
  for (auto& ch : csv) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  EXPECT_NE(csv.find(recipient.substr(2)), std::string::npos);
}

// With no agent running, `deposit` and `withdraw all` connect themselves, carry the
// command out and exit; a second program on the same state dir is refused meanwhile.
TEST_F(Flows, OneShotWhenNoAgentRuns) {
  const std::string dir = work_ + "/oneshot";
  std::string out;
  auto dep = base_argv("deposit", 1, dir);
  dep.insert(dep.begin() + 2, "3000000000000000");
  ASSERT_EQ(run_cmd(dep, out, dir + ".deposit.log"), 0) << out;
  cJSON* r = result_json(out);
  ASSERT_NE(r, nullptr);
  std::printf("[flows] deposit (one-shot, new channel): gas %.0f, %.0f ms end to end\n",
              cJSON_GetObjectItem(r, "gasUsed")->valuedouble, cJSON_GetObjectItem(r, "elapsedMs")->valuedouble);
  cJSON_Delete(r);
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  EXPECT_EQ(s.channel.state.balanceWeiUser, dec("3000000000000000"));
  const std::string me = key_address(keys_[1]);
  const U256 before = wallet(me);
  auto wd = base_argv("withdraw", 1, dir);
  wd.insert(wd.begin() + 2, "all");
  ASSERT_EQ(run_cmd(wd, out, dir + ".withdraw.log"), 0) << out;
  r = result_json(out);
  ASSERT_NE(r, nullptr);
  const double gas = cJSON_GetObjectItem(r, "gasUsed")->valuedouble;
  std::printf("[flows] withdraw all (one-shot): gas %.0f, %.0f ms end to end\n", gas,
              cJSON_GetObjectItem(r, "elapsedMs")->valuedouble);
  cJSON_Delete(r);
  ASSERT_TRUE(load(dir, s));
  EXPECT_TRUE(s.channel.state.balanceWeiUser.is_zero());
  EXPECT_FALSE(channel_has_pending(s.channel.state));
  // The wallet got the 0.003 ETH back minus the gas it paid (gas price > 0 on the dev chain).
  U256 gained{};
  ASSERT_EQ(u256_sub(wallet(me), before, gained), Status::Ok);
  EXPECT_LT(gained, dec("3000000000000000"));
  EXPECT_GT(gained, dec("2000000000000000"));
  EXPECT_TRUE(poll_until([&] { return hub_agrees(s); }, 10000));
  // Nothing to withdraw now: refused, nothing changes.
  ASSERT_EQ(run_cmd(wd, out, dir + ".withdraw2.log"), 1) << out;
  device::AgentState s2;
  ASSERT_TRUE(load(dir, s2));
  EXPECT_EQ(s2.channel.state.txCountGlobal, s.channel.state.txCountGlobal);
}

// A payer configured with a refill threshold keeps paying far beyond its first deposit.
TEST_F(Flows, AutomaticRefillWhilePaying) {
  const std::string dir = work_ + "/refill";
  auto argv = base_argv("run", 2, dir);
  argv.insert(argv.end(), {"--meter", "stdin", "--deposit-wei", "1000000000000000", "--refill-below-wei",
                           "500000000000000", "--refill-wei", "1000000000000000"});
  Child a;
  ASSERT_TRUE(a.start(argv, dir + ".log", true));
  // 3000 Wh = 0.003 ETH with 0.001 ETH deposited: at least two refills.
  for (int k = 0; k <= 60; ++k) {
    write_all(a.stdin_fd(), "wh " + std::to_string(k * 50) + "\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  a.close_stdin();
  ASSERT_EQ(a.wait(180000), 0);
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  EXPECT_EQ(s.units_paid, 3000u);
  EXPECT_EQ(s.channel.state.balanceWeiHub, U256::from_u64(3000 * kPrice));
  auto h = history(dir);
  EXPECT_GE(count_event(h, "deposit-confirmed"), 3u);  // the first deposit and two refills at least
  U256 deposited = U256::zero();
  for (auto& e : h)
    if (e.event == "deposit-confirmed") {
      ASSERT_EQ(u256_add(deposited, e.wei, deposited), Status::Ok);
    }
  U256 sum{};
  ASSERT_EQ(u256_add(s.channel.state.balanceWeiHub, s.channel.state.balanceWeiUser, sum), Status::Ok);
  EXPECT_EQ(sum, deposited);
  EXPECT_EQ(onchain(s.user).weiTotal, deposited);
  EXPECT_TRUE(poll_until([&] { return hub_agrees(s); }, 10000));
}

// Adversarial device: it proposes (correctly signed) to withdraw the hub's balance of its
// channel. The hub refuses (NotRequested), countersigns nothing, and its ledger stays.
TEST_F(Flows, HubRefusesADeviceWithdrawingHubFunds) {
  const std::string dir = work_ + "/thief";
  auto argv = base_argv("run", 3, dir);
  argv.insert(argv.end(), {"--meter", "stdin", "--deposit-wei", "2000000000000000"});
  Child a;
  ASSERT_TRUE(a.start(argv, dir + ".log", true));
  for (int k = 0; k <= 5; ++k) write_all(a.stdin_fd(), "wh " + std::to_string(k * 100) + "\n");
  a.close_stdin();
  ASSERT_EQ(a.wait(120000), 0);
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  ASSERT_FALSE(s.channel.state.balanceWeiHub.is_zero());
  ASSERT_TRUE(poll_until([&] { return hub_agrees(s); }, 10000));
  // The proposal: the hub's whole balance to the device, signed by the device.
  PrivateKey k{};
  ASSERT_EQ(private_key_parse(keys_[3].c_str(), keys_[3].size(), k), Status::Ok);
  Signer sg;
  ASSERT_EQ(sg.init(), Status::Ok);
  ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  u.txCountGlobal = s.channel.state.txCountGlobal + 1;
  u.withdrawal.recipient = s.user;
  u.withdrawal.withdrawalWeiHub = s.channel.state.balanceWeiHub;
  u.withdrawal.withdrawalWeiUser = s.channel.state.balanceWeiUser;
  u.withdrawal.timeout = static_cast<uint64_t>(std::time(nullptr)) + 600;
  ThreadSet ts{};
  ChannelState next{};
  ChannelContext ctx{s.hub};
  ASSERT_EQ(channel_propose(ctx, sg, k, Party::User, s.channel.state, ts, u, next), Status::Ok);
  uint8_t buf[kMaxChannelUpdateWire];
  size_t n = 0;
  ASSERT_EQ(encode_channel_update(u, buf, sizeof buf, &n), Status::Ok);
  std::mutex m;
  std::vector<Reply> replies;
  mqtt::Options o;
  o.port = broker_->port();
  o.client_id = "picopay-" + mqtt::topic_address(s.user);
  o.username = mqtt::topic_address(s.user);
  o.password = pw(3);
  o.clean_start = true;
  mqtt::Client c(o);
  c.on_message([&](const mqtt::Message& msg) {
    Reply r;
    if (decode_reply(msg.payload.data(), msg.payload.size(), r) == Status::Ok) {
      std::lock_guard<std::mutex> l(m);
      replies.push_back(r);
    }
  });
  c.subscribe(mqtt::topic_reply(s.user));
  std::string err;
  ASSERT_TRUE(c.start(err)) << err;
  ASSERT_TRUE(c.wait_connected(10000));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  mqtt::PublishProps props;
  props.response_topic = mqtt::topic_reply(s.user);
  props.correlation = mqtt::correlation_encode(u.txCountGlobal);
  c.publish(mqtt::topic_update(s.hub, s.user), buf, n, 1, false, &props);
  ASSERT_TRUE(poll_until([&] {
    std::lock_guard<std::mutex> l(m);
    for (auto& r : replies)
      if (r.kind == ReplyKind::Nack && r.txCountGlobal == u.txCountGlobal) return true;
    return false;
  }, 20000));
  {
    std::lock_guard<std::mutex> l(m);
    for (auto& r : replies) {
      EXPECT_NE(r.kind, ReplyKind::Ack) << "the hub countersigned a withdrawal of its own funds";
      if (r.kind == ReplyKind::Nack && r.txCountGlobal == u.txCountGlobal) {
        EXPECT_EQ(r.status, Status::NotRequested);
        EXPECT_EQ(r.state.state.txCountGlobal, s.channel.state.txCountGlobal);
        EXPECT_EQ(r.state.state.balanceWeiHub, s.channel.state.balanceWeiHub);
      }
    }
  }
  c.stop();
  EXPECT_TRUE(poll_until([&] { return hub_tx(s.user) == s.channel.state.txCountGlobal; }, 10000));
  // Nothing on chain moved either.
  EXPECT_EQ(onchain(s.user).txCountChain, s.channel.state.txCountChain);
}

// Adversarial hub: a request signed with the hub's key asks the device to withdraw its
// own balance to another address. The device refuses (RequestNack NotRequested) and
// signs nothing; its record and the hub's ledger stay as they were.
TEST_F(Flows, DeviceRefusesAWithdrawalItDidNotAskFor) {
  const std::string dir = work_ + "/victim";
  auto argv = base_argv("run", 4, dir);
  argv.insert(argv.end(), {"--meter", "stdin", "--deposit-wei", "2000000000000000", "--no-exit-on-eof"});
  Child a;
  ASSERT_TRUE(a.start(argv, dir + ".log", true));
  write_all(a.stdin_fd(), "wh 0\nwh 100\n");
  ASSERT_TRUE(poll_until([&] {
    device::AgentState s;
    return load(dir, s) && s.units_paid == 100 && !s.has_pending;
  }, 60000));
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  const std::string attacker = key_address(random_key_hex());
  PrivateKey hk{};
  ASSERT_EQ(private_key_parse(hub_key_.c_str(), hub_key_.size(), hk), Status::Ok);
  Signer sg;
  ASSERT_EQ(sg.init(), Status::Ok);
  HubRequest q{};
  q.contractAddress = cm_addr_;
  q.user = s.user;
  q.requestId = 1000000;  // above anything the real hub used for this channel
  q.update = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  ASSERT_EQ(address_parse(attacker.c_str(), attacker.size(), q.update.withdrawal.recipient), Status::Ok);
  q.update.withdrawal.withdrawalWeiUser = s.channel.state.balanceWeiUser;
  q.update.withdrawal.timeout = static_cast<uint64_t>(std::time(nullptr)) + 600;
  ASSERT_EQ(hub_request_sign(sg, hk, q), Status::Ok);
  uint8_t buf[kMaxHubRequestWire];
  size_t n = 0;
  ASSERT_EQ(encode_hub_request(q, buf, sizeof buf, &n), Status::Ok);
  {
    std::lock_guard<std::mutex> l(mu_);
    hub_replies_->clear();
  }
  obs_->publish(mqtt::topic_request(s.user), buf, n, 1, false);
  ASSERT_TRUE(poll_until([&] {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& msg : *hub_replies_) {
      Reply r;
      if (decode_reply(msg.payload.data(), msg.payload.size(), r) == Status::Ok && r.kind == ReplyKind::RequestNack &&
          r.txCountGlobal == q.requestId)
        return r.status == Status::NotRequested;
    }
    return false;
  }, 20000));
  device::AgentState after;
  ASSERT_TRUE(load(dir, after));
  EXPECT_EQ(after.channel.state.txCountGlobal, s.channel.state.txCountGlobal);
  EXPECT_EQ(after.channel.state.balanceWeiUser, s.channel.state.balanceWeiUser);
  EXPECT_FALSE(after.has_pending);
  EXPECT_TRUE(poll_until([&] { return hub_agrees(after); }, 10000));
  EXPECT_TRUE(wallet(attacker).is_zero());
  a.stop();
}

// A payee asks for collateral (the hub deposits no more than its bound, and ignores a
// request someone else signed), is paid through threads, cashes out automatically above
// its threshold (cooperative withdrawal to another address), and the hub takes its idle
// collateral back. A second hub on its own ChannelManager, with collateral bounds and an
// idle time, so the other tests' channels are not touched.
TEST_F(Flows, PayeeCollateralCashOutAndReclaim) {
  const std::string hub2_key = keys_[7];
  const std::string hub2 = key_address(hub2_key);
  PrivateKey hk{};
  ASSERT_EQ(private_key_parse(hub2_key.c_str(), hub2_key.size(), hk), Status::Ok);
  chain::Wallet w(*rpc_, hk);
  ASSERT_TRUE(w.init());
  auto art = chain::load_artifact(chain::default_artifact_dir() + "/ChannelManager.json");
  ASSERT_TRUE(art.ok());
  auto addr = chain::deploy_channel_manager(w, *art, w.address(), 60, Address{});
  ASSERT_TRUE(addr.ok());
  const std::string contract2 = mqtt::topic_address(*addr);
  chain::ChannelManagerClient cm(w, *addr);
  ASSERT_TRUE(cm.fund_reserve(dec("10000000000000000000")).ok());
  Child h2;
  const std::string hub2_log = work_ + "/hub2.log";
  ASSERT_TRUE(h2.start({bin_dir() + "/picopay-hub", "--broker-port", std::to_string(broker_->port()), "--broker-user",
                        "hub2", "--broker-password", "hub2pw", "--private-key", hub2_key, "--contract", contract2,
                        "--rpc-url", chain_->url(), "--db", work_ + "/hub2.db", "--collateral-wei", "1000000000000000",
                        "--collateral-max-wei", "4000000000000000", "--collateral-idle", "15", "--reserve-warn-wei",
                        "20000000000000000000", "--verbose"},
                       hub2_log));
  auto argv_for = [&](int idx, const std::string& dir) {
    return std::vector<std::string>{bin_dir() + "/picopay-agent", "run", "--name", "dev" + std::to_string(idx),
                                    "--state-dir", dir, "--broker", "127.0.0.1:" + std::to_string(broker_->port()),
                                    "--password", pw(idx), "--hub", hub2, "--contract", contract2, "--key",
                                    keys_[static_cast<size_t>(idx)], "--rpc", chain_->url(), "--price-wei",
                                    std::to_string(kPrice)};
  };
  // The payee: expects far more than the hub's bound; cashes out above 0.002 ETH.
  const std::string pdir = work_ + "/payee";
  const std::string recipient = key_address(random_key_hex());
  auto pargv = argv_for(5, pdir);
  pargv.insert(pargv.end(), {"--role", "payee", "--meter", "none", "--expect-income-wei", "100000000000000000000",
                             "--cash-out-above-wei", "2000000000000000", "--cash-out-to", recipient});
  Child payee;
  ASSERT_TRUE(payee.start(pargv, pdir + ".log", true));
  // The hub deposits its bound (0.004 ETH), not the 100 ETH asked for.
  device::AgentState ps;
  ASSERT_TRUE(poll_until([&] {
    return load(pdir, ps) && ps.channel.state.balanceWeiHub == dec("4000000000000000") &&
           !channel_has_pending(ps.channel.state);
  }, 60000)) << read_text(hub2_log);
  // A collateral request someone else signed, for this payee: ignored.
  {
    Signer sg;
    ASSERT_EQ(sg.init(), Status::Ok);
    PrivateKey other{};
    const std::string ok = random_key_hex();
    ASSERT_EQ(private_key_parse(ok.c_str(), ok.size(), other), Status::Ok);
    Address payee_addr{}, hub2_addr{};
    const std::string pa = key_address(keys_[5]);
    ASSERT_EQ(address_parse(pa.c_str(), pa.size(), payee_addr), Status::Ok);
    ASSERT_EQ(address_parse(hub2.c_str(), hub2.size(), hub2_addr), Status::Ok);
    const std::string forged = agent::collateral_request_make(sg, other, *addr, payee_addr,
                                                              dec("3000000000000000"),
                                                              static_cast<uint64_t>(std::time(nullptr)));
    obs_->publish(mqtt::topic_collateral(hub2_addr, payee_addr), forged, 1, false);
  }
  ASSERT_TRUE(poll_until([&] { return read_text(hub2_log).find("not signed by the channel's user") != std::string::npos; },
                         20000));
  EXPECT_NE(read_text(hub2_log).find("hub reserve low"), std::string::npos);
  EXPECT_NE(read_text(hub2_log).find("picopay deposit --rpc"), std::string::npos);
  // The payer pays 2500 Wh (0.0025 ETH) to the payee through a thread.
  const std::string ydir = work_ + "/payer2";
  auto yargv = argv_for(6, ydir);
  yargv.insert(yargv.end(), {"--meter", "stdin", "--deposit-wei", "10000000000000000", "--pay-to",
                             key_address(keys_[5]), "--thread-lock-wei", "3000000000000000"});
  Child payer;
  ASSERT_TRUE(payer.start(yargv, ydir + ".log", true));
  for (int k = 0; k <= 25; ++k) write_all(payer.stdin_fd(), "wh " + std::to_string(k * 100) + "\n");
  payer.close_stdin();
  ASSERT_EQ(payer.wait(120000), 0) << read_text(ydir + ".log");
  // The payee cashed out what it received, to the recipient, without closing.
  ASSERT_TRUE(poll_until([&] { return wallet(recipient) == dec("2500000000000000"); }, 60000)) << read_text(pdir + ".log");
  // Idle: the hub takes its remaining collateral back to its reserve.
  ASSERT_TRUE(poll_until([&] {
    return load(pdir, ps) && ps.channel.state.balanceWeiHub.is_zero() && !channel_has_pending(ps.channel.state);
  }, 60000)) << read_text(hub2_log);
  EXPECT_TRUE(ps.channel.state.balanceWeiUser.is_zero());
  auto oc2 = cm.channel(ps.user);
  ASSERT_TRUE(oc2.ok());
  EXPECT_TRUE(oc2->weiTotal.is_zero());
  EXPECT_EQ(oc2->status, chain::ChannelStatus::Open);
  auto h = history(pdir);
  EXPECT_EQ(count_event(h, "collateral"), 1u);
  EXPECT_EQ(count_event(h, "withdrawal-confirmed"), 1u);
  EXPECT_EQ(count_event(h, "collateral-reclaimed"), 1u);
  EXPECT_GE(count_event(h, "thread-received"), 1u);
  // The hub's history of the payee's channel shows the same flows, with times.
  std::string out;
  Child hist;
  ASSERT_TRUE(hist.start({bin_dir() + "/picopay-hub", "history", "--user", mqtt::topic_address(ps.user), "--db", work_ + "/hub2.db", "--json"},
                         work_ + "/hub2-history.log", false, true));
  out = read_all(hist.stdout_fd());
  ASSERT_EQ(hist.wait(30000), 0);
  EXPECT_NE(out.find("\"collateral\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"thread-settled\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"withdrawal-confirmed\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"collateral-reclaimed\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"counterpartyTotalWei\":\t\"2500000000000000\""), std::string::npos) << out;
  // Gas of the hub's chain steps, for docs/flows.md.
  const std::string log = read_text(hub2_log);
  for (const char* what : {"collateral deposit for", "collateral withdrawal for"}) {
    size_t p = log.find(what);
    if (p == std::string::npos) continue;
    size_t g = log.find("(gas ", p);
    std::printf("[flows] hub %s: %s\n", what, log.substr(g, log.find(')', g) - g + 1).c_str());
  }
  payee.stop();
  h2.stop();
}

}  // namespace
