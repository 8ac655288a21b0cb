// picopay-agent: a device or gateway in payer and/or payee role (docs/mqtt-protocol.md).
#pragma once

#include <cstdint>
#include <string>

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
  int no_reading_warn_s = 60;             // tasmota/shelly: warn after this long without a reading (0: never)
  int connect_timeout_s = 30;             // exit 1 if the broker does not accept us within this at start
  bool verbose = false;
};

// Parses `path` (JSON) into `cfg` (fields present override defaults), strictly: unknown
// keys and bad values are errors naming the key and the file; relative paths resolve
// against the file's directory (agent/common config_file.hpp). A file holding
// privateKey or broker.password must be mode 0600 or stricter: otherwise false with
// err = one line naming the mode and the chmod that fixes it.
bool config_load_file(const std::string& path, Config& cfg, std::string& err);

// `picopay-agent run` (the default command). Returns the process exit code.
int agent_run(const Config& cfg);

// The CLI entry (argv[0] = program name).
int agent_main(int argc, char** argv);

}  // namespace picopay::device
