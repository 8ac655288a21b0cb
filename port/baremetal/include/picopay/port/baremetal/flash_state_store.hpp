// Durable storage of one record on two flash sectors (picopay::port::StateStore).
//
// Layout of each sector (all integers little-endian):
//   [0, 16)   header: magic "PPS1" | seq u32 | len u32 | crc u32
//             crc = CRC-32 (crc32.hpp) of magic, seq, len and the record bytes
//   [16, 32)  commit unit: "PPCM" then 0xFF..., programmed last, on its own
//   [32, ...) the record, padded with 0xFF to the write unit
// A sector holds a committed record iff its commit unit reads "PPCM", its magic is right,
// len fits and the CRC matches. `load` returns the committed record with the higher
// sequence number (serial-number arithmetic, RFC 1982 style, so the u32 may wrap).
//
// `save` writes into the *other* sector than the one holding the latest record:
// erase, program record, program header, read back and check, then program the commit
// unit and check it. Until the commit unit is complete the previous record is the
// latest one; once it is, the new one is. So a power cut at any moment leaves `load`
// returning either the previous or the new record, never a torn or mixed one. A record
// whose commit unit is missing or partial is a write that never happened (not an error).
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/port/baremetal/flash.hpp"
#include "picopay/port/port.hpp"

namespace picopay::port::baremetal {

class FlashStateStore final : public StateStore {
 public:
  static constexpr size_t kHeaderBytes = 32;  // header unit + commit unit

  // Uses sectors `first_sector` and `first_sector + 1` of `flash`, which must outlive
  // the store. Writes nothing; call `valid()` to check the geometry.
  FlashStateStore(Flash& flash, size_t first_sector) noexcept;

  // True if both sectors exist and the write unit is 1..16 (a power of two).
  bool valid() const noexcept;

  // Largest record `save` accepts: sector_size - kHeaderBytes (0 if !valid()).
  size_t capacity() const noexcept;

  // See StateStore::save. Errors: OutOfBounds if len > capacity() (or data is null
  // with len > 0); IoError if erase/program/read fails or the read-back differs (the
  // previous record is then still the latest; the partly written sector is never
  // taken for a record); Corrupt if !valid().
  [[nodiscard]] Status save(const uint8_t* data, size_t len) noexcept override;

  // See StateStore::load. Errors: NotFound if no sector holds a committed record and
  // none holds a damaged committed one; Corrupt if a committed record fails its CRC
  // (or its length) and no other intact record exists; BufferTooSmall (with *len set);
  // IoError on a read failure.
  [[nodiscard]] Status load(uint8_t* out, size_t cap, size_t* len) noexcept override;

  // Sequence number of the latest committed record (0 if none yet); for tests and logs.
  // Errors as load().
  [[nodiscard]] Status latest_sequence(uint32_t* seq) noexcept;

 private:
  struct Slot {
    Status status;  // Ok (committed, intact), NotFound (blank/torn), Corrupt, IoError
    uint32_t seq;
    uint32_t len;
    uint32_t crc;
  };
  Slot inspect(size_t sector) noexcept;
  // Picks the latest intact slot: returns its index (0/1) or -1, and the load error.
  int latest(Slot slots[2], Status* err) noexcept;

  Flash& flash_;
  size_t first_;
};

}  // namespace picopay::port::baremetal
