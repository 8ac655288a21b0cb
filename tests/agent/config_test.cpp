// Strictly parsed config files: the shared ConfigFile/Settings mechanism, and the
// configs of picopay-hub, picopay-tower and picopay-agent through it.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "picopay/agent/config_file.hpp"
#include "picopay/agent/options.hpp"
#include "picopay/agent/settings.hpp"
#include "support/process.hpp"
#ifdef PICOPAY_HAVE_PROGRAMS
#include "config.hpp"  // picopay-hub
#include "picopay/device/agent.hpp"
#include "picopay/tower/config.hpp"
#endif

using namespace picopay;
using picopay::testsupport::make_temp_dir;
using picopay::testsupport::remove_tree;
using picopay::testsupport::write_file;

namespace {

class Config : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir("picopay-config"); }
  void TearDown() override { remove_tree(dir_); }
  std::string file(const std::string& name, const std::string& text, mode_t mode = 0644) {
    const std::string p = dir_ + "/" + name;
    EXPECT_TRUE(write_file(p, text));
    ::chmod(p.c_str(), mode);
    return p;
  }
  std::string dir_;
};

// Reads `text` with a small settings table; returns the error ("" if none).
struct Small {
  std::string host = "127.0.0.1", db = "default.db";
  int port = 1883;
  uint64_t confirmations = 0;
  bool verbose = false;
  std::string deposit = "0";
  std::string err;
  bool read(const std::string& path) {
    agent::Settings s(nullptr);
    s.str("", "broker.host", host, "");
    s.integer("", "broker.port", port, 1, 65535, "");
    s.integer("", "confirmations", confirmations, 0, 1000, "");
    s.flag("", "verbose", verbose, "");
    s.path("", "db", db, "");
    s.amount_text("", "depositWei", deposit, "");
    return s.load_file(path, err);
  }
};

}  // namespace

TEST_F(Config, KnownKeysAreReadAndRelativePathsResolveAgainstTheFile) {
  Small s;
  const std::string p = file("a.json", R"({"broker":{"host":"h","port":8883},"confirmations":3,"verbose":true,
                                         "db":"data/x.db","depositWei":"1.5ether"})");
  ASSERT_TRUE(s.read(p)) << s.err;
  EXPECT_EQ(s.host, "h");
  EXPECT_EQ(s.port, 8883);
  EXPECT_EQ(s.confirmations, 3u);
  EXPECT_TRUE(s.verbose);
  EXPECT_EQ(s.db, dir_ + "/data/x.db");
  EXPECT_EQ(s.deposit, "1500000000000000000");
  Small abs;
  ASSERT_TRUE(abs.read(file("b.json", R"({"db":"/var/lib/picopay/x.db","depositWei":1000})"))) << abs.err;
  EXPECT_EQ(abs.db, "/var/lib/picopay/x.db");
  EXPECT_EQ(abs.deposit, "1000");
  EXPECT_EQ(abs.host, "127.0.0.1");  // absent keys keep their defaults
}

TEST_F(Config, UnknownKeysAndBadValuesNameTheKeyAndTheFile) {
  struct Case {
    const char* text;
    const char* key;
    const char* why;
  };
  const Case cases[] = {
      {R"({"brokr":{"host":"h"}})", "brokr.host", "unknown key"},
      {R"({"broker":{"hots":"h"}})", "broker.hots", "unknown key"},
      {R"({"typo":1})", "typo", "unknown key"},
      {R"({"broker":{"port":"1883"}})", "broker.port", "must be a number"},
      {R"({"broker":{"port":-1}})", "broker.port", "out of range"},
      {R"({"broker":{"port":65536}})", "broker.port", "out of range"},
      {R"({"broker":{"port":1e300}})", "broker.port", "out of range"},
      {R"({"broker":{"port":18.5}})", "broker.port", "whole number"},
      {R"({"confirmations":-3})", "confirmations", "out of range"},
      {R"({"confirmations":true})", "confirmations", "must be a number"},
      {R"({"verbose":"yes"})", "verbose", "true or false"},
      {R"({"broker":{"host":5}})", "broker.host", "must be a string"},
      {R"({"db":["x"]})", "db", "must be a string"},
      {R"({"depositWei":"lots"})", "depositWei", "amount"},
      {R"({"depositWei":-1})", "depositWei", "whole number"},
      {R"({"depositWei":1e30})", "depositWei", "whole number"},
      {R"({"depositWei":"0.5wei"})", "depositWei", "1 wei"},
      {R"({"depositWei":"1000000000000000000000000000000000000000000000000000000000000ether"})", "depositWei",
       "overflow"},
      {R"({"verbose":true,"verbose":false})", "verbose", "given twice"},
  };
  int i = 0;
  for (const Case& c : cases) {
    Small s;
    const std::string p = file("c" + std::to_string(i++) + ".json", c.text);
    EXPECT_FALSE(s.read(p)) << c.text;
    EXPECT_NE(s.err.find(p), std::string::npos) << s.err;
    EXPECT_NE(s.err.find(c.key), std::string::npos) << c.text << " -> " << s.err;
    EXPECT_NE(s.err.find(c.why), std::string::npos) << c.text << " -> " << s.err;
  }
  Small s;
  EXPECT_FALSE(s.read(file("d.json", "[1,2]")));
  EXPECT_NE(s.err.find("not a JSON object"), std::string::npos);
  EXPECT_FALSE(s.read(file("e.json", "{\"a\":")));
  EXPECT_NE(s.err.find("not valid JSON"), std::string::npos);
  EXPECT_FALSE(s.read(dir_ + "/missing.json"));
  EXPECT_NE(s.err.find("cannot read"), std::string::npos);
}

TEST_F(Config, CommandLineWinsOverTheFile) {
  const std::string p = file("f.json", R"({"broker":{"host":"from-file","port":1000},"db":"rel.db"})");
  Small v;
  CLI::App app{"t", "prog"};
  agent::Settings s(&app);
  s.config_option();
  s.str("--broker-host", "broker.host", v.host, "");
  s.integer("--broker-port", "broker.port", v.port, 1, 65535, "");
  s.path("--db", "db", v.db, "");
  // the flag comes before --config on the command line and still wins
  std::vector<std::string> args = {"prog", "--broker-port", "2000", "--config", p};
  EXPECT_EQ(agent::parse_args(app, args), -1);
  EXPECT_EQ(v.host, "from-file");
  EXPECT_EQ(v.port, 2000);
  EXPECT_EQ(v.db, dir_ + "/rel.db");
  // a bad file is a usage error
  CLI::App app2{"t", "prog"};
  agent::Settings s2(&app2);
  s2.config_option();
  s2.integer("--broker-port", "broker.port", v.port, 1, 65535, "");
  EXPECT_EQ(agent::parse_args(app2, {"prog", "--config", file("g.json", R"({"bogus":1})")}), agent::kExitUsage);
}

#ifdef PICOPAY_HAVE_PROGRAMS
namespace {
template <typename Cfg, typename Fn>
int parse_with(Fn fn, std::vector<std::string> args, Cfg& c, std::string& err) {
  std::vector<char*> av;
  static std::string prog = "prog";
  av.push_back(&prog[0]);
  for (auto& a : args) av.push_back(&a[0]);
  return fn(static_cast<int>(av.size()), av.data(), c, err);
}
}  // namespace

TEST_F(Config, HubConfigIsStrict) {
  auto parse = [](int argc, char** argv, hub::Config& c, std::string& err) { return hub::parse_config(argc, argv, c, err); };
  std::string err;
  hub::Config c;
  const std::string key = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
  const std::string good = file("hub.json", R"({"broker":{"host":"b","port":8883,"passwordFile":"pw"},
      "hub":{"keyFile":"keys/hub.key"},"contract":"0x7d73424a8256c0b2ba245e5d5a3de8820e45f390",
      "db":"hub.db","collateral":{"depositWei":"5ether"},"batchMax":64,"logLevel":"warn"})");
  file("pw", "secret\n", 0600);
  ASSERT_EQ(parse_with<hub::Config>(parse, {"--config", good}, c, err), 0) << err;
  EXPECT_EQ(c.key_file, dir_ + "/keys/hub.key");
  EXPECT_EQ(c.db, dir_ + "/hub.db");
  EXPECT_EQ(c.event_state, dir_ + "/hub.db.events.json");
  EXPECT_EQ(c.broker_password, "secret");
  EXPECT_EQ(c.collateral_wei, "5000000000000000000");
  EXPECT_EQ(c.batch_max, 64);
  // the store, channel cache and collateral keys (docs/operations.md, docs/flows.md)
  hub::Config hs;
  const std::string store = file("hub-store.json", R"({"hub":{"keyFile":"k"},"contract":"0x01",
      "store":"postgresql://hub@127.0.0.1:5432/picopay","channelCache":500,"collateral":{"depositWei":"1ether",
      "depositTokens":"7","maxWei":"3ether","flowWindowSeconds":600,"idleSeconds":900,"reserveWarnWei":"2ether"}})");
  ASSERT_EQ(parse_with<hub::Config>(parse, {"--config", store, "--collateral-idle", "60"}, hs, err), 0) << err;
  EXPECT_EQ(hs.store, "postgresql://hub@127.0.0.1:5432/picopay");
  EXPECT_EQ(hs.channel_cache, 500);
  EXPECT_EQ(hs.collateral_tokens, "7");
  EXPECT_EQ(hs.collateral_max_wei, "3000000000000000000");
  EXPECT_EQ(hs.collateral_window_seconds, 600u);
  EXPECT_EQ(hs.collateral_idle_seconds, 60u);
  EXPECT_EQ(hs.reserve_warn_wei, "2000000000000000000");
  // the command line wins; a hex key given there replaces the file's key file
  hub::Config c2;
  ASSERT_EQ(parse_with<hub::Config>(parse, {"--config", good, "--batch-max", "8", "--private-key", key}, c2, err), 0)
      << err;
  EXPECT_EQ(c2.batch_max, 8);
  EXPECT_EQ(c2.private_key, key);
  EXPECT_TRUE(c2.key_file.empty());
  const std::pair<const char*, const char*> bad[] = {
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"batchMax":0})", "batchMax"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"batchMax":"8"})", "batchMax"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"confirmations":-1})", "confirmations"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"broker":{"port":70000}})", "broker.port"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"rpcURL":"http://x"})", "rpcURL"},
      {R"({"contract":"0x01","hub":{"keyFile":"k","adress":"0x01"}})", "hub.adress"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"collateral":{"depositWei":"1 bitcoin"}})", "collateral.depositWei"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"exchange":{"rateTime":-5}})", "exchange.rateTime"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"verifyThreads":1.5})", "verifyThreads"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"logLevel":"loud"})", "logLevel"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"channelCache":0})", "channelCache"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"collateral":{"maxWei":"lots"}})", "collateral.maxWei"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"collateral":{"idleSeconds":-1}})", "collateral.idleSeconds"},
      {R"({"contract":"0x01","hub":{"keyFile":"k"},"collateral":{"flowWindow":60}})", "collateral.flowWindow"},
  };
  int i = 0;
  for (const auto& b : bad) {
    hub::Config cb;
    const std::string p = file("hub-bad" + std::to_string(i++) + ".json", b.first);
    EXPECT_EQ(parse_with<hub::Config>(parse, {"--config", p}, cb, err), 2) << b.first;
    EXPECT_NE(err.find(b.second), std::string::npos) << b.first << " -> " << err;
    EXPECT_NE(err.find(p), std::string::npos) << err;
  }
  hub::Config cn;
  EXPECT_EQ(parse_with<hub::Config>(parse, {"--contract", "0x01", "--keystore", "k", "--batch-max", "-3"}, cn, err), 2);
  EXPECT_NE(err.find("--batch-max"), std::string::npos) << err;
  EXPECT_EQ(parse_with<hub::Config>(parse, {"--contract", "0x01", "--keystore", "k", "--collateral-wei", "1.5wei"}, cn,
                                    err),
            2);
  EXPECT_NE(err.find("--collateral-wei"), std::string::npos) << err;
  // a config file holding a password must be private
  const std::string secret = file("hub-secret.json", R"({"contract":"0x01","hub":{"privateKey":")" + key + R"("}})");
  hub::Config cs;
  EXPECT_EQ(parse_with<hub::Config>(parse, {"--config", secret}, cs, err), 2);
  EXPECT_NE(err.find("chmod 600"), std::string::npos) << err;
}

TEST_F(Config, TowerConfigSharesTheHubsParser) {
  auto parse = [](int argc, char** argv, tower::Config& c, std::string& err) {
    return tower::parse_config(argc, argv, c, err);
  };
  std::string err;
  tower::Config c;
  const std::string good = file("tower.json", R"({"broker":{"port":8883},"tower":{"keyFile":"tower.key"},
      "contract":"0x01","rpcUrl":"http://127.0.0.1:8545","db":"t.db","intervalMs":250,"startBlock":-1})");
  ASSERT_EQ(parse_with<tower::Config>(parse, {"--config", good}, c, err), 0) << err;
  EXPECT_EQ(c.key_file, dir_ + "/tower.key");
  EXPECT_EQ(c.db, dir_ + "/t.db");
  EXPECT_EQ(c.interval_ms, 250);
  EXPECT_EQ(c.broker_port, 8883);
  const std::pair<const char*, const char*> bad[] = {
      {R"({"contract":"0x01","rpcUrl":"x","intervalMs":-1})", "intervalMs"},
      {R"({"contract":"0x01","rpcUrl":"x","maxChannels":0})", "maxChannels"},
      {R"({"contract":"0x01","rpcUrl":"x","startBlock":"7"})", "startBlock"},
      {R"({"contract":"0x01","rpcUrl":"x","tower":{"privateKey":"0x11"}})", "tower.privateKey"},
      {R"({"contract":"0x01","rpcUrl":"x","batchMax":5})", "batchMax"},  // a hub key is unknown here
  };
  int i = 0;
  for (const auto& b : bad) {
    tower::Config cb;
    const std::string p = file("tower-bad" + std::to_string(i++) + ".json", b.first);
    EXPECT_EQ(parse_with<tower::Config>(parse, {"--config", p}, cb, err), 2) << b.first;
    EXPECT_NE(err.find(b.second), std::string::npos) << b.first << " -> " << err;
  }
}

TEST_F(Config, AgentConfigIsStrict) {
  device::Config c;
  std::string err;
  const std::string good = file("charger.json", R"({"name":"c1","stateDir":"state/c1","keyFile":"c1.key",
      "broker":{"host":"127.0.0.1","port":1883,"passwordFile":"c1.password","tlsCa":"ca.crt"},
      "hub":"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed","contract":"0x7d73424a8256c0b2ba245e5d5a3de8820e45f390",
      "rpc":"http://127.0.0.1:8545","role":"both","meter":{"source":"tasmota","topic":"tele/c1/SENSOR"},
      "pricePerUnitWei":"100gwei","minUnitsPerPayment":2,"depositWei":"1ether","threadLockWei":"0.5ether",
      "closeOnExit":false,"statusIntervalMs":250})");
  ASSERT_TRUE(device::config_load_file(good, c, err)) << err;
  EXPECT_EQ(c.state_dir, dir_ + "/state/c1");
  EXPECT_EQ(c.key_file, dir_ + "/c1.key");
  EXPECT_EQ(c.password_file, dir_ + "/c1.password");
  EXPECT_EQ(c.tls_ca, dir_ + "/ca.crt");
  EXPECT_TRUE(c.payer && c.payee);
  EXPECT_TRUE(c.has_hub && c.has_contract);
  EXPECT_EQ(c.price_wei, U256::from_u64(100000000000ULL));
  EXPECT_EQ(c.deposit_wei, U256::from_u64(1000000000000000000ULL));
  EXPECT_EQ(c.min_units, 2u);
  EXPECT_FALSE(c.close_on_exit);
  // the keys of tokens, prices, exchanges, the tower and flows (docs/tokens.md, tower.md, flows.md)
  device::Config t;
  const std::string tok = file("token.json", R"({"stateDir":"s",
      "token":"0x7d73424a8256c0b2ba245e5d5a3de8820e45f390","pricePerUnit":"0.5 PPT","deposit":"2.5 PPT",
      "threadLock":"1 PPT","sellPrice":"0.4 PPT","maxPrice":"0.6 PPT","priceValiditySeconds":120,
      "serveMarginUnits":3,"exchange":{"sell":"0.01 ETH","maxRateAgeSeconds":60,"maxDeviationBps":250,
      "referenceRate":"1000"},"tower":{"address":"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed","intervalMs":200},
      "refillBelowWei":"1ether","refillWei":"2ether","cashOutAboveWei":"3ether",
      "cashOutTo":"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed","expectIncomeWei":"4ether"})");
  ASSERT_TRUE(device::config_load_file(tok, t, err)) << err;
  EXPECT_TRUE(t.has_token);
  EXPECT_EQ(t.price_text, "0.5 PPT");
  EXPECT_EQ(t.deposit_text, "2.5 PPT");
  EXPECT_EQ(t.thread_lock_text, "1 PPT");
  EXPECT_EQ(t.sell_price_text, "0.4 PPT");
  EXPECT_EQ(t.max_price_text, "0.6 PPT");
  EXPECT_EQ(t.price_validity_s, 120u);
  EXPECT_EQ(t.serve_margin_units, 3u);
  EXPECT_EQ(t.exchange_text, "0.01 ETH");
  EXPECT_EQ(t.exchange_max_age_s, 60u);
  EXPECT_EQ(t.exchange_max_deviation_bps, 250u);
  EXPECT_EQ(t.exchange_reference, "1000");
  EXPECT_TRUE(t.has_tower);
  EXPECT_EQ(t.tower_interval_ms, 200u);
  EXPECT_EQ(t.refill_below_wei, U256::from_u64(1000000000000000000ULL));
  EXPECT_EQ(t.refill_wei, U256::from_u64(2000000000000000000ULL));
  EXPECT_EQ(t.cash_out_above_wei, U256::from_u64(3000000000000000000ULL));
  EXPECT_TRUE(t.has_cash_out_to);
  EXPECT_EQ(t.expect_income_wei, U256::from_u64(4000000000000000000ULL));
  const std::pair<const char*, const char*> bad[] = {
      {R"({"stateDir":"s","minUnitsPerPayment":0})", "minUnitsPerPayment"},
      {R"({"stateDir":"s","minUnitsPerPayment":1e300})", "minUnitsPerPayment"},
      {R"({"stateDir":"s","statusIntervalMs":-1})", "statusIntervalMs"},
      {R"({"stateDir":"s","broker":{"port":"x"}})", "broker.port"},
      {R"({"stateDir":"s","role":"seller"})", "role"},
      {R"({"stateDir":"s","meter":{"source":"modbus"}})", "meter.source"},
      {R"({"stateDir":"s","pricePerUnitWei":"-1"})", "pricePerUnitWei"},
      {R"({"stateDir":"s","hub":"0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"})", "hub"},
      {R"({"stateDir":"s","closeOnExit":1})", "closeOnExit"},
      {R"({"stateDir":"s","depositEther":"1"})", "depositEther"},
      {R"({"stateDir":"s","tower":{"address":"0x0000000000000000000000000000000000000000"}})", "tower.address"},
      {R"({"stateDir":"s","tower":"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"})", "tower"},
      {R"({"stateDir":"s","tower":{"address":"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed","intervalMs":0}})",
       "tower.intervalMs"},
      {R"({"stateDir":"s","priceValiditySeconds":59})", "priceValiditySeconds"},
      {R"({"stateDir":"s","exchange":{"maxDeviationBps":10001}})", "exchange.maxDeviationBps"},
      {R"({"stateDir":"s","exchange":{"sel":"1 PPT"}})", "exchange.sel"},
      {R"({"stateDir":"s","refillWei":"lots"})", "refillWei"},
      {R"({"stateDir":"s","cashOutTo":"0x01"})", "cashOutTo"},
      {R"({"stateDir":"s","token":"PPT"})", "token"},
  };
  int i = 0;
  for (const auto& b : bad) {
    device::Config cb;
    const std::string p = file("agent-bad" + std::to_string(i++) + ".json", b.first);
    EXPECT_FALSE(device::config_load_file(p, cb, err)) << b.first;
    EXPECT_NE(err.find(b.second), std::string::npos) << b.first << " -> " << err;
    EXPECT_NE(err.find(p), std::string::npos) << err;
  }
}
#endif
