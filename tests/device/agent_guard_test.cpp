// picopay-agent (payee role) against a scripted hub: a real mosquitto on 127.0.0.1, the
// real picopay-agent binary and its state dir, and a test "hub" built from the core and
// picopay_mqtt that proposes updates the way a misbehaving hub could. No timing
// assertions: every wait is a bounded poll.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "picopay/hex.hpp"
#include "picopay/codec.hpp"
#include "picopay/device/state.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "support/broker.hpp"
#include "support/process.hpp"

using namespace picopay;
using namespace picopay::testsupport;

namespace {

PrivateKey key_of(uint8_t fill) {
  PrivateKey k{};
  std::memset(k.bytes, fill, 32);
  return k;
}

std::string hex_key(const PrivateKey& k) {
  char s[2 + 64 + 1];
  hex_encode(k.bytes, sizeof k.bytes, s, true);
  return s;
}

bool poll_until(const std::function<bool()>& f, int timeout_ms) {
  for (int w = 0; w <= timeout_ms; w += 50) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

const char* kContract = "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390";

class PayeeGuard : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(signer_.init(), Status::Ok);
    hub_key_ = key_of(0x31);
    payee_key_ = key_of(0x32);
    payer_key_ = key_of(0x33);
    ASSERT_EQ(signer_.address_of(hub_key_, hub_), Status::Ok);
    ASSERT_EQ(signer_.address_of(payee_key_, payee_), Status::Ok);
    ASSERT_EQ(signer_.address_of(payer_key_, payer_), Status::Ok);
    ASSERT_EQ(address_parse(kContract, std::strlen(kContract), contract_), Status::Ok);
    dir_ = make_temp_dir("picopay-payee-guard");
    BrokerOptions o;
    o.dir = dir_ + "/broker";
    broker_ = std::make_unique<Broker>(o);
    std::string err;
    ASSERT_TRUE(broker_->start(err)) << err;
    mqtt::Options mo;
    mo.port = broker_->port();
    mo.client_id = "picopay-hub-test";
    hub_client_ = std::make_unique<mqtt::Client>(mo);
    hub_client_->on_message([this](const mqtt::Message& m) {
      std::lock_guard<std::mutex> l(mu_);
      msgs_.push_back(m);
      cv_.notify_all();
    });
    hub_client_->subscribe(mqtt::topic_hub_filter(hub_), 1);
    ASSERT_TRUE(hub_client_->start(err)) << err;
    ASSERT_TRUE(hub_client_->wait_connected(15000));
    latest_.state = channel_state_zero();
    latest_.state.contractAddress = contract_;
    latest_.state.user = payee_;
    latest_.state.recipient = payee_;
  }
  void TearDown() override {
    agent_.kill9();
    if (hub_client_) hub_client_->stop();
    broker_.reset();
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s\n", dir_.c_str());
  }

  // The agent under test (key payee_key_, address payee_) in `role`, with `extra` options.
  void start_agent(const std::string& role = "payee", const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {PICOPAY_AGENT_BIN, "--name", "payee", "--state-dir", dir_ + "/payee",
                                     "--broker", "127.0.0.1:" + std::to_string(broker_->port()), "--hub",
                                     json_addr(hub_), "--contract", kContract, "--key", hex_key(payee_key_),
                                     "--role", role};
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_TRUE(agent_.start(argv, dir_ + "/payee.log"));
  }
  // `picopay-agent status` of the agent's state dir.
  std::string status() {
    const std::string out = dir_ + "/status.out";
    std::remove(out.c_str());
    EXPECT_EQ(run_command({PICOPAY_AGENT_BIN, "status", "--state-dir", dir_ + "/payee"}, out), 0);
    return read_file(out);
  }
  // How often `needle` occurs in the agent's log.
  size_t log_count(const std::string& needle) {
    const std::string log = read_file(dir_ + "/payee.log");
    size_t n = 0;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
    return n;
  }
  static std::string json_addr(const Address& a) { return mqtt::topic_address(a); }

  // Next message from the agent on a hub topic whose leaf is `leaf`.
  bool next(const std::string& leaf, mqtt::Message& out, int timeout_ms = 20000) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] {
      for (auto it = msgs_.begin(); it != msgs_.end(); ++it) {
        Address h{}, u{};
        std::string lf;
        if (mqtt::parse_channel_topic(it->topic, h, u, lf) && lf == leaf) {
          out = *it;
          msgs_.erase(it);
          return true;
        }
      }
      return false;
    });
  }

  void send_sync() { send_sync_state(latest_); }
  // A Sync reply carrying `st` (any state: the broker may forge or replay one).
  void send_sync_state(const SignedChannelState& st) {
    mqtt::Reply r;
    r.kind = mqtt::ReplyKind::Sync;
    r.txCountGlobal = st.state.txCountGlobal;
    r.state = st;
    std::vector<uint8_t> out;
    ASSERT_EQ(mqtt::encode_reply(r, out), Status::Ok);
    mqtt::PublishProps p;
    p.correlation = mqtt::correlation_encode(r.txCountGlobal);
    ASSERT_TRUE(hub_client_->publish(mqtt::topic_reply(payee_), out.data(), out.size(), 1, false, &p));
  }

  // Proposes u as the hub (with the open `threads_`), returns the agent's reply.
  mqtt::Reply propose(ChannelUpdate u) {
    std::vector<ThreadState> items = threads_;
    const size_t n_open = items.size();
    items.resize(n_open + 1);
    std::vector<Hash32> scratch(items.size() + 2);
    ThreadSet ts{items.data(), n_open, items.size(), scratch.data()};
    ChannelContext ctx{hub_};
    ChannelState nx{};
    mqtt::Reply r;
    EXPECT_EQ(channel_propose(ctx, signer_, hub_key_, Party::Hub, latest_.state, ts, u, nx), Status::Ok);
    uint8_t buf[kMaxChannelUpdateWire];
    size_t n = 0;
    EXPECT_EQ(encode_channel_update(u, buf, sizeof buf, &n), Status::Ok);
    mqtt::PublishProps p;
    p.response_topic = mqtt::topic_hub_reply(hub_, payee_);
    p.correlation = mqtt::correlation_encode(u.txCountGlobal);
    EXPECT_TRUE(hub_client_->publish(mqtt::topic_request(payee_), buf, n, 1, false, &p));
    mqtt::Message m;
    EXPECT_TRUE(next("reply", m));
    EXPECT_EQ(mqtt::decode_reply(m.payload.data(), m.payload.size(), r), Status::Ok);
    if (r.kind == mqtt::ReplyKind::Ack && signer_.verify_eth(channel_hash(nx), r.sig, payee_) == Status::Ok) {
      latest_.state = nx;
      latest_.hasSigHub = latest_.hasSigUser = true;
      latest_.sigHub = u.sig;
      latest_.sigUser = r.sig;
      if (thread_set_apply(ts, u) == Status::Ok) {
        items.resize(ts.count);
        threads_ = items;
      }
    }
    return r;
  }

  // `st` signed by `user_key` (sigUser) and `hub_key` (sigHub).
  SignedChannelState signed_state(const ChannelState& st, const PrivateKey& user_key, const PrivateKey& hub_key) {
    SignedChannelState out{};
    out.state = st;
    const Hash32 h = channel_hash(st);
    EXPECT_EQ(signer_.sign_eth(user_key, h, out.sigUser), Status::Ok);
    EXPECT_EQ(signer_.sign_eth(hub_key, h, out.sigHub), Status::Ok);
    out.hasSigUser = out.hasSigHub = true;
    return out;
  }

  // Takes the agent's next proposed update (waits for it), checks it as the hub would
  // and answers it: Ack (countersigned; `latest_` advances) or, if `ack` is false,
  // nothing. Returns the update.
  ChannelUpdate take_update(bool ack = true) {
    mqtt::Message m;
    ChannelUpdate u{};
    EXPECT_TRUE(next("update", m));
    EXPECT_EQ(decode_channel_update(m.payload.data(), m.payload.size(), u), Status::Ok);
    if (!ack) return u;
    std::vector<ThreadState> items = threads_;
    items.resize(items.size() + 1);
    std::vector<Hash32> scratch(items.size() + 2);
    ThreadSet ts{items.data(), threads_.size(), items.size(), scratch.data()};
    ChannelContext ctx{hub_};
    ChannelState nx{};
    Hash32 h{};
    EXPECT_EQ(channel_accept(ctx, signer_, Party::Hub, latest_.state, ts, u, nx, h), Status::Ok);
    mqtt::Reply r;
    r.kind = mqtt::ReplyKind::Ack;
    r.txCountGlobal = u.txCountGlobal;
    EXPECT_EQ(signer_.sign_eth(hub_key_, h, r.sig), Status::Ok);
    send_reply(r);
    latest_.state = nx;
    latest_.sigUser = u.sig;
    latest_.sigHub = r.sig;
    latest_.hasSigUser = latest_.hasSigHub = true;
    return u;
  }
  void send_reply(const mqtt::Reply& r) {
    std::vector<uint8_t> out;
    ASSERT_EQ(mqtt::encode_reply(r, out), Status::Ok);
    mqtt::PublishProps p;
    p.correlation = mqtt::correlation_encode(r.txCountGlobal);
    ASSERT_TRUE(hub_client_->publish(mqtt::topic_reply(payee_), out.data(), out.size(), 1, false, &p));
  }
  // A Tasmota SENSOR reading (cumulative kWh) on the agent's meter topic.
  void meter_kwh(const char* total) {
    const std::string j = std::string("{\"ENERGY\":{\"Total\":") + total + "}}";
    ASSERT_TRUE(hub_client_->publish(kMeterTopic, j, 1, false));
  }
  static constexpr const char* kMeterTopic = "tele/guard/SENSOR";

  // A payer agent (price 1 wei/Wh, Tasmota meter, no chain) that the scripted hub funds:
  // the hub deposits 1000 wei of collateral, confirms it and pays it to the user
  // (txCountGlobal 3). Returns the double-signed state 1 (for replays).
  SignedChannelState start_funded_payer() {
    start_agent("payer", {"--meter", std::string("tasmota:") + kMeterTopic, "--price-wei", "1"});
    mqtt::Message m;
    EXPECT_TRUE(next("sync", m));
    send_sync();
    ChannelUpdate dep = channel_update_make(UpdateReason::ProposePendingDeposit);
    dep.deposit.depositWeiHub = U256::from_u64(1000);
    dep.deposit.timeout = 4000000000ull;
    mqtt::Reply r = propose(dep);
    EXPECT_EQ(r.kind, mqtt::ReplyKind::Ack) << status_name(r.status);
    const SignedChannelState one = latest_;
    r = propose(channel_update_make(UpdateReason::ConfirmPending));
    EXPECT_EQ(r.kind, mqtt::ReplyKind::Ack) << status_name(r.status);
    ChannelUpdate pay = channel_update_make(UpdateReason::Payment);
    pay.payment.recipient = Party::User;
    pay.payment.amountWei = U256::from_u64(1000);
    r = propose(pay);
    EXPECT_EQ(r.kind, mqtt::ReplyKind::Ack) << status_name(r.status);
    EXPECT_TRUE(poll_until([&] { return load().channel.state.txCountGlobal == 3; }, 20000));
    return one;
  }

  SignedThreadState thread(uint64_t sender_wei, uint64_t receiver_wei, uint64_t tx) {
    SignedThreadState t{};
    t.state = thread_state_zero();
    t.state.contractAddress = contract_;
    t.state.sender = payer_;
    t.state.receiver = payee_;
    t.state.threadId = 1;
    t.state.balanceWeiSender = U256::from_u64(sender_wei);
    t.state.balanceWeiReceiver = U256::from_u64(receiver_wei);
    t.state.txCount = tx;
    EXPECT_EQ(signer_.sign_eth(payer_key_, thread_hash(t.state), t.sigA), Status::Ok);
    t.hasSigA = true;
    return t;
  }

  device::AgentState load() {
    device::AgentState s;
    std::string err;
    (void)device::state_load(dir_ + "/payee", s, err);
    return s;
  }

  Signer signer_;
  PrivateKey hub_key_{}, payee_key_{}, payer_key_{};
  Address hub_{}, payee_{}, payer_{}, contract_{};
  std::string dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<mqtt::Client> hub_client_;
  Process agent_;
  SignedChannelState latest_{};
  std::vector<ThreadState> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<mqtt::Message> msgs_;
};

}  // namespace

// A hub that closes a payee's thread with an older payer-signed state (here the initial
// one) would take back the payments the payee already received: the payee refuses it,
// stores nothing, and still accepts a close with its latest state.
TEST_F(PayeeGuard, PayeeRefusesAHubCloseWithAnOlderThreadState) {
  start_agent();
  mqtt::Message m;
  ASSERT_TRUE(next("sync", m));
  send_sync();

  // Hub collateral in the payee's channel, then the thread the payer opened.
  ChannelUpdate dep = channel_update_make(UpdateReason::ProposePendingDeposit);
  dep.deposit.depositWeiHub = U256::from_u64(1000);
  dep.deposit.timeout = 4000000000ull;
  mqtt::Reply r = propose(dep);
  ASSERT_EQ(r.kind, mqtt::ReplyKind::Ack) << status_name(r.status);
  r = propose(channel_update_make(UpdateReason::ConfirmPending));
  ASSERT_EQ(r.kind, mqtt::ReplyKind::Ack) << status_name(r.status);
  ChannelUpdate open = channel_update_make(UpdateReason::OpenThread);
  open.thread.thread = thread(100, 0, 0);
  r = propose(open);
  ASSERT_EQ(r.kind, mqtt::ReplyKind::Ack) << status_name(r.status);

  // The payer pays 40 in the thread, straight to the payee.
  ThreadUpdate tu{};
  ThreadState t1{};
  ASSERT_EQ(thread_propose(signer_, payer_key_, open.thread.thread.state, U256::from_u64(40), U256::zero(), tu, t1),
            Status::Ok);
  uint8_t buf[kMaxThreadUpdateWire];
  size_t n = 0;
  ASSERT_EQ(encode_thread_update(tu, buf, sizeof buf, &n), Status::Ok);
  ASSERT_TRUE(hub_client_->publish(mqtt::topic_thread_update(payee_), buf, n, 1, false));
  ASSERT_TRUE(poll_until(
      [&] {
        auto s = load();
        return s.threads.size() == 1 && s.threads[0].latest.state.txCount == 1;
      },
      20000));
  const std::string before = device::state_to_json(load());

  // The hub proposes CloseThread with the initial state (payee receives 0): refused.
  ChannelUpdate stale = channel_update_make(UpdateReason::CloseThread);
  stale.thread.thread = open.thread.thread;
  const SignedChannelState hub_before = latest_;
  r = propose(stale);
  EXPECT_EQ(r.kind, mqtt::ReplyKind::Nack);
  EXPECT_EQ(r.status, Status::Unauthorized);
  EXPECT_EQ(device::state_to_json(load()), before) << "a refused close changed the payee's state";
  latest_ = hub_before;

  // With the payee's latest thread state the close is countersigned.
  ChannelUpdate good = channel_update_make(UpdateReason::CloseThread);
  good.thread.thread.state = t1;
  good.thread.thread.sigA = tu.sig;
  good.thread.thread.hasSigA = true;
  r = propose(good);
  ASSERT_EQ(r.kind, mqtt::ReplyKind::Ack) << status_name(r.status);
  auto s = load();
  EXPECT_EQ(s.channel.state.balanceWeiUser, U256::from_u64(40));
  EXPECT_EQ(s.channel.state.balanceWeiHub, U256::from_u64(960));
  EXPECT_EQ(s.channel.state.threadCount, 0u);
}

// A close request (ThreadState, wire kind 0x02, on the payee's thread topic) that is not
// signed by the payer, or carries a state other than the payee's latest, changes nothing.
TEST_F(PayeeGuard, ForgedOrStaleCloseRequestChangesNothing) {
  start_agent();
  mqtt::Message m;
  ASSERT_TRUE(next("sync", m));
  send_sync();
  ChannelUpdate dep = channel_update_make(UpdateReason::ProposePendingDeposit);
  dep.deposit.depositWeiHub = U256::from_u64(1000);
  dep.deposit.timeout = 4000000000ull;
  ASSERT_EQ(propose(dep).kind, mqtt::ReplyKind::Ack);
  ASSERT_EQ(propose(channel_update_make(UpdateReason::ConfirmPending)).kind, mqtt::ReplyKind::Ack);
  ChannelUpdate open = channel_update_make(UpdateReason::OpenThread);
  open.thread.thread = thread(100, 0, 0);
  ASSERT_EQ(propose(open).kind, mqtt::ReplyKind::Ack);
  auto pay = [&](const ThreadState& prev, uint64_t wei, ThreadState& nx) {
    ThreadUpdate tu{};
    ASSERT_EQ(thread_propose(signer_, payer_key_, prev, U256::from_u64(wei), U256::zero(), tu, nx), Status::Ok);
    uint8_t buf[kMaxThreadUpdateWire];
    size_t n = 0;
    ASSERT_EQ(encode_thread_update(tu, buf, sizeof buf, &n), Status::Ok);
    ASSERT_TRUE(hub_client_->publish(mqtt::topic_thread_update(payee_), buf, n, 1, false));
  };
  auto send_close = [&](const SignedThreadState& st) {
    uint8_t buf[kMaxThreadStateWire];
    size_t n = 0;
    ASSERT_EQ(encode_thread_state(st, buf, sizeof buf, &n), Status::Ok);
    ASSERT_TRUE(hub_client_->publish(mqtt::topic_thread_update(payee_), buf, n, 1, false));
  };
  ThreadState t1{}, t2{};
  pay(open.thread.thread.state, 40, t1);
  ASSERT_TRUE(poll_until([&] { auto s = load(); return s.threads.size() == 1 && s.threads[0].latest.state.txCount == 1; }, 20000));
  // Forged: the payee's latest state signed by someone else. Stale: the initial state.
  SignedThreadState forged{};
  forged.state = t1;
  ASSERT_EQ(signer_.sign_eth(hub_key_, thread_hash(t1), forged.sigA), Status::Ok);
  forged.hasSigA = true;
  send_close(forged);
  send_close(open.thread.thread);
  pay(t1, 10, t2);  // processed after the two requests above (one topic, in order)
  ASSERT_TRUE(poll_until([&] { auto s = load(); return s.threads.size() == 1 && s.threads[0].latest.state.txCount == 2; }, 20000));
  auto s = load();
  EXPECT_FALSE(s.threads[0].closing) << "a forged or stale close request was acted on";
  EXPECT_TRUE(s.threads[0].open);
}

// A Sync reply is untrusted (the broker may forge or replay it, DESIGN.md §4.3): an older
// double-signed state (a replay), a state with a forged hub signature, a state of another
// channel (another user, another contract), a state with our txCountGlobal but other
// contents, and a double-signed newer state the agent never proposed are each ignored
// with one log line. The agent keeps running, its stored state is unchanged, and after
// the hub's real Sync it pays.
TEST_F(PayeeGuard, ForgedReplayedOrForeignSyncChangesNothingAndTheAgentStillPays) {
  const SignedChannelState one = start_funded_payer();
  ASSERT_FALSE(HasFailure());
  // Restart: the agent asks for a Sync again.
  agent_.kill9();
  start_agent("payer", {"--meter", std::string("tasmota:") + kMeterTopic, "--price-wei", "1"});
  mqtt::Message m;
  ASSERT_TRUE(next("sync", m));
  const std::string before = status();
  ASSERT_EQ(load().channel.state.txCountGlobal, 3u) << before;

  // State 4 as if the user had paid the hub 10.
  ChannelState paid = latest_.state;
  paid.txCountGlobal = 4;
  paid.balanceWeiUser = U256::from_u64(990);
  paid.balanceWeiHub = U256::from_u64(10);
  std::vector<SignedChannelState> bad;
  bad.push_back(one);                                          // older, genuine: a replay
  bad.push_back(signed_state(paid, payee_key_, payer_key_));   // sigHub forged
  SignedChannelState unsigned_paid{};
  unsigned_paid.state = paid;
  bad.push_back(unsigned_paid);                                // not signed
  ChannelState other_user = paid;
  other_user.user = other_user.recipient = payer_;
  bad.push_back(signed_state(other_user, payer_key_, hub_key_));  // another user's channel
  ChannelState other_contract = paid;
  other_contract.contractAddress = hub_;
  bad.push_back(signed_state(other_contract, payee_key_, hub_key_));  // another contract
  ChannelState same_tx = latest_.state;
  same_tx.balanceWeiUser = U256::from_u64(1);
  same_tx.balanceWeiHub = U256::from_u64(999);
  bad.push_back(signed_state(same_tx, payee_key_, hub_key_));  // our txCount, other contents
  bad.push_back(signed_state(paid, payee_key_, hub_key_));     // newer, never proposed by us
  const size_t ignored0 = log_count("sync ignored") + log_count("sync NOT adopted");
  for (const auto& b : bad) send_sync_state(b);
  ASSERT_TRUE(poll_until(
      [&] { return !agent_.running() || log_count("sync ignored") + log_count("sync NOT adopted") >= ignored0 + bad.size(); },
      20000))
      << read_file(dir_ + "/payee.log");
  ASSERT_TRUE(agent_.running()) << "a forged or replayed Sync stopped the agent:\n" << read_file(dir_ + "/payee.log");
  EXPECT_EQ(log_count("sync ignored") + log_count("sync NOT adopted"), ignored0 + bad.size());
  EXPECT_EQ(status(), before) << "a forged or replayed Sync changed the stored state";

  // The hub's real Sync; then 5 Wh metered: the agent pays 5 wei.
  send_sync();
  meter_kwh("1.000");
  meter_kwh("1.005");
  ChannelUpdate u = take_update();
  EXPECT_EQ(u.reason, UpdateReason::Payment);
  EXPECT_EQ(u.txCountGlobal, 4u);
  EXPECT_EQ(u.payment.amountWei, U256::from_u64(5));
  ASSERT_TRUE(poll_until([&] { return load().channel.state.txCountGlobal == 4; }, 20000));
  EXPECT_EQ(load().channel.state.balanceWeiUser, U256::from_u64(995));
  EXPECT_TRUE(agent_.running());
}

// Every Nack carries the hub's latest state; it is untrusted like a Sync. Forged or
// replayed Nacks of the agent's pending payment (an older genuine state, another
// channel, our txCountGlobal with other contents, a newer state with a forged hub
// signature) are each ignored with one log line: they are not counted as the hub's
// refusals (61 of those stop the agent), change nothing stored, and the pending payment
// completes once the hub acknowledges it.
TEST_F(PayeeGuard, ForgedOrReplayedNacksChangeNothingAndTheAgentStillPays) {
  const SignedChannelState one = start_funded_payer();
  ASSERT_FALSE(HasFailure());
  meter_kwh("1.000");
  meter_kwh("1.005");
  ChannelUpdate u = take_update(false);  // pending, not answered yet
  ASSERT_EQ(u.reason, UpdateReason::Payment);
  ASSERT_EQ(u.txCountGlobal, 4u);
  ASSERT_TRUE(poll_until([&] { return load().has_pending; }, 20000));
  const std::string before = status();

  ChannelState other_user = latest_.state;
  other_user.txCountGlobal = 2;
  other_user.user = other_user.recipient = payer_;
  ChannelState same_tx = latest_.state;
  same_tx.balanceWeiUser = U256::from_u64(1);
  same_tx.balanceWeiHub = U256::from_u64(999);
  ChannelState paid = latest_.state;  // state 4 as if the user had paid 10
  paid.txCountGlobal = 4;
  paid.balanceWeiUser = U256::from_u64(990);
  paid.balanceWeiHub = U256::from_u64(10);
  const std::vector<SignedChannelState> states = {one, signed_state(other_user, payer_key_, hub_key_),
                                                  signed_state(same_tx, payee_key_, hub_key_)};
  const size_t ignored0 = log_count("nack ignored");
  size_t sent = 0;
  auto nack = [&](const SignedChannelState& st) {
    mqtt::Reply r;
    r.kind = mqtt::ReplyKind::Nack;
    r.txCountGlobal = u.txCountGlobal;
    r.status = Status::PendingOperation;
    r.state = st;
    send_reply(r);
    ++sent;
  };
  for (int round = 0; round < 21; ++round)  // 63 > the 60 refusals the agent tolerates
    for (const auto& st : states) nack(st);
  nack(signed_state(paid, payee_key_, payer_key_));  // newer, forged hub signature
  ASSERT_TRUE(poll_until([&] { return !agent_.running() || log_count("nack ignored") >= ignored0 + sent; }, 20000))
      << read_file(dir_ + "/payee.log");
  ASSERT_TRUE(agent_.running()) << "forged or replayed Nacks stopped the agent:\n" << read_file(dir_ + "/payee.log");
  EXPECT_EQ(log_count("nack ignored"), ignored0 + sent);
  EXPECT_EQ(log_count("hub refused update"), 0u);
  EXPECT_EQ(status(), before) << "a forged or replayed Nack changed the stored state";

  // The hub acknowledges the pending payment (the agent re-sends the same bytes).
  ChannelUpdate again = take_update();
  EXPECT_EQ(again.txCountGlobal, 4u);
  EXPECT_EQ(again.sig, u.sig);
  ASSERT_TRUE(poll_until([&] { return load().channel.state.txCountGlobal == 4; }, 20000));
  EXPECT_EQ(load().channel.state.balanceWeiUser, U256::from_u64(995));
  EXPECT_FALSE(load().has_pending);
  EXPECT_TRUE(agent_.running());
}

// The one newer state a Sync may bring: the agent's own pending proposal, countersigned
// by the hub (the agent restarted before the Ack arrived). It is adopted as if acked.
TEST_F(PayeeGuard, SyncWithOurCountersignedPendingProposalCompletesIt) {
  start_funded_payer();
  ASSERT_FALSE(HasFailure());
  meter_kwh("1.000");
  meter_kwh("1.005");
  ChannelUpdate u = take_update(false);
  ASSERT_EQ(u.txCountGlobal, 4u);
  ASSERT_TRUE(poll_until([&] { return load().has_pending; }, 20000));
  agent_.kill9();
  ChannelState paid = latest_.state;
  paid.txCountGlobal = 4;
  paid.balanceWeiUser = U256::from_u64(995);
  paid.balanceWeiHub = U256::from_u64(5);
  SignedChannelState hub_has{};
  hub_has.state = paid;
  hub_has.sigUser = u.sig;
  ASSERT_EQ(signer_.sign_eth(hub_key_, channel_hash(paid), hub_has.sigHub), Status::Ok);
  hub_has.hasSigUser = hub_has.hasSigHub = true;
  start_agent("payer", {"--meter", std::string("tasmota:") + kMeterTopic, "--price-wei", "1"});
  mqtt::Message m;
  ASSERT_TRUE(next("sync", m));
  send_sync_state(hub_has);
  ASSERT_TRUE(poll_until([&] { return load().channel.state.txCountGlobal == 4; }, 20000))
      << read_file(dir_ + "/payee.log");
  auto s = load();
  EXPECT_FALSE(s.has_pending);
  EXPECT_EQ(s.channel.state, paid);
  EXPECT_EQ(s.channel.sigHub, hub_has.sigHub);
  EXPECT_EQ(s.units_paid, 5u);
  EXPECT_TRUE(agent_.running());
}
