// Small helpers the end-to-end suites share (header only): waiting for a condition with a
// bound, writing a whole string to a pipe (a meter's stdin).
#pragma once

#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace picopay::testsupport {

// Calls `f` every 100 ms until it returns true (true) or `timeout_ms` has passed (false).
inline bool poll_until(const std::function<bool()>& f, int timeout_ms) {
  for (int w = 0; w <= timeout_ms; w += 100) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// Writes all of `s` to `fd` (stops at the first error: the reader went away).
inline void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace picopay::testsupport
