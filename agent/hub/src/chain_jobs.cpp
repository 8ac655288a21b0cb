// picopay-hub chain jobs: collateral deposits (hubAuthorizedUpdate, then ConfirmPending),
// the watchtower, following the chain.
#include "hub.hpp"
#include "hub_internal.hpp"
#include "log.hpp"

#include <cjson/cJSON.h>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include "picopay/agent/json_state.hpp"
#include "picopay/agent/log.hpp"
#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/chain/watchtower.hpp"
#include "chain_follow.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "metrics.hpp"

namespace picopay::hub {

void Hub::watch(Chan& ch) {
  if (!tower_) return;
  chain::WatchedChannel w;
  w.user = ch.user;
  if (ch.latest.hasSigHub && ch.latest.hasSigUser && ch.latest.state.timeout == 0) w.latest = ch.latest;
  tower_->watch(w);
}

bool Hub::load_deposit_jobs(std::string& err) {
  std::vector<std::pair<std::string, Bytes>> rows;
  if (!ok(ledger_->list_deposits(rows), err)) return false;
  for (auto& r : rows) {
    DepositJob j;
    if (address_parse(r.first.c_str(), r.first.size(), j.user) != Status::Ok ||
        decode_channel_state(r.second.data(), r.second.size(), j.state) != Status::Ok) {
      err = "corrupt stored deposit job for " + r.first;
      return false;
    }
    deposit_jobs_.push_back(j);
  }
  if (!rows.empty())
    logf("info", "recovered " + std::to_string(rows.size()) + " countersigned collateral deposit(s): checking the chain");
  return true;
}

bool Hub::run_deposit_job(DepositJob& j) {
  const std::string who = json::address_text(j.user);
  const bool reclaim = !j.state.state.pendingWithdrawalWeiHub.is_zero() || !j.state.state.pendingWithdrawalTokenHub.is_zero();
  const std::string what = reclaim ? "collateral withdrawal" : "collateral deposit";
  const ChannelState& want = j.state.state;
  auto retry = [&](const std::string& why) {
    ++j.failures;
    const uint64_t wait_ms = std::min<uint64_t>(60000, 1000ull << std::min(j.failures, 6u));
    j.next_try_ms = now_ms() + wait_ms;
    logf("warn", what + " for " + who + " (txCountChain " + std::to_string(want.txCountChain) +
                     "): " + why + "; retry in " + std::to_string(wait_ms / 1000) + " s");
    return false;
  };
  // Idempotent: the contract refuses a txCount it has already seen, and a deposit sent
  // before a crash may have been mined, so look at the channel on chain first.
  auto oc = cm_->channel(j.user);
  if (!oc.ok()) return retry("cannot read the chain: " + oc.error().to_string());
  Hash32 txh{};  // stays zero when the deposit was found already made (its hash is not kept)
  if (oc->txCountChain >= want.txCountChain) {
    logf("info", what + " for " + who + " is already on chain (txCountChain " +
                     std::to_string(oc->txCountChain) + "): confirming");
  } else {
    auto rc = cm_->hub_authorized_update(want, j.state.sigUser);
    if (!rc.ok()) return retry("hubAuthorizedUpdate: " + rc.error().to_string());
    txh = rc->transactionHash;
    logf("info", what + " for " + who + " on chain: " + json::hash_text(txh) + " (gas " +
                     std::to_string(rc->gasUsed) + ")");
    crash_point("deposit-sent");
  }
  std::vector<Out> outs;
  std::string err;
  tx_failed_ = false;
  if (!ok(ledger_->begin(), err)) {
    fail(err);
    return false;
  }
  Chan* ch = channel(j.user);
  if (ch) {
    ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
    std::memcpy(c.chainTx.transactionHash.bytes, txh.bytes, 32);
    add_request(*ch, c, true);  // ahead of the OpenThreads that wait for it
    if (!tx_failed_) pump(*ch, outs);
    if (!tx_failed_ && !ok(ledger_->delete_deposit(ch->key), err)) {
      txerr_ = err;
      tx_failed_ = true;
    }
  } else {
    tx_failed_ = true;
  }
  if (tx_failed_ || !ok(ledger_->commit(), err)) {
    ledger_->rollback();
    fail("store: " + (err.empty() ? txerr_ : err));
    return false;
  }
  publish_outs(outs);
  return true;
}

void Hub::chain_jobs() {
  if (!cm_) return;
  // Collateral deposits the payee countersigned: execute them on chain, then confirm.
  if (!deposit_jobs_.empty()) crash_point("deposit-countersigned");
  auto jobs = std::move(deposit_jobs_);
  deposit_jobs_.clear();
  const uint64_t now = now_ms();
  for (auto& j : jobs) {
    if (j.next_try_ms <= now) {
      if (run_deposit_job(j)) continue;  // done: ConfirmPending requested, row deleted
      if (fatal_.load()) return;
    }
    deposit_jobs_.push_back(j);  // kept (stored) for a later retry
  }
  if (metrics_) metrics_->deposit_backlog(deposit_jobs_.size());
  if (tower_ && now_ms() - last_tower_ms_ >= static_cast<uint64_t>(cfg_.watchtower_interval_s) * 1000) {
    last_tower_ms_ = now_ms();
    auto acts = tower_->tick();
    if (!acts.ok()) {
      logf("warn", "watchtower: " + acts.error().to_string());
    } else {
      for (auto& a : *acts) {
        if (metrics_) metrics_->watchtower_action(a.what, a.ok);
        logf(a.ok ? "info" : "warn", "watchtower: " + a.what + " " + json::address_text(a.user) +
                                         (a.ok ? " ok" : " failed: " + a.error));
      }
    }
    if (metrics_) metrics_->chain_round(*rpc_, *cm_, hub_, poller_->last_block(), acts.ok());
  }
  follow_chain();
}

void Hub::follow_chain() {
  if (!follow_ || !follow_->due()) return;
  auto changes = follow_->tick();
  if (!changes.ok()) {
    logf("warn", "chain follow: " + changes.error().to_string());
    return;
  }
  for (const ChainChange& c : *changes) {
    const std::string who = json::address_text(c.user);
    logf(c.what == "open" ? "info" : "warn",
         "chain: channel " + who + " " + c.what +
             (c.mark.dispute ? ": no more updates are countersigned on it" : c.mark.emptied ? ": only EmptyChannel is countersigned on it" : ""));
    Chan* ch = channel(c.user);
    if (ch) status_dirty_.insert(ch);
  }
  for (const Address& u : follow_->marked()) {
    const ChainMark* m = follow_->mark(u);
    Chan* ch = m && (m->dispute || m->emptied) ? channel(u) : nullptr;
    if (ch && m->dispute) dispute_threads(*ch);
    if (ch && m->emptied) request_empty_channel(*ch);
    if (fatal_.load()) return;
  }
}

}  // namespace picopay::hub
