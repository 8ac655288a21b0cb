// picopay-tower: the watchtower service (docs/tower.md).
//
// Two threads besides the MQTT client's: a handover worker (checks each handed state,
// keeps it if newer, acks it signed) and the caller's thread in run() (chain rounds:
// ChannelManager events -> marks; marked channels read on chain; a stale exit answered
// with emptyChannelWithChallenge; a matured exit emptied with emptyChannel).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/signer.hpp"
#include "picopay/tower/config.hpp"
#include "picopay/tower/protocol.hpp"
#include "picopay/tower/store.hpp"

namespace picopay::tower {

// One log format for the tower: "HH:MM:SS picopay-tower <level>: <message>" on stderr.
void log_line(const char* level, const std::string& msg);

// Thread states held per receiver at most.
constexpr size_t kMaxThreadsPerUser = 64;

class Tower {
 public:
  // `key` (the gas account) is copied into the wallet and wiped there on destruction.
  Tower(Config cfg, const PrivateKey& key);
  ~Tower();
  Tower(const Tower&) = delete;
  Tower& operator=(const Tower&) = delete;

  // Checks the chain (RPC reachable, code at the contract, its hub and challenge
  // period, the expected hub/tower addresses), opens the store, marks every held
  // channel for a chain check, starts the event poller, the handover worker and the
  // MQTT client. Returns false with one line in `err` on any failure.
  bool start(std::string& err);
  // Chain rounds every interval_ms until `quit` is set or a store error is fatal.
  void run(const std::atomic<bool>& quit);
  // Stops the worker and the MQTT client (idempotent).
  void stop();
  bool fatal() const noexcept { return fatal_.load(); }
  const Address& address() const noexcept { return wallet_ ? wallet_->address() : zero_; }

  // Checks and keeps one handover for `user` (what the worker does for each message);
  // returns the signed Ack. On a store error sets fatal() and returns false.
  bool handle(const Address& user, const uint8_t* payload, size_t len, Ack& ack);
  // The same for a thread handover (.../thread): kept only while the tower holds a
  // channel state for `user` (the receiver), at most kMaxThreadsPerUser per receiver.
  bool handle_thread(const Address& user, const uint8_t* payload, size_t len, Ack& ack);
  bool handle_release(const Address& user, const uint8_t* payload, size_t len, Ack& ack);
  // One chain round (what run() does every interval). False with `err` on an RPC or
  // store error (the round is retried; channels stay marked).
  bool chain_round(std::string& err);

 private:
  struct Incoming {
    bool thread = false;
    Address user;
    std::vector<uint8_t> payload;
    std::vector<uint8_t> correlation;
  };
  void on_message(const mqtt::Message& m);
  void worker();
  bool guard(const Address& user, uint64_t now, std::string& err);
  chain::Result<chain::Receipt> answer(const SignedChannelState& s);
  bool guard_thread(const ThreadKey& k, uint64_t now, std::string& err);
  bool store_error(const std::string& err);
  // Chain thread: logs `msg` unless it is the last message logged under `key` (a
  // failure retried every round is logged once until it changes).
  void warn_once(const std::string& key, const std::string& msg, const char* level = "warn");
  std::map<std::string, std::string> last_warning_;
  void refused(const std::string& msg);

  Config cfg_;
  PrivateKey key_{};
  Address zero_{};
  Address contract_{}, hub_{};
  uint64_t challenge_period_ = 0;
  std::unique_ptr<chain::RpcClient> rpc_;
  std::unique_ptr<chain::Wallet> wallet_;
  std::unique_ptr<chain::ChannelManagerClient> cm_;
  std::unique_ptr<chain::EventPoller> poller_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<mqtt::Client> mqtt_;
  Signer verifier_;

  std::mutex qmu_;
  std::condition_variable qcv_;
  std::deque<Incoming> queue_;
  bool stopping_ = false;
  std::thread worker_;
  std::atomic<bool> fatal_{false};
  uint64_t dropped_ = 0;

  std::mutex logmu_;
  uint64_t log_window_start_ = 0;
  unsigned log_in_window_ = 0;
  uint64_t log_suppressed_ = 0;
};

}  // namespace picopay::tower
