#include "support/postgres.hpp"

#include <fcntl.h>
#include <glob.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "support/process.hpp"

namespace picopay::testsupport {

namespace {
bool executable(const std::string& p) { return ::access(p.c_str(), X_OK) == 0; }

// The directory holding initdb: PATH first, then the newest /usr/lib/postgresql/<N>/bin.
std::string find_bindir() {
  if (const char* path = std::getenv("PATH")) {
    std::string p = path;
    size_t a = 0;
    while (a <= p.size()) {
      size_t b = p.find(':', a);
      if (b == std::string::npos) b = p.size();
      const std::string d = p.substr(a, b - a);
      if (!d.empty() && executable(d + "/initdb") && executable(d + "/pg_ctl")) return d;
      a = b + 1;
    }
  }
  glob_t g{};
  std::vector<std::string> found;
  if (::glob("/usr/lib/postgresql/*/bin/initdb", 0, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) found.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  if (found.empty()) return "";
  std::sort(found.begin(), found.end(), [](const std::string& x, const std::string& y) {
    return std::atoi(x.c_str() + 20) < std::atoi(y.c_str() + 20);  // after "/usr/lib/postgresql/"
  });
  const std::string& f = found.back();
  return f.substr(0, f.size() - 7);  // strip "/initdb"
}
}  // namespace

std::string postgres_bindir() { return find_bindir(); }

std::vector<std::string> postgres_as_owner(std::vector<std::string> argv) {
  if (::geteuid() != 0) return argv;
  std::vector<std::string> r = {"runuser", "-u", "postgres", "--"};
  r.insert(r.end(), argv.begin(), argv.end());
  return r;
}

bool copy_template_cluster(const std::string& dest, const std::string& log, std::string& err) {
  const std::string bindir = find_bindir();
  if (bindir.empty()) {
    err = "PostgreSQL not found (Debian package postgresql: initdb in PATH or /usr/lib/postgresql/N/bin)";
    return false;
  }
  // initdb takes seconds (it bootstraps the template databases): it runs once per machine
  // and PostgreSQL version into a template cluster (under a lock file, so parallel tests
  // wait for one initdb), which each server copies. --no-sync: only initdb's own fsyncs
  // are skipped (the server runs with fsync on, as in production).
  const char* tmp = std::getenv("TMPDIR");
  std::string base = (tmp && *tmp ? tmp : "/tmp");
  std::string tag = bindir;
  for (auto& ch : tag)
    if (ch == '/') ch = '_';
  const std::string tmpl = base + "/picopay-pg-template" + tag + "-uid" + std::to_string(::geteuid());
  {
    const int lk = ::open((tmpl + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (lk >= 0) ::flock(lk, LOCK_EX);
    if (::access((tmpl + "/data/PG_VERSION").c_str(), F_OK) != 0) {
      remove_tree(tmpl);
      ::mkdir(tmpl.c_str(), 0700);
      if (::geteuid() == 0) {
        const passwd* pw = ::getpwnam("postgres");
        if (!pw || ::chown(tmpl.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
          err = "cannot hand " + tmpl + " to user postgres (Debian package postgresql)";
          if (lk >= 0) ::close(lk);
          return false;
        }
      }
      const int rc = run_command(postgres_as_owner({bindir + "/initdb", "-D", tmpl + "/data.new", "-U", "postgres",
                                                    "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"}),
                                 log);
      if (rc != 0 || ::rename((tmpl + "/data.new").c_str(), (tmpl + "/data").c_str()) != 0) {
        err = "initdb failed: " + read_file(log);
        if (lk >= 0) ::close(lk);
        return false;
      }
    }
    if (lk >= 0) ::close(lk);
  }
  if (run_command(postgres_as_owner({"cp", "-a", tmpl + "/data", dest}), log) != 0) {
    err = "cannot copy the template cluster " + tmpl + ": " + read_file(log);
    return false;
  }
  return true;
}

PgServer::~PgServer() {
  stop();
  if (!dir_.empty()) remove_tree(dir_);
}

std::vector<std::string> PgServer::as_owner(std::vector<std::string> argv) const {
  return postgres_as_owner(std::move(argv));
}

std::string PgServer::bin(const char* name) const { return bindir_ + "/" + name; }

bool PgServer::start(std::string& err) {
  bindir_ = find_bindir();
  if (bindir_.empty()) {
    err = "PostgreSQL not found (Debian package postgresql: initdb in PATH or /usr/lib/postgresql/N/bin)";
    return false;
  }
  dir_ = make_temp_dir("picopay-pg");
  if (::geteuid() == 0) {
    const passwd* pw = ::getpwnam("postgres");
    if (!pw) {
      err = "running as root and no system user 'postgres' to run PostgreSQL as (Debian package postgresql)";
      return false;
    }
    if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      err = "cannot hand " + dir_ + " to user postgres";
      return false;
    }
  }
  const std::string log = dir_ + "/server.log";
  if (!copy_template_cluster(dir_ + "/data", dir_ + "/initdb.log", err)) return false;
  for (int attempt = 0; attempt < 3 && !running_; ++attempt) {
    port_ = free_port();
    const std::string opts = "-p " + std::to_string(port_) + " -k " + dir_ +
                             " -c listen_addresses=127.0.0.1 -c max_connections=50 -c shared_buffers=32MB";
    if (run_command(as_owner({bin("pg_ctl"), "-D", dir_ + "/data", "-l", log, "-o", opts, "-w", "-t", "60", "start"}),
                    dir_ + "/pg_ctl.log") == 0)
      running_ = true;
  }
  if (!running_) {
    err = "PostgreSQL did not start: " + read_file(log) + read_file(dir_ + "/pg_ctl.log");
    return false;
  }
  return true;
}

void PgServer::stop() {
  if (!running_) return;
  run_command(as_owner({bin("pg_ctl"), "-D", dir_ + "/data", "-m", "immediate", "-w", "stop"}), dir_ + "/pg_ctl.log");
  running_ = false;
}

int PgServer::postmaster_pid() const {
  if (!running_) return -1;
  const std::string t = read_file(dir_ + "/data/postmaster.pid");
  const int pid = std::atoi(t.c_str());
  return pid > 0 ? pid : -1;
}

std::string PgServer::uri(const std::string& db) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
}

int PgServer::psql(const std::string& db, const std::string& sql) {
  return run_command({"psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", uri(db), "-c", sql}, dir_ + "/psql.log");
}

std::string PgServer::query(const std::string& db, const std::string& sql) {
  const std::string out = dir_ + "/query.out";
  ::unlink(out.c_str());
  if (run_command({"psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", uri(db), "-c", sql, "-o", out},
                  dir_ + "/psql.log") != 0)
    return "";
  std::string r = read_file(out);
  while (!r.empty() && (r.back() == '\n' || r.back() == '\r')) r.pop_back();
  return r;
}

bool PgServer::create_database(const std::string& name, std::string& err) {
  if (psql("postgres", "CREATE DATABASE " + name) != 0) {
    err = "CREATE DATABASE " + name + " failed: " + read_file(dir_ + "/psql.log");
    return false;
  }
  return true;
}

}  // namespace picopay::testsupport
