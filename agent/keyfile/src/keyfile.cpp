// keyfile_write / keyfile_read: Argon2id + crypto_secretbox_easy (format in keyfile.hpp).
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>  // renameat2, RENAME_NOREPLACE (glibc >= 2.28)
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "picopay/keyfile.hpp"
#include "picopay/port/posix.hpp"
#include "sodium_once.hpp"

namespace picopay {

namespace {

constexpr uint8_t kMagic[6] = {'P', 'P', 'K', 'E', 'Y', '1'};
constexpr size_t kOffVersion = 6;
constexpr size_t kOffAlg = 7;
constexpr size_t kOffOps = 8;
constexpr size_t kOffMem = 12;
constexpr size_t kOffSalt = 20;
constexpr size_t kOffNonce = kOffSalt + crypto_pwhash_SALTBYTES;
constexpr size_t kOffBox = kOffNonce + crypto_secretbox_NONCEBYTES;
constexpr size_t kKeyBytes = sizeof(PrivateKey::bytes);
static_assert(kKeyBytes == 32, "secp256k1 key");
static_assert(crypto_secretbox_KEYBYTES == 32, "secretbox key");
static_assert(kOffBox + crypto_secretbox_MACBYTES + kKeyBytes == kKeyfileSize, "format size");
constexpr uint8_t kAlgArgon2id13 = 2;
static_assert(crypto_pwhash_ALG_ARGON2ID13 == kAlgArgon2id13, "libsodium algorithm id");

void put_le(uint8_t* p, uint64_t v, size_t n) noexcept {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_le(const uint8_t* p, size_t n) noexcept {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// Publishes tmp as path unless path exists. True on success; errno set otherwise.
bool publish_noreplace(const char* tmp, const char* path) noexcept {
  if (::renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) return true;
  if (errno != EINVAL && errno != ENOSYS) return false;  // EEXIST included
  // File system without RENAME_NOREPLACE: link(2) fails with EEXIST just as atomically.
  if (::link(tmp, path) != 0) return false;
  ::unlink(tmp);
  return true;
}

void kdf_params(KdfStrength s, uint64_t& ops, uint64_t& mem) noexcept {
  if (s == KdfStrength::Moderate) {
    ops = crypto_pwhash_OPSLIMIT_MODERATE;
    mem = crypto_pwhash_MEMLIMIT_MODERATE;
  } else {
    ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
  }
}

}  // namespace

Status keyfile_write(const char* path, const PrivateKey& key, const char* passphrase,
                     size_t passphrase_len, KdfStrength strength) noexcept {
  if (path == nullptr || path[0] == '\0' || passphrase == nullptr) return Status::BadArgs;
  if (passphrase_len == 0 || passphrase_len > crypto_pwhash_PASSWD_MAX) return Status::OutOfBounds;
  if (!keyfile_detail::sodium_ready()) return Status::IoError;

  struct stat st {};
  if (::lstat(path, &st) == 0 || errno != ENOENT) return Status::IoError;  // exists: refuse

  char tmp[PATH_MAX];
  static const char kSuffix[] = ".tmp.XXXXXX";
  const size_t plen = std::strlen(path);
  if (plen + sizeof kSuffix > sizeof tmp) return Status::IoError;
  std::memcpy(tmp, path, plen);
  std::memcpy(tmp + plen, kSuffix, sizeof kSuffix);

  uint64_t ops = 0, mem = 0;
  kdf_params(strength, ops, mem);
  uint8_t file[kKeyfileSize] = {};
  std::memcpy(file, kMagic, sizeof kMagic);
  file[kOffVersion] = kKeyfileVersion;
  file[kOffAlg] = kAlgArgon2id13;
  put_le(file + kOffOps, ops, 4);
  put_le(file + kOffMem, mem, 8);
  ::randombytes_buf(file + kOffSalt, crypto_pwhash_SALTBYTES);
  ::randombytes_buf(file + kOffNonce, crypto_secretbox_NONCEBYTES);

  uint8_t box_key[crypto_secretbox_KEYBYTES];
  if (::crypto_pwhash(box_key, sizeof box_key, passphrase, passphrase_len, file + kOffSalt, ops,
                      static_cast<size_t>(mem), crypto_pwhash_ALG_ARGON2ID13) != 0) {
    ::sodium_memzero(box_key, sizeof box_key);
    return Status::IoError;  // out of memory
  }
  const int sealed = ::crypto_secretbox_easy(file + kOffBox, key.bytes, kKeyBytes, file + kOffNonce, box_key);
  ::sodium_memzero(box_key, sizeof box_key);
  if (sealed != 0) return Status::IoError;

  const int fd = ::mkstemp(tmp);  // O_EXCL, mode 0600
  if (fd < 0) return Status::IoError;
  bool ok = ::fchmod(fd, 0600) == 0 && port::write_all(fd, file, sizeof file) && port::fsync_retry(fd);
  if (::close(fd) != 0) ok = false;
  if (!ok || !publish_noreplace(tmp, path)) {
    ::unlink(tmp);
    return Status::IoError;
  }
  return port::fsync_parent(path) ? Status::Ok : Status::IoError;
}

Status keyfile_read(const char* path, const char* passphrase, size_t len, PrivateKey& out) noexcept {
  ::sodium_memzero(out.bytes, sizeof out.bytes);
  if (path == nullptr || passphrase == nullptr) return Status::BadArgs;
  if (!keyfile_detail::sodium_ready()) return Status::IoError;

  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError;
  uint8_t file[kKeyfileSize + 1];  // one extra byte to detect a longer file
  size_t got = 0;
  bool io_ok = true;
  while (got < sizeof file) {
    const ssize_t n = ::read(fd, file + got, sizeof file - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      io_ok = false;
      break;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (!io_ok) return Status::IoError;
  if (got != kKeyfileSize || std::memcmp(file, kMagic, sizeof kMagic) != 0) return Status::Corrupt;
  if (file[kOffVersion] != kKeyfileVersion) return Status::BadVersion;
  if (file[kOffAlg] != kAlgArgon2id13) return Status::Corrupt;
  const uint64_t ops = get_le(file + kOffOps, 4);
  const uint64_t mem = get_le(file + kOffMem, 8);
  // Bounded so a forged file cannot make us burn more than SENSITIVE (1 GiB, 4 passes).
  if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > crypto_pwhash_OPSLIMIT_SENSITIVE ||
      mem < crypto_pwhash_MEMLIMIT_MIN || mem > crypto_pwhash_MEMLIMIT_SENSITIVE) {
    return Status::Corrupt;
  }
  if (len > crypto_pwhash_PASSWD_MAX) return Status::Corrupt;  // could never have been written

  uint8_t box_key[crypto_secretbox_KEYBYTES];
  if (::crypto_pwhash(box_key, sizeof box_key, passphrase, len, file + kOffSalt, ops,
                      static_cast<size_t>(mem), crypto_pwhash_ALG_ARGON2ID13) != 0) {
    ::sodium_memzero(box_key, sizeof box_key);
    return Status::IoError;  // out of memory
  }
  uint8_t plain[kKeyBytes];
  const int opened = ::crypto_secretbox_open_easy(plain, file + kOffBox,
                                                  crypto_secretbox_MACBYTES + kKeyBytes,
                                                  file + kOffNonce, box_key);
  ::sodium_memzero(box_key, sizeof box_key);
  if (opened != 0) {
    ::sodium_memzero(plain, sizeof plain);
    return Status::Corrupt;  // wrong passphrase or tampered file
  }
  std::memcpy(out.bytes, plain, sizeof plain);
  ::sodium_memzero(plain, sizeof plain);
  return Status::Ok;
}

}  // namespace picopay
