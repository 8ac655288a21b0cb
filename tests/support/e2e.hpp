// The set-up the end-to-end suites (tests/device, tests/chainwatch) share: a dev chain
// (ganache) with funded accounts and a fresh ChannelManager (optionally over a test
// ERC-20), a private mosquitto whose ACL is the shipped one (packaging/mosquitto/
// picopay.acl, through picopay_acl()) plus the suite's own extra users, and the command
// lines of the real picopay-hub and picopay-agent against them. Only 127.0.0.1.
//
// A suite derives its fixture from E2ESuite (below), calls start_chain() then
// start_broker() in SetUpTestSuite (each returns false with a one-line `err`), starts the
// hub with hub_argv() and its agents with agent_argv(), and calls stop_net() in
// TearDownTestSuite (the hub first, then the broker, then the chain). The work dir stays
// for post-mortems.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "picopay/chain/manager.hpp"
#include "picopay/demo/support.hpp"
#include "picopay/device/state.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/state.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::testsupport {

// --- small helpers the suites share (a bad input is a gtest failure, not a crash) ---

// A decimal amount ("1000000000000000000"); EXPECTs that it parses.
U256 dec(const std::string& s);
// a + b and a - b; EXPECT no overflow / underflow.
U256 add(const U256& a, const U256& b);
U256 sub(const U256& a, const U256& b);
// `n` whole units of an 18-decimal token (the test token "PPT"): n * 10^18.
U256 ppt(uint64_t n);
// A "0x" + 40 hex address; EXPECTs that it parses.
Address parse_addr(const std::string& s);
// "0x" + 64 lowercase hex of a private key (the form picopay-agent --key takes).
std::string key_hex(const PrivateKey& k);
// Everything a child wrote to `fd` until it closed it (a one-shot command's stdout).
std::string read_all(int fd);

// The hub's retained status of a channel (the JSON it publishes on
// picopay/v1/hub/<hub>/status/<user>) agrees with `s`, a device's double-signed state: the
// same txCountGlobal and the same two balances of the channel's asset (wei, or tokens if
// `tokens`). False if the JSON does not parse or lacks one of these fields.
bool hub_status_agrees(const std::string& status_json, const ChannelState& s, bool tokens = false);

// The broker password the suites give a device key: "pw-" + the first 8 hex digits of its
// address (its username is the lowercase 0x address, as the shipped ACL wants).
std::string device_password(const std::string& key_hex);

// The fixed accounts of start_broker(): the hub ("hub"/"hubpw") and the suite's observer
// or adversary ("test"/"testpw", whose rights are the suite's extra ACL).
inline const char* const kHubUser = "hub";
inline const char* const kHubPassword = "hubpw";
inline const char* const kTestUser = "test";
inline const char* const kTestPassword = "testpw";

struct E2EOptions {
  std::string name;                 // work dir /tmp/picopay-<name>-XXXXXX
  int devices = 0;                  // random device keys (E2ENet::keys), broker users each
  std::vector<std::string> funded;  // more keys ("0x" hex) funded on the chain, no broker user
  bool token = false;               // deploy TestToken first; the ChannelManager holds it
  uint64_t challenge_period_s = 60; // the contract's minimum
};

class E2ENet {
 public:
  E2ENet() = default;
  ~E2ENet();
  E2ENet(const E2ENet&) = delete;
  E2ENet& operator=(const E2ENet&) = delete;

  // Makes the work dir, a random hub key and `devices` random device keys, starts the dev
  // chain (devchain: every key 1000 ETH, DevChain::start), opens the hub's wallet and deploys
  // (TestToken and) ChannelManager(hub, challenge_period_s, token). Reserve funding and
  // token minting are the suite's (fund_reserve(), mint()).
  bool start_chain(const E2EOptions& o, std::string& err);

  // Starts mosquitto (work/broker) with the users hub, test, every device key
  // (address, device_password()) and `extra_users`; the ACL is the shipped one (hub
  // username "hub") followed by `extra_acl` (the test user's rights, more users).
  bool start_broker(const std::vector<demo::BrokerUser>& extra_users, const std::string& extra_acl,
                    std::string& err);

  // The hub sends `wei` to the contract (its reserve).
  bool fund_reserve(const U256& wei, std::string& err);
  // The hub (TestToken's minter) mints `amount` of the token to `to`.
  bool mint(const Address& to, const U256& amount, std::string& err);

  // picopay-hub against this broker (user hub), chain and contract, store work/hub.db,
  // then `extra`. Start it with demo::Child::start(argv, hub_log()).
  std::vector<std::string> hub_argv(const std::vector<std::string>& extra = {}) const;
  std::string hub_log() const { return work + "/hub.log"; }

  // picopay-agent [cmd] --name NAME --state-dir DIR --broker ... --password ... --hub ...
  // --contract ... --key KEY --rpc ... for device key `idx` (keys[idx]); the suite appends
  // its own options (meter, price, deposit, token).
  std::vector<std::string> agent_argv(const std::string& cmd, const std::string& name, int idx,
                                      const std::string& state_dir) const;

  // A clean-start MQTT client login as the test user on this broker.
  mqtt::Options observer_options(const std::string& client_id) const;

  std::string work;                 // the work dir (chain, broker, hub store and log)
  std::string hub_key, hub_addr;    // "0x" hex key, lowercase 0x address
  std::vector<std::string> keys;    // device keys ("0x" hex)
  std::string contract;             // the ChannelManager as a lowercase 0x address
  Address cm_addr{}, token{};       // token is zero without E2EOptions::token
  // Members in start order: destroyed hub first, chain last.
  demo::DevChain devchain;
  std::unique_ptr<chain::RpcClient> rpc;
  std::unique_ptr<chain::Wallet> hub_wallet;
  demo::MosquittoBroker broker;
  demo::Child hub;
};

// A gtest fixture base for a suite that shares one E2ENet for all its tests, with the
// net's parts under the short names the suites use. CRTP (`class Flows : public
// E2ESuite<Flows>`): each suite has its own. The suite's SetUpTestSuite calls
// start_chain() and start_broker() (ASSERT_TRUE(...) << err), its TearDownTestSuite
// stops its own clients, then calls stop_net().
template <class Suite>
class E2ESuite : public ::testing::Test {
 protected:
  // E2ENet::start_chain; then work_, the keys, contract_, cm_addr_, token_, chain_, rpc_
  // and hub_wallet_ are set.
  static bool start_chain(const E2EOptions& o, std::string& err) {
    net_ = new E2ENet;
    if (!net_->start_chain(o, err)) return false;
    work_ = net_->work;
    hub_key_ = net_->hub_key;
    hub_addr_ = net_->hub_addr;
    keys_ = net_->keys;
    contract_ = net_->contract;
    cm_addr_ = net_->cm_addr;
    token_ = net_->token;
    chain_ = &net_->devchain;
    rpc_ = net_->rpc.get();
    hub_wallet_ = net_->hub_wallet.get();
    return true;
  }
  // E2ENet::start_broker (after start_chain); then broker_ and hub_ (not started) are set.
  static bool start_broker(const std::vector<demo::BrokerUser>& extra_users, const std::string& extra_acl,
                           std::string& err) {
    broker_ = &net_->broker;
    hub_ = &net_->hub;
    return net_->start_broker(extra_users, extra_acl, err);
  }
  // The agent state stored in `dir` (device::state_load); false while there is none.
  static bool load(const std::string& dir, device::AgentState& s) {
    std::string err;
    return device::state_load(dir, s, err);
  }
  // Stops the hub, the broker and the chain (in that order).
  static void stop_net() {
    delete net_;
    net_ = nullptr;
    chain_ = nullptr;
    rpc_ = nullptr;
    hub_wallet_ = nullptr;
    broker_ = nullptr;
    hub_ = nullptr;
  }

  static inline E2ENet* net_ = nullptr;
  static inline std::string work_, hub_key_, hub_addr_, contract_;
  static inline std::vector<std::string> keys_;
  static inline Address cm_addr_{}, token_{};
  static inline demo::DevChain* chain_ = nullptr;
  static inline chain::RpcClient* rpc_ = nullptr;
  static inline chain::Wallet* hub_wallet_ = nullptr;
  static inline demo::MosquittoBroker* broker_ = nullptr;
  static inline demo::Child* hub_ = nullptr;
};

}  // namespace picopay::testsupport
