// Amounts with units, the log format and the shared command-line vocabulary.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "picopay/agent/amount.hpp"
#include "picopay/agent/log.hpp"
#include "picopay/agent/options.hpp"
#include "picopay/agent/settings.hpp"

using namespace picopay;
using namespace picopay::agent;

namespace {

std::string dec(const U256& v) {
  char b[100];
  EXPECT_EQ(u256_to_decimal(v, b, sizeof b, nullptr), Status::Ok);
  return b;
}

std::string parse_ok(const std::string& s, const TokenUnit* t = nullptr) {
  U256 v;
  std::string err;
  EXPECT_TRUE(amount_parse(s, v, err, t)) << s << ": " << err;
  return dec(v);
}

std::string parse_err(const std::string& s, const TokenUnit* t = nullptr) {
  U256 v = U256::from_u64(77);
  std::string err;
  EXPECT_FALSE(amount_parse(s, v, err, t)) << s;
  EXPECT_EQ(dec(v), "77") << "output touched on error: " << s;
  EXPECT_NE(err.find(s), std::string::npos) << err;
  return err;
}

}  // namespace

TEST(Amount, UnitsScaleToWei) {
  EXPECT_EQ(parse_ok("1000"), "1000");
  EXPECT_EQ(parse_ok("1000wei"), "1000");
  EXPECT_EQ(parse_ok("2gwei"), "2000000000");
  EXPECT_EQ(parse_ok("1ether"), "1000000000000000000");
  EXPECT_EQ(parse_ok("1 ETH"), "1000000000000000000");
  EXPECT_EQ(parse_ok("1.5ether"), "1500000000000000000");
  EXPECT_EQ(parse_ok("0.000000001ether"), "1000000000");
  EXPECT_EQ(parse_ok("1.000000000000000001ether"), "1000000000000000001");
  EXPECT_EQ(parse_ok("3kwei"), "3000");
  EXPECT_EQ(parse_ok("3mwei"), "3000000");
  EXPECT_EQ(parse_ok("2szabo"), "2000000000000");
  EXPECT_EQ(parse_ok("2finney"), "2000000000000000");
  EXPECT_EQ(parse_ok("0"), "0");
  EXPECT_EQ(parse_ok("0.0ether"), "0");
  EXPECT_EQ(parse_ok("007gwei"), "7000000000");
  EXPECT_EQ(parse_ok(".5gwei"), "500000000");
  EXPECT_EQ(parse_ok("1.50gwei"), "1500000000");  // trailing zeros carry no value
  // the largest U256
  EXPECT_EQ(parse_ok("115792089237316195423570985008687907853269984665640564039457584007913129639935"),
            "115792089237316195423570985008687907853269984665640564039457584007913129639935");
}

TEST(Amount, TokenDecimalsWhenATokenIsConfigured) {
  const TokenUnit usdc{"USDC", 6};
  EXPECT_EQ(parse_ok("3.25USDC", &usdc), "3250000");
  EXPECT_EQ(parse_ok("3.25 usdc", &usdc), "3250000");
  EXPECT_EQ(parse_ok("17", &usdc), "17");  // plain integers are base units
  EXPECT_NE(parse_err("0.0000001USDC", &usdc).find("6 decimals"), std::string::npos);
  EXPECT_NE(parse_err("1USDC").find("unknown unit"), std::string::npos);  // no token configured
}

TEST(Amount, BadInputIsAnError) {
  EXPECT_NE(parse_err("0.5wei").find("1 wei"), std::string::npos);
  EXPECT_NE(parse_err("0.5").find("1 wei"), std::string::npos);
  EXPECT_NE(parse_err("1.0000000001gwei").find("finer"), std::string::npos);
  EXPECT_NE(parse_err("1.0000000000000000001ether").find("finer"), std::string::npos);
  EXPECT_NE(parse_err("2gwie").find("unknown unit"), std::string::npos);
  EXPECT_NE(parse_err("1 ether x").find("unknown unit"), std::string::npos);
  EXPECT_NE(parse_err("-1").find("expected a number"), std::string::npos);
  EXPECT_NE(parse_err("").find("expected a number"), std::string::npos);
  EXPECT_NE(parse_err("ether").find("expected a number"), std::string::npos);
  EXPECT_NE(parse_err("1e18").find("unknown unit"), std::string::npos);
  EXPECT_NE(parse_err("0x10").find("unknown unit"), std::string::npos);
  EXPECT_NE(parse_err("1.2.3gwei").find("two decimal points"), std::string::npos);
  EXPECT_NE(parse_err(".").find("no digits"), std::string::npos);
  // 2^256 and anything above overflows, also through the unit's scaling
  EXPECT_NE(parse_err("115792089237316195423570985008687907853269984665640564039457584007913129639936").find("overflow"),
            std::string::npos);
  EXPECT_NE(parse_err("115792089237316195423570985008687907853269984665640564039457584007913129639935gwei")
                .find("overflow"),
            std::string::npos);
  EXPECT_NE(parse_err("1000000000000000000000000000000000000000000000000000000000000ether").find("overflow"),
            std::string::npos);
}

TEST(Amount, FormatTrimsTheFraction) {
  EXPECT_EQ(amount_format(U256::from_u64(1500000000000000000ULL), 18), "1.5");
  EXPECT_EQ(amount_format(U256::from_u64(1), 18), "0.000000000000000001");
  EXPECT_EQ(amount_format(U256::from_u64(2000000000), 9), "2");
  EXPECT_EQ(amount_format(U256::from_u64(42), 0), "42");
}

TEST(Log, TextJsonAndJournaldFormats) {
  log_set_program("picopay-test");
  unsetenv("JOURNAL_STREAM");
  unsetenv("PICOPAY_LOG_TIMESTAMPS");
  log_set_format(LogFormat::Text);
  std::string l = log_line(LogLevel::Warn, "broker: refused\nsecond line");
  // 2026-12-02T04:40:00.123Z picopay-test warn: broker: refused\nsecond line
  ASSERT_GT(l.size(), 25u);
  EXPECT_EQ(l[4], '-');
  EXPECT_EQ(l[10], 'T');
  EXPECT_EQ(l[23], 'Z');
  EXPECT_EQ(l.substr(25), "picopay-test warn: broker: refused\\nsecond line");
  // under systemd: no timestamp, the syslog priority first (journald reads it)
  setenv("JOURNAL_STREAM", "8:12345", 1);
  EXPECT_EQ(log_line(LogLevel::Error, "x"), "<3>picopay-test error: x");
  EXPECT_EQ(log_line(LogLevel::Info, "y"), "<6>picopay-test info: y");
  setenv("PICOPAY_LOG_TIMESTAMPS", "1", 1);
  EXPECT_NE(log_line(LogLevel::Info, "y").find("Z picopay-test info: y"), std::string::npos);
  unsetenv("PICOPAY_LOG_TIMESTAMPS");
  unsetenv("JOURNAL_STREAM");
  log_set_format(LogFormat::Json);
  l = log_line(LogLevel::Debug, "a \"quoted\" \\ line\n");
  EXPECT_EQ(l.rfind("{\"ts\":\"", 0), 0u) << l;
  EXPECT_NE(l.find("\",\"level\":\"debug\",\"program\":\"picopay-test\",\"msg\":\"a \\\"quoted\\\" \\\\ line\\n\"}"),
            std::string::npos)
      << l;
  log_set_format(LogFormat::Text);
  LogLevel lv;
  EXPECT_TRUE(log_level_parse("warning", lv));
  EXPECT_EQ(lv, LogLevel::Warn);
  EXPECT_FALSE(log_level_parse("loud", lv));
  log_set_level(LogLevel::Warn);
  EXPECT_FALSE(log_enabled(LogLevel::Info));
  EXPECT_TRUE(log_enabled(LogLevel::Error));
  log_set_level(LogLevel::Info);
}

namespace {
int run_app(CLI::App& app, std::vector<std::string> args) {
  args.insert(args.begin(), "prog");
  return parse_args(app, args);
}
}  // namespace

TEST(Options, SharedFlagsAliasesAndEnvironment) {
  unsetenv("ETH_RPC_URL");
  {
    CLI::App app{"t", "prog"};
    CommonOptions c;
    add_common(app, c);
    std::string url;
    add_rpc_url(app, url);
    EXPECT_EQ(run_app(app, {"--rpc", "http://127.0.0.1:1"}), -1);  // the old spelling
    EXPECT_EQ(url, "http://127.0.0.1:1");
  }
  {
    setenv("ETH_RPC_URL", "http://127.0.0.1:2", 1);
    CLI::App app{"t", "prog"};
    std::string url;
    add_rpc_url(app, url);
    EXPECT_EQ(run_app(app, {}), -1);
    EXPECT_EQ(url, "http://127.0.0.1:2");
    CLI::App app2{"t", "prog"};
    std::string url2;
    add_rpc_url(app2, url2);
    EXPECT_EQ(run_app(app2, {"--rpc-url", "http://127.0.0.1:3"}), -1);  // the flag wins
    EXPECT_EQ(url2, "http://127.0.0.1:3");
    unsetenv("ETH_RPC_URL");
  }
  {
    CLI::App app{"t", "prog"};
    KeyOptions k;
    add_key_options(app, k, "prog");
    const std::string hex = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    EXPECT_EQ(run_app(app, {"--key", hex}), -1);  // old: a hex key
    EXPECT_EQ(k.private_key, hex);
    CLI::App app2{"t", "prog"};
    KeyOptions k2;
    add_key_options(app2, k2, "prog");
    EXPECT_EQ(run_app(app2, {"--key", "/etc/picopay/hub.key"}), -1);  // old: a file
    EXPECT_EQ(k2.keystore, "/etc/picopay/hub.key");
    EXPECT_TRUE(k2.private_key.empty());
  }
  {
    CLI::App app{"t", "prog"};
    U256 v;
    add_amount(app, "--deposit,--deposit-wei", v, "deposit");
    EXPECT_EQ(run_app(app, {"--deposit-wei", "2gwei"}), -1);
    EXPECT_EQ(dec(v), "2000000000");
    CLI::App app2{"t", "prog"};
    add_amount(app2, "--deposit", v, "deposit");
    EXPECT_EQ(run_app(app2, {"--deposit", "0.1wei"}), kExitUsage);
  }
  {
    CLI::App app{"t", "prog"};
    add_renamed(app, "--rpc-endpoint", "--rpc-url");
    EXPECT_EQ(run_app(app, {"--rpc-endpoint", "x"}), kExitUsage);
  }
  {
    CLI::App app{"t", "prog"};
    Address a{};
    bool given = false;
    add_address(app, "--hub", a, "hub", &given);
    // a mixed-case address with a broken EIP-55 checksum is refused
    EXPECT_EQ(run_app(app, {"--hub", "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}), kExitUsage);
    EXPECT_FALSE(given);
    CLI::App app2{"t", "prog"};
    add_address(app2, "--hub", a, "hub", &given);
    EXPECT_EQ(run_app(app2, {"--hub", "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"}), -1);
    EXPECT_TRUE(given);
  }
}
