#include "picopay/port/baremetal/hooks.hpp"

#include <cstring>

namespace picopay::port::baremetal {

Status HookEntropy::fill(uint8_t* out, size_t len) noexcept {
  if (len == 0) return Status::Ok;
  if (out == nullptr) return Status::OutOfBounds;
  if (fn_ == nullptr || fn_(ctx_, out, len) != 0) {
    std::memset(out, 0, len);
    return Status::IoError;
  }
  if (len >= 16) {
    bool stuck = true;
    for (size_t i = 1; i < len && stuck; ++i) stuck = out[i] == out[0];
    if (stuck) {
      std::memset(out, 0, len);
      return Status::IoError;
    }
  }
  return Status::Ok;
}

void HookLog::write(LogLevel level, const char* msg) noexcept {
  if (fn_ == nullptr || msg == nullptr || static_cast<uint8_t>(level) < static_cast<uint8_t>(min_)) {
    return;
  }
  fn_(ctx_, level, msg);
}

}  // namespace picopay::port::baremetal
