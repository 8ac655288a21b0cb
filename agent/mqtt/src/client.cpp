// picopay_mqtt: the libmosquitto v5 client (see client.hpp).
#include "picopay/mqtt/client.hpp"

#include "picopay/mqtt/protocol.hpp"

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <random>

namespace picopay::mqtt {

namespace {
std::once_flag g_lib_once;

// MQTT v5 subscription options: no retained messages for request/update/reply topics.
int sub_options(const std::string& filter) {
  return topic_never_retained(filter) ? MQTT_SUB_OPT_SEND_RETAIN_NEVER : 0;
}

// A random instance nonce: 16 bytes from the OS (std::random_device reads getrandom or
// /dev/urandom on Linux), as 32 hex digits.
std::string random_instance() {
  std::random_device rd;
  std::string out;
  char b[9];
  for (int i = 0; i < 4; ++i) {
    std::snprintf(b, sizeof b, "%08x", static_cast<unsigned>(rd()));
    out += b;
  }
  return out;
}

// The value of "<key>":"..." in a claim payload ("" if absent).
std::string claim_field(const std::string& p, const char* key) {
  const std::string k = std::string("\"") + key + "\":\"";
  const size_t at = p.find(k);
  if (at == std::string::npos) return "";
  const size_t b = at + k.size(), e = p.find('"', b);
  return e == std::string::npos ? "" : p.substr(b, e - b);
}

std::string mosq_error(int rc) {
  if (rc == MOSQ_ERR_ERRNO) return std::string("system error: ") + mosquitto_strerror(rc);
  return mosquitto_strerror(rc);
}
}  // namespace

struct ClientCallbacks {
  static struct mosquitto* mosq_of(Client* c) { return c->mosq_; }

  static void on_connect(struct mosquitto* m, void* obj, int rc, int flags, const mosquitto_property*) {
    auto* c = static_cast<Client*>(obj);
    if (rc != 0) {
      // MQTT v5: a CONNACK reason code (>= 0x80); a v3.1.1 broker answers 1..5.
      std::string why = std::string("CONNACK refused: ") +
                        (rc >= 128 ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc));
      {
        std::lock_guard<std::mutex> lk(c->mu_);
        c->last_error_ = why;
        c->refused_ = rc;
      }
      return;  // the broker closes the connection; the network thread retries
    }
    const bool session_present = (flags & 1) != 0;
    std::vector<std::pair<std::string, int>> subs;
    {
      std::lock_guard<std::mutex> lk(c->mu_);
      subs = c->subs_;
      c->last_error_.clear();
    }
    // Renew subscriptions on every connect: needed when the broker has no session for
    // us, harmless otherwise (the same filter and options replace the old ones).
    for (auto& s : subs)
      mosquitto_subscribe_v5(m, nullptr, s.first.c_str(), s.second, sub_options(s.first), nullptr);
    bool defer = false, publish = false;
    {
      std::lock_guard<std::mutex> lk(c->mu_);
      c->refused_ = 0;
      if (!c->claim_topic_.empty()) {
        if (!c->claim_seen_own_) {
          // First connect (or our claim never came back): claim now; a claim already
          // there is the previous holder's and arrives before our own.
          c->claim_ = Client::Claim::Publishing;
          publish = true;
        } else {
          // A reconnect: read the retained claim before claiming or serving.
          c->claim_ = Client::Claim::Verifying;
          c->claim_session_present_ = session_present;
          c->claim_deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(c->opts_.claim_wait_ms);
          defer = true;
        }
      }
    }
    if (publish) c->publish_claim();
    c->connects_.fetch_add(1);
    c->connected_.store(true);
    c->cv_.notify_all();
    if (!defer && c->on_connect_) c->on_connect_(session_present);
  }

  // A message on our claim topic (never passed to the message handler).
  static void on_claim(struct mosquitto* m, Client* c, const struct mosquitto_message* msg) {
    const std::string p = msg->payloadlen > 0 ? std::string(static_cast<const char*>(msg->payload),
                                                            static_cast<size_t>(msg->payloadlen))
                                              : std::string();
    const std::string inst = claim_field(p, "instance");
    if (inst.empty()) return;  // cleared, or not a claim: nothing to compare
    bool fire = false, session_present = false;
    {
      std::lock_guard<std::mutex> lk(c->mu_);
      if (inst == c->instance_) {
        c->claim_seen_own_ = true;
        if (c->claim_ == Client::Claim::Verifying) {
          fire = true;
          session_present = c->claim_session_present_;
        }
        c->claim_ = Client::Claim::Held;
      } else if (c->claim_ == Client::Claim::Publishing) {
        return;  // delivered before our own claim: the previous holder's
      } else {
        c->taken_over_.store(true);
        c->last_error_ = "client id '" + c->opts_.client_id + "' is in use by another process (the claim on " +
                         c->claim_topic_ + " names instance " + inst + " pid " + claim_field(p, "pid") + " on " +
                         claim_field(p, "host") + "; this process is instance " + c->instance_ + ")";
      }
    }
    if (c->taken_over_.load()) {
      mosquitto_disconnect_v5(m, 0, nullptr);  // normal disconnect: no Last Will
      return;
    }
    if (fire && c->on_connect_) c->on_connect_(session_present);
  }

  // `rc` is a v5 DISCONNECT reason code the broker sent (>= 0x80), or a libmosquitto
  // MOSQ_ERR_* when the connection ended locally (e.g. after a refused CONNACK): the two
  // number spaces overlap (MOSQ_ERR_PROTOCOL = 2 is "Granted QoS 2" as a reason code).
  static void on_disconnect(struct mosquitto*, void* obj, int rc, const mosquitto_property*) {
    auto* c = static_cast<Client*>(obj);
    c->connected_.store(false);
    if (rc == 0) return;
    std::lock_guard<std::mutex> lk(c->mu_);
    if (rc == MQTT_RC_SESSION_TAKEN_OVER) {
      c->taken_over_.store(true);
      c->last_error_ = "disconnected by the broker: " + std::string(mosquitto_reason_string(rc)) +
                       ": another client connected with client id '" + c->opts_.client_id + "'";
      return;
    }
    if (c->refused_ != 0) return;  // keep the CONNACK reason, the real cause
    c->last_error_ = rc >= 128 ? std::string("disconnected by the broker: ") + mosquitto_reason_string(rc)
                               : "disconnected: " + mosq_error(rc);
  }

  static void on_message(struct mosquitto*, void* obj, const struct mosquitto_message* msg,
                         const mosquitto_property* props) {
    auto* c = static_cast<Client*>(obj);
    if (!c->claim_topic_.empty() && msg->topic && c->claim_topic_ == msg->topic) return on_claim(mosq_of(c), c, msg);
    if (!c->on_message_) return;
    Message m;
    m.topic = msg->topic ? msg->topic : "";
    if (msg->retain && topic_never_retained(m.topic)) {
      c->dropped_retained_.fetch_add(1);
      return;  // a stored copy replayed by the broker, never a live request or reply
    }
    if (msg->payloadlen > 0) {
      const auto* p = static_cast<const uint8_t*>(msg->payload);
      m.payload.assign(p, p + msg->payloadlen);
    }
    m.qos = msg->qos;
    m.retain = msg->retain;
    char* rt = nullptr;
    if (mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &rt, false) && rt) {
      m.response_topic = rt;
      std::free(rt);
    }
    void* cd = nullptr;
    uint16_t cdlen = 0;
    if (mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &cd, &cdlen, false) && cd) {
      const auto* p = static_cast<const uint8_t*>(cd);
      m.correlation.assign(p, p + cdlen);
      std::free(cd);
    }
    c->on_message_(m);
  }
};

Client::Client(Options opts) : opts_(std::move(opts)) {}

Client::~Client() {
  stop();
  if (mosq_) mosquitto_destroy(mosq_);
}

void Client::on_message(MessageHandler h) { on_message_ = std::move(h); }
void Client::on_connect(ConnectHandler h) { on_connect_ = std::move(h); }
void Client::on_disconnect(DisconnectHandler h) { on_disconnect_ = std::move(h); }

void Client::subscribe(const std::string& filter, int qos) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    subs_.emplace_back(filter, qos);
  }
  if (mosq_ && connected_.load())
    mosquitto_subscribe_v5(mosq_, nullptr, filter.c_str(), qos, sub_options(filter), nullptr);
}

int Client::refused_reason() const {
  std::lock_guard<std::mutex> lk(mu_);
  return refused_;
}

std::string Client::last_error() const {
  std::lock_guard<std::mutex> lk(mu_);
  return last_error_;
}

bool Client::start(std::string& err) {
  if (running_.load()) return true;
  refused_ = 0;
  taken_over_.store(false);
  if (opts_.client_id.empty()) {
    err = "mqtt: client_id is required";
    return false;
  }
  if (opts_.keepalive_s < 5) {
    err = "mqtt: keepalive must be >= 5 s";
    return false;
  }
  if (opts_.receive_maximum < 1 || opts_.receive_maximum > 65535) {
    err = "mqtt: receive_maximum must be 1..65535";
    return false;
  }
  std::call_once(g_lib_once, [] { mosquitto_lib_init(); });
  mosq_ = mosquitto_new(opts_.client_id.c_str(), opts_.clean_start, this);
  if (!mosq_) {
    err = "mqtt: mosquitto_new failed";
    return false;
  }
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_threaded_set(mosq_, true);
  // Small request/reply messages: no Nagle delay (with delayed ACKs it adds ~40 ms a hop).
  mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_connect_v5_callback_set(mosq_, &ClientCallbacks::on_connect);
  mosquitto_disconnect_v5_callback_set(mosq_, &ClientCallbacks::on_disconnect);
  mosquitto_message_v5_callback_set(mosq_, &ClientCallbacks::on_message);
  if (opts_.max_inflight > 0) mosquitto_int_option(mosq_, MOSQ_OPT_SEND_MAXIMUM, opts_.max_inflight);
  mosquitto_int_option(mosq_, MOSQ_OPT_RECEIVE_MAXIMUM, opts_.receive_maximum);
  int rc;
  if (!opts_.username.empty()) {
    rc = mosquitto_username_pw_set(mosq_, opts_.username.c_str(),
                                   opts_.password.empty() ? nullptr : opts_.password.c_str());
    if (rc != MOSQ_ERR_SUCCESS) {
      err = "mqtt: username/password: " + mosq_error(rc);
      return false;
    }
  }
  if (!opts_.tls_ca_file.empty()) {
    rc = mosquitto_tls_set(mosq_, opts_.tls_ca_file.c_str(), nullptr, nullptr, nullptr, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      err = "mqtt: TLS CA file '" + opts_.tls_ca_file + "': " + mosq_error(rc);
      return false;
    }
  }
  if (!opts_.will_topic.empty()) {
    rc = mosquitto_will_set_v5(mosq_, opts_.will_topic.c_str(), static_cast<int>(opts_.will_payload.size()),
                               opts_.will_payload.data(), 1, opts_.will_retain, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      err = "mqtt: last will: " + mosq_error(rc);
      return false;
    }
  }
  if (opts_.claim_client_id) {
    if (opts_.claim_wait_ms < 100) {
      err = "mqtt: claim_wait_ms must be >= 100";
      return false;
    }
    instance_ = random_instance();
    claim_topic_ = topic_client_claim(opts_.username, opts_.client_id);
    char host[256] = {0};
    (void)::gethostname(host, sizeof host - 1);
    std::string h;
    for (const char* q = host; *q; ++q)
      if (std::isalnum(static_cast<unsigned char>(*q)) || *q == '.' || *q == '-') h += *q;
    claim_payload_ = "{\"instance\":\"" + instance_ + "\",\"pid\":\"" + std::to_string(::getpid()) + "\",\"host\":\"" +
                     h + "\",\"since\":" + std::to_string(static_cast<long long>(std::time(nullptr))) + "}";
    std::lock_guard<std::mutex> lk(mu_);
    subs_.emplace_back(claim_topic_, 1);
  }
  stop_.store(false);
  running_.store(true);
  thread_ = std::thread([this] { run(); });
  return true;
}

bool Client::connect_once(std::string& err) {
  mosquitto_property* props = nullptr;
  if (opts_.session_expiry_s > 0)
    mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, opts_.session_expiry_s);
  int rc = mosquitto_connect_bind_v5(mosq_, opts_.host.c_str(), opts_.port, opts_.keepalive_s, nullptr, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) {
    err = "connect to " + opts_.host + ":" + std::to_string(opts_.port) + ": " + mosq_error(rc);
    return false;
  }
  return true;
}

void Client::sleep_backoff(int ms) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, std::chrono::milliseconds(ms), [this] { return stop_.load(); });
}

void Client::run() {
  int backoff = opts_.reconnect_min_ms > 0 ? opts_.reconnect_min_ms : 100;
  const int backoff_max = opts_.reconnect_max_ms > backoff ? opts_.reconnect_max_ms : backoff;
  while (!stop_.load()) {
    std::string err;
    const uint64_t before = connects_.load();
    if (connect_once(err)) {
      socket_up_.store(true);
      for (;;) {
        if (stop_.load()) {
          if (want_disconnect_.load() && connected_.load()) {
            mosquitto_disconnect_v5(mosq_, 0, nullptr);
            for (int i = 0; i < 20; ++i)
              if (mosquitto_loop(mosq_, 100, 1) != MOSQ_ERR_SUCCESS) break;
          }
          break;
        }
        int rc = mosquitto_loop(mosq_, 100, 1);
        if (rc == MOSQ_ERR_SUCCESS && !claim_topic_.empty()) check_claim_deadline();
        if (rc != MOSQ_ERR_SUCCESS) {
          std::lock_guard<std::mutex> lk(mu_);
          if (last_error_.empty()) last_error_ = "connection lost: " + mosq_error(rc);
          err = last_error_;
          break;
        }
      }
      socket_up_.store(false);
      connected_.store(false);
      if (stop_.load()) break;
      if (connects_.load() != before) backoff = opts_.reconnect_min_ms > 0 ? opts_.reconnect_min_ms : 100;
    } else {
      std::lock_guard<std::mutex> lk(mu_);
      last_error_ = err;
    }
    if (on_disconnect_) on_disconnect_(err);
    // Another client took our client id: reconnecting would take it back, and the two
    // would take turns forever. Stop; the owner decides (picopay-hub: a fatal error).
    if (taken_over_.load()) break;
    sleep_backoff(backoff);
    backoff = backoff * 2 > backoff_max ? backoff_max : backoff * 2;
  }
  running_.store(false);
}

void Client::publish_claim() {
  mosquitto_publish_v5(mosq_, nullptr, claim_topic_.c_str(), static_cast<int>(claim_payload_.size()),
                       claim_payload_.data(), 1, true, nullptr);
}

void Client::check_claim_deadline() {
  bool session_present = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (claim_ != Claim::Verifying || std::chrono::steady_clock::now() < claim_deadline_) return;
    // No claim at all within claim_wait_ms: the broker lost its retained messages, or its
    // ACL hides the topic. Claim again (as on a first connect) and serve.
    claim_ = Claim::Publishing;
    session_present = claim_session_present_;
  }
  publish_claim();
  if (on_connect_) on_connect_(session_present);
}

void Client::stop(bool send_disconnect) {
  if (!thread_.joinable()) return;
  want_disconnect_.store(send_disconnect);
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  thread_.join();
}

bool Client::wait_connected(int timeout_ms) {
  std::unique_lock<std::mutex> lk(mu_);
  return cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [this] { return connected_.load(); });
}

bool Client::publish(const std::string& topic, const uint8_t* data, size_t len, int qos, bool retain,
                     const PublishProps* props, std::string* err) {
  if (!mosq_) {
    if (err) *err = "mqtt: not started";
    return false;
  }
  if (len > 256 * 1024 * 1024) {
    if (err) *err = "mqtt: payload too large";
    return false;
  }
  mosquitto_property* pl = nullptr;
  if (props) {
    if (!props->response_topic.empty())
      mosquitto_property_add_string(&pl, MQTT_PROP_RESPONSE_TOPIC, props->response_topic.c_str());
    if (!props->correlation.empty()) {
      if (props->correlation.size() > 65535) {
        if (err) *err = "mqtt: correlation data too long";
        return false;
      }
      mosquitto_property_add_binary(&pl, MQTT_PROP_CORRELATION_DATA, props->correlation.data(),
                                    static_cast<uint16_t>(props->correlation.size()));
    }
  }
  int rc = mosquitto_publish_v5(mosq_, nullptr, topic.c_str(), static_cast<int>(len), data, qos, retain, pl);
  mosquitto_property_free_all(&pl);
  if (rc != MOSQ_ERR_SUCCESS) {
    if (err) *err = "mqtt: publish '" + topic + "': " + mosq_error(rc);
    return false;
  }
  return true;
}

}  // namespace picopay::mqtt
