// The command-line vocabulary shared by picopay, picopay-agent, picopay-hub and
// picopay-tower, on CLI11 (docs/operations.md "Command-line options").
//
// Every program builds a CLI::App and adds the shared groups it needs:
//   add_common(app, common)          --version, --log-level, --log-format, -v/--verbose
//   add_rpc_url(app, url)            --rpc-url URL (env ETH_RPC_URL; old spelling --rpc)
//   add_key_options(app, keys)       --private-key HEX (warns: argv is visible), --keystore
//                                    FILE (picopay sealed file or Web3 v3 JSON keystore);
//                                    old spellings --key (hex or file) and --key-file
//   add_broker_settings(...)         (settings.hpp) --broker HOST:PORT, --broker-host, ...
//   add_amount(app, "--deposit", v)  an amount with units (agent::amount_parse)
// then calls parse(app, argc, argv), which prints --help / errors and gives the exit
// code. To add a flag: app.add_option("--name", variable, "help") in the program's
// options function (CLI11 docs: https://cliutils.github.io/CLI11/book/).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "picopay/agent/amount.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::agent {

// Exit codes of every picopay program.
constexpr int kExitOk = 0;
constexpr int kExitFail = 1;
constexpr int kExitUsage = 2;

struct CommonOptions {
  std::string log_level;   // "" = info (debug with -v)
  std::string log_format;  // "" = text
  bool verbose = false;
};

// Adds --version, --log-level, --log-format and (unless the program binds its own
// `verbose`) -v/--verbose; after a successful parse the log (log.hpp) is set from them.
void add_common(CLI::App& app, CommonOptions& o, bool* verbose = nullptr);

// Parses argv. Returns -1 when the program should go on; otherwise the exit code after
// printing: 0 for --help / --version (stdout), 2 for a usage error (one line on stderr:
// "<program>: <what> (see --help)"). Then applies the log options (log.hpp).
int parse(CLI::App& app, int argc, char** argv);
// The same for a subcommand's own argv (argv[0] = the subcommand), for tools that
// dispatch by hand.
int parse_args(CLI::App& app, std::vector<std::string> args);

// --rpc-url URL, from the environment ETH_RPC_URL if not given; --rpc is the old spelling.
CLI::Option* add_rpc_url(CLI::App& app, std::string& url, const std::string& what = "Ethereum JSON-RPC URL");

struct KeyOptions {
  std::string private_key;  // 0x + 64 hex (from argv or PICOPAY_PRIVATE_KEY)
  std::string keystore;     // a file: picopay sealed key file, Web3 v3 JSON keystore, or 0x-hex text
  std::string warn_argv;    // set (the program name) when the hex key came from argv: load_key warns
};
// --private-key HEX (also env PICOPAY_PRIVATE_KEY; from argv, load_key() prints a warning
// once the key parsed: every local user sees argv in ps), --keystore FILE; the old --key (hex or file, decided by its
// shape) and --key-file (= --keystore). `program` prefixes the warning.
void add_key_options(CLI::App& app, KeyOptions& k, const std::string& program);

// Loads the key named by `k` (exactly one of private_key / keystore must be set): a hex
// key; or a keystore file: a Web3 v3 JSON keystore, a picopay sealed key file
// (keyfile.hpp) or a file whose first line is 0x + 64 hex (mode 0600 required). The
// passphrase comes from PICOPAY_PASSPHRASE, the file named by PICOPAY_PASSPHRASE_FILE, or
// the terminal. False with `err` (one line) on any failure; `out` zeroed then.
bool load_key(const KeyOptions& k, PrivateKey& out, std::string& err);
// Prints the argv warning if the hex key came from the command line (load_key calls it).
void warn_key_on_argv(const KeyOptions& k);
// The same for one file.
bool load_keystore_file(const std::string& path, PrivateKey& out, std::string& err);

// An amount option (amount_parse: "1000", "2gwei", "1.5ether", token symbol if `token`).
CLI::Option* add_amount(CLI::App& app, const std::string& name, U256& out, const std::string& help,
                        const TokenUnit* token = nullptr);
// The same, kept as canonical decimal text.
CLI::Option* add_amount_text(CLI::App& app, const std::string& name, std::string& out, const std::string& help,
                             const TokenUnit* token = nullptr);
// An address option (0x + 40 hex, EIP-55 checked when mixed case); `*given` set when used.
CLI::Option* add_address(CLI::App& app, const std::string& name, Address& out, const std::string& help,
                         bool* given = nullptr);
// A flag that is gone: using it is a usage error "<old> was renamed <now>".
void add_renamed(CLI::App& app, const std::string& old_name, const std::string& now, bool takes_value = true);

// Prints `data` (a JSON document) on stdout when json is set, else `text`.
void print_result(bool json, const std::string& text, const std::string& data);

}  // namespace picopay::agent
