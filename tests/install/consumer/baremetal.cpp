// Uses picopay::port_baremetal from an installed prefix: CRC-32 check value and a
// RAM flash round trip; prints "ok" and exits 0 when they hold.
#include <cstdio>
#include <cstring>

#include "picopay/port/baremetal/crc32.hpp"
#include "picopay/port/baremetal/ram_flash.hpp"

int main() {
  using namespace picopay::port::baremetal;
  const char* check = "123456789";
  if (crc32_update(0, reinterpret_cast<const uint8_t*>(check), 9) != 0xCBF43926u) return 1;
  static uint8_t mem[4 * 256];
  RamFlash flash(mem, 256, 4, 8);
  const uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  uint8_t back[8] = {};
  if (flash.erase(1) != picopay::Status::Ok || flash.program(1, 16, data, 8) != picopay::Status::Ok ||
      flash.read(1, 16, back, 8) != picopay::Status::Ok || std::memcmp(back, data, 8) != 0) {
    std::fprintf(stderr, "ram flash round trip failed\n");
    return 1;
  }
  std::puts("ok");
  return 0;
}
