// What the firmware application needs from its board: a console, an entropy source,
// the flash that holds the channel state, and measurement hooks (retired instructions,
// stack depth). mps2/board_mps2.cpp implements it for QEMU's mps2-an386 (Cortex-M4),
// linux/board_linux.cpp for an aarch64 Linux gateway (run under qemu-user).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fw {

// Writes a NUL-terminated string to the console (no newline added).
void print(const char* s) noexcept;

// Instructions retired since boot, if the platform can count them (QEMU -icount: the
// virtual clock advances one nanosecond per instruction); else 0. `instructions_known()`
// tells which.
uint64_t instructions() noexcept;
bool instructions_known() noexcept;

// Stack measurement: stack_paint() fills the unused stack below the caller's frame with
// a pattern; stack_used() then returns how many bytes below that point were touched
// since (the deepest use). Returns 0 where unsupported.
void stack_paint() noexcept;
size_t stack_used() noexcept;

// The board's entropy source (port::baremetal::EntropyFn shape): 0 on success.
int entropy(void* ctx, uint8_t* out, size_t len) noexcept;

// Backing memory of the board's state flash (two or more sectors of kFlashSector bytes).
constexpr size_t kFlashSector = 1024;
constexpr size_t kFlashSectors = 2;
uint8_t* flash_memory() noexcept;

}  // namespace fw

// The application (app.cpp): runs every check, prints the results, and returns the
// number of failed checks (0 = all passed), which becomes the exit status.
int firmware_run() noexcept;
