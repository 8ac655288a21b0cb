// Test helpers: temp dirs, free ports, child processes (start, kill -9, wait).
// Only 127.0.0.1. Every loop is bounded.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace picopay::testsupport {

// A fresh directory under $TMPDIR (or /tmp), e.g. /tmp/picopay-hub-XXXXXX.
std::string make_temp_dir(const std::string& prefix);
// Removes a directory tree (best effort).
void remove_tree(const std::string& path);
// A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close).
int free_port();
// True once 127.0.0.1:port accepts a TCP connection (polls up to timeout_ms).
bool wait_port_open(int port, int timeout_ms);
// Runs a command to completion (argv[0] looked up in PATH), stdout+stderr to `log`
// (appended; "" = /dev/null). Returns the exit status, or -1 if it could not run.
int run_command(const std::vector<std::string>& argv, const std::string& log = "");
// Reads a whole file ("" if missing).
std::string read_file(const std::string& path);
bool write_file(const std::string& path, const std::string& text);

// A child process. The destructor kills it (SIGKILL) and reaps it.
class Process {
 public:
  Process() = default;
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  // Starts argv (argv[0] looked up in PATH unless it has a '/'), stdout+stderr appended
  // to `log` ("" = inherit). `env` entries "NAME=value" are added to the environment.
  bool start(const std::vector<std::string>& argv, const std::string& log = "",
             const std::vector<std::string>& env = {});
  pid_t pid() const { return pid_; }
  bool running();          // not yet exited (reaps if it has)
  void kill9();            // SIGKILL and reap
  // SIGTERM, then waits up to timeout_ms for exit (SIGKILL after). Returns the exit
  // status (128+signal if killed by a signal), -1 if there was no process.
  int terminate(int timeout_ms = 10000);
  // Waits up to timeout_ms for exit; returns the status as terminate(), or -2 on timeout.
  int wait(int timeout_ms);

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

}  // namespace picopay::testsupport
