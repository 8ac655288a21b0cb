// picopay-hub requests, the hub's side: re-sending outstanding HubRequests, the end of a
// RequestNack backoff, recovery at start. The queue itself (adding, sending, the backoff's
// rules) is the engine core's (engine_core.hpp).
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

void Hub::schedule_resend(Chan& ch, uint64_t delay_ms) {
  ch.resend_at_ms = now_ms() + delay_ms;
  timed_.insert(&ch);
}

void Hub::request_timers() {
  if (timed_.empty()) return;
  const uint64_t now = now_ms();
  std::vector<Out> outs;
  std::vector<Chan*> due;
  const EngineEnv env = engine_env();
  for (auto it = timed_.begin(); it != timed_.end();) {
    Chan* c = *it;
    if (c->requests.empty()) {
      it = timed_.erase(it);
      continue;
    }
    if (c->outstanding()) {
      if (c->resend_at_ms <= now) {
        Out o;
        if (engine_request_out(*c, env, o)) outs.push_back(std::move(o));
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
  const EngineEnv env = engine_env();
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
      if (engine_request_out(*ch, env, o)) outs.push_back(std::move(o));
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
