// picopay-hub across a PostgreSQL primary failover (docs/postgresql-ha.md): a
// pg_auto_failover monitor and a primary/secondary pair with synchronous replication on
// 127.0.0.1 (tests/support/pg_auto_failover.hpp), the real picopay-hub on the multi-host URI
// (target_session_attrs=read-write), a real mosquitto, simulated devices paying without
// pause. The test stands in for systemd (Restart=on-failure): it starts the hub again
// whenever it exits. Two failovers, mid-stream:
//   A. planned: `pg_autoctl perform failover` (node1 -> node2);
//   B. a crash of the primary's machine: kill -9 of node2's keeper and postgres; the monitor
//      promotes node1;
//   C. kill -9 of node1's postgres alone: its keeper restarts it in place.
// Afterwards: every payment a device made was answered and is in the ledger, no device holds
// two hub signatures for one txCountGlobal, every device's latest state equals the ledger's,
// and every exit of the hub was exit 3 (restartable; exit 2 would stop systemd's restarts).
// The pauses (failover start -> first Ack after it) are printed, not asserted. Below: exit 3
// at start, and a COMMIT cut on purpose by a proxy (UncertainCommit).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "hub_ledger.hpp"
#include "picopay/codec.hpp"
#include "sim_device.hpp"
#include "support/broker.hpp"
#include "support/pg_auto_failover.hpp"
#include "support/postgres.hpp"

using namespace picopay;
using namespace picopay::testsupport;
using Clock = std::chrono::steady_clock;

namespace {

const char* kContract = "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390";
constexpr uint32_t kHubIndex = 0xABCDEF;
constexpr uint32_t kDevices = 4;
constexpr uint64_t kFunds = 1000000;
// The test's RestartSec, as the shipped unit (packaging/systemd/picopay-hub.service.in).
constexpr int kRestartDelayMs = 5000;

double ms_since(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

class PostgresHa : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir("picopay-pghatest"); }
  void TearDown() override {
    stop_supervisor();
    hub_.kill9();
    devices_.clear();
    broker_.reset();
    if (pg_ && HasFailure()) {
      pg_->keep_files();
      std::fprintf(stderr, "kept %s (pg_auto_failover logs)\n", pg_->dir().c_str());
    }
    pg_.reset();
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s\n", dir_.c_str());
  }

  void start_broker() {
    BrokerOptions o;
    o.users.push_back({"hub", "hub-pass"});
    for (uint32_t i = 1; i <= kDevices; ++i) {
      auto login = device_broker_login(i);
      o.users.push_back({login.first, login.second});
    }
    o.acl = picopay_acl("hub");
    o.dir = dir_ + "/broker";
    broker_ = std::make_unique<Broker>(o);
    std::string err;
    ASSERT_TRUE(broker_->start(err)) << err;
    Signer s;
    ASSERT_EQ(s.init(), Status::Ok);
    ASSERT_EQ(s.address_of(test_key(kHubIndex), hub_addr_), Status::Ok);
    ASSERT_EQ(address_parse(kContract, std::strlen(kContract), contract_), Status::Ok);
  }

  bool start_hub() {
    return hub_.start({PICOPAY_HUB_BIN, "--broker-host", "127.0.0.1", "--broker-port", std::to_string(broker_->port()),
                       "--broker-user", "hub", "--broker-password", "hub-pass", "--contract", kContract,
                       "--private-key", hex_key(test_key(kHubIndex)), "--store", store_.empty() ? pg_->uri() : store_, "--db",
                       dir_ + "/hub.db", "--exchange-rate", "1000", "--dev-skip-chain-checks", "--verbose"},
                      dir_ + "/hub.log");
  }

  // systemd's part: the hub is started again kRestartDelayMs after each exit; every exit
  // status is kept.
  void start_supervisor() {
    supervise_ = std::thread([this] {
      while (!stop_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::lock_guard<std::mutex> lk(mu_);
        if (hub_.running()) continue;
        const int st = hub_.wait(0);
        exits_.push_back(st);
        std::this_thread::sleep_for(std::chrono::milliseconds(kRestartDelayMs));
        if (!stop_.load()) start_hub();
      }
    });
  }
  void stop_supervisor() {
    stop_.store(true);
    if (supervise_.joinable()) supervise_.join();
  }

  SimDevice& device(uint32_t i) {
    auto d = std::make_unique<SimDevice>(i, hub_addr_, contract_);
    mqtt::Options o;
    o.port = broker_->port();
    std::string err;
    EXPECT_TRUE(d->start(o, "pw-" + std::to_string(i), err)) << err;
    devices_.push_back(std::move(d));
    return *devices_.back();
  }

  // The time of the first Ack (any device) at or after t; false if none within timeout_ms.
  bool first_ack_after(Clock::time_point t, int timeout_ms, Clock::time_point& out) {
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
      {
        std::lock_guard<std::mutex> lk(acks_mu_);
        auto it = std::lower_bound(acks_.begin(), acks_.end(), t);
        if (it != acks_.end()) {
          out = *it;
          return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // The outage an event at `t` caused: the longest silence between two consecutive Acks
  // (any device) that ends after t. gap_ms is its length, pause_ms the time from t to the
  // Ack that ended it (Acks right after t belong to COMMITs made before the primary went).
  void outage(Clock::time_point t, double& gap_ms, double& pause_ms) {
    std::lock_guard<std::mutex> lk(acks_mu_);
    gap_ms = pause_ms = -1;
    auto it = std::lower_bound(acks_.begin(), acks_.end(), t);
    if (it == acks_.end()) return;
    Clock::time_point prev = it == acks_.begin() ? t : *(it - 1);
    for (; it != acks_.end(); prev = *it, ++it) {
      const double g = ms_since(std::max(prev, t), *it);
      if (g > gap_ms) {
        gap_ms = ms_since(prev, *it);
        pause_ms = ms_since(t, *it);
      }
    }
  }
  // Until every device completed `n` more payments than it had at the call (bounded).
  bool each_pays(uint64_t n, int timeout_ms) {
    uint64_t base[kDevices];
    for (uint32_t i = 0; i < kDevices; ++i) base[i] = paid_[i].load();
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
      bool all = true;
      for (uint32_t i = 0; i < kDevices; ++i) all = all && paid_[i].load() >= base[i] + n;
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  std::string dir_;
  std::string store_;  // the hub's --store when not the HA pair's URI
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<PgAutoFailover> pg_;
  std::mutex mu_;  // hub_ and exits_
  Process hub_;
  std::vector<int> exits_;
  std::atomic<bool> stop_{false};
  std::thread supervise_;
  Address hub_addr_{}, contract_{};
  std::vector<std::unique_ptr<SimDevice>> devices_;
  std::mutex acks_mu_;
  std::vector<Clock::time_point> acks_;  // every completed payment, in time order
  std::atomic<uint64_t> paid_[kDevices]{};
};

}  // namespace

TEST_F(PostgresHa, HubAcrossPrimaryFailoverLosesNothing) {
  const auto t_setup = Clock::now();
  pg_ = std::make_unique<PgAutoFailover>();
  std::string err;
  ASSERT_TRUE(pg_->start("picopay", err)) << err;
  std::fprintf(stderr, "pg_auto_failover up in %.1f s: %s\n", ms_since(t_setup, Clock::now()) / 1000,
               pg_->states().c_str());
  // Synchronous replication is on: a COMMIT waits for node2's flush.
  EXPECT_NE(pg_->query(0, "picopay", "SHOW synchronous_standby_names"), "");
  EXPECT_EQ(pg_->query(0, "picopay", "SELECT sync_state FROM pg_stat_replication"), "quorum");

  start_broker();
  {
    std::lock_guard<std::mutex> lk(mu_);
    ASSERT_TRUE(start_hub());
  }
  start_supervisor();
  for (uint32_t i = 1; i <= kDevices; ++i) device(i);
  for (auto& d : devices_) ASSERT_EQ(d->fund(kFunds), Status::Ok);

  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> payers;
  for (uint32_t i = 0; i < kDevices; ++i)
    payers.emplace_back([&, i] {
      while (!done.load()) {
        if (devices_[i]->pay(1, nullptr, 180000) != Status::Ok) {
          ++failures;
          return;
        }
        ++paid_[i];
        std::lock_guard<std::mutex> lk(acks_mu_);
        acks_.push_back(Clock::now());
      }
    });
  ASSERT_TRUE(each_pays(5, 60000));

  // A. Planned failover, mid-stream.
  const auto t_a = Clock::now();
  const size_t exits_before_a = exits_.size();
  EXPECT_EQ(pg_->perform_failover(), 0) << pg_->states();
  Clock::time_point ack_a{};
  ASSERT_TRUE(first_ack_after(t_a, 120000, ack_a)) << "no Ack after the failover: " << pg_->states();
  ASSERT_TRUE(pg_->wait_primary_secondary(1, 180000)) << pg_->states();
  ASSERT_TRUE(each_pays(5, 60000));
  double gap_a = 0, pause_a = 0;
  outage(t_a, gap_a, pause_a);
  size_t exits_a = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    exits_a = exits_.size() - exits_before_a;
  }
  EXPECT_GE(exits_a, 1u) << "the failover did not reach the hub's connection";
  EXPECT_EQ(pg_->query(1, "picopay", "SELECT sync_state FROM pg_stat_replication"), "quorum");

  // B. The primary's machine crashes (keeper and postgres, kill -9), mid-stream.
  const auto t_b = Clock::now();
  pg_->crash(1);
  Clock::time_point ack_b{};
  ASSERT_TRUE(first_ack_after(t_b, 180000, ack_b)) << "no Ack after the crash: " << pg_->states();
  ASSERT_TRUE(each_pays(5, 60000));
  double gap_b = 0, pause_b = 0;
  outage(t_b, gap_b, pause_b);
  EXPECT_EQ(pg_->query(0, "picopay", "SELECT pg_is_in_recovery()"), "f") << pg_->states();

  size_t exits_b = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    exits_b = exits_.size() - exits_before_a - exits_a;
  }

  // C. kill -9 of the (new) primary's postgres alone: its keeper starts it again in place
  // (crash recovery from its WAL; no standby is left to fail over to), mid-stream.
  const auto t_c = Clock::now();
  size_t exits_before_c = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    exits_before_c = exits_.size();
  }
  ASSERT_TRUE(pg_->kill_postgres(0));
  Clock::time_point ack_c{};
  ASSERT_TRUE(first_ack_after(t_c, 180000, ack_c)) << "no Ack after the postgres crash: " << pg_->states();
  ASSERT_TRUE(each_pays(5, 120000));
  double gap_c = 0, pause_c = 0;
  outage(t_c, gap_c, pause_c);
  size_t exits_c = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    exits_c = exits_.size() - exits_before_c;
  }
  EXPECT_GE(exits_c, 1u) << "the postgres crash did not reach the hub's connection";

  done.store(true);
  for (auto& t : payers) t.join();
  stop_supervisor();
  EXPECT_EQ(failures.load(), 0);
  {
    std::lock_guard<std::mutex> lk(mu_);
    ASSERT_TRUE(hub_.running()) << "the hub is not serving at the end";
    for (int st : exits_) EXPECT_EQ(st, 3) << "a hub exit systemd would not restart (or a crash)";
  }

  uint64_t total = 0;
  for (uint32_t i = 0; i < kDevices; ++i) {
    SimDevice& d = *devices_[i];
    ASSERT_TRUE(d.wait_idle(30000));
    const SignedChannelState s = d.latest();
    // fund = 2 updates (deposit, ConfirmPending), then one per payment: none lost, none extra.
    EXPECT_EQ(s.state.txCountGlobal, 2u + paid_[i].load());
    EXPECT_TRUE(s.state.balanceWeiUser == U256::from_u64(kFunds - paid_[i].load()));
    EXPECT_EQ(d.double_signed(), 0u);
    EXPECT_FALSE(d.halted());
    const Ledger l = read_ledger(pg_->uri(), d.address());
    ASSERT_TRUE(l.found);
    EXPECT_EQ(l.state, wire(s)) << "ledger and device disagree for " << mqtt::topic_address(d.address());
    EXPECT_EQ(static_cast<uint64_t>(l.updates), s.state.txCountGlobal);
    total += paid_[i].load();
  }
  std::fprintf(stderr,
               "pgha: %llu payments by %u devices, restart delay %d ms; (A) planned failover: %.0f ms from its "
               "start to the first Ack after the outage (longest silence %.0f ms, hub exits %zu); (B) primary "
               "crash: %.0f ms (%.0f ms, %zu); (C) postgres crash: %.0f ms (%.0f ms, %zu)\n",
               static_cast<unsigned long long>(total), kDevices, kRestartDelayMs, pause_a, gap_a, exits_a, pause_b,
               gap_b, exits_b, pause_c, gap_c, exits_c);
  RecordProperty("pause_failover_ms", static_cast<int>(pause_a));
  RecordProperty("pause_crash_ms", static_cast<int>(pause_b));
  RecordProperty("pause_postgres_crash_ms", static_cast<int>(pause_c));
}

// At start, a PostgreSQL ledger no node of which accepts writes (a failover in progress) is
// exit 3, which systemd restarts; exit 2 (a configuration error) would stop the restarts
// and leave the hub down after the failover.
class PostgresHaStart : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir("picopay-pghastart"); }
  void TearDown() override {
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s\n", dir_.c_str());
  }
  // Runs the hub on `store` (a broker that is never reached: the ledger is opened first);
  // its exit status and log.
  int run_hub(const std::string& store, std::string& log) {
    Process p;
    const std::string lf = dir_ + "/hub-" + std::to_string(++runs_) + ".log";
    if (!p.start({PICOPAY_HUB_BIN, "--broker-host", "127.0.0.1", "--broker-port", std::to_string(free_port()),
                  "--contract", kContract, "--private-key", hex_key(test_key(kHubIndex)), "--store", store, "--db",
                  dir_ + "/hub.db"},
                 lf))
      return -1;
    const int st = p.wait(60000);
    log = read_file(lf);
    return st;
  }
  std::string dir_;
  int runs_ = 0;
};

TEST_F(PostgresHaStart, NoServerListeningIsExit3) {
  std::string log;
  const int port = free_port();  // nothing listens there
  EXPECT_EQ(run_hub("postgresql://postgres@127.0.0.1:" + std::to_string(port) + "/picopay?connect_timeout=5", log), 3)
      << log;
  EXPECT_NE(log.find("cannot connect"), std::string::npos) << log;
}

TEST_F(PostgresHaStart, OnlyReadOnlyNodesIsExit3ThenServesOnceWritable) {
  PgServer pg;
  std::string err;
  ASSERT_TRUE(pg.start(err)) << err;
  // The only node refuses writes, as a standby (or a demoted primary) does.
  ASSERT_EQ(pg.psql("postgres", "ALTER SYSTEM SET default_transaction_read_only = on"), 0);
  ASSERT_EQ(pg.psql("postgres", "SELECT pg_reload_conf()"), 0);
  const std::string uri = "postgresql://postgres@127.0.0.1:" + std::to_string(free_port()) + ",127.0.0.1:" +
                          std::to_string(pg.port()) + "/postgres?target_session_attrs=read-write&connect_timeout=5";
  std::string log;
  EXPECT_EQ(run_hub(uri, log), 3) << log;
  EXPECT_NE(log.find("read-only"), std::string::npos) << log;
  EXPECT_EQ(pg.query("postgres", "SELECT count(*) FROM pg_tables WHERE tablename = 'channels'"), "0");
  // Writable again (the promotion): the same URI opens the ledger and creates its tables
  // (the hub then waits for its broker, which this test does not run).
  ASSERT_EQ(pg.psql("postgres", "ALTER SYSTEM SET default_transaction_read_only = off"), 0);
  ASSERT_EQ(pg.psql("postgres", "SELECT pg_reload_conf()"), 0);
  Process hub;
  ASSERT_TRUE(hub.start({PICOPAY_HUB_BIN, "--broker-host", "127.0.0.1", "--broker-port", std::to_string(free_port()),
                         "--contract", kContract, "--private-key", hex_key(test_key(kHubIndex)), "--store", uri,
                         "--db", dir_ + "/hub.db"},
                        dir_ + "/hub-writable.log"));
  bool tables = false;
  for (int i = 0; i < 300 && !tables && hub.running(); ++i) {
    tables = pg.query("postgres", "SELECT count(*) FROM pg_tables WHERE tablename = 'channels'") == "1";
    if (!tables) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(tables) << read_file(dir_ + "/hub-writable.log");
  hub.kill9();
}

TEST_F(PostgresHaStart, BadStoreSpecStaysExit2) {
  std::string log;
  EXPECT_EQ(run_hub("mysql://127.0.0.1/picopay", log), 2) << log;
}

// The COMMIT whose answer never comes, made on purpose: a TCP proxy between the hub and
// PostgreSQL (127.0.0.1) that relays the protocol until it is armed, then cuts the
// connection at the next COMMIT (a simple Query "COMMIT"), either after handing it to the
// server (the COMMIT lands: the hub cannot know) or before (it does not). The server's
// answer never reaches the hub. The hub must release nothing of that transaction, exit 3,
// and after its restart the device must get exactly one hub signature for its update.
namespace {

class CommitCutProxy {
 public:
  explicit CommitCutProxy(int server_port) : server_port_(server_port) {}
  ~CommitCutProxy() {
    stop_.store(true);
    if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
    if (accept_.joinable()) accept_.join();
    for (auto& t : conns_) t.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }
  bool start() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t n = sizeof a;
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 16) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &n) != 0)
      return false;
    port_ = ntohs(a.sin_port);
    accept_ = std::thread([this] {
      while (!stop_.load()) {
        pollfd p{listen_fd_, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        const int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        conns_.emplace_back([this, c] { relay(c); });
      }
    });
    return true;
  }
  int port() const { return port_; }
  // Cut the next COMMIT; `land`: hand it to the server first.
  void arm(bool land) {
    land_.store(land);
    armed_.store(true);
  }
  bool cut() const { return cut_.load(); }

 private:
  static bool send_all(int fd, const uint8_t* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
      if (w <= 0) return false;
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }
  void relay(int c) {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(server_port_));
    if (s < 0 || ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(c);
      if (s >= 0) ::close(s);
      return;
    }
    std::vector<uint8_t> in;  // client bytes not yet forwarded (whole messages are forwarded)
    bool startup = true;      // the first message has no type byte
    uint8_t buf[16384];
    while (!stop_.load()) {
      pollfd p[2] = {{c, POLLIN, 0}, {s, POLLIN, 0}};
      if (::poll(p, 2, 100) < 0) break;
      if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        const ssize_t r = ::recv(s, buf, sizeof buf, 0);
        if (r <= 0 || !send_all(c, buf, static_cast<size_t>(r))) break;
      }
      if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t r = ::recv(c, buf, sizeof buf, 0);
      if (r <= 0) break;
      in.insert(in.end(), buf, buf + r);
      bool done = false;
      while (!done) {
        const size_t hdr = startup ? 0 : 1;
        if (in.size() < hdr + 4) break;
        const uint32_t len = (uint32_t{in[hdr]} << 24) | (uint32_t{in[hdr + 1]} << 16) |
                             (uint32_t{in[hdr + 2]} << 8) | uint32_t{in[hdr + 3]};
        const size_t total = hdr + len;
        if (len < 4 || in.size() < total) break;
        const bool commit = !startup && in[0] == 'Q' && len == 4 + 7 && std::memcmp(&in[5], "COMMIT", 7) == 0;
        if (commit && armed_.load()) {
          armed_.store(false);
          if (land_.load()) {
            send_all(s, in.data(), total);
            // The server commits and answers; the answer is never relayed.
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
          }
          cut_.store(true);
          done = true;
          in.clear();
          break;
        }
        if (!send_all(s, in.data(), total)) {
          done = true;
          break;
        }
        in.erase(in.begin(), in.begin() + static_cast<long>(total));
        startup = false;
      }
      if (done) break;
    }
    ::close(c);
    ::close(s);
  }

  int server_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false}, armed_{false}, land_{false}, cut_{false};
  std::thread accept_;
  std::vector<std::thread> conns_;
};

class UncertainCommit : public PostgresHa, public ::testing::WithParamInterface<bool> {};

}  // namespace

TEST_P(UncertainCommit, NothingReleasedAndOneSignatureAfterTheRestart) {
  const bool lands = GetParam();
  PgServer pg;
  std::string err;
  ASSERT_TRUE(pg.start(err)) << err;
  CommitCutProxy proxy(pg.port());
  ASSERT_TRUE(proxy.start());
  const std::string direct = pg.uri("postgres");
  const std::string via = "postgresql://postgres@127.0.0.1:" + std::to_string(proxy.port()) +
                          "/postgres?sslmode=disable&gssencmode=disable";
  start_broker();
  store_ = via;
  ASSERT_TRUE(start_hub());
  SimDevice& d = device(1);
  ASSERT_EQ(d.fund(kFunds), Status::Ok);
  ASSERT_EQ(d.pay(5), Status::Ok);
  const uint64_t n = d.latest().state.txCountGlobal + 1;  // the payment whose COMMIT is cut

  proxy.arm(lands);
  std::atomic<int> paid{-1};
  std::thread payer([&] { paid.store(static_cast<int>(d.pay(7, nullptr, 120000))); });
  EXPECT_EQ(hub_.wait(60000), 3) << "the hub did not stop on the cut COMMIT: " << read_file(dir_ + "/hub.log");
  EXPECT_TRUE(proxy.cut());
  // The hub is gone and released nothing: the device still waits, at n - 1.
  EXPECT_EQ(d.latest().state.txCountGlobal, n - 1);
  EXPECT_EQ(paid.load(), -1);
  // Whether the COMMIT landed is what the ledger says now.
  const Ledger before = read_ledger(direct, d.address());
  EXPECT_EQ(static_cast<uint64_t>(before.updates), lands ? n : n - 1);

  ASSERT_TRUE(start_hub());  // systemd's restart
  payer.join();
  EXPECT_EQ(paid.load(), static_cast<int>(Status::Ok));
  ASSERT_TRUE(d.wait_idle(30000));
  const SignedChannelState s = d.latest();
  EXPECT_EQ(s.state.txCountGlobal, n);
  EXPECT_TRUE(s.state.balanceWeiUser == U256::from_u64(kFunds - 12));
  EXPECT_EQ(d.double_signed(), 0u);
  EXPECT_FALSE(d.halted());
  const Ledger after = read_ledger(direct, d.address());
  EXPECT_EQ(after.state, wire(s));
  EXPECT_EQ(static_cast<uint64_t>(after.updates), n);
  hub_.terminate();
}

INSTANTIATE_TEST_SUITE_P(Commit, UncertainCommit, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "landed" : "lost"; });
