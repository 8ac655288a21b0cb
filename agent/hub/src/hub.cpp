#include "hub.hpp"
#include "log.hpp"
#include "hub_internal.hpp"

#include <cjson/cJSON.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "picopay/agent/json_state.hpp"
#include "picopay/agent/log.hpp"
#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/chain/watchtower.hpp"
#include "chain_follow.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "metrics.hpp"

namespace picopay::hub {

void logf(const char* level, const std::string& msg) { agent::log_named(level, msg); }

Hub::Hub(Config cfg, const PrivateKey& key) : cfg_(std::move(cfg)), key_(key) {}

bool Hub::ok(LedgerStatus s, std::string& err) {
  if (s.ok()) return true;
  err = std::move(s.message);
  return false;
}

Hub::~Hub() {
  stop();
  secure_wipe(&key_, sizeof key_);
}

bool Hub::prepare(std::string& err) {
  if (signer_.init() != Status::Ok) {
    err = "signer init failed";
    return false;
  }
  if (signer_.address_of(key_, hub_) != Status::Ok) {
    err = "bad hub private key";
    return false;
  }
  if (!cfg_.hub_address.empty()) {
    Address want{};
    if (address_parse(cfg_.hub_address.c_str(), cfg_.hub_address.size(), want) != Status::Ok || want != hub_) {
      err = "--hub-address " + cfg_.hub_address + " does not match the key's address " + json::address_text(hub_);
      return false;
    }
  }
  if (address_parse(cfg_.contract.c_str(), cfg_.contract.size(), contract_) != Status::Ok) {
    err = "bad --contract address: " + cfg_.contract;
    return false;
  }
  if (u256_parse_decimal(cfg_.collateral_max_wei.c_str(), cfg_.collateral_max_wei.size(), collateral_max_) !=
      Status::Ok) {
    err = "bad --collateral-max-wei: " + cfg_.collateral_max_wei;
    return false;
  }
  if (u256_parse_decimal(cfg_.reserve_warn_wei.c_str(), cfg_.reserve_warn_wei.size(), reserve_warn_) != Status::Ok) {
    err = "bad --reserve-warn-wei: " + cfg_.reserve_warn_wei;
    return false;
  }
  if (u256_parse_decimal(cfg_.collateral_wei.c_str(), cfg_.collateral_wei.size(), collateral_) != Status::Ok) {
    err = "bad --collateral-wei: " + cfg_.collateral_wei;
    return false;
  }
  if (u256_parse_decimal(cfg_.collateral_tokens.c_str(), cfg_.collateral_tokens.size(), collateral_tokens_) !=
      Status::Ok) {
    err = "bad --collateral-tokens: " + cfg_.collateral_tokens;
    return false;
  }
  {
    U256 r = U256::zero();
    if (u256_parse_decimal(cfg_.exchange_rate.c_str(), cfg_.exchange_rate.size(), r) != Status::Ok) {
      err = "bad --exchange-rate: " + cfg_.exchange_rate;
      return false;
    }
    rate_.known = !r.is_zero();
    rate_.tokensPerWei = r;
    rate_.time = cfg_.exchange_rate_time != 0 ? cfg_.exchange_rate_time : unix_now();
    if (!cfg_.exchange_rate_file.empty() && !rate_file_load(true, err)) return false;  // rate.cpp
  }
  {
    unsigned n = cfg_.verify_threads >= 0 ? static_cast<unsigned>(cfg_.verify_threads)
                                          : (std::thread::hardware_concurrency() > 1 ? std::thread::hardware_concurrency() - 1 : 0);
    pool_ = std::make_unique<ParallelAcceptor>(n, key_, hub_);
  }
  if (const char* c = std::getenv("PICOPAY_HUB_CRASH_AT")) crash_at_ = c;
  if (!ok(pg_transient(Ledger::open(cfg_.store.empty() ? "sqlite:" + cfg_.db : cfg_.store, ledger_)), err))
    return false;
  if (!ok(pg_transient(ledger_->list_request_users(recover_users_)), err)) return false;
  return true;
}

// A PostgreSQL server that cannot be reached or drops the connection at start (a failover
// in progress: no node accepts read-write yet) is a store error, not a configuration one:
// fatal() tells main to exit 3, which the shipped systemd unit restarts (docs/postgresql-ha.md).
LedgerStatus Hub::pg_transient(LedgerStatus s) {
  if (!s.ok() && (s.code == LedgerCode::Unavailable || s.code == LedgerCode::Io) &&
      (cfg_.store.rfind("postgresql://", 0) == 0 || cfg_.store.rfind("postgres://", 0) == 0))
    fatal_.store(true);
  return s;
}

bool Hub::open_engine(ChainPort* chain, Sink sink, std::string& err) {
  if (!prepare(err)) return false;
  chain_ = chain;
  sink_ = std::move(sink);
  recover_users_.clear();
  return true;
}

bool Hub::engine_turn(std::vector<mqtt::Message> batch, std::vector<ChainResult> results) {
  std::vector<ChainResult> facts;
  if (!results.empty() && !chain_results(results, facts)) return false;
  if ((!batch.empty() || !facts.empty()) && !process_batch(batch, facts)) return false;
  request_timers();
  flush_status(true);
  return !fatal_.load();
}

bool Hub::start(std::string& err) {
  if (!prepare(err)) return false;
  if (!lease_start(err)) return false;  // several instances (lease/hub_lease.cpp)
  if (!cfg_.metrics_listen.empty() && !(metrics_ = Metrics::start(cfg_.metrics_listen, *ledger_, err))) return false;

  if (!cfg_.rpc_url.empty()) {
    // Every JSON-RPC call happens on the chain worker's thread (chain_worker.hpp); its
    // results come back through inbox_.
    ChainWorker::Options co;
    co.rpc_url = cfg_.rpc_url;
    co.contract = contract_;
    co.hub = hub_;
    co.confirmations = cfg_.confirmations;
    co.event_state = cfg_.event_state;
    co.follow_state = cfg_.event_state + ".follow";
    co.marks_file = cfg_.db + ".chain-marks";
    co.watchtower_interval_ms = static_cast<uint64_t>(cfg_.watchtower_interval_s) * 1000;
    co.crash_at = crash_at_;
    co.store = cfg_.store.empty() ? "sqlite:" + cfg_.db : cfg_.store;
    if (lease_) {
      // Several instances: only the chain role's holder sends the hub's transactions, and
      // every chain worker takes the stored deposit jobs (docs/multi-instance.md).
      lease::LeaseManager* lm = lease_.get();
      co.chain_role = [lm] { return lm->holds(lease::kChainRole); };
      co.shared_deposits = true;
    }
    chain_worker_ = std::make_unique<ChainWorker>(co, key_, metrics_.get(), [this](ChainResult r) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        inbox_.push_back(std::move(r));
      }
      cv_.notify_one();
    });
    if (!chain_worker_->open(err)) return false;
    chain_ = chain_worker_.get();
    for (auto& m : chain_worker_->marks()) marks_[m.first] = m.second;
    // The watchtower reads a channel from the ledger when an exit starts on it
    // (ChainWorker::lookup): no channel is read at start.
    if (!load_deposit_jobs(err)) return false;
    logf("info", "chain: " + cfg_.rpc_url + ", watchtower on");
  } else {
    std::vector<std::pair<std::string, Bytes>> deps;
    if (!ok(pg_transient(ledger_->list_deposits(deps)), err)) return false;
    if (!deps.empty())
      logf("warn", std::to_string(deps.size()) +
                       " countersigned collateral deposit(s) stored; without --rpc-url they wait (not sent)");
    logf("info", "no --rpc-url: ConfirmPending, Invalidation and EmptyChannel are refused (NeedsChain), collateral "
                 "deposits and the watchtower are off" +
                     std::string(cfg_.dev_skip_chain_checks ? " (DEV: ConfirmPending accepted unchecked)" : ""));
  }

  mqtt::Options o;
  o.host = cfg_.broker_host;
  o.port = cfg_.broker_port;
  o.username = cfg_.broker_user;
  o.password = cfg_.broker_password;
  o.tls_ca_file = cfg_.broker_ca;
  o.client_id = cfg_.client_id.empty() ? "picopay-hub-" + mqtt::topic_address(hub_) : cfg_.client_id;
  o.will_topic = mqtt::topic_hub_online(hub_);
  // Several instances: the Will names the instance (the others answer it: lease/hub_presence.cpp).
  o.will_payload = cfg_.instance_id.empty() ? "{\"state\":\"offline\"}" : presence_instance("offline", cfg_.instance_id);
  o.will_retain = true;
  o.claim_client_id = true;  // a second hub with this client id: a clear fatal error (client.hpp)
  o.receive_maximum = 65535;  // absorb bursts from many devices: the shipped broker queues at most 1000 messages per client
  mqtt_ = std::make_unique<mqtt::Client>(o);
  mqtt_->on_message([this](const mqtt::Message& m) {
    if (!cfg_.instance_id.empty() && presence_message(m)) return;  // several instances: the hub's status
    on_message(m);
  });
  if (metrics_) metrics_->set_mqtt_probe([this] { return mqtt_->connected(); });
  mqtt_->on_connect([this](bool) {
    presence_connected();  // the hub's retained status (lease/hub_presence.cpp)
    publish_rate();
    logf("info", "connected to broker " + cfg_.broker_host + ":" + std::to_string(cfg_.broker_port));
  });
  mqtt_->on_disconnect([this](const std::string& why) {
    if (mqtt_->session_taken_over()) {
      // Two hubs with one client id would take the session from each other forever.
      logf("FATAL", "broker: " + why + ": a second picopay-hub with the same client id (the same key or "
                    "--client-id)? Stopping this one");
      fatal_.store(true);
      return;
    }
    logf("warn", "broker: " + why);
  });
  mqtt_->subscribe(mqtt::topic_hub_filter(hub_), 1);
  if (!cfg_.instance_id.empty()) {  // several instances: the hub's status (lease/hub_presence.cpp)
    mqtt_->subscribe(mqtt::topic_hub_online(hub_), 1);
    mqtt_->subscribe(mqtt::topic_hub_instance_filter(hub_), 1);
  }
  worker_ = std::thread([this] { worker(); });
  if (chain_worker_) chain_worker_->start();
  if (!mqtt_->start(err)) return false;
  logf("info", "hub " + json::address_text(hub_) + " contract " + json::address_text(contract_) + " ledger " + ledger_->backend() + (cfg_.store.rfind("postgres", 0) == 0 ? std::string() : " " + cfg_.db));
  if (metrics_) logf("info", "metrics on " + cfg_.metrics_listen + " (port " + std::to_string(metrics_->port()) + "): /metrics, /dashboard");
  return true;
}

void Hub::stop() {
  if (stopped_.exchange(true)) return;
  if (mqtt_ && !cfg_.instance_id.empty()) {
    presence_stop();  // several instances: "offline" only from the last one
  } else if (mqtt_) {
    std::string offline = "{\"state\":\"offline\"}";
    if (mqtt_->connected()) mqtt_->publish(mqtt::topic_hub_online(hub_), offline, 1, true);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  if (chain_worker_) chain_worker_->stop();  // after the worker: it posts jobs until it stops
  lease_stop();  // after both: no transaction leaves without the leases
  if (mqtt_) mqtt_->stop();
}

void Hub::wait_until_stopped(const std::atomic<bool>& quit) {
  while (!quit.load() && !fatal_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

void Hub::worker() {
  recover();
  if (fatal_.load()) return;
  while (true) {
    lease_round();  // several instances: lease changes (lease/hub_lease.cpp)
    if (fatal_.load()) return;
    if (metrics_) metrics_->tick();
    std::vector<mqtt::Message> batch;
    std::vector<ChainResult> results;
    {
      std::unique_lock<std::mutex> lk(mu_);
      // Several instances: a shorter idle wait, so that requests forwarded from another
      // instance (lease/hub_lease.cpp) are picked up within ~200 ms.
      cv_.wait_for(lk, std::chrono::milliseconds(lease_ ? 200 : 500),
                   [this] { return stop_.load() || !queue_.empty() || !inbox_.empty(); });
      if (stop_.load() && queue_.empty()) break;
      while (!queue_.empty() && batch.size() < static_cast<size_t>(cfg_.batch_max)) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      for (auto& r : inbox_) results.push_back(std::move(r));
      inbox_.clear();
      if (metrics_) metrics_->queue_depth(queue_.size());
    }
    // The chain's answers first (between batches, never inside one): a deposit done, a
    // reserve reading, the follower's marks; answers to parked updates go into the batch.
    std::vector<ChainResult> facts;
    if (!results.empty() && !chain_results(results, facts)) return;
    if ((!batch.empty() || !facts.empty()) && !process_batch(batch, facts)) return;
    if (stop_.load()) {
      std::lock_guard<std::mutex> lk(mu_);
      if (queue_.empty()) break;
    }
    if (fatal_.load()) return;
    request_timers();
    collateral_round();
    rate_round();
    flush_status(false);
    evict();
  }
  flush_status(true);
}

void Hub::fail(const std::string& what) {
  logf("FATAL", what + " — stopping without releasing any signature of this batch");
  fatal_.store(true);
}


}  // namespace picopay::hub
