// The wire codec of docs/wire-format.md. Canonical by construction: the decoder
// accepts exactly the bytes the encoder produces.
#include "picopay/codec.hpp"

#include <cstring>

#include "picopay/keccak.hpp"
#include "picopay/signer.hpp"

namespace picopay {

namespace {

// ---------------------------------------------------------------- writer
struct Writer {
  uint8_t* out;
  size_t cap;
  size_t pos;
  Status err;

  void byte(uint8_t b) noexcept {
    if (pos < cap) out[pos] = b;
    ++pos;
  }
  void bytes(const uint8_t* p, size_t n) noexcept {
    for (size_t i = 0; i < n; ++i) byte(p[i]);
  }
  void varint(uint64_t v) noexcept {
    if (v > kMaxCounter) {
      err = Status::OutOfBounds;
      return;
    }
    while (v >= 0x80) {
      byte(static_cast<uint8_t>(v | 0x80));
      v >>= 7;
    }
    byte(static_cast<uint8_t>(v));
  }
  void amount(const U256& v) noexcept {
    uint8_t be[32];
    u256_to_be32(v, be);
    const size_t n = u256_byte_length(v);
    byte(static_cast<uint8_t>(n));
    bytes(be + 32 - n, n);
  }
  void address(const Address& a) noexcept { bytes(a.bytes, 20); }
  void hash(const Hash32& h) noexcept { bytes(h.bytes, 32); }
  void party(Party p) noexcept {
    if (p != Party::Hub && p != Party::User) err = Status::BadArgs;
    byte(static_cast<uint8_t>(p));
  }
  void signature(const Signature& s) noexcept {
    if (s.v != 27 && s.v != 28) err = Status::BadRecoveryId;
    bytes(s.r, 32);
    bytes(s.s, 32);
    byte(s.v);
  }
  Status finish(size_t* written) const noexcept {
    if (written) *written = pos;
    if (err != Status::Ok) return err;
    return pos > cap ? Status::BufferTooSmall : Status::Ok;
  }
};

Writer writer(uint8_t* out, size_t cap, WireKind kind) noexcept {
  Writer w{out, out ? cap : 0, 0, Status::Ok};
  w.byte(kWireVersion);
  w.byte(static_cast<uint8_t>(kind));
  return w;
}

// ---------------------------------------------------------------- reader
struct Reader {
  const uint8_t* in;
  size_t len;
  size_t pos;
  Status err;

  bool ok() const noexcept { return err == Status::Ok; }
  void fail(Status s) noexcept {
    if (err == Status::Ok) err = s;
  }
  uint8_t byte() noexcept {
    if (!ok()) return 0;
    if (pos >= len) {
      fail(Status::Truncated);
      return 0;
    }
    return in[pos++];
  }
  void bytes(uint8_t* p, size_t n) noexcept {
    if (!ok()) return;
    if (len - pos < n) {
      fail(Status::Truncated);
      return;
    }
    std::memcpy(p, in + pos, n);
    pos += n;
  }
  uint64_t varint() noexcept {
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; ++i) {
      const uint8_t b = byte();
      if (!ok()) return 0;
      v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) {
        if (i > 0 && b == 0) fail(Status::NonCanonical);  // redundant high zero group
        if (v > kMaxCounter) fail(Status::OutOfBounds);
        return v;
      }
    }
    fail(Status::OutOfBounds);  // longer than any value <= kMaxCounter
    return 0;
  }
  U256 amount() noexcept {
    U256 v = U256::zero();
    const uint8_t n = byte();
    if (!ok()) return v;
    if (n > 32) {
      fail(Status::OutOfBounds);
      return v;
    }
    uint8_t be[32];
    bytes(be, n);
    if (!ok()) return v;
    if (n > 0 && be[0] == 0) {
      fail(Status::NonCanonical);
      return v;
    }
    (void)u256_from_be(be, n, v);
    return v;
  }
  Address address() noexcept {
    Address a;
    std::memset(a.bytes, 0, 20);
    bytes(a.bytes, 20);
    return a;
  }
  Hash32 hash() noexcept {
    Hash32 h;
    std::memset(h.bytes, 0, 32);
    bytes(h.bytes, 32);
    return h;
  }
  Party party() noexcept {
    const uint8_t b = byte();
    if (ok() && b > 1) fail(Status::BadArgs);
    return static_cast<Party>(b);
  }
  Signature signature() noexcept {
    Signature s;
    std::memset(&s, 0, sizeof s);
    bytes(s.r, 32);
    bytes(s.s, 32);
    s.v = byte();
    if (!ok()) return s;
    if (s.v != 27 && s.v != 28) fail(Status::BadRecoveryId);
    else if (!signature_s_is_low(s.s)) fail(Status::HighS);
    return s;
  }
  Status finish() const noexcept {
    if (!ok()) return err;
    return pos == len ? Status::Ok : Status::TrailingBytes;
  }
};

Reader reader(const uint8_t* in, size_t len, WireKind kind) noexcept {
  Reader r{in, in ? len : 0, 0, Status::Ok};
  const uint8_t version = r.byte();
  if (r.ok() && version != kWireVersion) r.fail(Status::BadVersion);
  const uint8_t k = r.byte();
  if (r.ok() && k != static_cast<uint8_t>(kind)) r.fail(Status::BadKind);
  return r;
}

// ---------------------------------------------------------------- channel state
constexpr uint8_t kChanSigUser = 0x01;
constexpr uint8_t kChanSigHub = 0x02;
constexpr uint8_t kChanRecipient = 0x04;
constexpr uint8_t kChanThreadRoot = 0x08;
constexpr uint8_t kChanFlags = kChanSigUser | kChanSigHub | kChanRecipient | kChanThreadRoot;

constexpr uint8_t kThreadSigA = 0x01;

void write_thread_body(Writer& w, const SignedThreadState& t) noexcept {
  const ThreadState& s = t.state;
  w.byte(t.hasSigA ? kThreadSigA : 0);
  w.address(s.contractAddress);
  w.address(s.sender);
  w.address(s.receiver);
  w.varint(s.threadId);
  w.amount(s.balanceWeiSender);
  w.amount(s.balanceWeiReceiver);
  w.amount(s.balanceTokenSender);
  w.amount(s.balanceTokenReceiver);
  w.varint(s.txCount);
  if (t.hasSigA) w.signature(t.sigA);
}

void read_thread_body(Reader& r, SignedThreadState& t) noexcept {
  std::memset(&t, 0, sizeof t);
  const uint8_t flags = r.byte();
  if (r.ok() && (flags & ~kThreadSigA)) r.fail(Status::NonCanonical);
  ThreadState& s = t.state;
  s.contractAddress = r.address();
  s.sender = r.address();
  s.receiver = r.address();
  s.threadId = r.varint();
  s.balanceWeiSender = r.amount();
  s.balanceWeiReceiver = r.amount();
  s.balanceTokenSender = r.amount();
  s.balanceTokenReceiver = r.amount();
  s.txCount = r.varint();
  t.hasSigA = (flags & kThreadSigA) != 0;
  if (t.hasSigA) t.sigA = r.signature();
}

// The reason-specific args of a ChannelUpdate (shared by ChannelUpdate and HubRequest).
void write_update_args(Writer& w, const ChannelUpdate& u) noexcept {
  switch (u.reason) {
    case UpdateReason::Payment:
      w.party(u.payment.recipient);
      w.amount(u.payment.amountWei);
      w.amount(u.payment.amountToken);
      break;
    case UpdateReason::Exchange:
      w.party(u.exchange.seller);
      w.amount(u.exchange.weiToSell);
      w.amount(u.exchange.tokensToSell);
      w.amount(u.exchange.exchangeRate);
      break;
    case UpdateReason::ProposePendingDeposit:
      w.amount(u.deposit.depositWeiHub);
      w.amount(u.deposit.depositWeiUser);
      w.amount(u.deposit.depositTokenHub);
      w.amount(u.deposit.depositTokenUser);
      w.varint(u.deposit.timeout);
      break;
    case UpdateReason::ProposePendingWithdrawal:
      w.address(u.withdrawal.recipient);
      w.amount(u.withdrawal.withdrawalWeiHub);
      w.amount(u.withdrawal.withdrawalWeiUser);
      w.amount(u.withdrawal.withdrawalTokenHub);
      w.amount(u.withdrawal.withdrawalTokenUser);
      w.varint(u.withdrawal.timeout);
      break;
    case UpdateReason::ConfirmPending:
    case UpdateReason::EmptyChannel:
      w.hash(u.chainTx.transactionHash);
      break;
    case UpdateReason::Invalidation:
      w.varint(u.invalidation.previousValidTxCount);
      w.varint(u.invalidation.lastInvalidTxCount);
      break;
    case UpdateReason::OpenThread:
    case UpdateReason::CloseThread:
      if (!u.thread.thread.hasSigA) w.err = Status::BadArgs;
      write_thread_body(w, u.thread.thread);
      break;
    default:
      w.err = Status::BadReason;
      break;
  }
}

void read_update_args(Reader& r, ChannelUpdate& u) noexcept {
  switch (u.reason) {
    case UpdateReason::Payment:
      u.payment.recipient = r.party();
      u.payment.amountWei = r.amount();
      u.payment.amountToken = r.amount();
      break;
    case UpdateReason::Exchange:
      u.exchange.seller = r.party();
      u.exchange.weiToSell = r.amount();
      u.exchange.tokensToSell = r.amount();
      u.exchange.exchangeRate = r.amount();
      break;
    case UpdateReason::ProposePendingDeposit:
      u.deposit.depositWeiHub = r.amount();
      u.deposit.depositWeiUser = r.amount();
      u.deposit.depositTokenHub = r.amount();
      u.deposit.depositTokenUser = r.amount();
      u.deposit.timeout = r.varint();
      break;
    case UpdateReason::ProposePendingWithdrawal:
      u.withdrawal.recipient = r.address();
      u.withdrawal.withdrawalWeiHub = r.amount();
      u.withdrawal.withdrawalWeiUser = r.amount();
      u.withdrawal.withdrawalTokenHub = r.amount();
      u.withdrawal.withdrawalTokenUser = r.amount();
      u.withdrawal.timeout = r.varint();
      break;
    case UpdateReason::ConfirmPending:
    case UpdateReason::EmptyChannel:
      u.chainTx.transactionHash = r.hash();
      break;
    case UpdateReason::Invalidation:
      u.invalidation.previousValidTxCount = r.varint();
      u.invalidation.lastInvalidTxCount = r.varint();
      break;
    case UpdateReason::OpenThread:
    case UpdateReason::CloseThread:
      read_thread_body(r, u.thread.thread);
      if (r.ok() && !u.thread.thread.hasSigA) r.fail(Status::BadArgs);
      break;
    default:
      r.fail(Status::BadReason);
      break;
  }
}

}  // namespace

Status wire_peek_kind(const uint8_t* in, size_t len, WireKind& kind) noexcept {
  if (in == nullptr || len < 2) return Status::Truncated;
  if (in[0] != kWireVersion) return Status::BadVersion;
  if ((in[1] < 1 || in[1] > 6) && (in[1] < 0x10 || in[1] > 0x13)) return Status::BadKind;
  kind = static_cast<WireKind>(in[1]);
  return Status::Ok;
}

Status encode_channel_state(const SignedChannelState& c, uint8_t* out, size_t cap, size_t* written) noexcept {
  const ChannelState& s = c.state;
  Writer w = writer(out, cap, WireKind::ChannelState);
  const bool explicit_recipient = s.recipient != s.user;
  const bool has_root = !s.threadRoot.is_zero();
  w.byte(static_cast<uint8_t>((c.hasSigUser ? kChanSigUser : 0) | (c.hasSigHub ? kChanSigHub : 0) |
                              (explicit_recipient ? kChanRecipient : 0) | (has_root ? kChanThreadRoot : 0)));
  w.address(s.contractAddress);
  w.address(s.user);
  if (explicit_recipient) w.address(s.recipient);
  w.amount(s.balanceWeiHub);
  w.amount(s.balanceWeiUser);
  w.amount(s.balanceTokenHub);
  w.amount(s.balanceTokenUser);
  w.amount(s.pendingDepositWeiHub);
  w.amount(s.pendingWithdrawalWeiHub);
  w.amount(s.pendingDepositWeiUser);
  w.amount(s.pendingWithdrawalWeiUser);
  w.amount(s.pendingDepositTokenHub);
  w.amount(s.pendingWithdrawalTokenHub);
  w.amount(s.pendingDepositTokenUser);
  w.amount(s.pendingWithdrawalTokenUser);
  w.varint(s.txCountGlobal);
  w.varint(s.txCountChain);
  w.varint(s.threadCount);
  w.varint(s.timeout);
  if (has_root) w.hash(s.threadRoot);
  if (c.hasSigUser) w.signature(c.sigUser);
  if (c.hasSigHub) w.signature(c.sigHub);
  return w.finish(written);
}

Status decode_channel_state(const uint8_t* in, size_t len, SignedChannelState& out) noexcept {
  Reader r = reader(in, len, WireKind::ChannelState);
  SignedChannelState c;
  std::memset(&c, 0, sizeof c);
  ChannelState& s = c.state;
  const uint8_t flags = r.byte();
  if (r.ok() && (flags & ~kChanFlags)) r.fail(Status::NonCanonical);
  s.contractAddress = r.address();
  s.user = r.address();
  if (flags & kChanRecipient) {
    s.recipient = r.address();
    if (r.ok() && s.recipient == s.user) r.fail(Status::NonCanonical);
  } else {
    s.recipient = s.user;
  }
  s.balanceWeiHub = r.amount();
  s.balanceWeiUser = r.amount();
  s.balanceTokenHub = r.amount();
  s.balanceTokenUser = r.amount();
  s.pendingDepositWeiHub = r.amount();
  s.pendingWithdrawalWeiHub = r.amount();
  s.pendingDepositWeiUser = r.amount();
  s.pendingWithdrawalWeiUser = r.amount();
  s.pendingDepositTokenHub = r.amount();
  s.pendingWithdrawalTokenHub = r.amount();
  s.pendingDepositTokenUser = r.amount();
  s.pendingWithdrawalTokenUser = r.amount();
  s.txCountGlobal = r.varint();
  s.txCountChain = r.varint();
  s.threadCount = r.varint();
  s.timeout = r.varint();
  if (flags & kChanThreadRoot) {
    s.threadRoot = r.hash();
    if (r.ok() && s.threadRoot.is_zero()) r.fail(Status::NonCanonical);
  }
  c.hasSigUser = (flags & kChanSigUser) != 0;
  c.hasSigHub = (flags & kChanSigHub) != 0;
  if (c.hasSigUser) c.sigUser = r.signature();
  if (c.hasSigHub) c.sigHub = r.signature();
  const Status st = r.finish();
  if (st == Status::Ok) out = c;
  return st;
}

Status encode_thread_state(const SignedThreadState& t, uint8_t* out, size_t cap, size_t* written) noexcept {
  Writer w = writer(out, cap, WireKind::ThreadState);
  write_thread_body(w, t);
  return w.finish(written);
}

Status decode_thread_state(const uint8_t* in, size_t len, SignedThreadState& out) noexcept {
  Reader r = reader(in, len, WireKind::ThreadState);
  SignedThreadState t;
  read_thread_body(r, t);
  const Status st = r.finish();
  if (st == Status::Ok) out = t;
  return st;
}

Status encode_thread_payment(const SignedThreadState& t, uint8_t* out, size_t cap, size_t* written) noexcept {
  if (!t.hasSigA) return Status::BadArgs;
  Writer w = writer(out, cap, WireKind::ThreadPayment);
  write_thread_body(w, t);
  return w.finish(written);
}

Status decode_thread_payment(const uint8_t* in, size_t len, SignedThreadState& out) noexcept {
  Reader r = reader(in, len, WireKind::ThreadPayment);
  SignedThreadState t;
  read_thread_body(r, t);
  Status st = r.finish();
  if (st == Status::Ok && !t.hasSigA) st = Status::BadArgs;
  if (st == Status::Ok) out = t;
  return st;
}

Status encode_channel_update(const ChannelUpdate& u, uint8_t* out, size_t cap, size_t* written) noexcept {
  Writer w = writer(out, cap, WireKind::ChannelUpdate);
  w.byte(static_cast<uint8_t>(u.reason));
  w.varint(u.txCountGlobal);
  write_update_args(w, u);
  w.signature(u.sig);
  return w.finish(written);
}

Status decode_channel_update(const uint8_t* in, size_t len, ChannelUpdate& out) noexcept {
  Reader r = reader(in, len, WireKind::ChannelUpdate);
  const uint8_t reason = r.byte();
  ChannelUpdate u = channel_update_make(static_cast<UpdateReason>(reason));
  u.txCountGlobal = r.varint();
  read_update_args(r, u);
  u.sig = r.signature();
  const Status st = r.finish();
  if (st == Status::Ok) out = u;
  return st;
}

Status encode_thread_update(const ThreadUpdate& u, uint8_t* out, size_t cap, size_t* written) noexcept {
  Writer w = writer(out, cap, WireKind::ThreadUpdate);
  w.address(u.sender);
  w.varint(u.threadId);
  w.varint(u.txCount);
  w.amount(u.amountWei);
  w.amount(u.amountToken);
  w.signature(u.sig);
  return w.finish(written);
}

Status decode_thread_update(const uint8_t* in, size_t len, ThreadUpdate& out) noexcept {
  Reader r = reader(in, len, WireKind::ThreadUpdate);
  ThreadUpdate u;
  std::memset(&u, 0, sizeof u);
  u.sender = r.address();
  u.threadId = r.varint();
  u.txCount = r.varint();
  u.amountWei = r.amount();
  u.amountToken = r.amount();
  u.sig = r.signature();
  const Status st = r.finish();
  if (st == Status::Ok) out = u;
  return st;
}

// ---------------------------------------------------------------- HubRequest

namespace {
void write_hub_request_body(Writer& w, const HubRequest& q) noexcept {
  w.address(q.contractAddress);
  w.address(q.user);
  if (q.requestId == 0) w.err = Status::OutOfBounds;
  w.varint(q.requestId);
  if (q.update.txCountGlobal != 0) w.err = Status::BadArgs;
  w.byte(static_cast<uint8_t>(q.update.reason));
  write_update_args(w, q.update);
}
}  // namespace

Status encode_hub_request(const HubRequest& q, uint8_t* out, size_t cap, size_t* written) noexcept {
  Writer w = writer(out, cap, WireKind::HubRequest);
  write_hub_request_body(w, q);
  w.signature(q.sig);
  return w.finish(written);
}

Status decode_hub_request(const uint8_t* in, size_t len, HubRequest& out) noexcept {
  Reader r = reader(in, len, WireKind::HubRequest);
  HubRequest q;
  std::memset(&q, 0, sizeof q);
  q.contractAddress = r.address();
  q.user = r.address();
  q.requestId = r.varint();
  if (r.ok() && q.requestId == 0) r.fail(Status::OutOfBounds);
  const uint8_t reason = r.byte();
  q.update = channel_update_make(static_cast<UpdateReason>(reason));
  read_update_args(r, q.update);
  q.sig = r.signature();
  const Status st = r.finish();
  if (st == Status::Ok) out = q;
  return st;
}

Status hub_request_hash(const HubRequest& q, Hash32& out) noexcept {
  uint8_t buf[kMaxHubRequestWire];
  Writer w = writer(buf, sizeof buf, WireKind::HubRequest);
  write_hub_request_body(w, q);
  size_t n = 0;
  const Status st = w.finish(&n);
  if (st != Status::Ok) return st;
  keccak256(buf, n, out.bytes);
  return Status::Ok;
}

Status hub_request_sign(const Signer& signer, const PrivateKey& hub_key, HubRequest& q) noexcept {
  Hash32 h;
  Status st = hub_request_hash(q, h);
  if (st != Status::Ok) return st;
  return signer.sign_eth(hub_key, h, q.sig);
}

Status hub_request_verify(const Signer& signer, const HubRequest& q, const Address& hub) noexcept {
  Hash32 h;
  Status st = hub_request_hash(q, h);
  if (st != Status::Ok) return st;
  return signer.verify_eth(h, q.sig, hub);
}

// ---------------------------------------------------------------- Reply

namespace {
bool status_on_wire(Status s) noexcept {
  const auto v = static_cast<uint8_t>(s);
  return v > 0 && v < kStatusCount;
}
bool reply_kind_known(uint8_t k) noexcept { return k >= 0x10 && k <= 0x13; }
}  // namespace

Reply reply_make(ReplyKind kind) noexcept {
  Reply r;  // every member has a zero default
  r.kind = kind;
  return r;
}

Status encode_reply(const Reply& r, uint8_t* out, size_t cap, size_t* written) noexcept {
  if (!reply_kind_known(static_cast<uint8_t>(r.kind))) return Status::BadKind;
  Writer w = writer(out, cap, static_cast<WireKind>(r.kind));
  w.varint(r.txCountGlobal);
  if (r.kind == ReplyKind::Ack) {
    w.signature(r.sig);
    return w.finish(written);
  }
  if (r.kind != ReplyKind::Sync) {
    if (!status_on_wire(r.status)) return Status::BadArgs;
    w.byte(static_cast<uint8_t>(r.status));
  }
  if (w.err != Status::Ok) return w.finish(written);
  // The state follows as a complete ChannelState message.
  size_t n = 0;
  const size_t room = w.pos < w.cap ? w.cap - w.pos : 0;
  const Status st = encode_channel_state(r.state, w.pos < w.cap ? w.out + w.pos : nullptr, room, &n);
  if (st != Status::Ok && st != Status::BufferTooSmall) return st;
  w.pos += n;
  return w.finish(written);
}

Status decode_reply(const uint8_t* in, size_t len, Reply& out) noexcept {
  if (in == nullptr || len < 2) return Status::Truncated;
  if (in[0] != kWireVersion) return Status::BadVersion;
  if (!reply_kind_known(in[1])) return Status::BadKind;
  Reader r = reader(in, len, static_cast<WireKind>(in[1]));
  Reply q = reply_make(static_cast<ReplyKind>(in[1]));
  q.txCountGlobal = r.varint();
  if (q.kind == ReplyKind::Ack) {
    q.sig = r.signature();
    const Status st = r.finish();
    if (st == Status::Ok) out = q;
    return st;
  }
  if (q.kind != ReplyKind::Sync) {
    const uint8_t s = r.byte();
    if (r.ok() && (s == 0 || s >= kStatusCount)) r.fail(Status::BadArgs);
    q.status = static_cast<Status>(s);
  }
  if (!r.ok()) return r.err;
  const Status st = decode_channel_state(in + r.pos, len - r.pos, q.state);
  if (st == Status::Ok) out = q;
  return st;
}

}  // namespace picopay
