// One table per program that declares each setting once: its command-line flag (CLI11),
// its config-file key (ConfigFile, strictly parsed), its type and its help. picopay-hub,
// picopay-tower and picopay-agent build their options this way (docs/operations.md
// "Config files").
//
//   agent::Settings s(&app);
//   s.config_option();                                       // --config FILE (first)
//   s.str("--client-id", "broker.clientId", cfg.client_id, "MQTT client id");
//   s.path("--db", "db", cfg.db, "SQLite ledger path");      // relative: config's dir
//   s.integer("--batch-max", "batchMax", cfg.batch_max, 1, 100000, "updates per transaction");
//   s.flag("--dev-skip-chain-checks", "devSkipChainChecks", cfg.dev, "tests only");
//   s.amount_text("--collateral-wei", "collateral.depositWei", cfg.collateral_wei, "...");
//   s.key_only("hub.privateKey", [&](agent::ConfigFile& f) { f.str("hub.privateKey", cfg.pk); });
//   s.secret_keys({"hub.privateKey", "broker.password"});   // file must then be mode 0600
//
// Precedence: defaults < config file < command line. The config file is read when the
// --config option is processed (before every other option), so a flag always wins.
// Errors name the key and the file (ConfigFile) or the flag (CLI11); unknown keys are
// errors. A Settings without an app (nullptr) only reads files: load_file().
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "picopay/agent/config_file.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::agent {

class Settings {
 public:
  explicit Settings(CLI::App* app) : app_(app) {}

  // --config FILE: reads the file (throws CLI::ValidationError with the one-line error).
  CLI::Option* config_option(const std::string& help = "JSON config file; command-line flags override it");
  // The config file given (after parsing), "" if none.
  const std::string& config_path() const { return config_path_; }

  // Each adds a flag (`flags` may be "" for a config-only key) and a config key (`key`
  // may be nullptr for a flag-only setting). Returns the CLI11 option or nullptr.
  CLI::Option* str(const std::string& flags, const char* key, std::string& v, const std::string& help);
  CLI::Option* path(const std::string& flags, const char* key, std::string& v, const std::string& help);
  CLI::Option* integer(const std::string& flags, const char* key, int& v, int min, int max, const std::string& help);
  CLI::Option* integer(const std::string& flags, const char* key, int64_t& v, int64_t min, int64_t max,
                       const std::string& help);
  CLI::Option* integer(const std::string& flags, const char* key, uint64_t& v, uint64_t min, uint64_t max,
                       const std::string& help);
  CLI::Option* flag(const std::string& flags, const char* key, bool& v, const std::string& help);
  // An amount (amount_parse) kept as canonical decimal text.
  CLI::Option* amount_text(const std::string& flags, const char* key, std::string& v, const std::string& help);
  // An amount (amount_parse) as a U256.
  CLI::Option* amount(const std::string& flags, const char* key, U256& v, const std::string& help);
  // An address; `*given` set true when one is read.
  CLI::Option* address(const std::string& flags, const char* key, Address& v, bool* given, const std::string& help);
  // One of `choices`.
  CLI::Option* choice(const std::string& flags, const char* key, std::string& v, const std::vector<std::string>& choices,
                      const std::string& help);
  // A config-only key read by `read`.
  void key_only(const char* key, std::function<void(ConfigFile&)> read);
  // Keys that make the file a secret (mode 0600 required when any is present).
  void secret_keys(std::vector<std::string> keys) { secret_keys_ = std::move(keys); }
  // A group heading for the flags added next (help output).
  void group(const std::string& name) { group_ = name; }

  // Reads every registered key from `path`. False with `err` (one line) on any error.
  bool load_file(const std::string& path, std::string& err);

 private:
  CLI::Option* add(CLI::Option* o);
  static std::string with_key(const std::string& help, const char* key);
  CLI::App* app_;
  std::string group_;
  std::string config_path_;
  std::vector<std::function<void(ConfigFile&)>> readers_;
  std::vector<std::string> secret_keys_;
};

}  // namespace picopay::agent

namespace picopay::agent {

// References to a program's broker settings (nullptr: not offered).
struct BrokerRefs {
  std::string* host = nullptr;
  int* port = nullptr;
  std::string* user = nullptr;
  std::string* password = nullptr;
  std::string* password_file = nullptr;
  std::string* ca = nullptr;
  std::string* client_id = nullptr;
  // false: --broker-password on the command line is refused (the password comes from the
  // config file, --broker-password-file or env PICOPAY_BROKER_PASSWORD only)
  bool password_on_argv = true;
};
// The broker settings every program shares, flags and config keys:
//   --broker HOST:PORT                       (both at once)
//   --broker-host HOST         broker.host   --broker-port PORT        broker.port
//   --broker-user USER         broker.username      (old flag: --username)
//   --broker-password-file F   broker.passwordFile  (old flag: --password-file)
//   --broker-password P        broker.password      (old flag: --password; warns)
//   --broker-ca FILE           broker.tlsCaFile     (old flag: --tls-ca; old key: broker.tlsCa)
//   --client-id ID             broker.clientId
// After parsing, call broker_password_finish() to read the password file or env.
// The BrokerRefs of a service config with the fields broker_host, broker_port,
// broker_user, broker_password, broker_ca and client_id (picopay-hub, picopay-tower);
// `password_file` is where --broker-password-file goes.
template <class ServiceConfig>
BrokerRefs service_broker_refs(ServiceConfig& c, std::string* password_file) {
  BrokerRefs b;
  b.host = &c.broker_host;
  b.port = &c.broker_port;
  b.user = &c.broker_user;
  b.password = &c.broker_password;
  b.password_file = password_file;
  b.ca = &c.broker_ca;
  b.client_id = &c.client_id;
  return b;
}
void add_broker_settings(Settings& s, CLI::App* app, const BrokerRefs& b, const std::string& program);
// Reads *password_file into *password if set, else env PICOPAY_BROKER_PASSWORD (or
// PICOPAY_MQTT_PASSWORD) when no password was given. False with `err` on a bad file.
bool broker_password_finish(const BrokerRefs& b, std::string& err);

}  // namespace picopay::agent

namespace picopay::agent {

// What picopay-hub and picopay-tower share (one parser for both): the broker, the
// ChannelManager and its chain, the SQLite file and the log options.
//   --contract ADDR     contract          --rpc-url URL (env ETH_RPC_URL)  rpcUrl
//   --event-state FILE  eventState        --confirmations N                confirmations
//   --db FILE           db                -v/--verbose                     verbose
//   --log-level L       logLevel          --log-format F                   logFormat
struct ServiceRefs {
  BrokerRefs broker;
  std::string* contract = nullptr;
  std::string* rpc_url = nullptr;
  std::string* event_state = nullptr;
  uint64_t* confirmations = nullptr;
  std::string* db = nullptr;
  bool* verbose = nullptr;
};
struct CommonOptions;
void add_service_settings(Settings& s, CLI::App* app, const ServiceRefs& r, CommonOptions& common,
                          const std::string& program, const std::string& rpc_help);

// Parses argv for a program whose caller wants codes: 0 to run, 1 for --help (the caller
// prints app.help()), 2 on error (`err` = one line, without the program name).
int parse_to_code(CLI::App& app, int argc, char** argv, std::string& err);

}  // namespace picopay::agent
