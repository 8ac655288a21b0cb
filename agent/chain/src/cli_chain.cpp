// The on-chain subcommands of the picopay CLI (see cli.hpp, docs/chain.md).
#include "picopay/chain/cli.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "picopay/agent/amount.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/agent/options.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/hex.hpp"
#include "picopay/keyfile.hpp"


using namespace picopay::chain;
using picopay::Address;
using picopay::Hash32;
using picopay::PrivateKey;
using picopay::U256;
using picopay::SignedChannelState;
using picopay::SignedThreadState;
using picopay::secure_wipe;
using picopay::thread_hash;
using picopay::channel_hash;

namespace {

struct Cmd {
  const char* name;
  const char* usage;
};

const Cmd kCmds[] = {
    {"deploy", "deploy --rpc URL KEY --hub ADDR --challenge-period SECS [--token ADDR] [--artifact FILE]"},
    {"deposit", "deposit --rpc URL KEY --contract ADDR --state FILE   (user: userAuthorizedUpdate with the hub-signed "
                "state; sends pendingDepositWeiUser as value)\n"
                "        deposit --rpc URL KEY --contract ADDR --state FILE --as-hub   (hub: hubAuthorizedUpdate with "
                "the user-signed state)\n"
                "        deposit --rpc URL KEY --contract ADDR --reserve WEI   (hub: fund its reserve)"},
    {"withdraw", "withdraw --rpc URL KEY --contract ADDR --state FILE [--as-hub]   (consensus withdrawal)\n"
                 "        withdraw --rpc URL KEY --contract ADDR --reserve-wei WEI [--reserve-tokens N]   "
                 "(hubContractWithdraw)"},
    {"exit", "exit --rpc URL KEY --contract ADDR (--user ADDR | --state FILE)   (startExit / startExitWithUpdate)"},
    {"challenge", "challenge --rpc URL KEY --contract ADDR --state FILE   (emptyChannelWithChallenge)"},
    {"empty-channel", "empty-channel --rpc URL KEY --contract ADDR --user ADDR"},
    {"thread-exit", "thread-exit --rpc URL KEY --contract ADDR --user ADDR --initial FILE --leaves FILE [--update FILE]"},
    {"thread-challenge", "thread-challenge --rpc URL KEY --contract ADDR --update FILE"},
    {"empty-thread", "empty-thread --rpc URL KEY --contract ADDR --user ADDR --initial FILE --leaves FILE"},
    {"nuke-threads", "nuke-threads --rpc URL KEY --contract ADDR --user ADDR"},
    {"withdraw-owed", "withdraw-owed --rpc URL KEY --contract ADDR [--to ADDR]   (withdrawOwed / withdrawOwedTo: "
                      "what a refused payout credited to this key's address)"},
    {"channel", "channel --rpc URL --contract ADDR --user ADDR [--key FILE | --private-key HEX]"},
};

const Cmd* find(const char* name) {
  for (const auto& c : kCmds)
    if (std::strcmp(c.name, name) == 0) return &c;
  return nullptr;
}

int usage(const Cmd& c, const std::string& why) {
  if (!why.empty()) std::fprintf(stderr, "picopay %s: %s\n", c.name, why.c_str());
  std::fprintf(stderr,
               "usage: picopay %s\n  URL: --rpc-url (or --rpc, env ETH_RPC_URL). KEY: --keystore FILE (a sealed key file or a v3 JSON\n  keystore; env ETH_KEYSTORE; old --key FILE) or --private-key 0xHEX. Amounts take units: 2gwei, 1.5ether.\n"
               "  --hub ADDR (not for deploy): the hub the contract must belong to; without it, the signer of the\n"
               "  state's sigHub, or this key's address for hub actions (--as-hub, reserves); otherwise the address\n"
               "  must only be a ChannelManager. Checked before anything is sent.\n",
               c.usage);
  return 2;
}

int fail(const Cmd& c, const Error& e) {
  std::fprintf(stderr, "picopay %s: %s\n", c.name, e.to_string().c_str());
  return 1;
}

void print_receipt(const char* what, const Receipt& r) {
  char egp[80];
  (void)u256_to_decimal(r.effectiveGasPrice, egp, sizeof egp, nullptr);
  std::printf("%s: tx %s block %llu gasUsed %llu effectiveGasPrice %s\n", what, hash_hex(r.transactionHash).c_str(),
              static_cast<unsigned long long>(r.blockNumber), static_cast<unsigned long long>(r.gasUsed), egp);
}

std::string dec(const U256& v) {
  char b[80];
  (void)u256_to_decimal(v, b, sizeof b, nullptr);
  return b;
}

// Reads a JSON array of the channel's root leaves: each a 0x-hex thread-state hash or an
// initial thread-state object. Objects are decoded in place by the project's JSON codec
// (never re-printed through cJSON, whose number printing rounds integers above 2^52:
// threadId 9007199254740771 would become ...770 and the leaf a different hash).
Result<std::vector<Hash32>> read_leaves(const std::string& path) {
  PPC_TRY(std::string text, read_text_file(path));
  std::string err;
  Json root(picopay::json::parse_document(text, err));
  if (!root) return make_error(ErrorKind::BadJson, path + ": " + err);
  if (!cJSON_IsArray(root.get()))
    return make_error(ErrorKind::BadJson, path + ": expected a JSON array of hashes or thread states");
  std::vector<Hash32> out;
  const cJSON* it;
  size_t i = 0;
  cJSON_ArrayForEach(it, root.get()) {
    if (cJSON_IsObject(it)) {
      SignedThreadState ts{};
      if (!picopay::json::thread_from_json(it, ts, err))
        return make_error(ErrorKind::BadInput, path + ": leaf " + std::to_string(i) + ": " + err);
      out.push_back(thread_hash(ts.state));
    } else {
      PPC_TRY(Hash32 h, parse_hash(it, "leaf"));
      out.push_back(h);
    }
    ++i;
  }
  return out;
}

int run(const Cmd& c, std::map<std::string, std::string>& o) {
  auto has = [&](const char* k) { return o.count(k) > 0; };
  if (!has("rpc")) return usage(c, "--rpc-url is required (or env ETH_RPC_URL)");
  RpcClient rpc(o["rpc"]);
  bool view_only = std::strcmp(c.name, "channel") == 0;
  PrivateKey key{};
  if (has("private-key")) {
    auto k = read_private_key_text(o["private-key"]);
    secure_wipe(&o["private-key"][0], o["private-key"].size());
    if (!k) return fail(c, k.error());
    key = *k;
  } else if (has("key")) {
    // A sealed key file (picopay keygen), a Web3 v3 JSON keystore (geth, foundry) or a
    // private file whose first line is 0x + 64 hex (agent/common options.hpp).
    std::string kerr;
    if (!picopay::agent::load_keystore_file(o["key"], key, kerr))
      return fail(c, make_error(ErrorKind::BadInput, kerr));
  } else if (!view_only) {
    return usage(c, "a key is required (--key FILE or --private-key 0xHEX)");
  } else {
    key.bytes[31] = 1;  // views only: any valid key identifies the caller
  }
  Wallet w(rpc, key);
  secure_wipe(key.bytes, sizeof key.bytes);
  if (auto s = w.init(); !s) return fail(c, s.error());

  if (std::strcmp(c.name, "deploy") == 0) {
    if (!has("hub") || !has("challenge-period")) return usage(c, "--hub and --challenge-period are required");
    auto hub = parse_address(o["hub"]);
    if (!hub) return fail(c, hub.error());
    Address token{};
    if (has("token")) {
      auto t = parse_address(o["token"]);
      if (!t) return fail(c, t.error());
      token = *t;
    }
    auto period = parse_amount(o["challenge-period"]);
    if (!period || !period->fits_u64()) return usage(c, "bad --challenge-period");
    std::string art_path = has("artifact") ? o["artifact"] : default_artifact_dir() + "/ChannelManager.json";
    auto art = load_artifact(art_path);
    if (!art) return fail(c, art.error());
    Receipt r;
    auto addr = deploy_channel_manager(w, *art, *hub, period->low64(), token, &r);
    if (!addr) return fail(c, addr.error());
    print_receipt("deploy", r);
    std::printf("contract %s (bytecode %zu bytes)\n", address_hex(*addr).c_str(), art->deployed_size);
    return 0;
  }

  if (!has("contract")) return usage(c, "--contract is required");
  auto contract = parse_address(o["contract"]);
  if (!contract) return fail(c, contract.error());
  ChannelManagerClient cm(w, *contract);
  std::string n = c.name;

  // The hub the contract must belong to (see usage): checked now and before each
  // transaction, so no wei goes to an address that is not this hub's ChannelManager.
  bool know_hub = false;
  Address expected_hub{};
  if (has("hub")) {
    auto h = parse_address(o["hub"]);
    if (!h) return fail(c, h.error());
    expected_hub = *h;
    know_hub = true;
  } else if (has("as-hub") || (n == "deposit" && has("reserve")) ||
             (n == "withdraw" && (has("reserve-wei") || has("reserve-tokens")))) {
    expected_hub = w.address();
    know_hub = true;
  } else if (has("state") && n != "channel") {
    auto text = read_text_file(o["state"]);
    if (!text) return fail(c, text.error());
    auto st = channel_state_from_json(*text);
    if (!st) return fail(c, st.error());
    if (st->hasSigHub && w.signer().recover_eth(channel_hash(st->state), st->sigHub, expected_hub) ==
                             picopay::Status::Ok)
      know_hub = true;
  }
  if (auto st = check_channel_manager(rpc, *contract, know_hub ? &expected_hub : nullptr); !st)
    return fail(c, st.error());
  if (know_hub) cm.require_hub(expected_hub);
  else cm.require_channel_manager();
  Address user{};
  if (has("user")) {
    auto u = parse_address(o["user"]);
    if (!u) return fail(c, u.error());
    user = *u;
  }
  auto need_user = [&]() { return has("user"); };
  auto load_state = [&](const char* k) -> Result<SignedChannelState> {
    PPC_TRY(std::string text, read_text_file(o[k]));
    PPC_TRY(SignedChannelState s, channel_state_from_json(text));
    if (s.state.contractAddress != *contract)
      return make_error(ErrorKind::BadInput, "state's contractAddress is not --contract");
    return s;
  };
  auto load_thread = [&](const char* k) -> Result<SignedThreadState> {
    PPC_TRY(std::string text, read_text_file(o[k]));
    return thread_state_from_json(text);
  };
  auto done = [&](const char* what, const Result<Receipt>& r) {
    if (!r) return fail(c, r.error());
    print_receipt(what, *r);
    return 0;
  };

  if (n == "withdraw-owed") {
    auto ow = cm.owed_wei(w.address());
    auto ot = cm.owed_tokens(w.address());
    if (!ow) return fail(c, ow.error());
    if (!ot) return fail(c, ot.error());
    if (ow->is_zero() && ot->is_zero())
      return fail(c, make_error(ErrorKind::BadInput, "nothing owed to " + address_hex(w.address()) + " (nothing sent)"));
    Result<Receipt> r = Receipt{};
    if (has("to")) {
      auto to = parse_address(o["to"]);
      if (!to) return fail(c, to.error());
      r = cm.withdraw_owed_to(*to);
    } else {
      r = cm.withdraw_owed();
    }
    if (!r) return fail(c, r.error());
    print_receipt(has("to") ? "withdrawOwedTo" : "withdrawOwed", *r);
    std::printf("withdrew %s wei and %s token units owed to %s\n", dec(*ow).c_str(), dec(*ot).c_str(),
                address_hex(w.address()).c_str());
    return 0;
  }
  if (n == "channel") {
    if (!need_user()) return usage(c, "--user is required");
    auto ch = cm.channel(user);
    if (!ch) return fail(c, ch.error());
    auto ow = cm.owed_wei(user);
    auto ot = cm.owed_tokens(user);
    auto nk = cm.nuke_threads_after(user);
    if (!ow) return fail(c, ow.error());
    if (!ot) return fail(c, ot.error());
    if (!nk) return fail(c, nk.error());
    std::printf("{\"user\":\"%s\",\"status\":\"%s\",\"weiHub\":\"%s\",\"weiUser\":\"%s\",\"weiTotal\":\"%s\","
                "\"tokenHub\":\"%s\",\"tokenUser\":\"%s\",\"tokenTotal\":\"%s\",\"txCountGlobal\":%llu,"
                "\"txCountChain\":%llu,\"threadRoot\":\"%s\",\"threadCount\":%llu,\"exitInitiator\":\"%s\","
                "\"channelClosingTime\":%llu,\"nukeThreadsAfter\":%llu,\"owedWei\":\"%s\",\"owedTokens\":\"%s\"}\n",
                address_hex(user).c_str(), channel_status_name(ch->status), dec(ch->weiHub).c_str(),
                dec(ch->weiUser).c_str(), dec(ch->weiTotal).c_str(), dec(ch->tokenHub).c_str(),
                dec(ch->tokenUser).c_str(), dec(ch->tokenTotal).c_str(),
                static_cast<unsigned long long>(ch->txCountGlobal), static_cast<unsigned long long>(ch->txCountChain),
                hash_hex(ch->threadRoot).c_str(), static_cast<unsigned long long>(ch->threadCount),
                address_hex(ch->exitInitiator).c_str(), static_cast<unsigned long long>(ch->channelClosingTime),
                static_cast<unsigned long long>(*nk), dec(*ow).c_str(), dec(*ot).c_str());
    return 0;
  }
  if (n == "deposit" || n == "withdraw") {
    if (n == "deposit" && has("reserve")) {
      auto v = parse_amount(o["reserve"]);
      if (!v) return fail(c, v.error());
      return done("fund reserve", cm.fund_reserve(*v));
    }
    if (n == "withdraw" && (has("reserve-wei") || has("reserve-tokens"))) {
      auto wv = parse_amount(has("reserve-wei") ? o["reserve-wei"] : "0");
      auto tv = parse_amount(has("reserve-tokens") ? o["reserve-tokens"] : "0");
      if (!wv) return fail(c, wv.error());
      if (!tv) return fail(c, tv.error());
      return done("hubContractWithdraw", cm.hub_contract_withdraw(*wv, *tv));
    }
    if (!has("state")) return usage(c, "--state is required");
    auto s = load_state("state");
    if (!s) return fail(c, s.error());
    if (has("as-hub")) {
      if (!s->hasSigUser) return usage(c, "the state lacks sigUser");
      return done("hubAuthorizedUpdate", cm.hub_authorized_update(s->state, s->sigUser));
    }
    if (!s->hasSigHub) return usage(c, "the state lacks sigHub");
    if (s->state.user != w.address()) return usage(c, "the state's user is not this key's address");
    if (!s->state.pendingDepositTokenUser.is_zero()) {
      // approve the manager for the token deposit (approvedToken() of the contract)
      auto tb = rpc.eth_call(*contract, selector("approvedToken()"));
      if (!tb) return fail(c, tb.error());
      auto token = AbiDecoder(*tb).address(0);
      if (!token) return fail(c, token.error());
      auto a = erc20_approve(w, *token, *contract, s->state.pendingDepositTokenUser);
      if (!a) return fail(c, a.error());
      print_receipt("approve", *a);
    }
    return done("userAuthorizedUpdate", cm.user_authorized_update(s->state, s->sigHub));
  }
  if (n == "exit") {
    if (has("state")) {
      auto s = load_state("state");
      if (!s) return fail(c, s.error());
      return done("startExitWithUpdate", cm.start_exit_with_update(*s));
    }
    if (!need_user()) return usage(c, "--user or --state is required");
    return done("startExit", cm.start_exit(user));
  }
  if (n == "challenge") {
    if (!has("state")) return usage(c, "--state is required");
    auto s = load_state("state");
    if (!s) return fail(c, s.error());
    return done("emptyChannelWithChallenge", cm.empty_channel_with_challenge(*s));
  }
  if (n == "empty-channel" || n == "nuke-threads") {
    if (!need_user()) return usage(c, "--user is required");
    return n == "empty-channel" ? done("emptyChannel", cm.empty_channel(user))
                                : done("nukeThreads", cm.nuke_threads(user));
  }
  if (n == "thread-challenge") {
    if (!has("update")) return usage(c, "--update is required");
    auto u = load_thread("update");
    if (!u) return fail(c, u.error());
    return done("challengeThread", cm.challenge_thread(*u));
  }
  if (n == "thread-exit" || n == "empty-thread") {
    if (!need_user() || !has("initial") || !has("leaves")) return usage(c, "--user, --initial and --leaves are required");
    auto init = load_thread("initial");
    if (!init) return fail(c, init.error());
    auto leaves = read_leaves(o["leaves"]);
    if (!leaves) return fail(c, leaves.error());
    auto proof = thread_proof(*leaves, thread_hash(init->state));
    if (!proof) return fail(c, proof.error());
    if (n == "empty-thread") return done("emptyThread", cm.empty_thread(user, *init, *proof));
    if (has("update")) {
      auto up = load_thread("update");
      if (!up) return fail(c, up.error());
      return done("startExitThreadWithUpdate", cm.start_exit_thread_with_update(user, *init, *proof, *up));
    }
    return done("startExitThread", cm.start_exit_thread(user, *init, *proof));
  }
  return usage(c, "unknown subcommand");
}

}  // namespace

bool picopay_chain_cli_handles(const char* subcommand) { return subcommand && find(subcommand) != nullptr; }

int picopay_chain_cli(int argc, char** argv) {
  if (argc < 1 || !picopay_chain_cli_handles(argv[0])) {
    std::fprintf(stderr, "picopay: unknown chain subcommand\n");
    return 2;
  }
  const Cmd& c = *find(argv[0]);
  std::map<std::string, std::string> o;
  static const char* kFlags[] = {"as-hub"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") return usage(c, ""), 0;
    if (a.rfind("--", 0) != 0) return usage(c, "unexpected argument '" + a + "'");
    std::string k = a.substr(2);
    auto eq = k.find('=');
    std::string inline_value;
    const bool has_inline = eq != std::string::npos;
    if (has_inline) {
      inline_value = k.substr(eq + 1);
      k = k.substr(0, eq);
    }
    // The shared vocabulary (agent/common options.hpp): --rpc-url (old --rpc), --keystore
    // (old --key-file / --key FILE), --private-key.
    if (k == "rpc-url") k = "rpc";
    if (k == "keystore" || k == "key-file") k = "key";
    if (has_inline) {
      o[k] = inline_value;
      continue;
    }
    bool flag = false;
    for (const char* f : kFlags) flag |= (k == f);
    if (flag) {
      o[k] = "1";
      continue;
    }
    if (i + 1 >= argc) return usage(c, "--" + k + " needs a value");
    o[k] = argv[++i];
  }
  if (!o.count("rpc")) {
    if (const char* e = std::getenv("ETH_RPC_URL"); e && *e) o["rpc"] = e;
  }
  if (!o.count("key") && !o.count("private-key")) {
    if (const char* e = std::getenv("ETH_KEYSTORE"); e && *e) o["key"] = e;
  }
  // Amounts take units (agent/common amount.hpp): 1000 (wei), 2gwei, 1.5ether.
  for (const char* k : {"reserve", "reserve-wei", "reserve-tokens"}) {
    if (!o.count(k)) continue;
    picopay::U256 v;
    std::string err;
    if (!picopay::agent::amount_parse(o[k], v, err)) return usage(c, std::string("--") + k + ": " + err);
    char buf[100];
    if (picopay::u256_to_decimal(v, buf, sizeof buf, nullptr) == picopay::Status::Ok) o[k] = buf;
  }
  return run(c, o);
}
