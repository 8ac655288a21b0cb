// picopay-agent: following its own channel on chain (chain_follow.hpp).
#include "picopay/device/chain_follow.hpp"

#include "picopay/agent/json_state.hpp"

namespace picopay::device {

chain::Result<OwnChannelView> OwnChannelFollower::poll(const SignedChannelState& latest) {
  PPC_TRY(chain::OnchainChannel oc, cm_.channel(user_));
  PPC_TRY(chain::Block blk, cm_.wallet().rpc().block_by_number("latest"));
  OwnChannelView v;
  v.dispute = oc.status != chain::ChannelStatus::Open;
  // After emptyChannel the contract holds nothing for the channel and has recorded a
  // state (txCount[0] > 0); a channel never used has txCount[0] = 0.
  v.emptied = oc.status == chain::ChannelStatus::Open && oc.weiTotal.is_zero() && oc.tokenTotal.is_zero() &&
              oc.txCountGlobal > 0 && oc.threadCount == 0;
  v.facts.known = true;
  v.facts.txCountGlobal = oc.txCountGlobal;
  v.facts.txCountChain = oc.txCountChain;
  v.facts.status = v.dispute ? ChainChannelStatus::InDispute : ChainChannelStatus::Open;
  v.facts.emptied = v.emptied;
  v.facts.blockTime = blk.timestamp;
  if (v.dispute != was_dispute_ || v.emptied != was_emptied_) {
    since_block_ = blk.number;
    if (!v.dispute) answered_tx_ = 0;
  }
  was_dispute_ = v.dispute;
  was_emptied_ = v.emptied;
  v.since_block = since_block_;
  if (v.dispute) {
    v.note = std::string(oc.status == chain::ChannelStatus::ThreadDispute ? "thread dispute" : "in dispute") +
             " since block " + std::to_string(since_block_) + " (exit by " + json::address_text(oc.exitInitiator) +
             ", txCountGlobal " + std::to_string(oc.txCountGlobal) + " on chain)";
  } else if (v.emptied) {
    v.note = "emptied on chain at block " + std::to_string(since_block_) + " (txCountGlobal " +
             std::to_string(oc.txCountGlobal) + ")";
  }
  // A stale exit by the counterparty: answer with our newer double-signed state.
  const ChannelState& s = latest.state;
  const bool both = latest.hasSigHub && latest.hasSigUser;
  if (oc.status == chain::ChannelStatus::ChannelDispute && oc.exitInitiator != user_ && both && s.timeout == 0 &&
      s.txCountGlobal > oc.txCountGlobal && blk.timestamp < oc.channelClosingTime && answered_tx_ != s.txCountGlobal) {
    auto r = cm_.empty_channel_with_challenge(latest);
    if (r) {
      answered_tx_ = s.txCountGlobal;
      v.answered = "emptyChannelWithChallenge txCountGlobal " + std::to_string(s.txCountGlobal) + " (chain had " +
                   std::to_string(oc.txCountGlobal) + "): " + json::hash_text(r->transactionHash);
    } else {
      v.error = "emptyChannelWithChallenge txCountGlobal " + std::to_string(s.txCountGlobal) + ": " +
                r.error().to_string();
    }
  }
  return v;
}

}  // namespace picopay::device
