// The on-chain subcommands of the picopay CLI (see cli.hpp, docs/chain.md).
//
// One CLI11 app per subcommand on the shared Settings table (agent/common settings.hpp):
// the same flags, environment variables, amount units and config-file precedence as
// picopay-agent, picopay-hub and picopay-tower (defaults < --config FILE < environment <
// command line). Every argument is checked before the first RPC call and every
// transaction is preceded by the ChannelManager check, so bad input sends nothing.
#include "picopay/chain/cli.hpp"

#include <cjson/cJSON.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "picopay/agent/amount.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/agent/options.hpp"
#include "picopay/agent/settings.hpp"
#include "picopay/agent/units.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/token.hpp"
#include "picopay/hex.hpp"
#include "picopay/keyfile.hpp"

using namespace picopay::chain;
using picopay::Address;
using picopay::channel_hash;
using picopay::Hash32;
using picopay::PrivateKey;
using picopay::secure_wipe;
using picopay::SignedChannelState;
using picopay::SignedThreadState;
using picopay::thread_hash;
using picopay::U256;
namespace agent = picopay::agent;
namespace units = picopay::units;

namespace {

struct Cmd {
  const char* name;
  const char* help;
};

const Cmd kCmds[] = {
    {"deploy", "deploy a ChannelManager (constructor: hub, challenge period, approved token)"},
    {"deposit",
     "user: userAuthorizedUpdate with the hub-signed --state (sends pendingDepositWeiUser); hub (--as-hub): "
     "hubAuthorizedUpdate with the user-signed --state; hub: --reserve AMOUNT funds the hub's reserve"},
    {"withdraw",
     "consensus withdrawal with --state (userAuthorizedUpdate, or hubAuthorizedUpdate with --as-hub); "
     "hub: --reserve-wei / --reserve-tokens take from the reserve (hubContractWithdraw)"},
    {"exit", "start a unilateral exit: --user ADDR (startExit) or --state FILE (startExitWithUpdate)"},
    {"challenge", "answer an exit with a newer double-signed --state (emptyChannelWithChallenge)"},
    {"empty-channel", "empty --user's channel after the challenge period (emptyChannel)"},
    {"thread-exit", "start a thread dispute (startExitThread / startExitThreadWithUpdate)"},
    {"thread-challenge", "answer a thread dispute with a newer --update (challengeThread)"},
    {"empty-thread", "settle a thread after its challenge period (emptyThread)"},
    {"nuke-threads", "clear --user's threads after the thread dispute window (nukeThreads)"},
    {"withdraw-owed",
     "withdrawOwed / withdrawOwedTo: what a refused payout credited to this key's address"},
    {"channel", "print --user's channel on chain as JSON (a view: no key needed, nothing sent)"},
};

const Cmd* find(const char* name) {
  for (const auto& c : kCmds)
    if (std::strcmp(c.name, name) == 0) return &c;
  return nullptr;
}

// Everything a subcommand may be given (one runs per process).
struct Opts {
  std::string rpc_url;
  agent::KeyOptions keys;
  std::string key_file_cfg;  // keyFile in the config file
  std::string key_hex_cfg;   // privateKey in the config file (mode 0600)
  Address contract{}, hub{}, user{}, token{}, to{};
  bool has_contract = false, has_hub = false, has_user = false, has_token = false, has_to = false;
  uint64_t challenge_period = 0;
  std::string artifact, state, initial, leaves, update;
  U256 reserve = U256::zero(), reserve_wei = U256::zero(), reserve_tokens = U256::zero();
  bool has_reserve = false, has_reserve_wei = false, has_reserve_tokens = false;
  bool as_hub = false;
  bool json = false;
};

int fail(const Cmd& c, const Error& e) {
  std::fprintf(stderr, "picopay %s: %s\n", c.name, e.to_string().c_str());
  return 1;
}

int usage(const Cmd& c, const std::string& why) {
  std::fprintf(stderr, "picopay %s: %s (see 'picopay %s --help')\n", c.name, why.c_str(), c.name);
  return 2;
}

std::string dec(const U256& v) {
  char b[80];
  (void)u256_to_decimal(v, b, sizeof b, nullptr);
  return b;
}

// ---------------------------------------------------------------- JSON output

// {"wei": "<decimal>", "ether": "<decimal>"} or, for a token, {"baseUnits": .., "<SYMBOL>": ..}
cJSON* amount_json(const U256& v, const units::Asset& a) {
  cJSON* o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, a.token ? "baseUnits" : "wei", dec(v).c_str());
  cJSON_AddStringToObject(o, a.token ? a.symbol.c_str() : "ether", units::format_number(v, a.decimals).c_str());
  return o;
}

struct Output {
  cJSON* root = cJSON_CreateObject();
  cJSON* txs = nullptr;
  std::string text;
  ~Output() { cJSON_Delete(root); }
  void str(const char* k, const std::string& v) { cJSON_AddStringToObject(root, k, v.c_str()); }
  void num(const char* k, uint64_t v) { cJSON_AddNumberToObject(root, k, static_cast<double>(v)); }
  void amount(const char* k, const U256& v, const units::Asset& a) { cJSON_AddItemToObject(root, k, amount_json(v, a)); }
  // A mined transaction: the text line of old, and an entry of "transactions"; the last
  // one also fills the top-level transactionHash, blockNumber, gasUsed.
  void receipt(const char* method, const Receipt& r) {
    const units::Asset eth = units::eth();
    char line[400];
    std::snprintf(line, sizeof line, "%s: tx %s block %llu gasUsed %llu effectiveGasPrice %s\n", method,
                  hash_hex(r.transactionHash).c_str(), static_cast<unsigned long long>(r.blockNumber),
                  static_cast<unsigned long long>(r.gasUsed), dec(r.effectiveGasPrice).c_str());
    text += line;
    if (!txs) txs = cJSON_AddArrayToObject(root, "transactions");
    cJSON* t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "method", method);
    cJSON_AddStringToObject(t, "transactionHash", hash_hex(r.transactionHash).c_str());
    cJSON_AddNumberToObject(t, "blockNumber", static_cast<double>(r.blockNumber));
    cJSON_AddNumberToObject(t, "gasUsed", static_cast<double>(r.gasUsed));
    cJSON_AddItemToObject(t, "effectiveGasPrice", amount_json(r.effectiveGasPrice, eth));
    U256 fee;
    if (u256_mul(U256::from_u64(r.gasUsed), r.effectiveGasPrice, fee) == picopay::Status::Ok)
      cJSON_AddItemToObject(t, "fee", amount_json(fee, eth));
    cJSON_AddItemToArray(txs, t);
    for (const char* k : {"method", "transactionHash", "blockNumber", "gasUsed"}) cJSON_DeleteItemFromObject(root, k);
    cJSON_AddStringToObject(root, "method", method);
    cJSON_AddStringToObject(root, "transactionHash", hash_hex(r.transactionHash).c_str());
    cJSON_AddNumberToObject(root, "blockNumber", static_cast<double>(r.blockNumber));
    cJSON_AddNumberToObject(root, "gasUsed", static_cast<double>(r.gasUsed));
  }
  int print(bool json) {
    if (json) std::printf("%s\n", picopay::json::print(root, false).c_str());
    else std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
    return 0;
  }
};

// The amounts a channel state moves on chain, in the contract's asset units.
void state_amounts(Output& out, const picopay::ChannelState& s, const units::Asset& eth, const units::Asset& tok) {
  out.str("user", picopay::json::address_text(s.user));
  out.num("txCountGlobal", s.txCountGlobal);
  out.num("txCountChain", s.txCountChain);
  out.amount("pendingDepositWeiUser", s.pendingDepositWeiUser, eth);
  out.amount("pendingDepositWeiHub", s.pendingDepositWeiHub, eth);
  out.amount("pendingWithdrawalWeiUser", s.pendingWithdrawalWeiUser, eth);
  out.amount("pendingWithdrawalWeiHub", s.pendingWithdrawalWeiHub, eth);
  out.amount("pendingDepositTokenUser", s.pendingDepositTokenUser, tok);
  out.amount("pendingDepositTokenHub", s.pendingDepositTokenHub, tok);
  out.amount("pendingWithdrawalTokenUser", s.pendingWithdrawalTokenUser, tok);
  out.amount("pendingWithdrawalTokenHub", s.pendingWithdrawalTokenHub, tok);
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

// ---------------------------------------------------------------- the options table

// A file flag that has no config key.
CLI::Option* file_flag(CLI::App& app, const std::string& name, std::string& v, const std::string& help) {
  return app.add_option(name, v, help)->type_name("FILE")->group("Command");
}

void add_options(CLI::App& app, agent::Settings& s, const std::string& n, Opts& o) {
  s.config_option("JSON config file (keys in brackets); flags and the environment override it");
  s.group("Chain");
  s.key_only("rpcUrl", [&o](agent::ConfigFile& f) { f.str("rpcUrl", o.rpc_url); });
  agent::add_rpc_url(app, o.rpc_url, "Ethereum JSON-RPC URL [rpcUrl]")->group("Chain");
  if (n != "deploy")
    s.address("--contract", "contract", o.contract, &o.has_contract, "the ChannelManager (required)");
  s.address("--hub", "hub", o.hub, &o.has_hub,
            n == "deploy" ? "the hub the new contract belongs to (required)"
                          : "the hub the contract must belong to (hub() checked at start and before each "
                            "transaction); default: the signer of the state's sigHub, or this key for hub actions");
  s.group("Key");
  agent::add_key_options(app, o.keys, "picopay");
  s.key_only("keyFile", [&o](agent::ConfigFile& f) { f.path("keyFile", o.key_file_cfg); });
  s.key_only("privateKey", [&o](agent::ConfigFile& f) { f.str("privateKey", o.key_hex_cfg); });
  s.secret_keys({"privateKey"});
  s.group("Command");
  if (n == "deploy") {
    s.integer("--challenge-period", "challengePeriod", o.challenge_period, 60, 365ull * 86400,
              "challenge period in seconds (60 s to 365 days; required)");
    s.address("--token", "token", o.token, &o.has_token, "the approved ERC-20 token (default: ETH only)");
    s.path("--artifact", "artifact", o.artifact, "ChannelManager.json (default: the installed one)");
  }
  if (n == "deposit" || n == "withdraw" || n == "exit" || n == "challenge")
    file_flag(app, "--state", o.state, "the signed channel state (Connext v1 JSON)");
  if (n == "deposit" || n == "withdraw")
    app.add_flag("--as-hub", o.as_hub, "send as the hub (hubAuthorizedUpdate with the user-signed state)")
        ->group("Command");
  if (n == "deposit")
    s.amount("--reserve", nullptr, o.reserve, "hub: fund the reserve with this amount of wei");
  if (n == "withdraw") {
    s.amount("--reserve-wei", nullptr, o.reserve_wei, "hub: take this amount of wei from the reserve");
    s.amount("--reserve-tokens", nullptr, o.reserve_tokens, "hub: take this many token base units from the reserve");
  }
  if (n == "exit" || n == "empty-channel" || n == "thread-exit" || n == "empty-thread" || n == "nuke-threads" ||
      n == "channel")
    s.address("--user", nullptr, o.user, &o.has_user, "the channel's user");
  if (n == "thread-exit" || n == "empty-thread") {
    file_flag(app, "--initial", o.initial, "the thread's initial state, signed (JSON)")->required();
    file_flag(app, "--leaves", o.leaves, "JSON array of the threadRoot's leaves (hashes or initial states)")
        ->required();
  }
  if (n == "thread-exit" || n == "thread-challenge") {
    CLI::Option* u = file_flag(app, "--update", o.update, "the latest signed thread state (JSON)");
    if (n == "thread-challenge") u->required();
  }
  if (n == "withdraw-owed") s.address("--to", nullptr, o.to, &o.has_to, "send to this address (withdrawOwedTo)");
  app.add_flag("--json", o.json,
               "print the result as one JSON object (transactionHash, blockNumber, gasUsed, addresses; amounts "
               "as strings in wei and in ether or token units)")
      ->group("Output");
  s.group("");
}

// Checks what CLI11 cannot (combinations). "" when fine.
std::string check_combination(const std::string& n, const Opts& o) {
  if (o.rpc_url.empty()) return "--rpc-url is required (or env ETH_RPC_URL, or rpcUrl in --config)";
  if (n == "deploy") {
    if (!o.has_hub) return "--hub is required";
    if (o.challenge_period == 0) return "--challenge-period is required";
    return "";
  }
  if (!o.has_contract) return "--contract is required";
  const bool reserve = o.has_reserve || o.has_reserve_wei || o.has_reserve_tokens;
  if ((n == "deposit" || n == "withdraw") && reserve && (!o.state.empty() || o.as_hub))
    return n == "deposit" ? "give --reserve or --state, not both" : "give --reserve-wei/--reserve-tokens or --state, not both";
  if ((n == "deposit" || n == "withdraw" || n == "challenge") && !reserve && o.state.empty())
    return "--state is required";
  if (n == "exit" && o.state.empty() == !o.has_user) return "give exactly one of --user or --state";
  if ((n == "empty-channel" || n == "nuke-threads" || n == "channel" || n == "thread-exit" || n == "empty-thread") &&
      !o.has_user)
    return "--user is required";
  return "";
}

// ---------------------------------------------------------------- running

int run(const Cmd& c, Opts& o) {
  const std::string n = c.name;
  const bool view_only = n == "channel";
  if (o.keys.private_key.empty() && o.keys.keystore.empty()) {
    if (!o.key_hex_cfg.empty()) o.keys.private_key = o.key_hex_cfg;
    else if (!o.key_file_cfg.empty()) o.keys.keystore = o.key_file_cfg;
  }
  const bool have_key = !o.keys.private_key.empty() || !o.keys.keystore.empty() || std::getenv("PICOPAY_PRIVATE_KEY");
  if (!have_key && !view_only)
    return usage(c, "a key is required (--keystore FILE, env ETH_KEYSTORE or PICOPAY_PRIVATE_KEY, or --private-key)");
  PrivateKey key{};
  if (have_key) {
    std::string kerr;
    if (!agent::load_key(o.keys, key, kerr)) return fail(c, make_error(ErrorKind::BadInput, kerr));
  } else {
    key.bytes[31] = 1;  // views only: any valid key identifies the caller
  }
  // Local files are read and checked before the first RPC call.
  SignedChannelState st{};
  bool has_state = false;
  if (!o.state.empty()) {
    auto text = read_text_file(o.state);
    if (!text) return fail(c, text.error());
    auto s = channel_state_from_json(*text);
    if (!s) return fail(c, make_error(s.error().kind, o.state + ": " + s.error().message));
    st = *s;
    has_state = true;
    if (o.has_contract && st.state.contractAddress != o.contract)
      return fail(c, make_error(ErrorKind::BadInput, o.state + ": the state's contractAddress " +
                                                         picopay::json::address_text(st.state.contractAddress) +
                                                         " is not --contract " +
                                                         picopay::json::address_text(o.contract) + " (nothing sent)"));
  }
  auto load_thread = [&](const std::string& path) -> Result<SignedThreadState> {
    PPC_TRY(std::string text, read_text_file(path));
    auto t = thread_state_from_json(text);
    if (!t) return make_error(t.error().kind, path + ": " + t.error().message);
    return t;
  };
  Artifact art;
  if (n == "deploy") {
    auto a = load_artifact(o.artifact.empty() ? default_artifact_dir() + "/ChannelManager.json" : o.artifact);
    if (!a) return fail(c, a.error());
    art = *a;
  }

  RpcClient rpc(o.rpc_url);
  Wallet w(rpc, key);
  secure_wipe(key.bytes, sizeof key.bytes);
  if (auto s = w.init(); !s) return fail(c, s.error());
  Output out;
  out.str("command", n);
  if (!view_only) out.str("from", picopay::json::address_text(w.address()));

  if (n == "deploy") {
    Receipt r;
    auto addr = deploy_channel_manager(w, art, o.hub, o.challenge_period, o.has_token ? o.token : Address{}, &r);
    if (!addr) return fail(c, addr.error());
    out.receipt("deploy", r);
    char line[200];
    std::snprintf(line, sizeof line, "contract %s (bytecode %zu bytes)\n", address_hex(*addr).c_str(), art.deployed_size);
    out.text += line;
    out.str("contract", picopay::json::address_text(*addr));
    out.str("hub", picopay::json::address_text(o.hub));
    out.str("token", picopay::json::address_text(o.has_token ? o.token : Address{}));
    out.num("challengePeriod", o.challenge_period);
    out.num("bytecodeSize", art.deployed_size);
    return out.print(o.json);
  }

  const Address contract = o.contract;
  ChannelManagerClient cm(w, contract);
  out.str("contract", picopay::json::address_text(contract));
  // The hub the contract must belong to: checked now and before each transaction, so no
  // wei goes to an address that is not this hub's ChannelManager.
  bool know_hub = o.has_hub;
  Address expected_hub = o.hub;
  const bool hub_action = o.as_hub || o.has_reserve || o.has_reserve_wei || o.has_reserve_tokens;
  if (!know_hub && hub_action) {
    expected_hub = w.address();
    know_hub = true;
  } else if (!know_hub && has_state && st.hasSigHub &&
             w.signer().recover_eth(channel_hash(st.state), st.sigHub, expected_hub) == picopay::Status::Ok) {
    know_hub = true;
  }
  if (auto s = check_channel_manager(rpc, contract, know_hub ? &expected_hub : nullptr); !s) return fail(c, s.error());
  if (know_hub) cm.require_hub(expected_hub);
  else cm.require_channel_manager();
  if (know_hub) out.str("hub", picopay::json::address_text(expected_hub));
  // The contract's token, for amounts in its units.
  units::Asset eth = units::eth(), tok;
  tok.token = true;
  tok.symbol = "tokens";
  tok.decimals = 0;
  if (!view_only) {
    auto t = approved_token(rpc, contract);
    if (!t) return fail(c, t.error());
    if (!t->is_zero()) {
      auto a = channel_asset(rpc, contract, &*t);
      if (!a) return fail(c, a.error());
      tok = *a;
    }
  }
  auto done = [&](const char* method, const Result<Receipt>& r) {
    if (!r) return fail(c, r.error());
    out.receipt(method, *r);
    return out.print(o.json);
  };

  if (n == "withdraw-owed") {
    auto ow = cm.owed_wei(w.address());
    auto ot = cm.owed_tokens(w.address());
    if (!ow) return fail(c, ow.error());
    if (!ot) return fail(c, ot.error());
    if (ow->is_zero() && ot->is_zero())
      return fail(c, make_error(ErrorKind::BadInput, "nothing owed to " + address_hex(w.address()) + " (nothing sent)"));
    auto r = o.has_to ? cm.withdraw_owed_to(o.to) : cm.withdraw_owed();
    if (!r) return fail(c, r.error());
    out.receipt(o.has_to ? "withdrawOwedTo" : "withdrawOwed", *r);
    out.str("to", picopay::json::address_text(o.has_to ? o.to : w.address()));
    out.amount("wei", *ow, eth);
    out.amount("tokens", *ot, tok);
    out.text += "withdrew " + dec(*ow) + " wei and " + dec(*ot) + " token units owed to " + address_hex(w.address()) +
                "\n";
    return out.print(o.json);
  }
  if (n == "channel") {
    auto ch = cm.channel(o.user);
    if (!ch) return fail(c, ch.error());
    auto ow = cm.owed_wei(o.user);
    auto ot = cm.owed_tokens(o.user);
    auto nk = cm.nuke_threads_after(o.user);
    if (!ow) return fail(c, ow.error());
    if (!ot) return fail(c, ot.error());
    if (!nk) return fail(c, nk.error());
    std::printf("{\"user\":\"%s\",\"status\":\"%s\",\"weiHub\":\"%s\",\"weiUser\":\"%s\",\"weiTotal\":\"%s\","
                "\"tokenHub\":\"%s\",\"tokenUser\":\"%s\",\"tokenTotal\":\"%s\",\"txCountGlobal\":%llu,"
                "\"txCountChain\":%llu,\"threadRoot\":\"%s\",\"threadCount\":%llu,\"exitInitiator\":\"%s\","
                "\"channelClosingTime\":%llu,\"nukeThreadsAfter\":%llu,\"owedWei\":\"%s\",\"owedTokens\":\"%s\"}\n",
                address_hex(o.user).c_str(), channel_status_name(ch->status), dec(ch->weiHub).c_str(),
                dec(ch->weiUser).c_str(), dec(ch->weiTotal).c_str(), dec(ch->tokenHub).c_str(),
                dec(ch->tokenUser).c_str(), dec(ch->tokenTotal).c_str(),
                static_cast<unsigned long long>(ch->txCountGlobal), static_cast<unsigned long long>(ch->txCountChain),
                hash_hex(ch->threadRoot).c_str(), static_cast<unsigned long long>(ch->threadCount),
                address_hex(ch->exitInitiator).c_str(), static_cast<unsigned long long>(ch->channelClosingTime),
                static_cast<unsigned long long>(*nk), dec(*ow).c_str(), dec(*ot).c_str());
    return 0;
  }
  if (n == "deposit" && o.has_reserve) {
    out.amount("amount", o.reserve, eth);
    return done("fundReserve", cm.fund_reserve(o.reserve));
  }
  if (n == "withdraw" && (o.has_reserve_wei || o.has_reserve_tokens)) {
    out.amount("wei", o.reserve_wei, eth);
    out.amount("tokens", o.reserve_tokens, tok);
    return done("hubContractWithdraw", cm.hub_contract_withdraw(o.reserve_wei, o.reserve_tokens));
  }
  if (n == "deposit" || n == "withdraw") {
    state_amounts(out, st.state, eth, tok);
    if (o.as_hub) {
      if (!st.hasSigUser) return usage(c, "the state lacks sigUser");
      return done("hubAuthorizedUpdate", cm.hub_authorized_update(st.state, st.sigUser));
    }
    if (!st.hasSigHub) return usage(c, "the state lacks sigHub");
    if (st.state.user != w.address()) return usage(c, "the state's user is not this key's address");
    out.amount("value", st.state.pendingDepositWeiUser, eth);
    if (!st.state.pendingDepositTokenUser.is_zero()) {
      // approve the manager for the token deposit (approvedToken() of the contract)
      auto a = erc20_approve(w, tok.address, contract, st.state.pendingDepositTokenUser);
      if (!a) return fail(c, a.error());
      out.receipt("approve", *a);
    }
    return done("userAuthorizedUpdate", cm.user_authorized_update(st.state, st.sigHub));
  }
  if (n == "exit") {
    if (has_state) {
      state_amounts(out, st.state, eth, tok);
      return done("startExitWithUpdate", cm.start_exit_with_update(st));
    }
    out.str("user", picopay::json::address_text(o.user));
    return done("startExit", cm.start_exit(o.user));
  }
  if (n == "challenge") {
    state_amounts(out, st.state, eth, tok);
    return done("emptyChannelWithChallenge", cm.empty_channel_with_challenge(st));
  }
  if (n == "empty-channel" || n == "nuke-threads") {
    out.str("user", picopay::json::address_text(o.user));
    return n == "empty-channel" ? done("emptyChannel", cm.empty_channel(o.user))
                                : done("nukeThreads", cm.nuke_threads(o.user));
  }
  if (n == "thread-challenge") {
    auto u = load_thread(o.update);
    if (!u) return fail(c, u.error());
    out.num("threadId", u->state.threadId);
    out.num("txCount", u->state.txCount);
    return done("challengeThread", cm.challenge_thread(*u));
  }
  if (n == "thread-exit" || n == "empty-thread") {
    auto init = load_thread(o.initial);
    if (!init) return fail(c, init.error());
    auto leaves = read_leaves(o.leaves);
    if (!leaves) return fail(c, leaves.error());
    auto proof = thread_proof(*leaves, thread_hash(init->state));
    if (!proof) return fail(c, proof.error());
    out.str("user", picopay::json::address_text(o.user));
    out.num("threadId", init->state.threadId);
    if (n == "empty-thread") return done("emptyThread", cm.empty_thread(o.user, *init, *proof));
    if (!o.update.empty()) {
      auto up = load_thread(o.update);
      if (!up) return fail(c, up.error());
      return done("startExitThreadWithUpdate", cm.start_exit_thread_with_update(o.user, *init, *proof, *up));
    }
    return done("startExitThread", cm.start_exit_thread(o.user, *init, *proof));
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
  CLI::App app{std::string("picopay ") + c.name + ": " + c.help + " (docs/chain.md)", std::string("picopay ") + c.name};
  app.get_formatter()->label("Usage", "usage");
  app.footer(
      "Keys: --keystore takes a picopay sealed key file or a Web3 v3 JSON keystore (passphrase from "
      "PICOPAY_PASSPHRASE, PICOPAY_PASSPHRASE_FILE or the terminal). Amounts take units: 1000 (wei), 2gwei, "
      "1.5ether. The contract is checked to be a ChannelManager of the expected hub at start and before each "
      "transaction. Exit: 0 ok, 1 failure (chain, RPC, files), 2 usage error.");
  Opts o;
  agent::Settings s(&app);
  const std::string n = c.name;
  add_options(app, s, n, o);
  std::vector<std::string> args(argv, argv + argc);
  const int rc = agent::parse_args(app, args);
  if (rc >= 0) return rc;
  auto given = [&](const char* flag) { return app.get_option_no_throw(flag) && app.count(flag) > 0; };
  o.has_reserve = given("--reserve");
  o.has_reserve_wei = given("--reserve-wei");
  o.has_reserve_tokens = given("--reserve-tokens");
  if (std::string why = check_combination(n, o); !why.empty()) return usage(c, why);
  return run(c, o);
}
