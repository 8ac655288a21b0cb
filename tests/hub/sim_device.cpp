#include "sim_device.hpp"

#include <chrono>
#include <cstring>
#include <ctime>

#include "picopay/codec.hpp"

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

SimDevice::SimDevice(uint32_t index, const Address& hub, const Address& contract)
    : index_(index), hub_(hub), contract_(contract) {
  key_ = test_key(index);
  (void)signer_.init();
  (void)signer_.address_of(key_, addr_);
  latest_.state = channel_state_zero();
  latest_.state.contractAddress = contract_;
  latest_.state.user = addr_;
  latest_.state.recipient = addr_;
}

SimDevice::~SimDevice() {
  if (client_) client_->stop();
}

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
  client_->subscribe(mqtt::topic_reply(addr_), 1);
  client_->subscribe(mqtt::topic_request(addr_), 1);
  if (!client_->start(err)) return false;
  if (!client_->wait_connected(15000)) {
    err = "device did not connect: " + client_->last_error();
    return false;
  }
  return true;
}

void SimDevice::on_message(const mqtt::Message& m) {
  if (m.topic == mqtt::topic_request(addr_)) {
    std::lock_guard<std::mutex> lk(mu_);
    requests_.push_back(m.payload);
    cv_.notify_all();
    return;
  }
  mqtt::Reply r;
  if (mqtt::decode_reply(m.payload.data(), m.payload.size(), r) != Status::Ok) return;
  std::lock_guard<std::mutex> lk(mu_);
  replies_.emplace(r.txCountGlobal, r);
  ++seen_;
  cv_.notify_all();
}

size_t SimDevice::replies_seen() {
  std::lock_guard<std::mutex> lk(mu_);
  return seen_;
}

bool SimDevice::wait_reply(uint64_t tx, mqtt::Reply& out, int timeout_ms) {
  std::unique_lock<std::mutex> lk(mu_);
  bool ok = cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return replies_.count(tx) > 0; });
  if (!ok) return false;
  auto it = replies_.find(tx);
  out = it->second;
  replies_.erase(it);
  return true;
}

bool SimDevice::publish_raw(const std::string& topic, const std::vector<uint8_t>& bytes, uint64_t corr) {
  mqtt::PublishProps p;
  p.response_topic = mqtt::topic_reply(addr_);
  p.correlation = mqtt::correlation_encode(corr);
  return client_->publish(topic, bytes.data(), bytes.size(), 1, false, &p);
}

std::vector<uint8_t> SimDevice::build(ChannelUpdate& u, ChannelState& next, const SignedChannelState* from) {
  const SignedChannelState& base = from ? *from : latest_;
  std::vector<ThreadState> items = threads_;
  const size_t n_open = items.size();
  items.resize(n_open + 1);
  std::vector<Hash32> scratch(items.size() + 2);
  ThreadSet ts{items.data(), n_open, items.size(), scratch.data()};
  ChannelContext ctx{hub_};
  if (channel_propose(ctx, signer_, key_, Party::User, base.state, ts, u, next) != Status::Ok) return {};
  uint8_t buf[kMaxChannelUpdateWire];
  size_t n = 0;
  if (encode_channel_update(u, buf, sizeof buf, &n) != Status::Ok) return {};
  return std::vector<uint8_t>(buf, buf + n);
}

Status SimDevice::propose(ChannelUpdate u, int timeout_ms, int retry_ms, uint64_t* latency_us) {
  ChannelState next{};
  auto wire = build(u, next);
  if (wire.empty()) return Status::BadArgs;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string topic = mqtt::topic_update(hub_, addr_);
  mqtt::Reply r;
  bool got = false;
  for (int waited = 0; waited < timeout_ms && !got; waited += retry_ms) {
    publish_raw(topic, wire, u.txCountGlobal);
    got = wait_reply(u.txCountGlobal, r, retry_ms);
  }
  if (!got) return Status::IoError;
  if (latency_us)
    *latency_us = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
  if (r.kind == mqtt::ReplyKind::Nack) return r.status;
  if (r.kind != mqtt::ReplyKind::Ack) return Status::BadKind;
  Status s = signer_.verify_eth(channel_hash(next), r.sig, hub_);
  if (s != Status::Ok) return s;
  latest_.state = next;
  latest_.hasSigUser = true;
  latest_.sigUser = u.sig;
  latest_.hasSigHub = true;
  latest_.sigHub = r.sig;
  apply_threads(u);
  return Status::Ok;
}

void SimDevice::apply_threads(const ChannelUpdate& u) {
  std::vector<ThreadState> items = threads_;
  const size_t n_open = items.size();
  items.resize(n_open + 1);
  std::vector<Hash32> scratch(items.size() + 2);
  ThreadSet ts{items.data(), n_open, items.size(), scratch.data()};
  if (thread_set_apply(ts, u) != Status::Ok) return;
  items.resize(ts.count);
  threads_ = items;
}

Status SimDevice::answer_request(int timeout_ms, UpdateReason* reason_out) {
  std::vector<uint8_t> req;
  ChannelUpdate u{};
  Status s = Status::Ok;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (!cv_.wait_until(lk, deadline, [&] { return !requests_.empty(); })) return Status::IoError;
      req = requests_.front();
      requests_.erase(requests_.begin());
    }
    s = decode_channel_update(req.data(), req.size(), u);
    if (s != Status::Ok) return s;
    // A re-sent proposal we already answered (the hub re-sends after a restart or a
    // refusal): skip it, wait for the next one.
    if (u.txCountGlobal > latest_.state.txCountGlobal) break;
  }
  if (reason_out) *reason_out = u.reason;
  std::vector<ThreadState> items = threads_;
  const size_t n_open = items.size();
  items.resize(n_open + 1);
  std::vector<Hash32> scratch(items.size() + 2);
  ThreadSet ts{items.data(), n_open, items.size(), scratch.data()};
  ChannelContext ctx{hub_};
  ChannelState next{};
  Hash32 h{};
  s = channel_accept(ctx, signer_, Party::User, latest_.state, ts, u, next, h);
  mqtt::Reply r;
  r.txCountGlobal = u.txCountGlobal;
  if (s == Status::Ok) {
    Signature mine{};
    s = signer_.sign_eth(key_, h, mine);
    if (s == Status::Ok) {
      latest_.state = next;
      latest_.hasSigHub = true;
      latest_.sigHub = u.sig;
      latest_.hasSigUser = true;
      latest_.sigUser = mine;
      apply_threads(u);
      r.kind = mqtt::ReplyKind::Ack;
      r.sig = mine;
    }
  }
  if (s != Status::Ok) {
    r.kind = mqtt::ReplyKind::Nack;
    r.status = s;
    r.state = latest_;
  }
  std::vector<uint8_t> out;
  if (mqtt::encode_reply(r, out) != Status::Ok) return Status::BadArgs;
  mqtt::PublishProps p;
  p.correlation = mqtt::correlation_encode(r.txCountGlobal);
  client_->publish(mqtt::topic_hub_reply(hub_, addr_), out.data(), out.size(), 1, false, &p);
  return s;
}

Status SimDevice::fund(uint64_t wei) {
  ChannelUpdate d = channel_update_make(UpdateReason::ProposePendingDeposit);
  d.deposit.depositWeiUser = U256::from_u64(wei);
  d.deposit.timeout = static_cast<uint64_t>(std::time(nullptr)) + 3600;
  Status s = propose(d);
  if (s != Status::Ok) return s;
  ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
  std::memset(c.chainTx.transactionHash.bytes, 0xcc, 32);
  return propose(c);
}

Status SimDevice::pay(uint64_t wei, uint64_t* latency_us) {
  ChannelUpdate p = channel_update_make(UpdateReason::Payment);
  p.payment.recipient = Party::Hub;
  p.payment.amountWei = U256::from_u64(wei);
  p.payment.amountToken = U256::zero();
  return propose(p, 60000, 1000, latency_us);
}

}  // namespace picopay::testsupport
