#include "sim_device.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace picopay::testsupport {

PrivateKey test_key(uint32_t index) {
  PrivateKey k{};
  std::memset(k.bytes, 0x11, 32);
  k.bytes[28] = static_cast<uint8_t>(index >> 24);
  k.bytes[29] = static_cast<uint8_t>(index >> 16);
  k.bytes[30] = static_cast<uint8_t>(index >> 8);
  k.bytes[31] = static_cast<uint8_t>(index);
  return k;
}

std::pair<std::string, std::string> device_broker_login(uint32_t index) {
  Signer s;
  Address a{};
  if (s.init() != Status::Ok || s.address_of(test_key(index), a) != Status::Ok) std::abort();
  return {mqtt::topic_address(a), "pw-" + std::to_string(index)};
}

SimDevice::SimDevice(uint32_t index, const Address& hub, const Address& contract, SimOptions opts)
    : index_(index), hub_(hub), contract_(contract), opts_(std::move(opts)) {
  key_ = test_key(index);
  (void)signer_.init();
  (void)raw_signer_.init();
  (void)signer_.address_of(key_, addr_);
  SessionConfig c = session_config_default();
  c.contract = contract_;
  c.user = addr_;
  c.hub = hub_;
  c.verifyCountersigOnPayment = true;
  c.hasChainAccess = static_cast<bool>(opts_.chain) || opts_.dev_chain;
  c.acceptIncomingThreads = opts_.accept_threads;
  c.resendSeconds = 1;
  c.refusedBackoffSeconds = 2;
  SessionStorage st{slots_, kCap, set_items_, set_scratch_};
  (void)session_.init(c, signer_, key_, st);
}

SimDevice::~SimDevice() { stop(); }

void SimDevice::stop() {
  stop_.store(true);
  if (ticker_.joinable()) ticker_.join();
  if (client_) client_->stop();
}

uint64_t SimDevice::now() const { return static_cast<uint64_t>(std::time(nullptr)); }

bool SimDevice::start(const mqtt::Options& base, const std::string& password, std::string& err) {
  mqtt::Options o = base;
  o.client_id = "picopay-" + mqtt::topic_address(addr_);
  if (!password.empty()) {
    o.username = mqtt::topic_address(addr_);
    o.password = password;
  }
  o.reconnect_min_ms = 50;
  o.reconnect_max_ms = 500;
  client_ = std::make_unique<mqtt::Client>(o);
  client_->on_message([this](const mqtt::Message& m) { on_message(m); });
  client_->on_connect([this](bool) {
    {
      std::lock_guard<std::recursive_mutex> lk(mu_);
      Effects fx;
      (void)session_.on_connect(now(), fx);
      handle(fx);
    }
    flush();
  });
  client_->subscribe(mqtt::topic_reply(addr_), 1);
  client_->subscribe(mqtt::topic_request(addr_), 1);
  client_->subscribe(mqtt::topic_thread_update(addr_), 1);
  if (!client_->start(err)) return false;
  if (!client_->wait_connected(15000)) {
    err = "device did not connect: " + client_->last_error();
    return false;
  }
  ticker_ = std::thread([this] { ticker(); });
  if (!wait_until([](SimDevice& d) { return d.session_.synced(); }, 20000)) {
    err = "device did not sync with the hub";
    return false;
  }
  return true;
}

void SimDevice::ticker() {
  while (!stop_.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    {
      std::lock_guard<std::recursive_mutex> lk(mu_);
      Effects fx;
      (void)session_.tick(now(), fx);
      handle(fx);
    }
    flush();
  }
}

void SimDevice::feed_chain() {
  ChainFacts f{};
  if (opts_.chain) {
    if (!opts_.chain(addr_, f)) return;
  } else if (opts_.dev_chain) {
    const ChannelState& s = session_.channel().state;
    f.known = true;
    f.txCountGlobal = s.txCountGlobal;
    f.txCountChain = s.txCountChain;
    f.status = ChainChannelStatus::Open;
    f.emptied = false;
    f.blockTime = now();
  } else {
    return;
  }
  Effects fx;
  (void)session_.on_chain_fact(f, now(), fx);
  fx.needsChain = false;  // read once per call: no loop if the facts say "not yet"
  handle(fx);
}

void SimDevice::handle(const Effects& fx) {
  if (fx.persist) {
    size_t n = 0;
    record_.resize(session_record_max(kCap));
    if (session_.serialise(record_.data(), record_.size(), &n) == Status::Ok) record_.resize(n);
  }
  for (size_t i = 0; i < fx.count; ++i) {
    const OutMessage& m = fx.out[i];
    Pending p;
    p.corr = m.correlation;
    p.bytes.assign(m.bytes, m.bytes + m.len);
    switch (m.route) {
      case Route::ToHubUpdate: {
        p.topic = mqtt::topic_update(hub_, addr_);
        p.response_topic = mqtt::topic_reply(addr_);
        auto it = sent_.find(m.correlation);
        if (it == sent_.end()) sent_[m.correlation] = p.bytes;
        else if (it->second != p.bytes) ++double_;
        break;
      }
      case Route::ToHubReply:
        p.topic = mqtt::topic_hub_reply(hub_, addr_);
        ++request_nacks_;
        break;
      case Route::ToHubSync:
        p.topic = mqtt::topic_sync(hub_, addr_);
        p.response_topic = mqtt::topic_reply(addr_);
        break;
      case Route::ToThreadReceiver:
        p.topic = mqtt::topic_thread_update(m.to);
        break;
      default:
        continue;
    }
    pending_out_.push_back(std::move(p));
  }
  if (fx.event == SessionEvent::UpdateCompleted) ++completed_[fx.reason];
  if (fx.refused != Status::Ok) {
    refused_ = fx.refused;
    refused_tx_ = session_.has_pending() ? session_.pending().txCountGlobal : 0;
  }
  if (fx.needsChain) feed_chain();
  cv_.notify_all();
}

void SimDevice::flush() {
  std::vector<Pending> out;
  {
    std::lock_guard<std::recursive_mutex> lk(mu_);
    out.swap(pending_out_);
  }
  if (out.empty() || !client_) return;
  std::lock_guard<std::mutex> lk(send_mu_);  // keeps the session's order on the wire
  for (auto& p : out) {
    mqtt::PublishProps props;
    props.response_topic = p.response_topic;
    props.correlation = mqtt::correlation_encode(p.corr);
    client_->publish(p.topic, p.bytes.data(), p.bytes.size(), 1, false, &props);
  }
}

void SimDevice::on_message(const mqtt::Message& m) {
  {
    std::lock_guard<std::recursive_mutex> lk(mu_);
    Effects fx;
    effects_clear(fx);
    if (m.topic == mqtt::topic_request(addr_)) {
      requests_.push_back(m.payload);
      ++hub_requests_;
      if (!paused_ && session_.on_hub_request(m.payload.data(), m.payload.size(), now(), fx) == Status::Busy)
        ++collisions_;
    } else if (m.topic == mqtt::topic_thread_update(addr_)) {
      (void)session_.on_thread_message(m.payload.data(), m.payload.size(), now(), fx);
    } else if (m.topic == mqtt::topic_reply(addr_)) {
      Reply r = reply_make(ReplyKind::Ack);
      const bool ok = decode_reply(m.payload.data(), m.payload.size(), r) == Status::Ok;
      const uint64_t before = session_.channel().state.txCountGlobal;
      const Status st = session_.on_reply(m.payload.data(), m.payload.size(), now(), fx);
      if (ok) {
        // Kept for wait_reply: the answers the session did not take (to raw updates) and
        // the Syncs asked for with publish_raw.
        if (r.kind == ReplyKind::Sync ? raw_syncs_ > 0 : st != Status::Ok) {
          if (r.kind == ReplyKind::Sync) --raw_syncs_;
          replies_.emplace(r.txCountGlobal, r);
        }
        if (r.kind == ReplyKind::Ack && (st == Status::Ok || session_.channel().state.txCountGlobal > before)) {
          auto it = acks_.find(r.txCountGlobal);
          if (it == acks_.end()) acks_[r.txCountGlobal] = r.sig;
          else if (!(it->second == r.sig)) ++double_;
        }
      }
    }
    handle(fx);
  }
  flush();
}

Status SimDevice::run_op(const std::function<Status(Session&, Effects&)>& op, int timeout_ms, uint64_t* latency_us) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::milliseconds(timeout_ms);
  std::unique_lock<std::recursive_mutex> lk(mu_);
  Status st = Status::Ok;
  while (true) {
    Effects fx;
    refused_ = Status::Ok;
    st = op(session_, fx);
    handle(fx);
    if (st != Status::Busy && st != Status::OutOfSync) break;
    // A hub request (or the sync) goes first: the session is the only proposer.
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout) return Status::IoError;
  }
  if (st != Status::Ok || !session_.has_pending()) {
    lk.unlock();
    flush();
    return st;
  }
  const uint64_t target = session_.pending().txCountGlobal;
  lk.unlock();
  flush();
  lk.lock();
  Status result = Status::IoError;
  cv_.wait_until(lk, deadline, [&] {
    if (refused_ != Status::Ok && refused_tx_ == target) {
      result = refused_;  // (the session may have given the proposal up for an Invalidation since)
      return true;
    }
    if (session_.channel().state.txCountGlobal >= target) {
      result = Status::Ok;
      return true;
    }
    return session_.halted();
  });
  if (session_.halted() && result == Status::IoError) result = Status::Halted;
  if (latency_us)
    *latency_us = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
  return result;
}

Status SimDevice::pay(uint64_t wei, uint64_t* latency_us, int timeout_ms) {
  return run_op(
      [&](Session& s, Effects& fx) { return s.propose_payment(U256::from_u64(wei), U256::zero(), now(), fx); },
      timeout_ms, latency_us);
}

Status SimDevice::deposit(uint64_t wei, uint64_t token, int timeout_ms) {
  return run_op(
      [&](Session& s, Effects& fx) {
        return s.request_deposit(U256::from_u64(wei), U256::from_u64(token), now() + 3600, now(), fx);
      },
      timeout_ms);
}

Status SimDevice::confirm_pending(const Hash32& tx, int timeout_ms) {
  {
    std::lock_guard<std::recursive_mutex> lk(mu_);
    feed_chain();
  }
  flush();
  return run_op([&](Session& s, Effects& fx) { return s.propose_confirm_pending(tx, now(), fx); }, timeout_ms);
}

Status SimDevice::fund(uint64_t wei) {
  Status s = deposit(wei);
  if (s != Status::Ok) return s;
  Hash32 h{};
  std::memset(h.bytes, 0xcc, 32);
  return confirm_pending(h);
}

Status SimDevice::open_thread(const Address& receiver, uint64_t wei, uint64_t* thread_id, int timeout_ms) {
  return run_op(
      [&](Session& s, Effects& fx) {
        return s.propose_thread_open(receiver, U256::from_u64(wei), U256::zero(), now(), fx, thread_id);
      },
      timeout_ms);
}

Status SimDevice::thread_pay(const Address& receiver, uint64_t thread_id, uint64_t wei) {
  Status st;
  {
    std::lock_guard<std::recursive_mutex> lk(mu_);
    Effects fx;
    st = session_.thread_pay(receiver, thread_id, U256::from_u64(wei), U256::zero(), fx);
    handle(fx);
  }
  flush();
  return st;
}

Status SimDevice::close_thread(const Address& receiver, uint64_t thread_id) {
  Status st;
  {
    std::lock_guard<std::recursive_mutex> lk(mu_);
    Effects fx;
    st = session_.thread_close_request(receiver, thread_id, now(), fx);
    handle(fx);
  }
  flush();
  return st;
}

Status SimDevice::withdraw(const Address& recipient, uint64_t wei, int timeout_ms) {
  return run_op(
      [&](Session& s, Effects& fx) {
        return s.request_withdrawal(recipient, U256::from_u64(wei), U256::zero(), now() + 3600, now(), fx);
      },
      timeout_ms);
}

Status SimDevice::withdraw_tokens(const Address& recipient, uint64_t wei, uint64_t token, int timeout_ms) {
  return run_op(
      [&](Session& s, Effects& fx) {
        return s.request_withdrawal(recipient, U256::from_u64(wei), U256::from_u64(token), now() + 3600, now(), fx);
      },
      timeout_ms);
}

Status SimDevice::exchange(bool sell_wei, uint64_t amount, uint64_t rate, uint64_t min_rate, uint64_t max_rate,
                           int timeout_ms) {
  return run_op(
      [&](Session& s, Effects& fx) {
        return s.request_exchange(sell_wei, U256::from_u64(amount), U256::from_u64(rate), U256::from_u64(min_rate),
                                  U256::from_u64(max_rate), now(), fx);
      },
      timeout_ms);
}

bool SimDevice::wait_until(const std::function<bool(SimDevice&)>& pred, int timeout_ms) {
  std::unique_lock<std::recursive_mutex> lk(mu_);
  return cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return pred(*this); });
}

bool SimDevice::wait_tx(uint64_t tx, int timeout_ms) {
  return wait_until(
      [tx](SimDevice& d) { return d.session_.channel().state.txCountGlobal >= tx && !d.session_.has_pending(); },
      timeout_ms);
}

bool SimDevice::wait_idle(int timeout_ms) {
  return wait_until(
      [](SimDevice& d) {
        return d.session_.synced() && !d.session_.has_pending() && !d.session_.has_hub_request();
      },
      timeout_ms);
}

SignedChannelState SimDevice::latest() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  return session_.channel();
}

std::vector<ThreadState> SimDevice::threads() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  std::vector<ThreadState> out;
  for (size_t i = 0; i < session_.thread_capacity(); ++i) {
    const SessionThread& t = session_.thread_slot(i);
    if (t.used && t.open) out.push_back(t.initial.state);
  }
  return out;
}

bool SimDevice::thread_latest(const Address& sender, const Address& receiver, uint64_t id, SignedThreadState& out) {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  const long i = session_.find_thread(sender, receiver, id);
  if (i < 0) return false;
  out = session_.thread_slot(static_cast<size_t>(i)).latest;
  return true;
}

size_t SimDevice::hub_requests_seen() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  return hub_requests_;
}
size_t SimDevice::collisions() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  return collisions_;
}
size_t SimDevice::request_nacks_sent() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  return request_nacks_;
}
size_t SimDevice::completed(UpdateReason r) {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  auto it = completed_.find(r);
  return it == completed_.end() ? 0 : it->second;
}
size_t SimDevice::double_signed() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  return double_;
}
Status SimDevice::last_status() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  return session_.last_status();
}
bool SimDevice::halted() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  return session_.halted();
}

std::vector<std::vector<uint8_t>> SimDevice::raw_requests() {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  return requests_;
}

bool SimDevice::wait_reply(uint64_t tx, Reply& out, int timeout_ms) {
  std::unique_lock<std::recursive_mutex> lk(mu_);
  bool ok = cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return replies_.count(tx) > 0; });
  if (!ok) return false;
  auto it = replies_.find(tx);
  out = it->second;
  replies_.erase(it);
  return true;
}

bool SimDevice::publish_raw(const std::string& topic, const std::vector<uint8_t>& bytes, uint64_t corr) {
  if (topic == mqtt::topic_sync(hub_, addr_)) {
    std::lock_guard<std::recursive_mutex> lk(mu_);
    ++raw_syncs_;
  }
  mqtt::PublishProps p;
  p.response_topic = mqtt::topic_reply(addr_);
  p.correlation = mqtt::correlation_encode(corr);
  std::lock_guard<std::mutex> lk(send_mu_);
  return client_->publish(topic, bytes.data(), bytes.size(), 1, false, &p);
}

std::vector<uint8_t> SimDevice::build(ChannelUpdate& u, ChannelState& next, const SignedChannelState* from) {
  const SignedChannelState base = from ? *from : latest();
  std::vector<ThreadState> items = threads();
  const size_t n_open = items.size();
  items.resize(n_open + 1);
  std::vector<Hash32> scratch(items.size() + 2);
  ThreadSet ts{items.data(), n_open, items.size(), scratch.data()};
  ChannelContext ctx{hub_};
  if (channel_propose(ctx, raw_signer_, key_, Party::User, base.state, ts, u, next) != Status::Ok) return {};
  uint8_t buf[kMaxChannelUpdateWire];
  size_t n = 0;
  if (encode_channel_update(u, buf, sizeof buf, &n) != Status::Ok) return {};
  return std::vector<uint8_t>(buf, buf + n);
}

std::vector<uint8_t> SimDevice::build_unchecked(ChannelUpdate& u, const SignedChannelState* from) {
  const SignedChannelState base = from ? *from : latest();
  std::vector<ThreadState> items = threads();
  const size_t n_open = items.size();
  items.resize(n_open + 1);
  std::vector<Hash32> scratch(items.size() + 2);
  ThreadSet ts{items.data(), n_open, items.size(), scratch.data()};
  ChannelContext ctx{hub_};
  u.txCountGlobal = base.state.txCountGlobal + 1;
  ChannelState next{};
  const Hash32 h = channel_next_state(ctx, base.state, ts, u, next) == Status::Ok ? channel_hash(next)
                                                                               : channel_hash(base.state);
  if (raw_signer_.sign_eth(key_, h, u.sig) != Status::Ok) return {};
  uint8_t buf[kMaxChannelUpdateWire];
  size_t n = 0;
  if (encode_channel_update(u, buf, sizeof buf, &n) != Status::Ok) return {};
  return std::vector<uint8_t>(buf, buf + n);
}

void SimDevice::pause_requests(bool paused) {
  std::lock_guard<std::recursive_mutex> lk(mu_);
  paused_ = paused;
}

}  // namespace picopay::testsupport
