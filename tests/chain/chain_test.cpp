// picopay chain tests on a real ganache dev chain (127.0.0.1), states signed by the core.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "devchain.hpp"
#include "picopay/chain/cli.hpp"
#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/watchtower.hpp"
#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"

using namespace picopay;
using namespace picopay::chain;

namespace {

const char* kHubKey = "0x1111111111111111111111111111111111111111111111111111111111111111";
const char* kUserKey = "0x2222222222222222222222222222222222222222222222222222222222222222";
const char* kUser2Key = "0x3333333333333333333333333333333333333333333333333333333333333333";
const char* kTowerKey = "0x4444444444444444444444444444444444444444444444444444444444444444";
const char* kOtherKey = "0x5555555555555555555555555555555555555555555555555555555555555555";
constexpr uint64_t kChallenge = 3600;

U256 u(uint64_t v) { return U256::from_u64(v); }
U256 add(const U256& a, const U256& b) { U256 r; EXPECT_EQ(u256_add(a, b, r), picopay::Status::Ok); return r; }
U256 sub(const U256& a, const U256& b) { U256 r; EXPECT_EQ(u256_sub(a, b, r), picopay::Status::Ok); return r; }
U256 mul(const U256& a, const U256& b) { U256 r; EXPECT_EQ(u256_mul(a, b, r), picopay::Status::Ok); return r; }
U256 gas_cost(const Receipt& r) { return mul(u(r.gasUsed), r.effectiveGasPrice); }
std::string dec(const U256& v) { char b[80]; (void)u256_to_decimal(v, b, sizeof b, nullptr); return b; }

std::map<std::string, uint64_t>& gas_table() { static std::map<std::string, uint64_t> t; return t; }
void record_gas(const std::string& fn, const Receipt& r) {
  auto& v = gas_table()[fn];
  if (r.gasUsed > v) v = r.gasUsed;
}

template <typename T>
T must(picopay::chain::Result<T> r, const char* what) {
  if (!r) ADD_FAILURE() << what << ": " << r.error().to_string();
  if (!r) std::abort();
  return std::move(*r);
}
#define MUST(expr) must((expr), #expr)

// Expects a revert whose reason contains `reason`.
template <typename T>
void expect_revert(const picopay::chain::Result<T>& r, const char* reason) {
  SCOPED_TRACE(std::string("expected revert reason: ") + reason);
  ASSERT_FALSE(r.ok()) << "expected revert: " << reason;
  EXPECT_EQ(r.error().kind, ErrorKind::Reverted) << r.error().to_string();
  EXPECT_NE(r.error().message.find(reason), std::string::npos) << r.error().message;
}

class ChainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    chain_ = new test::DevChain();
    ASSERT_TRUE(chain_->start({kHubKey, kUserKey, kUser2Key, kTowerKey, kOtherKey})) << chain_->error();
  }
  static void TearDownTestSuite() {
    delete chain_;
    chain_ = nullptr;
    std::ofstream f(PICOPAY_TEST_GAS_FILE);
    for (auto& [k, v] : gas_table()) {
      f << k << " " << v << "\n";
      std::printf("gas %-28s %8llu\n", k.c_str(), static_cast<unsigned long long>(v));
    }
  }

  void SetUp() override {
    ASSERT_NE(chain_, nullptr);
    rpc_ = std::make_unique<RpcClient>(chain_->url());
    hub_ = wallet(kHubKey);
    user_ = wallet(kUserKey);
    user2_ = wallet(kUser2Key);
    tower_ = wallet(kTowerKey);
    other_ = wallet(kOtherKey);
    std::string dir = PICOPAY_TEST_CONTRACTS_DIR;
    Artifact token_art = MUST(load_artifact(dir + "/TestToken.json"));
    token_ = MUST(deploy_artifact(*hub_, token_art, {}));
    cm_art_ = MUST(load_artifact(dir + "/ChannelManager.json"));
    Receipt r;
    cm_addr_ = MUST(deploy_channel_manager(*hub_, cm_art_, hub_->address(), kChallenge, token_, &r));
    record_gas("deploy", r);
    deploy_block_ = r.blockNumber;
    hubcm_ = std::make_unique<ChannelManagerClient>(*hub_, cm_addr_);
    usercm_ = std::make_unique<ChannelManagerClient>(*user_, cm_addr_);
    user2cm_ = std::make_unique<ChannelManagerClient>(*user2_, cm_addr_);
    towercm_ = std::make_unique<ChannelManagerClient>(*tower_, cm_addr_);
    othercm_ = std::make_unique<ChannelManagerClient>(*other_, cm_addr_);
  }

  std::unique_ptr<Wallet> wallet(const char* key) {
    PrivateKey k = MUST(read_private_key_text(key));
    auto w = std::make_unique<Wallet>(*rpc_, k);
    auto s = w->init();
    EXPECT_TRUE(s.ok()) << s.error().to_string();
    return w;
  }

  ChannelState base(const Address& user) {
    ChannelState s = channel_state_zero();
    s.contractAddress = cm_addr_;
    s.user = user;
    s.recipient = user;
    return s;
  }
  Signature sign(Wallet& w, const ChannelState& s) { return MUST(w.sign_eth(channel_hash(s))); }
  SignedChannelState both(const ChannelState& s) {
    SignedChannelState x{};
    x.state = s;
    x.hasSigHub = x.hasSigUser = true;
    x.sigHub = sign(*hub_, s);
    Wallet& uw = s.user == user_->address() ? *user_ : *user2_;
    x.sigUser = sign(uw, s);
    return x;
  }
  SignedThreadState tsign(Wallet& w, const ThreadState& t) {
    SignedThreadState x{};
    x.state = t;
    x.hasSigA = true;
    x.sigA = MUST(w.sign_eth(thread_hash(t)));
    return x;
  }
  U256 bal(const Address& a) { return MUST(rpc_->balance(a)); }
  uint64_t now() { return MUST(rpc_->block_by_number("latest")).timestamp; }

  // The user deposits `amount` wei with a hub-signed state (txCount [1,1]) and the
  // ConfirmPending state [2,1] is built; returns the latter.
  ChannelState deposit(Wallet& uw, ChannelManagerClient& ucm, uint64_t amount) {
    ChannelState s = base(uw.address());
    s.pendingDepositWeiUser = u(amount);
    s.txCountGlobal = 1;
    s.txCountChain = 1;
    s.timeout = now() + 600;
    Receipt r = MUST(ucm.user_authorized_update(s, sign(*hub_, s)));
    record_gas("userAuthorizedUpdate", r);
    ChannelState c = base(uw.address());
    c.balanceWeiUser = u(amount);
    c.txCountGlobal = 2;
    c.txCountChain = 1;
    return c;
  }

  static test::DevChain* chain_;
  std::unique_ptr<RpcClient> rpc_;
  std::unique_ptr<Wallet> hub_, user_, user2_, tower_, other_;
  std::unique_ptr<ChannelManagerClient> hubcm_, usercm_, user2cm_, towercm_, othercm_;
  Address token_{}, cm_addr_{};
  Artifact cm_art_;
  uint64_t deploy_block_ = 0;
};
test::DevChain* ChainTest::chain_ = nullptr;

// ------------------------------------------------------------- offline units

TEST(ChainUnits, RlpVectors) {
  auto hex = [](const Bytes& b) { return hex_bytes(b); };
  EXPECT_EQ(hex(rlp_encode(Rlp::bytes({'d', 'o', 'g'}))), "0x83646f67");
  EXPECT_EQ(hex(rlp_encode(Rlp::list_of({Rlp::bytes({'c', 'a', 't'}), Rlp::bytes({'d', 'o', 'g'})}))),
            "0xc88363617483646f67");
  EXPECT_EQ(hex(rlp_encode(Rlp::uint(uint64_t{0}))), "0x80");
  EXPECT_EQ(hex(rlp_encode(Rlp::uint(uint64_t{15}))), "0x0f");
  EXPECT_EQ(hex(rlp_encode(Rlp::uint(uint64_t{1024}))), "0x820400");
  EXPECT_EQ(hex(rlp_encode(Rlp::list_of({}))), "0xc0");
  Bytes lorem(56, 'a');
  Bytes enc = rlp_encode(Rlp::bytes(lorem));
  EXPECT_EQ(enc[0], 0xb8);
  EXPECT_EQ(enc[1], 56);
  auto back = rlp_decode(enc);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->str, lorem);
  EXPECT_FALSE(rlp_decode(Bytes{0x81, 0x05}).ok());  // non-canonical single byte
}

TEST(ChainUnits, SelectorsMatchV1) {
  EXPECT_EQ(hex_bytes(selector("transfer(address,uint256)")), "0xa9059cbb");
  EXPECT_EQ(hex_bytes(selector("balanceOf(address)")), "0x70a08231");
}

TEST(ChainUnits, ThreadProofsMatchCoreRoot) {
  for (size_t n = 1; n <= 9; ++n) {
    std::vector<Hash32> leaves;
    for (size_t i = 0; i < n; ++i) {
      Hash32 h;
      uint8_t seed = static_cast<uint8_t>(i * 7 + n);
      keccak256(&seed, 1, h.bytes);
      leaves.push_back(h);
    }
    Hash32 buf[16];
    for (size_t i = 0; i < n; ++i) buf[i] = leaves[i];
    Hash32 core_root;
    ASSERT_EQ(thread_root_in_place(buf, n, 16, core_root), picopay::Status::Ok);
    Hash32 root = thread_tree_root(leaves);
    EXPECT_EQ(root, core_root) << "n=" << n;
    for (const auto& l : leaves) {
      Bytes proof = MUST(thread_proof(leaves, l));
      EXPECT_TRUE(proof_is_contained(l, proof, root)) << "n=" << n;
      Bytes bad = proof;
      bad.back() ^= 1;
      if (proof.size() > 32) EXPECT_FALSE(proof_is_contained(l, bad, root));
    }
  }
  EXPECT_TRUE(thread_tree_root({}).is_zero());
}

TEST(ChainUnits, StateJsonRoundTrip) {
  SignedChannelState s{};
  s.state = channel_state_zero();
  s.state.balanceWeiUser = U256::max();
  s.state.txCountGlobal = 7;
  s.hasSigHub = true;
  s.sigHub.v = 28;
  auto back = channel_state_from_json(channel_state_to_json(s));
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(back->state, s.state);
  EXPECT_TRUE(back->hasSigHub);
  EXPECT_FALSE(back->hasSigUser);
  EXPECT_FALSE(channel_state_from_json("{\"user\":1}").ok());
}

TEST(ChainUnits, TransportErrorIsTyped) {
  RpcClient rpc("http://127.0.0.1:1", 2000);
  auto r = rpc.block_number();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::Transport);
  EXPECT_NE(r.error().message.find("eth_blockNumber"), std::string::npos);
}

// A JSON-RPC server on 127.0.0.1 that leaves the first `silent` connections unanswered
// (the request is read, no reply ever comes) and answers later ones with block 0x2a.
class LossyRpcServer {
 public:
  explicit LossyRpcServer(int silent) : silent_(silent) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~LossyRpcServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    for (int c : held_) ::close(c);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_.load(); }

 private:
  void serve() {
    while (!stop_) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      const int n = ++connections_;
      char buf[4096];
      (void)::recv(c, buf, sizeof buf, 0);
      if (n <= silent_) {
        held_.push_back(c);  // never answered
        continue;
      }
      const std::string body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x2a\"}";
      const std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      (void)::send(c, resp.data(), resp.size(), 0);
      ::close(c);
    }
  }
  int fd_ = -1, silent_ = 0, port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::vector<int> held_;
  std::thread thread_;
};

TEST(ChainUnits, AReadCallLostOnItsConnectionIsRetriedOnAFreshOne) {
  LossyRpcServer server(1);
  RpcClient rpc(server.url(), 15000);
  auto r = rpc.block_number();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 42u);
  EXPECT_EQ(server.connections(), 2);
}

TEST(ChainUnits, ASentTransactionIsNeverRepeated) {
  LossyRpcServer server(10);
  RpcClient rpc(server.url(), 3000);
  auto r = rpc.send_raw_transaction({0x01, 0x02});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::Transport);
  EXPECT_EQ(server.connections(), 1);
}

// ------------------------------------------------------------- on the dev chain

TEST_F(ChainTest, DeployAndViews) {
  EXPECT_EQ(MUST(hubcm_->hub()), hub_->address());
  EXPECT_EQ(MUST(hubcm_->challenge_period()), kChallenge);
  Bytes code = MUST(rpc_->code(cm_addr_));
  EXPECT_EQ(code.size(), cm_art_.deployed_size);
  EXPECT_LE(code.size(), 24576u);  // EIP-170
  std::ofstream(std::string(PICOPAY_TEST_GAS_FILE) + ".size") << code.size() << "\n";
  auto rpc_err = rpc_->call("no_suchMethod", "[]");
  ASSERT_FALSE(rpc_err.ok());
  EXPECT_EQ(rpc_err.error().kind, ErrorKind::Rpc);
}

TEST_F(ChainTest, UserDepositWithHubSignedState) {
  U256 before = bal(user_->address());
  ChannelState s = base(user_->address());
  s.pendingDepositWeiUser = u(1000);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  s.timeout = now() + 600;
  Receipt r = MUST(usercm_->user_authorized_update(s, sign(*hub_, s)));
  record_gas("userAuthorizedUpdate", r);
  OnchainChannel c = MUST(usercm_->channel(user_->address()));
  EXPECT_EQ(c.weiUser, u(1000));
  EXPECT_EQ(c.weiTotal, u(1000));
  EXPECT_EQ(c.txCountGlobal, 1u);
  EXPECT_EQ(c.txCountChain, 1u);
  EXPECT_EQ(MUST(usercm_->total_channel_wei()), u(1000));
  // every wei: before = after + deposit + gas
  EXPECT_EQ(before, add(add(bal(user_->address()), u(1000)), gas_cost(r)));
  // the event carries the state
  auto logs = MUST(rpc_->logs(cm_addr_, r.blockNumber, r.blockNumber));
  ASSERT_EQ(logs.size(), 1u);
  ChannelEvent e = MUST(decode_event(logs[0]));
  EXPECT_EQ(e.kind, EventKind::DidUpdateChannel);
  EXPECT_EQ(e.user, user_->address());
  EXPECT_EQ(e.senderIdx, 1u);
  EXPECT_EQ(e.pendingWeiUpdates[2], u(1000));
}

TEST_F(ChainTest, HubCollateralFromReserve) {
  Receipt f = MUST(hubcm_->fund_reserve(u(5000)));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), u(5000));
  ChannelState s = base(user_->address());
  s.pendingDepositWeiHub = u(2000);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  Receipt r = MUST(hubcm_->hub_authorized_update(s, sign(*user_, s)));
  record_gas("hubAuthorizedUpdate", r);
  OnchainChannel c = MUST(hubcm_->channel(user_->address()));
  EXPECT_EQ(c.weiHub, u(2000));
  EXPECT_EQ(c.weiTotal, u(2000));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), u(3000));
  // only the hub may call it
  ChannelState s2 = s;
  s2.txCountGlobal = 2;
  s2.txCountChain = 2;
  s2.pendingDepositWeiHub = u(1);
  expect_revert(othercm_->hub_authorized_update(s2, sign(*user_, s2)), "only hub");
  // hub takes its reserve back
  U256 hb = bal(hub_->address());
  Receipt w = MUST(hubcm_->hub_contract_withdraw(u(3000), u(0)));
  record_gas("hubContractWithdraw", w);
  EXPECT_EQ(add(hb, u(3000)), add(bal(hub_->address()), gas_cost(w)));
  expect_revert(hubcm_->hub_contract_withdraw(u(1), u(0)), "not sufficient");
  (void)f;
}

TEST_F(ChainTest, ConsensusWithdrawal) {
  ChannelState c = deposit(*user_, *usercm_, 1000);
  // payment: user pays hub 300 (off-chain, [3,1])
  c.balanceWeiHub = u(300);
  c.balanceWeiUser = u(700);
  c.txCountGlobal = 3;
  // withdrawal of 200 to a separate recipient, signed by the hub, executed by the user
  ChannelState w = c;
  w.recipient = other_->address();
  w.balanceWeiUser = u(500);
  w.pendingWithdrawalWeiUser = u(200);
  w.txCountGlobal = 4;
  w.txCountChain = 2;
  U256 ob = bal(other_->address());
  Receipt r = MUST(usercm_->user_authorized_update(w, sign(*hub_, w)));
  record_gas("userAuthorizedUpdate(withdraw)", r);
  EXPECT_EQ(bal(other_->address()), add(ob, u(200)));
  OnchainChannel oc = MUST(usercm_->channel(user_->address()));
  EXPECT_EQ(oc.weiHub, u(300));
  EXPECT_EQ(oc.weiUser, u(500));
  EXPECT_EQ(oc.weiTotal, u(800));
  EXPECT_EQ(MUST(usercm_->total_channel_wei()), u(800));
}

TEST_F(ChainTest, UnilateralExitWithLatestStatePaysExactly) {
  ChannelState c = deposit(*user_, *usercm_, 1000);
  c.balanceWeiHub = u(250);
  c.balanceWeiUser = u(750);
  c.txCountGlobal = 5;
  U256 ub = bal(user_->address());
  U256 reserve0 = MUST(usercm_->hub_reserve_wei());
  Receipt r = MUST(usercm_->start_exit_with_update(both(c)));
  record_gas("startExitWithUpdate", r);
  OnchainChannel oc = MUST(usercm_->channel(user_->address()));
  EXPECT_EQ(oc.status, ChannelStatus::ChannelDispute);
  EXPECT_EQ(oc.exitInitiator, user_->address());
  // the initiator can not empty before the period ends
  expect_revert(usercm_->empty_channel(user_->address()), "closing time must have passed");
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  Receipt e = MUST(othercm_->empty_channel(user_->address()));  // anyone, after the period
  record_gas("emptyChannel", e);
  EXPECT_EQ(bal(user_->address()), sub(add(ub, u(750)), gas_cost(r)));
  EXPECT_EQ(MUST(usercm_->hub_reserve_wei()), add(reserve0, u(250)));
  oc = MUST(usercm_->channel(user_->address()));
  EXPECT_EQ(oc.status, ChannelStatus::Open);
  EXPECT_TRUE(oc.weiTotal.is_zero());
  EXPECT_EQ(oc.txCountGlobal, 5u);
  EXPECT_TRUE(MUST(usercm_->total_channel_wei()).is_zero());
}

TEST_F(ChainTest, StartExitOnChainStateAndHubEmpties) {
  deposit(*user_, *usercm_, 400);
  Receipt r = MUST(usercm_->start_exit(user_->address()));
  record_gas("startExit", r);
  U256 ub = bal(user_->address());
  Receipt e = MUST(hubcm_->empty_channel(user_->address()));  // non-initiator, before the end
  EXPECT_EQ(bal(user_->address()), add(ub, u(400)));
  (void)e;
}

TEST_F(ChainTest, StaleExitIsBeatenByWatchtower) {
  ChannelState c = deposit(*user_, *usercm_, 1000);
  ChannelState s2 = c;  // user paid 100
  s2.balanceWeiHub = u(100);
  s2.balanceWeiUser = u(900);
  s2.txCountGlobal = 3;
  ChannelState s3 = s2;  // user paid 300 in total: the latest state
  s3.balanceWeiHub = u(300);
  s3.balanceWeiUser = u(700);
  s3.txCountGlobal = 4;
  SignedChannelState stale = both(s2), latest = both(s3);

  // The hub's watchtower (its own key) guards the channel with the latest state.
  EventPoller poller(*rpc_, cm_addr_, 0, "", deploy_block_);
  Watchtower tower(*towercm_, poller);
  tower.watch(WatchedChannel{user_->address(), latest, {}});
  auto idle = MUST(tower.tick());
  EXPECT_TRUE(idle.empty());

  U256 ub = bal(user_->address());
  U256 reserve0 = MUST(usercm_->hub_reserve_wei());
  Receipt r = MUST(usercm_->start_exit_with_update(stale));
  auto acts = MUST(tower.tick());
  ASSERT_EQ(acts.size(), 1u);
  EXPECT_EQ(acts[0].what, "emptyChannelWithChallenge");
  EXPECT_TRUE(acts[0].ok) << acts[0].error;
  gas_table()["emptyChannelWithChallenge(record)"] =
      std::max(gas_table()["emptyChannelWithChallenge(record)"], acts[0].gasUsed);
  // the tower is not a party: its state is recorded and the challenge period runs on
  OnchainChannel mid = MUST(usercm_->channel(user_->address()));
  EXPECT_EQ(mid.status, ChannelStatus::ChannelDispute);
  EXPECT_EQ(mid.txCountGlobal, 4u);
  EXPECT_TRUE(MUST(tower.tick()).empty());
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  acts = MUST(tower.tick());
  ASSERT_EQ(acts.size(), 1u);
  EXPECT_EQ(acts[0].what, "emptyChannel");
  EXPECT_TRUE(acts[0].ok) << acts[0].error;
  // the honest hub gets its full 300, the user exactly 700
  EXPECT_EQ(MUST(usercm_->hub_reserve_wei()), add(reserve0, u(300)));
  EXPECT_EQ(bal(user_->address()), sub(add(ub, u(700)), gas_cost(r)));
  OnchainChannel oc = MUST(usercm_->channel(user_->address()));
  EXPECT_EQ(oc.status, ChannelStatus::Open);
  EXPECT_EQ(oc.txCountGlobal, 4u);
  // the stale state can never be used again
  expect_revert(usercm_->start_exit_with_update(stale), "global txCount must be higher");
}

// A watchtower that is handed no channel up front (the hub does not read every channel
// at start): when an exit starts it reads that channel from its owner's store (the
// lookup), and not before; a read error is retried next round and the stale exit is
// still answered within the challenge period.
TEST_F(ChainTest, StaleExitIsBeatenByAWatchtowerThatReadsTheStoreWhenTheExitStarts) {
  ChannelState c = deposit(*user_, *usercm_, 1000);
  ChannelState s2 = c;
  s2.balanceWeiHub = u(100);
  s2.balanceWeiUser = u(900);
  s2.txCountGlobal = 3;
  ChannelState s3 = s2;
  s3.balanceWeiHub = u(300);
  s3.balanceWeiUser = u(700);
  s3.txCountGlobal = 4;
  SignedChannelState stale = both(s2), latest = both(s3);

  EventPoller poller(*rpc_, cm_addr_, 0, "", deploy_block_);
  Watchtower tower(*towercm_, poller);
  int lookups = 0;
  tower.set_lookup([&](const Address& who, WatchedChannel& out, bool& found) {
    ++lookups;
    if (lookups == 1) return false;  // the store is unavailable once
    found = who == user_->address();
    out.user = who;
    out.latest = latest;
    return true;
  });
  EXPECT_TRUE(MUST(tower.tick()).empty());
  EXPECT_EQ(lookups, 0) << "the tower read the store before any exit";

  MUST(usercm_->start_exit_with_update(stale));
  EXPECT_TRUE(MUST(tower.tick()).empty()) << "acted without the channel's state";
  EXPECT_EQ(lookups, 1);
  auto acts = MUST(tower.tick());
  EXPECT_EQ(lookups, 2);
  ASSERT_EQ(acts.size(), 1u);
  EXPECT_EQ(acts[0].what, "emptyChannelWithChallenge");
  EXPECT_TRUE(acts[0].ok) << acts[0].error;
  EXPECT_EQ(MUST(usercm_->channel(user_->address())).txCountGlobal, 4u);
  EXPECT_TRUE(MUST(tower.tick()).empty());
  EXPECT_EQ(lookups, 2) << "read again after the state was found";
}

TEST_F(ChainTest, ThreadExitAndChallengePayBothSides) {
  // A (user_) pays B (user2_) through a thread. A deposits 1000, the hub collateralises
  // B's channel with 500.
  ChannelState a = deposit(*user_, *usercm_, 1000);
  MUST(hubcm_->fund_reserve(u(500)));
  ChannelState b = base(user2_->address());
  b.pendingDepositWeiHub = u(500);
  b.txCountGlobal = 1;
  b.txCountChain = 1;
  MUST(hubcm_->hub_authorized_update(b, sign(*user2_, b)));
  b = base(user2_->address());
  b.balanceWeiHub = u(500);
  b.txCountGlobal = 2;
  b.txCountChain = 1;

  ThreadState t0 = thread_state_zero();
  t0.contractAddress = cm_addr_;
  t0.sender = user_->address();
  t0.receiver = user2_->address();
  t0.threadId = 1;
  t0.balanceWeiSender = u(300);
  SignedThreadState init = tsign(*user_, t0);
  std::vector<Hash32> leaves = {thread_hash(t0)};
  Hash32 root = thread_tree_root(leaves);
  // open the thread in both channels
  a.balanceWeiUser = u(700);
  a.txCountGlobal = 3;
  a.threadRoot = root;
  a.threadCount = 1;
  b.balanceWeiHub = u(200);
  b.txCountGlobal = 3;
  b.threadRoot = root;
  b.threadCount = 1;
  // thread payments: 100 then 200 to B
  ThreadState t1 = t0, t2 = t0;
  t1.balanceWeiSender = u(200);
  t1.balanceWeiReceiver = u(100);
  t1.txCount = 1;
  t2.balanceWeiSender = u(100);
  t2.balanceWeiReceiver = u(200);
  t2.txCount = 2;
  SignedThreadState latest = tsign(*user_, t2);

  // B's watchtower guards B's channel and the thread.
  EventPoller poller(*rpc_, cm_addr_, 0, "", deploy_block_);
  Watchtower tower(*towercm_, poller);
  WatchedThread wt{init, leaves, latest};
  tower.watch(WatchedChannel{user2_->address(), both(b), {wt}});

  U256 a0 = bal(user_->address()), b0 = bal(user2_->address());
  U256 reserve0 = MUST(hubcm_->hub_reserve_wei());
  U256 agas = u(0);
  // A exits its channel with the thread-open state, then starts the thread exit with
  // the initial (stale, favourable to A) thread state.
  Receipt r1 = MUST(usercm_->start_exit_with_update(both(a)));
  agas = add(agas, gas_cost(r1));
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  Receipt r2 = MUST(usercm_->empty_channel(user_->address()));
  agas = add(agas, gas_cost(r2));
  EXPECT_EQ(MUST(usercm_->channel(user_->address())).status, ChannelStatus::ThreadDispute);
  Bytes proof = MUST(thread_proof(leaves, thread_hash(t0)));
  // a forged proof is refused
  Bytes badproof = proof;
  badproof[0] ^= 1;
  expect_revert(usercm_->start_exit_thread(user_->address(), init, badproof), "not contained");
  Receipt r3 = MUST(usercm_->start_exit_thread(user_->address(), init, proof));
  record_gas("startExitThread", r3);
  agas = add(agas, gas_cost(r3));

  // the tower answers with the latest thread state
  auto acts = MUST(tower.tick());
  ASSERT_EQ(acts.size(), 1u);
  EXPECT_EQ(acts[0].what, "challengeThread");
  ASSERT_TRUE(acts[0].ok) << acts[0].error;
  gas_table()["challengeThread"] = std::max(gas_table()["challengeThread"], acts[0].gasUsed);
  OnchainThread ot = MUST(usercm_->thread(t0.sender, t0.receiver, 1));
  EXPECT_EQ(ot.txCount, 2u);
  EXPECT_EQ(ot.weiReceiver, u(200));
  // an older update can not replace it
  expect_revert(usercm_->challenge_thread(tsign(*user_, t1)), "txCount must be higher");

  // the hub exits B's channel with the thread-open state
  MUST(hubcm_->start_exit_with_update(both(b)));
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  MUST(hubcm_->empty_channel(user2_->address()));
  // A empties its side of the thread; the tower empties B's side
  Receipt r4 = MUST(usercm_->empty_thread(user_->address(), init, proof));
  record_gas("emptyThread", r4);
  agas = add(agas, gas_cost(r4));
  // a second empty is refused (the channel reopened when its last thread was emptied)
  expect_revert(usercm_->empty_thread(user_->address(), init, proof), "thread dispute");
  acts = MUST(tower.tick());
  ASSERT_EQ(acts.size(), 1u);
  EXPECT_EQ(acts[0].what, "emptyThread");
  EXPECT_TRUE(acts[0].ok) << acts[0].error;

  // A: 700 from the channel + 100 left in the thread; B: 200 from the thread; the hub's
  // reserve: 200 (B's channel) + 200 (A-side receiver share) + 100 (B-side sender share).
  EXPECT_EQ(bal(user_->address()), sub(add(a0, u(800)), agas));
  EXPECT_EQ(bal(user2_->address()), add(b0, u(200)));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), add(reserve0, u(500)));
  EXPECT_TRUE(MUST(hubcm_->total_channel_wei()).is_zero());
  EXPECT_EQ(MUST(usercm_->channel(user_->address())).status, ChannelStatus::Open);
  EXPECT_EQ(MUST(usercm_->channel(user2_->address())).status, ChannelStatus::Open);
}

// The sender may sign a thread state with a txCount above the receiver's latest that pays
// the receiver nothing; the contract takes a state that pays the receiver more, and the
// receiver's watchtower must answer with it even though its txCount is lower.
TEST_F(ChainTest, WatchtowerAnswersAHighTxCountThreadStateThatPaysTheReceiverLess) {
  ChannelState a = deposit(*user_, *usercm_, 1000);
  MUST(hubcm_->fund_reserve(u(500)));
  ChannelState b = base(user2_->address());
  b.pendingDepositWeiHub = u(500);
  b.txCountGlobal = 1;
  b.txCountChain = 1;
  MUST(hubcm_->hub_authorized_update(b, sign(*user2_, b)));
  ThreadState t0 = thread_state_zero();
  t0.contractAddress = cm_addr_;
  t0.sender = user_->address();
  t0.receiver = user2_->address();
  t0.threadId = 9;
  t0.balanceWeiSender = u(300);
  SignedThreadState init = tsign(*user_, t0);
  std::vector<Hash32> leaves = {thread_hash(t0)};
  a.balanceWeiUser = u(700);
  a.txCountGlobal = 3;
  a.threadRoot = thread_tree_root(leaves);
  a.threadCount = 1;
  b = base(user2_->address());
  b.balanceWeiHub = u(200);
  b.txCountGlobal = 3;
  b.txCountChain = 1;
  b.threadRoot = a.threadRoot;
  b.threadCount = 1;
  ThreadState t2 = t0;  // the receiver's latest: 200 paid
  t2.balanceWeiSender = u(100);
  t2.balanceWeiReceiver = u(200);
  t2.txCount = 2;
  ThreadState forged = t0;  // signed by the sender: nothing paid, txCount far above
  forged.txCount = 1000000;

  EventPoller poller(*rpc_, cm_addr_, 0, "", deploy_block_);
  Watchtower tower(*towercm_, poller);
  tower.watch(WatchedChannel{user2_->address(), both(b), {WatchedThread{init, leaves, tsign(*user_, t2)}}});

  MUST(usercm_->start_exit_with_update(both(a)));
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  MUST(usercm_->empty_channel(user_->address()));
  MUST(usercm_->start_exit_thread_with_update(user_->address(), init, MUST(thread_proof(leaves, thread_hash(t0))),
                                              tsign(*user_, forged)));
  OnchainThread ot = MUST(usercm_->thread(t0.sender, t0.receiver, 9));
  ASSERT_EQ(ot.txCount, 1000000u);
  ASSERT_TRUE(ot.weiReceiver.is_zero());
  auto acts = MUST(tower.tick());
  ASSERT_EQ(acts.size(), 1u);
  EXPECT_EQ(acts[0].what, "challengeThread");
  ASSERT_TRUE(acts[0].ok) << acts[0].error;
  ot = MUST(usercm_->thread(t0.sender, t0.receiver, 9));
  EXPECT_EQ(ot.weiReceiver, u(200));
  EXPECT_EQ(ot.weiSender, u(100));
  // nothing better to send now: the tower stays quiet
  EXPECT_TRUE(MUST(tower.tick()).empty());
}

TEST_F(ChainTest, StartExitThreadWithUpdateAndNuke) {
  ChannelState a = deposit(*user_, *usercm_, 1000);
  ThreadState t0 = thread_state_zero();
  t0.contractAddress = cm_addr_;
  t0.sender = user_->address();
  t0.receiver = user2_->address();
  t0.threadId = 9;
  t0.balanceWeiSender = u(400);
  std::vector<Hash32> leaves = {thread_hash(t0)};
  a.balanceWeiUser = u(600);
  a.txCountGlobal = 3;
  a.threadRoot = thread_tree_root(leaves);
  a.threadCount = 1;
  MUST(usercm_->start_exit_with_update(both(a)));
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  MUST(usercm_->empty_channel(user_->address()));
  ThreadState t1 = t0;
  t1.balanceWeiSender = u(150);
  t1.balanceWeiReceiver = u(250);
  t1.txCount = 4;
  Receipt r = MUST(usercm_->start_exit_thread_with_update(user_->address(), tsign(*user_, t0),
                                                          MUST(thread_proof(leaves, thread_hash(t0))),
                                                          tsign(*user_, t1)));
  record_gas("startExitThreadWithUpdate", r);
  // nobody empties the thread: after 10 challenge periods anyone can nuke
  expect_revert(othercm_->nuke_threads(user_->address()), "10 challenge periods");
  ASSERT_TRUE(rpc_->increase_time(kChallenge * 11 + 1).ok());
  U256 ub = bal(user_->address());
  Receipt n = MUST(othercm_->nuke_threads(user_->address()));
  record_gas("nukeThreads", n);
  EXPECT_EQ(bal(user_->address()), add(ub, u(400)));
  EXPECT_TRUE(MUST(usercm_->total_channel_wei()).is_zero());
}

TEST_F(ChainTest, RefusesForgedWrongTxCountWrongContractAndReplay) {
  ChannelState s = base(user_->address());
  s.pendingDepositWeiUser = u(100);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  // forged: signed by someone else than the hub
  expect_revert(usercm_->user_authorized_update(s, sign(*other_, s)), "hub signature invalid");
  // high-S form of a valid signature (EIP-2)
  Signature good = sign(*hub_, s);
  Signature high = good;
  {
    static const uint8_t n[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48,
                                  0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};
    U256 N, S, H;
    (void)u256_from_be(n, 32, N);
    (void)u256_from_be(good.s, 32, S);
    H = sub(N, S);
    u256_to_be32(H, high.s);
    high.v = good.v == 27 ? 28 : 27;
  }
  expect_revert(usercm_->user_authorized_update(s, high), "EIP-2");
  // wrong contract address in the signed state
  ChannelState wrong = s;
  wrong.contractAddress = token_;
  expect_revert(usercm_->user_authorized_update(wrong, sign(*hub_, wrong)), "hub signature invalid");
  // the right one passes once
  MUST(usercm_->user_authorized_update(s, good));
  // replayed: the same state again
  expect_revert(usercm_->user_authorized_update(s, good), "global txCount must be higher");
  // replayed on another manager: its hash names this contract, so the signature fails
  Address other_cm = MUST(deploy_channel_manager(*hub_, cm_art_, hub_->address(), kChallenge, token_));
  ChannelManagerClient ucm2(*user_, other_cm);
  expect_revert(ucm2.user_authorized_update(s, good), "hub signature invalid");
  // wrong chain txCount (goes backwards)
  ChannelState back = s;
  back.txCountGlobal = 2;
  back.txCountChain = 0;
  back.pendingDepositWeiUser = u(0);
  back.balanceWeiUser = u(100);
  expect_revert(usercm_->user_authorized_update(back, sign(*hub_, back)), "onchain txCount");
  // more than the channel holds
  ChannelState greedy = s;
  greedy.txCountGlobal = 3;
  greedy.txCountChain = 2;
  greedy.pendingDepositWeiUser = u(0);
  greedy.balanceWeiUser = u(101);
  expect_revert(usercm_->user_authorized_update(greedy, sign(*hub_, greedy)), "wei must be conserved");
  // a half-signed exit state is refused
  ChannelState c = s;
  c.pendingDepositWeiUser = u(0);
  c.balanceWeiUser = u(100);
  c.txCountGlobal = 2;
  SignedChannelState half = both(c);
  half.sigUser = sign(*other_, c);
  expect_revert(usercm_->start_exit_with_update(half), "user signature invalid");
  // a third party may not start an exit
  expect_revert(othercm_->start_exit(user_->address()), "exit initiator must be user or hub");
}

TEST_F(ChainTest, TokenDepositAndExit) {
  MUST(erc20_mint(*user_, token_, user_->address(), u(10000)));
  MUST(erc20_approve(*user_, token_, cm_addr_, u(10000)));
  ChannelState s = base(user_->address());
  s.pendingDepositTokenUser = u(4000);
  s.pendingDepositWeiUser = u(10);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  Receipt r = MUST(usercm_->user_authorized_update(s, sign(*hub_, s)));
  record_gas("userAuthorizedUpdate(token)", r);
  EXPECT_EQ(MUST(erc20_balance(*rpc_, token_, cm_addr_)), u(4000));
  EXPECT_EQ(MUST(usercm_->total_channel_token()), u(4000));
  ChannelState c = base(user_->address());
  c.balanceTokenUser = u(3000);
  c.balanceTokenHub = u(1000);
  c.balanceWeiUser = u(10);
  c.txCountGlobal = 2;
  c.txCountChain = 1;
  MUST(hubcm_->start_exit_with_update(both(c)));
  MUST(usercm_->empty_channel(user_->address()));
  EXPECT_EQ(MUST(erc20_balance(*rpc_, token_, user_->address())), u(9000));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_tokens()), u(1000));
}

TEST_F(ChainTest, EventPollerResumesAndSurvivesReorg) {
  std::string file = ::testing::TempDir() + "picopay-events-" + std::to_string(getpid()) + ".state";
  std::remove(file.c_str());
  std::vector<EventKind> seen;
  auto on = [&](const ChannelEvent& e) { seen.push_back(e.kind); };
  {
    EventPoller p(*rpc_, cm_addr_, 1, file, deploy_block_);
    ASSERT_TRUE(p.load().ok());
    deposit(*user_, *usercm_, 50);
    MUST(rpc_->mine());  // one confirmation
    EXPECT_EQ(MUST(p.poll(on)), 1u);
  }
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], EventKind::DidUpdateChannel);
  // resumed from the file: nothing is delivered twice
  EventPoller p2(*rpc_, cm_addr_, 0, file, deploy_block_);
  ASSERT_TRUE(p2.load().ok());
  std::string snap = MUST(rpc_->snapshot());
  MUST(usercm_->start_exit(user_->address()));  // block X
  EXPECT_EQ(MUST(p2.poll(on)), 2u - 1u + 0u);   // the exit (the deposit was already seen)
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], EventKind::DidStartExitChannel);
  // reorg: block X is replaced by a block without the exit, then the hub exits instead
  ASSERT_TRUE(rpc_->revert_to(snap).ok());
  MUST(rpc_->mine());
  MUST(hubcm_->start_exit(user_->address()));
  size_t n = MUST(p2.poll(on));
  EXPECT_GE(p2.reorgs_seen(), 1u);
  EXPECT_EQ(n, 1u);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2], EventKind::DidStartExitChannel);
  std::remove(file.c_str());
}

int cli(std::vector<std::string> args) {
  std::vector<char*> av;
  for (auto& a : args) av.push_back(a.data());
  return picopay_chain_cli(static_cast<int>(av.size()), av.data());
}

TEST_F(ChainTest, CliSubcommands) {
  std::string url = chain_->url(), cm = address_hex(cm_addr_), hub = address_hex(hub_->address());
  EXPECT_TRUE(picopay_chain_cli_handles("thread-challenge"));
  EXPECT_FALSE(picopay_chain_cli_handles("pay"));
  EXPECT_EQ(cli({"deploy", "--rpc", url, "--private-key", kHubKey, "--hub", hub, "--challenge-period", "60",
                 "--artifact", std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/ChannelManager.json"}), 0);
  deposit(*user_, *usercm_, 77);
  EXPECT_EQ(cli({"channel", "--rpc", url, "--contract", cm, "--user", address_hex(user_->address())}), 0);
  EXPECT_EQ(cli({"exit", "--rpc", url, "--private-key", kUserKey, "--contract", cm, "--user",
                 address_hex(user_->address())}), 0);
  EXPECT_EQ(MUST(usercm_->channel(user_->address())).status, ChannelStatus::ChannelDispute);
  EXPECT_EQ(cli({"empty-channel", "--rpc", url, "--private-key", kHubKey, "--contract", cm, "--user",
                 address_hex(user_->address())}), 0);
  EXPECT_EQ(cli({"exit", "--rpc", url, "--contract", cm}), 2);                        // no key
  EXPECT_EQ(cli({"channel", "--rpc", "http://127.0.0.1:1", "--contract", cm, "--user", hub}), 1);  // transport
  EXPECT_EQ(cli({"exit", "--rpc", url, "--private-key", kOtherKey, "--contract", cm, "--user",
                 address_hex(user_->address())}), 1);  // reverted: not user or hub
}

// ------------------------------------------------------------- security regressions

// The exiting party (here through a third-party address it controls) answers its own
// exit with an older double-signed state that is still newer than the chain's. That
// state is recorded, but only the party that did not start the exit may empty at once:
// the hub still gets the challenge period to show the latest state.
TEST_F(ChainTest, InitiatorCanNotFinaliseItsExitWithAnOlderState) {
  ChannelState c = deposit(*user_, *usercm_, 1000);
  ChannelState s3 = c;  // user paid 100
  s3.balanceWeiHub = u(100);
  s3.balanceWeiUser = u(900);
  s3.txCountGlobal = 3;
  ChannelState s4 = c;  // user paid 600: the latest state
  s4.balanceWeiHub = u(600);
  s4.balanceWeiUser = u(400);
  s4.txCountGlobal = 4;
  U256 reserve0 = MUST(hubcm_->hub_reserve_wei());
  U256 ub = bal(user_->address());
  Receipt r1 = MUST(usercm_->start_exit(user_->address()));  // the on-chain state [1,1]
  Receipt r2 = MUST(usercm_->empty_channel_with_challenge(both(s3)));  // the initiator itself
  OnchainChannel oc = MUST(usercm_->channel(user_->address()));
  ASSERT_EQ(oc.status, ChannelStatus::ChannelDispute) << "the initiator emptied its own exit at once";
  EXPECT_EQ(oc.txCountGlobal, 3u);
  // an accomplice's address can not finalise it either (it may only record newer states)
  expect_revert(othercm_->empty_channel_with_challenge(both(s3)), "global txCount must be higher");
  // the hub (the non-initiating party) answers with the latest state and empties at once
  Receipt e = MUST(hubcm_->empty_channel_with_challenge(both(s4)));
  record_gas("emptyChannelWithChallenge", e);
  oc = MUST(usercm_->channel(user_->address()));
  EXPECT_EQ(oc.status, ChannelStatus::Open);
  EXPECT_EQ(oc.txCountGlobal, 4u);
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), add(reserve0, u(600)));
  EXPECT_EQ(bal(user_->address()), sub(add(ub, u(400)), add(gas_cost(r1), gas_cost(r2))));
  EXPECT_TRUE(MUST(usercm_->total_channel_wei()).is_zero());
}

// The sender signs a thread state alone, so it can sign one with a txCount above the
// receiver's latest that pays the receiver nothing and open the dispute with it. The
// receiver's latest state (fewer txCount, more for the receiver) must still win.
TEST_F(ChainTest, SenderCanNotEraseThreadPaymentsWithAHigherTxCount) {
  ChannelState a = deposit(*user_, *usercm_, 1000);
  ThreadState t0 = thread_state_zero();
  t0.contractAddress = cm_addr_;
  t0.sender = user_->address();
  t0.receiver = user2_->address();
  t0.threadId = 5;
  t0.balanceWeiSender = u(300);
  std::vector<Hash32> leaves = {thread_hash(t0)};
  a.balanceWeiUser = u(700);
  a.txCountGlobal = 3;
  a.threadRoot = thread_tree_root(leaves);
  a.threadCount = 1;
  ThreadState t2 = t0;  // the receiver's latest: 200 paid
  t2.balanceWeiSender = u(100);
  t2.balanceWeiReceiver = u(200);
  t2.txCount = 2;
  ThreadState forged = t0;  // signed by the sender only, nothing paid, txCount at the top
  forged.txCount = UINT64_MAX;
  MUST(usercm_->start_exit_with_update(both(a)));
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  MUST(usercm_->empty_channel(user_->address()));
  MUST(usercm_->start_exit_thread_with_update(user_->address(), tsign(*user_, t0),
                                              MUST(thread_proof(leaves, thread_hash(t0))), tsign(*user_, forged)));
  // the receiver answers with its latest state
  auto ch = user2cm_->challenge_thread(tsign(*user_, t2));
  ASSERT_TRUE(ch.ok()) << ch.error().to_string();
  OnchainThread ot = MUST(usercm_->thread(t0.sender, t0.receiver, 5));
  EXPECT_EQ(ot.weiReceiver, u(200));
  EXPECT_EQ(ot.weiSender, u(100));
  // the sender can not take it back with another high-txCount state
  ThreadState back = t2;
  back.balanceWeiSender = u(300);
  back.balanceWeiReceiver = u(0);
  back.txCount = 3;
  expect_revert(usercm_->challenge_thread(tsign(*user_, back)), "never decrease");
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  U256 reserve0 = MUST(hubcm_->hub_reserve_wei());
  U256 ab = bal(user_->address());
  MUST(othercm_->empty_thread(user_->address(), tsign(*user_, t0), MUST(thread_proof(leaves, thread_hash(t0)))));
  EXPECT_EQ(bal(user_->address()), add(ab, u(100)));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), add(reserve0, u(200)));
}

// In userAuthorizedUpdate the user's msg.value is already in the contract's balance
// when the hub's deposit is checked against the reserve; it must not count as reserve.
TEST_F(ChainTest, UserDepositIsNotHubReserve) {
  ASSERT_TRUE(MUST(hubcm_->hub_reserve_wei()).is_zero());
  ChannelState s = base(user_->address());
  s.pendingDepositWeiHub = u(500);
  s.pendingDepositWeiUser = u(500);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  s.timeout = now() + 600;
  expect_revert(usercm_->user_authorized_update(s, sign(*hub_, s)), "insufficient reserve wei");
  if (HasFailure()) return;  // the reserve view would revert now (balance < totalChannelWei)
  // the contract holds what it owes and the reserve stays readable
  EXPECT_TRUE(MUST(hubcm_->hub_reserve_wei()).is_zero());
  EXPECT_TRUE(MUST(hubcm_->total_channel_wei()).is_zero());
  // with the hub's 500 in the reserve the same state goes through
  MUST(hubcm_->fund_reserve(u(500)));
  MUST(usercm_->user_authorized_update(s, sign(*hub_, s)));
  EXPECT_TRUE(MUST(hubcm_->hub_reserve_wei()).is_zero());
  EXPECT_EQ(MUST(hubcm_->total_channel_wei()), u(1000));
  EXPECT_EQ(bal(cm_addr_), u(1000));
}

// Tokens such as USDT return nothing from transfer/transferFrom: deposits and payouts
// must work with them (a bool-decoding call reverts on the empty return data, and a
// hub deposit made from the reserve could then never be paid out).
TEST_F(ChainTest, TokenWithoutReturnValueDepositsAndPaysOut) {
  Artifact nr_art = MUST(load_artifact(std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/NoReturnToken.json"));
  Address nr = MUST(deploy_artifact(*hub_, nr_art, {}));
  Address cm = MUST(deploy_channel_manager(*hub_, cm_art_, hub_->address(), kChallenge, nr));
  ChannelManagerClient ucm(*user_, cm), hcm(*hub_, cm);
  MUST(erc20_mint(*user_, nr, user_->address(), u(10000)));
  MUST(erc20_approve(*user_, nr, cm, u(10000)));
  ChannelState s = base(user_->address());
  s.contractAddress = cm;
  s.pendingDepositTokenUser = u(4000);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  auto d = ucm.user_authorized_update(s, sign(*hub_, s));
  ASSERT_TRUE(d.ok()) << d.error().to_string();
  EXPECT_EQ(MUST(erc20_balance(*rpc_, nr, cm)), u(4000));
  ChannelState c = base(user_->address());
  c.contractAddress = cm;
  c.balanceTokenUser = u(3000);
  c.balanceTokenHub = u(1000);
  c.txCountGlobal = 2;
  c.txCountChain = 1;
  MUST(hcm.start_exit_with_update(both(c)));
  MUST(ucm.empty_channel(user_->address()));
  EXPECT_EQ(MUST(erc20_balance(*rpc_, nr, user_->address())), u(9000));
  EXPECT_EQ(MUST(hcm.hub_reserve_tokens()), u(1000));
  MUST(hcm.hub_contract_withdraw(u(0), u(1000)));
  EXPECT_EQ(MUST(erc20_balance(*rpc_, nr, hub_->address())), u(1000));
}

}  // namespace

// ------------------------------------------------- pull payments (refused pushes)

namespace {

// A user contract (contracts/test/RefusingReceiver.sol) that refuses ETH until told
// otherwise; its owner (a wallet) makes it call the manager.
struct Refuser {
  Wallet& owner;
  Address addr;
  picopay::chain::Result<Receipt> exec(const Address& target, const U256& value, const Bytes& data) {
    TxRequest t;
    t.has_to = true;
    t.to = addr;
    t.value = value;
    t.data = AbiEncoder().address(target).u256(value).bytes(data).finish(selector("exec(address,uint256,bytes)"));
    return owner.send(t);
  }
  picopay::chain::Result<Receipt> set_accepting(bool a) {
    TxRequest t;
    t.has_to = true;
    t.to = addr;
    t.data = AbiEncoder().boolean(a).finish(selector("setAccepting(bool)"));
    return owner.send(t);
  }
};

U256 view_u256(RpcClient& rpc, const Address& cm, const Bytes& data) {
  Bytes r = MUST(rpc.eth_call(cm, data));
  return MUST(AbiDecoder(r).u256(0));
}
U256 owed_wei(RpcClient& rpc, const Address& cm, const Address& who) {
  return view_u256(rpc, cm, AbiEncoder().address(who).finish(selector("owedWei(address)")));
}
U256 owed_tokens(RpcClient& rpc, const Address& cm, const Address& who) {
  return view_u256(rpc, cm, AbiEncoder().address(who).finish(selector("owedTokens(address)")));
}
U256 total_owed_wei(RpcClient& rpc, const Address& cm) {
  return view_u256(rpc, cm, AbiEncoder().finish(selector("totalOwedWei()")));
}
// The DidCreditOwed logs of a receipt: (owner, wei, tokens).
std::vector<std::tuple<Address, U256, U256>> credit_events(const Receipt& r) {
  static const Hash32 t = keccak_text("DidCreditOwed(address,uint256,uint256)");
  std::vector<std::tuple<Address, U256, U256>> out;
  for (const auto& l : r.logs) {
    if (l.topics.size() != 2 || !(l.topics[0] == t)) continue;
    Address a;
    std::memcpy(a.bytes, l.topics[1].bytes + 12, 20);
    AbiDecoder d(l.data);
    out.emplace_back(a, MUST(d.u256(0)), MUST(d.u256(1)));
  }
  return out;
}

}  // namespace

// A channel whose user is a contract that refuses ETH: emptying must not be blocked
// (before the fix it reverted "wei transfer failed" forever, locking the hub's share).
// The hub gets its share, the user's share is credited, the reserve excludes it, and
// the contract later withdraws exactly its share.
TEST_F(ChainTest, RefusedPayoutIsCreditedAndWithdrawnLater) {
  Artifact rr_art = MUST(load_artifact(std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/RefusingReceiver.json"));
  Refuser rr{*user_, MUST(deploy_artifact(*user_, rr_art, {}))};
  U256 hub0 = bal(hub_->address());
  U256 owner0 = bal(user_->address());
  U256 hub_gas = U256::zero(), owner_gas = U256::zero();
  auto hub_paid = [&](const Receipt& r) { hub_gas = add(hub_gas, gas_cost(r)); };
  auto owner_paid = [&](const Receipt& r) { owner_gas = add(owner_gas, gas_cost(r)); };

  // hub reserve 500 becomes the hub's deposit; the contract deposits 1000 itself
  hub_paid(MUST(hubcm_->fund_reserve(u(500))));
  ChannelState s = base(rr.addr);
  s.pendingDepositWeiHub = u(500);
  s.pendingDepositWeiUser = u(1000);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  s.timeout = now() + 600;
  owner_paid(MUST(rr.exec(cm_addr_, u(1000), encode_user_authorized_update(s, sign(*hub_, s)))));
  // the user pays the hub 300 (a hub-signed balance update the contract puts on chain;
  // every authorized update moves txCountChain forward)
  ChannelState c = base(rr.addr);
  c.balanceWeiHub = u(800);
  c.balanceWeiUser = u(700);
  c.txCountGlobal = 2;
  c.txCountChain = 2;
  owner_paid(MUST(rr.exec(cm_addr_, u(0), encode_user_authorized_update(c, sign(*hub_, c)))));
  OnchainChannel oc = MUST(hubcm_->channel(rr.addr));
  ASSERT_EQ(oc.weiHub, u(800));
  ASSERT_EQ(oc.weiUser, u(700));
  ASSERT_EQ(oc.weiTotal, u(1500));
  U256 reserve0 = MUST(hubcm_->hub_reserve_wei());
  EXPECT_TRUE(reserve0.is_zero());

  // the hub exits and empties after the period: the push to the contract is refused
  hub_paid(MUST(hubcm_->start_exit(rr.addr)));
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  Receipt e = MUST(hubcm_->empty_channel(rr.addr));
  hub_paid(e);
  record_gas("emptyChannel(credited)", e);
  auto credits = credit_events(e);
  ASSERT_EQ(credits.size(), 1u);
  EXPECT_EQ(std::get<0>(credits[0]), rr.addr);
  EXPECT_EQ(std::get<1>(credits[0]), u(700));
  EXPECT_TRUE(std::get<2>(credits[0]).is_zero());
  oc = MUST(hubcm_->channel(rr.addr));
  EXPECT_EQ(oc.status, ChannelStatus::Open);
  EXPECT_TRUE(oc.weiTotal.is_zero());
  EXPECT_TRUE(MUST(hubcm_->total_channel_wei()).is_zero());
  EXPECT_TRUE(bal(rr.addr).is_zero());
  EXPECT_EQ(owed_wei(*rpc_, cm_addr_, rr.addr), u(700));
  EXPECT_TRUE(owed_tokens(*rpc_, cm_addr_, rr.addr).is_zero());
  EXPECT_EQ(total_owed_wei(*rpc_, cm_addr_), u(700));
  // the hub's share is reserve, the credit is not
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), add(reserve0, u(800)));
  EXPECT_EQ(bal(cm_addr_), u(1500));
  expect_revert(hubcm_->hub_contract_withdraw(u(801), u(0)), "not sufficient");
  Receipt hw = MUST(hubcm_->hub_contract_withdraw(u(800), u(0)));
  hub_paid(hw);
  EXPECT_EQ(bal(cm_addr_), u(700));

  // still refusing: withdrawOwed reverts and the credit stays
  Bytes wo = AbiEncoder().finish(selector("withdrawOwed()"));
  expect_revert(rr.exec(cm_addr_, u(0), wo), "wei transfer failed");
  EXPECT_EQ(owed_wei(*rpc_, cm_addr_, rr.addr), u(700));
  // nobody else can take it
  expect_revert(usercm_->wallet().send([&] {
    TxRequest t; t.has_to = true; t.to = cm_addr_; t.data = wo; return t; }()), "nothing owed");
  // accepting now: exactly its share
  owner_paid(MUST(rr.set_accepting(true)));
  Receipt w = MUST(rr.exec(cm_addr_, u(0), wo));
  owner_paid(w);
  record_gas("withdrawOwed", w);
  EXPECT_EQ(bal(rr.addr), u(700));
  EXPECT_TRUE(owed_wei(*rpc_, cm_addr_, rr.addr).is_zero());
  EXPECT_TRUE(total_owed_wei(*rpc_, cm_addr_).is_zero());
  EXPECT_TRUE(bal(cm_addr_).is_zero());
  EXPECT_TRUE(MUST(hubcm_->hub_reserve_wei()).is_zero());
  expect_revert(rr.exec(cm_addr_, u(0), wo), "nothing owed");

  // every wei: hub put in 500 and took out 800; the owner's contract put in 1000 and
  // holds 700; each side also paid its gas
  EXPECT_EQ(add(hub0, u(300)), add(bal(hub_->address()), hub_gas));
  EXPECT_EQ(owner0, add(add(bal(user_->address()), owner_gas), u(1000)));
}

// A withdrawal recipient that refuses ETH can not block an authorized update: the
// amount is credited to it and the reserve is unchanged.
TEST_F(ChainTest, RefusingWithdrawalRecipientIsCredited) {
  Artifact rr_art = MUST(load_artifact(std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/RefusingReceiver.json"));
  Refuser rr{*user_, MUST(deploy_artifact(*user_, rr_art, {}))};
  ChannelState c = deposit(*user_, *usercm_, 1000);
  MUST(hubcm_->fund_reserve(u(50)));
  ChannelState w = c;
  w.recipient = rr.addr;
  w.balanceWeiUser = u(800);
  w.pendingWithdrawalWeiUser = u(200);
  w.txCountGlobal = 3;
  w.txCountChain = 2;
  Receipt r = MUST(hubcm_->hub_authorized_update(w, sign(*user_, w)));
  record_gas("hubAuthorizedUpdate(credited)", r);
  auto credits = credit_events(r);
  ASSERT_EQ(credits.size(), 1u);
  EXPECT_EQ(std::get<0>(credits[0]), rr.addr);
  EXPECT_EQ(std::get<1>(credits[0]), u(200));
  OnchainChannel oc = MUST(hubcm_->channel(user_->address()));
  EXPECT_EQ(oc.weiUser, u(800));
  EXPECT_EQ(oc.weiTotal, u(800));
  EXPECT_EQ(owed_wei(*rpc_, cm_addr_, rr.addr), u(200));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), u(50));
  EXPECT_EQ(bal(cm_addr_), u(1050));
  // paid elsewhere on request
  Bytes to = AbiEncoder().address(other_->address()).finish(selector("withdrawOwedTo(address)"));
  U256 ob = bal(other_->address());
  MUST(rr.exec(cm_addr_, u(0), to));
  EXPECT_EQ(bal(other_->address()), add(ob, u(200)));
  EXPECT_TRUE(bal(rr.addr).is_zero());
  EXPECT_TRUE(owed_wei(*rpc_, cm_addr_, rr.addr).is_zero());
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), u(50));
  EXPECT_EQ(bal(cm_addr_), u(850));
}

// A user blocked by the token (a USDT-style blacklist) can not block its channel: its
// tokens are credited, its wei still paid, the hub's tokens go to the reserve, and the
// credit is later withdrawn to another address.
TEST_F(ChainTest, BlockedTokenUserIsCreditedAndWithdrawsElsewhere) {
  Artifact nr_art = MUST(load_artifact(std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/NoReturnToken.json"));
  Address nr = MUST(deploy_artifact(*hub_, nr_art, {}));
  Address cm = MUST(deploy_channel_manager(*hub_, cm_art_, hub_->address(), kChallenge, nr));
  ChannelManagerClient ucm(*user_, cm), hcm(*hub_, cm);
  MUST(erc20_mint(*user_, nr, user_->address(), u(10000)));
  MUST(erc20_approve(*user_, nr, cm, u(10000)));
  ChannelState s = base(user_->address());
  s.contractAddress = cm;
  s.pendingDepositTokenUser = u(4000);
  s.pendingDepositWeiUser = u(10);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  MUST(ucm.user_authorized_update(s, sign(*hub_, s)));
  ChannelState c = base(user_->address());
  c.contractAddress = cm;
  c.balanceTokenUser = u(3000);
  c.balanceTokenHub = u(1000);
  c.balanceWeiUser = u(10);
  c.txCountGlobal = 2;
  c.txCountChain = 1;
  MUST(ucm.start_exit_with_update(both(c)));
  TxRequest blk;
  blk.has_to = true;
  blk.to = nr;
  blk.data = AbiEncoder().address(user_->address()).boolean(true).finish(selector("setBlocked(address,bool)"));
  MUST(hub_->send(blk));
  U256 ub = bal(user_->address());
  Receipt e = MUST(hcm.empty_channel(user_->address()));  // non-initiator, at once
  auto credits = credit_events(e);
  ASSERT_EQ(credits.size(), 1u);
  EXPECT_EQ(std::get<0>(credits[0]), user_->address());
  EXPECT_TRUE(std::get<1>(credits[0]).is_zero());
  EXPECT_EQ(std::get<2>(credits[0]), u(3000));
  EXPECT_EQ(bal(user_->address()), add(ub, u(10)));  // the wei push still went through
  EXPECT_EQ(MUST(erc20_balance(*rpc_, nr, user_->address())), u(6000));
  EXPECT_EQ(owed_tokens(*rpc_, cm, user_->address()), u(3000));
  EXPECT_EQ(MUST(hcm.hub_reserve_tokens()), u(1000));
  EXPECT_EQ(MUST(erc20_balance(*rpc_, nr, cm)), u(4000));
  expect_revert(hcm.hub_contract_withdraw(u(0), u(1001)), "not sufficient");
  MUST(hcm.hub_contract_withdraw(u(0), u(1000)));
  // to itself: the token refuses and the credit stays; to another address: paid
  Bytes wo = AbiEncoder().finish(selector("withdrawOwed()"));
  TxRequest t;
  t.has_to = true;
  t.to = cm;
  t.data = wo;
  expect_revert(user_->send(t), "token transfer failed");
  EXPECT_EQ(owed_tokens(*rpc_, cm, user_->address()), u(3000));
  t.data = AbiEncoder().address(user2_->address()).finish(selector("withdrawOwedTo(address)"));
  Receipt w = MUST(user_->send(t));
  record_gas("withdrawOwedTo(token)", w);
  EXPECT_EQ(MUST(erc20_balance(*rpc_, nr, user2_->address())), u(3000));
  EXPECT_TRUE(owed_tokens(*rpc_, cm, user_->address()).is_zero());
  EXPECT_TRUE(MUST(erc20_balance(*rpc_, nr, cm)).is_zero());
  EXPECT_TRUE(MUST(hcm.hub_reserve_tokens()).is_zero());
}

// nukeThreads to a user contract that refuses ETH: what is locked in threads is
// credited, the channel reopens, the reserve is unchanged.
TEST_F(ChainTest, NukeThreadsToRefusingUserIsCredited) {
  Artifact rr_art = MUST(load_artifact(std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/RefusingReceiver.json"));
  Refuser rr{*user_, MUST(deploy_artifact(*user_, rr_art, {}))};
  ChannelState s = base(rr.addr);
  s.pendingDepositWeiUser = u(1000);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  MUST(rr.exec(cm_addr_, u(1000), encode_user_authorized_update(s, sign(*hub_, s))));
  // 200 of the user's wei locked in one thread (the root is not checked by a nuke)
  ChannelState c = base(rr.addr);
  c.balanceWeiHub = u(300);
  c.balanceWeiUser = u(500);
  c.threadCount = 1;
  c.threadRoot = keccak_text("a thread");
  c.txCountGlobal = 2;
  c.txCountChain = 2;  // every authorized update moves txCountChain forward
  MUST(rr.exec(cm_addr_, u(0), encode_user_authorized_update(c, sign(*hub_, c))));
  MUST(hubcm_->start_exit(rr.addr));
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  Receipt e = MUST(othercm_->empty_channel(rr.addr));
  ASSERT_EQ(credit_events(e).size(), 1u);
  EXPECT_EQ(MUST(hubcm_->channel(rr.addr)).status, ChannelStatus::ThreadDispute);
  EXPECT_EQ(owed_wei(*rpc_, cm_addr_, rr.addr), u(500));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), u(300));
  ASSERT_TRUE(rpc_->increase_time(kChallenge * 11 + 1).ok());
  Receipt n = MUST(othercm_->nuke_threads(rr.addr));
  record_gas("nukeThreads(credited)", n);
  auto credits = credit_events(n);
  ASSERT_EQ(credits.size(), 1u);
  EXPECT_EQ(std::get<1>(credits[0]), u(200));
  OnchainChannel oc = MUST(hubcm_->channel(rr.addr));
  EXPECT_EQ(oc.status, ChannelStatus::Open);
  EXPECT_TRUE(oc.weiTotal.is_zero());
  EXPECT_EQ(owed_wei(*rpc_, cm_addr_, rr.addr), u(700));
  EXPECT_EQ(total_owed_wei(*rpc_, cm_addr_), u(700));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), u(300));
  EXPECT_EQ(bal(cm_addr_), u(1000));
  MUST(rr.set_accepting(true));
  MUST(rr.exec(cm_addr_, u(0), AbiEncoder().finish(selector("withdrawOwed()"))));
  EXPECT_EQ(bal(rr.addr), u(700));
  EXPECT_EQ(bal(cm_addr_), u(300));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), u(300));
}

// ---------------------------------------------------------------- mended v1 rules

// Issue: a state n with a pending withdrawal, then a payment n+1 signed on top of it that
// carries the same pending operations with the same txCountChain. v1 (txCount[1] >=)
// executes both and pays the withdrawal twice (and takes the hub's deposit twice from
// its reserve). States are hand-built with the core's channel_hash and signer.
TEST_F(ChainTest, AnAuthorizedUpdateMustMoveTxCountChainForward) {
  ChannelState c = deposit(*user_, *usercm_, 1000);  // [2,1] user 1000
  MUST(hubcm_->fund_reserve(u(1000)));
  // n: the user withdraws 200 to `other`, the hub adds 300 collateral
  ChannelState n = c;
  n.recipient = other_->address();
  n.balanceWeiUser = u(800);
  n.pendingDepositWeiHub = u(300);
  n.pendingWithdrawalWeiUser = u(200);
  n.txCountGlobal = 3;
  n.txCountChain = 2;
  n.timeout = now() + 600;
  // n+1: the user pays the hub 100 on top of n, the pending operations carried along
  ChannelState n1 = n;
  n1.balanceWeiHub = u(100);
  n1.balanceWeiUser = u(700);
  n1.txCountGlobal = 4;
  n1.timeout = 0;
  Signature n_hub = sign(*hub_, n), n1_hub = sign(*hub_, n1);
  Signature n_user = sign(*user_, n), n1_user = sign(*user_, n1);

  U256 ob = bal(other_->address());
  U256 reserve0 = MUST(hubcm_->hub_reserve_wei());
  MUST(usercm_->user_authorized_update(n, n_hub));  // the first still works
  EXPECT_EQ(bal(other_->address()), add(ob, u(200)));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), sub(reserve0, u(300)));
  // the second execution of the same pending operations: by the user and by the hub
  expect_revert(usercm_->user_authorized_update(n1, n1_hub), "onchain txCount must be higher");
  expect_revert(hubcm_->hub_authorized_update(n1, n1_user), "onchain txCount must be higher");
  EXPECT_EQ(bal(other_->address()), add(ob, u(200)));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), sub(reserve0, u(300)));
  OnchainChannel oc = MUST(usercm_->channel(user_->address()));
  EXPECT_EQ(oc.weiHub, u(300));
  EXPECT_EQ(oc.weiUser, u(800));
  EXPECT_EQ(oc.weiTotal, u(1100));
  EXPECT_EQ(oc.txCountChain, 2u);

  // A dispute with n+1 after n ran (txCountChain equal): its pending operations count as
  // done, so the balances are n+1's with the hub's deposit added: hub 400, user 700.
  U256 ub = bal(user_->address());
  SignedChannelState s1{};
  s1.state = n1;
  s1.hasSigHub = s1.hasSigUser = true;
  s1.sigHub = n1_hub;
  s1.sigUser = n1_user;
  Receipt x = MUST(usercm_->start_exit_with_update(s1));
  oc = MUST(usercm_->channel(user_->address()));
  EXPECT_EQ(oc.weiHub, u(400));
  EXPECT_EQ(oc.weiUser, u(700));
  Receipt e = MUST(hubcm_->empty_channel(user_->address()));
  EXPECT_EQ(bal(user_->address()), sub(add(ub, u(700)), gas_cost(x)));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), add(sub(reserve0, u(300)), u(400)));
  EXPECT_EQ(bal(other_->address()), add(ob, u(200)));  // paid exactly once
  EXPECT_TRUE(MUST(hubcm_->total_channel_wei()).is_zero());
  (void)e;
}

// The same pair of states when n never ran on chain: n+1 alone is a valid authorized
// update (once), and an exit with it gives the withdrawal back (txCountChain above the
// chain's: the pending operations never ran).
TEST_F(ChainTest, APendingWithdrawalThatNeverRanIsGivenBackInAnExit) {
  ChannelState c = deposit(*user_, *usercm_, 1000);
  ChannelState n1 = c;  // as n+1 above, without the hub deposit
  n1.recipient = other_->address();
  n1.balanceWeiHub = u(100);
  n1.balanceWeiUser = u(700);
  n1.pendingWithdrawalWeiUser = u(200);
  n1.txCountGlobal = 4;
  n1.txCountChain = 2;
  U256 ub = bal(user_->address()), ob = bal(other_->address());
  U256 reserve0 = MUST(hubcm_->hub_reserve_wei());
  Receipt x = MUST(usercm_->start_exit_with_update(both(n1)));
  OnchainChannel oc = MUST(usercm_->channel(user_->address()));
  EXPECT_EQ(oc.weiHub, u(100));
  EXPECT_EQ(oc.weiUser, u(900));
  MUST(hubcm_->empty_channel(user_->address()));
  EXPECT_EQ(bal(user_->address()), sub(add(ub, u(900)), gas_cost(x)));
  EXPECT_EQ(bal(other_->address()), ob);
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), add(reserve0, u(100)));
  // and the executed-once path: on a fresh channel the user executes n+1, then it can
  // not be executed again
  ChannelState c2 = deposit(*user2_, *user2cm_, 1000);
  ChannelState m = c2;
  m.recipient = other_->address();
  m.balanceWeiHub = u(100);
  m.balanceWeiUser = u(700);
  m.pendingWithdrawalWeiUser = u(200);
  m.txCountGlobal = 4;
  m.txCountChain = 2;
  Signature mh = sign(*hub_, m);
  ob = bal(other_->address());
  MUST(user2cm_->user_authorized_update(m, mh));
  ChannelState m2 = m;  // the same pending withdrawal once more, after another payment
  m2.balanceWeiHub = u(150);
  m2.balanceWeiUser = u(650);
  m2.txCountGlobal = 5;
  expect_revert(user2cm_->user_authorized_update(m2, sign(*hub_, m2)), "onchain txCount must be higher");
  EXPECT_EQ(bal(other_->address()), add(ob, u(200)));
}

// Sets up A (user_) paying B (user2_) through one thread of 300 (B's channel has 500 of
// hub collateral); returns the channel states with the thread open.
struct ThreadSetup {
  ChannelState a, b;
  ThreadState t0;
  SignedThreadState init;
  std::vector<Hash32> leaves;
  Bytes proof;
};

class NukeTest : public ChainTest {
 protected:
  ThreadSetup open_thread(uint64_t id) {
    ThreadSetup s;
    s.a = deposit(*user_, *usercm_, 1000);
    MUST(hubcm_->fund_reserve(u(500)));
    ChannelState b = base(user2_->address());
    b.pendingDepositWeiHub = u(500);
    b.txCountGlobal = 1;
    b.txCountChain = 1;
    MUST(hubcm_->hub_authorized_update(b, sign(*user2_, b)));
    s.t0 = thread_state_zero();
    s.t0.contractAddress = cm_addr_;
    s.t0.sender = user_->address();
    s.t0.receiver = user2_->address();
    s.t0.threadId = id;
    s.t0.balanceWeiSender = u(300);
    s.init = tsign(*user_, s.t0);
    s.leaves = {thread_hash(s.t0)};
    s.proof = MUST(thread_proof(s.leaves, thread_hash(s.t0)));
    s.a.balanceWeiUser = u(700);
    s.a.txCountGlobal = 3;
    s.a.threadRoot = thread_tree_root(s.leaves);
    s.a.threadCount = 1;
    s.b = base(user2_->address());
    s.b.balanceWeiHub = u(200);
    s.b.txCountGlobal = 3;
    s.b.txCountChain = 1;
    s.b.threadRoot = s.a.threadRoot;
    s.b.threadCount = 1;
    return s;
  }
};

// Issue: nukeThreads could pre-empt a running thread dispute. The payer exits with the
// thread open; the hub starts the thread dispute late (9.5 challenge periods into the
// thread dispute phase); v1's rule (10 periods after channelClosingTime) would let the
// payer nuke while the hub's thread challenge still runs and take the whole lock back.
TEST_F(NukeTest, NukeThreadsCanNotPreemptARunningThreadDispute) {
  ThreadSetup s = open_thread(21);
  ThreadState t2 = s.t0;  // B was paid 200 through the thread
  t2.balanceWeiSender = u(100);
  t2.balanceWeiReceiver = u(200);
  t2.txCount = 2;
  const Address A = user_->address();
  U256 a0 = bal(A);
  U256 agas = u(0);
  Receipt r = MUST(usercm_->start_exit_with_update(both(s.a)));
  agas = add(agas, gas_cost(r));
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  r = MUST(usercm_->empty_channel(A));
  record_gas("emptyChannel(into thread dispute)", r);
  agas = add(agas, gas_cost(r));
  ASSERT_EQ(MUST(usercm_->channel(A)).status, ChannelStatus::ThreadDispute);
  uint64_t closing = MUST(usercm_->channel(A)).channelClosingTime;
  U256 reserve0 = MUST(hubcm_->hub_reserve_wei());

  ASSERT_TRUE(rpc_->increase_time(kChallenge * 9 + kChallenge / 2).ok());
  expect_revert(usercm_->nuke_threads(A), "10 challenge periods");
  // the hub starts the thread dispute late, with the initial state
  MUST(hubcm_->start_exit_thread(A, s.init, s.proof));
  ASSERT_TRUE(rpc_->increase_time(kChallenge / 2 + 60).ok());
  ASSERT_GT(now(), closing + kChallenge * 10);  // v1 would nuke here
  expect_revert(usercm_->nuke_threads(A), "10 challenge periods");
  MUST(hubcm_->challenge_thread(tsign(*user_, t2)));
  expect_revert(usercm_->nuke_threads(A), "10 challenge periods");
  // the thread's timer ends; for one more challenge period nuke still waits
  ASSERT_TRUE(rpc_->increase_time(kChallenge / 2).ok());
  expect_revert(usercm_->nuke_threads(A), "10 challenge periods");
  expect_revert(othercm_->nuke_threads(A), "10 challenge periods");
  MUST(hubcm_->empty_thread(A, s.init, s.proof));
  // A: 700 from the channel + 100 left in the thread; the hub's reserve: B's 200
  EXPECT_EQ(bal(A), sub(add(a0, u(800)), agas));
  EXPECT_EQ(MUST(hubcm_->hub_reserve_wei()), add(reserve0, u(200)));
  EXPECT_EQ(MUST(usercm_->channel(A)).status, ChannelStatus::Open);
  expect_revert(usercm_->nuke_threads(A), "thread dispute");
}

// The thread dispute phase is measured from when it begins: a channel emptied long after
// its closing time can not be nuked at once (v1: at once), and a thread dispute started
// in the receiver's channel holds the sender's nuke too.
TEST_F(NukeTest, NukeThreadsWaitsFromTheThreadDisputeStartInBothChannels) {
  ThreadSetup s = open_thread(22);
  const Address A = user_->address(), B = user2_->address();
  MUST(usercm_->start_exit_with_update(both(s.a)));
  ASSERT_TRUE(rpc_->increase_time(kChallenge * 12).ok());
  MUST(usercm_->empty_channel(A));  // 11 periods after closing
  expect_revert(usercm_->nuke_threads(A), "10 challenge periods");
  // B's channel enters its thread dispute; the hub disputes the thread there, 9.5
  // periods later
  MUST(hubcm_->start_exit_with_update(both(s.b)));
  MUST(user2cm_->empty_channel(B));  // the non-initiator empties at once
  ASSERT_TRUE(rpc_->increase_time(kChallenge * 9 + kChallenge / 2).ok());
  MUST(hubcm_->start_exit_thread(B, s.init, s.proof));
  ASSERT_TRUE(rpc_->increase_time(kChallenge / 2 + 60).ok());
  // A's ten periods have passed, but A's and B's nukes are both held by the running thread
  expect_revert(usercm_->nuke_threads(A), "10 challenge periods");
  expect_revert(user2cm_->nuke_threads(B), "10 challenge periods");
  // after the thread timer and one more period, A may nuke (nobody emptied A's side)
  ASSERT_TRUE(rpc_->increase_time(kChallenge * 2).ok());
  U256 ab = bal(A);
  Receipt n = MUST(othercm_->nuke_threads(A));
  record_gas("nukeThreads", n);
  EXPECT_EQ(bal(A), add(ab, u(300)));
}

TEST_F(ChainTest, ChallengePeriodIsBounded) {
  expect_revert(deploy_channel_manager(*hub_, cm_art_, hub_->address(), 0, token_), "challenge period");
  expect_revert(deploy_channel_manager(*hub_, cm_art_, hub_->address(), 59, token_), "challenge period");
  expect_revert(deploy_channel_manager(*hub_, cm_art_, hub_->address(), 365ull * 86400 + 1, token_),
                "challenge period");
  Address lo = MUST(deploy_channel_manager(*hub_, cm_art_, hub_->address(), 60, token_));
  Address hi = MUST(deploy_channel_manager(*hub_, cm_art_, hub_->address(), 365ull * 86400, token_));
  EXPECT_EQ(MUST(ChannelManagerClient(*hub_, lo).challenge_period()), 60u);
  EXPECT_EQ(MUST(ChannelManagerClient(*hub_, hi).challenge_period()), 365ull * 86400);
}

// ---------------------------------------------------------------- CLI and adapter checks

namespace {

// Runs the CLI with stderr captured; returns the exit code.
int cli_err(std::vector<std::string> args, std::string& err) {
  std::fflush(stderr);
  char path[] = "/tmp/picopay-chain-stderr-XXXXXX";
  const int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  const int saved = ::dup(2);
  ::dup2(fd, 2);
  const int rc = cli(std::move(args));
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  ::close(fd);
  err = MUST(read_text_file(path));
  std::remove(path);
  return rc;
}

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = std::string("/tmp/picopay-chain-") + std::to_string(::getpid()) + "-" + name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace

// `thread-exit` / `empty-thread --leaves` with thread-state objects: a threadId above 2^52
// must reach the contract exactly (cJSON's printing turned 9007199254740771 into ...770).
TEST_F(ChainTest, CliThreadExitKeepsThreadIdsAbove2To52Exact) {
  const uint64_t kBigId = 9007199254740771ull;
  ChannelState a = deposit(*user_, *usercm_, 1000);
  ThreadState t0 = thread_state_zero();
  t0.contractAddress = cm_addr_;
  t0.sender = user_->address();
  t0.receiver = user2_->address();
  t0.threadId = kBigId;
  t0.balanceWeiSender = u(300);
  ThreadState t1 = t0;  // a second thread in the root
  t1.threadId = 7;
  t1.balanceWeiSender = u(100);
  SignedThreadState s0 = tsign(*user_, t0), s1 = tsign(*user_, t1);
  std::vector<Hash32> leaves = {thread_hash(t0), thread_hash(t1)};
  a.balanceWeiUser = u(600);
  a.txCountGlobal = 3;
  a.threadRoot = thread_tree_root(leaves);
  a.threadCount = 2;
  MUST(usercm_->start_exit_with_update(both(a)));
  MUST(hubcm_->empty_channel(user_->address()));
  ASSERT_EQ(MUST(usercm_->channel(user_->address())).status, ChannelStatus::ThreadDispute);

  std::string init = write_temp("init.json", thread_state_to_json(s0));
  ASSERT_NE(thread_state_to_json(s0).find("9007199254740771"), std::string::npos);
  std::string objs = write_temp("leaves.json", "[" + thread_state_to_json(s0) + ",\n " + thread_state_to_json(s1) + "]");
  std::string url = chain_->url(), cm = address_hex(cm_addr_), A = address_hex(user_->address());
  std::string err;
  EXPECT_EQ(cli_err({"thread-exit", "--rpc", url, "--private-key", kUserKey, "--contract", cm, "--user", A,
                     "--initial", init, "--leaves", objs}, err), 0) << err;
  OnchainThread ot = MUST(usercm_->thread(t0.sender, t0.receiver, kBigId));
  EXPECT_NE(ot.threadClosingTime, 0u);
  EXPECT_EQ(ot.weiSender, u(300));
  EXPECT_EQ(MUST(usercm_->thread(t0.sender, t0.receiver, kBigId - 1)).threadClosingTime, 0u);
  // a leaf object that is not a thread state is refused with its index
  std::string bad = write_temp("bad.json", "[" + thread_state_to_json(s1) + ", {\"threadId\": 1}]");
  EXPECT_EQ(cli_err({"empty-thread", "--rpc", url, "--private-key", kUserKey, "--contract", cm, "--user", A,
                     "--initial", init, "--leaves", bad}, err), 1);
  EXPECT_NE(err.find("leaf 1"), std::string::npos) << err;
  ASSERT_TRUE(rpc_->increase_time(kChallenge + 1).ok());
  U256 ab = bal(user_->address());
  EXPECT_EQ(cli_err({"empty-thread", "--rpc", url, "--private-key", kHubKey, "--contract", cm, "--user", A,
                     "--initial", init, "--leaves", objs}, err), 0) << err;
  EXPECT_EQ(bal(user_->address()), add(ab, u(300)));  // the hub paid the gas
  for (auto* p : {&init, &objs, &bad}) std::remove(p->c_str());
}

// DidCreditOwed / DidWithdrawOwed are decoded; `withdraw-owed` takes a credit (here a
// token push refused by a blocking token) to another address.
TEST_F(ChainTest, OwedEventsAreDecodedAndCliWithdrawsOwed) {
  Artifact nr_art = MUST(load_artifact(std::string(PICOPAY_TEST_CONTRACTS_DIR) + "/NoReturnToken.json"));
  Address nr = MUST(deploy_artifact(*hub_, nr_art, {}));
  Receipt dr;
  Address cm = MUST(deploy_channel_manager(*hub_, cm_art_, hub_->address(), kChallenge, nr, &dr));
  ChannelManagerClient ucm(*user_, cm), hcm(*hub_, cm);
  MUST(erc20_mint(*user_, nr, user_->address(), u(5000)));
  MUST(erc20_approve(*user_, nr, cm, u(5000)));
  ChannelState s = base(user_->address());
  s.contractAddress = cm;
  s.pendingDepositTokenUser = u(2000);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  MUST(ucm.user_authorized_update(s, sign(*hub_, s)));
  MUST(ucm.start_exit(user_->address()));
  TxRequest blk;
  blk.has_to = true;
  blk.to = nr;
  blk.data = AbiEncoder().address(user_->address()).boolean(true).finish(selector("setBlocked(address,bool)"));
  MUST(hub_->send(blk));
  MUST(hcm.empty_channel(user_->address()));
  EXPECT_EQ(MUST(ucm.owed_tokens(user_->address())), u(2000));
  EXPECT_EQ(MUST(ucm.total_owed_tokens()), u(2000));
  EXPECT_TRUE(MUST(ucm.owed_wei(user_->address())).is_zero());

  std::string url = chain_->url(), cmh = address_hex(cm), err;
  // to itself the token still refuses: a clear error, the credit stays
  EXPECT_EQ(cli_err({"withdraw-owed", "--rpc", url, "--private-key", kUserKey, "--contract", cmh}, err), 1);
  EXPECT_NE(err.find("token transfer failed"), std::string::npos) << err;
  EXPECT_EQ(MUST(ucm.owed_tokens(user_->address())), u(2000));
  // nobody else is owed anything
  EXPECT_EQ(cli_err({"withdraw-owed", "--rpc", url, "--private-key", kOtherKey, "--contract", cmh}, err), 1);
  EXPECT_NE(err.find("nothing owed"), std::string::npos) << err;
  EXPECT_EQ(cli_err({"withdraw-owed", "--rpc", url, "--private-key", kUserKey, "--contract", cmh, "--to",
                     address_hex(user2_->address())}, err), 0) << err;
  EXPECT_EQ(MUST(erc20_balance(*rpc_, nr, user2_->address())), u(2000));
  EXPECT_TRUE(MUST(ucm.owed_tokens(user_->address())).is_zero());
  EXPECT_TRUE(MUST(ucm.total_owed_tokens()).is_zero());

  std::vector<ChannelEvent> got;
  EventPoller poller(*rpc_, cm, 0, "", dr.blockNumber);
  MUST(poller.poll([&](const ChannelEvent& e) { got.push_back(e); }));
  std::vector<EventKind> kinds;
  for (auto& e : got) kinds.push_back(e.kind);
  auto find = [&](EventKind k) -> const ChannelEvent* {
    for (auto& e : got)
      if (e.kind == k) return &e;
    return nullptr;
  };
  const ChannelEvent* co = find(EventKind::DidCreditOwed);
  const ChannelEvent* wo = find(EventKind::DidWithdrawOwed);
  ASSERT_NE(co, nullptr);
  ASSERT_NE(wo, nullptr);
  EXPECT_STREQ(event_kind_name(co->kind), "DidCreditOwed");
  EXPECT_EQ(co->owner, user_->address());
  EXPECT_TRUE(co->weiAmount.is_zero());
  EXPECT_EQ(co->tokenAmount, u(2000));
  EXPECT_EQ(wo->owner, user_->address());
  EXPECT_EQ(wo->to, user2_->address());
  EXPECT_TRUE(wo->weiAmount.is_zero());
  EXPECT_EQ(wo->tokenAmount, u(2000));
  for (auto& e : got) EXPECT_NE(e.kind, EventKind::Unknown) << "undecoded event in tx " << hash_hex(e.log.transactionHash);
}

// Issue: a deposit to an address that is not a ChannelManager succeeded and the wei was
// lost. The CLI (and a client told the hub) checks code and hub() first.
TEST_F(ChainTest, CliRefusesAnAddressThatIsNotTheHubsChannelManager) {
  std::string url = chain_->url(), err;
  auto deposit_state = [&](const Address& contract) {
    ChannelState s = base(user_->address());
    s.contractAddress = contract;
    s.pendingDepositWeiUser = u(1000);
    s.txCountGlobal = 1;
    s.txCountChain = 1;
    SignedChannelState x{};
    x.state = s;
    x.hasSigHub = true;
    x.sigHub = sign(*hub_, s);
    return write_temp("deposit.json", channel_state_to_json(x));
  };
  const Address eoa = other_->address();
  Address foreign = MUST(deploy_channel_manager(*hub_, cm_art_, user2_->address(), kChallenge, token_));
  U256 ub = bal(user_->address()), hb = bal(hub_->address()), ob = bal(eoa);
  U256 cb = bal(foreign), tb = bal(token_);

  std::string f1 = deposit_state(eoa);
  EXPECT_EQ(cli_err({"deposit", "--rpc", url, "--private-key", kUserKey, "--contract", address_hex(eoa), "--state", f1},
                    err), 1);
  EXPECT_NE(err.find("no contract code at " + address_hex(eoa)), std::string::npos) << err;
  std::string f2 = deposit_state(token_);  // a contract, but no hub()
  EXPECT_EQ(cli_err({"deposit", "--rpc", url, "--private-key", kUserKey, "--contract", address_hex(token_), "--state",
                     f2}, err), 1);
  EXPECT_NE(err.find("is not a ChannelManager"), std::string::npos) << err;
  std::string f3 = deposit_state(foreign);  // signed by our hub, the contract is user2's
  EXPECT_EQ(cli_err({"deposit", "--rpc", url, "--private-key", kUserKey, "--contract", address_hex(foreign), "--state",
                     f3}, err), 1);
  EXPECT_NE(err.find("is the ChannelManager of hub " + address_hex(user2_->address()) + ", not of " +
                     address_hex(hub_->address())), std::string::npos) << err;
  // the hub funding a reserve: its own address is the expected hub
  EXPECT_EQ(cli_err({"deposit", "--rpc", url, "--private-key", kHubKey, "--contract", address_hex(foreign), "--reserve",
                     "500"}, err), 1);
  EXPECT_NE(err.find("is the ChannelManager of hub"), std::string::npos) << err;
  EXPECT_EQ(cli_err({"deposit", "--rpc", url, "--private-key", kHubKey, "--contract", address_hex(eoa), "--reserve",
                     "500"}, err), 1);
  EXPECT_NE(err.find("no contract code"), std::string::npos) << err;
  // an explicit --hub for a command without a state
  EXPECT_EQ(cli_err({"exit", "--rpc", url, "--private-key", kUserKey, "--contract", address_hex(cm_addr_), "--hub",
                     address_hex(user2_->address()), "--user", address_hex(user_->address())}, err), 1);
  EXPECT_NE(err.find("is the ChannelManager of hub " + address_hex(hub_->address())), std::string::npos) << err;
  // not a wei moved, not even gas: nothing was sent
  EXPECT_EQ(bal(user_->address()), ub);
  EXPECT_EQ(bal(hub_->address()), hb);
  EXPECT_EQ(bal(eoa), ob);
  EXPECT_EQ(bal(foreign), cb);
  EXPECT_EQ(bal(token_), tb);

  // the right contract works through the same command
  std::string f4 = deposit_state(cm_addr_);
  EXPECT_EQ(cli_err({"deposit", "--rpc", url, "--private-key", kUserKey, "--contract", address_hex(cm_addr_),
                     "--state", f4}, err), 0) << err;
  EXPECT_EQ(MUST(usercm_->channel(user_->address())).weiUser, u(1000));

  // the client checks before each transaction once told the hub
  ChannelManagerClient wrong(*hub_, foreign);
  wrong.require_hub(hub_->address());
  auto r = wrong.fund_reserve(u(5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::BadInput);
  ChannelManagerClient none(*hub_, eoa);
  none.require_channel_manager();
  ASSERT_FALSE(none.fund_reserve(u(5)).ok());
  EXPECT_EQ(bal(eoa), ob);
  EXPECT_TRUE(check_channel_manager(*rpc_, cm_addr_, &hub_->address()).ok());
  for (auto* p : {&f1, &f2, &f3, &f4}) std::remove(p->c_str());
}

TEST(ChainUnits, NonceErrorsAreRecognised) {
  EXPECT_TRUE(is_nonce_error("eth_sendRawTransaction: nonce too low"));
  EXPECT_TRUE(is_nonce_error("eth_sendRawTransaction: Nonce too high"));
  EXPECT_TRUE(is_nonce_error("the tx doesn't have the correct nonce. account has nonce of: 5 tx has nonce of: 4"));
  EXPECT_TRUE(is_nonce_error("replacement transaction underpriced"));
  EXPECT_FALSE(is_nonce_error("insufficient funds for gas * price + value"));
  EXPECT_FALSE(is_nonce_error("execution reverted: only hub"));
}

// Two wallets on one key (a restarted process, a second tool): the one whose locally
// counted nonce is taken re-reads it at once and its transaction still goes out, once.
TEST_F(ChainTest, ANonceErrorReReadsTheNonceAndSendsOnce) {
  auto w1 = wallet(kOtherKey);
  auto w2 = wallet(kOtherKey);
  TxRequest t;
  t.has_to = true;
  t.to = user2_->address();
  t.value = u(1);
  U256 b0 = bal(user2_->address());
  uint64_t n0 = MUST(rpc_->transaction_count(other_->address(), "latest"));
  MUST(w1->send(t));
  MUST(w2->send(t));  // takes the nonce w1 counts as its next
  Receipt r = MUST(w1->send(t));
  EXPECT_TRUE(r.status);
  EXPECT_EQ(bal(user2_->address()), add(b0, u(3)));
  EXPECT_EQ(MUST(rpc_->transaction_count(other_->address(), "latest")), n0 + 3);
}
