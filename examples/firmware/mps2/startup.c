/* Cortex-M4 startup for the picopay firmware: vector table, reset handler (copy .data,
 * zero .bss, enable the FPU, run static constructors, main), fault handlers that exit
 * through semihosting with a distinctive status, and traps for any allocator. */
#include <stddef.h>
#include <stdint.h>

#include "mps2/semihost.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern void (*__preinit_array_start[])(void);
extern void (*__preinit_array_end[])(void);
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);

int main(void);
void Reset_Handler(void);

/* Exit statuses that are not a check count (docs/firmware.md). */
enum { kExitFault = 200, kExitHeap = 201, kExitReturned = 202, kExitFatal = 203 };

static void fault(void) {
  semihost_write0("FATAL hard fault\n");
  semihost_exit(kExitFault);
}

void Default_Handler(void) { fault(); }
void HardFault_Handler(void) { fault(); }

__attribute__((section(".isr_vector"), used)) void (*const g_vectors[16])(void) = {
    (void (*)(void))(&_estack), /* initial main stack pointer */
    Reset_Handler,
    Default_Handler,   /* NMI */
    HardFault_Handler, /* HardFault */
    Default_Handler,   /* MemManage */
    Default_Handler,   /* BusFault */
    Default_Handler,   /* UsageFault */
    0, 0, 0, 0,
    Default_Handler, /* SVCall */
    Default_Handler, /* DebugMonitor */
    0,
    Default_Handler, /* PendSV */
    Default_Handler, /* SysTick */
};

void Reset_Handler(void) {
  uint32_t* src = &_sidata;
  for (uint32_t* dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (uint32_t* dst = &_sbss; dst < &_ebss;) *dst++ = 0;

  /* CP10 and CP11 full access: the image is built with -mfloat-abi=hard. */
  volatile uint32_t* const cpacr = (volatile uint32_t*)0xE000ED88u;
  *cpacr |= (0xFu << 20);
  __asm__ volatile("dsb\n isb" ::: "memory");

  for (size_t i = 0; i < (size_t)(__preinit_array_end - __preinit_array_start); ++i) __preinit_array_start[i]();
  for (size_t i = 0; i < (size_t)(__init_array_end - __init_array_start); ++i) __init_array_start[i]();

  const int status = main();
  semihost_exit(status >= 0 && status < 256 ? status : kExitReturned);
}

/* libsecp256k1's default callbacks end up here (port/baremetal hooks.hpp). */
void picopay_baremetal_fatal(const char* what) {
  semihost_write0("FATAL libsecp256k1: ");
  semihost_write0(what);
  semihost_write0("\n");
  semihost_exit(kExitFatal);
}

/* No heap. Nothing in the image may allocate: size-report.sh fails the build if
 * malloc/free/new/delete are linked at all, and should one appear anyway, newlib's
 * allocator gets its memory only through _sbrk, which stops the image here. */
void* _sbrk(ptrdiff_t incr) {
  (void)incr;
  semihost_write0("FATAL heap use (_sbrk)\n");
  semihost_exit(kExitHeap);
}

/* Pure virtual call (a bug): stop. Needed because abstract port interfaces have vtables. */
void __cxa_pure_virtual(void) { fault(); }
