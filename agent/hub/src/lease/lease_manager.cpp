// The lease manager (lease_manager.hpp; docs/multi-instance.md).
#include "lease/lease_manager.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "log.hpp"
#include "picopay/mqtt/protocol.hpp"

namespace picopay::hub::lease {

int partition_of_topic(const std::string& topic, const Address& hub) {
  Address h{}, user{};
  std::string leaf;
  if (!mqtt::parse_channel_topic(topic, h, user, leaf) || h != hub) return -1;
  return partition_of(user);
}

LeaseManager::LeaseManager(Options o) : opts_(std::move(o)) {
  std::random_device rd;
  rng_ = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(::getpid());
  char nonce[24];
  std::snprintf(nonce, sizeof nonce, "%016llx", static_cast<unsigned long long>(rng_));
  holder_ = opts_.instance + "#" + nonce;
  for (auto& e : epochs_) e.store(0);
}

LeaseManager::~LeaseManager() { stop(); }

bool LeaseManager::start(std::string& err) {
  LedgerStatus s = Ledger::open(opts_.store, db_);
  if (!s.ok()) {
    err = "leases: " + s.message;
    return false;
  }
  uint64_t live = 0;
  s = db_->lease_heartbeat(holder_, opts_.ttl_ms, live);
  if (!s.ok()) {
    err = s.message;
    return false;
  }
  if (!round()) {
    err = "leases: the first round failed (see the log)";
    return false;
  }
  thread_ = std::thread([this] { run(); });
  return true;
}

void LeaseManager::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::array<uint64_t, kPartitions + 1> none{};
  set_held(none);
  if (db_) {
    LedgerStatus s = db_->lease_release(Ledger::kAllLeases, holder_);
    if (!s.ok()) logf("warn", "leases: giving them back at stop: " + s.message + " (they expire)");
    else logf("info", "leases: given back (" + holder_ + ")");
  }
}

void LeaseManager::run() {
  const auto every = std::chrono::milliseconds(std::max<uint64_t>(opts_.ttl_ms / 5, 20));
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    cv_.wait_for(lk, every, [this] { return stop_; });
    if (stop_) break;
    lk.unlock();
    if (!round()) {
      // A lost connection: open another one for the next round. What we hold stays
      // published until the server says otherwise: the fence protects every write.
      std::unique_ptr<Ledger> fresh;
      if (Ledger::open(opts_.store, fresh).ok()) db_ = std::move(fresh);
    }
    lk.lock();
  }
}

void LeaseManager::set_held(const std::array<uint64_t, kPartitions + 1>& next) {
  bool changed = false;
  for (size_t i = 0; i < next.size(); ++i)
    if (epochs_[i].exchange(next[i]) != next[i]) changed = true;
  if (changed) changes_.fetch_add(1);
}

bool LeaseManager::round() {
  uint64_t live = 0;
  LedgerStatus s = db_->lease_heartbeat(holder_, opts_.ttl_ms, live);
  if (s.ok()) live_.store(live);
  std::vector<std::pair<int, uint64_t>> held;
  if (s.ok()) s = db_->lease_renew(holder_, opts_.ttl_ms, held);
  if (!s.ok()) {
    logf("warn", "leases: " + s.message);
    return false;
  }
  std::array<uint64_t, kPartitions + 1> next{};
  for (auto& h : held)
    if (h.first >= -1 && h.first < kPartitions) next[h.first + 1] = h.second;
  int lost = 0;
  for (int p = -1; p < kPartitions; ++p)
    if (epoch(p) != 0 && next[p + 1] != epoch(p)) ++lost;
  if (lost) logf("warn", "leases: " + std::to_string(lost) + " lease(s) taken over by another instance");
  set_held(next);  // lost ones first: intake stops taking their messages

  std::mt19937_64 rng(rng_++);
  std::vector<int> mine;
  for (int p = 0; p < kPartitions; ++p)
    if (next[p + 1] != 0) mine.push_back(p);
  const size_t fair = (kPartitions + std::max<uint64_t>(live, 1) - 1) / std::max<uint64_t>(live, 1);
  // Over the fair share only just now (an instance started, or one died and its heartbeat
  // still counts until it lapses): wait 1.5 TTL before giving back, so a kill does not
  // also move the survivors' partitions. The local clock only paces this.
  const uint64_t now = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now().time_since_epoch())
                                                 .count());
  if (mine.size() <= fair) over_since_ms_ = 0;
  else if (over_since_ms_ == 0) over_since_ms_ = now;
  if (mine.size() > fair && now - over_since_ms_ >= opts_.ttl_ms * 3 / 2) {
    over_since_ms_ = 0;
    // Give back the extras: unpublished first, then released (a batch in flight holds
    // their rows FOR SHARE: the release waits for it).
    std::shuffle(mine.begin(), mine.end(), rng);
    const size_t extra = mine.size() - fair;
    for (size_t i = 0; i < extra; ++i) next[mine[i] + 1] = 0;
    set_held(next);
    for (size_t i = 0; i < extra; ++i) {
      s = db_->lease_release(mine[i], holder_);
      if (!s.ok()) {
        logf("warn", "leases: " + s.message);
        return false;
      }
    }
    logf("info", "leases: gave back " + std::to_string(extra) + " partition(s) (" + std::to_string(live) +
                     " instances; fair share " + std::to_string(fair) + ")");
    return true;
  }
  std::vector<int> free;
  s = db_->lease_free(free);
  if (!s.ok()) {
    logf("warn", "leases: " + s.message);
    return false;
  }
  std::shuffle(free.begin(), free.end(), rng);
  size_t room = mine.size() >= fair ? 0 : fair - mine.size();  // over: only the chain role
  int taken = 0;
  for (int p : free) {
    if (p >= 0 && room == 0) continue;
    bool got = false;
    uint64_t e = 0;
    s = db_->lease_take(p, holder_, opts_.ttl_ms, got, e);
    if (!s.ok()) {
      logf("warn", "leases: " + s.message);
      return false;
    }
    if (!got) continue;
    next[p + 1] = e;
    if (p >= 0) {
      --room;
      ++taken;
    } else {
      logf("info", "leases: took the chain role (epoch " + std::to_string(e) + ")");
    }
  }
  if (taken) {
    size_t n = 0;
    for (int p = 0; p < kPartitions; ++p) n += next[p + 1] != 0;
    logf("info", "leases: took " + std::to_string(taken) + " partition(s); holding " + std::to_string(n) + " (" +
                     std::to_string(live) + " instance(s))");
  }
  set_held(next);
  return true;
}

}  // namespace picopay::hub::lease
