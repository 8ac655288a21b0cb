// picopay-agent: see `picopay-agent --help`.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "picopay/agent/secret_file.hpp"
#include "picopay/agent/install.hpp"
#include "picopay/device/agent.hpp"
#include "picopay/device/state.hpp"

namespace picopay::device {
bool parse_address_text(const std::string& s, Address& a);
bool parse_amount_text(const std::string& s, U256& v);
}

namespace {

const char* kHelp =
    "usage: picopay-agent [run] [options]\n"
    "       picopay-agent status --state-dir DIR\n"
    "\n"
    "A picopay device or gateway agent (payer and/or payee) over MQTT (docs/mqtt-protocol.md).\n"
    "The state dir keeps the channel; every state is persisted before its signature leaves.\n"
    "\n"
    "options (override the config file):\n"
    "  --config FILE           JSON config (see examples/ev-charger/*.json)\n"
    "  --name NAME             name in logs and status\n"
    "  --state-dir DIR         state directory (created; required)\n"
    "  --broker HOST:PORT      MQTT broker (default 127.0.0.1:1883)\n"
    "  --username U            broker username (default: the lowercase address)\n"
    "  --password-file FILE    broker password: FILE's first line; FILE must be mode 0600\n"
    "  --password P            broker password (or env PICOPAY_MQTT_PASSWORD; on the command\n"
    "                          line every local user sees it: prefer --password-file)\n"
    "  --tls-ca FILE           connect with TLS, verify the broker against this CA\n"
    "  --hub ADDR              the hub's address\n"
    "  --contract ADDR         the ChannelManager address\n"
    "  --key 0xHEX             private key (tests only: visible to every local user; use\n"
    "                          --key-file, or privateKey in a mode 0600 config file)\n"
    "  --key-file FILE         sealed key file (passphrase: PICOPAY_PASSPHRASE, the file named\n"
    "                          by PICOPAY_PASSPHRASE_FILE, or the tty)\n"
    "  --rpc URL               Ethereum JSON-RPC (needed for the deposit)\n"
    "  --role payer|payee|both role (default payer)\n"
    "  --meter SRC[:TOPIC]     none | stdin | tasmota:tele/<t>/SENSOR | shelly:<prefix>/status/switch:0\n"
    "  --price-wei N           price per unit (1 unit = 1 Wh) in wei\n"
    "  --min-units N           pay once N units are due (default 1)\n"
    "  --deposit-wei N         deposit on chain when the channel is new\n"
    "  --pay-to ADDR           pay this payee through a thread (default: pay the hub)\n"
    "  --thread-lock-wei N     wei locked per thread (default: the whole balance)\n"
    "  --no-exit-on-eof        stdin meter: keep running at end of input\n"
    "  --no-close-on-exit      leave threads open when stopping\n"
    "  --status-interval-ms N  retained status JSON at most this often (default 500)\n"
    "  --tower ADDR            hand the latest double-signed channel state (and, as a payee,\n"
    "                          the incoming threads' latest states) to the picopay-tower with\n"
    "                          this address, which answers stale exits while we sleep\n"
    "                          (docs/tower.md; config: \"tower\": {\"address\": ..})\n"
    "  --tower-interval-ms N   hand a newer state over at most this often (default 1000)\n"
    "  -v, --verbose           debug logs\n"
    "  -h, --help              this help\n"
    "  --version               print the version and exit\n"
    "\n"
    "stdin meter line protocol: 'wh <cumulative Wh>', 'kwh <cumulative kWh>', 'units <n>', 'quit';\n"
    "'#' comments. At end of input the agent pays what is due, closes its thread and exits.\n"
    "SIGINT/SIGTERM: pay what is due, close threads, exit (state is kept for a restart).\n"
    "A config file holding privateKey or broker.password must be mode 0600 (refused otherwise).\n"
    "Exit status: 0 ok, 1 runtime error, 2 usage error.\n";

int usage_error(const std::string& m) {
  std::fprintf(stderr, "picopay-agent: %s (see --help)\n", m.c_str());
  return 2;
}

}  // namespace

namespace picopay::device {

int agent_main(int argc, char** argv) {
  if (agent::version_requested(argc, argv)) return agent::print_version();
  int i = 1;
  std::string cmd = "run";
  if (argc > 1 && argv[1][0] != '-') {
    cmd = argv[1];
    i = 2;
  }
  Config cfg;
  std::string config_file;
  // Pass 1: config file first so options override it.
  for (int k = i; k < argc; ++k)
    if (std::strcmp(argv[k], "--config") == 0 && k + 1 < argc) config_file = argv[k + 1];
  std::string err;
  if (!config_file.empty() && !config_load_file(config_file, cfg, err)) return usage_error(err);
  for (; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    std::string v;
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    } else if (a == "-v" || a == "--verbose") {
      cfg.verbose = true;
    } else if (a == "--no-exit-on-eof") {
      cfg.exit_on_eof = false;
    } else if (a == "--no-close-on-exit") {
      cfg.close_on_exit = false;
    } else if (!val(v)) {
      return usage_error("unknown option or missing value: " + a);
    } else if (a == "--config") {
    } else if (a == "--name") {
      cfg.name = v;
    } else if (a == "--state-dir") {
      cfg.state_dir = v;
    } else if (a == "--broker") {
      size_t c = v.rfind(':');
      if (c == std::string::npos) return usage_error("--broker HOST:PORT");
      cfg.host = v.substr(0, c);
      cfg.port = std::atoi(v.c_str() + c + 1);
    } else if (a == "--username") {
      cfg.username = v;
    } else if (a == "--password") {
      cfg.password = v;
      std::fprintf(stderr, "picopay-agent: warning: --password is visible to every local user (ps); "
                           "use --password-file (mode 0600) or PICOPAY_MQTT_PASSWORD\n");
    } else if (a == "--password-file") {
      cfg.password_file = v;
    } else if (a == "--tls-ca") {
      cfg.tls_ca = v;
    } else if (a == "--hub") {
      if (!parse_address_text(v, cfg.hub)) return usage_error("--hub: not an address");
      cfg.has_hub = true;
    } else if (a == "--contract") {
      if (!parse_address_text(v, cfg.contract)) return usage_error("--contract: not an address");
      cfg.has_contract = true;
    } else if (a == "--key") {
      cfg.key_hex = v;
      std::fprintf(stderr, "picopay-agent: warning: --key is visible to every local user (ps); "
                           "use --key-file or privateKey in a mode 0600 config file\n");
    } else if (a == "--key-file") {
      cfg.key_file = v;
    } else if (a == "--rpc") {
      cfg.rpc_url = v;
    } else if (a == "--role") {
      cfg.payer = v == "payer" || v == "both";
      cfg.payee = v == "payee" || v == "both";
      if (!cfg.payer && !cfg.payee) return usage_error("--role payer|payee|both");
    } else if (a == "--meter") {
      size_t c = v.find(':');
      cfg.meter = v.substr(0, c);
      cfg.meter_topic = c == std::string::npos ? "" : v.substr(c + 1);
      if (cfg.meter != "none" && cfg.meter != "stdin" && cfg.meter != "tasmota" && cfg.meter != "shelly")
        return usage_error("--meter none|stdin|tasmota:TOPIC|shelly:TOPIC");
    } else if (a == "--price-wei") {
      if (!parse_amount_text(v, cfg.price_wei)) return usage_error("--price-wei: decimal wei");
    } else if (a == "--min-units") {
      cfg.min_units = std::strtoull(v.c_str(), nullptr, 10);
      if (cfg.min_units == 0) cfg.min_units = 1;
    } else if (a == "--deposit-wei") {
      if (!parse_amount_text(v, cfg.deposit_wei)) return usage_error("--deposit-wei: decimal wei");
    } else if (a == "--pay-to") {
      if (!parse_address_text(v, cfg.pay_to)) return usage_error("--pay-to: not an address");
      cfg.has_pay_to = true;
    } else if (a == "--thread-lock-wei") {
      if (!parse_amount_text(v, cfg.thread_lock_wei)) return usage_error("--thread-lock-wei: decimal wei");
    } else if (a == "--status-interval-ms") {
      cfg.status_interval_ms = std::atoi(v.c_str());
    } else if (a == "--tower") {
      if (!parse_address_text(v, cfg.tower) || cfg.tower.is_zero()) return usage_error("--tower: the tower's non-zero 0x address");
      cfg.has_tower = true;
    } else if (a == "--tower-interval-ms") {
      char* end = nullptr;
      const unsigned long long ms = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || ms < 1 || ms > 3600000) return usage_error("--tower-interval-ms: 1 .. 3600000");
      cfg.tower_interval_ms = ms;
    } else {
      return usage_error("unknown option " + a);
    }
  }
  if (cfg.state_dir.empty()) return usage_error("--state-dir is required");
  if (cmd == "status") {
    AgentState s;
    if (!state_load(cfg.state_dir, s, err)) {
      std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
      return 1;
    }
    std::string out = status_json(s);
    std::printf("%s\n", out.c_str());
    return 0;
  }
  if (cmd != "run") return usage_error("unknown command " + cmd);
  if (!cfg.password_file.empty()) {
    if (!agent::secret_file_read(cfg.password_file, cfg.password, err)) {
      std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
      return 2;
    }
  } else if (cfg.password.empty()) {
    if (const char* p = std::getenv("PICOPAY_MQTT_PASSWORD")) cfg.password = p;
  }
  return agent_run(cfg);
}

}  // namespace picopay::device

int main(int argc, char** argv) { return picopay::device::agent_main(argc, argv); }
