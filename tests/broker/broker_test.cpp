// Broker and process hardening against a real mosquitto with the shipped limits and ACL
// (packaging/mosquitto/), the real picopay-hub and picopay-agent binaries, and simulated
// devices (tests/hub/sim_device.hpp). docs/mqtt-protocol.md "Broker security".
// Every wait is bounded; nothing here asserts a duration.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <dirent.h>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "hub_ledger.hpp"  // hex_key
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "sim_device.hpp"
#include "support/broker.hpp"

using namespace picopay;
using namespace picopay::testsupport;

namespace {

const char* kContract = "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390";
constexpr uint32_t kHubIndex = 0xB20CE5;

std::string addr_of(uint32_t index) {
  Signer s;
  Address a{};
  EXPECT_EQ(s.init(), Status::Ok);
  EXPECT_EQ(s.address_of(test_key(index), a), Status::Ok);
  return mqtt::topic_address(a);
}

bool poll_until(const std::function<bool()>& pred, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 20) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

bool write_mode(const std::string& path, const std::string& text, mode_t mode) {
  return write_file(path, text) && chmod(path.c_str(), mode) == 0;
}

// Messages received by a plain client.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<mqtt::Message> msgs;
  void push(const mqtt::Message& m) {
    std::lock_guard<std::mutex> lk(mu);
    msgs.push_back(m);
    cv.notify_all();
  }
  bool wait_for_topic(const std::string& topic, int timeout_ms = 15000) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] {
      for (auto& m : msgs)
        if (m.topic == topic) return true;
      return false;
    });
  }
  size_t count_topic(const std::string& topic) {
    std::lock_guard<std::mutex> lk(mu);
    size_t n = 0;
    for (auto& m : msgs) n += m.topic == topic;
    return n;
  }
};

class BrokerHardening : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("picopay-brokertest");
    hub_addr_text_ = addr_of(kHubIndex);
    ASSERT_EQ(address_parse(hub_addr_text_.c_str(), hub_addr_text_.size(), hub_addr_), Status::Ok);
    ASSERT_EQ(address_parse(kContract, std::strlen(kContract), contract_), Status::Ok);
  }
  void TearDown() override {
    hub_.kill9();
    devices_.clear();
    broker_.reset();
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s\n", dir_.c_str());
  }

  void start_broker(uint32_t devices = 4, bool bind_ids = true, const std::string& extra_conf = "") {
    BrokerOptions o;
    o.users.push_back({"hub", "hub-pass"});
    for (uint32_t i = 1; i <= devices; ++i) o.users.push_back({addr_of(i), "pw-" + std::to_string(i)});
    o.acl = picopay_acl("hub");
    o.dir = dir_ + "/broker";
    o.client_id_is_username = bind_ids;
    o.extra_conf = extra_conf;
    broker_ = std::make_unique<Broker>(o);
    std::string err;
    ASSERT_TRUE(broker_->start(err)) << err;
  }

  // The hub as a deployment runs it: key and broker password in a 0600 config file.
  void start_hub() {
    const std::string cfg = dir_ + "/hub.json";
    ASSERT_TRUE(write_mode(cfg,
                           "{\"broker\": {\"host\": \"127.0.0.1\", \"port\": " + std::to_string(broker_->port()) +
                               ", \"username\": \"hub\", \"password\": \"hub-pass\"},\n \"hub\": {\"privateKey\": \"" +
                               hex_key(test_key(kHubIndex)) + "\"},\n \"contract\": \"" + kContract +
                               "\", \"db\": \"" + dir_ + "/hub.db\", \"devSkipChainChecks\": true}\n",
                           0600));
    ASSERT_TRUE(hub_.start({PICOPAY_HUB_BIN, "--config", cfg}, hub_log()));
  }

  SimDevice& device(uint32_t i) {
    auto d = std::make_unique<SimDevice>(i, hub_addr_, contract_);
    mqtt::Options o;
    o.port = broker_->port();
    std::string err;
    EXPECT_TRUE(d->start(o, "pw-" + std::to_string(i), err)) << err;
    devices_.push_back(std::move(d));
    return *devices_.back();
  }

  mqtt::Options login(const std::string& user, const std::string& password, const std::string& client_id) {
    mqtt::Options o;
    o.port = broker_->port();
    o.username = user;
    o.password = password;
    o.client_id = client_id;
    o.reconnect_min_ms = 50;
    o.reconnect_max_ms = 500;
    return o;
  }

  // Connects with `client_id` under device `as`'s account `times` times (each waits for
  // the CONNACK, then disconnects), while `victim_work` runs.
  void takeover_attempts(uint32_t as, const std::string& client_id, int times) {
    for (int k = 0; k < times; ++k) {
      mqtt::Client c(login(addr_of(as), "pw-" + std::to_string(as), client_id));
      std::string err;
      ASSERT_TRUE(c.start(err)) << err;
      ASSERT_TRUE(c.wait_connected(15000)) << c.last_error();
      c.stop();
    }
  }

  std::string hub_log() const { return dir_ + "/hub.log"; }
  size_t hub_connects() { return count_of(read_file(hub_log()), "connected to broker"); }

  std::string dir_, hub_addr_text_;
  Address hub_addr_{}, contract_{};
  std::unique_ptr<Broker> broker_;
  Process hub_;
  std::vector<std::unique_ptr<SimDevice>> devices_;
};

// Pays `n` times sending each update ONCE (no re-send): a reply lost while the hub was
// knocked off the broker shows up as IoError.
void pay_once_each(SimDevice& d, int n, std::atomic<int>& failures) {
  for (int k = 0; k < n; ++k) {
    if (d.pay(3, nullptr, 20000) != Status::Ok) ++failures;
  }
}

}  // namespace

// ------------------------------------------------------------------ client ids

// The attack of issue 14 on the shipped config: device 2's account connects again and
// again with the hub's client id (picopay-hub-<hub>, and "hub", the id the broker gives
// the hub) while device 1 pays. The hub is never disconnected, no reply is lost.
TEST_F(BrokerHardening, DeviceUsingTheHubsClientIdCannotKnockTheHubOff) {
  start_broker();
  start_hub();
  SimDevice& d1 = device(1);
  ASSERT_EQ(d1.fund(1000000), Status::Ok);
  ASSERT_TRUE(poll_until([&] { return hub_connects() >= 1; }, 15000));
  std::atomic<int> failures{0};
  std::thread payer([&] { pay_once_each(d1, 30, failures); });
  takeover_attempts(2, "picopay-hub-" + hub_addr_text_, 5);
  takeover_attempts(2, "hub", 5);
  payer.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(hub_connects(), 1u) << read_file(hub_log());
  EXPECT_EQ(count_of(read_file(broker_->log_file()), "already connected, closing old connection"), 0u);
  EXPECT_EQ(d1.connect_count(), 1u);
}

// The same against another device: device 2 uses device 1's client id.
TEST_F(BrokerHardening, DeviceUsingAnotherDevicesClientIdCannotKnockItOff) {
  start_broker();
  start_hub();
  SimDevice& d1 = device(1);
  ASSERT_EQ(d1.fund(1000000), Status::Ok);
  std::atomic<int> failures{0};
  std::thread payer([&] { pay_once_each(d1, 30, failures); });
  takeover_attempts(2, "picopay-" + addr_of(1), 10);
  payer.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(d1.connect_count(), 1u);
  EXPECT_EQ(hub_connects(), 1u);
  EXPECT_EQ(count_of(read_file(broker_->log_file()), "already connected, closing old connection"), 0u);
}

// Control: without use_username_as_clientid the very same attempts do take the hub's
// session (so the two tests above would see it).
TEST_F(BrokerHardening, WithoutClientIdBindingTheSameAttemptsKnockTheHubOff) {
  start_broker(4, /*bind_ids=*/false);
  start_hub();
  ASSERT_TRUE(poll_until([&] { return hub_connects() >= 1; }, 15000));
  takeover_attempts(2, "picopay-hub-" + hub_addr_text_, 3);
  EXPECT_TRUE(poll_until([&] { return hub_connects() >= 2; }, 15000)) << read_file(hub_log());
  EXPECT_GE(count_of(read_file(broker_->log_file()), "already connected, closing old connection"), 1u);
}

// ------------------------------------------------------------------ retained messages

// A retained copy on a request/update/reply topic is never delivered: not on subscribe
// (Retain Handling 2) and, if a subscription's filter lets the broker send it, dropped by
// the client; retained status topics still arrive.
TEST_F(BrokerHardening, RetainedRequestsAreNeverDeliveredStatusStillIs) {
  start_broker();
  const std::string dev1 = addr_of(1);
  Address a1{};
  ASSERT_EQ(address_parse(dev1.c_str(), dev1.size(), a1), Status::Ok);
  const std::string request = mqtt::topic_request(a1), status = mqtt::topic_hub_online(hub_addr_);
  {
    Inbox echo;
    mqtt::Client hub(login("hub", "hub-pass", "hub"));
    hub.on_message([&](const mqtt::Message& m) { echo.push(m); });
    hub.subscribe("picopay/v1/hub/+/status", 1);
    std::string err;
    ASSERT_TRUE(hub.start(err)) << err;
    ASSERT_TRUE(hub.wait_connected(15000));
    ASSERT_TRUE(hub.publish(request, std::string("stale proposal"), 1, true));
    ASSERT_TRUE(hub.publish(status, std::string("{\"state\":\"online\"}"), 1, true));
    // Round trip: the status comes back once the broker has handled both publishes.
    ASSERT_TRUE(echo.wait_for_topic(status));
    hub.stop();
  }
  // An agent's subscriptions: the request topic (no retained) and the hub's status.
  Inbox in;
  mqtt::Client dev(login(dev1, "pw-1", "picopay-" + dev1));
  dev.on_message([&](const mqtt::Message& m) { in.push(m); });
  dev.subscribe(request, 1);
  dev.subscribe(status, 1);
  std::string err;
  ASSERT_TRUE(dev.start(err)) << err;
  ASSERT_TRUE(in.wait_for_topic(status));
  // A live request after the subscription: retained copies would have come first.
  {
    mqtt::Client hub(login("hub", "hub-pass", "hub"));
    ASSERT_TRUE(hub.start(err)) << err;
    ASSERT_TRUE(hub.wait_connected(15000));
    ASSERT_TRUE(hub.publish(request, std::string("live proposal"), 1, false));
    ASSERT_TRUE(in.wait_for_topic(request));
    hub.stop();
  }
  ASSERT_EQ(in.count_topic(request), 1u);
  {
    std::lock_guard<std::mutex> lk(in.mu);
    for (auto& m : in.msgs) {
      if (m.topic == request) {
        EXPECT_EQ(std::string(m.payload.begin(), m.payload.end()), "live proposal");
      }
    }
  }
  // A wider filter (user/<me>/+ is not a request-only filter) makes the broker send the
  // retained request, flag set: the client drops it and counts it.
  Inbox wide;
  mqtt::Client dev2(login(dev1, "pw-1", "second"));
  dev2.on_message([&](const mqtt::Message& m) { wide.push(m); });
  dev2.subscribe("picopay/v1/user/" + dev1 + "/+", 1);
  dev2.subscribe(status, 1);
  ASSERT_TRUE(dev2.start(err)) << err;
  ASSERT_TRUE(wide.wait_for_topic(status));
  ASSERT_TRUE(poll_until([&] { return dev2.dropped_retained() == 1; }, 15000));
  EXPECT_EQ(wide.count_topic(request), 0u);
}

// The hub's status topics (the hub's own and, with several instances, each instance's:
// docs/multi-instance.md) are written by the hub's account only: a device's "offline" on
// them is dropped by the broker (the retained "online" stays), and a device does not read
// the instances' topics (it reads the hub's).
TEST_F(BrokerHardening, ADeviceCannotWriteTheHubsStatus) {
  start_broker();
  const std::string dev1 = addr_of(1);
  Address a1{};
  ASSERT_EQ(address_parse(dev1.c_str(), dev1.size(), a1), Status::Ok);
  const std::string status = mqtt::topic_hub_online(hub_addr_);
  const std::string inst = mqtt::topic_hub_instance_status(hub_addr_, "a");
  const std::string online = "{\"state\":\"online\",\"instance\":\"a\"}";
  Inbox at_hub;
  mqtt::Client hub(login("hub", "hub-pass", "hub"));
  hub.on_message([&](const mqtt::Message& m) { at_hub.push(m); });
  hub.subscribe(status, 1);
  hub.subscribe(mqtt::topic_hub_instance_filter(hub_addr_), 1);
  std::string err;
  ASSERT_TRUE(hub.start(err)) << err;
  ASSERT_TRUE(hub.wait_connected(15000));
  ASSERT_TRUE(hub.publish(status, online, 1, true));
  ASSERT_TRUE(hub.publish(inst, online, 1, true));
  ASSERT_TRUE(at_hub.wait_for_topic(status));
  ASSERT_TRUE(at_hub.wait_for_topic(inst));

  Inbox at_dev;
  mqtt::Client dev(login(dev1, "pw-1", "picopay-" + dev1));
  dev.on_message([&](const mqtt::Message& m) { at_dev.push(m); });
  dev.subscribe(status, 1);
  dev.subscribe(inst, 1);
  dev.subscribe(mqtt::topic_user_status(a1), 1);
  ASSERT_TRUE(dev.start(err)) << err;
  ASSERT_TRUE(at_dev.wait_for_topic(status)) << "a device reads the hub's status";
  const std::string offline = "{\"state\":\"offline\",\"instance\":\"a\"}";
  ASSERT_TRUE(dev.publish(status, offline, 1, true));
  ASSERT_TRUE(dev.publish(inst, offline, 1, true));
  // Round trip: the device's own status comes back once the broker has handled the two.
  ASSERT_TRUE(dev.publish(mqtt::topic_user_status(a1), std::string("{\"state\":\"online\"}"), 1, true));
  ASSERT_TRUE(at_dev.wait_for_topic(mqtt::topic_user_status(a1)));
  EXPECT_EQ(at_dev.count_topic(inst), 0u) << "a device read an instance's status";
  EXPECT_EQ(at_dev.count_topic(status), 1u) << "the device's offline reached the hub's status topic";
  EXPECT_EQ(at_hub.count_topic(status), 1u) << "the device's offline reached the hub";
  EXPECT_EQ(at_hub.count_topic(inst), 1u) << "the device's offline reached the hub";
  dev.stop();
  hub.stop();
  // A new subscriber (the hub's account) reads the hub's "online", retained.
  Inbox fresh;
  mqtt::Client again(login("hub", "hub-pass", "hub"));
  again.on_message([&](const mqtt::Message& m) { fresh.push(m); });
  again.subscribe(status, 1);
  again.subscribe(inst, 1);
  ASSERT_TRUE(again.start(err)) << err;
  ASSERT_TRUE(fresh.wait_for_topic(status));
  ASSERT_TRUE(fresh.wait_for_topic(inst));
  std::lock_guard<std::mutex> lk(fresh.mu);
  for (const auto& m : fresh.msgs) EXPECT_EQ(std::string(m.payload.begin(), m.payload.end()), online) << m.topic;
}

TEST(NeverRetainedTopics, RequestsUpdatesAndRepliesButNotStatus) {
  Address h{}, u{};
  std::memset(h.bytes, 0xab, sizeof h.bytes);
  std::memset(u.bytes, 0x01, sizeof u.bytes);
  for (const std::string& t :
       {mqtt::topic_update(h, u), mqtt::topic_hub_reply(h, u), mqtt::topic_sync(h, u), mqtt::topic_reply(u),
        mqtt::topic_request(u), mqtt::topic_thread_update(u), mqtt::topic_hub_filter(h),
        std::string("picopay/v1/thread/+/update"), std::string("picopay/v1/hub/+/channel/+/update")})
    EXPECT_TRUE(mqtt::topic_never_retained(t)) << t;
  for (const std::string& t :
       {mqtt::topic_user_status(u), mqtt::topic_hub_status(h, u), mqtt::topic_hub_online(h),
        mqtt::topic_hub_instance_status(h, "a"), mqtt::topic_hub_instance_filter(h),
        std::string("picopay/v1/user/+/status"), std::string("picopay/v1/user/+/+"), std::string("picopay/v1/#"),
        std::string("picopay/v2/user/x/request"), std::string("tele/charger1/SENSOR"), std::string(""),
        std::string("picopay/v1/hub/x/channel/y/update/z"), std::string("picopay/v1/user/x/request/")})
    EXPECT_FALSE(mqtt::topic_never_retained(t)) << t;
}

// The hub ignores a validly signed update stored retained on its update topic: not at
// its first subscription, not after a restart (it would otherwise countersign it again
// on every reconnect).
TEST_F(BrokerHardening, HubNeverProcessesARetainedUpdate) {
  start_broker();
  // A signed ProposePendingDeposit (txCountGlobal 1), published retained before the hub
  // ever connects (by device 1's account, before device 1's own client connects: the
  // broker gives both the same client id).
  auto owned = std::make_unique<SimDevice>(1, hub_addr_, contract_);
  SimDevice& d1 = *owned;
  ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingDeposit);
  u.deposit.depositWeiUser = U256::from_u64(777);
  u.deposit.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;
  ChannelState next{};
  auto bytes = d1.build(u, next);
  ASSERT_FALSE(bytes.empty());
  {
    mqtt::Client raw(login(addr_of(1), "pw-1", "raw"));
    std::string err;
    ASSERT_TRUE(raw.start(err)) << err;
    ASSERT_TRUE(raw.wait_connected(15000));
    mqtt::PublishProps p;
    p.response_topic = mqtt::topic_reply(d1.address());
    p.correlation = mqtt::correlation_encode(1);
    ASSERT_TRUE(raw.publish(mqtt::topic_update(hub_addr_, d1.address()), bytes.data(), bytes.size(), 1, true, &p));
    raw.stop();  // DISCONNECT after the PUBACK queue drains: the message is stored
  }
  start_hub();  // it subscribes after the retained update was stored
  {
    mqtt::Options o;
    o.port = broker_->port();
    std::string err;
    ASSERT_TRUE(d1.start(o, "pw-1", err)) << err;  // connects and syncs with the hub
    devices_.push_back(std::move(owned));
  }
  auto synced_tx = [&](uint64_t& tx) {
    // Sync (live, after the hub's subscription): the hub's latest state for channel 1.
    for (int attempt = 0; attempt < 30; ++attempt) {
      if (!d1.publish_raw(mqtt::topic_sync(hub_addr_, d1.address()), {}, 0)) return false;
      for (uint64_t t : {0ULL, 1ULL}) {
        mqtt::Reply r;
        if (d1.wait_reply(t, r, 500)) {
          // Sync: the hub's latest state; an Ack of tx 1: it countersigned the retained update.
          tx = r.kind == mqtt::ReplyKind::Sync ? r.state.state.txCountGlobal : r.txCountGlobal;
          return true;
        }
      }
    }
    return false;
  };
  uint64_t tx = 99;
  ASSERT_TRUE(synced_tx(tx));
  EXPECT_EQ(tx, 0u) << "the hub countersigned the retained update";
  hub_.kill9();
  start_hub();
  tx = 99;
  ASSERT_TRUE(synced_tx(tx));
  EXPECT_EQ(tx, 0u) << "the hub countersigned the retained update after a restart";
  // The channel is usable: a fresh deposit proposal (another timeout) is countersigned.
  EXPECT_EQ(d1.fund(1000), Status::Ok);
}

// ------------------------------------------------------------------ flood

// A device floods a sleeping payee's thread topic (any device may publish there) while
// another device pays the hub. With the shipped limits the payee's queue, and with it
// the persistence file, stay bounded (max_queued_messages / max_queued_bytes), and the
// honest payments complete during the flood.
TEST_F(BrokerHardening, FloodOfASleepingPayeeStaysBoundedAndPaymentsComplete) {
  start_broker();
  start_hub();
  const std::string payee = addr_of(3);
  Address pa{};
  ASSERT_EQ(address_parse(payee.c_str(), payee.size(), pa), Status::Ok);
  const std::string topic = mqtt::topic_thread_update(pa);
  {
    // The payee's persistent session, then it goes to sleep.
    mqtt::Client p(login(payee, "pw-3", "picopay-" + payee));
    p.subscribe(topic, 1);
    std::string err;
    ASSERT_TRUE(p.start(err)) << err;
    ASSERT_TRUE(p.wait_connected(15000));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // SUBACK (ordering only)
    p.stop();
  }
  SimDevice& d1 = device(1);
  ASSERT_EQ(d1.fund(1000000), Status::Ok);
  constexpr int kFlood = 6000;
  constexpr size_t kPayload = 400;  // 2.4 MB in all, about a ThreadUpdate each
  std::atomic<int> failures{0};
  std::thread payer([&] { pay_once_each(d1, 20, failures); });
  {
    const std::string flooder = addr_of(2);
    Address fa{};
    ASSERT_EQ(address_parse(flooder.c_str(), flooder.size(), fa), Status::Ok);
    Inbox echo;
    mqtt::Client f(login(flooder, "pw-2", "picopay-" + flooder));
    f.on_message([&](const mqtt::Message& m) { echo.push(m); });
    f.subscribe(mqtt::topic_user_status(fa), 1);
    std::string err;
    ASSERT_TRUE(f.start(err)) << err;
    ASSERT_TRUE(f.wait_connected(15000));
    std::vector<uint8_t> junk(kPayload, 0x5a);
    for (int k = 0; k < kFlood; ++k) ASSERT_TRUE(f.publish(topic, junk.data(), junk.size(), 1, false));
    // The broker handles one client's publishes in order: once this marker comes back,
    // every flood message has been queued (or dropped) for the payee.
    ASSERT_TRUE(f.publish(mqtt::topic_user_status(fa), std::string("{\"state\":\"flooded\"}"), 1, false));
    ASSERT_TRUE(echo.wait_for_topic(mqtt::topic_user_status(fa), 60000));
    f.stop();
  }
  payer.join();
  EXPECT_EQ(failures.load(), 0);
  // SIGTERM: mosquitto writes its persistence file on the way out.
  broker_->stop();
  struct stat st {};
  ASSERT_EQ(stat(broker_->persistence_file().c_str(), &st), 0);
  const size_t flood_bytes = static_cast<size_t>(kFlood) * kPayload;
  std::printf("[measure] persistence file %lld bytes after a %zu-byte flood\n", static_cast<long long>(st.st_size),
              flood_bytes);
  // max_queued_bytes 262144 for the payee, plus sessions, subscriptions and headers.
  EXPECT_LT(static_cast<size_t>(st.st_size), size_t{600000});
  // The payee, back, gets at most the bounded queue.
  std::string err;
  ASSERT_TRUE(broker_->restart(err)) << err;
  Inbox in;
  mqtt::Client p(login(payee, "pw-3", "picopay-" + payee));
  p.on_message([&](const mqtt::Message& m) { in.push(m); });
  p.subscribe(topic, 1);
  ASSERT_TRUE(p.start(err)) << err;
  ASSERT_TRUE(p.wait_connected(15000));
  ASSERT_TRUE(in.wait_for_topic(topic));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the queue drain (count only)
  EXPECT_LE(in.count_topic(topic), 1000u);
}

// Why the hub must announce a large Receive Maximum: with the shipped per-client queue
// (1000 messages), a burst of 3000 messages to a client that is busy (its network thread
// blocked) reaches it whole only if the broker may keep them all in flight; with
// libmosquitto's default of 20 the broker drops what exceeds 20 + 1000.
TEST_F(BrokerHardening, ReceiveMaximumDecidesWhatABurstLeavesOfABusyClient) {
  start_broker();
  constexpr int kBurst = 3000;
  const std::string d1 = addr_of(1);
  const std::string topic = "picopay/v1/user/" + d1 + "/status";  // device 1 writes, the hub reads
  // How many messages the busy client got before the "after" marker.
  auto burst_received = [&](int receive_maximum) -> int {
    std::mutex mu;
    std::condition_variable cv;
    bool release = false, after = false;
    int got = 0;
    mqtt::Options o = login("hub", "hub-pass", "hub");
    o.receive_maximum = receive_maximum;
    o.clean_start = true;
    mqtt::Client busy(o);
    busy.on_message([&](const mqtt::Message& m) {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return release; });  // blocks the network thread: no PUBACK leaves
      if (std::string(m.payload.begin(), m.payload.end()) == "after") after = true;
      else if (!after) ++got;
      cv.notify_all();
    });
    busy.subscribe(topic, 1);
    std::string err;
    EXPECT_TRUE(busy.start(err)) << err;
    EXPECT_TRUE(busy.wait_connected(15000));
    Inbox mine;
    mqtt::Client dev(login(d1, "pw-1", "dev"));
    dev.on_message([&](const mqtt::Message& m) { mine.push(m); });
    dev.subscribe(topic, 1);
    EXPECT_TRUE(dev.start(err)) << err;
    EXPECT_TRUE(dev.wait_connected(15000));
    auto last_is = [&](const std::string& text) {
      std::lock_guard<std::mutex> lk(mine.mu);
      return !mine.msgs.empty() &&
             std::string(mine.msgs.back().payload.begin(), mine.msgs.back().payload.end()) == text;
    };
    // Once the device sees its own "hello", both subscriptions are in place.
    EXPECT_TRUE(dev.publish(topic, std::string("hello"), 1, false));
    EXPECT_TRUE(poll_until([&] { return last_is("hello"); }, 15000));
    for (int k = 0; k < kBurst; ++k) EXPECT_TRUE(dev.publish(topic, std::string("{}"), 1, false));
    EXPECT_TRUE(dev.publish(topic, std::string("end"), 1, false));
    // The broker handles one client's publishes in order: when "end" comes back to the
    // device, every burst message has been put in flight, queued or dropped for the hub.
    EXPECT_TRUE(poll_until([&] { return last_is("end"); }, 60000));
    {
      std::lock_guard<std::mutex> lk(mu);
      release = true;
    }
    cv.notify_all();
    // "after" may itself find the queue full while it drains: send it until one arrives.
    bool seen = false;
    for (int k = 0; k < 300 && !seen; ++k) {
      EXPECT_TRUE(dev.publish(topic, std::string("after"), 1, false));
      std::unique_lock<std::mutex> lk(mu);
      seen = cv.wait_for(lk, std::chrono::milliseconds(200), [&] { return after; });
    }
    EXPECT_TRUE(seen);
    dev.stop();
    busy.stop();
    return got;
  };
  const int small = burst_received(20);
  const int large = burst_received(65535);
  std::printf("[measure] of %d + 2 messages a busy client got %d with Receive Maximum 20, %d with 65535\n", kBurst,
              small, large);
  EXPECT_LE(small, 20 + 1000 + 2);
  EXPECT_EQ(large, kBurst + 2);  // "hello", the burst, "end"
}

// ------------------------------------------------------------------ secrets

namespace {

struct Outcome {
  int rc;
  std::string out;
};
Outcome run(const std::vector<std::string>& argv, const std::string& log) {
  remove(log.c_str());
  int rc = run_command(argv, log);
  return {rc, read_file(log)};
}

}  // namespace

TEST_F(BrokerHardening, HubRefusesAConfigWithAKeyReadableByOthers) {
  const std::string cfg = dir_ + "/hub.json", log = dir_ + "/out.txt";
  const std::string text = "{\"hub\": {\"privateKey\": \"" + hex_key(test_key(kHubIndex)) + "\"}}\n";
  ASSERT_TRUE(write_mode(cfg, text, 0644));
  Outcome r = run({PICOPAY_HUB_BIN, "--config", cfg}, log);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("readable by group/others (mode 0644): run chmod 600 " + cfg), std::string::npos) << r.out;
  EXPECT_EQ(count_of(r.out, "\n"), 1u) << r.out;  // one line
  ASSERT_TRUE(write_mode(cfg, "{\"broker\": {\"password\": \"p\"}}\n", 0640));
  r = run({PICOPAY_HUB_BIN, "--config", cfg, "--private-key", hex_key(test_key(1))}, log);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("(mode 0640): run chmod 600"), std::string::npos) << r.out;
  // 0600: accepted (what stops it now is the missing --contract).
  ASSERT_TRUE(write_mode(cfg, text, 0600));
  r = run({PICOPAY_HUB_BIN, "--config", cfg}, log);
  EXPECT_EQ(r.rc, 2);
  EXPECT_EQ(r.out.find("chmod"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--contract is required"), std::string::npos) << r.out;
  // A config without secrets may be 0644.
  ASSERT_TRUE(write_mode(cfg, "{\"db\": \"x.db\"}\n", 0644));
  r = run({PICOPAY_HUB_BIN, "--config", cfg}, log);
  EXPECT_EQ(r.out.find("chmod"), std::string::npos) << r.out;
}

TEST_F(BrokerHardening, HubPasswordFileMustBePrivate) {
  const std::string pw = dir_ + "/hub.password", log = dir_ + "/out.txt";
  ASSERT_TRUE(write_mode(pw, "secret\n", 0644));
  Outcome r = run({PICOPAY_HUB_BIN, "--broker-password-file", pw, "--contract", kContract, "--private-key",
               hex_key(test_key(1))},
              log);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("password file " + pw + " holds"), std::string::npos);
  EXPECT_NE(r.out.find("run chmod 600 " + pw), std::string::npos) << r.out;
  ASSERT_TRUE(write_mode(pw, "\n", 0600));
  r = run({PICOPAY_HUB_BIN, "--broker-password-file", pw, "--contract", kContract, "--private-key",
           hex_key(test_key(1))},
          log);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("is empty"), std::string::npos) << r.out;
}

// A 0600 password file logs the hub in (and a wrong one would not: the ACL'd broker
// refuses it, so the login proves the file's first line was used).
TEST_F(BrokerHardening, HubLogsInWithAPasswordFile) {
  start_broker();
  const std::string pw = dir_ + "/hub.password";
  ASSERT_TRUE(write_mode(pw, "hub-pass\r\n", 0600));
  const std::string cfg = dir_ + "/hub.json";
  ASSERT_TRUE(write_mode(cfg,
                         "{\"broker\": {\"port\": " + std::to_string(broker_->port()) +
                             ", \"username\": \"hub\", \"passwordFile\": \"" + pw + "\"}, \"hub\": {\"privateKey\": \"" +
                             hex_key(test_key(kHubIndex)) + "\"}, \"contract\": \"" + kContract + "\", \"db\": \"" +
                             dir_ + "/hub.db\", \"devSkipChainChecks\": true}\n",
                         0600));
  ASSERT_TRUE(hub_.start({PICOPAY_HUB_BIN, "--config", cfg}, hub_log()));
  SimDevice& d1 = device(1);
  EXPECT_EQ(d1.fund(100), Status::Ok);
  EXPECT_EQ(hub_connects(), 1u);
}

TEST_F(BrokerHardening, AgentRefusesAConfigWithAKeyOrPasswordReadableByOthers) {
  const std::string cfg = dir_ + "/dev.json", log = dir_ + "/out.txt";
  const std::string text = "{\"privateKey\": \"" + hex_key(test_key(1)) + "\"}\n";
  ASSERT_TRUE(write_mode(cfg, text, 0644));
  Outcome r = run({PICOPAY_AGENT_BIN, "--config", cfg}, log);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("config " + cfg + " holds a private key or password and is readable by group/others (mode "
                       "0644): run chmod 600 " + cfg),
            std::string::npos)
      << r.out;
  ASSERT_TRUE(write_mode(cfg, "{\"broker\": {\"password\": \"x\"}}\n", 0604));
  r = run({PICOPAY_AGENT_BIN, "--config", cfg}, log);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("(mode 0604): run chmod 600"), std::string::npos) << r.out;
  ASSERT_TRUE(write_mode(cfg, text, 0600));
  r = run({PICOPAY_AGENT_BIN, "--config", cfg}, log);
  EXPECT_EQ(r.rc, 2);
  EXPECT_EQ(r.out.find("chmod"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--state-dir is required"), std::string::npos) << r.out;
  const std::string pw = dir_ + "/dev.password";
  ASSERT_TRUE(write_mode(pw, "pw\n", 0660));
  r = run({PICOPAY_AGENT_BIN, "--state-dir", dir_ + "/s", "--password-file", pw}, log);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("run chmod 600 " + pw), std::string::npos) << r.out;
}

// `picopay demo` starts the broker, the hub, the payee and a charger with no key or
// password on any command line (/proc/<pid>/cmdline is world-readable), and writes
// every file holding one with mode 0600; its progress survives a charger dying.
#ifdef PICOPAY_CLI_BIN
TEST_F(BrokerHardening, DemoPutsNoSecretOnAnyCommandLineAndSurvivesAChargerDying) {
  const std::string work = dir_ + "/demo";
  Process demo;
  ASSERT_TRUE(demo.start({PICOPAY_CLI_BIN, "demo", "--devices", "1", "--seconds", "30", "--workdir", work},
                         dir_ + "/demo.log"));
  // Every program of the demo running: picopay-hub and two picopay-agent with our workdir.
  auto ours = [&](std::vector<std::pair<pid_t, std::string>>& procs) {
    procs.clear();
    DIR* d = opendir("/proc");
    if (!d) return;
    while (dirent* e = readdir(d)) {
      char* end = nullptr;
      long pid = std::strtol(e->d_name, &end, 10);
      if (*end || pid <= 0) continue;
      std::string cmd = read_file(std::string("/proc/") + e->d_name + "/cmdline");
      procs.emplace_back(static_cast<pid_t>(pid), cmd);
    }
    closedir(d);
  };
  std::vector<std::pair<pid_t, std::string>> procs;
  auto running = [&](const char* prog) {
    size_t n = 0;
    for (auto& p : procs) n += p.second.find(prog) != std::string::npos && p.second.find(work) != std::string::npos;
    return n;
  };
  ASSERT_TRUE(poll_until(
      [&] {
        ours(procs);
        return running("picopay-hub") == 1 && running("picopay-agent") == 2 && running("mosquitto") == 1;
      },
      180000))
      << read_file(dir_ + "/demo.log");
  // The secrets, from the files the demo wrote.
  std::vector<std::string> secrets;
  for (const char* f : {"/hub.json", "/payee.json", "/charger1.json"}) {
    const std::string path = work + f;
    struct stat st {};
    ASSERT_EQ(stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << path;
    std::string t = read_file(path);
    for (const char* key : {"\"privateKey\": \"", "\"password\": \""}) {
      size_t at = t.find(key);
      ASSERT_NE(at, std::string::npos) << path << " " << key;
      at += std::strlen(key);
      std::string v = t.substr(at, t.find('"', at) - at);
      ASSERT_GE(v.size(), 16u);
      secrets.push_back(key[1] == 'p' && key[2] == 'r' ? v.substr(2) : v);  // keys: also without 0x
    }
  }
  struct stat st {};
  ASSERT_EQ(stat((work + "/broker/passwd").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ours(procs);
  for (auto& p : procs)
    for (auto& s : secrets) EXPECT_EQ(p.second.find(s), std::string::npos) << "pid " << p.first << " argv has a secret";

  // The charger dies (its Last Will: {"state":"offline"}, no counters): the progress
  // lines go on with a sane payments/s (it used to print 18359958898073098240).
  auto progress_lines = [&] { return count_of(read_file(dir_ + "/demo.log"), "payments/s="); };
  ASSERT_TRUE(poll_until([&] { return progress_lines() >= 2; }, 60000)) << read_file(dir_ + "/demo.log");
  pid_t charger = -1;
  for (auto& p : procs)
    if (p.second.find("picopay-agent") != std::string::npos && p.second.find("charger1.json") != std::string::npos)
      charger = p.first;
  ASSERT_GT(charger, 0);
  ASSERT_EQ(kill(charger, SIGKILL), 0);
  const size_t before = progress_lines();
  EXPECT_TRUE(poll_until([&] { return progress_lines() >= before + 3; }, 60000)) << read_file(dir_ + "/demo.log");
  kill(demo.pid(), SIGINT);
  demo.wait(60000);
  const std::string out = read_file(dir_ + "/demo.log");
  size_t lines = 0;
  for (size_t at = out.find("payments/s="); at != std::string::npos; at = out.find("payments/s=", at + 1)) {
    const double rate = std::strtod(out.c_str() + at + std::strlen("payments/s="), nullptr);
    EXPECT_GE(rate, 0.0);
    EXPECT_LT(rate, 100000.0) << out.substr(at, 40);
    ++lines;
  }
  EXPECT_GE(lines, before + 3);
}
#endif

// ------------------------------------------------------------------ shipped files

// The example's broker config and ACL carry the shipped limits and ACL (the demo and the
// test broker embed them at build time), and mosquitto accepts the example config.
TEST_F(BrokerHardening, ExampleBrokerFilesMatchTheShippedOnes) {
  const std::string src = PICOPAY_SOURCE_DIR;
  const std::string limits = read_file(src + "/packaging/mosquitto/conf.d/picopay-limits.conf");
  const std::string example = read_file(src + "/examples/ev-charger/mosquitto.conf");
  ASSERT_FALSE(limits.empty());
  size_t lines = 0;
  for (size_t at = 0; at < limits.size();) {
    size_t nl = limits.find('\n', at);
    std::string line = limits.substr(at, nl - at);
    at = nl == std::string::npos ? limits.size() : nl + 1;
    if (line.empty() || line[0] == '#') continue;
    ++lines;
    EXPECT_NE(example.find("\n" + line + "\n"), std::string::npos) << "examples/ev-charger/mosquitto.conf lacks: "
                                                                    << line;
  }
  EXPECT_GE(lines, 6u);
  EXPECT_NE(example.find("use_username_as_clientid true"), std::string::npos);
  const std::string acl = read_file(src + "/packaging/mosquitto/picopay.acl");
  ASSERT_FALSE(acl.empty());
  EXPECT_EQ(read_file(src + "/examples/ev-charger/acl").compare(0, acl.size(), acl), 0);
  EXPECT_EQ(picopay_acl("hub"), acl);
  // mosquitto starts with the example config (its listener moved to a free port).
  const std::string d = dir_ + "/example";
  ASSERT_EQ(run_command({"mkdir", "-p", d}), 0);
  std::string conf = example;
  const int port = free_port();
  size_t at = conf.find("listener 1883 127.0.0.1");
  ASSERT_NE(at, std::string::npos);
  conf.replace(at, std::strlen("listener 1883 127.0.0.1"), "listener " + std::to_string(port) + " 127.0.0.1");
  if (geteuid() == 0) conf = "user root\n" + conf;
  ASSERT_TRUE(write_file(d + "/mosquitto.conf", conf));
  ASSERT_TRUE(write_file(d + "/acl", read_file(src + "/examples/ev-charger/acl")));
  ASSERT_TRUE(write_mode(d + "/passwd", "hub:x\n", 0600));
  ASSERT_EQ(run_command({"mosquitto_passwd", "-U", d + "/passwd"}), 0);
  Process m;
  ASSERT_TRUE(m.start({"sh", "-c", "cd " + d + " && exec mosquitto -c mosquitto.conf"}, d + "/out.log"));
  EXPECT_TRUE(wait_port_open(port, 10000)) << read_file(d + "/out.log");
  m.kill9();
}
