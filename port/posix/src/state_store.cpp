// PosixStateStore: one record per file, write-temp + fsync + rename + fsync(dir),
// framed with a header and a CRC-32 trailer (format in posix.hpp).
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <stdio.h>  // rename(2)
#include <unistd.h>

#include <climits>
#include <cstring>

#include "picopay/port/posix.hpp"

namespace picopay::port {

namespace {

constexpr uint8_t kMagic[4] = {'P', 'P', 'S', 'R'};

struct Crc32Table {
  uint32_t t[256];
  constexpr Crc32Table() : t{} {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? (0xEDB88320u ^ (c >> 1)) : (c >> 1);
      t[i] = c;
    }
  }
};
constexpr Crc32Table kCrcTable{};

void put_le32(uint8_t* p, uint32_t v) noexcept {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}
uint32_t get_le32(const uint8_t* p) noexcept {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}


// Reads exactly len bytes; returns the count read (< len only at end of file), or -1.
ssize_t read_full(int fd, uint8_t* buf, size_t len) noexcept {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = ::read(fd, buf + done, len - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

int close_keep_errno(int fd) noexcept {
  const int saved = errno;
  const int rc = ::close(fd);
  errno = saved;
  return rc;
}


bool copy_str(char* dst, size_t cap, const char* a, const char* b, const char* c) noexcept {
  const size_t la = std::strlen(a), lb = std::strlen(b), lc = std::strlen(c);
  if (la + lb + lc + 1 > cap) return false;
  std::memcpy(dst, a, la);
  std::memcpy(dst + la, b, lb);
  std::memcpy(dst + la + lb, c, lc);
  dst[la + lb + lc] = '\0';
  return true;
}

// Creates `path` (mode 0700) if missing; fsyncs its parent if it was created.
bool mkdir_one(char* path) noexcept {
  if (::mkdir(path, 0700) == 0) {
    if (::chmod(path, 0700) != 0) return false;  // the umask may have removed bits
    char* slash = std::strrchr(path, '/');
    if (slash == nullptr) return fsync_dir(".");
    if (slash == path) return fsync_dir("/");
    *slash = '\0';
    const bool ok = fsync_dir(path);
    *slash = '/';
    return ok;
  }
  if (errno != EEXIST) return false;
  struct stat st {};
  return ::stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

uint32_t crc32_ieee(uint32_t crc, const uint8_t* data, size_t len) noexcept {
  crc = ~crc;
  for (size_t i = 0; i < len; ++i) crc = kCrcTable.t[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

PosixStateStore::PosixStateStore(const char* dir, const char* name) noexcept {
  if (dir == nullptr || name == nullptr || dir[0] == '\0' || name[0] == '\0' ||
      std::strchr(name, '/') != nullptr || std::strcmp(name, ".") == 0 ||
      std::strcmp(name, "..") == 0) {
    config_ = Status::BadArgs;
    return;
  }
  if (!copy_str(dir_, sizeof dir_, dir, "", "") || !copy_str(final_, sizeof final_, dir, "/", name) ||
      !copy_str(temp_, sizeof temp_, final_, ".tmp", "")) {
    dir_[0] = final_[0] = temp_[0] = '\0';
    config_ = Status::OutOfBounds;
    return;
  }
  // Drop trailing slashes of the directory ("/var/lib/x/" -> "/var/lib/x"; "/" stays).
  size_t n = std::strlen(dir_);
  while (n > 1 && dir_[n - 1] == '/') dir_[--n] = '\0';
}

Status PosixStateStore::io_error() noexcept {
  errno_ = errno != 0 ? errno : EIO;
  return Status::IoError;
}

Status PosixStateStore::ensure_directory() noexcept {
  errno_ = 0;
  if (config_ != Status::Ok) return config_;
  char path[kMaxPath];
  std::memcpy(path, dir_, sizeof path);
  // Every proper prefix ending before a '/', then the whole path (mkdir -p).
  for (char* p = path + 1; *p != '\0'; ++p) {
    if (*p != '/') continue;
    *p = '\0';
    const bool ok = mkdir_one(path);
    *p = '/';
    if (!ok) return io_error();
  }
  return mkdir_one(path) ? Status::Ok : io_error();
}

Status PosixStateStore::save(const uint8_t* data, size_t len) noexcept {
  errno_ = 0;
  if (config_ != Status::Ok) return config_;
  if (len > kMaxRecordSize) return Status::OutOfBounds;
  if (len > 0 && data == nullptr) return Status::BadArgs;
  const Status ds = ensure_directory();
  if (ds != Status::Ok) return ds;

  uint8_t header[kHeaderSize] = {};
  std::memcpy(header, kMagic, sizeof kMagic);
  header[4] = kFormatVersion;
  put_le32(header + 8, static_cast<uint32_t>(len));
  uint32_t crc = crc32_ieee(0, header, sizeof header);
  if (len > 0) crc = crc32_ieee(crc, data, len);
  uint8_t trailer[kTrailerSize];
  put_le32(trailer, crc);

  // A leftover temp file (crash mid-save, or anything else with that name, even a
  // symlink) is removed and a fresh one created exclusively.
  if (::unlink(temp_) != 0 && errno != ENOENT) return io_error();
  const int fd = ::open(temp_, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return io_error();
  errno = 0;
  bool ok = ::fchmod(fd, 0600) == 0 && write_all(fd, header, sizeof header) &&
            (len == 0 || write_all(fd, data, len)) && write_all(fd, trailer, sizeof trailer);
  ok = ok && fsync_retry(fd);
  if (close_keep_errno(fd) != 0) ok = false;
  if (!ok || ::rename(temp_, final_) != 0) {
    const Status st = io_error();  // before unlink() can change errno
    ::unlink(temp_);
    return st;
  }
  return fsync_dir(dir_) ? Status::Ok : io_error();
}

Status PosixStateStore::load(uint8_t* out, size_t cap, size_t* len) noexcept {
  if (config_ != Status::Ok) return config_;
  if (len == nullptr || (cap > 0 && out == nullptr)) return Status::BadArgs;
  const int fd = ::open(final_, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return (errno == ENOENT || errno == ENOTDIR) ? Status::NotFound : Status::IoError;

  Status result = Status::Ok;
  struct stat st {};
  uint8_t header[kHeaderSize];
  size_t rec_len = 0;
  ssize_t got = 0;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    result = Status::IoError;
  } else if ((got = read_full(fd, header, sizeof header)) < 0) {
    result = Status::IoError;
  } else if (static_cast<size_t>(got) < sizeof header || std::memcmp(header, kMagic, 4) != 0 ||
             header[4] != kFormatVersion || header[5] != 0 || header[6] != 0 || header[7] != 0) {
    result = Status::Corrupt;
  } else {
    rec_len = get_le32(header + 8);
    if (rec_len > kMaxRecordSize ||
        static_cast<uint64_t>(st.st_size) != kHeaderSize + rec_len + kTrailerSize) {
      result = Status::Corrupt;
    }
  }

  if (result == Status::Ok) {
    uint32_t crc = crc32_ieee(0, header, sizeof header);
    const bool direct = cap >= rec_len;
    // Record bytes: straight into `out` if it fits, else through a stack chunk so the
    // CRC is still checked (Corrupt wins over BufferTooSmall).
    uint8_t chunk[4096];
    size_t done = 0;
    while (done < rec_len && result == Status::Ok) {
      const size_t want = direct ? rec_len - done
                                 : (rec_len - done < sizeof chunk ? rec_len - done : sizeof chunk);
      uint8_t* dst = direct ? out + done : chunk;
      got = read_full(fd, dst, want);
      if (got < 0) {
        result = Status::IoError;
      } else if (static_cast<size_t>(got) != want) {
        result = Status::Corrupt;  // shrank under us
      } else {
        crc = crc32_ieee(crc, dst, want);
        done += want;
      }
    }
    uint8_t trailer[kTrailerSize];
    if (result == Status::Ok) {
      got = read_full(fd, trailer, sizeof trailer);
      if (got < 0) {
        result = Status::IoError;
      } else if (static_cast<size_t>(got) != sizeof trailer || get_le32(trailer) != crc) {
        result = Status::Corrupt;
      }
    }
    if (result != Status::Ok && direct && cap > 0) std::memset(out, 0, cap);
    if (result == Status::Ok) {
      *len = rec_len;
      if (!direct) result = Status::BufferTooSmall;
    }
  }
  ::close(fd);
  return result;
}

bool write_all(int fd, const uint8_t* buf, size_t len) noexcept {
  while (len > 0) {
    const ssize_t n = ::write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    buf += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool fsync_retry(int fd) noexcept {
  int rc;
  do {
    rc = ::fsync(fd);
  } while (rc != 0 && errno == EINTR);
  return rc == 0;
}

bool fsync_dir(const char* dir) noexcept {
  const int fd = ::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = fsync_retry(fd);
  ::close(fd);
  return ok;
}

bool fsync_parent(const char* path) noexcept {
  char dir[PATH_MAX];
  const size_t n = std::strlen(path);
  if (n >= sizeof dir) return false;
  std::memcpy(dir, path, n + 1);
  char* slash = std::strrchr(dir, '/');
  if (slash == nullptr) return fsync_dir(".");
  if (slash == dir) return fsync_dir("/");
  *slash = '\0';
  return fsync_dir(dir);
}

}  // namespace picopay::port
