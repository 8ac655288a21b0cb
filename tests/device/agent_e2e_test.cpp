// picopay-agent against real parts: a mosquitto broker (password per client, ACL) on
// 127.0.0.1, the dev chain with a fresh ChannelManager, the real picopay-hub and real
// picopay-agent processes. No timing assertions: every wait is a bounded poll.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include <cjson/cJSON.h>

#include "picopay/agent/json_state.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/demo/support.hpp"
#include "picopay/device/state.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"

#include "support/e2e.hpp"
#include "support/wait.hpp"

using namespace picopay;
using namespace picopay::testsupport;
using namespace picopay::demo;

namespace {

const char* kDeposit = "1000000000000000000";
const uint64_t kPrice = 1000;

class AgentE2E : public E2ESuite<AgentE2E> {
 protected:
  static void SetUpTestSuite() {
    std::string err;
    E2EOptions eo;
    eo.name = "agent-test";
    eo.devices = kKeys;
    ASSERT_TRUE(start_chain(eo, err)) << err;
    ASSERT_TRUE(start_broker({}, "user test\ntopic read picopay/v1/#\n", err)) << err;
    start_hub();
    obs_ = new mqtt::Client(net_->observer_options("picopay-test-observer"));
    obs_->on_message([](const mqtt::Message& m) {
      std::lock_guard<std::mutex> l(mu_);
      if (m.topic.find("/status/0x") != std::string::npos)
        (*hub_status_)[m.topic.substr(m.topic.size() - 42)] = std::string(m.payload.begin(), m.payload.end());
    });
    obs_->subscribe("picopay/v1/hub/+/status/+");
    ASSERT_TRUE(obs_->start(err)) << err;
    ASSERT_TRUE(obs_->wait_connected(10000));
  }

  static void start_hub() { ASSERT_TRUE(hub_->start(net_->hub_argv(), net_->hub_log())); }

  static void TearDownTestSuite() {
    if (obs_) obs_->stop();
    delete obs_;
    stop_net();
  }

  std::vector<std::string> agent_argv(int idx, const std::string& dir) {
    auto v = net_->agent_argv("", "dev" + std::to_string(idx), idx, dir);
    v.insert(v.end(), {"--meter", "stdin", "--price-wei", std::to_string(kPrice), "--deposit-wei", kDeposit});
    return v;
  }

  // The hub's ledger (its retained status) agrees with the device's double-signed state.
  static bool hub_agrees(const device::AgentState& s) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = hub_status_->find(mqtt::topic_address(s.user));
    return it != hub_status_->end() && hub_status_agrees(it->second, s.channel.state);
  }

  static void expect_settled(const device::AgentState& s, uint64_t wh) {
    EXPECT_EQ(s.meter.units(), wh);
    EXPECT_EQ(s.units_paid, wh);
    EXPECT_FALSE(s.has_pending);
    EXPECT_TRUE(s.channel.hasSigUser && s.channel.hasSigHub);
    EXPECT_EQ(s.wei_paid, U256::from_u64(wh * kPrice));
    EXPECT_EQ(s.channel.state.balanceWeiHub, U256::from_u64(wh * kPrice));
    U256 sum{}, dep{};
    ASSERT_EQ(u256_add(s.channel.state.balanceWeiHub, s.channel.state.balanceWeiUser, sum), Status::Ok);
    ASSERT_EQ(u256_parse_decimal(kDeposit, std::strlen(kDeposit), dep), Status::Ok);
    EXPECT_EQ(sum, dep);  // conserved
    // Signatures check: the state the device holds is evidence for both parties.
    Signer sg;
    ASSERT_EQ(sg.init(), Status::Ok);
    Hash32 h = channel_hash(s.channel.state);
    EXPECT_EQ(sg.verify_eth(h, s.channel.sigUser, s.user), Status::Ok);
    EXPECT_EQ(sg.verify_eth(h, s.channel.sigHub, s.hub), Status::Ok);
  }

  static constexpr int kKeys = 8;
  static inline mqtt::Client* obs_ = nullptr;
  static inline std::mutex mu_;
  static inline std::map<std::string, std::string>* hub_status_ = new std::map<std::string, std::string>;
};

TEST_F(AgentE2E, ManyDevicesPayAtOnce) {
  constexpr int kDevices = 4;
  constexpr int kReadings = 60;
  std::vector<std::unique_ptr<Child>> agents;
  std::vector<std::string> dirs;
  for (int i = 0; i < kDevices; ++i) {
    dirs.push_back(work_ + "/many" + std::to_string(i));
    agents.push_back(std::make_unique<Child>());
    ASSERT_TRUE(agents.back()->start(agent_argv(i, dirs.back()), dirs.back() + ".log", true));
  }
  // Cumulative readings (Wh) fed to all devices at once, then end of input.
  for (int k = 0; k <= kReadings; ++k)
    for (auto& a : agents) write_all(a->stdin_fd(), "wh " + std::to_string(500 + k * 3) + ".25\n");
  for (auto& a : agents) a->close_stdin();
  for (int i = 0; i < kDevices; ++i) EXPECT_EQ(agents[static_cast<size_t>(i)]->wait(120000), 0) << dirs[i];
  for (int i = 0; i < kDevices; ++i) {
    device::AgentState s;
    ASSERT_TRUE(load(dirs[static_cast<size_t>(i)], s));
    expect_settled(s, kReadings * 3);
    EXPECT_TRUE(poll_until([&] { return hub_agrees(s); }, 10000)) << "hub ledger differs for " << dirs[i];
  }
}

TEST_F(AgentE2E, KillNineMidStreamThenResume) {
  const std::string dir = work_ + "/crash";
  auto a = std::make_unique<Child>();
  ASSERT_TRUE(a->start(agent_argv(4, dir), dir + ".log", true));
  uint64_t wh = 0;
  write_all(a->stdin_fd(), "wh 0\n");
  // Stream readings until a few payments are double-signed, then kill -9.
  ASSERT_TRUE(poll_until(
      [&] {
        wh += 2;
        write_all(a->stdin_fd(), "wh " + std::to_string(wh) + "\n");
        device::AgentState s;
        return load(dir, s) && s.channel.state.txCountGlobal >= 6;
      },
      60000));
  a->kill9();
  device::AgentState before;
  ASSERT_TRUE(load(dir, before));
  // Restart on the same state dir: it resyncs with the hub, resolves any pending update
  // with the same bytes, and goes on from the persisted meter reading.
  auto b = std::make_unique<Child>();
  ASSERT_TRUE(b->start(agent_argv(4, dir), dir + ".2.log", true));
  for (int k = 1; k <= 20; ++k) write_all(b->stdin_fd(), "wh " + std::to_string(wh + k) + "\n");
  wh += 20;
  b->close_stdin();
  ASSERT_EQ(b->wait(120000), 0);
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  EXPECT_GE(s.channel.state.txCountGlobal, before.channel.state.txCountGlobal);
  expect_settled(s, s.meter.units());
  // Everything metered after the first reading was paid, nothing twice: the hub's
  // balance is exactly units * price, and the hub holds the very same state.
  EXPECT_EQ(s.meter.units(), wh);
  EXPECT_TRUE(poll_until([&] { return hub_agrees(s); }, 10000));
}

TEST_F(AgentE2E, BrokerRestartMidStream) {
  const std::string dir = work_ + "/brokerrestart";
  auto a = std::make_unique<Child>();
  ASSERT_TRUE(a->start(agent_argv(5, dir), dir + ".log", true));
  for (int k = 0; k <= 10; ++k) write_all(a->stdin_fd(), "wh " + std::to_string(k * 5) + "\n");
  ASSERT_TRUE(poll_until(
      [&] {
        device::AgentState s;
        return load(dir, s) && s.units_paid > 0;
      },
      60000));
  broker_->kill9();
  std::string err;
  ASSERT_TRUE(broker_->restart(err)) << err;
  for (int k = 11; k <= 30; ++k) write_all(a->stdin_fd(), "wh " + std::to_string(k * 5) + "\n");
  a->close_stdin();
  ASSERT_EQ(a->wait(120000), 0);
  device::AgentState s;
  ASSERT_TRUE(load(dir, s));
  expect_settled(s, 150);
  EXPECT_TRUE(poll_until([&] { return hub_agrees(s); }, 20000));
}

}  // namespace

namespace {
std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

// A state conflict the agent cannot resolve: its state dir restored from an older backup
// while the hub holds later double-signed states. The agent must not sign on from the old
// state; it stops with one clear line and exit status 1 (not 0, not a retry loop), and the
// restored state on disk is left as it was.
TEST_F(AgentE2E, AStateDirRestoredFromAnOldBackupStopsWithExit1) {
  const std::string dir = work_ + "/restored", backup = work_ + "/restored.bak";
  uint64_t wh = 0;
  {
    Child a;
    ASSERT_TRUE(a.start(agent_argv(6, dir), dir + ".1.log", true));
    write_all(a.stdin_fd(), "wh 0\n");
    ASSERT_TRUE(poll_until(
        [&] {
          wh += 2;
          write_all(a.stdin_fd(), "wh " + std::to_string(wh) + "\n");
          device::AgentState s;
          return load(dir, s) && s.channel.state.txCountGlobal >= 3 && !s.has_pending;
        },
        60000))
        << slurp(dir + ".1.log");
    a.close_stdin();
    ASSERT_EQ(a.wait(120000), 0) << slurp(dir + ".1.log");
  }
  ASSERT_EQ(std::system(("cp -a '" + dir + "' '" + backup + "'").c_str()), 0);
  device::AgentState old;
  ASSERT_TRUE(load(backup, old));
  {
    Child b;  // more payments after the backup
    ASSERT_TRUE(b.start(agent_argv(6, dir), dir + ".2.log", true));
    for (int k = 1; k <= 10; ++k) write_all(b.stdin_fd(), "wh " + std::to_string(wh + static_cast<uint64_t>(k)) + "\n");
    wh += 10;
    b.close_stdin();
    ASSERT_EQ(b.wait(120000), 0) << slurp(dir + ".2.log");
  }
  device::AgentState later;
  ASSERT_TRUE(load(dir, later));
  ASSERT_GT(later.channel.state.txCountGlobal, old.channel.state.txCountGlobal);
  ASSERT_EQ(std::system(("rm -rf '" + dir + "' && cp -a '" + backup + "' '" + dir + "'").c_str()), 0);
  Child c;  // on the restored (older) state
  ASSERT_TRUE(c.start(agent_argv(6, dir), dir + ".3.log", true));
  write_all(c.stdin_fd(), "wh " + std::to_string(wh + 5) + "\n");
  const int rc = c.wait(60000);
  const std::string log = slurp(dir + ".3.log");
  EXPECT_EQ(rc, 1) << log;
  EXPECT_NE(log.find("not signing any channel update"), std::string::npos) << log;
  EXPECT_NE(log.find("restored from a backup"), std::string::npos) << log;
  device::AgentState after;
  ASSERT_TRUE(load(dir, after));
  EXPECT_EQ(after.channel.state.txCountGlobal, old.channel.state.txCountGlobal);  // nothing signed on
}
