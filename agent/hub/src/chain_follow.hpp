// picopay-hub: following what the chain did to the hub's channels (docs/chain.md,
// "Following the chain").
//
// A second EventPoller (its own progress file) reads the ChannelManager's events; for
// every channel an event names (exit started, emptied, thread exits, nukes, authorized
// updates), and for every channel already marked, the channel is read from the contract
// and marked:
//   - in dispute: status ChannelDispute or ThreadDispute;
//   - emptied: status Open, nothing left in it, a state applied (txCount[0] > 0);
//   - nothing (mark removed): open and in use again.
// Marks are stored (a text file, replaced atomically), so a restarted hub refuses what it
// refused before without re-reading old blocks. The hub turns a mark into ChainFacts for
// policy_hub_countersigns / policy_check_chain_status: a channel in dispute takes nothing,
// an emptied channel takes only EmptyChannel (until it holds nothing off chain either).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/policy.hpp"

namespace picopay::hub {

struct ChainMark {
  bool dispute = false;         // ChannelDispute or ThreadDispute on chain
  bool thread_dispute = false;  // ThreadDispute (the channel was emptied with threads open)
  bool emptied = false;         // emptied on chain (status Open, balances zero)
  uint64_t since_block = 0;     // the block of the event that first showed it
  uint64_t closing_time = 0;    // channelClosingTime (Unix seconds) while in dispute
  uint64_t tx_count_global = 0, tx_count_chain = 0;
};

struct ChainChange {
  Address user{};
  ChainMark mark;     // the new mark (all false: the channel is open again)
  std::string what;   // "in dispute since block N", "emptied at block N", "open"
};

class ChainFollow {
 public:
  // marks_file: where the marks are stored; poller_file: the poller's progress.
  ChainFollow(chain::RpcClient& rpc, chain::ChannelManagerClient& cm, const Address& contract,
              uint64_t confirmations, std::string poller_file, std::string marks_file);
  // Loads the stored marks and the poller's progress. Errors: a line naming the file.
  bool load(std::string& err);
  // One round (reads events, re-reads named and marked channels, stores the marks).
  // Returns the channels whose mark changed. Errors: the chain's (retried next round).
  chain::Result<std::vector<ChainChange>> tick();
  // True at most once per kIntervalMs (the caller then runs tick()).
  bool due();
  static constexpr uint64_t kIntervalMs = 1000;
  // The mark of `user`'s channel, or null when the chain shows nothing special.
  const ChainMark* mark(const Address& user) const;
  // The marked channels' users.
  std::vector<Address> marked() const;
  // ChainFacts from a mark (known true), for the signing policy.
  static ChainFacts facts(const ChainMark& m);
  // "in dispute since block N" / "emptied on chain at block N" / "".
  static std::string describe(const ChainMark& m);
  // The transaction of the last DidEmptyChannel event this process read for `user`'s
  // channel (the EmptyChannel request's transactionHash, informational), or zero.
  Hash32 empty_tx(const Address& user) const;

 private:
  bool save(std::string& err) const;
  chain::Result<bool> refresh(const Address& user, uint64_t block, ChainChange& change);
  chain::ChannelManagerClient& cm_;
  chain::EventPoller poller_;
  std::string file_;
  std::chrono::steady_clock::time_point last_{};
  std::map<std::string, std::pair<Address, ChainMark>> marks_;  // by lowercase address
  std::map<std::string, Hash32> empty_tx_;  // by lowercase address (volatile)
};

}  // namespace picopay::hub
