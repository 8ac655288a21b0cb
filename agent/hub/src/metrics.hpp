// picopay-hub metrics: what an operator watches (docs/operations.md).
//
// One HTTP listener (--metrics-listen HOST:PORT, off by default) served by prometheus-cpp's
// pull library (an embedded civetweb server):
//   GET /metrics     Prometheus text exposition format 0.0.4 (every picopay_hub_* series)
//   GET /dashboard   the live dashboard page (agent/dashboard/index.html, compiled in): it
//                    polls /metrics from the browser and renders the numbers and a chart
//   GET /            redirects to /dashboard
// The listener has no authentication and no TLS: bind it to 127.0.0.1 (or a private
// address behind a proxy). Channel balances are visible to whoever can reach it.
//
// Thread model: the hub's worker thread calls the hooks below; prometheus-cpp's metric
// types are atomic, so the HTTP threads read them without a lock.
//
// The sums over every channel (picopay_hub_channels_known, _threads_open, _collateral_wei)
// are kept by the ledger (Ledger::channel_totals: one row on SQLite, 256 on PostgreSQL)
// and read from it at start and after every batch and status round, whatever the channel
// count, so nothing reads every channel and no per-channel sums are held in memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "picopay/channel.hpp"
#include "picopay/status.hpp"
#include "picopay/types.hpp"
#include "ledger/ledger.hpp"

namespace picopay::chain {
class RpcClient;
class ChannelManagerClient;
}

namespace picopay::hub {

class Metrics {
 public:
  // Starts the listener on `listen` ("HOST:PORT", HOST an IPv4 address or name; PORT 0 = any
  // free port, see port()) and seeds the channel gauges from the ledger (its channel
  // totals, or else its channel rows: see above), so collateral and channel counts are
  // right before the first update. `ledger` must outlive the Metrics and is read only
  // from the thread that calls the hooks. Null and `err` set when `listen` is malformed,
  // the address cannot be bound, another Metrics is live in this process (the HTTP
  // callback finds its instance through one process-wide pointer), or the store cannot be
  // read.
  static std::unique_ptr<Metrics> start(const std::string& listen, Ledger& ledger, std::string& err);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The bound TCP port (the real one when 0 was asked for).
  int port() const;
  // Read at every HTTP request for picopay_hub_mqtt_connected (called on an HTTP thread:
  // must be thread-safe).
  void set_mqtt_probe(std::function<bool()> connected);

  // --- hooks for the hub's worker thread ---
  // A device's update passed validation and was countersigned (Payment also counts a payment).
  void update_countersigned(UpdateReason r);
  // A device's update that decoded and reached validation was refused with `s`.
  void update_refused(UpdateReason r, Status s);
  // A Nack left for any reason (undecodable, replayed, out of window, refused).
  void nack_sent(Status s);
  // One batch committed: its message count, seconds from dequeue to the replies handed to
  // MQTT, and the channels now cached in memory.
  void batch_done(size_t messages, double seconds, size_t channels_cached);
  // MQTT messages still queued for the worker after it took a batch.
  void queue_depth(size_t messages);
  // Messages handed to the MQTT client after a commit (replies, proposals).
  void replies_published(size_t n);
  // The latest double-signed state of channel `user` (lowercase 0x), after its commit:
  // the collateral and thread sums and the known-channel count are read from the ledger
  // (at most once a second, like after a batch; tick() reads a change not read yet).
  void channel_state(const std::string& user, const ChannelState& s);
  // The worker's loop (every <= 500 ms): reads the ledger's totals if a change since the
  // last read is not read yet and a second has passed.
  void tick();
  // A channel was read from the ledger into the hub's cache
  // (picopay_hub_channels_loaded_total).
  void channel_loaded();
  // Countersigned collateral deposits waiting for the chain.
  void deposit_backlog(size_t jobs);
  // After a watchtower round: reads the head block, the hub's reserve in the ChannelManager
  // (hubReserveWei) and the hub account's balance (three JSON-RPC calls; a failure leaves
  // its gauge as it was and counts an rpc error). `tower_block`: the last block the tower's
  // event poller has processed; `tower_ok`: whether the round succeeded.
  void chain_round(chain::RpcClient& rpc, chain::ChannelManagerClient& cm, const Address& hub, uint64_t tower_block,
                   bool tower_ok);
  // One watchtower action (what: "emptyChannelWithChallenge", "challengeThread", ...).
  void watchtower_action(const std::string& what, bool ok);

  struct Impl;

 private:
  Metrics();
  std::unique_ptr<Impl> impl_;
};

// wei (U256) as a double for a gauge: exact up to 2^53 wei, then the nearest double
// (about 16 significant digits; 1 ether = 1e18 wei).
double wei_to_double(const U256& v) noexcept;

}  // namespace picopay::hub
