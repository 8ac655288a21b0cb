// picopay-agent: a device or gateway in payer and/or payee role (docs/mqtt-protocol.md).
#pragma once

#include <cstdint>
#include <string>

#include "picopay/signer.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::device {

// Everything the agent is told (JSON config file, then command-line overrides).
struct Config {
  std::string name = "device";           // for logs
  std::string state_dir;                  // required
  // broker
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string username, password;         // username defaults to the lowercase address
  std::string password_file;              // the password is its first line; mode 0600 required
  std::string tls_ca;                     // CA file: connect with TLS
  // channel
  Address hub{}, contract{};
  bool has_hub = false, has_contract = false;
  std::string key_hex;                    // "0x" + 64 hex (dev/test), or
  std::string key_file;                   // a sealed key file (PICOPAY_PASSPHRASE or tty)
  std::string rpc_url;                    // dev chain / node, needed for deposits
  bool payer = true, payee = false;
  // metering
  std::string meter = "none";             // none | stdin | tasmota | shelly
  std::string meter_topic;                // tasmota: tele/<t>/SENSOR; shelly: <prefix>/status/switch:0
  U256 price_wei = U256::from_u64(1);     // wei per unit (1 unit = 1 Wh)
  uint64_t min_units = 1;                 // pay once at least this many units are due
  U256 deposit_wei = U256::zero();        // deposited on chain when the channel is new
  // thread payments (pay a payee through the hub) instead of paying the hub
  Address pay_to{};
  bool has_pay_to = false;
  U256 thread_lock_wei = U256::zero();    // locked per thread (default: the whole balance)
  bool exit_on_eof = true;                // stdin meter: at EOF pay what is due, close, exit
  bool close_on_exit = true;              // payer: close open threads before exiting
  int status_interval_ms = 500;           // retained status JSON at most this often
  bool verbose = false;
  // flows (docs/flows.md)
  U256 refill_below_wei = U256::zero();   // payer: top up when the channel balance falls below this (0: off)
  U256 refill_wei = U256::zero();         // ... by this much (on chain, from the device's wallet)
  U256 cash_out_above_wei = U256::zero(); // withdraw the whole channel balance once it exceeds this (0: off)
  Address cash_out_to{};                  // ... to this address (default: the user)
  bool has_cash_out_to = false;
  U256 expect_income_wei = U256::zero(); // payee: ask the hub for this much collateral (0: never ask)
  bool oneshot = false;                   // carry out the command inbox, then exit (no metering)
  bool history = true;                    // keep DIR/history.jsonl
  int wait_seconds = 180;                 // deposit / withdraw: wait this long for the result
};

// The private key the config names (key_hex, or key_file with its passphrase). False with
// one line in `err`.
bool config_private_key(const Config& cfg, PrivateKey& key, std::string& err);

// Parses `path` (JSON, cJSON) into `cfg` (fields present override defaults). A file
// holding privateKey or broker.password must be mode 0600 or stricter: otherwise false
// with err = one line naming the mode and the chmod that fixes it.
bool config_load_file(const std::string& path, Config& cfg, std::string& err);

// `picopay-agent run` (the default command). Returns the process exit code.
int agent_run(const Config& cfg);

// The CLI entry (argv[0] = program name).
int agent_main(int argc, char** argv);

}  // namespace picopay::device
