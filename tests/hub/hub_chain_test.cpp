// picopay-hub against a real chain: a ganache dev chain (contracts/devchain.sh on a free
// 127.0.0.1 port), a ChannelManager deployed per test by picopay_chain, the hub's reserve
// funded, a real mosquitto, the real picopay-hub binary with --rpc-url, simulated devices.
// Covers hub collateral for a payee channel (ProposePendingDeposit countersigned by the
// payee -> hubAuthorizedUpdate -> ConfirmPending -> the mirrored OpenThread), the same
// with the hub SIGKILLed right after the countersignature is committed (before the
// on-chain call, and between the call and the ConfirmPending), and a user's ConfirmPending
// for a deposit that is not on chain. No timing assertions; every wait is bounded.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <thread>

#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/codec.hpp"
#include "hub_ledger.hpp"
#include "sim_device.hpp"
#include "support/broker.hpp"

using namespace picopay;
using namespace picopay::testsupport;

namespace {

constexpr uint32_t kHubIndex = 0xABCDEF;
constexpr uint32_t kPayer = 1, kPayee = 2;
constexpr uint64_t kCollateral = 1000;  // --collateral-wei
constexpr uint64_t kPayerDeposit = 5000;
constexpr uint64_t kThreadWei = 300;

U256 u(uint64_t v) { return U256::from_u64(v); }
U256 sub(const U256& a, const U256& b) {
  U256 r{};
  EXPECT_EQ(u256_sub(a, b, r), Status::Ok);
  return r;
}
U256 add(const U256& a, const U256& b) {
  U256 r{};
  EXPECT_EQ(u256_add(a, b, r), Status::Ok);
  return r;
}

template <typename T>
T must(chain::Result<T> r, const char* what) {
  if (!r.ok()) {
    ADD_FAILURE() << what << ": " << r.error().to_string();
    std::abort();
  }
  return std::move(*r);
}
#define MUST(expr) must((expr), #expr)

SignedThreadState signed_thread(const Address& contract, const SimDevice& payer, const Address& payee, uint64_t id,
                                uint64_t sender_wei) {
  SignedThreadState t{};
  t.state = thread_state_zero();
  t.state.contractAddress = contract;
  t.state.sender = payer.address();
  t.state.receiver = payee;
  t.state.threadId = id;
  t.state.balanceWeiSender = U256::from_u64(sender_wei);
  Signer s;
  EXPECT_EQ(s.init(), Status::Ok);
  EXPECT_EQ(s.sign_eth(payer.key(), thread_hash(t.state), t.sigA), Status::Ok);
  t.hasSigA = true;
  return t;
}

// contracts/devchain.sh (ganache) on a free 127.0.0.1 port; killed with the fixture.
class DevChainProcess {
 public:
  bool start(const std::string& dir, const std::vector<std::string>& keys, std::string& err) {
    const int port = free_port();
    const std::string port_file = dir + "/devchain.url";
    std::vector<std::string> argv = {"/bin/sh", PICOPAY_DEVCHAIN_SH, "--port", std::to_string(port), "--port-file",
                                     port_file};
    for (const auto& k : keys) {
      argv.push_back("--account");
      argv.push_back(k + ",1000000000000000000000");
    }
    // devchain.sh runs `node` from PATH: put the configured node first.
    std::string node = PICOPAY_TEST_NODE;
    std::string path = node.find('/') != std::string::npos ? node.substr(0, node.rfind('/')) : "";
    const char* old = std::getenv("PATH");
    path += std::string(path.empty() ? "" : ":") + (old ? old : "/usr/bin:/bin");
    if (!proc_.start(argv, dir + "/devchain.log", {"PATH=" + path})) {
      err = "cannot start devchain.sh";
      return false;
    }
    for (int i = 0; i < 1200; ++i) {  // up to 60 s
      url_ = read_file(port_file);
      while (!url_.empty() && (url_.back() == '\n' || url_.back() == '\r')) url_.pop_back();
      if (!url_.empty()) return true;
      if (!proc_.running()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    err = "dev chain did not start: " + read_file(dir + "/devchain.log");
    return false;
  }
  const std::string& url() const { return url_; }

 private:
  Process proc_;
  std::string url_;
};

class HubChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("picopay-hubchain");
    Signer s;
    ASSERT_EQ(s.init(), Status::Ok);
    ASSERT_EQ(s.address_of(test_key(kHubIndex), hub_addr_), Status::Ok);
    std::string err;
    ASSERT_TRUE(chain_.start(dir_, {hex_key(test_key(kHubIndex)), hex_key(test_key(kPayer)),
                                    hex_key(test_key(kPayee))},
                             err))
        << err;
    rpc_ = std::make_unique<chain::RpcClient>(chain_.url());
    hub_wallet_ = std::make_unique<chain::Wallet>(*rpc_, test_key(kHubIndex));
    auto st = hub_wallet_->init();
    ASSERT_TRUE(st.ok()) << st.error().to_string();
    chain::Artifact art = MUST(chain::load_artifact(std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/ChannelManager.json"));
    contract_ = MUST(chain::deploy_channel_manager(*hub_wallet_, art, hub_addr_, 3600, Address{}));
    hubcm_ = std::make_unique<chain::ChannelManagerClient>(*hub_wallet_, contract_);
    MUST(hubcm_->fund_reserve(u(1000000)));  // the hub's reserve pays its collateral
    reserve0_ = MUST(hubcm_->hub_reserve_wei());
    ASSERT_EQ(reserve0_, u(1000000));

    BrokerOptions o;
    o.users.push_back({"hub", "hub-pass"});
    for (uint32_t i : {kPayer, kPayee}) {
      Address a{};
      ASSERT_EQ(s.address_of(test_key(i), a), Status::Ok);
      o.users.push_back({mqtt::topic_address(a), "pw-" + std::to_string(i)});
    }
    o.acl = picopay_acl("hub");
    o.dir = dir_ + "/broker";
    broker_ = std::make_unique<Broker>(o);
    ASSERT_TRUE(broker_->start(err)) << err;
  }

  void TearDown() override {
    hub_.kill9();
    devices_.clear();
    broker_.reset();
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s (hub.log, devchain.log)\n", dir_.c_str());
  }

  // crash_at: PICOPAY_HUB_CRASH_AT for this run ("" = none).
  void start_hub(const std::string& crash_at = "") {
    std::vector<std::string> argv = {PICOPAY_HUB_BIN,
                                     "--broker-host", "127.0.0.1",
                                     "--broker-port", std::to_string(broker_->port()),
                                     "--broker-user", "hub",
                                     "--broker-password", "hub-pass",
                                     "--contract", hex(contract_),
                                     "--private-key", hex_key(test_key(kHubIndex)),
                                     "--rpc-url", chain_.url(),
                                     "--collateral-wei", std::to_string(kCollateral),
                                     "--event-state", dir_ + "/events.json",
                                     "--db", db(),
                                     "--verbose"};
    std::vector<std::string> env;
    if (!crash_at.empty()) env.push_back("PICOPAY_HUB_CRASH_AT=" + crash_at);
    ASSERT_TRUE(hub_.start(argv, dir_ + "/hub.log", env));
  }

  static std::string hex(const Address& a) { return mqtt::topic_address(a); }

  SimDevice& device(uint32_t i) {
    auto d = std::make_unique<SimDevice>(i, hub_addr_, contract_);
    mqtt::Options o;
    o.port = broker_->port();
    std::string err;
    EXPECT_TRUE(d->start(o, "pw-" + std::to_string(i), err)) << err;
    devices_.push_back(std::move(d));
    return *devices_.back();
  }

  // The payer's own deposit, as the agent makes it: ProposePendingDeposit countersigned
  // by the hub, userAuthorizedUpdate on chain, ConfirmPending (the hub checks the chain).
  void fund_on_chain(SimDevice& d, uint64_t wei) {
    ChannelUpdate p = channel_update_make(UpdateReason::ProposePendingDeposit);
    p.deposit.depositWeiUser = u(wei);
    p.deposit.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;
    ASSERT_EQ(d.propose(p), Status::Ok);
    chain::Wallet w(*rpc_, d.key());
    auto st = w.init();
    ASSERT_TRUE(st.ok()) << st.error().to_string();
    chain::ChannelManagerClient cm(w, contract_);
    chain::Receipt rc = MUST(cm.user_authorized_update(d.latest().state, d.latest().sigHub));
    ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
    c.chainTx.transactionHash = rc.transactionHash;
    ASSERT_EQ(d.propose(c), Status::Ok);
  }

  // DidUpdateChannel events of `user`'s channel (each one is an authorized update).
  size_t channel_updates_on_chain(const Address& user) {
    const uint64_t last = MUST(rpc_->block_number());
    auto logs = MUST(rpc_->logs(contract_, 0, last));
    size_t n = 0;
    for (const auto& l : logs) {
      auto ev = chain::decode_event(l);
      if (ev.ok() && ev->kind == chain::EventKind::DidUpdateChannel && ev->user == user) ++n;
    }
    return n;
  }

  // The hub answers a sync only after committing what came before it.
  void sync(SimDevice& d) {
    mqtt::Reply r;
    ASSERT_TRUE(d.publish_raw(mqtt::topic_sync(hub_addr_, d.address()), {}, 0));
    ASSERT_TRUE(d.wait_reply(d.latest().state.txCountGlobal, r, 30000));
    EXPECT_EQ(wire(r.state), wire(d.latest()));
  }

  void expect_ledger_agrees(SimDevice& d) {
    sync(d);
    Ledger l = read_ledger(db(), d.address());
    ASSERT_TRUE(l.found);
    EXPECT_EQ(l.state, wire(d.latest())) << "hub ledger and device disagree for " << mqtt::topic_address(d.address());
    EXPECT_EQ(static_cast<uint64_t>(l.updates), d.latest().state.txCountGlobal);
    EXPECT_EQ(l.deposits, 0) << "a finished deposit job is still stored";
  }

  // The payer opens a thread beyond the payee's hub balance (0): the hub proposes the
  // collateral deposit to the payee, who countersigns it. Returns the payee's
  // countersigned ProposePendingDeposit state.
  SignedChannelState open_thread_and_countersign_deposit(SimDevice& a, SimDevice& b) {
    ChannelUpdate open = channel_update_make(UpdateReason::OpenThread);
    open.thread.thread = signed_thread(contract_, a, b.address(), 1, kThreadWei);
    EXPECT_EQ(a.propose(open), Status::Ok);
    UpdateReason why{};
    EXPECT_EQ(b.answer_request(60000, &why), Status::Ok);
    EXPECT_EQ(why, UpdateReason::ProposePendingDeposit);
    EXPECT_EQ(b.latest().state.pendingDepositWeiHub, u(kCollateral)) << "300 wei short, rounded up to 1000";
    return b.latest();
  }

  // After the deposit: ConfirmPending then the mirrored OpenThread in the payee's channel;
  // on-chain balances and the off-chain states agree; the deposit happened exactly once.
  void finish_and_check(SimDevice& a, SimDevice& b) {
    UpdateReason why{};
    ASSERT_EQ(b.answer_request(60000, &why), Status::Ok);
    ASSERT_EQ(why, UpdateReason::ConfirmPending);
    const SignedChannelState confirmed = b.latest();
    ASSERT_EQ(b.answer_request(60000, &why), Status::Ok);
    ASSERT_EQ(why, UpdateReason::OpenThread);
    ASSERT_EQ(b.threads().size(), 1u);
    ASSERT_EQ(a.threads().size(), 1u);

    const chain::OnchainChannel ob = MUST(hubcm_->channel(b.address()));
    const ChannelState& sb = b.latest().state;
    EXPECT_EQ(ob.weiHub, u(kCollateral));
    EXPECT_EQ(ob.weiUser, U256::zero());
    EXPECT_EQ(ob.weiTotal, u(kCollateral));
    EXPECT_EQ(ob.txCountChain, sb.txCountChain);
    EXPECT_EQ(confirmed.state.balanceWeiHub, ob.weiHub) << "ConfirmPending moved the deposit into the hub balance";
    EXPECT_TRUE(confirmed.state.pendingDepositWeiHub.is_zero());
    EXPECT_EQ(add(sb.balanceWeiHub, u(kThreadWei)), ob.weiHub) << "hub balance + wei locked in the thread";
    EXPECT_EQ(sb.balanceWeiUser, ob.weiUser);
    EXPECT_EQ(channel_updates_on_chain(b.address()), 1u) << "the collateral deposit happened more than once";
    EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), sub(reserve0_, u(kCollateral)));

    const chain::OnchainChannel oa = MUST(hubcm_->channel(a.address()));
    const ChannelState& sa = a.latest().state;
    EXPECT_EQ(oa.weiUser, u(kPayerDeposit));
    EXPECT_EQ(oa.weiHub, U256::zero());
    EXPECT_EQ(add(sa.balanceWeiUser, u(kThreadWei)), oa.weiUser);
    EXPECT_EQ(oa.txCountChain, sa.txCountChain);
    EXPECT_EQ(channel_updates_on_chain(a.address()), 1u);

    expect_ledger_agrees(a);
    expect_ledger_agrees(b);
  }

  std::string db() const { return dir_ + "/hub.db"; }
  std::string dir_;
  DevChainProcess chain_;
  std::unique_ptr<chain::RpcClient> rpc_;
  std::unique_ptr<chain::Wallet> hub_wallet_;
  std::unique_ptr<chain::ChannelManagerClient> hubcm_;
  U256 reserve0_ = U256::zero();
  std::unique_ptr<Broker> broker_;
  Process hub_;
  Address hub_addr_{}, contract_{};
  std::vector<std::unique_ptr<SimDevice>> devices_;
};

}  // namespace

TEST_F(HubChainTest, PayeeChannelGetsCollateralOnChainThenTheMirroredThread) {
  start_hub();
  SimDevice& a = device(kPayer);
  SimDevice& b = device(kPayee);
  fund_on_chain(a, kPayerDeposit);
  open_thread_and_countersign_deposit(a, b);
  finish_and_check(a, b);
}

// kill -9 of the hub right after the payee's countersignature of the collateral deposit
// is committed: before hubAuthorizedUpdate ("deposit-countersigned") or after it and
// before the ConfirmPending ("deposit-sent"). PICOPAY_HUB_CRASH_AT makes the hub SIGKILL
// itself at exactly that point. After a restart the deposit is made exactly once and the
// ConfirmPending and the mirrored OpenThread follow (without the stored job they never do).
class HubChainCrashTest : public HubChainTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(HubChainCrashTest, Kill9AfterTheDepositCountersignatureStillDepositsExactlyOnce) {
  const std::string point = GetParam();
  start_hub(point);
  SimDevice& a = device(kPayer);
  SimDevice& b = device(kPayee);
  fund_on_chain(a, kPayerDeposit);
  const SignedChannelState pending = open_thread_and_countersign_deposit(a, b);
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(hub_.wait(60000), 128 + 9) << "the hub did not stop at " << point;
  const chain::OnchainChannel before = MUST(hubcm_->channel(b.address()));
  if (point == "deposit-countersigned") {
    EXPECT_EQ(before.txCountChain, 0u) << "the deposit was sent before the crash point";
  } else {
    EXPECT_EQ(before.txCountChain, pending.state.txCountChain) << "the deposit was not sent before the crash point";
  }
  Ledger l = read_ledger(db(), b.address());
  EXPECT_EQ(l.deposits, 1) << "the countersigned deposit job is not stored";
  EXPECT_EQ(l.queued, 1) << "the mirrored OpenThread waits in the stored queue";
  start_hub();
  finish_and_check(a, b);
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, HubChainCrashTest, ::testing::Values("deposit-countersigned", "deposit-sent"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param) == "deposit-sent" ? std::string("AfterTheCall")
                                                                         : std::string("BeforeTheCall");
                         });

// A user's ConfirmPending for a deposit that is not on chain (the hub countersigned the
// ProposePendingDeposit, the user never called userAuthorizedUpdate) is refused with
// PendingOperation and changes nothing stored; once the deposit is made it is accepted.
TEST_F(HubChainTest, ConfirmPendingForADepositNotOnChainIsRefusedAndChangesNothing) {
  start_hub();
  SimDevice& a = device(kPayer);
  ChannelUpdate p = channel_update_make(UpdateReason::ProposePendingDeposit);
  p.deposit.depositWeiUser = u(kPayerDeposit);
  p.deposit.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;
  ASSERT_EQ(a.propose(p), Status::Ok);
  sync(a);
  const Ledger l0 = read_ledger(db(), a.address());
  ASSERT_TRUE(l0.found);
  ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
  std::memset(c.chainTx.transactionHash.bytes, 0xcc, 32);  // no such transaction
  EXPECT_EQ(a.propose(c, 30000), Status::PendingOperation);
  sync(a);
  EXPECT_TRUE(read_ledger(db(), a.address()) == l0) << "a refused ConfirmPending changed the hub's ledger";
  EXPECT_EQ(MUST(hubcm_->channel(a.address())).txCountChain, 0u);
  EXPECT_EQ(channel_updates_on_chain(a.address()), 0u);

  // The deposit on chain; the same ConfirmPending is accepted now.
  chain::Wallet w(*rpc_, a.key());
  auto st = w.init();
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  chain::ChannelManagerClient cm(w, contract_);
  chain::Receipt rc = MUST(cm.user_authorized_update(a.latest().state, a.latest().sigHub));
  ChannelUpdate c2 = channel_update_make(UpdateReason::ConfirmPending);
  c2.chainTx.transactionHash = rc.transactionHash;
  ASSERT_EQ(a.propose(c2), Status::Ok);
  EXPECT_EQ(a.latest().state.balanceWeiUser, u(kPayerDeposit));
  EXPECT_EQ(MUST(hubcm_->channel(a.address())).weiUser, u(kPayerDeposit));
  expect_ledger_agrees(a);
}
