// picopay porting layer, POSIX (Linux) implementation of port/include/picopay/port/port.hpp.
//
// Host-side code: plain C++17, no exceptions, no heap; every fallible call returns a
// picopay::Status. Sources: getrandom(2), clock_gettime(2), open(2)/write(2)/fsync(2)/
// rename(2) (the write-temp + fsync + rename + fsync(dir) protocol), writev(2).
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/port/port.hpp"
#include "picopay/status.hpp"

namespace picopay::port {

// ---------------------------------------------------------------------------------------
// Entropy from the kernel CSPRNG: getrandom(2) with flags 0 (blocks only until the
// kernel pool is initialised once after boot, never afterwards).
class PosixEntropy final : public Entropy {
 public:
  // Fills `out[0..len)` with bytes from getrandom(2). Loops on EINTR and on short reads
  // (getrandom returns at most 33554431 bytes per call). `len == 0` is Ok and touches
  // nothing; `out` may be null only then.
  // Errors: IoError if getrandom fails with anything but EINTR (ENOSYS, EFAULT, ...);
  // `out[0..len)` is then zeroed, so it never holds partial randomness.
  [[nodiscard]] Status fill(uint8_t* out, size_t len) noexcept override;
};

// ---------------------------------------------------------------------------------------
// Time from clock_gettime(2).
class PosixClock final : public Clock {
 public:
  // CLOCK_MONOTONIC in milliseconds (truncated), since an unspecified point (boot on
  // Linux); never goes back, does not advance while the system is suspended.
  // Returns 0 if clock_gettime fails (it cannot on Linux for this clock).
  uint64_t monotonic_ms() noexcept override;

  // CLOCK_REALTIME in whole seconds since 1970-01-01T00:00:00Z (truncated), the unit of
  // Connext v1 timeouts (ChannelManager compares with `now`). May jump when the wall
  // clock is set. Returns 0 if clock_gettime fails or the clock is before 1970.
  uint64_t unix_seconds() noexcept override;
};

// ---------------------------------------------------------------------------------------
// One durable record in one file: `<dir>/<name>`.
//
// On-disk format (all integers little-endian), kHeaderSize + len + kTrailerSize bytes:
//   offset 0   4 bytes  magic "PPSR"
//   offset 4   1 byte   format version (kFormatVersion = 1)
//   offset 5   3 bytes  reserved, zero
//   offset 8   4 bytes  record length `len` in bytes (<= kMaxRecordSize)
//   offset 12  len      the record bytes
//   then       4 bytes  CRC-32 (IEEE 802.3 / zlib: reflected poly 0xEDB88320, init and
//                       final xor 0xFFFFFFFF) over every preceding byte (header + record)
//
// save(): writes `<dir>/<name>.tmp` (a leftover one from a crash is unlinked first and
// recreated with O_EXCL, mode 0600), fsyncs it, rename(2)s it over `<dir>/<name>`, then
// fsyncs the directory. rename is atomic, so after a crash at any moment `<dir>/<name>`
// is either the old complete file or the new complete file; the CRC additionally turns
// media corruption or a hand-edited/truncated file into Status::Corrupt.
//
// Directory: created by save() if missing (with missing parents), mode 0700 (set
// explicitly, independent of the umask); an existing directory's mode is left alone.
// Record file mode: 0600.
//
// Concurrency: one writer per record (one process, one thread at a time); concurrent
// readers in other processes are fine (they see the old or the new file). Not
// thread-safe for calls on the same object.
class PosixStateStore final : public StateStore {
 public:
  static constexpr size_t kMaxRecordSize = 1u << 20;  // 1 MiB per record
  static constexpr size_t kMaxPath = 1024;             // bytes incl. NUL, for any path built
  static constexpr size_t kHeaderSize = 12;
  static constexpr size_t kTrailerSize = 4;
  static constexpr uint8_t kFormatVersion = 1;

  // `dir`: the directory (absolute or relative to the cwd at each call), copied.
  // `name`: the record's file name, copied; must be non-empty, not "." or "..", contain
  // no '/'. Never fails itself: a bad argument is reported by config_status() and by
  // every save()/load() call.
  PosixStateStore(const char* dir, const char* name) noexcept;

  PosixStateStore(const PosixStateStore&) = delete;
  PosixStateStore& operator=(const PosixStateStore&) = delete;

  // Ok, or why the constructor arguments are unusable: BadArgs (null/empty dir or name,
  // name "." / ".." or containing '/'), OutOfBounds (`<dir>/<name>.tmp` would not fit
  // in kMaxPath bytes).
  [[nodiscard]] Status config_status() const noexcept { return config_; }

  // Creates the directory (and missing parents) with mode 0700 if it does not exist and
  // fsyncs the parent of each directory it creates. Called by save(); callers may call it
  // early to fail fast. Errors: config_status(); IoError (mkdir/chmod/fsync failure, or
  // the path exists and is not a directory).
  [[nodiscard]] Status ensure_directory() noexcept;

  // Atomically replaces the record with `data[0..len)` and returns once it is durable
  // (file fsync + rename + directory fsync). `data` may be null only if len == 0.
  // Errors: config_status(); BadArgs if data is null and len > 0; OutOfBounds if
  // len > kMaxRecordSize; IoError on any
  // mkdir/open/write/fsync/rename failure. On an IoError before the rename the previous
  // record is untouched (the temp file is removed); if only the final directory fsync
  // fails the new record is in place but may not survive a power cut.
  [[nodiscard]] Status save(const uint8_t* data, size_t len) noexcept override;

  // Copies the record into `out[0..cap)` and sets `*len` to its size in bytes. The CRC is
  // verified before Ok is returned (and before BufferTooSmall: a corrupt file reports
  // Corrupt whatever the cap). `len` must not be null; `out` may be null if cap == 0.
  // Errors: config_status(); BadArgs if `len` is null (or `out` null with cap > 0);
  // NotFound if `<dir>/<name>` (or `dir`) does not exist;
  // BufferTooSmall if cap < the record size (`*len` = needed size, `out` untouched);
  // Corrupt if the file is shorter than its header says, has another size, bad magic,
  // unknown version, non-zero reserved bytes, a length > kMaxRecordSize, or a CRC
  // mismatch (`out[0..cap)` is zeroed then, if the record fitted); IoError on open/read/fstat failure or if the
  // path is not a regular file.
  [[nodiscard]] Status load(uint8_t* out, size_t cap, size_t* len) noexcept override;

  // `<dir>/<name>` and `<dir>/<name>.tmp` (NUL-terminated; empty if config_status()
  // is not Ok). For tests and diagnostics.
  const char* record_path() const noexcept { return final_; }
  const char* temp_path() const noexcept { return temp_; }

  // The errno of the system call that made the last save() or ensure_directory() return
  // IoError (e.g. ENOSPC: the file system is full, EACCES, EROFS), or 0 (Ok, or an error
  // that is not a failed system call). For one clear line: strerror(last_errno()).
  int last_errno() const noexcept { return errno_; }

 private:
  Status io_error() noexcept;  // records errno, returns IoError
  Status config_ = Status::Ok;
  int errno_ = 0;
  char dir_[kMaxPath] = {};
  char final_[kMaxPath] = {};
  char temp_[kMaxPath] = {};
};

// CRC-32 (IEEE 802.3, as zlib's crc32()) of `data[0..len)` continuing from `crc`
// (start with 0). crc32_ieee(0, "123456789", 9) == 0xCBF43926.
uint32_t crc32_ieee(uint32_t crc, const uint8_t* data, size_t len) noexcept;

// ---------------------------------------------------------------------------------------
// A log sink writing one line per message to a file descriptor (stderr by default):
//   2026-11-21T11:03:39.123Z WARN message text\n
// Timestamp: CLOCK_REALTIME in UTC, ISO 8601 with milliseconds. Level names: DEBUG,
// INFO, WARN, ERROR. Control characters in `msg` (newlines included) are written as
// '?', so a message is always exactly one line; messages longer than kMaxMessage bytes
// are cut and end in "...". Each line is written with a single writev(2) (retried on
// EINTR / short writes), so lines from several threads do not interleave as long as a
// line is at most PIPE_BUF (4096) bytes. Write errors are ignored (a log must not fail
// the caller). Never hand it key material (port.hpp).
class PosixLog final : public Log {
 public:
  static constexpr size_t kMaxMessage = 2048;  // bytes of `msg` kept per line

  // Messages below `min_level` are dropped. `fd` is not owned (never closed).
  explicit PosixLog(LogLevel min_level = LogLevel::Info, int fd = 2) noexcept
      : min_(min_level), fd_(fd) {}

  // Writes `msg` (NUL-terminated, no trailing newline; null is treated as "") if
  // level >= the minimum level.
  void write(LogLevel level, const char* msg) noexcept override;

  // Changes / reads the minimum level (not synchronised with concurrent write()s).
  void set_min_level(LogLevel level) noexcept { min_ = level; }
  LogLevel min_level() const noexcept { return min_; }

 private:
  LogLevel min_;
  int fd_;
};

// "DEBUG", "INFO", "WARN", "ERROR" ("?" for an out-of-range value).
const char* log_level_name(LogLevel level) noexcept;

// ---------------------------------------------------------------------------------------
// Durable-write helpers shared by the state store and the key files.

// Writes all of buf[0..len) to fd, looping on EINTR and short writes. False on any other
// write(2) error (errno set).
bool write_all(int fd, const uint8_t* buf, size_t len) noexcept;

// fsync(2) of fd, retried on EINTR. False on error (errno set).
bool fsync_retry(int fd) noexcept;

// fsync of the directory `dir` (after creating or renaming an entry in it, so the new
// name is durable). False if it cannot be opened or synced.
bool fsync_dir(const char* dir) noexcept;

// fsync of the directory that holds `path` ("." for a bare name). False on error.
bool fsync_parent(const char* path) noexcept;

}  // namespace picopay::port
