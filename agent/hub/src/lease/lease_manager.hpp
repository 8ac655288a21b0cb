// Partition leases of several picopay-hub instances on one PostgreSQL ledger
// (docs/multi-instance.md). A channel belongs to partition `user address byte 0` (256
// partitions); row -1 of the leases table is the chain role. The LeaseManager runs on its
// own thread with its own ledger connection: every ttl/5 it records its heartbeat, renews
// what it holds (the server's now() decides expiry, never this machine's clock), gives back
// what exceeds its fair share (ceil(256 / live instances)) and takes free or expired
// partitions up to it, and the chain role when nobody holds it.
//
// What it publishes (lock-free, read by the MQTT thread and the hub's worker): the epoch of
// each lease it holds (0 = not held). The hub drops messages of partitions not held, fences
// each write transaction with the epochs its cache was loaded under (Ledger::lease_fence),
// and on a change drops a lost partition's channels and re-sends a gained partition's
// outstanding requests (lease/hub_lease.cpp).
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "ledger/ledger.hpp"
#include "picopay/types.hpp"

namespace picopay::hub::lease {

constexpr int kPartitions = 256;
constexpr int kChainRole = -1;

// A channel's partition: its user address's first byte (addresses are keccak output).
inline int partition_of(const Address& user) { return user.bytes[0]; }
// The partition of a channel topic picopay/v1/hub/<hub>/channel/<user>/<leaf> of this hub;
// -1 for any other topic.
int partition_of_topic(const std::string& topic, const Address& hub);

class LeaseManager {
 public:
  struct Options {
    std::string store;     // the ledger spec (a postgresql:// URI); opened again here
    std::string instance;  // --instance-id
    uint64_t ttl_ms = 5000;
  };
  explicit LeaseManager(Options o);
  ~LeaseManager();
  LeaseManager(const LeaseManager&) = delete;
  LeaseManager& operator=(const LeaseManager&) = delete;

  // Opens its connection, runs one round at once, starts the thread. False with `err` if
  // the ledger cannot be opened or answers a lease call with an error (e.g. Unsupported).
  bool start(std::string& err);
  // Stops the thread and gives every lease back (a clean stop hands over at once).
  void stop();

  // The epoch of lease `p` (-1..255) held by this instance, 0 if not held.
  uint64_t epoch(int p) const { return p < -1 || p >= kPartitions ? 0 : epochs_[p + 1].load(); }
  bool holds(int p) const { return epoch(p) != 0; }
  // Bumped whenever a lease is gained or lost (the worker compares it once per loop).
  uint64_t changes() const { return changes_.load(); }
  // The holder name in the leases table: the instance id and a per-process nonce, so a
  // restarted instance never inherits the epochs of the process it replaces.
  const std::string& holder() const { return holder_; }
  uint64_t ttl_ms() const { return opts_.ttl_ms; }
  // The live instances (unexpired heartbeats, this one included) at the last round.
  uint64_t live_instances() const { return live_.load(); }

 private:
  void run();
  // One round; false on a ledger error (logged; the connection is opened again next round).
  bool round();
  void set_held(const std::array<uint64_t, kPartitions + 1>& next);

  Options opts_;
  std::string holder_;
  std::unique_ptr<Ledger> db_;
  std::array<std::atomic<uint64_t>, kPartitions + 1> epochs_{};
  std::atomic<uint64_t> changes_{0};
  std::atomic<uint64_t> live_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  uint64_t rng_ = 0;
  uint64_t over_since_ms_ = 0;  // steady ms since holding more than the fair share (0: not)
};

}  // namespace picopay::hub::lease
