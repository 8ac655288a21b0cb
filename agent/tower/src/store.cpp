// picopay-tower's SQLite store (see store.hpp).
#include "picopay/tower/store.hpp"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cstring>
#include <ctime>

#include "picopay/codec.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/tower/protocol.hpp"

namespace picopay::tower {

namespace {
std::string errmsg(sqlite3* db, const char* what) { return std::string("sqlite: ") + what + ": " + sqlite3_errmsg(db); }

// One prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql, std::string& err) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) {
      err = errmsg(db, "prepare");
      s_ = nullptr;
    }
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  explicit operator bool() const { return s_ != nullptr; }
  sqlite3_stmt* get() const { return s_; }
  void blob(int i, const void* p, size_t n) { sqlite3_bind_blob(s_, i, p, static_cast<int>(n), SQLITE_TRANSIENT); }
  void i64(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  void text(int i, const std::string& t) { sqlite3_bind_text(s_, i, t.c_str(), -1, SQLITE_TRANSIENT); }
  int step() { return sqlite3_step(s_); }

 private:
  sqlite3_stmt* s_ = nullptr;
};

bool col_hash(sqlite3_stmt* s, int i, Hash32& out) {
  if (sqlite3_column_bytes(s, i) != 32) return false;
  std::memcpy(out.bytes, sqlite3_column_blob(s, i), 32);
  return true;
}
}  // namespace

Store::~Store() {
  if (db_) sqlite3_close(db_);
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

std::unique_ptr<Store> Store::open(const std::string& path, const Address& contract, const Address& hub,
                                   std::string& err) {
  std::unique_ptr<Store> st(new Store());
  const mode_t old_mask = ::umask(077);  // the file names the channels guarded: 0600
  int rc = sqlite3_open_v2(path.c_str(), &st->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  ::umask(old_mask);
  if (rc != SQLITE_OK) {
    err = "sqlite: cannot open " + path + ": " + (st->db_ ? sqlite3_errmsg(st->db_) : "out of memory");
    return nullptr;
  }
  sqlite3_busy_timeout(st->db_, 2000);
  if (!st->exec("PRAGMA journal_mode=WAL", err) || !st->exec("PRAGMA synchronous=FULL", err) ||
      !st->exec("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)", err) ||
      !st->exec("CREATE TABLE IF NOT EXISTS channels(user BLOB PRIMARY KEY, tx_count_global INTEGER NOT NULL, "
                "state BLOB NOT NULL, state_hash BLOB NOT NULL, check_chain INTEGER NOT NULL, "
                "updated INTEGER NOT NULL) WITHOUT ROWID",
                err) ||
      !st->exec("CREATE TABLE IF NOT EXISTS threads(sender BLOB NOT NULL, receiver BLOB NOT NULL, "
                "thread_id INTEGER NOT NULL, tx_count INTEGER NOT NULL, state BLOB NOT NULL, "
                "state_hash BLOB NOT NULL, check_chain INTEGER NOT NULL, updated INTEGER NOT NULL, "
                "PRIMARY KEY(sender, receiver, thread_id)) WITHOUT ROWID",
                err)) {
    err = path + ": " + err;
    return nullptr;
  }
  // The file belongs to one contract and hub.
  const std::pair<const char*, std::string> want[] = {{"contract", mqtt::topic_address(contract)},
                                                      {"hub", mqtt::topic_address(hub)}};
  for (const auto& [key, value] : want) {
    Stmt ins(st->db_, "INSERT OR IGNORE INTO meta(key, value) VALUES(?1, ?2)", err);
    if (!ins) return nullptr;
    ins.text(1, key);
    ins.text(2, value);
    if (ins.step() != SQLITE_DONE) {
      err = errmsg(st->db_, "meta");
      return nullptr;
    }
    Stmt sel(st->db_, "SELECT value FROM meta WHERE key = ?1", err);
    if (!sel) return nullptr;
    sel.text(1, key);
    if (sel.step() != SQLITE_ROW) {
      err = errmsg(st->db_, "meta");
      return nullptr;
    }
    const char* got = reinterpret_cast<const char*>(sqlite3_column_text(sel.get(), 0));
    if (!got || value != got) {
      err = path + " was made for " + key + " " + (got ? got : "?") + ", not " + value;
      return nullptr;
    }
  }
  return st;
}

bool Store::put(const SignedChannelState& s, size_t max_channels, PutResult& result, Held& held, std::string& err) {
  uint8_t wire[kMaxChannelStateWire];
  size_t n = 0;
  if (Status e = encode_channel_state(s, wire, sizeof wire, &n); e != Status::Ok) {
    err = std::string("cannot encode the state: ") + status_message(e);
    return false;
  }
  const Hash32 h = channel_hash(s.state);
  std::lock_guard<std::mutex> lk(mu_);
  if (!exec("BEGIN IMMEDIATE", err)) return false;
  auto rollback = [&] {
    std::string ignored;
    exec("ROLLBACK", ignored);
    return false;
  };
  Held cur;
  {
    Stmt sel(db_, "SELECT tx_count_global, state_hash FROM channels WHERE user = ?1", err);
    if (!sel) return rollback();
    sel.blob(1, s.state.user.bytes, 20);
    int rc = sel.step();
    if (rc == SQLITE_ROW) {
      cur.found = true;
      cur.txCountGlobal = static_cast<uint64_t>(sqlite3_column_int64(sel.get(), 0));
      if (!col_hash(sel.get(), 1, cur.stateHash)) {
        err = "store: a row's state_hash is not 32 bytes";
        return rollback();
      }
    } else if (rc != SQLITE_DONE) {
      err = errmsg(db_, "select");
      return rollback();
    }
  }
  if (cur.found && cur.txCountGlobal >= s.state.txCountGlobal) {
    result = PutResult::Held;
    held = cur;
    rollback();
    return true;
  }
  if (!cur.found) {
    Stmt cnt(db_, "SELECT COUNT(*) FROM channels", err);
    if (!cnt) return rollback();
    if (cnt.step() != SQLITE_ROW) {
      err = errmsg(db_, "count");
      return rollback();
    }
    if (static_cast<size_t>(sqlite3_column_int64(cnt.get(), 0)) >= max_channels) {
      result = PutResult::Full;
      held = cur;
      rollback();
      return true;
    }
  }
  {
    Stmt up(db_,
            cur.found ? "UPDATE channels SET tx_count_global = ?2, state = ?3, state_hash = ?4, updated = ?5 "
                        "WHERE user = ?1"
                      : "INSERT INTO channels(user, tx_count_global, state, state_hash, check_chain, updated) "
                        "VALUES(?1, ?2, ?3, ?4, 1, ?5)",
            err);
    if (!up) return rollback();
    up.blob(1, s.state.user.bytes, 20);
    up.i64(2, static_cast<int64_t>(s.state.txCountGlobal));
    up.blob(3, wire, n);
    up.blob(4, h.bytes, 32);
    up.i64(5, static_cast<int64_t>(std::time(nullptr)));
    if (up.step() != SQLITE_DONE) {
      err = errmsg(db_, "write");
      return rollback();
    }
  }
  if (!exec("COMMIT", err)) return rollback();
  result = PutResult::Stored;
  held.found = true;
  held.txCountGlobal = s.state.txCountGlobal;
  held.stateHash = h;
  return true;
}

bool Store::held(const Address& user, Held& out, std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  out = Held{};
  Stmt sel(db_, "SELECT tx_count_global, state_hash FROM channels WHERE user = ?1", err);
  if (!sel) return false;
  sel.blob(1, user.bytes, 20);
  int rc = sel.step();
  if (rc == SQLITE_DONE) return true;
  if (rc != SQLITE_ROW) {
    err = errmsg(db_, "select");
    return false;
  }
  out.found = true;
  out.txCountGlobal = static_cast<uint64_t>(sqlite3_column_int64(sel.get(), 0));
  if (!col_hash(sel.get(), 1, out.stateHash)) {
    err = "store: a row's state_hash is not 32 bytes";
    return false;
  }
  return true;
}

bool Store::latest(const Address& user, SignedChannelState& out, bool& found, std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  found = false;
  Stmt sel(db_, "SELECT state, tx_count_global FROM channels WHERE user = ?1", err);
  if (!sel) return false;
  sel.blob(1, user.bytes, 20);
  int rc = sel.step();
  if (rc == SQLITE_DONE) return true;
  if (rc != SQLITE_ROW) {
    err = errmsg(db_, "select");
    return false;
  }
  const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(sel.get(), 0));
  const int len = sqlite3_column_bytes(sel.get(), 0);
  Status s = decode_channel_state(p, static_cast<size_t>(len), out);
  if (s != Status::Ok || out.state.user != user ||
      out.state.txCountGlobal != static_cast<uint64_t>(sqlite3_column_int64(sel.get(), 1))) {
    err = "store: the row of " + mqtt::topic_address(user) + " does not decode (" + status_name(s) + ")";
    return false;
  }
  found = true;
  return true;
}

bool Store::set_check(const Address& user, bool on, std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  Stmt up(db_, "UPDATE channels SET check_chain = ?2 WHERE user = ?1", err);
  if (!up) return false;
  up.blob(1, user.bytes, 20);
  up.i64(2, on ? 1 : 0);
  if (up.step() != SQLITE_DONE) {
    err = errmsg(db_, "update");
    return false;
  }
  return true;
}

bool Store::check_all(std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  return exec("UPDATE channels SET check_chain = 1", err) && exec("UPDATE threads SET check_chain = 1", err);
}

bool Store::to_check(std::vector<Address>& out, std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  out.clear();
  Stmt sel(db_, "SELECT user FROM channels WHERE check_chain != 0", err);
  if (!sel) return false;
  int rc;
  while ((rc = sel.step()) == SQLITE_ROW) {
    if (sqlite3_column_bytes(sel.get(), 0) != 20) {
      err = "store: a row's user is not 20 bytes";
      return false;
    }
    Address a{};
    std::memcpy(a.bytes, sqlite3_column_blob(sel.get(), 0), 20);
    out.push_back(a);
  }
  if (rc != SQLITE_DONE) {
    err = errmsg(db_, "select");
    return false;
  }
  return true;
}

bool Store::count(size_t& n, std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  Stmt cnt(db_, "SELECT COUNT(*) FROM channels", err);
  if (!cnt) return false;
  if (cnt.step() != SQLITE_ROW) {
    err = errmsg(db_, "count");
    return false;
  }
  n = static_cast<size_t>(sqlite3_column_int64(cnt.get(), 0));
  return true;
}

namespace {
void bind_key(Stmt& st, const ThreadKey& k) {
  st.blob(1, k.sender.bytes, 20);
  st.blob(2, k.receiver.bytes, 20);
  st.i64(3, static_cast<int64_t>(k.threadId));
}
ThreadKey key_of(const ThreadState& t) { return ThreadKey{t.sender, t.receiver, t.threadId}; }
}  // namespace

// Reads the thread row of `k` (caller holds mu_). found false if none.
static bool read_thread(sqlite3* db, const ThreadKey& k, SignedThreadState& out, Held& held, std::string& err) {
  held = Held{};
  Stmt sel(db, "SELECT state, state_hash FROM threads WHERE sender = ?1 AND receiver = ?2 AND thread_id = ?3", err);
  if (!sel) return false;
  bind_key(sel, k);
  int rc = sel.step();
  if (rc == SQLITE_DONE) return true;
  if (rc != SQLITE_ROW) {
    err = errmsg(db, "select");
    return false;
  }
  const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(sel.get(), 0));
  Status s = decode_thread_state(p, static_cast<size_t>(sqlite3_column_bytes(sel.get(), 0)), out);
  if (s != Status::Ok || out.state.sender != k.sender || out.state.receiver != k.receiver ||
      out.state.threadId != k.threadId || !col_hash(sel.get(), 1, held.stateHash)) {
    err = "store: a thread row of " + mqtt::topic_address(k.receiver) + " does not decode (" + status_name(s) + ")";
    return false;
  }
  held.found = true;
  held.txCountGlobal = out.state.txCount;
  return true;
}

bool Store::put_thread(const SignedThreadState& t, size_t max_per_receiver, PutResult& result, Held& held,
                       std::string& err) {
  uint8_t wire[kMaxThreadStateWire];
  size_t n = 0;
  if (Status e = encode_thread_state(t, wire, sizeof wire, &n); e != Status::Ok) {
    err = std::string("cannot encode the thread state: ") + status_message(e);
    return false;
  }
  const Hash32 h = thread_hash(t.state);
  const ThreadKey k = key_of(t.state);
  std::lock_guard<std::mutex> lk(mu_);
  if (!exec("BEGIN IMMEDIATE", err)) return false;
  auto rollback = [&] {
    std::string ignored;
    exec("ROLLBACK", ignored);
    return false;
  };
  SignedThreadState cur{};
  Held ch;
  if (!read_thread(db_, k, cur, ch, err)) return rollback();
  if (ch.found && !thread_state_better(t.state, cur.state)) {
    result = PutResult::Held;
    held = ch;
    rollback();
    return true;
  }
  if (!ch.found) {
    Stmt cnt(db_, "SELECT COUNT(*) FROM threads WHERE receiver = ?1", err);
    if (!cnt) return rollback();
    cnt.blob(1, k.receiver.bytes, 20);
    if (cnt.step() != SQLITE_ROW) {
      err = errmsg(db_, "count");
      return rollback();
    }
    if (static_cast<size_t>(sqlite3_column_int64(cnt.get(), 0)) >= max_per_receiver) {
      result = PutResult::Full;
      held = ch;
      rollback();
      return true;
    }
  }
  {
    Stmt up(db_,
            ch.found ? "UPDATE threads SET tx_count = ?4, state = ?5, state_hash = ?6, updated = ?7 "
                       "WHERE sender = ?1 AND receiver = ?2 AND thread_id = ?3"
                     : "INSERT INTO threads(sender, receiver, thread_id, tx_count, state, state_hash, check_chain, "
                       "updated) VALUES(?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
            err);
    if (!up) return rollback();
    bind_key(up, k);
    up.i64(4, static_cast<int64_t>(t.state.txCount));
    up.blob(5, wire, n);
    up.blob(6, h.bytes, 32);
    up.i64(7, static_cast<int64_t>(std::time(nullptr)));
    if (up.step() != SQLITE_DONE) {
      err = errmsg(db_, "write");
      return rollback();
    }
  }
  if (!exec("COMMIT", err)) return rollback();
  result = PutResult::Stored;
  held.found = true;
  held.txCountGlobal = t.state.txCount;
  held.stateHash = h;
  return true;
}

bool Store::thread_held(const ThreadKey& k, Held& out, std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  SignedThreadState t{};
  return read_thread(db_, k, t, out, err);
}

bool Store::drop_thread(const ThreadKey& k, bool& dropped, std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  Stmt del(db_, "DELETE FROM threads WHERE sender = ?1 AND receiver = ?2 AND thread_id = ?3", err);
  if (!del) return false;
  bind_key(del, k);
  if (del.step() != SQLITE_DONE) {
    err = errmsg(db_, "delete");
    return false;
  }
  dropped = sqlite3_changes(db_) > 0;
  return true;
}

bool Store::latest_thread(const ThreadKey& k, SignedThreadState& out, bool& found, std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  Held h;
  if (!read_thread(db_, k, out, h, err)) return false;
  found = h.found;
  return true;
}

bool Store::set_thread_check(const ThreadKey& k, bool on, std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  Stmt up(db_, "UPDATE threads SET check_chain = ?4 WHERE sender = ?1 AND receiver = ?2 AND thread_id = ?3", err);
  if (!up) return false;
  bind_key(up, k);
  up.i64(4, on ? 1 : 0);
  if (up.step() != SQLITE_DONE) {
    err = errmsg(db_, "update");
    return false;
  }
  return true;
}

bool Store::threads_to_check(std::vector<ThreadKey>& out, std::string& err) {
  std::lock_guard<std::mutex> lk(mu_);
  out.clear();
  Stmt sel(db_, "SELECT sender, receiver, thread_id FROM threads WHERE check_chain != 0", err);
  if (!sel) return false;
  int rc;
  while ((rc = sel.step()) == SQLITE_ROW) {
    if (sqlite3_column_bytes(sel.get(), 0) != 20 || sqlite3_column_bytes(sel.get(), 1) != 20) {
      err = "store: a thread row's address is not 20 bytes";
      return false;
    }
    ThreadKey k;
    std::memcpy(k.sender.bytes, sqlite3_column_blob(sel.get(), 0), 20);
    std::memcpy(k.receiver.bytes, sqlite3_column_blob(sel.get(), 1), 20);
    k.threadId = static_cast<uint64_t>(sqlite3_column_int64(sel.get(), 2));
    out.push_back(k);
  }
  if (rc != SQLITE_DONE) {
    err = errmsg(db_, "select");
    return false;
  }
  return true;
}

}  // namespace picopay::tower
