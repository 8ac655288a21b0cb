// picopay-hub engine: MQTT callbacks enqueue; one worker thread validates (core
// channel_accept), signs, commits batches to SQLite, and only then publishes replies.
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

// A channel's key, its user as "0x" + 40 lowercase hex digits (mqtt::topic_address),
// held inline (a std::string of 42 characters would take a heap block per cached channel);
// it converts to std::string wherever one is wanted.
struct ChanKey {
  char text[43] = {};
  ChanKey& operator=(const std::string& v) {
    const size_t n = v.size() < sizeof text - 1 ? v.size() : sizeof text - 1;
    std::memcpy(text, v.data(), n);
    text[n] = 0;
    return *this;
  }
  operator std::string() const { return std::string(text); }
};
inline std::string operator+(const ChanKey& k, const char* t) { return std::string(k) + t; }
inline std::string operator+(const ChanKey& k, const std::string& t) { return std::string(k) + t; }
inline std::string operator+(const std::string& t, const ChanKey& k) { return t + std::string(k); }
inline std::string operator+(const char* t, const ChanKey& k) { return t + std::string(k); }

// A map allocated on its first insert and freed when emptied by erase(): 8 bytes while
// empty (the channel cache holds many channels with an empty reorder buffer).
template <class M>
class LazyMap {
 public:
  bool empty() const { return !m_ || m_->empty(); }
  typename M::iterator begin() { return m_ ? m_->begin() : none().begin(); }
  typename M::iterator end() { return m_ ? m_->end() : none().end(); }
  typename M::mapped_type& operator[](const typename M::key_type& k) {
    if (!m_) m_ = std::make_unique<M>();
    return (*m_)[k];
  }
  void erase(typename M::iterator it) {
    m_->erase(it);
    if (m_->empty()) m_.reset();
  }

 private:
  static M& none() {
    static M empty;
    return empty;
  }
  std::unique_ptr<M> m_;
};

// `picopay-hub history ...` (history.cpp): prints a user's history from the store.
int history_main(int argc, char** argv);
// From a SIGHUP handler (async-signal-safe): the hub rereads its exchange rate file on its
// next round (rate.cpp).
void rate_reload_request();
// The history table's row of an entry (history.cpp).
Ledger::HistoryRow history_row(const agent::HistoryEntry& e);

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
  // A change the hub wants in a channel, asked for with a HubRequest (the user proposes
  // it; docs/mqtt-protocol.md). `id` is 0 until the request is sent; at most one request
  // per channel is sent and outstanding, and it is always the first.
  struct Request {
    uint64_t id = 0;
    ChannelUpdate update{};  // reason + args (txCountGlobal 0)
    // volatile: after a RequestNack the request waits (at the back) until not_before_ms,
    // or until the channel moves on from the txCountGlobal it was refused at
    unsigned nacks = 0;
    uint64_t not_before_ms = 0;
    uint64_t nacked_at_tx = 0;
  };
  // A cached channel (the channel cache: at most --channel-cache of them, least recently
  // used evicted first; see evict()). An idle channel holds its latest state and small
  // empty containers, under 1 KB; its open threads are held only while it has any, and the
  // thread root's scratch space is one buffer of the worker (thread_scratch()).
  struct Chan {
    Address user{};
    ChanKey key;  // lowercase 0x user
    SignedChannelState latest{};
    std::vector<ThreadState> threads;  // the open threads (size thread_count when compact)
    size_t thread_count = 0;
    LazyMap<std::map<uint64_t, std::vector<Bytes>>> future;  // reorder buffer (unsigned, in memory)
    std::vector<Request> requests;  // stored (table requests) with the update that changes them
    uint64_t last_request_id = 0;  // stored (table request_ids)
    // A hub-signed proposal of an earlier version is outstanding for this txCountGlobal:
    // there the hub countersigns only a proposal of exactly that update (the same state),
    // never another state with that txCountGlobal. 0 = none.
    uint64_t legacy_tx = 0;
    // The update of that earlier hub-signed proposal, exactly as signed (its timeout
    // included): the only update countersigned at legacy_tx. Only on such channels (an
    // update is 888 bytes; an idle cached channel must stay under 1 KB).
    std::unique_ptr<ChannelUpdate> legacy_update;
    bool legacy_unsaved = false;  // legacy rows converted in memory, not yet stored as requests
    // volatile: the outstanding request's re-send schedule and RequestNack counters
    // (an evicted channel's counters start again at 0)
    uint64_t resend_at_ms = 0;
    uint64_t nacks_total = 0;
    Status last_nack = Status::Ok;
    bool dirty = false;
    std::chrono::steady_clock::time_point status_at{};  // last retained status publish
    // volatile, collateral.cpp: the last update (steady ms), whether the hub funded this
    // channel (history table), and for a payee only (allocated on its first thread
    // settlement, so an idle channel pays 8 bytes): the thread payments it received
    // (steady ms, wei) within the flow window and its last collateral request's time
    uint64_t active_ms = 0;
    bool collateralized = false;
    struct PayeeFlow {
      std::deque<std::pair<uint64_t, U256>> received;
      uint64_t collateral_time = 0;
    };
    std::unique_ptr<PayeeFlow> flow;
    // An update asserting chain facts waits here (unanswered) for the chain worker's read
    // of the channel (ChainJob ReadChannel), and so do the channel's later updates that
    // arrive meanwhile (at most kFutureMax, identical bytes once): no reply, no signature
    // until the answer (engine.cpp replay_parked). Null: nothing waits.
    struct Parked {
      std::vector<Bytes> updates;
      bool replaying = false;  // the answer is being applied
      bool answered = false;   // `facts` is the answer, not used yet
      ChainFacts facts{};
    };
    std::unique_ptr<Parked> parked;
    Chan* lru_prev = nullptr;  // the cache's recency list (most recent at the head)
    Chan* lru_next = nullptr;
    // The open threads with room for one more (up to kThreadCap), for the core's
    // ThreadSet: grows `threads` on demand; compact() gives the room back.
    ThreadSet set();
    void compact() {
      if (threads.size() == thread_count && threads.capacity() == thread_count) return;
      threads.resize(thread_count);
      threads.shrink_to_fit();
    }
    bool outstanding() const { return !requests.empty() && requests.front().id != 0; }
  };
  struct Out {
    std::string topic;
    Bytes payload;
    bool retain = false;
    std::string response_topic;
    uint64_t corr = 0;
    bool has_corr = false;
  };

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
  // An update that needs the chain's answer first: kept unanswered in ch.parked and a
  // read of the channel asked of the chain worker (once per wait).
  void park(Chan& ch, const Bytes& payload);
  // The chain worker's answer for a channel with parked updates: the updates again, in
  // their order, with `f` as the chain facts of the first one that asserts any.
  void replay_parked(Chan& ch, const ChainFacts& f, std::vector<Out>& outs);
  bool park_ = false;  // set by chain_facts(): the update must wait for the chain
  Chan* channel(const Address& user);
  void handle_update(Chan& ch, const Bytes& payload, std::vector<Out>& outs);
  bool apply_update(Chan& ch, const ChannelUpdate& u, const Bytes& payload, std::vector<Out>& outs);
  // A Reply on the hub's reply topic: a RequestNack of the outstanding request (counted,
  // logged, re-sent after a backoff); anything else is ignored.
  void handle_reply(Chan& ch, const Bytes& payload, std::vector<Out>& outs);
  void handle_sync(Chan& ch, std::vector<Out>& outs);
  void nack(Chan& ch, uint64_t tx, Status s, std::vector<Out>& outs);
  // The hub-side checks of a user proposal that channel_accept passed: the signing policy
  // (policy_hub_countersigns with the channel's requests, the rate, inventory and chain
  // facts) and the cross-channel rules of threads.
  Status check_policy(Chan& ch, const ChannelUpdate& u);
  // The chain facts of `ch` for an update asserting one: the chain worker's answer for
  // this update (ch.parked), else park_ is set and the update waits for one (dev:
  // synthesised for ConfirmPending with --dev-skip-chain-checks). `has_access` false: no
  // chain at all.
  ChainFacts chain_facts(const Chan& ch, UpdateReason reason, bool& has_access);
  void after_accept(Chan& ch, const ChannelUpdate& u, std::vector<Out>& outs);
  // Asks for `p` in `to`'s channel, inside the current write transaction: queued and
  // pumped here when this is the only instance or the transaction holds `to`'s partition
  // under its fence (lease_fenced); otherwise written to the ledger's forwarded requests
  // in this transaction, for the partition's holder to queue (lease_take_forwarded).
  // Errors: tx_failed_ (txerr_).
  void route_request(const Address& to, const ChannelUpdate& p, std::vector<Out>& outs);
  // Payee channel: if the OpenThread mirrors requested need more hub wei than the channel
  // holds plus deposits on their way, requests a deposit of the shortfall (rounded up to a
  // multiple of the configured collateral) ahead of them.
  void ensure_collateral(Chan& payee, std::vector<Out>& outs);
  // Hub wei (and tokens) the OpenThread mirrors requested in `ch` will lock.
  U256 mirrored_wei(const Chan& ch, U256* tokens = nullptr) const;
  // Adds a request (front: right after the outstanding one) and stores the requests.
  void add_request(Chan& ch, const ChannelUpdate& u, bool front = false);
  // Whether `u` applies to the channel's latest state now (channel_next_state).
  Status request_applies(Chan& ch, const ChannelUpdate& u);
  // Sends the next request if none is outstanding: the first that applies now (an
  // OpenThread waiting for collateral or anything waiting for a pending operation stays);
  // drops requests that can never apply (and an outstanding one that no longer does).
  void pump(Chan& ch, std::vector<Out>& outs);
  // Rewrites the channel's stored requests in the current transaction.
  void persist_requests(Chan& ch);
  void persist_channel(Chan& ch);
  // The outstanding request, signed (hub_request_sign), on the user's request topic.
  bool request_out(Chan& ch, Out& o);
  void schedule_resend(Chan& ch, uint64_t delay_ms);
  // Re-sends outstanding requests whose timer expired; sends the next request of channels
  // whose refused requests' backoff expired (worker loop).
  void request_timers();
  // Whether a skip (Invalidation of the half-signed state latest + 1) is requested in `ch`:
  // then nothing else is countersigned at latest + 1.
  bool skip_requested(const Chan& ch) const;
  // After refusing the user's valid proposal at latest + 1 for good: requests its
  // Invalidation (docs/mqtt-protocol.md), ahead of everything.
  void request_skip(Chan& ch, std::vector<Out>& outs);
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
  // ChannelInDispute if the chain shows `ch` in dispute, or emptied while the hub's
  // latest state still holds funds (any reason but EmptyChannel); else Ok.
  Status chain_refusal(const Chan& ch, const ChannelUpdate& u) const;
  void fail(const std::string& what);
  // Before the serial pass: pre-validate and countersign each channel's run of
  // consecutive Payment updates in the batch on the pool (ParallelAcceptor).
  void precompute(const std::vector<mqtt::Message>& batch);
  // The precomputed result for this update if it was computed from the channel's current
  // state, else null.
  const PaymentJob* precomputed(const Chan& ch, const ChannelUpdate& u, const Bytes& payload) const;
  Bytes encode_state(const SignedChannelState& s);
  Bytes encode_threads(const Chan& ch);

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
  // and deletes the stored job in one transaction.
  struct DepositJob {
    Address user;
    SignedChannelState state;
  };
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
  // A hub-only ProposePendingWithdrawal (collateral the hub takes back; the user's fields
  // zero): the hub executes it with hubAuthorizedUpdate like a collateral deposit.
  static bool hub_withdrawal(const ChannelUpdate& u);
  // A payee's signed collateral request (picopay/agent/collateral_request.hpp): sized from
  // what it expects and its recent flow within [collateral_wei, collateral_max_wei],
  // promised only if the reserve holds it (a deposit request ahead of the queue).
  void handle_collateral(Chan& ch, const Bytes& payload, std::vector<Out>& outs);
  // After a countersigned update: activity time, the payee's received flow.
  void note_activity(Chan& ch, const ChannelUpdate& u);
  // Worker loop: takes back the hub balance of channels idle for collateral_idle_seconds
  // (a hub-only withdrawal request), and checks the reserve now and then.
  void collateral_round();
  // Whether the chain worker's latest reading of the reserve (at most kReserveFreshMs
  // old), less deposits countersigned and not yet on chain, holds `amount` wei; logs a
  // warning with the command that funds it when it does not or when it is low
  // (reserve_warn_wei). Without a fresh reading: false, and `ch` (if any) is pumped again
  // when the next reading arrives.
  bool reserve_allows(const U256& amount, const std::string& who, Chan* ch = nullptr);
  static constexpr uint64_t kReserveFreshMs = 10000;
  bool reserve_known_ = false;
  U256 reserve_wei_ = U256::zero();
  uint64_t reserve_at_ms_ = 0;
  std::set<std::string> reserve_waiters_;  // channel keys
  U256 collateral_max_ = U256::zero();
  U256 reserve_warn_ = U256::zero();
  uint64_t last_collateral_round_ms_ = 0;
  uint64_t last_reserve_warn_ms_ = 0;
  // The history row of a countersigned update (history.cpp): what it moved, from the
  // hub's side of the user's channel, with the time.
  static agent::HistoryEntry history_entry(const ChannelState& prev, const ChannelState& next, const ChannelUpdate& u);
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
