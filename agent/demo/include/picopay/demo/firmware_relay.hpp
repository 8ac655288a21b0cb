// The chain relay of firmware devices (docs/firmware.md "Opening the channel on chain"):
// a keyless gateway between the devices' MQTT topics and the chain node. Used by
// `picopay demo --firmware N` and tests/firmware.
//
// For each device it serves (picopay/v1/user/<device>/chain/up):
//  - kRelayAsk: reads the chain and answers an offer on .../chain/down (core eth_tx.hpp
//    RelayOfferMsg): eth_chainId, the device's pending nonce, eth_gasPrice, a fixed gas
//    limit, and the device channel's chain facts (ChannelManager getChannelDetails:
//    txCount[0], txCount[1], status) at the latest block;
//  - kRelayTx + raw bytes: eth_sendRawTransaction, then the receipt (RelayReceiptMsg,
//    status 2 if the node refused it) and a fresh offer.
// It holds no key that can move funds (the ChannelManager views need a wallet object: a
// fresh random key, never funded, signs nothing) and cannot change what the device
// signed; the device bounds what it costs (docs/firmware.md).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::mqtt {
class Client;
}

namespace picopay::demo {

struct FirmwareRelayOptions {
  int broker_port = 0;
  std::string username, password;  // the relay's broker account
  std::string rpc_url;
  Address contract{};
  std::vector<Address> devices;  // served devices (others are ignored)
  uint64_t gas_limit = 400000;   // userAuthorizedUpdate uses about 150k
  // Tests only: offer this gas price instead of eth_gasPrice (a relay that lies).
  bool override_gas_price = false;
  U256 gas_price = U256::zero();
  std::string log_path;  // one line per relayed transaction and refusal ("" = none)
};

// The mosquitto ACL lines for firmware devices with a relay (appended to the shipped
// picopay ACL): each device writes its chain/up and reads its chain/down topic; the
// relay's user reads every chain/up and writes every chain/down.
std::string firmware_relay_acl(const std::string& relay_user);

class FirmwareRelay {
 public:
  FirmwareRelay();
  ~FirmwareRelay();
  FirmwareRelay(const FirmwareRelay&) = delete;
  FirmwareRelay& operator=(const FirmwareRelay&) = delete;

  // Connects to the broker and subscribes. False (err set) if the broker or node is
  // unreachable.
  bool start(const FirmwareRelayOptions& o, std::string& err);
  void stop();

  uint64_t offers() const noexcept { return offers_.load(); }
  uint64_t transactions() const noexcept { return txs_.load(); }          // sent to the node
  uint64_t executed() const noexcept { return executed_.load(); }         // receipt status 1
  uint64_t gas_used() const noexcept { return gas_used_.load(); }

 private:
  void worker();
  void handle(const Address& device, const std::vector<uint8_t>& payload);
  void log(const std::string& line);

  FirmwareRelayOptions o_;
  std::unique_ptr<mqtt::Client> mq_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Address, std::vector<uint8_t>>> queue_;
  bool stop_ = false;
  std::thread thread_;
  std::atomic<uint64_t> offers_{0}, txs_{0}, executed_{0}, gas_used_{0};
};

}  // namespace picopay::demo
