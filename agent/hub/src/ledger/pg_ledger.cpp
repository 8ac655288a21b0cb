// The PostgreSQL ledger (ledger.hpp) on libpq: the same tables as the SQLite ledger
// (BLOB = bytea, INTEGER = bigint; `user` is quoted, a reserved word in PostgreSQL), one
// connection, prepared statements with binary parameters and results. Inside a transaction
// the writes are pipelined (libpq pipeline mode): they are sent without waiting for their
// answers, which are read at the next read or at commit(), so a batch of updates costs one
// round trip to the server plus the COMMIT instead of one per statement; a write's error
// is then reported by that read or by commit() (the transaction is lost either way and the
// caller rolls back). The session sets
// synchronous_commit=on, so COMMIT returns only after the server flushed its WAL, whatever
// the server's default. Schema migrations run under a transaction-scoped advisory lock.
#include <libpq-fe.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ledger.hpp"

namespace picopay::hub {

namespace {

// Version 1: the tables of the SQLite ledger, in PostgreSQL's types.
const char* const kMigrations[] = {
    "CREATE TABLE IF NOT EXISTS channels(\"user\" TEXT PRIMARY KEY, tx BIGINT NOT NULL, state BYTEA NOT NULL,"
    " threads BYTEA NOT NULL);"
    "CREATE TABLE IF NOT EXISTS updates(\"user\" TEXT NOT NULL, tx BIGINT NOT NULL, request BYTEA NOT NULL,"
    " reply BYTEA NOT NULL, state BYTEA NOT NULL, PRIMARY KEY(\"user\", tx));"
    "CREATE TABLE IF NOT EXISTS proposals(\"user\" TEXT PRIMARY KEY, tx BIGINT NOT NULL, request BYTEA NOT NULL,"
    " state BYTEA NOT NULL);"
    "CREATE TABLE IF NOT EXISTS queued(\"user\" TEXT NOT NULL, seq BIGINT NOT NULL, request BYTEA NOT NULL,"
    " PRIMARY KEY(\"user\", seq));"
    "CREATE TABLE IF NOT EXISTS requests(\"user\" TEXT NOT NULL, seq BIGINT NOT NULL, id BIGINT NOT NULL,"
    " request BYTEA NOT NULL, PRIMARY KEY(\"user\", seq));"
    "CREATE TABLE IF NOT EXISTS request_ids(\"user\" TEXT PRIMARY KEY, last BIGINT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS deposits(\"user\" TEXT PRIMARY KEY, tx BIGINT NOT NULL, state BYTEA NOT NULL);",
    // Version 2: the history table.
    "CREATE TABLE IF NOT EXISTS history(\"user\" TEXT NOT NULL, tx BIGINT NOT NULL, at BIGINT NOT NULL,"
    " event TEXT NOT NULL, wei TEXT NOT NULL, counterparty TEXT NOT NULL, thread_id BIGINT NOT NULL,"
    " balance_wei_user TEXT NOT NULL, balance_wei_hub TEXT NOT NULL, txhash TEXT NOT NULL,"
    " PRIMARY KEY(\"user\", tx));",
    // Version 3: the leases of several hub instances (docs/multi-instance.md): partitions
    // 0..255 and the chain role (-1), all free; the instances' heartbeats.
    "CREATE TABLE IF NOT EXISTS leases(partition SMALLINT PRIMARY KEY, holder TEXT, epoch BIGINT NOT NULL DEFAULT 0,"
    " expires_at TIMESTAMPTZ);"
    "INSERT INTO leases(partition) SELECT generate_series(-1, 255) ON CONFLICT DO NOTHING;"
    "CREATE TABLE IF NOT EXISTS hub_instances(holder TEXT PRIMARY KEY, expires_at TIMESTAMPTZ NOT NULL);",
    // Version 4: requests for channels of a partition another instance holds, taken by its
    // holder; thread dispute jobs, sent by the chain role's holder (docs/multi-instance.md).
    "CREATE TABLE IF NOT EXISTS forwarded_requests(id BIGSERIAL PRIMARY KEY, partition SMALLINT NOT NULL,"
    " \"user\" TEXT NOT NULL, request BYTEA NOT NULL, created TIMESTAMPTZ NOT NULL DEFAULT now());"
    "CREATE INDEX IF NOT EXISTS forwarded_requests_partition ON forwarded_requests(partition, id);"
    "CREATE TABLE IF NOT EXISTS thread_disputes(\"user\" TEXT PRIMARY KEY, job BYTEA NOT NULL,"
    " done BOOLEAN NOT NULL DEFAULT false, created TIMESTAMPTZ NOT NULL DEFAULT now());",
    // Version 5: channel_totals (ledger.hpp), one row per partition, kept by a trigger on
    // channels (so every writer keeps it, psql included) and summed on read. Channels is
    // locked against writes (reads go on) while the existing rows are summed once, so no
    // write falls between that sum and the trigger.
    //
    // picopay_state_terms(state): (balanceWeiHub, threadCount) of a stored state, read from
    // its wire bytes (core/src/codec.cpp encode_channel_state: version 1, kind 1, flags, two
    // addresses (three with flag 0x04), twelve amounts as a length byte and that many
    // big-endian bytes, balanceWeiHub the first; then the varints txCountGlobal,
    // txCountChain, threadCount). Bytes that do not have that layout count (0, 0), as on
    // SQLite (the signatures and canonical forms are not checked here).
    "LOCK TABLE channels IN SHARE MODE;"
    "CREATE OR REPLACE FUNCTION picopay_state_terms(s BYTEA, OUT wei NUMERIC, OUT threads BIGINT)"
    " LANGUAGE plpgsql IMMUTABLE AS $f$"
    " DECLARE n INT := length(s); p INT; k INT; i INT; w INT; b INT; g INT; v BIGINT;"
    " BEGIN"
    "  wei := 0; threads := 0;"
    "  IF n < 43 OR get_byte(s, 0) <> 1 OR get_byte(s, 1) <> 1 THEN RETURN; END IF;"
    "  p := 43 + CASE WHEN get_byte(s, 2) & 4 <> 0 THEN 20 ELSE 0 END;"
    "  FOR k IN 0..11 LOOP"
    "   IF p >= n THEN wei := 0; RETURN; END IF;"
    "   w := get_byte(s, p);"
    "   IF w > 32 OR p + 1 + w > n THEN wei := 0; RETURN; END IF;"
    "   IF k = 0 THEN FOR i IN 1..w LOOP wei := wei * 256 + get_byte(s, p + i); END LOOP; END IF;"
    "   p := p + 1 + w;"
    "  END LOOP;"
    "  FOR k IN 0..2 LOOP"
    "   v := 0; g := 0;"
    "   LOOP"
    "    IF p >= n OR g = 8 THEN wei := 0; RETURN; END IF;"
    "    b := get_byte(s, p); p := p + 1;"
    "    v := v | ((b & 127)::BIGINT << (7 * g)); g := g + 1;"
    "    EXIT WHEN b < 128;"
    "   END LOOP;"
    "  END LOOP;"
    "  threads := v;"
    " END $f$;"
    // the partition of a user address (lease::partition_of: its first byte); 0 for text
    // that is not 0x-hex
    "CREATE OR REPLACE FUNCTION picopay_partition(u TEXT) RETURNS SMALLINT LANGUAGE sql IMMUTABLE AS"
    " $f$ SELECT (CASE WHEN u ~ '^0x[0-9a-fA-F]{2}' THEN get_byte(decode(substr(u, 3, 2), 'hex'), 0) ELSE 0 END)"
    "::SMALLINT $f$;"
    "CREATE TABLE IF NOT EXISTS channel_totals(partition SMALLINT PRIMARY KEY, channels BIGINT NOT NULL,"
    " threads BIGINT NOT NULL, wei_hub NUMERIC NOT NULL);"
    "INSERT INTO channel_totals SELECT p, 0, 0, 0 FROM generate_series(0, 255) p ON CONFLICT DO NOTHING;"
    "UPDATE channel_totals t SET channels = c.n, threads = c.th, wei_hub = c.w FROM"
    " (SELECT picopay_partition(ch.\"user\") AS p, count(*) AS n, sum(x.threads) AS th, sum(x.wei) AS w"
    " FROM channels ch, LATERAL picopay_state_terms(ch.state) x GROUP BY 1) c WHERE t.partition = c.p;"
    // An upsert that keeps a channel's balanceWeiHub and threadCount (most payments
    // to the hub's side change balanceWeiHub) writes no totals row.
    "CREATE OR REPLACE FUNCTION picopay_channel_totals_row() RETURNS trigger LANGUAGE plpgsql AS $f$"
    " DECLARE o RECORD; nw RECORD;"
    " BEGIN"
    "  IF TG_OP <> 'INSERT' THEN SELECT * INTO o FROM picopay_state_terms(OLD.state); END IF;"
    "  IF TG_OP <> 'DELETE' THEN SELECT * INTO nw FROM picopay_state_terms(NEW.state); END IF;"
    "  IF TG_OP = 'UPDATE' AND OLD.\"user\" = NEW.\"user\" THEN"
    "   IF o.wei <> nw.wei OR o.threads <> nw.threads THEN"
    "    UPDATE channel_totals SET threads = threads - o.threads + nw.threads, wei_hub = wei_hub - o.wei + nw.wei"
    "     WHERE partition = picopay_partition(NEW.\"user\");"
    "   END IF;"
    "   RETURN NULL;"
    "  END IF;"
    "  IF TG_OP <> 'INSERT' THEN"
    "   UPDATE channel_totals SET channels = channels - 1, threads = threads - o.threads, wei_hub = wei_hub - o.wei"
    "    WHERE partition = picopay_partition(OLD.\"user\");"
    "  END IF;"
    "  IF TG_OP <> 'DELETE' THEN"
    "   UPDATE channel_totals SET channels = channels + 1, threads = threads + nw.threads, wei_hub = wei_hub + nw.wei"
    "    WHERE partition = picopay_partition(NEW.\"user\");"
    "  END IF;"
    "  RETURN NULL;"
    " END $f$;"
    "CREATE OR REPLACE FUNCTION picopay_channel_totals_truncate() RETURNS trigger LANGUAGE plpgsql AS $f$"
    " BEGIN UPDATE channel_totals SET channels = 0, threads = 0, wei_hub = 0; RETURN NULL; END $f$;"
    "DROP TRIGGER IF EXISTS picopay_channel_totals ON channels;"
    "CREATE TRIGGER picopay_channel_totals AFTER INSERT OR UPDATE OR DELETE ON channels FOR EACH ROW"
    " EXECUTE FUNCTION picopay_channel_totals_row();"
    "DROP TRIGGER IF EXISTS picopay_channel_totals_truncate ON channels;"
    "CREATE TRIGGER picopay_channel_totals_truncate AFTER TRUNCATE ON channels FOR EACH STATEMENT"
    " EXECUTE FUNCTION picopay_channel_totals_truncate();",
};
static_assert(sizeof kMigrations / sizeof kMigrations[0] == kLedgerSchemaVersion, "one migration per version");
// pg_advisory_xact_lock key of the migrations ("picopay" in ASCII, folded).
constexpr long long kMigrationLock = 0x7069636f706179LL;

struct Stmt {
  const char* name;
  const char* sql;
  int nparams;
};
const Stmt kStmts[] = {
    {"load_ch", "SELECT state, threads FROM channels WHERE \"user\"=$1", 1},
    {"save_ch",
     "INSERT INTO channels(\"user\", tx, state, threads) VALUES($1,$2,$3,$4) ON CONFLICT (\"user\") DO UPDATE SET"
     " tx=EXCLUDED.tx, state=EXCLUDED.state, threads=EXCLUDED.threads",
     4},
    {"find_up", "SELECT request, reply FROM updates WHERE \"user\"=$1 AND tx=$2", 2},
    {"ins_up", "INSERT INTO updates(\"user\", tx, request, reply, state) VALUES($1,$2,$3,$4,$5)", 5},
    {"load_pr", "SELECT tx, request FROM proposals WHERE \"user\"=$1", 1},
    {"del_pr", "DELETE FROM proposals WHERE \"user\"=$1", 1},
    {"del_q", "DELETE FROM queued WHERE \"user\"=$1", 1},
    {"load_q", "SELECT request FROM queued WHERE \"user\"=$1 ORDER BY seq", 1},
    {"load_rq", "SELECT id, request FROM requests WHERE \"user\"=$1 ORDER BY seq", 1},
    {"del_rq", "DELETE FROM requests WHERE \"user\"=$1", 1},
    {"ins_rq", "INSERT INTO requests(\"user\", seq, id, request) VALUES($1,$2,$3,$4)", 4},
    {"load_id", "SELECT last FROM request_ids WHERE \"user\"=$1", 1},
    {"save_id",
     "INSERT INTO request_ids(\"user\", last) VALUES($1,$2) ON CONFLICT (\"user\") DO UPDATE SET last=EXCLUDED.last", 2},
    {"save_dep",
     "INSERT INTO deposits(\"user\", tx, state) VALUES($1,$2,$3) ON CONFLICT (\"user\") DO UPDATE SET"
     " tx=EXCLUDED.tx, state=EXCLUDED.state",
     3},
    {"del_dep", "DELETE FROM deposits WHERE \"user\"=$1", 1},
    {"ins_hist",
     "INSERT INTO history(\"user\", tx, at, event, wei, counterparty, thread_id, balance_wei_user, balance_wei_hub,"
     " txhash) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (\"user\", tx) DO UPDATE SET at=EXCLUDED.at,"
     " event=EXCLUDED.event, wei=EXCLUDED.wei, counterparty=EXCLUDED.counterparty, thread_id=EXCLUDED.thread_id,"
     " balance_wei_user=EXCLUDED.balance_wei_user, balance_wei_hub=EXCLUDED.balance_wei_hub, txhash=EXCLUDED.txhash",
     10},
    {"load_hist",
     "SELECT tx, at, event, wei, counterparty, thread_id, balance_wei_user, balance_wei_hub, txhash FROM history"
     " WHERE \"user\"=$1 ORDER BY tx",
     1},
    {"has_coll", "SELECT 1 FROM history WHERE \"user\"=$1 AND event='collateral-proposed' LIMIT 1", 1},
    // the partition: the user address's first byte (its text "0x" + 2 hex digits)
    {"fwd_ins",
     "INSERT INTO forwarded_requests(partition, \"user\", request) VALUES(get_byte(decode(substr($1::text, 3, 2),"
     " 'hex'), 0), $1::text, $2)",
     2},
    {"fwd_del", "DELETE FROM forwarded_requests WHERE id=$1", 1},
    {"disp_save",
     "INSERT INTO thread_disputes(\"user\", job) VALUES($1,$2) ON CONFLICT (\"user\") DO UPDATE SET job=EXCLUDED.job,"
     " done=false, created=now() WHERE thread_disputes.job <> EXCLUDED.job",
     2},
    {"disp_done", "UPDATE thread_disputes SET done=true WHERE \"user\"=$1 AND job=$2", 2},
};

// A parameter: bytes sent in binary format (text as its bytes, bigint as 8 bytes big-endian).
struct P {
  const char* data;
  int len;
};
struct I64 {
  char b[8];
  explicit I64(uint64_t v) {
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (56 - 8 * i));
  }
  P p() const { return P{b, 8}; }
};
P text(const std::string& s) { return P{s.data(), static_cast<int>(s.size())}; }
P blob(const Bytes& b) { return P{reinterpret_cast<const char*>(b.data()), static_cast<int>(b.size())}; }

// RAII for a PGresult.
struct Res {
  PGresult* r = nullptr;
  explicit Res(PGresult* p) : r(p) {}
  ~Res() { PQclear(r); }
  Res(const Res&) = delete;
  Res& operator=(const Res&) = delete;
};

class PgLedger final : public Ledger {
 public:
  ~PgLedger() override {
    if (conn_) PQfinish(conn_);
  }

  LedgerStatus open(const std::string& uri) {
    conn_ = PQconnectdb(uri.c_str());
    if (!conn_ || PQstatus(conn_) != CONNECTION_OK)
      return LedgerStatus::fail(LedgerCode::Unavailable,
                                "postgresql: cannot connect: " + one_line(conn_ ? PQerrorMessage(conn_) : "out of memory"));
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);  // "relation exists, skipping" etc.
    LedgerStatus s = exec("SET synchronous_commit = on", "session");
    if (s.ok()) s = migrate();
    for (const Stmt& st : kStmts) {
      if (!s.ok()) break;
      Res r(PQprepare(conn_, st.name, st.sql, st.nparams, nullptr));
      s = check(r.r, PGRES_COMMAND_OK, st.name);
    }
    return s;
  }

  const char* backend() const override { return "postgresql"; }
  int schema_version() const override { return version_; }

  LedgerStatus begin() override {
    (void)drain();
    deferred_ = {};
    LedgerStatus s = exec("BEGIN", "begin");
    in_tx_ = s.ok();
    return s;
  }
  LedgerStatus commit() override {
    in_tx_ = false;
    LedgerStatus d = drain();
    deferred_ = {};
    if (!d.ok()) return d;  // not committed: the caller rolls back
    // COMMIT of a failed transaction answers "ROLLBACK": not durable, so not Ok.
    Res r(PQexec(conn_, "COMMIT"));
    LedgerStatus s = check(r.r, PGRES_COMMAND_OK, "commit");
    if (s.ok() && std::strcmp(PQcmdStatus(r.r), "COMMIT") != 0)
      s = LedgerStatus::fail(LedgerCode::Io, "postgresql: commit: the transaction was rolled back");
    return s;
  }
  void rollback() override {
    in_tx_ = false;
    (void)drain();
    deferred_ = {};
    (void)exec("ROLLBACK", "rollback");
  }

  LedgerStatus load_channel(const std::string& user, Bytes& state, Bytes& threads, bool& found) override {
    Res r(run("load_ch", {text(user)}));
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "load channel");
    found = s.ok() && PQntuples(r.r) > 0;
    if (found) {
      state = col(r.r, 0, 0);
      threads = col(r.r, 0, 1);
    }
    return s;
  }

  LedgerStatus save_channel(const std::string& user, uint64_t tx, const Bytes& state, const Bytes& threads) override {
    I64 t(tx);
    return write("save_ch", {text(user), t.p(), blob(state), blob(threads)}, "save channel");
  }

  LedgerStatus find_update(const std::string& user, uint64_t tx, Bytes& request, Bytes& reply, bool& found) override {
    I64 t(tx);
    Res r(run("find_up", {text(user), t.p()}));
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "find update");
    found = s.ok() && PQntuples(r.r) > 0;
    if (found) {
      request = col(r.r, 0, 0);
      reply = col(r.r, 0, 1);
    }
    return s;
  }

  LedgerStatus insert_update(const std::string& user, uint64_t tx, const Bytes& request, const Bytes& reply,
                             const Bytes& state) override {
    I64 t(tx);
    return write("ins_up", {text(user), t.p(), blob(request), blob(reply), blob(state)}, "insert update");
  }

  LedgerStatus load_requests(const std::string& user, uint64_t& last_id, std::vector<RequestRow>& items) override {
    items.clear();
    last_id = 0;
    {
      Res r(run("load_id", {text(user)}));
      LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "load request id");
      if (!s.ok()) return s;
      if (PQntuples(r.r) > 0 && !i64(r.r, 0, 0, last_id)) return corrupt("load request id");
    }
    Res r(run("load_rq", {text(user)}));
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "load requests");
    for (int i = 0; s.ok() && i < PQntuples(r.r); ++i) {
      RequestRow row;
      if (!i64(r.r, i, 0, row.id)) return corrupt("load requests");
      row.update = col(r.r, i, 1);
      items.push_back(std::move(row));
    }
    return s;
  }

  LedgerStatus save_requests(const std::string& user, uint64_t last_id, const std::vector<RequestRow>& items) override {
    {
      LedgerStatus s = write("del_rq", {text(user)}, "delete requests");
      if (!s.ok()) return s;
    }
    for (size_t i = 0; i < items.size(); ++i) {
      I64 seq(i), id(items[i].id);
      LedgerStatus s = write("ins_rq", {text(user), seq.p(), id.p(), blob(items[i].update)}, "insert request");
      if (!s.ok()) return s;
    }
    if (last_id == 0) return {};
    I64 l(last_id);
    return write("save_id", {text(user), l.p()}, "save request id");
  }

  LedgerStatus list_request_users(std::vector<std::string>& out) override {
    Res r(query("SELECT \"user\" FROM requests UNION SELECT \"user\" FROM proposals UNION SELECT \"user\" FROM queued"));
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "list requests");
    for (int i = 0; s.ok() && i < PQntuples(r.r); ++i) out.emplace_back(PQgetvalue(r.r, i, 0), PQgetlength(r.r, i, 0));
    return s;
  }

  LedgerStatus load_legacy(const std::string& user, bool& found, uint64_t& tx, Bytes& proposal,
                           std::vector<Bytes>& queued) override {
    {
      Res r(run("load_pr", {text(user)}));
      LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "load legacy proposal");
      if (!s.ok()) return s;
      found = PQntuples(r.r) > 0;
      if (found) {
        if (!i64(r.r, 0, 0, tx)) return corrupt("load legacy proposal");
        proposal = col(r.r, 0, 1);
      }
    }
    Res r(run("load_q", {text(user)}));
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "load legacy queue");
    for (int i = 0; s.ok() && i < PQntuples(r.r); ++i) queued.push_back(col(r.r, i, 0));
    return s;
  }

  LedgerStatus delete_legacy(const std::string& user) override {
    {
      LedgerStatus s = write("del_pr", {text(user)}, "delete legacy proposal");
      if (!s.ok()) return s;
    }
    return write("del_q", {text(user)}, "delete legacy queue");
  }

  LedgerStatus save_deposit(const std::string& user, uint64_t tx, const Bytes& state) override {
    I64 t(tx);
    return write("save_dep", {text(user), t.p(), blob(state)}, "save deposit");
  }

  LedgerStatus delete_deposit(const std::string& user) override {
    return write("del_dep", {text(user)}, "delete deposit");
  }

  LedgerStatus insert_history(const std::string& user, const HistoryRow& h) override {
    I64 tx(h.tx), at(h.at), tid(h.thread_id);
    return write("ins_hist",
                 {text(user), tx.p(), at.p(), text(h.event), text(h.wei), text(h.counterparty), tid.p(),
                  text(h.balance_wei_user), text(h.balance_wei_hub), text(h.txhash)},
                 "insert history");
  }

  LedgerStatus load_history(const std::string& user, std::vector<HistoryRow>& out) override {
    out.clear();
    Res r(run("load_hist", {text(user)}));
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "load history");
    auto str = [&](int row, int c) { return std::string(PQgetvalue(r.r, row, c), PQgetlength(r.r, row, c)); };
    for (int i = 0; s.ok() && i < PQntuples(r.r); ++i) {
      HistoryRow h;
      if (!i64(r.r, i, 0, h.tx) || !i64(r.r, i, 1, h.at) || !i64(r.r, i, 5, h.thread_id)) return corrupt("load history");
      h.event = str(i, 2);
      h.wei = str(i, 3);
      h.counterparty = str(i, 4);
      h.balance_wei_user = str(i, 6);
      h.balance_wei_hub = str(i, 7);
      h.txhash = str(i, 8);
      out.push_back(std::move(h));
    }
    return s;
  }

  LedgerStatus has_collateral(const std::string& user, bool& yes) override {
    Res r(run("has_coll", {text(user)}));
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "has collateral");
    yes = s.ok() && PQntuples(r.r) > 0;
    return s;
  }

  LedgerStatus list_deposits(std::vector<std::pair<std::string, Bytes>>& out) override {
    Res r(query("SELECT \"user\", state FROM deposits ORDER BY tx"));
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "list deposits");
    for (int i = 0; s.ok() && i < PQntuples(r.r); ++i)
      out.emplace_back(std::string(PQgetvalue(r.r, i, 0), PQgetlength(r.r, i, 0)), col(r.r, i, 1));
    return s;
  }

  LedgerStatus for_each_channel(const std::function<bool(const std::string&, const Bytes&)>& f) override {
    // Single-row mode: one row in memory at a time.
    if (LedgerStatus d = drain(); !d.ok()) return d;
    if (!PQsendQueryParams(conn_, "SELECT \"user\", state FROM channels", 0, nullptr, nullptr, nullptr, nullptr, 1))
      return LedgerStatus::fail(LedgerCode::Io, "postgresql: list channels: " + one_line(PQerrorMessage(conn_)));
    PQsetSingleRowMode(conn_);
    LedgerStatus s;
    bool more = true;
    while (PGresult* raw = PQgetResult(conn_)) {
      Res r(raw);
      const ExecStatusType st = PQresultStatus(raw);
      if (st == PGRES_SINGLE_TUPLE) {
        if (more && s.ok()) more = f(std::string(PQgetvalue(raw, 0, 0), PQgetlength(raw, 0, 0)), col(raw, 0, 1));
      } else if (st != PGRES_TUPLES_OK && s.ok()) {
        s = check(raw, PGRES_TUPLES_OK, "list channels");
      }
    }
    return s;
  }

  // ---- leases (ledger.hpp): text parameters and results (numbers as decimal text)
  LedgerStatus lease_heartbeat(const std::string& holder, uint64_t ttl_ms, uint64_t& live) override {
    live = 0;
    {
      TextRes r(this, "INSERT INTO hub_instances(holder, expires_at) VALUES($1, now() + $2::bigint * interval '1 ms')"
                      " ON CONFLICT (holder) DO UPDATE SET expires_at=EXCLUDED.expires_at",
                {holder, std::to_string(ttl_ms)});
      LedgerStatus s = check(r.r, PGRES_COMMAND_OK, "lease heartbeat");
      if (!s.ok()) return s;
    }
    TextRes r(this, "SELECT count(*) FROM hub_instances WHERE expires_at > now()", {});
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "lease heartbeat");
    if (s.ok() && (PQntuples(r.r) != 1 || !dec(r.r, 0, 0, live))) return corrupt("lease heartbeat");
    return s;
  }

  LedgerStatus lease_renew(const std::string& holder, uint64_t ttl_ms,
                           std::vector<std::pair<int, uint64_t>>& held) override {
    held.clear();
    // Rows locked in partition order, as the fence locks them (no deadlock between the two).
    TextRes r(this, "UPDATE leases SET expires_at = now() + $2::bigint * interval '1 ms' WHERE partition IN"
                    " (SELECT partition FROM leases WHERE holder=$1 ORDER BY partition FOR UPDATE) AND holder=$1"
                    " RETURNING partition, epoch",
              {holder, std::to_string(ttl_ms)});
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "lease renew");
    for (int i = 0; s.ok() && i < PQntuples(r.r); ++i) {
      uint64_t e = 0;
      if (!dec(r.r, i, 1, e)) return corrupt("lease renew");
      held.emplace_back(std::atoi(PQgetvalue(r.r, i, 0)), e);
    }
    return s;
  }

  LedgerStatus lease_free(std::vector<int>& out) override {
    out.clear();
    TextRes r(this, "SELECT partition FROM leases WHERE holder IS NULL OR expires_at IS NULL OR expires_at < now()",
              {});
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "lease free");
    for (int i = 0; s.ok() && i < PQntuples(r.r); ++i) out.push_back(std::atoi(PQgetvalue(r.r, i, 0)));
    return s;
  }

  LedgerStatus lease_take(int p, const std::string& holder, uint64_t ttl_ms, bool& got, uint64_t& epoch) override {
    got = false;
    TextRes r(this, "UPDATE leases SET holder=$1, epoch=epoch + 1, expires_at = now() + $2::bigint * interval '1 ms'"
                    " WHERE partition=$3::smallint AND (holder IS NULL OR expires_at IS NULL OR expires_at < now())"
                    " RETURNING epoch",
              {holder, std::to_string(ttl_ms), std::to_string(p)});
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "lease take");
    if (s.ok() && PQntuples(r.r) == 1) {
      if (!dec(r.r, 0, 0, epoch)) return corrupt("lease take");
      got = true;
    }
    return s;
  }

  LedgerStatus lease_release(int p, const std::string& holder) override {
    if (p == kAllLeases) {
      TextRes r(this, "UPDATE leases SET holder=NULL, expires_at=NULL WHERE partition IN (SELECT partition FROM"
                      " leases WHERE holder=$1 ORDER BY partition FOR UPDATE) AND holder=$1", {holder});
      LedgerStatus s = check(r.r, PGRES_COMMAND_OK, "lease release");
      if (!s.ok()) return s;
      TextRes d(this, "DELETE FROM hub_instances WHERE holder=$1 OR expires_at < now() - interval '1 day'", {holder});
      return check(d.r, PGRES_COMMAND_OK, "lease release");
    }
    TextRes r(this, "UPDATE leases SET holder=NULL, expires_at=NULL WHERE partition=$2::smallint AND holder=$1",
              {holder, std::to_string(p)});
    return check(r.r, PGRES_COMMAND_OK, "lease release");
  }

  LedgerStatus lease_fence(const std::string& holder, const std::vector<std::pair<int, uint64_t>>& parts,
                           bool& held) override {
    held = false;
    std::string arr = "{";
    for (size_t i = 0; i < parts.size(); ++i) arr += (i ? "," : "") + std::to_string(parts[i].first);
    arr += "}";
    TextRes r(this, "SELECT partition, epoch FROM leases WHERE holder=$1 AND partition = ANY($2::smallint[])"
                    " ORDER BY partition FOR SHARE",
              {holder, arr});
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "lease fence");
    if (!s.ok()) return s;
    size_t matched = 0;
    for (int i = 0; i < PQntuples(r.r); ++i) {
      const int p = std::atoi(PQgetvalue(r.r, i, 0));
      uint64_t e = 0;
      if (!dec(r.r, i, 1, e)) return corrupt("lease fence");
      for (const auto& want : parts)
        if (want.first == p && want.second == e) ++matched;
    }
    held = matched == parts.size();
    return s;
  }

  LedgerStatus lease_session(uint64_t ms, const std::string& holder) override {
    for (char c : holder)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-' && c != '#')
        return LedgerStatus::fail(LedgerCode::BadSpec, "postgresql: lease session: bad instance name " + holder);
    const std::string sql = "SET idle_in_transaction_session_timeout = " + std::to_string(ms) +
                            "; SET application_name = 'picopay-hub/" + holder + "'";
    return exec(sql.c_str(), "lease session");
  }

  LedgerStatus list_request_users_in(const std::vector<int>& parts, std::vector<std::string>& out) override {
    // a partition is the user address's first byte: the text prefix "0x" + 2 hex digits
    std::string arr = "{";
    for (size_t i = 0; i < parts.size(); ++i) {
      if (parts[i] < 0 || parts[i] > 255) continue;
      char pre[8];
      std::snprintf(pre, sizeof pre, "0x%02x", parts[i]);
      arr += (arr.size() > 1 ? "," : "") + std::string(pre);
    }
    arr += "}";
    TextRes r(this, "SELECT u FROM (SELECT \"user\" AS u FROM requests UNION SELECT \"user\" FROM proposals UNION"
                    " SELECT \"user\" FROM queued) x WHERE substr(u, 1, 4) = ANY($1::text[])",
              {arr});
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "list requests");
    for (int i = 0; s.ok() && i < PQntuples(r.r); ++i) out.emplace_back(PQgetvalue(r.r, i, 0), PQgetlength(r.r, i, 0));
    return s;
  }

  LedgerStatus forward_request(const std::string& user, const Bytes& update) override {
    return write("fwd_ins", {text(user), blob(update)}, "forward request");
  }

  LedgerStatus list_forwarded(const std::vector<int>& parts, size_t limit, std::vector<ForwardedRow>& out) override {
    out.clear();
    std::string arr = "{";
    for (int p : parts)
      if (p >= 0 && p <= 255) arr += (arr.size() > 1 ? "," : "") + std::to_string(p);
    arr += "}";
    if (LedgerStatus d = drain(); !d.ok()) return d;
    const std::string lim = std::to_string(limit);
    const char* vals[2] = {arr.c_str(), lim.c_str()};
    Res r(PQexecParams(conn_,
                       "SELECT id, partition::bigint, \"user\", request FROM forwarded_requests WHERE partition ="
                       " ANY($1::smallint[]) ORDER BY id LIMIT $2::bigint",
                       2, nullptr, vals, nullptr, nullptr, 1));
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "list forwarded requests");
    for (int i = 0; s.ok() && i < PQntuples(r.r); ++i) {
      ForwardedRow row;
      uint64_t p = 0;
      if (!i64(r.r, i, 0, row.id) || !i64(r.r, i, 1, p)) return corrupt("list forwarded requests");
      row.partition = static_cast<int>(p);
      row.user.assign(PQgetvalue(r.r, i, 2), PQgetlength(r.r, i, 2));
      row.update = col(r.r, i, 3);
      out.push_back(std::move(row));
    }
    return s;
  }

  LedgerStatus delete_forwarded(uint64_t id) override {
    I64 i(id);
    return write("fwd_del", {i.p()}, "delete forwarded request");
  }

  LedgerStatus save_dispute(const std::string& user, const Bytes& job) override {
    return write("disp_save", {text(user), blob(job)}, "save thread dispute");
  }

  LedgerStatus list_disputes(bool done_too, std::vector<DisputeRow>& out) override {
    out.clear();
    Res r(query(done_too ? "SELECT \"user\", job, done::int::bigint FROM thread_disputes ORDER BY created"
                         : "SELECT \"user\", job, done::int::bigint FROM thread_disputes WHERE NOT done ORDER BY created"));
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "list thread disputes");
    for (int i = 0; s.ok() && i < PQntuples(r.r); ++i) {
      DisputeRow row;
      uint64_t done = 0;
      if (!i64(r.r, i, 2, done)) return corrupt("list thread disputes");
      row.user.assign(PQgetvalue(r.r, i, 0), PQgetlength(r.r, i, 0));
      row.job = col(r.r, i, 1);
      row.done = done != 0;
      out.push_back(std::move(row));
    }
    return s;
  }

  LedgerStatus dispute_done(const std::string& user, const Bytes& job) override {
    return write("disp_done", {text(user), blob(job)}, "thread dispute done");
  }

  LedgerStatus channel_totals(ChannelTotals& out) override {
    // 256 rows summed (schema version 5): whatever the channel count. Sums beyond the
    // types saturate (the totals are for the metrics).
    TextRes r(this,
              "SELECT LEAST(GREATEST(sum(channels), 0), 18446744073709551615)::text,"
              " LEAST(GREATEST(sum(threads), 0), 18446744073709551615)::text, round(GREATEST(sum(wei_hub), 0))::text"
              " FROM channel_totals",
              {});
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "channel totals");
    if (!s.ok()) return s;
    const char* wei = PQntuples(r.r) == 1 ? PQgetvalue(r.r, 0, 2) : nullptr;
    if (!wei || !*wei || !dec(r.r, 0, 0, out.channels) || !dec(r.r, 0, 1, out.threads))
      return corrupt("channel totals");
    const Status ws = u256_parse_decimal(wei, std::strlen(wei), out.wei_hub);
    if (ws == Status::Overflow) out.wei_hub = U256::max();
    else if (ws != Status::Ok) return corrupt("channel totals");
    return {};
  }

  LedgerStatus count_channels(uint64_t& n) override {
    Res r(query("SELECT count(*) FROM channels"));
    LedgerStatus s = check(r.r, PGRES_TUPLES_OK, "count channels");
    if (s.ok() && (PQntuples(r.r) != 1 || !i64(r.r, 0, 0, n))) return corrupt("count channels");
    return s;
  }

 private:
  static std::string one_line(const char* m) {
    std::string s = m ? m : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    for (auto& c : s)
      if (c == '\n') c = ' ';
    return s;
  }
  // A prepared statement's parameters in libpq's arrays (binary format, at most 12).
  struct Params {
    const char* vals[12];
    int lens[12], fmts[12];
    int n = 0;
    explicit Params(std::initializer_list<P> ps) {
      for (const P& p : ps) {
        if (n == 12) break;  // the statements of kStmts take at most 10
        vals[n] = p.data ? p.data : "";
        lens[n] = p.len;
        fmts[n] = 1;
        ++n;
      }
    }
  };
  // A read: the pipelined writes' answers first (their first error is kept for commit()).
  PGresult* run(const char* name, std::initializer_list<P> ps) {
    if (!drain().ok()) return nullptr;
    const Params a(ps);
    return PQexecPrepared(conn_, name, a.n, a.vals, a.lens, a.fmts, 1);
  }
  PGresult* query(const char* sql) {
    if (!drain().ok()) return nullptr;
    return PQexecParams(conn_, sql, 0, nullptr, nullptr, nullptr, nullptr, 1);
  }

  // A write: inside a transaction sent in pipeline mode without waiting for its answer;
  // outside one, executed at once.
  LedgerStatus write(const char* name, std::initializer_list<P> ps, const char* what) {
    if (!deferred_.ok()) return deferred_;
    if (!in_tx_) {
      Res r(run(name, ps));
      return check(r.r, PGRES_COMMAND_OK, what);
    }
    if (PQpipelineStatus(conn_) == PQ_PIPELINE_OFF && !PQenterPipelineMode(conn_))
      return LedgerStatus::fail(LedgerCode::Io, std::string("postgresql: ") + what + ": " + one_line(PQerrorMessage(conn_)));
    const Params a(ps);
    if (!PQsendQueryPrepared(conn_, name, a.n, a.vals, a.lens, a.fmts, 1))
      return deferred_ = LedgerStatus::fail(LedgerCode::Io, std::string("postgresql: ") + what + ": " +
                                                                 one_line(PQerrorMessage(conn_)));
    pending_.push_back(what);
    return {};
  }

  // Reads the answers of the pipelined writes and leaves pipeline mode. Returns (and
  // keeps, for commit()) the first error.
  LedgerStatus drain() {
    if (PQpipelineStatus(conn_) == PQ_PIPELINE_OFF) return deferred_;
    if (!PQpipelineSync(conn_) && deferred_.ok())
      deferred_ = LedgerStatus::fail(LedgerCode::Io, "postgresql: pipeline: " + one_line(PQerrorMessage(conn_)));
    size_t done = 0;  // commands whose results ended (a null result ends each)
    while (true) {
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) {
        if (PQstatus(conn_) != CONNECTION_OK || ++done > pending_.size() + 1) {
          if (deferred_.ok())
            deferred_ = LedgerStatus::fail(LedgerCode::Io, "postgresql: pipeline: " + one_line(PQerrorMessage(conn_)));
          break;
        }
        continue;
      }
      const ExecStatusType st = PQresultStatus(r);
      if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        break;
      }
      if (st != PGRES_COMMAND_OK && st != PGRES_PIPELINE_ABORTED && deferred_.ok())
        deferred_ = check(r, PGRES_COMMAND_OK, done < pending_.size() ? pending_[done] : "pipelined write");
      PQclear(r);
    }
    pending_.clear();
    PQexitPipelineMode(conn_);
    return deferred_;
  }
  LedgerStatus exec(const char* sql, const char* what) {
    Res r(PQexec(conn_, sql));
    return check(r.r, PGRES_COMMAND_OK, what);
  }
  LedgerStatus check(PGresult* r, ExecStatusType want, const char* what) const {
    if (r && PQresultStatus(r) == want) return {};
    if (!r && !deferred_.ok()) return deferred_;  // a pipelined write failed before this read
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    LedgerCode c = LedgerCode::Io;
    if (state && std::strncmp(state, "23", 2) == 0) c = LedgerCode::Conflict;        // integrity constraint
    else if (state && std::strncmp(state, "22", 2) == 0) c = LedgerCode::Corrupt;    // data exception
    else if (state && std::strcmp(state, "XX001") == 0) c = LedgerCode::Corrupt;     // data_corrupted
    const char* msg = r ? PQresultErrorMessage(r) : nullptr;
    return LedgerStatus::fail(c, std::string("postgresql: ") + what + ": " +
                                     one_line(msg && *msg ? msg : PQerrorMessage(conn_)));
  }
  // A statement with text parameters and text results (the lease calls), after the
  // pipelined writes' answers.
  struct TextRes {
    PGresult* r = nullptr;
    TextRes(PgLedger* l, const char* sql, std::initializer_list<std::string> ps) {
      if (!l->drain().ok()) return;
      const char* vals[4];
      int n = 0;
      for (const std::string& p : ps)
        if (n < 4) vals[n++] = p.c_str();
      r = PQexecParams(l->conn_, sql, n, nullptr, vals, nullptr, nullptr, 0);
    }
    ~TextRes() { PQclear(r); }
    TextRes(const TextRes&) = delete;
    TextRes& operator=(const TextRes&) = delete;
  };
  static bool dec(PGresult* r, int row, int c, uint64_t& out) {
    const char* v = PQgetvalue(r, row, c);
    if (!v || !*v) return false;
    char* end = nullptr;
    out = std::strtoull(v, &end, 10);
    return end && *end == 0;
  }
  static LedgerStatus corrupt(const char* what) {
    return LedgerStatus::fail(LedgerCode::Corrupt, std::string("postgresql: ") + what + ": unexpected column format");
  }
  static Bytes col(PGresult* r, int row, int c) {
    const auto* p = reinterpret_cast<const uint8_t*>(PQgetvalue(r, row, c));
    const int n = PQgetlength(r, row, c);
    return p && n > 0 ? Bytes(p, p + n) : Bytes();
  }
  static bool i64(PGresult* r, int row, int c, uint64_t& out) {
    if (PQgetlength(r, row, c) != 8 || PQfformat(r, c) != 1) return false;
    const auto* p = reinterpret_cast<const uint8_t*>(PQgetvalue(r, row, c));
    out = 0;
    for (int i = 0; i < 8; ++i) out = (out << 8) | p[i];
    return true;
  }

  LedgerStatus migrate() {
    LedgerStatus s = exec("BEGIN", "migrate");
    if (!s.ok()) return s;
    const std::string lock = "SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLock) + ")";
    {
      Res r(PQexec(conn_, lock.c_str()));
      s = check(r.r, PGRES_TUPLES_OK, "migration lock");
    }
    if (s.ok()) s = exec("CREATE TABLE IF NOT EXISTS schema_version(version BIGINT NOT NULL)", "schema version");
    uint64_t v = 0;
    bool have_row = false;
    if (s.ok()) {
      Res r(query("SELECT version FROM schema_version"));
      s = check(r.r, PGRES_TUPLES_OK, "schema version");
      if (s.ok() && PQntuples(r.r) > 0) {
        have_row = true;
        if (!i64(r.r, 0, 0, v)) s = corrupt("schema version");
      }
    }
    if (s.ok() && v > static_cast<uint64_t>(kLedgerSchemaVersion))
      s = LedgerStatus::fail(LedgerCode::SchemaTooNew,
                             "postgresql: ledger schema version " + std::to_string(v) +
                                 " is newer than this picopay-hub knows (" + std::to_string(kLedgerSchemaVersion) +
                                 "): use a newer picopay-hub");
    for (uint64_t next = v + 1; s.ok() && next <= static_cast<uint64_t>(kLedgerSchemaVersion); ++next) {
      s = exec(kMigrations[next - 1], "migration");
      const std::string up = have_row ? "UPDATE schema_version SET version=" + std::to_string(next)
                                      : "INSERT INTO schema_version(version) VALUES(" + std::to_string(next) + ")";
      if (s.ok()) s = exec(up.c_str(), "migration");
      have_row = true;
      v = next;
    }
    if (s.ok()) s = commit();
    if (!s.ok()) {
      rollback();
      return s;
    }
    version_ = static_cast<int>(v);
    return {};
  }

  PGconn* conn_ = nullptr;
  int version_ = 0;
  bool in_tx_ = false;
  std::vector<const char*> pending_;  // the pipelined writes not yet answered (their names)
  LedgerStatus deferred_;             // the first error of a pipelined write (this transaction)
};

}  // namespace

LedgerStatus open_pg_ledger(const std::string& uri, std::unique_ptr<Ledger>& out) {
  auto l = std::make_unique<PgLedger>();
  LedgerStatus s = l->open(uri);
  if (s.ok()) out = std::move(l);
  return s;
}

}  // namespace picopay::hub
