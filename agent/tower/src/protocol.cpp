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

uint64_t get_u64_be(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

// A signature on the wire: r 32 | s 32 | v 1.
void put_sig(uint8_t* p, const Signature& sig) {
  std::memcpy(p, sig.r, 32);
  std::memcpy(p + 32, sig.s, 32);
  p[64] = sig.v;
}

// Errors: BadRecoveryId (v not 27/28), HighS.
Status get_sig(const uint8_t* p, Signature& sig) {
  std::memcpy(sig.r, p, 32);
  std::memcpy(sig.s, p + 32, 32);
  sig.v = p[64];
  if (sig.v != 27 && sig.v != 28) return Status::BadRecoveryId;
  if (!signature_s_is_low(sig.s)) return Status::HighS;
  return Status::Ok;
}

// The head of a fixed-size tower message: version, kind, exact length.
// Errors: Truncated, BadVersion, BadKind, TrailingBytes.
Status check_fixed(const uint8_t* in, size_t len, uint8_t kind, size_t size) {
  if (len < 2) return Status::Truncated;
  if (in[0] != kWireVersion) return Status::BadVersion;
  if (in[1] != kind) return Status::BadKind;
  if (len < size) return Status::Truncated;
  if (len > size) return Status::TrailingBytes;
  return Status::Ok;
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
  put_sig(b + n, h.sigReceiver);
  out.insert(out.end(), b, b + n + 65);
  return Status::Ok;
}

Status decode_thread_handover(const uint8_t* in, size_t len, ThreadHandover& out) {
  if (len < 65) return Status::Truncated;
  ThreadHandover h;
  Status s = decode_thread_state(in, len - 65, h.thread);
  if (s != Status::Ok) return s;
  s = get_sig(in + len - 65, h.sigReceiver);
  if (s != Status::Ok) return s;
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
  put_sig(b + 30, r.sigReceiver);
  out.insert(out.end(), b, b + sizeof b);
  return Status::Ok;
}

Status decode_thread_release(const uint8_t* in, size_t len, ThreadRelease& out) {
  Status st = check_fixed(in, len, kThreadReleaseKind, kThreadReleaseWireSize);
  if (st != Status::Ok) return st;
  ThreadRelease r;
  std::memcpy(r.sender.bytes, in + 2, 20);
  r.threadId = get_u64_be(in + 22);
  st = get_sig(in + 30, r.sigReceiver);
  if (st != Status::Ok) return st;
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
  put_u64_be(pre + 60 + 24, threadId);
  put_u64_be(pre + 92 + 24, txCount);
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
  put_u64_be(pre + 60 + 24, txCountGlobal);
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
  put_u64_be(b + 4, a.txCountGlobal);
  std::memcpy(b + 12, a.stateHash.bytes, 32);
  put_sig(b + 44, a.sig);
  out.insert(out.end(), b, b + sizeof b);
  return Status::Ok;
}

Status decode_ack(const uint8_t* in, size_t len, Ack& out) {
  Status st = check_fixed(in, len, kAckKind, kAckWireSize);
  if (st != Status::Ok) return st;
  Ack a;
  if (in[2] > static_cast<uint8_t>(AckResult::Released) || !status_known(in[3])) return Status::BadArgs;
  a.result = static_cast<AckResult>(in[2]);
  a.reason = static_cast<Status>(in[3]);
  if ((a.result == AckResult::Refused) != (a.reason != Status::Ok)) return Status::BadArgs;
  a.txCountGlobal = get_u64_be(in + 4);
  if (a.txCountGlobal > kMaxCounter) return Status::OutOfBounds;
  std::memcpy(a.stateHash.bytes, in + 12, 32);
  if (a.result == AckResult::Released && !names_no_state(a.txCountGlobal, a.stateHash)) return Status::BadArgs;
  st = get_sig(in + 44, a.sig);
  if (st != Status::Ok) return st;
  out = a;
  return Status::Ok;
}

}  // namespace picopay::tower
