// Helpers of `picopay demo` (also used by tests/device): child processes that die with
// their parent, free 127.0.0.1 ports, a private mosquitto with passwords and an ACL, and
// the dev chain launcher.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace picopay::demo {

// The directory of the running executable (readlink /proc/self/exe).
std::string self_dir();
// The bin dir holding picopay-agent/picopay-hub: $PICOPAY_BIN_DIR, else self_dir().
std::string bin_dir();
int free_port();
bool wait_port(int port, int timeout_ms);
bool write_text(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);
bool make_dirs(const std::string& path);
// "0x" + 64 hex from getrandom.
std::string random_key_hex();
// The lowercase 0x address of a key ("" on error).
std::string key_address(const std::string& key_hex);

class Child {
 public:
  Child() = default;
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // fork/exec with stdout+stderr appended to `log`; the child gets SIGTERM if we die.
  // pipe_stdin: keep a pipe to the child's stdin (stdin_fd()); pipe_stdout: read its
  // stdout through stdout_fd() instead of the log.
  bool start(const std::vector<std::string>& argv, const std::string& log, bool pipe_stdin = false,
             bool pipe_stdout = false);
  pid_t pid() const { return pid_; }
  int stdin_fd() const { return in_; }
  int stdout_fd() const { return out_; }
  void close_stdin();
  bool running();
  // Waits up to timeout_ms; returns the exit status (128+sig if killed) or -1 if still running.
  int wait(int timeout_ms);
  // SIGTERM, wait up to timeout_ms, then SIGKILL. Returns the exit status.
  int stop(int timeout_ms = 10000);
  void kill9();
  int status() const { return status_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  int in_ = -1, out_ = -1;
};

struct BrokerUser {
  std::string name, password;
};

class MosquittoBroker {
 public:
  // dir: where config, passwd, acl, persistence and log go.
  bool start(const std::string& dir, const std::vector<BrokerUser>& users, const std::string& acl, std::string& err,
             int port = 0);
  bool restart(std::string& err);
  void stop() { proc_.stop(5000); }
  void kill9() { proc_.kill9(); }
  int port() const { return port_; }

 private:
  std::string dir_;
  int port_ = 0;
  Child proc_;
};

class DevChain {
 public:
  // accounts: private keys funded with 1000 ETH each (evm_setAccountBalance over RPC: no
  // key ever appears on the dev chain's command line).
  bool start(const std::string& dir, const std::vector<std::string>& keys, std::string& err);
  void stop() { proc_.stop(5000); }
  const std::string& url() const { return url_; }

 private:
  std::string url_;
  Child proc_;
};

}  // namespace picopay::demo
