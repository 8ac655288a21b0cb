// The device (user) session (session.hpp, docs/device-session.md).
#include "picopay/session.hpp"

#include <cstring>

namespace picopay {

namespace {

#define PP_TRY(expr)                                  \
  do {                                                \
    const ::picopay::Status st_ = (expr);             \
    if (st_ != ::picopay::Status::Ok) return st_;     \
  } while (0)

bool raises_nothing(const ChannelUpdate& u) noexcept {
  return u.reason == UpdateReason::Payment && u.payment.recipient == Party::Hub;
}

// ---------------------------------------------------------------- record writer/reader
struct Out {
  uint8_t* p;
  size_t cap;
  size_t pos;
  void byte(uint8_t b) noexcept {
    if (pos < cap) p[pos] = b;
    ++pos;
  }
  void bytes(const uint8_t* b, size_t n) noexcept {
    for (size_t i = 0; i < n; ++i) byte(b[i]);
  }
  void u16(size_t v) noexcept {
    byte(static_cast<uint8_t>(v >> 8));
    byte(static_cast<uint8_t>(v));
  }
  void u64(uint64_t v) noexcept {
    for (int i = 7; i >= 0; --i) byte(static_cast<uint8_t>(v >> (8 * i)));
  }
  void amount(const U256& v) noexcept {
    uint8_t be[32];
    u256_to_be32(v, be);
    bytes(be, 32);
  }
  void address(const Address& a) noexcept { bytes(a.bytes, 20); }
  // A wire message with a 2-byte length prefix. `enc` writes it.
  template <typename F>
  Status message(F enc) noexcept {
    uint8_t buf[kMaxWireMessage];
    size_t n = 0;
    PP_TRY(enc(buf, sizeof buf, &n));
    u16(n);
    bytes(buf, n);
    return Status::Ok;
  }
};

struct In {
  const uint8_t* p;
  size_t len;
  size_t pos;
  Status err;
  bool ok() const noexcept { return err == Status::Ok; }
  void fail(Status s) noexcept {
    if (err == Status::Ok) err = s;
  }
  bool take(size_t n) noexcept {
    if (!ok()) return false;
    if (len - pos < n) {
      fail(Status::Truncated);
      return false;
    }
    return true;
  }
  uint8_t byte() noexcept {
    if (!take(1)) return 0;
    return p[pos++];
  }
  size_t u16() noexcept {
    const size_t hi = byte();
    return (hi << 8) | byte();
  }
  uint64_t u64() noexcept {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | byte();
    return v;
  }
  U256 amount() noexcept {
    U256 v = U256::zero();
    if (!take(32)) return v;
    (void)u256_from_be(p + pos, 32, v);
    pos += 32;
    return v;
  }
  Address address() noexcept {
    Address a;
    std::memset(a.bytes, 0, 20);
    if (!take(20)) return a;
    std::memcpy(a.bytes, p + pos, 20);
    pos += 20;
    return a;
  }
  bool boolean() noexcept {
    const uint8_t b = byte();
    if (b > 1) fail(Status::Corrupt);
    return b == 1;
  }
  // A length-prefixed message: returns its bytes (pointer into p) and length.
  const uint8_t* message(size_t& n) noexcept {
    n = u16();
    if (!take(n)) return nullptr;
    const uint8_t* m = p + pos;
    pos += n;
    return m;
  }
};

constexpr uint8_t kMagic[4] = {'P', 'P', 'S', 'R'};
constexpr uint8_t kRecordVersion = 1;

constexpr uint8_t kFlagPending = 0x01;
constexpr uint8_t kFlagPendingFromRequest = 0x02;
constexpr uint8_t kFlagHubRequest = 0x04;
constexpr uint8_t kFlagSigHubUnverified = 0x08;
constexpr uint8_t kFlagLastRequestProposed = 0x10;
constexpr uint8_t kRecordFlags = 0x1F;

constexpr uint8_t kThreadSender = 0x01;
constexpr uint8_t kThreadOpen = 0x02;
constexpr uint8_t kThreadClosing = 0x04;

}  // namespace

void effects_clear(Effects& fx) noexcept {
  fx.persist = false;
  fx.count = 0;
  fx.event = SessionEvent::None;
  fx.reason = UpdateReason::Payment;
  fx.txCountGlobal = 0;
  fx.amountWei = U256::zero();
  fx.amountToken = U256::zero();
  fx.needsChain = false;
  fx.refused = Status::Ok;
}

SessionConfig session_config_default() noexcept {
  SessionConfig c;
  std::memset(&c, 0, sizeof c);
  c.verifyCountersigOnPayment = true;
  c.hasChainAccess = false;
  c.acceptIncomingThreads = false;
  c.resendSeconds = 2;
  c.refusedBackoffSeconds = 10;
  c.limits = policy_limits_default();
  return c;
}

Session::Session() noexcept
    : cfg_(session_config_default()),
      signer_(nullptr),
      key_(nullptr),
      storage_{nullptr, 0, nullptr, nullptr},
      ctx_{},
      channel_{},
      sigHubUnverified_(false),
      hasPending_(false),
      pending_(channel_update_make(UpdateReason::Payment)),
      pendingFromRequest_(false),
      pendingRequestId_(0),
      hasHubRequest_(false),
      hubRequest_{},
      lastRequestId_(0),
      lastRequestProposed_(false),
      requests_{},
      nextThreadId_(1),
      chain_{},
      synced_(false),
      halted_(false),
      lastSend_(0),
      lastSync_(0),
      lastClose_(0),
      last_(Status::Ok) {}

Status Session::init(const SessionConfig& cfg, const Signer& signer, const PrivateKey& key,
                     const SessionStorage& storage) noexcept {
  if (storage.threads == nullptr || storage.setItems == nullptr || storage.setScratch == nullptr ||
      storage.capacity == 0)
    return Status::BadArgs;
  if (cfg.user.is_zero() || cfg.hub.is_zero() || cfg.user == cfg.hub) return Status::WrongParty;
  cfg_ = cfg;
  signer_ = &signer;
  key_ = &key;
  storage_ = storage;
  ctx_.hub = cfg.hub;
  std::memset(storage_.threads, 0, sizeof(SessionThread) * storage_.capacity);
  std::memset(&channel_, 0, sizeof channel_);
  channel_.state = channel_state_zero();
  channel_.state.contractAddress = cfg.contract;
  channel_.state.user = cfg.user;
  channel_.state.recipient = cfg.user;
  sigHubUnverified_ = false;
  hasPending_ = false;
  pending_ = channel_update_make(UpdateReason::Payment);
  pendingFromRequest_ = false;
  pendingRequestId_ = 0;
  hasHubRequest_ = false;
  std::memset(&hubRequest_, 0, sizeof hubRequest_);
  lastRequestId_ = 0;
  lastRequestProposed_ = false;
  std::memset(&requests_, 0, sizeof requests_);
  nextThreadId_ = 1;
  std::memset(&chain_, 0, sizeof chain_);
  synced_ = false;
  halted_ = false;
  lastSend_ = lastSync_ = lastClose_ = 0;
  last_ = Status::Ok;
  return Status::Ok;
}

// ---------------------------------------------------------------- persistence

Status Session::serialise(uint8_t* out, size_t cap, size_t* written) const noexcept {
  Out w{out, out ? cap : 0, 0};
  w.bytes(kMagic, 4);
  w.byte(kRecordVersion);
  w.address(cfg_.contract);
  w.address(cfg_.user);
  w.address(cfg_.hub);
  w.byte(static_cast<uint8_t>((hasPending_ ? kFlagPending : 0) | (pendingFromRequest_ ? kFlagPendingFromRequest : 0) |
                              (hasHubRequest_ ? kFlagHubRequest : 0) |
                              (sigHubUnverified_ ? kFlagSigHubUnverified : 0) |
                              (lastRequestProposed_ ? kFlagLastRequestProposed : 0)));
  PP_TRY(w.message([&](uint8_t* b, size_t c, size_t* n) { return encode_channel_state(channel_, b, c, n); }));
  if (hasPending_)
    PP_TRY(w.message([&](uint8_t* b, size_t c, size_t* n) { return encode_channel_update(pending_, b, c, n); }));
  w.u64(pendingRequestId_);
  if (hasHubRequest_)
    PP_TRY(w.message([&](uint8_t* b, size_t c, size_t* n) { return encode_hub_request(hubRequest_, b, c, n); }));
  w.u64(lastRequestId_);
  w.u64(nextThreadId_);
  w.byte(requests_.withdrawal.active ? 1 : 0);
  w.address(requests_.withdrawal.recipient);
  w.amount(requests_.withdrawal.weiUser);
  w.amount(requests_.withdrawal.tokenUser);
  w.byte(requests_.deposit.active ? 1 : 0);
  w.amount(requests_.deposit.weiUser);
  w.amount(requests_.deposit.tokenUser);
  w.byte(requests_.exchange.active ? 1 : 0);
  w.byte(requests_.exchange.sellWei ? 1 : 0);
  w.amount(requests_.exchange.amount);
  w.amount(requests_.exchange.minRate);
  w.amount(requests_.exchange.maxRate);
  size_t n = 0;
  for (size_t i = 0; i < storage_.capacity; ++i) n += storage_.threads[i].used ? 1 : 0;
  w.u16(n);
  for (size_t i = 0; i < storage_.capacity; ++i) {
    const SessionThread& t = storage_.threads[i];
    if (!t.used) continue;
    w.byte(static_cast<uint8_t>((t.sender ? kThreadSender : 0) | (t.open ? kThreadOpen : 0) |
                                (t.closing ? kThreadClosing : 0)));
    PP_TRY(w.message([&](uint8_t* b, size_t c, size_t* m) { return encode_thread_state(t.initial, b, c, m); }));
    PP_TRY(w.message([&](uint8_t* b, size_t c, size_t* m) { return encode_thread_state(t.latest, b, c, m); }));
  }
  if (written) *written = w.pos;
  return w.pos > w.cap ? Status::BufferTooSmall : Status::Ok;
}

Status Session::restore(const uint8_t* data, size_t len) noexcept {
  if (signer_ == nullptr) return Status::BadArgs;
  // Two passes: the first validates everything, the second (commit) writes the session.
  for (int commit = 0; commit < 2; ++commit) {
    In r{data, data ? len : 0, 0, Status::Ok};
    uint8_t magic[4] = {0, 0, 0, 0};
    for (uint8_t& b : magic) b = r.byte();
    if (r.ok() && std::memcmp(magic, kMagic, 4) != 0) return Status::Corrupt;
    const uint8_t version = r.byte();
    if (r.ok() && version != kRecordVersion) return Status::BadVersion;
    const Address contract = r.address(), user = r.address(), hub = r.address();
    if (r.ok() && contract != cfg_.contract) return Status::WrongContract;
    if (r.ok() && (user != cfg_.user || hub != cfg_.hub)) return Status::WrongParty;
    const uint8_t flags = r.byte();
    if (r.ok() && (flags & ~kRecordFlags)) return Status::Corrupt;
    size_t n = 0;
    const uint8_t* m = r.message(n);
    SignedChannelState channel;
    std::memset(&channel, 0, sizeof channel);
    if (r.ok()) PP_TRY(decode_channel_state(m, n, channel));
    if (r.ok() && (channel.state.contractAddress != cfg_.contract || channel.state.user != cfg_.user))
      return Status::Corrupt;
    ChannelUpdate pending = channel_update_make(UpdateReason::Payment);
    if (flags & kFlagPending) {
      m = r.message(n);
      if (r.ok()) PP_TRY(decode_channel_update(m, n, pending));
    }
    const uint64_t pendingRequestId = r.u64();
    HubRequest hubRequest;
    std::memset(&hubRequest, 0, sizeof hubRequest);
    if (flags & kFlagHubRequest) {
      m = r.message(n);
      if (r.ok()) PP_TRY(decode_hub_request(m, n, hubRequest));
    }
    const uint64_t lastRequestId = r.u64();
    const uint64_t nextThreadId = r.u64();
    UserRequests rq;
    std::memset(&rq, 0, sizeof rq);
    rq.withdrawal.active = r.boolean();
    rq.withdrawal.recipient = r.address();
    rq.withdrawal.weiUser = r.amount();
    rq.withdrawal.tokenUser = r.amount();
    rq.deposit.active = r.boolean();
    rq.deposit.weiUser = r.amount();
    rq.deposit.tokenUser = r.amount();
    rq.exchange.active = r.boolean();
    rq.exchange.sellWei = r.boolean();
    rq.exchange.amount = r.amount();
    rq.exchange.minRate = r.amount();
    rq.exchange.maxRate = r.amount();
    const size_t threads = r.u16();
    if (r.ok() && threads > storage_.capacity) return Status::TooManyThreads;
    if (commit) std::memset(storage_.threads, 0, sizeof(SessionThread) * storage_.capacity);
    size_t open = 0;  // pass 0: the open threads' initial states, for the pending check
    for (size_t i = 0; i < threads && r.ok(); ++i) {
      const uint8_t tf = r.byte();
      if (r.ok() && (tf & ~(kThreadSender | kThreadOpen | kThreadClosing))) return Status::Corrupt;
      SessionThread t;
      std::memset(&t, 0, sizeof t);
      t.used = true;
      t.sender = (tf & kThreadSender) != 0;
      t.open = (tf & kThreadOpen) != 0;
      t.closing = (tf & kThreadClosing) != 0;
      m = r.message(n);
      if (r.ok()) PP_TRY(decode_thread_state(m, n, t.initial));
      m = r.message(n);
      if (r.ok()) PP_TRY(decode_thread_state(m, n, t.latest));
      if (commit) storage_.threads[i] = t;
      else if (t.open) storage_.setItems[open++] = t.initial.state;
    }
    if (!r.ok()) return r.err;
    if (r.pos != r.len) return Status::TrailingBytes;
    if (!commit) {
      if (flags & kFlagPending) {
        // The pending proposal must still apply to the stored state (it was built on it).
        ChannelState next;
        const ThreadSet ts{storage_.setItems, open, storage_.capacity, storage_.setScratch};
        if (channel_next_state(ctx_, channel.state, ts, pending, next) != Status::Ok) return Status::Corrupt;
      }
      continue;
    }
    channel_ = channel;
    hasPending_ = (flags & kFlagPending) != 0;
    pending_ = pending;
    pendingFromRequest_ = (flags & kFlagPendingFromRequest) != 0;
    pendingRequestId_ = pendingRequestId;
    hasHubRequest_ = (flags & kFlagHubRequest) != 0;
    hubRequest_ = hubRequest;
    sigHubUnverified_ = (flags & kFlagSigHubUnverified) != 0;
    lastRequestProposed_ = (flags & kFlagLastRequestProposed) != 0;
    lastRequestId_ = lastRequestId;
    nextThreadId_ = nextThreadId;
    requests_ = rq;
    synced_ = false;
    halted_ = false;
  }
  return Status::Ok;
}

// ---------------------------------------------------------------- helpers

ThreadSet Session::thread_set() const noexcept {
  size_t n = 0;
  for (size_t i = 0; i < storage_.capacity; ++i) {
    const SessionThread& t = storage_.threads[i];
    if (t.used && t.open) storage_.setItems[n++] = t.initial.state;
  }
  return ThreadSet{storage_.setItems, n, storage_.capacity, storage_.setScratch};
}

long Session::find_thread(const Address& sender, const Address& receiver, uint64_t threadId) const noexcept {
  for (size_t i = 0; i < storage_.capacity; ++i) {
    const SessionThread& t = storage_.threads[i];
    if (t.used && t.initial.state.threadId == threadId && t.initial.state.sender == sender &&
        t.initial.state.receiver == receiver)
      return static_cast<long>(i);
  }
  return -1;
}

long Session::free_slot() const noexcept {
  for (size_t i = 0; i < storage_.capacity; ++i)
    if (!storage_.threads[i].used) return static_cast<long>(i);
  return -1;
}

OutMessage* Session::add_out(Effects& fx, Route r) noexcept {
  if (fx.count >= kSessionMaxOut) return nullptr;
  OutMessage* m = &fx.out[fx.count++];
  m->route = r;
  std::memset(m->to.bytes, 0, 20);
  m->correlation = 0;
  m->len = 0;
  return m;
}

Status Session::send_sync(uint64_t now, Effects& fx) noexcept {
  lastSync_ = now;
  return add_out(fx, Route::ToHubSync) ? Status::Ok : Status::BufferTooSmall;
}

Status Session::send_pending(uint64_t now, Effects& fx) noexcept {
  if (!hasPending_) return Status::Ok;
  OutMessage* m = add_out(fx, Route::ToHubUpdate);
  if (m == nullptr) return Status::BufferTooSmall;
  m->correlation = pending_.txCountGlobal;
  lastSend_ = now;
  return encode_channel_update(pending_, m->bytes, sizeof m->bytes, &m->len);
}

Status Session::send_request_nack(uint64_t requestId, Status why, Effects& fx) noexcept {
  OutMessage* m = add_out(fx, Route::ToHubReply);
  if (m == nullptr) return Status::BufferTooSmall;
  Reply r = reply_make(ReplyKind::RequestNack);
  r.txCountGlobal = requestId;
  r.status = why;
  r.state = channel_;
  m->correlation = requestId;
  const Status st = encode_reply(r, m->bytes, sizeof m->bytes, &m->len);
  if (st != Status::Ok) --fx.count;
  return st;
}

Status Session::send_thread_state(const SessionThread& t, Effects& fx) noexcept {
  OutMessage* m = add_out(fx, Route::ToThreadReceiver);
  if (m == nullptr) return Status::BufferTooSmall;
  m->to = t.initial.state.receiver;
  m->correlation = t.latest.state.txCount;
  return encode_thread_state(t.latest, m->bytes, sizeof m->bytes, &m->len);
}

Status Session::send_thread_payment(const SessionThread& t, Effects& fx) noexcept {
  OutMessage* m = add_out(fx, Route::ToThreadReceiver);
  if (m == nullptr) return Status::BufferTooSmall;
  m->to = t.initial.state.receiver;
  m->correlation = t.latest.state.txCount;
  const Status st = encode_thread_payment(t.latest, m->bytes, sizeof m->bytes, &m->len);
  if (st != Status::Ok) --fx.count;
  return st;
}

Status Session::verify_evidence() noexcept {
  if (!sigHubUnverified_) return Status::Ok;
  const Status st = signer_->verify_eth(channel_hash(channel_.state), channel_.sigHub, cfg_.hub);
  if (st != Status::Ok) {
    halted_ = true;  // a forged Ack was taken for the hub's: a person has to look
    return ret(st);
  }
  sigHubUnverified_ = false;
  return Status::Ok;
}

Status Session::ready_to_propose(bool raisesClaim) noexcept {
  if (signer_ == nullptr) return Status::BadArgs;
  if (halted_) return Status::Halted;
  if (!synced_) return Status::OutOfSync;
  if (hasPending_) return Status::Busy;
  if (raisesClaim) PP_TRY(verify_evidence());
  return Status::Ok;
}

Status Session::propose(ChannelUpdate& u, uint64_t now, Effects& fx, bool fromRequest, uint64_t requestId) noexcept {
  ChannelState next;
  PP_TRY(channel_propose(ctx_, *signer_, *key_, Party::User, channel_.state, thread_set(), u, next));
  pending_ = u;
  hasPending_ = true;
  pendingFromRequest_ = fromRequest;
  pendingRequestId_ = fromRequest ? requestId : 0;
  if (fromRequest && requestId >= lastRequestId_) {
    lastRequestId_ = requestId;
    lastRequestProposed_ = true;
  }
  fx.persist = true;  // the record holds the proposal before its signature leaves
  return send_pending(now, fx);
}

Status Session::complete_pending(const Signature& sigHub, bool verified, Effects& fx) noexcept {
  ChannelState next;
  if (channel_next_state(ctx_, channel_.state, thread_set(), pending_, next) != Status::Ok) {
    halted_ = true;  // cannot happen unless the record was tampered with
    return ret(Status::Corrupt);
  }
  bool unverified = false;
  if (!verified) {
    if (!cfg_.verifyCountersigOnPayment && raises_nothing(pending_)) {
      unverified = true;  // lazy: checked before the state is relied on (verify_evidence)
    } else {
      const Status st = signer_->verify_eth(channel_hash(next), sigHub, cfg_.hub);
      if (st != Status::Ok) return ret(st);  // a forged or corrupted Ack: ignored
    }
  }
  const ChannelUpdate u = pending_;
  const ThreadState& t = u.thread.thread.state;
  if (u.reason == UpdateReason::OpenThread) {
    const long i = find_thread(t.sender, t.receiver, t.threadId);
    if (i >= 0) storage_.threads[i].open = true;
  } else if (u.reason == UpdateReason::CloseThread) {
    const long i = find_thread(t.sender, t.receiver, t.threadId);
    if (i >= 0) storage_.threads[i].used = false;
  } else if (u.reason == UpdateReason::EmptyChannel) {
    for (size_t i = 0; i < storage_.capacity; ++i)
      if (storage_.threads[i].open) storage_.threads[i].used = false;
  } else if (u.reason == UpdateReason::ProposePendingWithdrawal &&
             (!u.withdrawal.withdrawalWeiUser.is_zero() || !u.withdrawal.withdrawalTokenUser.is_zero())) {
    requests_.withdrawal.active = false;
  } else if (u.reason == UpdateReason::ProposePendingDeposit &&
             (!u.deposit.depositWeiUser.is_zero() || !u.deposit.depositTokenUser.is_zero())) {
    requests_.deposit.active = false;
  } else if (u.reason == UpdateReason::Exchange) {
    requests_.exchange.active = false;
  }
  channel_.state = next;
  channel_.sigUser = u.sig;
  channel_.sigHub = sigHub;
  channel_.hasSigUser = channel_.hasSigHub = true;
  sigHubUnverified_ = unverified;
  hasPending_ = false;
  if (pendingFromRequest_ && hasHubRequest_ && hubRequest_.requestId <= pendingRequestId_) hasHubRequest_ = false;
  pendingFromRequest_ = false;
  pendingRequestId_ = 0;
  fx.persist = true;
  fx.event = SessionEvent::UpdateCompleted;
  fx.reason = u.reason;
  fx.txCountGlobal = next.txCountGlobal;
  if (u.reason == UpdateReason::Payment) {
    fx.amountWei = u.payment.amountWei;
    fx.amountToken = u.payment.amountToken;
  }
  return Status::Ok;
}

Status Session::next_work(uint64_t now, Effects& fx) noexcept {
  if (hasPending_ || !synced_ || halted_) return Status::Ok;
  Status requestStatus = Status::Ok;
  if (hasHubRequest_) {
    requestStatus = evaluate_request(now, fx);
    if (requestStatus == Status::Ok || hasPending_) return requestStatus;
  }
  // Payee: close the threads the payer asked to close, with the latest state held.
  for (size_t i = 0; i < storage_.capacity && !hasPending_; ++i) {
    SessionThread& t = storage_.threads[i];
    if (!t.used || t.sender || !t.open || !t.closing) continue;
    ChannelUpdate u = channel_update_make(UpdateReason::CloseThread);
    u.thread.thread = t.latest;
    return ret(propose(u, now, fx, false, 0));
  }
  return requestStatus;
}

Status Session::evaluate_request(uint64_t now, Effects& fx) noexcept {
  const uint64_t requestId = hubRequest_.requestId;
  ChannelUpdate u = hubRequest_.update;
  Status st = verify_evidence();
  if (st != Status::Ok) return st;
  const ThreadState* latest = nullptr;
  if (u.reason == UpdateReason::CloseThread) {
    const ThreadState& t = u.thread.thread.state;
    const long i = find_thread(t.sender, t.receiver, t.threadId);
    if (i >= 0) latest = &storage_.threads[i].latest.state;
  }
  UserPolicyInput in{cfg_.user, &requests_, cfg_.hasChainAccess, chain_, now, cfg_.acceptIncomingThreads, latest,
                     cfg_.limits};
  st = policy_user_accepts_request(in, channel_.state, u);
  if ((st == Status::NeedsChain || st == Status::NotOnChain) && cfg_.hasChainAccess) {
    // Facts only move forward (a deposit may be mined, a timeout may pass): kept and
    // re-evaluated by on_chain_fact; nothing is signed meanwhile.
    fx.needsChain = true;
    return ret(st);
  }
  long slot = -1;
  if (st == Status::Ok && u.reason == UpdateReason::OpenThread) {
    const ThreadState& t = u.thread.thread.state;
    if (find_thread(t.sender, t.receiver, t.threadId) >= 0) {
      st = Status::ThreadExists;
    } else if ((slot = free_slot()) < 0) {
      st = Status::TooManyThreads;
    } else {
      SessionThread& rec = storage_.threads[slot];
      std::memset(&rec, 0, sizeof rec);
      rec.used = true;
      rec.sender = false;
      rec.initial = u.thread.thread;
      rec.latest = u.thread.thread;
    }
  }
  if (st == Status::Ok) {
    st = propose(u, now, fx, true, requestId);
    if (st != Status::Ok && slot >= 0) storage_.threads[slot].used = false;
  }
  hasHubRequest_ = false;
  if (st != Status::Ok) {
    lastRequestId_ = requestId;
    lastRequestProposed_ = false;
    fx.persist = true;
    (void)send_request_nack(requestId, st, fx);
  }
  return ret(st);
}

Status Session::abandon_pending(const HubRequest& q, uint64_t now, Effects& fx) noexcept {
  PP_TRY(ret(verify_evidence()));
  const ChannelUpdate abandoned = pending_;
  const bool wasFromRequest = pendingFromRequest_;
  const uint64_t wasRequestId = pendingRequestId_;
  ChannelUpdate u = q.update;
  hasPending_ = false;
  const Status st = propose(u, now, fx, true, q.requestId);
  if (st != Status::Ok) {
    hasPending_ = true;  // keeps offering the old proposal
    pending_ = abandoned;
    pendingFromRequest_ = wasFromRequest;
    pendingRequestId_ = wasRequestId;
    fx.count = 0;
    (void)send_request_nack(q.requestId, st, fx);
    return ret(st);
  }
  // A queued request is dropped: the hub re-sends its head (with a new id) after the skip.
  hasHubRequest_ = false;
  // What the abandoned proposal was for is not wanted any more in that form.
  const ThreadState& t = abandoned.thread.thread.state;
  if (abandoned.reason == UpdateReason::OpenThread) {
    const long i = find_thread(t.sender, t.receiver, t.threadId);
    if (i >= 0 && !storage_.threads[i].open) storage_.threads[i].used = false;
  } else if (abandoned.reason == UpdateReason::Exchange) {
    requests_.exchange.active = false;
  } else if (abandoned.reason == UpdateReason::ProposePendingWithdrawal) {
    requests_.withdrawal.active = false;
  } else if (abandoned.reason == UpdateReason::ProposePendingDeposit) {
    requests_.deposit.active = false;
  }
  return Status::Ok;
}

// ---------------------------------------------------------------- the hub's states

Session::HubState Session::check_hub_state(const SignedChannelState& hub, Status& why) noexcept {
  const ChannelState& mine = channel_.state;
  const ChannelState& s = hub.state;
  if (s.contractAddress != cfg_.contract) {
    why = Status::WrongContract;
    return HubState::Ignored;
  }
  if (s.user != cfg_.user) {
    why = Status::WrongParty;
    return HubState::Ignored;
  }
  if (s.txCountGlobal < mine.txCountGlobal) {
    // Lazy verification: a hub behind us while our latest countersignature is unchecked
    // may mean a forged Ack advanced us; check it now (halts if so).
    if (sigHubUnverified_ && verify_evidence() != Status::Ok) {
      why = Status::Halted;
      return HubState::Ignored;
    }
    why = Status::StaleState;
    return HubState::Ignored;
  }
  const Hash32 h = channel_hash(s);
  if (s.txCountGlobal == mine.txCountGlobal) {
    if (!(s == mine)) {
      why = Status::StateConflict;
      return HubState::Ignored;
    }
    if (sigHubUnverified_ && hub.hasSigHub && signer_->verify_eth(h, hub.sigHub, cfg_.hub) == Status::Ok) {
      channel_.sigHub = hub.sigHub;  // a checked countersignature replaces the unchecked one
      sigHubUnverified_ = false;
    }
    why = Status::Ok;
    return HubState::Ours;
  }
  if (!hub.hasSigUser || !hub.hasSigHub) {
    why = Status::NotDoubleSigned;
    return HubState::Ignored;
  }
  Status st = signer_->verify_eth(h, hub.sigUser, cfg_.user);
  if (st == Status::Ok) st = signer_->verify_eth(h, hub.sigHub, cfg_.hub);
  if (st != Status::Ok) {
    why = st;
    return HubState::Ignored;
  }
  if (hasPending_ && pending_.txCountGlobal == s.txCountGlobal) {
    ChannelState next;
    if (channel_next_state(ctx_, mine, thread_set(), pending_, next) == Status::Ok && next == s) {
      why = Status::Ok;
      return HubState::Pending;
    }
  }
  // Our key signed it, yet we hold neither it nor its proposal: persisting before
  // signing makes that impossible unless the record was restored from a backup or the
  // key is used elsewhere. Adopting it could pay twice: a person has to look.
  why = Status::UnknownState;
  return HubState::Unknown;
}

// ---------------------------------------------------------------- entry points

Status Session::on_connect(uint64_t now, Effects& fx) noexcept {
  effects_clear(fx);
  synced_ = false;
  if (halted_) return Status::Halted;
  for (size_t i = 0; i < storage_.capacity; ++i) {
    SessionThread& t = storage_.threads[i];
    if (t.used && t.sender) t.resendAt = 1;  // due at the next tick
  }
  return send_sync(now, fx);
}

Status Session::tick(uint64_t now, Effects& fx) noexcept {
  effects_clear(fx);
  if (halted_) return Status::Halted;
  const Status st = tick_channel(now, fx);
  resend_thread_payments(now, fx);
  return st;
}

void Session::resend_thread_payments(uint64_t now, Effects& fx) noexcept {
  // The payee keeps no acknowledgement channel: the payer re-sends the latest state of
  // an idle open thread (docs/soak.md finding 1). Re-sends are the same bytes (RFC 6979).
  for (size_t i = 0; i < storage_.capacity; ++i) {
    SessionThread& t = storage_.threads[i];
    if (!t.used || !t.sender || !t.open || t.closing || t.latest.state.txCount == t.initial.state.txCount) continue;
    if (t.latest.state.txCount != t.seenTxCount) {  // paid since: wait until idle
      t.seenTxCount = t.latest.state.txCount;
      if (t.resendAt != 1) {
        t.resendGap = cfg_.resendSeconds > 0 ? cfg_.resendSeconds : 1;
        t.resendAt = now + t.resendGap;
        continue;
      }
    }
    if (t.resendAt == 0 || now < t.resendAt) continue;
    if (fx.count >= kSessionMaxOut) return;  // the next tick
    if (send_thread_payment(t, fx) != Status::Ok) continue;
    if (t.resendGap == 0) t.resendGap = cfg_.resendSeconds > 0 ? cfg_.resendSeconds : 1;
    t.resendGap = t.resendGap * 2 > kThreadResendMaxSeconds ? kThreadResendMaxSeconds : t.resendGap * 2;
    t.resendAt = now + t.resendGap;
  }
}

Status Session::tick_channel(uint64_t now, Effects& fx) noexcept {
  if (!synced_) {
    if (now >= lastSync_ + cfg_.resendSeconds) return send_sync(now, fx);
    return Status::Ok;
  }
  if (hasPending_) {
    if (now >= lastSend_ + cfg_.resendSeconds) return send_pending(now, fx);
  } else {
    const Status w = next_work(now, fx);  // a kept request may still wait for chain facts
    if (fx.count > 0) return w;
  }
  if (now >= lastClose_ + cfg_.resendSeconds) {
    bool sent = false;
    for (size_t i = 0; i < storage_.capacity && fx.count < kSessionMaxOut; ++i) {
      const SessionThread& t = storage_.threads[i];
      if (t.used && t.sender && t.open && t.closing) {
        (void)send_thread_state(t, fx);
        sent = true;
      }
    }
    if (sent) lastClose_ = now;
  }
  return Status::Ok;
}

Status Session::propose_payment(const U256& wei, const U256& token, uint64_t now, Effects& fx) noexcept {
  effects_clear(fx);
  PP_TRY(ret(ready_to_propose(false)));
  ChannelUpdate u = channel_update_make(UpdateReason::Payment);
  u.payment.recipient = Party::Hub;
  u.payment.amountWei = wei;
  u.payment.amountToken = token;
  return ret(propose(u, now, fx, false, 0));
}

Status Session::propose_thread_open(const Address& receiver, const U256& wei, const U256& token, uint64_t now,
                                    Effects& fx, uint64_t* threadId) noexcept {
  effects_clear(fx);
  PP_TRY(ret(ready_to_propose(false)));
  if (receiver.is_zero() || receiver == cfg_.user || receiver == cfg_.hub) return ret(Status::BadArgs);
  if (nextThreadId_ > kMaxCounter) return ret(Status::BadTxCount);
  const long slot = free_slot();
  if (slot < 0) return ret(Status::TooManyThreads);
  SessionThread rec;
  std::memset(&rec, 0, sizeof rec);
  rec.used = true;
  rec.sender = true;
  ThreadState& t = rec.initial.state;
  t = thread_state_zero();
  t.contractAddress = cfg_.contract;
  t.sender = cfg_.user;
  t.receiver = receiver;
  t.threadId = nextThreadId_;
  t.balanceWeiSender = wei;
  t.balanceTokenSender = token;
  PP_TRY(ret(signer_->sign_eth(*key_, thread_hash(t), rec.initial.sigA)));
  rec.initial.hasSigA = true;
  rec.latest = rec.initial;
  ChannelUpdate u = channel_update_make(UpdateReason::OpenThread);
  u.thread.thread = rec.initial;
  storage_.threads[slot] = rec;
  const Status st = propose(u, now, fx, false, 0);
  if (st != Status::Ok) {
    storage_.threads[slot].used = false;
    return ret(st);
  }
  if (threadId) *threadId = nextThreadId_;
  ++nextThreadId_;
  return Status::Ok;
}

Status Session::thread_pay(const Address& receiver, uint64_t threadId, const U256& wei, const U256& token,
                           Effects& fx) noexcept {
  effects_clear(fx);
  if (signer_ == nullptr) return Status::BadArgs;
  if (halted_) return ret(Status::Halted);
  const long i = find_thread(cfg_.user, receiver, threadId);
  if (i < 0 || !storage_.threads[i].sender || !storage_.threads[i].open || storage_.threads[i].closing)
    return ret(Status::ThreadNotFound);
  SessionThread& rec = storage_.threads[i];
  ThreadUpdate tu;
  ThreadState next;
  PP_TRY(ret(thread_propose(*signer_, *key_, rec.latest.state, wei, token, tu, next)));
  rec.latest.state = next;
  rec.latest.sigA = tu.sig;
  rec.latest.hasSigA = true;
  fx.persist = true;  // the thread's latest state is stored before its signature leaves
  return ret(send_thread_payment(rec, fx));
}

Status Session::thread_close_request(const Address& receiver, uint64_t threadId, uint64_t now, Effects& fx) noexcept {
  effects_clear(fx);
  if (halted_) return ret(Status::Halted);
  const long i = find_thread(cfg_.user, receiver, threadId);
  if (i < 0 || !storage_.threads[i].sender || !storage_.threads[i].open) return ret(Status::ThreadNotFound);
  SessionThread& rec = storage_.threads[i];
  if (!rec.closing) {
    rec.closing = true;
    fx.persist = true;
  }
  lastClose_ = now;
  return ret(send_thread_state(rec, fx));
}

Status Session::request_withdrawal(const Address& recipient, const U256& wei, const U256& token, uint64_t timeout,
                                   uint64_t now, Effects& fx) noexcept {
  effects_clear(fx);
  PP_TRY(ret(ready_to_propose(true)));
  if (recipient.is_zero() || (wei.is_zero() && token.is_zero())) return ret(Status::BadArgs);
  if (now != 0 && (timeout <= now || timeout - now > cfg_.limits.maxTimeoutSeconds))
    return ret(Status::TimeoutOutOfBounds);
  const UserRequests saved = requests_;
  requests_.withdrawal = WithdrawalRequest{true, recipient, wei, token};
  ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  u.withdrawal.recipient = recipient;
  u.withdrawal.withdrawalWeiUser = wei;
  u.withdrawal.withdrawalTokenUser = token;
  u.withdrawal.timeout = timeout;
  const Status st = propose(u, now, fx, false, 0);
  if (st != Status::Ok) requests_ = saved;
  return ret(st);
}

Status Session::request_deposit(const U256& wei, const U256& token, uint64_t timeout, uint64_t now,
                                Effects& fx) noexcept {
  effects_clear(fx);
  PP_TRY(ret(ready_to_propose(true)));
  if (wei.is_zero() && token.is_zero()) return ret(Status::BadArgs);
  if (now != 0 && (timeout <= now || timeout - now > cfg_.limits.maxTimeoutSeconds))
    return ret(Status::TimeoutOutOfBounds);
  const UserRequests saved = requests_;
  requests_.deposit = DepositRequest{true, wei, token};
  ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingDeposit);
  u.deposit.depositWeiUser = wei;
  u.deposit.depositTokenUser = token;
  u.deposit.timeout = timeout;
  const Status st = propose(u, now, fx, false, 0);
  if (st != Status::Ok) requests_ = saved;
  return ret(st);
}

Status Session::request_exchange(bool sellWei, const U256& amount, const U256& rate, const U256& minRate,
                                 const U256& maxRate, uint64_t now, Effects& fx) noexcept {
  effects_clear(fx);
  PP_TRY(ret(ready_to_propose(true)));
  if (amount.is_zero() || rate.is_zero()) return ret(Status::BadArgs);
  if (rate < minRate || rate > maxRate) return ret(Status::RateOutOfBounds);
  const UserRequests saved = requests_;
  requests_.exchange = ExchangeRequest{true, sellWei, amount, minRate, maxRate};
  ChannelUpdate u = channel_update_make(UpdateReason::Exchange);
  u.exchange.seller = Party::User;
  if (sellWei) u.exchange.weiToSell = amount;
  else u.exchange.tokensToSell = amount;
  u.exchange.exchangeRate = rate;
  const Status st = propose(u, now, fx, false, 0);
  if (st != Status::Ok) requests_ = saved;
  return ret(st);
}

Status Session::propose_confirm_pending(const Hash32& transactionHash, uint64_t now, Effects& fx) noexcept {
  effects_clear(fx);
  PP_TRY(ret(ready_to_propose(true)));
  if (!cfg_.hasChainAccess || !chain_.known) {
    fx.needsChain = cfg_.hasChainAccess;
    return ret(Status::NeedsChain);
  }
  if (chain_.txCountChain < channel_.state.txCountChain) return ret(Status::NotOnChain);
  ChannelUpdate u = channel_update_make(UpdateReason::ConfirmPending);
  u.chainTx.transactionHash = transactionHash;
  return ret(propose(u, now, fx, false, 0));
}

Status Session::on_reply(const uint8_t* in, size_t len, uint64_t now, Effects& fx) noexcept {
  effects_clear(fx);
  if (signer_ == nullptr) return Status::BadArgs;
  Reply r;
  PP_TRY(ret(decode_reply(in, len, r)));
  if (halted_) return ret(Status::Halted);
  if (r.kind == ReplyKind::RequestNack) return ret(Status::BadKind);  // a user's answer, not the hub's
  if (r.kind == ReplyKind::Sync) {
    Status why = Status::Ok;
    switch (check_hub_state(r.state, why)) {
      case HubState::Ignored:
        return ret(why);
      case HubState::Unknown:
        synced_ = false;
        halted_ = true;
        return ret(why);
      case HubState::Pending: {
        synced_ = true;
        PP_TRY(ret(complete_pending(r.state.sigHub, true, fx)));
        return ret(next_work(now, fx));
      }
      case HubState::Ours: {
        const bool was = synced_;
        synced_ = true;
        if (!was) {
          fx.event = SessionEvent::Synced;
          if (hasPending_) return ret(send_pending(now, fx));  // the same bytes again
          return ret(next_work(now, fx));
        }
        return Status::Ok;
      }
    }
    return Status::Ok;
  }
  if (!synced_ || !hasPending_ || r.txCountGlobal != pending_.txCountGlobal) return ret(Status::Duplicate);
  if (r.kind == ReplyKind::Ack) {
    PP_TRY(complete_pending(r.sig, false, fx));
    return ret(next_work(now, fx));
  }
  // Nack: counts only once the state it carries checks out (a forged or replayed Nack
  // changes nothing).
  Status why = Status::Ok;
  switch (check_hub_state(r.state, why)) {
    case HubState::Ignored:
      return ret(why);
    case HubState::Unknown:
      synced_ = false;
      halted_ = true;
      return ret(why);
    case HubState::Pending:
      PP_TRY(ret(complete_pending(r.state.sigHub, true, fx)));
      return ret(next_work(now, fx));
    case HubState::Ours:
      break;
  }
  // The hub, at our state, refuses our proposal. We signed it, so we never sign another
  // state with its txCountGlobal: the same bytes are offered again after a pause.
  fx.refused = r.status;
  last_ = r.status;
  const uint64_t pause = cfg_.refusedBackoffSeconds > cfg_.resendSeconds ? cfg_.refusedBackoffSeconds - cfg_.resendSeconds : 0;
  lastSend_ = now + pause;
  return Status::Ok;
}

Status Session::on_hub_request(const uint8_t* in, size_t len, uint64_t now, Effects& fx) noexcept {
  effects_clear(fx);
  if (signer_ == nullptr) return Status::BadArgs;
  HubRequest q;
  PP_TRY(ret(decode_hub_request(in, len, q)));
  if (q.contractAddress != cfg_.contract) return ret(Status::WrongContract);
  if (q.user != cfg_.user) return ret(Status::WrongParty);
  PP_TRY(ret(hub_request_verify(*signer_, q, cfg_.hub)));  // forgeries are dropped unanswered
  if (halted_) return ret(Status::Halted);
  if (!synced_) return ret(Status::OutOfSync);  // the hub re-sends
  if (q.requestId < lastRequestId_ || (q.requestId == lastRequestId_ && lastRequestProposed_)) {
    if (hasPending_ && pendingFromRequest_ && pendingRequestId_ == q.requestId) (void)send_pending(now, fx);
    return ret(Status::Duplicate);
  }
  if (hasHubRequest_ && hubRequest_.requestId > q.requestId) return ret(Status::Duplicate);
  if (channel_is_skip(channel_.state, q.update)) {
    // The hub refuses our proposal for good and asks to invalidate it: only our own
    // pending proposal, which the hub never countersigned, is skipped.
    if (!hasPending_ || pending_.txCountGlobal != q.update.invalidation.lastInvalidTxCount) {
      lastRequestId_ = q.requestId;
      lastRequestProposed_ = false;
      fx.persist = true;
      (void)send_request_nack(q.requestId, Status::NotRequested, fx);
      return ret(Status::NotRequested);
    }
    return abandon_pending(q, now, fx);
  }
  hubRequest_ = q;
  hasHubRequest_ = true;
  if (hasPending_) return ret(Status::Busy);  // proposed after the proposal in flight completes
  return evaluate_request(now, fx);
}

Status Session::on_thread_message(const uint8_t* in, size_t len, uint64_t now, Effects& fx) noexcept {
  effects_clear(fx);
  if (signer_ == nullptr) return Status::BadArgs;
  WireKind kind;
  PP_TRY(ret(wire_peek_kind(in, len, kind)));
  // The increment form (ThreadUpdate, kind 0x04) of older payers is refused: one lost
  // increment made every later one unverifiable (docs/soak.md finding 1).
  if (kind == WireKind::ThreadPayment) {
    SignedThreadState ts;
    PP_TRY(ret(decode_thread_payment(in, len, ts)));
    if (ts.state.receiver != cfg_.user) return ret(Status::ThreadNotFound);
    const long i = find_thread(ts.state.sender, cfg_.user, ts.state.threadId);
    if (i < 0 || storage_.threads[i].sender) return ret(Status::ThreadNotFound);
    SessionThread& rec = storage_.threads[i];
    PP_TRY(ret(thread_accept_state(*signer_, rec.latest.state, ts)));
    // thread_accept_state: the receiver's balances did not decrease.
    (void)u256_sub(ts.state.balanceWeiReceiver, rec.latest.state.balanceWeiReceiver, fx.amountWei);
    (void)u256_sub(ts.state.balanceTokenReceiver, rec.latest.state.balanceTokenReceiver, fx.amountToken);
    rec.latest = ts;
    fx.persist = true;
    fx.event = SessionEvent::ThreadPaymentReceived;
    return Status::Ok;
  }
  if (kind != WireKind::ThreadState) return ret(Status::BadKind);
  // The payer asks to close, with its latest signed thread state.
  SignedThreadState ts;
  PP_TRY(ret(decode_thread_state(in, len, ts)));
  if (!ts.hasSigA) return ret(Status::BadArgs);
  const long i = find_thread(ts.state.sender, cfg_.user, ts.state.threadId);
  if (i < 0 || storage_.threads[i].sender || ts.state.receiver != cfg_.user) return ret(Status::ThreadNotFound);
  SessionThread& rec = storage_.threads[i];
  const Status a = thread_accept_state(*signer_, rec.latest.state, ts);
  if (a == Status::Ok) {
    rec.latest = ts;  // newer: payments we missed
    fx.persist = true;
  } else if (a == Status::Duplicate) {
    // The state we hold: closing on it needs the sender's word too.
    PP_TRY(ret(signer_->verify_eth(thread_hash(ts.state), ts.sigA, rec.latest.state.sender)));
  } else {
    return ret(a);
  }
  if (!rec.closing) {
    rec.closing = true;
    fx.persist = true;
  }
  if (!rec.open) return Status::Ok;  // closed once the hub's OpenThread request is done
  return ret(next_work(now, fx));
}

Status Session::on_chain_fact(const ChainFacts& facts, uint64_t now, Effects& fx) noexcept {
  effects_clear(fx);
  chain_ = facts;
  return ret(next_work(now, fx));
}

}  // namespace picopay
