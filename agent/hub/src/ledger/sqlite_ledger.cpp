// The SQLite ledger (ledger.hpp): WAL, synchronous=FULL. One writer: the hub's worker.
// WAL checkpoints run on a background thread with its own connection (PASSIVE, a few
// times a second), so the writer's COMMIT never pays for copying the WAL into the
// database file and fsyncing it; that used to stall a batch for tens of ms every few
// thousand updates.
#include <sqlite3.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "ledger.hpp"
#include "picopay/channel.hpp"
#include "picopay/codec.hpp"

namespace picopay::hub {

namespace {

void bind_blob(sqlite3_stmt* s, int i, const Bytes& b) {
  sqlite3_bind_blob(s, i, b.empty() ? "" : static_cast<const void*>(b.data()), static_cast<int>(b.size()),
                    SQLITE_TRANSIENT);
}
Bytes col_blob(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s, i));
  int n = sqlite3_column_bytes(s, i);
  return p && n > 0 ? Bytes(p, p + n) : Bytes();
}

// Version 1: the tables of the releases before schema_version (IF NOT EXISTS: such a
// database is adopted as version 1 unchanged).
const char* const kMigrations[] = {
    "CREATE TABLE IF NOT EXISTS channels(user TEXT PRIMARY KEY, tx INTEGER NOT NULL, state BLOB NOT NULL,"
    " threads BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS updates(user TEXT NOT NULL, tx INTEGER NOT NULL, request BLOB NOT NULL,"
    " reply BLOB NOT NULL, state BLOB NOT NULL, PRIMARY KEY(user, tx));"
    "CREATE TABLE IF NOT EXISTS proposals(user TEXT PRIMARY KEY, tx INTEGER NOT NULL, request BLOB NOT NULL,"
    " state BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS queued(user TEXT NOT NULL, seq INTEGER NOT NULL, request BLOB NOT NULL,"
    " PRIMARY KEY(user, seq));"
    "CREATE TABLE IF NOT EXISTS requests(user TEXT NOT NULL, seq INTEGER NOT NULL, id INTEGER NOT NULL,"
    " request BLOB NOT NULL, PRIMARY KEY(user, seq));"
    "CREATE TABLE IF NOT EXISTS request_ids(user TEXT PRIMARY KEY, last INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS deposits(user TEXT PRIMARY KEY, tx INTEGER NOT NULL, state BLOB NOT NULL);",
    // Version 2: the history table.
    "CREATE TABLE IF NOT EXISTS history(user TEXT NOT NULL, tx INTEGER NOT NULL, at INTEGER NOT NULL,"
    " event TEXT NOT NULL, wei TEXT NOT NULL, counterparty TEXT NOT NULL, thread_id INTEGER NOT NULL,"
    " balance_wei_user TEXT NOT NULL, balance_wei_hub TEXT NOT NULL, txhash TEXT NOT NULL, PRIMARY KEY(user, tx));",
    // Version 3: the lease tables of several hub instances (PostgreSQL only; created here so
    // both backends number their versions alike; this backend serves one process).
    "CREATE TABLE IF NOT EXISTS leases(\"partition\" INTEGER PRIMARY KEY, holder TEXT, epoch INTEGER NOT NULL DEFAULT 0,"
    " expires_at TEXT);"
    "CREATE TABLE IF NOT EXISTS hub_instances(holder TEXT PRIMARY KEY, expires_at TEXT NOT NULL);",
    // Version 4: cross-partition requests and shared thread disputes (likewise PostgreSQL only).
    "CREATE TABLE IF NOT EXISTS forwarded_requests(id INTEGER PRIMARY KEY, \"partition\" INTEGER NOT NULL,"
    " user TEXT NOT NULL, request BLOB NOT NULL, created TEXT);"
    "CREATE TABLE IF NOT EXISTS thread_disputes(user TEXT PRIMARY KEY, job BLOB NOT NULL,"
    " done INTEGER NOT NULL DEFAULT 0, created TEXT);",
    // Version 5: channel_totals (ledger.hpp) on PostgreSQL; here nothing: the table, its row
    // and the TEMP triggers that keep it are set up at every open (setup_totals), since the
    // triggers are this connection's and a deleted row is computed again.
    "",
};
static_assert(sizeof kMigrations / sizeof kMigrations[0] == kLedgerSchemaVersion, "one migration per version");

// channel_totals (ledger.hpp): sums = balanceWeiHub (32 bytes BE) | threadCount (8 bytes BE).
constexpr size_t kSumsSize = 40;

void sums_encode(const U256& wei, uint64_t threads, uint8_t out[kSumsSize]) {
  u256_to_be32(wei, out);
  for (int i = 0; i < 8; ++i) out[32 + i] = static_cast<uint8_t>(threads >> (56 - 8 * i));
}
bool sums_decode(const void* p, int n, U256& wei, uint64_t& threads) {
  if (!p || n != static_cast<int>(kSumsSize)) return false;
  const auto* b = static_cast<const uint8_t*>(p);
  if (u256_from_be(b, 32, wei) != Status::Ok) return false;
  threads = 0;
  for (int i = 0; i < 8; ++i) threads = (threads << 8) | b[32 + i];
  return true;
}
// A stored state's (balanceWeiHub, threadCount). NULL (no row) and bytes that are not a
// channel state count (0, 0): the ledger stores what it is given, and the hub reports a
// corrupt state when it loads that channel.
void state_terms(const void* p, int n, U256& wei, uint64_t& threads) {
  wei = U256::zero();
  threads = 0;
  SignedChannelState st{};
  if (!p || n <= 0 || decode_channel_state(static_cast<const uint8_t*>(p), static_cast<size_t>(n), st) != Status::Ok)
    return;
  wei = st.state.balanceWeiHub;
  threads = st.state.threadCount;
}
// SQL picopay_totals_apply(sums, old_state, new_state): sums - old + new (the TEMP triggers
// on channels call it). Saturates at 0 and 2^256-1 rather than failing the write: the totals
// are for the metrics, the channel row is what matters.
void totals_apply(sqlite3_context* ctx, int, sqlite3_value** argv) {
  U256 sum{}, ow{}, nw{};
  uint64_t threads = 0, ot = 0, nt = 0;
  if (!sums_decode(sqlite3_value_blob(argv[0]), sqlite3_value_bytes(argv[0]), sum, threads)) {
    sqlite3_result_error(ctx, "channel_totals: malformed sums", -1);
    return;
  }
  state_terms(sqlite3_value_blob(argv[1]), sqlite3_value_bytes(argv[1]), ow, ot);
  state_terms(sqlite3_value_blob(argv[2]), sqlite3_value_bytes(argv[2]), nw, nt);
  U256 t{};
  sum = u256_sub(sum, ow, t) == Status::Ok ? t : U256::zero();
  sum = u256_add(sum, nw, t) == Status::Ok ? t : U256::max();
  threads = (threads >= ot ? threads - ot : 0) + nt;
  uint8_t out[kSumsSize];
  sums_encode(sum, threads, out);
  sqlite3_result_blob(ctx, out, static_cast<int>(kSumsSize), SQLITE_TRANSIENT);
}

class SqliteLedger final : public Ledger {
 public:
  ~SqliteLedger() override {
    if (ckpt_.joinable()) {
      {
        std::lock_guard<std::mutex> lk(ckpt_mu_);
        ckpt_stop_ = true;
      }
      ckpt_cv_.notify_all();
      ckpt_.join();
    }
    for (auto* s : stmts_) sqlite3_finalize(s);
    if (db_) sqlite3_close(db_);
  }

  LedgerStatus open(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        nullptr) != SQLITE_OK)
      return LedgerStatus::fail(LedgerCode::Unavailable,
                                "sqlite: cannot open " + path + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory"));
    sqlite3_busy_timeout(db_, 5000);
    LedgerStatus s = exec("PRAGMA journal_mode=WAL");
    if (s.ok()) s = exec("PRAGMA synchronous=FULL");
    if (s.ok()) s = exec("PRAGMA wal_autocheckpoint=0");
    // 16 MiB of page cache (SQLite's default is 2 MiB): the B-tree's interior pages and the
    // leaves of the channels being paid on stay in memory with a million channel rows;
    // with 2 MiB every few payments read a page back from the file. Bounded: part of the
    // hub's RSS whatever the ledger's size.
    if (s.ok()) s = exec("PRAGMA cache_size=-16384");
    if (s.ok()) s = migrate();
    if (s.ok()) s = setup_totals();
    if (!s.ok()) return s;
    load_ch_ = prep("SELECT state, threads FROM channels WHERE user=?");
    // An upsert, not INSERT OR REPLACE: an existing row is updated in place (REPLACE
    // deletes the row and its index entry and inserts both again), and the totals'
    // UPDATE trigger sees the old state.
    save_ch_ = prep(
        "INSERT INTO channels(user, tx, state, threads) VALUES(?,?,?,?) ON CONFLICT(user) DO UPDATE SET"
        " tx=excluded.tx, state=excluded.state, threads=excluded.threads");
    totals_ = prep("SELECT channels, sums FROM channel_totals WHERE id=0");
    find_up_ = prep("SELECT request, reply FROM updates WHERE user=? AND tx=?");
    ins_up_ = prep("INSERT INTO updates(user, tx, request, reply, state) VALUES(?,?,?,?,?)");
    load_pr_ = prep("SELECT tx, request FROM proposals WHERE user=?");
    del_pr_ = prep("DELETE FROM proposals WHERE user=?");
    del_q_ = prep("DELETE FROM queued WHERE user=?");
    load_q_ = prep("SELECT request FROM queued WHERE user=? ORDER BY seq");
    load_rq_ = prep("SELECT id, request FROM requests WHERE user=? ORDER BY seq");
    del_rq_ = prep("DELETE FROM requests WHERE user=?");
    ins_rq_ = prep("INSERT INTO requests(user, seq, id, request) VALUES(?,?,?,?)");
    load_id_ = prep("SELECT last FROM request_ids WHERE user=?");
    save_id_ = prep("INSERT OR REPLACE INTO request_ids(user, last) VALUES(?,?)");
    save_dep_ = prep("INSERT OR REPLACE INTO deposits(user, tx, state) VALUES(?,?,?)");
    del_dep_ = prep("DELETE FROM deposits WHERE user=?");
    ins_hist_ = prep(
        "INSERT OR REPLACE INTO history(user, tx, at, event, wei, counterparty, thread_id, balance_wei_user,"
        " balance_wei_hub, txhash) VALUES(?,?,?,?,?,?,?,?,?,?)");
    load_hist_ = prep(
        "SELECT tx, at, event, wei, counterparty, thread_id, balance_wei_user, balance_wei_hub, txhash"
        " FROM history WHERE user=? ORDER BY tx");
    has_coll_ = prep("SELECT 1 FROM history WHERE user=? AND event='collateral-proposed' LIMIT 1");
    if (!(load_ch_ && save_ch_ && find_up_ && ins_up_ && load_pr_ && del_pr_ && del_q_ && load_q_ && load_rq_ &&
          del_rq_ && ins_rq_ && load_id_ && save_id_ && save_dep_ && del_dep_ && ins_hist_ && load_hist_ && has_coll_ &&
          totals_))
      return LedgerStatus::fail(LedgerCode::Io, prep_err_);
    ckpt_ = std::thread([this, path] { checkpointer(path); });
    return {};
  }

  const char* backend() const override { return "sqlite"; }
  int schema_version() const override { return version_; }

  LedgerStatus begin() override { return exec("BEGIN IMMEDIATE"); }
  LedgerStatus commit() override { return exec("COMMIT"); }
  void rollback() override { (void)exec("ROLLBACK"); }

  LedgerStatus load_channel(const std::string& user, Bytes& state, Bytes& threads, bool& found) override {
    sqlite3_reset(load_ch_);
    bind_user(load_ch_, user);
    int rc = sqlite3_step(load_ch_);
    found = rc == SQLITE_ROW;
    if (found) {
      state = col_blob(load_ch_, 0);
      threads = col_blob(load_ch_, 1);
    }
    sqlite3_reset(load_ch_);
    if (!found && rc != SQLITE_DONE) return fail(rc, "load channel");
    return {};
  }

  LedgerStatus save_channel(const std::string& user, uint64_t tx, const Bytes& state, const Bytes& threads) override {
    sqlite3_reset(save_ch_);
    bind_user(save_ch_, user);
    sqlite3_bind_int64(save_ch_, 2, static_cast<sqlite3_int64>(tx));
    bind_blob(save_ch_, 3, state);
    bind_blob(save_ch_, 4, threads);
    return step_done(save_ch_, "save channel");
  }

  LedgerStatus find_update(const std::string& user, uint64_t tx, Bytes& request, Bytes& reply, bool& found) override {
    sqlite3_reset(find_up_);
    bind_user(find_up_, user);
    sqlite3_bind_int64(find_up_, 2, static_cast<sqlite3_int64>(tx));
    int rc = sqlite3_step(find_up_);
    found = rc == SQLITE_ROW;
    if (found) {
      request = col_blob(find_up_, 0);
      reply = col_blob(find_up_, 1);
    }
    sqlite3_reset(find_up_);
    if (!found && rc != SQLITE_DONE) return fail(rc, "find update");
    return {};
  }

  LedgerStatus insert_update(const std::string& user, uint64_t tx, const Bytes& request, const Bytes& reply,
                             const Bytes& state) override {
    sqlite3_reset(ins_up_);
    bind_user(ins_up_, user);
    sqlite3_bind_int64(ins_up_, 2, static_cast<sqlite3_int64>(tx));
    bind_blob(ins_up_, 3, request);
    bind_blob(ins_up_, 4, reply);
    bind_blob(ins_up_, 5, state);
    return step_done(ins_up_, "insert update");
  }

  LedgerStatus load_requests(const std::string& user, uint64_t& last_id, std::vector<RequestRow>& items) override {
    items.clear();
    last_id = 0;
    sqlite3_reset(load_id_);
    bind_user(load_id_, user);
    int rc = sqlite3_step(load_id_);
    if (rc == SQLITE_ROW) last_id = static_cast<uint64_t>(sqlite3_column_int64(load_id_, 0));
    sqlite3_reset(load_id_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return fail(rc, "load request id");
    sqlite3_reset(load_rq_);
    bind_user(load_rq_, user);
    while ((rc = sqlite3_step(load_rq_)) == SQLITE_ROW) {
      RequestRow r;
      r.id = static_cast<uint64_t>(sqlite3_column_int64(load_rq_, 0));
      r.update = col_blob(load_rq_, 1);
      items.push_back(std::move(r));
    }
    sqlite3_reset(load_rq_);
    if (rc != SQLITE_DONE) return fail(rc, "load requests");
    return {};
  }

  LedgerStatus save_requests(const std::string& user, uint64_t last_id, const std::vector<RequestRow>& items) override {
    sqlite3_reset(del_rq_);
    bind_user(del_rq_, user);
    LedgerStatus s = step_done(del_rq_, "delete requests");
    if (!s.ok()) return s;
    for (size_t i = 0; i < items.size(); ++i) {
      sqlite3_reset(ins_rq_);
      bind_user(ins_rq_, user);
      sqlite3_bind_int64(ins_rq_, 2, static_cast<sqlite3_int64>(i));
      sqlite3_bind_int64(ins_rq_, 3, static_cast<sqlite3_int64>(items[i].id));
      bind_blob(ins_rq_, 4, items[i].update);
      s = step_done(ins_rq_, "insert request");
      if (!s.ok()) return s;
    }
    if (last_id == 0) return {};
    sqlite3_reset(save_id_);
    bind_user(save_id_, user);
    sqlite3_bind_int64(save_id_, 2, static_cast<sqlite3_int64>(last_id));
    return step_done(save_id_, "save request id");
  }

  LedgerStatus list_request_users(std::vector<std::string>& out) override {
    return each_row("SELECT user FROM requests UNION SELECT user FROM proposals UNION SELECT user FROM queued",
                    "list requests", [&](sqlite3_stmt* s) {
                      out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
                      return true;
                    });
  }

  LedgerStatus load_legacy(const std::string& user, bool& found, uint64_t& tx, Bytes& proposal,
                           std::vector<Bytes>& queued) override {
    sqlite3_reset(load_pr_);
    bind_user(load_pr_, user);
    int rc = sqlite3_step(load_pr_);
    found = rc == SQLITE_ROW;
    if (found) {
      tx = static_cast<uint64_t>(sqlite3_column_int64(load_pr_, 0));
      proposal = col_blob(load_pr_, 1);
    }
    sqlite3_reset(load_pr_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return fail(rc, "load legacy proposal");
    sqlite3_reset(load_q_);
    bind_user(load_q_, user);
    while ((rc = sqlite3_step(load_q_)) == SQLITE_ROW) queued.push_back(col_blob(load_q_, 0));
    sqlite3_reset(load_q_);
    if (rc != SQLITE_DONE) return fail(rc, "load legacy queue");
    return {};
  }

  LedgerStatus delete_legacy(const std::string& user) override {
    sqlite3_reset(del_pr_);
    bind_user(del_pr_, user);
    LedgerStatus s = step_done(del_pr_, "delete legacy proposal");
    if (!s.ok()) return s;
    sqlite3_reset(del_q_);
    bind_user(del_q_, user);
    return step_done(del_q_, "delete legacy queue");
  }

  LedgerStatus save_deposit(const std::string& user, uint64_t tx, const Bytes& state) override {
    sqlite3_reset(save_dep_);
    bind_user(save_dep_, user);
    sqlite3_bind_int64(save_dep_, 2, static_cast<sqlite3_int64>(tx));
    bind_blob(save_dep_, 3, state);
    return step_done(save_dep_, "save deposit");
  }

  LedgerStatus delete_deposit(const std::string& user) override {
    sqlite3_reset(del_dep_);
    bind_user(del_dep_, user);
    return step_done(del_dep_, "delete deposit");
  }

  LedgerStatus list_deposits(std::vector<std::pair<std::string, Bytes>>& out) override {
    return each_row("SELECT user, state FROM deposits ORDER BY tx", "list deposits", [&](sqlite3_stmt* s) {
      out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), col_blob(s, 1));
      return true;
    });
  }

  LedgerStatus insert_history(const std::string& user, const HistoryRow& h) override {
    sqlite3_stmt* s = ins_hist_;
    sqlite3_reset(s);
    bind_user(s, user);
    sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(h.tx));
    sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(h.at));
    int i = 4;
    for (const std::string* t : {&h.event, &h.wei, &h.counterparty})
      sqlite3_bind_text(s, i++, t->c_str(), static_cast<int>(t->size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 7, static_cast<sqlite3_int64>(h.thread_id));
    i = 8;
    for (const std::string* t : {&h.balance_wei_user, &h.balance_wei_hub, &h.txhash})
      sqlite3_bind_text(s, i++, t->c_str(), static_cast<int>(t->size()), SQLITE_TRANSIENT);
    return step_done(s, "insert history");
  }

  LedgerStatus load_history(const std::string& user, std::vector<HistoryRow>& out) override {
    out.clear();
    sqlite3_stmt* s = load_hist_;
    sqlite3_reset(s);
    bind_user(s, user);
    auto text = [&](int c) {
      const unsigned char* t = sqlite3_column_text(s, c);
      return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
    };
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      HistoryRow h;
      h.tx = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
      h.at = static_cast<uint64_t>(sqlite3_column_int64(s, 1));
      h.event = text(2);
      h.wei = text(3);
      h.counterparty = text(4);
      h.thread_id = static_cast<uint64_t>(sqlite3_column_int64(s, 5));
      h.balance_wei_user = text(6);
      h.balance_wei_hub = text(7);
      h.txhash = text(8);
      out.push_back(std::move(h));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return fail(rc, "load history");
    return {};
  }

  LedgerStatus has_collateral(const std::string& user, bool& yes) override {
    sqlite3_stmt* s = has_coll_;
    sqlite3_reset(s);
    bind_user(s, user);
    const int rc = sqlite3_step(s);
    yes = rc == SQLITE_ROW;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return fail(rc, "has collateral");
    return {};
  }

  LedgerStatus for_each_channel(const std::function<bool(const std::string&, const Bytes&)>& f) override {
    return each_row("SELECT user, state FROM channels", "list channels", [&](sqlite3_stmt* s) {
      return f(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), col_blob(s, 1));
    });
  }

  LedgerStatus channel_totals(ChannelTotals& out) override {
    sqlite3_stmt* s = totals_;
    sqlite3_reset(s);
    const int rc = sqlite3_step(s);
    bool good = rc == SQLITE_ROW;
    if (good) {
      out.channels = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
      good = sums_decode(sqlite3_column_blob(s, 1), sqlite3_column_bytes(s, 1), out.wei_hub, out.threads);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return fail(rc, "channel totals");
    if (!good) return LedgerStatus::fail(LedgerCode::Corrupt, "sqlite: channel totals: missing or malformed row");
    return {};
  }

  LedgerStatus count_channels(uint64_t& n) override {
    n = 0;
    return each_row("SELECT count(*) FROM channels", "count channels", [&](sqlite3_stmt* s) {
      n = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
      return true;
    });
  }

 private:
  LedgerStatus fail(int rc, const char* what) const {
    const int prim = rc & 0xff;
    const LedgerCode c = prim == SQLITE_CONSTRAINT ? LedgerCode::Conflict
                         : prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB || prim == SQLITE_MISMATCH
                             ? LedgerCode::Corrupt
                             : LedgerCode::Io;
    return LedgerStatus::fail(c, std::string("sqlite: ") + what + ": " + sqlite3_errmsg(db_));
  }
  void bind_user(sqlite3_stmt* s, const std::string& user) {
    sqlite3_bind_text(s, 1, user.c_str(), static_cast<int>(user.size()), SQLITE_TRANSIENT);
  }
  LedgerStatus exec(const char* sql) {
    char* msg = nullptr;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
    if (rc != SQLITE_OK) {
      LedgerStatus s = fail(rc, "exec");
      s.message = std::string("sqlite: ") + (msg ? msg : "error") + " in: " + sql;
      sqlite3_free(msg);
      return s;
    }
    return {};
  }
  sqlite3_stmt* prep(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) {
      if (prep_err_.empty()) prep_err_ = std::string("sqlite: prepare: ") + sqlite3_errmsg(db_) + " in: " + sql;
      return nullptr;
    }
    stmts_.push_back(s);
    return s;
  }
  LedgerStatus step_done(sqlite3_stmt* s, const char* what) {
    const int rc = sqlite3_step(s);
    LedgerStatus r = rc == SQLITE_DONE ? LedgerStatus{} : fail(rc, what);
    sqlite3_reset(s);
    return r;
  }
  template <class F>
  LedgerStatus each_row(const char* sql, const char* what, F&& f) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) return fail(sqlite3_errcode(db_), what);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      if (!f(s)) {
        rc = SQLITE_DONE;
        break;
      }
    LedgerStatus r = rc == SQLITE_DONE ? LedgerStatus{} : fail(rc, what);
    sqlite3_finalize(s);
    return r;
  }

  LedgerStatus migrate() {
    LedgerStatus s = exec("BEGIN IMMEDIATE");
    if (!s.ok()) return s;
    s = exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)");
    int v = 0;
    bool have_row = false;
    if (s.ok())
      s = each_row("SELECT version FROM schema_version", "schema version", [&](sqlite3_stmt* st) {
        v = sqlite3_column_int(st, 0);
        have_row = true;
        return false;
      });
    if (s.ok() && v > kLedgerSchemaVersion)
      s = LedgerStatus::fail(LedgerCode::SchemaTooNew,
                             "sqlite: ledger schema version " + std::to_string(v) +
                                 " is newer than this picopay-hub knows (" + std::to_string(kLedgerSchemaVersion) +
                                 "): use a newer picopay-hub");
    for (int next = v + 1; s.ok() && next <= kLedgerSchemaVersion; ++next) {
      s = exec(kMigrations[next - 1]);
      if (s.ok())
        s = exec(have_row ? ("UPDATE schema_version SET version=" + std::to_string(next)).c_str()
                          : ("INSERT INTO schema_version(version) VALUES(" + std::to_string(next) + ")").c_str());
      have_row = true;
      v = next;
    }
    if (s.ok()) s = exec("COMMIT");
    if (!s.ok()) {
      (void)exec("ROLLBACK");
      return s;
    }
    version_ = v;
    return {};
  }

  // The channel_totals row (ledger.hpp) and this connection's TEMP triggers that keep it
  // with every write to channels. A missing row (a new ledger, or one of an earlier
  // version) is computed once here, reading every channel.
  LedgerStatus setup_totals() {
    if (sqlite3_create_function_v2(db_, "picopay_totals_apply", 3, SQLITE_UTF8, nullptr, totals_apply, nullptr,
                                   nullptr, nullptr) != SQLITE_OK)
      return fail(sqlite3_errcode(db_), "register picopay_totals_apply");
    LedgerStatus s = exec("BEGIN IMMEDIATE");
    if (!s.ok()) return s;
    s = exec("CREATE TABLE IF NOT EXISTS channel_totals(id INTEGER PRIMARY KEY CHECK(id=0), channels INTEGER NOT NULL,"
             " sums BLOB NOT NULL)");
    bool have = false;
    if (s.ok())
      s = each_row("SELECT 1 FROM channel_totals WHERE id=0", "channel totals", [&](sqlite3_stmt*) {
        have = true;
        return false;
      });
    if (s.ok() && !have) {
      U256 wei = U256::zero();
      uint64_t threads = 0, n = 0;
      s = for_each_channel([&](const std::string&, const Bytes& state) {
        U256 w{}, t{};
        uint64_t th = 0;
        state_terms(state.data(), static_cast<int>(state.size()), w, th);
        wei = u256_add(wei, w, t) == Status::Ok ? t : U256::max();
        threads += th;
        ++n;
        return true;
      });
      if (s.ok()) {
        uint8_t sums[kSumsSize];
        sums_encode(wei, threads, sums);
        sqlite3_stmt* ins = nullptr;
        int rc = sqlite3_prepare_v2(db_, "INSERT INTO channel_totals(id, channels, sums) VALUES(0,?,?)", -1, &ins,
                                    nullptr);
        if (rc == SQLITE_OK) {
          sqlite3_bind_int64(ins, 1, static_cast<sqlite3_int64>(n));
          sqlite3_bind_blob(ins, 2, sums, static_cast<int>(kSumsSize), SQLITE_TRANSIENT);
          rc = sqlite3_step(ins);
        }
        sqlite3_finalize(ins);
        if (rc != SQLITE_DONE) s = fail(rc, "channel totals");
      }
    }
    if (s.ok())
      s = exec(
          "CREATE TEMP TRIGGER picopay_totals_insert AFTER INSERT ON main.channels BEGIN"
          " UPDATE channel_totals SET channels=channels+1, sums=picopay_totals_apply(sums, NULL, new.state) WHERE id=0;"
          " END;"
          "CREATE TEMP TRIGGER picopay_totals_update AFTER UPDATE OF state ON main.channels BEGIN"
          " UPDATE channel_totals SET sums=picopay_totals_apply(sums, old.state, new.state) WHERE id=0;"
          " END;"
          "CREATE TEMP TRIGGER picopay_totals_delete AFTER DELETE ON main.channels BEGIN"
          " UPDATE channel_totals SET channels=channels-1, sums=picopay_totals_apply(sums, old.state, NULL) WHERE id=0;"
          " END;");
    if (s.ok()) s = exec("COMMIT");
    if (!s.ok()) (void)exec("ROLLBACK");
    return s;
  }

  void checkpointer(std::string path) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
      if (db) sqlite3_close(db);
      return;
    }
    sqlite3_busy_timeout(db, 1000);
    sqlite3_exec(db, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
    std::unique_lock<std::mutex> lk(ckpt_mu_);
    while (!ckpt_cv_.wait_for(lk, std::chrono::milliseconds(250), [this] { return ckpt_stop_; })) {
      lk.unlock();
      // PASSIVE: copies what it can without blocking the writer or readers.
      sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      lk.lock();
    }
    lk.unlock();
    sqlite3_close(db);
  }

  sqlite3* db_ = nullptr;
  int version_ = 0;
  std::string prep_err_;
  std::vector<sqlite3_stmt*> stmts_;
  sqlite3_stmt *load_ch_ = nullptr, *save_ch_ = nullptr, *find_up_ = nullptr, *ins_up_ = nullptr;
  sqlite3_stmt *load_pr_ = nullptr, *del_pr_ = nullptr, *del_q_ = nullptr, *load_q_ = nullptr;
  sqlite3_stmt *load_rq_ = nullptr, *del_rq_ = nullptr, *ins_rq_ = nullptr, *load_id_ = nullptr, *save_id_ = nullptr;
  sqlite3_stmt *save_dep_ = nullptr, *del_dep_ = nullptr;
  sqlite3_stmt *ins_hist_ = nullptr, *load_hist_ = nullptr, *has_coll_ = nullptr, *totals_ = nullptr;
  std::thread ckpt_;
  std::mutex ckpt_mu_;
  std::condition_variable ckpt_cv_;
  bool ckpt_stop_ = false;
};

}  // namespace

LedgerStatus open_sqlite_ledger(const std::string& path, std::unique_ptr<Ledger>& out) {
  auto l = std::make_unique<SqliteLedger>();
  LedgerStatus s = l->open(path);
  if (s.ok()) out = std::move(l);
  return s;
}

}  // namespace picopay::hub
