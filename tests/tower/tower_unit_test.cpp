// picopay-tower units without a chain: topics, the handover check, the Ack codec, the
// SQLite store (real files), the config parser's refusals.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>

#include "picopay/codec.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/tower/config.hpp"
#include "picopay/tower/protocol.hpp"
#include "picopay/tower/store.hpp"
#include "support/process.hpp"

using namespace picopay;
using namespace picopay::tower;

namespace {

PrivateKey key_of(uint8_t b) {
  PrivateKey k{};
  std::memset(k.bytes, b, sizeof k.bytes);
  return k;
}

class TowerUnit : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(signer_.init(), Status::Ok);
    ASSERT_EQ(signer_.address_of(hub_key_, hub_), Status::Ok);
    ASSERT_EQ(signer_.address_of(user_key_, user_), Status::Ok);
    ASSERT_EQ(signer_.address_of(other_key_, other_), Status::Ok);
    std::memset(contract_.bytes, 0xcc, 20);
    dir_ = testsupport::make_temp_dir("picopay-tower-unit");
  }
  void TearDown() override { testsupport::remove_tree(dir_); }

  SignedChannelState state(uint64_t tx, uint64_t user_wei, const PrivateKey& uk, const PrivateKey& hk) {
    SignedChannelState s{};
    s.state = channel_state_zero();
    s.state.contractAddress = contract_;
    s.state.user = user_;
    s.state.recipient = user_;
    s.state.balanceWeiUser = U256::from_u64(user_wei);
    s.state.balanceWeiHub = U256::from_u64(1000 - user_wei);
    s.state.txCountGlobal = tx;
    s.state.txCountChain = 1;
    resign(s, uk, hk);
    return s;
  }
  void resign(SignedChannelState& s, const PrivateKey& uk, const PrivateKey& hk) {
    const Hash32 h = channel_hash(s.state);
    EXPECT_EQ(signer_.sign_eth(uk, h, s.sigUser), Status::Ok);
    EXPECT_EQ(signer_.sign_eth(hk, h, s.sigHub), Status::Ok);
    s.hasSigUser = s.hasSigHub = true;
  }
  SignedChannelState good(uint64_t tx, uint64_t user_wei = 100) { return state(tx, user_wei, user_key_, hub_key_); }

  Signer signer_;
  PrivateKey hub_key_ = key_of(0x11), user_key_ = key_of(0x22), other_key_ = key_of(0x55);
  Address hub_{}, user_{}, other_{}, contract_{};
  std::string dir_;
};

TEST_F(TowerUnit, TopicsRoundTripAndRefuseOtherShapes) {
  Address tower{}, t{}, u{};
  std::memset(tower.bytes, 0xab, 20);
  const std::string topic = topic_state(tower, user_);
  EXPECT_EQ(topic, "picopay/v1/tower/" + mqtt::topic_address(tower) + "/user/" + mqtt::topic_address(user_) + "/state");
  ASSERT_TRUE(parse_state_topic(topic, t, u));
  EXPECT_EQ(t, tower);
  EXPECT_EQ(u, user_);
  EXPECT_EQ(topic_ack(tower, user_), topic.substr(0, topic.size() - 6) + "/ack");
  EXPECT_FALSE(parse_state_topic(topic_ack(tower, user_), t, u));
  std::string upper = topic;
  upper[upper.size() - 10] = 'A';  // mixed case: not the canonical topic
  EXPECT_FALSE(parse_state_topic(upper, t, u));
  EXPECT_FALSE(parse_state_topic(topic + "/x", t, u));
  EXPECT_FALSE(parse_state_topic("picopay/v1/hub/x", t, u));
}

TEST_F(TowerUnit, HandoverCheckNeedsBothPartiesSignaturesOnThisChannel) {
  EXPECT_EQ(check_handover(good(5), contract_, hub_, user_, signer_), Status::Ok);
  EXPECT_EQ(check_handover(good(5), contract_, hub_, other_, signer_), Status::WrongParty);
  Address other_contract = contract_;
  other_contract.bytes[0] ^= 1;
  EXPECT_EQ(check_handover(good(5), other_contract, hub_, user_, signer_), Status::WrongContract);
  EXPECT_EQ(check_handover(state(5, 100, other_key_, hub_key_), contract_, hub_, user_, signer_), Status::WrongSigner);
  EXPECT_EQ(check_handover(state(5, 100, user_key_, other_key_), contract_, hub_, user_, signer_), Status::WrongSigner);
  EXPECT_EQ(check_handover(good(5), contract_, other_, user_, signer_), Status::WrongSigner);  // not this hub
  SignedChannelState s = good(5);
  s.hasSigUser = false;
  EXPECT_EQ(check_handover(s, contract_, hub_, user_, signer_), Status::BadArgs);
  s = good(5);
  s.state.timeout = 1;
  resign(s, user_key_, hub_key_);
  EXPECT_EQ(check_handover(s, contract_, hub_, user_, signer_), Status::BadArgs);
  s = good(5);
  s.state.balanceWeiUser = U256::from_u64(101);  // altered after signing
  EXPECT_EQ(check_handover(s, contract_, hub_, user_, signer_), Status::WrongSigner);
}

TEST_F(TowerUnit, AckRoundTripsAndRefusesMalformedBytes) {
  Ack a;
  a.result = AckResult::Held;
  a.txCountGlobal = 42;
  a.stateHash = channel_hash(good(42).state);
  ASSERT_EQ(signer_.sign_eth(other_key_, ack_digest(contract_, user_, 42, a.stateHash), a.sig), Status::Ok);
  std::vector<uint8_t> w;
  ASSERT_EQ(encode_ack(a, w), Status::Ok);
  ASSERT_EQ(w.size(), kAckWireSize);
  Ack b;
  ASSERT_EQ(decode_ack(w.data(), w.size(), b), Status::Ok);
  EXPECT_EQ(b.result, AckResult::Held);
  EXPECT_EQ(b.txCountGlobal, 42u);
  EXPECT_EQ(b.stateHash, a.stateHash);
  EXPECT_EQ(signer_.verify_eth(ack_digest(contract_, user_, 42, b.stateHash), b.sig, other_), Status::Ok);
  // the digest binds contract, user, txCountGlobal and hash
  EXPECT_NE(ack_digest(contract_, user_, 43, a.stateHash), ack_digest(contract_, user_, 42, a.stateHash));
  EXPECT_NE(ack_digest(contract_, other_, 42, a.stateHash), ack_digest(contract_, user_, 42, a.stateHash));
  EXPECT_EQ(decode_ack(w.data(), w.size() - 1, b), Status::Truncated);
  std::vector<uint8_t> longer = w;
  longer.push_back(0);
  EXPECT_EQ(decode_ack(longer.data(), longer.size(), b), Status::TrailingBytes);
  std::vector<uint8_t> bad = w;
  bad[0] = 2;
  EXPECT_EQ(decode_ack(bad.data(), bad.size(), b), Status::BadVersion);
  bad = w;
  bad[1] = 0x10;
  EXPECT_EQ(decode_ack(bad.data(), bad.size(), b), Status::BadKind);
  bad = w;
  bad[2] = 3;
  EXPECT_EQ(decode_ack(bad.data(), bad.size(), b), Status::BadArgs);
  bad = w;
  bad[3] = static_cast<uint8_t>(Status::WrongSigner);  // a reason with Held
  EXPECT_EQ(decode_ack(bad.data(), bad.size(), b), Status::BadArgs);
  bad = w;
  bad[108] = 29;
  EXPECT_EQ(decode_ack(bad.data(), bad.size(), b), Status::BadRecoveryId);
  Ack r;
  r.result = AckResult::Refused;  // without a reason
  r.sig = a.sig;
  std::vector<uint8_t> w2;
  EXPECT_EQ(encode_ack(r, w2), Status::BadArgs);
  r.reason = Status::WrongSigner;
  EXPECT_EQ(encode_ack(r, w2), Status::Ok);
}

TEST_F(TowerUnit, StoreKeepsOnlyNewerStatesOneRowPerChannel) {
  std::string err;
  auto st = Store::open(dir_ + "/t.db", contract_, hub_, err);
  ASSERT_TRUE(st) << err;
  PutResult r;
  Held h;
  ASSERT_TRUE(st->put(good(5, 100), 10, r, h, err)) << err;
  EXPECT_EQ(r, PutResult::Stored);
  EXPECT_EQ(h.txCountGlobal, 5u);
  ASSERT_TRUE(st->put(good(4, 50), 10, r, h, err)) << err;  // older
  EXPECT_EQ(r, PutResult::Held);
  EXPECT_EQ(h.txCountGlobal, 5u);
  ASSERT_TRUE(st->put(good(5, 1), 10, r, h, err)) << err;  // same txCountGlobal, other content
  EXPECT_EQ(r, PutResult::Held);
  EXPECT_EQ(h.stateHash, channel_hash(good(5, 100).state));
  ASSERT_TRUE(st->put(good(9, 300), 10, r, h, err)) << err;
  EXPECT_EQ(r, PutResult::Stored);
  SignedChannelState got{};
  bool found = false;
  ASSERT_TRUE(st->latest(user_, got, found, err)) << err;
  ASSERT_TRUE(found);
  EXPECT_EQ(channel_hash(got.state), channel_hash(good(9, 300).state));
  EXPECT_EQ(got.sigUser, good(9, 300).sigUser);
  size_t n = 0;
  ASSERT_TRUE(st->count(n, err));
  EXPECT_EQ(n, 1u);
  // a new row is marked for a chain check; clearing and marking work
  std::vector<Address> marked;
  ASSERT_TRUE(st->to_check(marked, err));
  ASSERT_EQ(marked.size(), 1u);
  ASSERT_TRUE(st->set_check(user_, false, err));
  ASSERT_TRUE(st->to_check(marked, err));
  EXPECT_TRUE(marked.empty());
  ASSERT_TRUE(st->check_all(err));
  ASSERT_TRUE(st->to_check(marked, err));
  EXPECT_EQ(marked.size(), 1u);
  // a newer state of a held channel does not count against the cap; a new channel does
  ASSERT_TRUE(st->put(good(10, 310), 1, r, h, err));
  EXPECT_EQ(r, PutResult::Stored);
  SignedChannelState other = good(3);
  other.state.user = other_;
  other.state.recipient = other_;
  resign(other, other_key_, hub_key_);
  ASSERT_TRUE(st->put(other, 1, r, h, err));
  EXPECT_EQ(r, PutResult::Full);
  EXPECT_FALSE(h.found);
  // the file is private
  struct stat sb {};
  ASSERT_EQ(::stat((dir_ + "/t.db").c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 077, 0u);
  st.reset();
  // reopened: still there; another contract or hub is refused
  st = Store::open(dir_ + "/t.db", contract_, hub_, err);
  ASSERT_TRUE(st) << err;
  ASSERT_TRUE(st->held(user_, h, err));
  EXPECT_EQ(h.txCountGlobal, 10u);
  st.reset();
  EXPECT_FALSE(Store::open(dir_ + "/t.db", contract_, other_, err));
  EXPECT_NE(err.find("made for hub"), std::string::npos) << err;
  Address c2 = contract_;
  c2.bytes[19] ^= 1;
  EXPECT_FALSE(Store::open(dir_ + "/t.db", c2, hub_, err));
  EXPECT_NE(err.find("made for contract"), std::string::npos) << err;
}

TEST_F(TowerUnit, ThreadHandoverNeedsTheSendersAndTheReceiversSignatures) {
  // user_ is the receiver (the device), other_ the sender.
  ThreadState t = thread_state_zero();
  t.contractAddress = contract_;
  t.sender = other_;
  t.receiver = user_;
  t.threadId = 9007199254740771ull;  // above 2^52: kept exactly
  t.balanceWeiSender = U256::from_u64(100);
  t.balanceWeiReceiver = U256::from_u64(200);
  t.txCount = 2;
  auto handover = [&](const ThreadState& st, const PrivateKey& sender, const PrivateKey& receiver) {
    ThreadHandover h;
    h.thread.state = st;
    h.thread.hasSigA = true;
    EXPECT_EQ(signer_.sign_eth(sender, thread_hash(st), h.thread.sigA), Status::Ok);
    EXPECT_EQ(signer_.sign_eth(receiver, thread_handover_digest(contract_, thread_hash(st)), h.sigReceiver), Status::Ok);
    return h;
  };
  ThreadHandover h = handover(t, other_key_, user_key_);
  std::vector<uint8_t> w;
  ASSERT_EQ(encode_thread_handover(h, w), Status::Ok);
  ThreadHandover d;
  ASSERT_EQ(decode_thread_handover(w.data(), w.size(), d), Status::Ok);
  EXPECT_EQ(d.thread.state, t);
  EXPECT_EQ(d.sigReceiver, h.sigReceiver);
  EXPECT_EQ(check_thread_handover(d, contract_, user_, signer_), Status::Ok);
  EXPECT_EQ(decode_thread_handover(w.data(), 64, d), Status::Truncated);
  std::vector<uint8_t> cut(w.begin() + 1, w.end());
  EXPECT_NE(decode_thread_handover(cut.data(), cut.size(), d), Status::Ok);
  EXPECT_EQ(check_thread_handover(h, contract_, other_, signer_), Status::WrongParty);
  EXPECT_EQ(check_thread_handover(handover(t, hub_key_, user_key_), contract_, user_, signer_), Status::WrongSigner);
  EXPECT_EQ(check_thread_handover(handover(t, other_key_, hub_key_), contract_, user_, signer_), Status::WrongSigner);
  Address c2 = contract_;
  c2.bytes[0] ^= 1;
  EXPECT_EQ(check_thread_handover(h, c2, user_, signer_), Status::WrongContract);
  ThreadHandover nosig = h;
  nosig.thread.hasSigA = false;
  EXPECT_EQ(check_thread_handover(nosig, contract_, user_, signer_), Status::BadArgs);

  // The contract's rule: more for the receiver or a higher txCount, never less for it.
  ThreadState more = t, higher = t, worse = t;
  more.balanceWeiReceiver = U256::from_u64(250);
  higher.txCount = 3;
  worse.txCount = 100;
  worse.balanceWeiReceiver = U256::from_u64(0);
  EXPECT_TRUE(thread_state_better(more, t));
  EXPECT_TRUE(thread_state_better(higher, t));
  EXPECT_FALSE(thread_state_better(worse, t));
  EXPECT_FALSE(thread_state_better(t, t));
  ThreadState more_lower_tx = more;
  more_lower_tx.txCount = 1;
  EXPECT_TRUE(thread_state_better(more_lower_tx, t));

  // The store keeps the best one, per thread, at most N per receiver.
  std::string err;
  auto st = Store::open(dir_ + "/th.db", contract_, hub_, err);
  ASSERT_TRUE(st) << err;
  PutResult r;
  Held held;
  ASSERT_TRUE(st->put_thread(h.thread, 2, r, held, err)) << err;
  EXPECT_EQ(r, PutResult::Stored);
  ASSERT_TRUE(st->put_thread(handover(worse, other_key_, user_key_).thread, 2, r, held, err)) << err;
  EXPECT_EQ(r, PutResult::Held);  // a huge txCount that pays the receiver nothing does not win
  EXPECT_EQ(held.txCountGlobal, 2u);
  EXPECT_EQ(held.stateHash, thread_hash(t));
  ASSERT_TRUE(st->put_thread(handover(more_lower_tx, other_key_, user_key_).thread, 2, r, held, err)) << err;
  EXPECT_EQ(r, PutResult::Stored);
  SignedThreadState got{};
  bool found = false;
  const ThreadKey k{other_, user_, t.threadId};
  ASSERT_TRUE(st->latest_thread(k, got, found, err)) << err;
  ASSERT_TRUE(found);
  EXPECT_EQ(got.state, more_lower_tx);
  std::vector<ThreadKey> marked;
  ASSERT_TRUE(st->threads_to_check(marked, err));
  ASSERT_EQ(marked.size(), 1u);
  EXPECT_EQ(marked[0].threadId, t.threadId);
  ASSERT_TRUE(st->set_thread_check(k, false, err));
  ASSERT_TRUE(st->threads_to_check(marked, err));
  EXPECT_TRUE(marked.empty());
  ThreadState t2 = t;
  t2.threadId = 2;
  ASSERT_TRUE(st->put_thread(handover(t2, other_key_, user_key_).thread, 2, r, held, err));
  EXPECT_EQ(r, PutResult::Stored);
  ThreadState t3 = t;
  t3.threadId = 3;
  ASSERT_TRUE(st->put_thread(handover(t3, other_key_, user_key_).thread, 2, r, held, err));
  EXPECT_EQ(r, PutResult::Full);
  // thread acks are not channel acks
  EXPECT_NE(thread_ack_digest(contract_, user_, 0, 2, thread_hash(t)), ack_digest(contract_, user_, 2, thread_hash(t)));
  EXPECT_NE(thread_ack_digest(contract_, user_, 1, 2, thread_hash(t)),
            thread_ack_digest(contract_, user_, 2, 2, thread_hash(t)));
}

// A release names one thread of the receiver and carries the receiver's signature; the
// tower deletes that row only (the slot is free again), and a Released ack names no state.
TEST_F(TowerUnit, ThreadReleaseIsTheReceiversAndFreesOnlyItsThread) {
  ThreadRelease r;
  ASSERT_EQ(make_thread_release(contract_, other_, 7, user_key_, signer_, r), Status::Ok);
  std::vector<uint8_t> w;
  ASSERT_EQ(encode_thread_release(r, w), Status::Ok);
  ASSERT_EQ(w.size(), kThreadReleaseWireSize);
  EXPECT_TRUE(is_thread_release(w.data(), w.size()));
  ThreadRelease d;
  ASSERT_EQ(decode_thread_release(w.data(), w.size(), d), Status::Ok);
  EXPECT_EQ(d.sender, other_);
  EXPECT_EQ(d.threadId, 7u);
  EXPECT_EQ(check_thread_release(d, contract_, user_, signer_), Status::Ok);
  // Someone else's signature, another receiver, another contract, another thread id:
  // the signature does not recover to the receiver.
  ThreadRelease forged;
  ASSERT_EQ(make_thread_release(contract_, other_, 7, hub_key_, signer_, forged), Status::Ok);
  EXPECT_EQ(check_thread_release(forged, contract_, user_, signer_), Status::WrongSigner);
  EXPECT_EQ(check_thread_release(d, contract_, hub_, signer_), Status::WrongSigner);
  Address c2 = contract_;
  c2.bytes[3] ^= 1;
  EXPECT_EQ(check_thread_release(d, c2, user_, signer_), Status::WrongSigner);
  ThreadRelease other_id = d;
  other_id.threadId = 8;
  EXPECT_EQ(check_thread_release(other_id, contract_, user_, signer_), Status::WrongSigner);
  ThreadRelease self;
  ASSERT_EQ(make_thread_release(contract_, user_, 7, user_key_, signer_, self), Status::Ok);
  EXPECT_EQ(check_thread_release(self, contract_, user_, signer_), Status::WrongParty);
  // Malformed bytes.
  EXPECT_EQ(decode_thread_release(w.data(), w.size() - 1, d), Status::Truncated);
  std::vector<uint8_t> longer = w;
  longer.push_back(0);
  EXPECT_EQ(decode_thread_release(longer.data(), longer.size(), d), Status::TrailingBytes);
  std::vector<uint8_t> badv = w;
  badv[94] = 29;
  EXPECT_EQ(decode_thread_release(badv.data(), badv.size(), d), Status::BadRecoveryId);
  std::vector<uint8_t> kind = w;
  kind[1] = 0x02;
  EXPECT_EQ(decode_thread_release(kind.data(), kind.size(), d), Status::BadKind);
  EXPECT_FALSE(is_thread_release(kind.data(), kind.size()));
  // The release digest is none of the other signed digests.
  EXPECT_NE(thread_release_digest(contract_, user_, other_, 7), thread_ack_digest(contract_, user_, 7, 0, Hash32{}));

  // A Released ack names no state.
  Ack a;
  a.result = AckResult::Released;
  ASSERT_EQ(signer_.sign_eth(other_key_, thread_ack_digest(contract_, user_, 7, 0, Hash32{}), a.sig), Status::Ok);
  std::vector<uint8_t> aw;
  ASSERT_EQ(encode_ack(a, aw), Status::Ok);
  Ack ad;
  ASSERT_EQ(decode_ack(aw.data(), aw.size(), ad), Status::Ok);
  EXPECT_EQ(ad.result, AckResult::Released);
  a.txCountGlobal = 3;
  std::vector<uint8_t> bad;
  EXPECT_EQ(encode_ack(a, bad), Status::BadArgs);
  aw[11] = 3;  // txCountGlobal's last byte
  EXPECT_EQ(decode_ack(aw.data(), aw.size(), ad), Status::BadArgs);

  // The store: two threads of this receiver at a limit of 2; releasing one frees a slot
  // for a third and leaves the other held.
  std::string err;
  auto st = Store::open(dir_ + "/rel.db", contract_, hub_, err);
  ASSERT_TRUE(st) << err;
  auto thread = [&](uint64_t id) {
    SignedThreadState t{};
    t.state = thread_state_zero();
    t.state.contractAddress = contract_;
    t.state.sender = other_;
    t.state.receiver = user_;
    t.state.threadId = id;
    t.state.balanceWeiSender = U256::from_u64(10);
    t.state.txCount = 1;
    t.hasSigA = true;
    EXPECT_EQ(signer_.sign_eth(other_key_, thread_hash(t.state), t.sigA), Status::Ok);
    return t;
  };
  PutResult res;
  Held held;
  ASSERT_TRUE(st->put_thread(thread(7), 2, res, held, err)) << err;
  ASSERT_TRUE(st->put_thread(thread(8), 2, res, held, err)) << err;
  ASSERT_TRUE(st->put_thread(thread(9), 2, res, held, err)) << err;
  EXPECT_EQ(res, PutResult::Full);
  bool dropped = false;
  ASSERT_TRUE(st->drop_thread(ThreadKey{other_, user_, 7}, dropped, err)) << err;
  EXPECT_TRUE(dropped);
  ASSERT_TRUE(st->drop_thread(ThreadKey{other_, user_, 7}, dropped, err)) << err;
  EXPECT_FALSE(dropped) << "a replayed release finds nothing";
  ASSERT_TRUE(st->thread_held(ThreadKey{other_, user_, 8}, held, err));
  EXPECT_TRUE(held.found);
  ASSERT_TRUE(st->put_thread(thread(9), 2, res, held, err)) << err;
  EXPECT_EQ(res, PutResult::Stored);
}

TEST_F(TowerUnit, ConfigRefusesSecretsOnTheCommandLine) {
  auto parse = [](std::vector<std::string> args, Config& c, std::string& err) {
    std::vector<char*> av;
    static std::string prog = "picopay-tower";
    av.push_back(&prog[0]);
    for (auto& a : args) av.push_back(&a[0]);
    return parse_config(static_cast<int>(av.size()), av.data(), c, err);
  };
  Config c;
  std::string err;
  EXPECT_EQ(parse({"--help"}, c, err), 1);
  EXPECT_EQ(parse({"--contract", "0x01", "--rpc-url", "http://x", "--private-key", "0x11"}, c, err), 2);
  EXPECT_NE(err.find("--private-key is not accepted"), std::string::npos) << err;
  EXPECT_EQ(parse({"--contract", "0x01", "--rpc-url", "http://x", "--broker-password", "pw"}, c, err), 2);
  EXPECT_NE(err.find("--broker-password is not accepted"), std::string::npos) << err;
  Config fresh;
  EXPECT_EQ(parse({"--rpc-url", "http://x"}, fresh, err), 2);
  EXPECT_NE(err.find("--contract is required"), std::string::npos) << err;
  EXPECT_EQ(parse({"--contract", "0x01", "--rpc-url", "http://x", "--interval-ms", "-5"}, c, err), 2);
  // a config file holding a password must be private
  const std::string f = dir_ + "/tower.json";
  ASSERT_TRUE(testsupport::write_file(f, R"({"contract":"0x01","rpcUrl":"http://x","broker":{"password":"pw"}})"));
  ::chmod(f.c_str(), 0644);
  Config c2;
  EXPECT_EQ(parse({"--config", f}, c2, err), 2);
  EXPECT_NE(err.find("chmod 600"), std::string::npos) << err;
  ::chmod(f.c_str(), 0600);
  Config c3;
  EXPECT_EQ(parse({"--config", f, "--db", dir_ + "/x.db"}, c3, err), 0) << err;
  EXPECT_EQ(c3.broker_password, "pw");
  EXPECT_EQ(c3.event_state, dir_ + "/x.db.events.json");
  ASSERT_TRUE(testsupport::write_file(f, R"({"contract":"0x01","rpcUrl":"http://x","tower":{"privateKey":"0x11"}})"));
  Config c4;
  EXPECT_EQ(parse({"--config", f}, c4, err), 2);
  EXPECT_NE(err.find("raw private key"), std::string::npos) << err;
  ASSERT_TRUE(testsupport::write_file(f, R"({"contract":"0x01","rpcUrl":"http://x","intervalMs":-1})"));
  Config c5;
  EXPECT_EQ(parse({"--config", f}, c5, err), 2);
  EXPECT_NE(err.find("intervalMs"), std::string::npos) << err;
  // the shipped example parses, and the command line wins over it
  Config ex;
  ASSERT_EQ(parse({"--config", PICOPAY_TOWER_EXAMPLE, "--interval-ms", "250"}, ex, err), 0) << err;
  EXPECT_EQ(ex.broker_port, 8883);
  EXPECT_EQ(ex.key_file, "/var/lib/picopay/tower.key");
  EXPECT_EQ(ex.interval_ms, 250);
  EXPECT_EQ(ex.max_channels, 100000);
  EXPECT_EQ(ex.event_state, "/var/lib/picopay/tower.db.events.json");
}

}  // namespace
