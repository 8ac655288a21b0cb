/* libsecp256k1's default callbacks for bare metal (built into the `secp256k1` target
 * with USE_EXTERNAL_DEFAULT_CALLBACKS, see toolchains/secp256k1-target.cmake): instead
 * of fprintf(stderr) + abort(), which would pull newlib's stdio and a heap into the
 * image, they hand the message to picopay_baremetal_fatal(). picopay never passes
 * illegal arguments on purpose, so reaching these is a bug: stop rather than go on. */
#include <stddef.h>

void picopay_baremetal_fatal(const char* what) __attribute__((noreturn));

/* Weak default: mask interrupts and spin until the watchdog resets the part. */
__attribute__((weak, noreturn)) void picopay_baremetal_fatal(const char* what) {
  (void)what;
#if defined(__arm__)
  __asm__ volatile("cpsid i" ::: "memory");
#endif
  for (;;) {
  }
}

void secp256k1_default_illegal_callback_fn(const char* str, void* data) {
  (void)data;
  picopay_baremetal_fatal(str);
}

void secp256k1_default_error_callback_fn(const char* str, void* data) {
  (void)data;
  picopay_baremetal_fatal(str);
}
