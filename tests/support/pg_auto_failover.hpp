// Test fixture: a highly available PostgreSQL on 127.0.0.1 with pg_auto_failover (Debian
// packages pg-auto-failover-cli and postgresql-15-auto-failover): a monitor and a
// primary/secondary pair, each with its own port and data dir in a fresh temp dir, each
// node supervised by its own `pg_autoctl run` (the keeper). pg_auto_failover keeps
// synchronous replication on while the secondary is healthy (synchronous_standby_names
// 'ANY 1 (...)'), so a COMMIT returns only once the secondary flushed it.
//
// Clusters come from the template copy of postgres.hpp (no initdb per node; the secondary
// is a pg_basebackup of the primary); the sockets live in the temp dir. As root every
// pg_autoctl runs as the system user "postgres" (runuser). pg_autoctl's own config and
// state go to XDG dirs under the temp dir. The destructor stops the keepers (SIGTERM:
// they stop their postgres), then kills what is left and removes the dir.
#pragma once

#include <string>
#include <vector>

#include "support/process.hpp"

namespace picopay::testsupport {

class PgAutoFailover {
 public:
  PgAutoFailover() = default;
  ~PgAutoFailover();
  PgAutoFailover(const PgAutoFailover&) = delete;
  PgAutoFailover& operator=(const PgAutoFailover&) = delete;

  // Starts the monitor, node 0 (the first primary) and node 1 (its secondary), with the
  // database `db`; returns once the monitor reports primary/secondary (up to 240 s).
  // False with `err` (naming the log) if pg_auto_failover is missing or a step fails.
  bool start(const std::string& db, std::string& err);

  // The multi-host libpq URI a hub uses: both nodes, target_session_attrs=read-write
  // (libpq tries them in order and keeps the one that accepts writes), connect_timeout=5.
  std::string uri() const;
  // One node's URI (node 0 or 1), any role.
  std::string node_uri(int node) const;
  int port(int node) const { return ports_[node]; }

  // The monitor's view, one "name|reported|goal" line per node ("" if unreadable).
  std::string states();
  // The node the monitor reports as primary (reported and goal state "primary"), -1 if none.
  int primary();
  // Waits (up to timeout_ms) until the monitor reports node `p` primary and the other
  // secondary, both settled.
  bool wait_primary_secondary(int p, int timeout_ms);
  // `pg_autoctl perform failover` (blocks until pg_autoctl reports it done); its exit status.
  int perform_failover();
  // A crash of node `node`'s machine: SIGKILL to its keeper's process group (pg_autoctl,
  // its services and its postgres) and to its postmaster.
  void crash(int node);
  // kill -9 of node `node`'s postmaster only: its keeper starts postgres again (crash
  // recovery from its own WAL), no failover. False if it was not running.
  bool kill_postgres(int node);
  // Starts node `node`'s keeper again (`pg_autoctl run`): it rejoins as a secondary.
  bool restart(int node);
  // Keeps the temp dir (logs, data dirs) when the fixture is destroyed: for a failed test.
  void keep_files() { keep_ = true; }
  const std::string& dir() const { return dir_; }
  // psql -At on `db` at node `node` (output; "" on failure).
  std::string query(int node, const std::string& db, const std::string& sql);

 private:
  std::vector<std::string> autoctl(std::vector<std::string> args) const;
  std::string node_dir(int node) const;
  std::string dir_, bindir_, db_;
  int monitor_port_ = 0;
  bool keep_ = false;
  int ports_[2] = {0, 0};
  Process monitor_;
  Process keeper_[2];
};

}  // namespace picopay::testsupport
