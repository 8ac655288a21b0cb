// Test fixture helper: starts contracts/scripts/devchain.js (ganache) on 127.0.0.1 with
// the given funded keys and stops it on destruction.
#pragma once
#include <string>
#include <vector>
#include <sys/types.h>

namespace picopay::test {

class DevChain {
 public:
  // keys: 0x-hex private keys, each funded with 1000 ETH. Returns false (and sets
  // error()) if the chain did not start.
  bool start(const std::vector<std::string>& keys);
  void stop();
  ~DevChain() { stop(); }
  const std::string& url() const { return url_; }
  const std::string& error() const { return error_; }

 private:
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  std::string url_, error_;
};

}  // namespace picopay::test
