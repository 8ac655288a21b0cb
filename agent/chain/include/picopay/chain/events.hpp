// picopay chain adapter: ChannelManager events, polled with a confirmation depth,
// resumable (the last processed block and recent block hashes are persisted) and safe
// across reorgs.
//
// Only blocks at least `confirmations` deep are delivered. Each poll first checks that
// the stored hashes of the recently processed blocks still are the chain's; if a block
// was replaced (a reorg deeper than the confirmation depth), processing resumes from the
// last common block and the events of the replacing blocks are delivered (handlers must
// be idempotent: key by (txHash, logIndex) or by channel txCount). A reorg deeper than
// the kept history is ErrorKind::Reorg.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"

namespace picopay::chain {

enum class EventKind {
  DidUpdateChannel,
  DidStartExitChannel,
  DidEmptyChannel,
  DidStartExitThread,
  DidChallengeThread,
  DidEmptyThread,
  DidNukeThreads,
  DidHubContractWithdraw,
  DidCreditOwed,    // not in v1: a refused push credited to `owner` (see docs/chain.md)
  DidWithdrawOwed,  // not in v1: `owner` withdrew its credit to `to`
  Unknown,
};
const char* event_kind_name(EventKind k) noexcept;

// A decoded event. Fields not carried by the event stay zero. DidNukeThreads and
// DidEmptyThread carry the channel after the call in weiBalances/tokenBalances/txCount/
// threadRoot/threadCount; an event of another contract or version is Unknown.
struct ChannelEvent {
  EventKind kind = EventKind::Unknown;
  Log log;
  Address user{};        // channel events, thread events' user (DidStartExitThread/DidEmptyThread)
  uint64_t senderIdx = 0;
  Address sender{}, receiver{}, senderAddress{};
  uint64_t threadId = 0;
  U256 weiBalances[2] = {U256::zero(), U256::zero()};
  U256 tokenBalances[2] = {U256::zero(), U256::zero()};
  U256 pendingWeiUpdates[4] = {U256::zero(), U256::zero(), U256::zero(), U256::zero()};
  U256 pendingTokenUpdates[4] = {U256::zero(), U256::zero(), U256::zero(), U256::zero()};
  uint64_t txCount[2] = {0, 0};  // channel [global, chain]; thread events: txCount[0]
  Hash32 threadRoot{};
  uint64_t threadCount = 0;
  U256 weiAmount = U256::zero(), tokenAmount = U256::zero();  // nuke, hub withdraw, owed credit/withdrawal
  Address owner{}, to{};  // DidCreditOwed (owner), DidWithdrawOwed (owner, to)
};
// Errors: BadJson if the log does not have the event's shape.
Result<ChannelEvent> decode_event(const Log& log);

class EventPoller {
 public:
  // state_file: where progress is persisted ("" = in memory only). start_block: the
  // first block to scan when there is no state file yet (the deploy block).
  EventPoller(RpcClient& rpc, const Address& contract, uint64_t confirmations, std::string state_file,
              uint64_t start_block = 0);
  // Loads the state file if present. Errors: Io, BadJson.
  Status load();
  // Scans new confirmed blocks (at most max_blocks), calling `on_event` in chain order;
  // persists progress after each batch. Returns the number of events delivered.
  Result<size_t> poll(const std::function<void(const ChannelEvent&)>& on_event, uint64_t max_blocks = 5000);
  uint64_t last_block() const noexcept { return next_block_ == 0 ? 0 : next_block_ - 1; }
  uint64_t reorgs_seen() const noexcept { return reorgs_; }

 private:
  Status save() const;
  Status check_reorg();
  RpcClient& rpc_;
  Address contract_;
  uint64_t confirmations_;
  std::string file_;
  uint64_t next_block_;
  uint64_t reorgs_ = 0;
  std::vector<std::pair<uint64_t, Hash32>> recent_;  // processed (number, hash), oldest first
};

}  // namespace picopay::chain
