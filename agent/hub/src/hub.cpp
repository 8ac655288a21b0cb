#include "hub.hpp"
#include "log.hpp"

#include <cjson/cJSON.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "picopay/agent/json_state.hpp"
#include "picopay/agent/log.hpp"
#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/chain/watchtower.hpp"
#include "chain_follow.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "metrics.hpp"

namespace picopay::hub {

void logf(const char* level, const std::string& msg) { agent::log_named(level, msg); }

namespace {
constexpr size_t kThreadCap = 256;
constexpr uint64_t kReorderWindow = 64;
constexpr size_t kFutureMax = 64;

uint64_t now_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// The core's Reply codec (codec.hpp): Ack, Nack, Sync to the user.
Bytes reply_bytes(const Reply& r) {
  uint8_t buf[kMaxReplyWire];
  size_t n = 0;
  if (encode_reply(r, buf, sizeof buf, &n) != Status::Ok) return {};
  return Bytes(buf, buf + n);
}

uint64_t unix_now() { return static_cast<uint64_t>(std::time(nullptr)); }

// A stored request: the update's wire with txCountGlobal 0 and a placeholder signature (a
// request is unsigned; the codec wants a well-formed one).
bool update_wire(ChannelUpdate u, Bytes& out) {
  u.sig = Signature{};
  u.sig.v = 27;
  u.txCountGlobal = 0;
  uint8_t buf[kMaxChannelUpdateWire];
  size_t n = 0;
  if (encode_channel_update(u, buf, sizeof buf, &n) != Status::Ok) return false;
  out.assign(buf, buf + n);
  return true;
}

// Whether a request that does not apply now may apply later (it waits, stored).
bool waits(const ChannelUpdate& u, Status s) {
  return s == Status::PendingOperation || (u.reason == UpdateReason::OpenThread && s == Status::Underflow);
}

// A policy refusal the hub will not lift by itself (the user's proposal is then
// invalidated on request); the others may pass later (the chain catches up, an I/O error).
bool refused_for_good(Status s) {
  return s != Status::IoError && s != Status::NotOnChain && s != Status::CryptoUnavailable &&
         s != Status::PendingOperation;
}

// Re-send an outstanding request nobody answered after this; after a RequestNack the
// delay doubles from 1 s up to kNackBackoffMaxMs.
constexpr uint64_t kResendMs = 30000;
constexpr uint64_t kNackBackoffMaxMs = 60000;
// Timeout of a collateral deposit the hub requests (Unix seconds from when it is sent).
constexpr uint64_t kDepositTimeoutSeconds = 3600;
}  // namespace

// The thread root's scratch space (kThreadCap + 2 hashes), one per thread: the core uses
// it only during a call, so every channel of the worker shares it.
static Hash32* thread_scratch() {
  thread_local std::vector<Hash32> s(kThreadCap + 2);
  return s.data();
}

ThreadSet Hub::Chan::set() {
  const size_t room = std::min(thread_count + 1, kThreadCap);
  if (threads.size() < room) threads.resize(room);
  return ThreadSet{threads.data(), thread_count, threads.size(), thread_scratch()};
}

void Hub::lru_unlink(Chan* c) {
  if (c->lru_prev) c->lru_prev->lru_next = c->lru_next;
  else lru_head_ = c->lru_next;
  if (c->lru_next) c->lru_next->lru_prev = c->lru_prev;
  else lru_tail_ = c->lru_prev;
  c->lru_prev = c->lru_next = nullptr;
}

void Hub::lru_push_front(Chan* c) {
  c->lru_prev = nullptr;
  c->lru_next = lru_head_;
  if (lru_head_) lru_head_->lru_prev = c;
  lru_head_ = c;
  if (!lru_tail_) lru_tail_ = c;
}

bool Hub::pinned(const Chan* c) const {
  return !c->requests.empty() || !c->future.empty() || c->dirty || c->legacy_tx != 0 || c->legacy_unsaved ||
         status_dirty_.count(const_cast<Chan*>(c)) != 0 || timed_.count(const_cast<Chan*>(c)) != 0;
}

void Hub::evict() {
  const size_t cap = static_cast<size_t>(cfg_.channel_cache);
  const uint64_t before = evicted_;
  Chan* c = lru_tail_;
  while (chans_.size() > cap && c != nullptr) {
    Chan* prev = c->lru_prev;
    if (!pinned(c)) {
      lru_unlink(c);
      chans_.erase(c->user);  // destroys c
      ++evicted_;
    } else {
      c->compact();
    }
    c = prev;
  }
  if (cfg_.verbose && evicted_ != before)
    logf("info", "channel cache: evicted " + std::to_string(evicted_ - before) + " channel(s), " +
                     std::to_string(chans_.size()) + " cached");
}

Hub::Hub(Config cfg, const PrivateKey& key) : cfg_(std::move(cfg)), key_(key) {}

bool Hub::ok(LedgerStatus s, std::string& err) {
  if (s.ok()) return true;
  err = std::move(s.message);
  return false;
}

Hub::~Hub() {
  stop();
  secure_wipe(&key_, sizeof key_);
}

Bytes Hub::encode_state(const SignedChannelState& s) {
  uint8_t buf[kMaxChannelStateWire];
  size_t n = 0;
  if (encode_channel_state(s, buf, sizeof buf, &n) != Status::Ok) return {};
  return Bytes(buf, buf + n);
}

Bytes Hub::encode_threads(const Chan& ch) {
  Bytes out;
  for (size_t i = 0; i < ch.thread_count; ++i) {
    SignedThreadState st{};
    st.state = ch.threads[i];
    st.hasSigA = false;
    uint8_t buf[kMaxThreadStateWire];
    size_t n = 0;
    if (encode_thread_state(st, buf, sizeof buf, &n) != Status::Ok) continue;
    out.push_back(static_cast<uint8_t>(n >> 8));
    out.push_back(static_cast<uint8_t>(n & 0xff));
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

bool Hub::start(std::string& err) {
  if (signer_.init() != Status::Ok) {
    err = "signer init failed";
    return false;
  }
  if (signer_.address_of(key_, hub_) != Status::Ok) {
    err = "bad hub private key";
    return false;
  }
  if (!cfg_.hub_address.empty()) {
    Address want{};
    if (address_parse(cfg_.hub_address.c_str(), cfg_.hub_address.size(), want) != Status::Ok || want != hub_) {
      err = "--hub-address " + cfg_.hub_address + " does not match the key's address " + json::address_text(hub_);
      return false;
    }
  }
  if (address_parse(cfg_.contract.c_str(), cfg_.contract.size(), contract_) != Status::Ok) {
    err = "bad --contract address: " + cfg_.contract;
    return false;
  }
  if (u256_parse_decimal(cfg_.collateral_max_wei.c_str(), cfg_.collateral_max_wei.size(), collateral_max_) !=
      Status::Ok) {
    err = "bad --collateral-max-wei: " + cfg_.collateral_max_wei;
    return false;
  }
  if (u256_parse_decimal(cfg_.reserve_warn_wei.c_str(), cfg_.reserve_warn_wei.size(), reserve_warn_) != Status::Ok) {
    err = "bad --reserve-warn-wei: " + cfg_.reserve_warn_wei;
    return false;
  }
  if (u256_parse_decimal(cfg_.collateral_wei.c_str(), cfg_.collateral_wei.size(), collateral_) != Status::Ok) {
    err = "bad --collateral-wei: " + cfg_.collateral_wei;
    return false;
  }
  if (u256_parse_decimal(cfg_.collateral_tokens.c_str(), cfg_.collateral_tokens.size(), collateral_tokens_) !=
      Status::Ok) {
    err = "bad --collateral-tokens: " + cfg_.collateral_tokens;
    return false;
  }
  {
    U256 r = U256::zero();
    if (u256_parse_decimal(cfg_.exchange_rate.c_str(), cfg_.exchange_rate.size(), r) != Status::Ok) {
      err = "bad --exchange-rate: " + cfg_.exchange_rate;
      return false;
    }
    rate_.known = !r.is_zero();
    rate_.tokensPerWei = r;
    rate_.time = cfg_.exchange_rate_time != 0 ? cfg_.exchange_rate_time : unix_now();
  }
  {
    unsigned n = cfg_.verify_threads >= 0 ? static_cast<unsigned>(cfg_.verify_threads)
                                          : (std::thread::hardware_concurrency() > 1 ? std::thread::hardware_concurrency() - 1 : 0);
    pool_ = std::make_unique<ParallelAcceptor>(n, key_, hub_);
  }
  if (const char* c = std::getenv("PICOPAY_HUB_CRASH_AT")) crash_at_ = c;
  if (!ok(Ledger::open(cfg_.store.empty() ? "sqlite:" + cfg_.db : cfg_.store, ledger_), err)) return false;
  if (!ok(ledger_->list_request_users(recover_users_), err)) return false;
  if (!lease_start(err)) return false;  // multi-instance hook (lease/hub_lease.cpp)
  if (!cfg_.metrics_listen.empty() && !(metrics_ = Metrics::start(cfg_.metrics_listen, *ledger_, err))) return false;

  if (!cfg_.rpc_url.empty()) {
    rpc_ = std::make_unique<chain::RpcClient>(cfg_.rpc_url);
    wallet_ = std::make_unique<chain::Wallet>(*rpc_, key_);
    auto st = wallet_->init();
    if (!st.ok()) {
      err = "chain: " + st.error().to_string();
      return false;
    }
    cm_ = std::make_unique<chain::ChannelManagerClient>(*wallet_, contract_);
    poller_ = std::make_unique<chain::EventPoller>(*rpc_, contract_, cfg_.confirmations, cfg_.event_state);
    auto ls = poller_->load();
    if (!ls.ok()) logf("warn", "watchtower: event state: " + ls.error().to_string());
    tower_ = std::make_unique<chain::Watchtower>(*cm_, *poller_);
    follow_ = std::make_unique<ChainFollow>(*rpc_, *cm_, contract_, cfg_.confirmations, cfg_.event_state + ".follow",
                                            cfg_.db + ".chain-marks");
    if (!follow_->load(err)) return false;
    // The watchtower watches every channel: each channel's latest state, streamed from
    // the ledger (the channels are not loaded into the cache).
    if (!ok(ledger_->for_each_channel([this](const std::string& k, const Bytes& state) {
              chain::WatchedChannel w;
              SignedChannelState s{};
              if (address_parse(k.c_str(), k.size(), w.user) != Status::Ok ||
                  decode_channel_state(state.data(), state.size(), s) != Status::Ok)
                return true;  // a corrupt row is refused when its channel is used
              if (s.hasSigHub && s.hasSigUser && s.state.timeout == 0) w.latest = s;
              tower_->watch(w);
              return true;
            }),
            err))
      return false;
    if (!load_deposit_jobs(err)) return false;
    logf("info", "chain: " + cfg_.rpc_url + ", watchtower on");
  } else {
    std::vector<std::pair<std::string, Bytes>> deps;
    if (!ok(ledger_->list_deposits(deps), err)) return false;
    if (!deps.empty())
      logf("warn", std::to_string(deps.size()) +
                       " countersigned collateral deposit(s) stored; without --rpc-url they wait (not sent)");
    logf("info", "no --rpc-url: ConfirmPending, Invalidation and EmptyChannel are refused (NeedsChain), collateral "
                 "deposits and the watchtower are off" +
                     std::string(cfg_.dev_skip_chain_checks ? " (DEV: ConfirmPending accepted unchecked)" : ""));
  }

  mqtt::Options o;
  o.host = cfg_.broker_host;
  o.port = cfg_.broker_port;
  o.username = cfg_.broker_user;
  o.password = cfg_.broker_password;
  o.tls_ca_file = cfg_.broker_ca;
  o.client_id = cfg_.client_id.empty() ? "picopay-hub-" + mqtt::topic_address(hub_) : cfg_.client_id;
  o.will_topic = mqtt::topic_hub_online(hub_);
  o.will_payload = "{\"state\":\"offline\"}";
  o.will_retain = true;
  o.receive_maximum = 65535;  // absorb bursts from many devices: the shipped broker queues at most 1000 messages per client
  mqtt_ = std::make_unique<mqtt::Client>(o);
  mqtt_->on_message([this](const mqtt::Message& m) { on_message(m); });
  if (metrics_) metrics_->set_mqtt_probe([this] { return mqtt_->connected(); });
  mqtt_->on_connect([this](bool) {
    std::string online = "{\"state\":\"online\",\"hub\":\"" + json::address_text(hub_) + "\",\"contract\":\"" +
                         json::address_text(contract_) + "\"}";
    mqtt_->publish(mqtt::topic_hub_online(hub_), online, 1, true);
    publish_rate();
    logf("info", "connected to broker " + cfg_.broker_host + ":" + std::to_string(cfg_.broker_port));
  });
  mqtt_->on_disconnect([this](const std::string& why) {
    if (mqtt_->session_taken_over()) {
      // Two hubs with one client id would take the session from each other forever.
      logf("FATAL", "broker: " + why + ": a second picopay-hub with the same client id (the same key or "
                    "--client-id)? Stopping this one");
      fatal_.store(true);
      return;
    }
    logf("warn", "broker: " + why);
  });
  mqtt_->subscribe(mqtt::topic_hub_filter(hub_), 1);
  worker_ = std::thread([this] { worker(); });
  if (!mqtt_->start(err)) return false;
  logf("info", "hub " + json::address_text(hub_) + " contract " + json::address_text(contract_) + " ledger " + ledger_->backend() + (cfg_.store.rfind("postgres", 0) == 0 ? std::string() : " " + cfg_.db));
  if (metrics_) logf("info", "metrics on " + cfg_.metrics_listen + " (port " + std::to_string(metrics_->port()) + "): /metrics, /dashboard");
  return true;
}

void Hub::stop() {
  if (stopped_.exchange(true)) return;
  if (mqtt_) {
    std::string offline = "{\"state\":\"offline\"}";
    if (mqtt_->connected()) mqtt_->publish(mqtt::topic_hub_online(hub_), offline, 1, true);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  lease_stop();  // multi-instance hook (lease/hub_lease.cpp)
  if (mqtt_) mqtt_->stop();
}

void Hub::wait_until_stopped(const std::atomic<bool>& quit) {
  while (!quit.load() && !fatal_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

void Hub::on_message(const mqtt::Message& m) {
  // MQTT thread: only enqueue.
  if (lease_ && !lease_accepts(m.topic)) return;  // multi-instance hook (lease/hub_lease.cpp)
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(m);
  }
  cv_.notify_one();
}

void Hub::worker() {
  recover();
  if (fatal_.load()) return;
  while (true) {
    lease_round();  // multi-instance hook (lease/hub_lease.cpp)
    if (fatal_.load()) return;
    std::vector<mqtt::Message> batch;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(500), [this] { return stop_.load() || !queue_.empty(); });
      if (stop_.load() && queue_.empty()) break;
      while (!queue_.empty() && batch.size() < static_cast<size_t>(cfg_.batch_max)) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (metrics_) metrics_->queue_depth(queue_.size());
    }
    if (!batch.empty() && !process_batch(batch)) return;
    if (stop_.load()) {
      std::lock_guard<std::mutex> lk(mu_);
      if (queue_.empty()) break;
    }
    chain_jobs();
    if (fatal_.load()) return;
    request_timers();
    collateral_round();
    flush_status(false);
    evict();
  }
  flush_status(true);
}

void Hub::flush_status(bool all) {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = status_dirty_.begin(); it != status_dirty_.end();) {
    Chan* c = *it;
    if (all || now - c->status_at >= kStatusInterval) {
      publish_status(*c);
      c->status_at = now;
      it = status_dirty_.erase(it);
    } else {
      ++it;
    }
  }
}

void Hub::fail(const std::string& what) {
  logf("FATAL", what + " — stopping without releasing any signature of this batch");
  fatal_.store(true);
}

bool Hub::process_batch(std::vector<mqtt::Message>& batch) {
  const auto metrics_t0 = std::chrono::steady_clock::now();
  std::vector<Out> outs;
  batch_done_.clear();
  tx_failed_ = false;
  std::string err;
  if (!ok(ledger_->begin(), err)) {
    fail(err);
    return false;
  }
  if (lease_ && !lease_fence(&batch)) {  // multi-instance hook (lease/hub_lease.cpp)
    ledger_->rollback();
    return true;
  }
  precompute(batch);
  std::vector<Chan*> touched;
  for (auto& m : batch) {
    Address hub{}, user{};
    std::string leaf;
    if (!mqtt::parse_channel_topic(m.topic, hub, user, leaf) || hub != hub_) continue;
    Chan* ch = channel(user);
    if (!ch) {
      tx_failed_ = true;
      break;
    }
    if (leaf == "update") handle_update(*ch, m.payload, outs);
    else if (leaf == "reply") handle_reply(*ch, m.payload, outs);
    else if (leaf == "sync") handle_sync(*ch, outs);
    else if (leaf == "collateral") handle_collateral(*ch, m.payload, outs);
    if (tx_failed_) break;
    if (ch->dirty) touched.push_back(ch);
  }
  if (tx_failed_) {
    ledger_->rollback();
    fail("store: " + txerr_);
    return false;
  }
  if (!ok(ledger_->commit(), err)) {
    ledger_->rollback();
    fail(err);
    return false;
  }
  // Committed: now the signatures may leave.
  for (auto& o : outs) {
    mqtt::PublishProps p;
    p.response_topic = o.response_topic;
    if (o.has_corr) p.correlation = mqtt::correlation_encode(o.corr);
    std::string perr;
    if (!mqtt_->publish(o.topic, o.payload.data(), o.payload.size(), 1, o.retain, &p, &perr))
      logf("warn", perr);
  }
  for (Chan* c : touched) {
    if (!c->dirty) continue;
    c->dirty = false;
    status_dirty_.insert(c);
    if (tower_) watch(*c);
  }
  flush_status(false);
  spec_.clear();
  spec_runs_.clear();
  evict();
  if (metrics_) metrics_->replies_published(outs.size());
  if (metrics_) metrics_->batch_done(batch.size(), std::chrono::duration<double>(std::chrono::steady_clock::now() - metrics_t0).count(), chans_.size());
  return true;
}

void Hub::precompute(const std::vector<mqtt::Message>& batch) {
  spec_.clear();
  spec_runs_.clear();
  if (!pool_) return;
  // One run per channel: the Payment updates that extend its current state one by one,
  // in arrival order (anything else is left to the serial pass).
  std::map<Chan*, size_t> run_of;
  std::vector<std::pair<Chan*, std::vector<Bytes>>> payloads;
  size_t total = 0;
  for (const auto& m : batch) {
    Address hub{}, user{};
    std::string leaf;
    if (!mqtt::parse_channel_topic(m.topic, hub, user, leaf) || hub != hub_ || leaf != "update") continue;
    ChannelUpdate u{};
    if (decode_channel_update(m.payload.data(), m.payload.size(), u) != Status::Ok ||
        u.reason != UpdateReason::Payment)
      continue;
    Chan* ch = channel(user);
    if (ch == nullptr || ch->legacy_tx != 0) continue;
    auto it = run_of.find(ch);
    if (it == run_of.end()) {
      it = run_of.emplace(ch, spec_runs_.size()).first;
      ChannelRun r;
      r.start = ch->latest.state;
      spec_runs_.push_back(std::move(r));
      payloads.emplace_back(ch, std::vector<Bytes>{});
    }
    ChannelRun& r = spec_runs_[it->second];
    const uint64_t expect = r.start.txCountGlobal + r.jobs.size() + 1;
    if (u.txCountGlobal != expect) continue;
    PaymentJob j;
    j.update = u;
    r.jobs.push_back(j);
    payloads[it->second].second.push_back(m.payload);
    ++total;
  }
  if (total < 2) {  // nothing to gain: the serial pass does it
    spec_runs_.clear();
    return;
  }
  pool_->run(spec_runs_);
  for (size_t i = 0; i < spec_runs_.size(); ++i) {
    const ChannelRun& r = spec_runs_[i];
    for (size_t k = 0; k < r.jobs.size(); ++k) {
      if (r.jobs[k].status != Status::Ok) break;
      spec_[{payloads[i].first, r.jobs[k].update.txCountGlobal}] = {&r.jobs[k], payloads[i].second[k]};
    }
  }
}

const PaymentJob* Hub::precomputed(const Chan& ch, const ChannelUpdate& u, const Bytes& payload) const {
  if (u.reason != UpdateReason::Payment || ch.legacy_tx != 0) return nullptr;
  auto it = spec_.find({&ch, u.txCountGlobal});
  if (it == spec_.end() || it->second.second != payload) return nullptr;
  const PaymentJob* j = it->second.first;
  // Only a result computed from exactly the state the channel has now.
  return j->prev == ch.latest.state ? j : nullptr;
}

Hub::Chan* Hub::channel(const Address& user) {
  auto it = chans_.find(user);
  if (it != chans_.end()) {
    Chan* c = it->second.get();
    if (c != lru_head_) {
      lru_unlink(c);
      lru_push_front(c);
    }
    return c;
  }
  const std::string k = mqtt::topic_address(user);
  auto c = std::make_unique<Chan>();
  c->user = user;
  c->key = k;
  Bytes state, threads;
  bool found = false;
  std::string err;
  if (!ok(ledger_->load_channel(k, state, threads, found), err)) {
    txerr_ = err;
    return nullptr;
  }
  if (found) {
    if (decode_channel_state(state.data(), state.size(), c->latest) != Status::Ok) {
      txerr_ = "corrupt stored state for " + k;
      return nullptr;
    }
    size_t p = 0;
    while (p + 2 <= threads.size() && c->thread_count < kThreadCap) {
      size_t n = (static_cast<size_t>(threads[p]) << 8) | threads[p + 1];
      p += 2;
      SignedThreadState st{};
      if (p + n > threads.size() || decode_thread_state(threads.data() + p, n, st) != Status::Ok) {
        txerr_ = "corrupt stored threads for " + k;
        return nullptr;
      }
      c->threads.push_back(st.state);
      ++c->thread_count;
      p += n;
    }
  } else {
    c->latest = SignedChannelState{};
    c->latest.state = channel_state_zero();
    c->latest.state.contractAddress = contract_;
    c->latest.state.user = user;
    c->latest.state.recipient = user;
  }
  std::vector<Ledger::RequestRow> rows;
  if (!ok(ledger_->load_requests(k, c->last_request_id, rows), err)) {
    txerr_ = err;
    return nullptr;
  }
  for (auto& r : rows) {
    Request q;
    q.id = r.id;
    if (decode_channel_update(r.update.data(), r.update.size(), q.update) != Status::Ok) {
      txerr_ = "corrupt stored request for " + k;
      return nullptr;
    }
    q.update.txCountGlobal = 0;
    c->requests.push_back(q);
  }
  // Legacy rows (hub-signed proposals of an earlier version): the queued ones become
  // requests; the outstanding proposal too, and until the channel passes its
  // txCountGlobal only exactly that update is countersigned there (the hub's signature
  // on that state is out; it never signs another state with that txCountGlobal).
  bool legacy = false;
  uint64_t ltx = 0;
  Bytes lprop;
  std::vector<Bytes> lqueue;
  if (!ok(ledger_->load_legacy(k, legacy, ltx, lprop, lqueue), err)) {
    txerr_ = err;
    return nullptr;
  }
  if (legacy && ltx > c->latest.state.txCountGlobal) c->legacy_tx = ltx;
  if ((legacy || !lqueue.empty()) && rows.empty() && c->last_request_id == 0) {
    std::vector<Bytes> all;
    if (legacy) all.push_back(lprop);
    all.insert(all.end(), lqueue.begin(), lqueue.end());
    for (auto& b : all) {
      Request q;
      if (decode_channel_update(b.data(), b.size(), q.update) != Status::Ok) {
        txerr_ = "corrupt stored legacy proposal for " + k;
        return nullptr;
      }
      q.update.txCountGlobal = 0;
      c->requests.push_back(q);
    }
    c->legacy_unsaved = true;
    logf("warn", k + ": " + std::to_string(all.size()) + " hub proposal(s) of an earlier version turned into requests");
  } else if (legacy && c->legacy_tx == 0) {
    c->legacy_unsaved = true;  // passed: the legacy row is deleted with the next write
  }
  c->compact();
  c->active_ms = now_ms();
  if (!ok(ledger_->has_collateral(k, c->collateralized), err)) {
    txerr_ = err;
    return nullptr;
  }
  Chan* raw = c.get();
  chans_[user] = std::move(c);
  lru_push_front(raw);
  if (raw->outstanding()) timed_.insert(raw);
  return raw;
}

void Hub::nack(Chan& ch, uint64_t tx, Status s, std::vector<Out>& outs) {
  Reply r = reply_make(ReplyKind::Nack);
  r.txCountGlobal = tx <= kMaxCounter ? tx : 0;
  r.status = s == Status::Ok ? Status::BadArgs : s;
  r.state = ch.latest;
  Out o;
  o.topic = mqtt::topic_reply(ch.user);
  o.payload = reply_bytes(r);
  o.corr = r.txCountGlobal;
  o.has_corr = true;
  if (metrics_) metrics_->nack_sent(r.status);
  if (cfg_.verbose)
    logf("info", ch.key + ": Nack tx " + std::to_string(tx) + " " + status_name(r.status));
  if (!o.payload.empty()) outs.push_back(std::move(o));
}

void Hub::handle_sync(Chan& ch, std::vector<Out>& outs) {
  Reply r = reply_make(ReplyKind::Sync);
  r.txCountGlobal = ch.latest.state.txCountGlobal;
  r.state = ch.latest;
  Out o;
  o.topic = mqtt::topic_reply(ch.user);
  o.payload = reply_bytes(r);
  o.corr = r.txCountGlobal;
  o.has_corr = true;
  outs.push_back(std::move(o));
  // The user (re)connected: the outstanding request again (after the Sync, so the
  // session is synced when it arrives).
  Out q;
  if (ch.outstanding() && request_out(ch, q)) outs.push_back(std::move(q));
}

void Hub::handle_update(Chan& ch, const Bytes& payload, std::vector<Out>& outs) {
  ChannelUpdate u{};
  Status s = decode_channel_update(payload.data(), payload.size(), u);
  if (s != Status::Ok) {
    nack(ch, 0, s, outs);
    return;
  }
  const uint64_t latest = ch.latest.state.txCountGlobal;
  if (u.txCountGlobal <= latest) {
    // Duplicate or replay: the same bytes get the stored answer again; anything else is
    // a conflict and is refused with our latest state.
    auto key = std::make_pair(ch.key, u.txCountGlobal);
    auto it = batch_done_.find(key);
    Bytes req, rep;
    bool found = false;
    if (it != batch_done_.end()) {
      req = it->second.first;
      rep = it->second.second;
      found = true;
    } else {
      std::string err;
      if (!ok(ledger_->find_update(ch.key, u.txCountGlobal, req, rep, found), err)) {
        txerr_ = err;
        tx_failed_ = true;
        return;
      }
    }
    if (found && req == payload) {
      Out o;
      o.topic = mqtt::topic_reply(ch.user);
      o.payload = rep;
      o.corr = u.txCountGlobal;
      o.has_corr = true;
      outs.push_back(std::move(o));
    } else {
      nack(ch, u.txCountGlobal, Status::BadTxCount, outs);
    }
    return;
  }
  if (u.txCountGlobal == latest + 2 && channel_is_skip(ch.latest.state, u)) {
    // The user's Invalidation of its half-signed latest + 1 (a skip): it follows the
    // latest state directly.
    apply_update(ch, u, payload, outs);
    return;
  }
  if (u.txCountGlobal > latest + 1) {
    // Early (reordered) delivery: keep it unsigned in memory until the gap fills.
    if (u.txCountGlobal - latest <= kReorderWindow) {
      size_t total = 0;
      for (auto& f : ch.future) total += f.second.size();
      if (total < kFutureMax) {
        auto& v = ch.future[u.txCountGlobal];
        bool dup = false;
        for (auto& b : v) dup = dup || b == payload;
        if (!dup) v.push_back(payload);
        return;
      }
    }
    nack(ch, u.txCountGlobal, Status::BadTxCount, outs);
    return;
  }
  apply_update(ch, u, payload, outs);
  if (tx_failed_) return;
  // Drain the reorder buffer.
  while (!ch.future.empty()) {
    auto it = ch.future.begin();
    const uint64_t next = ch.latest.state.txCountGlobal + 1;
    if (it->first < next) {
      for (auto& b : it->second) {
        ChannelUpdate old{};
        if (decode_channel_update(b.data(), b.size(), old) == Status::Ok)
          nack(ch, old.txCountGlobal, Status::BadTxCount, outs);
      }
      ch.future.erase(it);
      continue;
    }
    if (it->first != next) break;
    auto cands = std::move(it->second);
    ch.future.erase(it);
    bool applied = false;
    for (auto& b : cands) {
      ChannelUpdate fu{};
      if (decode_channel_update(b.data(), b.size(), fu) != Status::Ok) continue;
      if (!applied) {
        applied = apply_update(ch, fu, b, outs);
        if (tx_failed_) return;
      } else {
        nack(ch, fu.txCountGlobal, Status::BadTxCount, outs);
      }
    }
  }
}

ChainFacts Hub::chain_facts(const Chan& ch, UpdateReason reason, bool& has_access) {
  ChainFacts f{};
  f.known = false;
  has_access = cm_ != nullptr;
  const bool asserts = reason == UpdateReason::ConfirmPending || reason == UpdateReason::Invalidation ||
                       reason == UpdateReason::EmptyChannel;
  if (!asserts) return f;
  if (!cm_) {
    if (cfg_.dev_skip_chain_checks && reason == UpdateReason::ConfirmPending) {
      // DEV: as if the chain showed the pending operations executed.
      has_access = true;
      f.known = true;
      f.txCountGlobal = ch.latest.state.txCountGlobal;
      f.txCountChain = ch.latest.state.txCountChain;
      f.status = ChainChannelStatus::Open;
      f.emptied = false;
      f.blockTime = unix_now();
    }
    return f;
  }
  auto oc = cm_->channel(ch.user);
  if (!oc.ok()) {
    logf("warn", ch.key + ": " + update_reason_name(reason) + ": cannot read the chain: " + oc.error().to_string());
    return f;
  }
  auto blk = rpc_->block_by_number("latest");
  if (!blk.ok()) {
    logf("warn", ch.key + ": cannot read the latest block: " + blk.error().to_string());
    return f;
  }
  f.known = true;
  f.txCountGlobal = oc->txCountGlobal;
  f.txCountChain = oc->txCountChain;
  f.status = oc->status == chain::ChannelStatus::Open ? ChainChannelStatus::Open : ChainChannelStatus::InDispute;
  // emptyChannel(WithChallenge) completed: no dispute, nothing left in the channel, and a
  // state was applied on chain (txCount[0] > 0).
  f.emptied = oc->status == chain::ChannelStatus::Open && oc->weiTotal.is_zero() && oc->tokenTotal.is_zero() &&
              oc->txCountGlobal > 0 && oc->channelClosingTime == 0 && oc->threadCount == 0;
  f.blockTime = blk->timestamp;
  return f;
}

Status Hub::check_policy(Chan& ch, const ChannelUpdate& u) {
  const ChannelState& prev = ch.latest.state;
  if (ch.legacy_tx != 0 && u.txCountGlobal == ch.legacy_tx &&
      (ch.requests.empty() || !policy_update_matches(ch.requests.front().update, u)))
    return Status::NotRequested;  // only the update of the earlier hub-signed proposal here
  std::vector<ChannelUpdate> reqs;
  reqs.reserve(ch.requests.size());
  for (const auto& r : ch.requests) reqs.push_back(r.update);
  HubPolicyInput in{};
  in.requests = reqs.data();
  in.requestCount = reqs.size();
  in.rate = rate_;
  in.now = unix_now();
  // Inventory: what the hub holds in this channel beyond what its thread mirrors need.
  U256 mtok = U256::zero();
  const U256 mwei = mirrored_wei(ch, &mtok);
  if (u256_sub(prev.balanceWeiHub, mwei, in.inventoryWei) != Status::Ok) in.inventoryWei = U256::zero();
  if (u256_sub(prev.balanceTokenHub, mtok, in.inventoryToken) != Status::Ok) in.inventoryToken = U256::zero();
  in.chain = chain_facts(ch, u.reason, in.hasChainAccess);
  if (!in.chain.known && follow_ && follow_->mark(ch.user)) in.chain = ChainFollow::facts(*follow_->mark(ch.user));
  in.limits = policy_limits_default();
  in.limits.maxSpreadBps = 0;  // only at the rate it publishes (rate.cpp; docs/tokens.md)
  Status s = policy_hub_countersigns(in, prev, u);
  if (s != Status::Ok) return s;

  const ThreadState& t = u.thread.thread.state;
  if (u.reason == UpdateReason::OpenThread && t.sender == ch.user) {
    // Payer channel: the hub must be able to lock the same amount in the receiver's
    // channel. Wei it lacks is deposited first (chain connection) and the mirror waits in
    // the stored requests; without a chain, or for tokens (the hub deposits no tokens),
    // the payer's OpenThread is refused before the hub countersigns it, so the payer's
    // funds are never locked for a thread that cannot be mirrored.
    if (t.receiver == hub_ || t.receiver.is_zero()) return Status::WrongParty;  // nobody to mirror it to
    Chan* payee = channel(t.receiver);
    if (!payee) {
      tx_failed_ = true;
      return Status::IoError;
    }
    if (payee == &ch) return Status::Underflow;
    U256 tok = U256::zero(), wei = mirrored_wei(*payee, &tok), need_wei{}, need_tok{};
    if (u256_add(wei, t.balanceWeiSender, need_wei) != Status::Ok ||
        u256_add(tok, t.balanceTokenSender, need_tok) != Status::Ok)
      return Status::Overflow;
    if (!cm_ && (need_tok > payee->latest.state.balanceTokenHub || need_wei > payee->latest.state.balanceWeiHub)) {
      logf("warn", ch.key + ": OpenThread refused: payee " + payee->key + " lacks hub collateral (" +
                       json::amount_text(need_wei) + " wei and " + json::amount_text(need_tok) + " tokens needed, " +
                       json::amount_text(payee->latest.state.balanceWeiHub) + " wei and " +
                       json::amount_text(payee->latest.state.balanceTokenHub) + " tokens held, no --rpc-url to deposit)");
      return Status::Underflow;
    }
  }
  if (u.reason == UpdateReason::CloseThread && t.receiver == ch.user) {
    // Payee channel: the payer's channel must still hold the thread, or the hub would pay
    // the payee without being able to collect from the payer.
    Chan* payer = channel(t.sender);
    if (!payer) {
      tx_failed_ = true;
      return Status::IoError;
    }
    if (payer == &ch) return Status::Unauthorized;
    const long found = thread_set_find(payer->set(), t.sender, t.receiver, t.threadId);
    payer->compact();
    if (found < 0) return Status::ThreadNotFound;
  }
  return Status::Ok;
}

bool Hub::apply_update(Chan& ch, const ChannelUpdate& u, const Bytes& payload, std::vector<Out>& outs) {
  ChannelContext ctx{hub_};
  ThreadSet ts = ch.set();
  ChannelState next{};
  Hash32 h{};
  if (Status cs = chain_refusal(ch, u); cs != Status::Ok) {
    logf("warn", ch.key + ": refused the user's " + std::string(update_reason_name(u.reason) ? update_reason_name(u.reason) : "?") +
                     " tx " + std::to_string(u.txCountGlobal) + ": " + status_name(cs) + " (" +
                     ChainFollow::describe(*follow_->mark(ch.user)) + ")");
    nack(ch, u.txCountGlobal, cs, outs);
    // Emptied on chain: the user's proposal at latest + 1 will never be countersigned
    // (only EmptyChannel is); its Invalidation lets the user's session give it up so the
    // requested EmptyChannel can follow (chain_empty.cpp).
    const ChainMark* m = follow_->mark(ch.user);
    if (m->emptied && !m->dispute && u.txCountGlobal == ch.latest.state.txCountGlobal + 1 &&
        channel_accept(ctx, signer_, Party::Hub, ch.latest.state, ts, u, next, h) == Status::Ok)
      request_skip(ch, outs);
    return false;
  }
  const PaymentJob* pre = precomputed(ch, u, payload);
  bool want_skip = false;
  Status s = pre != nullptr ? Status::Ok : channel_accept(ctx, signer_, Party::Hub, ch.latest.state, ts, u, next, h);
  if (pre != nullptr) {
    next = pre->next;
    h = pre->hash;
  } else if (s == Status::Ok) {
    s = check_policy(ch, u);
    if (tx_failed_) return false;
    // The user signed it (channel_accept checked its signature) and the hub will never
    // countersign it: after the Nack, ask the user to invalidate it, so its session can
    // go on.
    want_skip = s != Status::Ok && u.txCountGlobal == ch.latest.state.txCountGlobal + 1 && refused_for_good(s);
  }
  // Once the Invalidation of latest + 1 is requested, nothing is countersigned there (the
  // user's session may already have given its proposal up for the Invalidation).
  if (s == Status::Ok && !channel_is_skip(ch.latest.state, u) && skip_requested(ch)) s = Status::NotRequested;
  if (s != Status::Ok) {
    if (u.reason != UpdateReason::Payment || cfg_.verbose)
      logf("warn", ch.key + ": refused the user's " + std::string(update_reason_name(u.reason) ? update_reason_name(u.reason) : "?") +
                       " tx " + std::to_string(u.txCountGlobal) + ": " + status_name(s));
    if (metrics_) metrics_->update_refused(u.reason, s);
    nack(ch, u.txCountGlobal, s, outs);
    if (want_skip) request_skip(ch, outs);
    return false;
  }
  SignedChannelState signed_state{};
  signed_state.state = next;
  signed_state.hasSigUser = true;
  signed_state.sigUser = u.sig;
  signed_state.hasSigHub = true;
  if (pre != nullptr) {
    signed_state.sigHub = pre->sigHub;
  } else if (signer_.sign_eth(key_, h, signed_state.sigHub) != Status::Ok) {
    nack(ch, u.txCountGlobal, Status::CryptoUnavailable, outs);
    return false;
  }
  Status ts_s = thread_set_apply(ts, u);
  if (ts_s != Status::Ok) {
    nack(ch, u.txCountGlobal, ts_s, outs);
    return false;
  }
  ch.thread_count = ts.count;
  ch.compact();
  const ChannelState prev_state = ch.latest.state;
  ch.latest = signed_state;
  if (ch.legacy_tx != 0 && ch.latest.state.txCountGlobal >= ch.legacy_tx) {
    ch.legacy_tx = 0;
    ch.legacy_unsaved = true;  // the legacy row goes with the next write of the requests
  }
  Reply r = reply_make(ReplyKind::Ack);
  r.txCountGlobal = u.txCountGlobal;
  r.sig = signed_state.sigHub;
  Bytes rep = reply_bytes(r);
  std::string err;
  const Bytes st_wire = encode_state(signed_state);
  if (!ok(ledger_->insert_update(ch.key, u.txCountGlobal, payload, rep, st_wire), err)) {
    txerr_ = err;
    tx_failed_ = true;
    return false;
  }
  persist_channel(ch);
  if (tx_failed_) return false;
  if (!ok(ledger_->insert_history(ch.key, history_row(history_entry(prev_state, next, u))), err)) {
    txerr_ = err;
    tx_failed_ = true;
    return false;
  }
  batch_done_[std::make_pair(ch.key, u.txCountGlobal)] = std::make_pair(payload, rep);
  Out o;
  o.topic = mqtt::topic_reply(ch.user);
  o.payload = rep;
  o.corr = u.txCountGlobal;
  o.has_corr = true;
  outs.push_back(std::move(o));
  if (metrics_) metrics_->update_countersigned(u.reason);
  if (cfg_.verbose)
    logf("info", ch.key + ": " + update_reason_name(u.reason) + " tx " + std::to_string(u.txCountGlobal) + " signed");
  // A request the user fulfilled is done (the outstanding one or one still queued).
  bool changed = false;
  for (size_t i = 0; i < ch.requests.size(); ++i) {
    if (!policy_update_matches(ch.requests[i].update, u)) continue;
    if (i == 0 && ch.requests[0].id != 0) ch.resend_at_ms = 0;
    ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
    changed = true;
    break;
  }
  // The channel records the empty channel now: any other EmptyChannel request is moot
  // (one asked again, with another transaction hash, must not empty a new deposit).
  for (size_t i = 0; u.reason == UpdateReason::EmptyChannel && i < ch.requests.size();) {
    if (ch.requests[i].update.reason != UpdateReason::EmptyChannel) {
      ++i;
      continue;
    }
    if (i == 0 && ch.requests[0].id != 0) ch.resend_at_ms = 0;
    ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
    changed = true;
  }
  // A collateral deposit the hub requested, now countersigned: a job for the chain,
  // stored in the same transaction as the countersignature, so a crash before
  // hubAuthorizedUpdate (or before the ConfirmPending) does not lose it.
  // Likewise a hub-only withdrawal (collateral the hub takes back, docs/flows.md): the
  // hub executes the user-signed state with hubAuthorizedUpdate.
  if ((u.reason == UpdateReason::ProposePendingDeposit &&
       (!u.deposit.depositWeiHub.is_zero() || !u.deposit.depositTokenHub.is_zero())) ||
      hub_withdrawal(u)) {
    if (!ok(ledger_->save_deposit(ch.key, signed_state.state.txCountGlobal, st_wire), err)) {
      txerr_ = err;
      tx_failed_ = true;
      return false;
    }
    DepositJob j;
    j.user = ch.user;
    j.state = signed_state;
    deposit_jobs_.push_back(j);
  }
  if (changed) persist_requests(ch);
  if (tx_failed_) return false;
  note_activity(ch, u);
  after_accept(ch, u, outs);
  if (tx_failed_) return false;
  pump(ch, outs);
  return !tx_failed_;
}

void Hub::persist_channel(Chan& ch) {
  std::string err;
  if (!ok(ledger_->save_channel(ch.key, ch.latest.state.txCountGlobal, encode_state(ch.latest), encode_threads(ch)), err)) {
    txerr_ = err;
    tx_failed_ = true;
  }
  ch.dirty = true;
}

void Hub::after_accept(Chan& ch, const ChannelUpdate& u, std::vector<Out>& outs) {
  const ThreadState& t = u.thread.thread.state;
  if (u.reason == UpdateReason::OpenThread && t.sender == ch.user) {
    // The payer opened a thread: the hub asks the payee to open its mirror (hub funds
    // locked in the payee's channel).
    Chan* payee = channel(t.receiver);
    if (!payee) {
      tx_failed_ = true;
      return;
    }
    ChannelUpdate p = channel_update_make(UpdateReason::OpenThread);
    p.thread = u.thread;
    add_request(*payee, p);
    if (!tx_failed_) pump(*payee, outs);
  } else if (u.reason == UpdateReason::CloseThread && t.receiver == ch.user) {
    // The payee closed a thread: the hub asks the payer to close it with the same final
    // state (the hub collects what it paid the payee).
    Chan* payer = channel(t.sender);
    if (!payer) {
      tx_failed_ = true;
      return;
    }
    ChannelUpdate p = channel_update_make(UpdateReason::CloseThread);
    p.thread = u.thread;
    add_request(*payer, p);
    if (!tx_failed_) pump(*payer, outs);
  }
}

U256 Hub::mirrored_wei(const Chan& ch, U256* tokens) const {
  U256 wei = U256::zero(), tok = U256::zero();
  for (const auto& r : ch.requests) {
    const ChannelUpdate& q = r.update;
    if (q.reason != UpdateReason::OpenThread || q.thread.thread.state.receiver != ch.user) continue;
    U256 a{};
    if (u256_add(wei, q.thread.thread.state.balanceWeiSender, a) == Status::Ok) wei = a;
    if (u256_add(tok, q.thread.thread.state.balanceTokenSender, a) == Status::Ok) tok = a;
  }
  if (tokens) *tokens = tok;
  return wei;
}

void Hub::ensure_collateral(Chan& payee, std::vector<Out>& outs) {
  if (!cm_) return;
  // Wei and tokens alike (docs/tokens.md): what the mirrored threads need against what the
  // hub holds in the channel, deposited in multiples of the configured chunk.
  U256 need_tok = U256::zero();
  const U256 need_wei = mirrored_wei(payee, &need_tok);
  U256 have_wei = payee.latest.state.balanceWeiHub, have_tok = payee.latest.state.balanceTokenHub, t{};
  const ChannelState& ls = payee.latest.state;
  bool in_flight = !ls.pendingDepositWeiHub.is_zero() || !ls.pendingDepositTokenHub.is_zero();
  if (u256_add(have_wei, ls.pendingDepositWeiHub, t) == Status::Ok) have_wei = t;
  if (u256_add(have_tok, ls.pendingDepositTokenHub, t) == Status::Ok) have_tok = t;
  for (const auto& r : payee.requests) {
    const ChannelUpdate& q = r.update;
    if (q.reason == UpdateReason::ConfirmPending) in_flight = true;
    if (q.reason != UpdateReason::ProposePendingDeposit) continue;
    in_flight = true;
    if (u256_add(have_wei, q.deposit.depositWeiHub, t) == Status::Ok) have_wei = t;
    if (u256_add(have_tok, q.deposit.depositTokenHub, t) == Status::Ok) have_tok = t;
  }
  for (const auto& j : deposit_jobs_)
    if (j.user == payee.user) in_flight = true;
  if ((need_wei <= have_wei && need_tok <= have_tok) || in_flight) return;  // the next round starts when it lands
  auto amount_for = [](const U256& need, const U256& have, const U256& chunk) {
    U256 shortfall{}, amount{}, x{};
    if (need <= have || u256_sub(need, have, shortfall) != Status::Ok) return U256::zero();
    amount = chunk.is_zero() ? shortfall : chunk;
    for (int i = 0; i < 4096 && amount < shortfall; ++i)
      if (u256_add(amount, chunk, x) == Status::Ok) amount = x;
    return amount < shortfall ? shortfall : amount;
  };
  ChannelUpdate p = channel_update_make(UpdateReason::ProposePendingDeposit);
  p.deposit.depositWeiHub = amount_for(need_wei, have_wei, collateral_);
  p.deposit.depositTokenHub = amount_for(need_tok, have_tok, collateral_tokens_);
  // The reserve on chain is checked before anything is promised (logged with the command
  // that funds it when short).
  if (!p.deposit.depositWeiHub.is_zero() && !reserve_allows(p.deposit.depositWeiHub, payee.key)) return;
  logf("info", payee.key + ": requesting a deposit of " + json::amount_text(p.deposit.depositWeiHub) + " wei and " +
                   json::amount_text(p.deposit.depositTokenHub) + " token base units of hub collateral for threads to mirror (" +
                   json::amount_text(need_wei) + " wei, " + json::amount_text(need_tok) + " tokens; held " +
                   json::amount_text(have_wei) + " wei, " + json::amount_text(have_tok) + " tokens)");
  p.deposit.timeout = unix_now() + kDepositTimeoutSeconds;  // set again when it is sent
  add_request(payee, p, true);
  (void)outs;  // sent by the caller's pump
}

void Hub::add_request(Chan& ch, const ChannelUpdate& u0, bool front) {
  Request r;
  r.update = u0;
  r.update.txCountGlobal = 0;
  if (front) {
    auto pos = ch.requests.begin();
    if (ch.outstanding()) ++pos;
    ch.requests.insert(pos, r);
  } else {
    ch.requests.push_back(r);
  }
  persist_requests(ch);  // same transaction as the update that made it necessary
}

Status Hub::request_applies(Chan& ch, const ChannelUpdate& u0) {
  ChannelUpdate u = u0;
  u.txCountGlobal = ch.latest.state.txCountGlobal + (channel_is_skip(ch.latest.state, u0) ? 2 : 1);
  ChannelContext ctx{hub_};
  ChannelState next{};
  const Status s = channel_next_state(ctx, ch.latest.state, ch.set(), u, next);
  ch.compact();
  return s;
}

void Hub::pump(Chan& ch, std::vector<Out>& outs) {
  bool changed = false;
  if (ch.outstanding()) {
    // Still wanted? A request that can no longer apply to the latest state (e.g. the user
    // confirmed the deposit itself) is dropped: the user's session proposes on the same
    // latest state, so no proposal of it can be in flight.
    const Status s = request_applies(ch, ch.requests.front().update);
    if (s == Status::Ok || waits(ch.requests.front().update, s)) return;
    logf("warn", ch.key + ": request " + std::to_string(ch.requests.front().id) + " (" +
                     update_reason_name(ch.requests.front().update.reason) + ") no longer applies (" + status_name(s) +
                     "): dropped");
    ch.requests.erase(ch.requests.begin());
    ch.resend_at_ms = 0;
    changed = true;
  }
  // The first request that applies now goes out; an OpenThread waiting for collateral (or
  // anything waiting for a pending operation) stays.
  bool waiting_thread = false;
  const uint64_t now = now_ms();
  for (size_t i = 0; i < ch.requests.size();) {
    const ChannelUpdate q = ch.requests[i].update;
    if (ch.requests[i].not_before_ms > now && ch.requests[i].nacked_at_tx == ch.latest.state.txCountGlobal) {
      timed_.insert(&ch);  // refused at this state: again after its backoff (request_timers)
      ++i;
      continue;
    }
    const Status s = request_applies(ch, q);
    if (s == Status::Ok) {
      Request r = ch.requests[i];
      ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
      if (r.update.reason == UpdateReason::ProposePendingDeposit)
        r.update.deposit.timeout = unix_now() + kDepositTimeoutSeconds;
      if (r.update.reason == UpdateReason::ProposePendingWithdrawal)
        r.update.withdrawal.timeout = unix_now() + kDepositTimeoutSeconds;
      r.id = ++ch.last_request_id;
      ch.requests.insert(ch.requests.begin(), r);
      persist_requests(ch);  // the id is stored before the request leaves (after COMMIT)
      if (tx_failed_) return;
      Out o;
      if (request_out(ch, o)) outs.push_back(std::move(o));
      schedule_resend(ch, kResendMs);
      if (cfg_.verbose)
        logf("info", ch.key + ": request " + std::to_string(r.id) + " " + update_reason_name(r.update.reason));
      return;
    }
    if (waits(q, s)) {
      waiting_thread = waiting_thread || q.reason == UpdateReason::OpenThread;
      ++i;
      continue;
    }
    logf("ERROR", ch.key + ": requested " + update_reason_name(q.reason) + " can never apply (" + status_name(s) +
                      "): dropped");
    ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
    changed = true;
  }
  if (changed) persist_requests(ch);
  if (waiting_thread && !tx_failed_) {
    const size_t before = ch.requests.size();
    ensure_collateral(ch, outs);
    if (ch.requests.size() != before && !tx_failed_) pump(ch, outs);
  }
}

void Hub::persist_requests(Chan& ch) {
  std::vector<Ledger::RequestRow> rows;
  rows.reserve(ch.requests.size());
  for (const auto& r : ch.requests) {
    Ledger::RequestRow row;
    row.id = r.id;
    if (!update_wire(r.update, row.update)) {
      txerr_ = ch.key + ": cannot encode a request";
      tx_failed_ = true;
      return;
    }
    rows.push_back(std::move(row));
  }
  std::string err;
  if (!ok(ledger_->save_requests(ch.key, ch.last_request_id, rows), err)) {
    txerr_ = err;
    tx_failed_ = true;
    return;
  }
  if (ch.legacy_unsaved && ch.legacy_tx == 0) {
    if (!ok(ledger_->delete_legacy(ch.key), err)) {
      txerr_ = err;
      tx_failed_ = true;
      return;
    }
    ch.legacy_unsaved = false;
  }
  ch.dirty = true;
}

bool Hub::request_out(Chan& ch, Out& o) {
  if (!ch.outstanding()) return false;
  HubRequest q{};
  q.contractAddress = contract_;
  q.user = ch.user;
  q.requestId = ch.requests.front().id;
  q.update = ch.requests.front().update;
  q.update.txCountGlobal = 0;
  q.update.sig = Signature{};
  uint8_t buf[kMaxHubRequestWire];
  size_t n = 0;
  Status s = hub_request_sign(signer_, key_, q);
  if (s == Status::Ok) s = encode_hub_request(q, buf, sizeof buf, &n);
  if (s != Status::Ok) {
    logf("ERROR", ch.key + ": cannot sign request " + std::to_string(q.requestId) + ": " + status_name(s));
    return false;
  }
  o.topic = mqtt::topic_request(ch.user);
  o.payload.assign(buf, buf + n);
  o.response_topic = mqtt::topic_hub_reply(hub_, ch.user);
  o.corr = q.requestId;
  o.has_corr = true;
  return true;
}

void Hub::schedule_resend(Chan& ch, uint64_t delay_ms) {
  ch.resend_at_ms = now_ms() + delay_ms;
  timed_.insert(&ch);
}

void Hub::handle_reply(Chan& ch, const Bytes& payload, std::vector<Out>& outs) {
  Reply r = reply_make(ReplyKind::Ack);
  const Status s = decode_reply(payload.data(), payload.size(), r);
  if (s != Status::Ok || r.kind != ReplyKind::RequestNack) {
    // The hub proposes nothing, so it takes no Ack or Nack: a replayed answer to a
    // hub-signed proposal of an earlier version is ignored.
    if (cfg_.verbose) logf("info", ch.key + ": ignored a reply on the hub's reply topic");
    return;
  }
  if (!ch.outstanding() || r.txCountGlobal != ch.requests.front().id) return;  // stale or forged
  ++ch.nacks_total;
  ch.last_nack = r.status;
  ch.dirty = true;
  Request q = ch.requests.front();
  ch.requests.erase(ch.requests.begin());
  ch.resend_at_ms = 0;
  if (channel_is_skip(ch.latest.state, q.update)) {
    // The user holds no such proposal (or will not give it up): nothing to invalidate.
    logf("warn", ch.key + ": user refused the Invalidation of tx " +
                     std::to_string(q.update.invalidation.lastInvalidTxCount) + ": " + status_name(r.status) +
                     "; dropped");
    persist_requests(ch);
    if (!tx_failed_) pump(ch, outs);
    return;
  }
  // A RequestNack carries no signature (anyone who can publish here could send one), so
  // it never drops a request (the user may in fact have proposed it: the hub keeps
  // countersigning it). The request goes to the back with a backoff (1 s doubling up to
  // 60 s, or at once when the channel moves on) and gets a new id when it is sent again,
  // so one refused request never blocks the others.
  q.id = 0;
  ++q.nacks;
  q.nacked_at_tx = ch.latest.state.txCountGlobal;
  const uint64_t delay = std::min<uint64_t>(kNackBackoffMaxMs, 1000ull << std::min(q.nacks - 1, 6u));
  q.not_before_ms = now_ms() + delay;
  logf("warn", ch.key + ": user refused request " + std::to_string(r.txCountGlobal) + " (" +
                   update_reason_name(q.update.reason) + "): " + status_name(r.status) + "; again in " +
                   std::to_string(delay / 1000) + " s or when the channel moves on");
  ch.requests.push_back(q);
  persist_requests(ch);
  timed_.insert(&ch);
  if (!tx_failed_) pump(ch, outs);
}

bool Hub::skip_requested(const Chan& ch) const {
  for (const auto& r : ch.requests)
    if (channel_is_skip(ch.latest.state, r.update)) return true;
  return false;
}

void Hub::request_skip(Chan& ch, std::vector<Out>& outs) {
  if (skip_requested(ch)) return;
  ChannelUpdate iv = channel_update_make(UpdateReason::Invalidation);
  iv.invalidation.previousValidTxCount = ch.latest.state.txCountGlobal;
  iv.invalidation.lastInvalidTxCount = ch.latest.state.txCountGlobal + 1;
  if (request_applies(ch, iv) != Status::Ok) return;  // not on pending operations: a plain Nack
  if (ch.outstanding()) {
    ch.requests.front().id = 0;  // overtaken by the skip: a new id when it is sent again
    ch.resend_at_ms = 0;
  }
  Request r;
  r.update = iv;
  ch.requests.insert(ch.requests.begin(), r);
  persist_requests(ch);
  if (!tx_failed_) pump(ch, outs);
}

void Hub::request_timers() {
  if (timed_.empty()) return;
  const uint64_t now = now_ms();
  std::vector<Out> outs;
  std::vector<Chan*> due;
  for (auto it = timed_.begin(); it != timed_.end();) {
    Chan* c = *it;
    if (c->requests.empty()) {
      it = timed_.erase(it);
      continue;
    }
    if (c->outstanding()) {
      if (c->resend_at_ms <= now) {
        Out o;
        if (request_out(*c, o)) outs.push_back(std::move(o));
        c->resend_at_ms = now + kResendMs;
      }
    } else {
      bool expired = false;
      for (const auto& r : c->requests) expired = expired || (r.not_before_ms != 0 && r.not_before_ms <= now);
      if (expired) due.push_back(c);
    }
    ++it;
  }
  if (!due.empty()) {
    if (!in_transaction([&] {
          for (Chan* c : due) {
            for (auto& r : c->requests)
              if (r.not_before_ms != 0 && r.not_before_ms <= now) r.not_before_ms = 0;
            pump(*c, outs);
            if (tx_failed_) break;
          }
        }))
      return;
  }
  publish_outs(outs);
}

bool Hub::in_transaction(const std::function<void()>& body) {
  std::string err;
  tx_failed_ = false;
  if (!ok(ledger_->begin(), err)) {
    fail(err);
    return false;
  }
  if (lease_ && !lease_fence(nullptr)) {  // multi-instance hook (lease/hub_lease.cpp)
    ledger_->rollback();
    return false;
  }
  body();
  if (tx_failed_ || !ok(ledger_->commit(), err)) {
    ledger_->rollback();
    fail("store: " + (err.empty() ? txerr_ : err));
    return false;
  }
  return true;
}

void Hub::publish_outs(std::vector<Out>& outs) {
  for (auto& o : outs) {
    mqtt::PublishProps p;
    p.response_topic = o.response_topic;
    if (o.has_corr) p.correlation = mqtt::correlation_encode(o.corr);
    std::string perr;
    if (!mqtt_->publish(o.topic, o.payload.data(), o.payload.size(), 1, o.retain, &p, &perr)) logf("warn", perr);
  }
}

void Hub::recover() {
  // Requests survive a crash (stored with the update that made them): re-send the
  // outstanding ones, send the next of the others.
  if (recover_users_.empty()) return;
  if (!mqtt_->wait_connected(15000)) logf("warn", "recovering hub requests before the broker connection is up");
  std::vector<Out> outs;
  std::string err;
  tx_failed_ = false;
  if (!ok(ledger_->begin(), err)) {
    fail(err);
    return;
  }
  if (lease_ && !lease_fence(nullptr)) {  // multi-instance hook (lease/hub_lease.cpp)
    ledger_->rollback();
    recover_users_.clear();
    return;
  }
  size_t resent = 0, resumed = 0;
  for (const auto& k : recover_users_) {
    Address u{};
    if (address_parse(k.c_str(), k.size(), u) != Status::Ok) continue;
    Chan* ch = channel(u);
    if (!ch) {
      tx_failed_ = true;
      break;
    }
    if (ch->legacy_unsaved) persist_requests(*ch);
    if (ch->outstanding()) {
      Out o;
      if (request_out(*ch, o)) outs.push_back(std::move(o));
      schedule_resend(*ch, kResendMs);
      ++resent;
    } else if (!ch->requests.empty()) {
      pump(*ch, outs);
      ++resumed;
    }
    if (tx_failed_) break;
  }
  recover_users_.clear();
  if (tx_failed_ || !ok(ledger_->commit(), err)) {
    ledger_->rollback();
    fail("store: " + (err.empty() ? txerr_ : err));
    return;
  }
  logf("info", "recovered hub requests: " + std::to_string(resent) + " re-sent, " + std::to_string(resumed) +
                   " queues resumed");
  publish_outs(outs);
}

void Hub::publish_status(Chan& ch) {
  const ChannelState& s = ch.latest.state;
  if (metrics_) metrics_->channel_state(ch.key, s);
  cJSON* j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "user", json::address_text(ch.user).c_str());
  cJSON_AddNumberToObject(j, "txCountGlobal", static_cast<double>(s.txCountGlobal));
  cJSON_AddNumberToObject(j, "txCountChain", static_cast<double>(s.txCountChain));
  cJSON_AddStringToObject(j, "balanceWeiHub", json::amount_text(s.balanceWeiHub).c_str());
  cJSON_AddStringToObject(j, "balanceWeiUser", json::amount_text(s.balanceWeiUser).c_str());
  cJSON_AddStringToObject(j, "balanceTokenHub", json::amount_text(s.balanceTokenHub).c_str());
  cJSON_AddStringToObject(j, "balanceTokenUser", json::amount_text(s.balanceTokenUser).c_str());
  cJSON_AddNumberToObject(j, "threadCount", static_cast<double>(s.threadCount));
  cJSON_AddNumberToObject(j, "requests", static_cast<double>(ch.requests.size()));
  cJSON_AddNumberToObject(j, "outstandingRequestId",
                          static_cast<double>(ch.outstanding() ? ch.requests.front().id : 0));
  if (ch.outstanding())
    cJSON_AddStringToObject(j, "outstandingRequest", update_reason_name(ch.requests.front().update.reason));
  cJSON_AddNumberToObject(j, "requestNacks", static_cast<double>(ch.nacks_total));
  if (follow_ && follow_->mark(ch.user))
    cJSON_AddStringToObject(j, "chain", ChainFollow::describe(*follow_->mark(ch.user)).c_str());
  if (ch.last_nack != Status::Ok) cJSON_AddStringToObject(j, "lastRequestNack", status_name(ch.last_nack));
  char* txt = cJSON_PrintUnformatted(j);
  if (txt) {
    mqtt_->publish(mqtt::topic_hub_status(hub_, ch.user), std::string(txt), 1, true);
    cJSON_free(txt);
  }
  cJSON_Delete(j);
}

void Hub::watch(Chan& ch) {
  if (!tower_) return;
  chain::WatchedChannel w;
  w.user = ch.user;
  if (ch.latest.hasSigHub && ch.latest.hasSigUser && ch.latest.state.timeout == 0) w.latest = ch.latest;
  tower_->watch(w);
}

bool Hub::load_deposit_jobs(std::string& err) {
  std::vector<std::pair<std::string, Bytes>> rows;
  if (!ok(ledger_->list_deposits(rows), err)) return false;
  for (auto& r : rows) {
    DepositJob j;
    if (address_parse(r.first.c_str(), r.first.size(), j.user) != Status::Ok ||
        decode_channel_state(r.second.data(), r.second.size(), j.state) != Status::Ok) {
      err = "corrupt stored deposit job for " + r.first;
      return false;
    }
    deposit_jobs_.push_back(j);
  }
  if (!rows.empty())
    logf("info", "recovered " + std::to_string(rows.size()) + " countersigned collateral deposit(s): checking the chain");
  return true;
}

void Hub::crash_point(const char* name) const {
  if (crash_at_.empty() || crash_at_ != name) return;
  logf("warn", std::string("PICOPAY_HUB_CRASH_AT=") + name + ": SIGKILL");
  std::raise(SIGKILL);
}

bool Hub::run_deposit_job(DepositJob& j) {
  const std::string who = json::address_text(j.user);
  const bool reclaim = !j.state.state.pendingWithdrawalWeiHub.is_zero() || !j.state.state.pendingWithdrawalTokenHub.is_zero();
  const std::string what = reclaim ? "collateral withdrawal" : "collateral deposit";
  const ChannelState& want = j.state.state;
  auto retry = [&](const std::string& why) {
    ++j.failures;
    const uint64_t wait_ms = std::min<uint64_t>(60000, 1000ull << std::min(j.failures, 6u));
    j.next_try_ms = now_ms() + wait_ms;
    logf("warn", what + " for " + who + " (txCountChain " + std::to_string(want.txCountChain) +
                     "): " + why + "; retry in " + std::to_string(wait_ms / 1000) + " s");
    return false;
  };
  // Idempotent: the contract refuses a txCount it has already seen, and a deposit sent
  // before a crash may have been mined, so look at the channel on chain first.
  auto oc = cm_->channel(j.user);
  if (!oc.ok()) return retry("cannot read the chain: " + oc.error().to_string());
  Hash32 txh{};  // stays zero when the deposit was found already made (its hash is not kept)
  if (oc->txCountChain >= want.txCountChain) {
    logf("info", what + " for " + who + " is already on chain (txCountChain " +
                     std::to_string(oc->txCountChain) + "): confirming");
  } else {
    if (!lease_chain()) {  // multi-instance hook (lease/hub_lease.cpp): only the chain role's holder sends
      j.next_try_ms = now_ms() + 1000;
      return false;
    }
    auto rc = cm_->hub_authorized_update(want, j.state.sigUser);
    if (!rc.ok()) return retry("hubAuthorizedUpdate: " + rc.error().to_string());
    txh = rc->transactionHash;
    logf("info", what + " for " + who + " on chain: " + json::hash_text(txh) + " (gas " +
                     std::to_string(rc->gasUsed) + ")");
    crash_point("deposit-sent");
  }
  if (!lease_owns(j.user)) {  // multi-instance hook (lease/hub_lease.cpp): the channel's owner confirms it
    j.next_try_ms = now_ms() + 1000;
    return false;
  }
  std::vector<Out> outs;
  std::string err;
  tx_failed_ = false;
  if (!ok(ledger_->begin(), err)) {
    fail(err);
    return false;
  }
  if (lease_ && !lease_fence(nullptr)) {  // multi-instance hook (lease/hub_lease.cpp)
    ledger_->rollback();
    return false;
  }
  Chan* ch = channel(j.user);
  if (ch) {
    ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
    std::memcpy(c.chainTx.transactionHash.bytes, txh.bytes, 32);
    add_request(*ch, c, true);  // ahead of the OpenThreads that wait for it
    if (!tx_failed_) pump(*ch, outs);
    if (!tx_failed_ && !ok(ledger_->delete_deposit(ch->key), err)) {
      txerr_ = err;
      tx_failed_ = true;
    }
  } else {
    tx_failed_ = true;
  }
  if (tx_failed_ || !ok(ledger_->commit(), err)) {
    ledger_->rollback();
    fail("store: " + (err.empty() ? txerr_ : err));
    return false;
  }
  publish_outs(outs);
  return true;
}

void Hub::chain_jobs() {
  if (!cm_) return;
  // Collateral deposits the payee countersigned: execute them on chain, then confirm.
  if (!deposit_jobs_.empty()) crash_point("deposit-countersigned");
  auto jobs = std::move(deposit_jobs_);
  deposit_jobs_.clear();
  const uint64_t now = now_ms();
  for (auto& j : jobs) {
    if (j.next_try_ms <= now) {
      if (run_deposit_job(j)) continue;  // done: ConfirmPending requested, row deleted
      if (fatal_.load()) return;
    }
    deposit_jobs_.push_back(j);  // kept (stored) for a later retry
  }
  if (metrics_) metrics_->deposit_backlog(deposit_jobs_.size());
  if (tower_ && lease_chain() /* multi-instance hook */ && now_ms() - last_tower_ms_ >= static_cast<uint64_t>(cfg_.watchtower_interval_s) * 1000) {
    last_tower_ms_ = now_ms();
    auto acts = tower_->tick();
    if (!acts.ok()) {
      logf("warn", "watchtower: " + acts.error().to_string());
    } else {
      for (auto& a : *acts) {
        if (metrics_) metrics_->watchtower_action(a.what, a.ok);
        logf(a.ok ? "info" : "warn", "watchtower: " + a.what + " " + json::address_text(a.user) +
                                         (a.ok ? " ok" : " failed: " + a.error));
      }
    }
    if (metrics_) metrics_->chain_round(*rpc_, *cm_, hub_, poller_->last_block(), acts.ok());
  }
  follow_chain();
}

Status Hub::chain_refusal(const Chan& ch, const ChannelUpdate& u) const {
  const ChainMark* m = follow_ ? follow_->mark(ch.user) : nullptr;
  if (!m) return Status::Ok;
  // An update asserting a chain fact is checked against the chain read at once
  // (check_policy), not against the mark of the last round: a ConfirmPending of the new
  // deposit that reopens an emptied channel is not refused for a mark a second old.
  if (cm_ && (u.reason == UpdateReason::ConfirmPending || u.reason == UpdateReason::Invalidation ||
              u.reason == UpdateReason::EmptyChannel))
    return Status::Ok;
  return policy_check_chain_status(ChainFollow::facts(*m), ch.latest.state, u.reason);
}

void Hub::follow_chain() {
  if (!follow_ || !follow_->due()) return;
  auto changes = follow_->tick();
  if (!changes.ok()) {
    logf("warn", "chain follow: " + changes.error().to_string());
    return;
  }
  for (const ChainChange& c : *changes) {
    const std::string who = json::address_text(c.user);
    logf(c.what == "open" ? "info" : "warn",
         "chain: channel " + who + " " + c.what +
             (c.mark.dispute ? ": no more updates are countersigned on it" : c.mark.emptied ? ": only EmptyChannel is countersigned on it" : ""));
    Chan* ch = lease_owns(c.user) /* multi-instance hook */ ? channel(c.user) : nullptr;
    if (ch) status_dirty_.insert(ch);
  }
  for (const Address& u : follow_->marked()) {
    const ChainMark* m = follow_->mark(u);
    Chan* ch = m && (m->dispute || m->emptied) && lease_owns(u) /* multi-instance hook */ ? channel(u) : nullptr;
    if (ch && m->dispute) dispute_threads(*ch);
    if (ch && m->emptied) request_empty_channel(*ch);
    if (fatal_.load()) return;
  }
}

}  // namespace picopay::hub
