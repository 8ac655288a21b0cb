// picopay-hub channel cache: channels loaded from the ledger on first use, least recently
// used evicted first (--channel-cache), the thread root's shared scratch space.
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

// The thread root's scratch space (kThreadCap + 2 hashes), one per thread: the core uses
// it only during a call, so every channel of the worker shares it.
static Hash32* thread_scratch() {
  thread_local std::vector<Hash32> s(kThreadCap + 2);
  return s.data();
}

ThreadSet Chan::set() {
  const size_t room = std::min(thread_count + 1, kThreadCap);
  if (threads.size() < room) threads.resize(room);
  return ThreadSet{threads.data(), thread_count, threads.size(), thread_scratch()};
}

void Hub::lru_unlink(Chan* c) {
  if (c->lru_prev) c->lru_prev->lru_next = c->lru_next;
  else lru_head_ = c->lru_next;
  if (c->lru_next) c->lru_next->lru_prev = c->lru_prev;
  else lru_tail_ = c->lru_prev;
  c->lru_prev = c->lru_next = nullptr;
}

void Hub::lru_push_front(Chan* c) {
  c->lru_prev = nullptr;
  c->lru_next = lru_head_;
  if (lru_head_) lru_head_->lru_prev = c;
  lru_head_ = c;
  if (!lru_tail_) lru_tail_ = c;
}

bool Hub::pinned(const Chan* c) const {
  return !c->requests.empty() || !c->future.empty() || c->parked || c->dirty || c->legacy_tx != 0 || c->legacy_unsaved ||
         status_dirty_.count(const_cast<Chan*>(c)) != 0 || timed_.count(const_cast<Chan*>(c)) != 0;
}

void Hub::evict() {
  const size_t cap = static_cast<size_t>(cfg_.channel_cache);
  const uint64_t before = evicted_;
  Chan* c = lru_tail_;
  while (chans_.size() > cap && c != nullptr) {
    Chan* prev = c->lru_prev;
    if (!pinned(c)) {
      lru_unlink(c);
      chans_.erase(c->user);  // destroys c
      ++evicted_;
    } else {
      c->compact();
    }
    c = prev;
  }
  if (cfg_.verbose && evicted_ != before)
    logf("info", "channel cache: evicted " + std::to_string(evicted_ - before) + " channel(s), " +
                     std::to_string(chans_.size()) + " cached");
}

Hub::Chan* Hub::channel(const Address& user) {
  auto it = chans_.find(user);
  if (it != chans_.end()) {
    Chan* c = it->second.get();
    if (c != lru_head_) {
      lru_unlink(c);
      lru_push_front(c);
    }
    return c;
  }
  std::unique_ptr<Chan> c = load_chan(user);
  if (!c) return nullptr;
  Chan* raw = c.get();
  chans_[user] = std::move(c);
  lru_push_front(raw);
  if (raw->outstanding()) timed_.insert(raw);
  return raw;
}

Hub::Chan* Hub::peer_view(const Address& user) {
  if (!lease_ || lease_owns(user)) return channel(user);
  auto it = peers_.find(user);
  if (it != peers_.end()) return it->second.get();
  std::unique_ptr<Chan> c = load_chan(user);
  if (!c) return nullptr;
  Chan* raw = c.get();
  peers_[user] = std::move(c);
  return raw;
}

std::unique_ptr<Hub::Chan> Hub::load_chan(const Address& user) {
  const std::string k = mqtt::topic_address(user);
  auto c = std::make_unique<Chan>();
  c->user = user;
  c->key = k;
  Bytes state, threads;
  bool found = false;
  std::string err;
  if (!ok(ledger_->load_channel(k, state, threads, found), err)) {
    txerr_ = err;
    return nullptr;
  }
  if (found) {
    if (decode_channel_state(state.data(), state.size(), c->latest) != Status::Ok) {
      txerr_ = "corrupt stored state for " + k;
      return nullptr;
    }
    size_t p = 0;
    while (p + 2 <= threads.size() && c->thread_count < kThreadCap) {
      size_t n = (static_cast<size_t>(threads[p]) << 8) | threads[p + 1];
      p += 2;
      SignedThreadState st{};
      if (p + n > threads.size() || decode_thread_state(threads.data() + p, n, st) != Status::Ok) {
        txerr_ = "corrupt stored threads for " + k;
        return nullptr;
      }
      c->threads.push_back(st.state);
      ++c->thread_count;
      p += n;
    }
  } else {
    c->latest = SignedChannelState{};
    c->latest.state = channel_state_zero();
    c->latest.state.contractAddress = contract_;
    c->latest.state.user = user;
    c->latest.state.recipient = user;
  }
  std::vector<Ledger::RequestRow> rows;
  if (!ok(ledger_->load_requests(k, c->last_request_id, rows), err)) {
    txerr_ = err;
    return nullptr;
  }
  for (auto& r : rows) {
    Request q;
    q.id = r.id;
    if (decode_channel_update(r.update.data(), r.update.size(), q.update) != Status::Ok) {
      txerr_ = "corrupt stored request for " + k;
      return nullptr;
    }
    q.update.txCountGlobal = 0;
    c->requests.push_back(q);
  }
  // Legacy rows (hub-signed proposals of an earlier version): the queued ones become
  // requests; the outstanding proposal too, and until the channel passes its
  // txCountGlobal only exactly that update is countersigned there (the hub's signature
  // on that state is out; it never signs another state with that txCountGlobal).
  bool legacy = false;
  uint64_t ltx = 0;
  Bytes lprop;
  std::vector<Bytes> lqueue;
  if (!ok(ledger_->load_legacy(k, legacy, ltx, lprop, lqueue), err)) {
    txerr_ = err;
    return nullptr;
  }
  if (legacy && ltx > c->latest.state.txCountGlobal) {
    c->legacy_update = std::make_unique<ChannelUpdate>();
    if (decode_channel_update(lprop.data(), lprop.size(), *c->legacy_update) != Status::Ok) {
      txerr_ = "corrupt stored legacy proposal for " + k;
      return nullptr;
    }
    c->legacy_tx = ltx;
  }
  if ((legacy || !lqueue.empty()) && rows.empty() && c->last_request_id == 0) {
    std::vector<Bytes> all;
    if (legacy) all.push_back(lprop);
    all.insert(all.end(), lqueue.begin(), lqueue.end());
    for (auto& b : all) {
      Request q;
      if (decode_channel_update(b.data(), b.size(), q.update) != Status::Ok) {
        txerr_ = "corrupt stored legacy proposal for " + k;
        return nullptr;
      }
      q.update.txCountGlobal = 0;
      c->requests.push_back(q);
    }
    c->legacy_unsaved = true;
    logf("warn", k + ": " + std::to_string(all.size()) + " hub proposal(s) of an earlier version turned into requests");
  } else if (legacy && c->legacy_tx == 0) {
    c->legacy_unsaved = true;  // passed: the legacy row is deleted with the next write
  }
  c->compact();
  c->active_ms = now_ms();
  if (!ok(ledger_->has_collateral(k, c->collateralized), err)) {
    txerr_ = err;
    return nullptr;
  }
  if (metrics_) metrics_->channel_loaded();
  return c;
}

}  // namespace picopay::hub
