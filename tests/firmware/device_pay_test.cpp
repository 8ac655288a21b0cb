// The Cortex-M4 device image (examples/firmware/device.cpp, built by the firmware_qemu
// test into <build>/firmware) pays the real picopay-hub through a real mosquitto, under
// qemu-system-arm (mps2-an386). Its UART0 is connected to the broker's TCP port on
// 127.0.0.1 (QEMU chardev socket, reconnect=1); its flash is a host file (semihosting).
//
//  - PaysTheHubAndReconciles: opens the channel (deposit + ConfirmPending), pays, and
//    the hub's SQLite ledger equals the device's final state.
//  - SurvivesPowerCuts: QEMU is SIGKILLed at random moments while it pays (>= 50 cuts)
//    and restarted on the same flash file; no txCountGlobal is ever signed with two
//    contents, no payment is lost or paid twice, ledger == device.
//  - TamperedLinkLosesNothing: a proxy between QEMU and the broker drops, duplicates,
//    delays (reorders) and replays MQTT packets and cuts the connection; same checks.
//  - ForgedCountersignatureIsCaught: the proxy corrupts the hub's countersignature on
//    payment Acks (verified lazily by the session): the device never relies on the
//    unverified state (it halts); restarted on a clean link, the session's sync brings
//    the real countersignature and the ledger agrees.
//  - DeviceChainTest: a real dev chain, the hub WITH its chain checks and a keyless
//    chain relay (agent/demo firmware_relay.hpp): the device signs its own deposit
//    transaction, the relay submits it, the hub confirms only what the chain shows;
//    a relay offering a gas price beyond the device's bounds gets nothing signed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <sys/stat.h>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "hub/hub_ledger.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/demo/firmware_relay.hpp"
#include "picopay/demo/support.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/signer.hpp"
#include "support/broker.hpp"
#include "support/process.hpp"

using namespace picopay;
using namespace picopay::testsupport;

namespace {

const char* kContract = "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390";
constexpr uint64_t kDeposit = 10000000;
constexpr uint64_t kAmount = 1000;

std::vector<uint8_t> unhex(const std::string& h) {
  std::vector<uint8_t> out(h.size() / 2);
  size_t n = 0;
  if (hex_decode(h.data(), h.size(), out.data(), out.size(), &n) != Status::Ok) return {};
  out.resize(n);
  return out;
}

// Lines "TAG n hex" of a device log.
std::vector<std::pair<uint64_t, std::string>> tagged(const std::string& log, const std::string& tag) {
  std::vector<std::pair<uint64_t, std::string>> out;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, tag.size() + 1, tag + " ") != 0) continue;
    std::istringstream l(line.substr(tag.size() + 1));
    uint64_t n = 0;
    std::string hex;
    l >> n >> hex;
    out.emplace_back(n, hex);
  }
  return out;
}

std::string metric(const std::string& log, const std::string& name) {
  std::string v;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    const std::string p = "METRIC " + name + " ";
    if (line.compare(0, p.size(), p) == 0) v = line.substr(p.size());
  }
  return v;
}

// qemu-system-arm running the paying image on `flash`, its UART on 127.0.0.1:port (none
// if port <= 0). The console (semihosting) goes to `console` through a file chardev:
// written as it comes, so a SIGKILLed run keeps its log.
std::vector<std::string> device_qemu_argv(const std::string& flash, int port, const std::string& extra,
                                          const std::string& console) {
  std::vector<std::string> a = {"qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic",
                                "-monitor", "none", "-chardev", "file,id=console,path=" + console,
                                "-semihosting-config", "enable=on,target=native,chardev=console",
                                "-icount", "shift=0"};
  if (port > 0) {
    a.insert(a.end(), {"-chardev", "socket,id=link,host=127.0.0.1,port=" + std::to_string(port) + ",reconnect=1",
                       "-serial", "chardev:link"});
  } else {
    a.insert(a.end(), {"-serial", "none"});
  }
  a.insert(a.end(), {"-kernel", PICOPAY_DEVICE_ELF, "-append", "flash=" + flash + " " + extra});
  return a;
}

// ---- a tampering TCP proxy for MQTT ----------------------------------------------------

struct TamperOptions {
  double drop = 0, duplicate = 0, delay = 0, replay = 0;  // per PUBLISH, each direction
  double cut = 0;                                         // per PUBLISH: close the connection
  bool corrupt_payment_acks = false;                      // flip a bit of Ack signatures for tx > 2
  bool corrupt_syncs = false;                             // and of the hub signature in Sync/Nack states
  bool fragment = true;                                   // forward in random small pieces
  uint32_t seed = 1;
};

class TamperProxy {
 public:
  explicit TamperProxy(int upstream, TamperOptions o) : upstream_(upstream), o_(o), rng_(o.seed) {}
  ~TamperProxy() { stop(); }

  bool start() {
    listen_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_, 4) != 0) return false;
    socklen_t len = sizeof a;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
    return true;
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (listen_ >= 0) ::close(listen_);
    listen_ = -1;
  }
  int port() const { return port_; }
  std::map<std::string, int> counts() {
    std::lock_guard<std::mutex> lk(mu_);
    return counts_;
  }

 private:
  struct Dir {
    int from = -1, to = -1;
    std::vector<uint8_t> buf;                 // bytes not yet framed into a packet
    std::deque<std::pair<int, std::vector<uint8_t>>> held;  // delayed packets (release after n packets)
    std::vector<std::vector<uint8_t>> seen;   // PUBLISH packets for replays
    bool device_to_broker = false;
  };

  void count(const std::string& k) {
    std::lock_guard<std::mutex> lk(mu_);
    ++counts_[k];
  }
  bool chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  bool send_all(int fd, const uint8_t* p, size_t n) {
    while (n > 0) {
      size_t k = n;
      if (o_.fragment) k = std::min(n, static_cast<size_t>(1 + rng_() % 40));
      const ssize_t w = ::send(fd, p, k, MSG_NOSIGNAL);
      if (w <= 0) return false;
      p += w;
      n -= static_cast<size_t>(w);
      if (o_.fragment && n > 0 && rng_() % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
    return true;
  }

  // One complete MQTT packet from d.from: tamper and forward. False: cut the connection.
  bool packet(Dir& d, std::vector<uint8_t> pkt) {
    const bool publish = (pkt[0] >> 4) == 3;
    if (publish && o_.corrupt_payment_acks && !d.device_to_broker) corrupt_ack(pkt);
    bool ok = true;
    if (publish) {
      d.seen.push_back(pkt);
      if (chance(o_.cut)) {
        count("cut");
        return false;
      }
      if (chance(o_.drop)) {
        count("drop");
        pkt.clear();
      } else if (chance(o_.delay)) {
        count("delay");
        d.held.emplace_back(1 + static_cast<int>(rng_() % 3), pkt);
        pkt.clear();
      }
    }
    if (!pkt.empty()) {
      ok = send_all(d.to, pkt.data(), pkt.size());
      if (publish && chance(o_.duplicate)) {
        count("duplicate");
        ok = ok && send_all(d.to, pkt.data(), pkt.size());
      }
    }
    if (publish && d.seen.size() > 1 && chance(o_.replay)) {
      count("replay");
      const auto& old = d.seen[rng_() % (d.seen.size() - 1)];
      ok = ok && send_all(d.to, old.data(), old.size());
    }
    // Release delayed packets whose turn has come (they arrive out of order).
    for (auto it = d.held.begin(); it != d.held.end();) {
      if (--it->first <= 0) {
        ok = ok && send_all(d.to, it->second.data(), it->second.size());
        it = d.held.erase(it);
      } else {
        ++it;
      }
    }
    if (d.seen.size() > 64) d.seen.erase(d.seen.begin());
    return ok;
  }

  // A hub Reply on picopay/v1/user/<u>/reply of kind Ack for txCountGlobal > 2: flip a
  // bit of r (the signature then recovers to another address, or to none).
  void corrupt_ack(std::vector<uint8_t>& pkt) {
    size_t p = 1;
    while (pkt[p] & 0x80) ++p;
    ++p;
    if (p + 2 > pkt.size()) return;
    const size_t tl = (static_cast<size_t>(pkt[p]) << 8) | pkt[p + 1];
    const std::string topic(reinterpret_cast<const char*>(&pkt[p + 2]), std::min(tl, pkt.size() - p - 2));
    if (topic.size() < 6 || topic.compare(topic.size() - 6, 6, "/reply") != 0 || topic.find("/user/") == std::string::npos)
      return;
    size_t q = p + 2 + tl;
    if (((pkt[0] >> 1) & 3) > 0) q += 2;
    if (q + 3 > pkt.size() || pkt[q] != 0x01) return;
    if ((pkt[q + 1] == 0x11 || pkt[q + 1] == 0x12) && o_.corrupt_syncs && pkt.size() > q + 140) {
      pkt[pkt.size() - 40] ^= 0x01;  // inside the last signature of the state (the hub's)
      count("corrupt");
      return;
    }
    if (pkt[q + 1] != 0x10) return;
    if (pkt[q + 2] <= 2) return;  // opening updates: left alone
    size_t r = q + 2;
    while (pkt[r] & 0x80) ++r;
    ++r;
    if (r + 65 != pkt.size()) return;
    pkt[r + 5] ^= 0x01;
    count("corrupt");
  }

  // Frames what arrived in d.buf into packets.
  bool pump(Dir& d) {
    uint8_t tmp[4096];
    const ssize_t n = ::recv(d.from, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    d.buf.insert(d.buf.end(), tmp, tmp + n);
    for (;;) {
      if (d.buf.size() < 2) return true;
      size_t len = 0, i = 1;
      int shift = 0;
      for (;;) {
        if (i >= d.buf.size()) return true;
        len |= static_cast<size_t>(d.buf[i] & 0x7F) << shift;
        shift += 7;
        if (!(d.buf[i++] & 0x80)) break;
        if (shift > 21) return false;
      }
      if (d.buf.size() < i + len) return true;
      std::vector<uint8_t> pkt(d.buf.begin(), d.buf.begin() + static_cast<long>(i + len));
      d.buf.erase(d.buf.begin(), d.buf.begin() + static_cast<long>(i + len));
      if (!packet(d, std::move(pkt))) return false;
    }
  }

  void run() {
    while (!stop_) {
      pollfd lp{listen_, POLLIN, 0};
      if (::poll(&lp, 1, 100) <= 0) continue;
      const int dev = ::accept(listen_, nullptr, nullptr);
      if (dev < 0) continue;
      const int up = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(upstream_));
      int one = 1;
      ::setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::setsockopt(dev, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(up);
        ::close(dev);
        continue;
      }
      count("connection");
      Dir d2b, b2d;
      d2b.from = dev;
      d2b.to = up;
      d2b.device_to_broker = true;
      b2d.from = up;
      b2d.to = dev;
      while (!stop_) {
        pollfd p[3] = {{dev, POLLIN, 0}, {up, POLLIN, 0}, {listen_, POLLIN, 0}};
        if (::poll(p, 3, 100) < 0) break;
        if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) && !pump(d2b)) break;
        if ((p[1].revents & (POLLIN | POLLHUP | POLLERR)) && !pump(b2d)) break;
        if (p[2].revents & POLLIN) break;  // a new connection (QEMU restarted): serve it
      }
      ::close(dev);
      ::close(up);
    }
  }

  int upstream_;
  TamperOptions o_;
  std::mt19937 rng_;
  int listen_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, int> counts_;
};

// ---- the fixture -------------------------------------------------------------------------

class DevicePayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("picopay-fwpay");
    flash_ = dir_ + "/device.flash";
    // Provision: the device makes its key on its first boot and prints only its address.
    Process q;
    ASSERT_TRUE(q.start(qemu_argv(-1, "provision=1", dir_ + "/provision.log"), dir_ + "/provision.qemu.log"));
    ASSERT_EQ(q.wait(60000), 0) << read_file(dir_ + "/provision.log");
    const std::string log = read_file(dir_ + "/provision.log");
    const size_t at = log.find("ADDRESS 0x");
    ASSERT_NE(at, std::string::npos) << log;
    addr_ = log.substr(at + 8, 42);
    ASSERT_EQ(address_parse(addr_.c_str(), addr_.size(), user_), Status::Ok);

    Signer s;
    ASSERT_EQ(s.init(), Status::Ok);
    PrivateKey hub_key{};
    std::memset(hub_key.bytes, 0x33, 32);
    ASSERT_EQ(s.address_of(hub_key, hub_), Status::Ok);
    BrokerOptions o;
    o.users.push_back({"hub", "hub-pass"});
    o.users.push_back({addr_, "device-pass"});
    o.acl = picopay_acl("hub");
    o.dir = dir_ + "/broker";
    broker_ = std::make_unique<Broker>(o);
    std::string err;
    ASSERT_TRUE(broker_->start(err)) << err;
    ASSERT_TRUE(hub_proc_.start({PICOPAY_HUB_BIN, "--broker-host", "127.0.0.1", "--broker-port",
                                 std::to_string(broker_->port()), "--broker-user", "hub", "--broker-password",
                                 "hub-pass", "--contract", kContract, "--private-key", hex_key(hub_key), "--db",
                                 db(), "--dev-skip-chain-checks", "--verbose"},
                                dir_ + "/hub.log"));
  }
  void TearDown() override {
    hub_proc_.kill9();
    broker_.reset();
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s\n", dir_.c_str());
  }

  std::vector<std::string> qemu_argv(int port, const std::string& extra, const std::string& console) {
    return device_qemu_argv(flash_, port, extra, console);
  }

  std::string pay_config(uint64_t payments) {
    char hub[kAddressTextSize];
    hex_encode(hub_.bytes, sizeof hub_.bytes, hub, true);
    return std::string("hub=") + hub + " contract=" + kContract + " password=device-pass deposit=" +
           std::to_string(kDeposit) + " amount=" + std::to_string(kAmount) + " payments=" +
           std::to_string(payments) + " timeout=" + std::to_string(time(nullptr) + 3600) + " now=" +
           std::to_string(time(nullptr)) +
           // The gateway's reading of the chain: the deposit executed (txCount[1] = 1). The
           // hub runs without a chain (--dev-skip-chain-checks) and takes ConfirmPending as is.
           " chain_tx_count_chain=1";
  }

  // Runs the device until it exits (bounded); returns its exit status, appends its log.
  int run_device(int port, uint64_t payments, int timeout_ms) {
    Process q;
    const std::string log = dir_ + "/run" + std::to_string(runs_++) + ".log";
    if (!q.start(qemu_argv(port, pay_config(payments), log), log + ".qemu")) return -1;
    const int st = q.wait(timeout_ms);
    if (st == -2) q.kill9();
    logs_ += read_file(log);
    return st;
  }

  // Every signature that left the device: one content per txCountGlobal (never signed
  // twice), and the hub's stored request for each tx is that content.
  void expect_signed_once_and_in_ledger() {
    std::map<uint64_t, std::set<std::string>> by_tx;
    for (auto& [tx, hex] : tagged(logs_, "SIGNED")) by_tx[tx].insert(hex);
    for (auto& [tx, set] : by_tx) EXPECT_EQ(set.size(), 1u) << "txCountGlobal " << tx << " signed with " << set.size() << " contents";
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open_v2(db().c_str(), &h, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(h, "SELECT tx, request FROM updates WHERE user=? ORDER BY tx", -1, &st, nullptr), SQLITE_OK);
    sqlite3_bind_text(st, 1, addr_.c_str(), -1, SQLITE_TRANSIENT);
    uint64_t rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
      const uint64_t tx = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
      const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, 1));
      std::vector<uint8_t> req(p, p + sqlite3_column_bytes(st, 1));
      ASSERT_EQ(by_tx[tx].size(), 1u) << "the hub holds tx " << tx << " that the device never printed";
      EXPECT_EQ(req, unhex(*by_tx[tx].begin())) << "tx " << tx;
      ++rows;
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    EXPECT_GT(rows, 0u);
  }

  // The device's final state (FINAL line) equals the hub's ledger, and it paid exactly
  // `payments` times `kAmount` (no payment lost, none twice).
  void expect_reconciled(uint64_t payments) {
    const auto finals = tagged(logs_, "FINAL");
    ASSERT_FALSE(finals.empty()) << "no FINAL line";
    const std::vector<uint8_t> fin = unhex(finals.back().second);
    SignedChannelState s{};
    ASSERT_EQ(decode_channel_state(fin.data(), fin.size(), s), Status::Ok);
    EXPECT_EQ(s.state.txCountGlobal, payments + 2);
    EXPECT_EQ(s.state.balanceWeiUser, U256::from_u64(kDeposit - payments * kAmount));
    EXPECT_EQ(s.state.balanceWeiHub, U256::from_u64(payments * kAmount));
    const Ledger l = read_ledger(db(), user_);
    ASSERT_TRUE(l.found);
    EXPECT_EQ(l.state, fin) << "hub ledger and device disagree";
    EXPECT_EQ(static_cast<uint64_t>(l.updates), payments + 2);
    EXPECT_EQ(l.requests, 0);  // the hub wants nothing from a paying device
  }

  std::string db() const { return dir_ + "/hub.db"; }
  std::string dir_, flash_, addr_, logs_;
  Address user_{}, hub_{};
  std::unique_ptr<Broker> broker_;
  Process hub_proc_;
  int runs_ = 0;
};

uint32_t seed_from_env() {
  const char* s = std::getenv("PICOPAY_FW_SEED");
  const uint32_t seed = s ? static_cast<uint32_t>(std::strtoul(s, nullptr, 10)) : std::random_device{}();
  std::printf("seed %u (PICOPAY_FW_SEED to repeat)\n", seed);
  return seed;
}

}  // namespace

TEST_F(DevicePayTest, PaysTheHubAndReconciles) {
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_device(broker_->port(), 40, 120000), 0) << logs_;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("40 payments + opening in %.2f s (incl. QEMU start): %.1f payments/s; %s instructions per payment, "
              "%s messages sent; %s payments/s x100 from the first payment to the last Ack\n",
              s, 40 / s, metric(logs_, "instructions_per_payment").c_str(), metric(logs_, "messages_sent").c_str(),
              metric(logs_, "payments_per_second_x100").c_str());
  expect_signed_once_and_in_ledger();
  expect_reconciled(40);
  // The run's measurements for the size budget (firmware_size_budget).
  if (!HasFailure()) {
    ASSERT_TRUE(write_file(PICOPAY_DEVICE_PAY_LOG, logs_));
  }
}

TEST_F(DevicePayTest, SurvivesPowerCuts) {
  std::mt19937 rng(seed_from_env());
  constexpr int kCuts = 50;
  int cuts_while_paying = 0;
  for (int cut = 0; cut < kCuts; ++cut) {
    Process q;
    const std::string log = dir_ + "/cut" + std::to_string(cut) + ".log";
    // A target it cannot reach before the cut: it is paying when the power goes.
    ASSERT_TRUE(q.start(qemu_argv(broker_->port(), pay_config(100000), log), log + ".qemu"));
    // Once it runs (QEMU's own start-up takes a varying time on a loaded machine), a
    // random moment: connecting, syncing, signing, storing the record, publishing,
    // waiting for the Ack...
    // Every other cut waits for the first signature of the run first, so that cuts while
    // paying happen however long connecting and syncing take on a loaded machine.
    const std::string mark = cut % 2 == 0 ? "RESUME" : "\nSIGNED ";
    for (int waited = 0; waited < 20000 && read_file(log).find(mark) == std::string::npos; waited += 5)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 1200));
    ASSERT_TRUE(q.running()) << read_file(log);
    q.kill9();
    const std::string text = read_file(log);
    if (text.find("SIGNED ") != std::string::npos) ++cuts_while_paying;
    logs_ += text;
  }
  const Ledger mid = read_ledger(db(), user_);
  ASSERT_TRUE(mid.found);
  const uint64_t paid = mid.updates > 2 ? static_cast<uint64_t>(mid.updates) - 2 : 0;
  std::printf("%d power cuts, %d of them in runs that had signed; %llu payments in the ledger\n", kCuts,
              cuts_while_paying, static_cast<unsigned long long>(paid));
  EXPECT_GE(cuts_while_paying, kCuts / 5);  // the others cut while connecting or syncing
  EXPECT_GE(paid, 5u);
  // Power stays on: the device resumes from its flash and completes 3 more payments.
  ASSERT_EQ(run_device(broker_->port(), paid + 3, 180000), 0) << read_file(dir_ + "/run0.log");
  expect_signed_once_and_in_ledger();
  expect_reconciled(paid + 3);
}

TEST_F(DevicePayTest, TamperedLinkLosesNothing) {
  TamperOptions o;
  o.drop = 0.15;
  o.duplicate = 0.15;
  o.delay = 0.15;
  o.replay = 0.15;
  o.cut = 0.02;
  o.seed = seed_from_env();
  TamperProxy proxy(broker_->port(), o);
  ASSERT_TRUE(proxy.start());
  constexpr uint64_t kPayments = 25;
  ASSERT_EQ(run_device(proxy.port(), kPayments, 240000), 0) << logs_;
  const auto c = proxy.counts();
  for (auto& [k, v] : c) std::printf("proxy %s: %d\n", k.c_str(), v);
  proxy.stop();
  EXPECT_GT(c.count("drop") ? c.at("drop") : 0, 0);
  EXPECT_GT(c.count("replay") ? c.at("replay") : 0, 0);
  expect_signed_once_and_in_ledger();
  expect_reconciled(kPayments);
}

TEST_F(DevicePayTest, ForgedCountersignatureIsCaught) {
  TamperOptions o;
  o.corrupt_payment_acks = true;
  o.fragment = false;
  TamperProxy proxy(broker_->port(), o);
  ASSERT_TRUE(proxy.start());
  // Payments are Acked with a corrupted countersignature. The device verifies payment
  // countersignatures lazily (before it relies on the state): it finds the forgery when
  // it stops, halts, and prints no final state.
  EXPECT_EQ(run_device(proxy.port(), 5, 120000), 6) << logs_;
  proxy.stop();
  EXPECT_GT(proxy.counts()["corrupt"], 0);
  EXPECT_NE(logs_.find("FAIL the hub's countersignature on the latest state (txCountGlobal 7)"), std::string::npos)
      << logs_;
  EXPECT_TRUE(tagged(logs_, "FINAL").empty());
  // Restarted on a clean link, the session's sync brings the hub's real countersignature
  // for the same state (checked before it replaces the stored one): the evidence is
  // repaired and the ledger agrees.
  ASSERT_EQ(run_device(broker_->port(), 5, 60000), 0) << logs_;
  expect_signed_once_and_in_ledger();
  expect_reconciled(5);
}

// ---- the device on a real chain, through a keyless relay --------------------------------

namespace {

constexpr uint64_t kChainDeposit = 1000000000000000ULL;  // 0.001 ETH
constexpr uint64_t kChainAmount = 1000000000000ULL;      // 1e12 wei per payment
constexpr uint64_t kMaxGasPrice = 100000000000ULL;       // 100 gwei
constexpr uint64_t kMaxFee = 40000000000000000ULL;       // 0.04 ETH
constexpr uint64_t kCollateral = 5000000000000000ULL;    // 0.005 ETH of hub collateral
constexpr uint64_t kThreadLock = 2000000000000000ULL;    // a payer's thread to the device

class DeviceChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("picopay-fwchain");
    flash_ = dir_ + "/device.flash";
    Process q;
    ASSERT_TRUE(q.start(argv(-1, "provision=1", dir_ + "/provision.log"), dir_ + "/provision.qemu.log"));
    ASSERT_EQ(q.wait(60000), 0) << read_file(dir_ + "/provision.log");
    const std::string log = read_file(dir_ + "/provision.log");
    const size_t at = log.find("ADDRESS 0x");
    ASSERT_NE(at, std::string::npos) << log;
    addr_ = log.substr(at + 8, 42);
    ASSERT_EQ(address_parse(addr_.c_str(), addr_.size(), user_), Status::Ok);

    // The dev chain: the hub funded; the ChannelManager deployed; the device's address
    // gets ETH for its deposit and gas from the hub (the device's key is on the device).
    hub_key_ = demo::random_key_hex();
    payer_key_ = demo::random_key_hex();
    payer_addr_ = demo::key_address(payer_key_);
    std::string err;
    ASSERT_TRUE(chain_.start(dir_, {hub_key_, payer_key_}, err)) << err;
    rpc_ = std::make_unique<chain::RpcClient>(chain_.url());
    PrivateKey hk{};
    ASSERT_EQ(private_key_parse(hub_key_.c_str(), hub_key_.size(), hk), Status::Ok);
    wallet_ = std::make_unique<chain::Wallet>(*rpc_, hk);
    ASSERT_TRUE(wallet_->init().ok());
    auto art = chain::load_artifact(chain::default_artifact_dir() + "/ChannelManager.json");
    ASSERT_TRUE(art.ok()) << art.error().to_string();
    auto cm = chain::deploy_channel_manager(*wallet_, *art, wallet_->address(), 60, Address{});
    ASSERT_TRUE(cm.ok()) << cm.error().to_string();
    contract_ = *cm;
    chain::TxRequest fund;
    fund.has_to = true;
    fund.to = user_;
    fund.value = U256::from_u64(100000000000000000ULL);  // 0.1 ETH
    auto fr = wallet_->send(fund);
    ASSERT_TRUE(fr.ok()) << fr.error().to_string();
    funded_ = fund.value;

    BrokerOptions o;
    o.users.push_back({"hub", "hub-pass"});
    o.users.push_back({addr_, "device-pass"});
    o.users.push_back({"relay", "relay-pass"});
    o.users.push_back({payer_addr_, "payer-pass"});
    o.acl = picopay_acl("hub") + demo::firmware_relay_acl("relay");
    // The collateral of payee channels comes from the hub's reserve in the contract.
    chain::ChannelManagerClient cmc(*wallet_, contract_);
    auto res = cmc.fund_reserve(U256::from_u64(1000000000000000000ULL));
    ASSERT_TRUE(res.ok()) << res.error().to_string();
    o.dir = dir_ + "/broker";
    broker_ = std::make_unique<Broker>(o);
    ASSERT_TRUE(broker_->start(err)) << err;
    // The hub with its chain checks (no --dev-skip-chain-checks).
    ASSERT_TRUE(hub_proc_.start({PICOPAY_HUB_BIN, "--broker-host", "127.0.0.1", "--broker-port",
                                 std::to_string(broker_->port()), "--broker-user", "hub", "--broker-password",
                                 "hub-pass", "--contract", chain::address_hex(contract_), "--private-key", hub_key_,
                                 "--rpc-url", chain_.url(), "--db", dir_ + "/hub.db", "--collateral-wei",
                                 std::to_string(kCollateral), "--verbose"},
                                dir_ + "/hub.log"));
  }
  void TearDown() override {
    relay_.stop();
    hub_proc_.kill9();
    broker_.reset();
    chain_.stop();
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s\n", dir_.c_str());
  }

  std::vector<std::string> argv(int port, const std::string& extra, const std::string& console) {
    return device_qemu_argv(flash_, port, extra, console);
  }

  bool start_relay(bool lie_about_gas = false) {
    demo::FirmwareRelayOptions ro;
    ro.broker_port = broker_->port();
    ro.username = "relay";
    ro.password = "relay-pass";
    ro.rpc_url = chain_.url();
    ro.contract = contract_;
    ro.devices = {user_};
    ro.log_path = dir_ + "/relay.log";
    if (lie_about_gas) {
      ro.override_gas_price = true;
      ro.gas_price = U256::from_u64(kMaxGasPrice + 1);
    }
    std::string err;
    const bool ok = relay_.start(ro, err);
    if (!ok) std::fprintf(stderr, "relay: %s\n", err.c_str());
    return ok;
  }

  // Runs the device until it exits (or kills it after timeout_ms); its log in logs_.
  int run(uint64_t payments, int timeout_ms, const std::string& extra = "",
          const std::function<void(const std::string& log)>& while_running = nullptr) {
    auto cid = rpc_->chain_id();
    char hub[kAddressTextSize];
    hex_encode(wallet_->address().bytes, 20, hub, true);
    const std::string cfg = std::string("hub=") + hub + " contract=" + chain::address_hex(contract_) +
                            " password=device-pass deposit=" + std::to_string(kChainDeposit) + " amount=" +
                            std::to_string(kChainAmount) + " payments=" + std::to_string(payments) +
                            " timeout=" + std::to_string(time(nullptr) + 3600) + " now=" +
                            std::to_string(time(nullptr)) + " gateway=1 chain_id=" +
                            std::to_string(cid.ok() ? *cid : 0) + " max_gas_price=" + std::to_string(kMaxGasPrice) +
                            " max_fee=" + std::to_string(kMaxFee) + extra;
    Process q;
    const std::string log = dir_ + "/run" + std::to_string(runs_++) + ".log";
    if (!q.start(argv(broker_->port(), cfg, log), log + ".qemu")) return -1;
    if (while_running) while_running(log);
    const int st = q.wait(timeout_ms);
    if (st == -2) q.kill9();
    logs_ += read_file(log);
    return st;
  }

  std::string dir_, flash_, addr_, hub_key_, payer_key_, payer_addr_, logs_;
  Address user_{}, contract_{};
  U256 funded_ = U256::zero();
  demo::DevChain chain_;
  std::unique_ptr<chain::RpcClient> rpc_;
  std::unique_ptr<chain::Wallet> wallet_;
  std::unique_ptr<Broker> broker_;
  Process hub_proc_;
  demo::FirmwareRelay relay_;
  int runs_ = 0;
};

}  // namespace

TEST_F(DeviceChainTest, SignsItsOwnDepositAndPaysTheCheckingHub) {
  ASSERT_TRUE(start_relay());
  constexpr uint64_t kPayments = 10;
  ASSERT_EQ(run(kPayments, 180000), 0) << logs_ << read_file(dir_ + "/hub.log");
  // The device's own transaction: on chain, sent by the device's address, executed.
  const auto txs = tagged(logs_, "DEPOSIT_TX");
  ASSERT_FALSE(txs.empty()) << logs_;
  const std::vector<uint8_t> raw = unhex(txs.back().second);
  Hash32 h{};
  keccak256(raw.data(), raw.size(), h.bytes);
  auto j = rpc_->call("eth_getTransactionByHash", "[\"" + chain::hash_hex(h) + "\"]");
  ASSERT_TRUE(j.ok());
  auto from = chain::parse_address_json(cJSON_GetObjectItemCaseSensitive(j->get(), "from"), "from");
  ASSERT_TRUE(from.ok());
  EXPECT_EQ(*from, user_);
  auto rc = rpc_->receipt(h);
  ASSERT_TRUE(rc.ok());
  EXPECT_TRUE(rc->status);
  EXPECT_GE(relay_.executed(), 1u);
  // The chain holds the deposit: txCount[1] = 1, the user's wei = the deposit.
  PrivateKey hk{};
  ASSERT_EQ(private_key_parse(hub_key_.c_str(), hub_key_.size(), hk), Status::Ok);
  chain::ChannelManagerClient cm(*wallet_, contract_);
  auto oc = cm.channel(user_);
  ASSERT_TRUE(oc.ok());
  EXPECT_EQ(oc->txCountChain, 1u);
  EXPECT_EQ(oc->weiUser, U256::from_u64(kChainDeposit));
  // The device paid only the deposit and a bounded fee from its address.
  auto bal = rpc_->balance(user_);
  ASSERT_TRUE(bal.ok());
  U256 spent{}, fee{};
  ASSERT_EQ(u256_sub(funded_, *bal, spent), Status::Ok);
  ASSERT_EQ(u256_sub(spent, U256::from_u64(kChainDeposit), fee), Status::Ok);
  EXPECT_LE(fee, U256::from_u64(kMaxFee));
  // Ledger == device, exact balances.
  const auto finals = tagged(logs_, "FINAL");
  ASSERT_FALSE(finals.empty());
  const std::vector<uint8_t> fin = unhex(finals.back().second);
  SignedChannelState s{};
  ASSERT_EQ(decode_channel_state(fin.data(), fin.size(), s), Status::Ok);
  EXPECT_EQ(s.state.txCountGlobal, kPayments + 2);
  EXPECT_EQ(s.state.balanceWeiUser, U256::from_u64(kChainDeposit - kPayments * kChainAmount));
  EXPECT_EQ(s.state.balanceWeiHub, U256::from_u64(kPayments * kChainAmount));
  const Ledger l = read_ledger(dir_ + "/hub.db", user_);
  ASSERT_TRUE(l.found);
  EXPECT_EQ(l.state, fin) << "hub ledger and device disagree";
  std::printf("deposit tx %s: gas %llu; %s instructions per payment; stack %s B; %s payments/s x100\n",
              chain::hash_hex(h).c_str(), static_cast<unsigned long long>(rc->gasUsed),
              metric(logs_, "instructions_per_payment").c_str(), metric(logs_, "stack_device").c_str(),
              metric(logs_, "payments_per_second_x100").c_str());
}

TEST_F(DeviceChainTest, RelayBeyondTheBoundsGetsNothingSigned) {
  ASSERT_TRUE(start_relay(/*lie_about_gas=*/true));
  // The device waits for an acceptable offer: it never gets one; it is stopped.
  EXPECT_EQ(run(3, 15000), -2);
  EXPECT_NE(logs_.find("TX_REFUSED OutOfBounds"), std::string::npos) << logs_;
  EXPECT_TRUE(tagged(logs_, "DEPOSIT_TX").empty());
  EXPECT_EQ(relay_.transactions(), 0u);
  auto n = rpc_->transaction_count(user_, "pending");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);  // the device's address sent nothing
  auto bal = rpc_->balance(user_);
  ASSERT_TRUE(bal.ok());
  EXPECT_EQ(*bal, funded_);
  // The hub countersigned the deposit request but confirms nothing the chain lacks.
  const Ledger l = read_ledger(dir_ + "/hub.db", user_);
  ASSERT_TRUE(l.found);
  EXPECT_EQ(l.updates, 1);
}

// The hub asks the paying device for things: a Linux payer (picopay-agent) opens a
// thread to the device, so the hub requests a collateral deposit into the device's
// channel (ProposePendingDeposit), puts it on chain (hubAuthorizedUpdate) and requests
// its ConfirmPending; then it forwards the OpenThread. The device proposes the deposit
// and, with the relay's chain facts, the ConfirmPending (its signing policy checks what
// the chain shows), and refuses the OpenThread (it accepts no incoming threads) with a
// RequestNack: it never stalls the hub, and its ledger still agrees.
TEST_F(DeviceChainTest, AnswersTheHubsRequests) {
  ASSERT_TRUE(start_relay());
  constexpr uint64_t kPayments = 3;
  demo::Child payer;
  const auto start_payer = [&](const std::string& log) {
    // Once the device has paid, the payer opens its thread to it.
    for (int w = 0; w < 120000 && read_file(log).find("ACKED " + std::to_string(kPayments + 2)) == std::string::npos;
         w += 100)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    char hub[kAddressTextSize];
    hex_encode(wallet_->address().bytes, 20, hub, true);
    const std::string cfg = dir_ + "/payer.json";
    ASSERT_TRUE(demo::write_text(
        cfg, "{\"name\": \"payer\", \"stateDir\": \"" + dir_ + "/payer\", \"broker\": {\"host\": \"127.0.0.1\", "
             "\"port\": " + std::to_string(broker_->port()) + ", \"password\": \"payer-pass\"}, \"hub\": \"" + hub +
             "\", \"contract\": \"" + chain::address_hex(contract_) + "\", \"privateKey\": \"" + payer_key_ +
             "\", \"rpc\": \"" + chain_.url() + "\", \"role\": \"payer\", \"meter\": {\"source\": \"tasmota\", "
             "\"topic\": \"tele/payer/SENSOR\"}, \"pricePerUnitWei\": \"1000000000\", \"depositWei\": \"" +
             std::to_string(kThreadLock * 2) + "\", \"threadLockWei\": \"" + std::to_string(kThreadLock) +
             "\", \"payTo\": \"" + addr_ + "\"}\n"));
    ::chmod(cfg.c_str(), 0600);
    ASSERT_TRUE(payer.start({demo::bin_dir() + "/picopay-agent", "--config", cfg}, dir_ + "/payer.log"));
  };
  // linger: after its payments the device serves the hub until nothing changed for 20 s.
  const int st = run(kPayments, 240000, " linger=20", start_payer);
  payer.stop(5000);
  ASSERT_EQ(st, 0) << logs_ << read_file(dir_ + "/hub.log");
  // The hub's requests reached the device and were answered (REQUEST lines: the session's
  // status; 0 = proposed).
  const auto reqs = tagged(logs_, "REQUEST");
  EXPECT_GE(reqs.size(), 2u) << logs_;
  for (auto& [status, hex] : reqs) std::printf("hub request answered: %s\n", status_name(static_cast<Status>(status)));
  const auto finals = tagged(logs_, "FINAL");
  ASSERT_FALSE(finals.empty()) << logs_;
  const std::vector<uint8_t> fin = unhex(finals.back().second);
  SignedChannelState s{};
  ASSERT_EQ(decode_channel_state(fin.data(), fin.size(), s), Status::Ok);
  // The collateral is in the device's channel, confirmed (nothing pending), on chain.
  EXPECT_EQ(s.state.balanceWeiHub, U256::from_u64(kPayments * kChainAmount + kCollateral)) << logs_;
  EXPECT_TRUE(s.state.pendingDepositWeiHub.is_zero());
  EXPECT_EQ(s.state.txCountChain, 2u);
  EXPECT_EQ(s.state.balanceWeiUser, U256::from_u64(kChainDeposit - kPayments * kChainAmount));
  EXPECT_EQ(s.state.threadCount, 0u);  // the device accepts no incoming thread
  chain::ChannelManagerClient cm(*wallet_, contract_);
  auto oc = cm.channel(user_);
  ASSERT_TRUE(oc.ok());
  EXPECT_EQ(oc->txCountChain, 2u);
  const Ledger l = read_ledger(dir_ + "/hub.db", user_);
  ASSERT_TRUE(l.found);
  EXPECT_EQ(l.state, fin) << "hub ledger and device disagree";
}
