// picopay-hub's ledger: the hub's durable store behind one interface, with two backends:
//   sqlite:PATH            the embedded default (SQLite, WAL, synchronous=FULL; a bare path
//                          means the same); sqlite_ledger.cpp
//   postgresql://...       a PostgreSQL server through libpq (any libpq connection URI, also
//                          postgres://...); synchronous_commit stays on; pg_ledger.cpp
// docs/operations.md ("The ledger") tells an operator how to choose.
//
// Durability, both backends: commit() returns Ok only once the transaction is durable
// (SQLite: the WAL is fsynced; PostgreSQL: the server flushed its WAL), so the hub releases
// a signature only after commit() returned Ok (the invariant "persist before signing out").
//
// Errors are values: every call returns a LedgerStatus (a LedgerCode and one line of
// text naming the backend and the operation). Nothing is sticky across transactions: after
// an error inside a transaction the caller calls rollback() and decides what to do (the hub
// stops without releasing anything of that transaction). A write inside a transaction may
// report its error late: SQLite reports it at once, PostgreSQL pipelines the writes and
// reports the first failed one at the next read or at commit() (then with that write's
// code, e.g. Conflict); either way the transaction cannot commit.
//
// Schema and migrations: the table schema_version holds one row, the schema's version.
// open() applies the missing migrations in order, each in its own transaction (PostgreSQL:
// under an advisory lock, so two hubs opening one database migrate it once), and refuses a
// database whose version is newer than this binary knows (SchemaTooNew: an older hub must
// not write a newer ledger). A database of the versions before schema_version existed
// (the tables without the version row) is taken as version 1 (same tables).
//
// Tables (version 1; columns are the same on both backends, BLOB = bytea on PostgreSQL):
//   channels(user PK, tx, state, threads)  latest double-signed state (wire kind 0x01),
//                                          open threads (u16 length-prefixed thread wires)
//   updates(user, tx, request, reply, state, PK(user, tx))  every countersigned update:
//                                          the request bytes, the reply bytes that were
//                                          released, the resulting double-signed state
//   requests(user, seq, id, request, PK(user, seq))
//                                          the HubRequests the hub wants from this user, in
//                                          order (docs/mqtt-protocol.md): seq 0 first; `id`
//                                          the request id once sent (0 = not sent yet; at most
//                                          one per channel is sent and outstanding); `request`
//                                          the update's reason and args as a ChannelUpdate wire
//                                          (txCountGlobal 0, no meaningful sig); rewritten in
//                                          the same transaction as the update that changes them
//   request_ids(user PK, last)             the last request id sent to this user (ids only grow)
//   proposals, queued                      legacy (hub-signed proposals of earlier versions):
//                                          read once at start, turned into requests, emptied
//   deposits(user PK, tx, state)           collateral deposits the payee countersigned and
//                                          the hub has not yet confirmed: the double-signed
//                                          ProposePendingDeposit state (wire kind 0x01) for
//                                          hubAuthorizedUpdate; stored with the payee's
//                                          countersignature, deleted in the transaction
//                                          that proposes (or queues) the ConfirmPending
// Version 2 adds:
//   history(user, tx, at, event, wei, counterparty, thread_id, balance_wei_user,
//           balance_wei_hub, txhash, PK(user, tx))
//                                          every countersigned update with its time (Unix
//                                          seconds) and what it moved (history.cpp,
//                                          docs/flows.md), written in the update's
//                                          transaction; amounts as decimal wei text, ""
//                                          and 0 where a column does not apply
// Version 3 adds (several hub instances on one PostgreSQL ledger, docs/multi-instance.md;
// the SQLite ledger creates the tables to keep the version numbers equal but serves one
// process and answers every lease call Unsupported):
//   leases(partition PK, holder, epoch, expires_at)
//                                          one row per channel partition 0..255 (a channel's
//                                          partition is its user address's first byte) and
//                                          row -1 for the chain role; `holder` the instance
//                                          holding it (NULL: free), `epoch` bumped on every
//                                          change of holder, `expires_at` the server time the
//                                          lease lapses unless renewed
//   hub_instances(holder PK, expires_at)   each live instance's heartbeat (the fair share of
//                                          partitions is counted from the unexpired rows)
// Version 4 adds (several instances; SQLite creates them too and answers Unsupported):
//   forwarded_requests(id PK, partition, user, request, created)
//                                          a HubRequest one instance wants in a channel of a
//                                          partition another holds (a thread's mirror
//                                          OpenThread, the payer's CloseThread): `request` as
//                                          in `requests`; written in the transaction of the
//                                          countersignature that made it, taken (queued in
//                                          `requests` and the row deleted) by the partition's
//                                          holder in one fenced transaction
//   thread_disputes(user PK, job, done, created)
//                                          a payer's thread dispute, written by the channel's
//                                          owner (`job`: the dispute's states, see
//                                          thread_dispute.cpp), sent by the chain role's
//                                          holder, `done` once every thread is disputed
// `user` is the channel's user address as lowercase 0x-hex (mqtt::topic_address).
//
// Version 5 adds channel_totals: the channel row count and the sums over the stored
// states' balanceWeiHub and threadCount, kept with every write to channels in the same
// transaction (a rolled-back write changes nothing), so the metrics never read every
// channel:
//   SQLite: channel_totals(id PK = 0, channels, sums)
//                                          one row (sums: balanceWeiHub as 32 bytes
//                                          big-endian, then the sum of threadCount as 8
//                                          bytes big-endian), kept by this connection's
//                                          TEMP triggers on channels; created at open and
//                                          computed once by reading every channel when the
//                                          row is missing (a ledger of an earlier version;
//                                          the SQLite migration of version 5 is empty). A writer without
//                                          those triggers (an earlier picopay-hub, the
//                                          sqlite3 shell) does not keep it: delete the row
//                                          after such writes and the next open computes it
//                                          again.
//   PostgreSQL: channel_totals(partition PK, channels, threads, wei_hub NUMERIC)
//                                          one row per partition 0..255 (a user address's
//                                          first byte, as the leases; 0 for a `user` that
//                                          is not 0x-hex), so instances writing
//                                          their own partitions never wait on each other's
//                                          totals row; kept by the trigger
//                                          picopay_channel_totals on channels (every writer
//                                          keeps it, psql included; TRUNCATE zeroes it),
//                                          which reads the two
//                                          values out of the state's wire bytes
//                                          (picopay_state_terms); summed on read; computed
//                                          once for the existing rows by the migration.
// Bytes that are not a channel state count (0, 0) on both (PostgreSQL reads the layout
// only: a state it can walk counts with its values even if its signatures are bad).
//
// Threads: one ledger object is used by one thread at a time (the hub's worker); the
// SQLite backend's WAL checkpointer runs on its own thread with its own connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "picopay/u256.hpp"

namespace picopay::hub {

using Bytes = std::vector<uint8_t>;

enum class LedgerCode : uint8_t {
  Ok = 0,
  BadSpec,       // the --store text names no backend this build has, or is malformed
  Unavailable,   // cannot open the file / connect to the server (at open)
  Io,            // a read, write or commit failed (disk, connection lost, server error)
  Conflict,      // a unique key already holds a row (e.g. an update's (user, tx) twice)
  Corrupt,       // a stored row is not what this binary wrote (wrong type, wrong size)
  SchemaTooNew,  // the database's schema version is newer than this binary knows
  Unsupported,   // the backend does not do this (leases on SQLite)
};

// Stable lowercase name of a code ("io", "conflict", ...).
const char* ledger_code_name(LedgerCode c);

struct [[nodiscard]] LedgerStatus {
  LedgerCode code = LedgerCode::Ok;
  std::string message;  // one line: "<backend>: <operation>: <the backend's reason>"; empty when Ok
  bool ok() const { return code == LedgerCode::Ok; }
  static LedgerStatus fail(LedgerCode c, std::string m) { return LedgerStatus{c, std::move(m)}; }
};

// The newest schema version this binary writes.
constexpr int kLedgerSchemaVersion = 5;

class Ledger {
 public:
  virtual ~Ledger() = default;

  // Opens the ledger named by `spec` ("sqlite:PATH", a bare PATH, "postgresql://..." or
  // "postgres://..."), creating or migrating its schema. Errors: BadSpec, Unavailable,
  // Io, SchemaTooNew (out stays null).
  static LedgerStatus open(const std::string& spec, std::unique_ptr<Ledger>& out);

  // "sqlite" or "postgresql".
  virtual const char* backend() const = 0;
  // The schema version of the open database (after migrations: kLedgerSchemaVersion).
  virtual int schema_version() const = 0;

  // One write transaction at a time. commit(): Ok once durable (see above); Io otherwise
  // (the transaction is then rolled back or must be: call rollback()).
  virtual LedgerStatus begin() = 0;
  virtual LedgerStatus commit() = 0;
  virtual void rollback() = 0;

  // The channel's latest state wire and thread wires; found=false if the channel has no row.
  virtual LedgerStatus load_channel(const std::string& user, Bytes& state, Bytes& threads, bool& found) = 0;
  // Inserts or replaces the channel row (tx = the state's txCountGlobal).
  virtual LedgerStatus save_channel(const std::string& user, uint64_t tx, const Bytes& state,
                                    const Bytes& threads) = 0;
  // The stored update (request and reply bytes) of (user, tx); found=false if none.
  virtual LedgerStatus find_update(const std::string& user, uint64_t tx, Bytes& request, Bytes& reply,
                                   bool& found) = 0;
  // Errors: Conflict if (user, tx) is stored already (PostgreSQL: possibly from the next
  // read or commit()); Io.
  virtual LedgerStatus insert_update(const std::string& user, uint64_t tx, const Bytes& request, const Bytes& reply,
                                     const Bytes& state) = 0;

  // One stored request: its id (0 = not sent yet) and its update wire.
  struct RequestRow {
    uint64_t id = 0;
    Bytes update;
  };
  // The channel's requests in order and the last id sent (0 if none ever).
  virtual LedgerStatus load_requests(const std::string& user, uint64_t& last_id, std::vector<RequestRow>& items) = 0;
  // Replaces the channel's requests and (if last_id != 0) its last id.
  virtual LedgerStatus save_requests(const std::string& user, uint64_t last_id,
                                     const std::vector<RequestRow>& items) = 0;
  // Users with stored requests, or with legacy proposals (to re-send / convert at start).
  virtual LedgerStatus list_request_users(std::vector<std::string>& out) = 0;
  // Legacy rows of earlier versions: the outstanding hub-signed proposal (its update wire
  // and txCountGlobal; found=false if none) and the queued update wires, in order.
  virtual LedgerStatus load_legacy(const std::string& user, bool& found, uint64_t& tx, Bytes& proposal,
                                   std::vector<Bytes>& queued) = 0;
  virtual LedgerStatus delete_legacy(const std::string& user) = 0;
  // Collateral deposit jobs (see the deposits table). One per channel.
  virtual LedgerStatus save_deposit(const std::string& user, uint64_t tx, const Bytes& state) = 0;
  virtual LedgerStatus delete_deposit(const std::string& user) = 0;
  virtual LedgerStatus list_deposits(std::vector<std::pair<std::string, Bytes>>& out) = 0;

  // One row of the history table (version 2). Amounts are decimal wei; counterparty and
  // txhash are "" and thread_id 0 where they do not apply.
  struct HistoryRow {
    uint64_t tx = 0, at = 0, thread_id = 0;
    std::string event, wei, counterparty, balance_wei_user, balance_wei_hub, txhash;
  };
  // Inserts or replaces the history row of (user, tx). Errors: Io.
  virtual LedgerStatus insert_history(const std::string& user, const HistoryRow& row) = 0;
  // The user's history rows in txCountGlobal order. Errors: Io, Corrupt.
  virtual LedgerStatus load_history(const std::string& user, std::vector<HistoryRow>& out) = 0;
  // Whether the hub ever proposed collateral into this channel (a "collateral-proposed" row).
  virtual LedgerStatus has_collateral(const std::string& user, bool& yes) = 0;

  // Every channel row (user, state wire), streamed: `f` returns false to stop early. The
  // rows are not all held in memory at once. Used where every channel is needed (the
  // watchtower with --rpc-url), never on the payment path.
  virtual LedgerStatus for_each_channel(const std::function<bool(const std::string&, const Bytes&)>& f) = 0;
  // The number of channel rows.
  virtual LedgerStatus count_channels(uint64_t& n) = 0;

  // Sums over every channel row's stored state, for the metrics (metrics.cpp).
  struct ChannelTotals {
    uint64_t channels = 0;  // channel rows
    uint64_t threads = 0;   // sum of threadCount
    U256 wei_hub{};         // sum of balanceWeiHub (wei)
  };
  // The totals as kept with every write (schema version 5): one row read on SQLite, 256
  // rows summed on PostgreSQL, whatever the channel count. Sums beyond 2^256-1 wei or
  // 2^64-1 saturate. Errors: Io, Corrupt.
  virtual LedgerStatus channel_totals(ChannelTotals& out) = 0;

  // ---- Leases (version 3; docs/multi-instance.md). Times are the server's (now()), never
  // the caller's clock; `ttl_ms` in milliseconds. The SQLite ledger answers Unsupported.
  // Every call is one autocommitted statement unless said otherwise.
  //
  // Records `holder` as live until now() + ttl_ms and counts the live instances (itself
  // included). Errors: Io, Unsupported.
  virtual LedgerStatus lease_heartbeat(const std::string& holder, uint64_t ttl_ms, uint64_t& live_instances);
  // Extends every lease `holder` holds (expired ones too: nobody else took them) to now() +
  // ttl_ms; `held` = (partition, epoch) of each (row -1 = the chain role). Errors: Io,
  // Corrupt, Unsupported.
  virtual LedgerStatus lease_renew(const std::string& holder, uint64_t ttl_ms,
                                   std::vector<std::pair<int, uint64_t>>& held);
  // Partitions (0..255 and -1) that are free or expired now.
  virtual LedgerStatus lease_free(std::vector<int>& out);
  // Takes partition `p` if it is free or expired: holder, epoch + 1, now() + ttl_ms.
  // got=false when another instance holds it (not an error). Errors: Io, Unsupported.
  virtual LedgerStatus lease_take(int p, const std::string& holder, uint64_t ttl_ms, bool& got, uint64_t& epoch);
  // Gives partition `p` back (if `holder` holds it); p = kAllLeases: every lease of
  // `holder` and its heartbeat row. Errors: Io, Unsupported.
  static constexpr int kAllLeases = 1000;
  virtual LedgerStatus lease_release(int p, const std::string& holder);
  // Inside a write transaction, before its first write: SELECT ... FOR SHARE of the rows
  // of `parts` (partition, epoch) held by `holder`; held=false unless every one is held
  // with exactly that epoch. The row locks make a takeover wait until this transaction
  // ends, so a transaction that passed commits only under the leases it names. Errors:
  // Io, Unsupported (the caller rolls back either way when held is false).
  virtual LedgerStatus lease_fence(const std::string& holder, const std::vector<std::pair<int, uint64_t>>& parts,
                                   bool& held);
  // The session settings of a fenced connection: the server ends this connection when it
  // sits idle inside a transaction for `ms` milliseconds (a stopped process then cannot
  // hold its row locks, and a takeover, past the lease's expiry); application_name
  // "picopay-hub/<holder>" (pg_stat_activity shows the instance; `holder` is [A-Za-z0-9._#-]
  // only). Errors: Io, Unsupported, BadSpec (another character in holder).
  virtual LedgerStatus lease_session(uint64_t ms, const std::string& holder);
  // Users with stored requests (or legacy proposals) whose partition is in `parts`.
  // Errors: Io, Unsupported.
  virtual LedgerStatus list_request_users_in(const std::vector<int>& parts, std::vector<std::string>& out);

  // ---- Cross-partition requests and shared thread disputes (version 4; docs/multi-instance.md).
  // The SQLite ledger answers Unsupported.
  //
  // Inside a write transaction (pipelined like the other writes): a request (its update
  // wire, as in save_requests) for `user`'s channel, whose partition another instance
  // holds. Errors: Io, Unsupported.
  virtual LedgerStatus forward_request(const std::string& user, const Bytes& update);
  struct ForwardedRow {
    uint64_t id = 0;
    int partition = 0;  // as written: the reader checks it against the user's address
    std::string user;
    Bytes update;
  };
  // The forwarded requests of partitions `parts` (0..255), oldest first, at most `limit`.
  // Errors: Io, Corrupt, Unsupported.
  virtual LedgerStatus list_forwarded(const std::vector<int>& parts, size_t limit, std::vector<ForwardedRow>& out);
  // Deletes forwarded request `id` (inside the transaction that queued it). Errors: Io,
  // Unsupported.
  virtual LedgerStatus delete_forwarded(uint64_t id);
  // Stores `user`'s thread dispute job; a stored job with other bytes is replaced and
  // becomes not done again, the same bytes leave it as it is. Errors: Io, Unsupported.
  virtual LedgerStatus save_dispute(const std::string& user, const Bytes& job);
  struct DisputeRow {
    std::string user;
    Bytes job;
    bool done = false;
  };
  // The jobs not done (`done_too`: all), oldest first. Errors: Io, Corrupt, Unsupported.
  virtual LedgerStatus list_disputes(bool done_too, std::vector<DisputeRow>& out);
  // Marks `user`'s job done if it still holds exactly `job` (one autocommitted statement).
  // Errors: Io, Unsupported.
  virtual LedgerStatus dispute_done(const std::string& user, const Bytes& job);
};

// The backends (ledger.cpp's open() picks one). `path`: the SQLite file; `uri`: a libpq
// connection string.
LedgerStatus open_sqlite_ledger(const std::string& path, std::unique_ptr<Ledger>& out);
LedgerStatus open_pg_ledger(const std::string& uri, std::unique_ptr<Ledger>& out);

}  // namespace picopay::hub
