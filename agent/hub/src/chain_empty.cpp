// picopay-hub: bringing a channel emptied on chain back into use (hub.hpp
// request_empty_channel; docs/chain.md, "Following the chain").
//
// After emptyChannel / emptyChannelWithChallenge the contract holds nothing for the
// channel, but the hub's latest double-signed state still shows what was paid out. The
// channel takes nothing but Connext's EmptyChannel until an off-chain state records the
// empty channel too. The user is the only proposer, so the hub asks for it with a
// HubRequest; the user proposes it when its own chain facts show the same, and the hub
// countersigns it after reading the chain again (policy_hub_countersigns: emptied, no
// dispute, the chain's txCount not ahead of the state's). Then a new deposit brings the
// channel back.
#include <ctime>
#include <string>

#include "chain_follow.hpp"
#include "engine_core.hpp"
#include "hub.hpp"
#include "log.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/policy.hpp"

namespace picopay::hub {

void Hub::request_empty_channel(Chan& ch) {
  const ChainMark* m = mark(ch.user);
  if (!m || !m->emptied || m->dispute || !engine_mark_current(ch, *m)) return;
  // Only while the off-chain state still holds something (the same test that refuses
  // every other update on it).
  const ChainFacts f = ChainFollow::facts(*m);
  if (policy_check_chain_status(f, ch.latest.state, UpdateReason::Payment) == Status::Ok) return;
  for (const Request& r : ch.requests)
    if (r.update.reason == UpdateReason::EmptyChannel) return;  // asked already
  // The chain must show the channel emptied at counts our latest state supersedes;
  // otherwise the request could never be countersigned: say so once per mark.
  if (m->tx_count_global > ch.latest.state.txCountGlobal || m->tx_count_chain > ch.latest.state.txCountChain) {
    const std::string k = ch.key + "@" + std::to_string(m->since_block);
    if (empty_refused_.insert(k).second)
      logf("ERROR", ch.key + ": emptied on chain at txCount [" + std::to_string(m->tx_count_global) + ", " +
                        std::to_string(m->tx_count_chain) + "], ahead of the hub's latest state [" +
                        std::to_string(ch.latest.state.txCountGlobal) + ", " +
                        std::to_string(ch.latest.state.txCountChain) + "]: EmptyChannel not requested");
    return;
  }
  ChannelUpdate u = channel_update_make(UpdateReason::EmptyChannel);
  if (auto it = empty_tx_.find(ch.user); it != empty_tx_.end()) u.chainTx.transactionHash = it->second;
  // Only what the hub would countersign now: e.g. not over the pending deposit that
  // reopens the channel after an EmptyChannel (the contract can still run it).
  HubPolicyInput in{};
  in.hasChainAccess = true;
  in.chain = f;
  in.chain.blockTime = static_cast<uint64_t>(std::time(nullptr));  // the countersign re-reads the chain's
  in.limits = policy_limits_default();
  if (policy_hub_countersigns(in, ch.latest.state, u) != Status::Ok) return;
  std::vector<Out> outs;
  if (!in_transaction([&] {
        add_request(ch, u, true);  // right after an outstanding one: nothing else applies now
        if (!tx_failed_) pump(ch, outs);
      }))
    return;
  logf("info", ch.key + ": emptied on chain (txCount [" + std::to_string(m->tx_count_global) + ", " +
                   std::to_string(m->tx_count_chain) + "]): EmptyChannel requested");
  publish_outs(outs);
}

}  // namespace picopay::hub
