// The shared command-line vocabulary (see options.hpp).
#include "picopay/agent/options.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "picopay/agent/install.hpp"
#include "picopay/agent/log.hpp"
#include "picopay/agent/secret_file.hpp"
#include "picopay/hex.hpp"
#include "picopay/keyfile.hpp"
#include "picopay/keystore_v3.hpp"

namespace picopay::agent {
namespace {

bool looks_like_hex_key(const std::string& s) {
  PrivateKey k;
  const bool ok = private_key_parse(s.data(), s.size(), k) == Status::Ok;
  secure_wipe(&k, sizeof k);
  return ok;
}

int finish_parse(CLI::App& app, const std::function<void()>& run) {
  try {
    run();
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion&) {
    return print_version();
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::string what = e.what();
    std::fprintf(stderr, "%s: %s (see --help)\n", app.get_name().c_str(), what.c_str());
    return kExitUsage;
  }
  return -1;
}

}  // namespace

void add_common(CLI::App& app, CommonOptions& o, bool* verbose) {
  app.set_version_flag("--version", version_text(), "print the version and exit");
  app.add_option("--log-level", o.log_level, "debug, info (default), warn or error [logLevel]")
      ->check(CLI::IsMember({"debug", "info", "warn", "warning", "error"}))
      ->group("Logging");
  app.add_option("--log-format", o.log_format,
                 "text (default; no timestamps under systemd) or json (one object per line) [logFormat]")
      ->check(CLI::IsMember({"text", "json"}))
      ->group("Logging");
  if (!verbose) {
    app.add_flag("-v,--verbose", o.verbose, "debug logs (same as --log-level debug)")->group("Logging");
    verbose = &o.verbose;
  }
  CommonOptions* po = &o;
  CLI::App* pa = &app;
  app.final_callback([po, pa, verbose]() {
    log_set_program(pa->get_name());
    LogLevel lv = *verbose ? LogLevel::Debug : LogLevel::Info;
    if (!po->log_level.empty()) (void)log_level_parse(po->log_level, lv);
    log_set_level(lv);
    LogFormat f = LogFormat::Text;
    if (!po->log_format.empty()) (void)log_format_parse(po->log_format, f);
    log_set_format(f);
  });
}

int parse(CLI::App& app, int argc, char** argv) {
  log_set_program(app.get_name());
  return finish_parse(app, [&] { app.parse(argc, argv); });
}

int parse_args(CLI::App& app, std::vector<std::string> args) {
  log_set_program(app.get_name());
  std::reverse(args.begin(), args.end());  // CLI11 takes a reversed vector
  if (!args.empty()) args.pop_back();      // argv[0]
  return finish_parse(app, [&] { app.parse(args); });
}

CLI::Option* add_rpc_url(CLI::App& app, std::string& url, const std::string& what) {
  return app.add_option("--rpc-url,--rpc", url, what + " (env ETH_RPC_URL; --rpc is the old spelling)")
      ->envname("ETH_RPC_URL")
      ->type_name("URL");
}

void add_key_options(CLI::App& app, KeyOptions& k, const std::string& program) {
  KeyOptions* pk = &k;
  std::string prog = program;
  app.add_option_function<std::string>(
         "--private-key",
         [pk, prog](const std::string& v) {
           pk->private_key = v;
           pk->warn_argv = prog;
         },
         "raw private key 0x + 64 hex (tests/dev only: argv is visible to every local user; prefer "
         "--keystore or env PICOPAY_PRIVATE_KEY)")
      ->type_name("HEX")
      ->group("Key");
  app.add_option("--keystore,--key-file", k.keystore,
                 "key file: a picopay sealed key file (picopay keygen) or a Web3 Secret Storage v3 JSON "
                 "keystore (geth, foundry); passphrase from PICOPAY_PASSPHRASE, the file named by "
                 "PICOPAY_PASSPHRASE_FILE, or the terminal (env ETH_KEYSTORE; --key-file is the old spelling)")
      ->envname("ETH_KEYSTORE")
      ->type_name("FILE")
      ->group("Key");
  app.add_option_function<std::string>(
         "--key",
         [pk, prog](const std::string& v) {
           if (looks_like_hex_key(v)) {
             pk->private_key = v;
             pk->warn_argv = prog;
           } else {
             pk->keystore = v;
           }
         },
         "old spelling: a hex key (= --private-key) or a key file (= --keystore)")
      ->type_name("HEX|FILE")
      ->group("Key");
}

bool load_keystore_file(const std::string& path, PrivateKey& out, std::string& err) {
  std::memset(&out, 0, sizeof out);
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    err = "cannot read key file " + path;
    return false;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  std::string text = ss.str();
  struct WipeText {
    std::string& s;
    ~WipeText() { secure_wipe(&s[0], s.size()); }
  } wipe{text};
  // A plain hex key (first line 0x + 64 hex): only in a private file.
  std::string first = text.substr(0, text.find('\n'));
  while (!first.empty() && (first.back() == '\r' || first.back() == ' ')) first.pop_back();
  if (looks_like_hex_key(first)) {
    if (!secret_file_private(path, "key file " + path + " holds a raw private key", err)) return false;
    (void)private_key_parse(first.data(), first.size(), out);
    secure_wipe(&first[0], first.size());
    return true;
  }
  char pass[1024];
  size_t plen = 0;
  if (passphrase_obtain(pass, sizeof pass, &plen, false) != Status::Ok) {
    err = "no passphrase for key file " + path +
          ": set PICOPAY_PASSPHRASE or PICOPAY_PASSPHRASE_FILE, or run on a terminal";
    return false;
  }
  Status st;
  std::string why;
  if (keystore_v3_looks_like(text)) {
    st = keystore_v3_decrypt(text, pass, plen, out, &why);
    secure_wipe(pass, sizeof pass);
    if (st != Status::Ok) {
      err = "keystore " + path + ": " + why;
      return false;
    }
  } else {
    st = keyfile_read(path.c_str(), pass, plen, out);
    secure_wipe(pass, sizeof pass);
    if (st == Status::IoError) {
      err = "cannot read key file " + path;
      return false;
    }
    if (st != Status::Ok) {
      err = "cannot open key file " + path +
            ": wrong passphrase or damaged file (a picopay sealed key file, a Web3 v3 JSON keystore, or 0x + 64 "
            "hex)";
      return false;
    }
  }
  return true;
}

void warn_key_on_argv(const KeyOptions& k) {
  if (!k.warn_argv.empty() && !k.private_key.empty())
    std::fprintf(stderr,
                 "%s: warning: the private key on the command line is visible to every local user (ps, /proc); "
                 "prefer --keystore FILE or env PICOPAY_PRIVATE_KEY\n",
                 k.warn_argv.c_str());
}

bool load_key(const KeyOptions& k, PrivateKey& out, std::string& err) {
  std::memset(&out, 0, sizeof out);
  std::string hex = k.private_key;
  if (hex.empty() && k.keystore.empty()) {
    if (const char* e = std::getenv("PICOPAY_PRIVATE_KEY")) hex = e;
  }
  if (!hex.empty() && !k.keystore.empty()) {
    err = "give either --private-key or --keystore, not both";
    return false;
  }
  if (hex.empty() && k.keystore.empty()) {
    err = "no key: give --keystore FILE (or env PICOPAY_PRIVATE_KEY, or --private-key for tests)";
    return false;
  }
  if (!hex.empty()) {
    const Status st = private_key_parse(hex.data(), hex.size(), out);
    secure_wipe(&hex[0], hex.size());
    if (st != Status::Ok) {
      err = "private key must be 0x followed by 64 hex digits";
      std::memset(&out, 0, sizeof out);
      return false;
    }
    warn_key_on_argv(k);
    return true;
  }
  return load_keystore_file(k.keystore, out, err);
}

CLI::Option* add_amount(CLI::App& app, const std::string& name, U256& out, const std::string& help,
                        const TokenUnit* token) {
  U256* po = &out;
  const std::string n = name.substr(0, name.find(','));
  return app
      .add_option_function<std::string>(
          name,
          [po, n, token](const std::string& v) {
            std::string err;
            if (!amount_parse(v, *po, err, token)) throw CLI::ValidationError(n, err);
          },
          help + " (an amount: 1000 = wei, 2gwei, 1.5ether)")
      ->type_name("AMOUNT");
}

CLI::Option* add_amount_text(CLI::App& app, const std::string& name, std::string& out, const std::string& help,
                             const TokenUnit* token) {
  std::string* po = &out;
  const std::string n = name.substr(0, name.find(','));
  return app
      .add_option_function<std::string>(
          name,
          [po, n, token](const std::string& v) {
            std::string err;
            U256 x;
            if (!amount_parse(v, x, err, token)) throw CLI::ValidationError(n, err);
            char buf[100];
            if (u256_to_decimal(x, buf, sizeof buf, nullptr) == Status::Ok) *po = buf;
          },
          help + " (an amount: 1000 = wei, 2gwei, 1.5ether)")
      ->type_name("AMOUNT");
}

CLI::Option* add_address(CLI::App& app, const std::string& name, Address& out, const std::string& help,
                         bool* given) {
  Address* po = &out;
  const std::string n = name.substr(0, name.find(','));
  return app
      .add_option_function<std::string>(
          name,
          [po, n, given](const std::string& v) {
            Address a;
            const Status st = address_parse(v.data(), v.size(), a);
            if (st == Status::BadChecksum)
              throw CLI::ValidationError(n, "\"" + v + "\": mixed-case address with a wrong EIP-55 checksum");
            if (st != Status::Ok) throw CLI::ValidationError(n, "\"" + v + "\" is not an address (0x + 40 hex)");
            *po = a;
            if (given) *given = true;
          },
          help)
      ->type_name("ADDR");
}

void add_renamed(CLI::App& app, const std::string& old_name, const std::string& now, bool takes_value) {
  std::string o = old_name, n = now;
  if (takes_value) {
    app.add_option_function<std::string>(
           old_name, [o, n](const std::string&) { throw CLI::ValidationError(o, "was renamed " + n); },
           "renamed " + now)
        ->group("");
  } else {
    app.add_flag_function(
           old_name, [o, n](int64_t) { throw CLI::ValidationError(o, "was renamed " + n); }, "renamed " + now)
        ->group("");
  }
}

void print_result(bool json, const std::string& text, const std::string& data) {
  std::fputs((json ? data : text).c_str(), stdout);
  if (!(json ? data : text).empty() && (json ? data : text).back() != '\n') std::fputc('\n', stdout);
}

}  // namespace picopay::agent
