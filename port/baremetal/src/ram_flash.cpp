#include "picopay/port/baremetal/ram_flash.hpp"

#include <cstring>

namespace picopay::port::baremetal {

RamFlash::RamFlash(uint8_t* mem, size_t sector_size, size_t sector_count,
                   size_t write_unit) noexcept
    : mem_(mem), sector_size_(sector_size), sector_count_(sector_count), write_unit_(write_unit) {
  if (geometry_ok()) std::memset(mem_, 0xFF, sector_size_ * sector_count_);
}

bool RamFlash::geometry_ok() const noexcept {
  return mem_ != nullptr && sector_count_ > 0 && write_unit_ > 0 && write_unit_ <= 16 &&
         (write_unit_ & (write_unit_ - 1)) == 0 && sector_size_ >= write_unit_ &&
         sector_size_ % write_unit_ == 0;
}

void RamFlash::arm_power_cut(uint32_t n, CutMode mode, uint32_t seed) noexcept {
  armed_ = true;
  cut_at_ = ops_ + n;
  mode_ = mode;
  rng_ = seed != 0 ? seed : 0x9E3779B9u;
}

void RamFlash::power_on() noexcept {
  powered_ = true;
  armed_ = false;
}

bool RamFlash::cut_now() noexcept {
  const bool cut = armed_ && ops_ == cut_at_;
  ++ops_;
  if (cut) {
    armed_ = false;
    powered_ = false;
  }
  return cut;
}

uint8_t RamFlash::next_random() noexcept {
  // xorshift32: deterministic, good enough to choose torn bits.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 17;
  rng_ ^= rng_ << 5;
  return static_cast<uint8_t>(rng_ >> 24);
}

Status RamFlash::erase(size_t sector) noexcept {
  if (!geometry_ok() || sector >= sector_count_) return Status::OutOfBounds;
  if (!powered_) return Status::IoError;
  uint8_t* s = mem_ + sector * sector_size_;
  if (cut_now()) {
    if (mode_ == CutMode::Torn) {
      for (size_t i = 0; i < sector_size_; ++i) {
        if (next_random() & 1u) s[i] = 0xFF;
      }
    }
    return Status::IoError;
  }
  std::memset(s, 0xFF, sector_size_);
  return Status::Ok;
}

Status RamFlash::program(size_t sector, size_t offset, const uint8_t* data, size_t len) noexcept {
  if (!geometry_ok() || sector >= sector_count_ || offset > sector_size_ ||
      len > sector_size_ - offset || offset % write_unit_ != 0 || len % write_unit_ != 0 ||
      (data == nullptr && len > 0)) {
    return Status::OutOfBounds;
  }
  if (!powered_) return Status::IoError;
  uint8_t* p = mem_ + sector * sector_size_ + offset;
  for (size_t u = 0; u < len; u += write_unit_) {
    bool erased = true;
    for (size_t i = 0; i < write_unit_; ++i) erased = erased && p[u + i] == 0xFF;
    if (!erased) ++violations_;
    if (cut_now()) {
      if (mode_ == CutMode::Torn) {
        for (size_t i = 0; i < write_unit_; ++i) {
          // Clear only some of the bits this write would clear.
          const uint8_t mask = next_random();
          p[u + i] = static_cast<uint8_t>(p[u + i] & (data[u + i] | static_cast<uint8_t>(~mask)));
        }
      }
      return Status::IoError;
    }
    for (size_t i = 0; i < write_unit_; ++i) p[u + i] = static_cast<uint8_t>(p[u + i] & data[u + i]);
  }
  return Status::Ok;
}

Status RamFlash::read(size_t sector, size_t offset, uint8_t* out, size_t len) noexcept {
  if (!geometry_ok() || sector >= sector_count_ || offset > sector_size_ ||
      len > sector_size_ - offset || (out == nullptr && len > 0)) {
    return Status::OutOfBounds;
  }
  if (!powered_) return Status::IoError;
  if (len > 0) std::memcpy(out, mem_ + sector * sector_size_ + offset, len);
  return Status::Ok;
}

}  // namespace picopay::port::baremetal
