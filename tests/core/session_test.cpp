// The device session (session.hpp) against a pure in-test hub that uses the same core
// (channel_accept + policy_hub_countersigns): the flows, every refusal class of a
// malicious hub (each refused with its Status, nothing signed, nothing stored changes),
// persistence, and a randomized interleaving of hub requests and user payments (>= 1000
// runs: reordering, duplicates, drops, restarts) where every run ends with both ledgers
// equal and no txCountGlobal signed twice.
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "picopay/codec.hpp"
#include "picopay/policy.hpp"
#include "picopay/session.hpp"
#include "test_util.hpp"

using namespace picopay;
using picopay_test::Rng;
using picopay_test::to_hex;
using picopay_test::u;

namespace {

using Bytes = std::vector<uint8_t>;

const Signer& signer() {
  static Signer s;
  if (!s.ready() && s.init() != Status::Ok) std::abort();
  return s;
}

PrivateKey key_fill(uint8_t b) {
  PrivateKey k;
  std::memset(k.bytes, b, 32);
  return k;
}

Address addr_of(const PrivateKey& k) {
  Address a;
  if (signer().address_of(k, a) != Status::Ok) std::abort();
  return a;
}

const Address kContract = picopay_test::addr("0x7d73424a8256c0b2ba245e5d5a3de8820e45f390");
constexpr uint64_t kT0 = 1800000000;

SignedChannelState genesis(const Address& user) {
  SignedChannelState g;
  std::memset(&g, 0, sizeof g);
  g.state = channel_state_zero();
  g.state.contractAddress = kContract;
  g.state.user = g.state.recipient = user;
  return g;
}

// ---------------------------------------------------------------- a device

struct Device {
  static constexpr size_t kCap = 8;
  PrivateKey key;
  Address addr;
  SessionConfig cfg;
  SessionThread threads[kCap];
  ThreadState items[kCap];
  Hash32 scratch[kCap + 2];
  std::unique_ptr<Session> s;
  Bytes stored;  // the durable record
  std::map<uint64_t, Bytes> signedUpdates;  // txCountGlobal -> the update bytes it sent

  Device(uint8_t keyByte, const Address& hub) : key(key_fill(keyByte)), addr(addr_of(key)) {
    cfg = session_config_default();
    cfg.contract = kContract;
    cfg.user = addr;
    cfg.hub = hub;
    boot(false);
  }
  void boot(bool fromRecord) {
    s = std::make_unique<Session>();
    if (s->init(cfg, signer(), key, SessionStorage{threads, kCap, items, scratch}) != Status::Ok) std::abort();
    if (fromRecord && !stored.empty()) {
      const Status st = s->restore(stored.data(), stored.size());
      EXPECT_EQ(st, Status::Ok);
    }
  }
  void persist() {
    Bytes buf(session_record_max(kCap));
    size_t n = 0;
    ASSERT_EQ(s->serialise(buf.data(), buf.size(), &n), Status::Ok);
    buf.resize(n);
    stored = buf;
  }
};

// ---------------------------------------------------------------- a pure hub

struct Msg {
  enum Kind { Update, UserReply, Sync, Reply, Request, Thread } kind;
  Address user;  // the channel (Update/UserReply/Sync/Reply/Request) or the thread receiver
  Bytes bytes;
};

struct HubChannel {
  SignedChannelState latest;
  std::vector<ThreadState> threads;
  bool hasLast = false;
  Bytes lastUpdate;  // the user's update bytes that produced `latest`
  struct Req {
    uint64_t id;
    ChannelUpdate u;
  };
  std::deque<Req> queue;  // only the head is sent (one request in flight per channel)
  uint64_t nextId = 1;
  uint64_t chainTxCountChain = 0;  // the simulated chain
  std::map<uint64_t, Hash32> countersigned;  // txCountGlobal -> state hash the hub signed
};

struct TestHub {
  PrivateKey key = key_fill(0x33);
  Address addr = addr_of(key_fill(0x33));
  std::map<std::string, HubChannel> ch;
  int refusalsOfUsers = 0;   // Nacks the hub sent
  int skips = 0;             // half-signed states the hub asked to invalidate
  int requestNacks = 0;      // RequestNacks it received
  std::string lastNack;
  bool allowExchange = false;

  static std::string k(const Address& a) { return to_hex(a.bytes, 20); }
  HubChannel& chan(const Address& user) {
    auto it = ch.find(k(user));
    if (it == ch.end()) {
      HubChannel c;
      c.latest = genesis(user);
      it = ch.emplace(k(user), c).first;
    }
    return it->second;
  }
  Bytes reply(const Reply& r) {
    Bytes b(kMaxReplyWire);
    size_t n = 0;
    if (encode_reply(r, b.data(), b.size(), &n) != Status::Ok) std::abort();
    b.resize(n);
    return b;
  }
  Bytes request_bytes(const Address& user, const HubChannel::Req& q) {
    HubRequest r;
    std::memset(&r, 0, sizeof r);
    r.contractAddress = kContract;
    r.user = user;
    r.requestId = q.id;
    r.update = q.u;
    r.update.txCountGlobal = 0;
    std::memset(&r.update.sig, 0, sizeof r.update.sig);
    if (hub_request_sign(signer(), key, r) != Status::Ok) std::abort();
    Bytes b(kMaxHubRequestWire);
    size_t n = 0;
    if (encode_hub_request(r, b.data(), b.size(), &n) != Status::Ok) std::abort();
    b.resize(n);
    return b;
  }
  // Request ids are assigned when a request is first sent (strictly increasing per
  // channel); only the head of a channel's queue is ever sent.
  Bytes head_bytes(const Address& user) {
    HubChannel& c = chan(user);
    if (c.queue.front().id == 0) c.queue.front().id = c.nextId++;
    return request_bytes(user, c.queue.front());
  }
  void enqueue(const Address& user, const ChannelUpdate& u, std::vector<Msg>& out) {
    HubChannel& c = chan(user);
    c.queue.push_back(HubChannel::Req{0, u});
    if (c.queue.size() == 1) out.push_back(Msg{Msg::Request, user, head_bytes(user)});
  }
  void pop_head(const Address& user, std::vector<Msg>& out) {
    HubChannel& c = chan(user);
    c.queue.pop_front();
    if (!c.queue.empty()) out.push_back(Msg{Msg::Request, user, head_bytes(user)});
  }
  void resend(std::vector<Msg>& out) {
    for (auto& kv : ch) {
      if (kv.second.queue.empty()) continue;
      Address a;
      std::memcpy(a.bytes, kv.second.latest.state.user.bytes, 20);
      out.push_back(Msg{Msg::Request, a, head_bytes(a)});
    }
  }
  U256 mirrors_queued(const HubChannel& c) {
    U256 sum = U256::zero();
    for (const auto& q : c.queue)
      if (q.u.reason == UpdateReason::OpenThread) (void)u256_add(sum, q.u.thread.thread.state.balanceWeiSender, sum);
    return sum;
  }
  bool collateral_queued(const HubChannel& c) {
    for (const auto& q : c.queue)
      if (q.u.reason == UpdateReason::ProposePendingDeposit || q.u.reason == UpdateReason::ConfirmPending) return true;
    return channel_blocks_updates(c.latest.state);
  }
  void request_collateral(const Address& user, uint64_t wei, uint64_t now, std::vector<Msg>& out) {
    HubChannel& c = chan(user);
    if (collateral_queued(c)) return;
    ChannelUpdate d = channel_update_make(UpdateReason::ProposePendingDeposit);
    d.deposit.depositWeiHub = u(wei);
    d.deposit.depositTokenHub = u(wei * 100);  // inventory for exchanges
    d.deposit.timeout = now + 3600;
    enqueue(user, d, out);
  }

  void on_sync(const Address& user, std::vector<Msg>& out) {
    Reply r = reply_make(ReplyKind::Sync);
    r.state = chan(user).latest;
    r.txCountGlobal = r.state.state.txCountGlobal;
    out.push_back(Msg{Msg::Reply, user, reply(r)});
    HubChannel& c = chan(user);
    if (!c.queue.empty()) out.push_back(Msg{Msg::Request, user, head_bytes(user)});
  }

  void on_user_reply(const Address& user, const Bytes& b) {
    Reply r;
    if (decode_reply(b.data(), b.size(), r) != Status::Ok || r.kind != ReplyKind::RequestNack) return;
    HubChannel& c = chan(user);
    if (!c.queue.empty() && c.queue.front().id == r.txCountGlobal) {
      ++requestNacks;
      lastNack = std::string(update_reason_name(c.queue.front().u.reason)) + ": " + status_name(r.status);
      std::vector<Msg> ignored;
      pop_head(user, ignored);
    }
  }

  // The hub refuses the user's proposal at latest + 1 for good: it asks the user to
  // invalidate that half-signed state (it never countersigns it), ahead of requests not
  // sent yet; a displaced head gets a new id when it is sent again.
  void request_skip(const Address& user, std::vector<Msg>& out) {
    HubChannel& c = chan(user);
    const uint64_t at = c.latest.state.txCountGlobal;
    for (const auto& q : c.queue)
      if (q.u.reason == UpdateReason::Invalidation && q.u.invalidation.lastInvalidTxCount == at + 1) return;
    ChannelUpdate inv = channel_update_make(UpdateReason::Invalidation);
    inv.invalidation.previousValidTxCount = at;
    inv.invalidation.lastInvalidTxCount = at + 1;
    if (!c.queue.empty()) c.queue.front().id = 0;
    c.queue.push_front(HubChannel::Req{0, inv});
    ++skips;
    out.push_back(Msg{Msg::Request, user, head_bytes(user)});
  }
  void nack(const Address& user, uint64_t tx, Status why, std::vector<Msg>& out) {
    ++refusalsOfUsers;
    Reply r = reply_make(ReplyKind::Nack);
    r.txCountGlobal = tx;
    r.status = why;
    r.state = chan(user).latest;
    out.push_back(Msg{Msg::Reply, user, reply(r)});
  }

  void on_update(const Address& user, const Bytes& b, uint64_t now, std::vector<Msg>& out) {
    HubChannel& c = chan(user);
    ChannelUpdate up;
    if (decode_channel_update(b.data(), b.size(), up) != Status::Ok) return;
    const ChannelUpdate& u = up;
    const uint64_t at = c.latest.state.txCountGlobal;
    if (u.txCountGlobal <= at) {
      if (c.hasLast && u.txCountGlobal == at && b == c.lastUpdate) {
        Reply r = reply_make(ReplyKind::Ack);
        r.txCountGlobal = at;
        r.sig = c.latest.sigHub;
        out.push_back(Msg{Msg::Reply, user, reply(r)});
      } else {
        nack(user, u.txCountGlobal, Status::BadTxCount, out);
      }
      return;
    }
    if (u.txCountGlobal != at + (channel_is_skip(c.latest.state, u) ? 2 : 1))
      return nack(user, u.txCountGlobal, Status::BadTxCount, out);
    std::vector<ThreadState> items = c.threads;
    items.resize(c.threads.size() + 1);
    std::vector<Hash32> scratch(items.size() + 2);
    ThreadSet ts{items.data(), c.threads.size(), items.size(), scratch.data()};
    ChannelContext ctx{addr};
    ChannelState next;
    Hash32 h;
    Status st = channel_accept(ctx, signer(), Party::Hub, c.latest.state, ts, u, next, h);
    if (st != Status::Ok) {
      if (st != Status::WrongSigner) request_skip(user, out);
      return nack(user, u.txCountGlobal, st, out);
    }
    const ChannelUpdate* head = c.queue.empty() ? nullptr : &c.queue.front().u;
    HubPolicyInput in{head, head ? 1u : 0u, HubRate{true, U256::from_u64(100), now}, now, U256::from_u64(1000000),
                      U256::from_u64(1000000), true,
                      ChainFacts{true, at, c.chainTxCountChain, ChainChannelStatus::Open, false, now},
                      policy_limits_default()};
    st = policy_hub_countersigns(in, c.latest.state, u);
    if (st != Status::Ok) {
      request_skip(user, out);
      return nack(user, u.txCountGlobal, st, out);
    }
    // The hub's own decision: a thread it can mirror in the payee's channel.
    const ThreadState& t = u.thread.thread.state;
    if (u.reason == UpdateReason::OpenThread && t.sender == user) {
      HubChannel& payee = chan(t.receiver);
      U256 free_ = payee.latest.state.balanceWeiHub, need = mirrors_queued(payee);
      (void)u256_add(need, t.balanceWeiSender, need);
      if (free_ < need || channel_blocks_updates(payee.latest.state)) {
        request_collateral(t.receiver, 100, now, out);
        return nack(user, u.txCountGlobal, Status::Underflow, out);
      }
    }
    Signature sig;
    if (signer().sign_eth(key, h, sig) != Status::Ok) std::abort();
    auto prevSigned = c.countersigned.find(next.txCountGlobal);
    EXPECT_TRUE(prevSigned == c.countersigned.end() || prevSigned->second == h) << "hub signed twice";
    c.countersigned[next.txCountGlobal] = h;
    c.latest.state = next;
    c.latest.sigUser = u.sig;
    c.latest.sigHub = sig;
    c.latest.hasSigUser = c.latest.hasSigHub = true;
    c.hasLast = true;
    c.lastUpdate = b;
    if (u.reason == UpdateReason::OpenThread) c.threads.push_back(t);
    if (u.reason == UpdateReason::CloseThread) {
      for (size_t i = 0; i < c.threads.size(); ++i)
        if (c.threads[i].sender == t.sender && c.threads[i].receiver == t.receiver &&
            c.threads[i].threadId == t.threadId) {
          c.threads.erase(c.threads.begin() + static_cast<long>(i));
          break;
        }
    }
    Reply r = reply_make(ReplyKind::Ack);
    r.txCountGlobal = next.txCountGlobal;
    r.sig = sig;
    out.push_back(Msg{Msg::Reply, user, reply(r)});
    bool newHead = false;
    if (head != nullptr && policy_update_matches(*head, u)) {
      c.queue.pop_front();
      newHead = true;
    }
    // Follow-ups.
    if (u.reason == UpdateReason::OpenThread && t.sender == user) {
      ChannelUpdate m = channel_update_make(UpdateReason::OpenThread);
      m.thread = u.thread;
      enqueue(t.receiver, m, out);
    } else if (u.reason == UpdateReason::CloseThread && t.receiver == user) {
      ChannelUpdate m = channel_update_make(UpdateReason::CloseThread);
      m.thread = u.thread;
      enqueue(t.sender, m, out);
    } else if (u.reason == UpdateReason::ProposePendingDeposit && !u.deposit.depositWeiHub.is_zero()) {
      c.chainTxCountChain = next.txCountChain;  // hubAuthorizedUpdate mined
      ChannelUpdate m = channel_update_make(UpdateReason::ConfirmPending);
      std::memset(m.chainTx.transactionHash.bytes, 0xAB, 32);
      // Nothing else applies on pending ops: the ConfirmPending goes first (ahead of
      // requests not sent yet; a sent request is never overtaken).
      c.queue.push_front(HubChannel::Req{0, m});
      newHead = true;
    }
    if (newHead && !c.queue.empty()) out.push_back(Msg{Msg::Request, user, head_bytes(user)});
  }
};

// ---------------------------------------------------------------- the network

struct Net {
  TestHub hub;
  std::vector<std::unique_ptr<Device>> devices;
  std::vector<Msg> inflight;
  uint64_t now = kT0;
  int signedTwice = 0;

  Device& add(uint8_t keyByte) {
    devices.push_back(std::make_unique<Device>(keyByte, hub.addr));
    return *devices.back();
  }
  Device* find(const Address& a) {
    for (auto& d : devices)
      if (d->addr == a) return d.get();
    return nullptr;
  }
  // Carries out a session's effects: persist first, then send.
  void effects(Device& d, const Effects& fx) {
    if (fx.persist) d.persist();
    for (size_t i = 0; i < fx.count; ++i) {
      const OutMessage& m = fx.out[i];
      Bytes b(m.bytes, m.bytes + m.len);
      switch (m.route) {
        case Route::ToHubUpdate: {
          auto it = d.signedUpdates.find(m.correlation);
          if (it != d.signedUpdates.end() && it->second != b) ++signedTwice;
          d.signedUpdates[m.correlation] = b;
          inflight.push_back(Msg{Msg::Update, d.addr, b});
          break;
        }
        case Route::ToHubReply:
          inflight.push_back(Msg{Msg::UserReply, d.addr, b});
          break;
        case Route::ToHubSync:
          inflight.push_back(Msg{Msg::Sync, d.addr, b});
          break;
        case Route::ToThreadReceiver:
          inflight.push_back(Msg{Msg::Thread, m.to, b});
          break;
        default:
          ADD_FAILURE() << "route None";
      }
    }
  }
  void deliver(const Msg& m) {
    std::vector<Msg> out;
    Effects fx;
    effects_clear(fx);
    switch (m.kind) {
      case Msg::Update:
        hub.on_update(m.user, m.bytes, now, out);
        break;
      case Msg::UserReply:
        hub.on_user_reply(m.user, m.bytes);
        break;
      case Msg::Sync:
        hub.on_sync(m.user, out);
        break;
      case Msg::Reply:
        if (Device* d = find(m.user)) {
          (void)d->s->on_reply(m.bytes.data(), m.bytes.size(), now, fx);
          effects(*d, fx);
        }
        break;
      case Msg::Request:
        if (Device* d = find(m.user)) {
          (void)d->s->on_hub_request(m.bytes.data(), m.bytes.size(), now, fx);
          effects(*d, fx);
        }
        break;
      case Msg::Thread:
        if (Device* d = find(m.user)) {
          (void)d->s->on_thread_message(m.bytes.data(), m.bytes.size(), now, fx);
          effects(*d, fx);
        }
        break;
    }
    for (auto& o : out) inflight.push_back(o);
  }
  void deliver_all_fifo() {
    while (!inflight.empty()) {
      Msg m = inflight.front();
      inflight.erase(inflight.begin());
      deliver(m);
    }
  }
  void connect(Device& d) {
    Effects fx;
    (void)d.s->on_connect(now, fx);
    effects(d, fx);
  }
  void tick(Device& d) {
    Effects fx;
    (void)d.s->tick(now, fx);
    effects(d, fx);
  }
  void facts(Device& d) {
    HubChannel& c = hub.chan(d.addr);
    ChainFacts f{true, c.latest.state.txCountGlobal, c.chainTxCountChain, ChainChannelStatus::Open, false, now};
    Effects fx;
    (void)d.s->on_chain_fact(f, now, fx);
    effects(d, fx);
  }
  bool idle() {
    if (!inflight.empty()) return false;
    for (auto& d : devices) {
      if (d->s->has_pending() || d->s->has_hub_request() || !d->s->synced()) return false;
      for (size_t i = 0; i < d->s->thread_capacity(); ++i) {
        const SessionThread& t = d->s->thread_slot(i);
        if (t.used && t.closing) return false;
      }
    }
    for (auto& kv : hub.ch)
      if (!kv.second.queue.empty()) return false;
    return true;
  }
  // Delivers, ticks and feeds chain facts until nothing is left to do.
  bool quiesce() {
    for (int i = 0; i < 400; ++i) {
      deliver_all_fifo();
      now += 11;  // past every re-send and back-off
      for (auto& d : devices) {
        facts(*d);
        tick(*d);
      }
      std::vector<Msg> out;
      hub.resend(out);
      for (auto& o : out) inflight.push_back(o);
      deliver_all_fifo();
      if (idle()) return true;
    }
    return false;
  }
  std::string dump() {
    std::string o;
    char line[512];
    for (auto& d : devices) {
      const Session& x = *d->s;
      std::snprintf(line, sizeof line,
                    "device %s: tx %llu synced %d halted %d pending %s@%llu hubRequest %s last %s | hub: tx %llu "
                    "queue %zu head %s id %llu\n",
                    to_hex(d->addr.bytes, 2).c_str(), (unsigned long long)x.channel().state.txCountGlobal, x.synced(),
                    x.halted(), x.has_pending() ? update_reason_name(x.pending().reason) : "-",
                    (unsigned long long)x.pending().txCountGlobal,
                    x.has_hub_request() ? update_reason_name(x.hub_request().update.reason) : "-",
                    status_name(x.last_status()), (unsigned long long)hub.chan(d->addr).latest.state.txCountGlobal,
                    hub.chan(d->addr).queue.size(),
                    hub.chan(d->addr).queue.empty() ? "-" : update_reason_name(hub.chan(d->addr).queue.front().u.reason),
                    hub.chan(d->addr).queue.empty() ? 0ULL : (unsigned long long)hub.chan(d->addr).queue.front().id);
      o += line;
    }
    return o;
  }
  void expect_ledgers_equal() {
    for (auto& d : devices) {
      const SignedChannelState& mine = d->s->channel();
      const SignedChannelState& hubs = hub.chan(d->addr).latest;
      EXPECT_EQ(mine.state, hubs.state);
      EXPECT_EQ(mine.hasSigHub, hubs.hasSigHub);
      if (mine.hasSigHub) {
        EXPECT_EQ(mine.sigHub, hubs.sigHub);
        EXPECT_EQ(mine.sigUser, hubs.sigUser);
      }
    }
  }
};

// A payer with 1000 wei deposited (its own request, its own on-chain deposit).
void fund_payer(Net& n, Device& p, uint64_t wei) {
  Effects fx;
  ASSERT_EQ(p.s->request_deposit(u(wei), U256::zero(), n.now + 3600, n.now, fx), Status::Ok);
  n.effects(p, fx);
  n.deliver_all_fifo();
  ASSERT_FALSE(p.s->has_pending());
  n.hub.chan(p.addr).chainTxCountChain = p.s->channel().state.txCountChain;  // userAuthorizedUpdate mined
  n.facts(p);
  ASSERT_EQ(p.s->propose_confirm_pending(Hash32{}, n.now, fx), Status::Ok);
  n.effects(p, fx);
  n.deliver_all_fifo();
  ASSERT_EQ(p.s->channel().state.balanceWeiUser, u(wei));
}

struct Pair {
  Net n;
  Device* p;
  Device* r;
  Pair() {
    p = &n.add(0x22);
    r = &n.add(0x55);
    p->cfg.hasChainAccess = true;
    r->cfg.hasChainAccess = true;
    r->cfg.acceptIncomingThreads = true;
    p->boot(false);
    r->boot(false);
    n.connect(*p);
    n.connect(*r);
    n.deliver_all_fifo();
  }
};

// ================================================================== flows

TEST(Session, SyncsThenPaysAndStoresDoubleSignedState) {
  Pair x;
  ASSERT_TRUE(x.p->s->synced());
  fund_payer(x.n, *x.p, 1000);
  Effects fx;
  ASSERT_EQ(x.p->s->propose_payment(u(7), U256::zero(), x.n.now, fx), Status::Ok);
  ASSERT_TRUE(fx.persist);  // the record holds the proposal before it leaves
  ASSERT_EQ(fx.count, 1u);
  EXPECT_EQ(fx.out[0].route, Route::ToHubUpdate);
  // One proposal in flight: a second waits.
  Effects fx2;
  EXPECT_EQ(x.p->s->propose_payment(u(1), U256::zero(), x.n.now, fx2), Status::Busy);
  EXPECT_EQ(fx2.count, 0u);
  x.n.effects(*x.p, fx);
  ASSERT_EQ(x.n.inflight.size(), 1u);
  x.n.deliver(x.n.inflight[0]);  // the hub countersigns
  x.n.inflight.erase(x.n.inflight.begin());
  ASSERT_EQ(x.n.inflight.size(), 1u);  // its Ack
  const Msg ackMsg = x.n.inflight[0];
  x.n.inflight.clear();
  Effects done;
  ASSERT_EQ(x.p->s->on_reply(ackMsg.bytes.data(), ackMsg.bytes.size(), x.n.now, done), Status::Ok);
  EXPECT_EQ(done.event, SessionEvent::UpdateCompleted);
  EXPECT_EQ(done.reason, UpdateReason::Payment);
  EXPECT_EQ(done.amountWei, u(7));
  EXPECT_TRUE(done.persist);
  x.n.effects(*x.p, done);
  // The same Ack again (a duplicate delivery) changes nothing.
  Effects again;
  EXPECT_EQ(x.p->s->on_reply(ackMsg.bytes.data(), ackMsg.bytes.size(), x.n.now, again), Status::Duplicate);
  EXPECT_FALSE(again.persist);
  EXPECT_FALSE(x.p->s->has_pending());
  EXPECT_EQ(x.p->s->channel().state.balanceWeiUser, u(993));
  x.n.expect_ledgers_equal();
  // The record restores to the same session.
  Device& p = *x.p;
  Bytes before = p.stored;
  p.boot(true);
  p.persist();
  EXPECT_EQ(to_hex(p.stored), to_hex(before));
  EXPECT_EQ(p.s->channel().state.balanceWeiUser, u(993));
  EXPECT_FALSE(p.s->synced());  // signs nothing until the hub's state is seen again
  EXPECT_EQ(p.s->propose_payment(u(1), U256::zero(), x.n.now, fx), Status::OutOfSync);
}

TEST(Session, ThreadOpenMirrorPayCloseBothChannels) {
  Pair x;
  fund_payer(x.n, *x.p, 1000);
  // Hub collateral in the payee's channel, on the hub's request, then ConfirmPending.
  std::vector<Msg> out;
  x.n.hub.request_collateral(x.r->addr, 100, x.n.now, out);
  for (auto& m : out) x.n.inflight.push_back(m);
  ASSERT_TRUE(x.n.quiesce());
  ASSERT_EQ(x.r->s->channel().state.balanceWeiHub, u(100));
  Effects fx;
  uint64_t id = 0;
  ASSERT_EQ(x.p->s->propose_thread_open(x.r->addr, u(30), U256::zero(), x.n.now, fx, &id), Status::Ok);
  x.n.effects(*x.p, fx);
  ASSERT_TRUE(x.n.quiesce());
  ASSERT_EQ(x.r->s->channel().state.threadCount, 1u);  // the payee proposed the mirror
  ASSERT_EQ(x.p->s->channel().state.threadCount, 1u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(x.p->s->thread_pay(x.r->addr, id, u(5), U256::zero(), fx), Status::Ok);
    x.n.effects(*x.p, fx);
    x.n.deliver_all_fifo();
  }
  ASSERT_EQ(x.p->s->thread_close_request(x.r->addr, id, x.n.now, fx), Status::Ok);
  x.n.effects(*x.p, fx);
  ASSERT_TRUE(x.n.quiesce());
  x.n.expect_ledgers_equal();
  EXPECT_EQ(x.p->s->channel().state.threadCount, 0u);
  EXPECT_EQ(x.r->s->channel().state.threadCount, 0u);
  EXPECT_EQ(x.p->s->channel().state.balanceWeiUser, u(1000 - 15));
  EXPECT_EQ(x.r->s->channel().state.balanceWeiUser, u(15));
  EXPECT_EQ(x.n.hub.refusalsOfUsers, 0);
  EXPECT_EQ(x.n.hub.requestNacks, 0);
}

TEST(Session, PaymentOnPendingWithdrawalRefused) {
  Pair x;
  fund_payer(x.n, *x.p, 1000);
  Effects fx;
  ASSERT_EQ(x.p->s->request_withdrawal(x.p->addr, u(100), U256::zero(), x.n.now + 3600, x.n.now, fx), Status::Ok);
  x.n.effects(*x.p, fx);
  x.n.deliver_all_fifo();
  ASSERT_TRUE(channel_blocks_updates(x.p->s->channel().state));
  EXPECT_EQ(x.p->s->propose_payment(u(1), U256::zero(), x.n.now, fx), Status::PendingOperation);
  EXPECT_EQ(fx.count, 0u);
  EXPECT_FALSE(fx.persist);
}

// ================================================================== a malicious hub

struct Evil : Pair {
  Evil() { fund_payer(n, *p, 1000); }
  Bytes request(Device& d, const ChannelUpdate& up, uint64_t rid, const PrivateKey* k = nullptr) {
    HubRequest q;
    std::memset(&q, 0, sizeof q);
    q.contractAddress = kContract;
    q.user = d.addr;
    q.requestId = rid;
    q.update = up;
    EXPECT_EQ(hub_request_sign(signer(), k ? *k : n.hub.key, q), Status::Ok);
    Bytes b(kMaxHubRequestWire);
    size_t len = 0;
    EXPECT_EQ(encode_hub_request(q, b.data(), b.size(), &len), Status::Ok);
    b.resize(len);
    return b;
  }
  // Sends a request; expects `want`, a RequestNack carrying it (or nothing if `silent`),
  // and nothing signed or stored changed.
  void expect_refused(Device& d, const Bytes& req, Status want, bool silent = false) {
    const Bytes stored = d.stored;
    const SignedChannelState before = d.s->channel();
    Effects fx;
    EXPECT_EQ(d.s->on_hub_request(req.data(), req.size(), n.now, fx), want);
    EXPECT_FALSE(d.s->has_pending()) << "signed a proposal";
    for (size_t i = 0; i < fx.count; ++i) EXPECT_NE(fx.out[i].route, Route::ToHubUpdate);
    if (silent) {
      EXPECT_EQ(fx.count, 0u);
    } else {
      ASSERT_EQ(fx.count, 1u);
      EXPECT_EQ(fx.out[0].route, Route::ToHubReply);
      Reply rep;
      ASSERT_EQ(decode_reply(fx.out[0].bytes, fx.out[0].len, rep), Status::Ok);
      EXPECT_EQ(rep.kind, ReplyKind::RequestNack);
      EXPECT_EQ(rep.status, want);
    }
    EXPECT_EQ(d.s->channel().state, before.state);
    if (fx.persist) d.persist();
    // Only the handled request id may have changed in the record, never the channel.
    Session probe;
    SessionThread th[Device::kCap];
    ThreadState it[Device::kCap];
    Hash32 sc[Device::kCap + 2];
    ASSERT_EQ(probe.init(d.cfg, signer(), d.key, SessionStorage{th, Device::kCap, it, sc}), Status::Ok);
    ASSERT_EQ(probe.restore(d.stored.data(), d.stored.size()), Status::Ok);
    EXPECT_EQ(probe.channel().state, before.state);
    EXPECT_FALSE(probe.has_pending());
    (void)stored;
  }
  uint64_t id = 100;
};

TEST(SessionEvilHub, HubSignedFirstUpdateIsNotAnAcceptedMessage) {
  Evil x;
  // Today's attack: a ProposePendingWithdrawal signed first by the hub's key, moving the
  // whole balance to a third address, published on the request topic.
  ChannelUpdate w = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  w.txCountGlobal = x.p->s->channel().state.txCountGlobal + 1;
  w.withdrawal.recipient = addr_of(key_fill(0x44));
  w.withdrawal.withdrawalWeiUser = u(1000);
  w.withdrawal.timeout = x.n.now + 3600;
  ChannelState next;
  Device::kCap == 8 ? void() : void();
  ThreadState items[1];
  Hash32 scratch[3];
  ThreadSet ts{items, 0, 1, scratch};
  ASSERT_EQ(channel_propose(ChannelContext{x.n.hub.addr}, signer(), x.n.hub.key, Party::Hub,
                            x.p->s->channel().state, ts, w, next),
            Status::Ok);
  Bytes b(kMaxChannelUpdateWire);
  size_t len = 0;
  ASSERT_EQ(encode_channel_update(w, b.data(), b.size(), &len), Status::Ok);
  b.resize(len);
  x.expect_refused(*x.p, b, Status::BadKind, true);
}

TEST(SessionEvilHub, UnrequestedWithdrawalToThirdAddress) {
  Evil x;
  ChannelUpdate w = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  w.withdrawal.recipient = addr_of(key_fill(0x44));
  w.withdrawal.withdrawalWeiUser = u(1000);
  w.withdrawal.timeout = x.n.now + 3600;
  x.expect_refused(*x.p, x.request(*x.p, w, ++x.id), Status::NotRequested);
}

TEST(SessionEvilHub, ExchangeNotRequestedOrAtABadRate) {
  Evil x;
  ChannelUpdate e = channel_update_make(UpdateReason::Exchange);
  e.exchange.seller = Party::User;
  e.exchange.weiToSell = u(100);
  e.exchange.exchangeRate = u(1);
  x.expect_refused(*x.p, x.request(*x.p, e, ++x.id), Status::NotRequested);
}

TEST(SessionEvilHub, ExchangeOutsideTheUsersToleranceOrAmount) {
  Evil x;
  // The user sells 10 wei at 95..105 tokens per wei: a rate outside its own tolerance is
  // never proposed; once the request is closed (the hub refused it and asked for the
  // skip), an exchange the hub asks for is refused.
  std::vector<Msg> out;
  x.n.hub.request_collateral(x.p->addr, 100, x.n.now, out);  // hub tokens to buy with
  for (auto& m : out) x.n.inflight.push_back(m);
  ASSERT_TRUE(x.n.quiesce());
  Effects fx;
  EXPECT_EQ(x.p->s->request_exchange(true, u(10), u(110), u(95), u(105), x.n.now, fx), Status::RateOutOfBounds);
  EXPECT_EQ(fx.count, 0u);
  ASSERT_EQ(x.p->s->request_exchange(true, u(10), u(100), u(95), u(105), x.n.now, fx), Status::Ok);
  x.n.effects(*x.p, fx);
  x.n.inflight.clear();  // the hub drops it (it will ask for a skip)
  ASSERT_TRUE(x.p->s->requests().exchange.active);
  out.clear();
  x.n.hub.request_skip(x.p->addr, out);
  Effects f2;
  ASSERT_EQ(x.p->s->on_hub_request(out[0].bytes.data(), out[0].bytes.size(), x.n.now, f2), Status::Ok);
  x.n.effects(*x.p, f2);
  x.n.deliver_all_fifo();
  EXPECT_FALSE(x.p->s->requests().exchange.active);  // closed with the abandoned proposal
  EXPECT_FALSE(x.p->s->has_pending());
  // No open request: an exchange the hub asks for is refused.
  ChannelUpdate e = channel_update_make(UpdateReason::Exchange);
  e.exchange.seller = Party::User;
  e.exchange.weiToSell = u(10);
  e.exchange.exchangeRate = u(100);
  x.expect_refused(*x.p, x.request(*x.p, e, ++x.id), Status::NotRequested);
}

TEST(SessionEvilHub, DepositOfUserFundsNotRequested) {
  Evil x;
  ChannelUpdate d = channel_update_make(UpdateReason::ProposePendingDeposit);
  d.deposit.depositWeiUser = u(5);
  d.deposit.timeout = x.n.now + 3600;
  x.expect_refused(*x.p, x.request(*x.p, d, ++x.id), Status::NotRequested);
  d.deposit.depositWeiUser = U256::zero();
  d.deposit.depositWeiHub = u(5);
  d.deposit.timeout = x.n.now + 86400 * 365;  // blocks the channel for a year
  x.expect_refused(*x.p, x.request(*x.p, d, ++x.id), Status::TimeoutOutOfBounds);
}

TEST(SessionEvilHub, ChainFactsRequiredForConfirmEmptyInvalidation) {
  Evil x;
  // A device without chain access refuses, and says why.
  x.r->cfg.hasChainAccess = false;
  x.r->boot(false);
  x.n.connect(*x.r);
  x.n.deliver_all_fifo();
  ChannelUpdate e = channel_update_make(UpdateReason::EmptyChannel);
  x.expect_refused(*x.r, x.request(*x.r, e, ++x.id), Status::NeedsChain);
  EXPECT_EQ(x.r->s->last_status(), Status::NeedsChain);
  // With chain access: a ConfirmPending the chain does not show.
  ChannelUpdate d = channel_update_make(UpdateReason::ProposePendingDeposit);
  d.deposit.depositWeiHub = u(50);
  d.deposit.timeout = x.n.now + 3600;
  Effects fx;
  const Bytes dreq = x.request(*x.p, d, ++x.id);
  ASSERT_EQ(x.p->s->on_hub_request(dreq.data(), dreq.size(), x.n.now, fx), Status::Ok);  // collateral: fine
  x.n.effects(*x.p, fx);
  // (the test hub would execute it; here the evil hub does not and claims it did)
  x.n.inflight.clear();
  x.n.hub.chan(x.p->addr);
  Effects fx2;
  ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
  // Deliver the countersignature for the deposit so the channel has pending ops.
  {
    HubChannel& hc = x.n.hub.chan(x.p->addr);
    hc.queue.push_back(HubChannel::Req{999, d});  // as if the hub had asked
    std::vector<Msg> out;
    x.n.hub.on_update(x.p->addr, x.p->signedUpdates[x.p->s->pending().txCountGlobal], x.n.now, out);
    hc.chainTxCountChain = hc.latest.state.txCountChain - 1;  // the evil hub never deposits
    hc.queue.clear();
    for (auto& m : out)
      if (m.kind == Msg::Reply) x.n.deliver(m);
  }
  ASSERT_TRUE(channel_blocks_updates(x.p->s->channel().state));
  const Bytes creq = x.request(*x.p, c, ++x.id);
  // The facts the payer holds (read at its own deposit) do not show this deposit: nothing
  // is signed; the request is kept and the caller is told to read the chain again.
  EXPECT_EQ(x.p->s->on_hub_request(creq.data(), creq.size(), x.n.now, fx2), Status::NotOnChain);
  EXPECT_TRUE(fx2.needsChain);
  EXPECT_EQ(fx2.count, 0u);
  EXPECT_FALSE(x.p->s->has_pending());
  EXPECT_TRUE(x.p->s->has_hub_request());
  // Fresh facts still show the deposit never happened: still nothing signed.
  ChainFacts f{true, 0, x.n.hub.chan(x.p->addr).chainTxCountChain, ChainChannelStatus::Open, false, x.n.now};
  Effects fx3;
  EXPECT_EQ(x.p->s->on_chain_fact(f, x.n.now, fx3), Status::NotOnChain);
  EXPECT_TRUE(fx3.needsChain);
  EXPECT_EQ(fx3.count, 0u);
  EXPECT_FALSE(x.p->s->has_pending());
  // A device with chain access never proposes a ConfirmPending of its own either.
  EXPECT_EQ(x.p->s->propose_confirm_pending(Hash32{}, x.n.now, fx3), Status::NotOnChain);
  EXPECT_FALSE(x.p->s->has_pending());
  // Invalidation while the deposit could still be executed: refused (kept for later facts).
  ChannelUpdate inv = channel_update_make(UpdateReason::Invalidation);
  inv.invalidation.previousValidTxCount = x.p->s->channel().state.txCountGlobal - 1;
  inv.invalidation.lastInvalidTxCount = x.p->s->channel().state.txCountGlobal;
  x.expect_refused(*x.p, x.request(*x.p, inv, ++x.id), Status::NotOnChain, true);
  // After the timeout (block time), it is fine.
  ChainFacts late = f;
  late.blockTime = x.p->s->channel().state.timeout;
  Effects fx4;
  EXPECT_EQ(x.p->s->on_chain_fact(late, x.n.now, fx4), Status::Ok);  // the kept request, now provable
  ASSERT_TRUE(x.p->s->has_pending());
  EXPECT_EQ(x.p->s->pending().reason, UpdateReason::Invalidation);
  EXPECT_TRUE(fx4.persist);
  ASSERT_EQ(fx4.count, 1u);
  EXPECT_EQ(fx4.out[0].route, Route::ToHubUpdate);
}

// The hub asks for EmptyChannel on a channel the chain does not show emptied (or shows
// emptied at counts the new state would not supersede): nothing is signed and nothing
// stored changes; with the chain's true facts the device proposes it.
TEST(SessionEvilHub, EmptyChannelOnlyWhenTheChainShowsItEmpty) {
  Evil x;
  Device& d = *x.p;
  ASSERT_TRUE(d.cfg.hasChainAccess);
  const ChannelState before = d.s->channel().state;
  ASSERT_FALSE(before.balanceWeiUser.is_zero());
  ChannelUpdate e = channel_update_make(UpdateReason::EmptyChannel);
  // The chain shows the channel open with its funds: kept, unsigned, nothing sent.
  ChainFacts open{true, before.txCountGlobal, before.txCountChain, ChainChannelStatus::Open, false, x.n.now};
  Effects fx;
  EXPECT_EQ(d.s->on_chain_fact(open, x.n.now, fx), Status::Ok);
  x.expect_refused(d, x.request(d, e, ++x.id), Status::NotOnChain, true);
  EXPECT_TRUE(d.s->has_hub_request());
  // Emptied, but at a state newer than ours, or after an authorized update ours lacks.
  ChainFacts bad = open;
  bad.emptied = true;
  bad.txCountGlobal = before.txCountGlobal + 1;
  const Bytes stored = d.stored;
  Effects fx2;
  EXPECT_EQ(d.s->on_chain_fact(bad, x.n.now, fx2), Status::NotOnChain);
  EXPECT_EQ(fx2.count, 0u);
  bad.txCountGlobal = before.txCountGlobal;
  bad.txCountChain = before.txCountChain + 1;
  EXPECT_EQ(d.s->on_chain_fact(bad, x.n.now, fx2), Status::NotOnChain);
  EXPECT_EQ(fx2.count, 0u);
  EXPECT_FALSE(d.s->has_pending());
  EXPECT_EQ(d.s->channel().state, before);
  EXPECT_EQ(d.stored, stored);
  // In dispute: refused for what it is.
  bad = open;
  bad.status = ChainChannelStatus::InDispute;
  Effects fxd;
  EXPECT_EQ(d.s->on_chain_fact(bad, x.n.now, fxd), Status::ChannelInDispute);
  if (fxd.persist) d.persist();
  EXPECT_FALSE(d.s->has_pending());
  EXPECT_EQ(d.s->channel().state, before);
  // Truly emptied at our counts: proposed, an empty state at txCountGlobal + 1.
  ChainFacts good = open;
  good.emptied = true;
  Effects fx3;
  EXPECT_EQ(d.s->on_chain_fact(open, x.n.now, fx3), Status::Ok);
  x.expect_refused(d, x.request(d, e, ++x.id), Status::NotOnChain, true);
  EXPECT_EQ(d.s->on_chain_fact(good, x.n.now, fx3), Status::Ok);
  ASSERT_TRUE(d.s->has_pending());
  EXPECT_EQ(d.s->pending().reason, UpdateReason::EmptyChannel);
  EXPECT_EQ(d.s->pending().txCountGlobal, before.txCountGlobal + 1);
  ASSERT_EQ(fx3.count, 1u);
  EXPECT_EQ(fx3.out[0].route, Route::ToHubUpdate);
}

TEST(SessionEvilHub, ForgedRequestSignatureDroppedSilently) {
  Evil x;
  ChannelUpdate d = channel_update_make(UpdateReason::ProposePendingDeposit);
  d.deposit.depositWeiHub = u(5);
  d.deposit.timeout = x.n.now + 3600;
  const PrivateKey other = key_fill(0x44);
  x.expect_refused(*x.p, x.request(*x.p, d, ++x.id, &other), Status::WrongSigner, true);
  // A request for another user, replayed to this one.
  Bytes forR = x.request(*x.r, d, ++x.id);
  Effects fx;
  EXPECT_EQ(x.p->s->on_hub_request(forR.data(), forR.size(), x.n.now, fx), Status::WrongParty);
  EXPECT_EQ(fx.count, 0u);
}

TEST(SessionEvilHub, MirrorOpenThreadNotRequestedOrNotPayee) {
  Evil x;
  SignedThreadState t;
  std::memset(&t, 0, sizeof t);
  t.state = thread_state_zero();
  t.state.contractAddress = kContract;
  t.state.sender = addr_of(key_fill(0x44));
  t.state.receiver = x.p->addr;
  t.state.threadId = 1;
  t.state.balanceWeiSender = u(10);
  ASSERT_EQ(signer().sign_eth(key_fill(0x44), thread_hash(t.state), t.sigA), Status::Ok);
  t.hasSigA = true;
  ChannelUpdate o = channel_update_make(UpdateReason::OpenThread);
  o.thread.thread = t;
  // The payer is not a payee: no incoming threads.
  x.expect_refused(*x.p, x.request(*x.p, o, ++x.id), Status::Unauthorized);
  // A thread locking the user's own funds.
  t.state.sender = x.p->addr;
  t.state.receiver = addr_of(key_fill(0x44));
  ASSERT_EQ(signer().sign_eth(x.p->key, thread_hash(t.state), t.sigA), Status::Ok);
  o.thread.thread = t;
  x.expect_refused(*x.p, x.request(*x.p, o, ++x.id), Status::NotRequested);
}

TEST(SessionEvilHub, CloseThreadWithStaleStateOrUnknownThread) {
  Pair x;
  fund_payer(x.n, *x.p, 1000);
  std::vector<Msg> out;
  x.n.hub.request_collateral(x.r->addr, 100, x.n.now, out);
  for (auto& m : out) x.n.inflight.push_back(m);
  ASSERT_TRUE(x.n.quiesce());
  Effects fx;
  uint64_t id = 0;
  ASSERT_EQ(x.p->s->propose_thread_open(x.r->addr, u(30), U256::zero(), x.n.now, fx, &id), Status::Ok);
  x.n.effects(*x.p, fx);
  ASSERT_TRUE(x.n.quiesce());
  const long slot = x.p->s->find_thread(x.p->addr, x.r->addr, id);
  ASSERT_GE(slot, 0);
  const SignedThreadState initial = x.p->s->thread_slot(static_cast<size_t>(slot)).initial;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(x.p->s->thread_pay(x.r->addr, id, u(5), U256::zero(), fx), Status::Ok);
    x.n.effects(*x.p, fx);
    x.n.deliver_all_fifo();
  }
  // The hub asks the payee to close with the initial (older) state: it would take back
  // the 10 wei the payee received.
  Evil e0;  // for its request builder only
  (void)e0;
  auto req = [&](Device& d, const ChannelUpdate& u, uint64_t rid) {
    HubRequest r;
    std::memset(&r, 0, sizeof r);
    r.contractAddress = kContract;
    r.user = d.addr;
    r.requestId = rid;
    r.update = u;
    EXPECT_EQ(hub_request_sign(signer(), x.n.hub.key, r), Status::Ok);
    Bytes b(kMaxHubRequestWire);
    size_t len = 0;
    EXPECT_EQ(encode_hub_request(r, b.data(), b.size(), &len), Status::Ok);
    b.resize(len);
    return b;
  };
  ChannelUpdate c = channel_update_make(UpdateReason::CloseThread);
  c.thread.thread = initial;
  Bytes b = req(*x.r, c, 1000);
  const SignedChannelState before = x.r->s->channel();
  EXPECT_EQ(x.r->s->on_hub_request(b.data(), b.size(), x.n.now, fx), Status::StaleState);
  EXPECT_FALSE(x.r->s->has_pending());
  EXPECT_EQ(x.r->s->channel().state, before.state);
  // The payer side: a close of a thread state the payer never signed (newer than its own).
  ChannelUpdate c2 = channel_update_make(UpdateReason::CloseThread);
  SignedThreadState forged = x.p->s->thread_slot(static_cast<size_t>(slot)).latest;
  forged.state.txCount += 1;
  forged.state.balanceWeiSender = u(0);
  forged.state.balanceWeiReceiver = u(30);
  c2.thread.thread = forged;
  Bytes b2 = req(*x.p, c2, 1001);
  EXPECT_NE(x.p->s->on_hub_request(b2.data(), b2.size(), x.n.now, fx), Status::Ok);
  EXPECT_FALSE(x.p->s->has_pending());
}

TEST(SessionEvilHub, ForgedAckAndReplayedStatesIgnored) {
  Pair x;
  fund_payer(x.n, *x.p, 1000);
  Effects fx;
  ASSERT_EQ(x.p->s->request_withdrawal(x.p->addr, u(10), U256::zero(), x.n.now + 3600, x.n.now, fx), Status::Ok);
  x.n.effects(*x.p, fx);
  x.n.inflight.clear();  // the hub never sees it
  // An Ack signed by another key.
  Reply ack = reply_make(ReplyKind::Ack);
  ack.txCountGlobal = x.p->s->pending().txCountGlobal;
  Hash32 h;
  std::memset(h.bytes, 1, 32);
  ASSERT_EQ(signer().sign_eth(key_fill(0x44), h, ack.sig), Status::Ok);
  Bytes b = x.n.hub.reply(ack);
  EXPECT_EQ(x.p->s->on_reply(b.data(), b.size(), x.n.now, fx), Status::WrongSigner);
  EXPECT_TRUE(x.p->s->has_pending());
  // A Nack carrying an older state (replay): ignored.
  Reply nack = reply_make(ReplyKind::Nack);
  nack.txCountGlobal = ack.txCountGlobal;
  nack.status = Status::BadTxCount;
  nack.state = genesis(x.p->addr);
  b = x.n.hub.reply(nack);
  EXPECT_EQ(x.p->s->on_reply(b.data(), b.size(), x.n.now, fx), Status::StaleState);
  // A Nack with a state of another channel.
  nack.state = genesis(x.r->addr);
  nack.state.state.txCountGlobal = 1000;
  b = x.n.hub.reply(nack);
  EXPECT_EQ(x.p->s->on_reply(b.data(), b.size(), x.n.now, fx), Status::WrongParty);
  // A newer state that is not double-signed.
  nack.state = x.p->s->channel();
  nack.state.state.txCountGlobal += 5;
  nack.state.hasSigUser = false;
  b = x.n.hub.reply(nack);
  EXPECT_EQ(x.p->s->on_reply(b.data(), b.size(), x.n.now, fx), Status::NotDoubleSigned);
  // Different contents at our txCountGlobal.
  nack.state = x.p->s->channel();
  nack.state.state.balanceWeiUser = u(1);
  b = x.n.hub.reply(nack);
  EXPECT_EQ(x.p->s->on_reply(b.data(), b.size(), x.n.now, fx), Status::StateConflict);
  EXPECT_TRUE(x.p->s->has_pending());
  EXPECT_FALSE(x.p->s->halted());
  // The real answer still completes it.
  x.p->s->tick(x.n.now + 100, fx) == Status::Ok ? void() : void();
  x.n.effects(*x.p, fx);
  x.n.deliver_all_fifo();
  EXPECT_FALSE(x.p->s->has_pending());
  x.n.expect_ledgers_equal();
}

TEST(SessionEvilHub, LazyCountersigVerifiedBeforeRelyingOnTheState) {
  Pair x;
  x.p->cfg.verifyCountersigOnPayment = false;
  x.p->boot(false);
  x.n.connect(*x.p);
  x.n.deliver_all_fifo();
  fund_payer(x.n, *x.p, 1000);
  Effects fx;
  ASSERT_EQ(x.p->s->propose_payment(u(3), U256::zero(), x.n.now, fx), Status::Ok);
  x.n.effects(*x.p, fx);
  x.n.inflight.clear();
  // A forged Ack of the payment: taken unchecked (it only lowers the user's balance)...
  Reply ack = reply_make(ReplyKind::Ack);
  ack.txCountGlobal = x.p->s->pending().txCountGlobal;
  ack.sig = x.p->s->channel().sigHub;  // some valid-looking signature, not over this state
  Bytes b = x.n.hub.reply(ack);
  EXPECT_EQ(x.p->s->on_reply(b.data(), b.size(), x.n.now, fx), Status::Ok);
  EXPECT_FALSE(x.p->s->has_pending());
  // ...but checked before anything that relies on it: the session halts.
  EXPECT_EQ(x.p->s->verify_evidence(), Status::WrongSigner);
  EXPECT_TRUE(x.p->s->halted());
  EXPECT_EQ(x.p->s->propose_payment(u(1), U256::zero(), x.n.now, fx), Status::Halted);
}

TEST(SessionEvilHub, LazyCountersigGenuineAckPassesLater) {
  Pair x;
  x.p->cfg.verifyCountersigOnPayment = false;
  x.p->boot(false);
  x.n.connect(*x.p);
  x.n.deliver_all_fifo();
  fund_payer(x.n, *x.p, 1000);
  Effects fx;
  ASSERT_EQ(x.p->s->propose_payment(u(3), U256::zero(), x.n.now, fx), Status::Ok);
  x.n.effects(*x.p, fx);
  x.n.deliver_all_fifo();
  EXPECT_EQ(x.p->s->verify_evidence(), Status::Ok);
  ASSERT_EQ(x.p->s->request_withdrawal(x.p->addr, u(10), U256::zero(), x.n.now + 3600, x.n.now, fx), Status::Ok);
}

TEST(SessionSkip, RefusedProposalInvalidatedOnTheHubsRequestOnly) {
  Pair x;
  fund_payer(x.n, *x.p, 1000);
  const SignedChannelState before = x.p->s->channel();
  Effects fx;
  // A proposal the hub refuses for good (here: it simply never answers it).
  ASSERT_EQ(x.p->s->propose_payment(u(3), U256::zero(), x.n.now, fx), Status::Ok);
  x.n.effects(*x.p, fx);
  const uint64_t halfSigned = x.p->s->pending().txCountGlobal;
  x.n.inflight.clear();  // the hub refuses it (as if): it asks for the skip
  // A skip of anything but our pending proposal is refused.
  std::vector<Msg> out;
  ChannelUpdate wrong = channel_update_make(UpdateReason::Invalidation);
  wrong.invalidation.previousValidTxCount = before.state.txCountGlobal - 1;
  wrong.invalidation.lastInvalidTxCount = before.state.txCountGlobal;
  x.n.hub.enqueue(x.p->addr, wrong, out);
  ASSERT_EQ(out.size(), 1u);
  Effects f1;
  EXPECT_EQ(x.p->s->on_hub_request(out[0].bytes.data(), out[0].bytes.size(), x.n.now, f1), Status::Busy);
  EXPECT_EQ(x.p->s->pending().txCountGlobal, halfSigned);  // untouched
  x.n.hub.chan(x.p->addr).queue.clear();
  out.clear();
  x.n.hub.request_skip(x.p->addr, out);
  ASSERT_EQ(out.size(), 1u);
  Effects f2;
  ASSERT_EQ(x.p->s->on_hub_request(out[0].bytes.data(), out[0].bytes.size(), x.n.now, f2), Status::Ok);
  ASSERT_TRUE(x.p->s->has_pending());
  EXPECT_EQ(x.p->s->pending().reason, UpdateReason::Invalidation);
  EXPECT_EQ(x.p->s->pending().txCountGlobal, halfSigned + 1);
  EXPECT_TRUE(f2.persist);
  x.n.effects(*x.p, f2);
  x.n.deliver_all_fifo();
  EXPECT_FALSE(x.p->s->has_pending());
  EXPECT_EQ(x.p->s->channel().state.txCountGlobal, halfSigned + 1);
  EXPECT_EQ(x.p->s->channel().state.balanceWeiUser, before.state.balanceWeiUser);  // the payment never happened
  x.n.expect_ledgers_equal();
  EXPECT_EQ(x.n.signedTwice, 0);
  // The channel goes on.
  ASSERT_EQ(x.p->s->propose_payment(u(3), U256::zero(), x.n.now, fx), Status::Ok);
  x.n.effects(*x.p, fx);
  x.n.deliver_all_fifo();
  EXPECT_EQ(x.p->s->channel().state.txCountGlobal, halfSigned + 2);
  x.n.expect_ledgers_equal();
}

TEST(SessionSkip, SkipWithoutOurPendingProposalRefused) {
  Evil x;
  ASSERT_FALSE(x.p->s->has_pending());
  ChannelUpdate skip = channel_update_make(UpdateReason::Invalidation);
  skip.invalidation.previousValidTxCount = x.p->s->channel().state.txCountGlobal;
  skip.invalidation.lastInvalidTxCount = x.p->s->channel().state.txCountGlobal + 1;
  x.expect_refused(*x.p, x.request(*x.p, skip, ++x.id), Status::NotRequested);
}

TEST(SessionRequests, HandledRequestIsNeverProposedTwice) {
  Pair x;
  std::vector<Msg> out;
  x.n.hub.request_collateral(x.r->addr, 100, x.n.now, out);
  ASSERT_EQ(out.size(), 1u);
  const Msg req = out[0];
  for (auto& m : out) x.n.inflight.push_back(m);
  ASSERT_TRUE(x.n.quiesce());
  const uint64_t tx = x.r->s->channel().state.txCountGlobal;
  // The same request again (a replay, or the hub re-sending late): nothing proposed.
  Effects fx;
  EXPECT_EQ(x.r->s->on_hub_request(req.bytes.data(), req.bytes.size(), x.n.now, fx), Status::Duplicate);
  EXPECT_FALSE(x.r->s->has_pending());
  EXPECT_EQ(fx.count, 0u);
  EXPECT_EQ(x.r->s->channel().state.txCountGlobal, tx);
}

TEST(SessionThreads, PayeeCountsPaymentsAndIgnoresReplays) {
  Pair x;
  fund_payer(x.n, *x.p, 1000);
  std::vector<Msg> out;
  x.n.hub.request_collateral(x.r->addr, 100, x.n.now, out);
  for (auto& m : out) x.n.inflight.push_back(m);
  ASSERT_TRUE(x.n.quiesce());
  Effects fx;
  uint64_t id = 0;
  ASSERT_EQ(x.p->s->propose_thread_open(x.r->addr, u(30), U256::zero(), x.n.now, fx, &id), Status::Ok);
  x.n.effects(*x.p, fx);
  ASSERT_TRUE(x.n.quiesce());
  ASSERT_EQ(x.p->s->thread_pay(x.r->addr, id, u(4), U256::zero(), fx), Status::Ok);
  ASSERT_EQ(fx.count, 1u);
  EXPECT_TRUE(fx.persist);
  const Bytes pay(fx.out[0].bytes, fx.out[0].bytes + fx.out[0].len);
  Effects r1, r2;
  ASSERT_EQ(x.r->s->on_thread_message(pay.data(), pay.size(), x.n.now, r1), Status::Ok);
  EXPECT_EQ(r1.event, SessionEvent::ThreadPaymentReceived);
  EXPECT_EQ(r1.amountWei, u(4));
  EXPECT_TRUE(r1.persist);
  EXPECT_EQ(x.r->s->on_thread_message(pay.data(), pay.size(), x.n.now, r2), Status::Duplicate);
  EXPECT_EQ(r2.event, SessionEvent::None);
  // A payment on the payer's own thread by someone else's key is refused.
  SignedThreadState forged;
  ASSERT_EQ(decode_thread_payment(pay.data(), pay.size(), forged), Status::Ok);
  forged.state.txCount += 1;
  ASSERT_EQ(u256_sub(forged.state.balanceWeiSender, u(1), forged.state.balanceWeiSender), Status::Ok);
  ASSERT_EQ(u256_add(forged.state.balanceWeiReceiver, u(1), forged.state.balanceWeiReceiver), Status::Ok);
  ASSERT_EQ(signer().sign_eth(key_fill(0x44), thread_hash(forged.state), forged.sigA), Status::Ok);
  Bytes fb(kMaxThreadStateWire);
  size_t n = 0;
  ASSERT_EQ(encode_thread_payment(forged, fb.data(), fb.size(), &n), Status::Ok);
  EXPECT_EQ(x.r->s->on_thread_message(fb.data(), n, x.n.now, r2), Status::WrongSigner);
}

// A payer and a payee with an open thread locking 30 wei (mirror done).
struct ThreadPair : Pair {
  uint64_t id = 0;
  ThreadPair() {
    fund_payer(n, *p, 1000);
    std::vector<Msg> out;
    n.hub.request_collateral(r->addr, 100, n.now, out);
    for (auto& m : out) n.inflight.push_back(m);
    if (!n.quiesce()) ADD_FAILURE() << "collateral";
    Effects fx;
    if (p->s->propose_thread_open(r->addr, u(30), U256::zero(), n.now, fx, &id) != Status::Ok) ADD_FAILURE();
    n.effects(*p, fx);
    if (!n.quiesce()) ADD_FAILURE() << "thread open";
  }
  // Pays `wei` on the thread and returns the ThreadPayment the payer sent (not delivered).
  Bytes pay(uint64_t wei) {
    Effects fx;
    EXPECT_EQ(p->s->thread_pay(r->addr, id, u(wei), U256::zero(), fx), Status::Ok);
    EXPECT_EQ(fx.count, 1u);
    if (fx.count != 1) return Bytes();
    EXPECT_EQ(fx.out[0].route, Route::ToThreadReceiver);
    return Bytes(fx.out[0].bytes, fx.out[0].bytes + fx.out[0].len);
  }
  const SessionThread& payer_thread() { return p->s->thread_slot(static_cast<size_t>(p->s->find_thread(p->addr, r->addr, id))); }
  const SessionThread& payee_thread() { return r->s->thread_slot(static_cast<size_t>(r->s->find_thread(p->addr, r->addr, id))); }
  Bytes payee_record() {
    Bytes buf(session_record_max(Device::kCap));
    size_t len = 0;
    EXPECT_EQ(r->s->serialise(buf.data(), buf.size(), &len), Status::Ok);
    buf.resize(len);
    return buf;
  }
  // A state signed by the payer's own key (a payer that cheats).
  Bytes signed_by_payer(const ThreadState& t) {
    SignedThreadState s;
    s.state = t;
    s.hasSigA = true;
    EXPECT_EQ(signer().sign_eth(p->key, thread_hash(t), s.sigA), Status::Ok);
    Bytes b(kMaxThreadStateWire);
    size_t len = 0;
    EXPECT_EQ(encode_thread_payment(s, b.data(), b.size(), &len), Status::Ok);
    b.resize(len);
    return b;
  }
  Status deliver(const Bytes& b, Effects& fx) { return r->s->on_thread_message(b.data(), b.size(), n.now, fx); }
};

TEST(SessionThreads, DroppedPaymentsDoNotBlockLaterOnes) {
  // docs/soak.md finding 1: payments 2..4 are lost; payment 5 carries them all.
  ThreadPair x;
  std::vector<Bytes> sent;
  for (uint64_t i = 1; i <= 5; ++i) sent.push_back(x.pay(i));
  Effects fx;
  ASSERT_EQ(x.deliver(sent[0], fx), Status::Ok);
  EXPECT_EQ(fx.amountWei, u(1));
  ASSERT_EQ(x.deliver(sent[4], fx), Status::Ok);
  EXPECT_EQ(fx.event, SessionEvent::ThreadPaymentReceived);
  EXPECT_EQ(fx.amountWei, u(2 + 3 + 4 + 5));
  EXPECT_EQ(x.payee_thread().latest.state, x.payer_thread().latest.state);
  EXPECT_EQ(x.payee_thread().latest.state.balanceWeiReceiver, u(15));
  // The lost ones arrive late (broker re-delivery): old states, nothing changes.
  const Bytes before = x.payee_record();
  EXPECT_EQ(x.deliver(sent[2], fx), Status::StaleState);
  EXPECT_EQ(x.deliver(sent[4], fx), Status::Duplicate);
  EXPECT_EQ(fx.persist, false);
  EXPECT_EQ(x.payee_record(), before);
  // The close carries the same totals: both channels settle 15 wei to the payee.
  ASSERT_EQ(x.p->s->thread_close_request(x.r->addr, x.id, x.n.now, fx), Status::Ok);
  x.n.effects(*x.p, fx);
  ASSERT_TRUE(x.n.quiesce()) << x.n.dump();
  EXPECT_EQ(x.r->s->channel().state.threadCount, 0u);
  x.n.expect_ledgers_equal();
}

TEST(SessionThreads, LastPaymentLostIsResentWhenIdleAndOnReconnect) {
  ThreadPair x;
  Effects fx;
  (void)x.pay(7);  // lost: the broker dropped it, or the payer died before the network write
  // Paying again within resendSeconds: nothing re-sent while payments flow.
  ASSERT_EQ(x.p->s->tick(x.n.now, fx), Status::Ok);
  EXPECT_EQ(fx.count, 0u);
  x.n.now += x.p->cfg.resendSeconds;
  ASSERT_EQ(x.p->s->tick(x.n.now, fx), Status::Ok);
  ASSERT_EQ(fx.count, 1u);
  EXPECT_EQ(fx.out[0].route, Route::ToThreadReceiver);
  const Bytes resent(fx.out[0].bytes, fx.out[0].bytes + fx.out[0].len);
  ASSERT_EQ(x.deliver(resent, fx), Status::Ok);
  EXPECT_EQ(fx.amountWei, u(7));
  EXPECT_EQ(x.payee_thread().latest.state, x.payer_thread().latest.state);
  // The next re-send comes later (backs off), and is a duplicate for the payee.
  x.n.now += x.p->cfg.resendSeconds;
  ASSERT_EQ(x.p->s->tick(x.n.now, fx), Status::Ok);
  EXPECT_EQ(fx.count, 0u);
  x.n.now += x.p->cfg.resendSeconds;
  ASSERT_EQ(x.p->s->tick(x.n.now, fx), Status::Ok);
  ASSERT_EQ(fx.count, 1u);
  EXPECT_EQ(Bytes(fx.out[0].bytes, fx.out[0].bytes + fx.out[0].len), resent);  // same bytes (RFC 6979)
  // A new payment is lost, the payer restarts from its record and reconnects: re-sent at
  // the first tick.
  (void)x.pay(3);
  x.p->persist();
  x.p->boot(true);
  ASSERT_EQ(x.p->s->on_connect(x.n.now, fx), Status::Ok);
  ASSERT_EQ(fx.count, 1u);  // the sync request
  ASSERT_EQ(fx.out[0].route, Route::ToHubSync);
  ASSERT_EQ(x.p->s->tick(x.n.now, fx), Status::Ok);
  Bytes again;
  for (size_t i = 0; i < fx.count; ++i)
    if (fx.out[i].route == Route::ToThreadReceiver) again.assign(fx.out[i].bytes, fx.out[i].bytes + fx.out[i].len);
  ASSERT_FALSE(again.empty());
  ASSERT_EQ(x.deliver(again, fx), Status::Ok);
  EXPECT_EQ(fx.amountWei, u(3));
  EXPECT_EQ(x.payee_thread().latest.state.balanceWeiReceiver, u(10));
}

TEST(SessionThreads, PayeeTakesThreadPaymentsWhileItsChannelHasAPendingDeposit) {
  ThreadPair x;
  std::vector<Msg> out;
  x.n.hub.request_collateral(x.r->addr, 100, x.n.now, out);
  for (auto& m : out) x.n.inflight.push_back(m);
  x.n.deliver_all_fifo();  // no chain facts: the deposit stays pending
  ASSERT_TRUE(channel_blocks_updates(x.r->s->channel().state));
  Effects fx;
  ASSERT_EQ(x.deliver(x.pay(4), fx), Status::Ok);
  EXPECT_EQ(x.payee_thread().latest.state.balanceWeiReceiver, u(4));
}

TEST(SessionThreadsEvilPayer, StatesThatTakeFromThePayeeOrChangeTheThreadAreRefused) {
  ThreadPair x;
  Effects fx;
  ASSERT_EQ(x.deliver(x.pay(10), fx), Status::Ok);
  ASSERT_EQ(x.deliver(x.pay(5), fx), Status::Ok);
  const ThreadState held = x.payee_thread().latest.state;  // txCount 2, receiver 15 of 30
  ASSERT_EQ(held.txCount, 2u);
  const Bytes before = x.payee_record();
  auto refused = [&](ThreadState t, Status want, const char* what) {
    Effects f;
    EXPECT_EQ(x.deliver(x.signed_by_payer(t), f), want) << what;
    EXPECT_FALSE(f.persist) << what;
    EXPECT_EQ(f.event, SessionEvent::None) << what;
    EXPECT_EQ(x.payee_record(), before) << what;
  };
  ThreadState t = held;
  t.txCount = 3;  // the payee's balance lowered, the total kept
  t.balanceWeiReceiver = u(14);
  t.balanceWeiSender = u(16);
  refused(t, Status::NotConserved, "receiver balance lowered");
  t = held;
  t.txCount = 3;  // more for the payee but a larger thread deposit
  t.balanceWeiReceiver = u(20);
  refused(t, Status::NotConserved, "total raised");
  t = held;
  t.txCount = 3;  // the payee gains, the sender keeps more than the deposit allows
  t.balanceWeiReceiver = u(16);
  t.balanceWeiSender = u(10);
  refused(t, Status::NotConserved, "total lowered");
  t = held;
  t.txCount = 3;
  t.balanceTokenReceiver = u(1);  // tokens appear from nowhere
  refused(t, Status::NotConserved, "token total");
  t = held;
  t.txCount = 3;
  t.balanceWeiReceiver = u(16);
  t.balanceWeiSender = u(14);
  t.threadId = x.id + 1;
  refused(t, Status::ThreadNotFound, "another threadId (no such thread)");
  t.threadId = x.id;
  t.receiver = x.p->addr;
  refused(t, Status::ThreadNotFound, "another receiver");
  t.receiver = x.r->addr;
  t.contractAddress.bytes[0] ^= 1;
  refused(t, Status::WrongContract, "another contract");
  t = held;
  t.txCount = 3;  // nothing paid
  refused(t, Status::BadArgs, "no value moves");
  t = held;
  t.txCount = 1;  // an old state, re-signed with other balances
  t.balanceWeiReceiver = u(30);
  t.balanceWeiSender = u(0);
  refused(t, Status::StaleState, "older txCount");
  t = held;  // the payer signs a second state with the payee's txCount
  t.balanceWeiReceiver = u(20);
  t.balanceWeiSender = u(10);
  refused(t, Status::StateConflict, "same txCount, other balances");
  t = held;
  t.txCount = kMaxCounter;  // a gap is allowed, but not the payer paying more than the thread holds
  t.balanceWeiReceiver = u(31);
  t.balanceWeiSender = u(0);
  refused(t, Status::NotConserved, "overdraft with a txCount jump");
  // The sender's signature is required: the payee's own key does not pass.
  {
    SignedThreadState s;
    s.state = held;
    s.state.txCount = 3;
    s.state.balanceWeiReceiver = u(16);
    s.state.balanceWeiSender = u(14);
    s.hasSigA = true;
    ASSERT_EQ(signer().sign_eth(x.r->key, thread_hash(s.state), s.sigA), Status::Ok);
    Bytes b(kMaxThreadStateWire);
    size_t len = 0;
    ASSERT_EQ(encode_thread_payment(s, b.data(), b.size(), &len), Status::Ok);
    b.resize(len);
    Effects f;
    EXPECT_EQ(x.deliver(b, f), Status::WrongSigner);
    EXPECT_EQ(x.payee_record(), before);
  }
  // The old increment form (kind 0x04) is refused outright.
  {
    ThreadUpdate tu;
    ThreadState next;
    ASSERT_EQ(thread_propose(signer(), x.p->key, held, u(1), U256::zero(), tu, next), Status::Ok);
    Bytes b(kMaxThreadUpdateWire);
    size_t len = 0;
    ASSERT_EQ(encode_thread_update(tu, b.data(), b.size(), &len), Status::Ok);
    b.resize(len);
    Effects f;
    EXPECT_EQ(x.deliver(b, f), Status::BadKind);
    EXPECT_EQ(x.payee_record(), before);
  }
  // A gap in txCount with a valid cumulative state is exactly a missed payment: taken.
  t = held;
  t.txCount = 9;
  t.balanceWeiReceiver = u(18);
  t.balanceWeiSender = u(12);
  Effects f;
  EXPECT_EQ(x.deliver(x.signed_by_payer(t), f), Status::Ok);
  EXPECT_EQ(f.amountWei, u(3));
  EXPECT_EQ(x.payee_thread().latest.state, t);
}

// ================================================================== persistence

TEST(SessionRecord, CorruptRecordsRefusedSessionUnchanged) {
  Pair x;
  fund_payer(x.n, *x.p, 1000);
  Effects fx;
  ASSERT_EQ(x.p->s->propose_payment(u(3), U256::zero(), x.n.now, fx), Status::Ok);
  x.n.effects(*x.p, fx);
  const Bytes good = x.p->stored;
  Rng rng(9);
  int refused = 0;
  for (int i = 0; i < 3000; ++i) {
    Bytes bad = good;
    const int mode = static_cast<int>(rng.below(3));
    if (mode == 0) bad.resize(rng.below(good.size()));
    else if (mode == 1) bad[rng.below(bad.size())] ^= static_cast<uint8_t>(1u << rng.below(8));
    else bad.push_back(0);
    const SignedChannelState before = x.p->s->channel();
    const Status st = x.p->s->restore(bad.data(), bad.size());
    if (st != Status::Ok) {
      ++refused;
      EXPECT_EQ(x.p->s->channel().state, before.state);
    }
    ASSERT_EQ(x.p->s->restore(good.data(), good.size()), Status::Ok);
  }
  EXPECT_GT(refused, 1000);
  // Another channel's record.
  Device other(0x66, x.n.hub.addr);
  EXPECT_EQ(other.s->restore(good.data(), good.size()), Status::WrongParty);
  EXPECT_LE(good.size(), session_record_max(Device::kCap));
}

// ================================================================== the race

// Hub requests (collateral in both channels, mirrors, ConfirmPending, the payer's
// CloseThread) race against a paying device; messages are reordered, duplicated and
// dropped, devices restart from their records. Every run must end with both ledgers
// equal, no txCountGlobal signed twice by a device or by the hub, and no request refused.
TEST(SessionRace, HubRequestsVersusPaymentsThousandRuns) {
  int runs = 0, payments = 0, requests = 0;
  int queuedBehind = 0;  // hub requests that arrived while the payer's own proposal was in flight
  int exchanges = 0, skips = 0;
  for (uint64_t seed = 1; seed <= 1000; ++seed) {
    Rng rng(seed);
    Pair x;
    Net& n = x.n;
    if (seed % 2 == 0) {
      x.p->cfg.verifyCountersigOnPayment = false;
      x.p->boot(false);
      n.connect(*x.p);
      n.deliver_all_fifo();
    }
    fund_payer(n, *x.p, 1000);
    {
      std::vector<Msg> out;  // hub collateral (wei and tokens) in the payer's channel
      n.hub.request_collateral(x.p->addr, 100, n.now, out);
      for (auto& m : out) n.inflight.push_back(m);
      ASSERT_TRUE(n.quiesce());
    }
    uint64_t openThread = 0;
    const int steps = 60 + static_cast<int>(rng.below(80));
    for (int step = 0; step < steps; ++step) {
      const uint64_t a = rng.below(100);
      Effects fx;
      effects_clear(fx);
      if (a < 45 && !n.inflight.empty()) {
        const size_t i = rng.below(n.inflight.size());
        Msg m = n.inflight[i];
        if (m.kind == Msg::Request && n.find(m.user) && n.find(m.user)->s->has_pending()) ++queuedBehind;
        const uint64_t fate = rng.below(100);
        if (fate >= 10) n.inflight.erase(n.inflight.begin() + static_cast<long>(i));  // else: duplicated
        if (fate >= 4) n.deliver(m);                                                  // else: dropped
      } else if (a < 62) {
        if (x.p->s->propose_payment(u(1 + rng.below(3)), U256::zero(), n.now, fx) == Status::Ok) ++payments;
        n.effects(*x.p, fx);
      } else if (a < 70) {
        if (openThread != 0 && x.p->s->thread_pay(x.r->addr, openThread, u(1), U256::zero(), fx) == Status::Ok)
          ++payments;
        n.effects(*x.p, fx);
      } else if (a < 73) {
        const long s = openThread ? x.p->s->find_thread(x.p->addr, x.r->addr, openThread) : -1;
        if (s < 0) {
          uint64_t id = 0;
          if (x.p->s->propose_thread_open(x.r->addr, u(20), U256::zero(), n.now, fx, &id) == Status::Ok) openThread = id;
          n.effects(*x.p, fx);
        }
      } else if (a < 75) {
        if (rng.below(2) == 0) {
          // An exchange the hub refuses for good (its rate is 100 +- 2 %, and it holds no
          // tokens in this channel): the hub asks to invalidate the half-signed state.
          const U256 rate = u(90 + rng.below(20));
          if (x.p->s->request_exchange(true, u(1), rate, u(1), u(1000), n.now, fx) == Status::Ok) ++exchanges;
        } else if (openThread) {
          (void)x.p->s->thread_close_request(x.r->addr, openThread, n.now, fx);
        }
        n.effects(*x.p, fx);
      } else if (a < 80) {
        std::vector<Msg> out;
        Device* d = rng.below(2) ? x.r : x.p;
        n.hub.request_collateral(d->addr, 50 + rng.below(100), n.now, out);
        for (auto& m : out) n.inflight.push_back(m);
        ++requests;
      } else if (a < 90) {
        n.now += 1 + rng.below(3);
        Device* d = rng.below(2) ? x.r : x.p;
        n.tick(*d);
        if (rng.below(4) == 0) {
          std::vector<Msg> out;
          n.hub.resend(out);
          for (auto& m : out) n.inflight.push_back(m);
        }
      } else if (a < 97) {
        n.facts(rng.below(2) ? *x.r : *x.p);
      } else if (a < 99) {
        Device* d = rng.below(2) ? x.r : x.p;
        d->boot(true);  // a restart from the durable record
        n.connect(*d);
      }
    }
    ASSERT_TRUE(n.quiesce()) << "seed " << seed << " did not complete\n" << n.dump();
    n.expect_ledgers_equal();
    ASSERT_EQ(n.signedTwice, 0) << "seed " << seed;
    ASSERT_EQ(n.hub.requestNacks, 0) << "seed " << seed << " " << n.hub.lastNack;
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "seed " << seed;
      break;
    }
    skips += n.hub.skips;
    ++runs;
  }
  EXPECT_EQ(runs, 1000);
  std::printf("race: %d exchanges proposed (rate 90..109, the hub takes 98..102), %d half-signed states invalidated\n",
              exchanges, skips);
  EXPECT_GT(skips, 50);
  std::printf("race: %d runs, %d payments, %d collateral request attempts, %d hub requests delivered behind a proposal\n", runs,
              payments, requests, queuedBehind);
  EXPECT_GT(payments, 3000);
  EXPECT_GT(requests, 1000);
  EXPECT_GT(queuedBehind, 500);
}

TEST(SessionSize, RamReported) {
  // docs/device-session.md quotes these numbers.
  std::printf("sizeof(Session) = %zu bytes; per thread slot: SessionThread %zu + ThreadState %zu + Hash32 %zu; "
              "Effects %zu; record max (8 threads) %zu\n",
              sizeof(Session), sizeof(SessionThread), sizeof(ThreadState), sizeof(Hash32), sizeof(Effects),
              session_record_max(8));
  EXPECT_LT(sizeof(Session), 4096u);
}

}  // namespace
