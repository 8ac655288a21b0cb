// ERC-20 channels end to end (docs/tokens.md): a test token and a ChannelManager deployed
// with it on the real dev chain, a real mosquitto, the real picopay-hub and picopay-agent
// processes. Devices deposit tokens (approve + userAuthorizedUpdate), pay the hub and a
// payee (threads) priced in token units, the hub deposits token collateral from its token
// reserve. An agent configured with another token, or with a price in another unit, is
// refused before anything is stored or sent. No timing assertions: every wait is a
// bounded poll; gas and times are printed for docs/tokens.md.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "picopay/agent/json_state.hpp"
#include "picopay/agent/quotes.hpp"
#include "picopay/agent/units.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/token.hpp"
#include "picopay/demo/support.hpp"
#include "picopay/device/state.hpp"
#include "picopay/hex.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/policy.hpp"
#include "sim_device.hpp"

#include "support/e2e.hpp"
#include "support/wait.hpp"

using namespace picopay;
using namespace picopay::testsupport;
using namespace picopay::demo;

namespace {

U256 mul(const U256& a, uint64_t b) {
  U256 r{};
  EXPECT_EQ(u256_mul(a, U256::from_u64(b), r), Status::Ok);
  return r;
}

const U256 kUnit = dec("1000000000000000000");  // 1 PPT (18 decimals)
const U256 kPrice = dec("1000000000000000");    // 0.001 PPT per Wh
const U256 kDeposit = dec("2500000000000000000");  // 2.5 PPT

class TokenE2E : public E2ESuite<TokenE2E> {
 protected:
  static void SetUpTestSuite() {
    std::string err;
    E2EOptions eo;
    eo.name = "token-test";
    eo.devices = kKeys;
    eo.funded = {key_hex(testsupport::test_key(kSimKey))};
    eo.token = true;
    ASSERT_TRUE(start_chain(eo, err)) << err;
    auto tart = chain::load_artifact(chain::default_artifact_dir() + "/TestToken.json");
    ASSERT_TRUE(tart.ok()) << tart.error().to_string();
    auto other = chain::deploy_artifact(*hub_wallet_, *tart, {});
    ASSERT_TRUE(other.ok());
    other_token_ = *other;
    // Every device holds 10 PPT; the hub's token reserve (tokens the contract holds
    // beyond the channels) is 100 PPT.
    for (auto& k : keys_) ASSERT_TRUE(net_->mint(parse_addr(key_address(k)), mul(kUnit, 10), err)) << err;
    ASSERT_TRUE(net_->mint(cm_addr_, mul(kUnit, 100), err)) << err;
    {
      Signer sg;
      ASSERT_EQ(sg.init(), Status::Ok);
      Address sim{};
      ASSERT_EQ(sg.address_of(testsupport::test_key(kSimKey), sim), Status::Ok);
      ASSERT_TRUE(net_->mint(sim, mul(kUnit, 10), err)) << err;
      sim_addr_ = mqtt::topic_address(sim);
    }
    ASSERT_TRUE(start_broker({{sim_addr_, "pw-sim"}}, "user test\ntopic readwrite picopay/v1/#\n", err)) << err;
    start_hub({});
    obs_ = new mqtt::Client(net_->observer_options("picopay-token-test"));
    ASSERT_TRUE(obs_->start(err)) << err;
    ASSERT_TRUE(obs_->wait_connected(10000));
  }

  // (Re)starts the hub on the same store with `extra` arguments (an exchange rate).
  static void start_hub(const std::vector<std::string>& extra) {
    if (hub_->running()) hub_->stop();
    const std::string log = net_->hub_log();
    const size_t before = read_text(log).size();
    auto argv = net_->hub_argv({"--collateral-tokens", "1000000000000000000"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_TRUE(hub_->start(argv, log));
    // Connected (and its rate published or cleared) before a device starts.
    ASSERT_TRUE(poll_until([&] { return read_text(log).find("connected to broker", before) != std::string::npos; }, 30000));
  }

  static std::string now_text(int64_t delta = 0) {
    return std::to_string(static_cast<int64_t>(std::time(nullptr)) + delta);
  }

  static void TearDownTestSuite() {
    if (obs_) obs_->stop();
    delete obs_;
    stop_net();
  }

  static std::string addr(int idx) { return key_address(keys_[static_cast<size_t>(idx)]); }

  std::vector<std::string> agent_argv(int idx, const std::string& dir) {
    auto v = net_->agent_argv("", "tok" + std::to_string(idx), idx, dir);
    v.insert(v.end(), {"--token", mqtt::topic_address(token_)});
    return v;
  }

  static U256 token_balance(int idx) {
    Address a{};
    EXPECT_EQ(address_parse(addr(idx).c_str(), 42, a), Status::Ok);
    auto b = chain::erc20_balance(*rpc_, token_, a);
    EXPECT_TRUE(b.ok());
    return b.ok() ? *b : U256::zero();
  }

  // Gas of the deposits an agent logged (for docs/tokens.md; no assertion).
  static void print_gas(const std::string& what, const std::string& log, const std::string& marker = "deposit on chain: ") {
    std::string text = read_text(log);
    size_t p = 0;
    while ((p = text.find(marker + "0x", p)) != std::string::npos) {
      Hash32 h{};
      p += marker.size();
      std::string hex = text.substr(p, 66);
      if (hex_decode_0x(hex.c_str(), hex.size(), h.bytes, 32) != Status::Ok) continue;
      auto r = rpc_->receipt(h);
      if (r.ok()) std::printf("[gas] %s: %llu\n", what.c_str(),
                              static_cast<unsigned long long>(r->gasUsed));
    }
  }

  static constexpr int kKeys = 16;  // one channel per test
  static constexpr uint32_t kSimKey = 4242;  // testsupport::test_key index of the withdrawal test's device
  static inline std::string sim_addr_;
  static inline Address other_token_{};
  static inline mqtt::Client* obs_ = nullptr;

  // An ETH device with 0.01 ETH and 5 PPT in its channel that pays the hub 0.00001 ETH
  // per Wh for `wh` Wh and asks to sell `sell` at the hub's rate; returns its exit code.
  int run_exchanger(int idx, const std::string& dir, const std::string& sell, int wh,
                    const std::vector<std::string>& extra = {}) {
    auto argv = agent_argv(idx, dir);
    argv.pop_back();
    argv.pop_back();  // no --token: pays in ETH
    for (std::string x : {"--meter", "stdin", "--price", "0.00001 ETH", "--deposit", "0.01 ETH + 5 PPT", "--exchange"})
      argv.push_back(x);
    argv.push_back(sell);
    argv.insert(argv.end(), extra.begin(), extra.end());
    Child a;
    if (!a.start(argv, dir + ".log", true)) return -1;
    for (int k = 0; k <= wh / 5; ++k) write_all(a.stdin_fd(), "wh " + std::to_string(k * 5) + "\n");
    a.close_stdin();
    return a.wait(180000);
  }

  // A token payer that pays the payee `payee_idx` by its signed price list (maximum
  // 0.003 PPT per Wh), metering `wh` Wh; returns its exit code.
  int run_list_payer(int idx, const std::string& dir, int payee_idx, int wh) {
    auto argv = agent_argv(idx, dir);
    for (std::string x : {"--meter", "stdin", "--max-price", "0.003 PPT", "--deposit", "2.5 PPT", "--thread-lock", "0.5 PPT",
                          "--pay-to"})
      argv.push_back(x);
    argv.push_back(addr(payee_idx));
    Child a;
    if (!a.start(argv, dir + ".log", true)) return -1;
    for (int k = 0; k <= wh / 5; ++k) write_all(a.stdin_fd(), "wh " + std::to_string(k * 5) + "\n");
    a.close_stdin();
    return a.wait(180000);
  }

  // Publishes a price list for payee `idx` signed by `key` (the payee's own, or a forger's).
  static void publish_list(int idx, const std::string& key, const char* price, int64_t from, int64_t until) {
    Signer sg;
    ASSERT_EQ(sg.init(), Status::Ok);
    PrivateKey k{};
    ASSERT_EQ(private_key_parse(key.c_str(), key.size(), k), Status::Ok);
    quotes::PriceList l;
    l.contract = cm_addr_;
    ASSERT_EQ(address_parse(addr(idx).c_str(), 42, l.payee), Status::Ok);
    l.token = true;
    l.tokenAddress = token_;
    const int64_t now = static_cast<int64_t>(std::time(nullptr));
    l.validFrom = static_cast<uint64_t>(now + from);
    l.validUntil = static_cast<uint64_t>(now + until);
    l.prices.push_back(quotes::Price{"energy", "Wh", dec(price)});
    std::string payload;
    ASSERT_TRUE(quotes::prices_sign(l, sg, k, payload));
    ASSERT_TRUE(obs_->publish(mqtt::topic_payee_prices(l.payee), payload, 1, true));
  }

  // Nothing paid, nothing locked: the deposit is whole, no thread was opened.
  static void expect_nothing_paid(const std::string& dir) {
    device::AgentState s;
    ASSERT_TRUE(load(dir, s));
    EXPECT_EQ(s.units_paid, 0u);
    EXPECT_EQ(s.channel.state.balanceTokenUser, kDeposit);
    EXPECT_EQ(s.channel.state.threadCount, 0u);
    EXPECT_TRUE(s.threads.empty());
  }

  // What must hold when no exchange happened: the tokens are all the device's, the wei
  // moved only by the payments.
  static void expect_no_exchange(const std::string& dir, int wh) {
    device::AgentState s;
    ASSERT_TRUE(load(dir, s));
    const ChannelState& c = s.channel.state;
    EXPECT_EQ(c.balanceTokenUser, mul(kUnit, 5));
    EXPECT_TRUE(c.balanceTokenHub.is_zero());
    EXPECT_EQ(c.balanceWeiHub, mul(dec("10000000000000"), static_cast<uint64_t>(wh)));
    EXPECT_FALSE(s.has_pending);
  }
};

TEST_F(TokenE2E, ChannelAssetIsReadFromTheChain) {
  auto a = chain::channel_asset(*rpc_, cm_addr_, &token_);
  ASSERT_TRUE(a.ok()) << a.error().to_string();
  EXPECT_TRUE(a->token);
  EXPECT_EQ(a->symbol, "PPT");
  EXPECT_EQ(a->decimals, 18u);
  EXPECT_EQ(units::format(kDeposit, *a), "2.5 PPT");
  auto wrong = chain::channel_asset(*rpc_, cm_addr_, &other_token_);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().message.find("is not the token of ChannelManager"), std::string::npos);
  auto e = chain::channel_asset(*rpc_, cm_addr_, nullptr);
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->token);
  EXPECT_EQ(e->symbol, "ETH");
}

// Pays the hub directly in tokens: deposit 2.5 PPT (approve + userAuthorizedUpdate),
// 150 Wh at 0.001 PPT.
TEST_F(TokenE2E, DepositAndPayTheHubInTokens) {
  const std::string dir = work_ + "/direct";
  const U256 before = token_balance(0);
  auto argv = agent_argv(0, dir);
  for (std::string x : {"--meter", "stdin", "--price", "0.001 PPT", "--deposit", "2.5 PPT"}) argv.push_back(x);
  Child a;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(a.start(argv, dir + ".log", true));
  for (int k = 0; k <= 30; ++k) write_all(a.stdin_fd(), "wh " + std::to_string(k * 5) + "\n");
  a.close_stdin();
  ASSERT_EQ(a.wait(120000), 0) << read_text(dir + ".log");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  EXPECT_EQ(s.units_paid, 150u);
  EXPECT_EQ(s.wei_paid, mul(kPrice, 150));
  const ChannelState& c = s.channel.state;
  EXPECT_EQ(c.balanceTokenHub, mul(kPrice, 150));
  U256 sum{};
  ASSERT_EQ(u256_add(c.balanceTokenHub, c.balanceTokenUser, sum), Status::Ok);
  EXPECT_EQ(sum, kDeposit);  // conserved
  EXPECT_TRUE(c.balanceWeiHub.is_zero() && c.balanceWeiUser.is_zero());
  // On chain: exactly the deposit left the device's token account into its channel.
  U256 spent{};
  ASSERT_EQ(u256_sub(before, token_balance(0), spent), Status::Ok);
  EXPECT_EQ(spent, kDeposit);
  chain::ChannelManagerClient cm(*hub_wallet_, cm_addr_);
  Address user{};
  ASSERT_EQ(address_parse(addr(0).c_str(), 42, user), Status::Ok);
  auto on = cm.channel(user);
  ASSERT_TRUE(on.ok());
  EXPECT_EQ(on->tokenTotal, kDeposit);
  EXPECT_TRUE(on->weiTotal.is_zero());
  // The agent reports in the token's units.
  EXPECT_NE(read_text(dir + ".log").find("paying in PPT"), std::string::npos);
  print_gas("userAuthorizedUpdate (token deposit, direct payer)", dir + ".log");
  print_gas("ERC-20 approve (before the deposit)", dir + ".log", "PPT on chain: ");
  std::printf("[time] token deposit + 30 payments to the hub, agent start to exit: %.2f s\n", secs);
}

// Thread payments to a payee in tokens; the hub mirrors them with token collateral from
// its token reserve (hubAuthorizedUpdate), and closes them into both channels.
TEST_F(TokenE2E, ThreadPaymentsToAPayeeInTokens) {
  const std::string pdir = work_ + "/payee";
  auto pargv = agent_argv(1, pdir);
  for (std::string x : {"--role", "payee", "--meter", "none"}) pargv.push_back(x);
  Child payee;
  ASSERT_TRUE(payee.start(pargv, pdir + ".log"));
  ASSERT_TRUE(poll_until([&] {
    device::AgentState s;
    return load(pdir, s);
  }, 30000));
  chain::ChannelManagerClient cm(*hub_wallet_, cm_addr_);
  auto reserve0 = cm.hub_reserve_tokens();
  ASSERT_TRUE(reserve0.ok());
  const std::string dir = work_ + "/threadpayer";
  auto argv = agent_argv(2, dir);
  const std::string payee_hex = addr(1);
  for (std::string x : {std::string("--meter"), std::string("stdin"), std::string("--price"), std::string("0.001 PPT"),
                        std::string("--deposit"), std::string("2.5 PPT"), std::string("--pay-to"), payee_hex,
                        std::string("--thread-lock"), std::string("0.5 PPT")})
    argv.push_back(x);
  Child a;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(a.start(argv, dir + ".log", true));
  for (int k = 0; k <= 40; ++k) write_all(a.stdin_fd(), "wh " + std::to_string(k * 5) + "\n");
  a.close_stdin();
  ASSERT_EQ(a.wait(180000), 0) << read_text(dir + ".log");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  EXPECT_EQ(s.units_paid, 200u);
  const ChannelState& c = s.channel.state;
  EXPECT_EQ(c.threadCount, 0u);  // closed
  EXPECT_EQ(c.balanceTokenHub, mul(kPrice, 200));
  EXPECT_TRUE(c.balanceWeiHub.is_zero() && c.balanceWeiUser.is_zero());
  for (const auto& t : s.threads) {
    EXPECT_TRUE(t.latest.state.balanceWeiSender.is_zero() && t.latest.state.balanceWeiReceiver.is_zero());
    EXPECT_FALSE(t.initial.state.balanceTokenSender.is_zero());
  }
  // The payee received exactly what the payer paid, in tokens, in its own channel.
  EXPECT_TRUE(poll_until([&] {
    device::AgentState p;
    return load(pdir, p) && p.channel.state.balanceTokenUser == mul(kPrice, 200) && p.channel.state.threadCount == 0;
  }, 60000)) << read_text(pdir + ".log");
  device::AgentState p;
  ASSERT_TRUE(load(pdir, p));
  EXPECT_TRUE(p.channel.state.balanceWeiUser.is_zero());
  // The hub's token collateral came from its token reserve.
  auto reserve1 = cm.hub_reserve_tokens();
  ASSERT_TRUE(reserve1.ok());
  EXPECT_LT(*reserve1, *reserve0);
  Address payee_addr{};
  ASSERT_EQ(address_parse(addr(1).c_str(), 42, payee_addr), Status::Ok);
  auto on = cm.channel(payee_addr);
  ASSERT_TRUE(on.ok());
  EXPECT_FALSE(on->tokenHub.is_zero());
  EXPECT_TRUE(on->weiTotal.is_zero());
  payee.stop();
  print_gas("userAuthorizedUpdate (token deposit, thread payer)", dir + ".log");
  print_gas("hubAuthorizedUpdate (hub token collateral)", work_ + "/hub.log", " on chain: ");
  std::printf("[time] token deposit + thread open + 40 thread payments + close, agent start to exit: %.2f s\n", secs);
}

// An agent told a token that is not the ChannelManager's approvedToken() stops before it
// stores or sends anything (a price in the wrong unit would otherwise be paid).
TEST_F(TokenE2E, AnotherTokenIsRefusedAndNothingIsStored) {
  const std::string dir = work_ + "/wrongtoken";
  auto argv = agent_argv(3, dir);
  argv.back() = mqtt::topic_address(other_token_);
  for (std::string x : {"--meter", "stdin", "--price", "0.001 PPT", "--deposit", "2.5 PPT"}) argv.push_back(x);
  Child a;
  ASSERT_TRUE(a.start(argv, dir + ".log", true));
  a.close_stdin();
  EXPECT_EQ(a.wait(60000), 2);
  EXPECT_NE(read_text(dir + ".log").find("is not the token of ChannelManager"), std::string::npos);
  device::AgentState s;
  EXPECT_FALSE(load(dir, s));
  EXPECT_EQ(token_balance(3), mul(kUnit, 10));  // nothing approved or deposited
}

// A price written in ETH for a token channel is refused, not taken as tokens.
TEST_F(TokenE2E, PriceInAnotherUnitIsRefusedAndNothingIsStored) {
  for (const char* price : {"0.001 ETH", "0.0000000000000000001 PPT", "1.5"}) {
    const std::string dir = work_ + "/wrongunit" + std::to_string(std::strlen(price));
    auto argv = agent_argv(4, dir);
    for (std::string x : {"--meter", "stdin", "--price", price, "--deposit", "2.5 PPT"}) argv.push_back(x);
    Child a;
    ASSERT_TRUE(a.start(argv, dir + ".log", true));
    a.close_stdin();
    EXPECT_EQ(a.wait(60000), 2) << price;
    EXPECT_NE(read_text(dir + ".log").find("price: amount"), std::string::npos) << read_text(dir + ".log");
    device::AgentState s;
    EXPECT_FALSE(load(dir, s)) << price;
  }
  EXPECT_EQ(token_balance(4), mul(kUnit, 10));
}

}  // namespace

namespace {

// A device sells 0.2 PPT + 100 base units at the hub's signed rate: it gets
// floor(tokens / 200) wei, the 100 base units that buy no whole wei stay its own
// (Connext v1's rule, exchange_amounts); the hub countersigns, both ledgers agree.
TEST_F(TokenE2E, ExchangeAtTheHubsPublishedRate) {
  start_hub({"--exchange-rate", "200"});
  const std::string dir = work_ + "/exchange";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_exchanger(5, dir, "0.2000000000000001 PPT", 150), 0) << read_text(dir + ".log");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  const ChannelState& c = s.channel.state;
  const U256 sold = dec("200000000000000000");  // 0.2 PPT: 100 base units stay with the seller
  U256 tok_user{}, wei_user{}, wei_hub{};
  ASSERT_EQ(u256_sub(mul(kUnit, 5), sold, tok_user), Status::Ok);
  EXPECT_EQ(c.balanceTokenUser, tok_user);
  EXPECT_EQ(c.balanceTokenHub, sold);
  const U256 bought = dec("1000000000000000");  // 0.2 PPT / 200 = 0.001 ETH
  const U256 paid = mul(dec("10000000000000"), 150);
  ASSERT_EQ(u256_sub(paid, bought, wei_hub), Status::Ok);
  EXPECT_EQ(c.balanceWeiHub, wei_hub);
  U256 t{};
  ASSERT_EQ(u256_sub(dec("10000000000000000"), paid, t), Status::Ok);
  ASSERT_EQ(u256_add(t, bought, wei_user), Status::Ok);
  EXPECT_EQ(c.balanceWeiUser, wei_user);
  const std::string log = read_text(dir + ".log");
  EXPECT_NE(log.find("stay ours"), std::string::npos);
  EXPECT_NE(log.find("exchange double-signed"), std::string::npos);
  std::printf("[time] ETH + token deposit, 30 payments and an exchange, agent start to exit: %.2f s\n", secs);
}

// The hub's rate is older than the device accepts (set 2 h ago, the device takes 1 h):
// refused, nothing signed (the hub itself would still countersign it: 24 h).
TEST_F(TokenE2E, ExchangeRefusesAStaleRate) {
  start_hub({"--exchange-rate", "200", "--exchange-rate-time", now_text(-7200)});
  const std::string dir = work_ + "/stale";
  ASSERT_EQ(run_exchanger(6, dir, "0.2 PPT", 150, {"--exchange-max-age", "3600"}), 1) << read_text(dir + ".log");
  EXPECT_NE(read_text(dir + ".log").find("exchange refused: stale rate"), std::string::npos) << read_text(dir + ".log");
  expect_no_exchange(dir, 150);
}

// The hub's rate deviates from the device's reference by more than its tolerance.
TEST_F(TokenE2E, ExchangeRefusesARateOutsideTheTolerance) {
  start_hub({"--exchange-rate", "200"});
  const std::string dir = work_ + "/tolerance";
  ASSERT_EQ(run_exchanger(7, dir, "0.2 PPT", 150,
                          {"--exchange-reference-rate", "190", "--exchange-max-deviation-bps", "200"}),
            1)
      << read_text(dir + ".log");
  EXPECT_NE(read_text(dir + ".log").find("deviates from the reference 190"), std::string::npos);
  expect_no_exchange(dir, 150);
}

// A rate on the hub's topic that the hub did not sign (the broker, or anyone who may
// write there, forges it): ignored; with no signed rate the exchange is refused.
TEST_F(TokenE2E, ExchangeIgnoresAForgedRate) {
  start_hub({});  // no exchange rate: the hub clears its retained rate
  Signer sg;
  ASSERT_EQ(sg.init(), Status::Ok);
  PrivateKey evil{};
  const std::string ek = random_key_hex();
  ASSERT_EQ(private_key_parse(ek.c_str(), ek.size(), evil), Status::Ok);
  quotes::Rate r;
  r.contract = cm_addr_;
  ASSERT_EQ(address_parse(hub_addr_.c_str(), hub_addr_.size(), r.hub), Status::Ok);
  r.tokensPerWei = U256::from_u64(100000);  // a "bargain"
  r.time = static_cast<uint64_t>(std::time(nullptr));
  std::string payload;
  ASSERT_TRUE(quotes::rate_sign(r, sg, evil, payload));
  ASSERT_TRUE(obs_->publish(mqtt::topic_hub_rate(r.hub), payload, 1, true));
  // The hub cleared its retained rate when it connected; that clear may reach the broker
  // after the forgery (two clients, no order between them): the forger keeps publishing
  // while the exchanger runs, as an attacker would.
  std::atomic<bool> forging{true};
  std::thread forger([&] {
    while (forging) {
      obs_->publish(mqtt::topic_hub_rate(r.hub), payload, 1, true);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  const std::string dir = work_ + "/forged";
  const int rc = run_exchanger(8, dir, "0.2 PPT", 150);
  forging = false;
  forger.join();
  ASSERT_EQ(rc, 1) << read_text(dir + ".log");
  const std::string log = read_text(dir + ".log");
  EXPECT_NE(log.find("hub rate ignored: not signed by"), std::string::npos) << log;
  EXPECT_NE(log.find("exchange refused: no rate signed by the hub"), std::string::npos) << log;
  expect_no_exchange(dir, 150);
  obs_->publish(mqtt::topic_hub_rate(r.hub), std::string(), 1, true);
}

// The hub countersigns an Exchange only at the rate it publishes: a rate signed with the
// hub's key but not the one the hub runs with (an old or leaked quote, 190 while the hub
// offers 200) is proposed by the device and refused by the hub; nothing is exchanged and
// the device's and the hub's stored states agree.
TEST_F(TokenE2E, TheHubRefusesARateOtherThanItsOwn) {
  start_hub({"--exchange-rate", "200"});
  Signer sg;
  ASSERT_EQ(sg.init(), Status::Ok);
  PrivateKey hk{};
  ASSERT_EQ(private_key_parse(hub_key_.c_str(), hub_key_.size(), hk), Status::Ok);
  quotes::Rate r;
  r.contract = cm_addr_;
  ASSERT_EQ(address_parse(hub_addr_.c_str(), hub_addr_.size(), r.hub), Status::Ok);
  r.tokensPerWei = U256::from_u64(190);
  r.time = static_cast<uint64_t>(std::time(nullptr)) + 30;  // newer than the hub's own
  std::string payload;
  ASSERT_TRUE(quotes::rate_sign(r, sg, hk, payload));
  ASSERT_TRUE(obs_->publish(mqtt::topic_hub_rate(r.hub), payload, 1, true));
  const std::string dir = work_ + "/otherrate";
  const size_t hub_before = read_text(work_ + "/hub.log").size();
  const int rc = run_exchanger(9, dir, "0.19 PPT", 150);
  const std::string log = read_text(dir + ".log");
  EXPECT_NE(log.find("RateOutOfBounds"), std::string::npos) << log;
  EXPECT_EQ(log.find("exchange double-signed"), std::string::npos) << log;
  EXPECT_NE(read_text(work_ + "/hub.log").find("RateOutOfBounds", hub_before), std::string::npos);
  EXPECT_EQ(rc, 0) << "the channel goes on after the hub's refusal";
  expect_no_exchange(dir, 150);
  obs_->publish(mqtt::topic_hub_rate(r.hub), std::string(), 1, true);
}

}  // namespace


namespace {

// The payee publishes its signed price list (0.002 PPT per Wh); the payer (maximum
// 0.003) pays by it. The payee meters what it delivers: while the payer keeps up it
// serves; once it delivered 60 Wh more than it was paid for (margin 10) it stops serving.
TEST_F(TokenE2E, ThePayerPaysByThePayeesListAndThePayeeStopsServingWhenBehind) {
  const std::string pdir = work_ + "/seller";
  auto pargv = agent_argv(10, pdir);
  for (std::string x : {"--role", "payee", "--meter", "stdin", "--sell-price", "0.002 PPT", "--serve-margin", "10",
                        "--no-exit-on-eof"})
    pargv.push_back(x);
  Child payee;
  ASSERT_TRUE(payee.start(pargv, pdir + ".log", true));
  write_all(payee.stdin_fd(), "wh 0\n");
  ASSERT_TRUE(poll_until([&] { return read_text(pdir + ".log").find("price list published") != std::string::npos; },
                         30000));
  const std::string dir = work_ + "/listpayer";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_list_payer(11, dir, 10, 100), 0) << read_text(dir + ".log");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  EXPECT_EQ(s.units_paid, 100u);
  EXPECT_EQ(s.wei_paid, mul(dec("2000000000000000"), 100)) << "paid at the payee's price, not the maximum";
  EXPECT_NE(read_text(dir + ".log").find("paying by the payee's list: 0.002 PPT per Wh"), std::string::npos);
  // The payee delivered what it was paid for: serving.
  write_all(payee.stdin_fd(), "wh 100\n");
  ASSERT_TRUE(poll_until([&] {
    device::AgentState p;
    return load(pdir, p) && p.channel.state.balanceTokenUser == mul(dec("2000000000000000"), 100);
  }, 60000)) << read_text(pdir + ".log");
  // It delivers 60 Wh more that nobody pays for: it stops serving.
  write_all(payee.stdin_fd(), "wh 160\n");
  EXPECT_TRUE(poll_until([&] { return read_text(pdir + ".log").find("stopped serving") != std::string::npos; }, 30000))
      << read_text(pdir + ".log");
  EXPECT_NE(read_text(pdir + ".log").find("behind by 60 Wh (margin 10)"), std::string::npos) << read_text(pdir + ".log");
  EXPECT_EQ(read_text(pdir + ".log").find("stopped serving", 0) , read_text(pdir + ".log").rfind("stopped serving"))
      << "once";
  payee.close_stdin();
  payee.stop();
  std::printf("[time] token deposit + price list + thread open + 20 payments + close, agent start to exit: %.2f s\n",
              secs);
}

// An adversarial payee asks more than the payer's maximum: nothing is paid or locked.
TEST_F(TokenE2E, APriceAboveTheMaximumIsRefused) {
  publish_list(12, keys_[12], "5000000000000000", -10, 3600);  // 0.005 PPT per Wh
  const std::string dir = work_ + "/abovemax";
  ASSERT_EQ(run_list_payer(13, dir, 12, 50), 1) << read_text(dir + ".log");
  EXPECT_NE(read_text(dir + ".log").find("0.005 PPT per Wh is above our maximum 0.003 PPT"), std::string::npos)
      << read_text(dir + ".log");
  expect_nothing_paid(dir);
}

// A list on the payee's topic that the payee did not sign: ignored; nothing is paid.
TEST_F(TokenE2E, AForgedPriceListIsIgnored) {
  publish_list(12, random_key_hex(), "1000000000000000", -10, 3600);  // a bargain, forged
  const std::string dir = work_ + "/forgedlist";
  ASSERT_EQ(run_list_payer(14, dir, 12, 50), 1) << read_text(dir + ".log");
  EXPECT_NE(read_text(dir + ".log").find("price list ignored: not signed by"), std::string::npos)
      << read_text(dir + ".log");
  expect_nothing_paid(dir);
}

// An expired list signed by the payee (a replayed retained message): refused.
TEST_F(TokenE2E, AnExpiredPriceListIsRefused) {
  publish_list(12, keys_[12], "1000000000000000", -7200, -3600);
  const std::string dir = work_ + "/expiredlist";
  ASSERT_EQ(run_list_payer(15, dir, 12, 50), 1) << read_text(dir + ".log");
  EXPECT_NE(read_text(dir + ".log").find("price list refused: the list expired"), std::string::npos)
      << read_text(dir + ".log");
  expect_nothing_paid(dir);
  obs_->publish(mqtt::topic_payee_prices([] {
                  Address a{};
                  (void)address_parse(addr(12).c_str(), 42, a);
                  return a;
                }()),
                std::string(), 1, true);
}

}  // namespace

namespace {

// A cooperative token withdrawal (no exit, no challenge period): the device deposits
// 3 PPT (approve + userAuthorizedUpdate), withdraws 1 PPT to another address
// (ProposePendingWithdrawal with the token fields, countersigned by the hub, executed by
// userAuthorizedUpdate, which transfers the tokens to the recipient), then ConfirmPending.
// A withdrawal above its balance is refused by its own session; nothing is stored.
TEST_F(TokenE2E, CooperativeTokenWithdrawalPaysTheRecipient) {
  start_hub({});
  chain::RpcClient rpc(chain_->url());
  chain::Wallet w(rpc, testsupport::test_key(kSimKey));
  ASSERT_TRUE(w.init());
  chain::ChannelManagerClient cm(w, cm_addr_);
  testsupport::SimOptions so;
  so.chain = [&](const Address& user, ChainFacts& f) {
    auto oc = cm.channel(user);
    auto blk = rpc.block_by_number("latest");
    if (!oc.ok() || !blk.ok()) return false;
    f.known = true;
    f.txCountGlobal = oc->txCountGlobal;
    f.txCountChain = oc->txCountChain;
    f.status = oc->status == chain::ChannelStatus::Open ? ChainChannelStatus::Open : ChainChannelStatus::InDispute;
    f.emptied = false;
    f.blockTime = blk->timestamp;
    return true;
  };
  Address hub{};
  ASSERT_EQ(address_parse(hub_addr_.c_str(), hub_addr_.size(), hub), Status::Ok);
  testsupport::SimDevice d(kSimKey, hub, cm_addr_, so);
  mqtt::Options o;
  o.port = broker_->port();
  std::string err;
  ASSERT_TRUE(d.start(o, "pw-sim", err)) << err;
  const uint64_t three = 3000000000000000000ull, one = 1000000000000000000ull;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(d.deposit(0, three), Status::Ok);
  SignedChannelState s = d.latest();
  auto ap = chain::erc20_approve(w, token_, cm_addr_, s.state.pendingDepositTokenUser);
  ASSERT_TRUE(ap.ok()) << ap.error().to_string();
  auto dep = cm.user_authorized_update(s.state, s.sigHub);
  ASSERT_TRUE(dep.ok()) << dep.error().to_string();
  ASSERT_EQ(d.confirm_pending(dep->transactionHash), Status::Ok);
  EXPECT_EQ(d.latest().state.balanceTokenUser, U256::from_u64(three));
  // Above the balance: the device's own session refuses; nothing changes.
  Address to{};
  to.bytes[0] = 0x5a;
  to.bytes[19] = 0x01;
  const SignedChannelState before = d.latest();
  EXPECT_NE(d.withdraw_tokens(to, 0, 4 * one), Status::Ok);
  EXPECT_EQ(d.latest().state, before.state);
  // 1 PPT to `to`.
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_EQ(d.withdraw_tokens(to, 0, one), Status::Ok);
  s = d.latest();
  EXPECT_EQ(s.state.pendingWithdrawalTokenUser, U256::from_u64(one));
  auto wd = cm.user_authorized_update(s.state, s.sigHub);
  ASSERT_TRUE(wd.ok()) << wd.error().to_string();
  ASSERT_EQ(d.confirm_pending(wd->transactionHash), Status::Ok);
  const auto t2 = std::chrono::steady_clock::now();
  auto got = chain::erc20_balance(rpc, token_, to);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, U256::from_u64(one)) << "the recipient received exactly the withdrawal";
  auto on = cm.channel(d.address());
  ASSERT_TRUE(on.ok());
  EXPECT_EQ(on->tokenUser, U256::from_u64(2 * one));
  EXPECT_EQ(on->tokenTotal, U256::from_u64(2 * one));
  EXPECT_EQ(d.latest().state.balanceTokenUser, U256::from_u64(2 * one));
  EXPECT_TRUE(d.latest().state.pendingWithdrawalTokenUser.is_zero());
  std::printf("[gas] ERC-20 approve: %llu\n[gas] userAuthorizedUpdate (token deposit): %llu\n"
              "[gas] userAuthorizedUpdate (token withdrawal to a recipient): %llu\n",
              static_cast<unsigned long long>(ap->gasUsed), static_cast<unsigned long long>(dep->gasUsed),
              static_cast<unsigned long long>(wd->gasUsed));
  std::printf("[time] token deposit round trip %.2f s, cooperative token withdrawal round trip %.2f s\n",
              std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count());
  d.stop();
}

}  // namespace
