// picopay-hub engine core: what the hub does with one inbound message, as pure functions.
// A channel view (the cached Chan, changed in memory only: that is its new value), the
// message and a read-only environment (EngineEnv) in; the writes, replies, chain jobs,
// deposits and requests for other channels out (Effects). No ledger write, no MQTT, no
// chain call and no global inside: Hub (engine.cpp) applies the Effects in its write
// transaction and releases replies, chain jobs and deposits only after COMMIT.
// Unit tests: tests/hub/engine_core_test.cpp (no ledger, no broker, no chain).
#pragma once

#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "chain_follow.hpp"
#include "chain_worker.hpp"
#include "ledger/ledger.hpp"
#include "parallel.hpp"
#include "picopay/agent/history.hpp"
#include "picopay/channel.hpp"
#include "picopay/policy.hpp"
#include "picopay/signer.hpp"

namespace picopay::hub {

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
// used evicted first; see Hub::evict()). An idle channel holds its latest state and small
// empty containers, under 1 KB; its open threads are held only while it has any, and the
// thread root's scratch space is one buffer of the worker (cache.cpp thread_scratch()).
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
  // volatile: txCount[1] of the latest chain read for this channel's updates (the answer
  // to a parked one, engine_replay_parked) that showed it open, not emptied; 0: none.
  // An emptied mark of lower counts is older than that read (engine_mark_current).
  uint64_t open_read_tx_count_chain = 0;
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
  // until the answer (engine_replay_parked). Null: nothing waits.
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
  // ThreadSet: grows `threads` on demand; compact() gives the room back (cache.cpp).
  ThreadSet set();
  void compact() {
    if (threads.size() == thread_count && threads.capacity() == thread_count) return;
    threads.resize(thread_count);
    threads.shrink_to_fit();
  }
  bool outstanding() const { return !requests.empty() && requests.front().id != 0; }
};

// A message the hub publishes (a reply, a HubRequest), only after the COMMIT that stored
// what it says.
struct Out {
  std::string topic;
  Bytes payload;
  bool retain = false;
  std::string response_topic;
  uint64_t corr = 0;
  bool has_corr = false;
};

// A collateral deposit (or hub-only withdrawal) the user countersigned: stored in the
// deposits table in the transaction of the countersignature, posted to the chain worker
// after COMMIT (docs/operations.md "Inside the hub").
struct DepositJob {
  Address user;
  SignedChannelState state;
};

// ---- the outputs of a step ----

// One write of the ledger (ledger/ledger.hpp), applied in order inside the open
// transaction; `key` is the channel's (Chan::key).
namespace write {
struct InsertUpdate {  // Ledger::insert_update: the user's update, the Ack, the double-signed state
  std::string key;
  uint64_t tx = 0;
  Bytes request, reply, state;
};
struct SaveChannel {  // Ledger::save_channel: the latest state and the open threads
  std::string key;
  uint64_t tx = 0;
  Bytes state, threads;
};
struct InsertHistory {  // Ledger::insert_history
  std::string key;
  Ledger::HistoryRow row;
};
struct SaveDeposit {  // Ledger::save_deposit: a deposit job (DepositJob) stored
  std::string key;
  uint64_t tx = 0;
  Bytes state;
};
struct SaveRequests {  // Ledger::save_requests, then delete_legacy if `delete_legacy`
  std::string key;
  uint64_t last_request_id = 0;
  std::vector<Ledger::RequestRow> rows;
  bool delete_legacy = false;
};
}  // namespace write
using LedgerWrite =
    std::variant<write::InsertUpdate, write::SaveChannel, write::InsertHistory, write::SaveDeposit, write::SaveRequests>;

// A request the step wants added (and pumped) in another channel: the mirror of a
// payer's OpenThread in the payee's channel, the payer's CloseThread after the payee's.
struct RoutedRequest {
  Address to{};
  ChannelUpdate update{};  // reason + args (txCountGlobal 0)
};

// A metrics event (metrics.hpp) of the step.
struct MetricEvent {
  enum class Kind { NackSent, Refused, Countersigned };
  Kind kind = Kind::NackSent;
  UpdateReason reason = UpdateReason::Payment;
  Status status = Status::Ok;
};

struct LogLine {
  const char* level = "info";
  std::string text;
};

struct Effects {
  std::vector<LedgerWrite> writes;
  std::vector<Out> replies;  // replies and HubRequests, in order; released after COMMIT
  std::vector<ChainJob> chain_jobs;  // ReadChannel for a parked update; posted after COMMIT
  std::vector<DepositJob> deposits;  // posted to the chain worker after COMMIT
  std::vector<RoutedRequest> requests_for_other_channels;
  std::vector<MetricEvent> metrics;
  std::vector<LogLine> logs;
  bool timer = false;          // the channel has a request timer now (re-send or backoff)
  bool reserve_wait = false;   // the channel waits for the next reserve reading
  bool reserve_warned = false; // a low-reserve warning was logged (its throttle restarts)
  // A read of the environment failed (EngineEnv::find_update, EngineEnv::peer): the
  // step stopped there; the whole transaction must roll back. Empty: none.
  std::string read_error;
  bool failed() const { return !read_error.empty(); }
  void clear() { *this = Effects{}; }
};

// ---- the read-only environment of a step ----
struct EngineEnv {
  Address hub{};
  Address contract{};
  const Signer* signer = nullptr;
  const PrivateKey* key = nullptr;
  bool verbose = false;
  bool dev_skip_chain_checks = false;
  bool has_chain = false;  // --rpc-url: parked updates, collateral deposits
  HubRate rate{};
  U256 collateral_wei = U256::zero();     // per collateral deposit
  U256 collateral_tokens = U256::zero();  // token base units per deposit (0: the shortfall)
  U256 collateral_max = U256::zero();     // --collateral-max-wei (0: none)
  uint64_t collateral_window_ms = 0;      // the payee flow window
  // The chain worker's latest reading of the hub's reserve (wei), its time (steady ms),
  // the warning threshold and the last warning's time; the stored deposit jobs.
  bool reserve_known = false;
  U256 reserve_wei = U256::zero();
  uint64_t reserve_at_ms = 0;
  U256 reserve_warn = U256::zero();
  uint64_t last_reserve_warn_ms = 0;
  std::string rpc_url;
  const std::vector<DepositJob>* deposit_jobs = nullptr;
  // The clock, as values: steady milliseconds and Unix seconds.
  uint64_t now_ms = 0;
  uint64_t unix_now = 0;
  // The follower's mark of a channel (null: none).
  std::function<const ChainMark*(const Address&)> mark;
  // A stored update (user's wire and the hub's reply) of channel `key` at `tx`; false
  // with `err` on a read error.
  std::function<bool(const std::string& key, uint64_t tx, Bytes& request, Bytes& reply, bool& found, std::string& err)>
      find_update;
  // Another channel's view (the cross-channel rules of threads), read only; null with
  // `err` on a read error.
  std::function<Chan*(const Address& user, std::string& err)> peer;
  // The verify pool's result for this update if it was computed from the channel's
  // current state (engine.cpp precompute), else null. Unset: none.
  std::function<const PaymentJob*(const Chan&, const ChannelUpdate&, const Bytes&)> precomputed;
};

// ---- the steps ----
// Each changes `ch` in memory and appends to `fx`; nothing else.

// An update on the channel's update topic (the user's wire): duplicates get the stored
// reply, a conflict at a used txCountGlobal a Nack BadTxCount, early ones wait in the
// reorder buffer, an update asserting chain facts parks (a ReadChannel job, no reply),
// anything else is validated (channel_accept, the signing policy), countersigned and
// written, and the reorder buffer drained.
void engine_update(Chan& ch, const Bytes& payload, const EngineEnv& env, Effects& fx);
// The chain worker's answer for a channel with parked updates: the updates again, in
// their order, with `f` as the chain facts of the first one that asserts any.
void engine_replay_parked(Chan& ch, const ChainFacts& f, const EngineEnv& env, Effects& fx);
// A Sync request: the latest state, then the outstanding request again.
void engine_sync(Chan& ch, const EngineEnv& env, Effects& fx);
// A Reply on the hub's reply topic: a RequestNack of the outstanding request (counted,
// logged, re-sent after a backoff); anything else is ignored.
void engine_reply(Chan& ch, const Bytes& payload, const EngineEnv& env, Effects& fx);
// A payee's signed collateral request (picopay/agent/collateral_request.hpp; docs/flows.md
// "Collateral"): sized from what it expects and its recent flow within [collateral_wei,
// collateral_max], promised only if the reserve holds it (a deposit request ahead of the
// queue, pumped). A bad, stale, early or replayed request is logged and ignored.
void engine_collateral(Chan& ch, const Bytes& payload, const EngineEnv& env, Effects& fx);
// Adds a request (front: right after the outstanding one) and stores the requests.
void engine_add_request(Chan& ch, const ChannelUpdate& u, bool front, Effects& fx);
// Sends the next request if none is outstanding: the first that applies now (an
// OpenThread waiting for collateral or anything waiting for a pending operation stays);
// drops requests that can never apply (and an outstanding one that no longer does).
void engine_pump(Chan& ch, const EngineEnv& env, Effects& fx);
// Stores the channel's requests (and drops its converted legacy rows).
void engine_save_requests(Chan& ch, Effects& fx);
// Whether request `u` (reason and arguments) applies to the channel's latest state now:
// the core's channel_next_state at latest + 1 (+ 2 for an Invalidation of a half-signed
// latest + 1), with `hub` as the hub's address. Ok, or the core's refusal.
Status engine_request_applies(Chan& ch, const ChannelUpdate& u, const Address& hub);
// The outstanding request, signed (hub_request_sign), on the user's request topic.
bool engine_request_out(const Chan& ch, const EngineEnv& env, Out& o);
// Whether the follower's mark `m` of `ch`'s channel still describes the chain: false for
// an emptied mark whose txCount[1] is below the channel's later read that showed it open
// (Chan::open_read_tx_count_chain: e.g. the ConfirmPending of the new deposit that reopened
// it; counts only grow, so the chain has moved past the empty). The follower drops such a
// mark at its next round; a dispute mark is always current.
bool engine_mark_current(const Chan& ch, const ChainMark& m);
// ChannelInDispute if the chain shows `ch` in dispute, or emptied while the hub's latest
// state still holds funds (any reason but EmptyChannel), by its current mark; else Ok.
Status engine_chain_refusal(const Chan& ch, const ChannelUpdate& u, const EngineEnv& env);
// Whether the reserve reading, less deposits countersigned and not yet on chain, holds
// `amount` wei; logs why not, or a warning when it runs low (at most once a minute).
// Without a fresh reading: false, and fx.reserve_wait.
bool engine_reserve_allows(const U256& amount, const std::string& who, const EngineEnv& env, Effects& fx);
// A hub-only ProposePendingWithdrawal (collateral the hub takes back; the user's fields
// zero): the hub executes it with hubAuthorizedUpdate like a collateral deposit.
bool hub_withdrawal(const ChannelUpdate& u);
// The history row of a countersigned update (history.cpp): what it moved, from the hub's
// side of the user's channel, at `unix_time` (seconds).
agent::HistoryEntry history_entry(const ChannelState& prev, const ChannelState& next, const ChannelUpdate& u,
                                  uint64_t unix_time);
// The history table's row of an entry (history.cpp).
Ledger::HistoryRow history_row(const agent::HistoryEntry& e);
// The ledger's wires of a state and of a channel's open threads.
Bytes encode_state(const SignedChannelState& s);
Bytes encode_threads(const Chan& ch);

}  // namespace picopay::hub
