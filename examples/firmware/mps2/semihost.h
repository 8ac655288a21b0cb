/* ARM semihosting (the debugger/emulator channel; QEMU -semihosting-config enable=on):
 * console output and the exit status of the image. */
#ifndef PICOPAY_FIRMWARE_SEMIHOST_H
#define PICOPAY_FIRMWARE_SEMIHOST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes a NUL-terminated string to the host console (SYS_WRITE0). */
void semihost_write0(const char* s);
/* Ends the program with `status` as the emulator's exit status (SYS_EXIT_EXTENDED,
 * ADP_Stopped_ApplicationExit). Does not return. */
__attribute__((noreturn)) void semihost_exit(int status);

/* Host files. open: `mode` is the semihosting fopen mode (3 = "r+b", 7 = "w+b"); returns
 * a handle or -1. write/read: return the number of bytes NOT transferred (0 = all).
 * seek: absolute position, 0 on success. flen: file length or -1. */
int semihost_open(const char* path, int mode);
int semihost_close(int handle);
int semihost_write(int handle, const void* data, unsigned len);
int semihost_read(int handle, void* out, unsigned len);
int semihost_seek(int handle, unsigned pos);
int semihost_flen(int handle);
/* The command line (QEMU: kernel path, a space, then -append's text) into buf (NUL
 * terminated); returns its length or -1. */
int semihost_cmdline(char* buf, unsigned cap);
/* Host monotonic time in nanoseconds since the emulator started (SYS_ELAPSED; falls back
 * to SYS_CLOCK's centiseconds). */
uint64_t semihost_elapsed_ns(void);

#ifdef __cplusplus
}
#endif

#endif
