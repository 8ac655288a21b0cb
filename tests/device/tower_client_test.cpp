// picopay-agent's tower client (agent/device tower_client.hpp, docs/tower.md) against a
// scripted tower and an untrusted broker: what it hands over and when, and which acks it
// believes (only the tower's signature over a state it handed, or a newer one).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include <string>
#include <vector>

#include "picopay/codec.hpp"
#include "picopay/device/agent.hpp"
#include "picopay/device/tower_client.hpp"
#include "picopay/tower/protocol.hpp"

using namespace picopay;

namespace {

PrivateKey key_fill(uint8_t b) {
  PrivateKey k{};
  for (auto& x : k.bytes) x = b;
  return k;
}

struct Published {
  std::string topic;
  std::vector<uint8_t> payload;
};

class TowerClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(signer_.init(), Status::Ok);
    userKey_ = key_fill(0x21);
    hubKey_ = key_fill(0x22);
    towerKey_ = key_fill(0x23);
    otherKey_ = key_fill(0x24);
    ASSERT_EQ(signer_.address_of(userKey_, user_), Status::Ok);
    ASSERT_EQ(signer_.address_of(hubKey_, hub_), Status::Ok);
    ASSERT_EQ(signer_.address_of(towerKey_, tower_), Status::Ok);
    contract_.bytes[19] = 0x42;
  }
  // A double-signed channel state with txCountGlobal `tx`.
  SignedChannelState at(uint64_t tx, uint64_t timeout = 0) {
    SignedChannelState c{};
    c.state = channel_state_zero();
    c.state.contractAddress = contract_;
    c.state.user = c.state.recipient = user_;
    c.state.txCountGlobal = tx;
    c.state.balanceWeiHub = U256::from_u64(100);
    c.state.timeout = timeout;
    c.hasSigUser = c.hasSigHub = true;
    EXPECT_EQ(signer_.sign_eth(userKey_, channel_hash(c.state), c.sigUser), Status::Ok);
    EXPECT_EQ(signer_.sign_eth(hubKey_, channel_hash(c.state), c.sigHub), Status::Ok);
    return c;
  }
  // A thread paying us `wei` of 50, signed by its sender (otherKey_).
  SignedThreadState paid(uint64_t wei, uint64_t tx) {
    SignedThreadState t{};
    t.state = thread_state_zero();
    t.state.contractAddress = contract_;
    EXPECT_EQ(signer_.address_of(otherKey_, t.state.sender), Status::Ok);
    t.state.receiver = user_;
    t.state.threadId = 1;
    t.state.balanceWeiSender = U256::from_u64(50 - wei);
    t.state.balanceWeiReceiver = U256::from_u64(wei);
    t.state.txCount = tx;
    t.hasSigA = true;
    EXPECT_EQ(signer_.sign_eth(otherKey_, thread_hash(t.state), t.sigA), Status::Ok);
    return t;
  }
  std::vector<uint8_t> ack(const SignedChannelState& held, tower::AckResult res, Status why, const PrivateKey& k,
                           const Address* user = nullptr) {
    tower::Ack a;
    a.result = res;
    a.reason = why;
    a.txCountGlobal = held.state.txCountGlobal;
    a.stateHash = channel_hash(held.state);
    EXPECT_EQ(signer_.sign_eth(k, tower::ack_digest(contract_, user ? *user : user_, a.txCountGlobal, a.stateHash),
                               a.sig),
              Status::Ok);
    std::vector<uint8_t> w;
    EXPECT_EQ(tower::encode_ack(a, w), Status::Ok);
    return w;
  }

  Signer signer_;
  PrivateKey userKey_, hubKey_, towerKey_, otherKey_;
  Address user_{}, hub_{}, tower_{}, contract_{};
  const std::vector<SignedThreadState> none_;
  std::vector<Published> out_;
  std::vector<std::string> log_;
  device::TowerClient::Publish pub_ = [this](const std::string& t, const std::vector<uint8_t>& p) {
    out_.push_back({t, p});
  };
  device::TowerClient::Log lg_ = [this](bool, const std::string& l) { log_.push_back(l); };
};

TEST_F(TowerClientTest, HandsTheLatestStateOverUntilTheTowersSignedAckNamesIt) {
  device::TowerClient tc(tower_, contract_, user_, signer_, userKey_, 1000);
  const SignedChannelState s5 = at(5);
  tc.step(s5, none_, 10000, pub_, lg_);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].topic, tower::topic_state(tower_, user_));
  SignedChannelState got{};
  ASSERT_EQ(decode_channel_state(out_[0].payload.data(), out_[0].payload.size(), got), Status::Ok);
  EXPECT_EQ(got.state, s5.state);
  EXPECT_EQ(tower::check_handover(got, contract_, hub_, user_, signer_), Status::Ok);  // what the tower checks
  // Not again before 5 intervals without an ack.
  tc.step(s5, none_, 10500, pub_, lg_);
  EXPECT_EQ(out_.size(), 1u);
  tc.step(s5, none_, 15000, pub_, lg_);
  EXPECT_EQ(out_.size(), 2u);
  // Thread states wait until the tower holds the channel.
  tc.step(s5, {paid(10, 1)}, 15001, pub_, lg_);
  EXPECT_EQ(out_.size(), 2u);
  // Forged acks (another key, another user's digest, garbage) change nothing.
  const std::string ackt = tower::topic_ack(tower_, user_);
  EXPECT_TRUE(tc.on_message(ackt, ack(s5, tower::AckResult::Stored, Status::Ok, otherKey_), lg_));
  EXPECT_TRUE(tc.on_message(ackt, ack(s5, tower::AckResult::Stored, Status::Ok, towerKey_, &hub_), lg_));
  EXPECT_TRUE(tc.on_message(ackt, {1, 0x20, 0}, lg_));
  EXPECT_FALSE(tc.on_message("picopay/v1/user/x/reply", {}, lg_));
  EXPECT_EQ(tc.acked_tx_count_global(), 0u);
  // A tower-signed ack naming our txCountGlobal with another state: not believed.
  SignedChannelState other = s5;
  other.state.balanceWeiHub = U256::from_u64(99);
  EXPECT_TRUE(tc.on_message(ackt, ack(other, tower::AckResult::Stored, Status::Ok, towerKey_), lg_));
  EXPECT_EQ(tc.acked_tx_count_global(), 0u);
  // A refusal is logged, not believed.
  EXPECT_TRUE(tc.on_message(ackt, ack(s5, tower::AckResult::Refused, Status::WrongSigner, towerKey_), lg_));
  EXPECT_EQ(tc.acked_tx_count_global(), 0u);
  // The genuine ack: nothing more is handed over until a newer state exists.
  EXPECT_TRUE(tc.on_message(ackt, ack(s5, tower::AckResult::Stored, Status::Ok, towerKey_), lg_));
  EXPECT_EQ(tc.acked_tx_count_global(), 5u);
  size_t n = out_.size();
  tc.step(s5, none_, 100000, pub_, lg_);
  EXPECT_EQ(out_.size(), n);
  // A newer state with a timeout (a pending deposit) is no exit evidence: not handed over.
  tc.flush(at(6, 4000000000ull), none_, 100001, pub_, lg_);
  EXPECT_EQ(out_.size(), n);
  // A newer timeout-0 state is, at once on flush.
  const SignedChannelState s7 = at(7);
  tc.flush(s7, none_, 100002, pub_, lg_);
  ASSERT_EQ(out_.size(), n + 1);
  ASSERT_EQ(decode_channel_state(out_.back().payload.data(), out_.back().payload.size(), got), Status::Ok);
  EXPECT_EQ(got.state, s7.state);
  EXPECT_TRUE(tc.on_message(ackt, ack(s7, tower::AckResult::Stored, Status::Ok, towerKey_), lg_));
  EXPECT_EQ(tc.acked_tx_count_global(), 7u);

  // Now the tower holds a channel: an incoming thread's latest state is handed over with
  // our receiver signature, exactly what the tower accepts.
  const SignedThreadState t3 = paid(30, 3);
  n = out_.size();
  tc.flush(s7, {t3}, 100003, pub_, lg_);
  ASSERT_EQ(out_.size(), n + 1);
  EXPECT_EQ(out_.back().topic, tower::topic_thread(tower_, user_));
  tower::ThreadHandover h;
  ASSERT_EQ(tower::decode_thread_handover(out_.back().payload.data(), out_.back().payload.size(), h), Status::Ok);
  EXPECT_EQ(h.thread.state, t3.state);
  EXPECT_EQ(tower::check_thread_handover(h, contract_, user_, signer_), Status::Ok);
  // A thread ack by the tower for that state stops the re-sending; one signed by another
  // key does not.
  auto thread_ack = [&](const SignedThreadState& t, const PrivateKey& k) {
    tower::Ack a;
    a.result = tower::AckResult::Stored;
    a.txCountGlobal = t.state.txCount;
    a.stateHash = thread_hash(t.state);
    EXPECT_EQ(signer_.sign_eth(k, tower::thread_ack_digest(contract_, user_, 1, a.txCountGlobal, a.stateHash), a.sig),
              Status::Ok);
    std::vector<uint8_t> w;
    EXPECT_EQ(tower::encode_ack(a, w), Status::Ok);
    return w;
  };
  const std::string tat = tower::topic_thread_ack(tower_, user_);
  EXPECT_TRUE(tc.on_message(tat, thread_ack(t3, otherKey_), lg_));
  tc.step(s7, {t3}, 200000, pub_, lg_);
  EXPECT_EQ(out_.size(), n + 2) << "an unacked thread state is handed again";
  EXPECT_TRUE(tc.on_message(tat, thread_ack(t3, towerKey_), lg_));
  tc.step(s7, {t3}, 300000, pub_, lg_);
  EXPECT_EQ(out_.size(), n + 2);
}

// A closed thread is released, but only once the tower acked a channel state at or after
// the one that closed it (before, an exit with the older state would still contain the
// thread, and the tower must keep guarding it); the release is believed done only on the
// tower's signed Released ack, not on a forged one or one about a thread still open.
TEST_F(TowerClientTest, ReleasesAClosedThreadOnlyAfterTheTowerHoldsTheClosingState) {
  device::TowerClient tc(tower_, contract_, user_, signer_, userKey_, 1000);
  const std::string ackt = tower::topic_ack(tower_, user_);
  const std::string tat = tower::topic_thread_ack(tower_, user_);
  const SignedChannelState s5 = at(5);
  tc.flush(s5, none_, 1000, pub_, lg_);
  ASSERT_TRUE(tc.on_message(ackt, ack(s5, tower::AckResult::Stored, Status::Ok, towerKey_), lg_));
  const SignedThreadState t = paid(20, 2);
  tc.flush(s5, {t}, 1001, pub_, lg_);
  ASSERT_EQ(out_.back().topic, tower::topic_thread(tower_, user_));
  ASSERT_FALSE(tower::is_thread_release(out_.back().payload.data(), out_.back().payload.size()));
  auto thread_ack = [&](tower::AckResult res, uint64_t tx, const Hash32& h, const PrivateKey& k) {
    tower::Ack a;
    a.result = res;
    a.txCountGlobal = tx;
    a.stateHash = h;
    EXPECT_EQ(signer_.sign_eth(k, tower::thread_ack_digest(contract_, user_, 1, tx, h), a.sig), Status::Ok);
    std::vector<uint8_t> w;
    EXPECT_EQ(tower::encode_ack(a, w), Status::Ok);
    return w;
  };
  ASSERT_TRUE(tc.on_message(tat, thread_ack(tower::AckResult::Stored, 2, thread_hash(t.state), towerKey_), lg_));

  // A Released ack while the thread is open (a replay, or a broker's forgery with a
  // genuine signature over "holds nothing"): the thread stays handed, nothing released.
  ASSERT_TRUE(tc.on_message(tat, thread_ack(tower::AckResult::Released, 0, Hash32{}, towerKey_), lg_));
  size_t n = out_.size();
  tc.step(s5, {t}, 500000, pub_, lg_);
  EXPECT_EQ(out_.size(), n) << "the open, acked thread is neither re-handed nor released";

  // The thread closes at txCountGlobal 6; the tower still holds 5: no release yet.
  const SignedChannelState s6 = at(6);
  tc.step(s6, none_, 501000, pub_, lg_);
  ASSERT_EQ(out_.size(), n + 1);
  EXPECT_EQ(out_.back().topic, ackt.substr(0, ackt.size() - 3) + "state") << "only the closing channel state goes out";
  EXPECT_FALSE(tower::is_thread_release(out_.back().payload.data(), out_.back().payload.size()));
  tc.step(s6, none_, 900000, pub_, lg_);
  for (size_t i = n; i < out_.size(); ++i)
    EXPECT_FALSE(tower::is_thread_release(out_[i].payload.data(), out_[i].payload.size()));

  // The tower acks state 6: the release goes out, signed by us, naming the thread.
  ASSERT_TRUE(tc.on_message(ackt, ack(s6, tower::AckResult::Stored, Status::Ok, towerKey_), lg_));
  n = out_.size();
  tc.step(s6, none_, 900001, pub_, lg_);
  ASSERT_EQ(out_.size(), n + 1);
  ASSERT_EQ(out_.back().topic, tower::topic_thread(tower_, user_));
  tower::ThreadRelease r;
  ASSERT_EQ(tower::decode_thread_release(out_.back().payload.data(), out_.back().payload.size(), r), Status::Ok);
  EXPECT_EQ(r.sender, t.state.sender);
  EXPECT_EQ(r.threadId, 1u);
  EXPECT_EQ(tower::check_thread_release(r, contract_, user_, signer_), Status::Ok);  // what the tower checks

  // Unanswered, it is sent again after 5 intervals; a Released ack signed by another key
  // does not stop it; the tower's does, and the thread is forgotten.
  tc.step(s6, none_, 902000, pub_, lg_);
  EXPECT_EQ(out_.size(), n + 1);
  ASSERT_TRUE(tc.on_message(tat, thread_ack(tower::AckResult::Released, 0, Hash32{}, otherKey_), lg_));
  tc.step(s6, none_, 906001, pub_, lg_);
  ASSERT_EQ(out_.size(), n + 2);
  EXPECT_TRUE(tower::is_thread_release(out_.back().payload.data(), out_.back().payload.size()));
  ASSERT_TRUE(tc.on_message(tat, thread_ack(tower::AckResult::Released, 0, Hash32{}, towerKey_), lg_));
  tc.step(s6, none_, 2000000, pub_, lg_);
  EXPECT_EQ(out_.size(), n + 2) << "a released thread is not released again";
}

// After a restart the client no longer knows which threads it handed over: the agent
// passes the closed incoming threads whose release the tower never confirmed, and each is
// released once the tower holds the current channel state (which no longer has it); the
// tower's confirmation is reported once, so the agent records it.
TEST_F(TowerClientTest, AfterARestartUnconfirmedClosedThreadsAreReleasedOnce) {
  device::TowerClient tc(tower_, contract_, user_, signer_, userKey_, 1000);
  const std::string ackt = tower::topic_ack(tower_, user_);
  const std::string tat = tower::topic_thread_ack(tower_, user_);
  Address sender{};
  ASSERT_EQ(signer_.address_of(otherKey_, sender), Status::Ok);
  tc.resume_releases({{sender, 1}});
  auto released_ack = [&](const PrivateKey& k) {
    tower::Ack a;
    a.result = tower::AckResult::Released;
    EXPECT_EQ(signer_.sign_eth(k, tower::thread_ack_digest(contract_, user_, 1, 0, Hash32{}), a.sig), Status::Ok);
    std::vector<uint8_t> w;
    EXPECT_EQ(tower::encode_ack(a, w), Status::Ok);
    return w;
  };
  auto releases = [&]() {
    size_t n = 0;
    for (const auto& p : out_) n += tower::is_thread_release(p.payload.data(), p.payload.size()) ? 1 : 0;
    return n;
  };
  // A Released ack before anything was sent (a replay from the earlier run) is not taken
  // as the confirmation.
  ASSERT_TRUE(tc.on_message(tat, released_ack(towerKey_), lg_));
  EXPECT_TRUE(tc.take_released().empty());
  // Nothing is released before the tower holds the current state 7.
  const SignedChannelState s7 = at(7);
  tc.flush(s7, none_, 1000, pub_, lg_);
  tc.step(s7, none_, 100000, pub_, lg_);
  EXPECT_EQ(releases(), 0u);
  ASSERT_TRUE(tc.on_message(ackt, ack(s7, tower::AckResult::Stored, Status::Ok, towerKey_), lg_));
  tc.step(s7, none_, 100001, pub_, lg_);
  ASSERT_EQ(releases(), 1u);
  tower::ThreadRelease r;
  ASSERT_EQ(tower::decode_thread_release(out_.back().payload.data(), out_.back().payload.size(), r), Status::Ok);
  EXPECT_EQ(r.sender, sender);
  EXPECT_EQ(r.threadId, 1u);
  // Another key's Released ack confirms nothing; the tower's does, once.
  ASSERT_TRUE(tc.on_message(tat, released_ack(otherKey_), lg_));
  EXPECT_TRUE(tc.take_released().empty());
  ASSERT_TRUE(tc.on_message(tat, released_ack(towerKey_), lg_));
  const auto done = tc.take_released();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].first, sender);
  EXPECT_EQ(done[0].second, 1u);
  EXPECT_TRUE(tc.take_released().empty());
  tc.step(s7, none_, 2000000, pub_, lg_);
  EXPECT_EQ(releases(), 1u) << "a confirmed release is not sent again";
}

// The agent's config: "tower": {"address", "intervalMs"}; anything else is one clear error.
TEST(TowerConfig, AddressAndIntervalParsedBadValuesRefused) {
  char tmpl[] = "/tmp/picopay-towercfg-XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  close(fd);
  auto load = [&](const std::string& json, device::Config& c, std::string& err) {
    std::ofstream(tmpl) << json;
    c = device::Config{};
    return device::config_load_file(tmpl, c, err);
  };
  device::Config c;
  std::string err;
  ASSERT_TRUE(load(R"({"tower": {"address": "0x00000000000000000000000000000000000000aa", "intervalMs": 250}})", c, err))
      << err;
  EXPECT_TRUE(c.has_tower);
  EXPECT_EQ(c.tower.bytes[19], 0xaa);
  EXPECT_EQ(c.tower_interval_ms, 250u);
  ASSERT_TRUE(load(R"({"name": "x"})", c, err)) << err;
  EXPECT_FALSE(c.has_tower);
  for (const char* bad : {R"({"tower": "0x00000000000000000000000000000000000000aa"})",
                          R"({"tower": {"address": "0x0000000000000000000000000000000000000000"}})",
                          R"({"tower": {"address": "tower.example"}})",
                          R"({"tower": {"address": "0x00000000000000000000000000000000000000aa", "intervalMs": 0}})",
                          R"({"tower": {"address": "0x00000000000000000000000000000000000000aa", "intervalMs": "1"}})"}) {
    err.clear();
    EXPECT_FALSE(load(bad, c, err)) << bad;
    EXPECT_NE(err.find("tower"), std::string::npos) << err;
  }
  std::remove(tmpl);
}

}  // namespace
