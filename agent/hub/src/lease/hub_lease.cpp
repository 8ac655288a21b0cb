// The hub's side of several instances (hub.hpp "several instances"; lease_manager.hpp;
// docs/multi-instance.md): what the hooks in hub.cpp call.
#include <algorithm>
#include <chrono>

#include "hub.hpp"
#include "hub_internal.hpp"
#include "log.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/codec.hpp"

namespace picopay::hub {


bool Hub::lease_start(std::string& err) {
  if (cfg_.instance_id.empty()) return true;
  if (std::string(ledger_->backend()) != "postgresql") {
    err = "--instance-id: several hub instances need a PostgreSQL ledger (--store postgresql://...); the " +
          std::string(ledger_->backend()) + " ledger serves one process";
    return false;
  }
  lease::LeaseManager::Options o;
  o.store = cfg_.store;
  o.instance = cfg_.instance_id;
  o.ttl_ms = cfg_.lease_ttl_ms;
  lease_ = std::make_unique<lease::LeaseManager>(o);
  // A stopped instance must not keep its fence's row locks much past the lease (the
  // server ends such a session; its COMMIT then fails and nothing of it is released). At
  // least 2 s: a busy machine may pause a live worker between two statements that long.
  LedgerStatus s = ledger_->lease_session(std::max<uint64_t>(cfg_.lease_ttl_ms, 2000), lease_->holder());
  if (!s.ok()) {
    err = s.message;
    return false;
  }
  if (!lease_->start(err)) return false;
  if (cfg_.client_id.empty()) cfg_.client_id = "picopay-hub-" + mqtt::topic_address(hub_) + "-" + cfg_.instance_id;
  recover_users_.clear();  // recovered per partition as it is gained (lease_round)
  logf("info", "instance " + lease_->holder() + ": partition leases of " + std::to_string(cfg_.lease_ttl_ms) +
                   " ms on the PostgreSQL ledger");
  return true;
}

void Hub::lease_stop() {
  if (lease_) lease_->stop();
}

bool Hub::lease_accepts(const std::string& topic) const {
  const int p = lease::partition_of_topic(topic, hub_);
  return p < 0 || lease_->holds(p);
}

bool Hub::lease_chain() const { return !lease_ || lease_seen_[0] != 0; }

bool Hub::lease_owns(const Address& user) const {
  return !lease_ || lease_seen_[static_cast<size_t>(lease::partition_of(user)) + 1] != 0;
}

bool Hub::lease_fence(std::vector<mqtt::Message>* batch, const std::vector<Address>* also) {
  std::vector<std::pair<int, uint64_t>> parts;
  fenced_parts_.fill(false);
  if (batch) {
    std::array<bool, lease::kPartitions> in{};
    auto gone = std::remove_if(batch->begin(), batch->end(), [&](const mqtt::Message& m) {
      const int p = lease::partition_of_topic(m.topic, hub_);
      if (p < 0 || p >= lease::kPartitions) return false;
      if (lease_seen_[static_cast<size_t>(p) + 1] == 0) return true;  // not ours (any more): its new owner answers the re-send
      in[static_cast<size_t>(p)] = true;
      return false;
    });
    batch->erase(gone, batch->end());
    if (also)
      for (const Address& u : *also) {
        const int p = lease::partition_of(u);
        if (lease_seen_[static_cast<size_t>(p) + 1] != 0) in[static_cast<size_t>(p)] = true;
      }
    for (int p = 0; p < lease::kPartitions; ++p)
      if (in[static_cast<size_t>(p)]) parts.emplace_back(p, lease_seen_[static_cast<size_t>(p) + 1]);
  } else {
    for (size_t i = 0; i < lease_seen_.size(); ++i)
      if (lease_seen_[i] != 0) parts.emplace_back(static_cast<int>(i) - 1, lease_seen_[i]);
  }
  if (parts.empty()) return true;
  bool held = false;
  LedgerStatus s = ledger_->lease_fence(lease_->holder(), parts, held);
  if (s.ok() && held) {
    for (const auto& p : parts)
      if (p.first >= 0) fenced_parts_[static_cast<size_t>(p.first)] = true;
    return true;
  }
  logf("warn", "leases: fence: " + (s.ok() ? std::string("a lease of this transaction was taken over") : s.message) +
                   "; rolled back, nothing of it released");
  return false;
}

bool Hub::lease_fenced(const Address& user) {
  // Only what the transaction's fence named: locking another lease row now, out of
  // partition order, could deadlock with the lease manager's renewal (rows in order).
  const int p = lease::partition_of(user);
  if (fenced_parts_[static_cast<size_t>(p)]) return true;
  if (lease_seen_[static_cast<size_t>(p) + 1] != 0) forwarded_here_ = true;  // taken at the next loop
  return false;
}

void Hub::lease_forget(Chan* c) {
  timed_.erase(c);
  status_dirty_.erase(c);
  lru_unlink(c);
  const Address user = c->user;  // the key outlives the entry it erases
  chans_.erase(user);
}

void Hub::lease_drop_partition(int p) {
  std::vector<Chan*> gone;
  for (auto& kv : chans_)
    if (lease::partition_of(kv.second->user) == p) gone.push_back(kv.second.get());
  for (Chan* c : gone) lease_forget(c);
  if (!gone.empty() && cfg_.verbose)
    logf("info", "leases: partition " + std::to_string(p) + ": " + std::to_string(gone.size()) + " cached channel(s) dropped");
}

bool Hub::take_forwarded(const Ledger::ForwardedRow& row, std::vector<Out>& outs) {
  Address user{};
  ChannelUpdate q{};
  auto refuse = [&](const std::string& why) {
    logf("warn", "forwarded request " + std::to_string(row.id) + " for " + row.user + ": " + why + "; dropped");
    return false;
  };
  if (address_parse(row.user.c_str(), row.user.size(), user) != Status::Ok || lease::partition_of(user) != row.partition ||
      mqtt::topic_address(user) != row.user)
    return refuse("not a channel of partition " + std::to_string(row.partition));
  if (!lease_owns(user)) return refuse("a partition this instance does not hold");
  if (decode_channel_update(row.update.data(), row.update.size(), q) != Status::Ok) return refuse("undecodable");
  const ThreadState& t = q.thread.thread.state;
  // Only the hand-overs of threads cross partitions: the mirror OpenThread goes to the
  // thread's receiver, the CloseThread to its sender; the other end must agree.
  Address other{};
  if (q.reason == UpdateReason::OpenThread && t.receiver == user && t.sender != user) other = t.sender;
  else if (q.reason == UpdateReason::CloseThread && t.sender == user && t.receiver != user) other = t.receiver;
  else return refuse(std::string(update_reason_name(q.reason) ? update_reason_name(q.reason) : "?") +
                     " is not a thread's hand-over to this channel");
  // The counterpart's channel as committed (another instance's partition: read again from
  // the ledger, never a cached copy; peer_view): the payer's channel holds the thread it
  // opened (the hub locks its own funds for the mirror only against it); the payee's no
  // longer holds the thread it closed.
  Chan* oc = peer_view(other);
  if (!oc) {
    tx_failed_ = true;
    return false;
  }
  const long at = thread_set_find(oc->set(), t.sender, t.receiver, t.threadId);
  const bool same = at >= 0 && thread_hash(oc->threads[static_cast<size_t>(at)]) == thread_hash(t);
  oc->compact();
  if (q.reason == UpdateReason::OpenThread && !same)
    return refuse("the payer's channel " + oc->key + " does not hold this thread");
  if (q.reason == UpdateReason::CloseThread && at >= 0)
    return refuse("the payee's channel " + oc->key + " still holds this thread");
  Chan* ch = channel(user);
  if (!ch) {
    tx_failed_ = true;
    return false;
  }
  for (const auto& r : ch->requests)
    if (policy_update_matches(r.update, q)) return refuse("queued already");
  // The normal request rules: it applies to the latest state now, or waits (collateral, a
  // pending operation); a request already fulfilled (the thread open, or closed) does not.
  const Status s = engine_request_applies(*ch, q, hub_);
  if (s != Status::Ok && !waits(q, s)) return refuse(std::string("does not apply (") + status_name(s) + ")");
  add_request(*ch, q);
  if (!tx_failed_) pump(*ch, outs);
  return !tx_failed_;
}

void Hub::lease_take_forwarded(bool now) {
  const uint64_t t = now_ms();
  if (forwarded_here_) now = true;
  forwarded_here_ = false;
  if (!now && t - last_forwarded_ms_ < kForwardedPollMs) return;
  last_forwarded_ms_ = t;
  std::vector<int> parts;
  for (int p = 0; p < lease::kPartitions; ++p)
    if (lease_seen_[static_cast<size_t>(p) + 1] != 0) parts.push_back(p);
  if (parts.empty()) return;
  // A look outside any transaction first (usually nothing waits). Only this instance
  // deletes the rows of the partitions it holds, so they are still there, and its fence
  // makes sure they still are its own when it takes them.
  std::vector<Ledger::ForwardedRow> rows;
  LedgerStatus s = ledger_->list_forwarded(parts, kForwardedBatch, rows);
  if (!s.ok()) {
    fail("store: " + s.message);
    return;
  }
  if (rows.empty()) return;
  std::vector<Out> outs;
  size_t queued = 0;
  if (!in_transaction([&] {
        for (const auto& row : rows) {
          if (take_forwarded(row, outs)) ++queued;
          if (tx_failed_) return;
          std::string err;
          if (!ok(ledger_->delete_forwarded(row.id), err)) {
            txerr_ = err;
            tx_failed_ = true;
            return;
          }
        }
      }))
    return;  // fenced (a partition taken over meanwhile): its new holder takes the rows
  publish_outs(outs);
  logf("info", "forwarded requests: " + std::to_string(queued) + " queued, " + std::to_string(rows.size() - queued) +
                   " dropped");
}

void Hub::lease_round() {
  if (!lease_) return;
  const uint64_t c = lease_->changes();
  bool chain_changed = false;
  if (c != lease_changes_seen_) {
    lease_changes_seen_ = c;
    std::vector<int> gained;
    for (size_t i = 0; i < lease_seen_.size(); ++i) {
      const int p = static_cast<int>(i) - 1;
      const uint64_t e = lease_->epoch(p);
      if (e == lease_seen_[i]) continue;
      // Lost, gained or both (taken over and back): what the cache holds of this partition
      // may be stale either way; it is read from the ledger again under the new epoch.
      if (p >= 0) lease_drop_partition(p);
      else chain_changed = true;
      if (p >= 0 && e != 0) gained.push_back(p);
      lease_seen_[i] = e;
    }
    if (!gained.empty()) {
      // A gained partition's outstanding requests: re-sent as at start (recover()).
      recover_users_.clear();
      LedgerStatus s = ledger_->list_request_users_in(gained, recover_users_);
      if (!s.ok()) {
        fail("store: " + s.message);
        return;
      }
      recover();
      if (fatal_.load()) return;
      lease_take_forwarded(true);  // what was forwarded to the gained partitions, at once
      if (fatal_.load()) return;
    }
    if (chain_changed) logf("info", std::string("leases: chain role ") + (lease_chain() ? "held" : "not held"));
  }
  // Requests other instances forwarded to the partitions held.
  lease_take_forwarded(false);
  // Deposit jobs and thread disputes: every chain worker re-reads the stored ones
  // (ChainWorker::reload_deposits, reload_disputes); the chain role's holder sends them, the
  // channel's owner confirms a deposit (deposit_done).
}

}  // namespace picopay::hub
