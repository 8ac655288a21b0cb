// `picopay demo --firmware N`: N Cortex-M4 devices under qemu-system-arm (the paying
// image of examples/firmware) next to the Linux chargers. Each device makes its key on
// its first boot (the key never leaves it), signs its own deposit transaction, which the
// demo's keyless chain relay submits (docs/firmware.md "Opening the channel on chain"),
// pays the hub per payment until the telemetry ends, and prints its final state, which
// the demo reconciles against the hub and settles on chain.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "picopay/chain/tx.hpp"
#include "picopay/demo/firmware_relay.hpp"
#include "picopay/demo/support.hpp"
#include "picopay/state.hpp"

namespace picopay::demo {

class FirmwareFleet {
 public:
  static constexpr uint64_t kDepositWei = 10000000000000000ULL;  // 0.01 ETH per device
  static constexpr uint64_t kAmountWei = 1000000000000ULL;       // 1e12 wei (0.000001 ETH) per payment
  static constexpr uint64_t kMaxGasPrice = 200000000000ULL;      // 200 gwei: the device's bound
  static constexpr uint64_t kMaxFee = 50000000000000000ULL;      // 0.05 ETH: the device's bound
  static constexpr uint64_t kFundWei = 1000000000000000000ULL;   // 1 ETH of gas and deposit per device

  // "" if qemu-system-arm and the device image are there; else one line naming what is
  // missing. The image: $PICOPAY_FIRMWARE_ELF, else <bin dir>/../firmware/picopay_device.elf.
  std::string check();
  // Makes each device's flash file and key (QEMU, provision=1): names firmware1..N.
  bool provision(const std::string& work, int n, std::string& err);
  int count() const { return static_cast<int>(devs_.size()); }
  const std::string& name(size_t i) const { return devs_[i]->name; }
  const std::string& address(size_t i) const { return devs_[i]->addr; }  // lowercase 0x
  bool has(const std::string& addr) const;
  // Sends each device's address kFundWei from `w` (its deposit and gas).
  bool fund(chain::Wallet& w, std::string& err);

  struct Run {
    int broker_port = 0;
    std::map<std::string, std::string> passwords;  // device address -> broker password
    std::string relay_user, relay_password;
    std::string rpc_url, hub_addr, contract;
    uint64_t chain_id = 0;
    uint64_t pay_seconds = 0;  // each device pays for this long from its first payment
  };
  // Starts the relay and the QEMU devices.
  bool start(const std::string& work, const Run& r, std::string& err);
  // A Payment update from a device, seen on the broker (txCountGlobal).
  void observe_payment(const std::string& addr, uint64_t tx);
  uint64_t payments() const;
  // Waits for every device to exit (timeout_ms overall); kills the late ones.
  void wait(int timeout_ms);
  void stop();

  struct Result {
    std::string name, addr, log;
    int exit = -1;
    bool has_final = false;
    SignedChannelState state{};
    uint64_t payments = 0;
    std::string deposit_tx;  // the device's own deposit transaction (hash)
  };
  std::vector<Result> results() const;
  const FirmwareRelay& relay() const { return relay_; }

 private:
  struct Dev {
    std::string name, addr, flash, log;
    Child proc;
    std::atomic<uint64_t> last_tx{0};
  };
  std::vector<std::string> qemu_argv(const Dev& d, int port, const std::string& extra) const;
  std::string elf_;
  std::vector<std::unique_ptr<Dev>> devs_;
  FirmwareRelay relay_;
};

}  // namespace picopay::demo
