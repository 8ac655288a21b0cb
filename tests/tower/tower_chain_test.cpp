// picopay-tower end to end: a ganache dev chain (one per suite, a ChannelManager deployed
// per test), a real mosquitto with the tower's ACL lines, the real picopay-tower binary,
// a device that hands its latest double-signed state over MQTT and goes offline, and the
// test acting as a malicious hub (with the hub key) that starts an exit with an older
// state. Every state is built and signed by the C++ core. No timing assertions; every
// wait is bounded. The time from the hub's exit transaction to the tower's answer is
// printed (and written to <build>/tower-answer-ms.txt by the first test).
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include "devchain.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/codec.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/tower/protocol.hpp"
#include "support/broker.hpp"

using namespace picopay;
using namespace picopay::testsupport;

namespace {

const char* kHubKey = "0x1111111111111111111111111111111111111111111111111111111111111111";
const char* kUserKey = "0x2222222222222222222222222222222222222222222222222222222222222222";
const char* kUser2Key = "0x3333333333333333333333333333333333333333333333333333333333333333";
const char* kTowerKey = "0x4444444444444444444444444444444444444444444444444444444444444444";
const char* kOtherKey = "0x5555555555555555555555555555555555555555555555555555555555555555";
constexpr uint64_t kChallenge = 3600;
constexpr uint64_t kDeposit = 1000;

U256 u(uint64_t v) { return U256::from_u64(v); }
U256 add(const U256& a, const U256& b) {
  U256 r;
  EXPECT_EQ(u256_add(a, b, r), Status::Ok);
  return r;
}
template <typename T>
T must(chain::Result<T> r, const char* what) {
  if (!r) ADD_FAILURE() << what << ": " << r.error().to_string();
  if (!r) std::abort();
  return std::move(*r);
}
#define MUST(expr) must((expr), #expr)

std::vector<uint8_t> wire(const SignedChannelState& s) {
  uint8_t b[kMaxChannelStateWire];
  size_t n = 0;
  EXPECT_EQ(encode_channel_state(s, b, sizeof b, &n), Status::Ok);
  return std::vector<uint8_t>(b, b + n);
}

// A device's (or attacker's) MQTT connection that collects the tower's acks.
class AckClient {
 public:
  bool start(int port, const std::string& user, const std::string& password, const std::string& ack_filter,
             std::string& err, const std::string& ack_filter2 = "") {
    mqtt::Options o;
    o.port = port;
    o.client_id = "test-" + user;
    o.username = user;
    o.password = password;
    o.clean_start = true;
    c_ = std::make_unique<mqtt::Client>(o);
    c_->on_message([this](const mqtt::Message& m) {
      std::lock_guard<std::mutex> lk(mu_);
      acks_.push_back(m);
      cv_.notify_all();
    });
    if (!ack_filter.empty()) c_->subscribe(ack_filter, 1);
    if (!ack_filter2.empty()) c_->subscribe(ack_filter2, 1);
    if (!c_->start(err)) return false;
    if (!c_->wait_connected(10000)) {
      err = "not connected: " + c_->last_error();
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // SUBACK
    return true;
  }
  void publish(const std::string& topic, const std::vector<uint8_t>& payload) {
    std::string err;
    ASSERT_TRUE(c_->publish(topic, payload.data(), payload.size(), 1, false, nullptr, &err)) << err;
  }
  // The next ack (bounded wait); false if none came.
  bool next(tower::Ack& a, int timeout_ms = 15000) {
    std::unique_lock<std::mutex> lk(mu_);
    if (!cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [this] { return !acks_.empty(); })) return false;
    mqtt::Message m = acks_.front();
    acks_.pop_front();
    return tower::decode_ack(m.payload.data(), m.payload.size(), a) == Status::Ok;
  }
  void stop() {
    if (c_) c_->stop();
  }

 private:
  std::unique_ptr<mqtt::Client> c_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<mqtt::Message> acks_;
};

class TowerChainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    chain_ = new test::DevChain();
    ASSERT_TRUE(chain_->start({kHubKey, kUserKey, kUser2Key, kTowerKey, kOtherKey})) << chain_->error();
  }
  static void TearDownTestSuite() {
    delete chain_;
    chain_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(chain_, nullptr);
    dir_ = make_temp_dir("picopay-tower");
    rpc_ = std::make_unique<chain::RpcClient>(chain_->url());
    hub_ = wallet(kHubKey);
    user_ = wallet(kUserKey);
    user2_ = wallet(kUser2Key);
    tower_ = wallet(kTowerKey);
    other_ = wallet(kOtherKey);
    chain::Artifact art = MUST(chain::load_artifact(std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/ChannelManager.json"));
    chain::Receipt r;
    cm_addr_ = MUST(chain::deploy_channel_manager(*hub_, art, hub_->address(), kChallenge, Address{}, &r));
    deploy_block_ = r.blockNumber;
    hubcm_ = std::make_unique<chain::ChannelManagerClient>(*hub_, cm_addr_);
    usercm_ = std::make_unique<chain::ChannelManagerClient>(*user_, cm_addr_);
    user2cm_ = std::make_unique<chain::ChannelManagerClient>(*user2_, cm_addr_);

    BrokerOptions o;
    o.users.push_back({"hub", "hub-pass"});
    o.users.push_back({"tower", "tower-pass"});
    o.users.push_back({mqtt::topic_address(user_->address()), "user-pass"});
    o.users.push_back({mqtt::topic_address(user2_->address()), "user2-pass"});
    // The shipped ACL holds the tower's lines (docs/tower.md).
    o.acl = picopay_acl("hub");
    o.dir = dir_ + "/broker";
    broker_ = std::make_unique<Broker>(o);
    std::string err;
    ASSERT_TRUE(broker_->start(err)) << err;
    ASSERT_TRUE(write_file(dir_ + "/broker.pass", "tower-pass\n"));
    ASSERT_EQ(::chmod((dir_ + "/broker.pass").c_str(), 0600), 0);  // a password file must be private
  }

  void TearDown() override {
    tower_proc_.terminate(5000);
    broker_.reset();
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s (tower.log)\n", dir_.c_str());
  }

  std::unique_ptr<chain::Wallet> wallet(const char* key) {
    PrivateKey k = MUST(chain::read_private_key_text(key));
    auto w = std::make_unique<chain::Wallet>(*rpc_, k);
    auto s = w->init();
    EXPECT_TRUE(s.ok()) << s.error().to_string();
    return w;
  }

  void start_tower() {
    std::vector<std::string> argv = {PICOPAY_TOWER_BIN,
                                     "--broker-port", std::to_string(broker_->port()),
                                     "--broker-user", "tower",
                                     "--broker-password-file", dir_ + "/broker.pass",
                                     "--contract", mqtt::topic_address(cm_addr_),
                                     "--hub", mqtt::topic_address(hub_->address()),
                                     "--rpc-url", chain_->url(),
                                     "--start-block", std::to_string(deploy_block_),
                                     "--interval-ms", "200",
                                     "--db", dir_ + "/tower.db",
                                     "--verbose"};
    ASSERT_TRUE(tower_proc_.start(argv, dir_ + "/tower.log", {std::string("PICOPAY_TOWER_PRIVATE_KEY=") + kTowerKey}));
    // Ready once it is subscribed: its first log line says what it guards.
    for (int i = 0; i < 300 && read_file(dir_ + "/tower.log").find("guards") == std::string::npos; ++i) {
      ASSERT_TRUE(tower_proc_.running()) << read_file(dir_ + "/tower.log");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_NE(read_file(dir_ + "/tower.log").find("guards"), std::string::npos) << read_file(dir_ + "/tower.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // its SUBSCRIBE
  }

  ChannelState base(const Address& user) {
    ChannelState s = channel_state_zero();
    s.contractAddress = cm_addr_;
    s.user = user;
    s.recipient = user;
    return s;
  }
  Signature sign(chain::Wallet& w, const ChannelState& s) { return MUST(w.sign_eth(channel_hash(s))); }
  SignedChannelState both(chain::Wallet& uw, const ChannelState& s) {
    SignedChannelState x{};
    x.state = s;
    x.hasSigHub = x.hasSigUser = true;
    x.sigHub = sign(*hub_, s);
    x.sigUser = sign(uw, s);
    return x;
  }
  uint64_t now() { return MUST(rpc_->block_by_number("latest")).timestamp; }

  // The hub puts kDeposit wei of collateral into the device's channel (user-signed
  // [1,1] executed by hubAuthorizedUpdate), then pays the device (a payee) `step` wei
  // `payments` times: states[i] has txCountGlobal 2 + i (states[0] holds the collateral),
  // all double-signed. An older state gives the hub more.
  std::vector<SignedChannelState> pay(chain::Wallet& uw, int payments, uint64_t step) {
    MUST(hubcm_->fund_reserve(u(kDeposit)));
    ChannelState s = base(uw.address());
    s.pendingDepositWeiHub = u(kDeposit);
    s.txCountGlobal = 1;
    s.txCountChain = 1;
    MUST(hubcm_->hub_authorized_update(s, sign(uw, s)));
    std::vector<SignedChannelState> out;
    ChannelState c = base(uw.address());
    c.balanceWeiHub = u(kDeposit);
    c.txCountGlobal = 2;
    c.txCountChain = 1;
    out.push_back(both(uw, c));
    for (int i = 1; i <= payments; ++i) {
      c.balanceWeiHub = u(kDeposit - step * static_cast<uint64_t>(i));
      c.balanceWeiUser = u(step * static_cast<uint64_t>(i));
      c.txCountGlobal = 2 + static_cast<uint64_t>(i);
      out.push_back(both(uw, c));
    }
    return out;
  }

  std::string state_topic(const Address& user) { return tower::topic_state(tower_->address(), user); }
  std::string ack_topic(const Address& user) { return tower::topic_ack(tower_->address(), user); }

  // Checks an ack is signed by the tower and names what it holds.
  void expect_ack(const tower::Ack& a, tower::AckResult result, Status reason, const Address& user,
                  const SignedChannelState* held) {
    EXPECT_EQ(a.result, result) << tower::ack_result_name(a.result) << " " << status_name(a.reason);
    EXPECT_EQ(a.reason, reason) << status_name(a.reason);
    EXPECT_EQ(a.txCountGlobal, held ? held->state.txCountGlobal : 0u);
    EXPECT_EQ(a.stateHash, held ? channel_hash(held->state) : Hash32{});
    Signer s;
    ASSERT_EQ(s.init(), Status::Ok);
    EXPECT_EQ(tower::verify_ack(a, cm_addr_, tower_->address(), user, s), Status::Ok);
    EXPECT_EQ(tower::verify_ack(a, cm_addr_, hub_->address(), user, s), Status::WrongSigner);
  }

  // The row the tower's SQLite file holds for `user` (empty if none).
  std::vector<uint8_t> db_row(const Address& user, int64_t& tx) {
    sqlite3* db = nullptr;
    std::vector<uint8_t> out;
    tx = -1;
    EXPECT_EQ(sqlite3_open_v2((dir_ + "/tower.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT tx_count_global, state FROM channels WHERE user = ?1", -1, &st, nullptr),
              SQLITE_OK);
    sqlite3_bind_blob(st, 1, user.bytes, 20, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
      tx = sqlite3_column_int64(st, 0);
      const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, 1));
      out.assign(p, p + sqlite3_column_bytes(st, 1));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }

  // Waits (bounded) until the channel on chain satisfies `pred`; `oc` is what was read.
  template <typename P>
  bool wait_channel(const Address& user, P pred, chain::OnchainChannel& oc, int timeout_ms = 30000) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < until) {
      oc = MUST(usercm_->channel(user));
      if (pred(oc)) {
        // channel() reads balances and details with two calls: read again now that the
        // block is in, so both halves come from the same state.
        oc = MUST(usercm_->channel(user));
        return pred(oc);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  static test::DevChain* chain_;
  std::string dir_;
  std::unique_ptr<chain::RpcClient> rpc_;
  std::unique_ptr<chain::Wallet> hub_, user_, user2_, tower_, other_;
  std::unique_ptr<chain::ChannelManagerClient> hubcm_, usercm_, user2cm_;
  Address cm_addr_{};
  uint64_t deploy_block_ = 0;
  std::unique_ptr<Broker> broker_;
  Process tower_proc_;
};
test::DevChain* TowerChainTest::chain_ = nullptr;

// The device hands its latest state and sleeps; the hub exits with an older one; the
// tower answers within the challenge period and empties the channel after it: the
// device gets exactly the balance of its latest state, the hub exactly its own.
TEST_F(TowerChainTest, StaleExitByTheHubIsAnsweredAndTheSleepingDeviceGetsEveryWei) {
  start_tower();
  std::vector<SignedChannelState> st = pay(*user_, 6, 40);  // txCountGlobal 2..8
  const SignedChannelState& latest = st.back();  // hub 760, user 240
  const SignedChannelState& stale = st[1];       // txCountGlobal 3: hub 960, user 40
  ASSERT_EQ(latest.state.txCountGlobal, 8u);

  AckClient device;
  std::string err;
  const std::string me = mqtt::topic_address(user_->address());
  ASSERT_TRUE(device.start(broker_->port(), me, "user-pass", ack_topic(user_->address()), err)) << err;
  device.publish(state_topic(user_->address()), wire(latest));
  tower::Ack a;
  ASSERT_TRUE(device.next(a)) << read_file(dir_ + "/tower.log");
  expect_ack(a, tower::AckResult::Stored, Status::Ok, user_->address(), &latest);
  device.stop();  // the device goes to sleep

  const U256 user0 = MUST(rpc_->balance(user_->address()));
  const U256 reserve0 = MUST(hubcm_->hub_reserve_wei());
  const U256 tower0 = MUST(rpc_->balance(tower_->address()));
  // The malicious hub exits with the older state (it would keep 200 wei it paid).
  MUST(hubcm_->start_exit_with_update(stale));
  const auto t0 = std::chrono::steady_clock::now();
  chain::OnchainChannel oc;
  ASSERT_TRUE(wait_channel(user_->address(), [](const chain::OnchainChannel& c) { return c.txCountGlobal == 8; }, oc))
      << "the tower did not answer; on chain txCountGlobal " << oc.txCountGlobal << "\n"
      << read_file(dir_ + "/tower.log");
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  std::printf("tower answered the stale exit %lld ms after the hub's exit transaction was mined (interval 200 ms)\n",
              static_cast<long long>(ms));
  std::ofstream(std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/../tower-answer-ms.txt") << ms << "\n";
  EXPECT_EQ(oc.status, chain::ChannelStatus::ChannelDispute);  // a third party: the period runs on
  EXPECT_LT(now(), oc.channelClosingTime);
  EXPECT_EQ(oc.weiHub, u(760));
  EXPECT_EQ(oc.weiUser, u(240));

  // After the challenge period the tower empties the channel itself.
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  ASSERT_TRUE(wait_channel(
      user_->address(), [](const chain::OnchainChannel& c) { return c.status == chain::ChannelStatus::Open; }, oc))
      << read_file(dir_ + "/tower.log");
  EXPECT_TRUE(oc.weiTotal.is_zero());
  EXPECT_EQ(oc.txCountGlobal, 8u);
  // Every wei: the sleeping device sent no transaction and got exactly 240; the hub's
  // reserve got exactly 760; the tower paid gas and gained nothing.
  EXPECT_EQ(MUST(rpc_->balance(user_->address())), add(user0, u(240)));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), add(reserve0, u(760)));
  EXPECT_LT(MUST(rpc_->balance(tower_->address())), tower0);
  EXPECT_TRUE(MUST(hubcm_->total_channel_wei()).is_zero());
}

// Forged, older, equivocating, misaddressed and malformed states handed to the tower
// (by the hub's account, which may publish anywhere) are refused or ignored; the held
// state stays the latest, and it is what answers the hub's stale exit.
TEST_F(TowerChainTest, ForgedOrOlderStatesAreNotStoredAndDoNotReplaceTheLatest) {
  start_tower();
  std::vector<SignedChannelState> st = pay(*user_, 5, 100);  // txCountGlobal 2..7
  const SignedChannelState latest = st.back();                          // hub 500, user 500
  const Address user = user_->address();

  AckClient device;
  std::string err;
  ASSERT_TRUE(device.start(broker_->port(), mqtt::topic_address(user), "user-pass", ack_topic(user), err)) << err;
  // Before anything is held: a refusal names nothing.
  std::vector<uint8_t> junk = {0x01, 0x01, 0x00};
  device.publish(state_topic(user), junk);
  tower::Ack a;
  ASSERT_TRUE(device.next(a)) << read_file(dir_ + "/tower.log");
  expect_ack(a, tower::AckResult::Refused, Status::Truncated, user, nullptr);
  device.publish(state_topic(user), wire(latest));
  ASSERT_TRUE(device.next(a));
  expect_ack(a, tower::AckResult::Stored, Status::Ok, user, &latest);

  AckClient attacker;  // the hub's account may publish on every picopay topic
  ASSERT_TRUE(attacker.start(broker_->port(), "hub", "hub-pass", "", err)) << err;
  struct Case {
    const char* what;
    SignedChannelState s;
    tower::AckResult result;
    Status reason;
  };
  std::vector<Case> cases;
  cases.push_back({"older double-signed state", st[2], tower::AckResult::Held, Status::Ok});
  cases.push_back({"the same state again", latest, tower::AckResult::Held, Status::Ok});
  {  // equivocation: another state with the latest txCountGlobal, both signatures valid
    ChannelState c = latest.state;
    c.balanceWeiHub = u(900);
    c.balanceWeiUser = u(100);  // less for the device
    cases.push_back({"same txCountGlobal, other balances", both(*user_, c), tower::AckResult::Held, Status::Ok});
  }
  ChannelState newer = latest.state;  // the hub would take everything back
  newer.balanceWeiHub = u(kDeposit);
  newer.balanceWeiUser = u(0);
  newer.txCountGlobal = 9;
  {
    SignedChannelState f = both(*user_, newer);
    f.sigUser = sign(*other_, newer);  // the user never signed it
    cases.push_back({"user signature forged", f, tower::AckResult::Refused, Status::WrongSigner});
  }
  {
    SignedChannelState f = both(*user_, newer);
    f.sigHub = sign(*other_, newer);  // not the contract's hub
    cases.push_back({"hub signature from another key", f, tower::AckResult::Refused, Status::WrongSigner});
  }
  {
    SignedChannelState f = both(*user_, newer);
    f.hasSigHub = false;
    cases.push_back({"hub signature missing", f, tower::AckResult::Refused, Status::BadArgs});
  }
  {
    SignedChannelState f = both(*user_, newer);
    f.sigUser = f.sigHub;  // a signature over the right state, by the wrong party
    cases.push_back({"hub signature in the user's place", f, tower::AckResult::Refused, Status::WrongSigner});
  }
  {
    ChannelState c = newer;
    c.contractAddress = hub_->address();
    cases.push_back({"another contract", both(*user_, c), tower::AckResult::Refused, Status::WrongContract});
  }
  {
    ChannelState c = newer;
    c.timeout = now() + 600;
    cases.push_back({"time-sensitive state", both(*user_, c), tower::AckResult::Refused, Status::BadArgs});
  }
  {
    ChannelState c = base(user2_->address());  // user2's channel on user's topic
    c.txCountGlobal = 50;
    cases.push_back({"another user's state", both(*user2_, c), tower::AckResult::Refused, Status::WrongParty});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    attacker.publish(state_topic(user), wire(c.s));
    ASSERT_TRUE(device.next(a)) << read_file(dir_ + "/tower.log");
    expect_ack(a, c.result, c.reason, user, &latest);
  }
  {  // a signature with a flipped bit: does not decode or recovers to someone else
    std::vector<uint8_t> w = wire(latest);
    w[w.size() - 40] ^= 0x01;
    attacker.publish(state_topic(user), w);
    ASSERT_TRUE(device.next(a));
    EXPECT_EQ(a.result, tower::AckResult::Refused);
    EXPECT_EQ(a.txCountGlobal, 7u);
  }
  // The file holds exactly the latest state, one row.
  int64_t tx = 0;
  EXPECT_EQ(db_row(user, tx), wire(latest));
  EXPECT_EQ(tx, 7);
  int64_t tx2 = 0;
  EXPECT_TRUE(db_row(user2_->address(), tx2).empty());
  attacker.stop();
  device.stop();

  // The hub exits with an older state (hub 800, user 200): the held one answers it.
  const U256 user0 = MUST(rpc_->balance(user));
  MUST(hubcm_->start_exit_with_update(st[2]));
  chain::OnchainChannel oc;
  ASSERT_TRUE(wait_channel(user, [](const chain::OnchainChannel& c) { return c.txCountGlobal == 7; }, oc))
      << read_file(dir_ + "/tower.log");
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  ASSERT_TRUE(wait_channel(user, [](const chain::OnchainChannel& c) { return c.status == chain::ChannelStatus::Open; },
                           oc))
      << read_file(dir_ + "/tower.log");
  EXPECT_EQ(MUST(rpc_->balance(user)), add(user0, u(500)));
}

// The tower is killed after it acked; the hub's stale exit happens while it is down; the
// restarted tower finds the exit (its event poller resumes; every held channel is looked
// at on chain after a restart) and answers.
TEST_F(TowerChainTest, ExitWhileTheTowerIsDownIsAnsweredAfterItsRestart) {
  start_tower();
  std::vector<SignedChannelState> st = pay(*user2_, 3, 250);  // txCountGlobal 2..5
  const Address user = user2_->address();
  AckClient device;
  std::string err;
  ASSERT_TRUE(device.start(broker_->port(), mqtt::topic_address(user), "user2-pass", ack_topic(user), err)) << err;
  device.publish(state_topic(user), wire(st[2]));  // txCountGlobal 4
  tower::Ack a;
  ASSERT_TRUE(device.next(a)) << read_file(dir_ + "/tower.log");
  expect_ack(a, tower::AckResult::Stored, Status::Ok, user, &st[2]);
  device.stop();
  tower_proc_.kill9();

  const U256 user0 = MUST(rpc_->balance(user));
  MUST(hubcm_->start_exit_with_update(st[1]));  // txCountGlobal 3: hub 750, user 250
  start_tower();
  chain::OnchainChannel oc;
  ASSERT_TRUE(wait_channel(user, [](const chain::OnchainChannel& c) { return c.txCountGlobal == 4; }, oc))
      << read_file(dir_ + "/tower.log");
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  ASSERT_TRUE(wait_channel(user, [](const chain::OnchainChannel& c) { return c.status == chain::ChannelStatus::Open; },
                           oc))
      << read_file(dir_ + "/tower.log");
  EXPECT_EQ(MUST(rpc_->balance(user)), add(user0, u(500)));  // txCountGlobal 4: hub 500, user 500
}

// A pays the device B through a thread; B hands its channel state and the newest
// sender-signed thread state (under its own signature) and sleeps. A exits and starts
// the thread's dispute with the initial state (nothing for B); the tower answers with
// challengeThread. Thread handovers not signed by B, or with a forged sender signature,
// are refused.
TEST_F(TowerChainTest, StaleThreadDisputeIsAnsweredWithTheReceiversLatestThreadState) {
  start_tower();
  const Address a_addr = user_->address(), b_addr = user2_->address();
  // A deposits 1000; the hub puts 1000 of collateral into B's channel.
  ChannelState s = base(a_addr);
  s.pendingDepositWeiUser = u(1000);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  s.timeout = now() + 600;
  MUST(usercm_->user_authorized_update(s, sign(*hub_, s)));
  ChannelState a = base(a_addr);
  a.balanceWeiUser = u(1000);
  a.txCountGlobal = 2;
  a.txCountChain = 1;
  ChannelState b = pay(*user2_, 0, 0)[0].state;  // [2,1], hub 1000

  ThreadState t0 = thread_state_zero();
  t0.contractAddress = cm_addr_;
  t0.sender = a_addr;
  t0.receiver = b_addr;
  t0.threadId = 7;
  t0.balanceWeiSender = u(300);
  SignedThreadState init{t0, true, MUST(user_->sign_eth(thread_hash(t0)))};
  const std::vector<Hash32> leaves = {thread_hash(t0)};
  const Hash32 root = chain::thread_tree_root(leaves);
  a.balanceWeiUser = u(700);  // the thread is open in both channels
  a.txCountGlobal = 3;
  a.threadRoot = root;
  a.threadCount = 1;
  b.balanceWeiHub = u(700);
  b.txCountGlobal = 3;
  b.threadRoot = root;
  b.threadCount = 1;
  ThreadState t2 = t0;  // A paid B 200 in two thread payments
  t2.balanceWeiSender = u(100);
  t2.balanceWeiReceiver = u(200);
  t2.txCount = 2;
  SignedThreadState latest{t2, true, MUST(user_->sign_eth(thread_hash(t2)))};

  AckClient device;
  std::string err;
  ASSERT_TRUE(device.start(broker_->port(), mqtt::topic_address(b_addr), "user2-pass", ack_topic(b_addr), err,
                           tower::topic_thread_ack(tower_->address(), b_addr)))
      << err;
  Signer signer;
  ASSERT_EQ(signer.init(), Status::Ok);
  tower::ThreadHandover h;
  ASSERT_EQ(tower::make_thread_handover(latest, MUST(chain::read_private_key_text(kUser2Key)), signer, h), Status::Ok);
  std::vector<uint8_t> hw;
  ASSERT_EQ(tower::encode_thread_handover(h, hw), Status::Ok);
  // Before the tower holds B's channel, a thread handover is refused.
  device.publish(tower::topic_thread(tower_->address(), b_addr), hw);
  tower::Ack ack;
  ASSERT_TRUE(device.next(ack)) << read_file(dir_ + "/tower.log");
  EXPECT_EQ(ack.result, tower::AckResult::Refused);
  EXPECT_EQ(ack.reason, Status::ThreadNotFound);
  const SignedChannelState bs = both(*user2_, b);
  device.publish(state_topic(b_addr), wire(bs));
  ASSERT_TRUE(device.next(ack));
  expect_ack(ack, tower::AckResult::Stored, Status::Ok, b_addr, &bs);
  device.publish(tower::topic_thread(tower_->address(), b_addr), hw);
  ASSERT_TRUE(device.next(ack));
  EXPECT_EQ(ack.result, tower::AckResult::Stored);
  EXPECT_EQ(ack.txCountGlobal, 2u);
  EXPECT_EQ(ack.stateHash, thread_hash(t2));
  EXPECT_EQ(tower::verify_thread_ack(ack, cm_addr_, tower_->address(), b_addr, 7, signer), Status::Ok);
  EXPECT_EQ(tower::verify_thread_ack(ack, cm_addr_, tower_->address(), b_addr, 8, signer), Status::WrongSigner);

  // Someone else (the hub's account) hands thread states for B: refused.
  AckClient attacker;
  ASSERT_TRUE(attacker.start(broker_->port(), "hub", "hub-pass", "", err)) << err;
  ThreadState t9 = t0;  // a higher txCount that pays B nothing, signed by A
  t9.txCount = 9;
  SignedThreadState bad{t9, true, MUST(user_->sign_eth(thread_hash(t9)))};
  tower::ThreadHandover f1{bad, MUST(other_->sign_eth(tower::thread_handover_digest(cm_addr_, thread_hash(t9))))};
  std::vector<uint8_t> fw;
  ASSERT_EQ(tower::encode_thread_handover(f1, fw), Status::Ok);
  attacker.publish(tower::topic_thread(tower_->address(), b_addr), fw);
  ASSERT_TRUE(device.next(ack));
  EXPECT_EQ(ack.result, tower::AckResult::Refused);
  EXPECT_EQ(ack.reason, Status::WrongSigner);
  EXPECT_EQ(ack.txCountGlobal, 2u);  // still the held one
  ThreadState t3 = t2;  // more for B, but A never signed it
  t3.balanceWeiSender = u(0);
  t3.balanceWeiReceiver = u(300);
  t3.txCount = 3;
  tower::ThreadHandover f2{SignedThreadState{t3, true, MUST(other_->sign_eth(thread_hash(t3)))},
                           MUST(user2_->sign_eth(tower::thread_handover_digest(cm_addr_, thread_hash(t3))))};
  fw.clear();
  ASSERT_EQ(tower::encode_thread_handover(f2, fw), Status::Ok);
  attacker.publish(tower::topic_thread(tower_->address(), b_addr), fw);
  ASSERT_TRUE(device.next(ack));
  EXPECT_EQ(ack.result, tower::AckResult::Refused);
  EXPECT_EQ(ack.reason, Status::WrongSigner);
  attacker.stop();
  device.stop();

  // A exits with the thread open; the hub (not the initiator) empties A's channel at
  // once, which puts it in thread dispute; A starts the thread's dispute with the
  // initial state: nothing for B.
  MUST(usercm_->start_exit_with_update(both(*user_, a)));
  MUST(hubcm_->empty_channel(a_addr));
  ASSERT_EQ(MUST(usercm_->channel(a_addr)).status, chain::ChannelStatus::ThreadDispute);
  MUST(usercm_->start_exit_thread(a_addr, init, MUST(chain::thread_proof(leaves, thread_hash(t0)))));
  const auto t_exit = std::chrono::steady_clock::now();
  chain::OnchainThread ot{};
  const auto until = t_exit + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < until) {
    ot = MUST(usercm_->thread(a_addr, b_addr, 7));
    if (ot.txCount == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(ot.txCount, 2u) << read_file(dir_ + "/tower.log");
  ot = MUST(usercm_->thread(a_addr, b_addr, 7));
  std::printf("tower answered the stale thread dispute %lld ms after startExitThread was mined\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - t_exit)
                                         .count()));
  EXPECT_EQ(ot.weiReceiver, u(200));
  EXPECT_EQ(ot.weiSender, u(100));
  EXPECT_GT(ot.threadClosingTime, now());
}

}  // namespace

// SIGHUP is refused, not fatal (no reload; agent/common service.hpp): one line, and the
// tower keeps guarding: a state handed over afterwards is stored and acked.
TEST_F(TowerChainTest, SighupIsRefusedAndTheTowerKeepsGuarding) {
  start_tower();
  const std::string log = dir_ + "/tower.log";
  ASSERT_EQ(::kill(tower_proc_.pid(), SIGHUP), 0);
  for (int i = 0; i < 100 && read_file(log).find("SIGHUP ignored") == std::string::npos; ++i) ::usleep(100000);
  EXPECT_NE(read_file(log).find("picopay-tower: SIGHUP ignored: no reload, restart the tower to apply a new config"),
            std::string::npos)
      << read_file(log);
  ASSERT_TRUE(tower_proc_.running()) << read_file(log);
  std::vector<SignedChannelState> st = pay(*user_, 2, 40);
  AckClient device;
  std::string err;
  ASSERT_TRUE(device.start(broker_->port(), mqtt::topic_address(user_->address()), "user-pass",
                           ack_topic(user_->address()), err))
      << err;
  device.publish(state_topic(user_->address()), wire(st.back()));
  tower::Ack a;
  ASSERT_TRUE(device.next(a)) << read_file(log);
  expect_ack(a, tower::AckResult::Stored, Status::Ok, user_->address(), &st.back());
  device.stop();
}
