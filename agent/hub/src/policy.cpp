// picopay-hub policy: the hub-side checks of a user proposal (policy_hub_countersigns with
// the channel's requests, the rate, inventory and chain facts; the cross-channel rules of
// threads) and the collateral a payee channel needs for its thread mirrors.
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

ChainFacts Hub::chain_facts(const Chan& ch, UpdateReason reason, bool& has_access) {
  ChainFacts f{};
  f.known = false;
  has_access = chain_ != nullptr;
  const bool asserts = reason == UpdateReason::ConfirmPending || reason == UpdateReason::Invalidation ||
                       reason == UpdateReason::EmptyChannel;
  if (!asserts) return f;
  if (!chain_) {
    if (cfg_.dev_skip_chain_checks && reason == UpdateReason::ConfirmPending) {
      // DEV: as if the chain showed the pending operations executed.
      has_access = true;
      f.known = true;
      f.txCountGlobal = ch.latest.state.txCountGlobal;
      f.txCountChain = ch.latest.state.txCountChain;
      f.status = ChainChannelStatus::Open;
      f.emptied = false;
      f.blockTime = unix_now();
    }
    return f;
  }
  // The chain worker's read of the channel, made after this update arrived (each answer
  // serves one update); without one the update waits for it (park_).
  if (ch.parked && ch.parked->replaying && ch.parked->answered) {
    ch.parked->answered = false;
    return ch.parked->facts;
  }
  park_ = true;
  return f;
}

Status Hub::check_policy(Chan& ch, const ChannelUpdate& u) {
  const ChannelState& prev = ch.latest.state;
  if (ch.legacy_tx != 0 && u.txCountGlobal == ch.legacy_tx &&
      (ch.requests.empty() || !ch.legacy_update || !policy_update_matches(*ch.legacy_update, u)))
    return Status::NotRequested;  // only the update of the earlier hub-signed proposal here, as signed
  std::vector<ChannelUpdate> reqs;
  reqs.reserve(ch.requests.size());
  for (const auto& r : ch.requests) reqs.push_back(r.update);
  HubPolicyInput in{};
  in.requests = reqs.data();
  in.requestCount = reqs.size();
  in.rate = rate_;
  in.now = unix_now();
  // Inventory: what the hub holds in this channel beyond what its thread mirrors need.
  U256 mtok = U256::zero();
  const U256 mwei = mirrored_wei(ch, &mtok);
  if (u256_sub(prev.balanceWeiHub, mwei, in.inventoryWei) != Status::Ok) in.inventoryWei = U256::zero();
  if (u256_sub(prev.balanceTokenHub, mtok, in.inventoryToken) != Status::Ok) in.inventoryToken = U256::zero();
  in.chain = chain_facts(ch, u.reason, in.hasChainAccess);
  if (park_) return Status::Ok;  // the caller parks the update
  if (!in.chain.known && mark(ch.user)) in.chain = ChainFollow::facts(*mark(ch.user));
  in.limits = policy_limits_default();
  in.limits.maxSpreadBps = 0;  // only at the rate it publishes (rate.cpp; docs/tokens.md)
  Status s = policy_hub_countersigns(in, prev, u);
  if (s != Status::Ok) return s;

  const ThreadState& t = u.thread.thread.state;
  if (u.reason == UpdateReason::OpenThread && t.sender == ch.user) {
    // Payer channel: the hub must be able to lock the same amount in the receiver's
    // channel. Wei it lacks is deposited first (chain connection) and the mirror waits in
    // the stored requests; without a chain, or for tokens (the hub deposits no tokens),
    // the payer's OpenThread is refused before the hub countersigns it, so the payer's
    // funds are never locked for a thread that cannot be mirrored.
    if (t.receiver == hub_ || t.receiver.is_zero()) return Status::WrongParty;  // nobody to mirror it to
    Chan* payee = channel(t.receiver);
    if (!payee) {
      tx_failed_ = true;
      return Status::IoError;
    }
    if (payee == &ch) return Status::Underflow;
    U256 tok = U256::zero(), wei = mirrored_wei(*payee, &tok), need_wei{}, need_tok{};
    if (u256_add(wei, t.balanceWeiSender, need_wei) != Status::Ok ||
        u256_add(tok, t.balanceTokenSender, need_tok) != Status::Ok)
      return Status::Overflow;
    if (!chain_ && (need_tok > payee->latest.state.balanceTokenHub || need_wei > payee->latest.state.balanceWeiHub)) {
      logf("warn", ch.key + ": OpenThread refused: payee " + payee->key + " lacks hub collateral (" +
                       json::amount_text(need_wei) + " wei and " + json::amount_text(need_tok) + " tokens needed, " +
                       json::amount_text(payee->latest.state.balanceWeiHub) + " wei and " +
                       json::amount_text(payee->latest.state.balanceTokenHub) + " tokens held, no --rpc-url to deposit)");
      return Status::Underflow;
    }
  }
  if (u.reason == UpdateReason::CloseThread && t.receiver == ch.user) {
    // Payee channel: the payer's channel must still hold the thread, or the hub would pay
    // the payee without being able to collect from the payer.
    Chan* payer = channel(t.sender);
    if (!payer) {
      tx_failed_ = true;
      return Status::IoError;
    }
    if (payer == &ch) return Status::Unauthorized;
    const long found = thread_set_find(payer->set(), t.sender, t.receiver, t.threadId);
    payer->compact();
    if (found < 0) return Status::ThreadNotFound;
  }
  return Status::Ok;
}

U256 Hub::mirrored_wei(const Chan& ch, U256* tokens) const {
  U256 wei = U256::zero(), tok = U256::zero();
  for (const auto& r : ch.requests) {
    const ChannelUpdate& q = r.update;
    if (q.reason != UpdateReason::OpenThread || q.thread.thread.state.receiver != ch.user) continue;
    U256 a{};
    if (u256_add(wei, q.thread.thread.state.balanceWeiSender, a) == Status::Ok) wei = a;
    if (u256_add(tok, q.thread.thread.state.balanceTokenSender, a) == Status::Ok) tok = a;
  }
  if (tokens) *tokens = tok;
  return wei;
}

void Hub::ensure_collateral(Chan& payee, std::vector<Out>& outs) {
  if (!chain_) return;
  // Wei and tokens alike (docs/tokens.md): what the mirrored threads need against what the
  // hub holds in the channel, deposited in multiples of the configured chunk.
  U256 need_tok = U256::zero();
  const U256 need_wei = mirrored_wei(payee, &need_tok);
  U256 have_wei = payee.latest.state.balanceWeiHub, have_tok = payee.latest.state.balanceTokenHub, t{};
  const ChannelState& ls = payee.latest.state;
  bool in_flight = !ls.pendingDepositWeiHub.is_zero() || !ls.pendingDepositTokenHub.is_zero();
  if (u256_add(have_wei, ls.pendingDepositWeiHub, t) == Status::Ok) have_wei = t;
  if (u256_add(have_tok, ls.pendingDepositTokenHub, t) == Status::Ok) have_tok = t;
  for (const auto& r : payee.requests) {
    const ChannelUpdate& q = r.update;
    if (q.reason == UpdateReason::ConfirmPending) in_flight = true;
    if (q.reason != UpdateReason::ProposePendingDeposit) continue;
    in_flight = true;
    if (u256_add(have_wei, q.deposit.depositWeiHub, t) == Status::Ok) have_wei = t;
    if (u256_add(have_tok, q.deposit.depositTokenHub, t) == Status::Ok) have_tok = t;
  }
  for (const auto& j : deposit_jobs_)
    if (j.user == payee.user) in_flight = true;
  if ((need_wei <= have_wei && need_tok <= have_tok) || in_flight) return;  // the next round starts when it lands
  auto amount_for = [](const U256& need, const U256& have, const U256& chunk) {
    U256 shortfall{}, amount{}, x{};
    if (need <= have || u256_sub(need, have, shortfall) != Status::Ok) return U256::zero();
    amount = chunk.is_zero() ? shortfall : chunk;
    for (int i = 0; i < 4096 && amount < shortfall; ++i)
      if (u256_add(amount, chunk, x) == Status::Ok) amount = x;
    return amount < shortfall ? shortfall : amount;
  };
  ChannelUpdate p = channel_update_make(UpdateReason::ProposePendingDeposit);
  p.deposit.depositWeiHub = amount_for(need_wei, have_wei, collateral_);
  p.deposit.depositTokenHub = amount_for(need_tok, have_tok, collateral_tokens_);
  // The reserve on chain is checked before anything is promised (logged with the command
  // that funds it when short).
  if (!p.deposit.depositWeiHub.is_zero() && !reserve_allows(p.deposit.depositWeiHub, payee.key, &payee)) return;
  logf("info", payee.key + ": requesting a deposit of " + json::amount_text(p.deposit.depositWeiHub) + " wei and " +
                   json::amount_text(p.deposit.depositTokenHub) + " token base units of hub collateral for threads to mirror (" +
                   json::amount_text(need_wei) + " wei, " + json::amount_text(need_tok) + " tokens; held " +
                   json::amount_text(have_wei) + " wei, " + json::amount_text(have_tok) + " tokens)");
  p.deposit.timeout = unix_now() + kDepositTimeoutSeconds;  // set again when it is sent
  add_request(payee, p, true);
  (void)outs;  // sent by the caller's pump
}

Status Hub::chain_refusal(const Chan& ch, const ChannelUpdate& u) const {
  const ChainMark* m = mark(ch.user);
  if (!m) return Status::Ok;
  // An update asserting a chain fact is checked against the chain read at once
  // (check_policy), not against the mark of the last round: a ConfirmPending of the new
  // deposit that reopens an emptied channel is not refused for a mark a second old.
  if (chain_ && (u.reason == UpdateReason::ConfirmPending || u.reason == UpdateReason::Invalidation ||
              u.reason == UpdateReason::EmptyChannel))
    return Status::Ok;
  return policy_check_chain_status(ChainFollow::facts(*m), ch.latest.state, u.reason);
}

}  // namespace picopay::hub
