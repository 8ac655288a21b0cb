// Test helpers shared by the hub suites: what picopay-hub's ledger holds for a channel
// (SQLite: read with a separate read-only connection; PostgreSQL: read with psql), and
// small encoders.
#pragma once

#include <sqlite3.h>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "support/process.hpp"

namespace picopay::testsupport {

// "0x" + 64 hex digits, as the hub's --private-key takes it.
inline std::string hex_key(const PrivateKey& k) {
  char s[2 + 64 + 1];
  hex_encode(k.bytes, sizeof k.bytes, s, true);
  return s;
}

// The full-state wire bytes of a state (how the hub stores it).
inline std::vector<uint8_t> wire(const SignedChannelState& s) {
  uint8_t b[kMaxChannelStateWire];
  size_t n = 0;
  EXPECT_EQ(encode_channel_state(s, b, sizeof b, &n), Status::Ok);
  return std::vector<uint8_t>(b, b + n);
}

// What the hub's SQLite ledger holds for one channel.
struct Ledger {
  bool found = false;
  std::vector<uint8_t> state;
  long long updates = 0, requests = 0, deposits = 0;
  long long last_request_id = 0;
  bool operator==(const Ledger& o) const {
    return found == o.found && state == o.state && updates == o.updates && requests == o.requests &&
           deposits == o.deposits && last_request_id == o.last_request_id;
  }
};

inline long long count_rows(sqlite3* h, const char* table, const std::string& user) {
  sqlite3_stmt* s = nullptr;
  const std::string sql = std::string("SELECT count(*) FROM ") + table + " WHERE user=?";
  if (sqlite3_prepare_v2(h, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) return -1;
  sqlite3_bind_text(s, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  long long n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
  sqlite3_finalize(s);
  return n;
}

// The PostgreSQL ledger at libpq URI `uri` (one psql query).
inline Ledger read_ledger_pg(const std::string& uri, const std::string& k) {
  Ledger l;
  const std::string out = "/tmp/picopay-pgread-" + std::to_string(::getpid()) + ".out";
  const std::string w = "\"user\"='" + k + "'";
  const std::string q = "SELECT coalesce((SELECT encode(state,'hex') FROM channels WHERE " + w + "),'-') || '|' ||"
                        " (SELECT count(*) FROM updates WHERE " + w + ") || '|' ||"
                        " (SELECT count(*) FROM requests WHERE " + w + ") || '|' ||"
                        " (SELECT count(*) FROM deposits WHERE " + w + ") || '|' ||"
                        " coalesce((SELECT last FROM request_ids WHERE " + w + "),0)";
  ::unlink(out.c_str());
  if (run_command({"psql", "-X", "-q", "-A", "-t", "-d", uri, "-c", q, "-o", out}) != 0) return l;
  const std::string r = read_file(out);
  ::unlink(out.c_str());
  const size_t bar = r.find('|');
  if (bar == std::string::npos) return l;
  const std::string hex = r.substr(0, bar);
  if (hex != "-") {
    l.found = true;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
      l.state.push_back(static_cast<uint8_t>(std::strtoul(hex.substr(i, 2).c_str(), nullptr, 16)));
  }
  long long* fields[] = {&l.updates, &l.requests, &l.deposits, &l.last_request_id};
  size_t p = bar + 1;
  for (long long* f : fields) {
    *f = std::atoll(r.c_str() + p);
    const size_t nb = r.find('|', p);
    if (nb == std::string::npos) break;
    p = nb + 1;
  }
  return l;
}

// `db`: a SQLite file, or a postgresql:// URI.
inline Ledger read_ledger(const std::string& db, const Address& user) {
  if (db.rfind("postgresql://", 0) == 0) return read_ledger_pg(db, mqtt::topic_address(user));
  Ledger l;
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(h);
    return l;
  }
  sqlite3_busy_timeout(h, 5000);
  const std::string k = mqtt::topic_address(user);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, "SELECT state FROM channels WHERE user=?", -1, &s, nullptr);
  sqlite3_bind_text(s, 1, k.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(s) == SQLITE_ROW) {
    l.found = true;
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s, 0));
    l.state.assign(p, p + sqlite3_column_bytes(s, 0));
  }
  sqlite3_finalize(s);
  l.updates = count_rows(h, "updates", k);
  l.requests = count_rows(h, "requests", k);
  l.deposits = count_rows(h, "deposits", k);
  sqlite3_prepare_v2(h, "SELECT last FROM request_ids WHERE user=?", -1, &s, nullptr);
  sqlite3_bind_text(s, 1, k.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(s) == SQLITE_ROW) l.last_request_id = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(h);
  return l;
}

}  // namespace picopay::testsupport
