// picopay-agent against a MALICIOUS HUB: a real mosquitto on 127.0.0.1, the real
// picopay-agent binary and its state dir, the real dev chain with a ChannelManager, and a
// scripted "hub" that holds the real hub key and sends what a hub key in the wrong hands
// could send (docs/signing-policy.md). Each harmful message is refused (a RequestNack or
// no answer), nothing is signed, nothing stored changes, and the agent keeps working.
// No timing assertions: every wait is a bounded poll.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "picopay/chain/manager.hpp"
#include "picopay/codec.hpp"
#include "picopay/demo/support.hpp"
#include "picopay/device/state.hpp"
#include "picopay/hex.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "support/broker.hpp"
#include "support/e2e.hpp"
#include "support/process.hpp"

using namespace picopay;
using namespace picopay::testsupport;

namespace {

bool poll_until(const std::function<bool()>& f, int timeout_ms) {
  for (int w = 0; w <= timeout_ms; w += 50) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

struct Account {
  std::string hex;
  PrivateKey key{};
  Address addr{};
};

constexpr int kUsers = 28;
constexpr uint64_t kTimeout = 4000000000ull;  // a pending op's timeout (far future)

class MaliciousHub : public ::testing::Test {
 protected:
  // One dev chain and ChannelManager for the suite; each test takes fresh user keys.
  static void SetUpTestSuite() {
    net_ = new E2ENet;
    std::string err;
    E2EOptions eo;
    eo.name = "guard-chain";
    eo.devices = kUsers;
    ASSERT_TRUE(net_->start_chain(eo, err)) << err;
    Signer sg;
    ASSERT_EQ(sg.init(), Status::Ok);
    auto account = [&](const std::string& hex, Account& p) {
      p.hex = hex;
      return private_key_parse(p.hex.c_str(), p.hex.size(), p.key) == Status::Ok &&
             sg.address_of(p.key, p.addr) == Status::Ok;
    };
    ASSERT_TRUE(account(net_->hub_key, hub_));
    for (int i = 0; i < kUsers; ++i) ASSERT_TRUE(account(net_->keys[static_cast<size_t>(i)], users_[i]));
    chain_ = &net_->devchain;
    rpc_ = net_->rpc.get();
    wallet_ = net_->hub_wallet.get();
    contract_ = net_->cm_addr;
    cm_ = new chain::ChannelManagerClient(*wallet_, contract_);
    ASSERT_TRUE(cm_->fund_reserve(U256::from_u64(1000000)).ok());
  }
  static void TearDownTestSuite() {
    delete cm_;
    const std::string work = net_ ? net_->work : "";
    delete net_;
    if (!work.empty()) remove_tree(work);
  }

  void SetUp() override {
    ASSERT_EQ(signer_.init(), Status::Ok);
    ASSERT_LT(next_user_ + 1, kUsers);
    me_ = users_[next_user_++];
    payer_ = users_[next_user_++];  // the other party of a thread (payee tests)
    dir_ = make_temp_dir("picopay-guard");
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
    hub_client_->subscribe(mqtt::topic_hub_filter(hub_.addr), 1);
    ASSERT_TRUE(hub_client_->start(err)) << err;
    ASSERT_TRUE(hub_client_->wait_connected(15000));
    latest_.state = channel_state_zero();
    latest_.state.contractAddress = contract_;
    latest_.state.user = me_.addr;
    latest_.state.recipient = me_.addr;
  }
  void TearDown() override {
    agent_.kill9();
    if (hub_client_) hub_client_->stop();
    broker_.reset();
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s\n", dir_.c_str());
  }

  // The agent under test (me_) in `role`; `chain` gives it the dev chain's RPC URL.
  void start_agent(const std::string& role, const std::vector<std::string>& extra = {}, bool chain = true) {
    std::vector<std::string> argv = {PICOPAY_AGENT_BIN, "--name", "dev", "--state-dir", dir_ + "/agent", "--broker",
                                     "127.0.0.1:" + std::to_string(broker_->port()), "--hub",
                                     mqtt::topic_address(hub_.addr), "--contract", mqtt::topic_address(contract_),
                                     "--key", me_.hex, "--role", role};
    if (chain) {
      argv.push_back("--rpc");
      argv.push_back(chain_->url());
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    ASSERT_TRUE(agent_.start(argv, dir_ + "/agent.log"));
  }
  std::string log() { return read_file(dir_ + "/agent.log"); }
  size_t log_count(const std::string& needle) {
    const std::string l = log();
    size_t n = 0;
    for (size_t at = l.find(needle); at != std::string::npos; at = l.find(needle, at + 1)) ++n;
    return n;
  }
  device::AgentState load() {
    device::AgentState s;
    std::string err;
    (void)device::state_load(dir_ + "/agent", s, err);
    return s;
  }
  std::string status() {
    const std::string out = dir_ + "/status.out";
    std::remove(out.c_str());
    EXPECT_EQ(run_command({PICOPAY_AGENT_BIN, "status", "--state-dir", dir_ + "/agent"}, out), 0);
    return read_file(out);
  }

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
  // Whether the agent sent anything on its update or hub-reply topics (drains them).
  bool agent_said_something() {
    std::lock_guard<std::mutex> l(mu_);
    bool any = false;
    for (auto it = msgs_.begin(); it != msgs_.end();) {
      Address h{}, u{};
      std::string lf;
      if (mqtt::parse_channel_topic(it->topic, h, u, lf) && (lf == "update" || lf == "reply")) {
        any = true;
        it = msgs_.erase(it);
      } else {
        ++it;
      }
    }
    return any;
  }

  void send_sync() { send_sync_state(latest_); }
  void send_sync_state(const SignedChannelState& st) {
    mqtt::Reply r;
    r.kind = mqtt::ReplyKind::Sync;
    r.txCountGlobal = st.state.txCountGlobal;
    r.state = st;
    send_reply(r);
  }
  void send_reply(const mqtt::Reply& r) {
    std::vector<uint8_t> out;
    ASSERT_EQ(mqtt::encode_reply(r, out), Status::Ok);
    mqtt::PublishProps p;
    p.correlation = mqtt::correlation_encode(r.txCountGlobal);
    ASSERT_TRUE(hub_client_->publish(mqtt::topic_reply(me_.addr), out.data(), out.size(), 1, false, &p));
  }
  void publish_request_bytes(const uint8_t* b, size_t n) {
    mqtt::PublishProps p;
    p.response_topic = mqtt::topic_hub_reply(hub_.addr, me_.addr);
    ASSERT_TRUE(hub_client_->publish(mqtt::topic_request(me_.addr), b, n, 1, false, &p));
  }
  // A HubRequest for `u` (reason + args), signed with `key` (default: the hub's).
  uint64_t request(const ChannelUpdate& u, const PrivateKey* key = nullptr, const Address* user = nullptr,
                   uint64_t id = 0) {
    HubRequest q{};
    q.contractAddress = contract_;
    q.user = user ? *user : me_.addr;
    q.requestId = id ? id : ++request_id_;
    q.update = u;
    q.update.txCountGlobal = 0;
    std::memset(&q.update.sig, 0, sizeof q.update.sig);
    EXPECT_EQ(hub_request_sign(signer_, key ? *key : hub_.key, q), Status::Ok);
    uint8_t buf[kMaxHubRequestWire];
    size_t n = 0;
    EXPECT_EQ(encode_hub_request(q, buf, sizeof buf, &n), Status::Ok);
    publish_request_bytes(buf, n);
    return q.requestId;
  }
  // The agent's RequestNack of request `id`: its status, or Ok if none came.
  Status take_request_nack(uint64_t id) {
    mqtt::Message m;
    if (!next("reply", m)) return Status::Ok;
    mqtt::Reply r;
    EXPECT_EQ(mqtt::decode_reply(m.payload.data(), m.payload.size(), r), Status::Ok);
    EXPECT_EQ(r.kind, mqtt::ReplyKind::RequestNack);
    EXPECT_EQ(r.txCountGlobal, id);
    EXPECT_EQ(r.state.state, latest_.state) << "the RequestNack does not carry the agent's latest state";
    return r.status;
  }

  ThreadSet thread_set(std::vector<ThreadState>& items, std::vector<Hash32>& scratch) {
    items = threads_;
    items.resize(threads_.size() + 1);
    scratch.resize(items.size() + 2);
    return ThreadSet{items.data(), threads_.size(), items.size(), scratch.data()};
  }
  // Takes the agent's next proposed update, checks it as the hub would and answers it:
  // Ack (countersigned; `latest_` advances) or, if `ack` is false, nothing.
  ChannelUpdate take_update(bool ack = true) {
    mqtt::Message m;
    ChannelUpdate u{};
    EXPECT_TRUE(next("update", m)) << log();
    EXPECT_EQ(decode_channel_update(m.payload.data(), m.payload.size(), u), Status::Ok);
    if (!ack) return u;
    std::vector<ThreadState> items;
    std::vector<Hash32> scratch;
    ThreadSet ts = thread_set(items, scratch);
    ChannelContext ctx{hub_.addr};
    ChannelState nx{};
    Hash32 h{};
    EXPECT_EQ(channel_accept(ctx, signer_, Party::Hub, latest_.state, ts, u, nx, h), Status::Ok);
    mqtt::Reply r;
    r.kind = mqtt::ReplyKind::Ack;
    r.txCountGlobal = u.txCountGlobal;
    EXPECT_EQ(signer_.sign_eth(hub_.key, h, r.sig), Status::Ok);
    send_reply(r);
    latest_.state = nx;
    latest_.sigUser = u.sig;
    latest_.sigHub = r.sig;
    latest_.hasSigUser = latest_.hasSigHub = true;
    if (thread_set_apply(ts, u) == Status::Ok) {
      items.resize(ts.count);
      threads_ = items;
    }
    return u;
  }

  // A Tasmota SENSOR reading (cumulative kWh) on the agent's meter topic.
  void meter_kwh(const char* total) {
    const std::string j = std::string("{\"ENERGY\":{\"Total\":") + total + "}}";
    ASSERT_TRUE(hub_client_->publish(kMeterTopic, j, 1, false));
  }
  static constexpr const char* kMeterTopic = "tele/guard/SENSOR";
  std::vector<std::string> payer_opts() {
    return {"--meter", std::string("tasmota:") + kMeterTopic, "--price-wei", "1", "--deposit-wei", "1000"};
  }

  // A payer agent (price 1 wei/Wh, Tasmota meter) that deposits 1000 wei of its own on
  // chain: ProposePendingDeposit, userAuthorizedUpdate, ConfirmPending (txCountGlobal 2).
  // Returns the double-signed state 1 (for replays).
  SignedChannelState start_funded_payer() {
    start_agent("payer", payer_opts());
    mqtt::Message m;
    EXPECT_TRUE(next("sync", m));
    send_sync();
    ChannelUpdate dep = take_update();
    EXPECT_EQ(dep.reason, UpdateReason::ProposePendingDeposit);
    EXPECT_EQ(dep.deposit.depositWeiUser, U256::from_u64(1000));
    const SignedChannelState one = latest_;
    ChannelUpdate conf = take_update();
    EXPECT_EQ(conf.reason, UpdateReason::ConfirmPending);
    EXPECT_TRUE(poll_until([&] { return load().channel.state.txCountGlobal == 2; }, 30000)) << log();
    EXPECT_EQ(load().channel.state.balanceWeiUser, U256::from_u64(1000));
    return one;
  }

  // A payee agent with `wei` of hub collateral: the hub requests the deposit, the payee
  // proposes it, the hub executes it on chain (hubAuthorizedUpdate) and requests
  // ConfirmPending, which the payee proposes once it sees the deposit on chain.
  void start_payee_with_collateral(uint64_t wei, const std::vector<std::string>& extra = {}) {
    start_agent("payee", extra);
    mqtt::Message m;
    ASSERT_TRUE(next("sync", m));
    send_sync();
    ChannelUpdate dep = channel_update_make(UpdateReason::ProposePendingDeposit);
    dep.deposit.depositWeiHub = U256::from_u64(wei);
    dep.deposit.timeout = unix_now() + 3600;
    request(dep);
    ChannelUpdate got = take_update();
    ASSERT_EQ(got.reason, UpdateReason::ProposePendingDeposit);
    auto rc = cm_->hub_authorized_update(latest_.state, latest_.sigUser);
    ASSERT_TRUE(rc.ok()) << rc.error().to_string();
    ChannelUpdate conf = channel_update_make(UpdateReason::ConfirmPending);
    conf.chainTx.transactionHash = rc->transactionHash;
    request(conf);
    got = take_update();
    ASSERT_EQ(got.reason, UpdateReason::ConfirmPending);
    ASSERT_TRUE(poll_until([&] { return load().channel.state.balanceWeiHub == U256::from_u64(wei); }, 30000)) << log();
  }
  static uint64_t unix_now() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  }

  // A thread from payer_ to me_ (threadId 1), signed by `key` (default: the payer's).
  SignedThreadState thread(uint64_t sender_wei, uint64_t receiver_wei, uint64_t tx, const PrivateKey* key = nullptr) {
    SignedThreadState t{};
    t.state = thread_state_zero();
    t.state.contractAddress = contract_;
    t.state.sender = payer_.addr;
    t.state.receiver = me_.addr;
    t.state.threadId = 1;
    t.state.balanceWeiSender = U256::from_u64(sender_wei);
    t.state.balanceWeiReceiver = U256::from_u64(receiver_wei);
    t.state.txCount = tx;
    EXPECT_EQ(signer_.sign_eth(key ? *key : payer_.key, thread_hash(t.state), t.sigA), Status::Ok);
    t.hasSigA = true;
    return t;
  }
  void send_thread_payment(const ThreadState& prev, uint64_t wei, ThreadState& nx, ThreadUpdate& tu) {
    ASSERT_EQ(thread_propose(signer_, payer_.key, prev, U256::from_u64(wei), U256::zero(), tu, nx), Status::Ok);
    SignedThreadState full{};  // a thread payment carries the whole state (wire kind 0x06)
    full.state = nx;
    full.sigA = tu.sig;
    full.hasSigA = true;
    uint8_t buf[kMaxThreadStateWire];
    size_t n = 0;
    ASSERT_EQ(encode_thread_payment(full, buf, sizeof buf, &n), Status::Ok);
    ASSERT_TRUE(hub_client_->publish(mqtt::topic_thread_update(me_.addr), buf, n, 1, false));
  }
  void send_close_request(const SignedThreadState& st) {
    uint8_t buf[kMaxThreadStateWire];
    size_t n = 0;
    ASSERT_EQ(encode_thread_state(st, buf, sizeof buf, &n), Status::Ok);
    ASSERT_TRUE(hub_client_->publish(mqtt::topic_thread_update(me_.addr), buf, n, 1, false));
  }
  SignedChannelState signed_state(const ChannelState& st, const PrivateKey& user_key, const PrivateKey& hub_key) {
    SignedChannelState out{};
    out.state = st;
    const Hash32 h = channel_hash(st);
    EXPECT_EQ(signer_.sign_eth(user_key, h, out.sigUser), Status::Ok);
    EXPECT_EQ(signer_.sign_eth(hub_key, h, out.sigHub), Status::Ok);
    out.hasSigUser = out.hasSigHub = true;
    return out;
  }

  // The agent pays 5 Wh at 1 wei/Wh to the hub (proof it still works).
  void expect_still_pays(const char* from_kwh, const char* to_kwh) {
    const U256 before = load().channel.state.balanceWeiUser;
    meter_kwh(from_kwh);
    meter_kwh(to_kwh);
    ChannelUpdate u = take_update();
    EXPECT_EQ(u.reason, UpdateReason::Payment);
    EXPECT_EQ(u.payment.amountWei, U256::from_u64(5));
    U256 after{};
    ASSERT_EQ(u256_sub(before, U256::from_u64(5), after), Status::Ok);
    EXPECT_TRUE(poll_until([&] { return load().channel.state.balanceWeiUser == after; }, 20000)) << log();
    EXPECT_TRUE(agent_.running());
  }

  static E2ENet* net_;
  static demo::DevChain* chain_;
  static chain::RpcClient* rpc_;
  static chain::Wallet* wallet_;
  static chain::ChannelManagerClient* cm_;
  static Address contract_;
  static Account hub_;
  static Account users_[kUsers];
  static int next_user_;

  Signer signer_;
  Account me_, payer_;
  std::string dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<mqtt::Client> hub_client_;
  Process agent_;
  SignedChannelState latest_{};
  std::vector<ThreadState> threads_;
  uint64_t request_id_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<mqtt::Message> msgs_;
};

E2ENet* MaliciousHub::net_ = nullptr;
demo::DevChain* MaliciousHub::chain_ = nullptr;
chain::RpcClient* MaliciousHub::rpc_ = nullptr;
chain::Wallet* MaliciousHub::wallet_ = nullptr;
chain::ChannelManagerClient* MaliciousHub::cm_ = nullptr;
Address MaliciousHub::contract_{};
Account MaliciousHub::hub_;
Account MaliciousHub::users_[kUsers];
int MaliciousHub::next_user_ = 0;

}  // namespace

// The attack this suite started from: a ProposePendingWithdrawal signed FIRST by the hub's
// key, moving the device's whole balance to a third address, published on the device's
// request topic. The device is the only proposer: it signs nothing, answers nothing, its
// state is unchanged. Sent as a HubRequest instead, it is refused (NotRequested: the user
// never asked to withdraw). On chain, the hub key alone cannot take the device's wei:
// hubAuthorizedUpdate with that state and a forged user signature reverts, and the
// device's on-chain balance stays.
TEST_F(MaliciousHub, WithdrawalOfTheDevicesBalanceToAThirdAddressIsNeverSigned) {
  start_funded_payer();
  ASSERT_FALSE(HasFailure());
  const std::string before = status();
  const Account& thief = users_[kUsers - 1];

  ChannelUpdate w = channel_update_make(UpdateReason::ProposePendingWithdrawal);
  w.withdrawal.recipient = thief.addr;
  w.withdrawal.withdrawalWeiUser = U256::from_u64(1000);
  w.withdrawal.timeout = unix_now() + 3600;
  // 1. Hub-signed first, as the old protocol let a hub propose.
  {
    std::vector<ThreadState> items;
    std::vector<Hash32> scratch;
    ThreadSet ts = thread_set(items, scratch);
    ChannelContext ctx{hub_.addr};
    ChannelState nx{};
    ChannelUpdate hubfirst = w;
    ASSERT_EQ(channel_propose(ctx, signer_, hub_.key, Party::Hub, latest_.state, ts, hubfirst, nx), Status::Ok);
    uint8_t buf[kMaxChannelUpdateWire];
    size_t n = 0;
    ASSERT_EQ(encode_channel_update(hubfirst, buf, sizeof buf, &n), Status::Ok);
    publish_request_bytes(buf, n);
  }
  // 2. The same as a HubRequest.
  const uint64_t id = request(w);
  EXPECT_EQ(take_request_nack(id), Status::NotRequested) << log();
  EXPECT_FALSE(agent_said_something()) << "the agent signed or answered a hub-signed-first withdrawal";
  EXPECT_EQ(status(), before) << "the stored state changed";

  // On chain: the attacker builds the withdrawal state with a forged user signature.
  ChannelState steal = latest_.state;
  steal.txCountGlobal += 1;
  steal.txCountChain += 1;
  steal.recipient = thief.addr;
  steal.balanceWeiUser = U256::zero();
  steal.pendingWithdrawalWeiUser = U256::from_u64(1000);
  steal.timeout = unix_now() + 3600;
  Signature forged{};
  ASSERT_EQ(signer_.sign_eth(hub_.key, channel_hash(steal), forged), Status::Ok);
  auto rc = cm_->hub_authorized_update(steal, forged);
  EXPECT_FALSE(rc.ok()) << "hubAuthorizedUpdate took a state the user never signed";
  auto on = cm_->channel(me_.addr);
  ASSERT_TRUE(on.ok());
  EXPECT_EQ(on->weiUser, U256::from_u64(1000)) << "the device lost wei on chain";
  expect_still_pays("1.000", "1.005");
}

// Every other harmful request class, one after another at a funded payer: each gets a
// RequestNack with the policy's reason (or, for a forgery or another channel, no answer
// at all); nothing is signed; the stored state does not change; the agent still pays.
TEST_F(MaliciousHub, HarmfulRequestsAreRefusedAndChangeNothing) {
  start_funded_payer();
  ASSERT_FALSE(HasFailure());
  const std::string before = status();
  struct Case {
    const char* what;
    ChannelUpdate u;
    Status want;
  };
  std::vector<Case> cases;
  {
    ChannelUpdate u = channel_update_make(UpdateReason::Exchange);  // sell the user's wei at the hub's price
    u.exchange.seller = Party::User;
    u.exchange.weiToSell = U256::from_u64(500);
    u.exchange.exchangeRate = U256::from_u64(1);
    cases.push_back({"exchange the user never asked for", u, Status::NotRequested});
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingDeposit);
    u.deposit.depositWeiUser = U256::from_u64(5000);  // the user would have to pay it in
    u.deposit.timeout = unix_now() + 3600;
    cases.push_back({"user-side deposit the user never asked for", u, Status::NotRequested});
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingWithdrawal);
    u.withdrawal.recipient = users_[kUsers - 1].addr;
    u.withdrawal.withdrawalWeiUser = U256::from_u64(1);
    u.withdrawal.timeout = unix_now() + 3600;
    cases.push_back({"withdrawal of 1 wei to a third address", u, Status::NotRequested});
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::Payment);  // "pay me" from the hub's side
    u.payment.recipient = Party::Hub;
    u.payment.amountWei = U256::from_u64(900);
    cases.push_back({"payment to the hub the user did not decide", u, Status::NotRequested});
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::OpenThread);
    SignedThreadState t = thread(500, 0, 0, &me_.key);  // a thread with the user as sender
    t.state.sender = me_.addr;
    t.state.receiver = payer_.addr;
    ASSERT_EQ(signer_.sign_eth(me_.key, thread_hash(t.state), t.sigA), Status::Ok);
    u.thread.thread = t;
    cases.push_back({"OpenThread spending the user's balance", u, Status::NotRequested});
  }
  for (const auto& c : cases) {
    const uint64_t id = request(c.u);
    const Status got = take_request_nack(id);
    EXPECT_NE(got, Status::Ok) << c.what << ": not refused\n" << log();
    EXPECT_EQ(got, c.want) << c.what << ": " << status_name(got);
  }
  // EmptyChannel with nothing emptied on chain: the fact may still come, so the request
  // is kept (re-checked against the chain) and nothing is signed or answered.
  ChannelUpdate emp = channel_update_make(UpdateReason::EmptyChannel);
  request(emp);
  mqtt::Message m;
  EXPECT_FALSE(next("reply", m, 5000)) << "answered an EmptyChannel the chain does not show";
  EXPECT_FALSE(agent_said_something()) << "signed an EmptyChannel the chain does not show";
  // Forged: signed by another key; another channel's request; a replay of a refused id.
  request(emp, &payer_.key);
  const Address other = payer_.addr;
  request(emp, nullptr, &other);
  request(emp, nullptr, nullptr, 1);
  EXPECT_FALSE(next("reply", m, 2000)) << "a forged, foreign or replayed request was answered";
  EXPECT_FALSE(agent_said_something()) << "the agent proposed something it was not asked for";
  EXPECT_EQ(load().channel.state, latest_.state);
  EXPECT_FALSE(load().has_pending);
  EXPECT_EQ(status(), before) << "a refused request changed the stored state";
  expect_still_pays("1.000", "1.005");
}

// A device without chain access refuses what only the chain can prove (ConfirmPending,
// EmptyChannel) and says so: a RequestNack NeedsChain and a note in its status.
TEST_F(MaliciousHub, AgentWithoutChainRefusesWhatItCannotCheck) {
  start_agent("payer", {}, false);
  mqtt::Message m;
  ASSERT_TRUE(next("sync", m));
  send_sync();
  const uint64_t id = request(channel_update_make(UpdateReason::EmptyChannel));
  EXPECT_EQ(take_request_nack(id), Status::NeedsChain) << log();
  EXPECT_FALSE(agent_said_something());
  EXPECT_EQ(load().channel.state.txCountGlobal, 0u);
  EXPECT_TRUE(agent_.running());
}

// Payee: the hub asks to close a thread with an older payer-signed state (the initial
// one): that would take back payments already received. Refused (StaleState), nothing
// stored changes; the payer's own close request then makes the payee propose the close
// with its latest state.
TEST_F(MaliciousHub, PayeeRefusesACloseWithAnOlderThreadState) {
  start_payee_with_collateral(1000);
  ASSERT_FALSE(HasFailure());
  ChannelUpdate open = channel_update_make(UpdateReason::OpenThread);
  open.thread.thread = thread(100, 0, 0);
  request(open);
  ChannelUpdate got = take_update();
  ASSERT_EQ(got.reason, UpdateReason::OpenThread);
  ThreadState t1{};
  ThreadUpdate tu{};
  send_thread_payment(open.thread.thread.state, 40, t1, tu);
  ASSERT_TRUE(poll_until(
      [&] {
        auto s = load();
        return s.threads.size() == 1 && s.threads[0].latest.state.txCount == 1;
      },
      20000))
      << log();
  const std::string before = device::state_to_json(load());

  ChannelUpdate stale = channel_update_make(UpdateReason::CloseThread);
  stale.thread.thread = open.thread.thread;
  const uint64_t id = request(stale);
  EXPECT_EQ(take_request_nack(id), Status::StaleState) << log();
  EXPECT_FALSE(agent_said_something());
  const device::AgentState after = load();
  EXPECT_EQ(after.channel.state, latest_.state);
  EXPECT_EQ(after.threads[0].latest.state, t1);

  SignedThreadState closing{};
  closing.state = t1;
  closing.sigA = tu.sig;
  closing.hasSigA = true;
  send_close_request(closing);
  got = take_update();
  ASSERT_EQ(got.reason, UpdateReason::CloseThread);
  EXPECT_EQ(got.thread.thread.state, t1);
  ASSERT_TRUE(poll_until([&] { return load().channel.state.threadCount == 0; }, 20000)) << log();
  auto s = load();
  EXPECT_EQ(s.channel.state.balanceWeiUser, U256::from_u64(40));
  EXPECT_EQ(s.channel.state.balanceWeiHub, U256::from_u64(960));
  (void)before;
}

// A close request (ThreadState on the payee's thread topic) that is not signed by the
// payer, or carries a state older than the payee's latest, changes nothing.
TEST_F(MaliciousHub, ForgedOrStaleCloseRequestChangesNothing) {
  start_payee_with_collateral(1000);
  ASSERT_FALSE(HasFailure());
  ChannelUpdate open = channel_update_make(UpdateReason::OpenThread);
  open.thread.thread = thread(100, 0, 0);
  request(open);
  ASSERT_EQ(take_update().reason, UpdateReason::OpenThread);
  ThreadState t1{}, t2{};
  ThreadUpdate tu{};
  send_thread_payment(open.thread.thread.state, 40, t1, tu);
  ASSERT_TRUE(poll_until([&] { auto s = load(); return s.threads.size() == 1 && s.threads[0].latest.state.txCount == 1; }, 20000));
  SignedThreadState forged{};
  forged.state = t1;
  ASSERT_EQ(signer_.sign_eth(hub_.key, thread_hash(t1), forged.sigA), Status::Ok);
  forged.hasSigA = true;
  send_close_request(forged);
  send_close_request(open.thread.thread);
  send_thread_payment(t1, 10, t2, tu);  // processed after the two requests above (one topic, in order)
  ASSERT_TRUE(poll_until([&] { auto s = load(); return s.threads.size() == 1 && s.threads[0].latest.state.txCount == 2; }, 20000));
  auto s = load();
  EXPECT_FALSE(s.threads[0].closing) << "a forged or stale close request was acted on";
  EXPECT_TRUE(s.threads[0].open);
  EXPECT_FALSE(agent_said_something());
}

// docs/soak.md finding 1: thread payments the payee never got (the broker lost them, the
// payer died before sending) do not block the later ones: each carries the payer's whole
// state. A payment in the old increment form (kind 0x04) is refused with a clear line.
TEST_F(MaliciousHub, PayeeConvergesAfterLostThreadPaymentsAndRefusesTheOldForm) {
  start_payee_with_collateral(1000);
  ASSERT_FALSE(HasFailure());
  ChannelUpdate open = channel_update_make(UpdateReason::OpenThread);
  open.thread.thread = thread(100, 0, 0);
  request(open);
  ASSERT_EQ(take_update().reason, UpdateReason::OpenThread);
  ThreadState t1{}, t2{}, t3{}, t4{};
  ThreadUpdate tu{};
  send_thread_payment(open.thread.thread.state, 10, t1, tu);
  ASSERT_TRUE(poll_until([&] { auto s = load(); return s.threads.size() == 1 && s.threads[0].latest.state.txCount == 1; }, 20000)) << log();
  // Payments 2 and 3 are signed but lost.
  ASSERT_EQ(thread_propose(signer_, payer_.key, t1, U256::from_u64(5), U256::zero(), tu, t2), Status::Ok);
  ASSERT_EQ(thread_propose(signer_, payer_.key, t2, U256::from_u64(7), U256::zero(), tu, t3), Status::Ok);
  // The old form of payment 4 is refused.
  ThreadUpdate old{};
  ASSERT_EQ(thread_propose(signer_, payer_.key, t3, U256::from_u64(1), U256::zero(), old, t4), Status::Ok);
  uint8_t buf[kMaxThreadUpdateWire];
  size_t n = 0;
  ASSERT_EQ(encode_thread_update(old, buf, sizeof buf, &n), Status::Ok);
  ASSERT_TRUE(hub_client_->publish(mqtt::topic_thread_update(me_.addr), buf, n, 1, false));
  ASSERT_TRUE(poll_until([&] { return log().find("wire kind 0x04") != std::string::npos; }, 20000)) << log();
  EXPECT_EQ(load().threads[0].latest.state, t1);
  // Payment 4 in the current form brings the payee to the payer's state.
  send_thread_payment(t3, 1, t4, tu);
  ASSERT_TRUE(poll_until([&] { auto s = load(); return s.threads[0].latest.state.txCount == 4; }, 20000)) << log();
  EXPECT_EQ(load().threads[0].latest.state, t4);
  EXPECT_EQ(load().threads[0].latest.state.balanceWeiReceiver, U256::from_u64(23));
}

// picopay-agent with a tower configured (docs/tower.md) hands its latest double-signed
// state to the real picopay-tower and goes offline; the hub then exits with an older state
// that gives the hub everything. The tower answers with the state the agent handed over:
// on chain the exit is recorded at that state, the payee's 40 wei with it.
TEST_F(MaliciousHub, TowerAnswersTheHubsStaleExitWithTheStateTheOfflineAgentHandedOver) {
  const Account& tower = users_[kUsers - 2];  // a funded dev-chain account: pays gas only
  Process tower_proc;
  const std::vector<std::string> targv = {PICOPAY_TOWER_BIN,
                                          "--broker-port", std::to_string(broker_->port()),
                                          "--contract", mqtt::topic_address(contract_),
                                          "--hub", mqtt::topic_address(hub_.addr),
                                          "--rpc-url", chain_->url(),
                                          "--interval-ms", "200",
                                          "--db", dir_ + "/tower.db",
                                          "--verbose"};
  ASSERT_TRUE(tower_proc.start(targv, dir_ + "/tower.log", {"PICOPAY_TOWER_PRIVATE_KEY=" + tower.hex}));
  ASSERT_TRUE(poll_until([&] { return read_file(dir_ + "/tower.log").find("guards") != std::string::npos; }, 30000))
      << read_file(dir_ + "/tower.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // its SUBSCRIBE

  start_payee_with_collateral(1000, {"--tower", mqtt::topic_address(tower.addr), "--tower-interval-ms", "200", "-v"});
  ASSERT_FALSE(HasFailure());
  const SignedChannelState stale = latest_;  // txCountGlobal 2: hub 1000, payee 0
  ASSERT_EQ(stale.state.txCountGlobal, 2u);
  ASSERT_EQ(stale.state.timeout, 0u);
  // A thread pays the payee 40 wei and is closed: txCountGlobal 4, hub 960, payee 40.
  ChannelUpdate open = channel_update_make(UpdateReason::OpenThread);
  open.thread.thread = thread(100, 0, 0);
  request(open);
  ASSERT_EQ(take_update().reason, UpdateReason::OpenThread);
  ThreadState t1{};
  ThreadUpdate tu{};
  send_thread_payment(open.thread.thread.state, 40, t1, tu);
  ASSERT_TRUE(poll_until([&] { auto s = load(); return s.threads.size() == 1 && s.threads[0].latest.state.txCount == 1; }, 20000)) << log();
  // The tower holds the open thread's state (the payee handed it over, signed).
  ASSERT_TRUE(poll_until([&] { return log().find("tower holds thread") != std::string::npos; }, 30000))
      << log() << read_file(dir_ + "/tower.log");
  SignedThreadState closing{};
  closing.state = t1;
  closing.sigA = tu.sig;
  closing.hasSigA = true;
  send_close_request(closing);
  ASSERT_EQ(take_update().reason, UpdateReason::CloseThread);
  ASSERT_EQ(latest_.state.txCountGlobal, 4u);
  ASSERT_EQ(latest_.state.balanceWeiUser, U256::from_u64(40));
  // The agent hands txCountGlobal 4 over; the tower's signed ack says it holds it.
  ASSERT_TRUE(poll_until([&] { return log().find("holds txCountGlobal 4") != std::string::npos; }, 30000))
      << log() << read_file(dir_ + "/tower.log");
  // The thread is closed in state 4, which the tower holds: the payee releases it and the
  // tower frees its row (its signed Released ack is what the agent logs).
  ASSERT_TRUE(poll_until([&] { return log().find("tower released thread") != std::string::npos; }, 30000))
      << log() << read_file(dir_ + "/tower.log");
  EXPECT_NE(read_file(dir_ + "/tower.log").find("released thread " + std::to_string(open.thread.thread.state.threadId) + " "), std::string::npos) << read_file(dir_ + "/tower.log");
  agent_.kill9();  // offline: it cannot answer the exit itself

  auto rc = cm_->start_exit_with_update(stale);
  ASSERT_TRUE(rc.ok()) << rc.error().to_string();
  chain::OnchainChannel oc;
  ASSERT_TRUE(poll_until(
      [&] {
        auto c = cm_->channel(me_.addr);
        if (!c.ok()) return false;
        oc = *c;
        return oc.txCountGlobal == 4;
      },
      60000))
      << "the tower did not answer: on chain txCountGlobal " << oc.txCountGlobal << "\n"
      << read_file(dir_ + "/tower.log");
  oc = *cm_->channel(me_.addr);  // both halves from one block
  EXPECT_EQ(oc.status, chain::ChannelStatus::ChannelDispute);
  EXPECT_EQ(oc.weiUser, U256::from_u64(40));
  EXPECT_EQ(oc.weiHub, U256::from_u64(960));
  EXPECT_TRUE(tower_proc.running()) << read_file(dir_ + "/tower.log");
  tower_proc.terminate(5000);
}

// A payee that does not accept incoming threads (role payer) refuses the mirror
// OpenThread: the hub's funds would be locked toward it for nothing.
TEST_F(MaliciousHub, PayerRefusesAnIncomingThread) {
  start_funded_payer();
  ASSERT_FALSE(HasFailure());
  ChannelUpdate open = channel_update_make(UpdateReason::OpenThread);
  open.thread.thread = thread(100, 0, 0);
  const uint64_t id = request(open);
  EXPECT_NE(take_request_nack(id), Status::Ok);
  EXPECT_FALSE(agent_said_something());
}

// A Sync reply is untrusted (the broker may forge or replay it): an older double-signed
// state, a forged hub signature, another channel, our txCountGlobal with other contents
// and a newer double-signed state the agent never proposed are each ignored. The agent
// keeps running, its stored state is unchanged, and after the hub's real Sync it pays.
TEST_F(MaliciousHub, ForgedReplayedOrForeignSyncChangesNothingAndTheAgentStillPays) {
  const SignedChannelState one = start_funded_payer();
  ASSERT_FALSE(HasFailure());
  agent_.kill9();
  start_agent("payer", payer_opts());
  mqtt::Message m;
  ASSERT_TRUE(next("sync", m));
  const std::string before = status();
  ASSERT_EQ(load().channel.state.txCountGlobal, 2u) << before;

  ChannelState paid = latest_.state;
  paid.txCountGlobal = 3;
  paid.balanceWeiUser = U256::from_u64(990);
  paid.balanceWeiHub = U256::from_u64(10);
  std::vector<SignedChannelState> bad;
  bad.push_back(one);
  bad.push_back(signed_state(paid, me_.key, payer_.key));
  SignedChannelState unsigned_paid{};
  unsigned_paid.state = paid;
  bad.push_back(unsigned_paid);
  ChannelState other_user = paid;
  other_user.user = other_user.recipient = payer_.addr;
  bad.push_back(signed_state(other_user, payer_.key, hub_.key));
  ChannelState other_contract = paid;
  other_contract.contractAddress = hub_.addr;
  bad.push_back(signed_state(other_contract, me_.key, hub_.key));
  ChannelState same_tx = latest_.state;
  same_tx.balanceWeiUser = U256::from_u64(1);
  same_tx.balanceWeiHub = U256::from_u64(999);
  bad.push_back(signed_state(same_tx, me_.key, hub_.key));
  for (const auto& b : bad) send_sync_state(b);
  // Newer, double-signed, never proposed: the agent stops signing (a person must look).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(agent_.running()) << "a forged or replayed Sync stopped the agent:\n" << log();
  EXPECT_EQ(status(), before) << "a forged or replayed Sync changed the stored state";
  EXPECT_FALSE(agent_said_something());

  send_sync();
  expect_still_pays("1.000", "1.005");
}

// Every Nack carries the hub's latest state; it is untrusted like a Sync. Forged or
// replayed Nacks of the pending payment change nothing, do not count as refusals (61 of
// those stop the agent), and the payment completes once the hub acknowledges it.
TEST_F(MaliciousHub, ForgedOrReplayedNacksChangeNothingAndTheAgentStillPays) {
  const SignedChannelState one = start_funded_payer();
  ASSERT_FALSE(HasFailure());
  meter_kwh("1.000");
  meter_kwh("1.005");
  ChannelUpdate u = take_update(false);
  ASSERT_EQ(u.reason, UpdateReason::Payment);
  ASSERT_EQ(u.txCountGlobal, 3u);
  ASSERT_TRUE(poll_until([&] { return load().has_pending; }, 20000));
  const std::string before = status();

  ChannelState other_user = latest_.state;
  other_user.user = other_user.recipient = payer_.addr;
  ChannelState same_tx = latest_.state;
  same_tx.balanceWeiUser = U256::from_u64(1);
  same_tx.balanceWeiHub = U256::from_u64(999);
  ChannelState paid = latest_.state;
  paid.txCountGlobal = 3;
  paid.balanceWeiUser = U256::from_u64(990);
  paid.balanceWeiHub = U256::from_u64(10);
  const std::vector<SignedChannelState> states = {one, signed_state(other_user, payer_.key, hub_.key),
                                                  signed_state(same_tx, me_.key, hub_.key),
                                                  signed_state(paid, me_.key, payer_.key)};
  for (int round = 0; round < 16; ++round)  // 64 > the 60 refusals the agent tolerates
    for (const auto& st : states) {
      mqtt::Reply r;
      r.kind = mqtt::ReplyKind::Nack;
      r.txCountGlobal = u.txCountGlobal;
      r.status = Status::PendingOperation;
      r.state = st;
      send_reply(r);
    }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(agent_.running()) << "forged or replayed Nacks stopped the agent:\n" << log();
  EXPECT_EQ(log_count("hub refused"), 0u) << log();
  EXPECT_EQ(status(), before) << "a forged or replayed Nack changed the stored state";

  ChannelUpdate again = take_update();  // the same bytes again
  EXPECT_EQ(again.txCountGlobal, 3u);
  EXPECT_EQ(again.sig, u.sig);
  ASSERT_TRUE(poll_until([&] { return load().channel.state.txCountGlobal == 3; }, 20000));
  EXPECT_EQ(load().channel.state.balanceWeiUser, U256::from_u64(995));
  EXPECT_FALSE(load().has_pending);
}

// The one newer state a Sync may bring: the agent's own pending proposal, countersigned
// by the hub (the agent restarted before the Ack arrived). It is adopted as if acked.
TEST_F(MaliciousHub, SyncWithOurCountersignedPendingProposalCompletesIt) {
  start_funded_payer();
  ASSERT_FALSE(HasFailure());
  meter_kwh("1.000");
  meter_kwh("1.005");
  ChannelUpdate u = take_update(false);
  ASSERT_EQ(u.txCountGlobal, 3u);
  ASSERT_TRUE(poll_until([&] { return load().has_pending; }, 20000));
  agent_.kill9();
  ChannelState paid = latest_.state;
  paid.txCountGlobal = 3;
  paid.balanceWeiUser = U256::from_u64(995);
  paid.balanceWeiHub = U256::from_u64(5);
  SignedChannelState hub_has{};
  hub_has.state = paid;
  hub_has.sigUser = u.sig;
  ASSERT_EQ(signer_.sign_eth(hub_.key, channel_hash(paid), hub_has.sigHub), Status::Ok);
  hub_has.hasSigUser = hub_has.hasSigHub = true;
  start_agent("payer", payer_opts());
  mqtt::Message m;
  ASSERT_TRUE(next("sync", m));
  send_sync_state(hub_has);
  ASSERT_TRUE(poll_until([&] { return load().channel.state.txCountGlobal == 3; }, 20000)) << log();
  auto s = load();
  EXPECT_FALSE(s.has_pending);
  EXPECT_EQ(s.channel.state, paid);
  EXPECT_EQ(s.channel.sigHub, hub_has.sigHub);
  EXPECT_EQ(s.units_paid, 5u);
  EXPECT_TRUE(agent_.running());
}

// Role both: the hub's collateral may arrive before the device's own deposit (the channel
// then already has txCountChain > 0). The device still makes its own first deposit.
TEST_F(MaliciousHub, RoleBothDepositsWhenTheHubsCollateralCameFirst) {
  start_payee_with_collateral(1000);
  ASSERT_FALSE(HasFailure());
  agent_.kill9();
  ASSERT_GT(load().channel.state.txCountChain, 0u);
  start_agent("both", payer_opts());
  mqtt::Message m;
  ASSERT_TRUE(next("sync", m));
  send_sync();
  ChannelUpdate dep = take_update();
  ASSERT_EQ(dep.reason, UpdateReason::ProposePendingDeposit) << log();
  EXPECT_EQ(dep.deposit.depositWeiUser, U256::from_u64(1000));
  EXPECT_TRUE(dep.deposit.depositWeiHub.is_zero());
  ChannelUpdate conf = take_update();
  EXPECT_EQ(conf.reason, UpdateReason::ConfirmPending);
  ASSERT_TRUE(poll_until([&] { return load().channel.state.balanceWeiUser == U256::from_u64(1000); }, 30000)) << log();
  EXPECT_EQ(load().channel.state.balanceWeiHub, U256::from_u64(1000));
  expect_still_pays("1.000", "1.005");
}

// A contract address that holds no ChannelManager of our hub (a typo, a plain account,
// another hub's manager) is refused at start with one clear line: a deposit there would
// be lost.
TEST_F(MaliciousHub, AgentRefusesAContractThatIsNotOurHubsChannelManager) {
  const std::string out = dir_ + "/not-a-manager.out";
  const int rc = run_command({PICOPAY_AGENT_BIN, "--state-dir", dir_ + "/agent2", "--broker",
                              "127.0.0.1:" + std::to_string(broker_->port()), "--hub", mqtt::topic_address(hub_.addr),
                              "--contract", mqtt::topic_address(payer_.addr), "--key", me_.hex, "--rpc", chain_->url(),
                              "--deposit-wei", "1000"},
                             out);
  EXPECT_NE(rc, 0);
  EXPECT_NE(read_file(out).find("no contract code at"), std::string::npos) << read_file(out);
  auto on = cm_->channel(me_.addr);
  ASSERT_TRUE(on.ok());
  EXPECT_TRUE(on->weiTotal.is_zero());
}

namespace {

// Fills the file system holding `dir` to the last byte with `dir`/filler (ENOSPC then).
bool fill_up(const std::string& dir) {
  const int fd = ::open((dir + "/filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  std::vector<char> buf(4096, 'x');
  for (size_t chunk : {size_t{4096}, size_t{1}})
    while (::write(fd, buf.data(), chunk) == static_cast<ssize_t>(chunk)) {
    }
  const bool full = errno == ENOSPC;
  ::fsync(fd);
  ::close(fd);
  return full;
}

}  // namespace

// The state directory's file system fills up while the agent pays. The payment it was
// about to propose cannot be persisted, so it never leaves (nothing is sent), the agent
// says so in one line ("cannot persist state: No space left on device", not a misleading
// "balance too low") and exits non-zero; the stored state is the last one, intact. With
// space again, a restarted agent pays from that state.
TEST_F(MaliciousHub, DiskFullStopsPayingWithOneClearLineAndCorruptsNothing) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs for the state directory";
  const std::string mnt = dir_ + "/agent";
  ASSERT_EQ(::mkdir(mnt.c_str(), 0700), 0);
  ASSERT_EQ(::mount("tmpfs", mnt.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700"), 0)
      << std::strerror(errno);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  start_funded_payer();
  ASSERT_FALSE(HasFailure());
  meter_kwh("1.000");  // the meter's baseline, stored
  ASSERT_TRUE(poll_until([&] { return load().meter.has_last; }, 20000)) << log();
  const device::AgentState before = load();
  const std::string status_before = status();
  ASSERT_TRUE(fill_up(mnt));
  (void)agent_said_something();  // drain
  meter_kwh("1.005");  // 5 Wh due: the payment's record cannot be written
  const int rc = agent_.wait(30000);
  EXPECT_NE(rc, -2) << "the agent kept running on a full disk\n" << log();
  EXPECT_NE(rc, 0);
  const std::string l = log();
  EXPECT_EQ(log_count("cannot persist state: No space left on device"), 1u) << l;
  EXPECT_EQ(l.find("balance too low"), std::string::npos) << l;
  EXPECT_FALSE(agent_said_something()) << "an update left without being persisted first";
  // The stored record is the last one, readable and unchanged.
  EXPECT_EQ(status(), status_before);
  EXPECT_EQ(load().channel.state, before.channel.state);

  // Space again: the agent resumes from the stored state and pays.
  ASSERT_EQ(std::remove((mnt + "/filler").c_str()), 0);
  start_agent("payer", payer_opts());
  mqtt::Message m;
  ASSERT_TRUE(next("sync", m));
  send_sync();
  expect_still_pays("1.000", "1.005");  // the lost reading comes again: the meter is cumulative
  agent_.kill9();
}
