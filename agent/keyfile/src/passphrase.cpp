// passphrase_obtain: PICOPAY_PASSPHRASE, else the file named by PICOPAY_PASSPHRASE_FILE
// (a systemd credential), else /dev/tty with echo off (termios).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>

#include "picopay/keyfile.hpp"
#include "sodium_once.hpp"

namespace picopay {

namespace {

// Signals that would otherwise end or stop the process with echo still off: while the
// prompt is up they are caught, the terminal is restored, the old dispositions are put
// back and the signal is re-raised. They stay blocked except inside ppoll(), which
// unblocks them atomically while it waits, so a signal that arrives just before the wait
// still interrupts it (a plain read() would block forever if the handler ran first).
constexpr int kSignals[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGTSTP, SIGTTIN, SIGTTOU};
constexpr size_t kNumSignals = sizeof kSignals / sizeof kSignals[0];
volatile sig_atomic_t g_caught = 0;
sigset_t g_wait_mask;  // the caller's mask: what ppoll() waits with

extern "C" void on_signal(int sig) { g_caught = sig; }

void tty_write(int fd, const char* s) noexcept {
  size_t len = std::strlen(s);
  while (len > 0) {
    const ssize_t n = ::write(fd, s, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    s += n;
    len -= static_cast<size_t>(n);
  }
}

// Prompts and reads one line from the tty into out[0..cap), NUL-terminated.
// Ok, IoError (read error / end of file before a newline), BufferTooSmall (*len = needed).
Status read_line(int fd, const char* prompt, char* out, size_t cap, size_t* len) noexcept {
  tty_write(fd, prompt);
  size_t n = 0;       // bytes of the line seen
  bool eol = false;
  while (!eol) {
    char c;
    struct pollfd pfd {fd, POLLIN, 0};
    if (::ppoll(&pfd, 1, nullptr, &g_wait_mask) < 0) {
      if (errno == EINTR && g_caught == 0) continue;
      return Status::IoError;  // poll error, or interrupted by one of kSignals
    }
    const ssize_t r = ::read(fd, &c, 1);
    if (r < 0) {
      if (errno == EINTR && g_caught == 0) continue;
      return Status::IoError;  // read error, or interrupted by one of kSignals
    }
    if (r == 0) return Status::IoError;  // end of file without a newline
    if (c == '\n') {
      eol = true;
    } else {
      if (n < cap) out[n] = c;
      ++n;
    }
  }
  if (n > 0 && n <= cap && out[n - 1] == '\r') --n;
  if (n + 1 > cap) {
    *len = n + 1;
    return Status::BufferTooSmall;
  }
  out[n] = '\0';
  *len = n;
  return Status::Ok;
}

Status read_lines(int fd, char* out, size_t cap, size_t* len, bool confirm) noexcept;

Status from_tty(char* out, size_t cap, size_t* len, bool confirm) noexcept {
  // O_NOCTTY: never acquire a controlling terminal by accident. Without one, open()
  // fails (ENXIO): CI and daemons get IoError instead of a hang on stdin.
  const int fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return Status::IoError;
  struct termios saved {};
  if (::tcgetattr(fd, &saved) != 0) {
    ::close(fd);
    return Status::IoError;
  }
  g_caught = 0;
  struct sigaction act {};
  act.sa_handler = on_signal;
  sigemptyset(&act.sa_mask);
  act.sa_flags = 0;  // no SA_RESTART: a signal interrupts read()
  struct sigaction old_act[kNumSignals];
  // Block our signals; ppoll() waits with the caller's own mask (g_wait_mask), so they are
  // deliverable exactly while it waits (unless the caller itself blocks them).
  sigset_t block, caller_mask;
  sigemptyset(&block);
  for (size_t i = 0; i < kNumSignals; ++i) sigaddset(&block, kSignals[i]);
  ::sigprocmask(SIG_BLOCK, &block, &caller_mask);
  g_wait_mask = caller_mask;
  for (size_t i = 0; i < kNumSignals; ++i) {
    ::sigaction(kSignals[i], nullptr, &old_act[i]);
    if (old_act[i].sa_handler != SIG_IGN) ::sigaction(kSignals[i], &act, nullptr);  // keep ignored ones ignored
  }

  struct termios quiet = saved;
  quiet.c_lflag &= static_cast<tcflag_t>(~(ECHO | ECHOE | ECHOK));
  quiet.c_lflag |= ECHONL | ICANON;  // line editing on, the newline still echoed
  Status s = Status::IoError;
  if (::tcsetattr(fd, TCSAFLUSH, &quiet) == 0) {
    s = read_lines(fd, out, cap, len, confirm);
    ::tcsetattr(fd, TCSAFLUSH, &saved);
    if (g_caught != 0) tty_write(fd, "\n");
  }
  ::close(fd);
  for (size_t i = 0; i < kNumSignals; ++i) ::sigaction(kSignals[i], &old_act[i], nullptr);
  // The caller's mask again: a signal that came after the last wait is delivered now, with
  // the caller's disposition, the terminal already restored.
  ::sigprocmask(SIG_SETMASK, &caller_mask, nullptr);
  if (g_caught != 0) {
    s = Status::IoError;
    ::raise(g_caught);  // as the user asked; if it is ignored/handled we return IoError
  }
  return s;
}

// Both prompts (the terminal is already in no-echo mode).
Status read_lines(int fd, char* out, size_t cap, size_t* len, bool confirm) noexcept {
  Status s = read_line(fd, "Passphrase: ", out, cap, len);
  if (s == Status::Ok && confirm) {
    char* again = static_cast<char*>(::sodium_malloc(cap));  // guarded, wiped on free
    if (again == nullptr) {
      s = Status::IoError;
    } else {
      size_t len2 = 0;
      s = read_line(fd, "Confirm passphrase: ", again, cap, &len2);
      if (s == Status::BufferTooSmall) s = Status::BadArgs;  // longer than the first: differs
      if (s == Status::Ok && (len2 != *len || ::sodium_memcmp(again, out, len2) != 0)) {
        s = Status::BadArgs;
      }
      if (s == Status::BadArgs) {
        tty_write(fd, "Passphrases differ.\n");
      }
      ::sodium_free(again);
    }
  }
  return s;
}

// Reads the passphrase file `path` into out[0..cap) (see passphrase_obtain). `*needed`
// gets its length, or on BufferTooSmall the cap it needs.
Status from_file(const char* path, char* out, size_t cap, size_t* needed) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return Status::IoError;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & S_IRWXO) != 0) {
    ::close(fd);
    return Status::IoError;
  }
  size_t n = 0;
  bool eof = false;
  while (!eof) {
    char probe;
    char* dst = n < cap ? out + n : &probe;
    const size_t want = n < cap ? cap - n : 1;
    const ssize_t r = ::read(fd, dst, want);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      ::sodium_memzero(&probe, sizeof probe);
      ::close(fd);
      return Status::IoError;
    }
    if (r == 0) eof = true;
    else if (n < cap) n += static_cast<size_t>(r);
    else break;  // more than cap bytes
    ::sodium_memzero(&probe, sizeof probe);
  }
  ::close(fd);
  if (!eof) {
    *needed = static_cast<size_t>(st.st_size) + 1;
    return Status::BufferTooSmall;
  }
  if (n > 0 && out[n - 1] == '\n') {  // one trailing "\n" or "\r\n"
    --n;
    if (n > 0 && out[n - 1] == '\r') --n;
  }
  if (n + 1 > cap) {
    *needed = n + 1;
    return Status::BufferTooSmall;
  }
  out[n] = 0;
  *needed = n;
  return Status::Ok;
}

}  // namespace

Status passphrase_obtain(char* out, size_t cap, size_t* len, bool confirm) noexcept {
  if (out == nullptr || len == nullptr || cap == 0) return Status::BadArgs;
  if (!keyfile_detail::sodium_ready()) return Status::IoError;
  Status s;
  if (const char* env = ::getenv("PICOPAY_PASSPHRASE")) {
    const size_t n = std::strlen(env);
    if (n + 1 > cap) {
      ::sodium_memzero(out, cap);
      *len = n + 1;
      return Status::BufferTooSmall;
    }
    std::memcpy(out, env, n + 1);
    *len = n;
    s = Status::Ok;
  } else if (const char* file = ::getenv("PICOPAY_PASSPHRASE_FILE"); file != nullptr && *file != 0) {
    size_t needed = 0;
    s = from_file(file, out, cap, &needed);
    if (s == Status::BufferTooSmall) {
      ::sodium_memzero(out, cap);
      *len = needed;
      return s;
    }
    if (s == Status::Ok) *len = needed;
  } else {
    size_t needed = 0;
    s = from_tty(out, cap, &needed, confirm);
    if (s == Status::BufferTooSmall) {
      ::sodium_memzero(out, cap);
      *len = needed;
      return s;
    }
    if (s == Status::Ok) *len = needed;
  }
  if (s == Status::Ok && *len == 0) s = Status::OutOfBounds;
  if (s != Status::Ok) ::sodium_memzero(out, cap);
  return s;
}

}  // namespace picopay
