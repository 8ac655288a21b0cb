// Allocation-free MQTT 3.1.1 client (mqtt_client.hpp).
#include "picopay/port/baremetal/mqtt_client.hpp"

#include <cstring>

namespace picopay::port::baremetal {

namespace {
enum : uint8_t {
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kSubscribe = 8,
  kSuback = 9,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
};

// Writer over the tx buffer; `ok` turns false once anything would not fit.
struct Out {
  uint8_t* p;
  size_t cap;
  size_t n = 0;
  bool ok = true;
  void u8(uint8_t v) {
    if (n < cap) p[n++] = v;
    else ok = false;
  }
  void u16(size_t v) {
    u8(static_cast<uint8_t>(v >> 8));
    u8(static_cast<uint8_t>(v));
  }
  void bytes(const void* d, size_t len) {
    if (len == 0) return;
    if (len > cap - n) {
      ok = false;
      return;
    }
    std::memcpy(p + n, d, len);
    n += len;
  }
  void str(const char* s) {
    const size_t len = std::strlen(s);
    if (len > 0xFFFF) {
      ok = false;
      return;
    }
    u16(len);
    bytes(s, len);
  }
};

// Fixed header: type/flags byte and the remaining length (1-4 bytes), written in front
// of a body that was built at offset 5; returns the offset where the packet starts.
size_t frame(uint8_t* buf, uint8_t first, size_t body_len) {
  uint8_t len[4];
  size_t k = 0;
  size_t v = body_len;
  do {
    uint8_t b = static_cast<uint8_t>(v % 128);
    v /= 128;
    if (v > 0) b |= 0x80;
    len[k++] = b;
  } while (v > 0 && k < 4);
  const size_t start = 5 - 1 - k;
  buf[start] = first;
  std::memcpy(buf + start + 1, len, k);
  return start;
}
}  // namespace

MqttClient::MqttClient(SerialLink& link, uint8_t* rx, size_t rx_cap, uint8_t* tx, size_t tx_cap) noexcept
    : link_(link), rx_(rx), rx_cap_(rx_cap), tx_(tx), tx_cap_(tx_cap) {}

Status MqttClient::read_packet(Got* got) noexcept {
  *got = Got::None;
  uint8_t b = 0;
  // Bounded: at most one packet's bytes per call (and what is waiting).
  while (link_.read(&b)) {
    last_rx_ms_ = link_.now_ms();
    switch (stage_) {
      case 0:
        if ((b >> 4) == 0 || (b >> 4) == 15) return Status::BadKind;
        hdr_ = b;
        want_ = 0;
        len_shift_ = 0;
        have_ = 0;
        stage_ = 1;
        break;
      case 1:
        want_ |= static_cast<size_t>(b & 0x7F) << len_shift_;
        len_shift_ = static_cast<uint8_t>(len_shift_ + 7);
        if (b & 0x80) {
          if (len_shift_ >= 28) {
            stage_ = 0;
            return Status::BadKind;
          }
          break;
        }
        if (want_ > rx_cap_) {
          stage_ = 0;
          return Status::OutOfBounds;
        }
        stage_ = 2;
        if (want_ == 0) {
          stage_ = 0;
          *got = Got::Packet;
          return Status::Ok;
        }
        break;
      default:
        rx_[have_++] = b;
        if (have_ == want_) {
          stage_ = 0;
          *got = Got::Packet;
          return Status::Ok;
        }
        break;
    }
  }
  return Status::Ok;
}

Status MqttClient::wait_for(uint8_t type, uint32_t timeout_ms) noexcept {
  const uint32_t t0 = link_.now_ms();
  while (link_.now_ms() - t0 < timeout_ms) {
    Got got = Got::None;
    const Status e = read_packet(&got);
    if (e != Status::Ok) return e;
    if (got != Got::Packet) continue;
    const uint8_t t = static_cast<uint8_t>(hdr_ >> 4);
    if (t == type) return Status::Ok;
    if (t == kPublish && (hdr_ & 0x06) == 0x02 && want_ >= 2) {
      // A QoS 1 message that came early: acknowledge it (it is dropped).
      const size_t tl = (static_cast<size_t>(rx_[0]) << 8) | rx_[1];
      if (2 + tl + 2 <= want_) {
        const uint8_t ack[4] = {kPuback << 4, 2, rx_[2 + tl], rx_[3 + tl]};
        (void)link_.write(ack, sizeof ack);
      }
    }
  }
  return Status::IoError;
}

Status MqttClient::connect(const char* client_id, const char* user, const char* password, uint16_t keepalive_s,
                           uint32_t timeout_ms) noexcept {
  stage_ = 0;
  keepalive_s_ = keepalive_s;
  if (tx_cap_ < 6) return Status::BufferTooSmall;
  Out o{tx_ + 5, tx_cap_ - 5};
  o.str("MQTT");
  o.u8(4);  // protocol level 4 = 3.1.1
  uint8_t flags = 0x02;  // clean session
  if (user != nullptr) flags |= 0x80;
  if (user != nullptr && password != nullptr) flags |= 0x40;
  o.u8(flags);
  o.u16(keepalive_s);
  o.str(client_id);
  if (user != nullptr) o.str(user);
  if (user != nullptr && password != nullptr) o.str(password);
  if (!o.ok) return Status::BufferTooSmall;
  const size_t start = frame(tx_, kConnect << 4, o.n);
  Status e = link_.write(tx_ + start, 5 - start + o.n);
  if (e != Status::Ok) return e;
  last_tx_ms_ = link_.now_ms();
  e = wait_for(kConnack, timeout_ms);
  if (e != Status::Ok) return e;
  if (want_ != 2) return Status::BadKind;
  return rx_[1] == 0 ? Status::Ok : Status::Unauthorized;
}

Status MqttClient::subscribe(const char* filter, uint32_t timeout_ms) noexcept {
  if (tx_cap_ < 6) return Status::BufferTooSmall;
  Out o{tx_ + 5, tx_cap_ - 5};
  const uint16_t id = next_id_++;
  if (next_id_ == 0) next_id_ = 1;
  o.u16(id);
  o.str(filter);
  o.u8(1);  // QoS 1
  if (!o.ok) return Status::BufferTooSmall;
  const size_t start = frame(tx_, (kSubscribe << 4) | 0x02, o.n);
  Status e = link_.write(tx_ + start, 5 - start + o.n);
  if (e != Status::Ok) return e;
  last_tx_ms_ = link_.now_ms();
  e = wait_for(kSuback, timeout_ms);
  if (e != Status::Ok) return e;
  if (want_ != 3) return Status::BadKind;
  return rx_[2] == 0x80 ? Status::Unauthorized : Status::Ok;
}

Status MqttClient::publish(const char* topic, const uint8_t* payload, size_t len, uint8_t qos) noexcept {
  if (qos > 1) return Status::BadArgs;
  if (tx_cap_ < 6) return Status::BufferTooSmall;
  Out o{tx_ + 5, tx_cap_ - 5};
  o.str(topic);
  if (qos == 1) {
    o.u16(next_id_++);
    if (next_id_ == 0) next_id_ = 1;
  }
  o.bytes(payload, len);
  if (!o.ok) return Status::BufferTooSmall;
  const size_t start = frame(tx_, static_cast<uint8_t>((kPublish << 4) | (qos << 1)), o.n);
  const Status e = link_.write(tx_ + start, 5 - start + o.n);
  if (e == Status::Ok) last_tx_ms_ = link_.now_ms();
  return e;
}

Status MqttClient::poll(MqttMessage& msg, bool* got_msg) noexcept {
  *got_msg = false;
  if (keepalive_s_ > 0 && link_.now_ms() - last_tx_ms_ >= static_cast<uint32_t>(keepalive_s_) * 500u) {
    const uint8_t ping[2] = {kPingreq << 4, 0};
    const Status e = link_.write(ping, sizeof ping);
    if (e != Status::Ok) return e;
    last_tx_ms_ = link_.now_ms();
  }
  Got got = Got::None;
  const Status e = read_packet(&got);
  if (e != Status::Ok || got != Got::Packet) return e;
  const uint8_t type = static_cast<uint8_t>(hdr_ >> 4);
  if (type != kPublish) return Status::Ok;  // PUBACK, PINGRESP, SUBACK: nothing to do
  const uint8_t qos = static_cast<uint8_t>((hdr_ >> 1) & 3);
  if (qos > 1 || want_ < 2) return Status::BadKind;
  const size_t tl = (static_cast<size_t>(rx_[0]) << 8) | rx_[1];
  size_t p = 2 + tl;
  if (p > want_) return Status::BadKind;
  if (qos == 1) {
    if (p + 2 > want_) return Status::BadKind;
    const uint8_t ack[4] = {kPuback << 4, 2, rx_[p], rx_[p + 1]};
    const Status w = link_.write(ack, sizeof ack);
    if (w != Status::Ok) return w;
    last_tx_ms_ = link_.now_ms();
    p += 2;
  }
  msg.topic = reinterpret_cast<const char*>(rx_ + 2);
  msg.topic_len = tl;
  msg.payload = rx_ + p;
  msg.payload_len = want_ - p;
  *got_msg = true;
  return Status::Ok;
}

void MqttClient::disconnect() noexcept {
  const uint8_t d[2] = {kDisconnect << 4, 0};
  (void)link_.write(d, sizeof d);
}

}  // namespace picopay::port::baremetal
