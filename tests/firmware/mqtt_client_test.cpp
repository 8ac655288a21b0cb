// port/baremetal MqttClient on a scripted byte stream: the packets it writes are MQTT
// 3.1.1 byte for byte, and whatever the broker side sends (fragments, early PUBLISHes,
// malformed or oversize packets) is either handled or refused without touching memory
// outside the caller's buffers.
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "picopay/port/baremetal/mqtt_client.hpp"

using picopay::Status;
using picopay::port::baremetal::MqttClient;
using picopay::port::baremetal::MqttMessage;
using picopay::port::baremetal::SerialLink;

namespace {

// A link whose incoming bytes are scripted; the clock advances 1 ms per read attempt.
class ScriptLink final : public SerialLink {
 public:
  Status write(const uint8_t* d, size_t n) noexcept override {
    written.insert(written.end(), d, d + n);
    if (on_write) on_write(*this);
    return Status::Ok;
  }
  bool read(uint8_t* out) noexcept override {
    ++now;
    if (in.empty()) return false;
    *out = in.front();
    in.pop_front();
    return true;
  }
  uint32_t now_ms() noexcept override { return now; }
  void feed(const std::vector<uint8_t>& b) { in.insert(in.end(), b.begin(), b.end()); }

  std::vector<uint8_t> written;
  std::deque<uint8_t> in;
  uint32_t now = 0;
  void (*on_write)(ScriptLink&) = nullptr;
};

std::vector<uint8_t> publish_packet(const std::string& topic, const std::string& payload, int qos, uint16_t id) {
  std::vector<uint8_t> body;
  body.push_back(static_cast<uint8_t>(topic.size() >> 8));
  body.push_back(static_cast<uint8_t>(topic.size()));
  body.insert(body.end(), topic.begin(), topic.end());
  if (qos > 0) {
    body.push_back(static_cast<uint8_t>(id >> 8));
    body.push_back(static_cast<uint8_t>(id));
  }
  body.insert(body.end(), payload.begin(), payload.end());
  std::vector<uint8_t> p = {static_cast<uint8_t>(0x30 | (qos << 1))};
  size_t n = body.size();
  do {
    uint8_t b = n % 128;
    n /= 128;
    if (n) b |= 0x80;
    p.push_back(b);
  } while (n);
  p.insert(p.end(), body.begin(), body.end());
  return p;
}

struct MqttClientTest : ::testing::Test {
  ScriptLink link;
  uint8_t rx[128];
  uint8_t tx[128];
  MqttClient client{link, rx, sizeof rx, tx, sizeof tx};
};

TEST_F(MqttClientTest, ConnectWritesMqtt311AndTakesConnack) {
  link.feed({0x20, 0x02, 0x00, 0x00});
  ASSERT_EQ(client.connect("id", "user", "pw", 30, 100), Status::Ok);
  const std::vector<uint8_t> want = {0x10, 24, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 30, 0, 2, 'i', 'd',
                                     0, 4, 'u', 's', 'e', 'r', 0, 2, 'p', 'w'};
  EXPECT_EQ(link.written, want);
}

TEST_F(MqttClientTest, ConnectRefusedAndTimeout) {
  link.feed({0x20, 0x02, 0x00, 0x05});  // not authorized
  EXPECT_EQ(client.connect("id", "user", "pw", 30, 100), Status::Unauthorized);
  EXPECT_EQ(client.connect("id", "user", "pw", 30, 50), Status::IoError);  // no CONNACK at all
}

TEST_F(MqttClientTest, SubscribeQos1AndSuback) {
  link.feed({0x90, 0x03, 0x00, 0x01, 0x01});
  ASSERT_EQ(client.subscribe("a/b", 100), Status::Ok);
  const std::vector<uint8_t> want = {0x82, 8, 0, 1, 0, 3, 'a', '/', 'b', 1};
  EXPECT_EQ(link.written, want);
  link.written.clear();
  link.feed({0x90, 0x03, 0x00, 0x02, 0x80});  // refused by the ACL
  EXPECT_EQ(client.subscribe("x", 100), Status::Unauthorized);
}

TEST_F(MqttClientTest, PublishQos1AndBufferTooSmall) {
  const uint8_t payload[3] = {1, 2, 3};
  ASSERT_EQ(client.publish("t", payload, 3, 1), Status::Ok);
  const std::vector<uint8_t> want = {0x32, 8, 0, 1, 't', 0, 1, 1, 2, 3};
  EXPECT_EQ(link.written, want);
  std::vector<uint8_t> big(200, 7);
  EXPECT_EQ(client.publish("t", big.data(), big.size(), 1), Status::BufferTooSmall);
  EXPECT_EQ(client.publish("t", payload, 3, 2), Status::BadArgs);
}

TEST_F(MqttClientTest, PollReceivesFragmentedQos1PublishAndAcks) {
  const auto p = publish_packet("user/reply", "hello", 1, 0x1234);
  MqttMessage m;
  bool got = false;
  for (size_t i = 0; i < p.size(); ++i) {  // one byte at a time
    link.feed({p[i]});
    ASSERT_EQ(client.poll(m, &got), Status::Ok);
    EXPECT_EQ(got, i + 1 == p.size());
  }
  ASSERT_TRUE(got);
  EXPECT_EQ(std::string(m.topic, m.topic_len), "user/reply");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.payload), m.payload_len), "hello");
  const std::vector<uint8_t> puback = {0x40, 0x02, 0x12, 0x34};
  EXPECT_EQ(link.written, puback);
}

TEST_F(MqttClientTest, OversizeAndMalformedPacketsAreRefused) {
  MqttMessage m;
  bool got = false;
  // Remaining length 200 > the 128-byte receive buffer: refused before any byte is stored.
  link.feed({0x30, 0xC8, 0x01});
  EXPECT_EQ(client.poll(m, &got), Status::OutOfBounds);
  link.in.clear();
  // A five-byte remaining length.
  link.feed({0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01});
  EXPECT_EQ(client.poll(m, &got), Status::BadKind);
  link.in.clear();
  // Packet type 0 and 15 are reserved.
  link.feed({0x00, 0x00});
  EXPECT_EQ(client.poll(m, &got), Status::BadKind);
  link.in.clear();
  // A topic length past the packet's end.
  link.feed({0x30, 0x03, 0x00, 0x09, 'x'});
  EXPECT_EQ(client.poll(m, &got), Status::BadKind);
  EXPECT_FALSE(got);
  // QoS 2 is not spoken.
  link.feed(publish_packet("t", "x", 2, 1));
  EXPECT_EQ(client.poll(m, &got), Status::BadKind);
  // After a refusal the next good packet is read (the caller reconnects in practice).
  link.feed(publish_packet("t", "ok", 0, 0));
  ASSERT_EQ(client.poll(m, &got), Status::Ok);
  ASSERT_TRUE(got);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.payload), m.payload_len), "ok");
}

TEST_F(MqttClientTest, PingreqAfterHalfTheKeepAlive) {
  link.feed({0x20, 0x02, 0x00, 0x00});
  ASSERT_EQ(client.connect("id", nullptr, nullptr, 2, 100), Status::Ok);
  link.written.clear();
  MqttMessage m;
  bool got = false;
  for (int i = 0; i < 1100 && link.written.empty(); ++i) ASSERT_EQ(client.poll(m, &got), Status::Ok);
  const std::vector<uint8_t> ping = {0xC0, 0x00};
  EXPECT_EQ(link.written, ping);
}

}  // namespace
