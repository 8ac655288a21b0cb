// Board support of the paying device image on QEMU's mps2-an386 (device_board.hpp):
//  - the link to the broker is CMSDK APB UART0 (0x40004000), polled; QEMU connects it to
//    the broker's TCP port (`-chardev socket,host=127.0.0.1,port=P,reconnect=1`);
//  - the flash is a file on the host reached by semihosting (SYS_OPEN/SEEK/WRITE/READ):
//    every program/erase is one host write, so killing QEMU is a power cut between two
//    flash operations and the file keeps what was written (the store is torn-write safe
//    anyway, port/baremetal flash_state_store.hpp). NOR rules are kept: a program can
//    only clear bits (old AND new) and needs an erase first;
//  - the clock is the host's monotonic clock (SYS_ELAPSED), the configuration the
//    semihosting command line (`-append "flash=... hub=..."`).
#include <cstring>

#include "board.hpp"
#include "device_board.hpp"
#include "mps2/semihost.h"

namespace fw {
namespace {

using picopay::Status;
namespace bm = picopay::port::baremetal;

// CMSDK APB UART (ARM DDI 0479C 4.3).
struct CmsdkUart {
  volatile uint32_t data, state, ctrl, intstatus, bauddiv;
};
CmsdkUart* const kUart0 = reinterpret_cast<CmsdkUart*>(0x40004000u);
constexpr uint32_t kTxFull = 1u, kRxFull = 2u;

class UartLink final : public bm::SerialLink {
 public:
  void start() noexcept {
    kUart0->bauddiv = 16;
    kUart0->ctrl = 3u;  // TX and RX enabled, no interrupts
  }
  Status write(const uint8_t* data, size_t len) noexcept override {
    for (size_t i = 0; i < len; ++i) {
      while (kUart0->state & kTxFull) {
      }
      kUart0->data = data[i];
    }
    return Status::Ok;
  }
  bool read(uint8_t* out) noexcept override {
    if (!(kUart0->state & kRxFull)) return false;
    *out = static_cast<uint8_t>(kUart0->data);
    return true;
  }
  uint32_t now_ms() noexcept override { return static_cast<uint32_t>(semihost_elapsed_ns() / 1000000u); }
};

class HostFileFlash final : public bm::Flash {
 public:
  bool open(const char* path) noexcept {
    handle_ = semihost_open(path, 3);  // "r+b"
    if (handle_ < 0) {
      handle_ = semihost_open(path, 7);  // "w+b": a blank part
      if (handle_ < 0) return false;
    }
    if (semihost_flen(handle_) < static_cast<int>(kDeviceFlashSector * kDeviceFlashSectors)) {
      for (size_t s = 0; s < kDeviceFlashSectors; ++s) {
        if (erase(s) != Status::Ok) return false;
      }
    }
    return true;
  }
  size_t sector_size() const noexcept override { return kDeviceFlashSector; }
  size_t sector_count() const noexcept override { return kDeviceFlashSectors; }
  size_t write_unit() const noexcept override { return 8; }
  Status erase(size_t sector) noexcept override {
    if (sector >= kDeviceFlashSectors) return Status::OutOfBounds;
    std::memset(buf_, 0xFF, sizeof buf_);
    for (size_t off = 0; off < kDeviceFlashSector; off += sizeof buf_) {
      const Status e = put(sector * kDeviceFlashSector + off, buf_, sizeof buf_);
      if (e != Status::Ok) return e;
    }
    return Status::Ok;
  }
  Status program(size_t sector, size_t offset, const uint8_t* data, size_t len) noexcept override {
    if (sector >= kDeviceFlashSectors || offset > kDeviceFlashSector || len > kDeviceFlashSector - offset ||
        offset % 8 != 0 || len % 8 != 0)
      return Status::OutOfBounds;
    // One host write per program call (a kill lands between two flash operations); the
    // read-modify-write goes through a small buffer in pieces only for long programs.
    for (size_t done = 0; done < len;) {
      const size_t n = len - done < sizeof buf_ ? len - done : sizeof buf_;
      const size_t at = sector * kDeviceFlashSector + offset + done;
      Status e = get(at, buf_, n);
      if (e != Status::Ok) return e;
      for (size_t i = 0; i < n; ++i) buf_[i] &= data[done + i];  // NOR: program only clears bits
      e = put(at, buf_, n);
      if (e != Status::Ok) return e;
      done += n;
    }
    return Status::Ok;
  }
  Status read(size_t sector, size_t offset, uint8_t* out, size_t len) noexcept override {
    if (sector >= kDeviceFlashSectors || offset > kDeviceFlashSector || len > kDeviceFlashSector - offset)
      return Status::OutOfBounds;
    return get(sector * kDeviceFlashSector + offset, out, len);
  }

 private:
  Status put(size_t at, const uint8_t* d, size_t len) noexcept {
    if (semihost_seek(handle_, static_cast<unsigned>(at)) != 0) return Status::IoError;
    return semihost_write(handle_, d, static_cast<unsigned>(len)) == 0 ? Status::Ok : Status::IoError;
  }
  Status get(size_t at, uint8_t* out, size_t len) noexcept {
    if (semihost_seek(handle_, static_cast<unsigned>(at)) != 0) return Status::IoError;
    return semihost_read(handle_, out, static_cast<unsigned>(len)) == 0 ? Status::Ok : Status::IoError;
  }
  int handle_ = -1;
  uint8_t buf_[64];
};

UartLink g_uart;
HostFileFlash g_flash;
const char* g_config = "";

}  // namespace

bool config_value(const char* key, char* out, size_t cap) {
  const size_t kl = std::strlen(key);
  const char* p = g_config;
  while (*p != '\0') {
    while (*p == ' ') ++p;
    const char* end = p;
    while (*end != '\0' && *end != ' ') ++end;
    if (static_cast<size_t>(end - p) > kl && std::strncmp(p, key, kl) == 0 && p[kl] == '=') {
      const size_t n = static_cast<size_t>(end - p) - kl - 1;
      if (n + 1 > cap) return false;
      std::memcpy(out, p + kl + 1, n);
      out[n] = '\0';
      return true;
    }
    p = end;
  }
  return false;
}

bm::SerialLink& serial() noexcept { return g_uart; }

bm::Flash* device_flash() noexcept {
  static bool opened = false;
  static bool ok = false;
  if (!opened) {
    opened = true;
    char path[160];
    ok = config_value("flash", path, sizeof path) && g_flash.open(path);
  }
  return ok ? &g_flash : nullptr;
}


}  // namespace fw

int main() {
  // The command line lives on main's stack for the whole run (not counted as RAM: the
  // configuration of a real board comes from its flash or is compiled in).
  char cmdline[512];
  const int n = semihost_cmdline(cmdline, sizeof cmdline);
  if (n > 0) {
    // Skip the kernel path (the first word).
    const char* p = cmdline;
    while (*p != '\0' && *p != ' ') ++p;
    fw::g_config = p;
  }
  fw::g_uart.start();
  return device_run();
}
