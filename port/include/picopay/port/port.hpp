// picopay porting layer: what the core needs from a platform.
//
// Implementations: port/posix (Linux: getrandom, clock_gettime, write-temp + fsync +
// rename + fsync(dir)) and port/baremetal (an entropy hook, a tick clock, two flash
// sectors with sequence numbers and CRC-32). The core itself never calls these; the
// programs and firmware pass them to whoever needs them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/status.hpp"

namespace picopay::port {

// Cryptographic entropy (signing-context blinding, key generation).
class Entropy {
 public:
  // Fills `out[0..len)` with unpredictable bytes.
  // Errors: IoError if the platform source fails (nothing is written then).
  [[nodiscard]] virtual Status fill(uint8_t* out, size_t len) noexcept = 0;

 protected:
  ~Entropy() = default;
};

// Time. Monotonic time orders events and measures timeouts; wall-clock time (Unix
// seconds) is what Connext v1 timeouts are compared with (the contract's `now`).
class Clock {
 public:
  // Milliseconds since an arbitrary fixed point; never goes back.
  virtual uint64_t monotonic_ms() noexcept = 0;
  // Seconds since 1970-01-01T00:00:00Z, or 0 if the platform has no wall clock.
  virtual uint64_t unix_seconds() noexcept = 0;

 protected:
  ~Clock() = default;
};

// Durable storage of one opaque record: a channel's latest state in the wire codec
// (docs/wire-format.md). Atomic: after a crash or power cut at any moment `load`
// returns either the previous record or the new one, never a torn or mixed one.
class StateStore {
 public:
  // Replaces the stored record with `data[0..len)` and returns only once it is
  // durable (fsync / flash write verified). Invariant 1 of docs/design.md §4 relies on it:
  // persist the state *before* its signature leaves the process.
  // Errors: OutOfBounds if len exceeds the store's capacity; IoError on a write or
  // sync failure (the previous record is then still the one `load` returns).
  [[nodiscard]] virtual Status save(const uint8_t* data, size_t len) noexcept = 0;

  // Copies the latest record into `out[0..cap)` and sets `*len` to its size in bytes.
  // Errors: NotFound if nothing was ever saved; BufferTooSmall if cap < the record
  // (`*len` is set to the needed size); Corrupt if no intact record exists; IoError.
  [[nodiscard]] virtual Status load(uint8_t* out, size_t cap, size_t* len) noexcept = 0;

 protected:
  ~StateStore() = default;
};

enum class LogLevel : uint8_t { Debug = 0, Info = 1, Warn = 2, Error = 3 };

// Line-oriented log sink. Implementations must never be handed key material.
class Log {
 public:
  // `msg` is a NUL-terminated line without the trailing newline.
  virtual void write(LogLevel level, const char* msg) noexcept = 0;

 protected:
  ~Log() = default;
};

}  // namespace picopay::port
