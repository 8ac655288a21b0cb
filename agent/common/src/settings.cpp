// Flags and config keys declared once (see settings.hpp).
#include "picopay/agent/settings.hpp"

#include "picopay/agent/amount.hpp"
#include "picopay/agent/options.hpp"
#include "picopay/agent/log.hpp"
#include "picopay/agent/secret_file.hpp"

namespace picopay::agent {

std::string Settings::with_key(const std::string& help, const char* key) {
  return key ? help + " [" + key + "]" : help;
}

CLI::Option* Settings::add(CLI::Option* o) {
  if (o && !group_.empty()) o->group(group_);
  return o;
}

CLI::Option* Settings::config_option(const std::string& help) {
  if (!app_) return nullptr;
  return app_
      ->add_option_function<std::string>(
          "--config",
          [this](const std::string& file) {
            std::string err;
            if (!load_file(file, err)) throw CLI::ValidationError(err);
          },
          help)
      ->type_name("FILE");
}

bool Settings::load_file(const std::string& path, std::string& err) {
  config_path_ = path;
  ConfigFile f;
  if (!f.load(path, err)) return false;
  for (auto& r : readers_) r(f);
  bool secret = false;
  for (const auto& k : secret_keys_) secret = secret || f.has(k.c_str());
  if (!f.finish(err)) return false;
  if (secret && !secret_file_private(path, "config " + path + " holds a private key or password", err)) return false;
  return true;
}

void Settings::key_only(const char* key, std::function<void(ConfigFile&)> read) {
  (void)key;
  readers_.push_back(std::move(read));
}

CLI::Option* Settings::str(const std::string& flags, const char* key, std::string& v, const std::string& help) {
  if (key) readers_.push_back([key, &v](ConfigFile& f) { f.str(key, v); });
  if (!app_ || flags.empty()) return nullptr;
  return add(app_->add_option(flags, v, with_key(help, key)));
}

CLI::Option* Settings::path(const std::string& flags, const char* key, std::string& v, const std::string& help) {
  if (key) readers_.push_back([key, &v](ConfigFile& f) { f.path(key, v); });
  if (!app_ || flags.empty()) return nullptr;
  return add(app_->add_option(flags, v, with_key(help, key) + " (in a config file: relative to its directory)")
                 ->type_name("FILE"));
}

CLI::Option* Settings::integer(const std::string& flags, const char* key, int& v, int min, int max,
                               const std::string& help) {
  if (key) readers_.push_back([key, &v, min, max](ConfigFile& f) { f.integer(key, v, min, max); });
  if (!app_ || flags.empty()) return nullptr;
  return add(app_->add_option(flags, v, with_key(help, key))->check(CLI::Range(min, max))->type_name("N"));
}

CLI::Option* Settings::integer(const std::string& flags, const char* key, int64_t& v, int64_t min, int64_t max,
                               const std::string& help) {
  if (key) readers_.push_back([key, &v, min, max](ConfigFile& f) { f.integer(key, v, min, max); });
  if (!app_ || flags.empty()) return nullptr;
  return add(app_->add_option(flags, v, with_key(help, key))->check(CLI::Range(min, max))->type_name("N"));
}

CLI::Option* Settings::integer(const std::string& flags, const char* key, uint64_t& v, uint64_t min, uint64_t max,
                               const std::string& help) {
  if (key) readers_.push_back([key, &v, min, max](ConfigFile& f) { f.integer(key, v, min, max); });
  if (!app_ || flags.empty()) return nullptr;
  return add(app_->add_option(flags, v, with_key(help, key))->check(CLI::Range(min, max))->type_name("N"));
}

CLI::Option* Settings::flag(const std::string& flags, const char* key, bool& v, const std::string& help) {
  if (key) readers_.push_back([key, &v](ConfigFile& f) { f.boolean(key, v); });
  if (!app_ || flags.empty()) return nullptr;
  return add(app_->add_flag(flags, v, with_key(help, key)));
}

CLI::Option* Settings::amount_text(const std::string& flags, const char* key, std::string& v,
                                   const std::string& help) {
  if (key) readers_.push_back([key, &v](ConfigFile& f) { f.amount_text(key, v); });
  if (!app_ || flags.empty()) return nullptr;
  std::string* pv = &v;
  const std::string name = flags.substr(0, flags.find(','));
  return add(app_
                 ->add_option_function<std::string>(
                     flags,
                     [pv, name](const std::string& s) {
                       std::string err;
                       U256 x;
                       if (!amount_parse(s, x, err)) throw CLI::ValidationError(name, err);
                       char buf[100];
                       if (u256_to_decimal(x, buf, sizeof buf, nullptr) == Status::Ok) *pv = buf;
                     },
                     with_key(help, key) + " (an amount: 1000 = wei, 2gwei, 1.5ether)")
                 ->type_name("AMOUNT"));
}

CLI::Option* Settings::amount(const std::string& flags, const char* key, U256& v, const std::string& help) {
  if (key) readers_.push_back([key, &v](ConfigFile& f) { f.amount(key, v); });
  if (!app_ || flags.empty()) return nullptr;
  U256* pv = &v;
  const std::string name = flags.substr(0, flags.find(','));
  return add(app_
                 ->add_option_function<std::string>(
                     flags,
                     [pv, name](const std::string& s) {
                       std::string err;
                       if (!amount_parse(s, *pv, err)) throw CLI::ValidationError(name, err);
                     },
                     with_key(help, key) + " (an amount: 1000 = wei, 2gwei, 1.5ether)")
                 ->type_name("AMOUNT"));
}

CLI::Option* Settings::address(const std::string& flags, const char* key, Address& v, bool* given,
                               const std::string& help) {
  if (key) readers_.push_back([key, &v, given](ConfigFile& f) { f.address(key, v, given); });
  if (!app_ || flags.empty()) return nullptr;
  return add(add_address(*app_, flags, v, with_key(help, key), given));
}

CLI::Option* Settings::choice(const std::string& flags, const char* key, std::string& v,
                              const std::vector<std::string>& choices, const std::string& help) {
  if (key) readers_.push_back([key, &v, choices](ConfigFile& f) { f.choice(key, v, choices); });
  if (!app_ || flags.empty()) return nullptr;
  return add(app_->add_option(flags, v, with_key(help, key))->check(CLI::IsMember(choices)));
}

}  // namespace picopay::agent

namespace picopay::agent {

void add_broker_settings(Settings& s, CLI::App* app, const BrokerRefs& b, const std::string& program) {
  s.group("Broker");
  if (b.host && b.port) {
    if (app) {
      std::string* host = b.host;
      int* port = b.port;
      app->add_option_function<std::string>(
             "--broker",
             [host, port](const std::string& v) {
               const size_t c = v.rfind(':');
               if (c == std::string::npos || c == 0)
                 throw CLI::ValidationError("--broker", "expected HOST:PORT, got \"" + v + "\"");
               const std::string ps = v.substr(c + 1);
               char* end = nullptr;
               const long p = std::strtol(ps.c_str(), &end, 10);
               if (ps.empty() || *end || p < 1 || p > 65535)
                 throw CLI::ValidationError("--broker", "the port of \"" + v + "\" is not 1..65535");
               *host = v.substr(0, c);
               *port = static_cast<int>(p);
             },
             "MQTT broker HOST:PORT (or --broker-host and --broker-port)")
          ->type_name("HOST:PORT")
          ->group("Broker");
    }
    s.str("--broker-host", "broker.host", *b.host, "MQTT broker host (default 127.0.0.1)");
    s.integer("--broker-port", "broker.port", *b.port, 1, 65535, "MQTT broker port (default 1883)");
  }
  if (b.user) s.str("--broker-user,--username", "broker.username", *b.user, "broker username");
  if (b.password_file)
    s.path("--broker-password-file,--password-file", "broker.passwordFile", *b.password_file,
           "broker password: the file's first line; mode 0600 required");
  if (b.password) {
    s.str("", "broker.password", *b.password, "");
    if (app && b.password_on_argv) {
      std::string* pw = b.password;
      std::string prog = program;
      app->add_option_function<std::string>(
             "--broker-password,--password",
             [pw, prog](const std::string& v) {
               *pw = v;
               std::fprintf(stderr,
                            "%s: warning: --broker-password is visible to every local user (ps); use "
                            "--broker-password-file (mode 0600) or env PICOPAY_BROKER_PASSWORD\n",
                            prog.c_str());
             },
             "broker password [broker.password] (argv is visible to every local user: prefer the file or env "
             "PICOPAY_BROKER_PASSWORD)")
          ->type_name("PASS")
          ->group("Broker");
    } else if (app) {
      app->add_option_function<std::string>(
             "--broker-password,--password",
             [](const std::string&) {
               throw CLI::ValidationError(
                   "--broker-password is not accepted (argv is visible to every local user): use "
                   "--broker-password-file, broker.password in a mode 0600 config file, or env "
                   "PICOPAY_BROKER_PASSWORD");
             },
             "not accepted: see --broker-password-file")
          ->group("");
    }
  }
  if (b.ca) {
    s.path("--broker-ca,--tls-ca", "broker.tlsCaFile", *b.ca, "TLS: verify the broker against this CA file");
    s.key_only("broker.tlsCa", [ca = b.ca](ConfigFile& f) { f.path("broker.tlsCa", *ca); });
  }
  if (b.client_id) s.str("--client-id", "broker.clientId", *b.client_id, "MQTT client id");
  s.group("");
}

bool broker_password_finish(const BrokerRefs& b, std::string& err) {
  if (!b.password) return true;
  if (b.password_file && !b.password_file->empty()) return secret_file_read(*b.password_file, *b.password, err);
  if (b.password->empty()) {
    if (const char* p = std::getenv("PICOPAY_BROKER_PASSWORD")) *b.password = p;
    else if (const char* q = std::getenv("PICOPAY_MQTT_PASSWORD")) *b.password = q;
  }
  return true;
}

}  // namespace picopay::agent

#include "picopay/agent/options.hpp"

namespace picopay::agent {

void add_service_settings(Settings& s, CLI::App* app, const ServiceRefs& r, CommonOptions& common,
                          const std::string& program, const std::string& rpc_help) {
  add_broker_settings(s, app, r.broker, program);
  s.group("Chain");
  if (r.contract) s.str("--contract", "contract", *r.contract, "ChannelManager address (required)");
  if (r.rpc_url) {
    s.key_only("rpcUrl", [u = r.rpc_url](ConfigFile& f) { f.str("rpcUrl", *u); });
    if (app) add_rpc_url(*app, *r.rpc_url, rpc_help + " [rpcUrl]")->group("Chain");
  }
  if (r.event_state)
    s.path("--event-state", "eventState", *r.event_state, "event poller progress file (default <db>.events.json)");
  if (r.confirmations)
    s.integer("--confirmations", "confirmations", *r.confirmations, 0, 1000, "blocks before an event counts (default 0)");
  s.group("Store");
  if (r.db) s.path("--db", "db", *r.db, "SQLite file");
  s.group("Logging");
  if (r.verbose) s.flag("-v,--verbose", "verbose", *r.verbose, "debug logs: log every update");
  s.key_only("logLevel", [&common](ConfigFile& f) {
    f.choice("logLevel", common.log_level, {"debug", "info", "warn", "error"});
  });
  s.key_only("logFormat", [&common](ConfigFile& f) { f.choice("logFormat", common.log_format, {"text", "json"}); });
  s.group("");
}

int parse_to_code(CLI::App& app, int argc, char** argv, std::string& err) {
  log_set_program(app.get_name());
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return 1;
  } catch (const CLI::CallForAllHelp&) {
    return 1;
  } catch (const CLI::CallForVersion&) {
    return 1;
  } catch (const CLI::ParseError& e) {
    err = std::string(e.what()) + " (see --help)";
    return 2;
  }
  return 0;
}

}  // namespace picopay::agent
