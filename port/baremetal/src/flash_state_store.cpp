#include "picopay/port/baremetal/flash_state_store.hpp"

#include <cstring>

#include "picopay/port/baremetal/crc32.hpp"

namespace picopay::port::baremetal {
namespace {

constexpr uint8_t kMagic[4] = {'P', 'P', 'S', '1'};
constexpr uint8_t kCommit[4] = {'P', 'P', 'C', 'M'};
constexpr size_t kCommitOffset = 16;
constexpr size_t kChunk = 64;  // read buffer for CRC checks (stack), a multiple of 16

void put_u32(uint8_t* p, uint32_t v) noexcept {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

uint32_t get_u32(const uint8_t* p) noexcept {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// a is newer than b in serial-number arithmetic (a wrapping u32 counter).
bool newer(uint32_t a, uint32_t b) noexcept {
  return a != b && static_cast<uint32_t>(a - b) < 0x80000000u;
}

}  // namespace

FlashStateStore::FlashStateStore(Flash& flash, size_t first_sector) noexcept
    : flash_(flash), first_(first_sector) {}

bool FlashStateStore::valid() const noexcept {
  const size_t wu = flash_.write_unit();
  return wu >= 1 && wu <= 16 && (wu & (wu - 1)) == 0 && first_ + 2 <= flash_.sector_count() &&
         flash_.sector_size() > kHeaderBytes && flash_.sector_size() % wu == 0;
}

size_t FlashStateStore::capacity() const noexcept {
  return valid() ? flash_.sector_size() - kHeaderBytes : 0;
}

FlashStateStore::Slot FlashStateStore::inspect(size_t sector) noexcept {
  Slot slot{Status::NotFound, 0, 0, 0};
  uint8_t head[kHeaderBytes];
  if (flash_.read(sector, 0, head, sizeof head) != Status::Ok) {
    slot.status = Status::IoError;
    return slot;
  }
  // No complete commit unit: blank, erased halfway, or a write cut before it committed.
  if (std::memcmp(head + kCommitOffset, kCommit, sizeof kCommit) != 0) return slot;

  slot.status = Status::Corrupt;
  if (std::memcmp(head, kMagic, sizeof kMagic) != 0) return slot;
  const uint32_t seq = get_u32(head + 4);
  const uint32_t len = get_u32(head + 8);
  const uint32_t crc = get_u32(head + 12);
  if (len > capacity()) return slot;

  uint32_t c = crc32_update(0, head, 12);
  uint8_t buf[kChunk];
  for (size_t off = 0; off < len; off += kChunk) {
    const size_t n = len - off < kChunk ? len - off : kChunk;
    if (flash_.read(sector, kHeaderBytes + off, buf, n) != Status::Ok) {
      slot.status = Status::IoError;
      return slot;
    }
    c = crc32_update(c, buf, n);
  }
  if (c != crc) return slot;
  slot.status = Status::Ok;
  slot.seq = seq;
  slot.len = len;
  slot.crc = crc;
  return slot;
}

int FlashStateStore::latest(Slot slots[2], Status* err) noexcept {
  slots[0] = inspect(first_);
  slots[1] = inspect(first_ + 1);
  const bool ok0 = slots[0].status == Status::Ok;
  const bool ok1 = slots[1].status == Status::Ok;
  if (ok0 && ok1) return newer(slots[1].seq, slots[0].seq) ? 1 : 0;
  if (ok0) return 0;
  if (ok1) return 1;
  if (slots[0].status == Status::IoError || slots[1].status == Status::IoError) {
    *err = Status::IoError;
  } else if (slots[0].status == Status::Corrupt || slots[1].status == Status::Corrupt) {
    *err = Status::Corrupt;
  } else {
    *err = Status::NotFound;
  }
  return -1;
}

Status FlashStateStore::save(const uint8_t* data, size_t len) noexcept {
  if (!valid()) return Status::Corrupt;
  if (len > capacity() || (data == nullptr && len > 0)) return Status::OutOfBounds;

  Slot slots[2];
  Status err = Status::Ok;
  const int cur = latest(slots, &err);
  if (cur < 0 && err == Status::IoError) return Status::IoError;
  // Write over the sector that does not hold the latest record (sector 0 if none does).
  const size_t target = first_ + (cur == 0 ? 1u : 0u);
  const uint32_t seq = cur < 0 ? 1u : slots[cur].seq + 1u;
  const size_t wu = flash_.write_unit();

  if (flash_.erase(target) != Status::Ok) return Status::IoError;

  // 1. The record, in whole write units; the tail unit padded with 0xFF.
  const size_t whole = len - len % wu;
  if (whole > 0 && flash_.program(target, kHeaderBytes, data, whole) != Status::Ok) {
    return Status::IoError;
  }
  uint8_t unit[16];
  if (whole < len) {
    std::memset(unit, 0xFF, sizeof unit);
    std::memcpy(unit, data + whole, len - whole);
    if (flash_.program(target, kHeaderBytes + whole, unit, wu) != Status::Ok) return Status::IoError;
  }

  // 2. The header (magic, seq, len, CRC), 16 bytes = whole write units.
  uint8_t head[16];
  std::memcpy(head, kMagic, sizeof kMagic);
  put_u32(head + 4, seq);
  put_u32(head + 8, static_cast<uint32_t>(len));
  put_u32(head + 12, crc32_update(crc32_update(0, head, 12), data, len));
  if (flash_.program(target, 0, head, sizeof head) != Status::Ok) return Status::IoError;

  // 3. Read back everything before committing: a failed write must never commit.
  uint8_t check[16];
  if (flash_.read(target, 0, check, sizeof check) != Status::Ok) return Status::IoError;
  if (std::memcmp(check, head, sizeof head) != 0) return Status::IoError;
  uint8_t buf[kChunk];
  for (size_t off = 0; off < len; off += kChunk) {
    const size_t n = len - off < kChunk ? len - off : kChunk;
    if (flash_.read(target, kHeaderBytes + off, buf, n) != Status::Ok) return Status::IoError;
    if (std::memcmp(buf, data + off, n) != 0) return Status::IoError;
  }

  // 4. Commit: the new record is the latest from the moment this unit is complete.
  std::memset(unit, 0xFF, sizeof unit);
  std::memcpy(unit, kCommit, sizeof kCommit);
  if (flash_.program(target, kCommitOffset, unit, wu < sizeof kCommit ? sizeof kCommit : wu) !=
      Status::Ok) {
    return Status::IoError;
  }
  const Slot written = inspect(target);
  if (written.status != Status::Ok || written.seq != seq) return Status::IoError;
  return Status::Ok;
}

Status FlashStateStore::load(uint8_t* out, size_t cap, size_t* len) noexcept {
  if (len == nullptr) return Status::OutOfBounds;
  if (!valid()) return Status::Corrupt;
  Slot slots[2];
  Status err = Status::Ok;
  const int cur = latest(slots, &err);
  if (cur < 0) return err;
  *len = slots[cur].len;
  if (cap < slots[cur].len) return Status::BufferTooSmall;
  if (slots[cur].len > 0 && out == nullptr) return Status::OutOfBounds;
  if (flash_.read(first_ + static_cast<size_t>(cur), kHeaderBytes, out, slots[cur].len) !=
      Status::Ok) {
    return Status::IoError;
  }
  // inspect() checked the CRC of the bytes in flash; check the copy too (a flaky
  // read must not hand out a mixed record).
  uint8_t head[12];
  std::memcpy(head, kMagic, sizeof kMagic);
  put_u32(head + 4, slots[cur].seq);
  put_u32(head + 8, slots[cur].len);
  if (crc32_update(crc32_update(0, head, sizeof head), out, slots[cur].len) != slots[cur].crc) {
    return Status::IoError;
  }
  return Status::Ok;
}

Status FlashStateStore::latest_sequence(uint32_t* seq) noexcept {
  if (seq == nullptr) return Status::OutOfBounds;
  if (!valid()) return Status::Corrupt;
  Slot slots[2];
  Status err = Status::Ok;
  const int cur = latest(slots, &err);
  if (cur < 0) {
    *seq = 0;
    return err == Status::NotFound ? Status::Ok : err;
  }
  *seq = slots[cur].seq;
  return Status::Ok;
}

}  // namespace picopay::port::baremetal
