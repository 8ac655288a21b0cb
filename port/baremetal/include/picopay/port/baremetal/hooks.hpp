// Entropy and log for bare metal, as hooks: the board supplies plain C functions (its
// TRNG driver, its UART or semihosting writer), the port adapts them to the
// picopay::port interfaces. No heap, no global state.
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/port/port.hpp"

namespace picopay::port::baremetal {

// Fills out[0..len) from a hardware random source; returns 0 on success, anything else
// on failure. `ctx` is the pointer given to HookEntropy.
using EntropyFn = int (*)(void* ctx, uint8_t* out, size_t len);

// Entropy from a board hook, with a stuck-output check: a result of 16 or more bytes
// that are all equal (a dead TRNG reads all 0x00 or all 0xFF) is refused.
class HookEntropy final : public Entropy {
 public:
  HookEntropy(EntropyFn fn, void* ctx) noexcept : fn_(fn), ctx_(ctx) {}

  // Errors: IoError if there is no hook, it reports failure, or its output is stuck
  // (out is zeroed then, so a caller that ignores the error gets no stale secret).
  [[nodiscard]] Status fill(uint8_t* out, size_t len) noexcept override;

 private:
  EntropyFn fn_;
  void* ctx_;
};

// Writes one NUL-terminated line (no newline) somewhere. `ctx` as given to HookLog.
using LogFn = void (*)(void* ctx, LogLevel level, const char* line);

// Log lines at or above `min_level` go to the hook; others are dropped.
class HookLog final : public Log {
 public:
  HookLog(LogFn fn, void* ctx, LogLevel min_level = LogLevel::Info) noexcept
      : fn_(fn), ctx_(ctx), min_(min_level) {}
  void write(LogLevel level, const char* msg) noexcept override;

 private:
  LogFn fn_;
  void* ctx_;
  LogLevel min_;
};

}  // namespace picopay::port::baremetal

// Called by libsecp256k1's default callbacks (illegal argument, internal error) on bare
// metal instead of fprintf + abort. Weak default: disable interrupts and spin (the
// watchdog resets the part). A board may define its own (e.g. semihosting exit).
// Must not return.
extern "C" [[noreturn]] void picopay_baremetal_fatal(const char* what);
