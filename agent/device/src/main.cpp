// picopay-agent: see `picopay-agent --help`.
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

const char* kHelp =
    "usage: picopay-agent [run] [options]\n"
    "       picopay-agent status --state-dir DIR\n"
    "       picopay-agent deposit WEI [options]          top up the channel (docs/flows.md)\n"
    "       picopay-agent withdraw WEI|all [--to ADDR] [options]\n"
    "                                                    cooperative withdrawal, channel stays open\n"
    "       picopay-agent withdraw-owed [--to ADDR] --rpc URL --contract ADDR --key-file FILE\n"
    "                                                    collect payouts the contract credited\n"
    "       picopay-agent history --state-dir DIR [--json|--csv]\n"
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
    "  --token ADDR            pay in the ChannelManager's ERC-20 token (its approvedToken();\n"
    "                          symbol and decimals are read from the chain; needs --rpc).\n"
    "                          The *-wei amounts are then token base units\n"
    "  --price AMOUNT          price per unit in the channel's units: '0.001 ETH', '0.5 PPT',\n"
    "                          or whole base units (replaces --price-wei)\n"
    "  --deposit AMOUNT        as --deposit-wei, in units ('2.5 PPT')\n"
    "  --thread-lock AMOUNT    as --thread-lock-wei, in units\n"
    "  --sell-price AMOUNT     payee: publish a signed price list, AMOUNT per Wh (docs/tokens.md)\n"
    "  --price-validity S      payee: each list is valid S seconds (default 3600, re-published at S/2)\n"
    "  --serve-margin N        payee with a meter: stop serving when payers are more than N Wh\n"
    "                          behind what it delivered (default 10)\n"
    "  --max-price AMOUNT      payer with --pay-to: pay by the payee's signed price list, never\n"
    "                          above AMOUNT per Wh (replaces --price)\n"
    "  --exchange AMOUNT       once synced, sell AMOUNT ('0.01 ETH' for tokens, '5 PPT' for wei)\n"
    "                          at the hub's signed published rate, once the hub holds what\n"
    "                          it gives out in our channel (docs/tokens.md)\n"
    "  --exchange-max-age S    refuse a rate set more than S seconds ago (default 3600)\n"
    "  --exchange-reference-rate R  token base units per wei we expect; with\n"
    "  --exchange-max-deviation-bps N  refuse a rate further than N bps from it (default 100)\n"
    "  --no-exit-on-eof        stdin meter: keep running at end of input\n"
    "  --no-close-on-exit      leave threads open when stopping\n"
    "  --status-interval-ms N  retained status JSON at most this often (default 500)\n"
    "  --tower ADDR            hand the latest double-signed channel state (and, as a payee,\n"
    "                          the incoming threads' latest states) to the picopay-tower with\n"
    "                          this address, which answers stale exits while we sleep\n"
    "                          (docs/tower.md; config: \"tower\": {\"address\": ..})\n"
    "  --tower-interval-ms N   hand a newer state over at most this often (default 1000)\n"
    "  --refill-below-wei N    payer: top up when the channel balance falls below N wei\n"
    "  --refill-wei N          ... by N wei (on chain, from the device's wallet)\n"
    "  --cash-out-above-wei N  withdraw the whole channel balance once it exceeds N wei\n"
    "  --cash-out-to ADDR      ... to ADDR (default: the device's own address)\n"
    "  --expect-income-wei N   payee: ask the hub to hold N wei of collateral in the channel\n"
    "  --to ADDR               withdraw, withdraw-owed: the recipient (default: the device)\n"
    "  --wait SECONDS          deposit, withdraw: wait this long for the result (default 180)\n"
    "  --json, --csv           history: machine-readable output\n"
    "  -v, --verbose           debug logs\n"
    "  -h, --help              this help\n"
    "  --version               print the version and exit\n"
    "\n"
    "stdin meter line protocol: 'wh <cumulative Wh>', 'kwh <cumulative kWh>', 'units <n>', 'quit';\n"
    "'#' comments. At end of input the agent pays what is due, closes its thread and exits.\n"
    "deposit / withdraw hand the command to the agent running on --state-dir (its command\n"
    "inbox); with no agent running they connect themselves (same options as run), carry it\n"
    "out and exit. They print the result as JSON (gasUsed, elapsedMs) and exit 0 on success.\n"
    "SIGINT/SIGTERM: pay what is due, close threads, exit (state is kept for a restart).\n"
    "A config file holding privateKey or broker.password must be mode 0600 (refused otherwise).\n"
    "Exit status: 0 ok, 1 runtime error, 2 usage error.\n";

int usage_error(const std::string& m) {
  std::fprintf(stderr, "picopay-agent: %s (see --help)\n", m.c_str());
  return 2;
}

}  // namespace

namespace picopay::device {
namespace {

bool read_password(Config& cfg) {
  std::string err;
  if (!cfg.password_file.empty()) {
    if (!agent::secret_file_read(cfg.password_file, cfg.password, err)) {
      std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
      return false;
    }
  } else if (cfg.password.empty()) {
    if (const char* p = std::getenv("PICOPAY_MQTT_PASSWORD")) cfg.password = p;
  }
  return true;
}

// deposit / withdraw: through the running agent's inbox, or one-shot when none runs.
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
  cm.require_channel_manager();
  auto owed = cm.owed_wei(w.address());
  if (!owed) {
    std::fprintf(stderr, "picopay-agent: %s\n", owed.error().to_string().c_str());
    return 1;
  }
  if (owed->is_zero()) {
    std::printf("{\"ok\":true,\"owedWei\":\"0\",\"note\":\"nothing owed\"}\n");
    return 0;
  }
  auto rc = to ? cm.withdraw_owed_to(*to) : cm.withdraw_owed();
  if (!rc) {
    std::fprintf(stderr, "picopay-agent: withdrawOwed: %s\n", rc.error().to_string().c_str());
    return 1;
  }
  std::printf("{\"ok\":true,\"owedWei\":\"%s\",\"transaction\":\"%s\",\"gasUsed\":%llu}\n",
              json::amount_text(*owed).c_str(), json::hash_text(rc->transactionHash).c_str(),
              static_cast<unsigned long long>(rc->gasUsed));
  return 0;
}

}  // namespace
}  // namespace picopay::device

namespace picopay::device {

int agent_main(int argc, char** argv) {
  if (agent::version_requested(argc, argv)) return agent::print_version();
  int i = 1;
  std::string cmd = "run";
  if (argc > 1 && argv[1][0] != '-') {
    cmd = argv[1];
    i = 2;
  }
  std::string amount_arg;
  if ((cmd == "deposit" || cmd == "withdraw") && i < argc && argv[i][0] != '-') amount_arg = argv[i++];
  Address to{};
  bool has_to = false;
  std::string format = "table";
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
    } else if (a == "--json" || a == "--csv") {
      format = a.substr(2);
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
    } else if (a == "--token") {
      if (!parse_address_text(v, cfg.token)) return usage_error("--token: not an address");
      cfg.has_token = true;
    } else if (a == "--price") {
      cfg.price_text = v;
    } else if (a == "--deposit") {
      cfg.deposit_text = v;
    } else if (a == "--thread-lock") {
      cfg.thread_lock_text = v;
    } else if (a == "--sell-price") {
      cfg.sell_price_text = v;
    } else if (a == "--price-validity") {
      cfg.price_validity_s = std::strtoull(v.c_str(), nullptr, 10);
      if (cfg.price_validity_s < 60) return usage_error("--price-validity: 60 seconds or more");
    } else if (a == "--serve-margin") {
      cfg.serve_margin_units = std::strtoull(v.c_str(), nullptr, 10);
    } else if (a == "--max-price") {
      cfg.max_price_text = v;
    } else if (a == "--exchange") {
      cfg.exchange_text = v;
    } else if (a == "--exchange-max-age") {
      cfg.exchange_max_age_s = std::strtoull(v.c_str(), nullptr, 10);
    } else if (a == "--exchange-max-deviation-bps") {
      cfg.exchange_max_deviation_bps = static_cast<uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
    } else if (a == "--exchange-reference-rate") {
      cfg.exchange_reference = v;
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
    } else if (a == "--refill-below-wei") {
      if (!parse_amount_text(v, cfg.refill_below_wei)) return usage_error("--refill-below-wei: decimal wei");
    } else if (a == "--refill-wei") {
      if (!parse_amount_text(v, cfg.refill_wei)) return usage_error("--refill-wei: decimal wei");
    } else if (a == "--cash-out-above-wei") {
      if (!parse_amount_text(v, cfg.cash_out_above_wei)) return usage_error("--cash-out-above-wei: decimal wei");
    } else if (a == "--cash-out-to") {
      if (!parse_address_text(v, cfg.cash_out_to)) return usage_error("--cash-out-to: not an address");
      cfg.has_cash_out_to = true;
    } else if (a == "--expect-income-wei") {
      if (!parse_amount_text(v, cfg.expect_income_wei)) return usage_error("--expect-income-wei: decimal wei");
    } else if (a == "--to") {
      if (!parse_address_text(v, to)) return usage_error("--to: not an address");
      has_to = true;
    } else if (a == "--wait") {
      cfg.wait_seconds = std::atoi(v.c_str());
      if (cfg.wait_seconds <= 0) return usage_error("--wait: seconds, 1 or more");
    } else {
      return usage_error("unknown option " + a);
    }
  }
  if (cmd == "withdraw-owed") return withdraw_owed(cfg, has_to ? &to : nullptr);
  if (cfg.state_dir.empty()) return usage_error("--state-dir is required");
  if (cmd == "history") {
    std::vector<HistoryEntry> h;
    if (!history_load(cfg.state_dir, h, err)) {
      std::fprintf(stderr, "picopay-agent: %s\n", err.c_str());
      return 1;
    }
    std::fputs(history_format(h, format).c_str(), stdout);
    return 0;
  }
  if (cmd == "deposit" || cmd == "withdraw") {
    Command c;
    c.op = cmd;
    if (amount_arg.empty()) return usage_error(cmd + " needs an amount in wei" + (cmd == "withdraw" ? " or all" : ""));
    if (cmd == "withdraw" && amount_arg == "all") {
      c.all = true;
    } else if (!parse_amount_text(amount_arg, c.wei) || c.wei.is_zero()) {
      return usage_error(cmd + ": the amount must be a positive decimal number of wei");
    }
    if (has_to && cmd != "withdraw") return usage_error("--to is for withdraw");
    c.has_to = has_to;
    c.to = to;
    return run_command(cfg, c);
  }
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
  if (!read_password(cfg)) return 2;
  return agent_run(cfg);
}

}  // namespace picopay::device

int main(int argc, char** argv) { return picopay::device::agent_main(argc, argv); }
