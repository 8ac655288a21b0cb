#include "config.hpp"

#include "picopay/agent/secret_file.hpp"

#include <cjson/cJSON.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace picopay::hub {

std::string help_text() {
  return R"(picopay-hub: the picopay hub bridge (MQTT v5 <-> channel validation <-> SQLite <-> chain)

Usage: picopay-hub [--config FILE] [options]

Every option can also be set in the JSON config file (key in brackets); the command line wins.

Broker:
  --broker-host HOST        MQTT broker host [broker.host] (default 127.0.0.1)
  --broker-port PORT        MQTT broker port [broker.port] (default 1883)
  --broker-user USER        username [broker.username]
  --broker-password-file F  read the password from F's first line; F must be mode 0600
                            [broker.passwordFile]
  --broker-password PASS    password [broker.password] (or env PICOPAY_BROKER_PASSWORD);
                            on the command line every local user sees it: prefer the file
  --broker-ca FILE          TLS: CA certificate file; enables TLS [broker.tlsCaFile]
  --client-id ID            MQTT client id [broker.clientId] (default picopay-hub-<hub address>;
                            the shipped broker config replaces every client id by the username)
Hub identity:
  --hub-address ADDR        expected hub address, checked against the key [hub.address]
  --key FILE                sealed key file [hub.keyFile] (passphrase: env PICOPAY_PASSPHRASE,
                            the file named by PICOPAY_PASSPHRASE_FILE, or the tty)
  --private-key HEX         raw private key 0x+64 hex (tests only: visible to every local user)
                            [hub.privateKey: then the config file must be mode 0600]
Chain:
  --contract ADDR           ChannelManager address (required) [contract]
  --rpc-url URL             Ethereum JSON-RPC URL [rpcUrl]; without it ConfirmPending, Invalidation,
                            EmptyChannel (NeedsChain), collateral deposits and the watchtower are
                            refused/disabled (clearly logged)
  --event-state FILE        watchtower event poller progress file [eventState] (default <db>.events.json)
  --confirmations N         blocks before an event counts [confirmations] (default 0)
  --watchtower-interval S   seconds between watchtower rounds [watchtowerIntervalSeconds] (default 5)
Store and policy:
  --store SPEC              the ledger [store]: sqlite:PATH (embedded, the default) or a libpq URI
                            postgresql://USER@HOST:PORT/DB (docs/operations.md); the reply leaves
                            only after the COMMIT is durable on either
  --db FILE                 same as --store sqlite:FILE [db] (default picopay-hub.db); with any
                            store also the prefix of the side files (<db>.events.json, <db>.chain-marks)
  --batch-max N             max updates committed per SQLite transaction [batchMax] (default 256)
  --channel-cache N         channels held in memory at most [channelCache] (default 100000; an idle
                            cached channel takes under 1 KB); the least recently used are evicted
                            and read from the ledger again when next used
  --verify-threads N        extra threads validating and countersigning the payments of a
                            batch, one channel per job [verifyThreads] (default: CPUs - 1)
  --collateral-wei WEI      wei deposited into a payee channel lacking collateral [collateral.depositWei]
                            (default 0 = never deposit)
  --collateral-tokens N     the same in token base units of the ChannelManager's token
                            [collateral.depositTokens] (default 0)
  --exchange-rate N         the hub's exchange rate, token base units per wei [exchange.rate]
                            (default 0 = the hub countersigns no Exchange); a user's Exchange is
                            countersigned within 2 % of it, if it is at most 24 h old, and only
                            from what the hub holds in that channel beyond its thread mirrors
  --exchange-rate-time T    Unix seconds the rate was set [exchange.rateTime] (default: start)
  --dev-skip-chain-checks   TESTS/DEV ONLY: countersign ConfirmPending without checking the chain
                            [devSkipChainChecks]
  --metrics-listen HOST:PORT  serve Prometheus /metrics and the live /dashboard page there
                            [metricsListen] (default off; no auth: use 127.0.0.1; docs/operations.md)
  -v, --verbose             log every update [verbose]
  -h, --help                this text
  --version                 print the version and exit

Topics (docs/mqtt-protocol.md): subscribes picopay/v1/hub/<hub>/channel/+/+ ; replies on
picopay/v1/user/<user>/reply ; sends HubRequests (signed; the user proposes what the hub asks for) on
picopay/v1/user/<user>/request and reads RequestNacks on picopay/v1/hub/<hub>/channel/<user>/reply ; retained status on
picopay/v1/hub/<hub>/status/<user> and picopay/v1/hub/<hub>/status (Last Will "offline").
A config file holding hub.privateKey or broker.password must be mode 0600 (refused otherwise).
Signals: SIGINT/SIGTERM stop the hub cleanly; SIGHUP is ignored with a log line (no reload:
restart to apply a new config). Under systemd (Type=notify) READY=1 is sent once serving.
Exit: 0 after SIGINT/SIGTERM, 2 on a configuration error, 3 on a fatal store error.
)";
}

namespace {
const cJSON* get(const cJSON* o, const char* path1, const char* path2 = nullptr) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, path1);
  if (v && path2) v = cJSON_GetObjectItemCaseSensitive(v, path2);
  return v;
}
void str(const cJSON* o, std::string& out, const char* a, const char* b = nullptr) {
  const cJSON* v = get(o, a, b);
  if (cJSON_IsString(v)) out = v->valuestring;
  else if (cJSON_IsNumber(v)) {
    // A whole number up to 2^53 is taken as its decimal text; anything else (1e400, a
    // fraction, an amount a double cannot hold exactly) becomes text that every later
    // check of the field refuses, instead of an undefined float-to-integer cast.
    const double d = v->valuedouble;
    const bool exact = d >= 0 && d <= 9007199254740992.0 && static_cast<double>(static_cast<uint64_t>(d)) == d;
    out = exact ? std::to_string(static_cast<uint64_t>(d)) : std::string("(not a whole number below 2^53)");
  }
}
void num(const cJSON* o, int& out, const char* a, const char* b = nullptr) {
  const cJSON* v = get(o, a, b);
  if (cJSON_IsNumber(v)) out = v->valueint;
}
void boolean(const cJSON* o, bool& out, const char* a) {
  const cJSON* v = get(o, a);
  if (cJSON_IsBool(v)) out = cJSON_IsTrue(v);
}

bool load_file(const std::string& path, Config& c, std::string& err) {
  std::ifstream f(path);
  if (!f) {
    err = "cannot read config file " + path;
    return false;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  cJSON* j = cJSON_Parse(ss.str().c_str());
  if (!j || !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    err = "config file " + path + " is not a JSON object";
    return false;
  }
  str(j, c.broker_host, "broker", "host");
  num(j, c.broker_port, "broker", "port");
  str(j, c.broker_user, "broker", "username");
  str(j, c.broker_password, "broker", "password");
  str(j, c.broker_password_file, "broker", "passwordFile");
  str(j, c.broker_ca, "broker", "tlsCaFile");
  str(j, c.client_id, "broker", "clientId");
  str(j, c.hub_address, "hub", "address");
  str(j, c.private_key, "hub", "privateKey");
  str(j, c.key_file, "hub", "keyFile");
  str(j, c.contract, "contract");
  str(j, c.rpc_url, "rpcUrl");
  str(j, c.event_state, "eventState");
  int conf = static_cast<int>(c.confirmations);
  num(j, conf, "confirmations");
  c.confirmations = static_cast<uint64_t>(conf < 0 ? 0 : conf);
  num(j, c.watchtower_interval_s, "watchtowerIntervalSeconds");
  str(j, c.db, "db");
  str(j, c.store, "store");
  num(j, c.batch_max, "batchMax");
  num(j, c.channel_cache, "channelCache");
  num(j, c.verify_threads, "verifyThreads");
  str(j, c.collateral_wei, "collateral", "depositWei");
  str(j, c.collateral_tokens, "collateral", "depositTokens");
  str(j, c.exchange_rate, "exchange", "rate");
  {
    std::string t;
    str(j, t, "exchange", "rateTime");
    if (!t.empty()) c.exchange_rate_time = std::strtoull(t.c_str(), nullptr, 10);
  }
  boolean(j, c.dev_skip_chain_checks, "devSkipChainChecks");
  boolean(j, c.verbose, "verbose");
  str(j, c.metrics_listen, "metricsListen");
  const bool holds_secret = cJSON_IsString(get(j, "hub", "privateKey")) || cJSON_IsString(get(j, "broker", "password"));
  cJSON_Delete(j);
  if (holds_secret && !agent::secret_file_private(path, "config " + path + " holds a private key or password", err))
    return false;
  return true;
}

bool to_int(const std::string& s, int& out) {
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || v < 0 || v > 1000000000) return false;
  out = static_cast<int>(v);
  return true;
}
}  // namespace

int parse_config(int argc, char** argv, Config& c, std::string& err) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help")) return 1;
    if (!std::strcmp(argv[i], "--config")) {
      if (i + 1 >= argc) {
        err = "--config needs a file";
        return 2;
      }
      if (!load_file(argv[i + 1], c, err)) return 2;
    }
  }
  if (const char* p = std::getenv("PICOPAY_BROKER_PASSWORD")) {
    if (c.broker_password.empty()) c.broker_password = p;
  }
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](std::string& out) -> bool {
      if (i + 1 >= argc) {
        err = a + " needs a value";
        return false;
      }
      out = argv[++i];
      return true;
    };
    auto ival = [&](int& out) -> bool {
      std::string s;
      if (!val(s)) return false;
      if (!to_int(s, out)) {
        err = a + ": not a non-negative integer: " + s;
        return false;
      }
      return true;
    };
    bool ok = true;
    std::string tmp;
    if (a == "--config") ++i;
    else if (a == "--broker-host") ok = val(c.broker_host);
    else if (a == "--broker-port") ok = ival(c.broker_port);
    else if (a == "--broker-user") ok = val(c.broker_user);
    else if (a == "--broker-password") {
      ok = val(c.broker_password);
      std::fprintf(stderr, "picopay-hub: warning: --broker-password is visible to every local user (ps); "
                           "use --broker-password-file (mode 0600) or PICOPAY_BROKER_PASSWORD\n");
    } else if (a == "--broker-password-file") ok = val(c.broker_password_file);
    else if (a == "--broker-ca") ok = val(c.broker_ca);
    else if (a == "--client-id") ok = val(c.client_id);
    else if (a == "--hub-address") ok = val(c.hub_address);
    else if (a == "--key") ok = val(c.key_file);
    else if (a == "--private-key") {
      ok = val(c.private_key);
      std::fprintf(stderr, "picopay-hub: warning: --private-key is visible to every local user (ps); "
                           "use --key FILE or hub.privateKey in a mode 0600 config file\n");
    }
    else if (a == "--contract") ok = val(c.contract);
    else if (a == "--rpc-url") ok = val(c.rpc_url);
    else if (a == "--event-state") ok = val(c.event_state);
    else if (a == "--confirmations") {
      int v = 0;
      ok = ival(v);
      c.confirmations = static_cast<uint64_t>(v);
    } else if (a == "--watchtower-interval") ok = ival(c.watchtower_interval_s);
    else if (a == "--db") ok = val(c.db);
    else if (a == "--store") ok = val(c.store);
    else if (a == "--batch-max") ok = ival(c.batch_max);
    else if (a == "--channel-cache") ok = ival(c.channel_cache);
    else if (a == "--verify-threads") ok = ival(c.verify_threads);
    else if (a == "--collateral-wei") ok = val(c.collateral_wei);
    else if (a == "--collateral-tokens") ok = val(c.collateral_tokens);
    else if (a == "--exchange-rate") ok = val(c.exchange_rate);
    else if (a == "--exchange-rate-time") {
      ok = val(tmp);
      char* end = nullptr;
      if (ok) c.exchange_rate_time = std::strtoull(tmp.c_str(), &end, 10);
      if (ok && (tmp.empty() || *end)) {
        err = a + ": not Unix seconds: " + tmp;
        ok = false;
      }
    } else if (a == "--dev-skip-chain-checks") c.dev_skip_chain_checks = true;
    else if (a == "--metrics-listen") ok = val(c.metrics_listen);
    else if (a == "-v" || a == "--verbose") c.verbose = true;
    else {
      err = "unknown option " + a + " (see --help)";
      return 2;
    }
    if (!ok) return 2;
  }
  if (!c.broker_password_file.empty() && !agent::secret_file_read(c.broker_password_file, c.broker_password, err))
    return 2;
  if (c.contract.empty()) {
    err = "--contract is required";
    return 2;
  }
  if (c.private_key.empty() == c.key_file.empty()) {
    err = "exactly one of --key FILE or --private-key HEX is required";
    return 2;
  }
  if (c.batch_max < 1) c.batch_max = 1;
  if (c.channel_cache < 1) c.channel_cache = 1;
  if (c.broker_port <= 0 || c.broker_port > 65535) {
    err = "--broker-port out of range";
    return 2;
  }
  if (c.store.rfind("sqlite:", 0) == 0 && c.store.size() > 7 && c.store.rfind("sqlite://", 0) != 0)
    c.db = c.store.substr(7);  // the side files next to the SQLite ledger
  if (c.event_state.empty()) c.event_state = c.db + ".events.json";
  return 0;
}

}  // namespace picopay::hub
