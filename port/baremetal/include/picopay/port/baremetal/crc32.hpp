// CRC-32 (IEEE 802.3 / zlib / PNG: reflected polynomial 0xEDB88320, initial value and
// final XOR 0xFFFFFFFF). Check value: crc32("123456789") = 0xCBF43926.
// Nibble-table implementation: 64 bytes of table, no heap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace picopay::port::baremetal {

// Continues a CRC-32 over `data[0..len)`. Start with `crc = 0` (the CRC of nothing);
// the result of one call is the `crc` argument of the next, so
// crc32_update(crc32_update(0, a, n), b, m) == CRC-32 of a ++ b.
uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t len) noexcept;

}  // namespace picopay::port::baremetal
