// The `picopay` chain transaction subcommands as a user runs them: the real binary
// against a real ganache dev chain (label chain). --json gives one object with the
// transaction hash, block, gas used, the addresses and the amounts as strings in wei and
// in ether; every bad input is one line on stderr, nothing on stdout, a non-zero exit, and
// no transaction (the key's nonce and the chain's block number do not move).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <cjson/cJSON.h>

#include "devchain.hpp"
#include "picopay/chain/rpc.hpp"

namespace {

using picopay::Address;
using picopay::chain::RpcClient;

const char* kHubKey = "0x1111111111111111111111111111111111111111111111111111111111111111";
const char* kHubAddr = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A";  // of kHubKey
const char* kUserKey = "0x2222222222222222222222222222222222222222222222222222222222222222";
const char* kUserAddr = "0x1563915e194D8CfBA1943570603F7606A3115508";  // of kUserKey

struct CliRun {
  int rc = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class CliTx : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    chain_ = new picopay::test::DevChain();
    ASSERT_TRUE(chain_->start({kHubKey, kUserKey})) << chain_->error();
  }
  static void TearDownTestSuite() {
    delete chain_;
    chain_ = nullptr;
  }
  void SetUp() override {
    char tmpl[] = "/tmp/picopay-clitx-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    const std::string cmd = "rm -rf '" + dir_ + "'";
    (void)std::system(cmd.c_str());
  }

  // Runs `picopay args...` with the hub's key in PICOPAY_PRIVATE_KEY (no argv warning)
  // unless `key` says otherwise ("" = no key); stdout and stderr kept apart.
  CliRun picopay(const std::vector<std::string>& args, const std::string& key = kHubKey,
              const std::vector<std::string>& env = {}) {
    const std::string out = dir_ + "/out", err = dir_ + "/err";
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::unsetenv("ETH_RPC_URL");
      ::unsetenv("ETH_KEYSTORE");
      ::unsetenv("PICOPAY_PRIVATE_KEY");
      if (!key.empty()) ::setenv("PICOPAY_PRIVATE_KEY", key.c_str(), 1);
      for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
      const int fo = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int fe = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(fo, 1);
      ::dup2(fe, 2);
      std::vector<std::string> a = {PICOPAY_CLI};
      a.insert(a.end(), args.begin(), args.end());
      std::vector<char*> av;
      for (auto& s : a) av.push_back(s.data());
      av.push_back(nullptr);
      ::execv(av[0], av.data());
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    CliRun r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }
  // Deploys a ChannelManager of the hub (challenge period 60 s); its address.
  std::string deploy() {
    CliRun r = picopay({"deploy", "--rpc-url", chain_->url(), "--hub", kHubAddr, "--challenge-period", "60",
                     "--artifact", std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/ChannelManager.json", "--json"});
    EXPECT_EQ(r.rc, 0) << r.err;
    cJSON* j = cJSON_Parse(r.out.c_str());
    std::string addr;
    if (j && cJSON_IsString(cJSON_GetObjectItem(j, "contract")))
      addr = cJSON_GetObjectItem(j, "contract")->valuestring;
    cJSON_Delete(j);
    return addr;
  }
  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  static uint64_t nonce(const char* addr) {
    RpcClient rpc(chain_->url());
    Address a;
    EXPECT_EQ(picopay::address_parse(addr, std::strlen(addr), a), picopay::Status::Ok);
    auto n = rpc.transaction_count(a, "latest");
    EXPECT_TRUE(n.ok());
    return n.ok() ? *n : 0;
  }
  static uint64_t block() {
    RpcClient rpc(chain_->url());
    auto b = rpc.block_number();
    EXPECT_TRUE(b.ok());
    return b.ok() ? *b : 0;
  }
  // The failure contract: exit code `rc`, nothing on stdout, exactly one line on stderr
  // that contains `what`.
  static void expect_one_line(const CliRun& r, int rc, const std::string& what) {
    EXPECT_EQ(r.rc, rc) << r.err;
    EXPECT_EQ(r.out, "");
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  }

  static picopay::test::DevChain* chain_;
  std::string dir_;
};

picopay::test::DevChain* CliTx::chain_ = nullptr;

const char* str(const cJSON* o, const char* k) {
  const cJSON* v = cJSON_GetObjectItem(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}
bool is_hex(const std::string& s, size_t digits) {
  if (s.size() != 2 + digits || s.compare(0, 2, "0x") != 0) return false;
  for (size_t i = 2; i < s.size(); ++i)
    if (!std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

}  // namespace

TEST_F(CliTx, DeployFundAndWithdrawTheReservePrintJson) {
  CliRun r = picopay({"deploy", "--rpc-url", chain_->url(), "--hub", kHubAddr, "--challenge-period", "60", "--artifact",
                   std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/ChannelManager.json", "--json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << r.out;  // one line
  cJSON* j = cJSON_Parse(r.out.c_str());
  ASSERT_NE(j, nullptr) << r.out;
  EXPECT_STREQ(str(j, "command"), "deploy");
  EXPECT_STREQ(str(j, "method"), "deploy");
  EXPECT_STREQ(str(j, "from"), kHubAddr);  // EIP-55
  EXPECT_STREQ(str(j, "hub"), kHubAddr);
  EXPECT_STREQ(str(j, "token"), "0x0000000000000000000000000000000000000000");
  const std::string cm = str(j, "contract");
  EXPECT_TRUE(is_hex(cm, 40)) << cm;
  EXPECT_TRUE(is_hex(str(j, "transactionHash"), 64)) << r.out;
  EXPECT_GE(cJSON_GetObjectItem(j, "blockNumber")->valuedouble, 1.0);
  EXPECT_GT(cJSON_GetObjectItem(j, "gasUsed")->valuedouble, 21000.0);
  EXPECT_EQ(cJSON_GetObjectItem(j, "challengePeriod")->valuedouble, 60.0);
  const cJSON* txs = cJSON_GetObjectItem(j, "transactions");
  ASSERT_TRUE(cJSON_IsArray(txs));
  ASSERT_EQ(cJSON_GetArraySize(txs), 1);
  const cJSON* t0 = cJSON_GetArrayItem(txs, 0);
  EXPECT_STREQ(str(t0, "transactionHash"), str(j, "transactionHash"));
  EXPECT_TRUE(cJSON_IsString(cJSON_GetObjectItem(cJSON_GetObjectItem(t0, "fee"), "wei")));
  cJSON_Delete(j);

  const uint64_t block0 = block();
  r = picopay({"deposit", "--rpc-url", chain_->url(), "--contract", cm, "--reserve", "1.5ether", "--json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  j = cJSON_Parse(r.out.c_str());
  ASSERT_NE(j, nullptr) << r.out;
  EXPECT_STREQ(str(j, "command"), "deposit");
  EXPECT_STREQ(str(j, "method"), "fundReserve");
  EXPECT_STREQ(str(j, "contract"), cm.c_str());
  EXPECT_STREQ(str(j, "hub"), kHubAddr);  // checked: this key is the contract's hub()
  EXPECT_STREQ(str(cJSON_GetObjectItem(j, "amount"), "wei"), "1500000000000000000");
  EXPECT_STREQ(str(cJSON_GetObjectItem(j, "amount"), "ether"), "1.5");
  EXPECT_EQ(cJSON_GetObjectItem(j, "blockNumber")->valuedouble, static_cast<double>(block0 + 1));
  cJSON_Delete(j);
  RpcClient rpc(chain_->url());
  Address cma;
  ASSERT_EQ(picopay::address_parse(cm.data(), cm.size(), cma), picopay::Status::Ok);
  auto bal = rpc.balance(cma);
  ASSERT_TRUE(bal.ok());
  EXPECT_EQ(picopay::chain::hex_quantity(*bal), "0x14d1120d7b160000");  // 1.5 ether on the contract

  r = picopay({"withdraw", "--rpc-url", chain_->url(), "--contract", cm, "--reserve-wei", "0.25ether", "--json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  j = cJSON_Parse(r.out.c_str());
  ASSERT_NE(j, nullptr) << r.out;
  EXPECT_STREQ(str(j, "method"), "hubContractWithdraw");
  EXPECT_STREQ(str(cJSON_GetObjectItem(j, "wei"), "wei"), "250000000000000000");
  EXPECT_STREQ(str(cJSON_GetObjectItem(j, "wei"), "ether"), "0.25");
  EXPECT_STREQ(str(cJSON_GetObjectItem(j, "tokens"), "baseUnits"), "0");
  cJSON_Delete(j);

  // without --json: the text lines scripts (examples/ev-charger) read
  r = picopay({"deposit", "--rpc-url", chain_->url(), "--contract", cm, "--reserve", "1gwei"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind("fundReserve: tx 0x", 0), 0u) << r.out;
}

TEST_F(CliTx, BadInputIsOneLineAndSendsNothing) {
  const std::string cm = deploy();
  ASSERT_FALSE(cm.empty());
  const std::string url = chain_->url();
  const uint64_t hub_nonce = nonce(kHubAddr), user_nonce = nonce(kUserAddr), block0 = block();
  const std::vector<std::string> base = {"--rpc-url", url, "--contract", cm};
  auto with = [&](std::vector<std::string> head, const std::vector<std::string>& tail) {
    head.insert(head.end(), tail.begin(), tail.end());
    return head;
  };
  // usage errors (2): caught before any RPC call
  expect_one_line(picopay(with({"deposit"}, with(base, {"--reserve", "1.5foo"}))), 2, "--reserve");
  expect_one_line(picopay(with({"deposit"}, with(base, {"--reserve", "0.5wei"}))), 2, "--reserve");
  expect_one_line(picopay({"deposit", "--rpc-url", url, "--contract", "0x12", "--reserve", "1"}), 2, "--contract");
  expect_one_line(picopay({"deposit", "--rpc-url", url, "--contract",
                           "0x5AAEB6053F3E94C9b9A09f33669435E7Ef1BeAed", "--reserve", "1"}),
                  2, "EIP-55");
  expect_one_line(picopay(with({"deposit"}, with(base, {"--reserve", "1", "--bogus", "1"}))), 2, "--bogus");
  expect_one_line(picopay({"deposit", "--contract", cm, "--reserve", "1"}), 2, "--rpc-url is required");
  expect_one_line(picopay(with({"deposit"}, base)), 2, "--state is required");
  expect_one_line(picopay(with({"withdraw"}, with(base, {"--reserve-wei", "1", "--state", "x.json"}))), 2, "not both");
  expect_one_line(picopay(with({"exit"}, base)), 2, "exactly one of --user or --state");
  expect_one_line(picopay(with({"empty-channel"}, base)), 2, "--user is required");
  expect_one_line(picopay(with({"exit"}, with(base, {"--user", kUserAddr})), ""), 2, "a key is required");
  expect_one_line(picopay({"deploy", "--rpc-url", url, "--hub", kHubAddr, "--challenge-period", "59"}), 2,
                  "--challenge-period");
  expect_one_line(picopay({"deploy", "--rpc-url", url, "--challenge-period", "60"}), 2, "--hub is required");
  // failures (1): files, keys, and the ChannelManager check before anything is sent
  expect_one_line(picopay(with({"deposit"}, with(base, {"--state", dir_ + "/missing.json"}))), 1, "missing.json");
  expect_one_line(picopay(with({"deposit"}, with(base, {"--state", write("bad.json", "{\"user\":")}))), 1,
                  "bad.json");
  expect_one_line(picopay(with({"deposit"}, with(base, {"--reserve", "1"})), "0x1234"), 1,
                  "private key must be 0x followed by 64 hex digits");
  expect_one_line(picopay(with({"deposit"}, with(base, {"--reserve", "1", "--keystore", dir_ + "/none.key"})), ""),
                  1, "cannot read key file");
  // an address without code: the wei would be lost
  expect_one_line(picopay({"deposit", "--rpc-url", url, "--contract", kUserAddr, "--reserve", "1ether"}), 1,
                  "no contract code");
  // the ChannelManager of another hub (the user's key funding "its" reserve; or --hub)
  expect_one_line(picopay(with({"deposit"}, with(base, {"--reserve", "1ether"})), kUserKey), 1,
                  "is the ChannelManager of hub");
  expect_one_line(picopay(with({"exit"}, with(base, {"--user", kUserAddr, "--hub", kUserAddr})), kUserKey), 1,
                  "ChannelManager");
  // a dead RPC URL
  expect_one_line(picopay({"deposit", "--rpc-url", "http://127.0.0.1:1", "--contract", cm, "--reserve", "1"}), 1,
                  "127.0.0.1:1");
  // strict config files: an unknown key, a bad value, a readable file holding a key
  expect_one_line(picopay({"deposit", "--config", write("u.json", "{\"rpcUrl\":\"" + url + "\",\"contrakt\":\"x\"}"),
                           "--reserve", "1"}),
                  2, "unknown key contrakt");
  expect_one_line(picopay({"deposit", "--config", write("v.json", "{\"contract\":\"0x12\"}"), "--rpc-url", url,
                           "--reserve", "1"}),
                  2, "contract");
  expect_one_line(picopay({"deposit", "--config", write("k.json", std::string("{\"privateKey\":\"") + kHubKey + "\"}",
                                                         0644),
                           "--rpc-url", url, "--contract", cm, "--reserve", "1"},
                          ""),
                  2, "mode 0644");

  EXPECT_EQ(nonce(kHubAddr), hub_nonce);
  EXPECT_EQ(nonce(kUserAddr), user_nonce);
  EXPECT_EQ(block(), block0);
}

// Config precedence as in the other programs: defaults < --config < environment < flags;
// relative paths in the file resolve against its directory.
TEST_F(CliTx, ConfigFileEnvironmentAndFlags) {
  const std::string cm = deploy();
  ASSERT_FALSE(cm.empty());
  ::mkdir((dir_ + "/etc").c_str(), 0700);
  write("etc/hub.hex", std::string(kHubKey) + "\n");
  // the config names a dead RPC and no contract code: the environment and a flag win
  const std::string cfg = write("etc/picopay.json", "{\"rpcUrl\":\"http://127.0.0.1:1\",\"contract\":\"" +
                                                        std::string(kUserAddr) + "\",\"keyFile\":\"hub.hex\"}");
  CliRun r = picopay({"deposit", "--config", cfg, "--contract", cm, "--reserve", "2gwei", "--json"}, "",
                  {"ETH_RPC_URL=" + chain_->url()});
  ASSERT_EQ(r.rc, 0) << r.err;
  cJSON* j = cJSON_Parse(r.out.c_str());
  ASSERT_NE(j, nullptr);
  EXPECT_STREQ(str(j, "from"), kHubAddr);  // the key file named relative to the config
  EXPECT_STREQ(str(cJSON_GetObjectItem(j, "amount"), "wei"), "2000000000");
  EXPECT_STREQ(str(cJSON_GetObjectItem(j, "amount"), "ether"), "0.000000002");
  cJSON_Delete(j);
  // the config alone: its dead RPC is used (and reported)
  r = picopay({"deposit", "--config", cfg, "--reserve", "1"}, "");
  expect_one_line(r, 1, "127.0.0.1:1");
}

// picopay-hub checks at start that --contract is the ChannelManager of its key's address
// (and, through require_hub, again before each transaction): a contract of another hub is
// one clear line and a non-zero exit before the hub serves anyone.
TEST_F(CliTx, HubRefusesAChannelManagerOfAnotherHub) {
  CliRun r = picopay({"deploy", "--rpc-url", chain_->url(), "--hub", kUserAddr, "--challenge-period", "60",
                      "--artifact", std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/ChannelManager.json", "--json"});
  ASSERT_EQ(r.rc, 0) << r.err;
  cJSON* j = cJSON_Parse(r.out.c_str());
  ASSERT_NE(j, nullptr);
  const std::string other = str(j, "contract");
  cJSON_Delete(j);
  const std::string log = dir_ + "/hub.log";
  const std::string cmd = std::string("PICOPAY_PRIVATE_KEY=") + kHubKey + " timeout 60 " + PICOPAY_HUB_BIN + " --rpc-url " +
                          chain_->url() + " --contract " + other + " --db " + dir_ + "/hub.db --broker 127.0.0.1:1 > " +
                          log + " 2>&1";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  const std::string text = slurp(log);
  EXPECT_NE(text.find("is the ChannelManager of hub"), std::string::npos) << text;
  EXPECT_EQ(text.find("connected to broker"), std::string::npos) << text;
}
