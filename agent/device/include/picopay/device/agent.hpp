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
  // picopay-tower (docs/tower.md): hand the latest double-signed states to this tower
  Address tower{};
  bool has_tower = false;
  uint64_t tower_interval_ms = 1000;      // a newer state is handed over at most this often
  int no_reading_warn_s = 60;             // tasmota/shelly: warn after this long without a reading (0: never)
  int connect_timeout_s = 30;             // exit 1 if the broker does not accept us within this at start
  bool verbose = false;
  // ERC-20 (docs/tokens.md): the channel pays in the ChannelManager's token instead of ETH.
  // The token must be the contract's approvedToken(); its symbol and decimals are read from
  // the chain (rpc required). Amounts above (price_wei, deposit_wei, thread_lock_wei) are
  // then token base units.
  Address token{};
  bool has_token = false;
  // Amounts in the asset's units ("2.5 PPT", "0.001 ETH", or whole base units), resolved
  // once the asset is known; when set they replace price_wei / deposit_wei / thread_lock_wei.
  std::string price_text, deposit_text, thread_lock_text;
  // Exchange at the hub's rate (docs/tokens.md), once per start: sell this amount ("0.01 ETH"
  // sells wei for tokens, "5 PPT" tokens for wei) at the hub's signed published rate, if
  // it is at most exchange_max_age_s old and, when exchange_reference is set (token base
  // units per wei), within exchange_max_deviation_bps of it.
  std::string exchange_text;
  uint64_t exchange_max_age_s = 3600;
  uint32_t exchange_max_deviation_bps = 100;
  std::string exchange_reference;  // "" = no reference
  // The seller sets the price (docs/tokens.md). Payee: publish a signed price list with
  // this price per Wh (units of the channel's asset), valid price_validity_s from each
  // publication (re-published at half that), and, with its own meter, stop serving when
  // the payers fall behind by more than serve_margin_units. Payer (with pay_to): pay by
  // the payee's signed list, never above max_price_text.
  std::string sell_price_text;
  uint64_t price_validity_s = 3600;
  uint64_t serve_margin_units = 10;
  std::string serve_switch;  // payee: "tasmota:TOPIC" | "shelly:ID": switch the meter off while not serving (serve_switch.hpp)
  std::string max_price_text;
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
