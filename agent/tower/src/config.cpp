// picopay-tower configuration (see config.hpp): the same settings mechanism and shared
// options as picopay-hub (agent/common settings.hpp).
#include "picopay/tower/config.hpp"

#include <cstdlib>

#include "picopay/agent/options.hpp"
#include "picopay/agent/settings.hpp"

namespace picopay::tower {

namespace {

const char* kDescription = R"(picopay-tower: a keyless watchtower for devices that sleep

Devices hand it their latest double-signed channel state over MQTT; it follows the
ChannelManager's events and answers a stale exit on a guarded channel with that state
(emptyChannelWithChallenge) within the challenge period, then empties the channel
(emptyChannel) once the period is over, so the device gets its balance while asleep.
Its own key pays gas only: it never signs a state and can move no funds. docs/tower.md.
)";

const char* kFooter = R"(Precedence: defaults < config file (--config; keys in brackets) < environment < command line.
Unknown config keys and bad values are errors; relative paths in a config file resolve
against its directory (docs/operations.md "Config files"). No secret on the command line:
the key from --keystore (tower.keyFile) or env PICOPAY_TOWER_PRIVATE_KEY, the broker
password from --broker-password-file, broker.password in a mode 0600 config file, or env
PICOPAY_BROKER_PASSWORD.

Topics: subscribes picopay/v1/tower/<tower>/user/+/state (payload: the wire SignedChannelState,
docs/wire-format.md); acks on picopay/v1/tower/<tower>/user/<user>/ack (signed by the tower).
Exit: 0 after SIGINT/SIGTERM, 2 on a configuration or start-up error, 3 on a fatal store error.
)";

struct TowerOptions {
  CLI::App app{kDescription, "picopay-tower"};
  agent::Settings s{&app};
  agent::CommonOptions common;
  agent::BrokerRefs broker;
  std::string password_file;

  explicit TowerOptions(Config& c) {
    app.footer(kFooter);
    agent::add_common(app, common, &c.verbose);
    s.config_option();
    broker = agent::service_broker_refs(c, &password_file);
    broker.password_on_argv = false;
    agent::ServiceRefs r;
    r.broker = broker;
    r.contract = &c.contract;
    r.rpc_url = &c.rpc_url;
    r.event_state = &c.event_state;
    r.confirmations = &c.confirmations;
    r.db = &c.db;
    r.verbose = &c.verbose;
    agent::add_service_settings(s, &app, r, common, "picopay-tower", "Ethereum JSON-RPC URL (required)");
    s.group("Tower identity (its account pays gas; fund it with a little ETH)");
    s.path("--keystore,--key-file,--key", "tower.keyFile", c.key_file,
           "key file: a picopay sealed key file or a Web3 v3 JSON keystore (passphrase: env PICOPAY_PASSPHRASE "
           "or the tty); without it the key comes from env PICOPAY_TOWER_PRIVATE_KEY. Never on the command line");
    s.str("--tower-address", "tower.address", c.tower_address, "expected tower address, checked against the key");
    for (const char* k : {"tower.privateKey", "privateKey"}) {
      s.key_only(k, [k](agent::ConfigFile& f) {
        if (f.has(k))
          f.error(k, "a raw private key is not accepted; use tower.keyFile or env PICOPAY_TOWER_PRIVATE_KEY");
      });
    }
    app.add_option_function<std::string>(
           "--private-key",
           [](const std::string&) {
             throw CLI::ValidationError(
                 "--private-key is not accepted (argv is visible to every local user): use --keystore FILE or env "
                 "PICOPAY_TOWER_PRIVATE_KEY");
           },
           "not accepted: see --keystore")
        ->group("");
    s.secret_keys({"broker.password"});
    s.group("Chain");
    s.str("--hub", "hub", c.hub, "expected hub, checked against the contract's hub()");
    s.integer("--start-block", "startBlock", c.start_block, -1, 9007199254740991LL,
              "first block to scan on the first start (default: the current block; channels handed over later "
              "are checked on chain)");
    s.integer("--interval-ms", "intervalMs", c.interval_ms, 10, 3600000,
              "milliseconds between chain rounds (default 1000)");
    s.group("Store");
    s.integer("--max-channels", "maxChannels", c.max_channels, 1, 1000000000, "channels held at most (default 100000)");
    s.group("");
  }
};

}  // namespace

std::string help_text() {
  Config c;
  TowerOptions o(c);
  return o.app.help();
}

int parse_config(int argc, char** argv, Config& c, std::string& err) {
  TowerOptions o(c);
  const int rc = agent::parse_to_code(o.app, argc, argv, err);
  if (rc != 0) return rc;
  if (!agent::broker_password_finish(o.broker, err)) return 2;
  if (c.contract.empty()) {
    err = "--contract is required";
    return 2;
  }
  if (c.rpc_url.empty()) {
    err = "--rpc-url is required (the tower follows the chain)";
    return 2;
  }
  if (c.event_state.empty()) c.event_state = c.db + ".events.json";
  return 0;
}

}  // namespace picopay::tower
