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
int usage_error(const std::string& m) {
  std::fprintf(stderr, "picopay-agent: %s (see --help)\n", m.c_str());
  return 2;
}
}  // namespace

#include "picopay/agent/log.hpp"
#include "picopay/device/options.hpp"

namespace {

const char* kDescription =
    "picopay-agent: a picopay device or gateway agent (payer and/or payee) over MQTT\n"
    "(docs/mqtt-protocol.md). The state dir keeps the channel; every state is persisted\n"
    "before its signature leaves.\n"
    "Commands: run (the default), status (print the channel of --state-dir as JSON).";

const char* kFooter =
    "Precedence: defaults < config file (--config; keys in brackets) < environment < command line.\n"
    "Unknown config keys and bad values are errors; relative paths in a config file resolve\n"
    "against its directory (docs/operations.md \"Config files\").\n"
    "stdin meter line protocol: 'wh <cumulative Wh>', 'kwh <cumulative kWh>', 'units <n>', 'quit';\n"
    "'#' comments. At end of input the agent pays what is due, closes its thread and exits.\n"
    "SIGINT/SIGTERM: pay what is due, close threads, exit (state is kept for a restart).\n"
    "A config file holding privateKey or broker.password must be mode 0600 (refused otherwise).\n"
    "Exit status: 0 ok, 1 runtime error (broker or RPC unreachable at start, refused credentials,\n"
    "a state conflict it cannot resolve), 2 usage error.";

}  // namespace

namespace picopay::device {

int agent_main(int argc, char** argv) {
  Config cfg;
  CLI::App app{kDescription, "picopay-agent"};
  app.footer(kFooter);
  agent::Settings s(&app);
  agent::CommonOptions common;
  agent::KeyOptions keys;
  agent::BrokerRefs broker;
  agent::add_common(app, common, &cfg.verbose);
  s.config_option();
  bind_settings(s, &app, cfg, keys, broker, common);
  app.fallthrough();
  app.require_subcommand(0, 1);
  CLI::App* run = app.add_subcommand("run", "run the agent (the default)");
  CLI::App* status = app.add_subcommand("status", "print the channel of --state-dir as JSON");
  bool json_flag = true;
  status->add_flag("--json", json_flag, "JSON output (the only format; accepted for uniformity)");
  (void)run;
  const int rc = agent::parse(app, argc, argv);
  if (rc >= 0) return rc;
  std::string err;
  if (cfg.state_dir.empty()) return usage_error("--state-dir is required");
  if (status->parsed()) {
    AgentState st;
    if (!state_load(cfg.state_dir, st, err)) {
      std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
      return 1;
    }
    std::printf("%s\n", status_json(st).c_str());
    return 0;
  }
  // A key on the command line replaces whatever key the config file named.
  if (!keys.private_key.empty() || !keys.keystore.empty()) {
    agent::warn_key_on_argv(keys);
    cfg.key_hex = keys.private_key;
    cfg.key_file = keys.keystore;
  }
  if (!agent::broker_password_finish(broker, err)) {
    std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
    return 2;
  }
  return agent_run(cfg);
}

}  // namespace picopay::device

int main(int argc, char** argv) { return picopay::device::agent_main(argc, argv); }
