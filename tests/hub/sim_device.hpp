// A simulated device for hub tests: the core's device session (picopay/session.hpp, the
// one implementation of the user's protocol) on picopay_mqtt, speaking
// docs/mqtt-protocol.md. Its session record is kept in memory (the tests check the hub's
// side). The MQTT thread feeds the session; a ticker re-sends what the session asks.
//
// Raw tools (build / publish_raw / wait_reply) let adversarial tests send what no honest
// session would: they use the core's channel_propose directly and never touch the session.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "picopay/channel.hpp"
#include "picopay/codec.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/policy.hpp"
#include "picopay/session.hpp"
#include "picopay/signer.hpp"

namespace picopay::testsupport {

PrivateKey test_key(uint32_t index);  // deterministic, valid secp256k1 key
// The broker login of SimDevice `index`: its lowercase 0x address (the shipped ACL binds a
// device to it) and the password "pw-<index>". Add it to BrokerOptions::users.
std::pair<std::string, std::string> device_broker_login(uint32_t index);

// Reads the chain facts of `user`'s channel (false: could not read).
using ChainReader = std::function<bool(const Address& user, ChainFacts& out)>;

struct SimOptions {
  bool accept_threads = true;  // payee role (SessionConfig::acceptIncomingThreads)
  // The device's chain access; empty: none (it refuses what asserts an on-chain fact).
  ChainReader chain;
  // Suites without a chain, against a hub run with --dev-skip-chain-checks: the device
  // believes every pending operation of its latest state executed (test-only stand-in for
  // reading ChannelManager). Ignored when `chain` is set.
  bool dev_chain = true;
};

class SimDevice {
 public:
  SimDevice(uint32_t index, const Address& hub, const Address& contract, SimOptions opts = {});
  ~SimDevice();
  // Connects (username = lowercase address when `password` is non-empty) and syncs.
  bool start(const mqtt::Options& base, const std::string& password, std::string& err);
  void stop();

  const Address& address() const { return addr_; }
  const PrivateKey& key() const { return key_; }
  // The session's latest double-signed state (a copy).
  SignedChannelState latest();
  // The session's open threads (initial states).
  std::vector<ThreadState> threads();
  // The latest state of the thread (sender, receiver, id) the session holds (false: none).
  bool thread_latest(const Address& sender, const Address& receiver, uint64_t id, SignedThreadState& out);

  // Honest operations through the session; each waits until the proposal is
  // double-signed (Ok), refused by the hub (the Nack status: the session then re-offers
  // the same bytes later), refused by the session itself (its status), or IoError on timeout.
  Status pay(uint64_t wei, uint64_t* latency_us = nullptr, int timeout_ms = 60000);
  Status fund(uint64_t wei);  // request_deposit + ConfirmPending (needs a chain reader)
  Status deposit(uint64_t wei, uint64_t token = 0, int timeout_ms = 30000);
  Status confirm_pending(const Hash32& tx, int timeout_ms = 30000);
  Status open_thread(const Address& receiver, uint64_t wei, uint64_t* thread_id, int timeout_ms = 30000);
  Status thread_pay(const Address& receiver, uint64_t thread_id, uint64_t wei);
  // The payer asks the payee to close (the payee proposes CloseThread; the hub then
  // requests the CloseThread in this channel). Returns at once.
  Status close_thread(const Address& receiver, uint64_t thread_id);
  Status withdraw(const Address& recipient, uint64_t wei, int timeout_ms = 30000);
  // The same with token base units too (ERC-20 channels, docs/tokens.md).
  Status withdraw_tokens(const Address& recipient, uint64_t wei, uint64_t token, int timeout_ms = 30000);
  // Sells `amount` wei (sell_wei) or tokens at `rate` (tolerance [min_rate, max_rate]).
  Status exchange(bool sell_wei, uint64_t amount, uint64_t rate, uint64_t min_rate, uint64_t max_rate,
                  int timeout_ms = 30000);

  // Waits until `pred` holds (checked under the device's lock after each message). False
  // on timeout.
  bool wait_until(const std::function<bool(SimDevice&)>& pred, int timeout_ms);
  // Convenience: until the session's latest txCountGlobal >= tx and nothing is pending.
  bool wait_tx(uint64_t tx, int timeout_ms = 30000);
  // Until the session is idle: synced, no proposal in flight, no hub request queued.
  bool wait_idle(int timeout_ms = 30000);

  // Counters (under the lock).
  size_t hub_requests_seen();
  size_t request_nacks_sent();
  // Hub requests that arrived while the session had a proposal of its own in flight (the
  // session queued them: Busy).
  size_t collisions();
  size_t completed(UpdateReason r);
  // Proposals this device signed twice with one txCountGlobal, differing bytes (must stay 0),
  // and hub Acks with two signatures for one txCountGlobal (must stay 0).
  size_t double_signed();
  Status last_status();
  bool halted();

  // Raw access for adversarial tests (the session is not involved).
  bool publish_raw(const std::string& topic, const std::vector<uint8_t>& bytes, uint64_t corr);
  // Waits for a reply with this txCountGlobal (removing it). False on timeout.
  bool wait_reply(uint64_t tx, Reply& out, int timeout_ms);
  // Builds and signs (without sending) the next update on `from` (default: latest()),
  // with the session's open threads; returns its wire bytes (empty if channel_propose
  // refuses).
  std::vector<uint8_t> build(ChannelUpdate& u, ChannelState& next, const SignedChannelState* from = nullptr);
  // Like build() without channel_propose's checks: u.txCountGlobal = from + 1; signs the
  // state channel_next_state builds, or (if the update does not apply) `from`'s own hash:
  // for updates no honest session would propose (the hub must refuse them).
  std::vector<uint8_t> build_unchecked(ChannelUpdate& u, const SignedChannelState* from = nullptr);
  // While paused the device does not hand hub requests to its session (they are recorded;
  // the hub re-sends them).
  void pause_requests(bool paused);
  // The raw HubRequests received on the request topic (payloads, in order).
  std::vector<std::vector<uint8_t>> raw_requests();
  // Successful CONNACKs of the device's MQTT client (1 while it was never knocked off).
  uint64_t connect_count() const { return client_ ? client_->connect_count() : 0; }

 private:
  void on_message(const mqtt::Message& m);
  // Carries out a session's effects (called with mu_ held); messages go to pending_out_.
  void handle(const Effects& fx);
  void flush();  // publishes pending_out_ (without the lock)
  void ticker();
  // Calls `op` on the session under the lock, handles its effects, then waits for the
  // proposal it made to complete.
  Status run_op(const std::function<Status(Session&, Effects&)>& op, int timeout_ms, uint64_t* latency_us = nullptr);
  uint64_t now() const;
  void feed_chain();  // with mu_ held

  uint32_t index_;
  Address hub_{}, contract_{}, addr_{};
  PrivateKey key_{};
  SimOptions opts_;
  Signer signer_;
  Signer raw_signer_;
  static constexpr size_t kCap = 64;
  SessionThread slots_[kCap];
  ThreadState set_items_[kCap];
  Hash32 set_scratch_[kCap + 2];
  Session session_;
  std::vector<uint8_t> record_;
  std::unique_ptr<mqtt::Client> client_;
  std::recursive_mutex mu_;  // recursive: wait_until predicates call the accessors
  std::condition_variable_any cv_;
  struct Pending {
    std::string topic;
    std::vector<uint8_t> bytes;
    uint64_t corr;
    std::string response_topic;
  };
  std::vector<Pending> pending_out_;
  std::mutex send_mu_;
  std::multimap<uint64_t, Reply> replies_;
  std::vector<std::vector<uint8_t>> requests_;
  std::map<uint64_t, std::vector<uint8_t>> sent_;  // txCountGlobal -> update bytes signed
  std::map<uint64_t, Signature> acks_;               // txCountGlobal -> hub countersignature
  std::map<UpdateReason, size_t> completed_;
  size_t hub_requests_ = 0, request_nacks_ = 0, double_ = 0, collisions_ = 0;
  Status refused_ = Status::Ok;  // the hub's Nack of our proposal in flight
  uint64_t refused_tx_ = 0;
  bool paused_ = false;
  int raw_syncs_ = 0;  // Syncs asked for with publish_raw, not yet answered
  std::atomic<bool> stop_{false};
  std::thread ticker_;
};

}  // namespace picopay::testsupport
