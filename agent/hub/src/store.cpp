#include "store.hpp"

#include <chrono>

namespace picopay::hub {

namespace {
std::string errmsg(sqlite3* db, const char* what) { return std::string("sqlite: ") + what + ": " + sqlite3_errmsg(db); }
void bind_blob(sqlite3_stmt* s, int i, const Bytes& b) {
  sqlite3_bind_blob(s, i, b.empty() ? "" : static_cast<const void*>(b.data()), static_cast<int>(b.size()),
                    SQLITE_TRANSIENT);
}
Bytes col_blob(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s, i));
  int n = sqlite3_column_bytes(s, i);
  return p && n > 0 ? Bytes(p, p + n) : Bytes();
}
}  // namespace

Store::~Store() {
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

void Store::checkpointer(std::string path) {
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

bool Store::exec(const char* sql, std::string& err) {
  char* msg = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    err = std::string("sqlite: ") + (msg ? msg : "error") + " in: " + sql;
    sqlite3_free(msg);
    return false;
  }
  return true;
}

sqlite3_stmt* Store::prep(const char* sql, std::string& err) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) {
    err = errmsg(db_, "prepare");
    return nullptr;
  }
  stmts_.push_back(s);
  return s;
}

bool Store::open(const std::string& path, std::string& err) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    err = "sqlite: cannot open " + path + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory");
    return false;
  }
  sqlite3_busy_timeout(db_, 5000);
  if (!exec("PRAGMA journal_mode=WAL", err) || !exec("PRAGMA synchronous=FULL", err) ||
      !exec("PRAGMA wal_autocheckpoint=0", err))
    return false;
  if (!exec("CREATE TABLE IF NOT EXISTS channels(user TEXT PRIMARY KEY, tx INTEGER NOT NULL, state BLOB NOT NULL,"
            " threads BLOB NOT NULL)",
            err) ||
      !exec("CREATE TABLE IF NOT EXISTS updates(user TEXT NOT NULL, tx INTEGER NOT NULL, request BLOB NOT NULL,"
            " reply BLOB NOT NULL, state BLOB NOT NULL, PRIMARY KEY(user, tx))",
            err) ||
      !exec("CREATE TABLE IF NOT EXISTS proposals(user TEXT PRIMARY KEY, tx INTEGER NOT NULL, request BLOB NOT NULL,"
            " state BLOB NOT NULL)",
            err) ||
      !exec("CREATE TABLE IF NOT EXISTS queued(user TEXT NOT NULL, seq INTEGER NOT NULL, request BLOB NOT NULL,"
            " PRIMARY KEY(user, seq))",
            err) ||
      !exec("CREATE TABLE IF NOT EXISTS requests(user TEXT NOT NULL, seq INTEGER NOT NULL, id INTEGER NOT NULL,"
            " request BLOB NOT NULL, PRIMARY KEY(user, seq))",
            err) ||
      !exec("CREATE TABLE IF NOT EXISTS request_ids(user TEXT PRIMARY KEY, last INTEGER NOT NULL)", err) ||
      !exec("CREATE TABLE IF NOT EXISTS deposits(user TEXT PRIMARY KEY, tx INTEGER NOT NULL, state BLOB NOT NULL)",
            err))
    return false;
  load_ch_ = prep("SELECT state, threads FROM channels WHERE user=?", err);
  save_ch_ = prep("INSERT OR REPLACE INTO channels(user, tx, state, threads) VALUES(?,?,?,?)", err);
  find_up_ = prep("SELECT request, reply FROM updates WHERE user=? AND tx=?", err);
  ins_up_ = prep("INSERT INTO updates(user, tx, request, reply, state) VALUES(?,?,?,?,?)", err);
  load_pr_ = prep("SELECT tx, request FROM proposals WHERE user=?", err);
  del_pr_ = prep("DELETE FROM proposals WHERE user=?", err);
  del_q_ = prep("DELETE FROM queued WHERE user=?", err);
  load_q_ = prep("SELECT request FROM queued WHERE user=? ORDER BY seq", err);
  load_rq_ = prep("SELECT id, request FROM requests WHERE user=? ORDER BY seq", err);
  del_rq_ = prep("DELETE FROM requests WHERE user=?", err);
  ins_rq_ = prep("INSERT INTO requests(user, seq, id, request) VALUES(?,?,?,?)", err);
  load_id_ = prep("SELECT last FROM request_ids WHERE user=?", err);
  save_id_ = prep("INSERT OR REPLACE INTO request_ids(user, last) VALUES(?,?)", err);
  save_dep_ = prep("INSERT OR REPLACE INTO deposits(user, tx, state) VALUES(?,?,?)", err);
  del_dep_ = prep("DELETE FROM deposits WHERE user=?", err);
  if (!(load_ch_ && save_ch_ && find_up_ && ins_up_ && load_pr_ && del_pr_ && del_q_ && load_q_ && load_rq_ &&
        del_rq_ && ins_rq_ && load_id_ && save_id_ && save_dep_ && del_dep_))
    return false;
  if (!history_open(err)) return false;  // history.cpp
  ckpt_ = std::thread([this, path] { checkpointer(path); });
  return true;
}

bool Store::begin(std::string& err) { return exec("BEGIN IMMEDIATE", err); }
bool Store::commit(std::string& err) { return exec("COMMIT", err); }
void Store::rollback() {
  std::string e;
  exec("ROLLBACK", e);
}

bool Store::load_channel(const std::string& user, Bytes& state, Bytes& threads, bool& found, std::string& err) {
  sqlite3_reset(load_ch_);
  sqlite3_bind_text(load_ch_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(load_ch_);
  found = rc == SQLITE_ROW;
  if (found) {
    state = col_blob(load_ch_, 0);
    threads = col_blob(load_ch_, 1);
  } else if (rc != SQLITE_DONE) {
    err = errmsg(db_, "load channel");
    return false;
  }
  sqlite3_reset(load_ch_);
  return true;
}

bool Store::save_channel(const std::string& user, uint64_t tx, const Bytes& state, const Bytes& threads,
                         std::string& err) {
  sqlite3_reset(save_ch_);
  sqlite3_bind_text(save_ch_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(save_ch_, 2, static_cast<sqlite3_int64>(tx));
  bind_blob(save_ch_, 3, state);
  bind_blob(save_ch_, 4, threads);
  int rc = sqlite3_step(save_ch_);
  sqlite3_reset(save_ch_);
  if (rc != SQLITE_DONE) {
    err = errmsg(db_, "save channel");
    return false;
  }
  return true;
}

bool Store::find_update(const std::string& user, uint64_t tx, Bytes& request, Bytes& reply, bool& found,
                        std::string& err) {
  sqlite3_reset(find_up_);
  sqlite3_bind_text(find_up_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(find_up_, 2, static_cast<sqlite3_int64>(tx));
  int rc = sqlite3_step(find_up_);
  found = rc == SQLITE_ROW;
  if (found) {
    request = col_blob(find_up_, 0);
    reply = col_blob(find_up_, 1);
  } else if (rc != SQLITE_DONE) {
    err = errmsg(db_, "find update");
    return false;
  }
  sqlite3_reset(find_up_);
  return true;
}

bool Store::insert_update(const std::string& user, uint64_t tx, const Bytes& request, const Bytes& reply,
                          const Bytes& state, std::string& err) {
  sqlite3_reset(ins_up_);
  sqlite3_bind_text(ins_up_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(ins_up_, 2, static_cast<sqlite3_int64>(tx));
  bind_blob(ins_up_, 3, request);
  bind_blob(ins_up_, 4, reply);
  bind_blob(ins_up_, 5, state);
  int rc = sqlite3_step(ins_up_);
  sqlite3_reset(ins_up_);
  if (rc != SQLITE_DONE) {
    err = errmsg(db_, "insert update");
    return false;
  }
  return true;
}

bool Store::step_done(sqlite3_stmt* s, const char* what, std::string& err) {
  const int rc = sqlite3_step(s);
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) {
    err = errmsg(db_, what);
    return false;
  }
  return true;
}

bool Store::load_requests(const std::string& user, uint64_t& last_id, std::vector<RequestRow>& items,
                          std::string& err) {
  items.clear();
  last_id = 0;
  sqlite3_reset(load_id_);
  sqlite3_bind_text(load_id_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(load_id_);
  if (rc == SQLITE_ROW) last_id = static_cast<uint64_t>(sqlite3_column_int64(load_id_, 0));
  sqlite3_reset(load_id_);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    err = errmsg(db_, "load request id");
    return false;
  }
  sqlite3_reset(load_rq_);
  sqlite3_bind_text(load_rq_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  while ((rc = sqlite3_step(load_rq_)) == SQLITE_ROW) {
    RequestRow r;
    r.id = static_cast<uint64_t>(sqlite3_column_int64(load_rq_, 0));
    r.update = col_blob(load_rq_, 1);
    items.push_back(std::move(r));
  }
  sqlite3_reset(load_rq_);
  if (rc != SQLITE_DONE) {
    err = errmsg(db_, "load requests");
    return false;
  }
  return true;
}

bool Store::save_requests(const std::string& user, uint64_t last_id, const std::vector<RequestRow>& items,
                          std::string& err) {
  sqlite3_reset(del_rq_);
  sqlite3_bind_text(del_rq_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  if (!step_done(del_rq_, "delete requests", err)) return false;
  for (size_t i = 0; i < items.size(); ++i) {
    sqlite3_reset(ins_rq_);
    sqlite3_bind_text(ins_rq_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(ins_rq_, 2, static_cast<sqlite3_int64>(i));
    sqlite3_bind_int64(ins_rq_, 3, static_cast<sqlite3_int64>(items[i].id));
    bind_blob(ins_rq_, 4, items[i].update);
    if (!step_done(ins_rq_, "insert request", err)) return false;
  }
  if (last_id == 0) return true;
  sqlite3_reset(save_id_);
  sqlite3_bind_text(save_id_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(save_id_, 2, static_cast<sqlite3_int64>(last_id));
  return step_done(save_id_, "save request id", err);
}

bool Store::list_request_users(std::vector<std::string>& out, std::string& err) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT user FROM requests UNION SELECT user FROM proposals UNION SELECT user FROM queued",
                         -1, &s, nullptr) != SQLITE_OK) {
    err = errmsg(db_, "list requests");
    return false;
  }
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    err = errmsg(db_, "list requests");
    return false;
  }
  return true;
}

bool Store::load_legacy(const std::string& user, bool& found, uint64_t& tx, Bytes& proposal, std::vector<Bytes>& queued,
                        std::string& err) {
  sqlite3_reset(load_pr_);
  sqlite3_bind_text(load_pr_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(load_pr_);
  found = rc == SQLITE_ROW;
  if (found) {
    tx = static_cast<uint64_t>(sqlite3_column_int64(load_pr_, 0));
    proposal = col_blob(load_pr_, 1);
  }
  sqlite3_reset(load_pr_);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    err = errmsg(db_, "load legacy proposal");
    return false;
  }
  sqlite3_reset(load_q_);
  sqlite3_bind_text(load_q_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  while ((rc = sqlite3_step(load_q_)) == SQLITE_ROW) queued.push_back(col_blob(load_q_, 0));
  sqlite3_reset(load_q_);
  if (rc != SQLITE_DONE) {
    err = errmsg(db_, "load legacy queue");
    return false;
  }
  return true;
}

bool Store::delete_legacy(const std::string& user, std::string& err) {
  sqlite3_reset(del_pr_);
  sqlite3_bind_text(del_pr_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  if (!step_done(del_pr_, "delete legacy proposal", err)) return false;
  sqlite3_reset(del_q_);
  sqlite3_bind_text(del_q_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  return step_done(del_q_, "delete legacy queue", err);
}

bool Store::save_deposit(const std::string& user, uint64_t tx, const Bytes& state, std::string& err) {
  sqlite3_reset(save_dep_);
  sqlite3_bind_text(save_dep_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(save_dep_, 2, static_cast<sqlite3_int64>(tx));
  bind_blob(save_dep_, 3, state);
  int rc = sqlite3_step(save_dep_);
  sqlite3_reset(save_dep_);
  if (rc != SQLITE_DONE) {
    err = errmsg(db_, "save deposit");
    return false;
  }
  return true;
}

bool Store::delete_deposit(const std::string& user, std::string& err) {
  sqlite3_reset(del_dep_);
  sqlite3_bind_text(del_dep_, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(del_dep_);
  sqlite3_reset(del_dep_);
  if (rc != SQLITE_DONE) {
    err = errmsg(db_, "delete deposit");
    return false;
  }
  return true;
}

bool Store::list_deposits(std::vector<std::pair<std::string, Bytes>>& out, std::string& err) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT user, state FROM deposits ORDER BY tx", -1, &s, nullptr) != SQLITE_OK) {
    err = errmsg(db_, "list deposits");
    return false;
  }
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW)
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), col_blob(s, 1));
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) {
    err = errmsg(db_, "list deposits");
    return false;
  }
  return true;
}

bool Store::list_channels(std::vector<std::pair<std::string, Bytes>>& out, std::string& err) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT user, state FROM channels", -1, &s, nullptr) != SQLITE_OK) {
    err = errmsg(db_, "list channels");
    return false;
  }
  while (sqlite3_step(s) == SQLITE_ROW)
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), col_blob(s, 1));
  sqlite3_finalize(s);
  return true;
}

}  // namespace picopay::hub
