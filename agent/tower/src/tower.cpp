// picopay-tower: handovers over MQTT, chain rounds (see tower.hpp, docs/tower.md).
#include "picopay/tower/tower.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>

#include "picopay/agent/json_state.hpp"
#include "picopay/agent/log.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/mqtt/protocol.hpp"

namespace picopay::tower {

namespace {
constexpr size_t kQueueMax = 4096;          // handovers waiting for the worker
constexpr unsigned kLogPerWindow = 5;       // refusal lines per window at most
constexpr uint64_t kLogWindowMs = 10000;
// emptyChannelWithChallenge from a third party: 167,458 gas measured (docs/chain.md);
// the limit leaves room for larger thread roots and repricing.
constexpr uint64_t kAnswerGasLimit = 400000;

uint64_t now_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}
std::string addr(const Address& a) { return json::address_text(a); }
}  // namespace

void log_line(const char* level, const std::string& msg) { agent::log_named(level, msg); }

Tower::Tower(Config cfg, const PrivateKey& key) : cfg_(std::move(cfg)), key_(key) {}

Tower::~Tower() {
  stop();
  secure_wipe(&key_, sizeof key_);
}

bool Tower::start(std::string& err) {
  if (address_parse(cfg_.contract.c_str(), cfg_.contract.size(), contract_) != Status::Ok) {
    err = "bad --contract address: " + cfg_.contract;
    return false;
  }
  Address want_hub{}, want_tower{};
  if (!cfg_.hub.empty() && address_parse(cfg_.hub.c_str(), cfg_.hub.size(), want_hub) != Status::Ok) {
    err = "bad --hub address: " + cfg_.hub;
    return false;
  }
  if (!cfg_.tower_address.empty() &&
      address_parse(cfg_.tower_address.c_str(), cfg_.tower_address.size(), want_tower) != Status::Ok) {
    err = "bad --tower-address: " + cfg_.tower_address;
    return false;
  }
  if (verifier_.init() != Status::Ok) {
    err = "cannot create the signature context";
    return false;
  }
  rpc_ = std::make_unique<chain::RpcClient>(cfg_.rpc_url);
  wallet_ = std::make_unique<chain::Wallet>(*rpc_, key_);
  secure_wipe(&key_, sizeof key_);
  if (auto st = wallet_->init(); !st.ok()) {
    err = "chain " + cfg_.rpc_url + ": " + st.error().to_string();
    return false;
  }
  if (!cfg_.tower_address.empty() && wallet_->address() != want_tower) {
    err = "the key is " + addr(wallet_->address()) + ", not --tower-address " + cfg_.tower_address;
    return false;
  }
  auto code = rpc_->code(contract_);
  if (!code.ok()) {
    err = "chain: " + code.error().to_string();
    return false;
  }
  if (code->empty()) {
    err = "no contract at " + addr(contract_) + " on " + cfg_.rpc_url;
    return false;
  }
  cm_ = std::make_unique<chain::ChannelManagerClient>(*wallet_, contract_);
  auto hub = cm_->hub();
  auto period = cm_->challenge_period();
  if (!hub.ok() || !period.ok()) {
    err = "chain: " + addr(contract_) + " is not a ChannelManager: " +
          (!hub.ok() ? hub.error().to_string() : period.error().to_string());
    return false;
  }
  hub_ = *hub;
  challenge_period_ = *period;
  if (!cfg_.hub.empty() && hub_ != want_hub) {
    err = "the contract's hub is " + addr(hub_) + ", not --hub " + cfg_.hub;
    return false;
  }
  cm_->require_hub(hub_);  // checked again before each transaction
  store_ = Store::open(cfg_.db, contract_, hub_, err);
  if (!store_) return false;
  if (!store_->check_all(err)) return false;  // the chain may have moved while we were down
  uint64_t start_block = 0;
  if (cfg_.start_block >= 0) {
    start_block = static_cast<uint64_t>(cfg_.start_block);
  } else {
    auto bn = rpc_->block_number();
    if (!bn.ok()) {
      err = "chain: " + bn.error().to_string();
      return false;
    }
    start_block = *bn;
  }
  poller_ = std::make_unique<chain::EventPoller>(*rpc_, contract_, cfg_.confirmations, cfg_.event_state, start_block);
  if (auto ls = poller_->load(); !ls.ok()) {
    err = "event state " + cfg_.event_state + ": " + ls.error().to_string();
    return false;
  }
  auto bal = rpc_->balance(wallet_->address());
  if (bal.ok() && bal->is_zero())
    log_line("warn", "the tower's account " + addr(wallet_->address()) + " has no ETH: it cannot pay gas to answer");

  worker_ = std::thread([this] { worker(); });

  mqtt::Options o;
  o.host = cfg_.broker_host;
  o.port = cfg_.broker_port;
  o.username = cfg_.broker_user;
  o.password = cfg_.broker_password;
  o.tls_ca_file = cfg_.broker_ca;
  o.client_id = cfg_.client_id.empty() ? "picopay-tower-" + mqtt::topic_address(wallet_->address()) : cfg_.client_id;
  o.claim_client_id = true;  // a second tower with this client id: a clear fatal error (client.hpp)
  mqtt_ = std::make_unique<mqtt::Client>(o);
  mqtt_->on_message([this](const mqtt::Message& m) { on_message(m); });
  mqtt_->on_disconnect([this](const std::string& why) {
    if (mqtt_->session_taken_over()) {
      log_line("error", "broker: " + why + ": a second picopay-tower with the same client id? Stopping this one");
      fatal_.store(true);
      return;
    }
    log_line("warn", "broker: " + why);
  });
  mqtt_->subscribe(topic_state_filter(wallet_->address()), 1);
  mqtt_->subscribe(topic_thread_filter(wallet_->address()), 1);
  if (!mqtt_->start(err)) {
    err = "broker: " + err;
    return false;
  }
  size_t n = 0;
  std::string cerr;
  (void)store_->count(n, cerr);
  log_line("info", "tower " + addr(wallet_->address()) + " guards " + std::to_string(n) + " channel(s) of hub " +
                       addr(hub_) + " on " + addr(contract_) + " (challenge period " +
                       std::to_string(challenge_period_) + " s); chain " + cfg_.rpc_url + ", broker " +
                       cfg_.broker_host + ":" + std::to_string(cfg_.broker_port));
  return true;
}

void Tower::stop() {
  if (mqtt_) mqtt_->stop();
  {
    std::lock_guard<std::mutex> lk(qmu_);
    stopping_ = true;
  }
  qcv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void Tower::refused(const std::string& msg) {
  // Counterparties' bad input: a few lines per window, then a count.
  std::lock_guard<std::mutex> lk(logmu_);
  const uint64_t t = now_ms();
  if (t - log_window_start_ >= kLogWindowMs) {
    if (log_suppressed_)
      log_line("warn", std::to_string(log_suppressed_) + " more handover(s) refused in the last " +
                           std::to_string(kLogWindowMs / 1000) + " s");
    log_window_start_ = t;
    log_in_window_ = 0;
    log_suppressed_ = 0;
  }
  if (log_in_window_ < kLogPerWindow) {
    ++log_in_window_;
    log_line("warn", msg);
  } else {
    ++log_suppressed_;
  }
}

void Tower::on_message(const mqtt::Message& m) {
  Address tower{}, user{};
  bool thread = false;
  if (parse_thread_topic(m.topic, tower, user)) thread = true;
  else if (!parse_state_topic(m.topic, tower, user)) return;
  if (tower != wallet_->address()) return;
  if (m.retain) return;  // a retained handover would be replayed at every reconnect
  std::lock_guard<std::mutex> lk(qmu_);
  if (queue_.size() >= kQueueMax) {
    ++dropped_;
    return;
  }
  queue_.push_back(Incoming{thread, user, m.payload, m.correlation});
  qcv_.notify_one();
}

void Tower::worker() {
  for (;;) {
    Incoming in;
    uint64_t dropped = 0;
    {
      std::unique_lock<std::mutex> lk(qmu_);
      qcv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      in = std::move(queue_.front());
      queue_.pop_front();
      dropped = dropped_;
      dropped_ = 0;
    }
    if (dropped) refused(std::to_string(dropped) + " handover(s) dropped: the queue was full");
    Ack ack;
    const bool ok = in.thread ? handle_thread(in.user, in.payload.data(), in.payload.size(), ack)
                              : handle(in.user, in.payload.data(), in.payload.size(), ack);
    if (!ok) return;  // fatal store error
    std::vector<uint8_t> wire;
    if (encode_ack(ack, wire) != Status::Ok) continue;
    mqtt::PublishProps props;
    props.correlation = in.correlation;
    std::string perr;
    const std::string topic =
        in.thread ? topic_thread_ack(wallet_->address(), in.user) : topic_ack(wallet_->address(), in.user);
    if (!mqtt_->publish(topic, wire.data(), wire.size(), 1, false,
                        in.correlation.empty() ? nullptr : &props, &perr))
      log_line("warn", "cannot publish the ack to " + addr(in.user) + ": " + perr);
  }
}

void Tower::warn_once(const std::string& key, const std::string& msg, const char* level) {
  auto it = last_warning_.find(key);
  if (it != last_warning_.end() && it->second == msg) return;
  if (last_warning_.size() > 4096) last_warning_.clear();
  last_warning_[key] = msg;
  log_line(level, msg);
}

bool Tower::store_error(const std::string& err) {
  log_line("error", "store: " + err);
  fatal_.store(true);
  return false;
}

bool Tower::handle_release(const Address& user, const uint8_t* payload, size_t len, Ack& ack) {
  ack = Ack{};
  ThreadRelease r;
  Status st = decode_thread_release(payload, len, r);
  if (st == Status::Ok) st = check_thread_release(r, contract_, user, verifier_);
  const ThreadKey k{r.sender, user, r.threadId};
  std::string err;
  if (st != Status::Ok) {
    refused("thread release for " + addr(user) + " refused: " + status_name(st) + " (" + status_message(st) + ")");
    ack.result = AckResult::Refused;
    ack.reason = st;
    Held held;
    if (!store_->thread_held(k, held, err)) return store_error(err);
    if (held.found) {
      ack.txCountGlobal = held.txCountGlobal;
      ack.stateHash = held.stateHash;
    }
  } else {
    bool dropped = false;
    if (!store_->drop_thread(k, dropped, err)) return store_error(err);
    ack.result = AckResult::Released;
    if (cfg_.verbose && dropped)
      log_line("info", "released thread " + std::to_string(k.threadId) + " " + addr(k.sender) + " -> " + addr(user));
  }
  auto sig = wallet_->sign_eth(thread_ack_digest(contract_, user, r.threadId, ack.txCountGlobal, ack.stateHash));
  if (!sig.ok()) {
    log_line("error", "cannot sign the ack: " + sig.error().to_string());
    return true;
  }
  ack.sig = *sig;
  return true;
}

bool Tower::handle_thread(const Address& user, const uint8_t* payload, size_t len, Ack& ack) {
  if (is_thread_release(payload, len)) return handle_release(user, payload, len, ack);
  ack = Ack{};
  ThreadHandover h;
  Status st = decode_thread_handover(payload, len, h);
  if (st == Status::Ok) st = check_thread_handover(h, contract_, user, verifier_);
  std::string err;
  Held channel;
  if (st == Status::Ok) {
    if (!store_->held(user, channel, err)) return store_error(err);
    if (!channel.found) st = Status::ThreadNotFound;  // hand the channel state first
  }
  const ThreadKey k{h.thread.state.sender, h.thread.state.receiver, h.thread.state.threadId};
  Held held;
  if (st != Status::Ok) {
    refused("thread handover for " + addr(user) + " refused: " + status_name(st) + " (" + status_message(st) + ")");
    ack.result = AckResult::Refused;
    ack.reason = st;
    if (h.thread.state.receiver == user && !store_->thread_held(k, held, err)) return store_error(err);
  } else {
    PutResult r;
    if (!store_->put_thread(h.thread, kMaxThreadsPerUser, r, held, err)) return store_error(err);
    if (r == PutResult::Full) {
      ack.result = AckResult::Refused;
      ack.reason = Status::TooManyThreads;
      refused("thread handover for " + addr(user) + " refused: it has " + std::to_string(kMaxThreadsPerUser) +
              " threads held");
    } else {
      ack.result = r == PutResult::Stored ? AckResult::Stored : AckResult::Held;
      if (cfg_.verbose)
        log_line("info", std::string(r == PutResult::Stored ? "holds" : "kept") + " thread " +
                             std::to_string(k.threadId) + " " + addr(k.sender) + " -> " + addr(user) + " txCount " +
                             std::to_string(held.txCountGlobal));
    }
  }
  if (held.found) {
    ack.txCountGlobal = held.txCountGlobal;
    ack.stateHash = held.stateHash;
  }
  auto sig =
      wallet_->sign_eth(thread_ack_digest(contract_, user, h.thread.state.threadId, ack.txCountGlobal, ack.stateHash));
  if (!sig.ok()) {
    log_line("error", "cannot sign the ack: " + sig.error().to_string());
    return true;
  }
  ack.sig = *sig;
  return true;
}

bool Tower::guard_thread(const ThreadKey& k, uint64_t now, std::string& err) {
  auto ot = cm_->thread(k.sender, k.receiver, k.threadId);
  if (!ot.ok()) {
    err = "thread " + std::to_string(k.threadId) + " of " + addr(k.receiver) + ": " + ot.error().to_string();
    return false;
  }
  std::string serr;
  if (ot->threadClosingTime == 0 || now >= ot->threadClosingTime) {
    // No dispute, or its challenge window is over.
    if (!store_->set_thread_check(k, false, serr)) return store_error(serr);
    return true;
  }
  SignedThreadState t{};
  bool found = false;
  if (!store_->latest_thread(k, t, found, serr)) return store_error(serr);
  ThreadState onchain = t.state;
  onchain.txCount = ot->txCount;
  onchain.balanceWeiReceiver = ot->weiReceiver;
  onchain.balanceTokenReceiver = ot->tokenReceiver;
  if (!found || !thread_state_better(t.state, onchain)) {
    if (!store_->set_thread_check(k, false, serr)) return store_error(serr);
    return true;
  }
  auto r = cm_->challenge_thread(t);
  if (!r.ok()) {
    warn_once("thread " + std::to_string(k.threadId) + addr(k.sender) + addr(k.receiver),
              "challengeThread " + std::to_string(k.threadId) + " " + addr(k.sender) + " -> " + addr(k.receiver) +
                  " failed (retried every round): " + r.error().to_string());
    return true;
  }
  log_line("info", "answered a stale thread dispute " + std::to_string(k.threadId) + " " + addr(k.sender) + " -> " +
                       addr(k.receiver) + ": on chain txCount " + std::to_string(ot->txCount) + ", answered with " +
                       std::to_string(t.state.txCount) + " (tx " + chain::hash_hex(r->transactionHash) + ", gas " +
                       std::to_string(r->gasUsed) + ")");
  if (!store_->set_thread_check(k, false, serr)) return store_error(serr);
  return true;
}

bool Tower::handle(const Address& user, const uint8_t* payload, size_t len, Ack& ack) {
  ack = Ack{};
  SignedChannelState s{};
  Status st = decode_channel_state(payload, len, s);
  if (st == Status::Ok) st = check_handover(s, contract_, hub_, user, verifier_);
  Held held;
  std::string err;
  if (st != Status::Ok) {
    refused("handover for " + addr(user) + " refused: " + status_name(st) + " (" + status_message(st) + ")");
    ack.result = AckResult::Refused;
    ack.reason = st;
    if (!store_->held(user, held, err)) {
      log_line("error", "store: " + err);
      fatal_.store(true);
      return false;
    }
  } else {
    PutResult r;
    if (!store_->put(s, static_cast<size_t>(cfg_.max_channels), r, held, err)) {
      log_line("error", "store: " + err);
      fatal_.store(true);
      return false;
    }
    switch (r) {
      case PutResult::Stored:
        ack.result = AckResult::Stored;
        if (cfg_.verbose)
          log_line("info", "holds " + addr(user) + " txCountGlobal " + std::to_string(s.state.txCountGlobal));
        break;
      case PutResult::Held:
        ack.result = AckResult::Held;
        if (cfg_.verbose)
          log_line("info", "kept " + addr(user) + " txCountGlobal " + std::to_string(held.txCountGlobal) +
                               " (handed " + std::to_string(s.state.txCountGlobal) + ")");
        break;
      case PutResult::Full:
        ack.result = AckResult::Refused;
        ack.reason = Status::OutOfBounds;
        refused("handover for " + addr(user) + " refused: the tower holds --max-channels " +
                std::to_string(cfg_.max_channels) + " channels");
        break;
    }
  }
  if (held.found) {
    ack.txCountGlobal = held.txCountGlobal;
    ack.stateHash = held.stateHash;
  }
  auto sig = wallet_->sign_eth(ack_digest(contract_, user, ack.txCountGlobal, ack.stateHash));
  if (!sig.ok()) {
    log_line("error", "cannot sign the ack: " + sig.error().to_string());
    return true;
  }
  ack.sig = *sig;
  return true;
}

chain::Result<chain::Receipt> Tower::answer(const SignedChannelState& s) {
  // Time matters here: ChannelManagerClient's calls estimate gas first (eth_estimateGas
  // runs the call many times; seconds on a busy node). One eth_call proves the answer
  // would not revert now, then it goes out with a fixed gas limit.
  const chain::Bytes data =
      chain::encode_channel_dispute(chain::sig::kEmptyChannelWithChallenge, s.state, s.sigHub, s.sigUser);
  const Address from = wallet_->address();
  auto call = rpc_->eth_call(contract_, data, &from);
  if (!call.ok()) return call.error();
  chain::TxRequest req;
  req.has_to = true;
  req.to = contract_;
  req.data = data;
  req.gas_limit = kAnswerGasLimit;
  return wallet_->send(req);
}

bool Tower::guard(const Address& user, uint64_t now, std::string& err) {
  auto oc = cm_->channel(user);
  if (!oc.ok()) {
    err = "channel " + addr(user) + ": " + oc.error().to_string();
    return false;
  }
  if (oc->status != chain::ChannelStatus::ChannelDispute) {
    // Open (never disputed, or emptied) or ThreadDispute (the channel part is settled).
    if (cfg_.verbose)
      log_line("info", addr(user) + " is " + chain::channel_status_name(oc->status) + " on chain (txCountGlobal " +
                           std::to_string(oc->txCountGlobal) + ")");
    if (store_->set_check(user, false, err)) return true;
    fatal_.store(true);
    err = "store: " + err;
    return false;
  }
  SignedChannelState s{};
  bool found = false;
  if (!store_->latest(user, s, found, err)) {
    fatal_.store(true);
    err = "store: " + err;
    return false;
  }
  const bool newer = found && s.state.txCountGlobal > oc->txCountGlobal;
  if (newer && now < oc->channelClosingTime) {
    const uint64_t t0 = now_ms();
    auto r = answer(s);
    if (!r.ok()) {
      warn_once(addr(user), "emptyChannelWithChallenge " + addr(user) +
                                " failed (retried every round): " + r.error().to_string());
      return true;
    }
    log_line("info", "answered a stale exit of " + addr(user) + ": on chain txCountGlobal " +
                         std::to_string(oc->txCountGlobal) + ", answered with " +
                         std::to_string(s.state.txCountGlobal) + " (tx " + chain::hash_hex(r->transactionHash) +
                         ", gas " + std::to_string(r->gasUsed) + ", sent and mined in " +
                         std::to_string(now_ms() - t0) + " ms, " +
                         std::to_string(oc->channelClosingTime > now ? oc->channelClosingTime - now : 0) +
                         " s before the period ends)");
    return true;
  }
  if (newer)
    warn_once(addr(user) + "late", "the exit of " + addr(user) + " was not answered in time: on chain txCountGlobal " +
                                       std::to_string(oc->txCountGlobal) + ", held " +
                                       std::to_string(s.state.txCountGlobal),
              "error");
  if (now > oc->channelClosingTime) {
    auto r = cm_->empty_channel(user);
    if (!r.ok()) {
      warn_once(addr(user), "emptyChannel " + addr(user) + " failed (retried every round): " + r.error().to_string());
      return true;
    }
    log_line("info", "emptied " + addr(user) + " at txCountGlobal " + std::to_string(oc->txCountGlobal) + " (tx " +
                         chain::hash_hex(r->transactionHash) + ", gas " + std::to_string(r->gasUsed) + ")");
  }
  return true;
}

bool Tower::chain_round(std::string& err) {
  std::string serr;
  bool store_ok = true;
  auto n = poller_->poll([&](const chain::ChannelEvent& e) {
    switch (e.kind) {
      case chain::EventKind::DidStartExitChannel:
      case chain::EventKind::DidEmptyChannel:
        if (store_ok && !store_->set_check(e.user, true, serr)) store_ok = false;
        break;
      case chain::EventKind::DidStartExitThread:
      case chain::EventKind::DidChallengeThread:
        if (store_ok && !store_->set_thread_check(ThreadKey{e.sender, e.receiver, e.threadId}, true, serr))
          store_ok = false;
        break;
      default:
        break;
    }
  });
  if (!store_ok) {
    fatal_.store(true);
    err = "store: " + serr;
    return false;
  }
  if (!n.ok()) {
    err = "events: " + n.error().to_string();
    return false;
  }
  std::vector<Address> users;
  std::vector<ThreadKey> threads;
  if (!store_->to_check(users, serr) || !store_->threads_to_check(threads, serr)) {
    fatal_.store(true);
    err = "store: " + serr;
    return false;
  }
  if (users.empty() && threads.empty()) return true;
  auto latest = rpc_->block_by_number("latest");
  if (!latest.ok()) {
    err = "chain: " + latest.error().to_string();
    return false;
  }
  for (const Address& u : users) {
    if (!guard(u, latest->timestamp, err)) return false;
  }
  for (const ThreadKey& k : threads) {
    if (!guard_thread(k, latest->timestamp, err)) return false;
  }
  return true;
}

void Tower::run(const std::atomic<bool>& quit) {
  std::string last_err;
  while (!quit.load() && !fatal_.load()) {
    std::string err;
    if (!chain_round(err)) {
      if (err != last_err) log_line(fatal_.load() ? "error" : "warn", err);
      last_err = err;
    } else {
      last_err.clear();
    }
    const uint64_t until = now_ms() + static_cast<uint64_t>(cfg_.interval_ms);
    while (!quit.load() && !fatal_.load() && now_ms() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace picopay::tower
