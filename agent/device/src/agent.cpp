// picopay-agent runtime: one worker thread owns the state; the MQTT network thread and the
// stdin reader only enqueue events.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include "picopay/agent/json_state.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/codec.hpp"
#include "picopay/device/agent.hpp"
#include "picopay/device/meter.hpp"
#include "picopay/device/state.hpp"
#include "picopay/keyfile.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/port/posix.hpp"

namespace picopay::device {
namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

uint64_t now_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

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

class Agent {
 public:
  explicit Agent(const Config& c) : cfg_(c), log_(c.verbose ? port::LogLevel::Debug : port::LogLevel::Info) {}
  int run();

 private:
  void logf(port::LogLevel lv, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
  bool save();
  void fatal(const std::string& m) {
    logf(port::LogLevel::Error, "%s", m.c_str());
    exit_code_ = 1;
    done_ = true;
  }
  void publish_status(bool force);
  void handle(const Event& e);
  void on_reply(const std::vector<uint8_t>& p);
  void on_request(const std::vector<uint8_t>& p);
  void on_thread_update(const std::vector<uint8_t>& p);
  void on_thread_close(const std::vector<uint8_t>& p);
  void on_meter(const MeterReading& r);
  // What a channel state the hub sent (in a Sync or a Nack) is to us. It is untrusted
  // until checked: the broker may forge or replay it (DESIGN.md §4.3).
  enum class HubState {
    Ours,     // equal to our stored state
    Pending,  // the result of our pending proposal, countersigned by the hub
    Unknown,  // newer, double-signed by us and the hub, but not a state we hold or proposed
    Ignored,  // another channel, older, not double-signed, or forged (logged)
  };
  HubState check_hub_state(const SignedChannelState& hub, const char* what);
  void resolve_sync(const SignedChannelState& hub);
  void complete_pending(const Signature& sigHub);
  bool propose(ChannelUpdate u, uint64_t units_after, const U256& wei_after);
  void send_pending();
  void send_sync();
  void reply_hub(const mqtt::Reply& r);
  void step();  // decide what to do next
  bool onchain_deposit();
  bool pay_units(uint64_t units);
  long sender_thread() const;  // open thread we send on, or -1
  bool apply_thread_update(long idx, const ThreadUpdate& u);
  void try_buffered(long idx);

  Config cfg_;
  port::PosixLog log_;
  Signer signer_;
  PrivateKey key_{};
  AgentState st_;
  ChannelContext ctx_{};
  std::unique_ptr<mqtt::Client> mq_;
  Queue q_;
  bool synced_ = false;
  uint64_t last_sync_ms_ = 0;
  uint64_t last_send_ms_ = 0;
  uint64_t last_status_ms_ = 0;
  bool status_dirty_ = true;
  bool eof_ = false;
  bool stopping_ = false;
  bool done_ = false;
  int exit_code_ = 0;
  bool chain_failed_ = false;
  std::vector<ThreadUpdate> buffered_;  // payee: updates that arrived before their thread
  uint64_t payments_ = 0;
  int refusals_ = 0;
};

void Agent::logf(port::LogLevel lv, const char* fmt, ...) {
  char buf[1024];
  int n = std::snprintf(buf, sizeof buf, "[%s] ", cfg_.name.c_str());
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf + n, sizeof buf - static_cast<size_t>(n), fmt, ap);
  va_end(ap);
  log_.write(lv, buf);
}

bool Agent::save() {
  std::string err;
  if (!state_save(cfg_.state_dir, st_, err)) {
    fatal(err);
    return false;
  }
  status_dirty_ = true;
  return true;
}

void Agent::publish_status(bool force) {
  if (!mq_) return;
  uint64_t t = now_ms();
  if (!force && (!status_dirty_ || t - last_status_ms_ < static_cast<uint64_t>(cfg_.status_interval_ms))) return;
  last_status_ms_ = t;
  status_dirty_ = false;
  U256 received = U256::zero();
  for (const auto& th : st_.threads)
    if (!th.sender) (void)u256_add(received, th.latest.state.balanceWeiReceiver, received);
  char buf[768];
  std::snprintf(buf, sizeof buf,
                "{\"state\":\"%s\",\"name\":\"%s\",\"txCountGlobal\":%llu,\"meteredWh\":%llu,\"unitsPaid\":%llu,"
                "\"weiPaid\":\"%s\",\"receivedWei\":\"%s\",\"pending\":%s,\"openThreads\":%zu,\"payments\":%llu}",
                done_ ? "offline" : "online", cfg_.name.c_str(),
                static_cast<unsigned long long>(st_.channel.state.txCountGlobal),
                static_cast<unsigned long long>(st_.meter.units()), static_cast<unsigned long long>(st_.units_paid),
                json::amount_text(st_.wei_paid).c_str(), json::amount_text(received).c_str(),
                st_.has_pending ? "true" : "false", st_.open_thread_initials().size(),
                static_cast<unsigned long long>(payments_));
  mq_->publish(mqtt::topic_user_status(st_.user), std::string(buf), 1, true);
}

void Agent::send_sync() {
  last_sync_ms_ = now_ms();
  mqtt::PublishProps props;
  props.response_topic = mqtt::topic_reply(st_.user);
  mq_->publish(mqtt::topic_sync(st_.hub, st_.user), nullptr, 0, 1, false, &props);
}

void Agent::send_pending() {
  if (!st_.has_pending || !synced_) return;
  uint8_t buf[kMaxChannelUpdateWire];
  size_t n = 0;
  if (encode_channel_update(st_.pending, buf, sizeof buf, &n) != Status::Ok) {
    fatal("cannot encode the pending update");
    return;
  }
  mqtt::PublishProps props;
  props.response_topic = mqtt::topic_reply(st_.user);
  props.correlation = mqtt::correlation_encode(st_.pending.txCountGlobal);
  last_send_ms_ = now_ms();
  mq_->publish(mqtt::topic_update(st_.hub, st_.user), buf, n, 1, false, &props);
}

void Agent::reply_hub(const mqtt::Reply& r) {
  std::vector<uint8_t> out;
  if (mqtt::encode_reply(r, out) != Status::Ok) return;
  mqtt::PublishProps props;
  props.correlation = mqtt::correlation_encode(r.txCountGlobal);
  mq_->publish(mqtt::topic_hub_reply(st_.hub, st_.user), out.data(), out.size(), 1, false, &props);
}

// Proposes `u` on top of the latest state; persists it as pending, then sends it.
bool Agent::propose(ChannelUpdate u, uint64_t units_after, const U256& wei_after) {
  ThreadSetBuf ts(st_);
  ChannelState next{};
  Status s = channel_propose(ctx_, signer_, key_, Party::User, st_.channel.state, ts.set, u, next);
  if (s != Status::Ok) {
    logf(port::LogLevel::Error, "cannot propose %s: %s", update_reason_name(u.reason), status_message(s));
    return false;
  }
  st_.has_pending = true;
  st_.pending = u;
  st_.pending_units = units_after;
  st_.pending_wei = wei_after;
  if (!save()) return false;  // persisted before the signature leaves (DESIGN.md §4.1)
  logf(port::LogLevel::Debug, "proposed %s txCount %llu", update_reason_name(u.reason),
       static_cast<unsigned long long>(u.txCountGlobal));
  send_pending();
  return true;
}

// The hub countersigned the pending update: store the double-signed state.
void Agent::complete_pending(const Signature& sigHub) {
  ThreadSetBuf ts(st_);
  ChannelState next{};
  Status s = channel_next_state(ctx_, st_.channel.state, ts.set, st_.pending, next);
  if (s != Status::Ok) {
    fatal(std::string("pending update no longer applies: ") + status_message(s));
    return;
  }
  Hash32 h = channel_hash(next);
  s = signer_.verify_eth(h, sigHub, st_.hub);
  if (s != Status::Ok) {
    logf(port::LogLevel::Warn, "ack with a bad hub signature ignored: %s", status_message(s));
    return;
  }
  const ChannelUpdate u = st_.pending;
  st_.channel.state = next;
  st_.channel.sigUser = u.sig;
  st_.channel.sigHub = sigHub;
  st_.channel.hasSigUser = st_.channel.hasSigHub = true;
  if (u.reason == UpdateReason::OpenThread) {
    long i = st_.find_thread(u.thread.thread.state.sender, u.thread.thread.state.receiver,
                             u.thread.thread.state.threadId);
    if (i >= 0) st_.threads[static_cast<size_t>(i)].open = true;
  } else if (u.reason == UpdateReason::CloseThread) {
    long i = st_.find_thread(u.thread.thread.state.sender, u.thread.thread.state.receiver,
                             u.thread.thread.state.threadId);
    if (i >= 0) st_.threads[static_cast<size_t>(i)].open = false;
  }
  if (u.reason == UpdateReason::Payment) ++payments_;
  refusals_ = 0;
  st_.units_paid = st_.pending_units;
  st_.wei_paid = st_.pending_wei;
  st_.has_pending = false;
  save();
}

// Each outcome but Ours and Pending logs one line and changes nothing stored.
Agent::HubState Agent::check_hub_state(const SignedChannelState& hub, const char* what) {
  const ChannelState& mine = st_.channel.state;
  const ChannelState& s = hub.state;
  const auto ours = static_cast<unsigned long long>(mine.txCountGlobal);
  const auto theirs = static_cast<unsigned long long>(s.txCountGlobal);
  if (!(s.contractAddress == st_.contract) || !(s.user == st_.user)) {
    logf(port::LogLevel::Warn, "%s ignored: state %llu of another channel (contract %s, user %s)", what, theirs,
         json::address_text(s.contractAddress).c_str(), json::address_text(s.user).c_str());
    return HubState::Ignored;
  }
  if (theirs < ours) {
    logf(port::LogLevel::Warn,
         "%s ignored: state %llu is older than ours %llu (a replay, or the hub lost state: our double-signed state "
         "is the evidence)",
         what, theirs, ours);
    return HubState::Ignored;
  }
  if (theirs == ours) {
    if (s == mine) return HubState::Ours;
    logf(port::LogLevel::Warn, "%s ignored: state %llu differs from ours with the same txCountGlobal", what, theirs);
    return HubState::Ignored;
  }
  if (!hub.hasSigUser || !hub.hasSigHub) {
    logf(port::LogLevel::Warn, "%s ignored: state %llu (ours %llu) is not double-signed", what, theirs, ours);
    return HubState::Ignored;
  }
  const Hash32 h = channel_hash(s);
  Status su = signer_.verify_eth(h, hub.sigUser, st_.user);
  Status sh = signer_.verify_eth(h, hub.sigHub, st_.hub);
  if (su != Status::Ok || sh != Status::Ok) {
    logf(port::LogLevel::Warn, "%s ignored: state %llu (ours %llu) has a bad %s signature: %s", what, theirs, ours,
         su != Status::Ok ? "user" : "hub", status_message(su != Status::Ok ? su : sh));
    return HubState::Ignored;
  }
  if (st_.has_pending && st_.pending.txCountGlobal == s.txCountGlobal && theirs == ours + 1) {
    ThreadSetBuf ts(st_);
    ChannelState next{};
    if (channel_next_state(ctx_, mine, ts.set, st_.pending, next) == Status::Ok && next == s)
      return HubState::Pending;
  }
  // Our key signed it, yet this state dir holds neither it nor its proposal: persisting
  // before signing (DESIGN.md §4.1) makes that impossible unless the state dir was
  // restored from a backup or the key is used elsewhere. Adopting it would leave the
  // meter and thread records out of step with the channel (paying twice), so a person
  // has to look.
  logf(port::LogLevel::Error,
       "%s NOT adopted: state %llu is double-signed by us and the hub but is neither our state (%llu) nor our "
       "pending proposal; our key signed a state this state dir does not hold (restored from a backup? the key "
       "used elsewhere?). Not signing any channel update until this is resolved",
       what, theirs, ours);
  return HubState::Unknown;
}

void Agent::resolve_sync(const SignedChannelState& hub) {
  const uint64_t ours = st_.channel.state.txCountGlobal;
  switch (check_hub_state(hub, "sync")) {
    case HubState::Ours:
      synced_ = true;
      if (st_.has_pending && st_.pending.txCountGlobal == ours + 1) send_pending();  // same bytes again
      else if (st_.has_pending) st_.has_pending = false;
      return;
    case HubState::Pending:
      synced_ = true;
      complete_pending(hub.sigHub);  // the hub had it: adopt (verifies the state and sigHub again)
      logf(port::LogLevel::Info, "resync: the hub had our update %llu",
           static_cast<unsigned long long>(hub.state.txCountGlobal));
      return;
    case HubState::Unknown:
    case HubState::Ignored:
      return;  // stays unsynced: signs nothing, asks again
  }
}

void Agent::on_reply(const std::vector<uint8_t>& p) {
  mqtt::Reply r;
  Status s = mqtt::decode_reply(p.data(), p.size(), r);
  if (s != Status::Ok) {
    logf(port::LogLevel::Warn, "malformed reply ignored: %s", status_name(s));
    return;
  }
  if (r.kind == mqtt::ReplyKind::Sync) {
    if (!synced_) resolve_sync(r.state);  // synced: a duplicate or a replay, nothing to learn
    return;
  }
  if (!synced_ || !st_.has_pending || r.txCountGlobal != st_.pending.txCountGlobal) return;  // stale/duplicate
  if (r.kind == mqtt::ReplyKind::Ack) {
    complete_pending(r.sig);
  } else {
    // A Nack carries the hub's latest state: it counts only once that state checks out
    // (a forged or replayed Nack changes nothing and is not a refusal, DESIGN.md §4.3).
    switch (check_hub_state(r.state, "nack")) {
      case HubState::Ignored:
        return;
      case HubState::Unknown:
        synced_ = false;  // signs nothing until resolved
        return;
      case HubState::Pending:
        complete_pending(r.state.sigHub);  // the hub had our update after all
        logf(port::LogLevel::Info, "nack: the hub had our update %llu",
             static_cast<unsigned long long>(r.state.state.txCountGlobal));
        return;
      case HubState::Ours:
        break;  // the hub, at our state, refuses our pending update
    }
    logf(port::LogLevel::Error, "hub refused update %llu (%s): %s", static_cast<unsigned long long>(r.txCountGlobal),
         update_reason_name(st_.pending.reason), status_name(r.status));
    if (++refusals_ > 60) {
      fatal("the hub keeps refusing our signed update; not signing another state with that txCount");
    } else {
      // We signed it, so we never sign another state with this txCount (DESIGN.md §4.1):
      // the same bytes are offered again after a pause (e.g. the payee's collateral is
      // still on its way).
      last_send_ms_ = now_ms() + 1000;
    }
  }
}

void Agent::on_request(const std::vector<uint8_t>& p) {
  ChannelUpdate u{};
  Status s = decode_channel_update(p.data(), p.size(), u);
  mqtt::Reply r;
  r.txCountGlobal = u.txCountGlobal;
  if (s != Status::Ok) {
    logf(port::LogLevel::Warn, "malformed hub request ignored: %s", status_name(s));
    return;
  }
  if (!synced_) return;  // the hub re-sends; we answer once we know where we are
  const uint64_t ours = st_.channel.state.txCountGlobal;
  if (u.txCountGlobal == ours && st_.channel.hasSigHub && st_.channel.sigHub == u.sig && st_.channel.hasSigUser) {
    r.kind = mqtt::ReplyKind::Ack;  // duplicate: the same answer again
    r.sig = st_.channel.sigUser;
    reply_hub(r);
    return;
  }
  auto nack = [&](Status why) {
    r.kind = mqtt::ReplyKind::Nack;
    r.status = why;
    r.state = st_.channel;
    reply_hub(r);
  };
  if (u.txCountGlobal != ours + 1 || st_.has_pending) {
    nack(Status::BadTxCount);
    return;
  }
  ThreadSetBuf ts(st_);
  ChannelState next{};
  Hash32 h{};
  s = channel_accept(ctx_, signer_, Party::User, st_.channel.state, ts.set, u, next, h);
  if (s != Status::Ok) {
    logf(port::LogLevel::Warn, "hub %s refused: %s", update_reason_name(u.reason), status_message(s));
    nack(s);
    return;
  }
  // Policy beyond the core: a payee accepts threads only as receiver; a payer accepts
  // the close of its own threads.
  const ThreadState& t = u.thread.thread.state;
  if (u.reason == UpdateReason::OpenThread && (!cfg_.payee || t.receiver != st_.user)) {
    nack(Status::Unauthorized);
    return;
  }
  if (u.reason == UpdateReason::CloseThread && t.receiver == st_.user) {
    // A thread we receive on: the close must pay us at least what we hold (the latest
    // thread state, persisted); an older state signed by the payer would take back
    // payments we already received (docs/mqtt-protocol.md: the payee closes).
    long i = st_.find_thread(t.sender, t.receiver, t.threadId);
    const bool ok = i >= 0 && (t == st_.threads[static_cast<size_t>(i)].latest.state ||
                               thread_check_transition(st_.threads[static_cast<size_t>(i)].latest.state, t) ==
                                   Status::Ok);
    if (!ok) {
      logf(port::LogLevel::Warn, "hub CloseThread with a thread state older than ours refused");
      nack(Status::Unauthorized);
      return;
    }
  }
  Signature mine{};
  if (signer_.sign_eth(key_, h, mine) != Status::Ok) {
    fatal("signing failed");
    return;
  }
  st_.channel.state = next;
  st_.channel.sigHub = u.sig;
  st_.channel.sigUser = mine;
  st_.channel.hasSigHub = st_.channel.hasSigUser = true;
  if (u.reason == UpdateReason::OpenThread) {
    long i = st_.find_thread(t.sender, t.receiver, t.threadId);
    if (i < 0) {
      ThreadRecord rec;
      rec.sender = false;
      rec.initial = u.thread.thread;
      rec.latest = u.thread.thread;
      st_.threads.push_back(rec);
    } else {
      st_.threads[static_cast<size_t>(i)].open = true;
    }
  } else if (u.reason == UpdateReason::CloseThread) {
    long i = st_.find_thread(t.sender, t.receiver, t.threadId);
    if (i >= 0) st_.threads[static_cast<size_t>(i)].open = false;
  } else if (u.reason == UpdateReason::EmptyChannel) {
    for (auto& th : st_.threads) th.open = false;
  }
  if (!save()) return;  // persisted before our signature leaves
  r.kind = mqtt::ReplyKind::Ack;
  r.sig = mine;
  reply_hub(r);
  logf(port::LogLevel::Info, "countersigned hub %s (txCount %llu)", update_reason_name(u.reason),
       static_cast<unsigned long long>(u.txCountGlobal));
  if (u.reason == UpdateReason::OpenThread) try_buffered(st_.find_thread(t.sender, t.receiver, t.threadId));
}

bool Agent::apply_thread_update(long idx, const ThreadUpdate& u) {
  ThreadRecord& rec = st_.threads[static_cast<size_t>(idx)];
  if (u.txCount <= rec.latest.state.txCount) return true;  // duplicate / replay
  ThreadState next{};
  Status s = thread_accept(signer_, rec.latest.state, u, next);
  if (s != Status::Ok) {
    if (u.txCount > rec.latest.state.txCount + 1) return false;  // a gap: keep for later
    logf(port::LogLevel::Warn, "thread update %llu refused: %s", static_cast<unsigned long long>(u.txCount),
         status_message(s));
    return true;
  }
  rec.latest.state = next;
  rec.latest.sigA = u.sig;
  rec.latest.hasSigA = true;
  ++payments_;
  return true;
}

void Agent::try_buffered(long idx) {
  if (idx < 0) return;
  bool progress = true;
  bool changed = false;
  while (progress) {
    progress = false;
    for (size_t i = 0; i < buffered_.size(); ++i) {
      const ThreadRecord& rec = st_.threads[static_cast<size_t>(idx)];
      const ThreadUpdate& b = buffered_[i];
      if (b.sender != rec.initial.state.sender || b.threadId != rec.initial.state.threadId) continue;
      if (b.txCount == rec.latest.state.txCount + 1 || b.txCount <= rec.latest.state.txCount) {
        uint64_t before = rec.latest.state.txCount;
        (void)apply_thread_update(idx, b);
        changed |= st_.threads[static_cast<size_t>(idx)].latest.state.txCount != before;
        buffered_.erase(buffered_.begin() + static_cast<long>(i));
        progress = true;
        break;
      }
    }
  }
  if (changed) save();
}

void Agent::on_thread_update(const std::vector<uint8_t>& p) {
  ThreadUpdate u{};
  Status s = decode_thread_update(p.data(), p.size(), u);
  if (s != Status::Ok) {
    logf(port::LogLevel::Warn, "malformed thread update ignored: %s", status_name(s));
    return;
  }
  long idx = st_.find_thread(u.sender, st_.user, u.threadId);
  if (idx < 0 || !st_.threads[static_cast<size_t>(idx)].open) {
    if (buffered_.size() < 4096) buffered_.push_back(u);  // the hub's OpenThread may still come
    return;
  }
  uint64_t before = st_.threads[static_cast<size_t>(idx)].latest.state.txCount;
  if (!apply_thread_update(idx, u)) {
    if (buffered_.size() < 4096) buffered_.push_back(u);
    return;
  }
  if (st_.threads[static_cast<size_t>(idx)].latest.state.txCount != before) {
    if (!save()) return;
    try_buffered(idx);
  }
}

// Payer asks the payee to close: payload = the latest SignedThreadState (wire kind 0x02).
void Agent::on_thread_close(const std::vector<uint8_t>& p) {
  SignedThreadState ts{};
  if (decode_thread_state(p.data(), p.size(), ts) != Status::Ok || !ts.hasSigA) return;
  long idx = st_.find_thread(ts.state.sender, st_.user, ts.state.threadId);
  if (idx < 0) return;
  ThreadRecord& rec = st_.threads[static_cast<size_t>(idx)];
  if (!rec.open || rec.sender) return;
  // Only a request signed by the payer over our latest (or a valid newer) state of this
  // thread counts: a forged or stale one changes nothing stored (DESIGN.md §4.5).
  if (signer_.verify_eth(thread_hash(ts.state), ts.sigA, ts.state.sender) != Status::Ok) return;
  bool changed = false;
  if (ts.state.txCount > rec.latest.state.txCount) {
    if (thread_check_transition(rec.latest.state, ts.state) != Status::Ok) return;
    rec.latest = ts;
    changed = true;
  } else if (!(ts.state == rec.latest.state)) {
    return;
  }
  if (!rec.closing) {
    rec.closing = true;
    changed = true;
  }
  if (changed) save();
}

long Agent::sender_thread() const {
  for (size_t i = 0; i < st_.threads.size(); ++i)
    if (st_.threads[i].sender && st_.threads[i].open && !st_.threads[i].closing) return static_cast<long>(i);
  return -1;
}

void Agent::on_meter(const MeterReading& r) {
  if (st_.meter.apply(r)) {
    status_dirty_ = true;
    if (st_.meter.metered_mwh == 0 && st_.meter.extra_units == 0) save();  // the baseline
  }
}

bool Agent::onchain_deposit() {
  if (cfg_.rpc_url.empty()) {
    fatal("a deposit is needed but no rpc URL is configured");
    return false;
  }
  chain::RpcClient rpc(cfg_.rpc_url);
  chain::Wallet w(rpc, key_);
  if (!w.init()) {
    fatal("chain wallet init failed (rpc " + cfg_.rpc_url + ")");
    return false;
  }
  chain::ChannelManagerClient cm(w, st_.contract);
  auto on = cm.channel(st_.user);
  if (!on) {
    fatal("chain: " + on.error().to_string());
    return false;
  }
  Hash32 txh{};
  if (on->txCountChain < st_.channel.state.txCountChain) {
    auto rc = cm.user_authorized_update(st_.channel.state, st_.channel.sigHub);
    if (!rc) {
      fatal("chain: userAuthorizedUpdate: " + rc.error().to_string());
      return false;
    }
    txh = rc->transactionHash;
    logf(port::LogLevel::Info, "deposit on chain: %s", json::hash_text(txh).c_str());
  }
  ChannelUpdate u = channel_update_make(UpdateReason::ConfirmPending);
  u.chainTx.transactionHash = txh;
  return propose(u, st_.units_paid, st_.wei_paid);
}

bool Agent::pay_units(uint64_t units) {
  U256 amount{};
  if (u256_mul(cfg_.price_wei, U256::from_u64(units), amount) != Status::Ok) return false;
  U256 wei_after{};
  if (u256_add(st_.wei_paid, amount, wei_after) != Status::Ok) return false;
  if (!cfg_.has_pay_to) {
    if (st_.channel.state.balanceWeiUser < amount) return false;
    ChannelUpdate u = channel_update_make(UpdateReason::Payment);
    u.payment.recipient = Party::Hub;
    u.payment.amountWei = amount;
    return propose(u, st_.units_paid + units, wei_after);
  }
  long idx = sender_thread();
  if (idx < 0) return false;
  ThreadRecord& rec = st_.threads[static_cast<size_t>(idx)];
  if (rec.latest.state.balanceWeiSender < amount) return false;
  ThreadUpdate tu{};
  ThreadState next{};
  Status s = thread_propose(signer_, key_, rec.latest.state, amount, U256::zero(), tu, next);
  if (s != Status::Ok) {
    fatal(std::string("thread payment: ") + status_message(s));
    return false;
  }
  rec.latest.state = next;
  rec.latest.sigA = tu.sig;
  rec.latest.hasSigA = true;
  st_.units_paid += units;
  st_.wei_paid = wei_after;
  if (!save()) return false;  // persisted before the signature leaves
  uint8_t buf[kMaxThreadUpdateWire];
  size_t n = 0;
  if (encode_thread_update(tu, buf, sizeof buf, &n) == Status::Ok)
    mq_->publish(mqtt::topic_thread_update(cfg_.pay_to), buf, n, 1, false);
  ++payments_;
  return true;
}

void Agent::step() {
  if (!synced_ || done_) return;
  if (st_.has_pending) {
    if (now_ms() > last_send_ms_ + 2000) send_pending();  // same bytes; the hub dedups
    return;
  }
  const ChannelState& c = st_.channel.state;
  // Payee: close threads the payer asked to close (propose CloseThread with the latest).
  if (cfg_.payee) {
    for (auto& rec : st_.threads) {
      if (!rec.sender && rec.open && rec.closing) {
        ChannelUpdate u = channel_update_make(UpdateReason::CloseThread);
        u.thread.thread = rec.latest;
        propose(u, st_.units_paid, st_.wei_paid);
        return;
      }
    }
  }
  if (!cfg_.payer) return;
  // 1. A user deposit double-signed but not yet on chain / confirmed.
  if (channel_has_pending(c) && !c.pendingDepositWeiUser.is_zero()) {
    if (!chain_failed_ && !onchain_deposit()) chain_failed_ = true;
    return;
  }
  if (channel_has_pending(c)) return;  // hub-side pending ops: the hub confirms
  // 2. A new channel: deposit.
  if (c.txCountChain == 0 && !cfg_.deposit_wei.is_zero() && !stopping_) {
    ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingDeposit);
    u.deposit.depositWeiUser = cfg_.deposit_wei;
    port::PosixClock clock;
    u.deposit.timeout = clock.unix_seconds() + 3600;
    propose(u, st_.units_paid, st_.wei_paid);
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
      if (st_.threads[static_cast<size_t>(idx)].latest.state.balanceWeiSender < amount) {
        // Exhausted: ask the payee to close it; a new thread follows.
        ThreadRecord& rec = st_.threads[static_cast<size_t>(idx)];
        uint64_t affordable = 0;
        U256 q{}, rem{};
        if (u256_divmod(rec.latest.state.balanceWeiSender, cfg_.price_wei, q, rem) == Status::Ok && q.fits_u64())
          affordable = q.low64();
        if (affordable > 0) {
          pay_units(affordable);
          return;
        }
        rec.closing = true;
        save();
      }
    }
    for (auto& rec : st_.threads) {
      if (rec.sender && rec.open && rec.closing) {
        // Re-send the close request now and then until the hub's CloseThread arrives.
        if (now_ms() > last_send_ms_ + 2000) {
          uint8_t buf[kMaxThreadStateWire];
          size_t n = 0;
          if (encode_thread_state(rec.latest, buf, sizeof buf, &n) == Status::Ok)
            mq_->publish(mqtt::topic_thread_update(cfg_.pay_to), buf, n, 1, false);  // close request
          last_send_ms_ = now_ms();
        }
        return;
      }
    }
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
      // Open a thread to the payee, locking threadLockWei (or the whole balance).
      U256 lock = cfg_.thread_lock_wei.is_zero() || c.balanceWeiUser < cfg_.thread_lock_wei ? c.balanceWeiUser
                                                                                           : cfg_.thread_lock_wei;
      ThreadRecord rec;
      rec.sender = true;
      rec.open = false;
      rec.initial.state = thread_state_zero();
      rec.initial.state.contractAddress = st_.contract;
      rec.initial.state.sender = st_.user;
      rec.initial.state.receiver = cfg_.pay_to;
      rec.initial.state.threadId = st_.next_thread_id++;
      rec.initial.state.balanceWeiSender = lock;
      if (signer_.sign_eth(key_, thread_hash(rec.initial.state), rec.initial.sigA) != Status::Ok) {
        fatal("signing failed");
        return;
      }
      rec.initial.hasSigA = true;
      rec.latest = rec.initial;
      ChannelUpdate u = channel_update_make(UpdateReason::OpenThread);
      u.thread.thread = rec.initial;
      // Drop earlier never-opened proposals of ours (the hub refused or they lapsed).
      for (size_t i = st_.threads.size(); i-- > 0;)
        if (st_.threads[i].sender && !st_.threads[i].open && st_.threads[i].latest.state.txCount == 0 &&
            !st_.threads[i].closing)
          st_.threads.erase(st_.threads.begin() + static_cast<long>(i));
      st_.threads.push_back(rec);
      propose(u, st_.units_paid, st_.wei_paid);
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
        st_.threads[static_cast<size_t>(idx)].closing = true;
        save();
        last_send_ms_ = 0;
        return;
      }
    }
    done_ = true;
  }
}

void Agent::handle(const Event& e) {
  if (e.kind == Event::Connected) {
    synced_ = false;
    send_sync();
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
  if (t == mqtt::topic_reply(st_.user)) {
    on_reply(e.msg.payload);
  } else if (t == mqtt::topic_request(st_.user)) {
    on_request(e.msg.payload);
  } else if (cfg_.payee && t == mqtt::topic_thread_update(st_.user)) {
    // ThreadUpdate (kind 0x04): a payment; ThreadState (kind 0x02): the payer's close
    // request carrying its latest signed thread state.
    WireKind k{};
    if (wire_peek_kind(e.msg.payload.data(), e.msg.payload.size(), k) == Status::Ok && k == WireKind::ThreadState)
      on_thread_close(e.msg.payload);
    else
      on_thread_update(e.msg.payload);
  } else if (!cfg_.meter_topic.empty() && t == cfg_.meter_topic) {
    std::string payload(e.msg.payload.begin(), e.msg.payload.end());
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
  if (!cfg_.key_hex.empty()) {
    if (private_key_parse(cfg_.key_hex.c_str(), cfg_.key_hex.size(), key_) != Status::Ok) {
      std::fprintf(stderr, "picopay-agent: privateKey must be 0x + 64 hex\n");
      return 2;
    }
  } else if (!cfg_.key_file.empty()) {
    char pass[1024];
    size_t plen = 0;
    if (passphrase_obtain(pass, sizeof pass, &plen, false) != Status::Ok ||
        keyfile_read(cfg_.key_file.c_str(), pass, plen, key_) != Status::Ok) {
      std::memset(pass, 0, sizeof pass);
      std::fprintf(stderr, "picopay-agent: cannot open key file %s\n", cfg_.key_file.c_str());
      return 2;
    }
    std::memset(pass, 0, sizeof pass);
  } else {
    std::fprintf(stderr, "picopay-agent: no key (privateKey or keyFile / --key-file)\n");
    return 2;
  }
  Address me{};
  if (signer_.address_of(key_, me) != Status::Ok) {
    std::fprintf(stderr, "picopay-agent: bad private key\n");
    return 2;
  }
  std::string err;
  bool missing = false;
  if (!state_load(cfg_.state_dir, st_, err, &missing)) {
    if (!missing) {
      std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
      return 1;
    }
    if (!cfg_.has_hub || !cfg_.has_contract) {
      std::fprintf(stderr, "picopay-agent: a new state dir needs hub and contract\n");
      return 2;
    }
    st_.user = me;
    st_.hub = cfg_.hub;
    st_.contract = cfg_.contract;
    st_.channel = genesis_channel(cfg_.contract, me);
    if (!state_save(cfg_.state_dir, st_, err)) {
      std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
      return 1;
    }
  }
  if (st_.user != me || (cfg_.has_hub && st_.hub != cfg_.hub) || (cfg_.has_contract && st_.contract != cfg_.contract)) {
    std::fprintf(stderr, "picopay-agent: the state dir belongs to another key, hub or contract\n");
    return 2;
  }
  ctx_.hub = st_.hub;
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
  if (cfg_.payee) {
    mq_->subscribe(mqtt::topic_thread_update(me));
  }
  if ((cfg_.meter == "tasmota" || cfg_.meter == "shelly") && !cfg_.meter_topic.empty()) mq_->subscribe(cfg_.meter_topic);
  if (!mq_->start(err)) {
    std::fprintf(stderr, "picopay-agent: mqtt: %s\n", err.c_str());
    return 1;
  }
  logf(port::LogLevel::Info, "user %s, channel txCount %llu, state dir %s", json::address_text(me).c_str(),
       static_cast<unsigned long long>(st_.channel.state.txCountGlobal), cfg_.state_dir.c_str());
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
      if (!cfg_.payer) done_ = !st_.has_pending;
    }
    if (stopping_ && now_ms() > stop_deadline) {
      logf(port::LogLevel::Warn, "stop deadline reached with work left (state is saved; resumes on restart)");
      break;
    }
    Event e;
    int drained = 0;
    while (drained < 256 && q_.pop(e, drained == 0 ? 50 : 0)) {
      handle(e);
      ++drained;
      if (done_) break;
    }
    if (!synced_ && mq_->connected() && now_ms() - last_sync_ms_ > 2000) send_sync();
    step();
    if (stopping_ && !cfg_.payer && !st_.has_pending) {
      bool closing = false;
      for (const auto& t : st_.threads) closing |= (!t.sender && t.open && t.closing);
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
       static_cast<unsigned long long>(st_.channel.state.txCountGlobal),
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
