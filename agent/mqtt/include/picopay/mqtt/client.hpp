// picopay_mqtt: a small MQTT v5 client on libmosquitto, shaped for picopay
// (docs/mqtt-protocol.md).
//
// - MQTT v5 only; QoS 1 by default; persistent session: clean start false and a session
//   expiry interval > 0 sent on EVERY connect, including automatic reconnects (the client
//   runs its own network thread for that reason: libmosquitto's loop_start reconnects
//   without CONNECT properties).
// - Reconnects by itself with exponential backoff (reconnect_min_ms .. reconnect_max_ms)
//   after a refused connect, a lost socket or a CONNACK error; subscriptions are renewed
//   when the broker reports no session.
// - Username/password; optional TLS (CA file; the broker's certificate is verified,
//   hostname included).
// - Optional Last Will (retained, QoS 1 by default).
// - Callbacks run on the client's network thread: keep them short (enqueue and return).
//   QoS 1 PUBACK for an incoming message is sent after the message callback returns.
// - publish() is thread-safe and may be called from any thread, including callbacks.
//   While disconnected, QoS 1 publishes are queued by libmosquitto and sent after the
//   reconnect (in memory only: a process restart loses them; picopay's protocol
//   retransmits at the application level anyway).
// - Retained messages never reach the handler on the topics that carry requests, updates
//   and replies (mqtt::topic_never_retained: a retained copy there is a stale or forged
//   message that the broker would replay on every subscribe): subscriptions to such
//   filters ask the broker not to send retained messages (MQTT v5 Retain Handling 2), and
//   an incoming message on such a topic that still has the retain flag set is dropped and
//   counted (dropped_retained()). Status topics keep their retained messages.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct mosquitto;

namespace picopay::mqtt {

struct Options {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string client_id;        // required: persistent sessions are keyed by it
  std::string username;         // empty: no username/password
  std::string password;
  std::string tls_ca_file;      // non-empty: connect with TLS, verify against this CA
  int keepalive_s = 30;         // >= 5
  uint32_t session_expiry_s = 86400;  // > 0: persistent session (0: ends on disconnect)
  bool clean_start = false;     // true: drop any previous session on the first connect
  int reconnect_min_ms = 200;   // first retry delay; doubles up to reconnect_max_ms
  int reconnect_max_ms = 10000;
  // Last Will: published by the broker if the connection is lost without DISCONNECT.
  std::string will_topic;       // empty: no will
  std::string will_payload;
  bool will_retain = true;
  int max_inflight = 100;       // outgoing QoS 1 messages in flight (the broker's receive maximum caps it)
  // Incoming QoS 1 messages the broker may have in flight to us (v5 Receive Maximum,
  // 1..65535; libmosquitto's default 20). Messages beyond it wait in the broker's queue
  // for this client, which the shipped broker config bounds (max_queued_messages 1000):
  // a client that must absorb bursts from many publishers (the hub) sets 65535.
  int receive_maximum = 20;
  // One process per client id (docs/mqtt-protocol.md "One process per client id"). A
  // second process with our client id makes the broker close our connection; mosquitto
  // 2.0.11 does so without the v5 reason 0x8E "Session taken over", and reconnecting
  // would take the id back: the two would take turns forever. With claim_client_id the
  // client claims the id on a retained topic (mqtt::topic_client_claim) with a random
  // instance nonce: on its first connect it publishes its claim at once (a claim already
  // there is the previous holder's); on every later connect it first reads the retained
  // claim, and when that names another instance it stops (session_taken_over(),
  // last_error() "client id X is in use by another process ..."). The on_connect handler
  // runs once the claim is confirmed; if no claim arrives within claim_wait_ms (a broker
  // that lost its retained messages, or an ACL that hides the topic) it publishes its own.
  bool claim_client_id = false;
  int claim_wait_ms = 3000;
};

// An incoming PUBLISH.
struct Message {
  std::string topic;
  std::vector<uint8_t> payload;
  int qos = 0;
  bool retain = false;
  std::string response_topic;          // v5 Response Topic; empty if absent
  std::vector<uint8_t> correlation;    // v5 Correlation Data; empty if absent
};

// Optional v5 properties of an outgoing PUBLISH.
struct PublishProps {
  std::string response_topic;          // empty: none
  std::vector<uint8_t> correlation;    // empty: none (max 65535 bytes)
};

class Client {
 public:
  using MessageHandler = std::function<void(const Message&)>;
  // Called after every successful CONNACK; session_present as the broker reported it.
  using ConnectHandler = std::function<void(bool session_present)>;
  // Called when a connection ends or a connect attempt fails (reason text).
  using DisconnectHandler = std::function<void(const std::string& reason)>;

  explicit Client(Options opts);
  ~Client();  // stop()
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Set before start().
  void on_message(MessageHandler h);
  void on_connect(ConnectHandler h);
  void on_disconnect(DisconnectHandler h);

  // Adds a subscription (wildcards allowed), kept for the client's life and renewed
  // on every connect. May be called before or after start(). A filter for which
  // mqtt::topic_never_retained() holds is subscribed with Retain Handling 2 (the broker
  // sends no retained message for it, not even on a new subscription).
  void subscribe(const std::string& filter, int qos = 1);

  // Starts the network thread, which connects and keeps reconnecting until stop().
  // Returns false (with `err`) only for configuration errors (bad TLS file, bad
  // options, library failure); an unreachable broker is retried in the background.
  bool start(std::string& err);

  // Disconnects cleanly (no Last Will) unless `send_disconnect` is false, and joins the
  // network thread. Idempotent. With send_disconnect false the socket stays open until
  // the Client is destroyed; then the broker publishes the Last Will (a crash, for tests).
  void stop(bool send_disconnect = true);

  // Publishes (thread-safe). Returns false with `err` if the message could not even be
  // queued (payload too large, not started, protocol error).
  bool publish(const std::string& topic, const uint8_t* data, size_t len, int qos = 1, bool retain = false,
               const PublishProps* props = nullptr, std::string* err = nullptr);
  bool publish(const std::string& topic, const std::string& text, int qos = 1, bool retain = false,
               const PublishProps* props = nullptr, std::string* err = nullptr) {
    return publish(topic, reinterpret_cast<const uint8_t*>(text.data()), text.size(), qos, retain, props, err);
  }

  bool connected() const noexcept { return connected_.load(); }
  // Waits until connected (true) or timeout_ms elapses (false).
  bool wait_connected(int timeout_ms);
  // Number of successful CONNACKs so far (reconnects included).
  uint64_t connect_count() const noexcept { return connects_.load(); }
  // Messages dropped because they arrived retained on a never-retained topic.
  uint64_t dropped_retained() const noexcept { return dropped_retained_.load(); }
  // The reason code of the broker's last CONNACK refusal (v5, e.g. 0x86 Bad user name or
  // password, 0x87 Not authorized), 0 since a successful connect or if none.
  int refused_reason() const;
  // True once another process holds our client id: the broker disconnected us with v5
  // reason 0x8E Session taken over, or (claim_client_id) the retained claim on our client
  // id names another instance after a reconnect. The client then stops reconnecting (two
  // clients with one id would take the session from each other forever); last_error()
  // says which.
  bool session_taken_over() const noexcept { return taken_over_.load(); }
  // The last connection error, for logs ("" if none); reason strings from libmosquitto
  // (mosquitto_reason_string for v5 codes, mosquitto_connack_string for v3 CONNACK codes).
  std::string last_error() const;
  const Options& options() const noexcept { return opts_; }
  // This process's instance nonce (32 hex digits) and claim topic ("" without
  // claim_client_id).
  const std::string& instance() const noexcept { return instance_; }
  const std::string& claim_topic() const noexcept { return claim_topic_; }

 private:
  void run();
  bool connect_once(std::string& err);
  void sleep_backoff(int ms);
  void publish_claim();
  void check_claim_deadline();
  friend struct ClientCallbacks;

  Options opts_;
  struct mosquitto* mosq_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};
  std::atomic<bool> connected_{false};
  std::atomic<bool> socket_up_{false};
  std::atomic<bool> want_disconnect_{true};
  std::atomic<uint64_t> connects_{0};
  std::atomic<uint64_t> dropped_retained_{0};
  std::atomic<bool> taken_over_{false};
  int refused_ = 0;  // guarded by mu_
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string last_error_;
  std::vector<std::pair<std::string, int>> subs_;
  MessageHandler on_message_;
  ConnectHandler on_connect_;
  DisconnectHandler on_disconnect_;
  // The client-id claim (claim_client_id); state guarded by mu_.
  enum class Claim { Off, Publishing, Verifying, Held };
  std::string instance_, claim_topic_, claim_payload_;
  Claim claim_ = Claim::Off;
  bool claim_seen_own_ = false;       // our claim came back at least once
  bool claim_session_present_ = false;  // for the deferred on_connect
  std::chrono::steady_clock::time_point claim_deadline_{};
};

}  // namespace picopay::mqtt
