// The hub's chain gauges (docs/operations.md) against a real ganache dev chain
// (tests/chain/devchain.hpp), a ChannelManager deployed by picopay_chain, a real mosquitto
// and the real picopay-hub binary with --rpc-url and --metrics-listen: the reserve
// (hubReserveWei), the hub account's balance, the chain head and the watchtower's lag.
// No timing assertions; every wait is bounded.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <thread>

#include "../chain/devchain.hpp"
#include "../hub/hub_ledger.hpp"
#include "../hub/sim_device.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "support/broker.hpp"

using namespace picopay;
using namespace picopay::testsupport;

namespace {

constexpr uint32_t kHubIndex = 0xABCDEF;
constexpr uint32_t kFunder = 5;

size_t on_body(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

std::string get_metrics(int port) {
  std::string body;
  CURL* c = curl_easy_init();
  if (!c) return body;
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  if (curl_easy_perform(c) != CURLE_OK) body.clear();
  curl_easy_cleanup(c);
  return body;
}

double value(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, series.size(), series) == 0 && line.size() > series.size() && line[series.size()] == ' ')
      return std::strtod(line.c_str() + series.size() + 1, nullptr);
  return NAN;
}

double wei(const U256& v) {  // as the hub's gauges convert it
  double d = 0;
  for (int i = 3; i >= 0; --i) d = d * 18446744073709551616.0 + static_cast<double>(v.w[i]);
  return d;
}

}  // namespace

TEST(MetricsChainTest, ReserveBalanceHeadAndWatchtowerLagFollowTheChain) {
  const std::string dir = make_temp_dir("picopay-metricschain");
  test::DevChain chain;
  ASSERT_TRUE(chain.start({hex_key(test_key(kHubIndex)), hex_key(test_key(kFunder))})) << chain.error();
  chain::RpcClient rpc(chain.url());
  chain::Wallet hub_wallet(rpc, test_key(kHubIndex));
  ASSERT_TRUE(hub_wallet.init().ok());
  chain::Wallet funder_wallet(rpc, test_key(kFunder));
  ASSERT_TRUE(funder_wallet.init().ok());
  auto art = chain::load_artifact(std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/ChannelManager.json");
  ASSERT_TRUE(art.ok());
  auto contract = chain::deploy_channel_manager(hub_wallet, *art, hub_wallet.address(), 3600, Address{});
  ASSERT_TRUE(contract.ok()) << contract.error().to_string();
  chain::ChannelManagerClient funder(funder_wallet, *contract);
  ASSERT_TRUE(funder.fund_reserve(U256::from_u64(1000000)).ok());

  BrokerOptions o;
  o.users.push_back({"hub", "hub-pass"});
  o.acl = picopay_acl("hub");
  o.dir = dir + "/broker";
  Broker broker(o);
  std::string err;
  ASSERT_TRUE(broker.start(err)) << err;
  const int mport = free_port();
  Process hub;
  ASSERT_TRUE(hub.start({PICOPAY_HUB_BIN, "--broker-port", std::to_string(broker.port()), "--broker-user", "hub",
                         "--broker-password", "hub-pass", "--contract", mqtt::topic_address(*contract),
                         "--private-key", hex_key(test_key(kHubIndex)), "--rpc-url", chain.url(),
                         "--event-state", dir + "/events.json", "--db", dir + "/hub.db",
                         "--watchtower-interval", "1", "--metrics-listen", "127.0.0.1:" + std::to_string(mport)},
                        dir + "/hub.log"));
  ASSERT_TRUE(wait_port_open(mport, 15000)) << read_file(dir + "/hub.log");

  auto until = [&](const std::string& series, double want) {
    std::string m;
    for (int i = 0; i < 300; ++i) {
      m = get_metrics(mport);
      if (value(m, series) == want) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return m;
  };
  std::string m = until("picopay_hub_reserve_wei", 1000000);
  EXPECT_EQ(value(m, "picopay_hub_reserve_wei"), 1000000) << m << read_file(dir + "/hub.log");
  auto bal = rpc.balance(hub_wallet.address());
  ASSERT_TRUE(bal.ok());
  EXPECT_EQ(value(m, "picopay_hub_account_balance_wei"), wei(*bal));
  auto head = rpc.block_number();
  ASSERT_TRUE(head.ok());
  m = until("picopay_hub_watchtower_lag_blocks", 0);
  EXPECT_EQ(value(m, "picopay_hub_watchtower_lag_blocks"), 0) << m;
  EXPECT_EQ(value(m, "picopay_hub_chain_head_block"), static_cast<double>(*head));
  EXPECT_EQ(value(m, "picopay_hub_watchtower_block"), static_cast<double>(*head));
  EXPECT_GE(value(m, "picopay_hub_watchtower_last_round_timestamp_seconds"),
            value(m, "picopay_hub_start_time_seconds"));
  EXPECT_EQ(value(m, "picopay_hub_chain_rpc_errors_total"), 0);
  EXPECT_EQ(value(m, "picopay_hub_deposit_jobs"), 0);

  // The chain moves (a new block, a bigger reserve): the gauges follow.
  ASSERT_TRUE(funder.fund_reserve(U256::from_u64(5)).ok());
  m = until("picopay_hub_reserve_wei", 1000005);
  EXPECT_EQ(value(m, "picopay_hub_reserve_wei"), 1000005) << m;
  EXPECT_EQ(value(m, "picopay_hub_chain_head_block"), static_cast<double>(*head + 1));

  // The chain goes away: reads fail and are counted; the gauges keep their last values.
  chain.stop();
  for (int i = 0; i < 300 && !(value(m, "picopay_hub_chain_rpc_errors_total") > 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    m = get_metrics(mport);
  }
  EXPECT_GT(value(m, "picopay_hub_chain_rpc_errors_total"), 0) << m;
  EXPECT_EQ(value(m, "picopay_hub_reserve_wei"), 1000005);
  hub.terminate();
  if (!::testing::Test::HasFailure()) remove_tree(dir);
  else std::fprintf(stderr, "kept %s\n", dir.c_str());
}
