// What the paying device image (device.cpp) needs from its board, on top of board.hpp:
// the byte stream to the broker, the flash that holds the key and the channel, the
// start-up configuration, and a millisecond clock. mps2/device_mps2.cpp implements it
// for QEMU's mps2-an386: CMSDK UART0 (QEMU connects it to the broker's TCP port), a flash
// image file on the host reached by semihosting, the semihosting command line.
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/port/baremetal/flash.hpp"
#include "picopay/port/baremetal/mqtt_client.hpp"

namespace fw {

// The serial link to the broker (UART0 on mps2).
picopay::port::baremetal::SerialLink& serial() noexcept;

// The device's data flash: sectors 0-1 hold the key, 2-3 the channel record. Null if the
// board's flash is not usable (then the image stops).
picopay::port::baremetal::Flash* device_flash() noexcept;
constexpr size_t kDeviceFlashSector = 2048;
constexpr size_t kDeviceFlashSectors = 4;

// The start-up configuration is "key=value" words separated by spaces (on mps2 the
// semihosting command line). Copies the value of `key` into out (NUL-terminated, cap
// bytes); false if the key is absent or its value does not fit.
bool config_value(const char* key, char* out, size_t cap);

}  // namespace fw

// The paying device application (device.cpp); its return value is the exit status.
int device_run() noexcept;
