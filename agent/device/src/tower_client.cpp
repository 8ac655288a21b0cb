#include "picopay/device/tower_client.hpp"

#include <chrono>
#include <cstdio>

#include "picopay/codec.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/state.hpp"
#include "picopay/tower/protocol.hpp"

namespace picopay::device {

namespace {
std::string key_of(const Address& a) { return mqtt::topic_address(a); }
}  // namespace

TowerClient::TowerClient(const Address& tower, const Address& contract, const Address& user, const Signer& signer,
                         const PrivateKey& key, uint64_t interval_ms)
    : tower_(tower), contract_(contract), user_(user), signer_(signer), key_(key),
      interval_ms_(interval_ms == 0 ? 1 : interval_ms) {}

std::vector<std::string> TowerClient::topics() const {
  return {tower::topic_ack(tower_, user_), tower::topic_thread_ack(tower_, user_)};
}

void TowerClient::resume_releases(const std::vector<std::pair<Address, uint64_t>>& closed) {
  for (const auto& c : closed) {
    ThreadMark& m = threads_[std::make_tuple(key_of(c.first), c.second)];
    m.sender = c.first;
    // Handed in an earlier run (the tower may hold it): release_closed() marks it closed at
    // the current channel state and releases it once the tower holds that state.
    if (m.handed_tx == 0) m.handed_tx = 1;
  }
}

std::vector<std::pair<Address, uint64_t>> TowerClient::take_released() {
  std::vector<std::pair<Address, uint64_t>> out;
  out.swap(released_);
  return out;
}

void TowerClient::step(const SignedChannelState& c, const std::vector<SignedThreadState>& incoming, uint64_t now_ms,
                       const Publish& pub, const Log& log) {
  run(c, incoming, now_ms, false, pub, log);
}

void TowerClient::flush(const SignedChannelState& c, const std::vector<SignedThreadState>& incoming, uint64_t now_ms,
                        const Publish& pub, const Log& log) {
  run(c, incoming, now_ms, true, pub, log);
}

std::vector<SignedThreadState> TowerClient::incoming_threads(const Session& s) {
  std::vector<SignedThreadState> out;
  for (size_t i = 0; i < s.thread_capacity(); ++i) {
    const SessionThread& t = s.thread_slot(i);
    if (t.used && !t.sender && t.open && t.latest.hasSigA && t.latest.state.txCount > 0) out.push_back(t.latest);
  }
  return out;
}

void TowerClient::run(const SignedChannelState& c, const std::vector<SignedThreadState>& incoming, uint64_t now_ms,
                      bool force, const Publish& pub, const Log& log) {
  // Only evidence an exit takes: both signatures, timeout 0.
  if (c.hasSigUser && c.hasSigHub && c.state.timeout == 0 && c.state.txCountGlobal > acked_tx_) {
    const bool newer = c.state.txCountGlobal > handed_tx_;
    const bool due = newer ? (force || now_ms >= handed_ms_ + interval_ms_) : now_ms >= handed_ms_ + 5 * interval_ms_;
    if (due) {
      uint8_t b[kMaxChannelStateWire];
      size_t n = 0;
      if (encode_channel_state(c, b, sizeof b, &n) == Status::Ok) {
        pub(tower::topic_state(tower_, user_), std::vector<uint8_t>(b, b + n));
        handed_tx_ = c.state.txCountGlobal;
        handed_hash_ = channel_hash(c.state);
        handed_ms_ = now_ms;
      }
    }
  }
  if (acked_tx_ == 0) return;  // the tower takes threads only of a channel it holds
  release_closed(c, incoming, now_ms, force, pub, log);
  for (const SignedThreadState& latest : incoming) {
    if (!latest.hasSigA || latest.state.receiver != user_ || latest.state.txCount == 0) continue;
    ThreadMark& m = threads_[std::make_tuple(key_of(latest.state.sender), latest.state.threadId)];
    m.sender = latest.state.sender;
    if (latest.state.txCount <= m.acked_tx) continue;
    const bool newer = latest.state.txCount > m.handed_tx;
    const bool due = newer ? (force || now_ms >= m.handed_ms + interval_ms_) : now_ms >= m.handed_ms + 5 * interval_ms_;
    if (!due) continue;
    tower::ThreadHandover h;
    std::vector<uint8_t> wire;
    if (tower::make_thread_handover(latest, key_, signer_, h) != Status::Ok ||
        tower::encode_thread_handover(h, wire) != Status::Ok) {
      log(true, "tower: cannot build a thread handover");
      continue;
    }
    pub(tower::topic_thread(tower_, user_), wire);
    m.handed_tx = latest.state.txCount;
    m.handed_hash = thread_hash(latest.state);
    m.handed_ms = now_ms;
  }
}

void TowerClient::release_closed(const SignedChannelState& c, const std::vector<SignedThreadState>& incoming,
                                 uint64_t now_ms, bool force, const Publish& pub, const Log& log) {
  for (auto it = threads_.begin(); it != threads_.end();) {
    ThreadMark& m = it->second;
    const uint64_t threadId = std::get<1>(it->first);
    bool open = false;
    for (const SignedThreadState& t : incoming) open = open || (t.state.threadId == threadId && t.state.sender == m.sender);
    if (open) {
      ++it;
      continue;
    }
    if (m.handed_tx == 0) {  // never handed: the tower holds nothing of it
      it = threads_.erase(it);
      continue;
    }
    if (!m.closed) {
      // The channel state that closed it (or a later one): the thread is safe to release
      // once the tower holds that state, since an exit with it no longer has the thread.
      m.closed = true;
      m.closed_at_tx = c.state.txCountGlobal;
    }
    const bool due = acked_tx_ >= m.closed_at_tx &&
                     (m.release_ms == 0 || force || now_ms >= m.release_ms + 5 * interval_ms_);
    ++it;
    if (!due) continue;
    tower::ThreadRelease r;
    std::vector<uint8_t> wire;
    if (tower::make_thread_release(contract_, m.sender, threadId, key_, signer_, r) != Status::Ok ||
        tower::encode_thread_release(r, wire) != Status::Ok) {
      log(true, "tower: cannot build a thread release");
      continue;
    }
    pub(tower::topic_thread(tower_, user_), wire);
    m.release_ms = now_ms == 0 ? 1 : now_ms;
  }
}

bool TowerClient::on_message(const std::string& topic, const std::vector<uint8_t>& p, const Log& log) {
  const bool chan = topic == tower::topic_ack(tower_, user_);
  if (!chan && topic != tower::topic_thread_ack(tower_, user_)) return false;
  tower::Ack a;
  if (tower::decode_ack(p.data(), p.size(), a) != Status::Ok) {
    log(true, "tower: malformed ack ignored");
    return true;
  }
  if (chan) {
    const Status v = tower::verify_ack(a, contract_, tower_, user_, signer_);
    if (v != Status::Ok) {
      log(true, std::string("tower: ack ignored: ") + status_message(v));
      return true;
    }
    if (a.result == tower::AckResult::Refused) {
      log(true, std::string("tower refused our channel state ") + std::to_string(handed_tx_) + ": " +
                    status_message(a.reason));
      return true;
    }
    // The tower holds this state (or a newer one it knows): trust its signed word only for
    // a state we handed (same txCountGlobal and hash) or newer.
    if (a.txCountGlobal > acked_tx_ && (a.txCountGlobal != handed_tx_ || a.stateHash == handed_hash_)) {
      acked_tx_ = a.txCountGlobal;
      log(false, "tower " + mqtt::topic_address(tower_) + " holds txCountGlobal " + std::to_string(acked_tx_));
    }
    return true;
  }
  // A thread ack names the threadId (in its signature) but not the sender: it is ours if
  // it verifies for a thread we handed and names the state we handed (its hash).
  for (auto it = threads_.begin(); it != threads_.end(); ++it) {
    auto& kv = *it;
    const uint64_t threadId = std::get<1>(kv.first);
    if (tower::verify_thread_ack(a, contract_, tower_, user_, threadId, signer_) != Status::Ok) continue;
    if (a.result == tower::AckResult::Released) {
      // Signed over (threadId, 0, zero hash): the tower holds nothing for this thread.
      // Only a thread we are releasing is forgotten; the same threadId of another sender
      // that is still open keeps its mark.
      if (!kv.second.closed || kv.second.release_ms == 0) continue;
      log(false, "tower released thread " + std::get<0>(kv.first) + "/" + std::to_string(threadId));
      released_.emplace_back(kv.second.sender, threadId);
      threads_.erase(it);
      return true;
    }
    if (a.result == tower::AckResult::Refused) {
      log(true, std::string("tower refused a thread state: ") + status_message(a.reason));
      return true;
    }
    if (a.stateHash != kv.second.handed_hash) continue;
    if (a.txCountGlobal > kv.second.acked_tx) {
      kv.second.acked_tx = a.txCountGlobal;
      log(false, "tower holds thread " + std::get<0>(kv.first) + "/" + std::to_string(threadId) + " txCount " +
                     std::to_string(a.txCountGlobal));
    }
    return true;
  }
  log(true, "tower: thread ack ignored (about no thread state we handed, or not the tower's signature)");
  return true;
}

}  // namespace picopay::device
