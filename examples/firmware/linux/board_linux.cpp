// Board support for an aarch64 Linux gateway (run under qemu-user in tests): stdout
// console, getrandom entropy, a static array as the state flash. Instruction counts and
// stack painting are not available here (0).
#include <sys/random.h>

#include <cstdio>

#include "board.hpp"

namespace fw {
namespace {
alignas(16) uint8_t g_flash[kFlashSector * kFlashSectors];
}

void print(const char* s) noexcept {
  std::fputs(s, stdout);
  std::fflush(stdout);
}
uint64_t instructions() noexcept { return 0; }
bool instructions_known() noexcept { return false; }
void stack_paint() noexcept {}
size_t stack_used() noexcept { return 0; }
int entropy(void*, uint8_t* out, size_t len) noexcept {
  return getrandom(out, len, 0) == static_cast<ssize_t>(len) ? 0 : -1;
}
uint8_t* flash_memory() noexcept { return g_flash; }

}  // namespace fw

int main() { return firmware_run(); }
