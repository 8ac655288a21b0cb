// picopay-agent runtime: one worker thread owns the state; the MQTT network thread and the
// stdin reader only enqueue events.
//
// The device side of the protocol is the core's Session (picopay/session.hpp,
// docs/device-session.md): it proposes, checks the hub's replies and requests under the
// signing policy (docs/signing-policy.md), and says what to persist before anything is
// sent. This file only carries that out: MQTT in and out, the state dir, the meter, the
// chain reads a policy rule needs, and the decisions of a metered payer (when to pay,
// open or close a thread, deposit).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <set>
#include <tuple>
#include <memory>
#include <mutex>
#include <thread>

#include "picopay/agent/collateral_request.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/agent/quotes.hpp"
#include "picopay/agent/service.hpp"
#include "picopay/agent/units.hpp"
#include "picopay/agent/log.hpp"
#include "picopay/agent/options.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/token.hpp"
#include "picopay/codec.hpp"
#include "picopay/device/agent.hpp"
#include "asset.hpp"
#include "serve_switch.hpp"
#include "price.hpp"
#include "picopay/device/tower_client.hpp"
#include "picopay/device/chain_follow.hpp"
#include "picopay/device/flows.hpp"
#include "picopay/device/meter.hpp"
#include "picopay/device/state.hpp"
#include "picopay/keyfile.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/port/posix.hpp"
#include "picopay/session.hpp"

namespace picopay::device {
namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

uint64_t now_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

uint64_t unix_now() {
  port::PosixClock clock;
  return clock.unix_seconds();
}

// Open threads a session can hold at once (payer: one at a time in practice; payee:
// one per paying device).
constexpr size_t kThreadCapacity = 256;
// Closed threads kept in the record for `status` and reconciliation.
constexpr size_t kClosedHistory = 1024;
// Payee: thread payments that arrived before the hub's OpenThread request (bounded,
// expiring: any device can publish on the thread topic).
constexpr size_t kEarlyMax = 256;
constexpr uint64_t kEarlyTtlMs = 60000;
// An exchange command waits this long for the hub's rate and for the hub to hold what it
// would give out (running agent: our payments grow it), then is refused.
constexpr uint64_t kExchangeCommandWaitMs = 30000;
constexpr uint64_t kExchangeOneshotWaitMs = 5000;
constexpr uint64_t kSwitchResendMs = 30000;  // while not serving, the switch-off command again

struct Event {
  enum Kind { Mqtt, Line, Eof, Connected } kind;
  mqtt::Message msg;
  std::string line;
};

class Queue {
 public:
  void push(Event e) {
    {
      std::lock_guard<std::mutex> l(mu_);
      q_.push_back(std::move(e));
    }
    cv_.notify_one();
  }
  bool pop(Event& e, int timeout_ms) {
    std::unique_lock<std::mutex> l(mu_);
    if (!cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return !q_.empty(); })) return false;
    e = std::move(q_.front());
    q_.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> q_;
};

// One log line per reason per interval for what counterparties send: any device can
// publish on a payee's thread topic, so a flood of bad messages must not flood the log.
class RateLimitedLog {
 public:
  bool allow(Status why, uint64_t t_ms, uint64_t* suppressed) {
    Slot& s = slots_[static_cast<uint8_t>(why)];
    if (t_ms >= s.until) {
      *suppressed = s.count;
      s.count = 0;
      s.until = t_ms + 10000;
      return true;
    }
    ++s.count;
    return false;
  }

 private:
  struct Slot {
    uint64_t until = 0;
    uint64_t count = 0;
  };
  Slot slots_[256];
};

class Agent {
 public:
  explicit Agent(const Config& c) : cfg_(c), log_(c.verbose ? port::LogLevel::Debug : port::LogLevel::Info) {}
  int run();

 private:
  void logf(port::LogLevel lv, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
  void log_ignored(const char* what, Status why);
  uint64_t last_meter_ms_ = 0;    // the last message on the meter topic (or the connect)
  uint64_t meter_warned_ms_ = 0;  // the last "no meter reading" warning
  bool notified_ready_ = false;   // READY=1 sent to systemd
  bool save();
  void fatal(const std::string& m) {
    logf(port::LogLevel::Error, "%s", m.c_str());
    exit_code_ = 1;
    done_ = true;
  }
  // Carries out what the session returned: persist first, then send, then bookkeeping.
  void carry(Status st, const Effects& fx, const char* what);
  void publish(const OutMessage& m);
  void refresh_view();
  void publish_status(bool force);
  void handle(const Event& e);
  void on_thread_message(const std::vector<uint8_t>& p);
  void retry_early();
  void on_meter(const MeterReading& r);
  void step();
  bool read_chain(ChainFacts& facts, std::string& err);
  void feed_chain();
  bool onchain_deposit();
  // Reads our channel on chain every kFollowMs (chain_follow.hpp): answers a stale exit,
  // feeds the Session the facts, and holds payments while it is in dispute or emptied.
  void follow_chain();
  bool pay_units(uint64_t units);
  long sender_thread() const;  // slot of the open thread we pay on, or -1
  // Flows (flows.hpp, docs/flows.md): the command inbox, refill, cash-out, history.
  // flows_step: true if it proposed something (the caller does nothing else this round).
  bool flows_step(const ChannelState& c);
  bool start_command(const Command& cmd, const ChannelState& c);
  bool parse_either(const std::string& text, bool& is_token, U256& v, std::string& err) const;
  void finish_command(bool ok, const std::string& error);
  void flows_on_effects(const Effects& fx);
  void history(HistoryEntry e);
  void history_update(const Effects& fx);

  struct Running {
    Command cmd;
    bool confirmed_stage = false;  // the proposal is double-signed: on chain + ConfirmPending next
    uint64_t proposal_tx = 0;      // txCountGlobal of our proposal
    uint64_t started_ms = 0;
    bool automatic = false;        // refill / cash-out (no inbox file)
    units::Asset asset = units::eth();  // what cmd.wei counts (the channel's asset; exchange: the asset sold)
  };
  std::unique_ptr<Running> cmd_;
  uint64_t last_inbox_ms_ = 0;
  Hash32 last_tx_{};          // our last on-chain userAuthorizedUpdate
  uint64_t last_tx_gas_ = 0;
  bool has_last_tx_ = false;
  ChannelState hist_prev_{};  // the channel state of the last history entry
  std::map<std::pair<std::string, uint64_t>, U256> received_seen_;  // payee: thread (payer, id) -> wei
  std::set<std::tuple<std::string, std::string, uint64_t>> threads_seen_open_, threads_seen_closed_;
  bool hist_failed_ = false;
  bool refill_failed_ = false;
  uint64_t last_collateral_ask_ms_ = 0;  // an automatic refill could not start: no more tries this run

  Config cfg_;
  port::PosixLog log_;
  Signer signer_;
  PrivateKey key_{};
  AgentState st_;
  std::vector<SessionThread> slots_;
  std::vector<ThreadState> set_items_;
  std::vector<Hash32> set_scratch_;
  Session s_;
  std::unique_ptr<mqtt::Client> mq_;
  std::unique_ptr<chain::RpcClient> rpc_;
  std::unique_ptr<chain::Wallet> wallet_;
  std::unique_ptr<chain::ChannelManagerClient> cm_;
  Queue q_;
  uint64_t last_status_ms_ = 0;
  uint64_t last_chain_ms_ = 0;
  bool needs_chain_ = false;
  bool status_dirty_ = true;
  bool eof_ = false;
  bool stopping_ = false;
  bool done_ = false;
  int exit_code_ = 0;
  bool chain_failed_ = false;
  uint64_t deposit_retry_ms_ = 0;  // steady ms: the next try of our on-chain deposit
  bool reported_halt_ = false;
  struct Early {
    std::vector<uint8_t> bytes;
    uint64_t at_ms;
  };
  std::deque<Early> early_;
  RateLimitedLog ignored_log_;
  uint64_t payments_ = 0;
  int refusals_ = 0;
  Status last_refusal_ = Status::Ok;
  std::string chain_note_;  // why a rule that needs the chain cannot be satisfied (status JSON)
  std::unique_ptr<OwnChannelFollower> follow_;
  std::unique_ptr<TowerClient> tower_;  // picopay-tower handovers (cfg_.has_tower)
  void tower_step(bool flush);
  void tower_log(bool warn, const std::string& line);
  uint64_t last_follow_ms_ = 0;
  bool chain_hold_ = false;  // the chain shows our channel in dispute or emptied: no payments
  static constexpr uint64_t kFollowMs = 2000;
  units::Asset asset_ = units::eth();  // what the channel pays in (docs/tokens.md)
  bool tok() const { return asset_.token; }
  std::string fmt(const U256& v) const { return units::format(v, asset_); }
  bool resolve_amounts();
  // The ChannelManager's token (token false: none) for deposits and exchanges in the
  // other asset than the one we pay in.
  units::Asset token_asset_{};
  U256 dep_wei_ = U256::zero(), dep_tok_ = U256::zero();  // our first deposit
  // The hub's signed exchange rate (quotes.hpp) and the exchange asked for at start.
  void on_rate(const std::vector<uint8_t>& p);
  bool exchange_step(uint64_t now, bool last_chance);
  void exchange_refused(const std::string& why);
  quotes::Rate rate_{};
  bool has_rate_ = false;
  bool ex_todo_ = false, ex_sell_wei_ = true, ex_waiting_logged_ = false;
  U256 ex_amount_ = U256::zero(), ex_reference_ = U256::zero();
  // The seller's price list (price.hpp). Payee: publishes it, compares delivered with
  // received. Payer (--max-price): pays by the payee's list.
  void on_prices(const std::vector<uint8_t>& p);
  void publish_prices(uint64_t now);
  void payee_duties(uint64_t now);
  bool payer_price_ready(uint64_t now, bool last_chance);
  U256 sell_price_ = U256::zero(), max_price_ = U256::zero();
  bool by_list_ = false, has_list_ = false;
  quotes::PriceList list_{};
  std::string list_refusal_;
  uint64_t prices_until_ = 0;
  bool serving_ = true, baseline_set_ = false;
  ServeSwitch switch_;               // --serve-switch (kind empty: none)
  uint64_t switch_sent_ms_ = 0;      // the last OFF sent (re-sent while not serving)
  void serve_switch_send(bool on);
  U256 received_base_ = U256::zero();
  ServeCheck serve_{};
};

void Agent::logf(port::LogLevel lv, const char* fmt, ...) {
  char buf[1024];
  int n = std::snprintf(buf, sizeof buf, "[%s] ", cfg_.name.c_str());
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf + n, sizeof buf - static_cast<size_t>(n), fmt, ap);
  va_end(ap);
  // The one log format of every picopay program (agent/common log.hpp).
  const agent::LogLevel l = lv == port::LogLevel::Debug  ? agent::LogLevel::Debug
                            : lv == port::LogLevel::Info ? agent::LogLevel::Info
                            : lv == port::LogLevel::Warn ? agent::LogLevel::Warn
                                                         : agent::LogLevel::Error;
  agent::log(l, buf);
}

void Agent::log_ignored(const char* what, Status why) {
  uint64_t suppressed = 0;
  if (!ignored_log_.allow(why, now_ms(), &suppressed)) return;
  if (suppressed > 0)
    logf(port::LogLevel::Warn, "%s ignored: %s (and %llu more like it in the last 10 s)", what, status_message(why),
         static_cast<unsigned long long>(suppressed));
  else
    logf(port::LogLevel::Warn, "%s ignored: %s", what, status_message(why));
}

// The human/tool view of the record (channel, pending, threads) from the session. Closed
// threads stay in the view (bounded) for `status` and reconciliation.
void Agent::refresh_view() {
  st_.channel = s_.channel();
  st_.has_pending = s_.has_pending();
  if (st_.has_pending) st_.pending = s_.pending();
  st_.next_thread_id = s_.next_thread_id();
  for (auto& t : st_.threads) t.open = false;
  for (size_t i = 0; i < s_.thread_capacity(); ++i) {
    const SessionThread& x = s_.thread_slot(i);
    if (!x.used) continue;
    long k = st_.find_thread(x.initial.state.sender, x.initial.state.receiver, x.initial.state.threadId);
    if (k < 0) {
      st_.threads.push_back(ThreadRecord{});
      k = static_cast<long>(st_.threads.size() - 1);
    }
    ThreadRecord& r = st_.threads[static_cast<size_t>(k)];
    r.sender = x.sender;
    r.open = x.open;
    r.closing = x.closing;
    r.initial = x.initial;
    r.latest = x.latest;
  }
  size_t closed = 0;
  for (const auto& t : st_.threads) closed += t.open ? 0 : 1;
  for (size_t i = 0; i < st_.threads.size() && closed > kClosedHistory;) {
    if (!st_.threads[i].open && s_.find_thread(st_.threads[i].initial.state.sender, st_.threads[i].initial.state.receiver,
                                               st_.threads[i].initial.state.threadId) < 0) {
      st_.threads.erase(st_.threads.begin() + static_cast<long>(i));
      --closed;
    } else {
      ++i;
    }
  }
}

bool Agent::save() {
  std::vector<uint8_t> rec(session_record_max(kThreadCapacity));
  size_t n = 0;
  Status s = s_.serialise(rec.data(), rec.size(), &n);
  if (s != Status::Ok) {
    fatal(std::string("cannot serialise the session: ") + status_message(s));
    return false;
  }
  rec.resize(n);
  st_.session = std::move(rec);
  refresh_view();
  std::string err;
  if (!state_save(cfg_.state_dir, st_, err)) {
    fatal(err);
    return false;
  }
  status_dirty_ = true;
  return true;
}

void Agent::publish(const OutMessage& m) {
  mqtt::PublishProps props;
  switch (m.route) {
    case Route::ToHubUpdate:
      props.response_topic = mqtt::topic_reply(st_.user);
      props.correlation = mqtt::correlation_encode(m.correlation);
      mq_->publish(mqtt::topic_update(st_.hub, st_.user), m.bytes, m.len, 1, false, &props);
      break;
    case Route::ToHubReply:
      props.correlation = mqtt::correlation_encode(m.correlation);
      mq_->publish(mqtt::topic_hub_reply(st_.hub, st_.user), m.bytes, m.len, 1, false, &props);
      break;
    case Route::ToHubSync:
      props.response_topic = mqtt::topic_reply(st_.user);
      mq_->publish(mqtt::topic_sync(st_.hub, st_.user), nullptr, 0, 1, false, &props);
      break;
    case Route::ToThreadReceiver:
      mq_->publish(mqtt::topic_thread_update(m.to), m.bytes, m.len, 1, false);
      break;
    case Route::None:
      break;
  }
}

void Agent::carry(Status st, const Effects& fx, const char* what) {
  flows_on_effects(fx);
  // Bookkeeping that must be in the same record as the session's change.
  if (fx.event == SessionEvent::UpdateCompleted) {
    refusals_ = 0;
    last_refusal_ = Status::Ok;
    if (fx.reason == UpdateReason::Exchange) {
      const ChannelState& c = s_.channel().state;
      logf(port::LogLevel::Info, "exchange double-signed (txCountGlobal %llu): we hold %s and %s",
           static_cast<unsigned long long>(fx.txCountGlobal), units::format(c.balanceWeiUser, units::eth()).c_str(),
           token_asset_.token ? units::format(c.balanceTokenUser, token_asset_).c_str() : "no tokens");
    }
    if (fx.reason == UpdateReason::Payment) {
      st_.units_paid = st_.pending_units;
      st_.wei_paid = st_.pending_wei;
      ++payments_;
    } else if (fx.reason == UpdateReason::EmptyChannel) {
      // The contract paid the channel out; the configured deposit goes in again.
      st_.deposited = false;
      logf(port::LogLevel::Warn, "EmptyChannel %llu double-signed: the channel is empty, as on chain",
           static_cast<unsigned long long>(fx.txCountGlobal));
    }
    logf(port::LogLevel::Debug, "%s %llu double-signed", update_reason_name(fx.reason),
         static_cast<unsigned long long>(fx.txCountGlobal));
  } else if (fx.event == SessionEvent::ThreadPaymentReceived) {
    ++payments_;
  }
  if (fx.persist && !save()) return;  // persisted before anything leaves
  history_update(fx);                 // after the record that makes it true
  for (size_t i = 0; i < fx.count; ++i) publish(fx.out[i]);
  if (fx.count > 0 || fx.event != SessionEvent::None) status_dirty_ = true;
  if (fx.needsChain) needs_chain_ = true;
  if (fx.refused != Status::Ok) {
    last_refusal_ = fx.refused;
    logf(port::LogLevel::Error, "hub refused our %s %llu: %s (the same signed update is offered again later)",
         update_reason_name(s_.pending().reason), static_cast<unsigned long long>(s_.pending().txCountGlobal),
         status_name(fx.refused));
    if (++refusals_ > 60)
      fatal("the hub keeps refusing our signed update; not signing another state with that txCountGlobal");
  }
  // Kept, not refused: a hub request waiting for chain facts that may still come.
  const bool waiting = fx.needsChain && (st == Status::NeedsChain || st == Status::NotOnChain);
  if (st != Status::Ok && st != Status::Duplicate && st != Status::Busy && st != Status::OutOfSync && !waiting)
    log_ignored(what, st);
  if (s_.halted() && !reported_halt_) {
    reported_halt_ = true;
    logf(port::LogLevel::Error,
         "not signing any channel update: a state double-signed by our key and the hub is neither our state nor "
         "our pending proposal (state dir restored from a backup? the key used elsewhere?), or the hub's "
         "countersignature did not verify; a person has to look (picopay-agent status)");
    status_dirty_ = true;
    exit_code_ = 1;  // a state conflict the agent cannot resolve: stop, non-zero
    done_ = true;
  }
}

void Agent::publish_status(bool force) {
  if (!mq_) return;
  uint64_t t = now_ms();
  if (!force && (!status_dirty_ || t - last_status_ms_ < static_cast<uint64_t>(cfg_.status_interval_ms))) return;
  last_status_ms_ = t;
  status_dirty_ = false;
  U256 received = U256::zero();
  size_t open = 0;
  for (const auto& th : st_.threads) {
    if (!th.sender) (void)u256_add(received, receiver_balance(tok(), th.latest.state), received);
    open += th.open ? 1 : 0;
  }
  char buf[1400];
  std::snprintf(buf, sizeof buf,
                "{\"state\":\"%s\",\"name\":\"%s\",\"txCountGlobal\":%llu,\"meteredWh\":%llu,\"unitsPaid\":%llu,"
                "\"weiPaid\":\"%s\",\"receivedWei\":\"%s\",\"pending\":%s,\"openThreads\":%zu,\"payments\":%llu,"
                "\"signing\":%s,\"lastRefusal\":\"%s\",\"chain\":\"%s\",\"asset\":\"%s\",\"paid\":\"%s\","
                "\"received\":\"%s\",\"serving\":%s,\"deliveredUnits\":%llu,\"behindUnits\":%llu}",
                done_ ? "offline" : "online", cfg_.name.c_str(),
                static_cast<unsigned long long>(s_.channel().state.txCountGlobal),
                static_cast<unsigned long long>(st_.meter.units()), static_cast<unsigned long long>(st_.units_paid),
                json::amount_text(st_.wei_paid).c_str(), json::amount_text(received).c_str(),
                s_.has_pending() ? "true" : "false", open, static_cast<unsigned long long>(payments_),
                s_.halted() ? "false" : "true", last_refusal_ == Status::Ok ? "" : status_name(last_refusal_),
                chain_note_.c_str(), asset_.symbol.c_str(), fmt(st_.wei_paid).c_str(), fmt(received).c_str(),
                serving_ ? "true" : "false", static_cast<unsigned long long>(serve_.delivered_units),
                static_cast<unsigned long long>(serve_.behind_units));
  mq_->publish(mqtt::topic_user_status(st_.user), std::string(buf), 1, true);
}

void Agent::on_thread_message(const std::vector<uint8_t>& p) {
  Effects fx;
  Status st = s_.on_thread_message(p.data(), p.size(), unix_now(), fx);
  if (st == Status::ThreadNotFound) {
    // The hub's OpenThread request may still come: keep it a while (bounded).
    while (early_.size() >= kEarlyMax) early_.pop_front();
    early_.push_back(Early{p, now_ms()});
    return;
  }
  if (st == Status::BadKind && p.size() >= 2 && p[1] == static_cast<uint8_t>(WireKind::ThreadUpdate)) {
    carry(st, fx, "thread payment in the increment form of an older payer (wire kind 0x04; picopay now sends "
                  "its whole thread state, kind 0x06: upgrade the payer)");
    return;
  }
  carry(st, fx, "thread message");
}

void Agent::retry_early() {
  if (early_.empty()) return;
  const uint64_t t = now_ms();
  std::deque<Early> keep;
  bool progress = true;
  while (progress) {
    progress = false;
    keep.clear();
    for (auto& e : early_) {
      if (t - e.at_ms > kEarlyTtlMs) continue;  // expired
      Effects fx;
      Status st = s_.on_thread_message(e.bytes.data(), e.bytes.size(), unix_now(), fx);
      if (st == Status::ThreadNotFound) {
        keep.push_back(std::move(e));
        continue;
      }
      progress = progress || st == Status::Ok;
      carry(st, fx, "thread message");
    }
    early_.swap(keep);
  }
}

long Agent::sender_thread() const {
  for (size_t i = 0; i < s_.thread_capacity(); ++i) {
    const SessionThread& t = s_.thread_slot(i);
    if (t.used && t.sender && t.open && !t.closing) return static_cast<long>(i);
  }
  return -1;
}

void Agent::on_meter(const MeterReading& r) {
  if (st_.meter.apply(r)) {
    status_dirty_ = true;
    if (st_.meter.metered_mwh == 0 && st_.meter.extra_units == 0) save();  // the baseline
  }
}

// ChannelManager's view of our channel (docs/signing-policy.md: the facts ConfirmPending,
// EmptyChannel and Invalidation need).
bool Agent::read_chain(ChainFacts& f, std::string& err) {
  if (!cm_) {
    err = "no rpc URL";
    return false;
  }
  auto on = cm_->channel(st_.user);
  if (!on) {
    err = on.error().to_string();
    return false;
  }
  auto blk = wallet_->rpc().block_by_number("latest");
  if (!blk) {
    err = blk.error().to_string();
    return false;
  }
  f.known = true;
  f.txCountGlobal = on->txCountGlobal;
  f.txCountChain = on->txCountChain;
  f.status = on->status == chain::ChannelStatus::Open ? ChainChannelStatus::Open : ChainChannelStatus::InDispute;
  // After emptyChannel the contract holds nothing for the channel and has recorded a
  // state (txCount[0] > 0); a channel never used has txCount[0] = 0.
  f.emptied = on->status == chain::ChannelStatus::Open && on->weiTotal.is_zero() && on->tokenTotal.is_zero() &&
              on->txCountGlobal > 0 && on->threadCount == 0;
  f.blockTime = blk->timestamp;
  return true;
}

// Feeds the session the chain facts a waiting hub request needs (every 2 s while needed).
void Agent::feed_chain() {
  if (!needs_chain_ || now_ms() - last_chain_ms_ < 2000) return;
  last_chain_ms_ = now_ms();
  if (!cm_) {
    if (chain_note_.empty()) {
      chain_note_ = "a hub request needs the chain and no rpc URL is configured: refused";
      logf(port::LogLevel::Warn, "%s", chain_note_.c_str());
      status_dirty_ = true;
    }
    needs_chain_ = false;
    return;
  }
  ChainFacts f{};
  std::string err;
  if (!read_chain(f, err)) {
    logf(port::LogLevel::Warn, "chain read failed (retrying): %s", err.c_str());
    return;
  }
  needs_chain_ = false;
  Effects fx;
  Status st = s_.on_chain_fact(f, unix_now(), fx);
  carry(st, fx, "chain facts");
}

bool Agent::onchain_deposit() {
  if (!cm_) {
    fatal("a deposit is needed but no rpc URL is configured");
    return false;
  }
  auto on = cm_->channel(st_.user);
  if (!on) {
    // A slow or restarting node: the double-signed deposit state is kept; try again.
    logf(port::LogLevel::Warn, "chain read for our deposit failed (retrying in 5 s): %s", on.error().to_string().c_str());
    deposit_retry_ms_ = now_ms() + 5000;
    return true;
  }
  const SignedChannelState& c = s_.channel();
  Hash32 txh{};
  if (on->txCountChain < c.state.txCountChain) {
    // Never put a state on chain whose countersignature was stored unchecked and is bad.
    const Status ev = s_.verify_evidence();
    if (ev != Status::Ok) {
      fatal(std::string("the hub's countersignature on our deposit does not verify: ") + status_message(ev));
      return false;
    }
    if (!c.state.pendingDepositTokenUser.is_zero()) {
      // The contract takes the token deposit with transferFrom: allow exactly this amount.
      auto ap = chain::erc20_approve(*wallet_, token_asset_.address, st_.contract, c.state.pendingDepositTokenUser);
      if (!ap) {
        logf(port::LogLevel::Warn, "chain: approve %s: %s (retrying in 5 s)", fmt(c.state.pendingDepositTokenUser).c_str(),
             ap.error().to_string().c_str());
        deposit_retry_ms_ = now_ms() + 5000;
        return true;
      }
      logf(port::LogLevel::Info, "token approve %s on chain: %s",
           units::format(c.state.pendingDepositTokenUser, token_asset_).c_str(),
           json::hash_text(ap->transactionHash).c_str());
    }
    auto rc = cm_->user_authorized_update(c.state, c.sigHub);
    if (!rc) {
      if (rc.error().kind == chain::ErrorKind::Reverted) {  // the contract refuses this state: final
        fatal("chain: userAuthorizedUpdate: " + rc.error().to_string());
        return false;
      }
      // No answer in time (eth_estimateGas on a busy node) or a transport error: the
      // transaction may or may not be mined; the next try reads the channel first.
      logf(port::LogLevel::Warn, "chain: userAuthorizedUpdate: %s (retrying in 5 s)", rc.error().to_string().c_str());
      deposit_retry_ms_ = now_ms() + 5000;
      return true;
    }
    txh = rc->transactionHash;
    last_tx_ = txh;
    last_tx_gas_ = rc->gasUsed;
    has_last_tx_ = true;
    logf(port::LogLevel::Info, "%s on chain: %s (gas %llu)",
         c.state.pendingWithdrawalWeiUser.is_zero() && c.state.pendingWithdrawalTokenUser.is_zero() ? "deposit"
                                                                                                  : "withdrawal",
         json::hash_text(txh).c_str(), static_cast<unsigned long long>(rc->gasUsed));
  }
  ChainFacts f{};
  std::string err;
  if (!read_chain(f, err)) {
    logf(port::LogLevel::Warn, "chain read after the deposit failed (retrying in 5 s): %s", err.c_str());
    deposit_retry_ms_ = now_ms() + 5000;
    return true;
  }
  Effects fx;
  Status st = s_.on_chain_fact(f, unix_now(), fx);
  carry(st, fx, "chain facts");
  if (s_.has_pending()) return true;
  st = s_.propose_confirm_pending(txh, unix_now(), fx);
  carry(st, fx, "ConfirmPending");
  return st == Status::Ok || st == Status::NotOnChain;
}

void Agent::follow_chain() {
  if (!follow_ || now_ms() - last_follow_ms_ < kFollowMs) return;
  last_follow_ms_ = now_ms();
  // Only a state both signed, with a countersignature that verifies, is ever sent.
  SignedChannelState latest = s_.channel();
  if (s_.verify_evidence() != Status::Ok) latest.hasSigHub = false;
  auto v = follow_->poll(latest);
  if (!v) {
    logf(port::LogLevel::Warn, "chain follow: cannot read the channel (retrying): %s", v.error().to_string().c_str());
    return;
  }
  if (!v->answered.empty()) logf(port::LogLevel::Warn, "chain: stale exit answered: %s", v->answered.c_str());
  if (!v->error.empty()) logf(port::LogLevel::Error, "chain: cannot answer the exit (retrying): %s", v->error.c_str());
  // Held while an exit runs, or while the chain shows the channel emptied and our latest
  // state still holds something: then only EmptyChannel (the hub requests it) brings it
  // back; once our state is empty too, a new deposit reopens it. A channel we emptied
  // ourselves (a withdrawal of everything) is not a reason to stop.
  const bool hold =
      v->dispute || (v->emptied && policy_check_chain_status(v->facts, s_.channel().state, UpdateReason::Payment) !=
                                       Status::Ok);
  const std::string note = hold ? v->note : "";
  if (note != chain_note_ && (hold || chain_hold_)) {
    if (hold)
      logf(port::LogLevel::Warn, "chain: our channel is %s: payments stopped", note.c_str());
    else if (v->emptied)
      logf(port::LogLevel::Info, "chain: EmptyChannel recorded the empty channel: it takes a new deposit");
    else
      logf(port::LogLevel::Info, "chain: our channel is open again");
    chain_note_ = note;
    status_dirty_ = true;
  }
  if (hold || chain_hold_ || v->emptied) {
    Effects fx;
    Status st = s_.on_chain_fact(v->facts, unix_now(), fx);
    carry(st, fx, "chain facts");
  }
  chain_hold_ = hold;
}

bool Agent::pay_units(uint64_t units) {
  U256 amount{};
  if (u256_mul(cfg_.price_wei, U256::from_u64(units), amount) != Status::Ok) return false;
  U256 wei_after{};
  if (u256_add(st_.wei_paid, amount, wei_after) != Status::Ok) return false;
  Effects fx;
  if (!cfg_.has_pay_to) {
    if (user_balance(tok(), s_.channel().state) < amount) return false;
    const uint64_t pu = st_.pending_units;
    const U256 pw = st_.pending_wei;
    st_.pending_units = st_.units_paid + units;
    st_.pending_wei = wei_after;
    const AssetAmounts pay = in_asset(tok(), amount);
    Status st = s_.propose_payment(pay.wei, pay.token, unix_now(), fx);
    if (st != Status::Ok) {
      st_.pending_units = pu;
      st_.pending_wei = pw;
      if (st != Status::Busy && st != Status::OutOfSync)
        logf(port::LogLevel::Error, "cannot pay %llu units: %s", static_cast<unsigned long long>(units),
             status_message(st));
      return st == Status::Busy;
    }
    carry(st, fx, "payment");
    return true;
  }
  long idx = sender_thread();
  if (idx < 0) return false;
  const SessionThread& rec = s_.thread_slot(static_cast<size_t>(idx));
  if (sender_balance(tok(), rec.latest.state) < amount) return false;
  const uint64_t before_units = st_.units_paid;
  const U256 before_wei = st_.wei_paid;
  st_.units_paid += units;  // in the same record as the signed thread state
  st_.wei_paid = wei_after;
  const AssetAmounts pay = in_asset(tok(), amount);
  Status st = s_.thread_pay(rec.initial.state.receiver, rec.initial.state.threadId, pay.wei, pay.token, fx);
  if (st != Status::Ok) {
    st_.units_paid = before_units;
    st_.wei_paid = before_wei;
    fatal(std::string("thread payment: ") + status_message(st));
    return false;
  }
  ++payments_;
  carry(st, fx, "thread payment");
  {
    HistoryEntry e;
    e.event = "thread-payment";
    e.wei = amount;
    e.has_counterparty = true;
    e.counterparty = rec.initial.state.receiver;
    e.threadId = rec.initial.state.threadId;
    history(e);
  }
  return true;
}

void Agent::step() {
  if (done_ || s_.halted()) return;
  {
    Effects fx;
    Status st = s_.tick(unix_now(), fx);
    carry(st, fx, "tick");
  }
  feed_chain();
  follow_chain();
  payee_duties(unix_now());
  if (done_ || chain_hold_) return;
  if (!s_.synced() || s_.has_pending()) return;  // a hub request kept for chain facts does not block paying
  const ChannelState& c = s_.channel().state;
  const uint64_t now = unix_now();
  // 1. Our deposit or withdrawal double-signed but not yet on chain / confirmed.
  if (channel_has_pending(c) && (!c.pendingDepositWeiUser.is_zero() || !c.pendingWithdrawalWeiUser.is_zero() ||
                                 !c.pendingDepositTokenUser.is_zero() || !c.pendingWithdrawalTokenUser.is_zero())) {
    if (now_ms() < deposit_retry_ms_) return;
    if (!chain_failed_ && !onchain_deposit()) chain_failed_ = true;
    return;
  }
  if (channel_has_pending(c)) return;  // the hub's pending ops: it requests ConfirmPending
  if (flows_step(c) || cfg_.oneshot) return;
  if (!cfg_.payer) return;
  // 2. Our first deposit (whoever deposits first: the hub's collateral may come before).
  if (!st_.deposited && !(dep_wei_.is_zero() && dep_tok_.is_zero()) && !stopping_) {
    Effects fx;
    st_.deposited = true;  // in the record that carries the proposal
    Status st = s_.request_deposit(dep_wei_, dep_tok_, now + 3600, now, fx);
    if (st != Status::Ok) {
      st_.deposited = false;
      logf(port::LogLevel::Error, "cannot propose the deposit: %s", status_message(st));
      return;
    }
    carry(st, fx, "deposit");
    return;
  }
  uint64_t due = st_.meter.units() > st_.units_paid ? st_.meter.units() - st_.units_paid : 0;
  bool draining = stopping_ || eof_;
  // 2b. An exchange asked for at start, at the hub's signed rate within our tolerance.
  if (ex_todo_ && exchange_step(now, draining && due == 0)) return;
  // 3. Threads: open one when paying a payee.
  if (cfg_.has_pay_to) {
    // By the payee's signed price list: nothing is paid or locked without a valid one.
    if (by_list_ && !payer_price_ready(now, draining)) return;
    long idx = sender_thread();
    if (idx >= 0 && due > 0) {
      U256 amount{};
      (void)u256_mul(cfg_.price_wei, U256::from_u64(due), amount);
      const SessionThread& rec = s_.thread_slot(static_cast<size_t>(idx));
      if (sender_balance(tok(), rec.latest.state) < amount) {
        // Exhausted: pay what it still holds, then ask the payee to close it.
        uint64_t affordable = 0;
        U256 q{}, rem{};
        if (u256_divmod(sender_balance(tok(), rec.latest.state), cfg_.price_wei, q, rem) == Status::Ok && q.fits_u64())
          affordable = q.low64();
        if (affordable > 0) {
          pay_units(affordable);
          return;
        }
        Effects fx;
        Status st = s_.thread_close_request(rec.initial.state.receiver, rec.initial.state.threadId, now, fx);
        carry(st, fx, "close request");
        return;
      }
    }
    bool closing = false;
    for (size_t i = 0; i < s_.thread_capacity(); ++i) {
      const SessionThread& t = s_.thread_slot(i);
      closing = closing || (t.used && t.sender && t.open && t.closing);
    }
    if (closing) return;  // the session re-sends the close request until the hub's request comes
    if (sender_thread() < 0) {
      if (draining && due == 0) {
        done_ = true;
        return;
      }
      const U256& bal = user_balance(tok(), c);
      if (bal.is_zero()) {
        if (draining) {
          logf(port::LogLevel::Error, "no balance left to pay %llu units", static_cast<unsigned long long>(due));
          exit_code_ = 1;
          done_ = true;
        }
        return;
      }
      // A thread opened by us but never double-signed lingers only until the session's
      // proposal completes; open a new one locking threadLockWei (or the whole balance).
      U256 lock = cfg_.thread_lock_wei.is_zero() || bal < cfg_.thread_lock_wei ? bal : cfg_.thread_lock_wei;
      const AssetAmounts lk = in_asset(tok(), lock);
      Effects fx;
      uint64_t id = 0;
      Status st = s_.propose_thread_open(cfg_.pay_to, lk.wei, lk.token, now, fx, &id);
      if (st != Status::Ok) {
        logf(port::LogLevel::Error, "cannot open a thread: %s", status_message(st));
        if (draining) {
          exit_code_ = 1;
          done_ = true;
        }
        return;
      }
      carry(st, fx, "thread open");
      return;
    }
  }
  // 4. Pay what is due (with a refill configured: what the channel holds, the rest after
  // the refill).
  if (!cfg_.has_pay_to && !cfg_.refill_wei.is_zero() && !refill_failed_ && due > 0) {
    U256 q{}, rem{};
    if (u256_divmod(c.balanceWeiUser, cfg_.price_wei, q, rem) == Status::Ok && q.fits_u64() && q.low64() < due) {
      if (q.low64() > 0) pay_units(q.low64());
      return;  // the refill comes next round
    }
  }
  if (due >= cfg_.min_units || (draining && due > 0)) {
    if (!pay_units(due)) {
      if (!cfg_.has_pay_to) {
        logf(port::LogLevel::Error, "balance too low to pay %llu units", static_cast<unsigned long long>(due));
        exit_code_ = 1;
        done_ = true;
      }
    }
    return;
  }
  if (draining && due == 0) {
    if (cfg_.has_pay_to && cfg_.close_on_exit) {
      long idx = sender_thread();
      if (idx >= 0) {
        const SessionThread& rec = s_.thread_slot(static_cast<size_t>(idx));
        Effects fx;
        Status st = s_.thread_close_request(rec.initial.state.receiver, rec.initial.state.threadId, now, fx);
        carry(st, fx, "close request");
        return;
      }
    }
    done_ = true;
  }
}

void Agent::tower_log(bool warn, const std::string& line) {
  if (!warn) {
    logf(port::LogLevel::Debug, "%s", line.c_str());
    return;
  }
  // Rate-limited (the acks come through the broker); the Ok slot is the tower's own.
  uint64_t suppressed = 0;
  if (!ignored_log_.allow(Status::Ok, now_ms(), &suppressed)) return;
  if (suppressed > 0)
    logf(port::LogLevel::Warn, "%s (and %llu more tower warnings in the last 10 s)", line.c_str(),
         static_cast<unsigned long long>(suppressed));
  else
    logf(port::LogLevel::Warn, "%s", line.c_str());
}

void Agent::tower_step(bool flush) {
  if (!tower_ || !mq_) return;
  auto pub = [this](const std::string& topic, const std::vector<uint8_t>& b) {
    mq_->publish(topic, b.data(), b.size(), 1, false);
  };
  auto lg = [this](bool warn, const std::string& l) { tower_log(warn, l); };
  const std::vector<SignedThreadState> incoming = TowerClient::incoming_threads(s_);
  if (flush)
    tower_->flush(s_.channel(), incoming, now_ms(), pub, lg);
  else
    tower_->step(s_.channel(), incoming, now_ms(), pub, lg);
}

// ---------------------------------------------------------------- flows (docs/flows.md)

// Takes the next inbox command, or starts a refill / cash-out, when nothing else is in
// flight (no proposal, no pending operation).
bool Agent::flows_step(const ChannelState& c) {
  if (stopping_ && !(cmd_ && cmd_->cmd.op == "exchange" && cmd_->proposal_tx == 0)) return false;
  if (cmd_ && cmd_->cmd.op == "exchange" && cmd_->proposal_tx == 0) {
    // An exchange command: at the hub's signed rate within our tolerance, once the hub
    // holds what it would give out (our payments go on meanwhile).
    const uint64_t wait = cfg_.oneshot ? kExchangeOneshotWaitMs : kExchangeCommandWaitMs;
    const bool last = stopping_ || now_ms() - cmd_->started_ms >= wait;
    if (!exchange_step(unix_now(), last)) return false;
    if (cmd_) cmd_->proposal_tx = s_.pending().txCountGlobal;
    return true;
  }
  if (cmd_) {
    // Our proposal was given up (the hub refused it for good and asked for its
    // Invalidation): the session moved past it without completing it.
    if (!cmd_->confirmed_stage && c.txCountGlobal >= cmd_->proposal_tx)
      finish_command(false, std::string("the hub refused it: ") +
                                (last_refusal_ == Status::Ok ? "invalidated" : status_name(last_refusal_)));
    else if (cmd_->confirmed_stage && !channel_has_pending(c))
      finish_command(true, "");  // confirmed (carry() saw the ConfirmPending)
    return cmd_ != nullptr;
  }
  if (now_ms() - last_inbox_ms_ >= 300) {
    last_inbox_ms_ = now_ms();
    Command next;
    if (command_next(cfg_.state_dir, next)) {
      std::string err;
      if (!command_take(cfg_.state_dir, next.id, err)) {
        logf(port::LogLevel::Error, "%s", err.c_str());
        return false;
      }
      if (!start_command(next, c)) return false;
      return true;
    }
  }
  if (cfg_.oneshot) {
    done_ = true;  // the inbox is carried out
    return true;
  }
  // Payee: ask for collateral while the hub holds less than we expect (at most once a
  // minute; the hub sizes and bounds what it deposits).
  if (!cfg_.expect_income_wei.is_zero() && c.balanceWeiHub < cfg_.expect_income_wei &&
      (last_collateral_ask_ms_ == 0 || now_ms() - last_collateral_ask_ms_ >= 60000)) {
    last_collateral_ask_ms_ = now_ms();
    const std::string req = agent::collateral_request_make(signer_, key_, st_.contract, st_.user,
                                                           cfg_.expect_income_wei, unix_now());
    if (!req.empty()) {
      mq_->publish(mqtt::topic_collateral(st_.hub, st_.user), req, 1, false);
      logf(port::LogLevel::Info, "asked the hub for %s wei of collateral (it holds %s)",
           json::amount_text(cfg_.expect_income_wei).c_str(), json::amount_text(c.balanceWeiHub).c_str());
    }
  }
  // Automatic refill (payer) and cash-out (payee): below the threshold, or when what is
  // due is more than the channel holds.
  U256 due_wei = U256::zero();
  if (st_.meter.units() > st_.units_paid &&
      u256_mul(cfg_.price_wei, U256::from_u64(st_.meter.units() - st_.units_paid), due_wei) != Status::Ok)
    due_wei = U256::zero();
  if (cfg_.payer && !cfg_.refill_wei.is_zero() && !refill_failed_ &&
      (user_balance(tok(), c) < cfg_.refill_below_wei || (!cfg_.has_pay_to && user_balance(tok(), c) < due_wei)) &&
      (st_.deposited || cfg_.deposit_wei.is_zero()) && now_ms() >= deposit_retry_ms_) {
    Command r;
    r.op = "deposit";
    r.wei = cfg_.refill_wei;
    if (start_command(r, c)) {
      cmd_->automatic = true;
      return true;
    }
    refill_failed_ = true;  // e.g. the wallet is empty: pay what the channel holds, then stop
    return false;
  }
  if (!cfg_.cash_out_above_wei.is_zero() && user_balance(tok(), c) > cfg_.cash_out_above_wei &&
      now_ms() >= deposit_retry_ms_) {
    Command r;
    r.op = "withdraw";
    r.all = true;
    r.has_to = cfg_.has_cash_out_to;
    r.to = cfg_.cash_out_to;
    if (start_command(r, c)) {
      cmd_->automatic = true;
      return true;
    }
    deposit_retry_ms_ = now_ms() + 30000;
  }
  return false;
}

bool Agent::start_command(const Command& cmd, const ChannelState& c) {
  cmd_ = std::make_unique<Running>();
  cmd_->cmd = cmd;
  cmd_->started_ms = now_ms();
  cmd_->asset = asset_;
  has_last_tx_ = false;
  last_tx_gas_ = 0;
  const uint64_t now = unix_now();
  Effects fx;
  Status st = Status::Ok;
  if (cmd.op == "exchange") {
    // Proposed by flows_step once the rate and the hub's inventory allow (exchange_step).
    bool is_token = false;
    std::string err;
    if (!token_asset_.token) {
      finish_command(false, "an exchange needs a ChannelManager that takes a token (and --rpc)");
      return false;
    }
    if (ex_todo_) {  // one exchange at a time: the amounts of the one asked for at start are kept
      finish_command(false, "the exchange asked for at start (--exchange) is not done yet");
      return false;
    }
    if (!parse_either(cmd.amount, is_token, ex_amount_, err) || ex_amount_.is_zero()) {
      finish_command(false, "exchange: " + (err.empty() ? std::string("the amount must be above 0") : err));
      return false;
    }
    ex_sell_wei_ = !is_token;
    ex_waiting_logged_ = false;
    cmd_->cmd.wei = ex_amount_;
    cmd_->asset = is_token ? token_asset_ : units::eth();
    logf(port::LogLevel::Info, "exchange of %s asked for (command)", units::format(ex_amount_, cmd_->asset).c_str());
    return true;
  }
  // Deposit and withdrawal move the channel's asset (docs/tokens.md): wei, or the token.
  U256 want = cmd.wei;
  if (!cmd.amount.empty()) {
    std::string err;
    if (!units::parse(cmd.amount, asset_, want, err) || want.is_zero()) {
      finish_command(false, cmd.op + ": " + (err.empty() ? std::string("the amount must be above 0") : err));
      return false;
    }
  }
  cmd_->cmd.wei = want;
  if (cmd.op == "deposit") {
    if (!cm_) {
      finish_command(false, "a deposit needs the chain: no rpc URL configured");
      return false;
    }
    if (tok()) {
      auto bal = chain::erc20_balance(wallet_->rpc(), asset_.address, st_.user);
      if (bal && *bal < want) {
        finish_command(false, "the wallet " + json::address_text(st_.user) + " holds " + fmt(*bal) +
                                  ", less than the deposit of " + fmt(want));
        return false;
      }
    } else {
      auto bal = wallet_->rpc().balance(st_.user);
      if (bal && *bal < want) {
        finish_command(false, "the wallet " + json::address_text(st_.user) + " holds " + json::amount_text(*bal) +
                                  " wei, less than the deposit of " + json::amount_text(want) + " wei (plus gas)");
        return false;
      }
    }
    const AssetAmounts d = in_asset(tok(), want);
    st = s_.request_deposit(d.wei, d.token, now + 3600, now, fx);
  } else {
    if (!cm_) {
      finish_command(false, "a withdrawal needs the chain: no rpc URL configured");
      return false;
    }
    const U256& have = user_balance(tok(), c);
    U256 amount = cmd.all ? have : want;
    if (amount.is_zero()) {
      finish_command(false, "nothing to withdraw: the channel balance is " + fmt(U256::zero()));
      return false;
    }
    if (have < amount) {
      finish_command(false, "the channel balance is " + fmt(have) + ", less than " + fmt(amount) +
                                " (what is locked in open threads is not withdrawable)");
      return false;
    }
    cmd_->cmd.wei = amount;
    const AssetAmounts w = in_asset(tok(), amount);
    st = s_.request_withdrawal(cmd.has_to ? cmd.to : st_.user, w.wei, w.token, now + 3600, now, fx);
  }
  if (st != Status::Ok) {
    finish_command(false, std::string("cannot propose it: ") + status_message(st));
    return false;
  }
  cmd_->proposal_tx = s_.pending().txCountGlobal;
  logf(port::LogLevel::Info, "%s%s of %s proposed (txCountGlobal %llu)", cmd_->automatic ? "automatic " : "",
       cmd.op.c_str(), fmt(cmd_->cmd.wei).c_str(), static_cast<unsigned long long>(cmd_->proposal_tx));
  carry(st, fx, cmd.op.c_str());
  return true;
}

void Agent::finish_command(bool ok, const std::string& error) {
  if (!cmd_) return;
  CommandResult r;
  r.ok = ok;
  r.op = cmd_->cmd.op;
  r.wei = cmd_->cmd.wei;
  r.amount = units::format(r.wei, cmd_->asset);
  r.asset = cmd_->asset.symbol;
  r.txCountGlobal = s_.channel().state.txCountGlobal;
  if (has_last_tx_) {
    r.transaction = json::hash_text(last_tx_);
    r.gasUsed = last_tx_gas_;
  }
  r.elapsedMs = now_ms() - cmd_->started_ms;
  r.error = error;
  if (ok)
    logf(port::LogLevel::Info, "%s of %s done: txCountGlobal %llu, gas %llu, %llu ms", r.op.c_str(), r.amount.c_str(),
         static_cast<unsigned long long>(r.txCountGlobal), static_cast<unsigned long long>(r.gasUsed),
         static_cast<unsigned long long>(r.elapsedMs));
  else
    logf(port::LogLevel::Error, "%s of %s failed: %s", r.op.c_str(), r.amount.c_str(), error.c_str());
  if (!cmd_->cmd.id.empty()) {
    std::string err;
    if (!command_finish(cfg_.state_dir, cmd_->cmd.id, r, err)) logf(port::LogLevel::Error, "%s", err.c_str());
  }
  cmd_.reset();
  status_dirty_ = true;
}

// Follows the command through the session's events: our proposal double-signed, then
// (after the on-chain step) the ConfirmPending.
void Agent::flows_on_effects(const Effects& fx) {
  if (!cmd_ || fx.event != SessionEvent::UpdateCompleted) return;
  if (!cmd_->confirmed_stage && fx.txCountGlobal == cmd_->proposal_tx) cmd_->confirmed_stage = true;
}

void Agent::history(HistoryEntry e) {
  if (!cfg_.history || hist_failed_) return;
  if (e.time == 0) e.time = unix_now();
  std::string err;
  if (!history_append(cfg_.state_dir, e, err)) {
    hist_failed_ = true;  // say it once; the channel record is unaffected
    logf(port::LogLevel::Error, "history: %s (history off until restart)", err.c_str());
  }
}

// One history entry per double-signed update of ours, and per thread payment received.
void Agent::history_update(const Effects& fx) {
  if (fx.event == SessionEvent::ThreadPaymentReceived) {
    // Which thread: the one whose latest state moved past the view the last save wrote
    // (refresh_view runs in save(), so compare with the session after the fact: the view
    // was refreshed just now; find the thread by the amount received instead).
    for (size_t i = 0; i < s_.thread_capacity(); ++i) {
      const SessionThread& t = s_.thread_slot(i);
      if (!t.used || t.sender) continue;
      auto key = std::make_pair(json::address_text(t.initial.state.sender), t.initial.state.threadId);
      U256& seen = received_seen_[key];
      if (receiver_balance(tok(), t.latest.state) == seen) continue;
      HistoryEntry e;
      e.event = "thread-received";
      U256 d{};
      const U256& got = receiver_balance(tok(), t.latest.state);
      if (u256_sub(got, seen, d) != Status::Ok) d = got;
      e.wei = d;
      seen = receiver_balance(tok(), t.latest.state);
      e.has_counterparty = true;
      e.counterparty = t.initial.state.sender;
      e.threadId = t.initial.state.threadId;
      history(e);
    }
    return;
  }
  if (fx.event != SessionEvent::UpdateCompleted) return;
  const ChannelState n = asset_view(tok(), s_.channel().state);  // amounts in the channel's asset
  const ChannelState& p = hist_prev_;
  HistoryEntry e;
  e.txCountGlobal = n.txCountGlobal;
  e.reason = update_reason_name(fx.reason) ? update_reason_name(fx.reason) : "";
  e.has_balances = true;
  e.balanceWeiUser = n.balanceWeiUser;
  e.balanceWeiHub = n.balanceWeiHub;
  switch (fx.reason) {
    case UpdateReason::Payment:
      e.event = "payment";
      e.wei = tok() ? fx.amountToken : fx.amountWei;
      e.has_counterparty = true;
      e.counterparty = st_.hub;
      break;
    case UpdateReason::ProposePendingDeposit:
      e.event = n.pendingDepositWeiUser.is_zero() ? "collateral-proposed" : "deposit-proposed";
      e.wei = n.pendingDepositWeiUser.is_zero() ? n.pendingDepositWeiHub : n.pendingDepositWeiUser;
      break;
    case UpdateReason::ProposePendingWithdrawal:
      e.event = n.pendingWithdrawalWeiUser.is_zero() ? "collateral-reclaim-proposed" : "withdrawal-proposed";
      e.wei = n.pendingWithdrawalWeiUser.is_zero() ? n.pendingWithdrawalWeiHub : n.pendingWithdrawalWeiUser;
      if (!n.pendingWithdrawalWeiUser.is_zero()) {
        e.has_counterparty = true;
        e.counterparty = n.recipient;
      }
      break;
    case UpdateReason::ConfirmPending:
      if (!p.pendingDepositWeiUser.is_zero()) {
        e.event = "deposit-confirmed";
        e.wei = p.pendingDepositWeiUser;
      } else if (!p.pendingWithdrawalWeiUser.is_zero()) {
        e.event = "withdrawal-confirmed";
        e.wei = p.pendingWithdrawalWeiUser;
        e.has_counterparty = true;
        e.counterparty = p.recipient;
      } else if (!p.pendingDepositWeiHub.is_zero()) {
        e.event = "collateral";
        e.wei = p.pendingDepositWeiHub;
      } else if (!p.pendingWithdrawalWeiHub.is_zero()) {
        e.event = "collateral-reclaimed";
        e.wei = p.pendingWithdrawalWeiHub;
      } else {
        e.event = "confirm";
      }
      if (has_last_tx_ && (!p.pendingDepositWeiUser.is_zero() || !p.pendingWithdrawalWeiUser.is_zero()))
        e.transaction = json::hash_text(last_tx_);
      break;
    case UpdateReason::OpenThread:
    case UpdateReason::CloseThread: {
      // The thread that appeared in (or left) the set: the session's slot with that change.
      e.event = fx.reason == UpdateReason::OpenThread ? "thread-open" : "thread-close";
      for (size_t i = 0; i < s_.thread_capacity(); ++i) {
        const SessionThread& t = s_.thread_slot(i);
        if (!t.used) continue;
        const bool match = fx.reason == UpdateReason::OpenThread ? t.open : !t.open;
        if (!match) continue;
        auto key = std::make_tuple(json::address_text(t.initial.state.sender),
                                   json::address_text(t.initial.state.receiver), t.initial.state.threadId);
        if (fx.reason == UpdateReason::OpenThread ? !threads_seen_open_.insert(key).second
                                                  : !threads_seen_closed_.insert(key).second)
          continue;
        e.has_counterparty = true;
        e.counterparty = t.sender ? t.initial.state.receiver : t.initial.state.sender;
        e.threadId = t.initial.state.threadId;
        e.wei = fx.reason == UpdateReason::OpenThread ? sender_balance(tok(), t.initial.state)
                                                      : receiver_balance(tok(), t.latest.state);
        if (fx.reason == UpdateReason::CloseThread && !t.sender) {
          // Payee: what the payer's close request carried beyond the payments seen (those
          // that came before the mirror opened are adopted at close).
          U256& seen = received_seen_[std::make_pair(json::address_text(t.initial.state.sender), t.initial.state.threadId)];
          U256 d{};
          if (receiver_balance(tok(), t.latest.state) != seen &&
              u256_sub(receiver_balance(tok(), t.latest.state), seen, d) == Status::Ok) {
            HistoryEntry r;
            r.event = "thread-received";
            r.wei = d;
            r.has_counterparty = true;
            r.counterparty = t.initial.state.sender;
            r.threadId = t.initial.state.threadId;
            history(r);
            seen = receiver_balance(tok(), t.latest.state);
          }
        }
        break;
      }
      break;
    }
    default:
      e.event = "update";
      break;
  }
  hist_prev_ = n;
  history(e);
}

void Agent::handle(const Event& e) {
  if (e.kind == Event::Connected) {
    logf(port::LogLevel::Info, "connected to broker %s:%d", cfg_.host.c_str(), cfg_.port);
    if (!notified_ready_) {  // Type=notify (picopay-agent@.service): the channel is loaded, the broker connected
      notified_ready_ = true;
      agent::service_notify("READY=1\nSTATUS=serving");
    }
    Effects fx;
    Status st = s_.on_connect(unix_now(), fx);
    carry(st, fx, "connect");
    publish_status(true);
    return;
  }
  if (e.kind == Event::Eof) {
    if (cfg_.exit_on_eof) eof_ = true;
    return;
  }
  if (e.kind == Event::Line) {
    MeterReading r;
    std::string err;
    if (!parse_meter_line(e.line, r, err)) {
      logf(port::LogLevel::Warn, "%s", err.c_str());
      return;
    }
    if (r.kind == MeterReading::Kind::Quit) {
      eof_ = true;
      return;
    }
    on_meter(r);
    return;
  }
  const std::string& t = e.msg.topic;
  const std::vector<uint8_t>& p = e.msg.payload;
  if (tower_ && tower_->on_message(t, p, [this](bool warn, const std::string& l) { tower_log(warn, l); })) {
    // Releases the tower confirmed are recorded, so a restart does not send them again.
    bool released = false;
    for (const auto& r : tower_->take_released()) {
      const long k = st_.find_thread(r.first, st_.user, r.second);
      if (k >= 0 && !st_.threads[static_cast<size_t>(k)].tower_released) {
        st_.threads[static_cast<size_t>(k)].tower_released = true;
        released = true;
      }
    }
    if (released) save();
    return;
  }
  if (t == mqtt::topic_reply(st_.user)) {
    Effects fx;
    Status st = s_.on_reply(p.data(), p.size(), unix_now(), fx);
    carry(st, fx, "reply");
    if (fx.event == SessionEvent::UpdateCompleted) retry_early();
  } else if (t == mqtt::topic_request(st_.user)) {
    Effects fx;
    Status st = s_.on_hub_request(p.data(), p.size(), unix_now(), fx);
    if (st != Status::Ok && st != Status::Duplicate && st != Status::Busy && st != Status::OutOfSync &&
        fx.count > 0)
      logf(port::LogLevel::Warn, "hub request refused: %s", status_message(st));
    carry(st, fx, "hub request");
  } else if (by_list_ && t == mqtt::topic_payee_prices(cfg_.pay_to)) {
    on_prices(p);
  } else if (t == mqtt::topic_hub_rate(st_.hub)) {
    on_rate(p);
  } else if (cfg_.payee && t == mqtt::topic_thread_update(st_.user)) {
    on_thread_message(p);
  } else if (!cfg_.meter_topic.empty() && t == cfg_.meter_topic) {
    last_meter_ms_ = now_ms();
    std::string payload(p.begin(), p.end());
    MeterReading r;
    std::string err;
    bool ok = cfg_.meter == "shelly" ? parse_shelly_status(payload, r, err) : parse_tasmota_sensor(payload, r, err);
    if (!ok) {
      logf(port::LogLevel::Warn, "meter: %s", err.c_str());
      return;
    }
    on_meter(r);
  }
}

int Agent::run() {
  if (signer_.init() != Status::Ok) {
    std::fprintf(stderr, "picopay-agent: signer unavailable\n");
    return 1;
  }
  {
    std::string kerr;
    if (!config_private_key(cfg_, key_, kerr)) {
      std::fprintf(stderr, "picopay-agent: %s\n", kerr.c_str());
      return 2;
    }
  }
  Address me{};
  if (signer_.address_of(key_, me) != Status::Ok) {
    std::fprintf(stderr, "picopay-agent: bad private key\n");
    return 2;
  }
  std::string err;
  if (!state_dir_lock(cfg_.state_dir, err)) {
    std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
    return 1;
  }
  command_recover(cfg_.state_dir);
  if (cfg_.oneshot) cfg_.meter = "none";
  bool missing = false;
  const bool loaded = state_load(cfg_.state_dir, st_, err, &missing);
  if (!loaded && !missing) {
    std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
    return 1;
  }
  if (!loaded) {
    if (!cfg_.has_hub || !cfg_.has_contract) {
      std::fprintf(stderr, "picopay-agent: a new state dir needs hub and contract\n");
      return 2;
    }
    st_.user = me;
    st_.hub = cfg_.hub;
    st_.contract = cfg_.contract;
  }
  if (st_.user != me || (cfg_.has_hub && st_.hub != cfg_.hub) || (cfg_.has_contract && st_.contract != cfg_.contract)) {
    std::fprintf(stderr, "picopay-agent: the state dir belongs to another key, hub or contract\n");
    return 2;
  }
  if (!cfg_.rpc_url.empty()) {
    rpc_ = std::make_unique<chain::RpcClient>(cfg_.rpc_url);
    wallet_ = std::make_unique<chain::Wallet>(*rpc_, key_);
    if (!wallet_->init()) {
      std::fprintf(stderr, "picopay-agent: cannot reach the Ethereum node at %s\n", cfg_.rpc_url.c_str());
      return 1;
    }
    // The contract must be a ChannelManager of our hub, or a deposit would be lost.
    auto chk = chain::check_channel_manager(*rpc_, st_.contract, &st_.hub);
    if (!chk) {
      std::fprintf(stderr, "picopay-agent: %s\n", chk.error().to_string().c_str());
      return 1;
    }
    cm_ = std::make_unique<chain::ChannelManagerClient>(*wallet_, st_.contract);
    cm_->require_hub(st_.hub);  // and again before each transaction
    follow_ = std::make_unique<OwnChannelFollower>(*cm_, me);
    auto as = chain::channel_asset(*rpc_, st_.contract, cfg_.has_token ? &cfg_.token : nullptr);
    if (!as) {
      std::fprintf(stderr, "picopay-agent: %s\n", as.error().to_string().c_str());
      return 2;
    }
    asset_ = *as;
    if (asset_.token) {
      token_asset_ = asset_;
    } else {
      auto tk = chain::approved_token(*rpc_, st_.contract);
      if (tk && !tk->is_zero()) {
        auto ta = chain::channel_asset(*rpc_, st_.contract, &*tk);
        if (ta) token_asset_ = *ta;
      }
    }
  } else if (cfg_.has_token) {
    std::fprintf(stderr, "picopay-agent: --token needs --rpc (the token's decimals are read from the chain)\n");
    return 2;
  }
  if (!resolve_amounts()) return 2;
  SessionConfig sc = session_config_default();
  sc.contract = st_.contract;
  sc.user = me;
  sc.hub = st_.hub;
  sc.hasChainAccess = cm_ != nullptr;
  sc.acceptIncomingThreads = cfg_.payee;
  slots_.assign(kThreadCapacity, SessionThread{});
  set_items_.assign(kThreadCapacity, ThreadState{});
  set_scratch_.assign(kThreadCapacity + 2, Hash32{});
  SessionStorage storage{slots_.data(), kThreadCapacity, set_items_.data(), set_scratch_.data()};
  Status st = s_.init(sc, signer_, key_, storage);
  if (st != Status::Ok) {
    std::fprintf(stderr, "picopay-agent: session: %s\n", status_message(st));
    return 1;
  }
  if (loaded) {
    st = s_.restore(st_.session.data(), st_.session.size());
    if (st != Status::Ok) {
      std::fprintf(stderr, "picopay-agent: the state record in %s does not restore: %s\n", cfg_.state_dir.c_str(),
                   status_message(st));
      return 1;
    }
  }
  if (!save()) return 1;
  hist_prev_ = asset_view(tok(), s_.channel().state);
  for (size_t i = 0; i < s_.thread_capacity(); ++i) {  // history: what is already known
    const SessionThread& t = s_.thread_slot(i);
    if (!t.used) continue;
    auto key = std::make_tuple(json::address_text(t.initial.state.sender), json::address_text(t.initial.state.receiver),
                               t.initial.state.threadId);
    threads_seen_open_.insert(key);
    if (!t.open) threads_seen_closed_.insert(key);
    if (!t.sender)
      received_seen_[std::make_pair(json::address_text(t.initial.state.sender), t.initial.state.threadId)] =
          t.latest.state.balanceWeiReceiver;
  }
  mqtt::Options o;
  o.host = cfg_.host;
  o.port = cfg_.port;
  o.client_id = "picopay-" + mqtt::topic_address(me);
  o.claim_client_id = true;  // the same key running twice: a clear fatal error (client.hpp)
  o.username = cfg_.username.empty() ? mqtt::topic_address(me) : cfg_.username;
  o.password = cfg_.password;
  if (cfg_.password.empty() && cfg_.username.empty()) o.username.clear();
  o.tls_ca_file = cfg_.tls_ca;
  o.will_topic = mqtt::topic_user_status(me);
  o.will_payload = "{\"state\":\"offline\"}";
  o.will_retain = true;
  mq_ = std::make_unique<mqtt::Client>(o);
  mq_->on_message([this](const mqtt::Message& m) { q_.push(Event{Event::Mqtt, m, {}}); });
  mq_->on_connect([this](bool) { q_.push(Event{Event::Connected, {}, {}}); });
  mq_->subscribe(mqtt::topic_reply(me));
  mq_->subscribe(mqtt::topic_request(me));
  if (cfg_.payee) mq_->subscribe(mqtt::topic_thread_update(me));
  if (ex_todo_ || token_asset_.token) mq_->subscribe(mqtt::topic_hub_rate(st_.hub));  // exchange, or an exchange command
  if (by_list_) mq_->subscribe(mqtt::topic_payee_prices(cfg_.pay_to));
  if ((cfg_.meter == "tasmota" || cfg_.meter == "shelly") && !cfg_.meter_topic.empty()) mq_->subscribe(cfg_.meter_topic);
  if (cfg_.has_tower) {
    tower_ = std::make_unique<TowerClient>(cfg_.tower, st_.contract, me, signer_, key_, cfg_.tower_interval_ms);
    // Incoming threads that closed in an earlier run and whose release the tower has not
    // confirmed: released once the tower holds the current channel state.
    std::vector<std::pair<Address, uint64_t>> unreleased;
    for (const auto& th : st_.threads)
      if (!th.sender && !th.open && !th.tower_released && th.latest.state.txCount > 0)
        unreleased.emplace_back(th.initial.state.sender, th.initial.state.threadId);
    tower_->resume_releases(unreleased);
    for (const auto& topic : tower_->topics()) mq_->subscribe(topic);
  }
  mq_->on_disconnect([this](const std::string& why) {
    logf(port::LogLevel::Warn, "broker %s:%d: %s", cfg_.host.c_str(), cfg_.port, why.c_str());
  });
  if (!mq_->start(err)) {
    std::fprintf(stderr, "picopay-agent: mqtt: %s\n", err.c_str());
    return 1;
  }
  // Loud at start: refused credentials or an unreachable broker end the agent (exit 1).
  {
    const uint64_t deadline = now_ms() + static_cast<uint64_t>(cfg_.connect_timeout_s) * 1000;
    while (!mq_->connected()) {
      const std::string why = mq_->last_error();
      if (mq_->refused_reason() != 0) {
        std::fprintf(stderr,
                     "picopay-agent: the broker at %s:%d refused the connection: %s (check the broker username, "
                     "the password file and the broker's password file)\n",
                     cfg_.host.c_str(), cfg_.port, why.c_str());
        mq_->stop();
        return 1;
      }
      if (now_ms() > deadline || g_stop) {
        std::fprintf(stderr, "picopay-agent: cannot connect to the broker at %s:%d within %d s: %s\n",
                     cfg_.host.c_str(), cfg_.port, cfg_.connect_timeout_s, why.empty() ? "no answer" : why.c_str());
        mq_->stop();
        return 1;
      }
      (void)mq_->wait_connected(100);
    }
  }
  last_meter_ms_ = now_ms();
  const std::string price_note =
      !cfg_.payer ? (sell_price_.is_zero() ? std::string("payee") : "payee selling at " + fmt(sell_price_) + " per Wh")
      : by_list_  ? "price by the payee's signed list, at most " + fmt(max_price_) + " per Wh"
                  : "price " + fmt(cfg_.price_wei) + " per unit";
  logf(port::LogLevel::Info, "user %s, channel txCount %llu, state dir %s, paying in %s%s%s, %s",
       json::address_text(me).c_str(), static_cast<unsigned long long>(s_.channel().state.txCountGlobal),
       cfg_.state_dir.c_str(), asset_.symbol.c_str(), asset_.token ? " (token " : "",
       asset_.token ? (json::address_text(asset_.address) + ")").c_str() : "", price_note.c_str());
  std::thread reader;
  if (cfg_.meter == "stdin") {
    reader = std::thread([this] {
      std::string line;
      while (std::getline(std::cin, line)) q_.push(Event{Event::Line, {}, line});
      q_.push(Event{Event::Eof, {}, {}});
    });
    reader.detach();
  }
  uint64_t stop_deadline = 0;
  const uint64_t oneshot_deadline = now_ms() + static_cast<uint64_t>(cfg_.wait_seconds) * 1000;
  while (!done_) {
    if (g_stop && !stopping_) {
      stopping_ = true;
      agent::service_notify("STOPPING=1");
      stop_deadline = now_ms() + 15000;
      logf(port::LogLevel::Info, "stopping: paying what is due%s", cfg_.close_on_exit ? " and closing threads" : "");
      if (!cfg_.payer) done_ = !s_.has_pending();
    }
    if (cfg_.oneshot && now_ms() > oneshot_deadline) {
      logf(port::LogLevel::Error, "the command did not finish in time (state is saved; the agent resumes it)");
      exit_code_ = 1;
      break;
    }
    if (stopping_ && now_ms() > stop_deadline) {
      logf(port::LogLevel::Warn, "stop deadline reached with work left (state is saved; resumes on restart)");
      break;
    }
    if (mq_->session_taken_over())
      fatal("broker: " + mq_->last_error() + ": the same key running twice? Stopping this agent");
    // A meter topic the broker's ACL does not let us read delivers nothing, silently.
    if ((cfg_.meter == "tasmota" || cfg_.meter == "shelly") && cfg_.no_reading_warn_s > 0 && !stopping_) {
      const uint64_t quiet = static_cast<uint64_t>(cfg_.no_reading_warn_s) * 1000;
      const uint64_t t = now_ms();
      if (t - last_meter_ms_ >= quiet && t - meter_warned_ms_ >= quiet) {
        meter_warned_ms_ = t;
        logf(port::LogLevel::Warn,
             "no meter reading on %s for %d s: check that the meter publishes there and that the broker ACL lets "
             "user '%s' read that topic (docs/operations.md)",
             cfg_.meter_topic.c_str(), cfg_.no_reading_warn_s, mq_->options().username.c_str());
      }
    }
    Event e;
    int drained = 0;
    while (drained < 256 && q_.pop(e, drained == 0 ? 50 : 0)) {
      handle(e);
      ++drained;
      if (done_) break;
    }
    step();
    tower_step(false);
    if (stopping_ && !cfg_.payer && !s_.has_pending()) {
      bool closing = false;
      for (size_t i = 0; i < s_.thread_capacity(); ++i) {
        const SessionThread& t = s_.thread_slot(i);
        closing = closing || (t.used && !t.sender && t.open && t.closing);
      }
      if (!closing) done_ = true;
    }
    publish_status(false);
  }
  tower_step(true);  // going to sleep: the tower gets our latest state now
  publish_status(true);
  mq_->publish(mqtt::topic_user_status(me), std::string("{\"state\":\"offline\"}"), 1, true);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  mq_->stop(true);
  std::memset(&key_, 0, sizeof key_);
  logf(port::LogLevel::Info, "exit %d: txCount %llu, units paid %llu", exit_code_,
       static_cast<unsigned long long>(s_.channel().state.txCountGlobal),
       static_cast<unsigned long long>(st_.units_paid));
  return exit_code_;
}

// The hub's rate (retained, signed): kept only if the hub signed it for our contract; an
// older time than the one we hold is ignored (a replayed retained message).
void Agent::on_rate(const std::vector<uint8_t>& p) {
  if (p.empty()) return;  // the hub cleared its rate
  quotes::Rate r;
  std::string err;
  if (!quotes::rate_open(std::string(p.begin(), p.end()), signer_, st_.hub, st_.contract, r, err)) {
    logf(port::LogLevel::Warn, "hub rate ignored: %s", err.c_str());
    return;
  }
  if (has_rate_ && r.time < rate_.time) return;
  rate_ = r;
  has_rate_ = true;
  U256 per_eth{};  // token base units per 10^18 wei
  if (u256_mul(r.tokensPerWei, U256::from_u64(1000000000000000000ull), per_eth) != Status::Ok) per_eth = U256::zero();
  logf(port::LogLevel::Info, "hub rate: %s per ETH (%s token base units per wei, set at %llu)",
       units::format(per_eth, token_asset_).c_str(), json::amount_text(r.tokensPerWei).c_str(),
       static_cast<unsigned long long>(r.time));
}

void Agent::exchange_refused(const std::string& why) {
  logf(port::LogLevel::Error, "exchange refused: %s (nothing signed)", why.c_str());
  if (cmd_ && cmd_->cmd.op == "exchange" && cmd_->proposal_tx == 0) {
    finish_command(false, "exchange refused: " + why + " (nothing signed)");  // the agent goes on
    return;
  }
  ex_todo_ = false;
  exit_code_ = 1;
  status_dirty_ = true;
}

// Proposes the exchange asked for at start (true: proposed, the step is done). The rate is
// the hub's signed published rate, checked against our tolerance; the session records
// [rate, rate] as the only rate we accept, so a hub asking another rate is refused.
bool Agent::exchange_step(uint64_t now, bool last_chance) {
  if (!has_rate_) {
    if (last_chance) exchange_refused("no rate signed by the hub was received");
    return false;
  }
  std::string err;
  if (!quotes::rate_acceptable(rate_, now, cfg_.exchange_max_age_s, ex_reference_, cfg_.exchange_max_deviation_bps,
                               err)) {
    exchange_refused(err);
    return false;
  }
  ExchangeArgs a{};
  a.seller = Party::User;
  a.weiToSell = ex_sell_wei_ ? ex_amount_ : U256::zero();
  a.tokensToSell = ex_sell_wei_ ? U256::zero() : ex_amount_;
  a.exchangeRate = rate_.tokensPerWei;
  ExchangeAmounts x{};
  if (exchange_amounts(a, x) != Status::Ok) {
    exchange_refused("the amount buys nothing at rate " + json::amount_text(rate_.tokensPerWei));
    return false;
  }
  const ChannelState& c = s_.channel().state;
  const U256& mine = ex_sell_wei_ ? c.balanceWeiUser : c.balanceTokenUser;
  const U256& hubs = ex_sell_wei_ ? c.balanceTokenHub : c.balanceWeiHub;
  const U256& sold = ex_sell_wei_ ? x.weiSold : x.tokensSold;
  const U256& bought = ex_sell_wei_ ? x.tokensBought : x.weiBought;
  const units::Asset& sa = ex_sell_wei_ ? units::eth() : token_asset_;
  const units::Asset& ba = ex_sell_wei_ ? token_asset_ : units::eth();
  if (mine < sold || hubs < bought) {
    // Our balance may still grow (a deposit), the hub's grows with our payments.
    if (last_chance)
      exchange_refused("selling " + units::format(sold, sa) + " for " + units::format(bought, ba) + ": we hold " +
                       units::format(mine, sa) + ", the hub holds " + units::format(hubs, ba) + " in our channel");
    else if (!ex_waiting_logged_) {
      ex_waiting_logged_ = true;
      logf(port::LogLevel::Info, "exchange waits: the hub holds %s of the %s it would give out in our channel",
           units::format(hubs, ba).c_str(), units::format(bought, ba).c_str());
    }
    return false;
  }
  Effects fx;
  Status st = s_.request_exchange(ex_sell_wei_, ex_amount_, rate_.tokensPerWei, rate_.tokensPerWei, rate_.tokensPerWei,
                                  now, fx);
  if (st == Status::Busy || st == Status::OutOfSync) return false;
  if (st != Status::Ok) {
    exchange_refused(std::string("the session refused it: ") + status_message(st));
    return false;
  }
  ex_todo_ = false;
  logf(port::LogLevel::Info, "exchange: selling %s for %s at the hub's rate %s (set at %llu)", units::format(sold, sa).c_str(),
       units::format(bought, ba).c_str(), json::amount_text(rate_.tokensPerWei).c_str(),
       static_cast<unsigned long long>(rate_.time));
  if (!x.tokensKept.is_zero())
    logf(port::LogLevel::Info, "exchange: %s do not buy a whole wei and stay ours", units::format(x.tokensKept, sa).c_str());
  carry(st, fx, "exchange");
  return true;
}

// Payer: the payee's signed price list (retained). Kept only if the payee signed it for
// our contract; an older list (validFrom) than the one held is ignored.
void Agent::on_prices(const std::vector<uint8_t>& p) {
  if (p.empty()) return;
  quotes::PriceList l;
  std::string err;
  if (!quotes::prices_open(std::string(p.begin(), p.end()), signer_, cfg_.pay_to, st_.contract, l, err)) {
    logf(port::LogLevel::Warn, "price list ignored: %s", err.c_str());
    return;
  }
  if (has_list_ && l.validFrom < list_.validFrom) return;
  list_ = l;
  has_list_ = true;
  const quotes::Price* e = l.find(kEnergySource);
  logf(port::LogLevel::Info, "price list of %s: %s per %s, valid %llu .. %llu", json::address_text(cfg_.pay_to).c_str(),
       e ? units::format(e->price, asset_).c_str() : "no energy price", e ? e->unit.c_str() : "-",
       static_cast<unsigned long long>(l.validFrom), static_cast<unsigned long long>(l.validUntil));
  status_dirty_ = true;
}

// Payer: true when the payee's list may be paid by now (cfg_.price_wei is then its price).
// Without one we pay nothing and lock nothing; at the end (last_chance) we stop (exit 1).
bool Agent::payer_price_ready(uint64_t now, bool last_chance) {
  std::string err;
  U256 price{};
  if (!has_list_) {
    err = "no price list signed by the payee " + json::address_text(cfg_.pay_to);
  } else if (price_list_usable(list_, now, asset_, kEnergySource, max_price_, price, err)) {
    if (!list_refusal_.empty() || cfg_.price_wei != price)
      logf(port::LogLevel::Info, "paying by the payee's list: %s per Wh (our maximum %s)", fmt(price).c_str(),
           fmt(max_price_).c_str());
    list_refusal_.clear();
    cfg_.price_wei = price;
    return true;
  }
  if (has_list_ && err != list_refusal_) {
    logf(port::LogLevel::Error, "price list refused: %s; not paying", err.c_str());
    list_refusal_ = err;
    status_dirty_ = true;
  }
  if (last_chance) {
    logf(port::LogLevel::Error, "stopping without paying by a price list: %s", err.c_str());
    exit_code_ = 1;
    done_ = true;
  }
  return false;
}

// Payee: publishes its price list (again at half its validity).
void Agent::publish_prices(uint64_t now) {
  quotes::PriceList l;
  l.contract = st_.contract;
  l.payee = st_.user;
  l.token = asset_.token;
  l.tokenAddress = asset_.address;
  l.validFrom = now;
  l.validUntil = now + cfg_.price_validity_s;
  l.prices.push_back(quotes::Price{kEnergySource, kEnergyUnit, sell_price_});
  std::string payload;
  if (!quotes::prices_sign(l, signer_, key_, payload)) {
    logf(port::LogLevel::Error, "cannot sign the price list");
    return;
  }
  mq_->publish(mqtt::topic_payee_prices(st_.user), payload, 1, true);
  if (prices_until_ == 0)
    logf(port::LogLevel::Info, "price list published: %s per Wh, valid %llu s at a time", fmt(sell_price_).c_str(),
         static_cast<unsigned long long>(cfg_.price_validity_s));
  prices_until_ = l.validUntil;
}

// Payee: the price list, and with its own meter, whether the payers keep up with what it
// delivered (everything received on incoming threads since the meter's first reading).
void Agent::payee_duties(uint64_t now) {
  if (!cfg_.payee || sell_price_.is_zero() || !mq_) return;
  if (now + cfg_.price_validity_s / 2 >= prices_until_) publish_prices(now);
  if (cfg_.meter == "none" || !st_.meter.has_last) return;
  U256 received = U256::zero();
  for (const auto& th : st_.threads)
    if (!th.sender) (void)u256_add(received, receiver_balance(tok(), th.latest.state), received);
  if (!baseline_set_) {
    baseline_set_ = true;
    received_base_ = received;
  }
  U256 got{};
  if (u256_sub(received, received_base_, got) != Status::Ok) got = U256::zero();
  serve_ = serve_check(st_.meter.units(), sell_price_, got, cfg_.serve_margin_units);
  if (serve_.serving == serving_) {
    // Still off: the OFF again now and then (a meter restarted meanwhile, a lost message).
    if (!serving_ && !switch_.kind.empty() && now_ms() - switch_sent_ms_ >= kSwitchResendMs) serve_switch_send(false);
    return;
  }
  serving_ = serve_.serving;
  if (!switch_.kind.empty()) serve_switch_send(serving_);
  std::string payers, last;
  for (const auto& th : st_.threads) {
    if (th.sender) continue;
    last = json::address_text(th.initial.state.sender);
    if (th.open) payers += (payers.empty() ? "" : ", ") + last;
  }
  if (payers.empty()) payers = last;
  if (!serving_)
    logf(port::LogLevel::Warn, "stopped serving %s: delivered %llu Wh, paid for %llu Wh, behind by %llu Wh (margin %llu)",
         payers.empty() ? "the payer" : payers.c_str(), static_cast<unsigned long long>(serve_.delivered_units),
         static_cast<unsigned long long>(serve_.paid_units), static_cast<unsigned long long>(serve_.behind_units),
         static_cast<unsigned long long>(cfg_.serve_margin_units));
  else
    logf(port::LogLevel::Info, "serving again: paid for %llu of %llu Wh delivered",
         static_cast<unsigned long long>(serve_.paid_units), static_cast<unsigned long long>(serve_.delivered_units));
  status_dirty_ = true;
}

void Agent::serve_switch_send(bool on) {
  const SwitchCommand c = serve_switch_command(switch_, on);
  mq_->publish(c.topic, c.payload, 1, false);
  if (!on) switch_sent_ms_ = now_ms();
  logf(on ? port::LogLevel::Info : port::LogLevel::Warn, "serve switch: %s %s on %s", on ? "on" : "off",
       c.payload.c_str(), c.topic.c_str());
}

// An amount in either asset of the contract: ours first, then the other one.
bool Agent::parse_either(const std::string& text, bool& is_token, U256& v, std::string& err) const {
  if (units::parse(text, asset_, v, err)) {
    is_token = asset_.token;
    return true;
  }
  std::string err2;
  const units::Asset other = asset_.token ? units::eth() : token_asset_;
  if ((asset_.token || token_asset_.token) && text.find(' ') != std::string::npos && units::parse(text, other, v, err2)) {
    is_token = other.token;
    return true;
  }
  return false;
}

// The amounts written in units (--price, --deposit, --thread-lock) once the asset is known.
bool Agent::resolve_amounts() {
  struct Item {
    const std::string* text;
    U256* value;
    const char* what;
  } items[] = {{&cfg_.price_text, &cfg_.price_wei, "price"},
               {&cfg_.deposit_text, &cfg_.deposit_wei, "deposit"},
               {&cfg_.thread_lock_text, &cfg_.thread_lock_wei, "thread lock"}};
  for (const Item& it : items) {
    if (it.text->empty() || it.value == &cfg_.deposit_wei) continue;
    std::string err;
    if (!units::parse(*it.text, asset_, *it.value, err)) {
      std::fprintf(stderr, "picopay-agent: %s: %s\n", it.what, err.c_str());
      return false;
    }
  }
  auto parse_any = [&](const std::string& text, bool& is_token, U256& v, std::string& err) {
    return parse_either(text, is_token, v, err);
  };
  // The deposit: "2.5 PPT", or both assets: "0.01 ETH + 5 PPT".
  if (cfg_.deposit_text.empty()) {
    const AssetAmounts d = in_asset(tok(), cfg_.deposit_wei);
    dep_wei_ = d.wei;
    dep_tok_ = d.token;
  } else {
    std::string rest = cfg_.deposit_text;
    while (!rest.empty()) {
      const size_t plus = rest.find('+');
      const std::string part = rest.substr(0, plus);
      rest = plus == std::string::npos ? "" : rest.substr(plus + 1);
      bool is_token = false;
      U256 v{}, sum{};
      std::string err;
      if (!parse_any(part, is_token, v, err)) {
        std::fprintf(stderr, "picopay-agent: deposit: %s\n", err.c_str());
        return false;
      }
      U256& into = is_token ? dep_tok_ : dep_wei_;
      if (u256_add(into, v, sum) != Status::Ok) return false;
      into = sum;
    }
  }
  if (!cfg_.exchange_text.empty()) {
    bool is_token = false;
    std::string err;
    if (!token_asset_.token) {
      std::fprintf(stderr, "picopay-agent: exchange: the ChannelManager takes no token (or no --rpc)\n");
      return false;
    }
    if (!parse_any(cfg_.exchange_text, is_token, ex_amount_, err) || ex_amount_.is_zero()) {
      std::fprintf(stderr, "picopay-agent: exchange: %s\n", err.empty() ? "must be above 0" : err.c_str());
      return false;
    }
    ex_sell_wei_ = !is_token;
    ex_todo_ = true;
  }
  // The tolerance binds every exchange: the one asked for at start and the commands.
  if (!cfg_.exchange_reference.empty() &&
      u256_parse_decimal(cfg_.exchange_reference.c_str(), cfg_.exchange_reference.size(), ex_reference_) != Status::Ok) {
    std::fprintf(stderr, "picopay-agent: exchange reference rate: token base units per wei (decimal)\n");
    return false;
  }
  if (!cfg_.sell_price_text.empty()) {
    std::string err;
    if (!units::parse(cfg_.sell_price_text, asset_, sell_price_, err) || sell_price_.is_zero()) {
      std::fprintf(stderr, "picopay-agent: sell price: %s\n", err.empty() ? "must be above 0" : err.c_str());
      return false;
    }
  }
  if (tok() && !cfg_.expect_income_wei.is_zero()) {
    // The signed collateral request names wei (collateral_request.hpp): a token payee gets
    // token collateral when a thread to it needs some (docs/flows.md).
    std::fprintf(stderr, "picopay-agent: expectIncomeWei: collateral requests are for ETH channels; a token payee "
                         "gets token collateral when a thread needs it\n");
    return false;
  }
  if (!cfg_.serve_switch.empty()) {
    std::string err;
    if (!serve_switch_parse(cfg_.serve_switch, switch_, err)) {
      std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
      return false;
    }
    if (!cfg_.payee || cfg_.sell_price_text.empty() || cfg_.meter == "none") {
      std::fprintf(stderr, "picopay-agent: serve switch: for a payee with --sell-price and a meter\n");
      return false;
    }
  }
  if (!cfg_.max_price_text.empty()) {
    std::string err;
    if (!cfg_.has_pay_to) {
      std::fprintf(stderr, "picopay-agent: max price: pays by a payee's price list, needs --pay-to\n");
      return false;
    }
    if (!units::parse(cfg_.max_price_text, asset_, max_price_, err) || max_price_.is_zero()) {
      std::fprintf(stderr, "picopay-agent: max price: %s\n", err.empty() ? "must be above 0" : err.c_str());
      return false;
    }
    by_list_ = true;
  }
  if (cfg_.payer && cfg_.price_wei.is_zero()) {
    std::fprintf(stderr, "picopay-agent: price: must be above 0\n");
    return false;
  }
  return true;
}

}  // namespace

bool config_private_key(const Config& cfg, PrivateKey& key, std::string& err) {
  if (cfg.key_hex.empty() && cfg.key_file.empty()) {
    err = "no key (privateKey or keyFile / --key-file)";
    return false;
  }
  // a hex key, a picopay sealed key file or a Web3 v3 JSON keystore (agent/common options.hpp)
  return agent::load_key(agent::KeyOptions{cfg.key_hex, cfg.key_file, ""}, key, err);
}

int agent_run(const Config& cfg) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  agent::refuse_sighup("picopay-agent", "the agent");  // no reload (docs/install.md)
  Agent a(cfg);
  return a.run();
}

}  // namespace picopay::device
