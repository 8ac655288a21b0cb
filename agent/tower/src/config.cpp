// picopay-tower configuration (see config.hpp).
#include "picopay/tower/config.hpp"

#include <cjson/cJSON.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace picopay::tower {

std::string help_text() {
  return R"(picopay-tower: a keyless watchtower for devices that sleep

Devices hand it their latest double-signed channel state over MQTT; it follows the
ChannelManager's events and answers a stale exit on a guarded channel with that state
(emptyChannelWithChallenge) within the challenge period, then empties the channel
(emptyChannel) once the period is over, so the device gets its balance while asleep.
Its own key pays gas only: it never signs a state and can move no funds. docs/tower.md.

Usage: picopay-tower [--config FILE] [options]

Every option can also be set in the JSON config file (key in brackets); the command line wins.

Broker:
  --broker-host HOST        MQTT broker host [broker.host] (default 127.0.0.1)
  --broker-port PORT        MQTT broker port [broker.port] (default 1883)
  --broker-user USER        username [broker.username]
  --broker-password-file F  file whose first line is the password [broker.password in the
                            config file, or env PICOPAY_BROKER_PASSWORD]
  --broker-ca FILE          TLS: CA certificate file; enables TLS [broker.tlsCaFile]
  --client-id ID            MQTT client id [broker.clientId] (default picopay-tower-<tower address>)
Tower identity (its account pays gas; fund it with a little ETH):
  --key FILE                sealed key file (picopay keygen; passphrase: env PICOPAY_PASSPHRASE
                            or the tty) [tower.keyFile]; without it the key is taken from env
                            PICOPAY_TOWER_PRIVATE_KEY (0x + 64 hex). Never on the command line.
  --tower-address ADDR      expected tower address, checked against the key [tower.address]
Chain:
  --contract ADDR           ChannelManager address (required) [contract]
  --hub ADDR                expected hub, checked against the contract's hub() [hub]
  --rpc-url URL             Ethereum JSON-RPC URL (required) [rpcUrl]
  --event-state FILE        event poller progress file [eventState] (default <db>.events.json)
  --confirmations N         blocks before an event counts [confirmations] (default 0)
  --start-block N           first block to scan on the first start [startBlock] (default: the
                            current block; channels handed over later are checked on chain)
  --interval-ms MS          milliseconds between chain rounds [intervalMs] (default 1000)
Store:
  --db FILE                 SQLite file, one row per channel [db] (default picopay-tower.db)
  --max-channels N          channels held at most [maxChannels] (default 100000)
  -v, --verbose             log every handover [verbose]
  -h, --help                this text
  --version                 print the version and exit

Topics: subscribes picopay/v1/tower/<tower>/user/+/state (payload: the wire SignedChannelState,
docs/wire-format.md); acks on picopay/v1/tower/<tower>/user/<user>/ack (signed by the tower).
Exit: 0 after SIGINT/SIGTERM, 2 on a configuration or start-up error, 3 on a fatal store error.
)";
}

namespace {
const cJSON* get(const cJSON* o, const char* a, const char* b = nullptr) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, a);
  if (v && b) v = cJSON_GetObjectItemCaseSensitive(v, b);
  return v;
}
void str(const cJSON* o, std::string& out, const char* a, const char* b = nullptr) {
  const cJSON* v = get(o, a, b);
  if (cJSON_IsString(v)) out = v->valuestring;
}
bool num(const cJSON* o, int64_t& out, const char* a, const char* b, std::string& err) {
  const cJSON* v = get(o, a, b);
  if (!v) return true;
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740991.0 ||
      static_cast<double>(static_cast<int64_t>(v->valuedouble)) != v->valuedouble) {
    err = std::string("config: ") + a + (b ? std::string(".") + b : "") + " must be a non-negative integer";
    return false;
  }
  out = static_cast<int64_t>(v->valuedouble);
  return true;
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
  if (get(j, "tower", "privateKey") || get(j, "privateKey")) {
    cJSON_Delete(j);
    err = "config file " + path + ": a raw private key is not accepted; use tower.keyFile or PICOPAY_TOWER_PRIVATE_KEY";
    return false;
  }
  str(j, c.broker_host, "broker", "host");
  str(j, c.broker_user, "broker", "username");
  str(j, c.broker_password, "broker", "password");
  str(j, c.broker_ca, "broker", "tlsCaFile");
  str(j, c.client_id, "broker", "clientId");
  str(j, c.tower_address, "tower", "address");
  str(j, c.key_file, "tower", "keyFile");
  str(j, c.contract, "contract");
  str(j, c.hub, "hub");
  str(j, c.rpc_url, "rpcUrl");
  str(j, c.event_state, "eventState");
  str(j, c.db, "db");
  int64_t port = c.broker_port, conf = static_cast<int64_t>(c.confirmations), start = c.start_block,
          interval = c.interval_ms, maxch = c.max_channels;
  bool ok = num(j, port, "broker", "port", err) && num(j, conf, "confirmations", nullptr, err) &&
            num(j, start, "startBlock", nullptr, err) && num(j, interval, "intervalMs", nullptr, err) &&
            num(j, maxch, "maxChannels", nullptr, err);
  const cJSON* v = get(j, "verbose");
  if (cJSON_IsBool(v)) c.verbose = cJSON_IsTrue(v);
  cJSON_Delete(j);
  if (!ok) return false;
  if (port > 65535 || interval > 3600000 || maxch > 1000000000) {
    err = "config file " + path + ": broker.port, intervalMs or maxChannels out of range";
    return false;
  }
  c.broker_port = static_cast<int>(port);
  c.confirmations = static_cast<uint64_t>(conf);
  c.start_block = start;
  c.interval_ms = static_cast<int>(interval);
  c.max_channels = static_cast<int>(maxch);
  if (!c.broker_password.empty()) {
    struct stat sb {};
    if (::stat(path.c_str(), &sb) == 0 && (sb.st_mode & 077) != 0) {
      err = "config file " + path + " holds broker.password and is readable by group or others (chmod 600 it)";
      return false;
    }
  }
  return true;
}

bool to_int(const std::string& s, int64_t max, int64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  for (char ch : s)
    if (ch < '0' || ch > '9') return false;
  out = std::strtoll(s.c_str(), nullptr, 10);
  return out <= max;
}

bool first_line(const std::string& path, std::string& out, std::string& err) {
  std::ifstream f(path);
  if (!f) {
    err = "cannot read " + path;
    return false;
  }
  std::getline(f, out);
  if (!out.empty() && out.back() == '\r') out.pop_back();
  if (out.empty()) {
    err = path + " is empty";
    return false;
  }
  return true;
}
}  // namespace

int parse_config(int argc, char** argv, Config& c, std::string& err) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help")) return 1;
  }
  for (int i = 1; i < argc; ++i) {
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
    const std::string a = argv[i];
    auto val = [&](std::string& out) -> bool {
      if (i + 1 >= argc) {
        err = a + " needs a value";
        return false;
      }
      out = argv[++i];
      return true;
    };
    auto ival = [&](int64_t max, int64_t& out) -> bool {
      std::string s;
      if (!val(s)) return false;
      if (!to_int(s, max, out)) {
        err = a + ": not an integer in 0.." + std::to_string(max) + ": " + s;
        return false;
      }
      return true;
    };
    bool ok = true;
    int64_t n = 0;
    std::string tmp;
    if (a == "--config") ++i;
    else if (a == "--broker-host") ok = val(c.broker_host);
    else if (a == "--broker-port") {
      ok = ival(65535, n);
      c.broker_port = static_cast<int>(n);
    } else if (a == "--broker-user") ok = val(c.broker_user);
    else if (a == "--broker-password-file") ok = val(tmp) && first_line(tmp, c.broker_password, err);
    else if (a == "--broker-password") {
      err = "--broker-password is not accepted (argv is visible to every local user): use "
            "--broker-password-file, broker.password in a 0600 config file, or PICOPAY_BROKER_PASSWORD";
      return 2;
    } else if (a == "--private-key") {
      err = "--private-key is not accepted (argv is visible to every local user): use --key FILE or "
            "PICOPAY_TOWER_PRIVATE_KEY";
      return 2;
    } else if (a == "--broker-ca") ok = val(c.broker_ca);
    else if (a == "--client-id") ok = val(c.client_id);
    else if (a == "--tower-address") ok = val(c.tower_address);
    else if (a == "--key") ok = val(c.key_file);
    else if (a == "--contract") ok = val(c.contract);
    else if (a == "--hub") ok = val(c.hub);
    else if (a == "--rpc-url") ok = val(c.rpc_url);
    else if (a == "--event-state") ok = val(c.event_state);
    else if (a == "--confirmations") {
      ok = ival(1000, n);
      c.confirmations = static_cast<uint64_t>(n);
    } else if (a == "--start-block") {
      ok = ival(INT64_MAX / 2, n);
      c.start_block = n;
    } else if (a == "--interval-ms") {
      ok = ival(3600000, n);
      c.interval_ms = static_cast<int>(n);
    } else if (a == "--db") ok = val(c.db);
    else if (a == "--max-channels") {
      ok = ival(1000000000, n);
      c.max_channels = static_cast<int>(n);
    } else if (a == "-v" || a == "--verbose") c.verbose = true;
    else {
      err = "unknown option " + a + " (see --help)";
      return 2;
    }
    if (!ok) return 2;
  }
  if (c.contract.empty()) {
    err = "--contract is required";
    return 2;
  }
  if (c.rpc_url.empty()) {
    err = "--rpc-url is required (the tower follows the chain)";
    return 2;
  }
  if (c.broker_port <= 0) {
    err = "--broker-port out of range";
    return 2;
  }
  if (c.interval_ms < 10) c.interval_ms = 10;
  if (c.max_channels < 1) {
    err = "--max-channels must be at least 1";
    return 2;
  }
  if (c.event_state.empty()) c.event_state = c.db + ".events.json";
  return 0;
}

}  // namespace picopay::tower
