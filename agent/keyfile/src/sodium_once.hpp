// sodium_init() exactly once per process (a function-local static: thread-safe).
#pragma once

#include <sodium.h>

namespace picopay::keyfile_detail {

// True if libsodium is usable (sodium_init() returned 0 or 1).
inline bool sodium_ready() noexcept {
  static const int rc = ::sodium_init();
  return rc >= 0;
}

}  // namespace picopay::keyfile_detail
