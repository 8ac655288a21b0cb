// Console helpers of the firmware images (no stdio: newlib's printf would bring a heap).
#pragma once

#include <cstddef>
#include <cstdint>

#include "board.hpp"
#include "picopay/hex.hpp"

namespace fw {

inline void print_u64(uint64_t v) {
  char buf[21];
  char* p = buf + sizeof buf - 1;
  *p = '\0';
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  print(p);
}

// Lowercase hex of data[0..len), in pieces (no big buffer).
inline void print_hex(const uint8_t* data, size_t len) {
  char buf[2 * 48 + 1];
  while (len > 0) {
    const size_t n = len < 48 ? len : 48;
    picopay::hex_encode(data, n, buf, false);
    print(buf);
    data += n;
    len -= n;
  }
}

inline void metric(const char* name, uint64_t v) {
  print("METRIC ");
  print(name);
  print(" ");
  print_u64(v);
  print("\n");
}

}  // namespace fw
