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
#include <memory>
#include <mutex>
#include <thread>

#include "picopay/agent/json_state.hpp"
#include "picopay/agent/log.hpp"
#include "picopay/agent/options.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/codec.hpp"
#include "picopay/device/agent.hpp"
#include "picopay/device/chain_follow.hpp"
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
  uint64_t last_follow_ms_ = 0;
  bool chain_hold_ = false;  // the chain shows our channel in dispute or emptied: no payments
  static constexpr uint64_t kFollowMs = 2000;
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
  // Bookkeeping that must be in the same record as the session's change.
  if (fx.event == SessionEvent::UpdateCompleted) {
    refusals_ = 0;
    last_refusal_ = Status::Ok;
    if (fx.reason == UpdateReason::Payment) {
      st_.units_paid = st_.pending_units;
      st_.wei_paid = st_.pending_wei;
      ++payments_;
    }
    logf(port::LogLevel::Debug, "%s %llu double-signed", update_reason_name(fx.reason),
         static_cast<unsigned long long>(fx.txCountGlobal));
  } else if (fx.event == SessionEvent::ThreadPaymentReceived) {
    ++payments_;
  }
  if (fx.persist && !save()) return;  // persisted before anything leaves
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
    if (!th.sender) (void)u256_add(received, th.latest.state.balanceWeiReceiver, received);
    open += th.open ? 1 : 0;
  }
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "{\"state\":\"%s\",\"name\":\"%s\",\"txCountGlobal\":%llu,\"meteredWh\":%llu,\"unitsPaid\":%llu,"
                "\"weiPaid\":\"%s\",\"receivedWei\":\"%s\",\"pending\":%s,\"openThreads\":%zu,\"payments\":%llu,"
                "\"signing\":%s,\"lastRefusal\":\"%s\",\"chain\":\"%s\"}",
                done_ ? "offline" : "online", cfg_.name.c_str(),
                static_cast<unsigned long long>(s_.channel().state.txCountGlobal),
                static_cast<unsigned long long>(st_.meter.units()), static_cast<unsigned long long>(st_.units_paid),
                json::amount_text(st_.wei_paid).c_str(), json::amount_text(received).c_str(),
                s_.has_pending() ? "true" : "false", open, static_cast<unsigned long long>(payments_),
                s_.halted() ? "false" : "true", last_refusal_ == Status::Ok ? "" : status_name(last_refusal_),
                chain_note_.c_str());
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
              on->txCountGlobal > 0;
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
    logf(port::LogLevel::Info, "deposit on chain: %s", json::hash_text(txh).c_str());
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
  const bool hold = v->dispute || v->emptied;
  if (v->note != chain_note_ && (hold || chain_hold_)) {
    if (hold)
      logf(port::LogLevel::Warn, "chain: our channel is %s: payments stopped", v->note.c_str());
    else
      logf(port::LogLevel::Info, "chain: our channel is open again");
    chain_note_ = v->note;
    status_dirty_ = true;
  }
  if (hold || chain_hold_) {
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
    if (s_.channel().state.balanceWeiUser < amount) return false;
    const uint64_t pu = st_.pending_units;
    const U256 pw = st_.pending_wei;
    st_.pending_units = st_.units_paid + units;
    st_.pending_wei = wei_after;
    Status st = s_.propose_payment(amount, U256::zero(), unix_now(), fx);
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
  if (rec.latest.state.balanceWeiSender < amount) return false;
  const uint64_t before_units = st_.units_paid;
  const U256 before_wei = st_.wei_paid;
  st_.units_paid += units;  // in the same record as the signed thread state
  st_.wei_paid = wei_after;
  Status st = s_.thread_pay(rec.initial.state.receiver, rec.initial.state.threadId, amount, U256::zero(), fx);
  if (st != Status::Ok) {
    st_.units_paid = before_units;
    st_.wei_paid = before_wei;
    fatal(std::string("thread payment: ") + status_message(st));
    return false;
  }
  ++payments_;
  carry(st, fx, "thread payment");
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
  if (done_ || chain_hold_) return;
  if (!s_.synced() || s_.has_pending()) return;  // a hub request kept for chain facts does not block paying
  const ChannelState& c = s_.channel().state;
  if (!cfg_.payer) return;
  const uint64_t now = unix_now();
  // 1. Our deposit double-signed but not yet on chain / confirmed.
  if (channel_has_pending(c) && !c.pendingDepositWeiUser.is_zero()) {
    if (now_ms() < deposit_retry_ms_) return;
    if (!chain_failed_ && !onchain_deposit()) chain_failed_ = true;
    return;
  }
  if (channel_has_pending(c)) return;  // the hub's pending ops: it requests ConfirmPending
  // 2. Our first deposit (whoever deposits first: the hub's collateral may come before).
  if (!st_.deposited && !cfg_.deposit_wei.is_zero() && !stopping_) {
    Effects fx;
    st_.deposited = true;  // in the record that carries the proposal
    Status st = s_.request_deposit(cfg_.deposit_wei, U256::zero(), now + 3600, now, fx);
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
  // 3. Threads: open one when paying a payee.
  if (cfg_.has_pay_to) {
    long idx = sender_thread();
    if (idx >= 0 && due > 0) {
      U256 amount{};
      (void)u256_mul(cfg_.price_wei, U256::from_u64(due), amount);
      const SessionThread& rec = s_.thread_slot(static_cast<size_t>(idx));
      if (rec.latest.state.balanceWeiSender < amount) {
        // Exhausted: pay what it still holds, then ask the payee to close it.
        uint64_t affordable = 0;
        U256 q{}, rem{};
        if (u256_divmod(rec.latest.state.balanceWeiSender, cfg_.price_wei, q, rem) == Status::Ok && q.fits_u64())
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
      if (c.balanceWeiUser.is_zero()) {
        if (draining) {
          logf(port::LogLevel::Error, "no balance left to pay %llu units", static_cast<unsigned long long>(due));
          exit_code_ = 1;
          done_ = true;
        }
        return;
      }
      // A thread opened by us but never double-signed lingers only until the session's
      // proposal completes; open a new one locking threadLockWei (or the whole balance).
      U256 lock = cfg_.thread_lock_wei.is_zero() || c.balanceWeiUser < cfg_.thread_lock_wei ? c.balanceWeiUser
                                                                                           : cfg_.thread_lock_wei;
      Effects fx;
      uint64_t id = 0;
      Status st = s_.propose_thread_open(cfg_.pay_to, lock, U256::zero(), now, fx, &id);
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
  // 4. Pay what is due.
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

void Agent::handle(const Event& e) {
  if (e.kind == Event::Connected) {
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
    // a hex key, a picopay sealed key file or a Web3 v3 JSON keystore (agent/common options.hpp)
    std::string kerr;
    if (!agent::load_key(agent::KeyOptions{cfg_.key_hex, cfg_.key_file, ""}, key_, kerr)) {
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
  }
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
  mqtt::Options o;
  o.host = cfg_.host;
  o.port = cfg_.port;
  o.client_id = "picopay-" + mqtt::topic_address(me);
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
  if ((cfg_.meter == "tasmota" || cfg_.meter == "shelly") && !cfg_.meter_topic.empty()) mq_->subscribe(cfg_.meter_topic);
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
  logf(port::LogLevel::Info, "user %s, channel txCount %llu, state dir %s", json::address_text(me).c_str(),
       static_cast<unsigned long long>(s_.channel().state.txCountGlobal), cfg_.state_dir.c_str());
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
  while (!done_) {
    if (g_stop && !stopping_) {
      stopping_ = true;
      stop_deadline = now_ms() + 15000;
      logf(port::LogLevel::Info, "stopping: paying what is due%s", cfg_.close_on_exit ? " and closing threads" : "");
      if (!cfg_.payer) done_ = !s_.has_pending();
    }
    if (stopping_ && now_ms() > stop_deadline) {
      logf(port::LogLevel::Warn, "stop deadline reached with work left (state is saved; resumes on restart)");
      break;
    }
    if (mq_->session_taken_over())
      fatal("another client connected to the broker with this agent's client id (the same key running twice?)");
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

}  // namespace

int agent_run(const Config& cfg) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  Agent a(cfg);
  return a.run();
}

}  // namespace picopay::device
