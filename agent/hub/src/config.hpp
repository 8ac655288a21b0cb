// picopay-hub configuration: a JSON file (--config) plus command-line overrides.
#pragma once

#include <cstdint>
#include <string>

#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::hub {

struct Config {
  // broker
  std::string broker_host = "127.0.0.1";
  int broker_port = 1883;
  std::string broker_user;
  std::string broker_password;
  std::string broker_password_file;  // first line = the password; must be mode 0600
  std::string broker_ca;   // TLS CA file; empty = plain TCP
  std::string client_id;   // default picopay-hub-<hub address>
  // hub identity
  std::string hub_address;  // optional: checked against the key
  std::string private_key;  // 0x + 64 hex (tests/demo)
  std::string key_file;     // sealed key file; passphrase from PICOPAY_PASSPHRASE or the tty
  // chain
  std::string contract;     // ChannelManager address (required)
  std::string rpc_url;      // optional; without it chain-dependent features are refused
  std::string event_state;  // watchtower event poller progress file (default <db>.events.json)
  uint64_t confirmations = 0;
  // store
  // the ledger (docs/operations.md): "sqlite:PATH" or "postgresql://..."; empty = sqlite:<db>
  std::string store;
  // the SQLite ledger's path when `store` is empty, and the prefix of the side files
  // (event state, chain marks) with any store
  std::string db = "picopay-hub.db";
  int batch_max = 256;      // updates per SQLite transaction at most
  // channels held in memory at most (least recently used evicted; their state is in the
  // ledger); channels with requests, reordered updates or a pending status stay
  int channel_cache = 100000;
  // threads that pre-validate and countersign payments besides the worker
  // (-1: one less than the CPU count)
  int verify_threads = -1;
  // collateral policy: wei the hub deposits into a payee channel that lacks collateral
  std::string collateral_wei = "0";
  // the same for the ChannelManager's token (token base units; docs/tokens.md)
  std::string collateral_tokens = "0";
  // collateral management (docs/flows.md): what a payee's collateral request (or its recent
  // flow) makes the hub deposit is clamped to [collateral_wei, collateral_max_wei] ("0":
  // no cap); sized from the thread payments it received in the last
  // collateral_window_seconds; hub balance of a channel idle for collateral_idle_seconds is
  // withdrawn to the reserve (0: never); below reserve_warn_wei of reserve the hub warns
  std::string collateral_max_wei = "0";
  uint64_t collateral_window_seconds = 3600;
  uint64_t collateral_idle_seconds = 0;
  std::string reserve_warn_wei = "1000000000000000000";
  // exchanges (docs/signing-policy.md): the hub countersigns a user's Exchange only near its
  // current rate: token base units per wei (decimal; "0" = no exchanges), set at
  // exchange_rate_time (Unix seconds; 0 = when the hub started), within 2 % and 24 h
  std::string exchange_rate = "0";
  uint64_t exchange_rate_time = 0;
  // a file holding the rate ("TOKENS_PER_WEI [UNIX_TIME]"), read at start and again when
  // it changes (checked every 2 s) or on SIGHUP: the new rate is published at once
  // (agent/hub rate.cpp, docs/tokens.md); empty = the rate above, fixed
  std::string exchange_rate_file;
  // tests/dev only: accept ConfirmPending without checking the chain (no rpc needed)
  bool dev_skip_chain_checks = false;
  int watchtower_interval_s = 5;
  std::string metrics_listen;  // HOST:PORT of /metrics and /dashboard (docs/operations.md); empty = off
  bool verbose = false;
  // several instances, one hub (docs/multi-instance.md): this instance's name (empty:
  // the only instance); the lease time to live in milliseconds (renewed every ttl/5)
  std::string instance_id;
  uint64_t lease_ttl_ms = 5000;
};

// An --instance-id: 1 to 32 of A-Z a-z 0-9 . _ - (so also one MQTT topic level as is).
bool instance_id_valid(const std::string& id);

// Parses argv (and the --config file first if given; command-line values win).
// Returns 0 to run, 1 after printing --help (exit 0), 2 on error (err set).
int parse_config(int argc, char** argv, Config& cfg, std::string& err);
// The --help text.
std::string help_text();

}  // namespace picopay::hub
