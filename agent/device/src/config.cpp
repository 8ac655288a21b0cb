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
  s.amount("--price,--price-wei", "pricePerUnitWei", cfg.price_wei, "price per unit (1 unit = 1 Wh)");
  s.integer("--min-units", "minUnitsPerPayment", cfg.min_units, 1, 9007199254740992ULL,
            "pay once N units are due (default 1)");
  s.amount("--deposit,--deposit-wei", "depositWei", cfg.deposit_wei, "deposit on chain when the channel is new");
  s.address("--pay-to", "payTo", cfg.pay_to, &cfg.has_pay_to, "pay this payee through a thread (default: the hub)");
  s.amount("--thread-lock,--thread-lock-wei", "threadLockWei", cfg.thread_lock_wei,
           "locked per thread (default: the whole balance)");
  s.key_only("closeOnExit", [&cfg](agent::ConfigFile& f) { f.boolean("closeOnExit", cfg.close_on_exit); });
  s.key_only("exitOnEof", [&cfg](agent::ConfigFile& f) { f.boolean("exitOnEof", cfg.exit_on_eof); });
  s.integer("--status-interval-ms", "statusIntervalMs", cfg.status_interval_ms, 0, 3600000,
            "retained status JSON at most this often (default 500)");
  s.integer("--no-reading-warn-s", "noReadingWarnSeconds", cfg.no_reading_warn_s, 0, 86400,
            "warn when the meter topic delivers no reading for this long: check the broker ACL (default 60; 0 = "
            "never)");
  s.integer("--connect-timeout-s", "connectTimeoutSeconds", cfg.connect_timeout_s, 1, 3600,
            "exit 1 if the broker does not accept the agent within this bound at start (default 30)");
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
