// Tests for port/posix: PosixStateStore (round trip, errors, corruption, leftover temp
// files, modes, crash atomicity under SIGKILL), PosixEntropy, PosixClock, PosixLog.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "picopay/port/posix.hpp"

using picopay::Status;
using picopay::port::LogLevel;
using picopay::port::PosixClock;
using picopay::port::PosixEntropy;
using picopay::port::PosixLog;
using picopay::port::PosixStateStore;

namespace {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents afterwards.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/picopay-port-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) std::abort();
    path_ = buf.data();
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<uint8_t> read_file(const std::string& p) {
  std::vector<uint8_t> out;
  FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) return out;
  int c;
  while ((c = std::fgetc(f)) != EOF) out.push_back(static_cast<uint8_t>(c));
  std::fclose(f);
  return out;
}

void write_file(const std::string& p, const std::vector<uint8_t>& data) {
  FILE* f = std::fopen(p.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  if (!data.empty()) {
    ASSERT_EQ(std::fwrite(data.data(), 1, data.size(), f), data.size());
  }
  std::fclose(f);
}

std::vector<uint8_t> bytes(const char* s) {
  return std::vector<uint8_t>(s, s + std::strlen(s));
}

}  // namespace

TEST(Crc32, CheckValue) {
  const uint8_t* s = reinterpret_cast<const uint8_t*>("123456789");
  EXPECT_EQ(picopay::port::crc32_ieee(0, s, 9), 0xCBF43926u);
  // Incremental == one shot.
  EXPECT_EQ(picopay::port::crc32_ieee(picopay::port::crc32_ieee(0, s, 4), s + 4, 5), 0xCBF43926u);
}

TEST(PosixStateStore, LoadBeforeSaveIsNotFound) {
  TempDir t;
  PosixStateStore store(t.path().c_str(), "channel.bin");
  uint8_t buf[16];
  size_t len = 99;
  EXPECT_EQ(store.load(buf, sizeof buf, &len), Status::NotFound);
  // Also when the directory itself does not exist yet.
  PosixStateStore nodir((t.path() + "/missing/sub").c_str(), "channel.bin");
  EXPECT_EQ(nodir.load(buf, sizeof buf, &len), Status::NotFound);
}

TEST(PosixStateStore, SaveLoadRoundTrip) {
  TempDir t;
  PosixStateStore store(t.path().c_str(), "channel.bin");
  ASSERT_EQ(store.config_status(), Status::Ok);
  const auto a = bytes("first record");
  ASSERT_EQ(store.save(a.data(), a.size()), Status::Ok);
  uint8_t buf[64];
  size_t len = 0;
  ASSERT_EQ(store.load(buf, sizeof buf, &len), Status::Ok);
  EXPECT_EQ(std::vector<uint8_t>(buf, buf + len), a);

  // Overwrite with a longer and then a shorter record; a second object sees the same.
  std::vector<uint8_t> big(5000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7 + 1);
  ASSERT_EQ(store.save(big.data(), big.size()), Status::Ok);
  PosixStateStore other(t.path().c_str(), "channel.bin");
  std::vector<uint8_t> out(big.size());
  ASSERT_EQ(other.load(out.data(), out.size(), &len), Status::Ok);
  EXPECT_EQ(len, big.size());
  EXPECT_EQ(out, big);

  const auto b = bytes("x");
  ASSERT_EQ(store.save(b.data(), b.size()), Status::Ok);
  ASSERT_EQ(store.load(buf, sizeof buf, &len), Status::Ok);
  EXPECT_EQ(std::vector<uint8_t>(buf, buf + len), b);

  // Empty record.
  ASSERT_EQ(store.save(nullptr, 0), Status::Ok);
  ASSERT_EQ(store.load(nullptr, 0, &len), Status::Ok);
  EXPECT_EQ(len, 0u);

  // File size = header + record + CRC.
  ASSERT_EQ(store.save(a.data(), a.size()), Status::Ok);
  EXPECT_EQ(read_file(store.record_path()).size(),
            PosixStateStore::kHeaderSize + a.size() + PosixStateStore::kTrailerSize);
}

// A write the file system refuses: save() returns IoError, last_errno() says why (here
// EFBIG from RLIMIT_FSIZE, the same path as ENOSPC on a full disk: a write(2) failing),
// and the previous record stays intact. Ok clears it.
TEST(PosixStateStore, FailedWriteKeepsTheRecordAndReportsErrno) {
  TempDir t;
  PosixStateStore store(t.path().c_str(), "channel.bin");
  const auto a = bytes("the previous record");
  ASSERT_EQ(store.save(a.data(), a.size()), Status::Ok);
  EXPECT_EQ(store.last_errno(), 0);
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  void (*old_handler)(int) = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 64;  // bytes a process may write into one file
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::vector<uint8_t> big(4096, 0x42);
  const Status st = store.save(big.data(), big.size());
  const int e = store.last_errno();
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old), 0);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(st, Status::IoError);
  EXPECT_EQ(e, EFBIG) << std::strerror(e);
  uint8_t buf[64];
  size_t len = 0;
  ASSERT_EQ(store.load(buf, sizeof buf, &len), Status::Ok);
  EXPECT_EQ(std::vector<uint8_t>(buf, buf + len), a);
  EXPECT_NE(::access(store.temp_path(), F_OK), 0) << "the temp file was left behind";
  ASSERT_EQ(store.save(a.data(), a.size()), Status::Ok);
  EXPECT_EQ(store.last_errno(), 0);
}

TEST(PosixStateStore, BufferTooSmallReportsNeededSize) {
  TempDir t;
  PosixStateStore store(t.path().c_str(), "channel.bin");
  std::vector<uint8_t> rec(10000, 0xAB);
  ASSERT_EQ(store.save(rec.data(), rec.size()), Status::Ok);
  uint8_t small[100];
  std::memset(small, 0x5A, sizeof small);
  size_t len = 0;
  EXPECT_EQ(store.load(small, sizeof small, &len), Status::BufferTooSmall);
  EXPECT_EQ(len, rec.size());
  for (uint8_t c : small) EXPECT_EQ(c, 0x5A);  // untouched
  len = 0;
  EXPECT_EQ(store.load(nullptr, 0, &len), Status::BufferTooSmall);
  EXPECT_EQ(len, rec.size());
  std::vector<uint8_t> exact(len);
  EXPECT_EQ(store.load(exact.data(), exact.size(), &len), Status::Ok);
  EXPECT_EQ(exact, rec);
}

TEST(PosixStateStore, TooLargeRecordIsOutOfBounds) {
  TempDir t;
  PosixStateStore store(t.path().c_str(), "channel.bin");
  std::vector<uint8_t> rec(PosixStateStore::kMaxRecordSize + 1, 1);
  EXPECT_EQ(store.save(rec.data(), rec.size()), Status::OutOfBounds);
  size_t len = 0;
  uint8_t b[1];
  EXPECT_EQ(store.load(b, 1, &len), Status::NotFound);
  rec.pop_back();
  EXPECT_EQ(store.save(rec.data(), rec.size()), Status::Ok);
}

TEST(PosixStateStore, BadConstructorArguments) {
  EXPECT_EQ(PosixStateStore("/tmp", "").config_status(), Status::BadArgs);
  EXPECT_EQ(PosixStateStore("/tmp", "a/b").config_status(), Status::BadArgs);
  EXPECT_EQ(PosixStateStore("/tmp", "..").config_status(), Status::BadArgs);
  EXPECT_EQ(PosixStateStore("", "x").config_status(), Status::BadArgs);
  EXPECT_EQ(PosixStateStore(nullptr, "x").config_status(), Status::BadArgs);
  std::string longdir(PosixStateStore::kMaxPath, 'd');
  PosixStateStore s(longdir.c_str(), "x");
  EXPECT_EQ(s.config_status(), Status::OutOfBounds);
  uint8_t b[1] = {0};
  size_t len = 0;
  EXPECT_EQ(s.save(b, 1), Status::OutOfBounds);
  EXPECT_EQ(s.load(b, 1, &len), Status::OutOfBounds);
}

TEST(PosixStateStore, CorruptedFileIsCorrupt) {
  TempDir t;
  PosixStateStore store(t.path().c_str(), "channel.bin");
  const auto rec = bytes("a channel state, 40 bytes or so, padded");
  ASSERT_EQ(store.save(rec.data(), rec.size()), Status::Ok);
  const auto good = read_file(store.record_path());
  uint8_t buf[256];
  size_t len = 0;

  // Every single-bit flip anywhere in the file is detected.
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bad = good;
      bad[i] ^= static_cast<uint8_t>(1u << bit);
      write_file(store.record_path(), bad);
      ASSERT_EQ(store.load(buf, sizeof buf, &len), Status::Corrupt) << "byte " << i << " bit " << bit;
    }
  }
  // Corrupt wins over BufferTooSmall.
  {
    auto bad = good;
    bad[PosixStateStore::kHeaderSize + 3] ^= 0xFF;
    write_file(store.record_path(), bad);
    EXPECT_EQ(store.load(buf, 2, &len), Status::Corrupt);
  }
  // Every truncation (including an empty file) is detected, and so is an appended byte.
  for (size_t n = 0; n < good.size(); ++n) {
    write_file(store.record_path(), std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(n)));
    ASSERT_EQ(store.load(buf, sizeof buf, &len), Status::Corrupt) << "truncated to " << n;
  }
  {
    auto longer = good;
    longer.push_back(0);
    write_file(store.record_path(), longer);
    EXPECT_EQ(store.load(buf, sizeof buf, &len), Status::Corrupt);
  }
  // Garbage of a plausible size.
  write_file(store.record_path(), std::vector<uint8_t>(good.size(), 0));
  EXPECT_EQ(store.load(buf, sizeof buf, &len), Status::Corrupt);
  // A following save repairs it.
  ASSERT_EQ(store.save(rec.data(), rec.size()), Status::Ok);
  ASSERT_EQ(store.load(buf, sizeof buf, &len), Status::Ok);
  EXPECT_EQ(std::vector<uint8_t>(buf, buf + len), rec);
}

TEST(PosixStateStore, LeftoverTempFileFromCrashIsHarmless) {
  TempDir t;
  PosixStateStore store(t.path().c_str(), "channel.bin");
  const auto rec = bytes("the committed record");
  ASSERT_EQ(store.save(rec.data(), rec.size()), Status::Ok);
  EXPECT_NE(::access(store.temp_path(), F_OK), 0);  // no temp file after a clean save

  // A "crash" mid-save leaves a half-written temp file, world-readable even.
  write_file(store.temp_path(), bytes("PPSR\x01 half written garbage"));
  ASSERT_EQ(::chmod(store.temp_path(), 0644), 0);
  uint8_t buf[128];
  size_t len = 0;
  ASSERT_EQ(store.load(buf, sizeof buf, &len), Status::Ok);
  EXPECT_EQ(std::vector<uint8_t>(buf, buf + len), rec);

  // A later save still works, leaves no temp file and a 0600 record.
  const auto rec2 = bytes("the next record");
  ASSERT_EQ(store.save(rec2.data(), rec2.size()), Status::Ok);
  ASSERT_EQ(store.load(buf, sizeof buf, &len), Status::Ok);
  EXPECT_EQ(std::vector<uint8_t>(buf, buf + len), rec2);
  EXPECT_NE(::access(store.temp_path(), F_OK), 0);

  // Even a leftover symlink named like the temp file is replaced, not followed.
  const std::string victim = t.path() + "/victim";
  write_file(victim, bytes("do not touch"));
  ASSERT_EQ(::symlink(victim.c_str(), store.temp_path()), 0);
  ASSERT_EQ(store.save(rec.data(), rec.size()), Status::Ok);
  EXPECT_EQ(read_file(victim), bytes("do not touch"));
  ASSERT_EQ(store.load(buf, sizeof buf, &len), Status::Ok);
  EXPECT_EQ(std::vector<uint8_t>(buf, buf + len), rec);
}

TEST(PosixStateStore, DirectoryAndFileModes) {
  TempDir t;
  const mode_t old = ::umask(0);  // even a permissive umask must not widen the modes
  const std::string dir = t.path() + "/state/deeper";
  PosixStateStore store(dir.c_str(), "channel.bin");
  const auto rec = bytes("r");
  const Status s = store.save(rec.data(), rec.size());
  ::umask(old);
  ASSERT_EQ(s, Status::Ok);
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(::stat((t.path() + "/state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(::stat(store.record_path(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  // A restrictive umask does not make the record unreadable for its owner either.
  const mode_t old2 = ::umask(0277);
  const Status s2 = store.save(rec.data(), rec.size());
  ::umask(old2);
  ASSERT_EQ(s2, Status::Ok);
  ASSERT_EQ(::stat(store.record_path(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  // The directory path being a regular file is an IoError.
  const std::string file = t.path() + "/plainfile";
  write_file(file, bytes("x"));
  PosixStateStore bad(file.c_str(), "channel.bin");
  EXPECT_EQ(bad.save(rec.data(), rec.size()), Status::IoError);
  EXPECT_EQ(bad.ensure_directory(), Status::IoError);
}

// Records the crash test's child writes: seq (8 bytes LE) then a body derived from seq
// with a seq-dependent length, so a torn or mixed record cannot pass the check.
static std::vector<uint8_t> crash_record(uint64_t seq) {
  const size_t n = 8 + static_cast<size_t>((seq * 2654435761u) % 3000u);
  std::vector<uint8_t> r(n);
  for (int i = 0; i < 8; ++i) r[static_cast<size_t>(i)] = static_cast<uint8_t>(seq >> (8 * i));
  uint64_t x = seq ^ 0x9E3779B97F4A7C15ull;
  for (size_t i = 8; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r[i] = static_cast<uint8_t>(x);
  }
  return r;
}

TEST(PosixStateStore, CrashAtomicityUnderSigkill) {
  TempDir t;
  const std::string dir = t.path() + "/crash";
  std::mt19937 rng(12345);
  constexpr int kRounds = 40;
  bool ever_saved = false;
  uint64_t last_seen = 0;
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t base = static_cast<uint64_t>(round + 1) * 1000000u;
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(ready[0]);
      PosixStateStore store(dir.c_str(), "channel.bin");
      for (uint64_t seq = base;; ++seq) {
        const auto r = crash_record(seq);
        if (store.save(r.data(), r.size()) != Status::Ok) ::_exit(3);
        if (seq == base) {  // tell the parent a first save of this round is durable
          const char c = 'k';
          if (::write(ready[1], &c, 1) != 1) ::_exit(4);
        }
      }
    }
    ::close(ready[1]);
    // Kill either right away (likely mid-first-save) or after a random delay.
    const auto delay_us = static_cast<useconds_t>(rng() % 4 == 0 ? 0 : rng() % 20000);
    if (delay_us > 0) ::usleep(delay_us);
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int wst = 0;
    ASSERT_EQ(::waitpid(pid, &wst, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wst)) << "child exited on its own, status " << wst;
    char c;
    const bool first_done = ::read(ready[0], &c, 1) == 1;
    ::close(ready[0]);
    ever_saved = ever_saved || first_done;

    PosixStateStore reader(dir.c_str(), "channel.bin");
    std::vector<uint8_t> buf(4096);
    size_t len = 0;
    const Status s = reader.load(buf.data(), buf.size(), &len);
    if (s == Status::NotFound) {
      ASSERT_FALSE(ever_saved) << "round " << round << ": a durable record vanished";
      continue;
    }
    ASSERT_EQ(s, Status::Ok) << "round " << round;
    ASSERT_GE(len, 8u);
    uint64_t seq = 0;
    for (int i = 0; i < 8; ++i) seq |= static_cast<uint64_t>(buf[static_cast<size_t>(i)]) << (8 * i);
    const auto expect = crash_record(seq);
    ASSERT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + static_cast<long>(len)), expect)
        << "round " << round << ": torn or foreign record (seq " << seq << ")";
    // It is one a child wrote: of this round or (if this round's first save did not
    // complete) an earlier one; never going back before what we saw last time.
    ASSERT_GE(seq, 1000000u);
    ASSERT_LT(seq, base + 1000000u);
    if (first_done) {
      ASSERT_GE(seq, base);
    }
    ASSERT_GE(seq, last_seen);
    last_seen = seq;
  }
  EXPECT_TRUE(ever_saved);
}

TEST(PosixEntropy, FillsDifferentBytes) {
  PosixEntropy e;
  uint8_t a[32] = {}, b[32] = {};
  ASSERT_EQ(e.fill(a, sizeof a), Status::Ok);
  ASSERT_EQ(e.fill(b, sizeof b), Status::Ok);
  EXPECT_NE(std::memcmp(a, b, sizeof a), 0);
  uint8_t zero[32] = {};
  EXPECT_NE(std::memcmp(a, zero, sizeof a), 0);
  EXPECT_EQ(e.fill(nullptr, 0), Status::Ok);
  // A large request (several getrandom calls may be needed) is filled completely:
  // no 64-byte window at the end stays zero.
  std::vector<uint8_t> big(1u << 20, 0);
  ASSERT_EQ(e.fill(big.data(), big.size()), Status::Ok);
  EXPECT_NE(std::memcmp(big.data() + big.size() - 32, zero, 32), 0);
}

TEST(PosixClock, MonotonicNeverGoesBack) {
  PosixClock c;
  uint64_t prev = c.monotonic_ms();
  for (int i = 0; i < 100000; ++i) {
    const uint64_t now = c.monotonic_ms();
    ASSERT_GE(now, prev);
    prev = now;
  }
  // The wall clock is after 2020-01-01 on any machine that runs these tests.
  EXPECT_GT(c.unix_seconds(), 1577836800u);
}

TEST(PosixLog, FormatAndFilter) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  PosixLog log(LogLevel::Info, fds[1]);
  log.write(LogLevel::Debug, "dropped");
  log.write(LogLevel::Info, "hello");
  log.write(LogLevel::Error, "two\nlines");
  log.set_min_level(LogLevel::Error);
  log.write(LogLevel::Warn, "dropped too");
  log.write(LogLevel::Error, nullptr);
  ::close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);

  std::vector<std::string> lines;
  size_t pos = 0, nl;
  while ((nl = out.find('\n', pos)) != std::string::npos) {
    lines.push_back(out.substr(pos, nl - pos));
    pos = nl + 1;
  }
  EXPECT_EQ(pos, out.size());
  ASSERT_EQ(lines.size(), 3u) << out;
  // "YYYY-MM-DDTHH:MM:SS.mmmZ "
  for (const auto& l : lines) {
    ASSERT_GE(l.size(), 25u);
    EXPECT_EQ(l[4], '-');
    EXPECT_EQ(l[7], '-');
    EXPECT_EQ(l[10], 'T');
    EXPECT_EQ(l[13], ':');
    EXPECT_EQ(l[16], ':');
    EXPECT_EQ(l[19], '.');
    EXPECT_EQ(l[23], 'Z');
    EXPECT_EQ(l[24], ' ');
  }
  EXPECT_EQ(lines[0].substr(25), "INFO hello");
  EXPECT_EQ(lines[1].substr(25), "ERROR two?lines");
  EXPECT_EQ(lines[2].substr(25), "ERROR ");
}

TEST(PosixLog, LongMessageIsCut) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  PosixLog log(LogLevel::Debug, fds[1]);
  std::string msg(PosixLog::kMaxMessage + 100, 'm');
  log.write(LogLevel::Debug, msg.c_str());
  ::close(fds[1]);
  std::string out;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  EXPECT_EQ(out.size(), 25 + std::strlen("DEBUG ") + PosixLog::kMaxMessage + 3 + 1);
  EXPECT_EQ(out.substr(out.size() - 4), "...\n");
}
