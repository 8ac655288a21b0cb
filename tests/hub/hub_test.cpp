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
      Address a{};
      Signer s;
      ASSERT_EQ(s.init(), Status::Ok);
      ASSERT_EQ(s.address_of(test_key(i), a), Status::Ok);
      o.users.push_back({mqtt::topic_address(a), "pw-" + std::to_string(i)});
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

  void start_hub() {
    std::vector<std::string> argv = {PICOPAY_HUB_BIN,
                                     "--broker-host", "127.0.0.1",
                                     "--broker-port", std::to_string(tls_ ? broker_->tls_port() : broker_->port()),
                                     "--broker-user", "hub",
                                     "--broker-password", "hub-pass",
                                     "--contract", kContract,
                                     "--private-key", hex_key(test_key(kHubIndex)),
                                     "--db", db(),
                                     "--dev-skip-chain-checks"};
    if (tls_) {
      argv.push_back("--broker-ca");
      argv.push_back(broker_->ca_file());
    }
    ASSERT_TRUE(hub_.start(argv, dir_ + "/hub.log"));
  }

  SimDevice& device(uint32_t i) {
    auto d = std::make_unique<SimDevice>(i, hub_addr_, contract_);
    mqtt::Options o;
    o.port = tls_ ? broker_->tls_port() : broker_->port();
    if (tls_) o.tls_ca_file = broker_->ca_file();
    std::string err;
    EXPECT_TRUE(d->start(o, "pw-" + std::to_string(i), err)) << err;
    devices_.push_back(std::move(d));
    return *devices_.back();
  }

  void expect_ledger_agrees(SimDevice& d) {
    Ledger l = read_ledger(db(), d.address());
    ASSERT_TRUE(l.found);
    EXPECT_EQ(l.state, wire(d.latest())) << "hub ledger and device disagree for " << mqtt::topic_address(d.address());
    EXPECT_EQ(static_cast<uint64_t>(l.updates), d.latest().state.txCountGlobal);
  }

  std::string db() const { return dir_ + "/hub.db"; }
  std::string dir_;
  std::unique_ptr<Broker> broker_;
  Process hub_;
  bool tls_ = false;
  Address hub_addr_{}, contract_{};
  std::vector<std::unique_ptr<SimDevice>> devices_;
};

}  // namespace

TEST_F(HubTest, HelpListsEveryOption) {
  std::string out = dir_ + "/help.txt";
  ASSERT_EQ(run_command({PICOPAY_HUB_BIN, "--help"}, out), 0);
  std::string h = read_file(out);
  for (const char* opt : {"--config", "--broker-host", "--broker-port", "--broker-user", "--broker-password",
                          "--broker-ca", "--client-id", "--hub-address", "--key", "--private-key", "--contract",
                          "--rpc-url", "--event-state", "--confirmations", "--watchtower-interval", "--db",
                          "--batch-max", "--collateral-wei", "--dev-skip-chain-checks", "--verbose", "--help"})
    EXPECT_NE(h.find(opt), std::string::npos) << opt;
  EXPECT_EQ(run_command({PICOPAY_HUB_BIN, "--bogus"}, dir_ + "/bogus.txt"), 2);
}

TEST_F(HubTest, ManyDevicesPayAtOnce) {
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

TEST_F(HubTest, DuplicatedAndReorderedDeliveryIsIdempotent) {
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
  mqtt::Reply r3, r4, r3b;
  ASSERT_TRUE(d.wait_reply(3, r3, 20000));
  ASSERT_TRUE(d.wait_reply(4, r4, 20000));
  EXPECT_EQ(r3.kind, mqtt::ReplyKind::Ack);
  EXPECT_EQ(r4.kind, mqtt::ReplyKind::Ack);
  ASSERT_TRUE(d.publish_raw(topic, w3, 3));  // duplicate: the stored answer again
  ASSERT_TRUE(d.wait_reply(3, r3b, 20000));
  EXPECT_EQ(r3b.kind, mqtt::ReplyKind::Ack);
  EXPECT_TRUE(r3b.sig == r3.sig);
  Signer s;
  ASSERT_EQ(s.init(), Status::Ok);
  EXPECT_EQ(s.verify_eth(channel_hash(n4), r4.sig, hub_addr_), Status::Ok);
  SignedChannelState l4{};
  l4.state = n4;
  l4.hasSigUser = l4.hasSigHub = true;
  l4.sigUser = u4.sig;
  l4.sigHub = r4.sig;
  d.set_latest(l4);
  expect_ledger_agrees(d);
}

TEST_F(HubTest, ForgedReplayedForeignAndMalformedUpdatesAreRefusedAndChangeNothing) {
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
  mqtt::Reply r;

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
  EXPECT_EQ(r.kind, mqtt::ReplyKind::Nack);
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
  EXPECT_EQ(r.kind, mqtt::ReplyKind::Nack);
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
  EXPECT_EQ(r.kind, mqtt::ReplyKind::Nack);
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
    EXPECT_EQ(r.kind, mqtt::ReplyKind::Nack);
    EXPECT_NE(r.status, Status::Ok);
  }
  // A sync on top, to be sure every refusal above has been processed.
  ASSERT_TRUE(a.publish_raw(mqtt::topic_sync(hub_addr_, a.address()), {}, 0));
  ASSERT_TRUE(a.wait_reply(a.latest().state.txCountGlobal, r, 20000));
  EXPECT_EQ(r.kind, mqtt::ReplyKind::Sync);
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
  mqtt::Reply r;
  ASSERT_TRUE(b.wait_reply(b.latest().state.txCountGlobal, r, 20000));
  EXPECT_EQ(r.kind, mqtt::ReplyKind::Sync);
  EXPECT_FALSE(b.wait_reply(0, r, 500));
  const Ledger b1 = read_ledger(db(), b.address());
  EXPECT_EQ(b1.state, b0.state);
  EXPECT_FALSE(read_ledger(db(), a.address()).found);
}

TEST_F(HubTest, Kill9OfTheHubMidStreamLosesNothing) {
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
SignedThreadState signed_thread(const Address& contract, const SimDevice& payer, const Address& payee, uint64_t id,
                                uint64_t sender_wei, uint64_t receiver_wei, uint64_t tx) {
  SignedThreadState t{};
  t.state = thread_state_zero();
  t.state.contractAddress = contract;
  t.state.sender = payer.address();
  t.state.receiver = payee;
  t.state.threadId = id;
  t.state.balanceWeiSender = U256::from_u64(sender_wei);
  t.state.balanceWeiReceiver = U256::from_u64(receiver_wei);
  t.state.txCount = tx;
  Signer s;
  EXPECT_EQ(s.init(), Status::Ok);
  EXPECT_EQ(s.sign_eth(payer.key(), thread_hash(t.state), t.sigA), Status::Ok);
  t.hasSigA = true;
  return t;
}
}  // namespace

// docs/mqtt-protocol.md: the payee closes a thread (it holds the latest thread state). A
// payer that closes in its own channel with an older state (here the initial one: a full
// refund) would leave the hub paying the payee more than it collects from the payer.
TEST_F(HubTest, OnlyThePayeeClosesAThreadAndTheHubsBooksBalance) {
  start_broker();
  start_hub();
  SimDevice& a = device(1);  // payer
  SimDevice& b = device(2);  // payee
  ASSERT_EQ(b.fund(1000), Status::Ok);
  ASSERT_EQ(b.pay(500), Status::Ok);  // hub collateral in the payee's channel
  ASSERT_EQ(a.fund(1000), Status::Ok);

  const SignedThreadState t0 = signed_thread(contract_, a, b.address(), 1, 100, 0, 0);
  ChannelUpdate open = channel_update_make(UpdateReason::OpenThread);
  open.thread.thread = t0;
  ASSERT_EQ(a.propose(open), Status::Ok);
  ASSERT_EQ(a.threads().size(), 1u);

  ChannelUpdate close0 = channel_update_make(UpdateReason::CloseThread);
  close0.thread.thread = t0;
  // 1. The hub's OpenThread in the payee's channel is outstanding: the payer may not close.
  EXPECT_EQ(a.propose(close0), Status::Unauthorized);
  // 2. The payee countersigns the OpenThread: still not the payer's to close.
  UpdateReason why{};
  ASSERT_EQ(b.answer_request(30000, &why), Status::Ok);
  EXPECT_EQ(why, UpdateReason::OpenThread);
  EXPECT_EQ(a.propose(close0), Status::Unauthorized);
  const SignedChannelState a_before = a.latest();
  ASSERT_TRUE(a.publish_raw(mqtt::topic_sync(hub_addr_, a.address()), {}, 0));
  mqtt::Reply r;
  ASSERT_TRUE(a.wait_reply(a_before.state.txCountGlobal, r, 20000));
  EXPECT_EQ(wire(r.state), wire(a_before)) << "a refused close changed the payer's channel";

  // 3. The payer pays 40 in the thread (off-chain, payer -> payee); the payee closes with it.
  const SignedThreadState t1 = signed_thread(contract_, a, b.address(), 1, 60, 40, 1);
  ChannelUpdate close1 = channel_update_make(UpdateReason::CloseThread);
  close1.thread.thread = t1;
  ASSERT_EQ(b.propose(close1), Status::Ok);
  ASSERT_EQ(a.answer_request(30000, &why), Status::Ok);  // the hub closes it in the payer's channel
  EXPECT_EQ(why, UpdateReason::CloseThread);
  EXPECT_TRUE(a.threads().empty());
  EXPECT_TRUE(b.threads().empty());

  const ChannelState& ca = a.latest().state;
  const ChannelState& cb = b.latest().state;
  EXPECT_EQ(ca.balanceWeiUser, U256::from_u64(960));
  EXPECT_EQ(ca.balanceWeiHub, U256::from_u64(40));
  EXPECT_EQ(cb.balanceWeiUser, U256::from_u64(540));
  EXPECT_EQ(cb.balanceWeiHub, U256::from_u64(460));
  U256 hub_total{};
  ASSERT_EQ(u256_add(ca.balanceWeiHub, cb.balanceWeiHub, hub_total), Status::Ok);
  EXPECT_EQ(hub_total, U256::from_u64(500)) << "the hub's books across the two channels";
  ASSERT_TRUE(a.publish_raw(mqtt::topic_sync(hub_addr_, a.address()), {}, 0));
  ASSERT_TRUE(a.wait_reply(ca.txCountGlobal, r, 20000));
  ASSERT_TRUE(b.publish_raw(mqtt::topic_sync(hub_addr_, b.address()), {}, 0));
  ASSERT_TRUE(b.wait_reply(cb.txCountGlobal, r, 20000));
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
}

// A payee's CloseThread commits in the payee's channel while the hub's CloseThread for an
// earlier thread is still outstanding in the payer's channel: the matching CloseThread is
// queued. kill -9 of the hub right then must not lose it (the hub has paid the payee and
// must collect from the payer): the queue is stored with the update that made it.
TEST_F(HubTest, Kill9KeepsQueuedProposalsAndTheBooksBalance) {
  start_broker();
  start_hub();
  SimDevice& a = device(1);  // payer
  SimDevice& b = device(2);  // payee
  ASSERT_EQ(b.fund(1000), Status::Ok);
  ASSERT_EQ(b.pay(500), Status::Ok);  // hub collateral 500 in the payee's channel
  ASSERT_EQ(a.fund(1000), Status::Ok);
  UpdateReason why{};
  for (uint64_t id = 1; id <= 2; ++id) {
    ChannelUpdate open = channel_update_make(UpdateReason::OpenThread);
    open.thread.thread = signed_thread(contract_, a, b.address(), id, 100, 0, 0);
    ASSERT_EQ(a.propose(open), Status::Ok);
    ASSERT_EQ(b.answer_request(30000, &why), Status::Ok);
    ASSERT_EQ(why, UpdateReason::OpenThread);
  }
  // The payee closes thread 1 (30 paid) and thread 2 (70 paid); the payer does not answer
  // yet, so the hub's second CloseThread in the payer's channel waits in the queue.
  ChannelUpdate c1 = channel_update_make(UpdateReason::CloseThread);
  c1.thread.thread = signed_thread(contract_, a, b.address(), 1, 70, 30, 1);
  ASSERT_EQ(b.propose(c1), Status::Ok);
  ChannelUpdate c2 = channel_update_make(UpdateReason::CloseThread);
  c2.thread.thread = signed_thread(contract_, a, b.address(), 2, 30, 70, 3);
  ASSERT_EQ(b.propose(c2), Status::Ok);  // the Ack is released only after the COMMIT
  hub_.kill9();
  start_hub();
  // The payer answers both hub proposals (the first is re-sent at start).
  ASSERT_EQ(a.answer_request(30000, &why), Status::Ok);
  EXPECT_EQ(why, UpdateReason::CloseThread);
  ASSERT_EQ(a.answer_request(30000, &why), Status::Ok) << "the queued CloseThread was lost";
  EXPECT_EQ(why, UpdateReason::CloseThread);
  EXPECT_TRUE(a.threads().empty());
  EXPECT_TRUE(b.threads().empty());
  const ChannelState& ca = a.latest().state;
  const ChannelState& cb = b.latest().state;
  EXPECT_EQ(ca.balanceWeiUser, U256::from_u64(900));
  EXPECT_EQ(ca.balanceWeiHub, U256::from_u64(100));
  EXPECT_EQ(cb.balanceWeiUser, U256::from_u64(600));
  EXPECT_EQ(cb.balanceWeiHub, U256::from_u64(400));
  U256 hub_total{};
  ASSERT_EQ(u256_add(ca.balanceWeiHub, cb.balanceWeiHub, hub_total), Status::Ok);
  EXPECT_EQ(hub_total, U256::from_u64(500)) << "the hub's books across the two channels";
  mqtt::Reply r;
  ASSERT_TRUE(a.publish_raw(mqtt::topic_sync(hub_addr_, a.address()), {}, 0));
  ASSERT_TRUE(a.wait_reply(ca.txCountGlobal, r, 20000));
  EXPECT_EQ(wire(r.state), wire(a.latest()));
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
}

// Without a chain connection the hub cannot deposit collateral: an OpenThread the payee's
// channel cannot mirror (counting the OpenThreads already outstanding or queued there) is
// refused before the hub countersigns it, so the payer's funds are never locked for a
// thread that is never mirrored.
TEST_F(HubTest, OpenThreadBeyondCollateralIncludingQueuedMirrorsIsRefusedUpFront) {
  start_broker();
  start_hub();
  SimDevice& a = device(1);  // payer
  SimDevice& b = device(2);  // payee
  ASSERT_EQ(b.fund(1000), Status::Ok);
  ASSERT_EQ(b.pay(500), Status::Ok);  // hub collateral 500
  ASSERT_EQ(a.fund(1000), Status::Ok);
  ChannelUpdate o1 = channel_update_make(UpdateReason::OpenThread);
  o1.thread.thread = signed_thread(contract_, a, b.address(), 1, 300, 0, 0);
  ASSERT_EQ(a.propose(o1), Status::Ok);  // its mirror is outstanding in b's channel
  ChannelUpdate o2 = channel_update_make(UpdateReason::OpenThread);
  o2.thread.thread = signed_thread(contract_, a, b.address(), 2, 300, 0, 0);
  EXPECT_EQ(a.propose(o2), Status::Underflow) << "300 + 300 of mirrors against 500 of collateral";
  UpdateReason why{};
  ASSERT_EQ(b.answer_request(30000, &why), Status::Ok);
  EXPECT_EQ(why, UpdateReason::OpenThread);
  EXPECT_EQ(a.threads().size(), 1u);
  EXPECT_EQ(b.threads().size(), 1u);
  EXPECT_EQ(b.latest().state.balanceWeiHub, U256::from_u64(200));
  mqtt::Reply r;  // the hub answers a sync after it has committed b's countersignature
  ASSERT_TRUE(b.publish_raw(mqtt::topic_sync(hub_addr_, b.address()), {}, 0));
  ASSERT_TRUE(b.wait_reply(b.latest().state.txCountGlobal, r, 20000));
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
}
