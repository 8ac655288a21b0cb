// The chain relay of firmware devices: firmware_relay.hpp.
#include "picopay/demo/firmware_relay.hpp"

#include <chrono>
#include <cstdio>
#include <fstream>

#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/demo/support.hpp"
#include "picopay/eth_tx.hpp"
#include "picopay/keccak.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"

namespace picopay::demo {

namespace {
const std::string kPrefix = "picopay/v1/user/";
}

std::string firmware_relay_acl(const std::string& relay_user) {
  return "\n# firmware devices and their chain relay (docs/firmware.md)\n"
         "pattern write picopay/v1/user/%u/chain/up\n"
         "pattern read picopay/v1/user/%u/chain/down\n"
         "user " + relay_user + "\n"
         "topic read picopay/v1/user/+/chain/up\n"
         "topic write picopay/v1/user/+/chain/down\n";
}

FirmwareRelay::FirmwareRelay() = default;
FirmwareRelay::~FirmwareRelay() { stop(); }

bool FirmwareRelay::start(const FirmwareRelayOptions& o, std::string& err) {
  o_ = o;
  mqtt::Options mo;
  mo.port = o.broker_port;
  mo.client_id = o.username;
  mo.username = o.username;
  mo.password = o.password;
  mo.clean_start = true;
  mq_ = std::make_unique<mqtt::Client>(mo);
  mq_->on_message([this](const mqtt::Message& m) {
    // picopay/v1/user/<device>/chain/up
    if (m.topic.size() != kPrefix.size() + 42 + 9 || m.topic.compare(0, kPrefix.size(), kPrefix) != 0 ||
        m.topic.compare(kPrefix.size() + 42, 9, "/chain/up") != 0)
      return;
    Address a{};
    if (address_parse(m.topic.c_str() + kPrefix.size(), 42, a) != Status::Ok) return;
    bool served = false;
    for (const auto& d : o_.devices) served = served || d == a;
    if (!served) return;
    std::lock_guard<std::mutex> l(mu_);
    if (queue_.size() < 1024) queue_.emplace_back(a, m.payload);
    cv_.notify_one();
  });
  mq_->subscribe(kPrefix + "+/chain/up");
  stop_ = false;
  thread_ = std::thread([this] { worker(); });
  if (!mq_->start(err) || !mq_->wait_connected(10000)) {
    if (err.empty()) err = "firmware relay MQTT client: " + mq_->last_error();
    stop();
    return false;
  }
  return true;
}

void FirmwareRelay::stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  if (mq_) mq_->stop();
  mq_.reset();
}

void FirmwareRelay::log(const std::string& line) {
  if (o_.log_path.empty()) return;
  std::ofstream f(o_.log_path, std::ios::app);
  f << line << "\n";
}

void FirmwareRelay::worker() {
  for (;;) {
    std::pair<Address, std::vector<uint8_t>> job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      // Several asks of one device queued: one offer answers them all.
      if (job.second.size() == 1) {
        for (auto it = queue_.begin(); it != queue_.end();) {
          if (it->first == job.first && it->second == job.second) it = queue_.erase(it);
          else ++it;
        }
      }
    }
    handle(job.first, job.second);
  }
}

void FirmwareRelay::handle(const Address& device, const std::vector<uint8_t>& payload) {
  if (payload.empty()) return;
  const std::string who = mqtt::topic_address(device);
  const std::string down = kPrefix + who + "/chain/down";
  chain::RpcClient rpc(o_.rpc_url, 15000);
  if (payload[0] == kRelayTx && payload.size() > 1) {
    const std::vector<uint8_t> raw(payload.begin() + 1, payload.end());
    RelayReceiptMsg r{};
    auto h = rpc.send_raw_transaction(raw);
    if (!h) {
      // Refused by the node (e.g. the nonce is taken: the same deposit already went out).
      keccak256(raw.data(), raw.size(), r.txHash.bytes);
      r.status = 2;
      log(who + " tx refused by the node: " + h.error().to_string());
    } else {
      ++txs_;
      r.txHash = *h;
      for (int i = 0; i < 300; ++i) {
        auto rc = rpc.receipt(*h);
        if (rc) {
          r.status = rc->status ? 1 : 0;
          r.gasUsed = rc->gasUsed;
          r.blockNumber = rc->blockNumber;
          if (rc->status) ++executed_;
          gas_used_ += rc->gasUsed;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      log(who + " tx " + chain::hash_hex(r.txHash) + " status " + std::to_string(r.status) + " gas " +
          std::to_string(r.gasUsed));
    }
    uint8_t b[kRelayReceiptSize];
    relay_receipt_encode(r, b);
    mq_->publish(down, b, sizeof b, 1, false);
  }
  // An offer: after a transaction (fresh facts), or on the device's ask.
  RelayOfferMsg m{};
  auto cid = rpc.chain_id();
  auto nonce = rpc.transaction_count(device, "pending");
  auto gp_json = rpc.call("eth_gasPrice", "[]");
  auto blk = rpc.block_by_number("latest");
  if (!cid || !nonce || !gp_json || !blk) {
    log(who + " cannot read the chain for an offer");
    return;
  }
  auto gp = chain::parse_quantity_u256(gp_json->get(), "eth_gasPrice");
  if (!gp) return;
  // The ChannelManager views go through a wallet object: a fresh key, never funded.
  PrivateKey view_key{};
  const std::string vk = random_key_hex();
  if (private_key_parse(vk.c_str(), vk.size(), view_key) != Status::Ok) return;
  chain::Wallet w(rpc, view_key);
  if (!w.init()) return;
  chain::ChannelManagerClient cm(w, o_.contract);
  auto ch = cm.channel(device);
  if (!ch) {
    log(who + " cannot read the channel: " + ch.error().to_string());
    return;
  }
  m.tx.chainId = *cid;
  m.tx.nonce = *nonce;
  m.tx.gasPriceWei = o_.override_gas_price ? o_.gas_price : *gp;
  m.tx.gasLimit = o_.gas_limit;
  m.facts.known = true;
  m.facts.txCountGlobal = ch->txCountGlobal;
  m.facts.txCountChain = ch->txCountChain;
  m.facts.status = ch->status == chain::ChannelStatus::Open ? ChainChannelStatus::Open : ChainChannelStatus::InDispute;
  m.facts.blockTime = blk->timestamp;
  uint8_t b[kRelayOfferSize];
  relay_offer_encode(m, b);
  mq_->publish(down, b, sizeof b, 1, false);
  ++offers_;
}

}  // namespace picopay::demo
