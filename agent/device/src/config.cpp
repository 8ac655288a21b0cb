// picopay-agent settings: flags and config keys declared once (agent/common settings.hpp).
#include "picopay/device/options.hpp"

#include "picopay/agent/options.hpp"
#include "picopay/device/agent.hpp"

namespace picopay::device {

bool parse_address_text(const std::string& s, Address& a) {
  return address_parse(s.c_str(), s.size(), a) == Status::Ok;
}

bool parse_amount_text(const std::string& s, U256& v) {
  std::string err;
  return agent::amount_parse(s, v, err);
}

namespace {

void set_role(Config& cfg, const std::string& r) {
  cfg.payer = r == "payer" || r == "both";
  cfg.payee = r == "payee" || r == "both";
}

bool set_meter(Config& cfg, const std::string& v, std::string& err) {
  const size_t c = v.find(':');
  const std::string src = v.substr(0, c);
  if (src != "none" && src != "stdin" && src != "tasmota" && src != "shelly") {
    err = "--meter none|stdin|tasmota:TOPIC|shelly:TOPIC, got \"" + v + "\"";
    return false;
  }
  cfg.meter = src;
  cfg.meter_topic = c == std::string::npos ? "" : v.substr(c + 1);
  return true;
}

}  // namespace

void bind_settings(agent::Settings& s, CLI::App* app, Config& cfg, agent::KeyOptions& keys,
                   agent::BrokerRefs& broker, agent::CommonOptions& common) {
  s.group("Agent");
  s.str("--name", "name", cfg.name, "name in logs and status");
  s.path("--state-dir", "stateDir", cfg.state_dir, "state directory (created; required)");
  broker.host = &cfg.host;
  broker.port = &cfg.port;
  broker.user = &cfg.username;
  broker.password = &cfg.password;
  broker.password_file = &cfg.password_file;
  broker.ca = &cfg.tls_ca;
  agent::add_broker_settings(s, app, broker, "picopay-agent");
  s.group("Channel");
  s.address("--hub", "hub", cfg.hub, &cfg.has_hub, "the hub's address");
  s.address("--contract", "contract", cfg.contract, &cfg.has_contract, "the ChannelManager address");
  s.key_only("privateKey", [&cfg](agent::ConfigFile& f) { f.str("privateKey", cfg.key_hex); });
  s.key_only("keyFile", [&cfg](agent::ConfigFile& f) { f.path("keyFile", cfg.key_file); });
  s.key_only("rpc", [&cfg](agent::ConfigFile& f) { f.str("rpc", cfg.rpc_url); });
  s.key_only("rpcUrl", [&cfg](agent::ConfigFile& f) { f.str("rpcUrl", cfg.rpc_url); });
  s.key_only("role", [&cfg](agent::ConfigFile& f) {
    std::string r;
    f.choice("role", r, {"payer", "payee", "both"});
    if (!r.empty()) set_role(cfg, r);
  });
  s.secret_keys({"privateKey", "broker.password"});
  s.key_only("meter.source", [&cfg](agent::ConfigFile& f) {
    f.choice("meter.source", cfg.meter, {"none", "stdin", "tasmota", "shelly"});
  });
  s.key_only("meter.topic", [&cfg](agent::ConfigFile& f) { f.str("meter.topic", cfg.meter_topic); });
  s.group("Payments");
  s.amount("--price-wei", "pricePerUnitWei", cfg.price_wei, "price per unit (1 unit = 1 Wh) in wei");
  s.integer("--min-units", "minUnitsPerPayment", cfg.min_units, 1, 9007199254740992ULL,
            "pay once N units are due (default 1)");
  s.amount("--deposit-wei", "depositWei", cfg.deposit_wei, "deposit on chain when the channel is new");
  s.address("--pay-to", "payTo", cfg.pay_to, &cfg.has_pay_to, "pay this payee through a thread (default: the hub)");
  s.amount("--thread-lock-wei", "threadLockWei", cfg.thread_lock_wei,
           "wei locked per thread (default: the whole balance)");
  s.key_only("closeOnExit", [&cfg](agent::ConfigFile& f) { f.boolean("closeOnExit", cfg.close_on_exit); });
  s.key_only("exitOnEof", [&cfg](agent::ConfigFile& f) { f.boolean("exitOnEof", cfg.exit_on_eof); });
  s.integer("--status-interval-ms", "statusIntervalMs", cfg.status_interval_ms, 0, 3600000,
            "retained status JSON at most this often (default 500)");
  s.integer("--no-reading-warn-s", "noReadingWarnSeconds", cfg.no_reading_warn_s, 0, 86400,
            "warn when the meter topic delivers no reading for this long: check the broker ACL (default 60; 0 = "
            "never)");
  s.integer("--connect-timeout-s", "connectTimeoutSeconds", cfg.connect_timeout_s, 1, 3600,
            "exit 1 if the broker does not accept the agent within this bound at start (default 30)");
  s.group("Token and prices (docs/tokens.md)");
  s.address("--token", "token", cfg.token, &cfg.has_token,
            "pay in the ChannelManager's ERC-20 token (its approvedToken(); symbol and decimals are read "
            "from the chain; needs --rpc). The *-wei amounts are then token base units");
  s.str("--price", "pricePerUnit", cfg.price_text,
        "price per unit in the channel's units: '0.001 ETH', '0.5 PPT', or whole base units (replaces --price-wei)");
  s.str("--deposit", "deposit", cfg.deposit_text, "as --deposit-wei, in units ('2.5 PPT')");
  s.str("--thread-lock", "threadLock", cfg.thread_lock_text, "as --thread-lock-wei, in units");
  s.str("--sell-price", "sellPrice", cfg.sell_price_text, "payee: publish a signed price list, AMOUNT per Wh");
  s.integer("--price-validity", "priceValiditySeconds", cfg.price_validity_s, 60, 32000000,
            "payee: each price list is valid S seconds (default 3600, re-published at S/2)");
  s.integer("--serve-margin", "serveMarginUnits", cfg.serve_margin_units, 0, 9000000000000000ULL,
            "payee with a meter: stop serving when payers are more than N Wh behind what it delivered (default 10)");
  s.str("--serve-switch", "serveSwitch", cfg.serve_switch,
        "payee with a meter: while not serving, switch the energy source off: tasmota:TOPIC (cmnd/TOPIC/POWER OFF) "
        "or shelly:ID (Shelly Gen2 Switch.Set over ID/rpc); on again when the payers caught up");
  s.str("--max-price", "maxPrice", cfg.max_price_text,
        "payer with --pay-to: pay by the payee's signed price list, never above AMOUNT per Wh (replaces --price)");
  s.str("--exchange", "exchange.sell", cfg.exchange_text,
        "once synced, sell AMOUNT ('0.01 ETH' for tokens, '5 PPT' for wei) at the hub's signed published rate, "
        "once the hub holds what it gives out in our channel");
  s.integer("--exchange-max-age", "exchange.maxRateAgeSeconds", cfg.exchange_max_age_s, 0, 3200000000ULL,
            "refuse a rate set more than S seconds ago (default 3600)");
  s.key_only("exchange.maxDeviationBps", [&cfg](agent::ConfigFile& f) {
    uint64_t v = cfg.exchange_max_deviation_bps;
    f.integer("exchange.maxDeviationBps", v, 0, 10000);
    cfg.exchange_max_deviation_bps = static_cast<uint32_t>(v);
  });
  s.str("--exchange-reference-rate", "exchange.referenceRate", cfg.exchange_reference,
        "token base units per wei we expect (with --exchange-max-deviation-bps)");
  s.group("Watchtower (docs/tower.md)");
  s.key_only("tower.address", [&cfg](agent::ConfigFile& f) {
    if (!f.has("tower.address")) {
      if (f.has("tower")) f.error("tower", "{\"address\": the tower's 0x address, \"intervalMs\": N}");
      return;
    }
    f.address("tower.address", cfg.tower, &cfg.has_tower);
    if (f.ok() && cfg.tower.is_zero())
      f.error("tower.address", "the zero address: put your picopay-tower's address there, or remove \"tower\"");
  });
  s.integer("--tower-interval-ms", "tower.intervalMs", cfg.tower_interval_ms, 1, 3600000,
            "hand a newer state to the tower at most this often (default 1000)");
  s.group("Flows (docs/flows.md)");
  s.amount("--refill-below-wei", "refillBelowWei", cfg.refill_below_wei,
           "payer: top up when the channel balance falls below N wei");
  s.amount("--refill-wei", "refillWei", cfg.refill_wei, "... by N wei (on chain, from the device's wallet)");
  s.amount("--cash-out-above-wei", "cashOutAboveWei", cfg.cash_out_above_wei,
           "withdraw the whole channel balance once it exceeds N wei");
  s.address("--cash-out-to", "cashOutTo", cfg.cash_out_to, &cfg.has_cash_out_to,
            "... to ADDR (default: the device's own address)");
  s.amount("--expect-income-wei", "expectIncomeWei", cfg.expect_income_wei,
           "payee: ask the hub to hold N wei of collateral in the channel");
  s.group("Logging");
  s.flag("-v,--verbose", "verbose", cfg.verbose, "debug logs (same as --log-level debug)");
  s.key_only("logLevel", [&common](agent::ConfigFile& f) {
    f.choice("logLevel", common.log_level, {"debug", "info", "warn", "error"});
  });
  s.key_only("logFormat", [&common](agent::ConfigFile& f) { f.choice("logFormat", common.log_format, {"text", "json"}); });
  s.group("");
  if (!app) return;
  Config* pc = &cfg;
  app->add_option_function<std::string>(
         "--role",
         [pc](const std::string& r) {
           if (r != "payer" && r != "payee" && r != "both")
             throw CLI::ValidationError("--role", "must be payer, payee or both");
           set_role(*pc, r);
         },
         "payer (default), payee or both [role]")
      ->group("Agent");
  app->add_option_function<std::string>(
         "--meter",
         [pc](const std::string& v) {
           std::string err;
           if (!set_meter(*pc, v, err)) throw CLI::ValidationError(err);
         },
         "none | stdin | tasmota:tele/<t>/SENSOR | shelly:<prefix>/status/switch:0 [meter.source, meter.topic]")
      ->type_name("SRC[:TOPIC]")
      ->group("Agent");
  app->add_flag_callback("--no-exit-on-eof", [pc] { pc->exit_on_eof = false; },
                         "stdin meter: keep running at end of input [exitOnEof: false]")
      ->group("Agent");
  app->add_flag_callback("--no-close-on-exit", [pc] { pc->close_on_exit = false; },
                         "leave threads open when stopping [closeOnExit: false]")
      ->group("Agent");
  agent::add_rpc_url(*app, cfg.rpc_url, "Ethereum JSON-RPC URL, needed for deposits and chain checks [rpcUrl]")
      ->group("Channel");
  app->add_option_function<std::string>(
         "--tower",
         [pc](const std::string& v) {
           if (!parse_address_text(v, pc->tower) || pc->tower.is_zero())
             throw CLI::ValidationError("--tower", "the tower's non-zero 0x address");
           pc->has_tower = true;
         },
         "hand the latest double-signed channel state (and, as a payee, the incoming threads' latest states) to "
         "the picopay-tower with this address, which answers stale exits while we sleep [tower.address]")
      ->type_name("ADDR")
      ->group("Watchtower (docs/tower.md)");
  app->add_option("--exchange-max-deviation-bps", cfg.exchange_max_deviation_bps,
                  "refuse a rate further than N bps from --exchange-reference-rate (default 100) "
                  "[exchange.maxDeviationBps]")
      ->check(CLI::Range(0, 10000))
      ->type_name("N")
      ->group("Token and prices (docs/tokens.md)");
  agent::add_key_options(*app, keys, "picopay-agent");
}

bool config_load_file(const std::string& path, Config& cfg, std::string& err) {
  agent::Settings s(nullptr);
  agent::KeyOptions keys;
  agent::BrokerRefs broker;
  agent::CommonOptions common;
  bind_settings(s, nullptr, cfg, keys, broker, common);
  return s.load_file(path, err);
}

}  // namespace picopay::device
