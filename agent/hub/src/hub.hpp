// picopay-hub: MQTT callbacks enqueue; one worker thread runs the engine core's pure step
// (engine_core.hpp: validates with the core's channel_accept and the signing policy,
// countersigns) on each message of a batch, applies the steps' effects to the ledger in one
// transaction, and only after COMMIT publishes the replies.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <set>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <unordered_map>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "chain_worker.hpp"
#include "config.hpp"
#include "engine_core.hpp"
#include "parallel.hpp"
#include "picopay/channel.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/policy.hpp"
#include "picopay/signer.hpp"
#include "ledger/ledger.hpp"
#include "lease/lease_manager.hpp"
#include "picopay/agent/history.hpp"

namespace picopay::hub {

class Metrics;
class ChainFollow;

// `picopay-hub history ...` (history.cpp): prints a user's history from the store.
int history_main(int argc, char** argv);
// From a SIGHUP handler (async-signal-safe): the hub rereads its exchange rate file on its
// next round (rate.cpp).
void rate_reload_request();

class Hub {
 public:
  Hub(Config cfg, const PrivateKey& key);
  ~Hub();
  // Opens the store, the chain (if configured), connects MQTT, starts the worker.
  bool start(std::string& err);
  // Stops the worker after its current batch and disconnects. `fatal` is set if the
  // worker stopped on a store error.
  void stop();
  bool fatal() const { return fatal_.load(); }
  void wait_until_stopped(const std::atomic<bool>& quit);

  // ---- the engine without a broker or a chain (tests/hub/engine_test.cpp) ----
  // What the outbox would publish (after COMMIT), in order.
  using Sink = std::function<void(const std::string& topic, const Bytes& payload, uint64_t corr)>;
  // Opens the ledger and checks the config as start() does, no MQTT, no chain worker, no
  // thread: chain jobs go to `chain` (null: no chain), publishes to `sink`.
  bool open_engine(ChainPort* chain, Sink sink, std::string& err);
  // One turn of the payment worker: the chain's results, then `batch` in one transaction.
  // False when the hub stopped (a ledger error).
  bool engine_turn(std::vector<mqtt::Message> batch, std::vector<ChainResult> results = {});

 private:
  // Addresses are keccak-derived: their first bytes are a good hash.
  struct AddressHash {
    size_t operator()(const Address& a) const noexcept {
      size_t h = 0;
      std::memcpy(&h, a.bytes, sizeof h);
      return h;
    }
  };
  // The engine core's types (engine_core.hpp).
  using Chan = hub::Chan;
  using Request = hub::Request;
  using Out = hub::Out;
  using DepositJob = hub::DepositJob;

  void on_message(const mqtt::Message& m);
  void worker();
  // One write transaction: the chain's answers to parked updates (`facts`), then the
  // batch's messages; replies and requests leave after COMMIT.
  bool process_batch(std::vector<mqtt::Message>& batch, std::vector<ChainResult>& facts);
  // Every write transaction of the ledger begins here (false: fail() was called).
  // Begins a write transaction; with several instances fenced by the leases (batch: its
  // messages of partitions not held are dropped first). False: failed (fatal) or fenced
  // (fenced_ true: rolled back, nothing of it may be released; not fatal).
  // `also`: channels the transaction writes besides the batch's (the chain's answers to
  // parked updates); their partitions are fenced too.
  bool begin_write(std::vector<mqtt::Message>* batch = nullptr, const std::vector<Address>* also = nullptr);
  bool fenced_ = false;
  Chan* channel(const Address& user);
  // Another channel, read for the cross-channel rules of threads (EngineEnv::peer). With
  // several instances a channel of a partition this instance does not hold is read from
  // the ledger as its holder committed it, once per transaction (peers_, cleared when a
  // transaction begins), never from the cache, whose copy may be older. Null on a read
  // error (txerr_).
  Chan* peer_view(const Address& user);
  std::unordered_map<Address, std::unique_ptr<Chan>, AddressHash> peers_;
  // A channel as stored (state, threads, requests, legacy rows), not cached. Null on a
  // read error or corrupt row (txerr_).
  std::unique_ptr<Chan> load_chan(const Address& user);
  // ---- the applier of the engine core (engine.cpp; the steps are engine_core.hpp) ----
  // The environment of a step: the hub's key and config, the rate, the follower's marks,
  // the reserve reading and deposit jobs, the clock now; stored updates through this
  // batch's replies and the ledger (find_update), other channels through the cache.
  EngineEnv engine_env();
  // A step's Effects applied to the open transaction: its writes in order (a write error:
  // false with `err`; the caller rolls back and releases nothing), its replies appended to
  // `outs` (published after COMMIT), chain jobs and deposits kept for after COMMIT
  // (release_after_commit), its requests for other channels through route_request, its
  // metrics, log lines and timers.
  bool apply_effects(Chan& ch, Effects& fx, std::vector<Out>& outs, std::string& err);
  // After COMMIT: the transaction's chain jobs and deposits to the chain worker.
  void release_after_commit();
  std::vector<ChainJob> new_chain_jobs_;  // this transaction's (posted after COMMIT)
  // A request for another channel (the payee's mirror of an OpenThread, the payer's
  // CloseThread), inside the current write transaction: queued and pumped here when this
  // is the only instance or the transaction holds `to`'s partition under its fence
  // (lease_fenced); otherwise written to the ledger's forwarded requests in this
  // transaction, for the partition's holder to queue (lease_take_forwarded).
  // A store error sets tx_failed_ / txerr_.
  void route_request(const Address& to, const ChannelUpdate& p, std::vector<Out>& outs);
  // Outside the engine's steps (chain results, collateral, recovery): the core's request
  // queue on one channel, applied at once. A store error sets tx_failed_ / txerr_.
  // Adds a request (front: right after the outstanding one) and stores the requests.
  void add_request(Chan& ch, const ChannelUpdate& u, bool front = false);
  // engine_pump: the next request out if none is outstanding.
  void pump(Chan& ch, std::vector<Out>& outs);
  // Rewrites the channel's stored requests in the current transaction.
  void persist_requests(Chan& ch);
  void schedule_resend(Chan& ch, uint64_t delay_ms);
  // Re-sends outstanding requests whose timer expired; sends the next request of channels
  // whose refused requests' backoff expired (worker loop).
  void request_timers();
  // At start: re-sends stored outstanding requests, sends the next of stored queues.
  void recover();
  void publish_outs(std::vector<Out>& outs);
  // One write transaction outside a batch: begin, `body` (which stores requests and pumps
  // them into outs), commit. False when a write or the commit failed: everything is rolled
  // back and the hub stops (fail()); the caller publishes only after true.
  bool in_transaction(const std::function<void()>& body);
  // Publishes the exchange rate, signed, retained (rate.cpp; docs/tokens.md).
  void publish_rate();
  // --exchange-rate-file: reread when it changed (every 2 s) or after SIGHUP; a new rate
  // replaces rate_ and is published (rate.cpp). False with `err` on a bad file at start.
  bool rate_file_load(bool at_start, std::string& err);
  void rate_round();
  int64_t rate_file_mtime_ns_ = -1;
  std::mutex rate_mu_;  // rate_ is written by the loop, read by publish_rate() on the MQTT thread
  uint64_t last_rate_round_ms_ = 0;
  void publish_status(Chan& ch);
  // Publishes the retained status of channels changed since their last publish, at most
  // once per kStatusInterval per channel (all of them if `all`): a status message per
  // payment would double the broker's traffic for a summary nobody needs that often.
  void flush_status(bool all);
  static constexpr std::chrono::milliseconds kStatusInterval{1000};
  std::set<Chan*> status_dirty_;
  // The chain worker's results other than Facts (those go to process_batch): deposits
  // done, reserve readings, follow rounds, disputes. False: the hub stopped (fail()).
  bool chain_results(std::vector<ChainResult>& results, std::vector<ChainResult>& facts);
  // A round of the follower (chain_follow.hpp) arrived: the engine's copy of the marks,
  // logs and status of the channels whose mark changed, disputes, EmptyChannel requests.
  void follow_chain(ChainResult& r);
  // The engine's copy of the follower's marks (updated from Marks results).
  const ChainMark* mark(const Address& user) const;
  std::unordered_map<Address, ChainMark, AddressHash> marks_;
  std::unordered_map<Address, Hash32, AddressHash> empty_tx_;
  // A payer's channel in dispute with open threads (thread_dispute.cpp): empties it at
  // once when the chain already holds the hub's latest state and the user started the
  // exit, then starts each thread's dispute with the latest thread state the hub has (the
  // payee's close, else the initial state), so nukeThreads cannot take back what was paid
  // through a thread; the watchtower empties the threads after their timer.
  void dispute_threads(Chan& ch);
  // A channel emptied on chain while the hub's latest state still holds funds, pending
  // operations or threads (chain_empty.cpp): requests Connext's EmptyChannel (ahead of the
  // queue, once), which the user proposes when its own chain facts show the same.
  void request_empty_channel(Chan& ch);
  std::set<std::string> empty_refused_;  // channel@block whose chain counts were reported ahead of ours
  std::set<std::string> threads_disputed_;  // channels whose thread exits were started (this run)
  std::set<std::string> disputes_posted_;   // channels with a dispute job at the chain worker
  void fail(const std::string& what);
  // Before the serial pass: pre-validate and countersign each channel's run of
  // consecutive Payment updates in the batch on the pool (ParallelAcceptor).
  void precompute(const std::vector<mqtt::Message>& batch);
  // The precomputed result for this update if it was computed from the channel's current
  // state, else null.
  const PaymentJob* precomputed(const Chan& ch, const ChannelUpdate& u, const Bytes& payload) const;

  Config cfg_;
  PrivateKey key_{};
  Address hub_{};
  Address contract_{};
  U256 collateral_ = U256::zero();
  U256 collateral_tokens_ = U256::zero();  // token base units per collateral deposit (0: the shortfall)
  HubRate rate_{};  // --exchange-rate (known false: no exchanges)
  std::set<Chan*> timed_;  // channels with an outstanding request (re-send timers)
  Signer signer_;
  std::unique_ptr<ParallelAcceptor> pool_;
  // per batch: the pool's runs and, by (channel, txCountGlobal), the job and its payload
  std::vector<ChannelRun> spec_runs_;
  std::map<std::pair<const Chan*, uint64_t>, std::pair<const PaymentJob*, Bytes>> spec_;
  std::unique_ptr<Ledger> ledger_;
  // Ok: true; else err = the ledger's message.
  static bool ok(LedgerStatus s, std::string& err);
  std::unique_ptr<mqtt::Client> mqtt_;
  std::unordered_map<Address, std::unique_ptr<Chan>, AddressHash> chans_;  // the channel cache
  Chan* lru_head_ = nullptr;  // most recently used
  Chan* lru_tail_ = nullptr;  // least recently used
  void lru_unlink(Chan* c);
  void lru_push_front(Chan* c);
  // Whether `c` holds what the ledger does not (or what must stay in memory): requests,
  // reordered or parked updates, unsaved legacy rows, a pending status publish, a timer.
  bool pinned(const Chan* c) const;
  // Drops least recently used unpinned channels until at most --channel-cache remain
  // (between batches only: no Chan* is held then). Their state is in the ledger.
  void evict();
  uint64_t evicted_ = 0;
  // per batch: replies released in this batch by (user, tx) for duplicates
  std::map<std::pair<std::string, uint64_t>, std::pair<Bytes, Bytes>> batch_done_;
  // A store error of a write or a channel load outside the engine's steps (chain results,
  // collateral, recovery, route_request): the transaction rolls back.
  std::string txerr_;
  bool tx_failed_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<mqtt::Message> queue_;  // the intake queue (intake.cpp), at most kIntakeMax
  static constexpr size_t kIntakeMax = 200000;
  uint64_t intake_dropped_ = 0;
  std::deque<ChainResult> inbox_;  // the chain worker's results (drained between batches)
  std::thread worker_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> fatal_{false};
  std::atomic<bool> stopped_{false};

  // The chain (--rpc-url; null: none): every JSON-RPC call happens on its thread; the
  // engine posts to chain_ (the worker, or a test's fake).
  std::unique_ptr<ChainWorker> chain_worker_;
  ChainPort* chain_ = nullptr;
  Sink sink_;  // engine tests: instead of MQTT
  // start() and open_engine(): the key, the config's amounts, the ledger.
  bool prepare(std::string& err);
  // A ledger error at start that a restart may cure (PostgreSQL unreachable): sets fatal_
  // (main exits 3); returns `s`.
  LedgerStatus pg_transient(LedgerStatus s);
  // A collateral deposit the payee countersigned (stored in the deposits table with the
  // countersignature, in the transaction of the countersignature): posted to the chain
  // worker after COMMIT, which checks the chain, calls hubAuthorizedUpdate if the deposit
  // has not happened and answers DepositDone; then deposit_done() requests ConfirmPending
  // and deletes the stored job in one transaction (DepositJob: engine_core.hpp).
  std::vector<DepositJob> deposit_jobs_;  // at the chain worker, not done yet
  std::vector<DepositJob> new_deposits_;  // this transaction's (posted after COMMIT)
  void post_deposit(const DepositJob& j);
  // Loads the stored deposit jobs (start).
  bool load_deposit_jobs(std::string& err);
  // DepositDone: ConfirmPending requested (ahead of the queue), the row deleted.
  bool deposit_done(const ChainResult& r);
  std::string crash_at_;  // PICOPAY_HUB_CRASH_AT (test-only fault injection, chain_worker.cpp)
  std::vector<std::string> recover_users_;
  uint64_t last_tower_ms_ = 0;
  // ---- flows (collateral.cpp, docs/flows.md) ----
  // Worker loop: takes back the hub balance of channels idle for collateral_idle_seconds
  // (a hub-only withdrawal request), and checks the reserve now and then.
  void collateral_round();
  bool reserve_known_ = false;
  U256 reserve_wei_ = U256::zero();
  uint64_t reserve_at_ms_ = 0;
  // The block the reading is of, and the latest block a DepositDone named (ChainResult::
  // block): a reading of a block before it still counts that deposit as free reserve, so
  // it is ignored, and the current one is dropped (nothing promised until a newer one).
  uint64_t reserve_block_ = 0;
  uint64_t deposit_done_block_ = 0;
  std::set<std::string> reserve_waiters_;  // channel keys
  U256 collateral_max_ = U256::zero();
  U256 reserve_warn_ = U256::zero();
  uint64_t last_collateral_round_ms_ = 0;
  uint64_t last_reserve_warn_ms_ = 0;
  // ---- several instances, one hub (lease/hub_lease.cpp, docs/multi-instance.md) ----
  // Null: the only instance (no --instance-id). The worker's view: the epoch of each lease
  // its cache was loaded under (index p + 1; 0 = not held), what it fences with.
  std::unique_ptr<lease::LeaseManager> lease_;
  std::array<uint64_t, lease::kPartitions + 1> lease_seen_{};
  uint64_t lease_changes_seen_ = 0;
  // start(): with --instance-id, refuses SQLite, sets the fenced session, starts the lease
  // manager; the MQTT client id becomes picopay-hub-<hub>-<instance> unless set.
  bool lease_start(std::string& err);
  // Intake (MQTT thread): false for a channel message of a partition not held.
  bool lease_accepts(const std::string& topic) const;
  // Right after begin(): drops the batch's messages of partitions not held (batch null:
  // fences every lease the worker holds), then Ledger::lease_fence. False: the caller
  // rolls back and releases nothing (logged).
  bool lease_fence(std::vector<mqtt::Message>* batch, const std::vector<Address>* also = nullptr);
  // Worker loop: applies lease changes (drops a lost partition's channels, re-sends a
  // gained partition's outstanding requests, the chain role's deposit jobs).
  void lease_round();
  // Whether this instance holds the chain role / the partition of `user` (true when the
  // only instance).
  bool lease_chain() const;
  bool lease_owns(const Address& user) const;
  void lease_drop_partition(int p);
  void lease_forget(Chan* c);  // drops one channel from the cache
  // Inside a write transaction: whether its fence holds `user`'s partition (a batch fences
  // its messages' partitions, the other transactions every lease held). A partition held
  // but not fenced is not locked now (out of order: it could deadlock with the renewal);
  // its request is forwarded and taken by this instance at its next loop.
  bool lease_fenced(const Address& user);
  std::array<bool, lease::kPartitions> fenced_parts_{};  // of the current write transaction
  bool forwarded_here_ = false;  // a request was forwarded to a partition this instance holds
  // Worker loop (every kForwardedPollMs, and at once when partitions are gained): queues
  // the forwarded requests of the partitions held, in one fenced transaction that also
  // deletes their rows. A row is queued only if the normal request rules take it: a
  // request of a thread (the mirror OpenThread to its receiver, CloseThread to its
  // sender) whose counterpart channel holds the thread, not queued yet, and applying now
  // or waiting for collateral or a pending operation; any other row is dropped (logged).
  void lease_take_forwarded(bool now);
  bool take_forwarded(const Ledger::ForwardedRow& row, std::vector<Out>& outs);
  uint64_t last_forwarded_ms_ = 0;
  static constexpr uint64_t kForwardedPollMs = 200;
  static constexpr size_t kForwardedBatch = 256;
  // Thread disputes shared through the ledger (thread_dispute.cpp): the job bytes this
  // instance stored per channel (stored again only when they change).
  std::map<std::string, Bytes> disputes_stored_;
  void lease_stop();
  // ---- several instances: the hub's retained status (lease/hub_presence.cpp) ----
  // The hub-level status payload ({"state":"online",hub,contract[,instance]}).
  std::string presence_online() const;
  // An instance's status payload ({"state":state,"instance":id}; also the Will of the
  // hub-level topic with --instance-id, as "offline").
  static std::string presence_instance(const char* state, const std::string& instance);
  // on_connect: the instance's own "online" (with --instance-id), then the hub's.
  void presence_connected();
  // MQTT thread, with --instance-id: a message on the hub-level status topic or an
  // instance's status topic (true: it was one, handled). Seeing "offline" on the hub's
  // topic, or on its own, while serving, the instance publishes "online" again; the
  // hub's "offline" naming another instance (its Last Will) is published on that
  // instance's topic.
  bool presence_message(const mqtt::Message& m);
  // stop(), with --instance-id: publishes its own "offline", waits (bounded) until the
  // broker sends it back, then the hub-level "offline" only when no other instance is
  // online (by the instances' topics and the lease manager's live count).
  void presence_stop();
  static constexpr int kPresenceWaitMs = 3000;
  std::mutex presence_mu_;
  std::condition_variable presence_cv_;
  std::map<std::string, bool> presence_;  // instance id -> online, as last seen
  bool presence_own_offline_ = false;     // stop(): its own "offline" came back
  std::unique_ptr<Metrics> metrics_;  // --metrics-listen (null: off); last, so it stops first
};

}  // namespace picopay::hub
