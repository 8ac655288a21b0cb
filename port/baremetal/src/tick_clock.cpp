#include "picopay/port/baremetal/tick_clock.hpp"

namespace picopay::port::baremetal {

TickClock::TickClock(uint32_t tick_hz) noexcept
    : hz_(tick_hz == 0 ? 1000u : (tick_hz > 1000000u ? 1000000u : tick_hz)) {}

void TickClock::tick() noexcept {
  // Runs as one interrupt: thread-mode readers see both halves change together or
  // notice hi_ moving under them and read again (ticks()).
  const uint32_t lo = lo_ + 1u;
  lo_ = lo;
  if (lo == 0) hi_ = hi_ + 1u;
}

uint64_t TickClock::ticks() const noexcept {
  for (;;) {
    const uint32_t hi = hi_;
    const uint32_t lo = lo_;
    if (hi == hi_) return (static_cast<uint64_t>(hi) << 32) | lo;
  }
}

uint64_t TickClock::monotonic_ms() noexcept {
  const uint64_t t = ticks();
  // t * 1000 / hz without overflow for any 64-bit tick count.
  return (t / hz_) * 1000u + ((t % hz_) * 1000u) / hz_;
}

uint64_t TickClock::unix_seconds() noexcept {
  if (unix_base_s_ == 0) return 0;
  return unix_base_s_ + (monotonic_ms() - unix_base_ms_) / 1000u;
}

void TickClock::set_unix_seconds(uint64_t unix_s) noexcept {
  unix_base_ms_ = monotonic_ms();
  unix_base_s_ = unix_s;
}

}  // namespace picopay::port::baremetal
