// PosixEntropy (getrandom(2)) and PosixClock (clock_gettime(2)).
#include <errno.h>
#include <sys/random.h>
#include <time.h>

#include <cstring>

#include "picopay/port/posix.hpp"

namespace picopay::port {

Status PosixEntropy::fill(uint8_t* out, size_t len) noexcept {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::getrandom(out + done, len - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::memset(out, 0, len);  // never leave partial randomness behind
      return Status::IoError;
    }
    done += static_cast<size_t>(n);  // short read (large requests, signals): loop
  }
  return Status::Ok;
}

namespace {
bool read_clock(clockid_t id, struct timespec& ts) noexcept {
  return ::clock_gettime(id, &ts) == 0 && ts.tv_sec >= 0 && ts.tv_nsec >= 0;
}
}  // namespace

uint64_t PosixClock::monotonic_ms() noexcept {
  struct timespec ts {};
  if (!read_clock(CLOCK_MONOTONIC, ts)) return 0;
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

uint64_t PosixClock::unix_seconds() noexcept {
  struct timespec ts {};
  if (!read_clock(CLOCK_REALTIME, ts)) return 0;
  return static_cast<uint64_t>(ts.tv_sec);
}

}  // namespace picopay::port
