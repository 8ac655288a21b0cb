// picopay-hub: collateral management (docs/flows.md "Collateral"): a payee's collateral
// request, sizing from recent flow, the reserve check before any promise, and taking back
// the hub balance of idle channels (a hub-only withdrawal the user accepts because only
// the hub's balance leaves, to the hub's reserve).
#include <chrono>
#include <ctime>

#include "hub.hpp"
#include "hub_internal.hpp"
#include "log.hpp"
#include "picopay/agent/collateral_request.hpp"
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

constexpr uint64_t kRequestClockSkewSeconds = 300;
constexpr uint64_t kRoundMs = 2000;

U256 sum(const U256& a, const U256& b) {
  U256 r{};
  return u256_add(a, b, r) == Status::Ok ? r : a;
}

}  // namespace

bool Hub::reserve_allows(const U256& amount, const std::string& who, Chan* ch) {
  Effects fx;
  const bool allows = engine_reserve_allows(amount, who, engine_env(), fx);
  for (const LogLine& l : fx.logs) logf(l.level, l.text);
  if (fx.reserve_wait && ch) reserve_waiters_.insert(ch->key);
  if (fx.reserve_warned) last_reserve_warn_ms_ = steady_ms();
  return allows;
}

void Hub::handle_collateral(Chan& ch, const Bytes& payload, std::vector<Out>& outs) {
  U256 expect{};
  uint64_t t = 0;
  std::string err;
  if (!agent::collateral_request_parse(signer_, std::string(payload.begin(), payload.end()), contract_, ch.user, expect,
                                       t, err)) {
    logf("warn", ch.key + ": " + err + ": ignored");
    return;
  }
  const uint64_t now = static_cast<uint64_t>(std::time(nullptr));
  if (t + kRequestClockSkewSeconds < now || t > now + kRequestClockSkewSeconds || (ch.flow && t <= ch.flow->collateral_time)) {
    logf("warn", ch.key + ": collateral request with time " + std::to_string(t) + " (stale, early or replayed): ignored");
    return;
  }
  if (!ch.flow) ch.flow = std::make_unique<Chan::PayeeFlow>();
  ch.flow->collateral_time = t;
  if (!chain_) {
    logf("warn", ch.key + ": collateral request: no --rpc-url, the hub deposits nothing");
    return;
  }
  // Size: what the payee expects or what it received in the flow window, whichever is
  // more, within [collateral_wei, collateral_max_wei].
  U256 flow = U256::zero();
  for (const auto& f : ch.flow->received) flow = sum(flow, f.second);
  U256 target = expect < flow ? flow : expect;
  if (target < collateral_) target = collateral_;
  if (!collateral_max_.is_zero() && collateral_max_ < target) target = collateral_max_;
  U256 have = sum(ch.latest.state.balanceWeiHub, ch.latest.state.pendingDepositWeiHub);
  bool in_flight = channel_has_pending(ch.latest.state);
  for (const auto& r : ch.requests) {
    if (r.update.reason == UpdateReason::ProposePendingDeposit) {
      have = sum(have, r.update.deposit.depositWeiHub);
      in_flight = true;
    }
    if (r.update.reason == UpdateReason::ConfirmPending) in_flight = true;
  }
  for (const auto& j : deposit_jobs_)
    if (j.user == ch.user) in_flight = true;
  if (target <= have || in_flight) {
    logf("info", ch.key + ": collateral request for " + json::amount_text(expect) + " wei: " +
                     json::amount_text(have) + " wei held" + (in_flight ? " or on its way" : "") + ", nothing to add");
    return;
  }
  U256 amount{};
  (void)u256_sub(target, have, amount);
  if (!reserve_allows(amount, ch.key)) return;
  logf("info", ch.key + ": collateral request for " + json::amount_text(expect) + " wei (recent flow " +
                   json::amount_text(flow) + "): requesting a deposit of " + json::amount_text(amount) + " wei");
  ChannelUpdate p = channel_update_make(UpdateReason::ProposePendingDeposit);
  p.deposit.depositWeiHub = amount;
  p.deposit.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;  // set again when sent
  add_request(ch, p, true);
  if (!tx_failed_) pump(ch, outs);
}

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
