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
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "picopay/agent/install.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"
#include "picopay/keyfile.hpp"
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

struct Failure {
  int code;
};

[[noreturn]] void die(int code, const std::string& msg) {
  std::fprintf(stderr, "picopay: %s\n", msg.c_str());
  std::exit(code);
}

const char* const kUsage =
    "usage: picopay COMMAND [options]\n"
    "\n"
    "Keys and signatures (Connext v1 states as JSON on stdin, DESIGN.md §3):\n"
    "  address  (--private-key 0x<64 hex> | --key FILE)  print the EIP-55 address\n"
    "  hash     channel|thread                            print the state hash (no eth_sign prefix)\n"
    "  sign     channel|thread (--private-key K | --key FILE)\n"
    "                                                     print the eth_sign signature (0x + 130 hex)\n"
    "  recover  --hash 0x<64 hex> --sig 0x<130 hex>       print the address that signed the hash\n"
    "  keccak                                             keccak-256 of hex bytes on stdin\n"
    "  encode   channel|thread                            JSON on stdin -> wire bytes as hex\n"
    "  decode   channel|thread                            wire hex on stdin -> JSON\n"
    "  keygen   --out FILE [--import-hex 0x<64 hex>]      write a sealed key file (Argon2id + secretbox)\n"
#ifdef PICOPAY_HAVE_CHAIN
    "\n"
    "On chain (ChannelManager over JSON-RPC; see docs/chain.md):\n"
    "  deploy, deposit, withdraw, exit, challenge, empty-channel, thread-exit,\n"
    "  thread-challenge, empty-thread, nuke-threads, channel\n"
#endif
#ifdef PICOPAY_HAVE_DEMO
    "\n"
    "  demo [--devices N] [--seconds S] [--workdir DIR]   run the pay-per-use demo end to end\n"
#endif
    "\n"
    "The passphrase of a key file comes from PICOPAY_PASSPHRASE, the file named by\n"
    "PICOPAY_PASSPHRASE_FILE, or a prompt on the terminal.\n"
    "Run 'picopay COMMAND --help' for one command; 'picopay --version' prints the version.\n";

struct Help {
  const char* command;
  const char* text;
};
const Help kHelp[] = {
    {"address",
     "usage: picopay address (--private-key 0x<64 hex> | --key FILE)\n"
     "Prints the EIP-55 checksummed Ethereum address of the key.\n"},
    {"hash",
     "usage: picopay hash channel|thread < state.json\n"
     "Prints 0x + 64 hex: keccak256 of the state's abi.encodePacked preimage\n"
     "(ChannelManager._verifySig / _verifyThread), without the eth_sign prefix.\n"},
    {"sign",
     "usage: picopay sign channel|thread (--private-key 0x<64 hex> | --key FILE) < state.json\n"
     "Prints 0x + 130 hex (r || s || v, v = 27/28): the eth_sign signature (EIP-191) of the\n"
     "state hash, RFC 6979 deterministic, low-S.\n"},
    {"recover",
     "usage: picopay recover --hash 0x<64 hex> --sig 0x<130 hex>\n"
     "Prints the EIP-55 address whose eth_sign signature over HASH is SIG.\n"
     "Refuses high-S (EIP-2) and v outside {0, 1, 27, 28}.\n"},
    {"keccak",
     "usage: picopay keccak < hex\n"
     "Reads hex bytes (optional 0x, surrounding whitespace ignored) and prints their keccak-256.\n"},
    {"encode",
     "usage: picopay encode channel|thread < state.json\n"
     "Prints the lowercase hex of the full-state wire encoding (docs/wire-format.md), with the\n"
     "signatures the JSON carries (sigUser/sigHub, or sigA).\n"},
    {"decode",
     "usage: picopay decode channel|thread < hex\n"
     "Reads a wire encoding as hex and prints the state as Connext v1 JSON.\n"},
    {"keygen",
     "usage: picopay keygen --out FILE [--import-hex 0x<64 hex>]\n"
     "Writes a new (or the imported) private key to FILE (mode 0600), sealed with a key derived\n"
     "from the passphrase by Argon2id (libsodium crypto_pwhash) and crypto_secretbox. The\n"
     "passphrase comes from PICOPAY_PASSPHRASE, the file named by PICOPAY_PASSPHRASE_FILE or\n"
     "a prompt. Prints the key's address.\n"},
};

bool wants_help(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) return true;
  }
  return false;
}

// A tiny option parser: --name value pairs and positionals.
struct Args {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> options;

  const std::string* get(const char* name) const {
    for (const auto& o : options) {
      if (o.first == name) return &o.second;
    }
    return nullptr;
  }
};

Args parse_args(int argc, char** argv, std::initializer_list<const char*> allowed) {
  Args a;
  for (int i = 0; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) == 0) {
      bool ok = false;
      for (const char* name : allowed) ok = ok || s == name;
      if (!ok) die(kExitUsage, "unknown option " + s + " (see --help)");
      if (i + 1 >= argc) die(kExitUsage, "option " + s + " needs a value");
      if (a.get(s.c_str())) die(kExitUsage, "option " + s + " given twice");
      a.options.emplace_back(s, argv[++i]);
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
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
Kind parse_kind(const Args& a, const char* cmd) {
  if (a.positional.size() != 1) die(kExitUsage, std::string(cmd) + " needs exactly one of: channel, thread");
  if (a.positional[0] == "channel") return Kind::Channel;
  if (a.positional[0] == "thread") return Kind::Thread;
  die(kExitUsage, std::string(cmd) + ": unknown state kind \"" + a.positional[0] + "\" (channel or thread)");
}

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

PrivateKey load_key(const Args& a) {
  const std::string* hex = a.get("--private-key");
  const std::string* file = a.get("--key");
  if ((hex == nullptr) == (file == nullptr)) die(kExitUsage, "give exactly one of --private-key or --key");
  PrivateKey key;
  if (hex != nullptr) {
    if (private_key_parse(hex->data(), hex->size(), key) != Status::Ok)
      die(kExitFail, "--private-key must be 0x followed by 64 hex digits");
  } else {
    char pass[1024];
    size_t len = 0;
    if (passphrase_obtain(pass, sizeof pass, &len, false) != Status::Ok)
      die(kExitFail, "no passphrase: set PICOPAY_PASSPHRASE or PICOPAY_PASSPHRASE_FILE, or run on a terminal");
    const Status st = keyfile_read(file->c_str(), pass, len, key);
    secure_wipe(pass, sizeof pass);
    if (st == Status::IoError) die(kExitFail, "cannot read key file " + *file);
    if (st != Status::Ok) die(kExitFail, "cannot open key file " + *file + ": wrong passphrase or damaged file");
  }
  Address addr;
  if (signer().address_of(key, addr) != Status::Ok) {
    secure_wipe(&key, sizeof key);
    die(kExitFail, "private key is zero or not below the secp256k1 group order");
  }
  return key;
}

int cmd_address(int argc, char** argv) {
  const Args a = parse_args(argc, argv, {"--private-key", "--key"});
  if (!a.positional.empty()) die(kExitUsage, "address takes no positional arguments");
  PrivateKey key = load_key(a);
  Address addr;
  const Status st = signer().address_of(key, addr);
  secure_wipe(&key, sizeof key);
  if (st != Status::Ok) die(kExitFail, status_message(st));
  std::printf("%s\n", json::address_text(addr).c_str());
  return 0;
}

int cmd_hash(int argc, char** argv) {
  const Args a = parse_args(argc, argv, {});
  const Kind k = parse_kind(a, "hash");
  SignedChannelState c;
  SignedThreadState t;
  read_state(k, c, t);
  const Hash32 h = k == Kind::Channel ? channel_hash(c.state) : thread_hash(t.state);
  std::printf("%s\n", json::hash_text(h).c_str());
  return 0;
}

int cmd_sign(int argc, char** argv) {
  const Args a = parse_args(argc, argv, {"--private-key", "--key"});
  const Kind k = parse_kind(a, "sign");
  PrivateKey key = load_key(a);
  SignedChannelState c;
  SignedThreadState t;
  read_state(k, c, t);
  const Hash32 h = k == Kind::Channel ? channel_hash(c.state) : thread_hash(t.state);
  Signature sig;
  const Status st = signer().sign_eth(key, h, sig);
  secure_wipe(&key, sizeof key);
  if (st != Status::Ok) die(kExitFail, status_message(st));
  std::printf("%s\n", json::signature_text(sig).c_str());
  return 0;
}

int cmd_recover(int argc, char** argv) {
  const Args a = parse_args(argc, argv, {"--hash", "--sig"});
  if (!a.positional.empty()) die(kExitUsage, "recover takes no positional arguments");
  const std::string* hs = a.get("--hash");
  const std::string* ss = a.get("--sig");
  if (!hs || !ss) die(kExitUsage, "recover needs --hash and --sig");
  Hash32 h;
  if (hash32_parse(hs->data(), hs->size(), h) != Status::Ok) die(kExitFail, "--hash must be 0x followed by 64 hex digits");
  Signature sig;
  const Status ps = signature_parse(ss->data(), ss->size(), sig);
  if (ps == Status::BadRecoveryId) die(kExitFail, "--sig: v must be 0, 1, 27 or 28");
  if (ps != Status::Ok) die(kExitFail, "--sig must be 0x followed by 130 hex digits");
  Address addr;
  const Status st = signer().recover_eth(h, sig, addr);
  if (st != Status::Ok) die(kExitFail, std::string("--sig: ") + status_message(st));
  std::printf("%s\n", json::address_text(addr).c_str());
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

int cmd_keccak(int argc, char** argv) {
  const Args a = parse_args(argc, argv, {});
  if (!a.positional.empty()) die(kExitUsage, "keccak takes no arguments");
  const std::vector<uint8_t> in = read_hex_stdin();
  Hash32 h;
  keccak256(in.data(), in.size(), h.bytes);
  std::printf("%s\n", json::hash_text(h).c_str());
  return 0;
}

int cmd_encode(int argc, char** argv) {
  const Args a = parse_args(argc, argv, {});
  const Kind k = parse_kind(a, "encode");
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
  std::printf("%s\n", hex.c_str());
  return 0;
}

int cmd_decode(int argc, char** argv) {
  const Args a = parse_args(argc, argv, {});
  const Kind k = parse_kind(a, "decode");
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

int cmd_keygen(int argc, char** argv) {
  const Args a = parse_args(argc, argv, {"--out", "--import-hex"});
  if (!a.positional.empty()) die(kExitUsage, "keygen takes no positional arguments");
  const std::string* out = a.get("--out");
  if (!out) die(kExitUsage, "keygen needs --out FILE");
  struct stat sb;
  if (::stat(out->c_str(), &sb) == 0) die(kExitFail, "refusing to overwrite " + *out);
  PrivateKey key;
  Address addr;
  if (const std::string* imp = a.get("--import-hex")) {
    if (private_key_parse(imp->data(), imp->size(), key) != Status::Ok)
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
  const Status st = keyfile_write(out->c_str(), key, pass, len);
  secure_wipe(pass, sizeof pass);
  secure_wipe(&key, sizeof key);
  if (st != Status::Ok) die(kExitFail, "cannot write key file " + *out + ": " + status_message(st));
  std::printf("%s\n", json::address_text(addr).c_str());
  return 0;
}

struct Command {
  const char* name;
  int (*run)(int, char**);
};
const Command kCommands[] = {
    {"address", cmd_address}, {"hash", cmd_hash},     {"sign", cmd_sign},     {"recover", cmd_recover},
    {"keccak", cmd_keccak},   {"encode", cmd_encode}, {"decode", cmd_decode}, {"keygen", cmd_keygen},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  const std::string cmd = argv[1];
  if (cmd == "--version") return picopay::agent::print_version();
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  for (const Command& c : kCommands) {
    if (cmd != c.name) continue;
    if (wants_help(argc - 2, argv + 2)) {
      for (const Help& h : kHelp) {
        if (cmd == h.command) std::fputs(h.text, stdout);
      }
      return 0;
    }
    return c.run(argc - 2, argv + 2);
  }
#ifdef PICOPAY_HAVE_DEMO
  if (cmd == "demo") return picopay_demo_main(argc - 1, argv + 1);
#endif
#ifdef PICOPAY_HAVE_CHAIN
  if (picopay_chain_cli_handles(cmd.c_str())) return picopay_chain_cli(argc - 1, argv + 1);
#endif
  std::fprintf(stderr, "picopay: unknown command \"%s\" (see picopay --help)\n", cmd.c_str());
  return kExitUsage;
}
