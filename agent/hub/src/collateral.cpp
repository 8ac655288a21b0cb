// picopay-hub: collateral management (docs/flows.md "Collateral"): taking back the hub
// balance of idle channels (a hub-only withdrawal the user accepts because only the hub's
// balance leaves, to the hub's reserve). A payee's collateral request, its sizing from
// recent flow and the reserve check before any promise are the engine core's
// (engine_core.hpp engine_collateral).
#include <chrono>
#include <ctime>

#include "hub.hpp"
#include "hub_internal.hpp"
#include "log.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"

namespace picopay::hub {
namespace {

uint64_t steady_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

constexpr uint64_t kRoundMs = 2000;

}  // namespace

void Hub::collateral_round() {
  if (!chain_ || cfg_.collateral_idle_seconds == 0) return;
  const uint64_t now = steady_ms();
  if (now - last_collateral_round_ms_ < kRoundMs) return;
  last_collateral_round_ms_ = now;
  std::vector<Chan*> idle;
  const EngineEnv env = engine_env();
  for (auto& kv : chans_) {
    Chan& ch = *kv.second;
    const ChannelState& s = ch.latest.state;
    // Only collateral: hub balance in channels the hub funded (a payer's channel holds
    // what the payer paid; the hub leaves it there).
    if (!ch.collateralized || now - ch.active_ms < cfg_.collateral_idle_seconds * 1000) continue;
    if ((s.balanceWeiHub.is_zero() && s.balanceTokenHub.is_zero()) || channel_has_pending(s) || !ch.requests.empty() || !ch.future.empty()) continue;
    if (engine_chain_refusal(ch, channel_update_make(UpdateReason::ProposePendingWithdrawal), env) != Status::Ok) continue;
    bool job = false;
    for (const auto& j : deposit_jobs_) job = job || j.user == ch.user;
    if (!job) idle.push_back(&ch);
  }
  if (idle.empty()) return;
  std::vector<Out> outs;
  if (!in_transaction([&] {
        for (Chan* ch : idle) {
          const ChannelState& s = ch->latest.state;
          ChannelUpdate p = channel_update_make(UpdateReason::ProposePendingWithdrawal);
          p.withdrawal.recipient = ch->user;  // a hub-only withdrawal names the user (docs/signing-policy.md)
          p.withdrawal.withdrawalWeiHub = s.balanceWeiHub;
          p.withdrawal.withdrawalTokenHub = s.balanceTokenHub;  // token collateral too (docs/tokens.md)
          p.withdrawal.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;  // set again when sent
          logf("info", ch->key + ": idle for " + std::to_string((now - ch->active_ms) / 1000) + " s: taking back " +
                           json::amount_text(s.balanceWeiHub) + " wei and " + json::amount_text(s.balanceTokenHub) +
                           " token base units of hub balance to the reserve");
          ch->active_ms = now;  // once per idle period
          add_request(*ch, p);
          if (!tx_failed_) pump(*ch, outs);
          if (tx_failed_) break;
        }
      }))
    return;
  publish_outs(outs);
}

}  // namespace picopay::hub
