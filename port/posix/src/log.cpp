// PosixLog: one ISO-8601-UTC-stamped line per message, one writev(2) per line.
#include <errno.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "picopay/port/posix.hpp"

namespace picopay::port {

const char* log_level_name(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::Debug: return "DEBUG";
    case LogLevel::Info: return "INFO";
    case LogLevel::Warn: return "WARN";
    case LogLevel::Error: return "ERROR";
  }
  return "?";
}

void PosixLog::write(LogLevel level, const char* msg) noexcept {
  if (static_cast<uint8_t>(level) < static_cast<uint8_t>(min_)) return;
  if (msg == nullptr) msg = "";

  // "YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL "
  char prefix[64];
  struct timespec ts {};
  struct tm tm {};
  if (::clock_gettime(CLOCK_REALTIME, &ts) != 0) ts = {};
  const time_t secs = ts.tv_sec;
  if (::gmtime_r(&secs, &tm) == nullptr) tm = {};
  const int n = std::snprintf(prefix, sizeof prefix, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                              tm.tm_min, tm.tm_sec, static_cast<long>(ts.tv_nsec / 1000000),
                              log_level_name(level));
  const size_t plen = n < 0 ? 0 : (static_cast<size_t>(n) < sizeof prefix ? static_cast<size_t>(n) : sizeof prefix - 1);

  // The message, one line: control characters become '?', cut at kMaxMessage + "...".
  char body[kMaxMessage + 4];
  size_t blen = 0;
  const char* p = msg;
  while (*p != '\0' && blen < kMaxMessage) {
    const unsigned char c = static_cast<unsigned char>(*p++);
    body[blen++] = (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (*p != '\0') {
    std::memcpy(body + blen, "...", 3);
    blen += 3;
  }
  body[blen++] = '\n';

  struct iovec iov[2];
  iov[0].iov_base = prefix;
  iov[0].iov_len = plen;
  iov[1].iov_base = body;
  iov[1].iov_len = blen;
  struct iovec* v = iov;
  int cnt = 2;
  while (cnt > 0) {
    const ssize_t w = ::writev(fd_, v, cnt);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // a log never fails its caller
    }
    size_t left = static_cast<size_t>(w);
    while (cnt > 0 && left >= v->iov_len) {
      left -= v->iov_len;
      ++v;
      --cnt;
    }
    if (cnt > 0) {
      v->iov_base = static_cast<char*>(v->iov_base) + left;
      v->iov_len -= left;
    }
  }
}

}  // namespace picopay::port
