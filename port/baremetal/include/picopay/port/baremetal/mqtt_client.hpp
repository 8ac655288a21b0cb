// A minimal, allocation-free MQTT 3.1.1 client for firmware (OASIS MQTT 3.1.1).
//
// Debian has no allocation-free MQTT packet library (libpaho-mqtt and libmosquitto
// allocate on the heap and need sockets and threads; Paho Embedded C and coreMQTT are not
// packaged), so this is picopay's own, kept to what a paying device needs:
//   CONNECT (clean session, username + password, keep-alive) / CONNACK,
//   SUBSCRIBE one topic at QoS 1 / SUBACK,
//   PUBLISH QoS 0 or 1 (outgoing QoS 1 is fire-and-forget: picopay's acknowledgement is
//   the counterparty's signature, never a PUBACK, docs/mqtt-protocol.md), incoming
//   PUBLISH QoS 0/1 with the PUBACK the broker expects,
//   PINGREQ / PINGRESP, DISCONNECT.
// It runs over any byte stream (`SerialLink`): a UART wired to the broker's TCP port (the
// QEMU image), a modem's transparent socket, a TCP socket of lwIP. Every buffer is the
// caller's; nothing blocks except `connect` and `subscribe`, which poll with a deadline.
//
// The broker is untrusted: every length is checked against the buffer before use; a
// malformed packet makes `poll` return BadKind (OutOfBounds if it does not fit rx) and
// the caller reconnects (`connect` again), which is also how a dropped stream is recovered.
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/status.hpp"

namespace picopay::port::baremetal {

// The byte stream under the client. A board implements it on its UART / socket.
class SerialLink {
 public:
  // Writes all `len` bytes (may block until the transmitter takes them).
  // Errors: IoError if the link is down.
  [[nodiscard]] virtual Status write(const uint8_t* data, size_t len) noexcept = 0;
  // Reads one byte if one is waiting: true and *out set, or false at once if none.
  virtual bool read(uint8_t* out) noexcept = 0;
  // A monotonic millisecond clock (wraps at 2^32).
  virtual uint32_t now_ms() noexcept = 0;

 protected:
  ~SerialLink() = default;
};

// One received PUBLISH: pointers into the client's receive buffer, valid until the next
// `poll`.
struct MqttMessage {
  const char* topic = nullptr;  // not NUL-terminated
  size_t topic_len = 0;
  const uint8_t* payload = nullptr;
  size_t payload_len = 0;
};

class MqttClient {
 public:
  // `rx`/`tx` hold one incoming / one outgoing packet each (the largest PUBLISH plus its
  // topic and 5 bytes of header); they must outlive the client.
  MqttClient(SerialLink& link, uint8_t* rx, size_t rx_cap, uint8_t* tx, size_t tx_cap) noexcept;

  // Sends CONNECT (MQTT 3.1.1, clean session, `keepalive_s` seconds) and waits up to
  // `timeout_ms` for CONNACK. Strings are NUL-terminated; `user`/`password` may be null.
  // Errors: BufferTooSmall if CONNECT does not fit tx; IoError from the link or without
  // CONNACK in time; Unauthorized if the broker refuses (return code != 0); BadKind /
  // OutOfBounds on a malformed reply.
  [[nodiscard]] Status connect(const char* client_id, const char* user, const char* password,
                               uint16_t keepalive_s, uint32_t timeout_ms) noexcept;

  // Subscribes `filter` at QoS 1 and waits up to `timeout_ms` for SUBACK (a PUBLISH that
  // arrives meanwhile is acknowledged and dropped: subscribe before anything can arrive).
  // Errors: as connect; Unauthorized if the broker grants 0x80 (refused).
  [[nodiscard]] Status subscribe(const char* filter, uint32_t timeout_ms) noexcept;

  // Sends PUBLISH of `payload[0..len)` on `topic` (NUL-terminated) at `qos` 0 or 1.
  // Errors: BufferTooSmall if the packet does not fit tx; BadArgs for qos > 1; IoError.
  [[nodiscard]] Status publish(const char* topic, const uint8_t* payload, size_t len, uint8_t qos) noexcept;

  // Reads what the link has (never waits). Returns Ok with *got = true and `msg` set when
  // a PUBLISH arrived (QoS 1 ones are PUBACKed first); Ok with *got = false otherwise.
  // Sends PINGREQ when the link was idle for half the keep-alive.
  // Errors: BadKind (malformed packet) or OutOfBounds (larger than rx): reconnect;
  // IoError from the link.
  [[nodiscard]] Status poll(MqttMessage& msg, bool* got) noexcept;

  // Sends DISCONNECT (best effort).
  void disconnect() noexcept;

  // Milliseconds since the last byte received (to detect a dead stream).
  uint32_t idle_rx_ms() noexcept { return link_.now_ms() - last_rx_ms_; }

 private:
  enum class Got : uint8_t { None, Packet };
  Status read_packet(Got* got) noexcept;  // one complete packet in rx_ -> type_/len_
  Status wait_for(uint8_t type, uint32_t timeout_ms) noexcept;

  SerialLink& link_;
  uint8_t* rx_;
  size_t rx_cap_;
  uint8_t* tx_;
  size_t tx_cap_;
  // Receive state: fixed header byte, remaining length being decoded, bytes so far.
  uint8_t hdr_ = 0;
  uint8_t len_shift_ = 0;
  uint8_t stage_ = 0;  // 0 header, 1 length, 2 body
  size_t want_ = 0;
  size_t have_ = 0;
  uint16_t next_id_ = 1;
  uint16_t keepalive_s_ = 0;
  uint32_t last_tx_ms_ = 0;
  uint32_t last_rx_ms_ = 0;
};

}  // namespace picopay::port::baremetal
