#include "support/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace picopay::testsupport {

std::string make_temp_dir(const std::string& prefix) {
  const char* t = std::getenv("TMPDIR");
  std::string tmpl = std::string(t && *t ? t : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) return "";
  return std::string(buf.data());
}

void remove_tree(const std::string& path) {
  if (path.empty() || path == "/") return;
  run_command({"rm", "-rf", path});
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    socklen_t l = sizeof a;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l) == 0) port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

bool wait_port_open(int port, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 20) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::close(fd);
    if (rc == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

static pid_t spawn(const std::vector<std::string>& argv, const std::string& log, const std::vector<std::string>& env,
                   bool devnull_if_empty) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  // child
  ::setpgid(0, 0);
  if (!log.empty() || devnull_if_empty) {
    int fd = log.empty() ? ::open("/dev/null", O_WRONLY) : ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
  }
  int in = ::open("/dev/null", O_RDONLY);
  if (in >= 0) {
    ::dup2(in, 0);
    ::close(in);
  }
  for (auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
  ::execvp(args[0], args.data());
  _exit(127);
}

static int decode_status(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

int run_command(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = spawn(argv, log, {}, true);
  if (pid < 0) return -1;
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return decode_status(st);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  return static_cast<bool>(f);
}

Process::~Process() { kill9(); }

bool Process::start(const std::vector<std::string>& argv, const std::string& log, const std::vector<std::string>& env) {
  kill9();
  status_ = -1;
  pid_ = spawn(argv, log, env, false);
  return pid_ > 0;
}

bool Process::running() {
  if (pid_ <= 0) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = decode_status(st);
    pid_ = -1;
    return false;
  }
  return r == 0;
}

void Process::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  if (::waitpid(pid_, &st, 0) == pid_) status_ = decode_status(st);
  pid_ = -1;
}

int Process::wait(int timeout_ms) {
  if (pid_ <= 0) return status_;
  for (int waited = 0; waited <= timeout_ms; waited += 10) {
    if (!running()) return status_;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -2;
}

int Process::terminate(int timeout_ms) {
  if (pid_ <= 0) return status_;
  ::kill(pid_, SIGTERM);
  int r = wait(timeout_ms);
  if (r == -2) {
    kill9();
    return status_;
  }
  return r;
}

}  // namespace picopay::testsupport
