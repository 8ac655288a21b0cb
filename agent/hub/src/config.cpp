#include "config.hpp"

#include <cstdio>
#include <cstdlib>

#include "picopay/agent/options.hpp"
#include "picopay/agent/settings.hpp"

namespace picopay::hub {

namespace {

const char* kFooter = R"(Precedence: defaults < config file (--config; keys in brackets) < environment < command line.
Unknown config keys and bad values are errors; relative paths in a config file resolve
against its directory (docs/operations.md "Config files").

Topics (docs/mqtt-protocol.md): subscribes picopay/v1/hub/<hub>/channel/+/+ ; replies on
picopay/v1/user/<user>/reply ; sends HubRequests (signed; the user proposes what the hub asks for) on
picopay/v1/user/<user>/request and reads RequestNacks on picopay/v1/hub/<hub>/channel/<user>/reply ; retained status on
picopay/v1/hub/<hub>/status/<user> and picopay/v1/hub/<hub>/status (Last Will "offline").
A config file holding hub.privateKey or broker.password must be mode 0600 (refused otherwise).
Signals: SIGINT/SIGTERM stop the hub cleanly; SIGHUP rereads --exchange-rate-file (nothing else
is reloaded: restart to apply a new config). Under systemd (Type=notify) READY=1 is sent once serving.
Exit: 0 after SIGINT/SIGTERM, 2 on a configuration error, 3 on a fatal store error (also a PostgreSQL
ledger unreachable at start; nothing of the batch in flight was released: restart, docs/postgresql-ha.md).
)";

// Declares every hub setting once: flag, config key, type, help (agent/common settings.hpp).
struct HubOptions {
  CLI::App app{"picopay-hub: the picopay hub bridge (MQTT v5 <-> channel validation <-> SQLite <-> chain)\n"
               "       picopay-hub history --user ADDR [--db FILE] [--json|--csv]: a channel's history "
               "(docs/flows.md)",
               "picopay-hub"};
  agent::Settings s{&app};
  agent::CommonOptions common;
  agent::KeyOptions keys;
  agent::BrokerRefs broker;

  explicit HubOptions(Config& c) {
    app.footer(kFooter);
    agent::add_common(app, common, &c.verbose);
    s.config_option();
    broker = agent::service_broker_refs(c, &c.broker_password_file);
    agent::ServiceRefs r;
    r.broker = broker;
    r.contract = &c.contract;
    r.rpc_url = &c.rpc_url;
    r.event_state = &c.event_state;
    r.confirmations = &c.confirmations;
    r.db = &c.db;
    r.verbose = &c.verbose;
    agent::add_service_settings(s, &app, r, common, "picopay-hub",
                                "Ethereum JSON-RPC URL; without it ConfirmPending, Invalidation, EmptyChannel "
                                "(NeedsChain), collateral deposits and the watchtower are refused/disabled");
    s.group("Hub identity");
    s.str("--hub-address", "hub.address", c.hub_address, "expected hub address, checked against the key");
    s.key_only("hub.privateKey", [&c](agent::ConfigFile& f) { f.str("hub.privateKey", c.private_key); });
    s.key_only("hub.keyFile", [&c](agent::ConfigFile& f) { f.path("hub.keyFile", c.key_file); });
    agent::add_key_options(app, keys, "picopay-hub");
    s.secret_keys({"hub.privateKey", "broker.password"});
    s.group("Chain");
    s.integer("--watchtower-interval", "watchtowerIntervalSeconds", c.watchtower_interval_s, 1, 86400,
              "seconds between watchtower rounds (default 5)");
    s.group("Store and policy");
    s.integer("--batch-max", "batchMax", c.batch_max, 1, 1000000,
              "max updates committed per SQLite transaction (default 256)");
    s.integer("--verify-threads", "verifyThreads", c.verify_threads, -1, 1024,
              "extra threads validating and countersigning the payments of a batch, one channel per job "
              "(default -1: CPUs - 1)");
    s.str("--store", "store", c.store,
          "the ledger: sqlite:PATH (embedded, the default) or a libpq URI postgresql://USER@HOST:PORT/DB "
          "(docs/operations.md); the reply leaves only after the COMMIT is durable on either; --db FILE is the "
          "same as --store sqlite:FILE and, with any store, the prefix of the side files (<db>.events.json, "
          "<db>.chain-marks)")
        ->type_name("SPEC");
    s.integer("--channel-cache", "channelCache", c.channel_cache, 1, 1000000000,
              "channels held in memory at most (default 100000; an idle cached channel takes under 1 KB); the "
              "least recently used are evicted and read from the ledger again when next used");
    s.amount_text("--collateral-wei", "collateral.depositWei", c.collateral_wei,
                  "deposited into a payee channel lacking collateral (default 0 = never deposit)");
    s.amount_text("--collateral-tokens", "collateral.depositTokens", c.collateral_tokens,
                  "the same in token base units of the ChannelManager's token (default 0)");
    s.amount_text("--collateral-max-wei", "collateral.maxWei", c.collateral_max_wei,
                  "most a collateral request makes the hub deposit (default 0 = no cap; docs/flows.md)");
    s.integer("--collateral-window", "collateral.flowWindowSeconds", c.collateral_window_seconds, 0, 315360000,
              "size collateral from the thread payments a payee received in the last S seconds (default 3600)");
    s.integer("--collateral-idle", "collateral.idleSeconds", c.collateral_idle_seconds, 0, 315360000,
              "take back (hub withdrawal to the reserve) the hub balance of a channel it funded with collateral, "
              "once idle for S seconds (default 0 = never)");
    s.amount_text("--reserve-warn-wei", "collateral.reserveWarnWei", c.reserve_warn_wei,
                  "warn when the hub's on-chain reserve is below this (default 1 ETH)");
    s.str("--exchange-rate", "exchange.rate", c.exchange_rate,
          "the hub's exchange rate, token base units per wei (default 0 = the hub countersigns no Exchange); a "
          "user's Exchange is countersigned within 2 % of it, if it is at most 24 h old, and only from what the "
          "hub holds in that channel beyond its thread mirrors");
    s.integer("--exchange-rate-time", "exchange.rateTime", c.exchange_rate_time, 0, 9007199254740992ULL,
              "Unix seconds the rate was set (default: start)");
    s.str("--exchange-rate-file", "exchange.rateFile", c.exchange_rate_file,
          "a file holding the rate, \"TOKENS_PER_WEI [UNIX_TIME]\" (the time defaults to when the hub read it), "
          "owned by the hub's account or root and not writable by group or others; read at start and again when it changes or on "
          "SIGHUP, and published at once; overrides --exchange-rate (docs/tokens.md)");
    s.flag("--dev-skip-chain-checks", "devSkipChainChecks", c.dev_skip_chain_checks,
           "TESTS/DEV ONLY: countersign ConfirmPending without checking the chain");
    s.group("Several instances (docs/multi-instance.md)");
    s.str("--instance-id", "instanceId", c.instance_id,
          "run as one of several picopay-hub instances with the same key on one PostgreSQL ledger: this "
          "instance's name (its MQTT client id is picopay-hub-<hub>-<name> unless --client-id); it serves the "
          "channel partitions it leases (default: empty, the only instance; SQLite refuses it)")
        ->type_name("NAME");
    s.integer("--lease-ttl-ms", "leaseTtlMs", c.lease_ttl_ms, 200, 600000,
              "milliseconds a partition lease lives unless renewed (renewed every ttl/5; default 5000): a killed "
              "instance's channels are taken over after about this long");
    s.group("Monitoring");
    s.str("--metrics-listen", "metricsListen", c.metrics_listen,
          "HOST:PORT: serve Prometheus /metrics and the live /dashboard page there (default off; no auth: use "
          "127.0.0.1; docs/operations.md)")
        ->type_name("HOST:PORT");
    s.group("");
  }
};

}  // namespace

std::string help_text() {
  Config c;
  HubOptions o(c);
  return o.app.help();
}

bool instance_id_valid(const std::string& id) {
  bool good = !id.empty() && id.size() <= 32;
  for (char ch : id)
    good = good && ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                    ch == '_' || ch == '-');
  return good;
}

int parse_config(int argc, char** argv, Config& c, std::string& err) {
  HubOptions o(c);
  const int rc = agent::parse_to_code(o.app, argc, argv, err);
  if (rc != 0) return rc;
  // A key on the command line replaces whatever key the config file named.
  if (!o.keys.private_key.empty() || !o.keys.keystore.empty()) {
    agent::warn_key_on_argv(o.keys);
    c.private_key = o.keys.private_key;
    c.key_file = o.keys.keystore;
  }
  if (c.private_key.empty() && c.key_file.empty()) {
    if (const char* e = std::getenv("PICOPAY_PRIVATE_KEY")) c.private_key = e;
  }
  if (!agent::broker_password_finish(o.broker, err)) return 2;
  if (c.contract.empty()) {
    err = "--contract is required";
    return 2;
  }
  if (c.private_key.empty() == c.key_file.empty()) {
    err = "exactly one key is required: --keystore FILE (hub.keyFile), or --private-key HEX / env "
          "PICOPAY_PRIVATE_KEY (hub.privateKey)";
    return 2;
  }
  if (c.store.rfind("sqlite:", 0) == 0 && c.store.size() > 7 && c.store.rfind("sqlite://", 0) != 0)
    c.db = c.store.substr(7);  // the side files next to the SQLite ledger
  if (c.event_state.empty()) c.event_state = c.db + ".events.json";
  if (!c.instance_id.empty()) {
    if (c.store.rfind("postgresql://", 0) != 0 && c.store.rfind("postgres://", 0) != 0) {
      err = "--instance-id: several hub instances share one PostgreSQL ledger (--store postgresql://...); a "
            "SQLite ledger serves one process (docs/multi-instance.md)";
      return 2;
    }
    if (!instance_id_valid(c.instance_id)) {
      err = "--instance-id " + c.instance_id + ": at most 32 of A-Z a-z 0-9 . _ -";
      return 2;
    }
  }
  return 0;
}

}  // namespace picopay::hub
