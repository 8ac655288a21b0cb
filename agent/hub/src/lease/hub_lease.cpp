// The hub's side of several instances (hub.hpp "several instances"; lease_manager.hpp;
// docs/multi-instance.md): what the hooks in hub.cpp call.
#include <algorithm>
#include <chrono>

#include "hub.hpp"
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
  if (s.ok() && held) return true;
  logf("warn", "leases: fence: " + (s.ok() ? std::string("a lease of this transaction was taken over") : s.message) +
                   "; rolled back, nothing of it released");
  return false;
}

void Hub::lease_drop_partition(int p) {
  size_t n = 0;
  for (auto it = chans_.begin(); it != chans_.end();) {
    Chan* c = it->second.get();
    if (lease::partition_of(c->user) != p) {
      ++it;
      continue;
    }
    timed_.erase(c);
    status_dirty_.erase(c);
    lru_unlink(c);
    it = chans_.erase(it);
    ++n;
  }
  if (n && cfg_.verbose) logf("info", "leases: partition " + std::to_string(p) + ": " + std::to_string(n) + " cached channel(s) dropped");
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
    }
    if (chain_changed) logf("info", std::string("leases: chain role ") + (lease_chain() ? "held" : "not held"));
  }
  // Deposit jobs: every chain worker re-reads the stored ones (ChainWorker::reload_deposits);
  // the chain role's holder sends them, the channel's owner confirms them (deposit_done).
}

}  // namespace picopay::hub
