// The money flows of docs/flows.md in the ERC-20 token, and the flows that came after
// them, end to end: a test token and a ChannelManager with it on the real dev chain, a
// real mosquitto (a password per client, an ACL), the real picopay-hub and picopay-agent.
//
//  - token top-up and cooperative withdrawal through a running agent's command inbox;
//    an amount in another unit and one above the balance are refused, nothing changes;
//  - a device proposing to withdraw the hub's tokens (the hub refuses), a hub request
//    (signed with the hub's key) asking a device to withdraw its tokens to an attacker
//    (the device refuses);
//  - a token payee's automatic cash-out and the hub taking its idle token collateral back;
//  - collateral sized from the payee's recent flow (not from what it expects);
//  - withdraw-owed: a withdrawal whose recipient refuses the tokens is credited by the
//    contract (owedTokens) and collected with `picopay-agent withdraw-owed --to`;
//  - exchange as a command to a running agent, the hub's rate reloaded from its rate file
//    (SIGHUP or a change of the file), and the user's tolerance refusing the new rate;
//  - the payee switching its meter off (Tasmota cmnd/<topic>/POWER) while the payer is
//    behind, and on again once it caught up (a fake meter on the broker).
//
// No timing assertions: every wait is a bounded poll. Gas and times are printed
// ("[measure] ...") for the table in docs/flows.md.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <cjson/cJSON.h>

#include "picopay/agent/collateral_request.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/chain/abi.hpp"
#include "picopay/chain/tx.hpp"
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

const char* kPPT = "1000000000000000000";  // 1 PPT (18 decimals)

class TokenFlows : public E2ESuite<TokenFlows> {
 protected:
  static void SetUpTestSuite() {
    std::string err;
    E2EOptions eo;
    eo.name = "token-flows";
    eo.devices = kKeys;
    eo.token = true;
    ASSERT_TRUE(start_chain(eo, err)) << err;
    // Every device holds 10 PPT; the hub's token reserve is 100 PPT, its wei reserve 20 ETH.
    for (auto& k : keys_) ASSERT_TRUE(net_->mint(parse_addr(key_address(k)), ppt(10), err)) << err;
    ASSERT_TRUE(net_->mint(cm_addr_, ppt(100), err)) << err;
    ASSERT_TRUE(net_->fund_reserve(dec("20000000000000000000"), err)) << err;
    // "test" plays the fake meter (cmnd/# and tele/#) and the adversary that got hold of
    // the hub's key (it may publish hub requests).
    std::string acl = "user test\ntopic read picopay/v1/#\ntopic write picopay/v1/user/+/request\n"
                      "topic write picopay/v1/hub/+/channel/+/collateral\ntopic write picopay/v1/payee/+/prices\n"
                      "topic readwrite cmnd/#\ntopic readwrite tele/#\n\n";
    // A payee may switch its own meter (here every device may switch plug-<anything>).
    acl += "pattern read tele/#\npattern write cmnd/+/POWER\n";
    ASSERT_TRUE(start_broker({}, acl, err)) << err;
    rate_file_ = work_ + "/rate";
    write_rate("200");
    start_hub({});
    obs_ = new mqtt::Client(net_->observer_options("picopay-token-flows-test"));
    obs_->on_message([](const mqtt::Message& m) {
      std::lock_guard<std::mutex> l(mu_);
      const std::string p(m.payload.begin(), m.payload.end());
      if (m.topic.find("/status/0x") != std::string::npos)
        (*hub_status_)[m.topic.substr(m.topic.size() - 42)] = p;
      else if (m.topic.rfind("cmnd/", 0) == 0)
        switch_log_->push_back(m.topic + " " + p);
      else if (m.topic.size() > 6 && m.topic.compare(m.topic.size() - 6, 6, "/reply") == 0 &&
               m.topic.find("/channel/") != std::string::npos)
        hub_replies_->push_back(m);
    });
    obs_->subscribe("picopay/v1/hub/+/status/+");
    obs_->subscribe("picopay/v1/hub/+/channel/+/reply");
    obs_->subscribe("cmnd/#");
    ASSERT_TRUE(obs_->start(err)) << err;
    ASSERT_TRUE(obs_->wait_connected(10000));
  }

  static void TearDownTestSuite() {
    if (obs_) obs_->stop();
    delete obs_;
    stop_net();
  }

  // The rate file: written by the hub's own account, mode 0644.
  static void write_rate(const std::string& text) {
    const std::string tmp = rate_file_ + ".tmp";
    {
      std::ofstream f(tmp);
      f << text << "\n";
    }
    ::chmod(tmp.c_str(), 0644);
    ASSERT_EQ(::rename(tmp.c_str(), rate_file_.c_str()), 0);
  }

  // (Re)starts the hub on the same store with `extra` arguments.
  static void start_hub(const std::vector<std::string>& extra) {
    if (hub_->running()) hub_->stop();
    const std::string log = net_->hub_log();
    const size_t before = read_text(log).size();
    auto argv = net_->hub_argv({"--collateral-tokens", kPPT, "--exchange-rate-file", rate_file_, "--verbose"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_TRUE(hub_->start(argv, log));
    ASSERT_TRUE(poll_until([&] { return read_text(log).find("connected to broker", before) != std::string::npos; }, 30000));
  }

  static std::string addr(int idx) { return key_address(keys_[static_cast<size_t>(idx)]); }
  static std::string pw(int idx) { return device_password(keys_[static_cast<size_t>(idx)]); }

  // picopay-agent CMD with the options of device `idx` (token channel unless eth).
  std::vector<std::string> argv_for(const std::string& cmd, int idx, const std::string& dir, bool eth = false) {
    auto v = net_->agent_argv(cmd, "tf" + std::to_string(idx), idx, dir);
    if (!eth) {
      v.push_back("--token");
      v.push_back(mqtt::topic_address(token_));
    }
    return v;
  }

  // Runs a command to its end; its exit code, stdout in `out`.
  static int run_cmd(const std::vector<std::string>& argv, std::string& out, const std::string& log) {
    Child c;
    EXPECT_TRUE(c.start(argv, log, false, true));
    out = read_all(c.stdout_fd());
    return c.wait(180000);
  }

  // `picopay-agent OP AMOUNT [extra] --state-dir DIR` against the agent running on DIR.
  static int inbox_cmd(const std::string& op, const std::string& amount, const std::string& dir, std::string& out,
                       const std::vector<std::string>& extra = {}) {
    std::vector<std::string> v = {bin_dir() + "/picopay-agent", op, amount};
    v.insert(v.end(), extra.begin(), extra.end());
    v.push_back("--state-dir");
    v.push_back(dir);
    static int n = 0;
    return run_cmd(v, out, dir + "." + op + std::to_string(++n) + ".log");
  }

  static cJSON* result_json(const std::string& out) {
    size_t p = out.rfind("{\"ok\"");
    return p == std::string::npos ? nullptr : cJSON_Parse(out.c_str() + p);
  }

  static void print_result(const std::string& what, const std::string& out) {
    cJSON* r = result_json(out);
    if (!r) return;
    const cJSON* g = cJSON_GetObjectItem(r, "gasUsed");
    const cJSON* e = cJSON_GetObjectItem(r, "elapsedMs");
    std::printf("[measure] %s: gas %.0f, %.0f ms end to end\n", what.c_str(), cJSON_IsNumber(g) ? g->valuedouble : 0.0,
                cJSON_IsNumber(e) ? e->valuedouble : 0.0);
    cJSON_Delete(r);
  }

  // The gas of the hub's first "<what> for <user> on chain: ... (gas N)" log line from
  // byte `from` of its log (0 if none).
  static unsigned long long hub_gas(size_t from, const std::string& what, const std::string& user) {
    const std::string log = read_text(work_ + "/hub.log");
    std::string u = user;
    for (auto& c : u) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (size_t p = log.find(what + " for ", from); p != std::string::npos; p = log.find(what + " for ", p + 1)) {
      std::string line = log.substr(p, log.find('\n', p) - p);
      std::string low = line;
      for (auto& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      const size_t g = line.find("(gas ");
      if (low.find(u) != std::string::npos && g != std::string::npos) return std::stoull(line.substr(g + 5));
    }
    return 0;
  }

  static double since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }

  static U256 tokens_of(const std::string& who) {
    auto b = chain::erc20_balance(*rpc_, token_, parse_addr(who));
    EXPECT_TRUE(b.ok());
    return b.ok() ? *b : U256::zero();
  }

  static chain::OnchainChannel onchain(const std::string& user) {
    chain::ChannelManagerClient cm(*hub_wallet_, cm_addr_);
    auto c = cm.channel(parse_addr(user));
    EXPECT_TRUE(c.ok());
    return c.ok() ? *c : chain::OnchainChannel{};
  }

  static std::vector<device::HistoryEntry> history(const std::string& dir) {
    std::vector<device::HistoryEntry> h;
    std::string err;
    EXPECT_TRUE(device::history_load(dir, h, err)) << err;
    return h;
  }

  static size_t count_event(const std::vector<device::HistoryEntry>& h, const std::string& ev, U256* total = nullptr) {
    size_t n = 0;
    if (total) *total = U256::zero();
    for (auto& e : h)
      if (e.event == ev) {
        ++n;
        if (total) *total = add(*total, e.wei);
      }
    return n;
  }

  // The hub's retained status of a channel agrees with the device's record (tokens).
  static bool hub_agrees(const device::AgentState& s) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = hub_status_->find(mqtt::topic_address(s.user));
    return it != hub_status_->end() && hub_status_agrees(it->second, s.channel.state, true);
  }

  // A token device paying the hub 0.001 PPT per Wh from stdin, `deposit` at start; runs
  // until the test closes its stdin.
  void start_payer(Child& a, int idx, const std::string& dir, const std::string& deposit,
                   const std::vector<std::string>& extra = {}) {
    auto argv = argv_for("run", idx, dir);
    for (std::string x : {"--meter", "stdin", "--price", "0.001 PPT", "--deposit"}) argv.push_back(x);
    argv.push_back(deposit);
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_TRUE(a.start(argv, dir + ".log", true));
  }

  static void meter(Child& a, uint64_t wh) { write_all(a.stdin_fd(), "wh " + std::to_string(wh) + "\n"); }

  static bool paid_until(const std::string& dir, uint64_t units) {
    return poll_until([&] {
      device::AgentState s;
      return load(dir, s) && s.units_paid == units && !s.has_pending && !channel_has_pending(s.channel.state);
    }, 60000);
  }

  static constexpr int kKeys = 14;
  static inline std::string rate_file_;
  static inline mqtt::Client* obs_ = nullptr;
  static inline std::mutex mu_;
  static inline std::map<std::string, std::string>* hub_status_ = new std::map<std::string, std::string>;
  static inline std::vector<mqtt::Message>* hub_replies_ = new std::vector<mqtt::Message>;
  static inline std::vector<std::string>* switch_log_ = new std::vector<std::string>;
};

// Top-up and cooperative withdrawal in tokens through the running agent's inbox, while it
// pays: `deposit "1 PPT"` (approve + userAuthorizedUpdate), `withdraw "0.5 PPT" --to R`
// (the contract transfers the tokens to R). An amount in ETH for this PPT channel and a
// withdrawal above the balance are refused: nothing is signed, nothing stored changes.
TEST_F(TokenFlows, TopUpAndWithdrawTokensWhileRunning) {
  const std::string dir = work_ + "/manual";
  const std::string me = addr(0);
  Child a;
  start_payer(a, 0, dir, "2 PPT");
  for (uint64_t wh = 0; wh <= 300; wh += 100) meter(a, wh);
  ASSERT_TRUE(paid_until(dir, 300)) << read_text(dir + ".log");
  std::string out;
  ASSERT_EQ(inbox_cmd("deposit", "1 PPT", dir, out), 0) << out << read_text(dir + ".log");
  cJSON* r = result_json(out);
  ASSERT_NE(r, nullptr) << out;
  EXPECT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")));
  EXPECT_STREQ(cJSON_GetObjectItem(r, "asset")->valuestring, "PPT");
  EXPECT_STREQ(cJSON_GetObjectItem(r, "amount")->valuestring, "1 PPT");
  EXPECT_STREQ(cJSON_GetObjectItem(r, "wei")->valuestring, kPPT);
  cJSON_Delete(r);
  print_result("token top-up (running agent; approve not included)", out);
  EXPECT_EQ(tokens_of(me), ppt(7));  // 10 - 2 - 1
  EXPECT_EQ(onchain(me).tokenTotal, ppt(3));
  EXPECT_TRUE(onchain(me).weiTotal.is_zero());
  // Pays on after the top-up.
  for (uint64_t wh = 400; wh <= 600; wh += 100) meter(a, wh);
  ASSERT_TRUE(paid_until(dir, 600));
  // Adversarial input: another unit, more than the balance. Refused, nothing changes.
  device::AgentState before;
  ASSERT_TRUE(load(dir, before));
  EXPECT_EQ(inbox_cmd("deposit", "0.01 ETH", dir, out), 1) << out;
  EXPECT_NE(out.find("ETH"), std::string::npos) << out;
  EXPECT_EQ(inbox_cmd("withdraw", "100 PPT", dir, out), 1) << out;
  EXPECT_NE(out.find("less than 100 PPT"), std::string::npos) << out;
  device::AgentState after;
  ASSERT_TRUE(load(dir, after));
  EXPECT_EQ(after.channel.state, before.channel.state);
  EXPECT_EQ(tokens_of(me), ppt(7));
  // 0.5 PPT to a fresh address, no close, no challenge period.
  const std::string recipient = key_address(random_key_hex());
  ASSERT_EQ(inbox_cmd("withdraw", "0.5 PPT", dir, out, {"--to", recipient}), 0) << out << read_text(dir + ".log");
  print_result("token withdrawal to another address (running agent)", out);
  EXPECT_EQ(tokens_of(recipient), dec("500000000000000000"));
  EXPECT_EQ(tokens_of(me), ppt(7));
  for (uint64_t wh = 700; wh <= 800; wh += 100) meter(a, wh);
  a.close_stdin();
  ASSERT_EQ(a.wait(120000), 0) << read_text(dir + ".log");
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  EXPECT_EQ(s.units_paid, 800u);
  const ChannelState& c = s.channel.state;
  EXPECT_EQ(c.balanceTokenHub, dec("800000000000000000"));  // 800 Wh at 0.001 PPT
  EXPECT_EQ(add(c.balanceTokenHub, c.balanceTokenUser), dec("2500000000000000000"));  // 2 + 1 - 0.5
  EXPECT_TRUE(c.balanceWeiHub.is_zero() && c.balanceWeiUser.is_zero());
  EXPECT_FALSE(channel_has_pending(c));
  auto oc = onchain(me);
  EXPECT_EQ(oc.tokenTotal, dec("2500000000000000000"));
  EXPECT_EQ(oc.status, chain::ChannelStatus::Open);
  EXPECT_TRUE(poll_until([&] { return hub_agrees(s); }, 10000));
  // The history counts the token amounts.
  auto h = history(dir);
  U256 dep{}, wd{};
  EXPECT_EQ(count_event(h, "deposit-confirmed", &dep), 2u);
  EXPECT_EQ(dep, ppt(3));
  EXPECT_EQ(count_event(h, "withdrawal-confirmed", &wd), 1u);
  EXPECT_EQ(wd, dec("500000000000000000"));
  // The hub's history names the flows the same way (a token deposit is not collateral).
  std::string hist;
  ASSERT_EQ(run_cmd({bin_dir() + "/picopay-hub", "history", "--user", me, "--db", work_ + "/hub.db", "--json"}, hist,
                    dir + ".hubhistory.log"),
            0);
  EXPECT_NE(hist.find("\"deposit-confirmed\""), std::string::npos) << hist;
  EXPECT_NE(hist.find("\"withdrawal-confirmed\""), std::string::npos) << hist;
  EXPECT_EQ(hist.find("\"collateral"), std::string::npos) << hist;
}

// Adversarial device: it proposes (signed) to withdraw the hub's tokens in its channel.
// The hub refuses (NotRequested), countersigns nothing, its ledger stays.
TEST_F(TokenFlows, HubRefusesADeviceWithdrawingHubTokens) {
  const std::string dir = work_ + "/thief";
  Child a;
  start_payer(a, 1, dir, "1 PPT");
  for (uint64_t wh = 0; wh <= 200; wh += 100) meter(a, wh);
  a.close_stdin();
  ASSERT_EQ(a.wait(120000), 0) << read_text(dir + ".log");
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  ASSERT_FALSE(s.channel.state.balanceTokenHub.is_zero());
  ASSERT_TRUE(poll_until([&] { return hub_agrees(s); }, 10000));
  PrivateKey k{};
  ASSERT_EQ(private_key_parse(keys_[1].c_str(), keys_[1].size(), k), Status::Ok);
  Signer sg;
  ASSERT_EQ(sg.init(), Status::Ok);
  ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  u.txCountGlobal = s.channel.state.txCountGlobal + 1;
  u.withdrawal.recipient = s.user;
  u.withdrawal.withdrawalTokenHub = s.channel.state.balanceTokenHub;
  u.withdrawal.withdrawalTokenUser = s.channel.state.balanceTokenUser;
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
  o.password = pw(1);
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
      EXPECT_NE(r.kind, ReplyKind::Ack) << "the hub countersigned a withdrawal of its own tokens";
      if (r.kind == ReplyKind::Nack && r.txCountGlobal == u.txCountGlobal) {
        EXPECT_EQ(r.status, Status::NotRequested);
        EXPECT_EQ(r.state.state.balanceTokenHub, s.channel.state.balanceTokenHub);
      }
    }
  }
  c.stop();
  EXPECT_TRUE(poll_until([&] { return hub_agrees(s); }, 10000));
  EXPECT_EQ(onchain(addr(1)).txCountChain, s.channel.state.txCountChain);
}

// Adversarial hub: a request signed with the hub's key asks the device to withdraw its
// own tokens to an attacker. The device refuses (RequestNack NotRequested), signs
// nothing; its record and the hub's ledger stay; the attacker gets nothing.
TEST_F(TokenFlows, DeviceRefusesATokenWithdrawalItDidNotAskFor) {
  const std::string dir = work_ + "/victim";
  Child a;
  start_payer(a, 2, dir, "1 PPT", {"--no-exit-on-eof"});
  meter(a, 0);
  meter(a, 100);
  ASSERT_TRUE(paid_until(dir, 100)) << read_text(dir + ".log");
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
  q.requestId = 1000000;
  q.update = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  q.update.withdrawal.recipient = parse_addr(attacker);
  q.update.withdrawal.withdrawalTokenUser = s.channel.state.balanceTokenUser;
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
  EXPECT_EQ(after.channel.state, s.channel.state);
  EXPECT_FALSE(after.has_pending);
  EXPECT_TRUE(poll_until([&] { return hub_agrees(after); }, 10000));
  EXPECT_TRUE(tokens_of(attacker).is_zero());
  a.stop();
}

// A token payee is paid through a thread (the hub mirrors it with token collateral from
// its token reserve), cashes out automatically above its threshold to another address,
// and the hub takes its idle token collateral back to the reserve.
TEST_F(TokenFlows, TokenPayeeCashOutAndIdleCollateralReclaim) {
  start_hub({"--collateral-idle", "10"});
  chain::ChannelManagerClient cm(*hub_wallet_, cm_addr_);
  auto reserve0 = cm.hub_reserve_tokens();
  ASSERT_TRUE(reserve0.ok());
  const std::string pdir = work_ + "/payee";
  const std::string recipient = key_address(random_key_hex());
  auto pargv = argv_for("run", 3, pdir);
  // cash out above 0.1 PPT (token base units, as every *-wei key in a token channel)
  for (std::string x : {"--role", "payee", "--meter", "none", "--cash-out-above-wei", "100000000000000000",
                        "--cash-out-to"})
    pargv.push_back(x);
  pargv.push_back(recipient);
  Child payee;
  ASSERT_TRUE(payee.start(pargv, pdir + ".log"));
  ASSERT_TRUE(poll_until([&] {
    device::AgentState s;
    return load(pdir, s);
  }, 30000));
  const std::string ydir = work_ + "/payer";
  auto yargv = argv_for("run", 4, ydir);
  for (std::string x : {"--meter", "stdin", "--price", "0.001 PPT", "--deposit", "2 PPT", "--thread-lock", "0.5 PPT",
                        "--pay-to"})
    yargv.push_back(x);
  yargv.push_back(addr(3));
  Child payer;
  ASSERT_TRUE(payer.start(yargv, ydir + ".log", true));
  for (uint64_t wh = 0; wh <= 300; wh += 10) meter(payer, wh);
  payer.close_stdin();
  ASSERT_EQ(payer.wait(180000), 0) << read_text(ydir + ".log");
  // 300 Wh at 0.001 PPT: 0.3 PPT, cashed out to the recipient.
  ASSERT_TRUE(poll_until([&] { return tokens_of(recipient) == dec("300000000000000000"); }, 90000))
      << read_text(pdir + ".log");
  const auto cashed = std::chrono::steady_clock::now();
  // Idle: the hub's token balance in the payee's channel goes back to its reserve.
  device::AgentState ps;
  ASSERT_TRUE(poll_until([&] {
    return load(pdir, ps) && ps.channel.state.balanceTokenHub.is_zero() && !channel_has_pending(ps.channel.state) &&
           !ps.has_pending;
  }, 90000)) << read_text(work_ + "/hub.log");
  std::printf("[measure] hub token collateral reclaim: idle 10 s, then %.0f ms until the payee stored the "
              "ConfirmPending (poll granularity)\n", since(cashed) - 10000);
  EXPECT_TRUE(ps.channel.state.balanceTokenUser.is_zero());
  auto oc = onchain(addr(3));
  EXPECT_TRUE(oc.tokenTotal.is_zero());
  EXPECT_EQ(oc.status, chain::ChannelStatus::Open);
  // The reserve lost exactly what the hub paid the payee; the payer's channel holds it as
  // the hub's balance (0.3 PPT).
  auto reserve1 = cm.hub_reserve_tokens();
  ASSERT_TRUE(reserve1.ok());
  EXPECT_EQ(sub(*reserve0, *reserve1), dec("300000000000000000"));
  device::AgentState ys;
  ASSERT_TRUE(load(ydir, ys));
  EXPECT_EQ(ys.channel.state.balanceTokenHub, dec("300000000000000000"));
  auto h = history(pdir);
  U256 coll{}, back{}, out{};
  EXPECT_GE(count_event(h, "collateral", &coll), 1u);
  EXPECT_EQ(count_event(h, "withdrawal-confirmed", &out), 1u);
  EXPECT_EQ(out, dec("300000000000000000"));
  // (twice if the hub found the channel idle while the thread was still open)
  EXPECT_GE(count_event(h, "collateral-reclaimed", &back), 1u);
  EXPECT_EQ(add(back, out), coll);  // everything the hub put in came out: to the payee or back
  std::printf("[measure] hub token collateral deposit (hubAuthorizedUpdate): gas %llu\n",
              hub_gas(0, "collateral deposit", addr(3)));
  std::printf("[measure] hub token collateral reclaim (hubAuthorizedUpdate): gas %llu\n",
              hub_gas(0, "collateral withdrawal", addr(3)));
  payee.stop();
  start_hub({});
}

// Collateral sized from recent flow: a payee that expects next to nothing (1 wei) but was
// paid 0.005 ETH through threads in the flow window gets a deposit that brings the hub's
// balance in its channel to that flow (not to what it said it expects, and not to the
// hub's minimum deposit).
TEST_F(TokenFlows, CollateralIsSizedFromRecentFlow) {
  const std::string pdir = work_ + "/flowpayee";
  auto pargv = argv_for("run", 5, pdir, true);
  for (std::string x : {"--role", "payee", "--meter", "none"}) pargv.push_back(x);
  Child payee;
  ASSERT_TRUE(payee.start(pargv, pdir + ".log"));
  ASSERT_TRUE(poll_until([&] {
    device::AgentState s;
    return load(pdir, s);
  }, 30000));
  const std::string ydir = work_ + "/flowpayer";
  auto yargv = argv_for("run", 6, ydir, true);
  for (std::string x : {"--meter", "stdin", "--price", "0.00001 ETH", "--deposit", "0.02 ETH", "--thread-lock",
                        "0.006 ETH", "--pay-to"})
    yargv.push_back(x);
  yargv.push_back(addr(5));
  Child payer;
  ASSERT_TRUE(payer.start(yargv, ydir + ".log", true));
  for (uint64_t wh = 0; wh <= 500; wh += 50) meter(payer, wh);  // 500 Wh: 0.005 ETH
  payer.close_stdin();
  ASSERT_EQ(payer.wait(180000), 0) << read_text(ydir + ".log");
  device::AgentState ps;
  ASSERT_TRUE(poll_until([&] {
    return load(pdir, ps) && ps.channel.state.balanceWeiUser == dec("5000000000000000") &&
           ps.channel.state.threadCount == 0 && !channel_has_pending(ps.channel.state);
  }, 60000)) << read_text(pdir + ".log");
  const U256 held = ps.channel.state.balanceWeiHub;
  ASSERT_LT(held, dec("5000000000000000"));  // the mirror's collateral was used up by the payments
  // The payee's signed request for 1 wei (the test holds the payee's key; the payee agent
  // would send the same with --expect-income-wei 1).
  Signer sg;
  ASSERT_EQ(sg.init(), Status::Ok);
  PrivateKey pk{};
  ASSERT_EQ(private_key_parse(keys_[5].c_str(), keys_[5].size(), pk), Status::Ok);
  const size_t hub_before = read_text(work_ + "/hub.log").size();
  const std::string req = agent::collateral_request_make(sg, pk, cm_addr_, ps.user, U256::from_u64(1),
                                                         static_cast<uint64_t>(std::time(nullptr)));
  const auto t0 = std::chrono::steady_clock::now();
  obs_->publish(mqtt::topic_collateral(parse_addr(hub_addr_), ps.user), req, 1, false);
  ASSERT_TRUE(poll_until([&] {
    return load(pdir, ps) && ps.channel.state.balanceWeiHub == dec("5000000000000000") &&
           !channel_has_pending(ps.channel.state);
  }, 60000)) << read_text(work_ + "/hub.log").substr(hub_before);
  std::printf("[measure] hub ETH collateral deposit sized from flow (request to ConfirmPending): gas %llu, %.0f ms\n",
              hub_gas(hub_before, "collateral deposit", addr(5)), since(t0));
  EXPECT_NE(read_text(work_ + "/hub.log").find("(recent flow 5000000000000000)", hub_before), std::string::npos);
  payee.stop();
}

// withdraw-owed end to end. What makes tokens (or wei) owed in this contract: a payout
// the recipient refuses (docs/chain.md "pull payments"); the contract credits it instead
// of reverting. Here the channel's token blocks the device's address (as USDT's blacklist
// does), the device withdraws 1 PNR to itself: the withdrawal completes, the tokens are
// credited to owedTokens. `withdraw-owed` to itself is refused (the credit stays),
// another address's `withdraw-owed` finds nothing (the credit stays), `withdraw-owed
// --to OTHER` collects exactly the credit.
TEST_F(TokenFlows, WithdrawOwedCollectsARefusedWithdrawal) {
  // A ChannelManager in the no-return, blocking token, and its own hub.
  auto tart = chain::load_artifact(chain::default_artifact_dir() + "/NoReturnToken.json");
  ASSERT_TRUE(tart.ok()) << tart.error().to_string();
  const std::string hub2_key = keys_[13];
  PrivateKey hk{};
  ASSERT_EQ(private_key_parse(hub2_key.c_str(), hub2_key.size(), hk), Status::Ok);
  chain::Wallet hw(*rpc_, hk);
  ASSERT_TRUE(hw.init());
  auto pnr = chain::deploy_artifact(hw, *tart, {});
  ASSERT_TRUE(pnr.ok()) << pnr.error().to_string();
  auto art = chain::load_artifact(chain::default_artifact_dir() + "/ChannelManager.json");
  ASSERT_TRUE(art.ok());
  auto cm2 = chain::deploy_channel_manager(hw, *art, hw.address(), 60, *pnr);
  ASSERT_TRUE(cm2.ok()) << cm2.error().to_string();
  const std::string me = addr(8);
  ASSERT_TRUE(chain::erc20_mint(hw, *pnr, parse_addr(me), ppt(10)).ok());
  Child h2;
  const std::string h2log = work_ + "/hub-owed.log";
  ASSERT_TRUE(h2.start({bin_dir() + "/picopay-hub", "--broker-port", std::to_string(broker_->port()), "--broker-user",
                        "hub", "--broker-password", "hubpw", "--private-key", hub2_key, "--contract",
                        mqtt::topic_address(*cm2), "--rpc-url", chain_->url(), "--db", work_ + "/hub-owed.db"},
                       h2log));
  ASSERT_TRUE(poll_until([&] { return read_text(h2log).find("connected to broker") != std::string::npos; }, 30000));
  const std::string dir = work_ + "/owed";
  std::vector<std::string> common = {"--rpc", chain_->url(), "--contract", mqtt::topic_address(*cm2)};
  std::vector<std::string> argv = {bin_dir() + "/picopay-agent", "run", "--name", "owed", "--state-dir", dir,
                                   "--broker", "127.0.0.1:" + std::to_string(broker_->port()), "--password", pw(8),
                                   "--hub", key_address(hub2_key), "--key", keys_[8], "--token",
                                   mqtt::topic_address(*pnr), "--meter", "stdin", "--price", "0.001 PNR", "--deposit",
                                   "2 PNR"};
  argv.insert(argv.end(), common.begin(), common.end());
  Child a;
  ASSERT_TRUE(a.start(argv, dir + ".log", true));
  meter(a, 0);
  meter(a, 100);
  ASSERT_TRUE(paid_until(dir, 100)) << read_text(dir + ".log");
  EXPECT_EQ(chain::erc20_balance(*rpc_, *pnr, parse_addr(me)).value(), ppt(8));
  // The token refuses transfers to the device from now on.
  chain::TxRequest block;
  block.has_to = true;
  block.to = *pnr;
  block.data = chain::AbiEncoder().address(parse_addr(me)).boolean(true).finish(chain::selector("setBlocked(address,bool)"));
  ASSERT_TRUE(hw.send(block).ok());
  std::string out;
  ASSERT_EQ(inbox_cmd("withdraw", "1 PNR", dir, out), 0) << out << read_text(dir + ".log");
  chain::ChannelManagerClient cm(hw, *cm2);
  EXPECT_EQ(cm.owed_tokens(parse_addr(me)).value(), ppt(1));
  EXPECT_EQ(chain::erc20_balance(*rpc_, *pnr, parse_addr(me)).value(), ppt(8));  // nothing arrived
  a.close_stdin();
  ASSERT_EQ(a.wait(120000), 0) << read_text(dir + ".log");
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  EXPECT_EQ(add(s.channel.state.balanceTokenUser, s.channel.state.balanceTokenHub), ppt(1));  // 2 - 1
  EXPECT_FALSE(channel_has_pending(s.channel.state));
  auto key_args = [&](int idx) {
    std::vector<std::string> v = {bin_dir() + "/picopay-agent", "withdraw-owed", "--key", keys_[static_cast<size_t>(idx)]};
    v.insert(v.end(), common.begin(), common.end());
    return v;
  };
  // To itself: the token still refuses; the credit stays.
  EXPECT_EQ(run_cmd(key_args(8), out, dir + ".owed1.log"), 1) << out;
  EXPECT_NE(read_text(dir + ".owed1.log").find("the credit stays"), std::string::npos) << read_text(dir + ".owed1.log");
  EXPECT_EQ(cm.owed_tokens(parse_addr(me)).value(), ppt(1));
  // Someone else asks: nothing is owed to it, the device's credit stays.
  ASSERT_EQ(run_cmd(key_args(9), out, dir + ".owed2.log"), 0) << out;
  EXPECT_NE(out.find("nothing owed"), std::string::npos) << out;
  EXPECT_EQ(cm.owed_tokens(parse_addr(me)).value(), ppt(1));
  // To another address of the device's choice: exactly the credit.
  const std::string other = key_address(random_key_hex());
  auto to_other = key_args(8);
  to_other.push_back("--to");
  to_other.push_back(other);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_cmd(to_other, out, dir + ".owed3.log"), 0) << out << read_text(dir + ".owed3.log");
  const double owed_ms = since(t0);
  EXPECT_NE(out.find("\"owedTokens\":\"1000000000000000000\""), std::string::npos) << out;
  EXPECT_EQ(chain::erc20_balance(*rpc_, *pnr, parse_addr(other)).value(), ppt(1));
  EXPECT_TRUE(cm.owed_tokens(parse_addr(me)).value().is_zero());
  cJSON* r = result_json(out);
  ASSERT_NE(r, nullptr);
  std::printf("[measure] withdraw-owed (withdrawOwedTo, tokens; the program's whole run): gas %.0f, %.0f ms\n",
              cJSON_GetObjectItem(r, "gasUsed")->valuedouble, owed_ms);
  cJSON_Delete(r);
  h2.stop();
}

// Exchange as a command to the running agent, at the hub's rate; the hub's rate is
// reloaded from its rate file without a restart (SIGHUP, then a plain change of the
// file); a new rate outside the user's tolerance (reference 200 +- 1 %) is refused by
// the user: nothing signed, nothing stored changes; the next rate inside it is taken.
TEST_F(TokenFlows, ExchangeCommandAndReloadedRate) {
  write_rate("200");
  start_hub({});
  const std::string dir = work_ + "/exchange";
  auto argv = argv_for("run", 7, dir, true);
  for (std::string x : {"--meter", "stdin", "--price", "0.00001 ETH", "--deposit", "0.01 ETH + 5 PPT",
                        "--exchange-reference-rate", "200", "--exchange-max-deviation-bps", "100"})
    argv.push_back(x);
  Child a;
  ASSERT_TRUE(a.start(argv, dir + ".log", true));
  for (uint64_t wh = 0; wh <= 400; wh += 50) meter(a, wh);  // 0.004 ETH to the hub: its wei inventory
  ASSERT_TRUE(paid_until(dir, 400)) << read_text(dir + ".log");
  std::string out;
  ASSERT_EQ(inbox_cmd("exchange", "0.2 PPT", dir, out), 0) << out << read_text(dir + ".log");
  print_result("exchange (command to the running agent, off chain)", out);
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  EXPECT_EQ(s.channel.state.balanceTokenUser, dec("4800000000000000000"));
  EXPECT_EQ(s.channel.state.balanceTokenHub, dec("200000000000000000"));
  EXPECT_EQ(s.channel.state.balanceWeiHub, dec("3000000000000000"));  // 0.004 paid - 0.001 bought back
  // The hub's new rate, by SIGHUP: 250, outside the device's tolerance.
  const std::string hub_log = work_ + "/hub.log";
  size_t hb = read_text(hub_log).size();
  write_rate("250");
  ASSERT_EQ(::kill(hub_->pid(), SIGHUP), 0);
  ASSERT_TRUE(poll_until([&] { return read_text(hub_log).find("exchange rate reloaded", hb) != std::string::npos; },
                         20000));
  ASSERT_TRUE(poll_until([&] { return read_text(dir + ".log").find("(250 token base units per wei") != std::string::npos; },
                         20000)) << read_text(dir + ".log");
  device::AgentState before;
  ASSERT_TRUE(load(dir, before));
  EXPECT_EQ(inbox_cmd("exchange", "0.25 PPT", dir, out), 1) << out;
  EXPECT_NE(out.find("deviates from the reference 200"), std::string::npos) << out;
  device::AgentState after;
  ASSERT_TRUE(load(dir, after));
  EXPECT_EQ(after.channel.state, before.channel.state);
  // A bad rate file changes nothing: the hub keeps 250 and says why.
  hb = read_text(hub_log).size();
  write_rate("two hundred");
  ASSERT_EQ(::kill(hub_->pid(), SIGHUP), 0);
  ASSERT_TRUE(poll_until([&] { return read_text(hub_log).find("the rate stays 250", hb) != std::string::npos; }, 20000));
  // A rate file others may write (anyone could set the hub's price): refused, stays 250.
  hb = read_text(hub_log).size();
  write_rate("1");
  ASSERT_EQ(::chmod(rate_file_.c_str(), 0666), 0);
  ASSERT_EQ(::kill(hub_->pid(), SIGHUP), 0);
  ASSERT_TRUE(poll_until([&] { return read_text(hub_log).find("not be writable by group or others", hb) != std::string::npos; },
                         20000));
  EXPECT_NE(read_text(hub_log).find("the rate stays 250", hb), std::string::npos);
  EXPECT_EQ(read_text(hub_log).find("exchange rate reloaded", hb), std::string::npos);
  // 201 by a plain change of the file (no signal): inside the tolerance, taken.
  hb = read_text(hub_log).size();
  write_rate("201");
  ASSERT_TRUE(poll_until([&] { return read_text(hub_log).find("exchange rate reloaded", hb) != std::string::npos; },
                         20000));
  ASSERT_TRUE(poll_until([&] { return read_text(dir + ".log").find("(201 token base units per wei") != std::string::npos; },
                         20000));
  ASSERT_EQ(inbox_cmd("exchange", "0.201 PPT", dir, out), 0) << out << read_text(dir + ".log");
  a.close_stdin();
  ASSERT_EQ(a.wait(120000), 0) << read_text(dir + ".log");
  ASSERT_TRUE(load(dir, s));
  EXPECT_EQ(s.channel.state.balanceTokenUser, dec("4599000000000000000"));  // 5 - 0.2 - 0.201
  EXPECT_EQ(s.channel.state.balanceWeiHub, dec("2000000000000000"));        // 0.201 PPT / 201 = 0.001 ETH
  write_rate("200");
}

// The payee's "stop serving" is an action: its meter (Tasmota, here a fake one on the
// broker) delivers 60 Wh nobody pays for (margin 10): the payee publishes
// cmnd/<topic>/POWER OFF; once a payer paid for what was delivered, POWER ON.
TEST_F(TokenFlows, ThePayeeSwitchesItsMeterOffWhileThePayerIsBehind) {
  const std::string pdir = work_ + "/seller";
  auto pargv = argv_for("run", 10, pdir);
  for (std::string x : {"--role", "payee", "--meter", "tasmota:tele/plug10/SENSOR", "--sell-price", "0.002 PPT",
                        "--serve-margin", "10", "--serve-switch", "tasmota:plug10"})
    pargv.push_back(x);
  Child payee;
  ASSERT_TRUE(payee.start(pargv, pdir + ".log"));
  ASSERT_TRUE(poll_until([&] { return read_text(pdir + ".log").find("price list published") != std::string::npos; },
                         30000)) << read_text(pdir + ".log");
  auto reading = [&](const char* kwh) {
    obs_->publish("tele/plug10/SENSOR", std::string("{\"ENERGY\":{\"Total\":") + kwh + "}}", 1, false);
  };
  auto switched = [&](const std::string& what) {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& m : *switch_log_)
      if (m == what) return true;
    return false;
  };
  reading("0.000");
  ASSERT_TRUE(poll_until([&] {
    device::AgentState p;
    return load(pdir, p) && p.meter.has_last;
  }, 30000)) << read_text(pdir + ".log");
  reading("0.060");  // 60 Wh delivered, nothing paid
  ASSERT_TRUE(poll_until([&] { return switched("cmnd/plug10/POWER OFF"); }, 30000)) << read_text(pdir + ".log");
  EXPECT_FALSE(switched("cmnd/plug10/POWER ON"));
  // A payer pays 100 Wh by the payee's list: caught up, the payee switches on again.
  const std::string ydir = work_ + "/switchpayer";
  auto yargv = argv_for("run", 11, ydir);
  for (std::string x : {"--meter", "stdin", "--max-price", "0.003 PPT", "--deposit", "1 PPT", "--thread-lock", "0.5 PPT",
                        "--pay-to"})
    yargv.push_back(x);
  yargv.push_back(addr(10));
  Child payer;
  ASSERT_TRUE(payer.start(yargv, ydir + ".log", true));
  for (uint64_t wh = 0; wh <= 100; wh += 10) meter(payer, wh);
  payer.close_stdin();
  ASSERT_EQ(payer.wait(180000), 0) << read_text(ydir + ".log");
  ASSERT_TRUE(poll_until([&] { return switched("cmnd/plug10/POWER ON"); }, 30000)) << read_text(pdir + ".log");
  EXPECT_NE(read_text(pdir + ".log").find("stopped serving"), std::string::npos);
  EXPECT_NE(read_text(pdir + ".log").find("serving again"), std::string::npos);
  payee.stop();
}

}  // namespace
