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
#include <atomic>
#include <thread>

#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/codec.hpp"
#include "hub_ledger.hpp"
#include "rpc_proxy.hpp"
#include "sim_device.hpp"
#include "support/broker.hpp"
#include "support/postgres.hpp"
#include "support/wait.hpp"

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
      auto login = device_broker_login(i);
      o.users.push_back({login.first, login.second});
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
  // extra: more flags (the several-instance tests: --store, --instance-id, ...).
  void start_hub(const std::string& crash_at = "", const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {PICOPAY_HUB_BIN,
                                     "--broker-host", "127.0.0.1",
                                     "--broker-port", std::to_string(broker_->port()),
                                     "--broker-user", "hub",
                                     "--broker-password", "hub-pass",
                                     "--contract", hex(contract_),
                                     "--private-key", hex_key(test_key(kHubIndex)),
                                     "--rpc-url", hub_rpc_url_.empty() ? chain_.url() : hub_rpc_url_,
                                     "--collateral-wei", std::to_string(kCollateral),
                                     "--event-state", dir_ + "/events.json",
                                     "--db", dir_ + "/hub.db",
                                     "--verbose"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::vector<std::string> env;
    if (!crash_at.empty()) env.push_back("PICOPAY_HUB_CRASH_AT=" + crash_at);
    ASSERT_TRUE(hub_.start(argv, dir_ + "/hub.log", env));
  }

  static std::string hex(const Address& a) { return mqtt::topic_address(a); }

  // A device that reads the chain itself (its own RPC connection): ConfirmPending only
  // when ChannelManager shows the pending operations executed.
  struct ChainView {
    std::unique_ptr<chain::RpcClient> rpc;
    std::unique_ptr<chain::Wallet> wallet;
    std::unique_ptr<chain::ChannelManagerClient> cm;
  };
  SimDevice& device(uint32_t i) {
    auto v = std::make_unique<ChainView>();
    v->rpc = std::make_unique<chain::RpcClient>(chain_.url());
    v->wallet = std::make_unique<chain::Wallet>(*v->rpc, test_key(i));
    auto st = v->wallet->init();
    EXPECT_TRUE(st.ok()) << st.error().to_string();
    v->cm = std::make_unique<chain::ChannelManagerClient>(*v->wallet, contract_);
    ChainView* view = v.get();
    views_.push_back(std::move(v));
    SimOptions so;
    so.chain = [view](const Address& user, ChainFacts& f) {
      auto oc = view->cm->channel(user);
      auto blk = view->rpc->block_by_number("latest");
      if (!oc.ok() || !blk.ok()) return false;
      f.known = true;
      f.txCountGlobal = oc->txCountGlobal;
      f.txCountChain = oc->txCountChain;
      f.status = oc->status == chain::ChannelStatus::Open ? ChainChannelStatus::Open : ChainChannelStatus::InDispute;
      f.emptied = oc->status == chain::ChannelStatus::Open && oc->weiTotal.is_zero() && oc->tokenTotal.is_zero() &&
                  oc->txCountGlobal > 0 && oc->channelClosingTime == 0 && oc->threadCount == 0;
      f.blockTime = blk->timestamp;
      return true;
    };
    auto d = std::make_unique<SimDevice>(i, hub_addr_, contract_, so);
    mqtt::Options o;
    o.port = broker_->port();
    std::string err;
    EXPECT_TRUE(d->start(o, "pw-" + std::to_string(i), err)) << err;
    devices_.push_back(std::move(d));
    return *devices_.back();
  }

  // The payer's own deposit, as the agent makes it: ProposePendingDeposit countersigned
  // by the hub, userAuthorizedUpdate on chain, ConfirmPending (both sides check the chain).
  void fund_on_chain(SimDevice& d, uint64_t wei) {
    ASSERT_EQ(d.deposit(wei), Status::Ok);
    chain::Wallet w(*rpc_, d.key());
    auto st = w.init();
    ASSERT_TRUE(st.ok()) << st.error().to_string();
    chain::ChannelManagerClient cm(w, contract_);
    const SignedChannelState s = d.latest();
    chain::Receipt rc = MUST(cm.user_authorized_update(s.state, s.sigHub));
    ASSERT_EQ(d.confirm_pending(rc.transactionHash), Status::Ok);
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
    ASSERT_TRUE(d.wait_idle(60000));
    Reply r = reply_make(ReplyKind::Ack);
    const SignedChannelState s = d.latest();
    ASSERT_TRUE(d.publish_raw(mqtt::topic_sync(hub_addr_, d.address()), {}, 0));
    // A late duplicate Ack of the same txCountGlobal (a re-sent update answered again)
    // may come first: wait for the Sync itself.
    for (int k = 0; k < 10; ++k) {
      ASSERT_TRUE(d.wait_reply(s.state.txCountGlobal, r, 30000));
      if (r.kind == ReplyKind::Sync) break;
    }
    ASSERT_EQ(r.kind, ReplyKind::Sync);
    EXPECT_EQ(wire(r.state), wire(s));
  }

  void expect_ledger_agrees(SimDevice& d) {
    sync(d);
    Ledger l = read_ledger(db(), d.address());
    ASSERT_TRUE(l.found);
    EXPECT_EQ(l.state, wire(d.latest())) << "hub ledger and device disagree for " << mqtt::topic_address(d.address());
    EXPECT_EQ(static_cast<uint64_t>(l.updates), d.latest().state.txCountGlobal);
    EXPECT_EQ(l.deposits, 0) << "a finished deposit job is still stored";
    EXPECT_EQ(d.double_signed(), 0u);
    EXPECT_FALSE(d.halted());
  }

  // The payer opens a thread beyond the payee's hub balance (0): the hub requests the
  // collateral deposit from the payee, whose session proposes it (hub funds only) and the
  // hub countersigns. Returns the payee's ProposePendingDeposit state.
  SignedChannelState open_thread_and_countersign_deposit(SimDevice& a, SimDevice& b) {
    uint64_t id = 0;
    EXPECT_EQ(a.open_thread(b.address(), kThreadWei, &id), Status::Ok);
    EXPECT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::ProposePendingDeposit) == 1; },
                             60000));
    const SignedChannelState s = b.latest();
    EXPECT_EQ(s.state.pendingDepositWeiHub, u(kCollateral)) << "300 wei short, rounded up to 1000";
    return s;
  }

  // After the deposit: ConfirmPending (the payee checks the chain) then the mirrored
  // OpenThread in the payee's channel; on-chain balances and the off-chain states agree;
  // the deposit happened exactly once.
  void finish_and_check(SimDevice& a, SimDevice& b) {
    ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::ConfirmPending) == 1; }, 60000))
        << "the ConfirmPending was not requested (or the payee did not see the deposit on chain)";
    ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; }, 60000))
        << "the mirrored OpenThread was not requested";
    ASSERT_EQ(b.threads().size(), 1u);
    ASSERT_EQ(a.threads().size(), 1u);

    const chain::OnchainChannel ob = MUST(hubcm_->channel(b.address()));
    const ChannelState sb = b.latest().state;
    EXPECT_EQ(ob.weiHub, u(kCollateral));
    EXPECT_EQ(ob.weiUser, U256::zero());
    EXPECT_EQ(ob.weiTotal, u(kCollateral));
    EXPECT_EQ(ob.txCountChain, sb.txCountChain);
    EXPECT_TRUE(sb.pendingDepositWeiHub.is_zero()) << "ConfirmPending moved the deposit into the hub balance";
    EXPECT_EQ(add(sb.balanceWeiHub, u(kThreadWei)), ob.weiHub) << "hub balance + wei locked in the thread";
    EXPECT_EQ(sb.balanceWeiUser, ob.weiUser);
    EXPECT_EQ(channel_updates_on_chain(b.address()), 1u) << "the collateral deposit happened more than once";
    EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), sub(reserve0_, u(kCollateral)));

    const chain::OnchainChannel oa = MUST(hubcm_->channel(a.address()));
    const ChannelState sa = a.latest().state;
    EXPECT_EQ(oa.weiUser, u(kPayerDeposit));
    EXPECT_EQ(oa.weiHub, U256::zero());
    EXPECT_EQ(add(sa.balanceWeiUser, u(kThreadWei)), oa.weiUser);
    EXPECT_EQ(oa.txCountChain, sa.txCountChain);
    EXPECT_EQ(channel_updates_on_chain(a.address()), 1u);

    expect_ledger_agrees(a);
    expect_ledger_agrees(b);
  }

  // The ledger read_ledger reads: the SQLite file, or the PostgreSQL URI of the
  // several-instance tests.
  std::string db() const { return store_uri_.empty() ? dir_ + "/hub.db" : store_uri_; }
  std::string store_uri_;
  std::unique_ptr<PgServer> pg_;  // the several-instance tests' ledger (outlives the hub)
  std::string dir_;
  std::string hub_rpc_url_;  // the hub's --rpc-url (empty: the dev chain's)
  DevChainProcess chain_;
  std::unique_ptr<chain::RpcClient> rpc_;
  std::unique_ptr<chain::Wallet> hub_wallet_;
  std::unique_ptr<chain::ChannelManagerClient> hubcm_;
  U256 reserve0_ = U256::zero();
  std::unique_ptr<Broker> broker_;
  Process hub_;
  Address hub_addr_{}, contract_{};
  std::vector<std::unique_ptr<ChainView>> views_;
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
  uint64_t id = 0;
  ASSERT_EQ(a.open_thread(b.address(), kThreadWei, &id), Status::Ok);
  // The hub commits the payee's countersigned deposit request, then dies (its Ack may
  // not have left: the payee's session re-sends the same proposal until it gets one).
  ASSERT_EQ(hub_.wait(60000), 128 + 9) << "the hub did not stop at " << point;
  const chain::OnchainChannel before = MUST(hubcm_->channel(b.address()));
  if (point == "deposit-countersigned") {
    EXPECT_EQ(before.txCountChain, 0u) << "the deposit was sent before the crash point";
  } else {
    EXPECT_EQ(before.txCountChain, 1u) << "the deposit was not sent before the crash point";
  }
  Ledger l = read_ledger(db(), b.address());
  EXPECT_EQ(l.deposits, 1) << "the countersigned deposit job is not stored";
  EXPECT_EQ(l.requests, 1) << "the mirrored OpenThread waits in the stored requests";
  start_hub();
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::ProposePendingDeposit) == 1; }, 60000));
  finish_and_check(a, b);
}

// Several instances (docs/multi-instance.md): the chain role moves on a kill. Instance a,
// alone on a PostgreSQL ledger (so it holds every partition and the chain role), dies at
// the crash point; instance b, started then, takes every lease once a's expire (TTL 1 s),
// re-reads the stored deposit job and, holding the chain role, sends the deposit if it is
// not on chain yet, or sees it there and confirms it: the deposit happens exactly once.
// (Label postgresql.)
class HubChainInstancesTest : public HubChainCrashTest {};

TEST_P(HubChainInstancesTest, ChainRoleMovesOnKill9AndTheDepositHappensOnce_postgresql) {
  const std::string point = GetParam();
  pg_ = std::make_unique<PgServer>();
  std::string err;
  ASSERT_TRUE(pg_->start(err)) << err;
  store_uri_ = pg_->uri("postgres");
  auto instance = [&](const char* id) {
    return std::vector<std::string>{"--store", store_uri_, "--instance-id", id, "--lease-ttl-ms", "1000"};
  };
  start_hub(point, instance("a"));
  SimDevice& a = device(kPayer);
  SimDevice& b = device(kPayee);
  fund_on_chain(a, kPayerDeposit);
  uint64_t id = 0;
  ASSERT_EQ(a.open_thread(b.address(), kThreadWei, &id), Status::Ok);
  ASSERT_EQ(hub_.wait(60000), 128 + 9) << "instance a did not stop at " << point;
  const chain::OnchainChannel before = MUST(hubcm_->channel(b.address()));
  EXPECT_EQ(before.txCountChain, point == "deposit-sent" ? 1u : 0u);
  EXPECT_EQ(read_ledger(db(), b.address()).deposits, 1) << "the countersigned deposit job is not stored";
  start_hub("", instance("b"));
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::ProposePendingDeposit) == 1; }, 60000));
  finish_and_check(a, b);
  EXPECT_NE(read_file(dir_ + "/hub.log").find("leases: took the chain role (epoch 2)"), std::string::npos)
      << "instance b did not take the chain role over";
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, HubChainInstancesTest, ::testing::Values("deposit-countersigned", "deposit-sent"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param) == "deposit-sent" ? std::string("AfterTheCall")
                                                                         : std::string("BeforeTheCall");
                         });

INSTANTIATE_TEST_SUITE_P(CrashPoints, HubChainCrashTest, ::testing::Values("deposit-countersigned", "deposit-sent"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param) == "deposit-sent" ? std::string("AfterTheCall")
                                                                         : std::string("BeforeTheCall");
                         });

// A user's ConfirmPending for a deposit that is not on chain (the hub countersigned the
// ProposePendingDeposit, the user never called userAuthorizedUpdate) is refused with
// NotOnChain and changes nothing stored; so are an Invalidation before the timeout and an
// EmptyChannel without an on-chain empty; once the deposit is made the ConfirmPending of
// the honest session is accepted.
TEST_F(HubChainTest, ChainFactsNotOnChainAreRefusedAndChangeNothing) {
  start_hub();
  SimDevice& a = device(kPayer);
  ASSERT_EQ(a.deposit(kPayerDeposit), Status::Ok);
  sync(a);
  const Ledger l0 = read_ledger(db(), a.address());
  ASSERT_TRUE(l0.found);
  const uint64_t tx = a.latest().state.txCountGlobal + 1;
  auto refused = [&](ChannelUpdate c, Status want, const char* what) {
    ASSERT_TRUE(a.publish_raw(mqtt::topic_update(hub_addr_, a.address()), a.build_unchecked(c), tx));
    Reply r = reply_make(ReplyKind::Ack);
    ASSERT_TRUE(a.wait_reply(tx, r, 30000)) << what;
    EXPECT_EQ(r.kind, ReplyKind::Nack) << what;
    EXPECT_EQ(r.status, want) << what;
    std::printf("[adversarial device, chain] %-45s -> Nack %s\n", what, status_name(r.status));
  };
  ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
  std::memset(c.chainTx.transactionHash.bytes, 0xcc, 32);  // no such transaction
  refused(c, Status::NotOnChain, "ConfirmPending of a deposit not on chain");
  ChannelUpdate iv = channel_update_make(UpdateReason::Invalidation);
  iv.invalidation.previousValidTxCount = tx - 2;
  iv.invalidation.lastInvalidTxCount = tx - 1;
  refused(iv, Status::NotOnChain, "Invalidation before the timeout");
  refused(channel_update_make(UpdateReason::EmptyChannel), Status::NotOnChain, "EmptyChannel without an on-chain empty");
  sync(a);
  EXPECT_TRUE(read_ledger(db(), a.address()) == l0) << "a refused proposal changed the hub's ledger";
  EXPECT_EQ(MUST(hubcm_->channel(a.address())).txCountChain, 0u);
  EXPECT_EQ(channel_updates_on_chain(a.address()), 0u);

  // The deposit on chain; the honest session's ConfirmPending is accepted now.
  chain::Wallet w(*rpc_, a.key());
  auto st = w.init();
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  chain::ChannelManagerClient cm(w, contract_);
  const SignedChannelState s = a.latest();
  chain::Receipt rc = MUST(cm.user_authorized_update(s.state, s.sigHub));
  ASSERT_EQ(a.confirm_pending(rc.transactionHash), Status::Ok);
  EXPECT_EQ(a.latest().state.balanceWeiUser, u(kPayerDeposit));
  EXPECT_EQ(MUST(hubcm_->channel(a.address())).weiUser, u(kPayerDeposit));
  expect_ledger_agrees(a);
}

// issue 9: the hub's collateral requests (ProposePendingDeposit, then ConfirmPending after
// the on-chain deposit) and thread mirrors raced against the payee paying all the time.
// Every request completes, the on-chain totals match the off-chain states, both ledgers
// agree and no txCountGlobal is signed twice.
TEST_F(HubChainTest, CollateralRequestsRacedAgainstPayeePayments) {
  constexpr int kThreads = 10;  // 10 x 300 wei against 1000-wei deposits: 3 deposits
  start_hub();
  SimDevice& a = device(kPayer);
  SimDevice& b = device(kPayee);
  fund_on_chain(a, kPayerDeposit);
  fund_on_chain(b, 100);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<int> blocked{0};
  std::thread payer([&] {
    while (!stop.load()) {
      const Status st = b.pay(1, nullptr, 120000);
      if (st == Status::PendingOperation) {  // the collateral deposit is pending: no payment on it
        ++blocked;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      if (st != Status::Ok) {
        ADD_FAILURE() << "payment: " << status_name(st);
        ++failures;
        return;
      }
    }
  });
  for (int i = 0; i < kThreads && !HasFailure(); ++i) {
    uint64_t id = 0;
    ASSERT_EQ(a.open_thread(b.address(), kThreadWei, &id, 120000), Status::Ok) << "thread " << i;
    ASSERT_TRUE(b.wait_until([&](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == size_t(i) + 1; },
                             120000))
        << "mirror " << i << " did not complete";
  }
  stop.store(true);
  payer.join();
  EXPECT_EQ(failures.load(), 0);
  const size_t deposits = b.completed(UpdateReason::ProposePendingDeposit);
  std::printf("[measure] %d mirrors, %zu collateral deposits (+%zu ConfirmPending) raced against payee payments; "
              "requests that arrived while the payee's payment was in flight: %zu; payments held back by a pending "
              "deposit: %d\n",
              kThreads, deposits - 1, b.completed(UpdateReason::ConfirmPending) - 1, b.collisions(), blocked.load());
  EXPECT_GE(deposits, 2u) << "the payee's own deposit and at least one collateral deposit";
  EXPECT_EQ(b.completed(UpdateReason::ConfirmPending), deposits);
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
  const chain::OnchainChannel ob = MUST(hubcm_->channel(b.address()));
  const ChannelState sb = b.latest().state;
  U256 locked = u(kThreadWei * kThreads), off{};
  off = add(add(sb.balanceWeiHub, sb.balanceWeiUser), locked);
  EXPECT_EQ(off, ob.weiTotal) << "the payee channel's wei on chain = balances + wei locked in threads";
  EXPECT_EQ(ob.txCountChain, sb.txCountChain);
}

// The hub's chain work runs on its own thread: while every JSON-RPC call of the hub hangs
// (a proxy on 127.0.0.1 holds them unanswered), a user's ConfirmPending waits for the
// chain's answer, unanswered (re-sent by the device's session meanwhile: no reply, no
// signature), and other channels' payments are countersigned all the same. Released, the
// ConfirmPending is countersigned once, after the chain shows the deposit.
// The proxy also holds the hub's own deposit (hubAuthorizedUpdate) for a payee: payments
// of the payer's channel are countersigned while it hangs.
TEST_F(HubChainTest, AHangingChainHoldsNoPaymentOfOtherChannels) {
  RpcProxy proxy(chain_.url());
  ASSERT_TRUE(proxy.start());
  hub_rpc_url_ = proxy.url();
  start_hub();
  SimDevice& a = device(kPayer);
  SimDevice& b = device(kPayee);
  fund_on_chain(a, kPayerDeposit);
  fund_on_chain(b, 1000);

  // b deposits again; on chain before the hang (its own wallet, not through the proxy).
  ASSERT_EQ(b.deposit(500), Status::Ok);
  const SignedChannelState s = b.latest();
  chain::Wallet w(*rpc_, b.key());
  auto st = w.init();
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  chain::ChannelManagerClient cm(w, contract_);
  chain::Receipt rc = MUST(cm.user_authorized_update(s.state, s.sigHub));
  const size_t confirmed = b.completed(UpdateReason::ConfirmPending);

  proxy.hold();
  std::atomic<bool> confirm_done{false};
  std::atomic<int> confirm_status{-1};
  std::thread confirm([&] {
    confirm_status = static_cast<int>(b.confirm_pending(rc.transactionHash, 240000));
    confirm_done = true;
  });
  struct Joiner {  // on every exit of the test: the chain answers again, the thread ends
    RpcProxy& p;
    std::thread& t;
    ~Joiner() {
      p.release();
      if (t.joinable()) t.join();
    }
  } joiner{proxy, confirm};
  // The ConfirmPending reached the hub and waits for the chain (hub log, --verbose), or
  // was answered without it.
  ASSERT_TRUE(poll_until(
      [&] {
        return confirm_done.load() ||
               read_file(dir_ + "/hub.log").find("an update waits for the chain") != std::string::npos;
      },
      120000))
      << "the ConfirmPending did not reach the hub";
  ASSERT_FALSE(confirm_done.load()) << "the ConfirmPending was answered while the chain hung: "
                                    << status_name(static_cast<Status>(confirm_status.load()));
  const uint64_t a_before = a.latest().state.txCountGlobal;
  for (int i = 0; i < 5; ++i) ASSERT_EQ(a.pay(1, nullptr, 60000), Status::Ok) << "payment " << i << " while the chain hangs";
  EXPECT_EQ(a.latest().state.txCountGlobal, a_before + 5);
  EXPECT_FALSE(confirm_done.load()) << "the ConfirmPending was answered while the chain hung";
  EXPECT_EQ(b.completed(UpdateReason::ConfirmPending), confirmed);
  EXPECT_EQ(read_ledger(db(), b.address()).state, wire(s)) << "the hub stored the ConfirmPending without the chain";
  std::printf("[measure] while the hub's chain hung: %d payments of another channel countersigned, %zu JSON-RPC "
              "requests held\n", 5, proxy.held_requests());
  proxy.release();
  confirm.join();
  EXPECT_EQ(confirm_status.load(), static_cast<int>(Status::Ok));
  EXPECT_EQ(b.completed(UpdateReason::ConfirmPending), confirmed + 1);
  EXPECT_EQ(b.latest().state.balanceWeiUser, u(1500));
  EXPECT_EQ(b.double_signed(), 0u);

  // A deposit of the hub in flight: the payer's thread needs collateral in the payee's
  // channel; the hub's hubAuthorizedUpdate hangs at the proxy.
  proxy.hold({"eth_sendRawTransaction"});
  uint64_t id = 0;
  ASSERT_EQ(a.open_thread(b.address(), kThreadWei, &id, 60000), Status::Ok);
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::ProposePendingDeposit) == 3; }, 60000))
      << "the collateral deposit was not requested";
  ASSERT_TRUE(poll_until([&] { return proxy.held_requests("eth_sendRawTransaction") >= 1; }, 60000))
      << "the deposit job did not reach the chain";
  const uint64_t a_mid = a.latest().state.txCountGlobal;
  for (int i = 0; i < 5; ++i) ASSERT_EQ(a.pay(1, nullptr, 60000), Status::Ok) << "payment " << i << " while the deposit hangs";
  EXPECT_EQ(a.latest().state.txCountGlobal, a_mid + 5);
  EXPECT_EQ(channel_updates_on_chain(b.address()), 2u) << "only b's own two deposits are on chain yet";
  proxy.release();
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; }, 120000))
      << "the mirrored OpenThread did not follow the deposit";
  EXPECT_EQ(channel_updates_on_chain(b.address()), 3u) << "the collateral deposit happened once";
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
}

// The chain worker reads on a thread of its own: while the hub's collateral deposit for
// the payee waits for its receipt (the proxy holds every eth_getTransactionReceipt of the
// hub), the payer's own deposit is checked on chain and its ConfirmPending countersigned.
// With one chain thread the read waited behind the receipt until the hub's JSON-RPC
// timeout (30 s): the bounded wait for the ConfirmPending (20 s) is below it, so this fails
// there. Released, the deposit is confirmed once and the mirrored OpenThread follows.
TEST_F(HubChainTest, AReceiptWaitHoldsNoChainReadOfOtherChannels) {
  RpcProxy proxy(chain_.url());
  ASSERT_TRUE(proxy.start());
  hub_rpc_url_ = proxy.url();
  start_hub();
  SimDevice& a = device(kPayer);
  SimDevice& b = device(kPayee);
  fund_on_chain(a, kPayerDeposit);

  proxy.hold({"eth_getTransactionReceipt"});
  struct Release {  // on every exit of the test: the receipts are answered again
    RpcProxy& p;
    ~Release() { p.release(); }
  } release{proxy};
  uint64_t id = 0;
  ASSERT_EQ(a.open_thread(b.address(), kThreadWei, &id, 60000), Status::Ok);
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::ProposePendingDeposit) == 1; }, 60000))
      << "the collateral deposit was not requested";
  ASSERT_TRUE(poll_until([&] { return proxy.held_requests("eth_getTransactionReceipt") >= 1; }, 60000))
      << "the hub's deposit did not wait for its receipt";

  // The payer deposits more (its own wallet, straight to the chain) and asks the hub for
  // the ConfirmPending, which the hub countersigns only after reading the chain.
  ASSERT_EQ(a.deposit(500), Status::Ok);
  const SignedChannelState s = a.latest();
  chain::Wallet w(*rpc_, a.key());
  auto st = w.init();
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  chain::ChannelManagerClient cm(w, contract_);
  chain::Receipt rc = MUST(cm.user_authorized_update(s.state, s.sigHub));
  const size_t confirmed = a.completed(UpdateReason::ConfirmPending);
  ASSERT_EQ(a.confirm_pending(rc.transactionHash, 20000), Status::Ok)
      << "the ConfirmPending waited behind the hub's receipt wait";
  EXPECT_EQ(a.completed(UpdateReason::ConfirmPending), confirmed + 1);
  EXPECT_EQ(a.latest().state.balanceWeiUser, sub(u(kPayerDeposit + 500), u(kThreadWei)));
  EXPECT_EQ(b.completed(UpdateReason::ConfirmPending), 0u) << "the payee's deposit was confirmed without its receipt";
  std::printf("[measure] while the hub's deposit waited for its receipt (%zu receipt requests held): the payer's "
              "ConfirmPending countersigned\n",
              proxy.held_requests("eth_getTransactionReceipt"));

  proxy.release();
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; }, 120000))
      << "the mirrored OpenThread did not follow the deposit";
  EXPECT_EQ(b.completed(UpdateReason::ConfirmPending), 1u);
  EXPECT_EQ(channel_updates_on_chain(b.address()), 1u) << "the collateral deposit happened once";
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
}
