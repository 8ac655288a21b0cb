/* ARM semihosting (the debugger/emulator channel; QEMU -semihosting-config enable=on):
 * console output and the exit status of the image. */
#ifndef PICOPAY_FIRMWARE_SEMIHOST_H
#define PICOPAY_FIRMWARE_SEMIHOST_H

#ifdef __cplusplus
extern "C" {
#endif

/* Writes a NUL-terminated string to the host console (SYS_WRITE0). */
void semihost_write0(const char* s);
/* Ends the program with `status` as the emulator's exit status (SYS_EXIT_EXTENDED,
 * ADP_Stopped_ApplicationExit). Does not return. */
__attribute__((noreturn)) void semihost_exit(int status);

#ifdef __cplusplus
}
#endif

#endif
