// picopay-agent's side of picopay-tower (docs/tower.md): hands the tower the device's
// latest double-signed channel state and, as a payee, the newest sender-signed state of
// each open incoming thread, and checks the tower's signed acks. The protocol itself
// (topics, handover wire, Ack) is picopay_tower_protocol's; this class only decides what
// to hand over and when.
//
// What is handed over: the session's latest double-signed channel state if its timeout
// is 0 (a time-sensitive state cannot be used in an exit; the tower refuses it, and the
// older timeout-0 state it holds stays the evidence), as soon as it is newer than what
// the tower acked, at most once per `interval_ms`; unacked, it is handed again after
// 5 x interval_ms. Thread states are handed over only after the tower acked a channel
// state (it refuses threads of a channel it does not hold). flush() hands over whatever
// is newer at once (before the agent stops: a sleeping device is exactly what a tower
// is for).
//
// A handed thread that is no longer open (closed in the channel) is released (a
// receiver-signed ThreadRelease, docs/tower.md "Releasing a closed thread") once the
// tower acked a channel state at or after the one that closed it, so the tower's rows
// for this receiver do not fill up with closed threads; unacked, the release is sent
// again after 5 x interval_ms. A thread whose release the tower confirmed is forgotten.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "picopay/session.hpp"
#include "picopay/signer.hpp"
#include "picopay/types.hpp"

namespace picopay::device {

class TowerClient {
 public:
  using Publish = std::function<void(const std::string& topic, const std::vector<uint8_t>& payload)>;
  using Log = std::function<void(bool warn, const std::string& line)>;

  // `tower`: the tower's (gas) address, which signs its acks; `key`: the user's key (signs
  // thread handovers), borrowed.
  TowerClient(const Address& tower, const Address& contract, const Address& user, const Signer& signer,
              const PrivateKey& key, uint64_t interval_ms);

  // Topics to subscribe to (the tower's acks to us).
  std::vector<std::string> topics() const;
  // Hands over what is due (now_ms: a steady clock in milliseconds). `channel`: the
  // latest double-signed channel state; `incoming`: the latest sender-signed state of each
  // open thread the device receives on (incoming_threads()).
  void step(const SignedChannelState& channel, const std::vector<SignedThreadState>& incoming, uint64_t now_ms,
            const Publish& pub, const Log& log);
  // Hands over every newer state now, ignoring the interval.
  void flush(const SignedChannelState& channel, const std::vector<SignedThreadState>& incoming, uint64_t now_ms,
             const Publish& pub, const Log& log);
  // The session's open incoming threads that received something (their latest states).
  static std::vector<SignedThreadState> incoming_threads(const Session& s);
  // A message on one of topics(): returns false if it is not one of ours. Acks that do
  // not verify (not the tower's signature, another channel) are ignored and logged.
  bool on_message(const std::string& topic, const std::vector<uint8_t>& payload, const Log& log);

  // After a restart: incoming threads that closed in an earlier run and whose release the
  // tower has not confirmed (the agent's state keeps them, ThreadRecord::tower_released),
  // as (sender, threadId). Each is released like a thread closed now: once the tower acked
  // a channel state at or after the current one (which no longer has the thread). A
  // release of a thread the tower never held is answered `released` too.
  void resume_releases(const std::vector<std::pair<Address, uint64_t>>& closed);
  // The threads whose release the tower confirmed (its signed `released` ack) since the
  // last call, as (sender, threadId): the agent records them so that they are not released
  // again after a restart.
  std::vector<std::pair<Address, uint64_t>> take_released();

  // What the tower acked (signed): the channel state's txCountGlobal it holds, 0 if none.
  uint64_t acked_tx_count_global() const { return acked_tx_; }
  const Address& tower() const { return tower_; }

 private:
  void run(const SignedChannelState& c, const std::vector<SignedThreadState>& incoming, uint64_t now_ms, bool force,
           const Publish& pub, const Log& log);
  void release_closed(const SignedChannelState& c, const std::vector<SignedThreadState>& incoming, uint64_t now_ms,
                      bool force, const Publish& pub, const Log& log);

  Address tower_, contract_, user_;
  const Signer& signer_;
  const PrivateKey& key_;
  uint64_t interval_ms_;
  // Channel.
  uint64_t handed_tx_ = 0;     // txCountGlobal last handed over
  uint64_t handed_ms_ = 0;     // when
  uint64_t acked_tx_ = 0;      // txCountGlobal the tower's last valid ack says it holds
  Hash32 handed_hash_{};
  // Threads: (sender, threadId) -> txCount handed / acked.
  struct ThreadMark {
    uint64_t handed_tx = 0, handed_ms = 0, acked_tx = 0;
    Hash32 handed_hash{};  // thread_hash of the state handed (thread acks name no sender)
    Address sender{};
    bool closed = false;        // no longer among the open incoming threads
    uint64_t closed_at_tx = 0;  // the channel's txCountGlobal when it was first seen closed
    uint64_t release_ms = 0;    // when a release was last sent (0: never)
  };
  std::map<std::tuple<std::string, uint64_t>, ThreadMark> threads_;
  std::vector<std::pair<Address, uint64_t>> released_;  // confirmed, not yet taken
  uint64_t last_refusal_log_ms_ = 0;
};

}  // namespace picopay::device
