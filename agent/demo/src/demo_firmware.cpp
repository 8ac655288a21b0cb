// `picopay demo --firmware N`: demo_firmware.hpp.
#include "demo_firmware.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <sstream>
#include <thread>

#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"

namespace picopay::demo {

namespace {

bool in_path(const std::string& tool) {
  const char* path = std::getenv("PATH");
  std::istringstream in(path ? path : "");
  std::string dir;
  while (std::getline(in, dir, ':'))
    if (!dir.empty() && access((dir + "/" + tool).c_str(), X_OK) == 0) return true;
  return false;
}

std::vector<uint8_t> unhex(const std::string& h) {
  std::vector<uint8_t> out(h.size() / 2 + 1);
  size_t n = 0;
  if (hex_decode(h.data(), h.size(), out.data(), out.size(), &n) != Status::Ok) return {};
  out.resize(n);
  return out;
}

}  // namespace

std::string FirmwareFleet::check() {
  const char* e = std::getenv("PICOPAY_FIRMWARE_ELF");
  elf_ = e && *e ? e : bin_dir() + "/../firmware/picopay_device.elf";
  const bool qemu = in_path("qemu-system-arm");
  const bool image = access(elf_.c_str(), R_OK) == 0;
  if (qemu && image) return "";
  std::string what;
  if (!qemu) what = "qemu-system-arm (apt-get install qemu-system-arm)";
  if (!image)
    what += std::string(what.empty() ? "" : " and ") + "the device image " + elf_ +
            " (build it: ctest -R firmware_qemu, needs gcc-arm-none-eabi; or set PICOPAY_FIRMWARE_ELF)";
  return what;
}

std::vector<std::string> FirmwareFleet::qemu_argv(const Dev& d, int port, const std::string& extra) const {
  std::vector<std::string> a = {"qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic",
                                "-monitor", "none", "-chardev", "file,id=console,path=" + d.log,
                                "-semihosting-config", "enable=on,target=native,chardev=console"};
  // No -icount here (the tests use it to count instructions): with it the guest's clock
  // follows its instruction count, slower than the wall clock the demo's until= means.
  if (port > 0)
    a.insert(a.end(), {"-chardev", "socket,id=link,host=127.0.0.1,port=" + std::to_string(port) + ",reconnect=1",
                       "-serial", "chardev:link"});
  else
    a.insert(a.end(), {"-serial", "none"});
  a.insert(a.end(), {"-kernel", elf_, "-append", "flash=" + d.flash + " " + extra});
  return a;
}

bool FirmwareFleet::provision(const std::string& work, int n, std::string& err) {
  make_dirs(work + "/firmware");
  for (int i = 0; i < n; ++i) {
    auto d = std::make_unique<Dev>();
    d->name = "firmware" + std::to_string(i + 1);
    d->flash = work + "/firmware/" + d->name + ".flash";
    d->log = work + "/firmware/" + d->name + ".provision.log";
    Child q;
    if (!q.start(qemu_argv(*d, -1, "provision=1"), work + "/firmware/" + d->name + ".qemu.log") ||
        q.wait(60000) != 0) {
      q.kill9();
      err = d->name + ": provisioning under qemu-system-arm failed (see " + d->log + ")";
      return false;
    }
    const std::string log = read_text(d->log);
    const size_t at = log.find("ADDRESS 0x");
    if (at == std::string::npos) {
      err = d->name + ": the image printed no address (see " + d->log + ")";
      return false;
    }
    std::string a = log.substr(at + 8, 42);
    for (auto& c : a) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    d->addr = a;
    d->log = work + "/firmware/" + d->name + ".log";
    devs_.push_back(std::move(d));
  }
  return true;
}

bool FirmwareFleet::has(const std::string& addr) const {
  for (const auto& d : devs_)
    if (d->addr == addr) return true;
  return false;
}

bool FirmwareFleet::fund(chain::Wallet& w, std::string& err) {
  for (const auto& d : devs_) {
    chain::TxRequest t;
    t.has_to = true;
    if (address_parse(d->addr.c_str(), d->addr.size(), t.to) != Status::Ok) return false;
    t.value = U256::from_u64(kFundWei);
    auto r = w.send(t);
    if (!r) {
      err = "funding " + d->name + ": " + r.error().to_string();
      return false;
    }
  }
  return true;
}

bool FirmwareFleet::start(const std::string& work, const Run& r, std::string& err) {
  FirmwareRelayOptions ro;
  ro.broker_port = r.broker_port;
  ro.username = r.relay_user;
  ro.password = r.relay_password;
  ro.rpc_url = r.rpc_url;
  if (address_parse(r.contract.c_str(), r.contract.size(), ro.contract) != Status::Ok) return false;
  for (const auto& d : devs_) {
    Address a{};
    if (address_parse(d->addr.c_str(), d->addr.size(), a) == Status::Ok) ro.devices.push_back(a);
  }
  ro.log_path = work + "/firmware/relay.log";
  if (!relay_.start(ro, err)) return false;
  const uint64_t now = static_cast<uint64_t>(time(nullptr));
  for (auto& d : devs_) {
    auto pw = r.passwords.find(d->addr);
    if (pw == r.passwords.end()) {
      err = d->name + ": no broker password";
      return false;
    }
    const std::string cfg = "hub=" + r.hub_addr + " contract=" + r.contract + " password=" + pw->second +
                            " now=" + std::to_string(now) + " deposit=" + std::to_string(kDepositWei) +
                            " amount=" + std::to_string(kAmountWei) + " payments=1000000 pay_seconds=" +
                            std::to_string(r.pay_seconds) + " timeout=" + std::to_string(now + 3600) +
                            " gateway=1 chain_id=" + std::to_string(r.chain_id) +
                            " max_gas_price=" + std::to_string(kMaxGasPrice) + " max_fee=" + std::to_string(kMaxFee);
    // The broker password travels on QEMU's command line (the image's configuration):
    // a dev-chain demo account on 127.0.0.1. The device's private key never does.
    if (!d->proc.start(qemu_argv(*d, r.broker_port, cfg), work + "/firmware/" + d->name + ".qemu.log")) {
      err = "cannot start qemu-system-arm for " + d->name;
      return false;
    }
  }
  return true;
}

void FirmwareFleet::observe_payment(const std::string& addr, uint64_t tx) {
  for (auto& d : devs_)
    if (d->addr == addr) {
      uint64_t cur = d->last_tx.load();
      while (tx > cur && !d->last_tx.compare_exchange_weak(cur, tx)) {
      }
    }
}

uint64_t FirmwareFleet::payments() const {
  uint64_t n = 0;
  for (const auto& d : devs_) {
    const uint64_t tx = d->last_tx.load();
    n += tx > 2 ? tx - 2 : 0;  // deposit + ConfirmPending open the channel
  }
  return n;
}

void FirmwareFleet::wait(int timeout_ms) {
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& d : devs_) {
    const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    const int left = timeout_ms - static_cast<int>(spent.count());
    if (d->proc.wait(left > 0 ? left : 0) < 0) d->proc.kill9();
  }
}

void FirmwareFleet::stop() {
  for (auto& d : devs_) d->proc.stop(3000);
  relay_.stop();
}

std::vector<FirmwareFleet::Result> FirmwareFleet::results() const {
  std::vector<Result> out;
  for (const auto& d : devs_) {
    Result r;
    r.name = d->name;
    r.addr = d->addr;
    r.log = d->log;
    r.exit = d->proc.status();
    std::istringstream in(read_text(d->log));
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream l(line);
      std::string tag, hex;
      uint64_t n = 0;
      l >> tag >> n >> hex;
      if (tag == "FINAL") {
        const std::vector<uint8_t> b = unhex(hex);
        r.has_final = decode_channel_state(b.data(), b.size(), r.state) == Status::Ok;
      } else if (tag == "DEPOSIT_TX") {
        const std::vector<uint8_t> b = unhex(hex);
        Hash32 h{};
        keccak256(b.data(), b.size(), h.bytes);
        char t[kHash32TextSize];
        hash32_to_hex(h, t);
        r.deposit_tx = t;
      } else if (tag == "METRIC" && line.rfind("METRIC payments ", 0) == 0) {
        r.payments = std::strtoull(line.c_str() + 16, nullptr, 10);
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace picopay::demo
