// picopay-agent: see `picopay-agent --help`.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "picopay/agent/secret_file.hpp"
#include "picopay/agent/install.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/device/agent.hpp"
#include "picopay/device/flows.hpp"
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
    "Commands: run (the default), status (print the channel of --state-dir as JSON),\n"
    "deposit, withdraw, exchange, withdraw-owed, history (docs/flows.md).";

const char* kFooter =
    "Precedence: defaults < config file (--config; keys in brackets) < environment < command line.\n"
    "Unknown config keys and bad values are errors; relative paths in a config file resolve\n"
    "against its directory (docs/operations.md \"Config files\").\n"
    "deposit / withdraw / exchange hand the command to the agent running on --state-dir (its command\n"
    "inbox); with no agent running they connect themselves (same options as run), carry it\n"
    "out and exit. They print the result as JSON (gasUsed, elapsedMs) and exit 0 on success.\n"
    "AMOUNT: whole base units of the channel's asset, or with its unit: \"0.01 ETH\", \"2.5 PPT\".\n"
    "stdin meter line protocol: 'wh <cumulative Wh>', 'kwh <cumulative kWh>', 'units <n>', 'quit';\n"
    "'#' comments. At end of input the agent pays what is due, closes its thread and exits.\n"
    "SIGINT/SIGTERM: pay what is due, close threads, exit (state is kept for a restart).\n"
    "A config file holding privateKey or broker.password must be mode 0600 (refused otherwise).\n"
    "Exit status: 0 ok, 1 runtime error (broker or RPC unreachable at start, refused credentials,\n"
    "a state conflict it cannot resolve), 2 usage error.";

}  // namespace

namespace picopay::device {
namespace {

bool read_password(Config& cfg) {
  agent::BrokerRefs b;
  b.host = &cfg.host;
  b.port = &cfg.port;
  b.user = &cfg.username;
  b.password = &cfg.password;
  b.password_file = &cfg.password_file;
  b.ca = &cfg.tls_ca;
  std::string err;
  if (!agent::broker_password_finish(b, err)) {
    std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
    return false;
  }
  return true;
}

// "2.5 PPT", "0.01 ETH": a number, one space, a unit (the agent checks the unit against
// its channel's asset, units.hpp).
bool amount_in_units(const std::string& s) {
  const size_t sp = s.find(' ');
  if (sp == 0 || sp == std::string::npos || sp + 1 >= s.size() || s.size() > 100) return false;
  for (size_t i = 0; i < sp; ++i)
    if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) return false;
  for (size_t i = sp + 1; i < s.size(); ++i)
    if (!std::isalnum(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

// deposit / withdraw / exchange: through the running agent's inbox, or one-shot when none runs.
int run_command(Config cfg, Command& c) {
  std::string err;
  const bool alone = state_dir_lock(cfg.state_dir, err);
  if (!command_submit(cfg.state_dir, c, err)) {
    std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
    return 1;
  }
  if (alone) {
    // No agent runs on this state dir: carry the inbox out ourselves (we hold the lock).
    cfg.oneshot = true;
    if (!read_password(cfg)) return 2;
    int rc = agent_run(cfg);
    if (rc == 2) return 2;
  }
  CommandResult r;
  if (!command_wait(cfg.state_dir, c.id, alone ? 1000 : cfg.wait_seconds * 1000, r)) {
    std::fprintf(stderr, "picopay-agent: no result for the %s after %d s (the agent keeps it: see %s/commands/%s.*)\n",
                 c.op.c_str(), cfg.wait_seconds, cfg.state_dir.c_str(), c.id.c_str());
    return 1;
  }
  std::printf("%s\n", command_result_json(r).c_str());
  if (!r.ok) std::fprintf(stderr, "picopay-agent: %s failed: %s\n", c.op.c_str(), r.error.c_str());
  return r.ok ? 0 : 1;
}

// withdraw-owed: collects what the contract credited to this address (pull payments).
int withdraw_owed(const Config& cfg, const Address* to) {
  if (cfg.rpc_url.empty() || !cfg.has_contract) return usage_error("withdraw-owed needs --rpc and --contract");
  PrivateKey key{};
  std::string err;
  if (!config_private_key(cfg, key, err)) {
    std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
    return 2;
  }
  chain::RpcClient rpc(cfg.rpc_url);
  chain::Wallet w(rpc, key);
  if (!w.init()) {
    std::fprintf(stderr, "picopay-agent: cannot reach the Ethereum node at %s\n", cfg.rpc_url.c_str());
    return 1;
  }
  chain::ChannelManagerClient cm(w, cfg.contract);
  // The contract must be a ChannelManager (of --hub when given): checked before the
  // transaction. What it credited instead of pushing: wei and tokens (docs/chain.md).
  if (cfg.has_hub) cm.require_hub(cfg.hub);
  else cm.require_channel_manager();
  auto owed = cm.owed_wei(w.address());
  auto owed_tok = owed ? cm.owed_tokens(w.address()) : chain::Result<U256>(owed.error());
  if (!owed || !owed_tok) {
    std::fprintf(stderr, "picopay-agent: %s\n", (!owed ? owed : owed_tok).error().to_string().c_str());
    return 1;
  }
  if (owed->is_zero() && owed_tok->is_zero()) {
    std::printf("{\"ok\":true,\"owedWei\":\"0\",\"owedTokens\":\"0\",\"note\":\"nothing owed\"}\n");
    return 0;
  }
  auto rc = to ? cm.withdraw_owed_to(*to) : cm.withdraw_owed();
  if (!rc) {
    std::fprintf(stderr, "picopay-agent: withdrawOwed%s: %s (the credit stays: %s wei, %s token base units)\n",
                 to ? "To" : "", rc.error().to_string().c_str(), json::amount_text(*owed).c_str(),
                 json::amount_text(*owed_tok).c_str());
    return 1;
  }
  std::printf("{\"ok\":true,\"owedWei\":\"%s\",\"owedTokens\":\"%s\",\"to\":\"%s\",\"transaction\":\"%s\",\"gasUsed\":%llu}\n",
              json::amount_text(*owed).c_str(), json::amount_text(*owed_tok).c_str(),
              json::address_text(to ? *to : w.address()).c_str(), json::hash_text(rc->transactionHash).c_str(),
              static_cast<unsigned long long>(rc->gasUsed));
  return 0;
}

}  // namespace
}  // namespace picopay::device

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
  // deposit / withdraw / withdraw-owed / history (docs/flows.md)
  std::string amount_arg;
  Address to{};
  bool has_to = false;
  auto add_to = [&](CLI::App* sub) {
    agent::add_address(*sub, "--to", to, "the recipient (default: the device's own address)", &has_to);
  };
  CLI::App* deposit =
      app.add_subcommand("deposit", "top up the channel by AMOUNT (through the running agent, or one-shot)");
  deposit->add_option("amount", amount_arg, "base units (wei, or token base units), or units: \"2.5 PPT\", \"0.01 ETH\"")
      ->type_name("AMOUNT");
  add_to(deposit);  // refused below with a clear line
  CLI::App* withdraw = app.add_subcommand("withdraw", "cooperative withdrawal of AMOUNT or all; the channel stays open");
  withdraw->add_option("amount", amount_arg, "base units, units (\"1 PPT\"), or all")->type_name("AMOUNT|all");
  add_to(withdraw);
  CLI::App* exchange = app.add_subcommand(
      "exchange", "exchange AMOUNT (\"0.01 ETH\" or \"5 PPT\") at the hub's published rate, within the tolerance");
  exchange->add_option("amount", amount_arg, "the amount sold, in units: \"0.01 ETH\" or \"5 PPT\"")->type_name("AMOUNT");
  CLI::App* withdraw_owed_cmd = app.add_subcommand(
      "withdraw-owed", "collect payouts the contract credited (needs --rpc, --contract and a key)");
  add_to(withdraw_owed_cmd);
  CLI::App* history = app.add_subcommand("history", "print the payment history of --state-dir");
  bool hist_json = false, hist_csv = false;
  history->add_flag("--json", hist_json, "JSON output");
  history->add_flag("--csv", hist_csv, "CSV output");
  app.add_option("--wait", cfg.wait_seconds, "deposit, withdraw, exchange: wait this long for the result (default 180)")
      ->check(CLI::Range(1, 2147483))
      ->type_name("SECONDS");
  (void)run;
  const int rc = agent::parse(app, argc, argv);
  if (rc >= 0) return rc;
  std::string err;
  // A key on the command line replaces whatever key the config file named.
  if (!keys.private_key.empty() || !keys.keystore.empty()) {
    agent::warn_key_on_argv(keys);
    cfg.key_hex = keys.private_key;
    cfg.key_file = keys.keystore;
  }
  if (withdraw_owed_cmd->parsed()) return withdraw_owed(cfg, has_to ? &to : nullptr);
  if (cfg.state_dir.empty()) return usage_error("--state-dir is required");
  if (history->parsed()) {
    std::vector<HistoryEntry> h;
    if (!history_load(cfg.state_dir, h, err)) {
      std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
      return 1;
    }
    std::fputs(history_format(h, hist_csv ? "csv" : hist_json ? "json" : "table").c_str(), stdout);
    return 0;
  }
  if (deposit->parsed() || withdraw->parsed() || exchange->parsed()) {
    Command c;
    c.op = deposit->parsed() ? "deposit" : withdraw->parsed() ? "withdraw" : "exchange";
    if (amount_arg.empty())
      return usage_error(c.op + " needs an amount" + (c.op == "withdraw" ? " or all" : ""));
    if (has_to && c.op != "withdraw") return usage_error("--to is for withdraw");
    if (withdraw->parsed() && amount_arg == "all") {
      c.all = true;
    } else if (c.op != "exchange" && amount_arg.find_first_not_of("0123456789") == std::string::npos &&
               parse_amount_text(amount_arg, c.wei)) {
      // Whole base units of the channel's asset; an amount with a unit is read by the
      // agent, which knows the asset (a PPT channel refuses "0.01 ETH").
      if (c.wei.is_zero()) return usage_error(c.op + ": the amount must be positive");
    } else if (amount_in_units(amount_arg)) {
      c.amount = amount_arg;  // read by the agent in its channel's asset (units.hpp)
    } else {
      return usage_error(c.op + ": the amount must be " +
                         (c.op == "exchange" ? std::string("a number and a unit (\"0.01 ETH\", \"5 PPT\")")
                                             : std::string("a positive number of base units or a number and a unit (\"2.5 PPT\")")));
    }
    c.has_to = has_to;
    c.to = to;
    return run_command(cfg, c);
  }
  if (status->parsed()) {
    AgentState st;
    if (!state_load(cfg.state_dir, st, err)) {
      std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
      return 1;
    }
    std::printf("%s\n", status_json(st).c_str());
    return 0;
  }
  if (!read_password(cfg)) return 2;
  return agent_run(cfg);
}

}  // namespace picopay::device

int main(int argc, char** argv) { return picopay::device::agent_main(argc, argv); }
