// The hub's ledger interface (agent/hub/src/ledger/ledger.hpp) on both backends: a SQLite
// file and a real PostgreSQL server started by the fixture on 127.0.0.1 (tests/support/
// postgres.hpp). Every test runs on both (parameter "sqlite" / "postgresql").
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ledger/ledger.hpp"
#include "picopay/codec.hpp"
#include "picopay/state.hpp"
#include "support/postgres.hpp"
#include "support/process.hpp"

using namespace picopay::hub;
using namespace picopay::testsupport;

namespace {

PgServer* g_pg = nullptr;
int g_db_seq = 0;

class LedgerTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    g_pg = new PgServer();
    std::string err;
    if (!g_pg->start(err)) {
      std::fprintf(stderr, "PostgreSQL fixture: %s\n", err.c_str());
      delete g_pg;
      g_pg = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete g_pg;
    g_pg = nullptr;
  }
  void SetUp() override {
    dir_ = make_temp_dir("picopay-ledgertest");
    if (pg()) {
      ASSERT_NE(g_pg, nullptr) << "the PostgreSQL fixture did not start (see above)";
      db_ = "ledger_" + std::to_string(++g_db_seq);
      std::string err;
      ASSERT_TRUE(g_pg->create_database(db_, err)) << err;
      spec_ = g_pg->uri(db_);
    } else {
      spec_ = "sqlite:" + dir_ + "/hub.db";
    }
  }
  void TearDown() override {
    ledger_.reset();
    remove_tree(dir_);
  }
  bool pg() const { return GetParam() == "postgresql"; }
  void open() {
    ledger_.reset();
    LedgerStatus s = Ledger::open(spec_, ledger_);
    ASSERT_TRUE(s.ok()) << s.message;
    ASSERT_NE(ledger_, nullptr);
  }
  // Another connection to the same ledger (nullptr, failed, if it does not open).
  std::unique_ptr<Ledger> open_new() {
    std::unique_ptr<Ledger> l;
    LedgerStatus s = Ledger::open(spec_, l);
    EXPECT_TRUE(s.ok()) << s.message;
    return l;
  }
  // Runs one SQL statement on the backend's database outside the ledger.
  void sql(const std::string& q) {
    if (pg()) {
      ASSERT_EQ(g_pg->psql(db_, q), 0) << q;
    } else {
      sqlite3* h = nullptr;
      ASSERT_EQ(sqlite3_open((dir_ + "/hub.db").c_str(), &h), SQLITE_OK);
      char* msg = nullptr;
      const int rc = sqlite3_exec(h, q.c_str(), nullptr, nullptr, &msg);
      const std::string m = msg ? msg : "";
      sqlite3_free(msg);
      sqlite3_close(h);
      ASSERT_EQ(rc, SQLITE_OK) << q << ": " << m;
    }
  }
  std::string dir_, db_, spec_;
  std::unique_ptr<Ledger> ledger_;
};

const Bytes kState = {1, 2, 3, 0, 255};
const Bytes kThreads = {0, 2, 9, 9};

}  // namespace

TEST_P(LedgerTest, OpensAtTheCurrentSchemaVersionAndNamesItsBackend) {
  open();
  EXPECT_STREQ(ledger_->backend(), GetParam().c_str());
  EXPECT_EQ(ledger_->schema_version(), kLedgerSchemaVersion);
  open();  // reopening migrates nothing and keeps the version
  EXPECT_EQ(ledger_->schema_version(), kLedgerSchemaVersion);
}

TEST_P(LedgerTest, EveryTableRoundTripsAndSurvivesReopening) {
  open();
  ASSERT_TRUE(ledger_->begin().ok());
  ASSERT_TRUE(ledger_->save_channel("0xaa", 3, kState, kThreads).ok());
  ASSERT_TRUE(ledger_->save_channel("0xaa", 4, Bytes{7, 7}, Bytes{}).ok());  // replaces
  ASSERT_TRUE(ledger_->save_channel("0xbb", 1, kState, Bytes{}).ok());
  ASSERT_TRUE(ledger_->insert_update("0xaa", 4, Bytes{4}, Bytes{0x10, 4}, Bytes{7, 7}).ok());
  std::vector<Ledger::RequestRow> rq(2);
  rq[0].id = 5;
  rq[0].update = {1, 1};
  rq[1].update = {2, 2, 2};
  ASSERT_TRUE(ledger_->save_requests("0xaa", 5, rq).ok());
  ASSERT_TRUE(ledger_->save_deposit("0xbb", 9, kState).ok());
  ASSERT_TRUE(ledger_->commit().ok());

  open();  // a new connection sees what was committed
  Bytes st, th;
  bool found = false;
  ASSERT_TRUE(ledger_->load_channel("0xaa", st, th, found).ok());
  ASSERT_TRUE(found);
  EXPECT_EQ(st, (Bytes{7, 7}));
  EXPECT_TRUE(th.empty());
  ASSERT_TRUE(ledger_->load_channel("0xcc", st, th, found).ok());
  EXPECT_FALSE(found);
  Bytes req, rep;
  ASSERT_TRUE(ledger_->find_update("0xaa", 4, req, rep, found).ok());
  ASSERT_TRUE(found);
  EXPECT_EQ(req, Bytes{4});
  EXPECT_EQ(rep, (Bytes{0x10, 4}));
  ASSERT_TRUE(ledger_->find_update("0xaa", 3, req, rep, found).ok());
  EXPECT_FALSE(found);
  uint64_t last = 0;
  std::vector<Ledger::RequestRow> back;
  ASSERT_TRUE(ledger_->load_requests("0xaa", last, back).ok());
  EXPECT_EQ(last, 5u);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].id, 5u);
  EXPECT_EQ(back[0].update, (Bytes{1, 1}));
  EXPECT_EQ(back[1].id, 0u);
  EXPECT_EQ(back[1].update, (Bytes{2, 2, 2}));
  std::vector<std::string> users;
  ASSERT_TRUE(ledger_->list_request_users(users).ok());
  EXPECT_EQ(users, std::vector<std::string>{"0xaa"});
  std::vector<std::pair<std::string, Bytes>> deps;
  ASSERT_TRUE(ledger_->list_deposits(deps).ok());
  ASSERT_EQ(deps.size(), 1u);
  EXPECT_EQ(deps[0].first, "0xbb");
  EXPECT_EQ(deps[0].second, kState);
  uint64_t n = 0;
  ASSERT_TRUE(ledger_->count_channels(n).ok());
  EXPECT_EQ(n, 2u);
  size_t seen = 0;
  ASSERT_TRUE(ledger_->for_each_channel([&](const std::string& u, const Bytes& s) {
                        EXPECT_TRUE(u == "0xaa" || u == "0xbb");
                        EXPECT_FALSE(s.empty());
                        return ++seen < 1;  // stops early when asked
                      })
                  .ok());
  EXPECT_EQ(seen, 1u);

  ASSERT_TRUE(ledger_->begin().ok());
  ASSERT_TRUE(ledger_->delete_deposit("0xbb").ok());
  ASSERT_TRUE(ledger_->save_requests("0xaa", 0, {}).ok());  // last id 0: the stored last id stays
  ASSERT_TRUE(ledger_->commit().ok());
  deps.clear();
  ASSERT_TRUE(ledger_->list_deposits(deps).ok());
  EXPECT_TRUE(deps.empty());
  ASSERT_TRUE(ledger_->load_requests("0xaa", last, back).ok());
  EXPECT_TRUE(back.empty());
  EXPECT_EQ(last, 5u);
}

TEST_P(LedgerTest, ASecondUpdateWithTheSameTxCountIsAConflictAndRollbackKeepsTheLedgerAsItWas) {
  open();
  ASSERT_TRUE(ledger_->begin().ok());
  ASSERT_TRUE(ledger_->save_channel("0xaa", 1, kState, Bytes{}).ok());
  ASSERT_TRUE(ledger_->insert_update("0xaa", 1, Bytes{1}, Bytes{1}, kState).ok());
  ASSERT_TRUE(ledger_->commit().ok());

  ASSERT_TRUE(ledger_->begin().ok());
  ASSERT_TRUE(ledger_->save_channel("0xaa", 2, Bytes{9}, Bytes{}).ok());
  LedgerStatus s = ledger_->insert_update("0xaa", 1, Bytes{2}, Bytes{2}, Bytes{9});
  // PostgreSQL pipelines the writes of a transaction: the error comes with commit().
  if (s.ok()) s = ledger_->commit();
  EXPECT_EQ(s.code, LedgerCode::Conflict) << s.message;
  EXPECT_NE(s.message.find(GetParam()), std::string::npos) << s.message;
  ledger_->rollback();

  Bytes st, th, req, rep;
  bool found = false;
  ASSERT_TRUE(ledger_->load_channel("0xaa", st, th, found).ok());
  EXPECT_EQ(st, kState);  // the channel write of the failed transaction is gone
  ASSERT_TRUE(ledger_->find_update("0xaa", 1, req, rep, found).ok());
  EXPECT_EQ(req, Bytes{1});
  // The ledger goes on after the rollback: nothing sticky.
  ASSERT_TRUE(ledger_->begin().ok());
  ASSERT_TRUE(ledger_->insert_update("0xaa", 2, Bytes{2}, Bytes{2}, Bytes{9}).ok());
  ASSERT_TRUE(ledger_->commit().ok());
}

// Writes inside a transaction (pipelined on PostgreSQL) are seen by the reads that follow
// them in the same transaction, and a failing write among many loses all of them.
TEST_P(LedgerTest, ATransactionReadsItsOwnWritesAndAFailedWriteAmongManyLosesThemAll) {
  open();
  ASSERT_TRUE(ledger_->begin().ok());
  for (int i = 0; i < 300; ++i)
    ASSERT_TRUE(ledger_->save_channel("0x" + std::to_string(i), 1, kState, Bytes{}).ok());
  std::vector<Ledger::RequestRow> rq(3);
  for (size_t i = 0; i < rq.size(); ++i) rq[i].update = {static_cast<uint8_t>(i)};
  ASSERT_TRUE(ledger_->save_requests("0x7", 9, rq).ok());
  uint64_t last = 0;
  std::vector<Ledger::RequestRow> back;
  ASSERT_TRUE(ledger_->load_requests("0x7", last, back).ok());
  EXPECT_EQ(last, 9u);
  EXPECT_EQ(back.size(), 3u);
  Bytes st, th;
  bool found = false;
  ASSERT_TRUE(ledger_->load_channel("0x299", st, th, found).ok());
  EXPECT_TRUE(found);
  ASSERT_TRUE(ledger_->commit().ok());

  ASSERT_TRUE(ledger_->begin().ok());
  LedgerStatus s;
  for (int i = 0; i < 100 && s.ok(); ++i) s = ledger_->save_channel("0xnew" + std::to_string(i), 1, kState, Bytes{});
  if (s.ok()) s = ledger_->insert_update("0x1", 1, Bytes{1}, Bytes{1}, kState);
  if (s.ok()) s = ledger_->insert_update("0x1", 1, Bytes{2}, Bytes{2}, kState);  // the same (user, tx)
  for (int i = 100; i < 200 && s.ok(); ++i) s = ledger_->save_channel("0xnew" + std::to_string(i), 1, kState, Bytes{});
  if (s.ok()) s = ledger_->commit();
  EXPECT_EQ(s.code, LedgerCode::Conflict) << s.message;
  ledger_->rollback();
  uint64_t n = 0;
  ASSERT_TRUE(ledger_->count_channels(n).ok());
  EXPECT_EQ(n, 300u);
  Bytes req, rep;
  ASSERT_TRUE(ledger_->find_update("0x1", 1, req, rep, found).ok());
  EXPECT_FALSE(found);
}

TEST_P(LedgerTest, UncommittedWritesAreNotVisibleToAnotherConnectionAndVanishWithTheirs) {
  open();
  std::unique_ptr<Ledger> other;
  ASSERT_TRUE(Ledger::open(spec_, other).ok());
  ASSERT_TRUE(ledger_->begin().ok());
  ASSERT_TRUE(ledger_->save_channel("0xaa", 1, kState, Bytes{}).ok());
  if (pg()) {  // SQLite's WAL readers would also not see it, but a second SQLite connection
               // in this process may block on the writer's lock: check PostgreSQL only
    Bytes st, th;
    bool found = true;
    ASSERT_TRUE(other->load_channel("0xaa", st, th, found).ok());
    EXPECT_FALSE(found);
  }
  ledger_.reset();  // the connection goes away mid-transaction
  Bytes st, th;
  bool found = true;
  ASSERT_TRUE(other->load_channel("0xaa", st, th, found).ok());
  EXPECT_FALSE(found);
}

TEST_P(LedgerTest, ALedgerOfANewerSchemaIsRefused) {
  open();
  ledger_.reset();
  sql("UPDATE schema_version SET version=" + std::to_string(kLedgerSchemaVersion + 1));
  std::unique_ptr<Ledger> l;
  LedgerStatus s = Ledger::open(spec_, l);
  EXPECT_EQ(s.code, LedgerCode::SchemaTooNew) << s.message;
  EXPECT_EQ(l, nullptr);
}

TEST_P(LedgerTest, ALedgerOfTheReleasesBeforeSchemaVersionsIsAdoptedWithItsRows) {
  // The tables as the releases before schema_version created them, with a channel.
  const std::string u = pg() ? "\"user\"" : "user";
  const std::string blob = pg() ? "BYTEA" : "BLOB";
  sql("CREATE TABLE channels(" + u + " TEXT PRIMARY KEY, tx " + (pg() ? "BIGINT" : "INTEGER") +
      " NOT NULL, state " + blob + " NOT NULL, threads " + blob + " NOT NULL)");
  sql(std::string("INSERT INTO channels VALUES('0xaa', 5, ") + (pg() ? "'\\x0102'::bytea, ''::bytea" : "x'0102', x''") +
      ")");
  open();
  EXPECT_EQ(ledger_->schema_version(), kLedgerSchemaVersion);
  Bytes st, th;
  bool found = false;
  ASSERT_TRUE(ledger_->load_channel("0xaa", st, th, found).ok());
  ASSERT_TRUE(found);
  EXPECT_EQ(st, (Bytes{1, 2}));
}

TEST_P(LedgerTest, ACorruptColumnIsATypedErrorNotAGuess) {
  if (!pg()) GTEST_SKIP() << "SQLite stores any type in any column; the hub's decoders catch a bad blob";
  open();
  ASSERT_TRUE(ledger_->begin().ok());
  std::vector<Ledger::RequestRow> rq(1);
  rq[0].id = 1;
  rq[0].update = {1};
  ASSERT_TRUE(ledger_->save_requests("0xaa", 1, rq).ok());
  ASSERT_TRUE(ledger_->commit().ok());
  sql("ALTER TABLE request_ids ALTER COLUMN last TYPE integer");  // 4 bytes where 8 are expected
  uint64_t last = 0;
  std::vector<Ledger::RequestRow> back;
  LedgerStatus s = ledger_->load_requests("0xaa", last, back);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.code == LedgerCode::Corrupt || s.code == LedgerCode::Io) << s.message;
}

// ---- channel_totals (schema version 5; the metrics' sums, ledger.hpp): on both backends,
// and on PostgreSQL with writes from outside the hub, two connections writing at once and
// a ledger of version 4 with channels upgraded.
namespace {

struct TotalsExpect {
  uint64_t channels = 0, threads = 0, wei = 0;
};

Bytes totals_wire(const picopay::SignedChannelState& s) {
  uint8_t b[picopay::kMaxChannelStateWire];
  size_t n = 0;
  EXPECT_EQ(picopay::encode_channel_state(s, b, sizeof b, &n), picopay::Status::Ok);
  return Bytes(b, b + n);
}
// The wire bytes of a channel state of user 0x<who><who2>.. with these two values
// (`recipient`: an explicit recipient, 20 more bytes before the amounts).
Bytes totals_state(uint8_t who, uint8_t who2, uint64_t wei_hub, uint64_t threads, bool recipient = false) {
  picopay::SignedChannelState s{};
  s.state = picopay::channel_state_zero();
  s.state.contractAddress.bytes[19] = 7;
  s.state.user.bytes[0] = who;
  s.state.user.bytes[1] = who2;
  s.state.recipient = s.state.user;
  if (recipient) s.state.recipient.bytes[19] = 1;
  s.state.balanceWeiHub = picopay::U256::from_u64(wei_hub);
  s.state.balanceWeiUser = picopay::U256::from_u64(12345);
  s.state.threadCount = threads;
  s.state.txCountGlobal = 300;  // two varint bytes before threadCount's
  s.state.txCountChain = 1;
  return totals_wire(s);
}
std::string totals_user(uint8_t who, uint8_t who2) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%02x%02x", who, who2);
  return b;
}
void expect_totals(Ledger& l, const TotalsExpect& e) {
  Ledger::ChannelTotals t;
  LedgerStatus st = l.channel_totals(t);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(t.channels, e.channels);
  EXPECT_EQ(t.threads, e.threads);
  EXPECT_EQ(t.wei_hub, picopay::U256::from_u64(e.wei));
}

}  // namespace

TEST_P(LedgerTest, ChannelTotalsFollowEveryWriteAndIgnoreARolledBackOne) {
  auto l = open_new();
  ASSERT_NE(l, nullptr);
  expect_totals(*l, {0, 0, 0});
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->save_channel(totals_user(1, 0), 1, totals_state(1, 0, 100, 1), {}).ok());
  ASSERT_TRUE(l->save_channel(totals_user(2, 0), 1, totals_state(2, 0, 20, 2, true), {}).ok());
  ASSERT_TRUE(l->save_channel(totals_user(2, 1), 1, totals_state(2, 1, 0, 0), {}).ok());
  ASSERT_TRUE(l->save_channel(totals_user(255, 0), 1, totals_state(255, 0, 3, 300), {}).ok());
  expect_totals(*l, {4, 303, 123});  // the transaction reads its own writes
  ASSERT_TRUE(l->commit().ok());
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->save_channel(totals_user(1, 0), 2, totals_state(1, 0, 1000, 0), {}).ok());
  ASSERT_TRUE(l->save_channel(totals_user(9, 9), 1, totals_state(9, 9, 5, 5), {}).ok());
  expect_totals(*l, {5, 307, 1028});
  l->rollback();
  expect_totals(*l, {4, 303, 123});
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->save_channel(totals_user(2, 0), 2, totals_state(2, 0, 5, 4, true), {}).ok());
  ASSERT_TRUE(l->save_channel(totals_user(255, 0), 2, {0x01, 0x01, 0xff}, {}).ok());  // not a state: counts 0
  ASSERT_TRUE(l->commit().ok());
  expect_totals(*l, {4, 5, 105});
  // a balance of more than 64 bits (2^200 wei): summed exactly
  picopay::SignedChannelState big{};
  const Bytes zero = totals_state(2, 1, 0, 0);
  ASSERT_EQ(picopay::decode_channel_state(zero.data(), zero.size(), big), picopay::Status::Ok);
  picopay::U256 two200 = picopay::U256::from_u64(1), t2{};
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(picopay::u256_add(two200, two200, t2), picopay::Status::Ok);
    two200 = t2;
  }
  big.state.balanceWeiHub = two200;
  ASSERT_TRUE(l->save_channel(totals_user(2, 1), 2, totals_wire(big), {}).ok());
  Ledger::ChannelTotals t;
  ASSERT_TRUE(l->channel_totals(t).ok());
  ASSERT_EQ(picopay::u256_add(two200, picopay::U256::from_u64(105), t2), picopay::Status::Ok);
  EXPECT_EQ(t.wei_hub, t2);
  big.state.balanceWeiHub = picopay::U256::from_u64(1);
  ASSERT_TRUE(l->save_channel(totals_user(2, 1), 3, totals_wire(big), {}).ok());
  l.reset();
  l = open_new();
  ASSERT_NE(l, nullptr);
  expect_totals(*l, {4, 5, 106});
}

TEST_P(LedgerTest, ChannelTotalsCountWritesFromOutsideTheHub) {
  if (!pg()) GTEST_SKIP() << "SQLite's totals are kept by the hub connection's TEMP triggers only (ledger.hpp)";
  auto l = open_new();
  ASSERT_NE(l, nullptr);
  for (uint8_t i = 0; i < 5; ++i) ASSERT_TRUE(l->save_channel(totals_user(i, 1), 1, totals_state(i, 1, 10, 1), {}).ok());
  expect_totals(*l, {5, 5, 50});
  sql("DELETE FROM channels WHERE \"user\" IN ('0x0001', '0x0101')");
  expect_totals(*l, {3, 3, 30});
  sql("UPDATE channels SET \"user\" = '0xff01' WHERE \"user\" = '0x0201'");  // another partition
  expect_totals(*l, {3, 3, 30});
  EXPECT_EQ(g_pg->query(db_, "SELECT channels FROM channel_totals WHERE partition = 255"), "1");
  EXPECT_EQ(g_pg->query(db_, "SELECT channels FROM channel_totals WHERE partition = 2"), "0");
  sql("TRUNCATE channels");
  expect_totals(*l, {0, 0, 0});
}

TEST_P(LedgerTest, ChannelTotalsOfTwoWritersAtOnceAreTheSumOverEveryChannel) {
  if (!pg()) GTEST_SKIP() << "the SQLite ledger serves one process";
  // Two connections, as two hub instances: each writes the channels of its own partitions
  // (even / odd first byte) in transactions of 16, some rolled back, and both write the
  // channels of partition 0x80 one statement at a time.
  constexpr int kRounds = 40;
  TotalsExpect want[2];
  auto writer = [&](int w) {
    auto l = open_new();
    ASSERT_NE(l, nullptr);
    for (int round = 0; round < kRounds; ++round) {
      ASSERT_TRUE(l->begin().ok());
      for (int i = 0; i < 16; ++i) {
        const auto p = static_cast<uint8_t>(2 * ((round * 16 + i) % 64) + w);
        const auto q = static_cast<uint8_t>(round);
        ASSERT_TRUE(l->save_channel(totals_user(p, q), 1, totals_state(p, q, 1000 + p, 2), {}).ok());
      }
      if (round % 5 == 4) {
        l->rollback();
      } else {
        ASSERT_TRUE(l->commit().ok());
        want[w].channels += 16;
        want[w].threads += 32;
        for (int i = 0; i < 16; ++i) want[w].wei += 1000 + 2 * ((round * 16 + i) % 64) + w;
      }
      // partition 0x80, shared: w's own channel 0x80<w>, updated every round (autocommit)
      ASSERT_TRUE(l->save_channel(totals_user(0x80, static_cast<uint8_t>(w)), static_cast<uint64_t>(round) + 1,
                                  totals_state(0x80, static_cast<uint8_t>(w), static_cast<uint64_t>(round), 1), {})
                      .ok());
    }
    want[w].channels += 1;
    want[w].threads += 1;
    want[w].wei += kRounds - 1;
  };
  std::thread a(writer, 0), b(writer, 1);
  a.join();
  b.join();
  auto l = open_new();
  ASSERT_NE(l, nullptr);
  expect_totals(*l, {want[0].channels + want[1].channels, want[0].threads + want[1].threads, want[0].wei + want[1].wei});
  uint64_t n = 0;
  ASSERT_TRUE(l->count_channels(n).ok());
  EXPECT_EQ(n, want[0].channels + want[1].channels);
}

TEST_P(LedgerTest, ALedgerOfSchemaVersion4WithChannelsGetsItsTotalsOnUpgrade) {
  if (!pg()) GTEST_SKIP() << "SQLite computes a missing totals row at every open (its own test in metrics_test)";
  {
    auto l = open_new();
    ASSERT_NE(l, nullptr);
  }
  // back to version 4: no totals table, trigger or functions; then channels written
  sql("DROP TABLE channel_totals; DROP TRIGGER picopay_channel_totals ON channels;"
       " DROP TRIGGER picopay_channel_totals_truncate ON channels; DROP FUNCTION picopay_channel_totals_row();"
       " DROP FUNCTION picopay_channel_totals_truncate(); DROP FUNCTION picopay_state_terms(BYTEA);"
       " DROP FUNCTION picopay_partition(TEXT); UPDATE schema_version SET version=4");
  TotalsExpect e;
  std::string values;
  for (int i = 0; i < 300; ++i) {
    const auto p = static_cast<uint8_t>(i % 256), q = static_cast<uint8_t>(i / 256);
    const Bytes st = i % 7 == 0 ? Bytes{1, 2, 3} : totals_state(p, q, 7 * static_cast<uint64_t>(i), static_cast<uint64_t>(i % 3), i % 2 == 1);
    char hex[3];
    std::string lit;
    for (uint8_t c : st) {
      std::snprintf(hex, sizeof hex, "%02x", c);
      lit += hex;
    }
    values += std::string(values.empty() ? "" : ",") + "('" + totals_user(p, q) + "', 1, '\\x" + lit + "'::bytea, ''::bytea)";
    ++e.channels;
    if (i % 7 != 0) {
      e.threads += static_cast<uint64_t>(i % 3);
      e.wei += 7 * static_cast<uint64_t>(i);
    }
  }
  sql("INSERT INTO channels VALUES" + values);
  auto l = open_new();
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->schema_version(), kLedgerSchemaVersion);
  expect_totals(*l, e);
  ASSERT_TRUE(l->save_channel(totals_user(0, 0), 2, totals_state(0, 0, 1, 1), {}).ok());  // was (0, 0): 0x0000 is i = 0
  expect_totals(*l, {e.channels, e.threads + 1, e.wei + 1});
}

INSTANTIATE_TEST_SUITE_P(Backends, LedgerTest, ::testing::Values("sqlite", "postgresql"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST(LedgerSpec, UnknownOrMalformedStoresAreRefusedWithATypedError) {
  std::unique_ptr<Ledger> l;
  EXPECT_EQ(Ledger::open("mysql://127.0.0.1/x", l).code, LedgerCode::BadSpec);
  EXPECT_EQ(Ledger::open("sqlite:", l).code, LedgerCode::BadSpec);
  EXPECT_EQ(Ledger::open("", l).code, LedgerCode::BadSpec);
  EXPECT_EQ(Ledger::open("sqlite:/nonexistent-dir/x/hub.db", l).code, LedgerCode::Unavailable);
  // Nobody listens on this port (it was free a moment ago).
  const LedgerStatus s =
      Ledger::open("postgresql://postgres@127.0.0.1:" + std::to_string(free_port()) + "/x?connect_timeout=5", l);
  EXPECT_EQ(s.code, LedgerCode::Unavailable) << s.message;
  EXPECT_EQ(l, nullptr);
}
