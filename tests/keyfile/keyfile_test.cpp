// Tests for agent/keyfile: sealed key files (round trip, wrong passphrase, tampering,
// truncation, mode, no overwrite) and passphrase_obtain (environment, no tty, a pty).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "picopay/keyfile.hpp"

using picopay::KdfStrength;
using picopay::kKeyfileSize;
using picopay::PrivateKey;
using picopay::Status;

namespace {

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/picopay-keyfile-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) std::abort();
    path_ = buf.data();
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string file(const char* name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::vector<uint8_t> slurp(const std::string& p) {
  std::vector<uint8_t> out;
  FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) return out;
  int c;
  while ((c = std::fgetc(f)) != EOF) out.push_back(static_cast<uint8_t>(c));
  std::fclose(f);
  return out;
}

void spit(const std::string& p, const std::vector<uint8_t>& d) {
  FILE* f = std::fopen(p.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  if (!d.empty()) {
    ASSERT_EQ(std::fwrite(d.data(), 1, d.size(), f), d.size());
  }
  std::fclose(f);
}

PrivateKey test_key() {
  PrivateKey k{};
  for (size_t i = 0; i < sizeof k.bytes; ++i) k.bytes[i] = static_cast<uint8_t>(0x22 + i);
  return k;
}

const char kPass[] = "correct horse battery staple";
const size_t kPassLen = sizeof kPass - 1;

bool all_zero(const PrivateKey& k) {
  for (uint8_t b : k.bytes)
    if (b != 0) return false;
  return true;
}

}  // namespace

TEST(Keyfile, WriteReadRoundTrip) {
  TempDir t;
  const std::string p = t.file("key.ppkey");
  const PrivateKey key = test_key();
  ASSERT_EQ(picopay::keyfile_write(p.c_str(), key, kPass, kPassLen), Status::Ok);
  const auto bytes = slurp(p);
  ASSERT_EQ(bytes.size(), kKeyfileSize);
  EXPECT_EQ(std::memcmp(bytes.data(), "PPKEY1", 6), 0);
  EXPECT_EQ(bytes[6], picopay::kKeyfileVersion);
  // The key does not appear in clear.
  EXPECT_EQ(std::search(bytes.begin(), bytes.end(), key.bytes, key.bytes + 32), bytes.end());

  PrivateKey out{};
  ASSERT_EQ(picopay::keyfile_read(p.c_str(), kPass, kPassLen, out), Status::Ok);
  EXPECT_EQ(std::memcmp(out.bytes, key.bytes, 32), 0);

  // No temp file is left next to it.
  EXPECT_EQ(std::system(("test $(ls -A '" + t.file("") + "' | wc -l) -eq 1").c_str()), 0);
}

TEST(Keyfile, TwoWritesDifferInSaltNonceAndCiphertext) {
  TempDir t;
  const PrivateKey key = test_key();
  ASSERT_EQ(picopay::keyfile_write(t.file("a").c_str(), key, kPass, kPassLen), Status::Ok);
  ASSERT_EQ(picopay::keyfile_write(t.file("b").c_str(), key, kPass, kPassLen), Status::Ok);
  const auto a = slurp(t.file("a")), b = slurp(t.file("b"));
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), 20), 0);         // same header and params
  EXPECT_NE(std::memcmp(a.data() + 20, b.data() + 20, 16), 0);  // salt
  EXPECT_NE(std::memcmp(a.data() + 36, b.data() + 36, 24), 0);  // nonce
  EXPECT_NE(std::memcmp(a.data() + 60, b.data() + 60, 48), 0);  // sealed key
}

TEST(Keyfile, WrongPassphraseRefused) {
  TempDir t;
  const std::string p = t.file("key");
  ASSERT_EQ(picopay::keyfile_write(p.c_str(), test_key(), kPass, kPassLen), Status::Ok);
  PrivateKey out;
  std::memset(out.bytes, 0xEE, sizeof out.bytes);
  EXPECT_EQ(picopay::keyfile_read(p.c_str(), "correct horse battery stapler", kPassLen + 1, out),
            Status::Corrupt);
  EXPECT_TRUE(all_zero(out));
  EXPECT_EQ(picopay::keyfile_read(p.c_str(), kPass, kPassLen - 1, out), Status::Corrupt);
  EXPECT_EQ(picopay::keyfile_read(p.c_str(), "", 0, out), Status::Corrupt);
}

TEST(Keyfile, TamperedFileRefused) {
  TempDir t;
  const std::string p = t.file("key");
  ASSERT_EQ(picopay::keyfile_write(p.c_str(), test_key(), kPass, kPassLen), Status::Ok);
  const auto good = slurp(p);
  // A flipped bit in the ciphertext, the MAC, the nonce, the salt, the opslimit.
  for (size_t off : {kKeyfileSize - 1, size_t{60}, size_t{40}, size_t{25}, size_t{8}}) {
    auto bad = good;
    bad[off] ^= 0x01;
    spit(p, bad);
    PrivateKey out;
    EXPECT_EQ(picopay::keyfile_read(p.c_str(), kPass, kPassLen, out), Status::Corrupt) << "offset " << off;
    EXPECT_TRUE(all_zero(out));
  }
  // Malformed headers, refused before any key derivation.
  struct Case {
    size_t off;
    uint8_t val;
    Status want;
  };
  for (const Case& c : {Case{0, 'X', Status::Corrupt}, Case{6, 2, Status::BadVersion},
                        Case{7, 1, Status::Corrupt}, Case{19, 0x80, Status::Corrupt} /* 2^63 B */,
                        Case{11, 0x80, Status::Corrupt} /* 2^31 passes */}) {
    auto bad = good;
    bad[c.off] = c.val;
    spit(p, bad);
    PrivateKey out;
    EXPECT_EQ(picopay::keyfile_read(p.c_str(), kPass, kPassLen, out), c.want) << "offset " << c.off;
  }
  spit(p, good);
  PrivateKey out;
  EXPECT_EQ(picopay::keyfile_read(p.c_str(), kPass, kPassLen, out), Status::Ok);
}

TEST(Keyfile, TruncatedOrExtendedFileRefused) {
  TempDir t;
  const std::string p = t.file("key");
  ASSERT_EQ(picopay::keyfile_write(p.c_str(), test_key(), kPass, kPassLen), Status::Ok);
  const auto good = slurp(p);
  PrivateKey out;
  for (size_t n : {size_t{0}, size_t{6}, size_t{60}, kKeyfileSize - 1}) {
    spit(p, std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(n)));
    EXPECT_EQ(picopay::keyfile_read(p.c_str(), kPass, kPassLen, out), Status::Corrupt) << n;
  }
  auto longer = good;
  longer.push_back(0);
  spit(p, longer);
  EXPECT_EQ(picopay::keyfile_read(p.c_str(), kPass, kPassLen, out), Status::Corrupt);
}

TEST(Keyfile, MissingFileIsIoError) {
  TempDir t;
  PrivateKey out;
  EXPECT_EQ(picopay::keyfile_read(t.file("nope").c_str(), kPass, kPassLen, out), Status::IoError);
  // Writing into a missing directory fails cleanly too.
  EXPECT_EQ(picopay::keyfile_write(t.file("no/such/dir/key").c_str(), test_key(), kPass, kPassLen),
            Status::IoError);
}

TEST(Keyfile, FileModeIs0600) {
  TempDir t;
  const std::string p = t.file("key");
  const mode_t old = ::umask(0);
  const Status s = picopay::keyfile_write(p.c_str(), test_key(), kPass, kPassLen);
  ::umask(old);
  ASSERT_EQ(s, Status::Ok);
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(Keyfile, RefusesToOverwrite) {
  TempDir t;
  const std::string p = t.file("key");
  ASSERT_EQ(picopay::keyfile_write(p.c_str(), test_key(), kPass, kPassLen), Status::Ok);
  const auto before = slurp(p);
  PrivateKey other{};
  other.bytes[31] = 7;
  EXPECT_EQ(picopay::keyfile_write(p.c_str(), other, "x", 1), Status::IoError);
  EXPECT_EQ(slurp(p), before);
  // Also a dangling symlink in the way is not followed or replaced.
  const std::string link = t.file("link");
  ASSERT_EQ(::symlink(t.file("target").c_str(), link.c_str()), 0);
  EXPECT_EQ(picopay::keyfile_write(link.c_str(), other, "x", 1), Status::IoError);
  EXPECT_NE(::access(t.file("target").c_str(), F_OK), 0);
}

TEST(Keyfile, BadArguments) {
  TempDir t;
  EXPECT_EQ(picopay::keyfile_write(t.file("k").c_str(), test_key(), kPass, 0), Status::OutOfBounds);
  EXPECT_EQ(picopay::keyfile_write(nullptr, test_key(), kPass, kPassLen), Status::BadArgs);
  EXPECT_EQ(picopay::keyfile_write(t.file("k").c_str(), test_key(), nullptr, 3), Status::BadArgs);
  EXPECT_NE(::access(t.file("k").c_str(), F_OK), 0);
}

TEST(Keyfile, ModerateStrengthRoundTrip) {
  TempDir t;
  const std::string p = t.file("key");
  ASSERT_EQ(picopay::keyfile_write(p.c_str(), test_key(), kPass, kPassLen, KdfStrength::Moderate),
            Status::Ok);
  const auto bytes = slurp(p);
  ASSERT_EQ(bytes.size(), kKeyfileSize);
  EXPECT_EQ(bytes[8], 3);  // OPSLIMIT_MODERATE
  EXPECT_EQ(bytes[12] | bytes[13] << 8 | bytes[14] << 16 | bytes[15] << 24, 256 << 20);
  PrivateKey out{};
  ASSERT_EQ(picopay::keyfile_read(p.c_str(), kPass, kPassLen, out), Status::Ok);
  const PrivateKey key = test_key();
  EXPECT_EQ(std::memcmp(out.bytes, key.bytes, 32), 0);
}

// --- passphrase_obtain ------------------------------------------------------------------

class PassEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* v = std::getenv("PICOPAY_PASSPHRASE");
    had_ = v != nullptr;
    if (had_) saved_ = v;
    const char* f = std::getenv("PICOPAY_PASSPHRASE_FILE");
    had_file_ = f != nullptr;
    if (had_file_) saved_file_ = f;
    ::unsetenv("PICOPAY_PASSPHRASE_FILE");
  }
  void TearDown() override {
    if (had_) {
      ::setenv("PICOPAY_PASSPHRASE", saved_.c_str(), 1);
    } else {
      ::unsetenv("PICOPAY_PASSPHRASE");
    }
    if (had_file_) {
      ::setenv("PICOPAY_PASSPHRASE_FILE", saved_file_.c_str(), 1);
    } else {
      ::unsetenv("PICOPAY_PASSPHRASE_FILE");
    }
  }
  bool had_ = false;
  std::string saved_;
  bool had_file_ = false;
  std::string saved_file_;
};

// Writes `content` to `path` with `mode` (as a systemd credential file would be).
void write_mode(const std::string& path, const std::string& content, mode_t mode) {
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  ASSERT_EQ(::fchmod(fd, mode), 0);
  ::close(fd);
}

// PICOPAY_PASSPHRASE_FILE (systemd LoadCredential=): the file's content minus one
// trailing newline opens the key file; the variable wins over the file.
TEST_F(PassEnv, PassphraseFileOpensKeyfile) {
  TempDir t;
  ::unsetenv("PICOPAY_PASSPHRASE");
  const std::string cred = t.file("passphrase");
  write_mode(cred, std::string(kPass) + "\n", 0400);
  ASSERT_EQ(::setenv("PICOPAY_PASSPHRASE_FILE", cred.c_str(), 1), 0);
  char buf[128];
  size_t len = 0;
  ASSERT_EQ(picopay::passphrase_obtain(buf, sizeof buf, &len, true), Status::Ok);
  EXPECT_EQ(len, kPassLen);
  EXPECT_EQ(std::string(buf, len), std::string(kPass, kPassLen));
  const std::string p = t.file("key");
  ASSERT_EQ(picopay::keyfile_write(p.c_str(), test_key(), buf, len), Status::Ok);
  PrivateKey out{};
  ASSERT_EQ(picopay::keyfile_read(p.c_str(), kPass, kPassLen, out), Status::Ok);

  // CRLF and no newline at all read the same; only ONE newline is dropped.
  write_mode(cred, std::string(kPass) + "\r\n", 0400);
  ASSERT_EQ(picopay::passphrase_obtain(buf, sizeof buf, &len, false), Status::Ok);
  EXPECT_EQ(std::string(buf, len), std::string(kPass, kPassLen));
  write_mode(cred, std::string(kPass), 0400);
  ASSERT_EQ(picopay::passphrase_obtain(buf, sizeof buf, &len, false), Status::Ok);
  EXPECT_EQ(std::string(buf, len), std::string(kPass, kPassLen));
  write_mode(cred, "ends in cr\r", 0400);  // a lone "\r" is part of the passphrase
  ASSERT_EQ(picopay::passphrase_obtain(buf, sizeof buf, &len, false), Status::Ok);
  EXPECT_EQ(std::string(buf, len), "ends in cr\r");
  write_mode(cred, "two\n\n", 0400);
  ASSERT_EQ(picopay::passphrase_obtain(buf, sizeof buf, &len, false), Status::Ok);
  EXPECT_EQ(std::string(buf, len), "two\n");

  // The environment variable wins over the file.
  ASSERT_EQ(::setenv("PICOPAY_PASSPHRASE", "from the env", 1), 0);
  ASSERT_EQ(picopay::passphrase_obtain(buf, sizeof buf, &len, false), Status::Ok);
  EXPECT_STREQ(buf, "from the env");
}

// A missing, world-accessible, non-regular, empty or oversized passphrase file is refused
// and the buffer is wiped; none of them falls back to another source.
TEST_F(PassEnv, PassphraseFileRefusals) {
  TempDir t;
  ::unsetenv("PICOPAY_PASSPHRASE");
  const std::string cred = t.file("passphrase");
  char buf[16];
  size_t len = 0;
  auto obtain = [&]() {
    std::memset(buf, 'z', sizeof buf);
    return picopay::passphrase_obtain(buf, sizeof buf, &len, false);
  };
  auto wiped = [&]() {
    for (char c : buf) if (c != 0) return false;
    return true;
  };
  ASSERT_EQ(::setenv("PICOPAY_PASSPHRASE_FILE", cred.c_str(), 1), 0);
  EXPECT_EQ(obtain(), Status::IoError);  // missing
  EXPECT_TRUE(wiped());

  write_mode(cred, "secret words\n", 0604);  // readable by other users
  EXPECT_EQ(obtain(), Status::IoError);
  EXPECT_TRUE(wiped());

  write_mode(cred, "\n", 0400);  // empty passphrase
  EXPECT_EQ(obtain(), Status::OutOfBounds);
  EXPECT_TRUE(wiped());

  write_mode(cred, "0123456789abcdef-and-more\n", 0400);  // needs more than 15 bytes
  EXPECT_EQ(obtain(), Status::BufferTooSmall);
  EXPECT_GE(len, 26u);
  EXPECT_TRUE(wiped());

  write_mode(cred, "0123456789abcde\n", 0400);  // exactly 15 + newline fits
  EXPECT_EQ(obtain(), Status::Ok);
  EXPECT_EQ(len, 15u);

  ASSERT_EQ(::setenv("PICOPAY_PASSPHRASE_FILE", t.file("").c_str(), 1), 0);  // a directory
  EXPECT_EQ(obtain(), Status::IoError);
  EXPECT_TRUE(wiped());
}

TEST_F(PassEnv, EnvironmentVariableHonoured) {
  ASSERT_EQ(::setenv("PICOPAY_PASSPHRASE", "from the env", 1), 0);
  char buf[64];
  size_t len = 0;
  ASSERT_EQ(picopay::passphrase_obtain(buf, sizeof buf, &len, true), Status::Ok);
  EXPECT_EQ(len, 12u);
  EXPECT_STREQ(buf, "from the env");

  // Too small: needed size (with the NUL) reported, buffer wiped.
  char small[5];
  std::memset(small, 'z', sizeof small);
  EXPECT_EQ(picopay::passphrase_obtain(small, sizeof small, &len, false), Status::BufferTooSmall);
  EXPECT_EQ(len, 13u);
  for (char c : small) EXPECT_EQ(c, 0);

  // Empty passphrase refused.
  ASSERT_EQ(::setenv("PICOPAY_PASSPHRASE", "", 1), 0);
  EXPECT_EQ(picopay::passphrase_obtain(buf, sizeof buf, &len, false), Status::OutOfBounds);
  EXPECT_EQ(picopay::passphrase_obtain(nullptr, 0, &len, false), Status::BadArgs);
}

TEST_F(PassEnv, EnvPassphraseOpensKeyfile) {
  TempDir t;
  ASSERT_EQ(::setenv("PICOPAY_PASSPHRASE", kPass, 1), 0);
  char buf[128];
  size_t len = 0;
  ASSERT_EQ(picopay::passphrase_obtain(buf, sizeof buf, &len, false), Status::Ok);
  const std::string p = t.file("key");
  ASSERT_EQ(picopay::keyfile_write(p.c_str(), test_key(), buf, len), Status::Ok);
  PrivateKey out{};
  ASSERT_EQ(picopay::keyfile_read(p.c_str(), kPass, kPassLen, out), Status::Ok);
}

// Without a controlling terminal (a new session, like a daemon or CI job) and without
// the variable, the call fails with IoError instead of blocking. Run in a child; an
// alarm turns a hang into a failure.
TEST_F(PassEnv, NoTerminalIsIoErrorNotAHang) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(20);
    if (::setsid() < 0) ::_exit(10);
    ::unsetenv("PICOPAY_PASSPHRASE");
    char buf[64];
    std::memset(buf, 'q', sizeof buf);
    size_t len = 0;
    const Status s = picopay::passphrase_obtain(buf, sizeof buf, &len, false);
    if (s != Status::IoError) ::_exit(11);
    for (char c : buf)
      if (c != 0) ::_exit(12);
    ::_exit(0);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st)) << "child killed (hang?) status " << st;
  EXPECT_EQ(WEXITSTATUS(st), 0);
}

namespace {

// Reads from the pty master until `needle` has appeared in `acc` (or EOF / 20 s idle).
bool read_until(int master, std::string& acc, const char* needle) {
  while (acc.find(needle) == std::string::npos) {
    struct pollfd p {master, POLLIN, 0};
    if (::poll(&p, 1, 20000) <= 0) return false;
    char b[256];
    const ssize_t n = ::read(master, b, sizeof b);
    if (n <= 0) return false;
    acc.append(b, static_cast<size_t>(n));
  }
  return true;
}

// Runs passphrase_obtain(confirm) in a child whose controlling terminal is a new pty,
// types `first` and `second`; returns the child's status and its passphrase.
void run_on_pty(const char* first, const char* second, Status& status, std::string& got,
                std::string& screen) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const std::string slave = ::ptsname(master);
  int res[2];
  ASSERT_EQ(::pipe(res), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(30);
    ::close(master);
    ::close(res[0]);
    ::unsetenv("PICOPAY_PASSPHRASE");
    if (::setsid() < 0) ::_exit(10);
    const int s = ::open(slave.c_str(), O_RDWR);
    if (s < 0 || ::ioctl(s, TIOCSCTTY, 0) != 0) ::_exit(11);
    char buf[64];
    size_t len = 0;
    const Status st = picopay::passphrase_obtain(buf, sizeof buf, &len, second != nullptr);
    char out[80];
    out[0] = static_cast<char>(st);
    size_t n = 1;
    if (st == Status::Ok) {
      std::memcpy(out + 1, buf, len);
      n += len;
    }
    if (::write(res[1], out, n) != static_cast<ssize_t>(n)) ::_exit(12);
    ::_exit(0);
  }
  ::close(res[1]);
  screen.clear();
  ASSERT_TRUE(read_until(master, screen, "Passphrase: ")) << screen;
  ASSERT_EQ(::write(master, first, std::strlen(first)), static_cast<ssize_t>(std::strlen(first)));
  if (second != nullptr) {
    ASSERT_TRUE(read_until(master, screen, "Confirm passphrase: ")) << screen;
    ASSERT_EQ(::write(master, second, std::strlen(second)), static_cast<ssize_t>(std::strlen(second)));
  }
  char out[80];
  ssize_t n = 0, r;
  while ((r = ::read(res[0], out + n, sizeof out - static_cast<size_t>(n))) > 0) n += r;
  ::close(res[0]);
  int wst = 0;
  ASSERT_EQ(::waitpid(pid, &wst, 0), pid);
  ASSERT_TRUE(WIFEXITED(wst) && WEXITSTATUS(wst) == 0) << "child status " << wst;
  ASSERT_GE(n, 1);
  // Drain what the child echoed after the last prompt (a newline at most).
  struct pollfd p {master, POLLIN, 0};
  while (::poll(&p, 1, 0) > 0) {
    char b[256];
    const ssize_t m = ::read(master, b, sizeof b);
    if (m <= 0) break;
    screen.append(b, static_cast<size_t>(m));
  }
  ::close(master);
  status = static_cast<Status>(out[0]);
  got.assign(out + 1, static_cast<size_t>(n - 1));
}

}  // namespace

TEST_F(PassEnv, TerminalPromptWithEchoOff) {
  Status s;
  std::string got, screen;
  run_on_pty("s3cret typed\n", "s3cret typed\n", s, got, screen);
  EXPECT_EQ(s, Status::Ok);
  EXPECT_EQ(got, "s3cret typed");
  EXPECT_EQ(screen.find("s3cret"), std::string::npos) << "echoed: " << screen;

  run_on_pty("one\n", "two\n", s, got, screen);
  EXPECT_EQ(s, Status::BadArgs);
  EXPECT_EQ(screen.find("one"), std::string::npos);

  run_on_pty("no confirm\n", nullptr, s, got, screen);
  EXPECT_EQ(s, Status::Ok);
  EXPECT_EQ(got, "no confirm");
}

// Ctrl-C at the prompt kills the program as usual, but with the terminal's echo restored.
TEST_F(PassEnv, InterruptAtPromptRestoresEcho) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const std::string slave = ::ptsname(master);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(30);
    ::close(master);
    ::unsetenv("PICOPAY_PASSPHRASE");
    // Whatever the test runner left us (SIGINT ignored in background jobs, or blocked),
    // Ctrl-C must be deliverable with its default action.
    ::signal(SIGINT, SIG_DFL);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGINT);
    ::sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
    if (::setsid() < 0) ::_exit(10);
    const int s = ::open(slave.c_str(), O_RDWR);
    if (s < 0 || ::ioctl(s, TIOCSCTTY, 0) != 0) ::_exit(11);
    char buf[64];
    size_t len = 0;
    (void)picopay::passphrase_obtain(buf, sizeof buf, &len, false);
    ::_exit(12);  // not reached: SIGINT ends the child
  }
  // Keep the slave open here so its termios survive the child for inspection.
  const int keep = ::open(slave.c_str(), O_RDWR | O_NOCTTY);
  ASSERT_GE(keep, 0);
  std::string screen;
  ASSERT_TRUE(read_until(master, screen, "Passphrase: ")) << screen;
  struct termios during {};
  ASSERT_EQ(::tcgetattr(keep, &during), 0);
  EXPECT_EQ(during.c_lflag & ECHO, 0u);
  const char partial[] = "half typed";
  ASSERT_EQ(::write(master, partial, sizeof partial - 1), static_cast<ssize_t>(sizeof partial - 1));
  const char intr = static_cast<char>(during.c_cc[VINTR]);  // Ctrl-C
  ASSERT_EQ(::write(master, &intr, 1), 1);
  int wst = 0;
  ASSERT_EQ(::waitpid(pid, &wst, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(wst)) << "status " << wst;
  EXPECT_EQ(WTERMSIG(wst), SIGINT);
  struct termios after {};
  ASSERT_EQ(::tcgetattr(keep, &after), 0);
  EXPECT_NE(after.c_lflag & ECHO, 0u);
  EXPECT_EQ(screen.find("half"), std::string::npos);
  ::close(keep);
  ::close(master);
}
