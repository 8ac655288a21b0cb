// A RAM-backed NOR flash simulator (Flash) for host tests and for boards whose emulator
// has no flash controller (QEMU's mps2 boards). Caller-owned memory, no heap.
//
// Power-cut injection: `arm_power_cut(n, mode, seed)` cuts power at the n-th
// flash-changing operation from now (0 = the very next). An operation is the erase of
// one sector or the programming of one write unit (a program() call of k units is k
// operations, done in order). The cut operation either does not happen
// (CutMode::Before) or happens partly (CutMode::Torn: for a program, a pseudo-random
// subset of the bits it would clear is cleared; for an erase, a pseudo-random subset of
// the sector's bytes becomes 0xFF), as real flash does when the supply drops. From the
// cut on, every call fails with IoError until `power_on()` (the reboot).
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/port/baremetal/flash.hpp"

namespace picopay::port::baremetal {

class RamFlash final : public Flash {
 public:
  enum class CutMode : uint8_t { Before = 0, Torn = 1 };

  // `mem` must hold sector_size * sector_count bytes and outlive the simulator; it is
  // set to 0xFF (a factory-erased part). `write_unit` must be a power of two that
  // divides sector_size; a bad geometry makes every call return OutOfBounds.
  RamFlash(uint8_t* mem, size_t sector_size, size_t sector_count, size_t write_unit) noexcept;

  size_t sector_size() const noexcept override { return sector_size_; }
  size_t sector_count() const noexcept override { return sector_count_; }
  size_t write_unit() const noexcept override { return write_unit_; }

  [[nodiscard]] Status erase(size_t sector) noexcept override;
  [[nodiscard]] Status program(size_t sector, size_t offset, const uint8_t* data,
                               size_t len) noexcept override;
  [[nodiscard]] Status read(size_t sector, size_t offset, uint8_t* out,
                            size_t len) noexcept override;

  // Cuts power at the n-th flash-changing operation from now (see above). `seed`
  // chooses which bits/bytes a torn operation changes (any value; deterministic).
  void arm_power_cut(uint32_t n, CutMode mode, uint32_t seed = 1) noexcept;
  // Cancels an armed cut that has not happened yet.
  void disarm() noexcept { armed_ = false; }
  // True while the power is on (false from a cut until power_on()).
  bool powered() const noexcept { return powered_; }
  // Restores power (a reboot): calls work again, no cut is armed.
  void power_on() noexcept;

  // Flash-changing operations done so far (erases + programmed units, cut ones included).
  uint32_t operations() const noexcept { return ops_; }
  // Units programmed while not fully erased: a user of the flash broke the
  // program-once rule (should stay 0).
  uint32_t reprogram_violations() const noexcept { return violations_; }

 private:
  bool geometry_ok() const noexcept;
  bool cut_now() noexcept;  // counts one operation; true if it is the one to cut
  uint8_t next_random() noexcept;

  uint8_t* mem_;
  size_t sector_size_;
  size_t sector_count_;
  size_t write_unit_;
  uint32_t ops_ = 0;
  uint32_t violations_ = 0;
  uint32_t cut_at_ = 0;
  uint32_t rng_ = 1;
  CutMode mode_ = CutMode::Before;
  bool armed_ = false;
  bool powered_ = true;
};

}  // namespace picopay::port::baremetal
