// picopay chain adapter: the watchtower used by the hub and by agents.
//
// It watches ChannelManager events and, for the channels it guards:
//  - when an exit starts (DidStartExitChannel) with a global txCount below the latest
//    double-signed state it holds, answers within the challenge period with that state
//    (emptyChannelWithChallenge), which also empties the channel;
//  - otherwise empties the channel (emptyChannel) once the period has ended;
//  - when a thread exit starts or is challenged with an older thread state than the
//    latest sender-signed one it holds, answers with challengeThread; once the thread's
//    timer ends, empties the thread in each guarded channel (emptyThread);
// The contract accepts these from any address, so the tower may use its own key.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"

namespace picopay::chain {

// Where the tower gets the latest states. The owner (hub store, agent store) fills it.
struct WatchedThread {
  SignedThreadState initial;         // txCount 0, signed by the sender (in the thread root)
  std::vector<Hash32> rootLeaves;    // all initial-thread hashes of the channel's root
  std::optional<SignedThreadState> latest;  // newest sender-signed update, if any
};

struct WatchedChannel {
  Address user{};
  // The newest double-signed state with timeout 0 (exits refuse time-sensitive states).
  std::optional<SignedChannelState> latest;
  std::vector<WatchedThread> threads;  // threads of `latest`'s thread root
};

struct WatchtowerAction {
  std::string what;  // "emptyChannelWithChallenge", "emptyChannel", "challengeThread", "emptyThread"
  Address user{};
  bool ok = false;
  std::string error;
  uint64_t gasUsed = 0;
};

class Watchtower {
 public:
  Watchtower(ChannelManagerClient& cm, EventPoller& poller) : cm_(cm), poller_(poller) {}
  // Adds or replaces the channel's latest states (call after every countersigned update,
  // or set a lookup).
  void watch(const WatchedChannel& ch);
  // Where the tower reads a channel it holds no state of when an exit starts on it (the
  // owner's store, read then, so the owner need not hand over every channel): true with
  // found = false when the store has no such channel (not guarded); false on a read error
  // (asked again next round, the exit is not given up).
  using Lookup = std::function<bool(const Address& user, WatchedChannel& out, bool& found)>;
  void set_lookup(Lookup lookup) { lookup_ = std::move(lookup); }
  // One round: read new events, answer stale exits, empty what has matured.
  // Returns what it did (failed actions carry the error text; they are retried).
  Result<std::vector<WatchtowerAction>> tick();

 private:
  struct ThreadKey {
    Address sender, receiver;
    uint64_t id;
    bool operator<(const ThreadKey& o) const;
  };
  void on_event(const ChannelEvent& e);
  ChannelManagerClient& cm_;
  EventPoller& poller_;
  std::map<std::string, WatchedChannel> channels_;        // by lowercase user address
  std::map<std::string, bool> exiting_;                   // channel in dispute (seen on chain)
  std::map<std::string, Address> unresolved_;             // exiting, state not read yet (lookup)
  Lookup lookup_;
  std::map<ThreadKey, uint64_t> thread_disputes_;         // thread -> txCount on chain
};

}  // namespace picopay::chain
