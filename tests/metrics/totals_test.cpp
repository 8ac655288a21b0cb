// The channel totals the metrics read (Ledger::channel_totals, agent/hub/src/ledger/
// ledger.hpp, schema version 5) on both backends: a SQLite file and a real PostgreSQL
// server started by the fixture on 127.0.0.1 (tests/support/postgres.hpp). The PostgreSQL
// ones also with two ledger connections writing at once, writes from outside the hub
// (psql), and a ledger of schema version 4 with channels upgraded.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../hub/hub_ledger.hpp"
#include "ledger/ledger.hpp"
#include "picopay/codec.hpp"
#include "support/postgres.hpp"

using namespace picopay;
using namespace picopay::testsupport;

namespace {

PgServer* g_pg = nullptr;
int g_db_seq = 0;

struct Expect {
  uint64_t channels = 0, threads = 0, wei = 0;
};

class TotalsTest : public ::testing::TestWithParam<std::string> {
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
    dir_ = make_temp_dir("picopay-totalstest");
    if (pg()) {
      ASSERT_NE(g_pg, nullptr) << "the PostgreSQL fixture did not start (see above)";
      db_ = "totals_" + std::to_string(++g_db_seq);
      std::string err;
      ASSERT_TRUE(g_pg->create_database(db_, err)) << err;
      spec_ = g_pg->uri(db_);
    } else {
      spec_ = "sqlite:" + dir_ + "/hub.db";
    }
  }
  void TearDown() override { remove_tree(dir_); }
  bool pg() const { return GetParam() == "postgresql"; }
  std::unique_ptr<hub::Ledger> open() {
    std::unique_ptr<hub::Ledger> l;
    hub::LedgerStatus s = hub::Ledger::open(spec_, l);
    EXPECT_TRUE(s.ok()) << s.message;
    return l;
  }
  void psql(const std::string& q) { ASSERT_EQ(g_pg->psql(db_, q), 0) << q; }

  // The wire bytes of a channel state of user 0x<who>.. with these two values (flag
  // `recipient`: an explicit recipient, 20 more bytes before the amounts).
  static hub::Bytes state(uint8_t who, uint8_t who2, uint64_t wei_hub, uint64_t threads, bool recipient = false) {
    SignedChannelState s{};
    s.state = channel_state_zero();
    s.state.contractAddress.bytes[19] = 7;
    s.state.user.bytes[0] = who;
    s.state.user.bytes[1] = who2;
    s.state.recipient = s.state.user;
    if (recipient) s.state.recipient.bytes[19] = 1;
    s.state.balanceWeiHub = U256::from_u64(wei_hub);
    s.state.balanceWeiUser = U256::from_u64(12345);
    s.state.threadCount = threads;
    s.state.txCountGlobal = 300;  // two varint bytes before threadCount's
    s.state.txCountChain = 1;
    return wire(s);
  }
  static std::string user(uint8_t who, uint8_t who2) {
    char b[8];
    std::snprintf(b, sizeof b, "0x%02x%02x", who, who2);
    return b;
  }
  static void expect(hub::Ledger& l, const Expect& e) {
    hub::Ledger::ChannelTotals t;
    hub::LedgerStatus st = l.channel_totals(t);
    ASSERT_TRUE(st.ok()) << st.message;
    EXPECT_EQ(t.channels, e.channels);
    EXPECT_EQ(t.threads, e.threads);
    EXPECT_EQ(t.wei_hub, U256::from_u64(e.wei));
  }
  std::string dir_, db_, spec_;
};

}  // namespace

TEST_P(TotalsTest, TotalsFollowEveryWriteAndIgnoreARolledBackOne) {
  auto l = open();
  ASSERT_NE(l, nullptr);
  expect(*l, {0, 0, 0});
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->save_channel(user(1, 0), 1, state(1, 0, 100, 1), {}).ok());
  ASSERT_TRUE(l->save_channel(user(2, 0), 1, state(2, 0, 20, 2, true), {}).ok());
  ASSERT_TRUE(l->save_channel(user(2, 1), 1, state(2, 1, 0, 0), {}).ok());
  ASSERT_TRUE(l->save_channel(user(255, 0), 1, state(255, 0, 3, 300), {}).ok());
  expect(*l, {4, 303, 123});  // the transaction reads its own writes
  ASSERT_TRUE(l->commit().ok());
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->save_channel(user(1, 0), 2, state(1, 0, 1000, 0), {}).ok());
  ASSERT_TRUE(l->save_channel(user(9, 9), 1, state(9, 9, 5, 5), {}).ok());
  expect(*l, {5, 307, 1028});
  l->rollback();
  expect(*l, {4, 303, 123});
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->save_channel(user(2, 0), 2, state(2, 0, 5, 4, true), {}).ok());
  ASSERT_TRUE(l->save_channel(user(255, 0), 2, {0x01, 0x01, 0xff}, {}).ok());  // not a state: counts 0
  ASSERT_TRUE(l->commit().ok());
  expect(*l, {4, 5, 105});
  // a balance of more than 64 bits (2^200 wei): summed exactly
  SignedChannelState big{};
  const hub::Bytes zero = state(2, 1, 0, 0);
  ASSERT_EQ(decode_channel_state(zero.data(), zero.size(), big), Status::Ok);
  U256 two200 = U256::from_u64(1), t2{};
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(u256_add(two200, two200, t2), Status::Ok);
    two200 = t2;
  }
  big.state.balanceWeiHub = two200;
  ASSERT_TRUE(l->save_channel(user(2, 1), 2, wire(big), {}).ok());
  hub::Ledger::ChannelTotals t;
  ASSERT_TRUE(l->channel_totals(t).ok());
  ASSERT_EQ(u256_add(two200, U256::from_u64(105), t2), Status::Ok);
  EXPECT_EQ(t.wei_hub, t2);
  big.state.balanceWeiHub = U256::from_u64(1);
  ASSERT_TRUE(l->save_channel(user(2, 1), 3, wire(big), {}).ok());
  l.reset();
  l = open();
  ASSERT_NE(l, nullptr);
  expect(*l, {4, 5, 106});
}

TEST_P(TotalsTest, WritesFromOutsideTheHubAreCountedToo) {
  if (!pg()) GTEST_SKIP() << "SQLite's totals are kept by the hub connection's TEMP triggers only (ledger.hpp)";
  auto l = open();
  ASSERT_NE(l, nullptr);
  for (uint8_t i = 0; i < 5; ++i) ASSERT_TRUE(l->save_channel(user(i, 1), 1, state(i, 1, 10, 1), {}).ok());
  expect(*l, {5, 5, 50});
  psql("DELETE FROM channels WHERE \"user\" IN ('0x0001', '0x0101')");
  expect(*l, {3, 3, 30});
  psql("UPDATE channels SET \"user\" = '0xff01' WHERE \"user\" = '0x0201'");  // another partition
  expect(*l, {3, 3, 30});
  EXPECT_EQ(g_pg->query(db_, "SELECT channels FROM channel_totals WHERE partition = 255"), "1");
  EXPECT_EQ(g_pg->query(db_, "SELECT channels FROM channel_totals WHERE partition = 2"), "0");
  psql("TRUNCATE channels");
  expect(*l, {0, 0, 0});
}

TEST_P(TotalsTest, TwoWritersAtOnceLeaveTheSumOverEveryChannel) {
  if (!pg()) GTEST_SKIP() << "the SQLite ledger serves one process";
  // Two connections, as two hub instances: each writes the channels of its own partitions
  // (even / odd first byte) in transactions of 16, some rolled back, and both write the
  // channels of partition 0x80 one statement at a time.
  constexpr int kRounds = 40;
  Expect want[2];
  auto writer = [&](int w) {
    auto l = open();
    ASSERT_NE(l, nullptr);
    for (int round = 0; round < kRounds; ++round) {
      ASSERT_TRUE(l->begin().ok());
      for (int i = 0; i < 16; ++i) {
        const auto p = static_cast<uint8_t>(2 * ((round * 16 + i) % 64) + w);
        const auto q = static_cast<uint8_t>(round);
        ASSERT_TRUE(l->save_channel(user(p, q), 1, state(p, q, 1000 + p, 2), {}).ok());
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
      ASSERT_TRUE(l->save_channel(user(0x80, static_cast<uint8_t>(w)), static_cast<uint64_t>(round) + 1,
                                  state(0x80, static_cast<uint8_t>(w), static_cast<uint64_t>(round), 1), {})
                      .ok());
    }
    want[w].channels += 1;
    want[w].threads += 1;
    want[w].wei += kRounds - 1;
  };
  std::thread a(writer, 0), b(writer, 1);
  a.join();
  b.join();
  auto l = open();
  ASSERT_NE(l, nullptr);
  expect(*l, {want[0].channels + want[1].channels, want[0].threads + want[1].threads, want[0].wei + want[1].wei});
  uint64_t n = 0;
  ASSERT_TRUE(l->count_channels(n).ok());
  EXPECT_EQ(n, want[0].channels + want[1].channels);
}

TEST_P(TotalsTest, ALedgerOfSchemaVersion4WithChannelsGetsItsTotalsOnUpgrade) {
  if (!pg()) GTEST_SKIP() << "SQLite computes a missing totals row at every open (its own test in metrics_test)";
  {
    auto l = open();
    ASSERT_NE(l, nullptr);
  }
  // back to version 4: no totals table, trigger or functions; then channels written
  psql("DROP TABLE channel_totals; DROP TRIGGER picopay_channel_totals ON channels;"
       " DROP TRIGGER picopay_channel_totals_truncate ON channels; DROP FUNCTION picopay_channel_totals_row();"
       " DROP FUNCTION picopay_channel_totals_truncate(); DROP FUNCTION picopay_state_terms(BYTEA);"
       " DROP FUNCTION picopay_partition(TEXT); UPDATE schema_version SET version=4");
  Expect e;
  std::string values;
  for (int i = 0; i < 300; ++i) {
    const auto p = static_cast<uint8_t>(i % 256), q = static_cast<uint8_t>(i / 256);
    const hub::Bytes st = i % 7 == 0 ? hub::Bytes{1, 2, 3} : state(p, q, 7 * static_cast<uint64_t>(i), static_cast<uint64_t>(i % 3), i % 2 == 1);
    char hex[3];
    std::string lit;
    for (uint8_t c : st) {
      std::snprintf(hex, sizeof hex, "%02x", c);
      lit += hex;
    }
    values += std::string(values.empty() ? "" : ",") + "('" + user(p, q) + "', 1, '\\x" + lit + "'::bytea, ''::bytea)";
    ++e.channels;
    if (i % 7 != 0) {
      e.threads += static_cast<uint64_t>(i % 3);
      e.wei += 7 * static_cast<uint64_t>(i);
    }
  }
  psql("INSERT INTO channels VALUES" + values);
  auto l = open();
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->schema_version(), hub::kLedgerSchemaVersion);
  expect(*l, e);
  ASSERT_TRUE(l->save_channel(user(0, 0), 2, state(0, 0, 1, 1), {}).ok());  // was (0, 0): 0x0000 is i = 0
  expect(*l, {e.channels, e.threads + 1, e.wei + 1});
}

INSTANTIATE_TEST_SUITE_P(Backends, TotalsTest, ::testing::Values("sqlite", "postgresql"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });
