// picopay-tower: topics, the handover check and the Ack codec (docs/tower.md).
#include "picopay/tower/protocol.hpp"

#include <cstring>

#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"
#include "picopay/mqtt/protocol.hpp"

namespace picopay::tower {

namespace {
constexpr const char kAckDomain[] = "picopay-tower-ack-v1";  // 20 bytes
static_assert(sizeof kAckDomain - 1 == 20, "ack domain is 20 bytes");
constexpr const char kThreadDomain[] = "picopay-tower-thr-v1";
static_assert(sizeof kThreadDomain - 1 == 20, "thread domain is 20 bytes");
constexpr const char kThreadAckDomain[] = "picopay-tower-tha-v1";
static_assert(sizeof kThreadAckDomain - 1 == 20, "thread ack domain is 20 bytes");
constexpr const char kReleaseDomain[] = "picopay-tower-rel-v1";
static_assert(sizeof kReleaseDomain - 1 == 20, "release domain is 20 bytes");

void put_u64_be(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * (7 - i)));
}

// A Released ack names no state: txCountGlobal 0 and a zero stateHash.
bool names_no_state(uint64_t tx, const Hash32& h) {
  if (tx != 0) return false;
  for (uint8_t b : h.bytes)
    if (b != 0) return false;
  return true;
}

bool parse_lower_address(const std::string& s, Address& out) {
  if (s.size() != 42 || s[0] != '0' || s[1] != 'x') return false;
  for (size_t i = 2; i < s.size(); ++i) {
    if (s[i] >= 'A' && s[i] <= 'F') return false;
  }
  return hex_decode_0x(s.data(), s.size(), out.bytes, sizeof out.bytes) == Status::Ok;
}

std::string tower_user(const Address& tower, const Address& user, const char* leaf) {
  return std::string(mqtt::kTopicPrefix) + "/tower/" + mqtt::topic_address(tower) + "/user/" +
         mqtt::topic_address(user) + "/" + leaf;
}

bool status_known(uint8_t s) { return s <= static_cast<uint8_t>(Status::Corrupt); }
}  // namespace

std::string topic_state(const Address& tower, const Address& user) { return tower_user(tower, user, "state"); }
std::string topic_thread(const Address& tower, const Address& user) { return tower_user(tower, user, "thread"); }
std::string topic_thread_ack(const Address& tower, const Address& user) {
  return tower_user(tower, user, "thread-ack");
}
std::string topic_thread_filter(const Address& tower) {
  return std::string(mqtt::kTopicPrefix) + "/tower/" + mqtt::topic_address(tower) + "/user/+/thread";
}
std::string topic_ack(const Address& tower, const Address& user) { return tower_user(tower, user, "ack"); }
std::string topic_state_filter(const Address& tower) {
  return std::string(mqtt::kTopicPrefix) + "/tower/" + mqtt::topic_address(tower) + "/user/+/state";
}

static bool parse_tower_topic(const std::string& topic, const std::string& leaf, Address& tower, Address& user) {
  // picopay/v1/tower/<42>/user/<42>/<leaf>
  const std::string head = std::string(mqtt::kTopicPrefix) + "/tower/";
  if (topic.size() != head.size() + 42 + 6 + 42 + 1 + leaf.size()) return false;
  if (topic.compare(0, head.size(), head) != 0) return false;
  size_t p = head.size();
  if (!parse_lower_address(topic.substr(p, 42), tower)) return false;
  p += 42;
  if (topic.compare(p, 6, "/user/") != 0) return false;
  p += 6;
  if (!parse_lower_address(topic.substr(p, 42), user)) return false;
  p += 42;
  return topic.compare(p, std::string::npos, "/" + leaf) == 0;
}
bool parse_state_topic(const std::string& topic, Address& tower, Address& user) {
  return parse_tower_topic(topic, "state", tower, user);
}
bool parse_thread_topic(const std::string& topic, Address& tower, Address& user) {
  return parse_tower_topic(topic, "thread", tower, user);
}

Hash32 thread_handover_digest(const Address& contract, const Hash32& threadHash) noexcept {
  uint8_t pre[20 + 20 + 32];
  std::memcpy(pre, kThreadDomain, 20);
  std::memcpy(pre + 20, contract.bytes, 20);
  std::memcpy(pre + 40, threadHash.bytes, 32);
  Hash32 out{};
  keccak256(pre, sizeof pre, out.bytes);
  return out;
}

Status encode_thread_handover(const ThreadHandover& h, std::vector<uint8_t>& out) {
  uint8_t b[kMaxThreadStateWire + 65];
  size_t n = 0;
  Status s = encode_thread_state(h.thread, b, kMaxThreadStateWire, &n);
  if (s != Status::Ok) return s;
  if (h.sigReceiver.v != 27 && h.sigReceiver.v != 28) return Status::BadRecoveryId;
  std::memcpy(b + n, h.sigReceiver.r, 32);
  std::memcpy(b + n + 32, h.sigReceiver.s, 32);
  b[n + 64] = h.sigReceiver.v;
  out.insert(out.end(), b, b + n + 65);
  return Status::Ok;
}

Status decode_thread_handover(const uint8_t* in, size_t len, ThreadHandover& out) {
  if (len < 65) return Status::Truncated;
  ThreadHandover h;
  Status s = decode_thread_state(in, len - 65, h.thread);
  if (s != Status::Ok) return s;
  const uint8_t* sig = in + len - 65;
  std::memcpy(h.sigReceiver.r, sig, 32);
  std::memcpy(h.sigReceiver.s, sig + 32, 32);
  h.sigReceiver.v = sig[64];
  if (h.sigReceiver.v != 27 && h.sigReceiver.v != 28) return Status::BadRecoveryId;
  if (!signature_s_is_low(h.sigReceiver.s)) return Status::HighS;
  out = h;
  return Status::Ok;
}

Status check_thread_handover(const ThreadHandover& h, const Address& contract, const Address& user,
                             const Signer& signer) noexcept {
  const ThreadState& t = h.thread.state;
  if (t.contractAddress != contract) return Status::WrongContract;
  if (t.receiver != user || t.sender == t.receiver) return Status::WrongParty;
  if (!h.thread.hasSigA) return Status::BadArgs;
  const Hash32 th = thread_hash(t);
  Status s = signer.verify_eth(th, h.thread.sigA, t.sender);
  if (s != Status::Ok) return s;
  return signer.verify_eth(thread_handover_digest(contract, th), h.sigReceiver, user);
}

Hash32 thread_release_digest(const Address& contract, const Address& receiver, const Address& sender,
                             uint64_t threadId) noexcept {
  uint8_t pre[20 + 20 + 20 + 20 + 32] = {};
  std::memcpy(pre, kReleaseDomain, 20);
  std::memcpy(pre + 20, contract.bytes, 20);
  std::memcpy(pre + 40, receiver.bytes, 20);
  std::memcpy(pre + 60, sender.bytes, 20);
  put_u64_be(pre + 80 + 24, threadId);
  Hash32 out{};
  keccak256(pre, sizeof pre, out.bytes);
  return out;
}

bool is_thread_release(const uint8_t* in, size_t len) noexcept {
  return len >= 2 && in[0] == kWireVersion && in[1] == kThreadReleaseKind;
}

Status make_thread_release(const Address& contract, const Address& sender, uint64_t threadId,
                           const PrivateKey& receiver_key, const Signer& signer, ThreadRelease& out) noexcept {
  ThreadRelease r;
  r.sender = sender;
  r.threadId = threadId;
  Address receiver{};
  Status s = signer.address_of(receiver_key, receiver);
  if (s != Status::Ok) return s;
  s = signer.sign_eth(receiver_key, thread_release_digest(contract, receiver, sender, threadId), r.sigReceiver);
  if (s != Status::Ok) return s;
  out = r;
  return Status::Ok;
}

Status encode_thread_release(const ThreadRelease& r, std::vector<uint8_t>& out) {
  if (r.sigReceiver.v != 27 && r.sigReceiver.v != 28) return Status::BadRecoveryId;
  uint8_t b[kThreadReleaseWireSize];
  b[0] = kWireVersion;
  b[1] = kThreadReleaseKind;
  std::memcpy(b + 2, r.sender.bytes, 20);
  put_u64_be(b + 22, r.threadId);
  std::memcpy(b + 30, r.sigReceiver.r, 32);
  std::memcpy(b + 62, r.sigReceiver.s, 32);
  b[94] = r.sigReceiver.v;
  out.insert(out.end(), b, b + sizeof b);
  return Status::Ok;
}

Status decode_thread_release(const uint8_t* in, size_t len, ThreadRelease& out) {
  if (len < 2) return Status::Truncated;
  if (in[0] != kWireVersion) return Status::BadVersion;
  if (in[1] != kThreadReleaseKind) return Status::BadKind;
  if (len < kThreadReleaseWireSize) return Status::Truncated;
  if (len > kThreadReleaseWireSize) return Status::TrailingBytes;
  ThreadRelease r;
  std::memcpy(r.sender.bytes, in + 2, 20);
  r.threadId = 0;
  for (int i = 0; i < 8; ++i) r.threadId = (r.threadId << 8) | in[22 + i];
  std::memcpy(r.sigReceiver.r, in + 30, 32);
  std::memcpy(r.sigReceiver.s, in + 62, 32);
  r.sigReceiver.v = in[94];
  if (r.sigReceiver.v != 27 && r.sigReceiver.v != 28) return Status::BadRecoveryId;
  if (!signature_s_is_low(r.sigReceiver.s)) return Status::HighS;
  out = r;
  return Status::Ok;
}

Status check_thread_release(const ThreadRelease& r, const Address& contract, const Address& user,
                            const Signer& signer) noexcept {
  if (r.sender == user) return Status::WrongParty;
  return signer.verify_eth(thread_release_digest(contract, user, r.sender, r.threadId), r.sigReceiver, user);
}

bool thread_state_better(const ThreadState& c, const ThreadState& cur) noexcept {
  const bool better = c.txCount > cur.txCount || c.balanceWeiReceiver > cur.balanceWeiReceiver ||
                      c.balanceTokenReceiver > cur.balanceTokenReceiver;
  const bool not_worse = c.balanceWeiReceiver >= cur.balanceWeiReceiver &&
                         c.balanceTokenReceiver >= cur.balanceTokenReceiver;
  return better && not_worse;
}

Hash32 thread_ack_digest(const Address& contract, const Address& user, uint64_t threadId, uint64_t txCount,
                         const Hash32& threadHash) noexcept {
  uint8_t pre[20 + 20 + 20 + 32 + 32 + 32] = {};
  std::memcpy(pre, kThreadAckDomain, 20);
  std::memcpy(pre + 20, contract.bytes, 20);
  std::memcpy(pre + 40, user.bytes, 20);
  for (int i = 0; i < 8; ++i) pre[60 + 24 + i] = static_cast<uint8_t>(threadId >> (8 * (7 - i)));
  for (int i = 0; i < 8; ++i) pre[92 + 24 + i] = static_cast<uint8_t>(txCount >> (8 * (7 - i)));
  std::memcpy(pre + 124, threadHash.bytes, 32);
  Hash32 out{};
  keccak256(pre, sizeof pre, out.bytes);
  return out;
}

Status check_handover(const SignedChannelState& s, const Address& contract, const Address& hub, const Address& user,
                      const Signer& signer) noexcept {
  if (s.state.contractAddress != contract) return Status::WrongContract;
  if (s.state.user != user) return Status::WrongParty;
  if (!s.hasSigUser || !s.hasSigHub) return Status::BadArgs;
  if (s.state.timeout != 0) return Status::BadArgs;
  const Hash32 h = channel_hash(s.state);
  Status st = signer.verify_eth(h, s.sigUser, user);
  if (st != Status::Ok) return st;
  return signer.verify_eth(h, s.sigHub, hub);
}

const char* ack_result_name(AckResult r) noexcept {
  switch (r) {
    case AckResult::Stored:
      return "stored";
    case AckResult::Held:
      return "held";
    case AckResult::Refused:
      return "refused";
    case AckResult::Released:
      return "released";
  }
  return "unknown";
}

Hash32 ack_digest(const Address& contract, const Address& user, uint64_t txCountGlobal,
                  const Hash32& stateHash) noexcept {
  uint8_t pre[20 + 20 + 20 + 32 + 32] = {};
  std::memcpy(pre, kAckDomain, 20);
  std::memcpy(pre + 20, contract.bytes, 20);
  std::memcpy(pre + 40, user.bytes, 20);
  for (int i = 0; i < 8; ++i) pre[60 + 24 + i] = static_cast<uint8_t>(txCountGlobal >> (8 * (7 - i)));
  std::memcpy(pre + 92, stateHash.bytes, 32);
  Hash32 out{};
  keccak256(pre, sizeof pre, out.bytes);
  return out;
}

Status verify_ack(const Ack& a, const Address& contract, const Address& tower, const Address& user,
                  const Signer& signer) noexcept {
  return signer.verify_eth(ack_digest(contract, user, a.txCountGlobal, a.stateHash), a.sig, tower);
}

Status verify_thread_ack(const Ack& a, const Address& contract, const Address& tower, const Address& user,
                         uint64_t threadId, const Signer& signer) noexcept {
  return signer.verify_eth(thread_ack_digest(contract, user, threadId, a.txCountGlobal, a.stateHash), a.sig, tower);
}

Status make_thread_handover(const SignedThreadState& t, const PrivateKey& receiver_key, const Signer& signer,
                            ThreadHandover& out) noexcept {
  if (!t.hasSigA) return Status::BadArgs;
  ThreadHandover h;
  h.thread = t;
  Status s = signer.sign_eth(receiver_key, thread_handover_digest(t.state.contractAddress, thread_hash(t.state)),
                             h.sigReceiver);
  if (s != Status::Ok) return s;
  out = h;
  return Status::Ok;
}

Status encode_ack(const Ack& a, std::vector<uint8_t>& out) {
  const auto res = static_cast<uint8_t>(a.result);
  if (res > static_cast<uint8_t>(AckResult::Released)) return Status::BadArgs;
  if (!status_known(static_cast<uint8_t>(a.reason))) return Status::BadArgs;
  if ((a.result == AckResult::Refused) != (a.reason != Status::Ok)) return Status::BadArgs;
  if (a.result == AckResult::Released && !names_no_state(a.txCountGlobal, a.stateHash)) return Status::BadArgs;
  if (a.txCountGlobal > kMaxCounter) return Status::OutOfBounds;
  if (a.sig.v != 27 && a.sig.v != 28) return Status::BadRecoveryId;
  uint8_t b[kAckWireSize];
  b[0] = kWireVersion;
  b[1] = kAckKind;
  b[2] = res;
  b[3] = static_cast<uint8_t>(a.reason);
  for (int i = 0; i < 8; ++i) b[4 + i] = static_cast<uint8_t>(a.txCountGlobal >> (8 * (7 - i)));
  std::memcpy(b + 12, a.stateHash.bytes, 32);
  std::memcpy(b + 44, a.sig.r, 32);
  std::memcpy(b + 76, a.sig.s, 32);
  b[108] = a.sig.v;
  out.insert(out.end(), b, b + sizeof b);
  return Status::Ok;
}

Status decode_ack(const uint8_t* in, size_t len, Ack& out) {
  if (len < 2) return Status::Truncated;
  if (in[0] != kWireVersion) return Status::BadVersion;
  if (in[1] != kAckKind) return Status::BadKind;
  if (len < kAckWireSize) return Status::Truncated;
  if (len > kAckWireSize) return Status::TrailingBytes;
  Ack a;
  if (in[2] > static_cast<uint8_t>(AckResult::Released) || !status_known(in[3])) return Status::BadArgs;
  a.result = static_cast<AckResult>(in[2]);
  a.reason = static_cast<Status>(in[3]);
  if ((a.result == AckResult::Refused) != (a.reason != Status::Ok)) return Status::BadArgs;
  a.txCountGlobal = 0;
  for (int i = 0; i < 8; ++i) a.txCountGlobal = (a.txCountGlobal << 8) | in[4 + i];
  if (a.txCountGlobal > kMaxCounter) return Status::OutOfBounds;
  std::memcpy(a.stateHash.bytes, in + 12, 32);
  if (a.result == AckResult::Released && !names_no_state(a.txCountGlobal, a.stateHash)) return Status::BadArgs;
  std::memcpy(a.sig.r, in + 44, 32);
  std::memcpy(a.sig.s, in + 76, 32);
  a.sig.v = in[108];
  if (a.sig.v != 27 && a.sig.v != 28) return Status::BadRecoveryId;
  if (!signature_s_is_low(a.sig.s)) return Status::HighS;
  out = a;
  return Status::Ok;
}

}  // namespace picopay::tower
