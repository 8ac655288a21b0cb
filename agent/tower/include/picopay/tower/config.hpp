// picopay-tower configuration: a JSON file (--config) plus command-line overrides, in the
// style of picopay-hub. No secret is taken from argv: the tower's key comes from a sealed
// key file (--key, passphrase from PICOPAY_PASSPHRASE or the tty) or from the
// environment (PICOPAY_TOWER_PRIVATE_KEY); the broker password from the config file
// (which must then not be readable by group or others), a file (--broker-password-file)
// or PICOPAY_BROKER_PASSWORD.
#pragma once

#include <cstdint>
#include <string>

namespace picopay::tower {

struct Config {
  // broker
  std::string broker_host = "127.0.0.1";
  int broker_port = 1883;
  std::string broker_user;
  std::string broker_password;
  std::string broker_ca;   // TLS CA file; empty = plain TCP
  std::string client_id;   // default picopay-tower-<tower address>
  // identity (gas only)
  std::string tower_address;  // optional: checked against the key
  std::string key_file;       // sealed key file; else PICOPAY_TOWER_PRIVATE_KEY
  // chain
  std::string contract;     // ChannelManager address (required)
  std::string hub;          // optional: checked against the contract's hub()
  std::string rpc_url;      // JSON-RPC URL (required)
  std::string event_state;  // event poller progress file (default <db>.events.json)
  uint64_t confirmations = 0;
  int64_t start_block = -1;  // first block to scan on the first start (-1: the current block)
  int interval_ms = 1000;    // between chain rounds
  // store
  std::string db = "picopay-tower.db";
  int max_channels = 100000;  // channels held at most (each needs a state both parties signed)
  bool verbose = false;
};

// Parses argv (the --config file first if given; command-line values win) and the
// environment (PICOPAY_BROKER_PASSWORD). Returns 0 to run, 1 after --help (print
// help_text(), exit 0), 2 on error (err holds one line).
int parse_config(int argc, char** argv, Config& cfg, std::string& err);
// The --help text.
std::string help_text();

}  // namespace picopay::tower
