// picopay-agent: following its own channel on chain (docs/chain.md, "Following the chain").
//
// Every few seconds the agent reads its channel from the ChannelManager. While the
// channel is in dispute (ChannelDispute / ThreadDispute) or emptied on chain it stops
// paying, logs why and reports it in its status JSON ("chain"), and hands the facts to
// its Session (Session::on_chain_fact), whose policy then refuses every hub request but
// what the chain allows. An exit started by someone else (the hub) with a state older
// than the agent's latest double-signed state is answered, before the channel's closing
// time, with that state (emptyChannelWithChallenge), which empties the channel at the
// newer balances. Only a state both signed is ever sent: never the pending proposal.
#pragma once

#include <cstdint>
#include <string>

#include "picopay/chain/manager.hpp"
#include "picopay/policy.hpp"
#include "picopay/state.hpp"

namespace picopay::device {

struct OwnChannelView {
  ChainFacts facts{};          // for Session::on_chain_fact (known true)
  bool dispute = false;        // ChannelDispute or ThreadDispute
  bool emptied = false;        // emptied on chain (status Open, nothing left, a state applied)
  uint64_t since_block = 0;    // the first block at which this follower saw the condition
  std::string note;            // "" or e.g. "in dispute since block 42 (exit by 0x..., txCountGlobal 7)"
  std::string answered;        // what was sent this round (e.g. "emptyChannelWithChallenge txCountGlobal 9: 0x...")
  std::string error;           // a challenge that failed this round (retried next round)
};

class OwnChannelFollower {
 public:
  OwnChannelFollower(chain::ChannelManagerClient& cm, const Address& user) : cm_(cm), user_(user) {}
  // Reads the channel and the latest block. `latest`: the agent's latest double-signed
  // state (its countersignature already verified by the caller; a state with timeout != 0
  // or without both signatures is never sent). Errors: the node's (Transport, Rpc, ...).
  chain::Result<OwnChannelView> poll(const SignedChannelState& latest);

 private:
  chain::ChannelManagerClient& cm_;
  Address user_;
  uint64_t since_block_ = 0;
  bool was_dispute_ = false, was_emptied_ = false;
  uint64_t answered_tx_ = 0;  // txCountGlobal of the challenge sent for the current dispute
};

}  // namespace picopay::device
