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

/* Files on the host (SYS_OPEN/READ/WRITE/SEEK/FLEN/CLOSE): the device image keeps its
 * flash in a host file, so a SIGKILL of QEMU is a power cut that the file survives. */
enum { kSysOpen = 0x01, kSysClose = 0x02, kSysWrite = 0x05, kSysRead = 0x06, kSysSeek = 0x0A, kSysFlen = 0x0C,
       kSysClock = 0x10, kSysGetCmdline = 0x15, kSysElapsed = 0x30 };

static unsigned cstrlen(const char* s) {
  unsigned n = 0;
  while (s[n] != '\0') ++n;
  return n;
}

int semihost_open(const char* path, int mode) {
  const uint32_t block[3] = {(uint32_t)(uintptr_t)path, (uint32_t)mode, cstrlen(path)};
  return semihost_call(kSysOpen, block);
}

int semihost_close(int handle) {
  const uint32_t block[1] = {(uint32_t)handle};
  return semihost_call(kSysClose, block);
}

int semihost_write(int handle, const void* data, unsigned len) {
  const uint32_t block[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)data, len};
  return semihost_call(kSysWrite, block);
}

int semihost_read(int handle, void* out, unsigned len) {
  const uint32_t block[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)out, len};
  return semihost_call(kSysRead, block);
}

int semihost_seek(int handle, unsigned pos) {
  const uint32_t block[2] = {(uint32_t)handle, pos};
  return semihost_call(kSysSeek, block);
}

int semihost_flen(int handle) {
  const uint32_t block[1] = {(uint32_t)handle};
  return semihost_call(kSysFlen, block);
}

int semihost_cmdline(char* buf, unsigned cap) {
  uint32_t block[2] = {(uint32_t)(uintptr_t)buf, cap};
  if (semihost_call(kSysGetCmdline, block) != 0) return -1;
  return (int)block[1];
}

uint64_t semihost_elapsed_ns(void) {
  uint32_t block[2] = {0, 0};
  if (semihost_call(kSysElapsed, block) == 0) return ((uint64_t)block[1] << 32) | block[0];
  return (uint64_t)(uint32_t)semihost_call(kSysClock, 0) * 10000000u;
}
