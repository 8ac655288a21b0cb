// picopay: the command-line tool over the core (keys, hashes, signatures, wire codec),
// plus the on-chain subcommands (agent/chain) and the demo when those are built.
//
// Contract with callers (scripts, tests): the answer goes to stdout and the exit code is
// 0; on any bad input one line goes to stderr, nothing to stdout, and the exit code is
// non-zero (2 for usage errors, 1 for everything else).
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "picopay/agent/install.hpp"
#include "picopay/agent/options.hpp"
#include "picopay/agent/secret_file.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"
#include "picopay/keyfile.hpp"
#include "picopay/keystore_v3.hpp"
#include "picopay/signer.hpp"
#include "picopay/state.hpp"
#ifdef PICOPAY_HAVE_CHAIN
#include "picopay/chain/cli.hpp"
#endif
#ifdef PICOPAY_HAVE_DEMO
#include "picopay/demo.hpp"
#endif

namespace {

using namespace picopay;

constexpr int kExitFail = 1;
constexpr int kExitUsage = 2;

[[noreturn]] void die(int code, const std::string& msg) {
  std::fprintf(stderr, "picopay: %s\n", msg.c_str());
  std::exit(code);
}

std::string read_stdin() {
  std::string data((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  return data;
}

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

Signer& signer() {
  static Signer s;
  if (!s.ready() && s.init() != Status::Ok) die(kExitFail, "cannot create the secp256k1 context");
  return s;
}

enum class Kind { Channel, Thread };
Kind parse_kind(const std::string& k) { return k == "thread" ? Kind::Thread : Kind::Channel; }

// Reads a channel or thread state JSON from stdin.
void read_state(Kind kind, SignedChannelState& c, SignedThreadState& t) {
  std::string err;
  cJSON* doc = json::parse_document(read_stdin(), err);
  if (doc == nullptr) die(kExitFail, err);
  const bool ok = kind == Kind::Channel ? json::channel_from_json(doc, c, err) : json::thread_from_json(doc, t, err);
  cJSON_Delete(doc);
  if (!ok) die(kExitFail, err);
  const Status st = kind == Kind::Channel ? channel_check_bounds(c.state) : thread_check_bounds(t.state);
  if (st != Status::Ok) die(kExitFail, status_message(st));
}

// The key of --private-key / --keystore (a sealed key file, a Web3 v3 JSON keystore or a
// private 0x-hex file; agent/common options.hpp).
PrivateKey load_key(const agent::KeyOptions& k) {
  PrivateKey key;
  std::string err;
  if (k.private_key.empty() && k.keystore.empty() && !std::getenv("PICOPAY_PRIVATE_KEY"))
    die(kExitUsage, "give exactly one of --private-key or --keystore");
  agent::KeyOptions quiet = k;  // warn only once the key is known good: one line on failure
  quiet.warn_argv.clear();
  if (!agent::load_key(quiet, key, err)) die(kExitFail, err);
  Address addr;
  if (signer().address_of(key, addr) != Status::Ok) {
    secure_wipe(&key, sizeof key);
    die(kExitFail, "private key is zero or not below the secp256k1 group order");
  }
  agent::warn_key_on_argv(k);
  return key;
}

// Prints `value` as one line, or as {"<name>": "<value>"} with --json.
void print_value(bool json, const char* name, const std::string& value) {
  if (json) std::printf("{\"%s\":\"%s\"}\n", name, value.c_str());
  else std::printf("%s\n", value.c_str());
}

// What the subcommands were given (one runs per process).
struct Opts {
  agent::KeyOptions keys;
  std::string kind = "channel";  // channel | thread
  std::string hash, sig, out, in, import_hex, kdf = "scrypt";
  uint64_t scrypt_n = 262144;
  uint32_t pbkdf2_c = 262144;
  bool json = false;
};

int cmd_address(const Opts& o) {
  PrivateKey key = load_key(o.keys);
  Address addr;
  const Status st = signer().address_of(key, addr);
  secure_wipe(&key, sizeof key);
  if (st != Status::Ok) die(kExitFail, status_message(st));
  print_value(o.json, "address", json::address_text(addr));
  return 0;
}

int cmd_hash(const Opts& o) {
  const Kind k = parse_kind(o.kind);
  SignedChannelState c;
  SignedThreadState t;
  read_state(k, c, t);
  const Hash32 h = k == Kind::Channel ? channel_hash(c.state) : thread_hash(t.state);
  print_value(o.json, "hash", json::hash_text(h));
  return 0;
}

int cmd_sign(const Opts& o) {
  const Kind k = parse_kind(o.kind);
  PrivateKey key = load_key(o.keys);
  SignedChannelState c;
  SignedThreadState t;
  read_state(k, c, t);
  const Hash32 h = k == Kind::Channel ? channel_hash(c.state) : thread_hash(t.state);
  Signature sig;
  const Status st = signer().sign_eth(key, h, sig);
  secure_wipe(&key, sizeof key);
  if (st != Status::Ok) die(kExitFail, status_message(st));
  print_value(o.json, "signature", json::signature_text(sig));
  return 0;
}

int cmd_recover(const Opts& o) {
  Hash32 h;
  if (hash32_parse(o.hash.data(), o.hash.size(), h) != Status::Ok)
    die(kExitFail, "--hash must be 0x followed by 64 hex digits");
  Signature sig;
  const Status ps = signature_parse(o.sig.data(), o.sig.size(), sig);
  if (ps == Status::BadRecoveryId) die(kExitFail, "--sig: v must be 0, 1, 27 or 28");
  if (ps != Status::Ok) die(kExitFail, "--sig must be 0x followed by 130 hex digits");
  Address addr;
  const Status st = signer().recover_eth(h, sig, addr);
  if (st != Status::Ok) die(kExitFail, std::string("--sig: ") + status_message(st));
  print_value(o.json, "address", json::address_text(addr));
  return 0;
}

std::vector<uint8_t> read_hex_stdin() {
  std::string s = trim(read_stdin());
  if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s = s.substr(2);
  std::vector<uint8_t> bytes(s.size() / 2 + 1);
  size_t n = 0;
  if (hex_decode(s.data(), s.size(), bytes.data(), bytes.size(), &n) != Status::Ok)
    die(kExitFail, "stdin must be hex (an even number of hex digits, optional 0x)");
  bytes.resize(n);
  return bytes;
}

int cmd_keccak(const Opts& o) {
  const std::vector<uint8_t> in = read_hex_stdin();
  Hash32 h;
  keccak256(in.data(), in.size(), h.bytes);
  print_value(o.json, "hash", json::hash_text(h));
  return 0;
}

int cmd_encode(const Opts& o) {
  const Kind k = parse_kind(o.kind);
  SignedChannelState c;
  SignedThreadState t;
  read_state(k, c, t);
  uint8_t buf[kMaxChannelStateWire];
  size_t n = 0;
  const Status st = k == Kind::Channel ? encode_channel_state(c, buf, sizeof buf, &n)
                                       : encode_thread_state(t, buf, sizeof buf, &n);
  if (st != Status::Ok) die(kExitFail, status_message(st));
  std::string hex(2 * n + 1, '\0');
  hex_encode(buf, n, hex.data(), false);
  hex.resize(2 * n);
  print_value(o.json, "hex", hex);
  return 0;
}

int cmd_decode(const Opts& o) {
  const Kind k = parse_kind(o.kind);
  const std::vector<uint8_t> in = read_hex_stdin();
  cJSON* out = nullptr;
  if (k == Kind::Channel) {
    SignedChannelState c;
    const Status st = decode_channel_state(in.data(), in.size(), c);
    if (st != Status::Ok) die(kExitFail, std::string("cannot decode channel state: ") + status_message(st));
    out = json::channel_to_json(c);
  } else {
    SignedThreadState t;
    const Status st = decode_thread_state(in.data(), in.size(), t);
    if (st != Status::Ok) die(kExitFail, std::string("cannot decode thread state: ") + status_message(st));
    out = json::thread_to_json(t);
  }
  std::printf("%s\n", json::print(out, true).c_str());
  cJSON_Delete(out);
  return 0;
}

void refuse_existing(const std::string& path) {
  struct stat sb;
  if (::stat(path.c_str(), &sb) == 0) die(kExitFail, "refusing to overwrite " + path);
}

// The passphrase of a new file: PICOPAY_NEW_PASSPHRASE, the file named by
// PICOPAY_NEW_PASSPHRASE_FILE, else the usual sources (keyfile.hpp passphrase_obtain).
size_t new_passphrase(char* pass, size_t cap) {
  std::string p;
  std::string err;
  if (const char* e = std::getenv("PICOPAY_NEW_PASSPHRASE")) {
    p = e;
  } else if (const char* f = std::getenv("PICOPAY_NEW_PASSPHRASE_FILE"); f && *f) {
    if (!agent::secret_file_read(f, p, err)) die(kExitFail, err);
  } else {
    size_t len = 0;
    if (passphrase_obtain(pass, cap, &len, true) != Status::Ok)
      die(kExitFail, "no passphrase: set PICOPAY_PASSPHRASE or PICOPAY_PASSPHRASE_FILE, or run on a terminal");
    return len;
  }
  if (p.empty() || p.size() >= cap) die(kExitFail, "the new passphrase must be 1 to 1023 bytes");
  std::memcpy(pass, p.data(), p.size());
  pass[p.size()] = '\0';
  secure_wipe(&p[0], p.size());
  return p.size();
}

void print_written(bool as_json, const Address& addr, const std::string& file) {
  if (as_json)
    std::printf("{\"address\":\"%s\",\"file\":\"%s\"}\n", json::address_text(addr).c_str(), file.c_str());
  else
    std::printf("%s\n", json::address_text(addr).c_str());
}

int cmd_keygen(const Opts& o) {
  refuse_existing(o.out);
  PrivateKey key;
  Address addr;
  if (!o.import_hex.empty()) {
    if (private_key_parse(o.import_hex.data(), o.import_hex.size(), key) != Status::Ok)
      die(kExitFail, "--import-hex must be 0x followed by 64 hex digits");
    if (signer().address_of(key, addr) != Status::Ok)
      die(kExitFail, "--import-hex: key is zero or not below the secp256k1 group order");
  } else {
    // A uniformly random 32-byte string is a valid key unless it is 0 or >= n
    // (probability ~2^-128); draw again in that case.
    if (sodium_init() < 0) die(kExitFail, "cannot initialise libsodium");
    do {
      randombytes_buf(key.bytes, sizeof key.bytes);
    } while (signer().address_of(key, addr) != Status::Ok);
  }
  char pass[1024];
  size_t len = 0;
  if (passphrase_obtain(pass, sizeof pass, &len, true) != Status::Ok) {
    secure_wipe(&key, sizeof key);
    die(kExitFail, "no passphrase: set PICOPAY_PASSPHRASE or PICOPAY_PASSPHRASE_FILE, or run on a terminal");
  }
  const Status st = keyfile_write(o.out.c_str(), key, pass, len);
  secure_wipe(pass, sizeof pass);
  secure_wipe(&key, sizeof key);
  if (st != Status::Ok) die(kExitFail, "cannot write key file " + o.out + ": " + status_message(st));
  print_written(o.json, addr, o.out);
  return 0;
}

// keystore import: any key file (v3 JSON keystore, sealed file, private hex file) ->
// a picopay sealed key file.
int cmd_keystore_import(const Opts& o) {
  refuse_existing(o.out);
  PrivateKey key;
  std::string err;
  if (!agent::load_keystore_file(o.in, key, err)) die(kExitFail, err);
  Address addr;
  if (signer().address_of(key, addr) != Status::Ok) {
    secure_wipe(&key, sizeof key);
    die(kExitFail, o.in + ": the key is zero or not below the secp256k1 group order");
  }
  char pass[1024];
  const size_t len = new_passphrase(pass, sizeof pass);
  const Status st = keyfile_write(o.out.c_str(), key, pass, len);
  secure_wipe(pass, sizeof pass);
  secure_wipe(&key, sizeof key);
  if (st != Status::Ok) die(kExitFail, "cannot write key file " + o.out + ": " + status_message(st));
  print_written(o.json, addr, o.out);
  return 0;
}

// keystore export: any key file -> a Web3 Secret Storage v3 JSON keystore (geth, foundry).
int cmd_keystore_export(const Opts& o) {
  refuse_existing(o.out);
  KeystoreParams prm;
  prm.kdf = o.kdf == "pbkdf2" ? KeystoreKdf::Pbkdf2 : KeystoreKdf::Scrypt;
  prm.scrypt_n = o.scrypt_n;
  prm.pbkdf2_c = o.pbkdf2_c;
  if (prm.scrypt_n < 2 || (prm.scrypt_n & (prm.scrypt_n - 1)) != 0 || prm.scrypt_n > (1u << 20))
    die(kExitUsage, "--scrypt-n must be a power of two from 2 to 2^20");
  PrivateKey key;
  std::string err;
  if (!agent::load_keystore_file(o.in, key, err)) die(kExitFail, err);
  Address addr;
  if (signer().address_of(key, addr) != Status::Ok) {
    secure_wipe(&key, sizeof key);
    die(kExitFail, o.in + ": the key is zero or not below the secp256k1 group order");
  }
  char pass[1024];
  const size_t len = new_passphrase(pass, sizeof pass);
  std::string text;
  const Status st = keystore_v3_encrypt(key, addr, pass, len, prm, text);
  secure_wipe(pass, sizeof pass);
  secure_wipe(&key, sizeof key);
  if (st != Status::Ok) die(kExitFail, std::string("cannot encrypt the keystore: ") + status_message(st));
  if (!agent::secret_file_write(o.out, text, err)) die(kExitFail, err);
  print_written(o.json, addr, o.out);
  return 0;
}

const char* kDescription =
    "picopay: keys, hashes, signatures and the wire codec of Connext v1 states (JSON on stdin,\n"
    "docs/design.md §3), the on-chain subcommands (ChannelManager over JSON-RPC, docs/chain.md)\n"
    "and the demo.";

const char* kFooter =
    "The passphrase of a key file comes from PICOPAY_PASSPHRASE, the file named by\n"
    "PICOPAY_PASSPHRASE_FILE, or a prompt on the terminal. --keystore takes a picopay sealed key\n"
    "file or a Web3 Secret Storage v3 JSON keystore (geth, foundry). Amounts take units:\n"
    "1000 (wei), 2gwei, 1.5ether. --json prints data as JSON.\n"
    "Run 'picopay COMMAND --help' for one command. Exit: 0 ok, 1 failure, 2 usage error.";

void add_kind(CLI::App* c, Opts& o) {
  c->add_option("kind", o.kind, "channel or thread")->required()->check(CLI::IsMember({"channel", "thread"}));
}

void add_json(CLI::App* c, Opts& o) { c->add_flag("--json", o.json, "print the result as JSON"); }

}  // namespace

int main(int argc, char** argv) {
  using namespace picopay;
  // The chain subcommands and the demo parse their own arguments (same vocabulary).
  if (argc >= 2) {
    const std::string cmd = argv[1];
#ifdef PICOPAY_HAVE_DEMO
    if (cmd == "demo") return picopay_demo_main(argc - 1, argv + 1);
#endif
#ifdef PICOPAY_HAVE_CHAIN
    if (picopay_chain_cli_handles(cmd.c_str())) return picopay_chain_cli(argc - 1, argv + 1);
#endif
  }
  CLI::App app{kDescription, "picopay"};
  app.get_formatter()->label("Usage", "usage");
  app.footer(kFooter);
  agent::CommonOptions common;
  agent::add_common(app, common);
  app.require_subcommand(1, 1);
  Opts o;
  using Run = int (*)(const Opts&);
  std::vector<std::pair<CLI::App*, Run>> cmds;
  auto sub = [&](const char* name, const char* help, Run run) {
    CLI::App* c = app.add_subcommand(name, help);
    c->get_formatter()->label("Usage", "usage");
    cmds.emplace_back(c, run);
    return c;
  };
  CLI::App* c = sub("address", "print the EIP-55 address of a key", cmd_address);
  agent::add_key_options(*c, o.keys, "picopay");
  add_json(c, o);
  c = sub("hash", "print the state hash of a channel|thread state on stdin (no eth_sign prefix)", cmd_hash);
  add_kind(c, o);
  add_json(c, o);
  c = sub("sign", "print the eth_sign signature (EIP-191, RFC 6979, low-S) of a state on stdin", cmd_sign);
  add_kind(c, o);
  agent::add_key_options(*c, o.keys, "picopay");
  add_json(c, o);
  c = sub("recover", "print the address whose eth_sign signature over --hash is --sig", cmd_recover);
  c->add_option("--hash", o.hash, "0x + 64 hex")->required();
  c->add_option("--sig", o.sig, "0x + 130 hex (v = 0, 1, 27 or 28; high-S refused)")->required();
  add_json(c, o);
  c = sub("keccak", "keccak-256 of hex bytes on stdin (optional 0x)", cmd_keccak);
  add_json(c, o);
  c = sub("encode", "channel|thread JSON on stdin -> wire bytes as hex (docs/wire-format.md)", cmd_encode);
  add_kind(c, o);
  add_json(c, o);
  c = sub("decode", "channel|thread wire hex on stdin -> Connext v1 JSON", cmd_decode);
  add_kind(c, o);
  add_json(c, o);
  c = sub("keygen", "write a new (or the imported) key to a sealed key file (Argon2id + secretbox), mode 0600; "
                    "prints its address", cmd_keygen);
  c->add_option("--out", o.out, "the new key file (never overwritten)")->required();
  c->add_option("--import-hex", o.import_hex, "seal this key (0x + 64 hex) instead of a new one");
  add_json(c, o);
  CLI::App* ks = app.add_subcommand("keystore", "import and export Web3 Secret Storage v3 JSON keystores");
  ks->get_formatter()->label("Usage", "usage");
  ks->require_subcommand(1, 1);
  c = ks->add_subcommand("import",
                         "a key file (v3 JSON keystore from geth/foundry, sealed file, or 0x-hex file) -> a picopay "
                         "sealed key file; passphrase of --in from PICOPAY_PASSPHRASE(_FILE), of --out from "
                         "PICOPAY_NEW_PASSPHRASE(_FILE) or the same");
  c->get_formatter()->label("Usage", "usage");
  cmds.emplace_back(c, cmd_keystore_import);
  c->add_option("--in", o.in, "the key file to read")->required()->check(CLI::ExistingFile);
  c->add_option("--out", o.out, "the sealed key file to write (never overwritten)")->required();
  add_json(c, o);
  c = ks->add_subcommand("export",
                         "a key file -> a Web3 Secret Storage v3 JSON keystore (geth, foundry: cast wallet import), "
                         "mode 0600; passphrases as for import");
  c->get_formatter()->label("Usage", "usage");
  cmds.emplace_back(c, cmd_keystore_export);
  c->add_option("--in", o.in, "the key file to read")->required()->check(CLI::ExistingFile);
  c->add_option("--out", o.out, "the JSON keystore to write (never overwritten)")->required();
  c->add_option("--kdf", o.kdf, "scrypt (default, as geth) or pbkdf2")->check(CLI::IsMember({"scrypt", "pbkdf2"}));
  c->add_option("--scrypt-n", o.scrypt_n, "scrypt cost N, a power of two (default 262144 as geth; r = 8, p = 1)");
  c->add_option("--pbkdf2-c", o.pbkdf2_c, "PBKDF2 iterations (default 262144)")->check(CLI::Range(1000, 10000000));
  add_json(c, o);
#ifdef PICOPAY_HAVE_CHAIN
  app.add_subcommand("deploy", "deploy a ChannelManager (see 'picopay deploy --help'; docs/chain.md)");
  for (const char* n : {"deposit", "withdraw", "exit", "challenge", "empty-channel", "thread-exit", "thread-challenge",
                        "empty-thread", "nuke-threads", "withdraw-owed", "channel"})
    app.add_subcommand(n, "on chain: see 'picopay " + std::string(n) + " --help' (docs/chain.md)");
#endif
#ifdef PICOPAY_HAVE_DEMO
  app.add_subcommand("demo", "run the pay-per-use demo end to end (see 'picopay demo --help')");
#endif
  const int rc = agent::parse(app, argc, argv);
  if (rc >= 0) return rc;
  for (const auto& [cmd, run] : cmds) {
    if (cmd->parsed()) return run(o);
  }
  die(kExitUsage, "no command (see picopay --help)");
}
