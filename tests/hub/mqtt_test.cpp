// picopay_mqtt against a real mosquitto (tests/support): codec, topics, request/reply
// properties, persistent session, Last Will, reconnect after a broker kill, ACL, TLS.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "picopay/codec.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "support/broker.hpp"

using namespace picopay;
using namespace picopay::mqtt;
using picopay::testsupport::Broker;
using picopay::testsupport::BrokerOptions;

namespace {

Address addr(uint8_t fill) {
  Address a;
  std::memset(a.bytes, fill, sizeof a.bytes);
  return a;
}

// Collects messages; waits with bounded loops.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Message> msgs;
  void push(const Message& m) {
    std::lock_guard<std::mutex> lk(mu);
    msgs.push_back(m);
    cv.notify_all();
  }
  bool wait_count(size_t n, int timeout_ms = 10000) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return msgs.size() >= n; });
  }
  size_t size() {
    std::lock_guard<std::mutex> lk(mu);
    return msgs.size();
  }
};

Options opts_for(const Broker& b, const std::string& id) {
  Options o;
  o.host = "127.0.0.1";
  o.port = b.port();
  o.client_id = id;
  o.reconnect_min_ms = 50;
  o.reconnect_max_ms = 500;
  return o;
}

}  // namespace

TEST(MqttProtocol, TopicsAreLowercaseAndParse) {
  Address hub = addr(0xAB), user = addr(0x0C);
  std::string t = topic_update(hub, user);
  EXPECT_EQ(t, "picopay/v1/hub/0xabababababababababababababababababababab/channel/"
               "0x0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c/update");
  Address h2{}, u2{};
  std::string leaf;
  ASSERT_TRUE(parse_channel_topic(t, h2, u2, leaf));
  EXPECT_TRUE(h2 == hub);
  EXPECT_TRUE(u2 == user);
  EXPECT_EQ(leaf, "update");
  EXPECT_TRUE(parse_channel_topic(topic_sync(hub, user), h2, u2, leaf));
  EXPECT_EQ(leaf, "sync");
  EXPECT_FALSE(parse_channel_topic("picopay/v1/hub/0xAB/channel/x/update", h2, u2, leaf));
  std::string upper = t;
  upper[20] = 'A';
  EXPECT_FALSE(parse_channel_topic(upper, h2, u2, leaf));
  EXPECT_FALSE(parse_channel_topic(t + "/extra", h2, u2, leaf));
  EXPECT_EQ(topic_reply(user), "picopay/v1/user/0x0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c/reply");
  // Several hub instances: each one's status topic, and back to its instance id.
  const std::string it = topic_hub_instance_status(hub, "i-1");
  EXPECT_EQ(it, "picopay/v1/hub/0xabababababababababababababababababababab/instance/i-1/status");
  EXPECT_EQ(topic_hub_instance_filter(hub), "picopay/v1/hub/0xabababababababababababababababababababab/instance/+/status");
  std::string inst;
  ASSERT_TRUE(parse_hub_instance_topic(it, hub, inst));
  EXPECT_EQ(inst, "i-1");
  EXPECT_FALSE(parse_hub_instance_topic(topic_hub_instance_status(user, "i-1"), hub, inst)) << "another hub's";
  EXPECT_FALSE(parse_hub_instance_topic(topic_hub_online(hub), hub, inst));
  EXPECT_FALSE(parse_hub_instance_topic(topic_hub_instance_status(hub, "a/b"), hub, inst));
  EXPECT_FALSE(parse_hub_instance_topic(topic_hub_instance_status(hub, ""), hub, inst));
  uint64_t tx = 0;
  ASSERT_TRUE(correlation_decode(correlation_encode(0x0102030405ULL), tx));
  EXPECT_EQ(tx, 0x0102030405ULL);
  EXPECT_FALSE(correlation_decode(std::vector<uint8_t>(7), tx));
}

TEST(MqttProtocol, ReplyRoundTripsAndRefusesBadInput) {
  mqtt::Reply ack;
  ack.kind = mqtt::ReplyKind::Ack;
  ack.txCountGlobal = 300;
  std::memset(ack.sig.r, 1, 32);
  std::memset(ack.sig.s, 2, 32);
  ack.sig.v = 28;
  std::vector<uint8_t> w;
  ASSERT_EQ(mqtt::encode_reply(ack, w), Status::Ok);
  EXPECT_EQ(w.size(), 2u + 2u + 65u);
  mqtt::Reply back;
  ASSERT_EQ(mqtt::decode_reply(w.data(), w.size(), back), Status::Ok);
  EXPECT_EQ(back.kind, mqtt::ReplyKind::Ack);
  EXPECT_EQ(back.txCountGlobal, 300u);
  EXPECT_TRUE(back.sig == ack.sig);
  // trailing, truncated, bad version, bad kind, non-canonical varint, high S
  auto t = w;
  t.push_back(0);
  EXPECT_EQ(mqtt::decode_reply(t.data(), t.size(), back), Status::TrailingBytes);
  EXPECT_EQ(mqtt::decode_reply(w.data(), w.size() - 1, back), Status::Truncated);
  t = w;
  t[0] = 2;
  EXPECT_EQ(mqtt::decode_reply(t.data(), t.size(), back), Status::BadVersion);
  t = w;
  t[1] = 0x14;  // 0x13 is a RequestNack now
  EXPECT_EQ(mqtt::decode_reply(t.data(), t.size(), back), Status::BadKind);
  std::vector<uint8_t> nc = {1, 0x10, 0x80, 0x00};
  nc.insert(nc.end(), 65, 0);
  EXPECT_EQ(mqtt::decode_reply(nc.data(), nc.size(), back), Status::NonCanonical);
  t = w;
  std::memset(&t[4 + 32], 0xff, 32);
  EXPECT_EQ(mqtt::decode_reply(t.data(), t.size(), back), Status::HighS);

  mqtt::Reply nack;
  nack.kind = mqtt::ReplyKind::Nack;
  nack.txCountGlobal = 7;
  nack.status = Status::BadTxCount;
  nack.state.state = channel_state_zero();
  nack.state.state.user = addr(3);
  nack.state.state.recipient = addr(3);
  nack.state.state.txCountGlobal = 5;
  w.clear();
  ASSERT_EQ(mqtt::encode_reply(nack, w), Status::Ok);
  ASSERT_EQ(mqtt::decode_reply(w.data(), w.size(), back), Status::Ok);
  EXPECT_EQ(back.kind, mqtt::ReplyKind::Nack);
  EXPECT_EQ(back.status, Status::BadTxCount);
  EXPECT_EQ(back.state.state.txCountGlobal, 5u);
  EXPECT_TRUE(back.state.state == nack.state.state);
  nack.status = Status::Ok;
  EXPECT_EQ(mqtt::encode_reply(nack, w), Status::BadArgs);
}

TEST(MqttClient, RequestReplyCarriesResponseTopicAndCorrelation) {
  Broker b;
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  Inbox ia;  // before the clients: their network threads push until the clients are destroyed
  Client a(opts_for(b, "test-a")), c(opts_for(b, "test-b"));
  a.on_message([&](const Message& m) { ia.push(m); });
  a.subscribe("req/#");
  ASSERT_TRUE(a.start(err)) << err;
  ASSERT_TRUE(c.start(err)) << err;
  ASSERT_TRUE(a.wait_connected(10000));
  ASSERT_TRUE(c.wait_connected(10000));
  // The subscription is sent asynchronously; publish until it arrives (bounded).
  PublishProps p;
  p.response_topic = "rep/x";
  p.correlation = correlation_encode(42);
  for (int i = 0; i < 100 && ia.size() == 0; ++i) {
    ASSERT_TRUE(c.publish("req/1", "hello", 1, false, &p, &err)) << err;
    ia.wait_count(1, 100);
  }
  ASSERT_GE(ia.size(), 1u);
  std::lock_guard<std::mutex> lk(ia.mu);
  EXPECT_EQ(ia.msgs[0].topic, "req/1");
  EXPECT_EQ(std::string(ia.msgs[0].payload.begin(), ia.msgs[0].payload.end()), "hello");
  EXPECT_EQ(ia.msgs[0].response_topic, "rep/x");
  uint64_t tx = 0;
  ASSERT_TRUE(correlation_decode(ia.msgs[0].correlation, tx));
  EXPECT_EQ(tx, 42u);
  EXPECT_EQ(ia.msgs[0].qos, 1);
}

TEST(MqttClient, PersistentSessionQueuesWhileOfflineAndSurvivesBrokerRestart) {
  Broker b;
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  Inbox inbox;
  {
    Inbox probe;
    Client sub(opts_for(b, "persist-sub"));
    sub.on_message([&](const Message& m) { probe.push(m); });
    sub.subscribe("q/#");
    ASSERT_TRUE(sub.start(err)) << err;
    ASSERT_TRUE(sub.wait_connected(10000));
    Client pub(opts_for(b, "persist-pub"));
    ASSERT_TRUE(pub.start(err));
    ASSERT_TRUE(pub.wait_connected(10000));
    for (int i = 0; i < 100 && probe.size() == 0; ++i) {
      pub.publish("q/probe", "p", 1);
      probe.wait_count(1, 100);
    }
    ASSERT_GE(probe.size(), 1u);
    sub.stop();
  }
  // offline: publish 5 messages
  {
    Client pub(opts_for(b, "persist-pub2"));
    ASSERT_TRUE(pub.start(err));
    ASSERT_TRUE(pub.wait_connected(10000));
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(pub.publish("q/" + std::to_string(i), "m", 1));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    pub.stop();
  }
  // Graceful broker restart keeps the session (persistence).
  b.stop();
  ASSERT_TRUE(b.restart(err)) << err;
  Client sub(opts_for(b, "persist-sub"));
  sub.on_message([&](const Message& m) { inbox.push(m); });
  sub.subscribe("q/#");
  ASSERT_TRUE(sub.start(err));
  for (int i = 0; i < 150; ++i) {
    inbox.wait_count(1000, 100);
    std::lock_guard<std::mutex> lk(inbox.mu);
    size_t got = 0;
    for (auto& m : inbox.msgs) got += m.topic != "q/probe";
    if (got >= 5) break;
  }
  std::lock_guard<std::mutex> lk(inbox.mu);
  size_t got = 0;
  for (auto& m : inbox.msgs) got += m.topic != "q/probe";
  EXPECT_EQ(got, 5u);
}

TEST(MqttClient, ReconnectsAfterBrokerKillAndLastWillFires) {
  Broker b;
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  Inbox wills;
  Client watcher(opts_for(b, "watcher"));
  watcher.on_message([&](const Message& m) { wills.push(m); });
  watcher.subscribe("status/#");
  ASSERT_TRUE(watcher.start(err));
  ASSERT_TRUE(watcher.wait_connected(10000));

  auto o = opts_for(b, "willer");
  o.will_topic = "status/willer";
  o.will_payload = "{\"state\":\"offline\"}";
  {
    auto w = std::make_unique<Client>(o);
    ASSERT_TRUE(w->start(err));
    ASSERT_TRUE(w->wait_connected(10000));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    w->stop(false);  // no DISCONNECT: destruction drops the socket, the will fires
  }
  ASSERT_TRUE(wills.wait_count(1, 15000));
  {
    std::lock_guard<std::mutex> lk(wills.mu);
    EXPECT_EQ(wills.msgs[0].topic, "status/willer");
  }
  // Broker kill -9 and restart: the watcher reconnects by itself.
  uint64_t before = watcher.connect_count();
  b.kill9();
  ASSERT_TRUE(b.restart(err)) << err;
  for (int i = 0; i < 300 && watcher.connect_count() == before; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GT(watcher.connect_count(), before);
  // and still receives (subscription renewed)
  Client p(opts_for(b, "poster"));
  ASSERT_TRUE(p.start(err));
  ASSERT_TRUE(p.wait_connected(10000));
  size_t n0 = wills.size();
  for (int i = 0; i < 100 && wills.size() == n0; ++i) {
    p.publish("status/x", "y", 1);
    wills.wait_count(n0 + 1, 100);
  }
  EXPECT_GT(wills.size(), n0);
}

TEST(MqttClient, AclAndPasswordsAreEnforced) {
  const std::string dev = topic_address(addr(0x11));
  const std::string other = topic_address(addr(0x22));
  BrokerOptions bo;
  bo.users = {{"hub", "hubpw"}, {dev, "devpw"}};
  bo.acl = testsupport::picopay_acl("hub");
  Broker b(bo);
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;

  auto ho = opts_for(b, "hub");
  ho.username = "hub";
  ho.password = "hubpw";
  Inbox in;  // before the client (destroyed after it)
  Client hub(ho);
  hub.on_message([&](const Message& m) { in.push(m); });
  hub.subscribe("picopay/v1/hub/+/channel/+/+");
  ASSERT_TRUE(hub.start(err));
  ASSERT_TRUE(hub.wait_connected(10000));

  // wrong password: never connects
  auto bad = opts_for(b, "bad");
  bad.username = dev;
  bad.password = "wrong";
  Client badc(bad);
  ASSERT_TRUE(badc.start(err));
  EXPECT_FALSE(badc.wait_connected(1500));
  badc.stop();

  auto d = opts_for(b, "dev");
  d.username = dev;
  d.password = "devpw";
  Client devc(d);
  ASSERT_TRUE(devc.start(err));
  ASSERT_TRUE(devc.wait_connected(10000));
  Address hubA = addr(0x99);
  // Forbidden first (another channel's topic), then allowed ones until one arrives.
  ASSERT_TRUE(devc.publish(topic_update(hubA, addr(0x22)), "forged", 1));
  for (int i = 0; i < 100 && in.size() == 0; ++i) {
    devc.publish(topic_update(hubA, addr(0x11)), "mine", 1);
    in.wait_count(1, 100);
  }
  ASSERT_GE(in.size(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::lock_guard<std::mutex> lk(in.mu);
  for (auto& m : in.msgs) {
    EXPECT_EQ(std::string(m.payload.begin(), m.payload.end()), "mine");
    EXPECT_EQ(m.topic.find(other), std::string::npos);
  }
}

TEST(MqttClient, TlsConnectionWithGeneratedCertificates) {
  BrokerOptions bo;
  bo.tls = true;
  Broker b(bo);
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  auto o = opts_for(b, "tls-client");
  o.port = b.tls_port();
  o.tls_ca_file = b.ca_file();
  Inbox in;  // before the client (destroyed after it)
  Client c(o);
  c.on_message([&](const Message& m) { in.push(m); });
  c.subscribe("tls/#");
  ASSERT_TRUE(c.start(err)) << err;
  ASSERT_TRUE(c.wait_connected(10000)) << c.last_error();
  for (int i = 0; i < 100 && in.size() == 0; ++i) {
    c.publish("tls/x", "secret", 1);
    in.wait_count(1, 100);
  }
  EXPECT_GE(in.size(), 1u);
  // A client without the CA (plain TCP against the TLS port) never gets a CONNACK.
  auto plain = opts_for(b, "plain");
  plain.port = b.tls_port();
  Client p(plain);
  ASSERT_TRUE(p.start(err));
  EXPECT_FALSE(p.wait_connected(1000));
}

// The client-id claim (client.hpp claim_client_id; docs/mqtt-protocol.md "One process per
// client id"): one topic level per id whatever its characters; the claim is retained and
// never reaches the message handler; a foreign claim after our own (here forged by
// another client on a broker without ACL, as a lying broker could) stops the client
// with the one-line reason instead of a reconnect loop.
TEST(MqttClient, ClientIdClaimIsRetainedAndAForeignClaimStopsTheClient) {
  EXPECT_EQ(topic_client_claim("hub", "picopay-hub-0xab"), "picopay/v1/claim/hub/picopay-hub-0xab");
  EXPECT_EQ(topic_client_claim("", "a/b+c#d%"), "picopay/v1/claim/-/a%2Fb%2Bc%23d%25");
  EXPECT_FALSE(topic_never_retained(topic_client_claim("hub", "x")));
  Broker b;
  std::string err;
  ASSERT_TRUE(b.start(err)) << err;
  Options o = opts_for(b, "claimer");
  o.claim_client_id = true;
  Inbox ia, io;  // before the clients: their network threads push until the clients are destroyed
  Client a(o);
  a.on_message([&](const Message& m) { ia.push(m); });
  ASSERT_TRUE(a.start(err)) << err;
  ASSERT_TRUE(a.wait_connected(10000));
  ASSERT_EQ(a.instance().size(), 32u);
  Client obs(opts_for(b, "observer"));
  obs.on_message([&](const Message& m) { io.push(m); });
  obs.subscribe(a.claim_topic());
  ASSERT_TRUE(obs.start(err)) << err;
  ASSERT_TRUE(io.wait_count(1));  // the retained claim names a's instance
  {
    std::lock_guard<std::mutex> lk(io.mu);
    const std::string p(io.msgs[0].payload.begin(), io.msgs[0].payload.end());
    EXPECT_NE(p.find("\"instance\":\"" + a.instance() + "\""), std::string::npos) << p;
    EXPECT_TRUE(io.msgs[0].retain);
  }
  EXPECT_EQ(ia.size(), 0u);  // the claim is the client's own business
  EXPECT_FALSE(a.session_taken_over());
  ASSERT_TRUE(obs.publish(a.claim_topic(), "{\"instance\":\"00000000000000000000000000000000\",\"pid\":\"1\"}", 1,
                          true, nullptr, &err))
      << err;
  for (int i = 0; i < 100 && !a.session_taken_over(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(a.session_taken_over());
  EXPECT_NE(a.last_error().find("client id 'claimer' is in use by another process"), std::string::npos)
      << a.last_error();
  for (int i = 0; i < 100 && a.connected(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(a.connected());
  EXPECT_EQ(ia.size(), 0u);
}
