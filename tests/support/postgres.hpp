// Test fixture: a real PostgreSQL server (Debian's postgresql package) on 127.0.0.1, in a
// fresh temp dir: a cluster (initdb once per machine into $TMPDIR/picopay-pg-template*,
// copied per server; trust authentication, superuser "postgres"), pg_ctl start with
// listen_addresses=127.0.0.1 and the Unix socket in the temp dir, pg_ctl stop -m immediate
// and the dir removed by the destructor.
//
// Run as root (CI runs the suites as root, and PostgreSQL refuses to run as root), the
// fixture runs initdb and pg_ctl as the unprivileged system user "postgres" (created by the
// Debian package) through runuser(1), after handing it the temp dir; as any other user it
// runs them as that user. The binaries are found in PATH, else in /usr/lib/postgresql/<N>/bin.
#pragma once

#include <string>
#include <vector>

namespace picopay::testsupport {

// The directory holding PostgreSQL's initdb and pg_ctl ("" if not installed).
std::string postgres_bindir();
// argv run as the system user "postgres" when the caller is root (runuser), else unchanged.
std::vector<std::string> postgres_as_owner(std::vector<std::string> argv);
// Copies the per-machine template cluster (initdb'd once, see above) to `dest` (a data
// directory that must not exist; owned by "postgres" when root). Output goes to `log`.
// False with `err` if PostgreSQL is missing or initdb or the copy fails.
bool copy_template_cluster(const std::string& dest, const std::string& log, std::string& err);

class PgServer {
 public:
  PgServer() = default;
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // Creates the cluster and starts the server; false with `err` (naming the log) if
  // PostgreSQL is not installed or does not start within 60 s.
  bool start(std::string& err);
  // Stops the server at once (pg_ctl stop -m immediate: as a crash would).
  void stop();
  bool running() const { return running_; }
  int port() const { return port_; }
  // The postmaster's pid (the first line of postmaster.pid), -1 if not running.
  int postmaster_pid() const;
  // A libpq URI for database `db` on this server.
  std::string uri(const std::string& db = "postgres") const;
  // CREATE DATABASE `name` (a plain identifier); false with `err` on failure.
  bool create_database(const std::string& name, std::string& err);
  // Runs one SQL command with psql on database `db` (output appended to the server dir's
  // psql.log); the exit status (0 = done).
  int psql(const std::string& db, const std::string& sql);
  // Runs one SQL query with psql; its unaligned, tuples-only output ("" on failure).
  std::string query(const std::string& db, const std::string& sql);

 private:
  std::vector<std::string> as_owner(std::vector<std::string> argv) const;
  std::string bin(const char* name) const;
  std::string dir_, bindir_;
  int port_ = 0;
  bool running_ = false;
};

}  // namespace picopay::testsupport
