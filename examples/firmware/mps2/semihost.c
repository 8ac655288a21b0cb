#include "mps2/semihost.h"

#include <stdint.h>

enum { kSysWrite0 = 0x04, kSysExit = 0x18, kSysExitExtended = 0x20 };
enum { kAdpStoppedApplicationExit = 0x20026 };

static int semihost_call(int op, const void* arg) {
  register int r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void semihost_write0(const char* s) { (void)semihost_call(kSysWrite0, s); }

void semihost_exit(int status) {
  const uint32_t block[2] = {kAdpStoppedApplicationExit, (uint32_t)status};
  (void)semihost_call(kSysExitExtended, block);
  /* A host without SYS_EXIT_EXTENDED: plain exit (status 0 or 1 only). */
  (void)semihost_call(kSysExit, (const void*)(uintptr_t)(status == 0 ? kAdpStoppedApplicationExit : 0x20023));
  for (;;) {
  }
}
