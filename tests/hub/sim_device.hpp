// A simulated device for hub tests: the core (channel_propose, codec, signer) plus
// picopay_mqtt, speaking docs/mqtt-protocol.md. It persists nothing (the tests check the
// hub's side); it re-sends the same update bytes until it gets a reply.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "picopay/channel.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/signer.hpp"

namespace picopay::testsupport {

PrivateKey test_key(uint32_t index);  // deterministic, valid secp256k1 key

class SimDevice {
 public:
  SimDevice(uint32_t index, const Address& hub, const Address& contract);
  ~SimDevice();
  // Connects (username = lowercase address when `password` is non-empty).
  bool start(const mqtt::Options& base, const std::string& password, std::string& err);
  void stop() { if (client_) client_->stop(); }

  const Address& address() const { return addr_; }
  const PrivateKey& key() const { return key_; }
  const SignedChannelState& latest() const { return latest_; }

  // Builds u from the latest double-signed state, signs, sends, waits for the reply
  // (re-sending the same bytes every retry_ms). Ok: Ack with a valid hub signature (the
  // double-signed state becomes latest). Otherwise the Nack status, or IoError on timeout.
  Status propose(ChannelUpdate u, int timeout_ms = 30000, int retry_ms = 1000, uint64_t* latency_us = nullptr);
  Status fund(uint64_t wei);   // ProposePendingDeposit(user) + ConfirmPending
  Status pay(uint64_t wei, uint64_t* latency_us = nullptr);

  // Raw access for adversarial tests.
  bool publish_raw(const std::string& topic, const std::vector<uint8_t>& bytes, uint64_t corr);
  // Waits for a reply with this txCountGlobal (removing it). False on timeout.
  bool wait_reply(uint64_t tx, mqtt::Reply& out, int timeout_ms);
  // Builds and signs (without sending) the next update; returns its wire bytes.
  std::vector<uint8_t> build(ChannelUpdate& u, ChannelState& next, const SignedChannelState* from = nullptr);
  void set_latest(const SignedChannelState& s) { latest_ = s; }
  // The channel's open threads (initial states) used by build()/propose()/answer_request().
  void set_threads(const std::vector<ThreadState>& t) { threads_ = t; }
  const std::vector<ThreadState>& threads() const { return threads_; }
  // Waits for the hub's next proposal on the request topic, checks it with channel_accept
  // against latest(), countersigns and Acks it (the state becomes latest). Returns the
  // channel_accept status (Nacking on error), or IoError on timeout. Requests at or below
  // latest()'s txCountGlobal (re-sent ones already answered) are skipped. `reason_out`: the
  // proposal's reason.
  Status answer_request(int timeout_ms, UpdateReason* reason_out = nullptr);
  size_t replies_seen();
  // Successful CONNACKs of the device's MQTT client (1 while it was never knocked off).
  uint64_t connect_count() const { return client_ ? client_->connect_count() : 0; }

 private:
  void on_message(const mqtt::Message& m);
  void apply_threads(const ChannelUpdate& u);
  uint32_t index_;
  Address hub_{}, contract_{}, addr_{};
  PrivateKey key_{};
  Signer signer_;
  SignedChannelState latest_{};
  std::unique_ptr<mqtt::Client> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<uint64_t, mqtt::Reply> replies_;
  std::vector<std::vector<uint8_t>> requests_;
  std::vector<ThreadState> threads_;
  size_t seen_ = 0;
};

}  // namespace picopay::testsupport
