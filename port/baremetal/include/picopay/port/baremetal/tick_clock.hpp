// A tick-driven Clock for bare metal: the board calls `tick()` from its periodic timer
// interrupt (SysTick on Cortex-M) at `tick_hz`; monotonic time is ticks * 1000 / tick_hz
// milliseconds. Wall-clock time is unknown (0) until `set_unix_seconds()` is told it
// (by an RTC, a gateway or a signed timestamp), then advances with the ticks.
//
// Concurrency: `tick()` may run in an interrupt while the other members run in thread
// mode on a single core; the 64-bit tick count is read with a retry loop, no locks.
#pragma once

#include <cstdint>

#include "picopay/port/port.hpp"

namespace picopay::port::baremetal {

class TickClock final : public Clock {
 public:
  // `tick_hz`: interrupt rate in Hz, 1..1'000'000 (0 is taken as 1000).
  explicit TickClock(uint32_t tick_hz = 1000) noexcept;

  // One timer period has passed. Call from the timer interrupt only.
  void tick() noexcept;

  // Milliseconds since construction (ticks * 1000 / tick_hz, rounded down).
  uint64_t monotonic_ms() noexcept override;
  // Seconds since the Unix epoch, or 0 if set_unix_seconds() was never called.
  uint64_t unix_seconds() noexcept override;

  // Sets wall-clock time to `unix_s` now. 0 forgets it (unix_seconds() returns 0).
  void set_unix_seconds(uint64_t unix_s) noexcept;

  // Raw tick count since construction.
  uint64_t ticks() const noexcept;

 private:
  volatile uint32_t lo_ = 0;
  volatile uint32_t hi_ = 0;
  uint32_t hz_;
  uint64_t unix_base_s_ = 0;
  uint64_t unix_base_ms_ = 0;
};

}  // namespace picopay::port::baremetal
