// picopay-hub end to end: a real mosquitto (passwords + ACL), the real picopay-hub
// binary, its SQLite ledger, and simulated devices (sim_device.hpp). No timing
// assertions: every wait is bounded; rates and latencies are printed, not asserted.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "picopay/codec.hpp"
#include "hub_ledger.hpp"
#include "sim_device.hpp"
#include "support/broker.hpp"
#include "support/postgres.hpp"

using namespace picopay;
using namespace picopay::testsupport;

namespace {

const char* kContract = "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390";
constexpr uint32_t kHubIndex = 0xABCDEF;

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir("picopay-hubtest"); }
  void TearDown() override {
    hub_.kill9();
    devices_.clear();
    broker_.reset();
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s\n", dir_.c_str());
  }

  void start_broker(bool tls = false, uint32_t devices = 16) {
    BrokerOptions o;
    o.tls = tls;
    o.users.push_back({"hub", "hub-pass"});
    for (uint32_t i = 1; i <= devices; ++i) {
      auto login = device_broker_login(i);
      o.users.push_back({login.first, login.second});
    }
    o.acl = picopay_acl("hub");
    o.dir = dir_ + "/broker";
    broker_ = std::make_unique<Broker>(o);
    std::string err;
    ASSERT_TRUE(broker_->start(err)) << err;
    tls_ = tls;
    Signer s;
    ASSERT_EQ(s.init(), Status::Ok);
    ASSERT_EQ(s.address_of(test_key(kHubIndex), hub_addr_), Status::Ok);
    ASSERT_EQ(address_parse(kContract, std::strlen(kContract), contract_), Status::Ok);
  }

  // dev_skip: --dev-skip-chain-checks (ConfirmPending countersigned unchecked: the devices
  // fund their channels without a chain).
  void start_hub(bool dev_skip = true, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {PICOPAY_HUB_BIN,
                                     "--broker-host", "127.0.0.1",
                                     "--broker-port", std::to_string(tls_ ? broker_->tls_port() : broker_->port()),
                                     "--broker-user", "hub",
                                     "--broker-password", "hub-pass",
                                     "--contract", kContract,
                                     "--private-key", hex_key(test_key(kHubIndex)),
                                     store_uri_.empty() ? "--db" : "--store", db(),
                                     "--exchange-rate", "1000",
                                     "--verbose"};
    if (dev_skip) argv.push_back("--dev-skip-chain-checks");
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (tls_) {
      argv.push_back("--broker-ca");
      argv.push_back(broker_->ca_file());
    }
    ASSERT_TRUE(hub_.start(argv, dir_ + "/hub.log"));
  }

  SimDevice& device(uint32_t i, SimOptions so = {}) {
    auto d = std::make_unique<SimDevice>(i, hub_addr_, contract_, so);
    mqtt::Options o;
    o.port = tls_ ? broker_->tls_port() : broker_->port();
    if (tls_) o.tls_ca_file = broker_->ca_file();
    std::string err;
    EXPECT_TRUE(d->start(o, "pw-" + std::to_string(i), err)) << err;
    devices_.push_back(std::move(d));
    return *devices_.back();
  }

  void expect_ledger_agrees(SimDevice& d) {
    ASSERT_TRUE(d.wait_idle(30000)) << "device " << mqtt::topic_address(d.address()) << " not idle";
    Ledger l = read_ledger(db(), d.address());
    ASSERT_TRUE(l.found);
    EXPECT_EQ(l.state, wire(d.latest())) << "hub ledger and device disagree for " << mqtt::topic_address(d.address());
    EXPECT_EQ(static_cast<uint64_t>(l.updates), d.latest().state.txCountGlobal);
    EXPECT_EQ(d.double_signed(), 0u);
    EXPECT_FALSE(d.halted());
  }

  // The ledger: a SQLite file, or the PostgreSQL URI of HubStore's postgresql runs
  // (read_ledger reads either).
  std::string db() const { return store_uri_.empty() ? dir_ + "/hub.db" : store_uri_; }
  std::string store_uri_;
  std::string dir_;
  std::unique_ptr<Broker> broker_;
  Process hub_;
  bool tls_ = false;
  Address hub_addr_{}, contract_{};
  std::vector<std::unique_ptr<SimDevice>> devices_;
};

// The tests that matter for the ledger, on both backends: "sqlite" (a file, as HubTest) and
// "postgresql" (a real server started by the fixture on 127.0.0.1, one database per test).
class HubStore : public HubTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    HubTest::SetUp();
    if (GetParam() != "postgresql") return;
    pg_ = std::make_unique<PgServer>();
    std::string err;
    ASSERT_TRUE(pg_->start(err)) << err;
    store_uri_ = pg_->uri("postgres");  // a fresh server per test: its default database
  }
  void TearDown() override {
    HubTest::TearDown();
    pg_.reset();
  }
  std::unique_ptr<PgServer> pg_;
};

}  // namespace

INSTANTIATE_TEST_SUITE_P(On, HubStore, ::testing::Values("sqlite", "postgresql"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST_F(HubTest, HelpListsEveryOption) {
  std::string out = dir_ + "/help.txt";
  ASSERT_EQ(run_command({PICOPAY_HUB_BIN, "--help"}, out), 0);
  std::string h = read_file(out);
  for (const char* opt : {"--config", "--broker-host", "--broker-port", "--broker-user", "--broker-password",
                          "--broker-ca", "--client-id", "--hub-address", "--key", "--private-key", "--contract",
                          "--rpc-url", "--event-state", "--confirmations", "--watchtower-interval", "--db", "--store", "--channel-cache",
                          "--batch-max", "--collateral-wei", "--collateral-max-wei", "--collateral-window", "--collateral-idle",
                          "--reserve-warn-wei", "--exchange-rate", "--exchange-rate-time",
                          "--dev-skip-chain-checks", "--instance-id", "--lease-ttl-ms", "--verbose", "--help"})
    EXPECT_NE(h.find(opt), std::string::npos) << opt;
  EXPECT_EQ(run_command({PICOPAY_HUB_BIN, "--bogus"}, dir_ + "/bogus.txt"), 2);
}

TEST_P(HubStore, ManyDevicesPayAtOnce) {
  constexpr uint32_t kDevices = 8;
  constexpr int kPayments = 40;
  start_broker(false, kDevices);
  start_hub();
  for (uint32_t i = 1; i <= kDevices; ++i) device(i);
  for (auto& d : devices_) ASSERT_EQ(d->fund(1000000), Status::Ok);
  std::atomic<int> failures{0};
  std::vector<std::vector<uint64_t>> lat(kDevices);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> th;
  for (uint32_t i = 0; i < kDevices; ++i)
    th.emplace_back([&, i] {
      for (int k = 0; k < kPayments; ++k) {
        uint64_t us = 0;
        if (devices_[i]->pay(7, &us) != Status::Ok) {
          ++failures;
          return;
        }
        lat[i].push_back(us);
      }
    });
  for (auto& t : th) t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(failures.load(), 0);
  std::vector<uint64_t> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  std::printf("[measure] %u devices x %d payments: %.0f payments/s, latency p50 %.2f ms, p99 %.2f ms\n", kDevices,
              kPayments, static_cast<double>(all.size()) / secs, static_cast<double>(all[all.size() / 2]) / 1000.0,
              static_cast<double>(all[all.size() * 99 / 100]) / 1000.0);
  for (auto& d : devices_) {
    EXPECT_EQ(d->latest().state.txCountGlobal, 2u + kPayments);
    EXPECT_TRUE(d->latest().state.balanceWeiHub == U256::from_u64(7 * kPayments));
    expect_ledger_agrees(*d);
  }
}

TEST_P(HubStore, DuplicatedAndReorderedDeliveryIsIdempotent) {
  start_broker();
  start_hub();
  SimDevice& d = device(1);
  ASSERT_EQ(d.fund(1000), Status::Ok);
  // Build tx 3 and tx 4 (from tx 3's state) and deliver 4 before 3, then 3 twice.
  ChannelUpdate u3 = channel_update_make(UpdateReason::Payment);
  u3.payment.recipient = Party::Hub;
  u3.payment.amountWei = U256::from_u64(5);
  ChannelState n3{};
  auto w3 = d.build(u3, n3);
  SignedChannelState s3{};
  s3.state = n3;
  ChannelUpdate u4 = u3;
  ChannelState n4{};
  auto w4 = d.build(u4, n4, &s3);
  ASSERT_FALSE(w3.empty());
  ASSERT_FALSE(w4.empty());
  const std::string topic = mqtt::topic_update(hub_addr_, d.address());
  ASSERT_TRUE(d.publish_raw(topic, w4, 4));
  ASSERT_TRUE(d.publish_raw(topic, w3, 3));
  Reply r3, r4, r3b;
  ASSERT_TRUE(d.wait_reply(3, r3, 20000));
  ASSERT_TRUE(d.wait_reply(4, r4, 20000));
  EXPECT_EQ(r3.kind, ReplyKind::Ack);
  EXPECT_EQ(r4.kind, ReplyKind::Ack);
  ASSERT_TRUE(d.publish_raw(topic, w3, 3));  // duplicate: the stored answer again
  ASSERT_TRUE(d.wait_reply(3, r3b, 20000));
  EXPECT_EQ(r3b.kind, ReplyKind::Ack);
  EXPECT_TRUE(r3b.sig == r3.sig);
  Signer s;
  ASSERT_EQ(s.init(), Status::Ok);
  EXPECT_EQ(s.verify_eth(channel_hash(n4), r4.sig, hub_addr_), Status::Ok);
  SignedChannelState l4{};
  l4.state = n4;
  l4.hasSigUser = l4.hasSigHub = true;
  l4.sigUser = u4.sig;
  l4.sigHub = r4.sig;
  const Ledger l = read_ledger(db(), d.address());
  EXPECT_EQ(l.state, wire(l4));
  EXPECT_EQ(l.updates, 4);
}

TEST_P(HubStore, ForgedReplayedForeignAndMalformedUpdatesAreRefusedAndChangeNothing) {
  start_broker();
  start_hub();
  SimDevice& a = device(1);
  SimDevice& b = device(2);
  ASSERT_EQ(a.fund(1000), Status::Ok);
  ASSERT_EQ(b.fund(1000), Status::Ok);
  ASSERT_EQ(a.pay(10), Status::Ok);
  const Ledger a0 = read_ledger(db(), a.address());
  const Ledger b0 = read_ledger(db(), b.address());
  const std::string topicA = mqtt::topic_update(hub_addr_, a.address());
  const std::string topicB = mqtt::topic_update(hub_addr_, b.address());
  Reply r;

  // 1. Forged: a's next update with a signature by another key.
  ChannelUpdate f = channel_update_make(UpdateReason::Payment);
  f.payment.recipient = Party::Hub;
  f.payment.amountWei = U256::from_u64(1);
  ChannelState nf{};
  auto wf = a.build(f, nf);
  ASSERT_FALSE(wf.empty());
  Signer s;
  ASSERT_EQ(s.init(), Status::Ok);
  Signature bad{};
  ASSERT_EQ(s.sign_eth(test_key(77), channel_hash(nf), bad), Status::Ok);
  std::memcpy(&wf[wf.size() - 65], bad.r, 32);
  std::memcpy(&wf[wf.size() - 33], bad.s, 32);
  wf.back() = bad.v;
  ASSERT_TRUE(a.publish_raw(topicA, wf, f.txCountGlobal));
  ASSERT_TRUE(a.wait_reply(f.txCountGlobal, r, 20000));
  EXPECT_EQ(r.kind, ReplyKind::Nack);
  EXPECT_EQ(r.status, Status::WrongSigner);
  EXPECT_EQ(r.state.state.txCountGlobal, a.latest().state.txCountGlobal);

  // 2. Replay: an old txCountGlobal with different content (a payment of 11 at tx 3).
  ChannelUpdate rp = channel_update_make(UpdateReason::Payment);
  rp.payment.recipient = Party::Hub;
  rp.payment.amountWei = U256::from_u64(11);
  SignedChannelState base2 = a.latest();
  base2.state.txCountGlobal -= 1;  // pretend to be at tx 2 again
  base2.state.balanceWeiHub = U256::zero();
  base2.state.balanceWeiUser = U256::from_u64(1000);
  ChannelState nr{};
  auto wr = a.build(rp, nr, &base2);
  ASSERT_FALSE(wr.empty());
  ASSERT_TRUE(a.publish_raw(topicA, wr, rp.txCountGlobal));
  ASSERT_TRUE(a.wait_reply(rp.txCountGlobal, r, 20000));
  EXPECT_EQ(r.kind, ReplyKind::Nack);
  EXPECT_EQ(r.status, Status::BadTxCount);

  // 3. An update for another channel: b publishes a's (valid) next update on b's topic.
  ChannelUpdate fo = channel_update_make(UpdateReason::Payment);
  fo.payment.recipient = Party::Hub;
  fo.payment.amountWei = U256::from_u64(1);
  ChannelState nfo{};
  auto wfo = a.build(fo, nfo);
  // b's channel is at tx 2 and a's at 3, so align the tx: build from a state with b's tx.
  SignedChannelState abase = a.latest();
  abase.state.txCountGlobal = b.latest().state.txCountGlobal;
  ChannelUpdate fo2 = fo;
  wfo = a.build(fo2, nfo, &abase);
  ASSERT_TRUE(b.publish_raw(topicB, wfo, fo2.txCountGlobal));
  ASSERT_TRUE(b.wait_reply(fo2.txCountGlobal, r, 20000));
  EXPECT_EQ(r.kind, ReplyKind::Nack);
  EXPECT_NE(r.status, Status::Ok);

  // 4. Malformed payloads.
  std::vector<std::vector<uint8_t>> junk = {{}, {0x01}, {0x02, 0x03, 0x01}, {0x01, 0x03, 0x01, 0x80, 0x00},
                                            std::vector<uint8_t>(300, 0xff)};
  auto tw = wf;
  tw.push_back(0);  // trailing byte
  junk.push_back(tw);
  for (auto& j : junk) {
    ASSERT_TRUE(a.publish_raw(topicA, j, 0));
    ASSERT_TRUE(a.wait_reply(0, r, 20000));
    EXPECT_EQ(r.kind, ReplyKind::Nack);
    EXPECT_NE(r.status, Status::Ok);
  }
  // A sync on top, to be sure every refusal above has been processed.
  ASSERT_TRUE(a.publish_raw(mqtt::topic_sync(hub_addr_, a.address()), {}, 0));
  ASSERT_TRUE(a.wait_reply(a.latest().state.txCountGlobal, r, 20000));
  EXPECT_EQ(r.kind, ReplyKind::Sync);
  EXPECT_EQ(wire(r.state), wire(a.latest()));

  const Ledger a1 = read_ledger(db(), a.address());
  const Ledger b1 = read_ledger(db(), b.address());
  EXPECT_EQ(a1.state, a0.state);
  EXPECT_EQ(a1.updates, a0.updates);
  EXPECT_EQ(b1.state, b0.state);
  EXPECT_EQ(b1.updates, b0.updates);
  // And the channel still works.
  EXPECT_EQ(a.pay(1), Status::Ok);
  expect_ledger_agrees(a);
}

TEST_F(HubTest, AclStopsPublishingOnAnotherChannelsTopic) {
  start_broker();
  start_hub();
  SimDevice& a = device(1);
  SimDevice& b = device(2);
  ASSERT_EQ(b.fund(1000), Status::Ok);
  const Ledger b0 = read_ledger(db(), b.address());
  // a publishes garbage and a sync on b's topics: the broker drops them (ACL).
  ASSERT_TRUE(a.publish_raw(mqtt::topic_update(hub_addr_, b.address()), {1, 2, 3}, 0));
  ASSERT_TRUE(a.publish_raw(mqtt::topic_sync(hub_addr_, b.address()), {}, 0));
  // b's own sync goes through; b must not have seen a Nack for tx 0 from a's garbage.
  ASSERT_TRUE(b.publish_raw(mqtt::topic_sync(hub_addr_, b.address()), {}, 0));
  Reply r;
  ASSERT_TRUE(b.wait_reply(b.latest().state.txCountGlobal, r, 20000));
  EXPECT_EQ(r.kind, ReplyKind::Sync);
  EXPECT_FALSE(b.wait_reply(0, r, 500));
  const Ledger b1 = read_ledger(db(), b.address());
  EXPECT_EQ(b1.state, b0.state);
  EXPECT_FALSE(read_ledger(db(), a.address()).found);
}

TEST_P(HubStore, Kill9OfTheHubMidStreamLosesNothing) {
  constexpr uint32_t kDevices = 4;
  constexpr int kPayments = 60;
  start_broker(false, kDevices);
  start_hub();
  for (uint32_t i = 1; i <= kDevices; ++i) device(i);
  for (auto& d : devices_) ASSERT_EQ(d->fund(1000000), Status::Ok);
  std::atomic<int> done{0}, failures{0};
  std::vector<std::thread> th;
  for (uint32_t i = 0; i < kDevices; ++i)
    th.emplace_back([&, i] {
      for (int k = 0; k < kPayments; ++k) {
        if (devices_[i]->pay(3) != Status::Ok) ++failures;
        ++done;
      }
    });
  for (int i = 0; i < 2000 && done.load() < static_cast<int>(kDevices) * kPayments / 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  hub_.kill9();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  start_hub();
  for (auto& t : th) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (auto& d : devices_) {
    EXPECT_EQ(d->latest().state.txCountGlobal, 2u + kPayments);
    expect_ledger_agrees(*d);
  }
}

TEST_F(HubTest, BrokerKillAndRestartMidStreamLosesNothing) {
  constexpr uint32_t kDevices = 3;
  constexpr int kPayments = 40;
  start_broker(false, kDevices);
  start_hub();
  for (uint32_t i = 1; i <= kDevices; ++i) device(i);
  for (auto& d : devices_) ASSERT_EQ(d->fund(1000000), Status::Ok);
  std::atomic<int> done{0}, failures{0};
  std::vector<std::thread> th;
  for (uint32_t i = 0; i < kDevices; ++i)
    th.emplace_back([&, i] {
      for (int k = 0; k < kPayments; ++k) {
        if (devices_[i]->pay(2) != Status::Ok) ++failures;
        ++done;
      }
    });
  for (int i = 0; i < 2000 && done.load() < static_cast<int>(kDevices) * kPayments / 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  broker_->kill9();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string err;
  ASSERT_TRUE(broker_->restart(err)) << err;
  for (auto& t : th) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (auto& d : devices_) {
    EXPECT_EQ(d->latest().state.txCountGlobal, 2u + kPayments);
    expect_ledger_agrees(*d);
  }
}

TEST_F(HubTest, TlsBrokerConnection) {
  start_broker(true, 2);
  start_hub();
  SimDevice& d = device(1);
  ASSERT_EQ(d.fund(100), Status::Ok);
  ASSERT_EQ(d.pay(1), Status::Ok);
  expect_ledger_agrees(d);
}

namespace {
SignedThreadState signed_thread(const Address& contract, const Address& payer, const PrivateKey& payer_key,
                                const Address& payee, uint64_t id, uint64_t sender_wei, uint64_t receiver_wei,
                                uint64_t tx) {
  SignedThreadState t{};
  t.state = thread_state_zero();
  t.state.contractAddress = contract;
  t.state.sender = payer;
  t.state.receiver = payee;
  t.state.threadId = id;
  t.state.balanceWeiSender = U256::from_u64(sender_wei);
  t.state.balanceWeiReceiver = U256::from_u64(receiver_wei);
  t.state.txCount = tx;
  Signer s;
  EXPECT_EQ(s.init(), Status::Ok);
  EXPECT_EQ(s.sign_eth(payer_key, thread_hash(t.state), t.sigA), Status::Ok);
  t.hasSigA = true;
  return t;
}

U256 u(uint64_t v) { return U256::from_u64(v); }

// What a refusal must leave unchanged: the channel's state and its countersigned updates
// (the request ids may move on: the hub asks the device to invalidate a refused proposal).
bool same_channel(const Ledger& a, const Ledger& b) {
  return a.found == b.found && a.state == b.state && a.updates == b.updates && a.deposits == b.deposits;
}

// Sends a raw update and returns the hub's answer (Nack status, Ok for an Ack, IoError
// without an answer).
Status send_raw(SimDevice& d, const Address& hub, const std::vector<uint8_t>& w, uint64_t tx) {
  if (w.empty()) return Status::BadArgs;
  if (!d.publish_raw(mqtt::topic_update(hub, d.address()), w, tx)) return Status::IoError;
  Reply r = reply_make(ReplyKind::Ack);
  if (!d.wait_reply(tx, r, 20000)) return Status::IoError;
  if (r.kind == ReplyKind::Ack) return Status::Ok;
  return r.kind == ReplyKind::Nack ? r.status : Status::BadKind;
}
}  // namespace

// docs/mqtt-protocol.md: the payer opens a thread, the hub requests its mirror from the
// payee (the payee's session proposes it), the payee closes with the latest thread state
// it holds, and the hub requests the same close from the payer. A payer that closes in its
// own channel (with an older state: a full refund) is refused (NotRequested), before and
// after the mirror: it would leave the hub paying the payee more than it collects.
TEST_P(HubStore, OnlyThePayeeClosesAThreadAndTheHubsBooksBalance) {
  start_broker();
  start_hub();
  SimDevice& a = device(1);  // payer
  SimDevice& b = device(2);  // payee
  ASSERT_EQ(b.fund(1000), Status::Ok);
  ASSERT_EQ(b.pay(500), Status::Ok);  // hub collateral in the payee's channel
  ASSERT_EQ(a.fund(1000), Status::Ok);

  uint64_t id = 0;
  ASSERT_EQ(a.open_thread(b.address(), 100, &id), Status::Ok);
  ASSERT_EQ(a.threads().size(), 1u);
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; }, 30000))
      << "the mirrored OpenThread was not requested from the payee";
  ASSERT_EQ(b.threads().size(), 1u);

  ChannelUpdate close0 = channel_update_make(UpdateReason::CloseThread);
  close0.thread.thread = signed_thread(contract_, a.address(), a.key(), b.address(), id, 100, 0, 0);
  const Ledger a0 = read_ledger(db(), a.address());
  const uint64_t tx = a.latest().state.txCountGlobal + 1;
  ChannelState n0{};
  EXPECT_EQ(send_raw(a, hub_addr_, a.build(close0, n0), tx), Status::NotRequested);
  EXPECT_TRUE(same_channel(read_ledger(db(), a.address()), a0)) << "a refused close changed the payer's channel";

  // The payer pays 40 in the thread (off-chain, payer -> payee) and asks the payee to close.
  ASSERT_EQ(a.thread_pay(b.address(), id, 40), Status::Ok);
  ASSERT_TRUE(b.wait_until(
      [&](SimDevice& d) {
        SignedThreadState t{};
        return d.thread_latest(a.address(), b.address(), id, t) && t.state.txCount == 1;
      },
      30000));
  ASSERT_EQ(a.close_thread(b.address(), id), Status::Ok);
  ASSERT_TRUE(a.wait_until([](SimDevice& d) { return d.completed(UpdateReason::CloseThread) == 1; }, 30000))
      << "the hub did not request the close from the payer";
  EXPECT_TRUE(a.threads().empty());
  EXPECT_TRUE(b.threads().empty());

  const ChannelState ca = a.latest().state;
  const ChannelState cb = b.latest().state;
  EXPECT_EQ(ca.balanceWeiUser, u(960));
  EXPECT_EQ(ca.balanceWeiHub, u(40));
  EXPECT_EQ(cb.balanceWeiUser, u(540));
  EXPECT_EQ(cb.balanceWeiHub, u(460));
  U256 hub_total{};
  ASSERT_EQ(u256_add(ca.balanceWeiHub, cb.balanceWeiHub, hub_total), Status::Ok);
  EXPECT_EQ(hub_total, u(500)) << "the hub's books across the two channels";
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
}

// The payee closes two threads while the payer does not answer the hub's requests: the
// second CloseThread request waits behind the first, stored. kill -9 of the hub right then
// must not lose it (the hub has paid the payee and must collect from the payer).
TEST_P(HubStore, Kill9KeepsStoredRequestsAndTheBooksBalance) {
  start_broker();
  start_hub();
  SimDevice& a = device(1);  // payer
  SimDevice& b = device(2);  // payee
  ASSERT_EQ(b.fund(1000), Status::Ok);
  ASSERT_EQ(b.pay(500), Status::Ok);  // hub collateral 500 in the payee's channel
  ASSERT_EQ(a.fund(1000), Status::Ok);
  uint64_t id1 = 0, id2 = 0;
  ASSERT_EQ(a.open_thread(b.address(), 100, &id1), Status::Ok);
  ASSERT_EQ(a.open_thread(b.address(), 100, &id2), Status::Ok);
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 2; }, 30000));
  ASSERT_EQ(a.thread_pay(b.address(), id1, 30), Status::Ok);
  ASSERT_EQ(a.thread_pay(b.address(), id2, 70), Status::Ok);
  a.pause_requests(true);  // the payer does not answer the hub's CloseThread requests yet
  ASSERT_EQ(a.close_thread(b.address(), id1), Status::Ok);
  ASSERT_EQ(a.close_thread(b.address(), id2), Status::Ok);
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::CloseThread) == 2; }, 30000));
  ASSERT_TRUE(a.wait_until([](SimDevice& d) { return d.hub_requests_seen() >= 1; }, 30000));
  const Ledger stored = read_ledger(db(), a.address());
  EXPECT_EQ(stored.requests, 2) << "both CloseThread requests are stored";
  hub_.kill9();
  a.pause_requests(false);
  start_hub();  // re-sends the outstanding request; the second follows once it is done
  ASSERT_TRUE(a.wait_until([](SimDevice& d) { return d.completed(UpdateReason::CloseThread) == 2; }, 60000))
      << "a stored CloseThread request was lost";
  EXPECT_TRUE(a.threads().empty());
  EXPECT_TRUE(b.threads().empty());
  const ChannelState ca = a.latest().state;
  const ChannelState cb = b.latest().state;
  EXPECT_EQ(ca.balanceWeiUser, u(900));
  EXPECT_EQ(ca.balanceWeiHub, u(100));
  EXPECT_EQ(cb.balanceWeiUser, u(600));
  EXPECT_EQ(cb.balanceWeiHub, u(400));
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
  EXPECT_EQ(read_ledger(db(), a.address()).requests, 0);
}

// Without a chain connection the hub cannot deposit collateral: an OpenThread the payee's
// channel cannot mirror (counting the mirrors already requested there) is refused before
// the hub countersigns it, so the payer's funds are never locked for a thread that is
// never mirrored.
TEST_F(HubTest, OpenThreadBeyondCollateralIncludingRequestedMirrorsIsRefusedUpFront) {
  start_broker();
  start_hub();
  SimDevice& a = device(1);  // payer
  SimDevice& b = device(2);  // payee
  ASSERT_EQ(b.fund(1000), Status::Ok);
  ASSERT_EQ(b.pay(500), Status::Ok);  // hub collateral 500
  ASSERT_EQ(a.fund(1000), Status::Ok);
  b.pause_requests(true);  // the mirror stays requested
  uint64_t id = 0;
  ASSERT_EQ(a.open_thread(b.address(), 300, &id), Status::Ok);
  const Ledger a0 = read_ledger(db(), a.address());
  ChannelUpdate o2 = channel_update_make(UpdateReason::OpenThread);
  o2.thread.thread = signed_thread(contract_, a.address(), a.key(), b.address(), id + 1, 300, 0, 0);
  ChannelState n2{};
  EXPECT_EQ(send_raw(a, hub_addr_, a.build(o2, n2), a.latest().state.txCountGlobal + 1), Status::Underflow)
      << "300 + 300 of mirrors against 500 of collateral";
  EXPECT_TRUE(same_channel(read_ledger(db(), a.address()), a0));
  b.pause_requests(false);
  ASSERT_TRUE(b.publish_raw(mqtt::topic_sync(hub_addr_, b.address()), {}, 0));  // the hub re-sends on a sync
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; }, 30000));
  EXPECT_EQ(a.threads().size(), 1u);
  EXPECT_EQ(b.threads().size(), 1u);
  EXPECT_EQ(b.latest().state.balanceWeiHub, u(200));
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
}

// issue 9, docs/signing-policy.md: a malicious device (it holds its own key, builds
// whatever it likes with the core and publishes it on its own update topic) against the
// real picopay-hub. Every harmful proposal class is refused with a Nack, nothing is
// signed, nothing stored changes (the SQLite ledger of both channels is read before and
// after), and the honest devices keep working afterwards.
TEST_P(HubStore, MaliciousDeviceEveryHarmfulProposalIsRefusedAndChangesNothing) {
  start_broker();
  start_hub();
  SimDevice& m = device(1);  // the malicious device (its session only for funding)
  SimDevice& b = device(2);  // an honest payee
  SimDevice& x = device(3);  // another user (a thread sender M pretends to mirror)
  ASSERT_EQ(m.deposit(1000, 1000000), Status::Ok);
  Hash32 h{};
  std::memset(h.bytes, 0xcc, 32);
  ASSERT_EQ(m.confirm_pending(h), Status::Ok);
  ASSERT_EQ(m.pay(500), Status::Ok);  // the hub holds 500 wei in M's channel
  ASSERT_EQ(b.fund(1000), Status::Ok);
  ASSERT_EQ(b.pay(500), Status::Ok);
  uint64_t tid = 0;
  ASSERT_EQ(m.open_thread(b.address(), 100, &tid), Status::Ok);
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; }, 30000));
  ASSERT_EQ(m.thread_pay(b.address(), tid, 40), Status::Ok);
  ASSERT_TRUE(m.wait_idle());
  ASSERT_TRUE(b.wait_idle());

  Signer signer;
  ASSERT_EQ(signer.init(), Status::Ok);
  const Ledger m0 = read_ledger(db(), m.address());
  const Ledger b0 = read_ledger(db(), b.address());
  const uint64_t tx = m.latest().state.txCountGlobal + 1;
  struct Case {
    const char* what;
    ChannelUpdate u;
    Status want;
    bool unchecked;  // built without channel_propose's own checks
  };
  std::vector<Case> cases;
  auto add = [&](const char* what, ChannelUpdate up, Status want, bool unchecked = false) {
    cases.push_back(Case{what, up, want, unchecked});
  };
  {
    ChannelUpdate e = channel_update_make(UpdateReason::Exchange);  // 2000 tokens/wei: the hub's is 1000
    e.exchange.seller = Party::User;
    e.exchange.tokensToSell = u(100000);
    e.exchange.exchangeRate = u(2000);
    add("Exchange at a rate the user picks", e, Status::RateOutOfBounds);
    ChannelUpdate e2 = e;  // the hub sells: the user names the amount the hub gives out
    e2.exchange.seller = Party::Hub;
    e2.exchange.tokensToSell = U256::zero();
    e2.exchange.weiToSell = u(400);
    e2.exchange.exchangeRate = u(1);
    add("Exchange where the hub sells at the user's rate", e2, Status::RateOutOfBounds);
  }
  {
    ChannelUpdate d = channel_update_make(UpdateReason::ProposePendingDeposit);
    d.deposit.depositWeiHub = u(1000000);
    d.deposit.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;
    add("deposit with depositWeiHub (the hub's reserve)", d, Status::NotRequested);
  }
  {
    ChannelUpdate w = channel_update_make(UpdateReason::ProposePendingWithdrawal);
    w.withdrawal.recipient = m.address();
    w.withdrawal.withdrawalWeiHub = u(500);
    w.withdrawal.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;
    add("withdrawal of the hub's balance to the user", w, Status::NotRequested);
    w.withdrawal.recipient = x.address();
    add("withdrawal of the hub's balance to a third party", w, Status::NotRequested);
    ChannelUpdate w2 = channel_update_make(UpdateReason::ProposePendingWithdrawal);
    w2.withdrawal.recipient = m.address();
    w2.withdrawal.withdrawalWeiUser = u(100000);
    w2.withdrawal.timeout = w.withdrawal.timeout;
    add("withdrawal beyond the user's balance", w2, Status::Underflow, true);
  }
  {
    ChannelUpdate p = channel_update_make(UpdateReason::Payment);
    p.payment.recipient = Party::User;
    p.payment.amountWei = u(100);
    add("payment from the hub to the user", p, Status::Unauthorized, true);
  }
  {
    ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
    o.thread.thread = signed_thread(contract_, x.address(), x.key(), m.address(), 7, 300, 0, 0);
    add("mirror OpenThread in a payee channel the hub did not request", o, Status::NotRequested);
  }
  {
    ChannelUpdate c = channel_update_make(UpdateReason::CloseThread);
    c.thread.thread = signed_thread(contract_, m.address(), m.key(), b.address(), tid, 100, 0, 0);
    add("payer CloseThread with a stale thread state (full refund)", c, Status::NotRequested);
  }
  {
    ChannelUpdate c = channel_update_make(UpdateReason::EmptyChannel);
    add("EmptyChannel without an on-chain empty", c, Status::NeedsChain, true);
  }
  for (auto& c : cases) {
    ChannelState next{};
    const auto w = c.unchecked ? m.build_unchecked(c.u) : m.build(c.u, next);
    ASSERT_FALSE(w.empty()) << c.what;
    EXPECT_EQ(send_raw(m, hub_addr_, w, tx), c.want) << c.what;
    std::printf("[adversarial device] %-60s -> Nack %s\n", c.what, status_name(c.want));
  }
  // Forged: M's next payment signed by another key; and a hub-signed-first update (the
  // hub's own signature, as an earlier version's proposal) replayed at the hub.
  {
    ChannelUpdate f = channel_update_make(UpdateReason::Payment);
    f.payment.recipient = Party::Hub;
    f.payment.amountWei = u(1);
    ChannelState nf{};
    auto wf = m.build(f, nf);
    Signature bad{};
    ASSERT_EQ(signer.sign_eth(test_key(77), channel_hash(nf), bad), Status::Ok);
    std::memcpy(&wf[wf.size() - 65], bad.r, 32);
    std::memcpy(&wf[wf.size() - 33], bad.s, 32);
    wf.back() = bad.v;
    EXPECT_EQ(send_raw(m, hub_addr_, wf, tx), Status::WrongSigner) << "forged signature";
    // A collateral deposit signed first by the hub, as earlier versions proposed them.
    ChannelUpdate hp = channel_update_make(UpdateReason::ProposePendingDeposit);
    hp.deposit.depositWeiHub = u(1000);
    hp.deposit.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;
    ChannelContext ctx{hub_addr_};
    const auto mt = m.threads();
    std::vector<ThreadState> items = mt;
    items.resize(mt.size() + 1);
    std::vector<Hash32> scratch(items.size() + 2);
    ThreadSet ts{items.data(), mt.size(), items.size(), scratch.data()};
    ChannelState nh{};
    ASSERT_EQ(channel_propose(ctx, signer, test_key(kHubIndex), Party::Hub, m.latest().state, ts, hp, nh), Status::Ok);
    uint8_t buf[kMaxChannelUpdateWire];
    size_t n = 0;
    ASSERT_EQ(encode_channel_update(hp, buf, sizeof buf, &n), Status::Ok);
    EXPECT_EQ(send_raw(m, hub_addr_, std::vector<uint8_t>(buf, buf + n), tx), Status::WrongSigner)
        << "a hub-signed-first update replayed at the hub";
    // ... and an Ack of it on the hub's reply topic (as a user answered hub proposals): ignored.
    Reply ack = reply_make(ReplyKind::Ack);
    ack.txCountGlobal = tx;
    ASSERT_EQ(signer.sign_eth(m.key(), channel_hash(nh), ack.sig), Status::Ok);
    uint8_t rb[kMaxReplyWire];
    size_t rn = 0;
    ASSERT_EQ(encode_reply(ack, rb, sizeof rb, &rn), Status::Ok);
    ASSERT_TRUE(m.publish_raw(mqtt::topic_hub_reply(hub_addr_, m.address()), std::vector<uint8_t>(rb, rb + rn), tx));
  }
  // Payment on a state with a pending withdrawal: the honest session withdraws 100 of its
  // own (countersigned), then M builds a payment on top: the double withdrawal built off
  // chain is refused; so are Invalidation and EmptyChannel without chain facts.
  for (int i = 0; i < 400 && read_ledger(db(), m.address()).requests != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(m.withdraw(m.address(), 100), Status::Ok);
  const Ledger m1 = read_ledger(db(), m.address());
  const uint64_t tx1 = m.latest().state.txCountGlobal + 1;
  {
    ChannelUpdate p = channel_update_make(UpdateReason::Payment);
    p.payment.recipient = Party::Hub;
    p.payment.amountWei = u(1);
    EXPECT_EQ(send_raw(m, hub_addr_, m.build_unchecked(p), tx1), Status::PendingOperation)
        << "payment carrying a pending withdrawal into a second state";
    ChannelUpdate iv = channel_update_make(UpdateReason::Invalidation);
    iv.invalidation.previousValidTxCount = tx1 - 2;
    iv.invalidation.lastInvalidTxCount = tx1 - 1;
    ChannelState ni{};
    const auto wi = m.build(iv, ni);
    EXPECT_EQ(send_raw(m, hub_addr_, wi.empty() ? m.build_unchecked(iv) : wi, tx1), Status::NeedsChain)
        << "Invalidation without chain facts";
  }
  // Sync: every refusal above was processed; nothing stored changed.
  Reply r = reply_make(ReplyKind::Ack);
  ASSERT_TRUE(m.publish_raw(mqtt::topic_sync(hub_addr_, m.address()), {}, 0));
  ASSERT_TRUE(m.wait_reply(tx1 - 1, r, 20000));
  EXPECT_EQ(r.kind, ReplyKind::Sync);
  EXPECT_TRUE(same_channel(read_ledger(db(), m.address()), m1)) << "a refused proposal changed the malicious channel";
  EXPECT_EQ(m1.updates, m0.updates + 1);  // only the honest withdrawal
  EXPECT_TRUE(same_channel(read_ledger(db(), b.address()), b0)) << "a refused proposal changed another channel";
  // The hub asked M's session to invalidate the refused proposals it signed; the session
  // holds none of them and says so (RequestNack): the requests are dropped.
  for (int i = 0; i < 400 && read_ledger(db(), m.address()).requests != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(read_ledger(db(), m.address()).requests, 0);

  // The honest devices keep working: confirm the withdrawal, exchange at the hub's rate,
  // pay; the payee closes its thread and the hub collects from M.
  ASSERT_EQ(m.confirm_pending(h), Status::Ok);
  ASSERT_EQ(m.exchange(false, 100000, 1000, 990, 1010), Status::Ok) << "an exchange at the hub's rate";
  EXPECT_EQ(m.latest().state.balanceTokenHub, u(100000));
  ASSERT_EQ(m.pay(1), Status::Ok);
  ASSERT_EQ(m.close_thread(b.address(), tid), Status::Ok);
  ASSERT_TRUE(m.wait_until([](SimDevice& d) { return d.completed(UpdateReason::CloseThread) == 1; }, 30000));
  ASSERT_EQ(b.pay(1), Status::Ok);
  expect_ledger_agrees(m);
  expect_ledger_agrees(b);
}

// Without --dev-skip-chain-checks and without --rpc-url the hub countersigns nothing that
// asserts an on-chain fact (ConfirmPending, Invalidation, EmptyChannel): NeedsChain.
TEST_F(HubTest, WithoutAChainConfirmPendingInvalidationAndEmptyChannelAreRefused) {
  start_broker();
  start_hub(false);
  SimDevice& m = device(1);
  ASSERT_EQ(m.deposit(1000), Status::Ok);  // countersigned: a pending deposit
  const Ledger l0 = read_ledger(db(), m.address());
  const uint64_t tx = m.latest().state.txCountGlobal + 1;
  ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
  std::memset(c.chainTx.transactionHash.bytes, 0xcc, 32);
  EXPECT_EQ(send_raw(m, hub_addr_, m.build_unchecked(c), tx), Status::NeedsChain);
  ChannelUpdate iv = channel_update_make(UpdateReason::Invalidation);
  iv.invalidation.previousValidTxCount = tx - 2;
  iv.invalidation.lastInvalidTxCount = tx - 1;
  EXPECT_EQ(send_raw(m, hub_addr_, m.build_unchecked(iv), tx), Status::NeedsChain);
  ChannelUpdate e = channel_update_make(UpdateReason::EmptyChannel);
  EXPECT_EQ(send_raw(m, hub_addr_, m.build_unchecked(e), tx), Status::NeedsChain);
  Reply r = reply_make(ReplyKind::Ack);
  ASSERT_TRUE(m.publish_raw(mqtt::topic_sync(hub_addr_, m.address()), {}, 0));
  ASSERT_TRUE(m.wait_reply(tx - 1, r, 20000));
  EXPECT_TRUE(same_channel(read_ledger(db(), m.address()), l0));
}

// issue 9: hub requests never deadlock against a paying device. Each round the payer
// opens a thread (the hub requests its mirror from the payee while the payee pays) and
// the payee closes it (the hub requests the close from the payer while the payer pays):
// two races per round, >= 1000 in all. Every race completes, both ledgers are equal
// (hub SQLite vs device session) and no txCountGlobal is signed twice.
TEST_F(HubTest, HubRequestsRacedAgainstPaymentsNeverDeadlock) {
  constexpr int kRounds = 500;
  start_broker();
  start_hub();
  SimDevice& a = device(1);  // payer
  SimDevice& b = device(2);  // payee
  ASSERT_EQ(a.fund(10000000), Status::Ok);
  ASSERT_EQ(b.fund(10000000), Status::Ok);
  ASSERT_EQ(b.pay(100000), Status::Ok);  // hub collateral in the payee's channel
  std::atomic<bool> stop{false};
  std::atomic<int> pay_failures{0};
  std::atomic<uint64_t> payments{0};
  auto payer = [&](SimDevice& d) {
    while (!stop.load()) {
      if (d.pay(1, nullptr, 60000) != Status::Ok) {
        ++pay_failures;
        return;
      }
      ++payments;
    }
  };
  std::thread pa([&] { payer(a); }), pb([&] { payer(b); });
  const auto t0 = std::chrono::steady_clock::now();
  int races = 0;
  for (int i = 0; i < kRounds && !HasFailure(); ++i) {
    uint64_t id = 0;
    ASSERT_EQ(a.open_thread(b.address(), 10, &id), Status::Ok) << "round " << i;
    ASSERT_TRUE(b.wait_until([&](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == size_t(i) + 1; },
                             60000))
        << "mirror request did not complete in round " << i;
    ++races;
    ASSERT_EQ(a.thread_pay(b.address(), id, 3), Status::Ok);
    ASSERT_TRUE(b.wait_until(
        [&](SimDevice& d) {
          SignedThreadState t{};
          return d.thread_latest(a.address(), b.address(), id, t) && t.state.txCount == 1;
        },
        60000));
    ASSERT_EQ(a.close_thread(b.address(), id), Status::Ok);
    ASSERT_TRUE(a.wait_until([&](SimDevice& d) { return d.completed(UpdateReason::CloseThread) == size_t(i) + 1; },
                             60000))
        << "close request did not complete in round " << i;
    ++races;
  }
  stop.store(true);
  pa.join();
  pb.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[measure] %d hub-request races against payments (%llu payments) in %.1f s; requests seen: payer %zu, "
              "payee %zu; arrived while the device's own proposal was in flight: payer %zu, payee %zu; RequestNacks "
              "%zu/%zu\n",
              races, static_cast<unsigned long long>(payments.load()), secs, a.hub_requests_seen(),
              b.hub_requests_seen(), a.collisions(), b.collisions(), a.request_nacks_sent(), b.request_nacks_sent());
  EXPECT_EQ(pay_failures.load(), 0);
  EXPECT_GE(races, 1000);
  EXPECT_TRUE(a.threads().empty());
  EXPECT_TRUE(b.threads().empty());
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
  // The hub's books: every wei paid in a thread went from A's channel to B's.
  const ChannelState ca = a.latest().state, cb = b.latest().state;
  EXPECT_EQ(ca.threadCount, 0u);
  EXPECT_EQ(cb.threadCount, 0u);
}

// A payee that takes no incoming threads refuses the hub's mirror request with a
// RequestNack (Unauthorized). The hub counts it and asks again after a backoff, never
// dropping the request on an unsigned RequestNack; a RequestNack for another request id
// (forged or stale) is ignored; nothing is signed in the payee's channel.
TEST_P(HubStore, RequestNackIsRetriedWithBackoffAndNeverSignsAnything) {
  start_broker();
  start_hub();
  SimOptions no_threads;
  no_threads.accept_threads = false;
  SimDevice& a = device(1);              // payer
  SimDevice& b = device(2, no_threads);  // payee refusing incoming threads
  ASSERT_EQ(b.fund(1000), Status::Ok);
  ASSERT_EQ(b.pay(500), Status::Ok);
  ASSERT_EQ(a.fund(1000), Status::Ok);
  const Ledger b0 = read_ledger(db(), b.address());
  uint64_t id = 0;
  ASSERT_EQ(a.open_thread(b.address(), 100, &id), Status::Ok);
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.request_nacks_sent() >= 3; }, 30000))
      << "the hub did not ask again after the RequestNack";
  // A RequestNack for a request id the hub never sent: ignored.
  Reply fake = reply_make(ReplyKind::RequestNack);
  fake.txCountGlobal = 999;
  fake.status = Status::Unauthorized;
  fake.state = b.latest();
  uint8_t buf[kMaxReplyWire];
  size_t n = 0;
  ASSERT_EQ(encode_reply(fake, buf, sizeof buf, &n), Status::Ok);
  ASSERT_TRUE(b.publish_raw(mqtt::topic_hub_reply(hub_addr_, b.address()), std::vector<uint8_t>(buf, buf + n), 999));
  Reply r = reply_make(ReplyKind::Ack);
  ASSERT_TRUE(b.publish_raw(mqtt::topic_sync(hub_addr_, b.address()), {}, 0));
  ASSERT_TRUE(b.wait_reply(b0.updates, r, 20000));
  const Ledger b1 = read_ledger(db(), b.address());
  EXPECT_EQ(b1.state, b0.state) << "the payee's channel changed";
  EXPECT_EQ(b1.updates, b0.updates);
  EXPECT_EQ(b1.requests, 1) << "the refused mirror request is kept";
  EXPECT_TRUE(b.threads().empty());
  EXPECT_EQ(a.threads().size(), 1u);
  EXPECT_EQ(b.completed(UpdateReason::OpenThread), 0u);
  EXPECT_NE(read_file(dir_ + "/hub.log").find("user refused request"), std::string::npos);
  EXPECT_EQ(b.pay(1), Status::Ok) << "the payee's channel keeps working";
}

// Hub-signed proposals stored by an earlier version (table proposals) become requests at
// start; until the channel passes that txCountGlobal the hub countersigns there only
// exactly that update (its signature on that state is out), then the user's session
// proposes it on the request.
TEST_F(HubTest, LegacyHubProposalBecomesARequestAndGuardsItsTxCount) {
  start_broker();
  start_hub();
  SimDevice& d = device(1);
  ASSERT_EQ(d.fund(1000), Status::Ok);
  ASSERT_TRUE(d.wait_idle());
  hub_.kill9();
  // The legacy row: a hub-signed ProposePendingDeposit (hub collateral) at tx 3.
  const SignedChannelState s = d.latest();
  ChannelUpdate p = channel_update_make(UpdateReason::ProposePendingDeposit);
  p.deposit.depositWeiHub = u(777);
  // Not what a fresh stamp would give (now + kDepositTimeoutSeconds): the hub must keep it.
  p.deposit.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3000;
  Signer signer;
  ASSERT_EQ(signer.init(), Status::Ok);
  ChannelContext ctx{hub_addr_};
  const ThreadSet none{nullptr, 0, 0, nullptr};
  ChannelState next{};
  ASSERT_EQ(channel_propose(ctx, signer, test_key(kHubIndex), Party::Hub, s.state, none, p, next), Status::Ok);
  uint8_t buf[kMaxChannelUpdateWire];
  size_t n = 0;
  ASSERT_EQ(encode_channel_update(p, buf, sizeof buf, &n), Status::Ok);
  {
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open(db().c_str(), &h), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(h, "INSERT INTO proposals(user, tx, request, state) VALUES(?,?,?,?)", -1, &st, nullptr),
              SQLITE_OK);
    const std::string k = mqtt::topic_address(d.address());
    sqlite3_bind_text(st, 1, k.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, static_cast<sqlite3_int64>(p.txCountGlobal));
    sqlite3_bind_blob(st, 3, buf, static_cast<int>(n), SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 4, buf, static_cast<int>(n), SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(h);
  }
  d.pause_requests(true);
  start_hub();
  ASSERT_TRUE(d.wait_until([](SimDevice& x) { return x.hub_requests_seen() >= 1; }, 30000));
  // Another update at the legacy proposal's txCountGlobal: refused.
  ChannelUpdate pay = channel_update_make(UpdateReason::Payment);
  pay.payment.recipient = Party::Hub;
  pay.payment.amountWei = u(1);
  ChannelState pn{};
  EXPECT_EQ(send_raw(d, hub_addr_, d.build(pay, pn), p.txCountGlobal), Status::NotRequested);
  d.pause_requests(false);
  ASSERT_TRUE(d.publish_raw(mqtt::topic_sync(hub_addr_, d.address()), {}, 0));  // the request again
  ASSERT_TRUE(d.wait_until([](SimDevice& x) { return x.completed(UpdateReason::ProposePendingDeposit) == 2; }, 30000));
  EXPECT_EQ(d.latest().state, next) << "the same state the earlier version's proposal signed";
  expect_ledger_agrees(d);
  const Ledger l = read_ledger(db(), d.address());
  EXPECT_EQ(l.requests, 0);
  EXPECT_EQ(l.deposits, 1) << "the countersigned collateral deposit waits for a chain";
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db().c_str(), &h), SQLITE_OK);
  EXPECT_EQ(count_rows(h, "proposals", mqtt::topic_address(d.address())), 0);
  sqlite3_close(h);
}

// An honest session's proposal the hub refuses for good (an exchange at a rate the hub
// does not offer, within the user's own tolerance): the hub Nacks it and requests the
// Invalidation of that half-signed state; the session gives the proposal up for the
// Invalidation (txCountGlobal + 2, the same contents) and the channel goes on.
TEST_F(HubTest, ARefusedProposalIsInvalidatedOnRequestAndTheChannelGoesOn) {
  start_broker();
  start_hub();
  SimDevice& d = device(1);
  ASSERT_EQ(d.deposit(1000, 1000000), Status::Ok);
  Hash32 h{};
  std::memset(h.bytes, 0xcc, 32);
  ASSERT_EQ(d.confirm_pending(h), Status::Ok);
  ASSERT_EQ(d.pay(500), Status::Ok);
  const SignedChannelState before = d.latest();
  EXPECT_EQ(d.exchange(false, 100000, 2000, 1900, 2100), Status::RateOutOfBounds);
  ASSERT_TRUE(d.wait_until(
      [&](SimDevice& x) { return x.latest().state.txCountGlobal == before.state.txCountGlobal + 2; }, 30000))
      << "the refused proposal was not invalidated";
  ASSERT_TRUE(d.wait_idle());
  ChannelState same = d.latest().state;
  same.txCountGlobal = before.state.txCountGlobal;
  EXPECT_EQ(same, before.state) << "the Invalidation repeats the latest state's contents";
  ASSERT_EQ(d.pay(1), Status::Ok) << "the channel goes on";
  const Ledger l = read_ledger(db(), d.address());
  EXPECT_EQ(l.state, wire(d.latest()));
  EXPECT_EQ(static_cast<uint64_t>(l.updates), d.latest().state.txCountGlobal - 1) << "one txCountGlobal skipped";
  EXPECT_EQ(l.requests, 0);
  EXPECT_EQ(d.double_signed(), 0u);
  EXPECT_FALSE(d.halted());
}

// The hub's rate is older than 24 h: it countersigns no Exchange at any rate (StaleRate),
// not even at its own; payments go on.
TEST_F(HubTest, AStaleExchangeRateCountersignsNoExchange) {
  start_broker();
  start_hub(true, {"--exchange-rate-time", std::to_string(static_cast<uint64_t>(std::time(nullptr)) - 90000)});
  SimDevice& d = device(1);
  ASSERT_EQ(d.deposit(1000, 1000000), Status::Ok);
  Hash32 h{};
  std::memset(h.bytes, 0xcc, 32);
  ASSERT_EQ(d.confirm_pending(h), Status::Ok);
  ASSERT_EQ(d.pay(500), Status::Ok);
  const Ledger l0 = read_ledger(db(), d.address());
  ChannelUpdate e = channel_update_make(UpdateReason::Exchange);
  e.exchange.seller = Party::User;
  e.exchange.tokensToSell = u(100000);
  e.exchange.exchangeRate = u(1000);
  ChannelState n{};
  EXPECT_EQ(send_raw(d, hub_addr_, d.build(e, n), d.latest().state.txCountGlobal + 1), Status::StaleRate);
  EXPECT_TRUE(same_channel(read_ledger(db(), d.address()), l0));
  for (int i = 0; i < 400 && read_ledger(db(), d.address()).requests != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(d.pay(1), Status::Ok);
  expect_ledger_agrees(d);
}

// --channel-cache 1: every batch evicts the channels it does not need, so each payment,
// thread and replay reads its channel back from the ledger. Nothing is lost, nothing is
// signed twice, a replay evicted from memory gets the stored answer, a conflicting update
// at a stored txCountGlobal is refused, and threads survive eviction of both ends.
TEST_P(HubStore, ATinyChannelCacheEvictsAndReloadsWithoutLosingOrSigningTwice) {
  constexpr uint32_t kDevices = 5;
  constexpr int kPayments = 20;
  start_broker(false, kDevices);
  start_hub(true, {"--channel-cache", "1"});
  for (uint32_t i = 1; i <= kDevices; ++i) device(i);
  for (auto& d : devices_) ASSERT_EQ(d->fund(100000), Status::Ok);

  // A stored update, then its channel evicted by the others' payments.
  SimDevice& r = *devices_[0];
  ChannelUpdate up = channel_update_make(UpdateReason::Payment);
  up.payment.recipient = Party::Hub;
  up.payment.amountWei = U256::from_u64(5);
  ChannelState nx{};
  const uint64_t tx = r.latest().state.txCountGlobal + 1;
  auto w = r.build(up, nx);
  ASSERT_FALSE(w.empty());
  const std::string topic = mqtt::topic_update(hub_addr_, r.address());
  ASSERT_TRUE(r.publish_raw(topic, w, tx));
  Reply first{};
  ASSERT_TRUE(r.wait_reply(tx, first, 20000));
  ASSERT_EQ(first.kind, ReplyKind::Ack);

  std::atomic<int> failures{0};
  std::vector<std::thread> th;
  for (uint32_t i = 1; i < kDevices; ++i)
    th.emplace_back([&, i] {
      for (int k = 0; k < kPayments; ++k)
        if (devices_[i]->pay(3) != Status::Ok) ++failures;
    });
  for (auto& t : th) t.join();
  ASSERT_EQ(failures.load(), 0);

  ASSERT_TRUE(r.publish_raw(topic, w, tx));  // the same bytes again: the stored Ack
  Reply again{};
  ASSERT_TRUE(r.wait_reply(tx, again, 20000));
  EXPECT_EQ(again.kind, ReplyKind::Ack);
  EXPECT_TRUE(again.sig == first.sig);
  ChannelUpdate other = up;  // another state at the same txCountGlobal: refused
  other.payment.amountWei = U256::from_u64(6);
  ChannelState no{};
  EXPECT_EQ(send_raw(r, hub_addr_, r.build(other, no), tx), Status::BadTxCount);
  EXPECT_EQ(read_ledger(db(), r.address()).updates, static_cast<long long>(tx));

  // Threads across evictions: the payer and the payee are evicted between every step.
  SimDevice& a = *devices_[1];
  SimDevice& b = *devices_[2];
  ASSERT_EQ(b.pay(500), Status::Ok);  // hub collateral in the payee's channel
  uint64_t id1 = 0, id2 = 0;
  ASSERT_EQ(a.open_thread(b.address(), 100, &id1), Status::Ok);
  ASSERT_EQ(devices_[3]->pay(1), Status::Ok);
  ASSERT_EQ(a.open_thread(b.address(), 50, &id2), Status::Ok);
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 2; }, 30000));
  ASSERT_EQ(devices_[4]->pay(1), Status::Ok);
  ASSERT_EQ(a.thread_pay(b.address(), id1, 30), Status::Ok);
  ASSERT_TRUE(b.wait_until(
      [&](SimDevice& d) {
        SignedThreadState t{};
        return d.thread_latest(a.address(), b.address(), id1, t) && t.state.txCount == 1;
      },
      30000));
  ASSERT_EQ(a.close_thread(b.address(), id1), Status::Ok);
  ASSERT_TRUE(a.wait_until([](SimDevice& d) { return d.completed(UpdateReason::CloseThread) == 1; }, 30000));
  ASSERT_EQ(devices_[3]->pay(1), Status::Ok);
  EXPECT_EQ(a.threads().size(), 1u);
  EXPECT_EQ(b.threads().size(), 1u);
  for (uint32_t i = 1; i < kDevices; ++i) expect_ledger_agrees(*devices_[i]);
  EXPECT_NE(read_file(dir_ + "/hub.log").find("channel cache: evicted"), std::string::npos) << "nothing was evicted";
}
