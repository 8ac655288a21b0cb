// Board support for QEMU's mps2-an386 (Cortex-M4): semihosting console, CMSDK timer 0
// as an instruction counter under -icount, painted-stack measurement, an emulator
// stand-in for the TRNG, and RAM standing in for data flash.
#include <cstring>

#include "board.hpp"
#include "mps2/semihost.h"

extern "C" uint32_t _sstack;  // lowest address of the stack (linker script)

namespace fw {
namespace {

// CMSDK APB timer 0 (ARM DDI 0479C), clocked at the board's 25 MHz peripheral clock.
struct CmsdkTimer {
  volatile uint32_t ctrl, value, reload, intstatus;
};
CmsdkTimer* const kTimer0 = reinterpret_cast<CmsdkTimer*>(0x40000000u);
// Under `qemu-system-arm -icount shift=0` one instruction is one nanosecond of virtual
// time; the timer counts at 25 MHz, so one tick is 40 instructions.
constexpr uint64_t kInstructionsPerTick = 40;

uint32_t g_last = 0;
uint64_t g_ticks = 0;
bool g_started = false;

constexpr uint32_t kPaint = 0xC0FFEE11u;
uintptr_t g_paint_top = 0;

__attribute__((section(".flashsim"))) alignas(16) uint8_t g_flash[kFlashSector * kFlashSectors];

}  // namespace

void print(const char* s) noexcept { semihost_write0(s); }

uint64_t instructions() noexcept {
  if (!g_started) {
    kTimer0->ctrl = 0;
    kTimer0->reload = 0xFFFFFFFFu;
    kTimer0->value = 0xFFFFFFFFu;
    kTimer0->ctrl = 1u;  // enable, internal clock, no interrupt
    g_last = 0xFFFFFFFFu;
    g_started = true;
  }
  const uint32_t now = kTimer0->value;
  g_ticks += static_cast<uint32_t>(g_last - now);  // down-counter; wraps at reload
  g_last = now;
  return g_ticks * kInstructionsPerTick;
}

bool instructions_known() noexcept { return true; }

__attribute__((noinline)) void stack_paint() noexcept {
  uintptr_t sp;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  // Leave 64 bytes below this frame alone (this function's own spill area).
  g_paint_top = (sp - 64u) & ~uintptr_t{3};
  for (uintptr_t p = reinterpret_cast<uintptr_t>(&_sstack); p < g_paint_top; p += 4) {
    *reinterpret_cast<volatile uint32_t*>(p) = kPaint;
  }
}

size_t stack_used() noexcept {
  uintptr_t p = reinterpret_cast<uintptr_t>(&_sstack);
  while (p < g_paint_top && *reinterpret_cast<volatile uint32_t*>(p) == kPaint) p += 4;
  // Bytes from the paint point down to the deepest word touched, plus the 64 spared.
  return g_paint_top - p + 64u;
}

// QEMU's mps2 boards have no TRNG. A real board reads its TRNG here (e.g. STM32 RNG_DR);
// this stand-in mixes the instruction counter and the host's clock (nanoseconds since
// QEMU started: jitter) so seeds differ between runs and devices. It is NOT a source of
// secrets fit for real money: keys made from it are test keys.
int entropy(void*, uint8_t* out, size_t len) noexcept {
  const uint64_t ns = semihost_elapsed_ns();
  uint32_t x = 0x6A09E667u ^ static_cast<uint32_t>(instructions()) ^ static_cast<uint32_t>(ns) ^
               static_cast<uint32_t>(ns >> 32) * 0x9E3779B9u;
  if (x == 0) x = 1;
  for (size_t i = 0; i < len; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<uint8_t>(x >> 24);
  }
  return 0;
}

uint8_t* flash_memory() noexcept { return g_flash; }

}  // namespace fw

