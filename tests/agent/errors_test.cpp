// Loud errors with a real mosquitto (tests/support broker fixture): the agent exits 1 with
// one clear line when the broker refuses its password, when no broker answers within
// --connect-timeout-s and when the RPC URL is dead; a meter topic the ACL hides gives a
// warning; a second hub (or agent) with the same client id stops the first one (no
// flapping); SIGHUP is refused.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <vector>

#include "support/broker.hpp"
#include "support/process.hpp"

using namespace picopay::testsupport;

namespace {

const char* kKey = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const char* kAddr = "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23";  // of kKey
const char* kOther = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";

class Errors : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir("picopay-errors"); }
  void TearDown() override { remove_tree(dir_); }
  std::vector<std::string> agent(int port, const std::vector<std::string>& extra) {
    std::vector<std::string> a = {PICOPAY_AGENT_BIN, "--state-dir", dir_ + "/agent", "--hub", kOther, "--contract",
                                  kOther, "--private-key", kKey, "--broker", "127.0.0.1:" + std::to_string(port)};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  // Waits (bounded) until `log` holds `what`.
  bool wait_for(const std::string& log, const std::string& what, int ms = 30000) {
    for (int i = 0; i < ms / 100; ++i) {
      if (read_file(log).find(what) != std::string::npos) return true;
      usleep(100000);
    }
    return false;
  }
  // Waits (bounded) until `log` holds `what` at least `n` times.
  bool wait_count(const std::string& log, const std::string& what, size_t n, int ms = 30000) {
    for (int i = 0; i < ms / 100; ++i) {
      const std::string t = read_file(log);
      size_t c = 0;
      for (size_t at = t.find(what); at != std::string::npos; at = t.find(what, at + 1)) ++c;
      if (c >= n) return true;
      usleep(100000);
    }
    return false;
  }
  std::string dir_;
};

}  // namespace

TEST_F(Errors, AgentExitsOnABadBrokerPassword) {
  BrokerOptions o;
  o.users = {{"dev", "right"}};
  Broker b(o);
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  const std::string log = dir_ + "/agent.log";
  EXPECT_EQ(run_command(agent(b.port(), {"--broker-user", "dev", "--broker-password", "wrong"}), log), 1);
  const std::string text = read_file(log);
  EXPECT_NE(text.find("refused the connection"), std::string::npos) << text;
  // mosquitto 2 answers a wrong password with v5 reason 0x87 "Not authorized" (0x86 "Bad
  // user name or password" from other brokers): the reason text as libmosquitto names it
  EXPECT_TRUE(text.find("CONNACK refused: Not authorized") != std::string::npos ||
              text.find("CONNACK refused: Bad user name or password") != std::string::npos)
      << text;
  EXPECT_EQ(text.find("Granted QoS"), std::string::npos) << text;  // the old wrong reason string
}

TEST_F(Errors, AgentExitsWhenNoBrokerAnswers) {
  const int port = free_port();
  const std::string log = dir_ + "/agent.log";
  EXPECT_EQ(run_command(agent(port, {"--connect-timeout-s", "2"}), log), 1);
  EXPECT_NE(read_file(log).find("cannot connect to the broker at 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << read_file(log);
}

TEST_F(Errors, AgentExitsWhenTheRpcIsDead) {
  Broker b;
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  const std::string log = dir_ + "/agent.log";
  EXPECT_EQ(run_command(agent(b.port(), {"--rpc-url", "http://127.0.0.1:" + std::to_string(free_port())}), log), 1);
  EXPECT_NE(read_file(log).find("cannot reach the Ethereum node"), std::string::npos) << read_file(log);
}

TEST_F(Errors, AMeterTopicTheAclHidesIsReported) {
  BrokerOptions o;
  o.users = {{"hub", "hub-pass"}, {kAddr, "dev-pass"}};
  o.acl = picopay_acl("hub");
  Broker b(o);
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  const std::string log = dir_ + "/agent.log";
  Process p;
  ASSERT_TRUE(p.start(agent(b.port(), {"--broker-user", kAddr, "--broker-password", "dev-pass", "--meter",
                                       "tasmota:tele/charger1/SENSOR", "--no-reading-warn-s", "1"}),
                      log));
  EXPECT_TRUE(wait_for(log, "no meter reading on tele/charger1/SENSOR")) << read_file(log);
  EXPECT_NE(read_file(log).find("broker ACL"), std::string::npos);
  p.terminate();
}

// A second hub with the same client id. The mosquitto in Debian (2.0.11) closes the first
// connection without a DISCONNECT carrying 0x8E "Session taken over" (the client sees "The
// connection was lost"), so the clients claim their id on a retained topic with an
// instance nonce (picopay_mqtt client.hpp claim_client_id): the first hub, reconnecting,
// reads the second's claim and stops with one clear line and exit 3; the second, which
// saw the first's old claim when it started, keeps serving.
TEST_F(Errors, ASecondHubWithTheSameClientIdStopsTheFirst) {
  Broker b;
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  auto hub = [&](const std::string& name) {
    return std::vector<std::string>{PICOPAY_HUB_BIN, "--broker", "127.0.0.1:" + std::to_string(b.port()),
                                    "--contract", kOther, "--private-key", kKey, "--db", dir_ + "/" + name + ".db",
                                    "--dev-skip-chain-checks"};
  };
  Process first, second;
  ASSERT_TRUE(first.start(hub("a"), dir_ + "/a.log"));
  ASSERT_TRUE(wait_for(dir_ + "/a.log", "connected to broker")) << read_file(dir_ + "/a.log");
  ASSERT_TRUE(second.start(hub("b"), dir_ + "/b.log"));
  // the first hub stops with a clear fatal line and exit 3 instead of taking the id back
  EXPECT_EQ(first.wait(30000), 3) << read_file(dir_ + "/a.log");
  const std::string a = read_file(dir_ + "/a.log");
  EXPECT_NE(a.find("client id 'picopay-hub-" + std::string(kAddr) + "' is in use by another process"),
            std::string::npos)
      << a;
  EXPECT_NE(a.find("a second picopay-hub with the same client id"), std::string::npos) << a;
  // the first's last reconnect took the session from the second once more: the second
  // reconnected, read its own claim, and serves again
  ASSERT_TRUE(wait_count(dir_ + "/b.log", "connected to broker", 2)) << read_file(dir_ + "/b.log");
  EXPECT_TRUE(second.running()) << read_file(dir_ + "/b.log");
  EXPECT_EQ(read_file(dir_ + "/b.log").find("in use by another process"), std::string::npos)
      << read_file(dir_ + "/b.log");
  second.terminate();
}

// A hub that restarts (the same client id, a new process) is not taken for a second one:
// the old process's retained claim is the previous holder's; and a lost connection (a
// broker restart) later finds its own claim.
TEST_F(Errors, ARestartedHubKeepsItsClientId) {
  Broker b;
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  const std::vector<std::string> hub = {PICOPAY_HUB_BIN, "--broker", "127.0.0.1:" + std::to_string(b.port()),
                                        "--contract", kOther, "--private-key", kKey, "--db", dir_ + "/h.db",
                                        "--dev-skip-chain-checks"};
  for (int round = 0; round < 2; ++round) {
    Process p;
    const std::string log = dir_ + "/h" + std::to_string(round) + ".log";
    ASSERT_TRUE(p.start(hub, log));
    ASSERT_TRUE(wait_for(log, "connected to broker")) << read_file(log);
    if (round == 0) {
      p.kill9();  // a crash: the retained claim stays
    } else {
      b.stop();
      ASSERT_TRUE(b.restart(err)) << err;
      ASSERT_TRUE(wait_count(log, "connected to broker", 2)) << read_file(log);
      EXPECT_TRUE(p.running()) << read_file(log);
      EXPECT_EQ(read_file(log).find("in use by another process"), std::string::npos) << read_file(log);
      p.terminate();
    }
  }
}

// The same under the shipped broker setup (packaging/mosquitto: passwords, ACL, client id
// = username): a device's claim lives under its own username (the ACL's
// picopay/v1/claim/%u/+), so a second agent with the same key stops the first.
TEST_F(Errors, ASecondAgentWithTheSameKeyStopsTheFirstUnderTheShippedAcl) {
  BrokerOptions o;
  o.users = {{"hub", "hub-pass"}, {kAddr, "dev-pass"}};
  o.acl = picopay_acl("hub");
  Broker b(o);
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  auto agent_in = [&](const std::string& name) {
    std::vector<std::string> a = agent(b.port(), {"--broker-user", kAddr, "--broker-password", "dev-pass"});
    a[2] = dir_ + "/" + name;  // --state-dir
    return a;
  };
  Process first, second;
  ASSERT_TRUE(first.start(agent_in("a"), dir_ + "/a.log"));
  ASSERT_TRUE(wait_for(dir_ + "/a.log", "connected to broker")) << read_file(dir_ + "/a.log");
  ASSERT_TRUE(second.start(agent_in("b"), dir_ + "/b.log"));
  EXPECT_EQ(first.wait(30000), 1) << read_file(dir_ + "/a.log");
  const std::string a = read_file(dir_ + "/a.log");
  EXPECT_NE(a.find("is in use by another process"), std::string::npos) << a;
  EXPECT_NE(a.find("picopay/v1/claim/" + std::string(kAddr) + "/"), std::string::npos) << a;
  EXPECT_TRUE(second.running()) << read_file(dir_ + "/b.log");
  second.terminate();
}

// SIGHUP is refused, not fatal: the agent does not reload its config, says so in one
// line and keeps running (the default action would end it; docs/install.md).
TEST_F(Errors, AgentRefusesSighupAndKeepsRunning) {
  Broker b;
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  const std::string log = dir_ + "/agent.log";
  Process p;
  ASSERT_TRUE(p.start(agent(b.port(), {}), log));
  ASSERT_TRUE(wait_for(log, "connected to broker")) << read_file(log);
  ASSERT_EQ(::kill(p.pid(), SIGHUP), 0);
  EXPECT_TRUE(wait_for(log, "picopay-agent: SIGHUP ignored: no reload, restart the agent to apply a new config"))
      << read_file(log);
  EXPECT_TRUE(p.running()) << read_file(log);
  p.terminate();
}
