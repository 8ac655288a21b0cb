// picopay-hub engine: one batch of inbound messages in one write transaction (the
// reorder buffer, the user's updates validated with the core's channel_accept and the
// signing policy, countersigned and stored), replies released only after COMMIT.
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
  tx_failed_ = false;
  std::string err;
  // Several instances: the chain's answers for channels of partitions no longer held are
  // dropped (their parked updates went with the partition), the others are fenced.
  if (lease_)
    facts.erase(std::remove_if(facts.begin(), facts.end(), [this](const ChainResult& f) { return !lease_owns(f.user); }),
                facts.end());
  std::vector<Address> fact_users;
  for (const ChainResult& f : facts) fact_users.push_back(f.user);
  if (!begin_write(&batch, &fact_users)) return fenced_;  // fenced: skipped (devices re-send), not fatal
  precompute(batch);
  std::vector<Chan*> touched;
  for (const ChainResult& f : facts) {
    Chan* ch = channel(f.user);
    if (!ch) {
      tx_failed_ = true;
      break;
    }
    replay_parked(*ch, f.facts, outs);
    if (tx_failed_) break;
    if (ch->dirty) touched.push_back(ch);
  }
  for (auto& m : batch) {
    if (tx_failed_) break;
    Address hub{}, user{};
    std::string leaf;
    if (!mqtt::parse_channel_topic(m.topic, hub, user, leaf) || hub != hub_) continue;
    Chan* ch = channel(user);
    if (!ch) {
      tx_failed_ = true;
      break;
    }
    if (leaf == "update") handle_update(*ch, m.payload, outs);
    else if (leaf == "reply") handle_reply(*ch, m.payload, outs);
    else if (leaf == "sync") handle_sync(*ch, outs);
    else if (leaf == "collateral") handle_collateral(*ch, m.payload, outs);
    if (tx_failed_) break;
    if (ch->dirty) touched.push_back(ch);
  }
  if (tx_failed_) {
    ledger_->rollback();
    fail("store: " + txerr_);
    return false;
  }
  if (!ok(ledger_->commit(), err)) {
    ledger_->rollback();
    fail(err);
    return false;
  }
  // Committed: now the signatures may leave, and the chain worker may send the deposits.
  for (const DepositJob& j : new_deposits_) post_deposit(j);
  new_deposits_.clear();
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

void Hub::nack(Chan& ch, uint64_t tx, Status s, std::vector<Out>& outs) {
  Reply r = reply_make(ReplyKind::Nack);
  r.txCountGlobal = tx <= kMaxCounter ? tx : 0;
  r.status = s == Status::Ok ? Status::BadArgs : s;
  r.state = ch.latest;
  Out o;
  o.topic = mqtt::topic_reply(ch.user);
  o.payload = reply_bytes(r);
  o.corr = r.txCountGlobal;
  o.has_corr = true;
  if (metrics_) metrics_->nack_sent(r.status);
  if (cfg_.verbose)
    logf("info", ch.key + ": Nack tx " + std::to_string(tx) + " " + status_name(r.status));
  if (!o.payload.empty()) outs.push_back(std::move(o));
}

void Hub::handle_sync(Chan& ch, std::vector<Out>& outs) {
  Reply r = reply_make(ReplyKind::Sync);
  r.txCountGlobal = ch.latest.state.txCountGlobal;
  r.state = ch.latest;
  Out o;
  o.topic = mqtt::topic_reply(ch.user);
  o.payload = reply_bytes(r);
  o.corr = r.txCountGlobal;
  o.has_corr = true;
  outs.push_back(std::move(o));
  // The user (re)connected: the outstanding request again (after the Sync, so the
  // session is synced when it arrives).
  Out q;
  if (ch.outstanding() && request_out(ch, q)) outs.push_back(std::move(q));
}

void Hub::handle_update(Chan& ch, const Bytes& payload, std::vector<Out>& outs) {
  ChannelUpdate u{};
  Status s = decode_channel_update(payload.data(), payload.size(), u);
  if (s != Status::Ok) {
    nack(ch, 0, s, outs);
    return;
  }
  const uint64_t latest = ch.latest.state.txCountGlobal;
  if (u.txCountGlobal <= latest) {
    // Duplicate or replay: the same bytes get the stored answer again; anything else is
    // a conflict and is refused with our latest state.
    auto key = std::make_pair(ch.key, u.txCountGlobal);
    auto it = batch_done_.find(key);
    Bytes req, rep;
    bool found = false;
    if (it != batch_done_.end()) {
      req = it->second.first;
      rep = it->second.second;
      found = true;
    } else {
      std::string err;
      if (!ok(ledger_->find_update(ch.key, u.txCountGlobal, req, rep, found), err)) {
        txerr_ = err;
        tx_failed_ = true;
        return;
      }
    }
    if (found && req == payload) {
      Out o;
      o.topic = mqtt::topic_reply(ch.user);
      o.payload = rep;
      o.corr = u.txCountGlobal;
      o.has_corr = true;
      outs.push_back(std::move(o));
    } else {
      nack(ch, u.txCountGlobal, Status::BadTxCount, outs);
    }
    return;
  }
  if (ch.parked && !ch.parked->replaying) {
    // An update of this channel waits for the chain: this one waits behind it (a re-sent
    // copy is dropped: no answer until the chain's, and never a second signature).
    park(ch, payload);
    return;
  }
  if (u.txCountGlobal == latest + 2 && channel_is_skip(ch.latest.state, u)) {
    // The user's Invalidation of its half-signed latest + 1 (a skip): it follows the
    // latest state directly.
    apply_update(ch, u, payload, outs);
    return;
  }
  if (u.txCountGlobal > latest + 1) {
    // Early (reordered) delivery: keep it unsigned in memory until the gap fills.
    if (u.txCountGlobal - latest <= kReorderWindow) {
      size_t total = 0;
      for (auto& f : ch.future) total += f.second.size();
      if (total < kFutureMax) {
        auto& v = ch.future[u.txCountGlobal];
        bool dup = false;
        for (auto& b : v) dup = dup || b == payload;
        if (!dup) v.push_back(payload);
        return;
      }
    }
    nack(ch, u.txCountGlobal, Status::BadTxCount, outs);
    return;
  }
  apply_update(ch, u, payload, outs);
  if (tx_failed_) return;
  // Drain the reorder buffer.
  while (!ch.future.empty()) {
    auto it = ch.future.begin();
    const uint64_t next = ch.latest.state.txCountGlobal + 1;
    if (it->first < next) {
      for (auto& b : it->second) {
        ChannelUpdate old{};
        if (decode_channel_update(b.data(), b.size(), old) == Status::Ok)
          nack(ch, old.txCountGlobal, Status::BadTxCount, outs);
      }
      ch.future.erase(it);
      continue;
    }
    if (it->first != next) break;
    auto cands = std::move(it->second);
    ch.future.erase(it);
    bool applied = false;
    for (auto& b : cands) {
      ChannelUpdate fu{};
      if (decode_channel_update(b.data(), b.size(), fu) != Status::Ok) continue;
      if (!applied) {
        applied = apply_update(ch, fu, b, outs);
        if (tx_failed_) return;
      } else {
        nack(ch, fu.txCountGlobal, Status::BadTxCount, outs);
      }
    }
  }
}

bool Hub::apply_update(Chan& ch, const ChannelUpdate& u, const Bytes& payload, std::vector<Out>& outs) {
  if (ch.parked && !ch.parked->replaying) {
    park(ch, payload);  // behind the update that waits for the chain
    return false;
  }
  ChannelContext ctx{hub_};
  ThreadSet ts = ch.set();
  ChannelState next{};
  Hash32 h{};
  if (Status cs = chain_refusal(ch, u); cs != Status::Ok) {
    logf("warn", ch.key + ": refused the user's " + std::string(update_reason_name(u.reason) ? update_reason_name(u.reason) : "?") +
                     " tx " + std::to_string(u.txCountGlobal) + ": " + status_name(cs) + " (" +
                     ChainFollow::describe(*mark(ch.user)) + ")");
    nack(ch, u.txCountGlobal, cs, outs);
    // Emptied on chain: the user's proposal at latest + 1 will never be countersigned
    // (only EmptyChannel is); its Invalidation lets the user's session give it up so the
    // requested EmptyChannel can follow (chain_empty.cpp).
    const ChainMark* m = mark(ch.user);
    if (m->emptied && !m->dispute && u.txCountGlobal == ch.latest.state.txCountGlobal + 1 &&
        channel_accept(ctx, signer_, Party::Hub, ch.latest.state, ts, u, next, h) == Status::Ok)
      request_skip(ch, outs);
    return false;
  }
  const PaymentJob* pre = precomputed(ch, u, payload);
  bool want_skip = false;
  Status s = pre != nullptr ? Status::Ok : channel_accept(ctx, signer_, Party::Hub, ch.latest.state, ts, u, next, h);
  if (pre != nullptr) {
    next = pre->next;
    h = pre->hash;
  } else if (s == Status::Ok) {
    s = check_policy(ch, u);
    if (tx_failed_) return false;
    if (park_) {
      // The chain must answer first (chain worker): no reply now.
      park_ = false;
      park(ch, payload);
      return false;
    }
    // The user signed it (channel_accept checked its signature) and the hub will never
    // countersign it: after the Nack, ask the user to invalidate it, so its session can
    // go on.
    want_skip = s != Status::Ok && u.txCountGlobal == ch.latest.state.txCountGlobal + 1 && refused_for_good(s);
  }
  // Once the Invalidation of latest + 1 is requested, nothing is countersigned there (the
  // user's session may already have given its proposal up for the Invalidation).
  if (s == Status::Ok && !channel_is_skip(ch.latest.state, u) && skip_requested(ch)) s = Status::NotRequested;
  if (s != Status::Ok) {
    if (u.reason != UpdateReason::Payment || cfg_.verbose)
      logf("warn", ch.key + ": refused the user's " + std::string(update_reason_name(u.reason) ? update_reason_name(u.reason) : "?") +
                       " tx " + std::to_string(u.txCountGlobal) + ": " + status_name(s));
    if (metrics_) metrics_->update_refused(u.reason, s);
    nack(ch, u.txCountGlobal, s, outs);
    if (want_skip) request_skip(ch, outs);
    return false;
  }
  SignedChannelState signed_state{};
  signed_state.state = next;
  signed_state.hasSigUser = true;
  signed_state.sigUser = u.sig;
  signed_state.hasSigHub = true;
  if (pre != nullptr) {
    signed_state.sigHub = pre->sigHub;
  } else if (signer_.sign_eth(key_, h, signed_state.sigHub) != Status::Ok) {
    nack(ch, u.txCountGlobal, Status::CryptoUnavailable, outs);
    return false;
  }
  Status ts_s = thread_set_apply(ts, u);
  if (ts_s != Status::Ok) {
    nack(ch, u.txCountGlobal, ts_s, outs);
    return false;
  }
  ch.thread_count = ts.count;
  ch.compact();
  const ChannelState prev_state = ch.latest.state;
  ch.latest = signed_state;
  if (ch.legacy_tx != 0 && ch.latest.state.txCountGlobal >= ch.legacy_tx) {
    ch.legacy_tx = 0;
    ch.legacy_update.reset();
    ch.legacy_unsaved = true;  // the legacy row goes with the next write of the requests
  }
  Reply r = reply_make(ReplyKind::Ack);
  r.txCountGlobal = u.txCountGlobal;
  r.sig = signed_state.sigHub;
  Bytes rep = reply_bytes(r);
  std::string err;
  const Bytes st_wire = encode_state(signed_state);
  if (!ok(ledger_->insert_update(ch.key, u.txCountGlobal, payload, rep, st_wire), err)) {
    txerr_ = err;
    tx_failed_ = true;
    return false;
  }
  persist_channel(ch);
  if (tx_failed_) return false;
  if (!ok(ledger_->insert_history(ch.key, history_row(history_entry(prev_state, next, u))), err)) {
    txerr_ = err;
    tx_failed_ = true;
    return false;
  }
  batch_done_[std::make_pair(ch.key, u.txCountGlobal)] = std::make_pair(payload, rep);
  Out o;
  o.topic = mqtt::topic_reply(ch.user);
  o.payload = rep;
  o.corr = u.txCountGlobal;
  o.has_corr = true;
  outs.push_back(std::move(o));
  if (metrics_) metrics_->update_countersigned(u.reason);
  if (cfg_.verbose)
    logf("info", ch.key + ": " + update_reason_name(u.reason) + " tx " + std::to_string(u.txCountGlobal) + " signed");
  // A request the user fulfilled is done (the outstanding one or one still queued).
  bool changed = false;
  for (size_t i = 0; i < ch.requests.size(); ++i) {
    if (!policy_update_matches(ch.requests[i].update, u)) continue;
    if (i == 0 && ch.requests[0].id != 0) ch.resend_at_ms = 0;
    ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
    changed = true;
    break;
  }
  // The channel records the empty channel now: any other EmptyChannel request is moot
  // (one asked again, with another transaction hash, must not empty a new deposit).
  for (size_t i = 0; u.reason == UpdateReason::EmptyChannel && i < ch.requests.size();) {
    if (ch.requests[i].update.reason != UpdateReason::EmptyChannel) {
      ++i;
      continue;
    }
    if (i == 0 && ch.requests[0].id != 0) ch.resend_at_ms = 0;
    ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
    changed = true;
  }
  // A collateral deposit the hub requested, now countersigned: a job for the chain,
  // stored in the same transaction as the countersignature, so a crash before
  // hubAuthorizedUpdate (or before the ConfirmPending) does not lose it.
  // Likewise a hub-only withdrawal (collateral the hub takes back, docs/flows.md): the
  // hub executes the user-signed state with hubAuthorizedUpdate.
  if ((u.reason == UpdateReason::ProposePendingDeposit &&
       (!u.deposit.depositWeiHub.is_zero() || !u.deposit.depositTokenHub.is_zero())) ||
      hub_withdrawal(u)) {
    if (!ok(ledger_->save_deposit(ch.key, signed_state.state.txCountGlobal, st_wire), err)) {
      txerr_ = err;
      tx_failed_ = true;
      return false;
    }
    DepositJob j;
    j.user = ch.user;
    j.state = signed_state;
    new_deposits_.push_back(j);  // to the chain worker after COMMIT
  }
  if (changed) persist_requests(ch);
  if (tx_failed_) return false;
  note_activity(ch, u);
  after_accept(ch, u, outs);
  if (tx_failed_) return false;
  pump(ch, outs);
  return !tx_failed_;
}

void Hub::persist_channel(Chan& ch) {
  std::string err;
  if (!ok(ledger_->save_channel(ch.key, ch.latest.state.txCountGlobal, encode_state(ch.latest), encode_threads(ch)), err)) {
    txerr_ = err;
    tx_failed_ = true;
  }
  ch.dirty = true;
}

void Hub::after_accept(Chan& ch, const ChannelUpdate& u, std::vector<Out>& outs) {
  const ThreadState& t = u.thread.thread.state;
  if (u.reason == UpdateReason::OpenThread && t.sender == ch.user) {
    // The payer opened a thread: the hub asks the payee to open its mirror (hub funds
    // locked in the payee's channel).
    ChannelUpdate p = channel_update_make(UpdateReason::OpenThread);
    p.thread = u.thread;
    route_request(t.receiver, p, outs);
  } else if (u.reason == UpdateReason::CloseThread && t.receiver == ch.user) {
    // The payee closed a thread: the hub asks the payer to close it with the same final
    // state (the hub collects what it paid the payee).
    ChannelUpdate p = channel_update_make(UpdateReason::CloseThread);
    p.thread = u.thread;
    route_request(t.sender, p, outs);
  }
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

void Hub::handle_reply(Chan& ch, const Bytes& payload, std::vector<Out>& outs) {
  Reply r = reply_make(ReplyKind::Ack);
  const Status s = decode_reply(payload.data(), payload.size(), r);
  if (s != Status::Ok || r.kind != ReplyKind::RequestNack) {
    // The hub proposes nothing, so it takes no Ack or Nack: a replayed answer to a
    // hub-signed proposal of an earlier version is ignored.
    if (cfg_.verbose) logf("info", ch.key + ": ignored a reply on the hub's reply topic");
    return;
  }
  if (!ch.outstanding() || r.txCountGlobal != ch.requests.front().id) return;  // stale or forged
  ++ch.nacks_total;
  ch.last_nack = r.status;
  ch.dirty = true;
  Request q = ch.requests.front();
  ch.requests.erase(ch.requests.begin());
  ch.resend_at_ms = 0;
  if (channel_is_skip(ch.latest.state, q.update)) {
    // The user holds no such proposal (or will not give it up): nothing to invalidate.
    logf("warn", ch.key + ": user refused the Invalidation of tx " +
                     std::to_string(q.update.invalidation.lastInvalidTxCount) + ": " + status_name(r.status) +
                     "; dropped");
    persist_requests(ch);
    if (!tx_failed_) pump(ch, outs);
    return;
  }
  // A RequestNack carries no signature (anyone who can publish here could send one), so
  // it never drops a request (the user may in fact have proposed it: the hub keeps
  // countersigning it). The request goes to the back with a backoff (1 s doubling up to
  // 60 s, or at once when the channel moves on) and gets a new id when it is sent again,
  // so one refused request never blocks the others.
  q.id = 0;
  ++q.nacks;
  q.nacked_at_tx = ch.latest.state.txCountGlobal;
  const uint64_t delay = std::min<uint64_t>(kNackBackoffMaxMs, 1000ull << std::min(q.nacks - 1, 6u));
  q.not_before_ms = now_ms() + delay;
  logf("warn", ch.key + ": user refused request " + std::to_string(r.txCountGlobal) + " (" +
                   update_reason_name(q.update.reason) + "): " + status_name(r.status) + "; again in " +
                   std::to_string(delay / 1000) + " s or when the channel moves on");
  ch.requests.push_back(q);
  persist_requests(ch);
  timed_.insert(&ch);
  if (!tx_failed_) pump(ch, outs);
}

bool Hub::in_transaction(const std::function<void()>& body) {
  std::string err;
  tx_failed_ = false;
  new_deposits_.clear();
  if (!begin_write()) return false;
  body();
  if (tx_failed_ || !ok(ledger_->commit(), err)) {
    ledger_->rollback();
    fail("store: " + (err.empty() ? txerr_ : err));
    return false;
  }
  for (const DepositJob& j : new_deposits_) post_deposit(j);
  new_deposits_.clear();
  return true;
}

void Hub::park(Chan& ch, const Bytes& payload) {
  const bool ask = !ch.parked || ch.parked->replaying;
  if (!ch.parked) ch.parked = std::make_unique<Chan::Parked>();
  Chan::Parked& p = *ch.parked;
  if (ask) {
    p.replaying = false;
    p.answered = false;
    ChainJob j;
    j.kind = ChainJob::Kind::ReadChannel;
    j.user = ch.user;
    chain_->post(std::move(j));
    if (cfg_.verbose) logf("info", ch.key + ": an update waits for the chain's answer");
  }
  for (const auto& b : p.updates)
    if (b == payload) return;  // a re-sent copy
  if (p.updates.size() >= kFutureMax) return;  // the device re-sends it later
  p.updates.push_back(payload);
}

void Hub::replay_parked(Chan& ch, const ChainFacts& f, std::vector<Out>& outs) {
  if (!ch.parked) return;  // nothing waits (answered already)
  std::vector<Bytes> updates = std::move(ch.parked->updates);
  ch.parked->updates.clear();
  ch.parked->replaying = true;
  ch.parked->answered = true;
  ch.parked->facts = f;
  for (size_t i = 0; i < updates.size(); ++i) {
    if (ch.parked && !ch.parked->replaying) {
      // Parked again (a second update asserting chain facts): the rest waits behind it.
      ch.parked->updates.push_back(updates[i]);
      continue;
    }
    handle_update(ch, updates[i], outs);
    if (tx_failed_) return;
  }
  if (ch.parked && ch.parked->replaying) ch.parked.reset();
}

}  // namespace picopay::hub
