#include "support/e2e.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>

#include <cjson/cJSON.h>

#include "picopay/agent/json_state.hpp"
#include "picopay/hex.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "support/broker.hpp"

namespace picopay::testsupport {

U256 dec(const std::string& s) {
  U256 v{};
  EXPECT_EQ(u256_parse_decimal(s.c_str(), s.size(), v), Status::Ok) << s;
  return v;
}

U256 add(const U256& a, const U256& b) {
  U256 r{};
  EXPECT_EQ(u256_add(a, b, r), Status::Ok);
  return r;
}

U256 sub(const U256& a, const U256& b) {
  U256 r{};
  EXPECT_EQ(u256_sub(a, b, r), Status::Ok);
  return r;
}

U256 ppt(uint64_t n) {
  U256 r{};
  EXPECT_EQ(u256_mul(dec("1000000000000000000"), U256::from_u64(n), r), Status::Ok);
  return r;
}

Address parse_addr(const std::string& s) {
  Address a{};
  EXPECT_EQ(address_parse(s.c_str(), s.size(), a), Status::Ok) << s;
  return a;
}

std::string key_hex(const PrivateKey& k) {
  char out[2 * sizeof k.bytes + 3];
  hex_encode(k.bytes, sizeof k.bytes, out, true);
  return out;
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

bool hub_status_agrees(const std::string& status_json, const ChannelState& s, bool tokens) {
  cJSON* h = cJSON_Parse(status_json.c_str());
  const cJSON* tx = cJSON_GetObjectItem(h, "txCountGlobal");
  const cJSON* bh = cJSON_GetObjectItem(h, tokens ? "balanceTokenHub" : "balanceWeiHub");
  const cJSON* bu = cJSON_GetObjectItem(h, tokens ? "balanceTokenUser" : "balanceWeiUser");
  const bool ok = cJSON_IsNumber(tx) && static_cast<uint64_t>(tx->valuedouble) == s.txCountGlobal &&
                  cJSON_IsString(bh) && json::amount_text(tokens ? s.balanceTokenHub : s.balanceWeiHub) == bh->valuestring &&
                  cJSON_IsString(bu) && json::amount_text(tokens ? s.balanceTokenUser : s.balanceWeiUser) == bu->valuestring;
  cJSON_Delete(h);
  return ok;
}

std::string device_password(const std::string& key) { return "pw-" + demo::key_address(key).substr(2, 8); }

E2ENet::~E2ENet() = default;

bool E2ENet::start_chain(const E2EOptions& o, std::string& err) {
  std::string tmpl = "/tmp/picopay-" + o.name + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) {
    err = "mkdtemp " + tmpl + ": " + std::strerror(errno);
    return false;
  }
  work = tmpl;
  hub_key = demo::random_key_hex();
  hub_addr = demo::key_address(hub_key);
  for (int i = 0; i < o.devices; ++i) keys.push_back(demo::random_key_hex());
  std::vector<std::string> all = keys;
  all.push_back(hub_key);
  all.insert(all.end(), o.funded.begin(), o.funded.end());
  if (!devchain.start(work, all, err)) return false;
  rpc = std::make_unique<chain::RpcClient>(devchain.url());
  PrivateKey hk{};
  if (private_key_parse(hub_key.c_str(), hub_key.size(), hk) != Status::Ok) {
    err = "the hub key does not parse";
    return false;
  }
  hub_wallet = std::make_unique<chain::Wallet>(*rpc, hk);
  if (auto r = hub_wallet->init(); !r.ok()) {
    err = "hub wallet: " + r.error().to_string();
    return false;
  }
  if (o.token) {
    auto tart = chain::load_artifact(chain::default_artifact_dir() + "/TestToken.json");
    if (!tart.ok()) {
      err = "TestToken artifact: " + tart.error().to_string();
      return false;
    }
    auto tok = chain::deploy_artifact(*hub_wallet, *tart, {});
    if (!tok.ok()) {
      err = "deploy TestToken: " + tok.error().to_string();
      return false;
    }
    token = *tok;
  }
  auto art = chain::load_artifact(chain::default_artifact_dir() + "/ChannelManager.json");
  if (!art.ok()) {
    err = "ChannelManager artifact: " + art.error().to_string();
    return false;
  }
  auto addr = chain::deploy_channel_manager(*hub_wallet, *art, hub_wallet->address(), o.challenge_period_s, token);
  if (!addr.ok()) {
    err = "deploy ChannelManager: " + addr.error().to_string();
    return false;
  }
  cm_addr = *addr;
  contract = mqtt::topic_address(*addr);
  return true;
}

bool E2ENet::start_broker(const std::vector<demo::BrokerUser>& extra_users, const std::string& extra_acl,
                          std::string& err) {
  std::vector<demo::BrokerUser> users = {{kHubUser, kHubPassword}, {kTestUser, kTestPassword}};
  for (auto& k : keys) users.push_back({demo::key_address(k), device_password(k)});
  users.insert(users.end(), extra_users.begin(), extra_users.end());
  // The device patterns are the shipped ones (one source: packaging/mosquitto/picopay.acl).
  std::string acl = picopay_acl(kHubUser);
  if (!acl.empty() && acl.back() != '\n') acl += '\n';
  acl += "\n" + extra_acl;
  return broker.start(work + "/broker", users, acl, err);
}

bool E2ENet::fund_reserve(const U256& wei, std::string& err) {
  chain::ChannelManagerClient cm(*hub_wallet, cm_addr);
  auto r = cm.fund_reserve(wei);
  if (!r.ok()) err = "fund_reserve: " + r.error().to_string();
  return r.ok();
}

bool E2ENet::mint(const Address& to, const U256& amount, std::string& err) {
  auto r = chain::erc20_mint(*hub_wallet, token, to, amount);
  if (!r.ok()) err = "erc20_mint: " + r.error().to_string();
  return r.ok();
}

std::vector<std::string> E2ENet::hub_argv(const std::vector<std::string>& extra) const {
  std::vector<std::string> v = {demo::bin_dir() + "/picopay-hub", "--broker-port", std::to_string(broker.port()),
                                "--broker-user", kHubUser, "--broker-password", kHubPassword, "--private-key", hub_key,
                                "--contract", contract, "--rpc-url", devchain.url(), "--db", work + "/hub.db"};
  v.insert(v.end(), extra.begin(), extra.end());
  return v;
}

std::vector<std::string> E2ENet::agent_argv(const std::string& cmd, const std::string& name, int idx,
                                            const std::string& state_dir) const {
  const std::string& key = keys.at(static_cast<size_t>(idx));
  std::vector<std::string> v = {demo::bin_dir() + "/picopay-agent"};
  if (!cmd.empty()) v.push_back(cmd);
  std::vector<std::string> rest = {"--name", name, "--state-dir", state_dir, "--broker",
                                   "127.0.0.1:" + std::to_string(broker.port()), "--password", device_password(key),
                                   "--hub", hub_addr, "--contract", contract, "--key", key, "--rpc", devchain.url()};
  v.insert(v.end(), rest.begin(), rest.end());
  return v;
}

mqtt::Options E2ENet::observer_options(const std::string& client_id) const {
  mqtt::Options o;
  o.port = broker.port();
  o.client_id = client_id;
  o.username = kTestUser;
  o.password = kTestPassword;
  o.clean_start = true;
  return o;
}

}  // namespace picopay::testsupport
