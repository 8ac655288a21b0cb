#include "hub.hpp"

#include <cjson/cJSON.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "picopay/agent/json_state.hpp"
#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/chain/watchtower.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "metrics.hpp"

namespace picopay::hub {

namespace {
constexpr size_t kThreadCap = 256;
constexpr uint64_t kReorderWindow = 64;
constexpr size_t kFutureMax = 64;

uint64_t now_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

void logf(const char* level, const std::string& msg) {
  std::time_t t = std::time(nullptr);
  char ts[32];
  std::strftime(ts, sizeof ts, "%H:%M:%S", std::localtime(&t));
  std::fprintf(stderr, "%s picopay-hub %s: %s\n", ts, level, msg.c_str());
}

Bytes reply_bytes(const mqtt::Reply& r) {
  Bytes out;
  if (mqtt::encode_reply(r, out) != Status::Ok) out.clear();
  return out;
}
}  // namespace

Hub::Hub(Config cfg, const PrivateKey& key) : cfg_(std::move(cfg)), key_(key) {}

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
  if (u256_parse_decimal(cfg_.collateral_wei.c_str(), cfg_.collateral_wei.size(), collateral_) != Status::Ok) {
    err = "bad --collateral-wei: " + cfg_.collateral_wei;
    return false;
  }
  {
    unsigned n = cfg_.verify_threads >= 0 ? static_cast<unsigned>(cfg_.verify_threads)
                                          : (std::thread::hardware_concurrency() > 1 ? std::thread::hardware_concurrency() - 1 : 0);
    pool_ = std::make_unique<ParallelAcceptor>(n, key_, hub_);
  }
  if (const char* c = std::getenv("PICOPAY_HUB_CRASH_AT")) crash_at_ = c;
  if (!store_.open(cfg_.db, err)) return false;
  if (!store_.list_proposal_users(recover_users_, err)) return false;
  if (!cfg_.metrics_listen.empty() && !(metrics_ = Metrics::start(cfg_.metrics_listen, store_, err))) return false;

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
    std::vector<std::pair<std::string, Bytes>> rows;
    if (store_.list_channels(rows, err)) {
      for (auto& r : rows) {
        Address u{};
        if (address_parse(r.first.c_str(), r.first.size(), u) == Status::Ok) {
          Chan* c = channel(u);
          if (c) watch(*c);
        }
      }
    }
    if (!load_deposit_jobs(err)) return false;
    logf("info", "chain: " + cfg_.rpc_url + ", watchtower on");
  } else {
    std::vector<std::pair<std::string, Bytes>> deps;
    if (!store_.list_deposits(deps, err)) return false;
    if (!deps.empty())
      logf("warn", std::to_string(deps.size()) +
                       " countersigned collateral deposit(s) stored; without --rpc-url they wait (not sent)");
    logf("info", "no --rpc-url: ConfirmPending verification, collateral deposits and the watchtower are off" +
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
  mqtt_ = std::make_unique<mqtt::Client>(o);
  mqtt_->on_message([this](const mqtt::Message& m) { on_message(m); });
  if (metrics_) metrics_->set_mqtt_probe([this] { return mqtt_->connected(); });
  mqtt_->on_connect([this](bool) {
    std::string online = "{\"state\":\"online\",\"hub\":\"" + json::address_text(hub_) + "\",\"contract\":\"" +
                         json::address_text(contract_) + "\"}";
    mqtt_->publish(mqtt::topic_hub_online(hub_), online, 1, true);
    logf("info", "connected to broker " + cfg_.broker_host + ":" + std::to_string(cfg_.broker_port));
  });
  mqtt_->on_disconnect([](const std::string& why) { logf("warn", "broker: " + why); });
  mqtt_->subscribe(mqtt::topic_hub_filter(hub_), 1);
  worker_ = std::thread([this] { worker(); });
  if (!mqtt_->start(err)) return false;
  logf("info", "hub " + json::address_text(hub_) + " contract " + json::address_text(contract_) + " db " + cfg_.db);
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
  if (mqtt_) mqtt_->stop();
}

void Hub::wait_until_stopped(const std::atomic<bool>& quit) {
  while (!quit.load() && !fatal_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

void Hub::on_message(const mqtt::Message& m) {
  // MQTT thread: only enqueue.
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
    flush_status(false);
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
  if (!store_.begin(err)) {
    fail(err);
    return false;
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
    if (tx_failed_) break;
    if (ch->dirty) touched.push_back(ch);
  }
  if (tx_failed_) {
    store_.rollback();
    fail("store: " + txerr_);
    return false;
  }
  if (!store_.commit(err)) {
    store_.rollback();
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
    if (ch == nullptr || ch->has_proposal) continue;
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
  if (u.reason != UpdateReason::Payment) return nullptr;
  auto it = spec_.find({&ch, u.txCountGlobal});
  if (it == spec_.end() || it->second.second != payload) return nullptr;
  const PaymentJob* j = it->second.first;
  // Only a result computed from exactly the state the channel has now.
  return j->prev == ch.latest.state ? j : nullptr;
}

Hub::Chan* Hub::channel(const Address& user) {
  std::string k = mqtt::topic_address(user);
  auto it = chans_.find(k);
  if (it != chans_.end()) return it->second.get();
  auto c = std::make_unique<Chan>();
  c->user = user;
  c->key = k;
  c->threads.resize(kThreadCap);
  c->scratch.resize(kThreadCap + 2);
  Bytes state, threads;
  bool found = false;
  std::string err;
  if (!store_.load_channel(k, state, threads, found, err)) {
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
      c->threads[c->thread_count++] = st.state;
      p += n;
    }
  } else {
    c->latest = SignedChannelState{};
    c->latest.state = channel_state_zero();
    c->latest.state.contractAddress = contract_;
    c->latest.state.user = user;
    c->latest.state.recipient = user;
  }
  uint64_t ptx = 0;
  Bytes preq, pstate;
  if (!store_.load_proposal(k, ptx, preq, pstate, found, err)) {
    txerr_ = err;
    return nullptr;
  }
  if (found) {
    c->has_proposal = true;
    c->proposal.tx = ptx;
    c->proposal.request = preq;
    if (decode_channel_update(preq.data(), preq.size(), c->proposal.update) != Status::Ok ||
        decode_channel_state(pstate.data(), pstate.size(), c->proposal.state) != Status::Ok) {
      txerr_ = "corrupt stored proposal for " + k;
      return nullptr;
    }
  }
  std::vector<Bytes> q;
  if (!store_.load_queue(k, q, err)) {
    txerr_ = err;
    return nullptr;
  }
  for (auto& b : q) {
    ChannelUpdate qu{};
    if (decode_channel_update(b.data(), b.size(), qu) != Status::Ok) {
      txerr_ = "corrupt stored queued proposal for " + k;
      return nullptr;
    }
    c->queued.push_back(qu);
  }
  Chan* raw = c.get();
  chans_[k] = std::move(c);
  return raw;
}

void Hub::nack(Chan& ch, uint64_t tx, Status s, std::vector<Out>& outs) {
  mqtt::Reply r;
  r.kind = mqtt::ReplyKind::Nack;
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
  mqtt::Reply r;
  r.kind = mqtt::ReplyKind::Sync;
  r.txCountGlobal = ch.latest.state.txCountGlobal;
  r.state = ch.latest;
  Out o;
  o.topic = mqtt::topic_reply(ch.user);
  o.payload = reply_bytes(r);
  o.corr = r.txCountGlobal;
  o.has_corr = true;
  outs.push_back(std::move(o));
  if (ch.has_proposal) {
    Out p;
    p.topic = mqtt::topic_request(ch.user);
    p.payload = ch.proposal.request;
    p.response_topic = mqtt::topic_hub_reply(hub_, ch.user);
    p.corr = ch.proposal.tx;
    p.has_corr = true;
    outs.push_back(std::move(p));
  }
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
      if (!store_.find_update(ch.key, u.txCountGlobal, req, rep, found, err)) {
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
  if (ch.has_proposal) {
    // Our own proposal holds txCountGlobal latest+1: the user must answer it first.
    nack(ch, u.txCountGlobal, Status::BadTxCount, outs);
    handle_sync(ch, outs);
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
  while (!ch.future.empty() && !ch.has_proposal) {
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

Status Hub::check_confirm(const Chan& ch, const ChannelState& next) {
  if (!cm_) return cfg_.dev_skip_chain_checks ? Status::Ok : Status::Unauthorized;
  auto oc = cm_->channel(ch.user);
  if (!oc.ok()) {
    logf("warn", ch.key + ": ConfirmPending: cannot read the chain: " + oc.error().to_string());
    return Status::IoError;
  }
  if (oc->txCountChain < next.txCountChain) return Status::PendingOperation;
  return Status::Ok;
}

bool Hub::apply_update(Chan& ch, const ChannelUpdate& u, const Bytes& payload, std::vector<Out>& outs) {
  ChannelContext ctx{hub_};
  ThreadSet ts = ch.set();
  ChannelState next{};
  Hash32 h{};
  const PaymentJob* pre = precomputed(ch, u, payload);
  Status s = pre != nullptr ? Status::Ok : channel_accept(ctx, signer_, Party::Hub, ch.latest.state, ts, u, next, h);
  if (pre != nullptr) {
    next = pre->next;
    h = pre->hash;
  }
  if (s == Status::Ok && u.reason == UpdateReason::ConfirmPending) {
    s = check_confirm(ch, next);
    if (s == Status::Unauthorized)
      logf("warn", ch.key + ": ConfirmPending refused: no --rpc-url to check the chain");
  }
  if (s == Status::Ok && u.reason == UpdateReason::OpenThread) {
    // Payer channel (user = sender): the hub must be able to lock the same amount in the
    // receiver's channel.
    const ThreadState& t = u.thread.thread.state;
    if (t.sender == ch.user) {
      Chan* payee = channel(t.receiver);
      if (!payee) {
        tx_failed_ = true;
        return false;
      }
      if (payee == &ch) {
        s = Status::Underflow;
      } else {
        // The hub mirrors the thread in the payee's channel after the OpenThreads already
        // outstanding or queued there. Wei it lacks is deposited first (chain connection)
        // and the mirror waits in the stored queue; without a chain, or for tokens (the
        // hub deposits no tokens), the payer's OpenThread is refused before the hub
        // countersigns it, so the payer's funds are never locked for a thread that cannot
        // be mirrored.
        U256 tok = U256::zero(), wei = mirrored_wei(*payee, &tok), need_wei{}, need_tok{};
        if (u256_add(wei, t.balanceWeiSender, need_wei) != Status::Ok ||
            u256_add(tok, t.balanceTokenSender, need_tok) != Status::Ok) {
          s = Status::Overflow;
        } else if (need_tok > payee->latest.state.balanceTokenHub ||
                   (need_wei > payee->latest.state.balanceWeiHub && !cm_)) {
          s = Status::Underflow;
          logf("warn", ch.key + ": OpenThread refused: payee " + payee->key + " lacks hub collateral (" +
                           json::amount_text(need_wei) + " wei needed, " +
                           json::amount_text(payee->latest.state.balanceWeiHub) + " held" +
                           (cm_ ? ", tokens are not deposited by the hub)" : ", no --rpc-url to deposit)"));
        }
      }
    } else {
      s = Status::Unauthorized;  // a user opens threads only as their sender
    }
  }
  if (s == Status::Ok && u.reason == UpdateReason::CloseThread) {
    // The payee closes (docs/mqtt-protocol.md): it holds the latest thread state, the hub
    // does not, so a payer could close with an older state than the payee's and leave the
    // hub paying the payee more than it collects. A payer may close a thread only while
    // the payee's channel has never had it (the hub's OpenThread there never happened).
    const ThreadState& t = u.thread.thread.state;
    Chan* other = channel(t.sender == ch.user ? t.receiver : t.sender);
    if (!other) {
      tx_failed_ = true;
      return false;
    }
    if (other == &ch) {
      s = Status::Unauthorized;
    } else if (t.sender == ch.user) {
      if (thread_known(*other, t)) s = Status::Unauthorized;
    } else {
      // Payee channel: the payer's channel must still hold the thread, or the hub would
      // pay the payee without being able to collect from the payer.
      if (thread_set_find(other->set(), t.sender, t.receiver, t.threadId) < 0) s = Status::ThreadNotFound;
    }
  }
  if (s != Status::Ok) {
    if (metrics_) metrics_->update_refused(u.reason, s);
    nack(ch, u.txCountGlobal, s, outs);
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
  const ChannelState prev = ch.latest.state;
  ch.thread_count = ts.count;
  ch.latest = signed_state;
  mqtt::Reply r;
  r.kind = mqtt::ReplyKind::Ack;
  r.txCountGlobal = u.txCountGlobal;
  r.sig = signed_state.sigHub;
  Bytes rep = reply_bytes(r);
  std::string err;
  if (!store_.insert_update(ch.key, u.txCountGlobal, payload, rep, encode_state(signed_state), err)) {
    txerr_ = err;
    tx_failed_ = true;
    return false;
  }
  persist_channel(ch);
  if (tx_failed_) return false;
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
  after_accept(ch, u, prev, outs);
  return true;
}

bool Hub::thread_known(Chan& ch, const ThreadState& t) {
  auto same = [&](const ChannelUpdate& p) {
    const ThreadState& q = p.thread.thread.state;
    return p.reason == UpdateReason::OpenThread && q.sender == t.sender && q.receiver == t.receiver &&
           q.threadId == t.threadId;
  };
  if (thread_set_find(ch.set(), t.sender, t.receiver, t.threadId) >= 0) return true;
  if (ch.has_proposal && same(ch.proposal.update)) return true;
  for (const auto& q : ch.queued)
    if (same(q)) return true;
  return false;
}

void Hub::persist_channel(Chan& ch) {
  std::string err;
  if (!store_.save_channel(ch.key, ch.latest.state.txCountGlobal, encode_state(ch.latest), encode_threads(ch), err)) {
    txerr_ = err;
    tx_failed_ = true;
  }
  ch.dirty = true;
}

void Hub::after_accept(Chan& ch, const ChannelUpdate& u, const ChannelState&, std::vector<Out>& outs) {
  if (u.reason == UpdateReason::OpenThread && u.thread.thread.state.sender == ch.user) {
    // Payer opened a thread: open it in the payee's channel (hub collateral locked).
    Chan* payee = channel(u.thread.thread.state.receiver);
    if (!payee) {
      tx_failed_ = true;
      return;
    }
    ChannelUpdate p = channel_update_make(UpdateReason::OpenThread);
    p.thread = u.thread;
    propose(*payee, p, outs);
  } else if (u.reason == UpdateReason::CloseThread && u.thread.thread.state.receiver == ch.user) {
    // Payee closed a thread: close it in the payer's channel with the same final state.
    Chan* payer = channel(u.thread.thread.state.sender);
    if (!payer) {
      tx_failed_ = true;
      return;
    }
    ChannelUpdate p = channel_update_make(UpdateReason::CloseThread);
    p.thread = u.thread;
    propose(*payer, p, outs);
  }
}

U256 Hub::mirrored_wei(const Chan& ch, U256* tokens) const {
  U256 wei = U256::zero(), tok = U256::zero();
  auto add = [&](const ChannelUpdate& q) {
    if (q.reason != UpdateReason::OpenThread) return;
    U256 a{};
    if (u256_add(wei, q.thread.thread.state.balanceWeiSender, a) == Status::Ok) wei = a;
    if (u256_add(tok, q.thread.thread.state.balanceTokenSender, a) == Status::Ok) tok = a;
  };
  if (ch.has_proposal) add(ch.proposal.update);
  for (const auto& q : ch.queued) add(q);
  if (tokens) *tokens = tok;
  return wei;
}

void Hub::ensure_collateral(Chan& payee, std::vector<Out>& outs) {
  if (!cm_) return;
  const U256 need = mirrored_wei(payee);
  U256 have = payee.latest.state.balanceWeiHub, t{};
  bool in_flight = !payee.latest.state.pendingDepositWeiHub.is_zero();
  if (in_flight && u256_add(have, payee.latest.state.pendingDepositWeiHub, t) == Status::Ok) have = t;
  auto count = [&](const ChannelUpdate& q) {
    if (q.reason != UpdateReason::ProposePendingDeposit) return;
    in_flight = true;
    if (u256_add(have, q.deposit.depositWeiHub, t) == Status::Ok) have = t;
  };
  if (payee.has_proposal) count(payee.proposal.update);
  for (const auto& q : payee.queued) count(q);
  if (need <= have || in_flight) return;  // enough, or the next round starts when this deposit lands
  U256 shortfall{};
  if (u256_sub(need, have, shortfall) != Status::Ok) return;
  U256 amount = collateral_.is_zero() ? shortfall : collateral_;
  for (int i = 0; i < 4096 && amount < shortfall; ++i)
    if (u256_add(amount, collateral_, t) == Status::Ok) amount = t;
  if (amount < shortfall) amount = shortfall;
  logf("info", payee.key + ": depositing " + json::amount_text(amount) + " wei hub collateral for " +
                   json::amount_text(need) + " wei of threads to mirror (" + json::amount_text(have) + " held)");
  ChannelUpdate p = channel_update_make(UpdateReason::ProposePendingDeposit);
  p.deposit.depositWeiHub = amount;
  p.deposit.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;
  propose(payee, p, outs, true);
}

Status Hub::try_propose(Chan& ch, const ChannelUpdate& u0, std::vector<Out>& outs) {
  ChannelUpdate u = u0;
  ChannelContext ctx{hub_};
  ThreadSet ts = ch.set();
  ChannelState next{};
  Status s = channel_propose(ctx, signer_, key_, Party::Hub, ch.latest.state, ts, u, next);
  if (s != Status::Ok) return s;
  uint8_t buf[kMaxChannelUpdateWire];
  size_t n = 0;
  s = encode_channel_update(u, buf, sizeof buf, &n);
  if (s != Status::Ok) return s;
  ch.has_proposal = true;
  ch.proposal.tx = u.txCountGlobal;
  ch.proposal.update = u;
  ch.proposal.request.assign(buf, buf + n);
  ch.proposal.state = SignedChannelState{};
  ch.proposal.state.state = next;
  ch.proposal.state.hasSigHub = true;
  ch.proposal.state.sigHub = u.sig;
  std::string err;
  // Persisted (in this batch's transaction) before the request leaves after COMMIT.
  if (!store_.save_proposal(ch.key, u.txCountGlobal, ch.proposal.request, encode_state(ch.proposal.state), err)) {
    txerr_ = err;
    tx_failed_ = true;
    return Status::IoError;
  }
  ch.dirty = true;
  outs.push_back(request_out(ch));
  if (cfg_.verbose) logf("info", ch.key + ": proposed " + update_reason_name(u.reason) + " tx " + std::to_string(u.txCountGlobal));
  return Status::Ok;
}

// Whether a queued update that cannot be proposed now may succeed later (it waits).
static bool waits(const ChannelUpdate& u, Status s) {
  return (u.reason == UpdateReason::OpenThread && s == Status::Underflow) ||
         (u.reason == UpdateReason::ProposePendingDeposit && s == Status::PendingOperation);
}

void Hub::propose(Chan& ch, const ChannelUpdate& u0, std::vector<Out>& outs, bool front) {
  if (ch.has_proposal) {
    if (front) ch.queued.push_front(u0);
    else ch.queued.push_back(u0);
    persist_queue(ch);  // same transaction as the update that made it necessary
    return;
  }
  Status s = try_propose(ch, u0, outs);
  if (s == Status::Ok || tx_failed_) return;
  if (waits(u0, s)) {
    // An accepted thread is never dropped: it waits (stored) for the collateral.
    if (front) ch.queued.push_front(u0);
    else ch.queued.push_back(u0);
    persist_queue(ch);
    if (u0.reason == UpdateReason::OpenThread) ensure_collateral(ch, outs);
    return;
  }
  logf("warn", ch.key + ": cannot propose " + update_reason_name(u0.reason) + ": " + status_name(s));
}

void Hub::handle_reply(Chan& ch, const Bytes& payload, std::vector<Out>& outs) {
  mqtt::Reply r;
  if (mqtt::decode_reply(payload.data(), payload.size(), r) != Status::Ok) return;
  if (!ch.has_proposal || r.txCountGlobal != ch.proposal.tx) return;  // stale or forged
  if (r.kind == mqtt::ReplyKind::Nack) {
    logf("warn", ch.key + ": user refused our " + update_reason_name(ch.proposal.update.reason) + " tx " +
                     std::to_string(r.txCountGlobal) + ": " + status_name(r.status));
    return;
  }
  if (r.kind != mqtt::ReplyKind::Ack) return;
  const Hash32 h = channel_hash(ch.proposal.state.state);
  if (signer_.verify_eth(h, r.sig, ch.user) != Status::Ok) return;  // forged countersignature
  ThreadSet ts = ch.set();
  if (thread_set_apply(ts, ch.proposal.update) != Status::Ok) {
    logf("warn", ch.key + ": thread set refused our own proposal");
    return;
  }
  ch.thread_count = ts.count;
  SignedChannelState st = ch.proposal.state;
  st.hasSigUser = true;
  st.sigUser = r.sig;
  ch.latest = st;
  ch.has_proposal = false;
  std::string err;
  const bool deposit = ch.proposal.update.reason == UpdateReason::ProposePendingDeposit;
  const Bytes st_wire = encode_state(st);
  // A countersigned collateral deposit is a job for the chain: stored in the same
  // transaction as the countersignature, so a crash before hubAuthorizedUpdate (or
  // before the ConfirmPending) does not lose it (reloaded at start).
  if (!store_.insert_update(ch.key, st.state.txCountGlobal, ch.proposal.request, payload, st_wire, err) ||
      !store_.delete_proposal(ch.key, err) ||
      (deposit && !store_.save_deposit(ch.key, st.state.txCountGlobal, st_wire, err))) {
    txerr_ = err;
    tx_failed_ = true;
    return;
  }
  persist_channel(ch);
  if (cfg_.verbose) logf("info", ch.key + ": our " + update_reason_name(ch.proposal.update.reason) + " countersigned");
  if (deposit) {
    DepositJob j;
    j.user = ch.user;
    j.state = st;
    deposit_jobs_.push_back(j);
  }
  pump(ch, outs);
}

void Hub::pump(Chan& ch, std::vector<Out>& outs) {
  if (ch.has_proposal || ch.queued.empty()) return;
  // The first queued update that applies now goes out; an OpenThread waiting for
  // collateral (or a deposit waiting for a pending operation) stays queued.
  bool waiting_thread = false;
  for (size_t i = 0; i < ch.queued.size();) {
    const ChannelUpdate q = ch.queued[i];
    Status s = try_propose(ch, q, outs);
    if (tx_failed_) return;
    if (s == Status::Ok) {
      ch.queued.erase(ch.queued.begin() + static_cast<long>(i));
      persist_queue(ch);
      return;
    }
    if (waits(q, s)) {
      waiting_thread = waiting_thread || q.reason == UpdateReason::OpenThread;
      ++i;
      continue;
    }
    logf("ERROR", ch.key + ": queued " + update_reason_name(q.reason) + " can never apply (" + status_name(s) +
                      "): dropped");
    ch.queued.erase(ch.queued.begin() + static_cast<long>(i));
    persist_queue(ch);
    if (tx_failed_) return;
  }
  if (waiting_thread) ensure_collateral(ch, outs);
}

void Hub::persist_queue(Chan& ch) {
  std::vector<Bytes> items;
  for (ChannelUpdate q : ch.queued) {
    // Unsigned (propose() signs it when its turn comes): a placeholder signature, no
    // meaning, so the wire codec takes it.
    q.sig = Signature{};
    q.sig.v = 27;
    q.txCountGlobal = 0;
    uint8_t buf[kMaxChannelUpdateWire];
    size_t n = 0;
    if (encode_channel_update(q, buf, sizeof buf, &n) != Status::Ok) {
      txerr_ = ch.key + ": cannot encode a queued proposal";
      tx_failed_ = true;
      return;
    }
    items.emplace_back(buf, buf + n);
  }
  std::string err;
  if (!store_.save_queue(ch.key, items, err)) {
    txerr_ = err;
    tx_failed_ = true;
  }
  ch.dirty = true;
}

Hub::Out Hub::request_out(const Chan& ch) const {
  Out o;
  o.topic = mqtt::topic_request(ch.user);
  o.payload = ch.proposal.request;
  o.response_topic = mqtt::topic_hub_reply(hub_, ch.user);
  o.corr = ch.proposal.tx;
  o.has_corr = true;
  return o;
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
  // Outstanding and queued proposals survive a crash (stored with the update that made
  // them): re-send the outstanding ones, propose the head of a queue left without one.
  if (recover_users_.empty()) return;
  if (!mqtt_->wait_connected(15000)) logf("warn", "recovering hub proposals before the broker connection is up");
  std::vector<Out> outs;
  std::string err;
  tx_failed_ = false;
  if (!store_.begin(err)) {
    fail(err);
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
    if (ch->has_proposal) {
      outs.push_back(request_out(*ch));
      ++resent;
    } else if (!ch->queued.empty()) {
      pump(*ch, outs);
      ++resumed;
    }
    if (tx_failed_) break;
  }
  recover_users_.clear();
  if (tx_failed_ || !store_.commit(err)) {
    store_.rollback();
    fail("store: " + (err.empty() ? txerr_ : err));
    return;
  }
  logf("info", "recovered hub proposals: " + std::to_string(resent) + " re-sent, " + std::to_string(resumed) +
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
  cJSON_AddBoolToObject(j, "pendingProposal", ch.has_proposal);
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
  if (!store_.list_deposits(rows, err)) return false;
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
  const ChannelState& want = j.state.state;
  auto retry = [&](const std::string& why) {
    ++j.failures;
    const uint64_t wait_ms = std::min<uint64_t>(60000, 1000ull << std::min(j.failures, 6u));
    j.next_try_ms = now_ms() + wait_ms;
    logf("warn", "collateral deposit for " + who + " (txCountChain " + std::to_string(want.txCountChain) +
                     "): " + why + "; retry in " + std::to_string(wait_ms / 1000) + " s");
    return false;
  };
  // Idempotent: the contract refuses a txCount it has already seen, and a deposit sent
  // before a crash may have been mined, so look at the channel on chain first.
  auto oc = cm_->channel(j.user);
  if (!oc.ok()) return retry("cannot read the chain: " + oc.error().to_string());
  Hash32 txh{};  // stays zero when the deposit was found already made (its hash is not kept)
  if (oc->txCountChain >= want.txCountChain) {
    logf("info", "collateral deposit for " + who + " is already on chain (txCountChain " +
                     std::to_string(oc->txCountChain) + "): confirming");
  } else {
    auto rc = cm_->hub_authorized_update(want, j.state.sigUser);
    if (!rc.ok()) return retry("hubAuthorizedUpdate: " + rc.error().to_string());
    txh = rc->transactionHash;
    logf("info", "collateral deposit for " + who + " on chain: " + json::hash_text(txh));
    crash_point("deposit-sent");
  }
  std::vector<Out> outs;
  std::string err;
  tx_failed_ = false;
  if (!store_.begin(err)) {
    fail(err);
    return false;
  }
  Chan* ch = channel(j.user);
  if (ch) {
    ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
    std::memcpy(c.chainTx.transactionHash.bytes, txh.bytes, 32);
    propose(*ch, c, outs, true);  // ahead of the OpenThreads that wait for it
    if (!tx_failed_ && !store_.delete_deposit(ch->key, err)) {
      txerr_ = err;
      tx_failed_ = true;
    }
  } else {
    tx_failed_ = true;
  }
  if (tx_failed_ || !store_.commit(err)) {
    store_.rollback();
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
      if (run_deposit_job(j)) continue;  // done: ConfirmPending proposed, row deleted
      if (fatal_.load()) return;
    }
    deposit_jobs_.push_back(j);  // kept (stored) for a later retry
  }
  if (metrics_) metrics_->deposit_backlog(deposit_jobs_.size());
  if (tower_ && now_ms() - last_tower_ms_ >= static_cast<uint64_t>(cfg_.watchtower_interval_s) * 1000) {
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
}

}  // namespace picopay::hub
