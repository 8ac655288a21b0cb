#include "devchain.hpp"

#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace picopay::test {

bool DevChain::start(const std::vector<std::string>& keys) {
  int out[2], in[2];
  if (pipe(out) != 0 || pipe(in) != 0) {
    error_ = "pipe failed";
    return false;
  }
  std::vector<std::string> args = {PICOPAY_TEST_NODE, PICOPAY_TEST_DEVCHAIN_JS, "--watch-stdin"};
  for (const auto& k : keys) {
    args.push_back("--account");
    args.push_back(k + ",1000000000000000000000");
  }
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out[1], 1);
    dup2(in[0], 0);
    close(out[0]);
    close(in[1]);
    std::vector<char*> av;
    for (auto& a : args) av.push_back(const_cast<char*>(a.c_str()));
    av.push_back(nullptr);
    execv(av[0], av.data());
    _exit(127);
  }
  close(out[1]);
  close(in[0]);
  stdin_fd_ = in[1];
  std::string line;
  char c;
  struct pollfd p = {out[0], POLLIN, 0};
  while (true) {
    if (poll(&p, 1, 60000) <= 0) {
      error_ = "dev chain did not start within 60 s";
      break;
    }
    ssize_t n = read(out[0], &c, 1);
    if (n <= 0) {
      error_ = "dev chain exited before printing its URL";
      break;
    }
    if (c == '\n') break;
    line.push_back(c);
  }
  close(out[0]);
  auto at = line.find("\"url\":\"");
  if (at == std::string::npos) {
    if (error_.empty()) error_ = "unexpected dev chain output: " + line;
    stop();
    return false;
  }
  auto end = line.find('"', at + 7);
  url_ = line.substr(at + 7, end - at - 7);
  return true;
}

void DevChain::stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int st;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  if (stdin_fd_ >= 0) {
    close(stdin_fd_);
    stdin_fd_ = -1;
  }
}

}  // namespace picopay::test
