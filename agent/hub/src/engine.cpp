// picopay-hub engine, the applier: one batch of inbound messages in one write
// transaction. Each message is a pure step of the engine core (engine_core.hpp) on its
// channel; the step's Effects are applied here: writes to the ledger inside the
// transaction, replies released only after COMMIT, chain jobs and deposits posted after
// COMMIT, requests for other channels through route_request.
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

bool Hub::begin_write(std::vector<mqtt::Message>* batch, const std::vector<Address>* also) {
  std::string err;
  fenced_ = false;
  peers_.clear();  // other instances' channels are read again in each transaction
  if (!ok(ledger_->begin(), err)) {
    fail(err);
    return false;
  }
  // Several instances: every write transaction is fenced by the leases it writes under
  // (lease/hub_lease.cpp); a lease taken over meanwhile rolls it back, nothing released.
  if (lease_ && !lease_fence(batch, also)) {
    ledger_->rollback();
    fenced_ = true;
    return false;
  }
  return true;
}

bool Hub::process_batch(std::vector<mqtt::Message>& batch, std::vector<ChainResult>& facts) {
  const auto metrics_t0 = std::chrono::steady_clock::now();
  std::vector<Out> outs;
  batch_done_.clear();
  new_deposits_.clear();
  new_chain_jobs_.clear();
  tx_failed_ = false;
  txerr_.clear();
  // Several instances: the chain's answers for channels of partitions no longer held are
  // dropped (their parked updates went with the partition), the others are fenced.
  if (lease_)
    facts.erase(std::remove_if(facts.begin(), facts.end(), [this](const ChainResult& f) { return !lease_owns(f.user); }),
                facts.end());
  std::vector<Address> fact_users;
  for (const ChainResult& f : facts) fact_users.push_back(f.user);
  if (!begin_write(&batch, &fact_users)) return fenced_;  // fenced: skipped (devices re-send), not fatal
  precompute(batch);
  EngineEnv env = engine_env();
  Effects fx;
  std::string err;  // non-empty: a store error, the transaction rolls back
  std::vector<Chan*> touched;
  // One step of the engine core on `ch`, applied.
  auto step = [&](Chan* ch, const std::function<void(Chan&)>& run) {
    fx.clear();
    run(*ch);
    if (!apply_effects(*ch, fx, outs, err)) {
      if (err.empty()) err = ch->key + ": a ledger write failed";
      return false;
    }
    env.last_reserve_warn_ms = last_reserve_warn_ms_;  // the warning's throttle, for the next step
    if (ch->dirty) touched.push_back(ch);
    return true;
  };
  for (const ChainResult& f : facts) {
    Chan* ch = channel(f.user);
    if (!ch) {
      err = txerr_.empty() ? "cannot load channel " + mqtt::topic_address(f.user) : txerr_;
      break;
    }
    if (!step(ch, [&](Chan& c) { engine_replay_parked(c, f.facts, env, fx); })) break;
  }
  for (auto& m : batch) {
    if (!err.empty()) break;
    Address hub{}, user{};
    std::string leaf;
    if (!mqtt::parse_channel_topic(m.topic, hub, user, leaf) || hub != hub_) continue;
    Chan* ch = channel(user);
    if (!ch) {
      err = txerr_.empty() ? "cannot load channel " + mqtt::topic_address(user) : txerr_;
      break;
    }
    bool stepped = true;
    if (leaf == "update") stepped = step(ch, [&](Chan& c) { engine_update(c, m.payload, env, fx); });
    else if (leaf == "reply") stepped = step(ch, [&](Chan& c) { engine_reply(c, m.payload, env, fx); });
    else if (leaf == "sync") stepped = step(ch, [&](Chan& c) { engine_sync(c, env, fx); });
    else if (leaf == "collateral") stepped = step(ch, [&](Chan& c) { engine_collateral(c, m.payload, env, fx); });
    if (!stepped) break;
  }
  if (!err.empty()) {
    ledger_->rollback();
    fail("store: " + err);
    return false;
  }
  if (!ok(ledger_->commit(), err)) {
    ledger_->rollback();
    fail(err);
    return false;
  }
  // Committed: now the signatures may leave, and the chain worker may read the channels
  // and send the deposits.
  release_after_commit();
  publish_outs(outs);
  for (Chan* c : touched) {
    if (!c->dirty) continue;
    c->dirty = false;
    status_dirty_.insert(c);
  }
  flush_status(false);
  spec_.clear();
  spec_runs_.clear();
  evict();
  if (metrics_) metrics_->replies_published(outs.size());
  if (metrics_ && !batch.empty()) metrics_->batch_done(batch.size(), std::chrono::duration<double>(std::chrono::steady_clock::now() - metrics_t0).count(), chans_.size());
  return true;
}

void Hub::precompute(const std::vector<mqtt::Message>& batch) {
  spec_.clear();
  spec_runs_.clear();
  if (!pool_) return;
  // One run per channel: the Payment updates that extend its current state one by one,
  // in arrival order (anything else is left to the serial pass).
  std::map<Chan*, size_t> run_of;
  std::vector<std::pair<Chan*, std::vector<Bytes>>> payloads;
  size_t total = 0;
  for (const auto& m : batch) {
    Address hub{}, user{};
    std::string leaf;
    if (!mqtt::parse_channel_topic(m.topic, hub, user, leaf) || hub != hub_ || leaf != "update") continue;
    ChannelUpdate u{};
    if (decode_channel_update(m.payload.data(), m.payload.size(), u) != Status::Ok ||
        u.reason != UpdateReason::Payment)
      continue;
    Chan* ch = channel(user);
    if (ch == nullptr || ch->legacy_tx != 0) continue;
    auto it = run_of.find(ch);
    if (it == run_of.end()) {
      it = run_of.emplace(ch, spec_runs_.size()).first;
      ChannelRun r;
      r.start = ch->latest.state;
      spec_runs_.push_back(std::move(r));
      payloads.emplace_back(ch, std::vector<Bytes>{});
    }
    ChannelRun& r = spec_runs_[it->second];
    const uint64_t expect = r.start.txCountGlobal + r.jobs.size() + 1;
    if (u.txCountGlobal != expect) continue;
    PaymentJob j;
    j.update = u;
    r.jobs.push_back(j);
    payloads[it->second].second.push_back(m.payload);
    ++total;
  }
  if (total < 2) {  // nothing to gain: the serial pass does it
    spec_runs_.clear();
    return;
  }
  pool_->run(spec_runs_);
  for (size_t i = 0; i < spec_runs_.size(); ++i) {
    const ChannelRun& r = spec_runs_[i];
    for (size_t k = 0; k < r.jobs.size(); ++k) {
      if (r.jobs[k].status != Status::Ok) break;
      spec_[{payloads[i].first, r.jobs[k].update.txCountGlobal}] = {&r.jobs[k], payloads[i].second[k]};
    }
  }
}

const PaymentJob* Hub::precomputed(const Chan& ch, const ChannelUpdate& u, const Bytes& payload) const {
  if (u.reason != UpdateReason::Payment || ch.legacy_tx != 0) return nullptr;
  auto it = spec_.find({&ch, u.txCountGlobal});
  if (it == spec_.end() || it->second.second != payload) return nullptr;
  const PaymentJob* j = it->second.first;
  // Only a result computed from exactly the state the channel has now.
  return j->prev == ch.latest.state ? j : nullptr;
}

bool Hub::in_transaction(const std::function<void()>& body) {
  std::string err;
  tx_failed_ = false;
  txerr_.clear();
  new_deposits_.clear();
  new_chain_jobs_.clear();
  if (!begin_write()) return false;
  body();
  if (tx_failed_ || !ok(ledger_->commit(), err)) {
    ledger_->rollback();
    fail("store: " + (err.empty() ? txerr_ : err));
    return false;
  }
  release_after_commit();
  return true;
}


EngineEnv Hub::engine_env() {
  EngineEnv e;
  e.hub = hub_;
  e.contract = contract_;
  e.signer = &signer_;
  e.key = &key_;
  e.verbose = cfg_.verbose;
  e.dev_skip_chain_checks = cfg_.dev_skip_chain_checks;
  e.has_chain = chain_ != nullptr;
  e.rate = rate_;
  e.collateral_wei = collateral_;
  e.collateral_tokens = collateral_tokens_;
  e.collateral_max = collateral_max_;
  e.collateral_window_ms = cfg_.collateral_window_seconds * 1000;
  e.reserve_known = reserve_known_;
  e.reserve_wei = reserve_wei_;
  e.reserve_at_ms = reserve_at_ms_;
  e.reserve_warn = reserve_warn_;
  e.last_reserve_warn_ms = last_reserve_warn_ms_;
  e.rpc_url = cfg_.rpc_url;
  e.deposit_jobs = &deposit_jobs_;
  e.now_ms = now_ms();
  e.unix_now = unix_now();
  e.mark = [this](const Address& user) { return mark(user); };
  e.find_update = [this](const std::string& key, uint64_t tx, Bytes& req, Bytes& rep, bool& found, std::string& err) {
    // This batch's replies first (not yet visible to another connection, but in this
    // transaction), then the ledger.
    auto it = batch_done_.find(std::make_pair(key, tx));
    if (it != batch_done_.end()) {
      req = it->second.first;
      rep = it->second.second;
      found = true;
      return true;
    }
    return ok(ledger_->find_update(key, tx, req, rep, found), err);
  };
  e.peer = [this](const Address& user, std::string& err) {
    Chan* c = peer_view(user);
    if (!c) err = txerr_;
    return c;
  };
  e.precomputed = [this](const Chan& ch, const ChannelUpdate& u, const Bytes& payload) {
    return precomputed(ch, u, payload);
  };
  return e;
}

bool Hub::apply_effects(Chan& ch, Effects& fx, std::vector<Out>& outs, std::string& err) {
  for (const LogLine& l : fx.logs) logf(l.level, l.text);
  if (fx.failed()) {
    err = fx.read_error;
    return false;
  }
  for (LedgerWrite& w : fx.writes) {
    LedgerStatus s;
    if (auto* u = std::get_if<write::InsertUpdate>(&w)) {
      s = ledger_->insert_update(u->key, u->tx, u->request, u->reply, u->state);
      if (s.ok()) batch_done_[std::make_pair(u->key, u->tx)] = std::make_pair(std::move(u->request), std::move(u->reply));
    } else if (auto* c = std::get_if<write::SaveChannel>(&w)) {
      s = ledger_->save_channel(c->key, c->tx, c->state, c->threads);
    } else if (auto* h = std::get_if<write::InsertHistory>(&w)) {
      s = ledger_->insert_history(h->key, h->row);
    } else if (auto* d = std::get_if<write::SaveDeposit>(&w)) {
      s = ledger_->save_deposit(d->key, d->tx, d->state);
    } else if (auto* r = std::get_if<write::SaveRequests>(&w)) {
      s = ledger_->save_requests(r->key, r->last_request_id, r->rows);
      if (s.ok() && r->delete_legacy) s = ledger_->delete_legacy(r->key);
    }
    if (!ok(std::move(s), err)) return false;
  }
  for (Out& o : fx.replies) outs.push_back(std::move(o));
  for (ChainJob& j : fx.chain_jobs) new_chain_jobs_.push_back(std::move(j));
  for (DepositJob& j : fx.deposits) new_deposits_.push_back(std::move(j));
  if (metrics_) {
    for (const MetricEvent& m : fx.metrics) {
      if (m.kind == MetricEvent::Kind::NackSent) metrics_->nack_sent(m.status);
      else if (m.kind == MetricEvent::Kind::Refused) metrics_->update_refused(m.reason, m.status);
      else metrics_->update_countersigned(m.reason);
    }
  }
  if (fx.timer) timed_.insert(&ch);
  if (fx.reserve_wait) reserve_waiters_.insert(ch.key);
  if (fx.reserve_warned) last_reserve_warn_ms_ = now_ms();
  for (const RoutedRequest& q : fx.requests_for_other_channels) {
    route_request(q.to, q.update, outs);
    if (tx_failed_) {
      err = txerr_.empty() ? "cannot route a request to " + mqtt::topic_address(q.to) : txerr_;
      return false;
    }
  }
  return true;
}

void Hub::route_request(const Address& to, const ChannelUpdate& p, std::vector<Out>& outs) {
  if (!lease_ || lease_fenced(to)) {
    // One instance, or a partition this transaction writes under its lease: queued here.
    Chan* c = channel(to);
    if (!c) {
      tx_failed_ = true;
      return;
    }
    add_request(*c, p);
    if (!tx_failed_) pump(*c, outs);
    return;
  }
  // Several instances, a channel of a partition this transaction does not hold under its
  // fence (another instance's, or one of this instance's the batch did not name): handed
  // over through the ledger in this transaction (never without the countersignature that
  // made it); the partition's holder queues it (lease/hub_lease.cpp lease_take_forwarded).
  Bytes w;
  std::string err;
  if (!update_wire(p, w)) {
    txerr_ = mqtt::topic_address(to) + ": cannot encode a forwarded request";
    tx_failed_ = true;
    return;
  }
  if (!ok(ledger_->forward_request(mqtt::topic_address(to), w), err)) {
    txerr_ = err;
    tx_failed_ = true;
    return;
  }
  if (cfg_.verbose)
    logf("info", mqtt::topic_address(to) + ": " + update_reason_name(p.reason) +
                     " request forwarded to the holder of partition " + std::to_string(lease::partition_of(to)));
}

void Hub::release_after_commit() {
  if (chain_)
    for (ChainJob& j : new_chain_jobs_) chain_->post(std::move(j));
  new_chain_jobs_.clear();
  for (const DepositJob& j : new_deposits_) post_deposit(j);
  new_deposits_.clear();
}

// Outside the engine's steps: one channel's request queue, applied at once.
void Hub::add_request(Chan& ch, const ChannelUpdate& u, bool front) {
  Effects fx;
  engine_add_request(ch, u, front, fx);
  std::vector<Out> none;
  if (!apply_effects(ch, fx, none, txerr_)) tx_failed_ = true;
}

void Hub::pump(Chan& ch, std::vector<Out>& outs) {
  Effects fx;
  engine_pump(ch, engine_env(), fx);
  if (!apply_effects(ch, fx, outs, txerr_)) tx_failed_ = true;
}

void Hub::persist_requests(Chan& ch) {
  Effects fx;
  engine_save_requests(ch, fx);
  std::vector<Out> none;
  if (!apply_effects(ch, fx, none, txerr_)) tx_failed_ = true;
}

}  // namespace picopay::hub
