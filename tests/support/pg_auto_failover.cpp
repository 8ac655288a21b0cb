#include "support/pg_auto_failover.hpp"

#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/postgres.hpp"

namespace picopay::testsupport {

namespace {
const char* const kNames[2] = {"node1", "node2"};

std::string first_in_path(const char* name) {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "";
  size_t a = 0;
  while (a <= p.size()) {
    size_t b = p.find(':', a);
    if (b == std::string::npos) b = p.size();
    const std::string f = p.substr(a, b - a) + "/" + name;
    if (b > a && ::access(f.c_str(), X_OK) == 0) return f;
    a = b + 1;
  }
  return "";
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
}  // namespace

PgAutoFailover::~PgAutoFailover() {
  // The keepers stop their postgres on SIGTERM (pg_ctl stop -m fast); what is left dies.
  for (Process* p : {&keeper_[1], &keeper_[0], &monitor_}) {
    if (p->pid() > 0) ::kill(p->pid(), SIGTERM);
  }
  for (Process* p : {&keeper_[1], &keeper_[0], &monitor_}) {
    const pid_t g = p->pid();
    if (g <= 0) continue;
    if (p->wait(20000) == -2) p->kill9();
    ::kill(-g, SIGKILL);  // anything of its group still running (postgres children)
  }
  for (const char* d : {"monitor", "node1", "node2"}) {
    const std::string pidfile = dir_ + "/" + d + "/postmaster.pid";
    const int pid = std::atoi(read_file(pidfile).c_str());
    if (pid > 0 && ::kill(pid, 0) == 0) ::kill(pid, SIGKILL);
  }
  if (!dir_.empty() && !keep_) remove_tree(dir_);
}

std::vector<std::string> PgAutoFailover::autoctl(std::vector<std::string> args) const {
  std::vector<std::string> argv = {"env", "XDG_CONFIG_HOME=" + dir_ + "/xdg/config",
                                   "XDG_DATA_HOME=" + dir_ + "/xdg/data", "XDG_RUNTIME_DIR=" + dir_ + "/xdg/run",
                                   "PATH=" + bindir_ + ":/usr/bin:/bin", "PGHOST=" + dir_, "pg_autoctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  return postgres_as_owner(argv);
}

std::string PgAutoFailover::node_dir(int node) const { return dir_ + "/" + kNames[node]; }

bool PgAutoFailover::start(const std::string& db, std::string& err) {
  db_ = db;
  if (first_in_path("pg_autoctl").empty()) {
    err = "pg_autoctl not found (Debian packages pg-auto-failover-cli and postgresql-15-auto-failover)";
    return false;
  }
  // pg_autoctl finds pg_basebackup, pg_rewind... next to pg_ctl: the real bin dir.
  const std::string b = postgres_bindir();
  char real[PATH_MAX];
  if (b.empty() || !::realpath((b + "/pg_ctl").c_str(), real)) {
    err = "PostgreSQL not found (Debian package postgresql)";
    return false;
  }
  bindir_ = real;
  bindir_ = bindir_.substr(0, bindir_.rfind('/'));
  dir_ = make_temp_dir("picopay-pgha");
  if (::geteuid() == 0) {
    const passwd* pw = ::getpwnam("postgres");
    if (!pw || ::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      err = "cannot hand " + dir_ + " to the system user postgres (Debian package postgresql)";
      return false;
    }
  }
  monitor_port_ = free_port();
  ports_[0] = free_port();
  do ports_[1] = free_port();
  while (ports_[1] == ports_[0] || ports_[1] == monitor_port_);
  for (const char* d : {"monitor", "node1"}) {
    const std::string data = dir_ + "/" + d;
    if (!copy_template_cluster(data, dir_ + "/initdb.log", err)) return false;
    // Appended as root to a file the copy made postgres' own: ownership stays.
    std::ofstream conf(data + "/postgresql.conf", std::ios::app);
    conf << "\nunix_socket_directories = '" << dir_ << "'\nshared_buffers = 32MB\nmax_connections = 40\n";
    if (!conf) {
      err = "cannot write " + data + "/postgresql.conf";
      return false;
    }
  }
  const std::string pgctl = bindir_ + "/pg_ctl";
  if (run_command(autoctl({"create", "monitor", "--pgdata", dir_ + "/monitor", "--pgport",
                           std::to_string(monitor_port_), "--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth",
                           "trust", "--no-ssl", "--pgctl", pgctl}),
                  dir_ + "/monitor-create.log") != 0) {
    err = "pg_autoctl create monitor failed: see " + dir_ + "/monitor-create.log";
    return false;
  }
  if (!monitor_.start(autoctl({"run", "--pgdata", dir_ + "/monitor"}), dir_ + "/monitor.log")) {
    err = "cannot run the monitor";
    return false;
  }
  const std::string mon = "postgres://autoctl_node@127.0.0.1:" + std::to_string(monitor_port_) +
                          "/pg_auto_failover?sslmode=disable";
  auto create = [&](int n) {
    return keeper_[n].start(autoctl({"create", "postgres", "--pgdata", node_dir(n), "--pgport",
                                     std::to_string(ports_[n]), "--hostname", "127.0.0.1", "--listen", "127.0.0.1",
                                     "--auth", "trust", "--no-ssl", "--pgctl", pgctl, "--monitor", mon, "--dbname",
                                     db, "--name", kNames[n], "--run"}),
                            dir_ + "/" + kNames[n] + ".log");
  };
  if (!create(0)) {
    err = "cannot run pg_autoctl create postgres";
    return false;
  }
  bool single = false;
  for (int i = 0; i < 240 && !single; ++i) {
    single = states().find("node1|single|single") != std::string::npos;
    if (!single) sleep_ms(500);
  }
  if (!single) {
    err = "node1 did not become single (see " + dir_ + "/node1.log): " + states();
    return false;
  }
  if (!create(1)) {
    err = "cannot run pg_autoctl create postgres (node2)";
    return false;
  }
  // node2 starts with pg_basebackup, which waits for a spread checkpoint on node1 (minutes
  // with the default checkpoint_timeout): a CHECKPOINT on node1 ends it at once.
  for (int i = 0; i < 240; ++i) {
    if (wait_primary_secondary(0, 0)) return true;
    if (states().find("node2|wait_standby") != std::string::npos ||
        states().find("node2|catchingup") != std::string::npos)
      run_command({"psql", "-X", "-q", "-d", node_uri(0), "-c", "CHECKPOINT"});
    sleep_ms(1000);
  }
  err = "node2 did not become secondary (see " + dir_ + "/node2.log): " + states();
  return false;
}

std::string PgAutoFailover::uri() const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(ports_[0]) + ",127.0.0.1:" + std::to_string(ports_[1]) +
         "/" + db_ + "?target_session_attrs=read-write&connect_timeout=5";
}

std::string PgAutoFailover::node_uri(int node) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(ports_[node]) + "/" + db_ + "?connect_timeout=5";
}

std::string PgAutoFailover::query(int node, const std::string& db, const std::string& sql) {
  const std::string out = dir_ + "/query-" + std::to_string(::getpid()) + ".out";
  ::unlink(out.c_str());
  const std::string u = "postgresql://postgres@127.0.0.1:" + std::to_string(node < 0 ? monitor_port_ : ports_[node]) +
                        "/" + db + "?connect_timeout=5";
  if (run_command({"psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", u, "-c", sql, "-o", out},
                  dir_ + "/psql.log") != 0)
    return "";
  std::string r = read_file(out);
  while (!r.empty() && (r.back() == '\n' || r.back() == '\r')) r.pop_back();
  return r;
}

std::string PgAutoFailover::states() {
  return query(-1, "pg_auto_failover",
               "SELECT nodename || '|' || reportedstate || '|' || goalstate FROM pgautofailover.node ORDER BY nodeid");
}

int PgAutoFailover::primary() {
  const std::string s = states();
  for (int n = 0; n < 2; ++n)
    if (s.find(std::string(kNames[n]) + "|primary|primary") != std::string::npos) return n;
  return -1;
}

bool PgAutoFailover::wait_primary_secondary(int p, int timeout_ms) {
  const std::string want_p = std::string(kNames[p]) + "|primary|primary";
  const std::string want_s = std::string(kNames[1 - p]) + "|secondary|secondary";
  for (int waited = 0;; waited += 500) {
    const std::string s = states();
    if (s.find(want_p) != std::string::npos && s.find(want_s) != std::string::npos) return true;
    if (waited >= timeout_ms) return false;
    sleep_ms(500);
  }
}

int PgAutoFailover::perform_failover() {
  return run_command(autoctl({"perform", "failover", "--pgdata", dir_ + "/monitor"}), dir_ + "/failover.log");
}

void PgAutoFailover::crash(int node) {
  const int pm = std::atoi(read_file(node_dir(node) + "/postmaster.pid").c_str());
  if (keeper_[node].pid() > 0) ::kill(-keeper_[node].pid(), SIGKILL);
  if (pm > 0) ::kill(pm, SIGKILL);
  keeper_[node].kill9();  // reaps runuser
}

bool PgAutoFailover::kill_postgres(int node) {
  const int pm = std::atoi(read_file(node_dir(node) + "/postmaster.pid").c_str());
  return pm > 0 && ::kill(pm, SIGKILL) == 0;
}

bool PgAutoFailover::restart(int node) {
  return keeper_[node].start(autoctl({"run", "--pgdata", node_dir(node)}), dir_ + "/" + kNames[node] + ".log");
}

}  // namespace picopay::testsupport
