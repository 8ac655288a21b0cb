// Several picopay-hub instances, one hub (docs/multi-instance.md), on real parts: a
// PostgreSQL server and a mosquitto broker started by the fixtures on 127.0.0.1, three
// picopay-hub processes with the same key and their own broker users, simulated devices
// paying continuously. Labels postgresql and multi.
//
// Adversaries here are the instances themselves: kill -9 at any moment, a SIGSTOP past the
// lease's TTL. A trigger the test installs on the updates table records, for every update
// row inserted, the inserting session's application_name (the hub sets
// "picopay-hub/<holder>") and the holder of the row's partition lease at that moment:
// every committed update must have been written by the lease's holder.
//
// Threads across partitions: a payer and a payee on two instances; the mirror OpenThread
// and the payer's CloseThread are handed over through the ledger (forwarded_requests),
// also across a kill -9 of the payee's instance; rows no honest instance wrote are refused
// by the request rules (a second trigger audits the requests table likewise).
//
// No timing assertions: every wait is bounded; takeover times are printed, not asserted.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <thread>

#include "chain_worker.hpp"
#include "hub_ledger.hpp"
#include "ledger/ledger.hpp"
#include "sim_device.hpp"
#include "support/broker.hpp"
#include "support/postgres.hpp"
#include "support/wait.hpp"

using namespace picopay;
using namespace picopay::testsupport;
using Clock = std::chrono::steady_clock;

namespace {

const char* kContract = "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390";
constexpr uint32_t kHubIndex = 0xABCDEF;
constexpr int kTtlMs = 800;

int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : def;
}

uint64_t ms_since(Clock::time_point t) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

// The audit trigger (see the header comment).
const char* kAuditSql =
    "CREATE TABLE audit(app TEXT, \"user\" TEXT, tx BIGINT, holder TEXT, epoch BIGINT,"
    " at TIMESTAMPTZ DEFAULT clock_timestamp());"
    "CREATE FUNCTION audit_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " INSERT INTO audit(app, \"user\", tx, holder, epoch) SELECT current_setting('application_name'), NEW.\"user\","
    " NEW.tx, l.holder, l.epoch FROM leases l WHERE l.partition = get_byte(decode(substr(NEW.\"user\", 3, 2), 'hex'), 0);"
    " RETURN NEW; END $$;"
    "CREATE TRIGGER audit_updates AFTER INSERT ON updates FOR EACH ROW EXECUTE FUNCTION audit_update();";

// The same audit of the requests table: a channel's stored requests are written only by
// its partition's holder (a request for another instance's channel goes through
// forwarded_requests). Installed after kAuditSql.
const char* kRequestAuditSql =
    "CREATE FUNCTION audit_request() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " INSERT INTO audit(app, \"user\", tx, holder, epoch) SELECT current_setting('application_name'), NEW.\"user\","
    " -1 - NEW.seq, l.holder, l.epoch FROM leases l WHERE l.partition = get_byte(decode(substr(NEW.\"user\", 3, 2), 'hex'), 0);"
    " RETURN NEW; END $$;"
    "CREATE TRIGGER audit_requests AFTER INSERT ON requests FOR EACH ROW EXECUTE FUNCTION audit_request();";

// A thread state signed by its payer (the initial state: txCount 0).
SignedThreadState payer_signed_thread(const Address& contract, SimDevice& payer, const Address& payee, uint64_t id,
                                      uint64_t wei) {
  SignedThreadState t{};
  t.state = thread_state_zero();
  t.state.contractAddress = contract;
  t.state.sender = payer.address();
  t.state.receiver = payee;
  t.state.threadId = id;
  t.state.balanceWeiSender = U256::from_u64(wei);
  Signer s;
  EXPECT_EQ(s.init(), Status::Ok);
  EXPECT_EQ(s.sign_eth(payer.key(), thread_hash(t.state), t.sigA), Status::Ok);
  t.hasSigA = true;
  return t;
}

class MultiHub : public ::testing::Test {
 protected:
  static constexpr int kInstances = 3;

  void SetUp() override {
    dir_ = make_temp_dir("picopay-multitest");
    pg_ = std::make_unique<PgServer>();
    std::string err;
    ASSERT_TRUE(pg_->start(err)) << err;
    uri_ = pg_->uri("postgres");
  }
  void TearDown() override {
    for (auto& h : hubs_) h.kill9();
    devices_.clear();
    broker_.reset();
    pg_.reset();
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s\n", dir_.c_str());
  }

  void start_broker(uint32_t devices) {
    BrokerOptions o;
    std::string acl = picopay_acl("hub1");
    for (int i = 1; i <= kInstances; ++i) {
      o.users.push_back({"hub" + std::to_string(i), "hub-pass"});
      if (i > 1) acl += "\nuser hub" + std::to_string(i) + "\ntopic readwrite picopay/v1/#\n";
    }
    // The hub's status as the test reads it (HubStatusStaysOnlineWhileAnInstanceServes).
    for (const char* w : {"watch", "reader"}) {
      o.users.push_back({w, "watch-pass"});
      acl += std::string("\nuser ") + w + "\ntopic read picopay/v1/hub/#\n";
    }
    for (uint32_t i = 1; i <= devices; ++i) {
      auto login = device_broker_login(i);
      o.users.push_back({login.first, login.second});
    }
    Signer s;
    ASSERT_EQ(s.init(), Status::Ok);
    o.acl = acl;
    o.dir = dir_ + "/broker";
    broker_ = std::make_unique<Broker>(o);
    std::string err;
    ASSERT_TRUE(broker_->start(err)) << err;
    ASSERT_EQ(s.address_of(test_key(kHubIndex), hub_addr_), Status::Ok);
    ASSERT_EQ(address_parse(kContract, std::strlen(kContract), contract_), Status::Ok);
  }

  // Instance i (1-based): its own broker user (so its own MQTT client id), side files and log.
  bool start_instance(int i, int ttl_ms = kTtlMs) {
    const std::string n = std::to_string(i);
    std::vector<std::string> argv = {PICOPAY_HUB_BIN,       "--broker-host", "127.0.0.1",
                                     "--broker-port",       std::to_string(broker_->port()),
                                     "--broker-user",       "hub" + n,
                                     "--broker-password",   "hub-pass",
                                     "--contract",          kContract,
                                     "--private-key",       hex_key(test_key(kHubIndex)),
                                     "--store",             uri_,
                                     "--db",                dir_ + "/hub" + n + ".db",
                                     "--instance-id",       "i" + n,
                                     "--lease-ttl-ms",      std::to_string(ttl_ms),
                                     "--verify-threads",    "0",
                                     "--dev-skip-chain-checks"};
    return hubs_[i - 1].start(argv, dir_ + "/hub" + n + ".log");
  }

  // Until every lease (256 partitions and the chain role) is held and unexpired.
  bool wait_all_leased(int timeout_ms) {
    const auto t0 = Clock::now();
    while (ms_since(t0) < static_cast<uint64_t>(timeout_ms)) {
      if (pg_->query("postgres", "SELECT count(*) FROM leases WHERE holder IS NOT NULL AND expires_at > now()") ==
          "257")
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // The instance id ("i1".."i3") holding partition p, "" if none.
  std::string holder_of(int p) {
    return pg_->query("postgres", "SELECT split_part(holder, '#', 1) FROM leases WHERE partition=" +
                                      std::to_string(p) + " AND expires_at > now()");
  }
  // Every partition's holder (instance id) in one query.
  std::map<int, std::string> holders() {
    std::map<int, std::string> out;
    const std::string r = pg_->query(
        "postgres", "SELECT partition || ' ' || split_part(holder, '#', 1) FROM leases WHERE expires_at > now()");
    size_t at = 0;
    while (at < r.size()) {
      size_t nl = r.find('\n', at);
      if (nl == std::string::npos) nl = r.size();
      const std::string line = r.substr(at, nl - at);
      const size_t sp = line.find(' ');
      if (sp != std::string::npos) out[std::atoi(line.c_str())] = line.substr(sp + 1);
      at = nl + 1;
    }
    return out;
  }

  // Until `n` instances hold every partition between them, none beyond its fair share
  // (ceil(256 / n)): from then on no partition moves while they all live.
  bool wait_settled(int n, int timeout_ms) {
    const int share = (256 + n - 1) / n;
    const auto t0 = Clock::now();
    while (ms_since(t0) < static_cast<uint64_t>(timeout_ms)) {
      const std::string r = pg_->query(
          "postgres", "SELECT count(*) || ' ' || count(DISTINCT holder) || ' ' || coalesce(max(c), 0) FROM (SELECT holder,"
                      " count(*) OVER (PARTITION BY holder) c FROM leases WHERE partition >= 0 AND holder IS NOT NULL"
                      " AND expires_at > now()) x");
      int held = 0, holders_n = 0, most = 0;
      if (std::sscanf(r.c_str(), "%d %d %d", &held, &holders_n, &most) == 3 && held == 256 && holders_n == n &&
          most <= share)
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // The first device index in 1..max (not `skip`) whose channel's partition instance
  // `inst` ("i1".."i3") holds; 0 if none.
  uint32_t device_on(const std::string& inst, uint32_t max, uint32_t skip = 0) {
    Signer s;
    EXPECT_EQ(s.init(), Status::Ok);
    const auto held = holders();
    for (uint32_t i = 1; i <= max; ++i) {
      Address a{};
      if (i == skip || s.address_of(test_key(i), a) != Status::Ok) continue;
      auto h = held.find(a.bytes[0]);
      if (h != held.end() && h->second == inst) return i;
    }
    return 0;
  }

  // A row in forwarded_requests as another instance would write it (or a forger with
  // the database's password): `partition` as given, the update's wire as the hub stores a
  // request.
  void insert_forwarded(int partition, const Address& user, ChannelUpdate u) {
    u.txCountGlobal = 0;
    u.sig = Signature{};
    u.sig.v = 27;
    uint8_t b[kMaxChannelUpdateWire];
    size_t n = 0;
    ASSERT_EQ(encode_channel_update(u, b, sizeof b, &n), Status::Ok);
    std::string hex(2 * n + 1, '\0');
    hex_encode(b, n, &hex[0], false);
    hex.resize(2 * n);
    ASSERT_EQ(pg_->psql("postgres", "INSERT INTO forwarded_requests(partition, \"user\", request) VALUES(" +
                                        std::to_string(partition) + ", '" + mqtt::topic_address(user) + "', '\\x" +
                                        hex + "'::bytea)"),
              0)
        << read_file(dir_ + "/psql.log");
  }

  // A payer on a partition of instance 1 and a payee on one of instance 2 (the first of
  // the candidate devices 1..max): 1000 wei each, and 500 of the payee's paid to the hub
  // (the hub's collateral for the mirror).
  // Null, null if there is none or the funding fails.
  std::pair<SimDevice*, SimDevice*> thread_pair(uint32_t max) {
    const uint32_t ia = device_on("i1", max), ib = device_on("i2", max);
    if (ia == 0 || ib == 0) return {nullptr, nullptr};
    SimDevice* a = &device(ia);
    SimDevice* b = &device(ib);
    if (b->fund(1000) != Status::Ok || b->pay(500) != Status::Ok || a->fund(1000) != Status::Ok) return {nullptr, nullptr};
    return {a, b};
  }

  // In thread `id`: the payer pays `paid` to the payee and asks it to close; the payee's
  // close comes back to the payer as the hub's CloseThread request (`closes`: the payer's
  // CloseThreads completed after it).
  void pay_and_close(SimDevice& a, SimDevice& b, uint64_t id, uint64_t paid, size_t closes) {
    ASSERT_EQ(a.thread_pay(b.address(), id, paid), Status::Ok);
    ASSERT_TRUE(b.wait_until(
        [&](SimDevice& d) {
          SignedThreadState t{};
          return d.thread_latest(a.address(), b.address(), id, t) && t.state.txCount == 1;
        },
        30000));
    ASSERT_EQ(a.close_thread(b.address(), id), Status::Ok);
    ASSERT_TRUE(a.wait_until([&](SimDevice& d) { return d.completed(UpdateReason::CloseThread) == closes; }, 60000))
        << "the payer's CloseThread did not reach the payer";
  }

  // Until the forwarded requests are all taken (bounded); false if some remain.
  bool wait_forwarded_empty(int timeout_ms) {
    return poll_until([&] { return pg_->query("postgres", "SELECT count(*) FROM forwarded_requests") == "0"; },
                      timeout_ms);
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

  // The "state" of a status payload ("" if none).
  static std::string state_of(const std::vector<uint8_t>& p) {
    const std::string t(p.begin(), p.end());
    const std::string key = "\"state\":\"";
    const size_t at = t.find(key);
    if (at == std::string::npos) return "";
    const size_t end = t.find('"', at + key.size());
    return end == std::string::npos ? "" : t.substr(at + key.size(), end - at - key.size());
  }
  mqtt::Options watch_login(const std::string& user) {
    mqtt::Options o;
    o.port = broker_->port();
    o.username = user;
    o.password = "watch-pass";
    o.client_id = user;
    return o;
  }
  // The retained state of `topic` as a new subscriber reads it ("" if none within 10 s).
  std::string read_retained(const std::string& topic) {
    std::mutex mu;
    std::string state;
    mqtt::Client c(watch_login("reader"));
    c.on_message([&](const mqtt::Message& m) {
      std::lock_guard<std::mutex> lk(mu);
      if (m.topic == topic && m.retain) state = state_of(m.payload);
    });
    c.subscribe(topic, 1);
    std::string err;
    if (!c.start(err)) return "";
    poll_until([&] {
      std::lock_guard<std::mutex> lk(mu);
      return !state.empty();
    }, 10000);
    c.stop();
    std::lock_guard<std::mutex> lk(mu);
    return state;
  }

  // Every update row was inserted by the session of its partition lease's holder.
  void expect_audit_clean() {
    const std::string bad = pg_->query(
        "postgres", "SELECT count(*) FROM audit WHERE holder IS NULL OR app <> 'picopay-hub/' || holder");
    EXPECT_EQ(bad, "0") << pg_->query("postgres",
                                      "SELECT app || ' ' || \"user\" || ' ' || tx || ' holder ' || coalesce(holder, "
                                      "'-') FROM audit WHERE holder IS NULL OR app <> 'picopay-hub/' || holder LIMIT 5");
  }

  void expect_ledger_agrees(SimDevice& d) {
    ASSERT_TRUE(d.wait_idle(60000)) << "device " << mqtt::topic_address(d.address()) << " not idle";
    Ledger l = read_ledger(uri_, d.address());
    ASSERT_TRUE(l.found);
    EXPECT_EQ(l.state, wire(d.latest())) << "hub ledger and device disagree for " << mqtt::topic_address(d.address());
    EXPECT_EQ(static_cast<uint64_t>(l.updates), d.latest().state.txCountGlobal);
    EXPECT_EQ(d.double_signed(), 0u);
    EXPECT_FALSE(d.halted());
  }

  std::string dir_, uri_;
  std::unique_ptr<PgServer> pg_;
  std::unique_ptr<Broker> broker_;
  Process hubs_[kInstances];
  Address hub_addr_{}, contract_{};
  std::vector<std::unique_ptr<SimDevice>> devices_;
};

// Devices paying in a loop until stopped; paused at checkpoints.
struct Payers {
  std::vector<std::thread> threads;
  std::atomic<bool> stop{false}, pause{false};
  std::atomic<int> busy{0}, failures{0};
  std::vector<std::atomic<uint64_t>> paid;
  std::vector<std::atomic<int64_t>> last_ok_ms;  // since t0, -1 = none yet
  std::vector<std::atomic<int64_t>> last_ok_started_ms;  // when that payment was started
  Clock::time_point t0 = Clock::now();
  explicit Payers(size_t n) : paid(n), last_ok_ms(n), last_ok_started_ms(n) {
    for (auto& p : paid) p = 0;
    for (auto& l : last_ok_ms) l = -1;
    for (auto& l : last_ok_started_ms) l = -1;
  }
  void run(std::vector<std::unique_ptr<SimDevice>>& devs, const std::vector<size_t>& skip = {}) {
    for (size_t i = 0; i < devs.size(); ++i)
      if (std::find(skip.begin(), skip.end(), i) == skip.end()) threads.emplace_back([this, i, &devs] {
        while (!stop.load()) {
          if (pause.load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            continue;
          }
          ++busy;
          if (pause.load()) {
            --busy;
            continue;
          }
          const int64_t started = static_cast<int64_t>(ms_since(t0));
          const Status s = devs[i]->pay(1, nullptr, 60000);
          if (s == Status::Ok) {
            ++paid[i];
            last_ok_started_ms[i] = started;
            last_ok_ms[i] = static_cast<int64_t>(ms_since(t0));
          } else {
            ++failures;
            std::fprintf(stderr, "device %zu: payment not answered: %s\n", i, status_name(s));
          }
          --busy;
          if (s != Status::Ok) return;
        }
      });
  }
  // Until no payment is in flight (bounded).
  bool quiesce(int timeout_ms) {
    pause = true;
    const auto t = Clock::now();
    while (busy.load() != 0 && ms_since(t) < static_cast<uint64_t>(timeout_ms))
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return busy.load() == 0;
  }
  void join() {
    stop = true;
    pause = false;
    for (auto& t : threads) t.join();
    threads.clear();
  }
};

}  // namespace

// The ledger's lease calls on a real PostgreSQL: one holder per partition, renewal keeps
// it, expiry lets another take it with a new epoch, and the old holder's fence then fails.
TEST_F(MultiHub, LeasesTakeRenewExpireFence) {
  std::unique_ptr<hub::Ledger> a, b;
  ASSERT_TRUE(hub::Ledger::open(uri_, a).ok());
  ASSERT_TRUE(hub::Ledger::open(uri_, b).ok());
  EXPECT_EQ(a->schema_version(), hub::kLedgerSchemaVersion);
  bool got = false;
  uint64_t ea = 0, eb = 0;
  ASSERT_TRUE(a->lease_take(7, "A#1", 60000, got, ea).ok());
  ASSERT_TRUE(got);
  ASSERT_TRUE(b->lease_take(7, "B#1", 60000, got, eb).ok());
  EXPECT_FALSE(got) << "a held lease was taken";
  std::vector<std::pair<int, uint64_t>> held;
  ASSERT_TRUE(a->lease_renew("A#1", 200, held).ok());
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0], std::make_pair(7, ea));
  // A's fence passes with its epoch, fails with another or for a partition it lacks.
  bool ok = false;
  ASSERT_TRUE(a->begin().ok());
  ASSERT_TRUE(a->lease_fence("A#1", {{7, ea}}, ok).ok());
  EXPECT_TRUE(ok);
  a->rollback();
  ASSERT_TRUE(a->begin().ok());
  ASSERT_TRUE(a->lease_fence("A#1", {{7, ea + 1}}, ok).ok());
  EXPECT_FALSE(ok);
  a->rollback();
  ASSERT_TRUE(a->begin().ok());
  ASSERT_TRUE(a->lease_fence("A#1", {{7, ea}, {8, 1}}, ok).ok());
  EXPECT_FALSE(ok);
  a->rollback();
  // After the 200 ms lease lapses (server time), B takes it with a new epoch.
  for (int i = 0; i < 100 && !got; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(b->lease_take(7, "B#1", 60000, got, eb).ok());
  }
  ASSERT_TRUE(got);
  EXPECT_GT(eb, ea);
  ASSERT_TRUE(a->begin().ok());
  ASSERT_TRUE(a->lease_fence("A#1", {{7, ea}}, ok).ok());
  EXPECT_FALSE(ok) << "the old holder's fence passed after a takeover";
  a->rollback();
  ASSERT_TRUE(a->lease_renew("A#1", 60000, held).ok());
  EXPECT_TRUE(held.empty()) << "renewal brought back a lease taken over";
  // Only the holder gives a lease back; then it is free for anyone (a new epoch again).
  ASSERT_TRUE(b->lease_release(7, "A#1").ok());  // not A's: nothing happens
  ASSERT_TRUE(a->lease_take(7, "A#2", 60000, got, ea).ok());
  EXPECT_FALSE(got);
  ASSERT_TRUE(b->lease_release(hub::Ledger::kAllLeases, "B#1").ok());
  ASSERT_TRUE(a->lease_take(7, "A#2", 60000, got, ea).ok());
  EXPECT_TRUE(got);
  EXPECT_GT(ea, eb);
  uint64_t live = 0;
  ASSERT_TRUE(a->lease_heartbeat("A#2", 60000, live).ok());
  EXPECT_EQ(live, 1u);
}

// The ledger's calls of version 4 on a real PostgreSQL: a forwarded request is listed only
// under its user's partition and goes with the transaction that deletes it; a thread
// dispute job is listed until it is marked done with exactly its bytes, stays done when
// stored again unchanged and is listed again when it changes. The job's bytes round-trip
// and a truncated or extended copy does not decode.
TEST_F(MultiHub, ForwardedRequestsAndDisputeJobsInTheLedger) {
  std::unique_ptr<hub::Ledger> l;
  ASSERT_TRUE(hub::Ledger::open(uri_, l).ok());
  const std::string user = "0x12" + std::string(38, 'a');
  const hub::Bytes wire = {1, 2, 3, 4};
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->forward_request(user, wire).ok());
  ASSERT_TRUE(l->commit().ok());
  std::vector<hub::Ledger::ForwardedRow> rows;
  ASSERT_TRUE(l->list_forwarded({0x13, 0x11}, 10, rows).ok());
  EXPECT_TRUE(rows.empty()) << "listed under another partition";
  ASSERT_TRUE(l->list_forwarded({0x12}, 10, rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].partition, 0x12);
  EXPECT_EQ(rows[0].user, user);
  EXPECT_EQ(rows[0].update, wire);
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->delete_forwarded(rows[0].id).ok());
  l->rollback();
  ASSERT_TRUE(l->list_forwarded({0x12}, 10, rows).ok());
  ASSERT_EQ(rows.size(), 1u) << "a rolled-back delete took the row";
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->delete_forwarded(rows[0].id).ok());
  ASSERT_TRUE(l->commit().ok());
  ASSERT_TRUE(l->list_forwarded({0x12}, 10, rows).ok());
  EXPECT_TRUE(rows.empty());

  const hub::Bytes j1 = {1, 9}, j2 = {1, 8};
  std::vector<hub::Ledger::DisputeRow> jobs;
  ASSERT_TRUE(l->save_dispute(user, j1).ok());
  ASSERT_TRUE(l->list_disputes(false, jobs).ok());
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].user, user);
  EXPECT_EQ(jobs[0].job, j1);
  EXPECT_FALSE(jobs[0].done);
  ASSERT_TRUE(l->dispute_done(user, j2).ok());  // not the stored job: nothing
  ASSERT_TRUE(l->list_disputes(false, jobs).ok());
  EXPECT_EQ(jobs.size(), 1u);
  ASSERT_TRUE(l->dispute_done(user, j1).ok());
  ASSERT_TRUE(l->list_disputes(false, jobs).ok());
  EXPECT_TRUE(jobs.empty());
  ASSERT_TRUE(l->list_disputes(true, jobs).ok());  // a new holder of the chain role watches the done ones
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_TRUE(jobs[0].done);
  ASSERT_TRUE(l->save_dispute(user, j1).ok());  // the same job again: stays done
  ASSERT_TRUE(l->list_disputes(false, jobs).ok());
  EXPECT_TRUE(jobs.empty()) << "a done job was made not done by storing it unchanged";
  ASSERT_TRUE(l->save_dispute(user, j2).ok());  // changed: to be sent again
  ASSERT_TRUE(l->list_disputes(false, jobs).ok());
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].job, j2);

  // The job's bytes.
  Signer s;
  ASSERT_EQ(s.init(), Status::Ok);
  Address payer{}, payee{};
  ASSERT_EQ(s.address_of(test_key(1), payer), Status::Ok);
  ASSERT_EQ(s.address_of(test_key(2), payee), Status::Ok);
  hub::ChainJob::DisputeInfo d;
  d.latest.state = channel_state_zero();
  d.latest.state.user = payer;
  d.latest.state.txCountGlobal = 7;
  d.leaves.push_back(Hash32{});
  d.leaves[0].bytes[3] = 5;
  hub::ChainJob::Thread t;
  t.initial.state = thread_state_zero();
  t.initial.state.sender = payer;
  t.initial.state.receiver = payee;
  t.initial.state.threadId = 3;
  t.initial.state.balanceWeiSender = U256::from_u64(100);
  ASSERT_EQ(s.sign_eth(test_key(1), thread_hash(t.initial.state), t.initial.sigA), Status::Ok);
  t.initial.hasSigA = true;
  t.has_latest = true;
  t.latest = t.initial;
  t.latest.state.txCount = 1;
  d.threads.push_back(t);
  const hub::Bytes b = hub::encode_dispute_job(d);
  ASSERT_FALSE(b.empty());
  hub::ChainJob::DisputeInfo back;
  ASSERT_TRUE(hub::decode_dispute_job(b, back));
  EXPECT_EQ(hub::encode_dispute_job(back), b);
  EXPECT_EQ(back.latest.state.txCountGlobal, 7u);
  ASSERT_EQ(back.threads.size(), 1u);
  EXPECT_TRUE(back.threads[0].has_latest);
  EXPECT_EQ(back.threads[0].latest.state.txCount, 1u);
  EXPECT_EQ(thread_hash(back.threads[0].initial.state), thread_hash(t.initial.state));
  hub::Bytes cut(b.begin(), b.end() - 1), longer = b;
  longer.push_back(0);
  EXPECT_FALSE(hub::decode_dispute_job(cut, back));
  EXPECT_FALSE(hub::decode_dispute_job(longer, back));
  EXPECT_FALSE(hub::decode_dispute_job({}, back));
}

TEST_F(MultiHub, SqliteRefusesInstances) {
  const std::string out = dir_ + "/refuse.txt";
  EXPECT_EQ(run_command({PICOPAY_HUB_BIN, "--contract", kContract, "--private-key", hex_key(test_key(kHubIndex)),
                         "--db", dir_ + "/hub.db", "--instance-id", "i1"},
                        out),
            2);
  EXPECT_NE(read_file(out).find("SQLite ledger serves one process"), std::string::npos) << read_file(out);
  EXPECT_EQ(run_command({PICOPAY_HUB_BIN, "--contract", kContract, "--private-key", hex_key(test_key(kHubIndex)),
                         "--store", uri_, "--instance-id", "a'b"},
                        out),
            2);
}

// Three instances, devices paying continuously, >= 100 kill -9 / restart cycles of a random
// instance (PICOPAY_MULTI_CYCLES, PICOPAY_MULTI_SEED). At checkpoints and at the end:
// every payment answered, each device's latest state = the ledger's, no device saw two
// hub signatures for one txCountGlobal, every update committed by its lease's holder.
TEST_F(MultiHub, KillRestartCycles) {
  const int cycles = env_int("PICOPAY_MULTI_CYCLES", 100);
  const unsigned seed = static_cast<unsigned>(env_int("PICOPAY_MULTI_SEED", 12));
  constexpr uint32_t kDevices = 12;
  start_broker(kDevices);
  for (int i = 1; i <= kInstances; ++i) ASSERT_TRUE(start_instance(i));
  ASSERT_TRUE(wait_all_leased(30000)) << "leases not all held";
  ASSERT_EQ(pg_->psql("postgres", kAuditSql), 0) << read_file(dir_ + "/psql.log");
  for (uint32_t i = 1; i <= kDevices; ++i) device(i);
  for (auto& d : devices_) ASSERT_EQ(d->fund(1000000000), Status::Ok);

  Payers pay(devices_.size());
  pay.run(devices_);
  std::mt19937 rng(seed);
  std::vector<uint64_t> takeovers;
  int self_exits = 0;
  for (int c = 1; c <= cycles && !HasFailure(); ++c) {
    const int victim = static_cast<int>(rng() % kInstances) + 1;
    // The devices whose channels the victim holds: the first payment any of them completes
    // after the kill marks the takeover.
    std::vector<size_t> its;
    const auto held = holders();
    for (size_t k = 0; k < devices_.size(); ++k) {
      auto h = held.find(devices_[k]->address().bytes[0]);
      if (h != held.end() && h->second == "i" + std::to_string(victim)) its.push_back(k);
    }
    const auto killed = Clock::now();
    const int64_t killed_ms = static_cast<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(killed - pay.t0).count());
    hubs_[victim - 1].kill9();
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
    ASSERT_TRUE(start_instance(victim));
    for (int i = 0; i < kInstances; ++i)
      if (!hubs_[i].running()) {  // a store error ends an instance (exit 3): counted, restarted
        ++self_exits;
        const std::string log = read_file(dir_ + "/hub" + std::to_string(i + 1) + ".log");
        std::fprintf(stderr, "instance %d exited by itself; its log ends:\n%s\n", i + 1,
                     log.substr(log.size() > 1500 ? log.size() - 1500 : 0).c_str());
        ASSERT_TRUE(start_instance(i + 1));
      }
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 300));
    if (!its.empty()) {
      // bounded: at most 30 s for one of them to be answered again
      for (int w = 0; w < 600; ++w) {
        bool any = false;
        for (size_t k : its) any = any || pay.last_ok_started_ms[k].load() >= killed_ms;
        if (any) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      int64_t first = -1;
      for (size_t k : its) {
        const int64_t t = pay.last_ok_ms[k].load();
        if (pay.last_ok_started_ms[k].load() >= killed_ms && (first < 0 || t < first)) first = t;
      }
      if (first >= 0) takeovers.push_back(static_cast<uint64_t>(first - killed_ms));
    }
    if (c % 25 == 0 || c == cycles) {
      ASSERT_TRUE(pay.quiesce(120000)) << "payments still in flight at checkpoint " << c;
      for (auto& d : devices_) expect_ledger_agrees(*d);
      expect_audit_clean();
      EXPECT_EQ(pay.failures.load(), 0);
      uint64_t total = 0;
      for (auto& p : pay.paid) total += p.load();
      std::printf("[checkpoint] cycle %d: %llu payments answered, all ledgers agree\n", c,
                  static_cast<unsigned long long>(total));
      pay.pause = false;
    }
  }
  pay.join();
  EXPECT_EQ(pay.failures.load(), 0) << "payments not answered";
  for (size_t k = 0; k < devices_.size(); ++k) {
    expect_ledger_agrees(*devices_[k]);
    // every answered payment of 1 wei is in the state: none lost, none counted twice
    EXPECT_TRUE(devices_[k]->latest().state.balanceWeiHub == U256::from_u64(pay.paid[k].load()));
  }
  expect_audit_clean();
  const std::string fenced = pg_->query("postgres", "SELECT count(*) FROM audit");
  std::sort(takeovers.begin(), takeovers.end());
  uint64_t total = 0;
  for (auto& p : pay.paid) total += p.load();
  std::printf("[measure] %d kill cycles, %llu payments answered, %s update rows audited, %d self-exits; takeover "
              "(kill to the first answer to a payment started after it on a channel the killed instance held, ttl %d ms): p50 %llu "
              "ms, max %llu ms over %zu cycles\n",
              cycles, static_cast<unsigned long long>(total), fenced.c_str(), self_exits, kTtlMs,
              static_cast<unsigned long long>(takeovers.empty() ? 0 : takeovers[takeovers.size() / 2]),
              static_cast<unsigned long long>(takeovers.empty() ? 0 : takeovers.back()), takeovers.size());
}

// An instance stopped (SIGSTOP) past its leases' TTL while the other's devices keep paying:
// the other takes its partitions over; after SIGCONT the stopped one commits nothing under
// the leases it lost, its devices are answered by the other, and no device sees a second
// hub signature. The sharp case: an update published while the instance was stopped and
// before the takeover (so only the stopped instance took it; a raw publish is never
// re-sent) waits in its socket; it wakes up believing it still holds the partition. Without
// the fence it would commit that update under the other's lease (the audit trigger shows
// it); with the fence the batch rolls back.
TEST_F(MultiHub, StalledInstanceCommitsNothingAfterTakeover) {
  constexpr uint32_t kDevices = 8;
  start_broker(kDevices);
  ASSERT_TRUE(start_instance(1));
  ASSERT_TRUE(start_instance(2));
  ASSERT_TRUE(wait_all_leased(30000));
  ASSERT_EQ(pg_->psql("postgres", kAuditSql), 0) << read_file(dir_ + "/psql.log");
  for (uint32_t i = 1; i <= kDevices; ++i) device(i);
  for (auto& d : devices_) ASSERT_EQ(d->fund(1000000000), Status::Ok);
  // Wait until both instances hold partitions of the devices (the fair share settles).
  std::vector<size_t> of1;
  for (int w = 0; w < 100; ++w) {
    of1.clear();
    const auto held = holders();
    for (size_t k = 0; k < devices_.size(); ++k) {
      auto h = held.find(devices_[k]->address().bytes[0]);
      if (h != held.end() && h->second == "i1") of1.push_back(k);
    }
    if (!of1.empty() && of1.size() < devices_.size()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(of1.empty()) << "instance 1 holds no device's partition";
  const size_t quiet = of1.front();  // sends the raw update
  SimDevice& q = *devices_[quiet];
  Payers pay(devices_.size());
  pay.run(devices_, of1);  // instance 1's devices stay quiet while it is stopped
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(q.wait_idle(30000));
  ASSERT_EQ(::kill(hubs_[0].pid(), SIGSTOP), 0);
  const std::string stopped_at = pg_->query("postgres", "SELECT now()");
  ChannelUpdate u = channel_update_make(UpdateReason::Payment);
  u.payment.recipient = Party::Hub;
  u.payment.amountWei = U256::from_u64(1);
  ChannelState next{};
  const auto raw = q.build(u, next);
  ASSERT_FALSE(raw.empty());
  ASSERT_TRUE(q.publish_raw(mqtt::topic_update(hub_addr_, q.address()), raw, u.txCountGlobal));
  // Bounded: instance 2 holds the stalled one's partitions and answers its devices.
  bool taken = false;
  for (int w = 0; w < 300 && !taken; ++w) {
    taken = true;
    const auto held = holders();
    for (size_t k : of1) {
      auto h = held.find(devices_[k]->address().bytes[0]);
      taken = taken && h != held.end() && h->second == "i2";
    }
    if (!taken) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(taken) << "instance 2 did not take the stopped instance's partitions";
  const std::string taken_at = pg_->query("postgres", "SELECT now()");
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  ASSERT_EQ(::kill(hubs_[0].pid(), SIGCONT), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));  // it wakes up with stale leases and queued messages
  Reply r{};
  const bool answered = q.wait_reply(u.txCountGlobal, r, 100);
  ASSERT_TRUE(pay.quiesce(120000));
  pay.join();
  EXPECT_EQ(pay.failures.load(), 0);
  expect_audit_clean();
  // Instance 1's devices pay through their sessions now (the quiet one: the same update,
  // bytes for bytes): whoever answers, one state per txCountGlobal.
  for (size_t k : of1)
    for (int i = 0; i < 3; ++i) EXPECT_EQ(devices_[k]->pay(1), Status::Ok);
  for (auto& d : devices_) expect_ledger_agrees(*d);
  expect_audit_clean();
  const std::string late = pg_->query(
      "postgres", "SELECT count(*) FROM audit WHERE app LIKE 'picopay-hub/i1#%' AND at > '" + taken_at +
                      "' AND holder NOT LIKE 'i1#%'");
  EXPECT_EQ(late, "0");
  const std::string log1 = read_file(dir_ + "/hub1.log");
  const bool fenced = log1.find("leases: fence:") != std::string::npos;
  const bool ended = !hubs_[0].running();
  std::printf("[measure] stalled instance stopped at %s, taken over by %s; after SIGCONT: %s; the raw update %s\n",
              stopped_at.c_str(), taken_at.c_str(),
              fenced ? "its fence rolled a batch back" : ended ? "it stopped on a store error" : "it found its leases gone first",
              answered ? "was answered" : "was not answered (re-sent by the session later)");
}

// The hub's retained status with several instances (docs/multi-instance.md, "The hub's
// status"): every instance's Last Will is the hub's "offline" naming it, and the others
// answer it. kill -9 of one of three: the hub's topic reads online again and the dead
// instance's own topic offline; a clean stop of one of the two left keeps the hub online
// (no "offline" in between); the last one's clean stop leaves it offline; two instances
// stopped at the same moment leave it offline too.
TEST_F(MultiHub, HubStatusStaysOnlineWhileAnInstanceServes) {
  start_broker(0);
  for (int i = 1; i <= kInstances; ++i) ASSERT_TRUE(start_instance(i));
  const std::string hub = mqtt::topic_hub_online(hub_addr_);
  auto inst = [&](int i) { return mqtt::topic_hub_instance_status(hub_addr_, "i" + std::to_string(i)); };
  // A live watcher: the latest state per topic and how often the hub's read "offline".
  std::mutex mu;
  std::map<std::string, std::string> last;
  int hub_offline = 0;
  mqtt::Client watch(watch_login("watch"));
  watch.on_message([&](const mqtt::Message& m) {
    std::lock_guard<std::mutex> lk(mu);
    last[m.topic] = state_of(m.payload);
    if (m.topic == hub && last[m.topic] == "offline") ++hub_offline;
  });
  watch.subscribe(hub, 1);
  watch.subscribe(mqtt::topic_hub_instance_filter(hub_addr_), 1);
  std::string err;
  ASSERT_TRUE(watch.start(err)) << err;
  auto state = [&](const std::string& t) {
    std::lock_guard<std::mutex> lk(mu);
    auto it = last.find(t);
    return it == last.end() ? std::string() : it->second;
  };
  auto offline_count = [&] {
    std::lock_guard<std::mutex> lk(mu);
    return hub_offline;
  };
  ASSERT_TRUE(poll_until([&] {
    return state(hub) == "online" && state(inst(1)) == "online" && state(inst(2)) == "online" &&
           state(inst(3)) == "online";
  }, 60000)) << "the instances did not all come online";

  hubs_[1].kill9();
  ASSERT_TRUE(poll_until([&] { return offline_count() >= 1; }, 30000)) << "instance 2's Last Will did not arrive";
  ASSERT_TRUE(poll_until([&] { return state(inst(2)) == "offline" && state(hub) == "online"; }, 30000))
      << "hub " << state(hub) << ", instance 2 " << state(inst(2));
  EXPECT_EQ(read_retained(hub), "online") << "the hub reads offline while two instances serve";
  EXPECT_EQ(read_retained(inst(2)), "offline");
  EXPECT_EQ(read_retained(inst(1)), "online");
  const int offline_after_kill = offline_count();

  EXPECT_EQ(hubs_[0].terminate(30000), 0);
  ASSERT_TRUE(poll_until([&] { return state(inst(1)) == "offline"; }, 30000));
  EXPECT_EQ(read_retained(hub), "online") << "a clean stop of one of two instances marked the hub offline";
  EXPECT_EQ(offline_count(), offline_after_kill) << "the hub read offline while instance 3 served";

  EXPECT_EQ(hubs_[2].terminate(30000), 0);
  ASSERT_TRUE(poll_until([&] { return state(hub) == "offline"; }, 30000)) << "the last clean stop left " << state(hub);
  EXPECT_EQ(read_retained(hub), "offline");
  for (int i = 1; i <= kInstances; ++i) EXPECT_EQ(read_retained(inst(i)), "offline") << "instance " << i;

  // Two instances stopped at the same moment: whichever the broker handles last sees the
  // other's "offline" first and marks the hub offline.
  ASSERT_TRUE(start_instance(1));
  ASSERT_TRUE(start_instance(2));
  ASSERT_TRUE(poll_until([&] {
    return state(hub) == "online" && state(inst(1)) == "online" && state(inst(2)) == "online";
  }, 60000)) << "the restarted instances did not come online";
  ASSERT_TRUE(wait_all_leased(30000));
  ASSERT_EQ(::kill(hubs_[0].pid(), SIGTERM), 0);
  ASSERT_EQ(::kill(hubs_[1].pid(), SIGTERM), 0);
  EXPECT_EQ(hubs_[0].wait(30000), 0);
  EXPECT_EQ(hubs_[1].wait(30000), 0);
  ASSERT_TRUE(poll_until([&] { return state(hub) == "offline"; }, 30000)) << "two clean stops left " << state(hub);
  EXPECT_EQ(read_retained(hub), "offline");
  EXPECT_EQ(read_retained(inst(1)), "offline");
  EXPECT_EQ(read_retained(inst(2)), "offline");
  watch.stop();
}

// The cross-channel rule of a payer's OpenThread (the hub must be able to lock as much in
// the payee's channel; no chain here, so it must hold it already) reads the payee's
// channel as its holder committed it, never a copy cached by another instance: the first
// thread's mirror locked 300 of the payee's 500 hub wei on instance 2, so a second thread
// of 300 must be refused by instance 1 (with the copy it cached at the first thread's
// check, 500 held and nothing mirrored, it was countersigned and its mirror could never
// be locked: the payer's funds stuck in a thread).
TEST_F(MultiHub, APayersOpenThreadReadsThePayeesChannelAsItsHolderCommittedIt) {
  constexpr uint32_t kCandidates = 32;
  start_broker(kCandidates);
  ASSERT_TRUE(start_instance(1));
  ASSERT_TRUE(start_instance(2));
  ASSERT_TRUE(wait_settled(2, 30000)) << "the two instances did not settle on their shares";
  auto [pa, pb] = thread_pair(kCandidates);
  ASSERT_TRUE(pa && pb) << "no payer on instance 1 or no payee on instance 2";
  SimDevice& a = *pa;  // payer, on instance 1
  SimDevice& b = *pb;  // payee, on instance 2, 500 hub wei in its channel
  uint64_t id = 0;
  ASSERT_EQ(a.open_thread(b.address(), 300, &id), Status::Ok);
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; }, 30000))
      << "the mirrored OpenThread did not reach the payee";
  ASSERT_EQ(b.latest().state.balanceWeiHub, U256::from_u64(200));
  const uint64_t before = a.latest().state.txCountGlobal;
  uint64_t id2 = 0;
  EXPECT_EQ(a.open_thread(b.address(), 300, &id2), Status::Underflow)
      << "a thread the payee's channel cannot mirror was countersigned";
  EXPECT_EQ(a.latest().state.txCountGlobal, before);
  EXPECT_EQ(a.threads().size(), 1u);
  // One that fits is still opened and mirrored.
  uint64_t id3 = 0;
  ASSERT_EQ(a.open_thread(b.address(), 150, &id3), Status::Ok);
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 2; }, 30000))
      << "the second mirror did not reach the payee";
  EXPECT_EQ(b.latest().state.balanceWeiHub, U256::from_u64(50));
  EXPECT_TRUE(wait_forwarded_empty(30000));
  // The payer's refused proposal was invalidated (the hub's skip request: one update row
  // for two txCountGlobal), so its ledger has one row fewer than its count.
  ASSERT_TRUE(a.wait_idle(60000));
  const Ledger la = read_ledger(uri_, a.address());
  ASSERT_TRUE(la.found);
  EXPECT_EQ(la.state, wire(a.latest()));
  EXPECT_EQ(static_cast<uint64_t>(la.updates) + 1, a.latest().state.txCountGlobal);
  EXPECT_EQ(a.double_signed(), 0u);
  EXPECT_EQ(a.threads().size(), 2u);
  expect_ledger_agrees(b);
}

// A thread whose payer and payee channels belong to partitions of two instances
// (docs/multi-instance.md, "Threads across partitions"): the payer's instance hands the
// mirror OpenThread over through forwarded_requests in the transaction of its
// countersignature; the payee's instance queues and sends it; payments flow in the thread;
// the payee's close is handed back to the payer's instance as the payer's CloseThread. The
// books balance across the two channels, and every stored request row was written by the
// holder of its channel's partition (audit trigger on requests).
TEST_F(MultiHub, ThreadAcrossPartitionsOpensAndCloses) {
  constexpr uint32_t kCandidates = 32;
  start_broker(kCandidates);
  ASSERT_TRUE(start_instance(1));
  ASSERT_TRUE(start_instance(2));
  ASSERT_TRUE(wait_settled(2, 30000)) << "the two instances did not settle on their shares";
  ASSERT_EQ(pg_->psql("postgres", std::string(kAuditSql) + kRequestAuditSql), 0) << read_file(dir_ + "/psql.log");
  auto [pa, pb] = thread_pair(kCandidates);
  ASSERT_TRUE(pa && pb) << "no payer on instance 1 or no payee on instance 2";
  SimDevice& a = *pa;  // payer, on instance 1
  SimDevice& b = *pb;  // payee, on instance 2

  uint64_t id = 0;
  ASSERT_EQ(a.open_thread(b.address(), 100, &id), Status::Ok);
  const auto opened = Clock::now();
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; }, 30000))
      << "the mirrored OpenThread did not reach the payee across the instances";
  const uint64_t across_ms = ms_since(opened);
  ASSERT_EQ(b.threads().size(), 1u);
  pay_and_close(a, b, id, 40, 1);
  if (HasFatalFailure()) return;
  EXPECT_TRUE(a.threads().empty());
  EXPECT_TRUE(b.threads().empty());
  EXPECT_EQ(a.latest().state.balanceWeiHub, U256::from_u64(40));
  EXPECT_EQ(b.latest().state.balanceWeiUser, U256::from_u64(540));
  EXPECT_EQ(b.latest().state.balanceWeiHub, U256::from_u64(460));
  EXPECT_TRUE(wait_forwarded_empty(30000));
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
  expect_audit_clean();
  // Both hand-overs went through the ledger (one each way).
  const std::string log1 = read_file(dir_ + "/hub1.log"), log2 = read_file(dir_ + "/hub2.log");
  EXPECT_NE(log2.find("forwarded requests: 1 queued"), std::string::npos) << log2;
  EXPECT_NE(log1.find("forwarded requests: 1 queued"), std::string::npos) << log1;

  // A payee on another partition of the payer's own instance: handed over the same way
  // (the batch fenced only the payer's partition) and taken by that instance itself.
  uint32_t ic = 0;
  {
    Signer sg;
    ASSERT_EQ(sg.init(), Status::Ok);
    const auto held = holders();
    for (uint32_t i = 1; i <= kCandidates && ic == 0; ++i) {
      Address ca{};
      ASSERT_EQ(sg.address_of(test_key(i), ca), Status::Ok);
      auto h = held.find(ca.bytes[0]);
      if (h != held.end() && h->second == "i1" && ca.bytes[0] != a.address().bytes[0]) ic = i;
    }
  }
  ASSERT_NE(ic, 0u) << "no second device on instance 1";
  SimDevice& c = device(ic);
  ASSERT_EQ(c.fund(1000), Status::Ok);
  ASSERT_EQ(c.pay(500), Status::Ok);
  uint64_t id2 = 0;
  ASSERT_EQ(a.open_thread(c.address(), 50, &id2), Status::Ok);
  const auto opened2 = Clock::now();
  ASSERT_TRUE(c.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; }, 30000))
      << "the mirror did not reach a payee on another partition of the same instance";
  std::printf("[measure] payer's OpenThread answered to the payee's mirror double-signed: %llu ms across two "
              "instances, %llu ms to another partition of the payer's instance\n",
              static_cast<unsigned long long>(across_ms), static_cast<unsigned long long>(ms_since(opened2)));
  pay_and_close(a, c, id2, 10, 2);
  if (HasFatalFailure()) return;
  EXPECT_TRUE(wait_forwarded_empty(30000));
  expect_ledger_agrees(a);
  expect_ledger_agrees(c);
  expect_audit_clean();
}

// kill -9 of the payee's instance between the payer's countersigned OpenThread (its
// forwarded mirror committed with it) and the pick-up: the row waits in the ledger; the
// instance that takes the payee's partition over queues and sends the mirror, and the
// thread then closes across the instances as usual.
TEST_F(MultiHub, ForwardedRequestSurvivesKillOfThePayeesInstance) {
  constexpr uint32_t kCandidates = 32;
  constexpr int kLongTtl = 4000;  // the stopped instance keeps its leases while the payer pays
  start_broker(kCandidates);
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(start_instance(i, kLongTtl));
  ASSERT_TRUE(wait_settled(3, 60000)) << "the three instances did not settle on their shares";
  ASSERT_EQ(pg_->psql("postgres", std::string(kAuditSql) + kRequestAuditSql), 0) << read_file(dir_ + "/psql.log");
  auto [pa, pb] = thread_pair(kCandidates);
  ASSERT_TRUE(pa && pb) << "no payer on instance 1 or no payee on instance 2";
  SimDevice& a = *pa;
  SimDevice& b = *pb;
  ASSERT_TRUE(b.wait_idle(30000));

  ASSERT_EQ(::kill(hubs_[1].pid(), SIGSTOP), 0);  // the payee's instance cannot take the row
  uint64_t id = 0;
  ASSERT_EQ(a.open_thread(b.address(), 100, &id), Status::Ok);
  EXPECT_EQ(pg_->query("postgres", "SELECT count(*) FROM forwarded_requests WHERE \"user\" = '" +
                                       mqtt::topic_address(b.address()) + "'"),
            "1")
      << "the mirror was not committed with the payer's countersignature";
  EXPECT_EQ(b.completed(UpdateReason::OpenThread), 0u);
  hubs_[1].kill9();
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; }, 60000))
      << "the new holder of the payee's partition did not deliver the forwarded mirror";
  EXPECT_TRUE(wait_forwarded_empty(30000));
  pay_and_close(a, b, id, 25, 1);
  if (HasFatalFailure()) return;
  EXPECT_EQ(a.latest().state.balanceWeiHub, U256::from_u64(25));
  EXPECT_EQ(b.latest().state.balanceWeiUser, U256::from_u64(525));
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
  expect_audit_clean();
}

// Rows in forwarded_requests that no honest instance wrote are refused by the request
// rules and nothing is signed: a mirror OpenThread whose payer's channel does not hold the
// thread (the hub would lock its funds for nothing), a reason that never crosses
// partitions, a row under the wrong partition, an OpenThread addressed to its payer, and a
// copy of a mirror already fulfilled. The payee gets no request; its channel is unchanged.
TEST_F(MultiHub, ForgedForwardedRowsAreRefused) {
  constexpr uint32_t kCandidates = 32;
  start_broker(kCandidates);
  ASSERT_TRUE(start_instance(1));
  ASSERT_TRUE(start_instance(2));
  ASSERT_TRUE(wait_settled(2, 30000));
  auto [pa, pb] = thread_pair(kCandidates);
  ASSERT_TRUE(pa && pb) << "no payer on instance 1 or no payee on instance 2";
  SimDevice& a = *pa;
  SimDevice& b = *pb;
  uint64_t id = 0;
  ASSERT_EQ(a.open_thread(b.address(), 100, &id), Status::Ok);
  ASSERT_TRUE(b.wait_until([](SimDevice& d) { return d.completed(UpdateReason::OpenThread) == 1; }, 30000));
  ASSERT_TRUE(b.wait_idle(30000));
  ASSERT_TRUE(wait_forwarded_empty(30000));
  const Ledger b0 = read_ledger(uri_, b.address());
  const size_t seen0 = b.hub_requests_seen();
  const int part_b = b.address().bytes[0];

  ChannelUpdate never = channel_update_make(UpdateReason::OpenThread);  // a thread the payer never opened
  never.thread.thread = payer_signed_thread(contract_, a, b.address(), id + 77, 100);
  insert_forwarded(part_b, b.address(), never);
  ChannelUpdate pay = channel_update_make(UpdateReason::Payment);  // not a thread's hand-over
  pay.payment.recipient = Party::Hub;
  pay.payment.amountWei = U256::from_u64(1);
  insert_forwarded(part_b, b.address(), pay);
  ChannelUpdate again = channel_update_make(UpdateReason::OpenThread);  // fulfilled already
  again.thread.thread = payer_signed_thread(contract_, a, b.address(), id, 100);
  insert_forwarded(part_b, b.address(), again);
  insert_forwarded((part_b + 1) % 256, b.address(), again);  // under another partition
  insert_forwarded(a.address().bytes[0], a.address(), again);  // to the payer itself
  ASSERT_TRUE(wait_forwarded_empty(30000)) << "forged rows were left (not taken)";
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // a request sent would have arrived
  EXPECT_EQ(b.hub_requests_seen(), seen0) << "a forged row reached the payee as a request";
  EXPECT_EQ(b.completed(UpdateReason::OpenThread), 1u);
  const Ledger b1 = read_ledger(uri_, b.address());
  EXPECT_EQ(b1.state, b0.state) << "a forged row changed the payee's channel";
  EXPECT_EQ(b1.updates, b0.updates);
  EXPECT_EQ(b1.requests, 0);
  EXPECT_EQ(b.threads().size(), 1u);
  const std::string logs = read_file(dir_ + "/hub1.log") + read_file(dir_ + "/hub2.log");
  EXPECT_NE(logs.find("does not hold this thread; dropped"), std::string::npos);
  EXPECT_NE(logs.find("is not a thread's hand-over to this channel; dropped"), std::string::npos);
  EXPECT_NE(logs.find("not a channel of partition"), std::string::npos);
  EXPECT_NE(logs.find("does not apply ("), std::string::npos);
  expect_ledger_agrees(a);
  expect_ledger_agrees(b);
}
