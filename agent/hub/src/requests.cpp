// picopay-hub requests: what the hub wants changed in a channel, asked for with a
// HubRequest (docs/mqtt-protocol.md): the stored queue, sending, re-sending, RequestNack
// backoff, recovery at start.
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

void Hub::add_request(Chan& ch, const ChannelUpdate& u0, bool front) {
  Request r;
  r.update = u0;
  r.update.txCountGlobal = 0;
  if (front) {
    auto pos = ch.requests.begin();
    if (ch.outstanding()) ++pos;
    ch.requests.insert(pos, r);
  } else {
    ch.requests.push_back(r);
  }
  persist_requests(ch);  // same transaction as the update that made it necessary
}

Status Hub::request_applies(Chan& ch, const ChannelUpdate& u0) {
  ChannelUpdate u = u0;
  u.txCountGlobal = ch.latest.state.txCountGlobal + (channel_is_skip(ch.latest.state, u0) ? 2 : 1);
  ChannelContext ctx{hub_};
  ChannelState next{};
  const Status s = channel_next_state(ctx, ch.latest.state, ch.set(), u, next);
  ch.compact();
  return s;
}

void Hub::pump(Chan& ch, std::vector<Out>& outs) {
  bool changed = false;
  if (ch.outstanding()) {
    // Still wanted? A request that can no longer apply to the latest state (e.g. the user
    // confirmed the deposit itself) is dropped: the user's session proposes on the same
    // latest state, so no proposal of it can be in flight.
    const Status s = request_applies(ch, ch.requests.front().update);
    if (s == Status::Ok || waits(ch.requests.front().update, s)) return;
    logf("warn", ch.key + ": request " + std::to_string(ch.requests.front().id) + " (" +
                     update_reason_name(ch.requests.front().update.reason) + ") no longer applies (" + status_name(s) +
                     "): dropped");
    ch.requests.erase(ch.requests.begin());
    ch.resend_at_ms = 0;
    changed = true;
  }
  // The first request that applies now goes out; an OpenThread waiting for collateral (or
  // anything waiting for a pending operation) stays.
  bool waiting_thread = false;
  const uint64_t now = now_ms();
  for (size_t i = 0; i < ch.requests.size();) {
    const ChannelUpdate q = ch.requests[i].update;
    if (ch.requests[i].not_before_ms > now && ch.requests[i].nacked_at_tx == ch.latest.state.txCountGlobal) {
      timed_.insert(&ch);  // refused at this state: again after its backoff (request_timers)
      ++i;
      continue;
    }
    const Status s = request_applies(ch, q);
    if (s == Status::Ok) {
      Request r = ch.requests[i];
      ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
      // A fresh timeout, except for the earlier hub-signed proposal while its txCountGlobal
      // is still ahead: the hub's signature on that state is out, so exactly that state
      // (its timeout included) is the only one it may sign there.
      const bool legacy =
          ch.legacy_tx != 0 && ch.legacy_update && policy_update_matches(r.update, *ch.legacy_update);
      if (!legacy && r.update.reason == UpdateReason::ProposePendingDeposit)
        r.update.deposit.timeout = unix_now() + kDepositTimeoutSeconds;
      if (!legacy && r.update.reason == UpdateReason::ProposePendingWithdrawal)
        r.update.withdrawal.timeout = unix_now() + kDepositTimeoutSeconds;
      r.id = ++ch.last_request_id;
      ch.requests.insert(ch.requests.begin(), r);
      persist_requests(ch);  // the id is stored before the request leaves (after COMMIT)
      if (tx_failed_) return;
      Out o;
      if (request_out(ch, o)) outs.push_back(std::move(o));
      schedule_resend(ch, kResendMs);
      if (cfg_.verbose)
        logf("info", ch.key + ": request " + std::to_string(r.id) + " " + update_reason_name(r.update.reason));
      return;
    }
    if (waits(q, s)) {
      waiting_thread = waiting_thread || q.reason == UpdateReason::OpenThread;
      ++i;
      continue;
    }
    logf("ERROR", ch.key + ": requested " + update_reason_name(q.reason) + " can never apply (" + status_name(s) +
                      "): dropped");
    ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
    changed = true;
  }
  if (changed) persist_requests(ch);
  if (waiting_thread && !tx_failed_) {
    const size_t before = ch.requests.size();
    ensure_collateral(ch, outs);
    if (ch.requests.size() != before && !tx_failed_) pump(ch, outs);
  }
}

void Hub::persist_requests(Chan& ch) {
  std::vector<Ledger::RequestRow> rows;
  rows.reserve(ch.requests.size());
  for (const auto& r : ch.requests) {
    Ledger::RequestRow row;
    row.id = r.id;
    if (!update_wire(r.update, row.update)) {
      txerr_ = ch.key + ": cannot encode a request";
      tx_failed_ = true;
      return;
    }
    rows.push_back(std::move(row));
  }
  std::string err;
  if (!ok(ledger_->save_requests(ch.key, ch.last_request_id, rows), err)) {
    txerr_ = err;
    tx_failed_ = true;
    return;
  }
  if (ch.legacy_unsaved && ch.legacy_tx == 0) {
    if (!ok(ledger_->delete_legacy(ch.key), err)) {
      txerr_ = err;
      tx_failed_ = true;
      return;
    }
    ch.legacy_unsaved = false;
  }
  ch.dirty = true;
}

bool Hub::request_out(Chan& ch, Out& o) {
  if (!ch.outstanding()) return false;
  HubRequest q{};
  q.contractAddress = contract_;
  q.user = ch.user;
  q.requestId = ch.requests.front().id;
  q.update = ch.requests.front().update;
  q.update.txCountGlobal = 0;
  q.update.sig = Signature{};
  uint8_t buf[kMaxHubRequestWire];
  size_t n = 0;
  Status s = hub_request_sign(signer_, key_, q);
  if (s == Status::Ok) s = encode_hub_request(q, buf, sizeof buf, &n);
  if (s != Status::Ok) {
    logf("ERROR", ch.key + ": cannot sign request " + std::to_string(q.requestId) + ": " + status_name(s));
    return false;
  }
  o.topic = mqtt::topic_request(ch.user);
  o.payload.assign(buf, buf + n);
  o.response_topic = mqtt::topic_hub_reply(hub_, ch.user);
  o.corr = q.requestId;
  o.has_corr = true;
  return true;
}

void Hub::schedule_resend(Chan& ch, uint64_t delay_ms) {
  ch.resend_at_ms = now_ms() + delay_ms;
  timed_.insert(&ch);
}

bool Hub::skip_requested(const Chan& ch) const {
  for (const auto& r : ch.requests)
    if (channel_is_skip(ch.latest.state, r.update)) return true;
  return false;
}

void Hub::request_skip(Chan& ch, std::vector<Out>& outs) {
  if (skip_requested(ch)) return;
  ChannelUpdate iv = channel_update_make(UpdateReason::Invalidation);
  iv.invalidation.previousValidTxCount = ch.latest.state.txCountGlobal;
  iv.invalidation.lastInvalidTxCount = ch.latest.state.txCountGlobal + 1;
  if (request_applies(ch, iv) != Status::Ok) return;  // not on pending operations: a plain Nack
  if (ch.outstanding()) {
    ch.requests.front().id = 0;  // overtaken by the skip: a new id when it is sent again
    ch.resend_at_ms = 0;
  }
  Request r;
  r.update = iv;
  ch.requests.insert(ch.requests.begin(), r);
  persist_requests(ch);
  if (!tx_failed_) pump(ch, outs);
}

void Hub::request_timers() {
  if (timed_.empty()) return;
  const uint64_t now = now_ms();
  std::vector<Out> outs;
  std::vector<Chan*> due;
  for (auto it = timed_.begin(); it != timed_.end();) {
    Chan* c = *it;
    if (c->requests.empty()) {
      it = timed_.erase(it);
      continue;
    }
    if (c->outstanding()) {
      if (c->resend_at_ms <= now) {
        Out o;
        if (request_out(*c, o)) outs.push_back(std::move(o));
        c->resend_at_ms = now + kResendMs;
      }
    } else {
      bool expired = false;
      for (const auto& r : c->requests) expired = expired || (r.not_before_ms != 0 && r.not_before_ms <= now);
      if (expired) due.push_back(c);
    }
    ++it;
  }
  if (!due.empty()) {
    if (!in_transaction([&] {
          for (Chan* c : due) {
            for (auto& r : c->requests)
              if (r.not_before_ms != 0 && r.not_before_ms <= now) r.not_before_ms = 0;
            pump(*c, outs);
            if (tx_failed_) break;
          }
        }))
      return;
  }
  publish_outs(outs);
}

void Hub::recover() {
  // Requests survive a crash (stored with the update that made them): re-send the
  // outstanding ones, send the next of the others.
  if (recover_users_.empty()) return;
  if (!mqtt_->wait_connected(15000)) logf("warn", "recovering hub requests before the broker connection is up");
  std::vector<Out> outs;
  std::string err;
  tx_failed_ = false;
  new_deposits_.clear();
  if (!begin_write()) return;
  size_t resent = 0, resumed = 0;
  for (const auto& k : recover_users_) {
    Address u{};
    if (address_parse(k.c_str(), k.size(), u) != Status::Ok) continue;
    Chan* ch = channel(u);
    if (!ch) {
      tx_failed_ = true;
      break;
    }
    if (ch->legacy_unsaved) persist_requests(*ch);
    if (ch->outstanding()) {
      Out o;
      if (request_out(*ch, o)) outs.push_back(std::move(o));
      schedule_resend(*ch, kResendMs);
      ++resent;
    } else if (!ch->requests.empty()) {
      pump(*ch, outs);
      ++resumed;
    }
    if (tx_failed_) break;
  }
  recover_users_.clear();
  if (tx_failed_ || !ok(ledger_->commit(), err)) {
    ledger_->rollback();
    fail("store: " + (err.empty() ? txerr_ : err));
    return;
  }
  logf("info", "recovered hub requests: " + std::to_string(resent) + " re-sent, " + std::to_string(resumed) +
                   " queues resumed");
  publish_outs(outs);
}

}  // namespace picopay::hub
