// A NOR-flash abstraction for the bare-metal port: `sector_count()` equal sectors of
// `sector_size()` bytes. Semantics of typical MCU flash (STM32, nRF52, ...):
//  - erase(sector) sets every byte of the sector to 0xFF;
//  - program() can only clear bits (a programmed byte becomes old AND new), in whole
//    `write_unit()`-byte units at `write_unit()`-aligned offsets; a unit must not be
//    programmed twice between erases (some parts forbid it, ECC flash corrupts it);
//  - read() returns what is stored.
// A power cut during erase or program may leave the sector or unit partly changed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/status.hpp"

namespace picopay::port::baremetal {

class Flash {
 public:
  // Size of one erasable sector in bytes (a multiple of write_unit()).
  virtual size_t sector_size() const noexcept = 0;
  // Number of sectors this device (or partition) has.
  virtual size_t sector_count() const noexcept = 0;
  // Programming granularity in bytes: a power of two, 1..16.
  virtual size_t write_unit() const noexcept = 0;

  // Erases `sector` (all bytes 0xFF).
  // Errors: OutOfBounds if sector >= sector_count(); IoError if the device fails.
  [[nodiscard]] virtual Status erase(size_t sector) noexcept = 0;

  // Programs `data[0..len)` at byte `offset` of `sector` (cells become old AND new).
  // `offset` and `len` must be multiples of write_unit().
  // Errors: OutOfBounds if the range leaves the sector or is misaligned; IoError if
  // the device fails.
  [[nodiscard]] virtual Status program(size_t sector, size_t offset, const uint8_t* data,
                                       size_t len) noexcept = 0;

  // Reads `len` bytes at byte `offset` of `sector` into `out`.
  // Errors: OutOfBounds if the range leaves the sector; IoError if the device fails.
  [[nodiscard]] virtual Status read(size_t sector, size_t offset, uint8_t* out,
                                    size_t len) noexcept = 0;

 protected:
  ~Flash() = default;
};

}  // namespace picopay::port::baremetal
