// ChannelManager client: calldata for v1's functions, views, deploy, ERC-20 helpers.
#include "picopay/chain/manager.hpp"

#include <cstring>
#include <fstream>
#include <sstream>

#include "picopay/agent/install.hpp"
#include "picopay/hex.hpp"

namespace picopay::chain {

namespace sig {
const char* const kHubAuthorizedUpdate =
    "hubAuthorizedUpdate(address,address,uint256[2],uint256[2],uint256[4],uint256[4],uint256[2],bytes32,uint256,"
    "uint256,string)";
const char* const kUserAuthorizedUpdate =
    "userAuthorizedUpdate(address,uint256[2],uint256[2],uint256[4],uint256[4],uint256[2],bytes32,uint256,uint256,"
    "string)";
const char* const kStartExit = "startExit(address)";
const char* const kStartExitWithUpdate =
    "startExitWithUpdate(address[2],uint256[2],uint256[2],uint256[4],uint256[4],uint256[2],bytes32,uint256,uint256,"
    "string,string)";
const char* const kEmptyChannelWithChallenge =
    "emptyChannelWithChallenge(address[2],uint256[2],uint256[2],uint256[4],uint256[4],uint256[2],bytes32,uint256,"
    "uint256,string,string)";
const char* const kEmptyChannel = "emptyChannel(address)";
const char* const kStartExitThread =
    "startExitThread(address,address,address,uint256,uint256[2],uint256[2],bytes,string)";
const char* const kStartExitThreadWithUpdate =
    "startExitThreadWithUpdate(address,address[2],uint256,uint256[2],uint256[2],bytes,string,uint256[2],uint256[2],"
    "uint256,string)";
const char* const kChallengeThread = "challengeThread(address,address,uint256,uint256[2],uint256[2],uint256,string)";
const char* const kEmptyThread = "emptyThread(address,address,address,uint256,uint256[2],uint256[2],bytes,string)";
const char* const kNukeThreads = "nukeThreads(address)";
const char* const kHubContractWithdraw = "hubContractWithdraw(uint256,uint256)";
const char* const kDidUpdateChannel =
    "DidUpdateChannel(address,uint256,uint256[2],uint256[2],uint256[4],uint256[4],uint256[2],bytes32,uint256)";
const char* const kDidStartExitChannel =
    "DidStartExitChannel(address,uint256,uint256[2],uint256[2],uint256[2],bytes32,uint256)";
const char* const kDidEmptyChannel = "DidEmptyChannel(address,uint256,uint256[2],uint256[2],uint256[2],bytes32,uint256)";
const char* const kDidStartExitThread =
    "DidStartExitThread(address,address,address,uint256,address,uint256[2],uint256[2],uint256)";
const char* const kDidChallengeThread =
    "DidChallengeThread(address,address,uint256,address,uint256[2],uint256[2],uint256)";
const char* const kDidEmptyThread =
    "DidEmptyThread(address,address,address,uint256,address,uint256[2],uint256[2],uint256[2],bytes32,uint256)";
const char* const kDidNukeThreads =
    "DidNukeThreads(address,address,uint256,uint256,uint256[2],uint256[2],uint256[2],bytes32,uint256)";
const char* const kDidHubContractWithdraw = "DidHubContractWithdraw(uint256,uint256)";
const char* const kWithdrawOwed = "withdrawOwed()";
const char* const kWithdrawOwedTo = "withdrawOwedTo(address)";
const char* const kDidCreditOwed = "DidCreditOwed(address,uint256,uint256)";
const char* const kDidWithdrawOwed = "DidWithdrawOwed(address,address,uint256,uint256)";
}  // namespace sig

const char* channel_status_name(ChannelStatus s) noexcept {
  switch (s) {
    case ChannelStatus::Open: return "Open";
    case ChannelStatus::ChannelDispute: return "ChannelDispute";
    case ChannelStatus::ThreadDispute: return "ThreadDispute";
  }
  return "Unknown";
}

Result<std::string> read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(ErrorKind::Io, "cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string default_artifact_dir() {
  const char* e = std::getenv("PICOPAY_CONTRACTS_DIR");
  if (e && *e) return e;
  return agent::data_dir() + "/contracts";
}

Result<Artifact> load_artifact(const std::string& path) {
  PPC_TRY(std::string text, read_text_file(path));
  Json root(cJSON_Parse(text.c_str()));
  if (!root) return make_error(ErrorKind::BadJson, path + ": not JSON");
  Artifact a;
  const cJSON* name = cJSON_GetObjectItemCaseSensitive(root.get(), "contractName");
  a.name = cJSON_IsString(name) ? name->valuestring : "";
  if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root.get(), "abi")))
    return make_error(ErrorKind::BadJson, path + ": no abi");
  auto bc = parse_data(cJSON_GetObjectItemCaseSensitive(root.get(), "bytecode"), "artifact.bytecode");
  if (!bc || bc->empty()) return make_error(ErrorKind::BadJson, path + ": no linked 0x-hex bytecode");
  a.bytecode = *bc;
  auto dbc = parse_data(cJSON_GetObjectItemCaseSensitive(root.get(), "deployedBytecode"), "artifact.deployedBytecode");
  if (dbc) a.deployed_size = dbc->size();
  return a;
}

// ---------------------------------------------------------------- calldata

static void put_channel_body(AbiEncoder& e, const ChannelState& s) {
  e.u256(s.balanceWeiHub).u256(s.balanceWeiUser);
  e.u256(s.balanceTokenHub).u256(s.balanceTokenUser);
  e.u256(s.pendingDepositWeiHub).u256(s.pendingWithdrawalWeiHub);
  e.u256(s.pendingDepositWeiUser).u256(s.pendingWithdrawalWeiUser);
  e.u256(s.pendingDepositTokenHub).u256(s.pendingWithdrawalTokenHub);
  e.u256(s.pendingDepositTokenUser).u256(s.pendingWithdrawalTokenUser);
  e.u64(s.txCountGlobal).u64(s.txCountChain);
  e.bytes32(s.threadRoot).u64(s.threadCount).u64(s.timeout);
}

static std::string sig_text(const Signature& s) {
  char buf[kSignatureTextSize];
  signature_to_hex(s, buf);
  return buf;
}

Bytes encode_hub_authorized_update(const ChannelState& s, const Signature& sigUser) {
  AbiEncoder e;
  e.address(s.user).address(s.recipient);
  put_channel_body(e, s);
  e.string(sig_text(sigUser));
  return e.finish(selector(sig::kHubAuthorizedUpdate));
}

Bytes encode_user_authorized_update(const ChannelState& s, const Signature& sigHub) {
  AbiEncoder e;
  e.address(s.recipient);
  put_channel_body(e, s);
  e.string(sig_text(sigHub));
  return e.finish(selector(sig::kUserAuthorizedUpdate));
}

Bytes encode_channel_dispute(const char* signature, const ChannelState& s, const Signature& sigHub,
                             const Signature& sigUser) {
  AbiEncoder e;
  e.address(s.user).address(s.recipient);
  put_channel_body(e, s);
  e.string(sig_text(sigHub)).string(sig_text(sigUser));
  return e.finish(selector(signature));
}

static void put_thread_balances(AbiEncoder& e, const ThreadState& t) {
  e.u256(t.balanceWeiSender).u256(t.balanceWeiReceiver).u256(t.balanceTokenSender).u256(t.balanceTokenReceiver);
}

Bytes encode_thread_initial(const char* signature, const Address& user, const ThreadState& t, const Bytes& proof,
                            const Signature& s) {
  AbiEncoder e;
  e.address(user).address(t.sender).address(t.receiver).u64(t.threadId);
  put_thread_balances(e, t);
  e.bytes(proof).string(sig_text(s));
  return e.finish(selector(signature));
}

// ---------------------------------------------------------------- deploy

Result<Address> deploy_artifact(Wallet& wallet, const Artifact& artifact, const Bytes& ctor_args,
                                Receipt* receipt_out) {
  TxRequest req;
  req.data = artifact.bytecode;
  req.data.insert(req.data.end(), ctor_args.begin(), ctor_args.end());
  PPC_TRY(Receipt r, wallet.send(req));
  if (receipt_out) *receipt_out = r;
  if (!r.hasContractAddress) return make_error(ErrorKind::BadJson, "deploy receipt has no contractAddress");
  return r.contractAddress;
}

Result<Address> deploy_channel_manager(Wallet& wallet, const Artifact& artifact, const Address& hub,
                                       uint64_t challenge_period, const Address& token, Receipt* receipt_out) {
  AbiEncoder e;
  e.address(hub).u64(challenge_period).address(token);
  return deploy_artifact(wallet, artifact, e.finish({}), receipt_out);
}

// ---------------------------------------------------------------- client

Status check_channel_manager(RpcClient& rpc, const Address& contract, const Address* expected_hub) {
  const std::string at = address_hex(contract);
  PPC_TRY(Bytes code, rpc.code(contract));
  if (code.empty())
    return make_error(ErrorKind::BadInput, "no contract code at " + at + ": not a ChannelManager (nothing sent)");
  auto b = rpc.eth_call(contract, selector("hub()"));
  if (!b) {
    if (b.error().kind != ErrorKind::Rpc && b.error().kind != ErrorKind::Reverted) return b.error();
    return make_error(ErrorKind::BadInput,
                      at + " is not a ChannelManager (hub() fails: " + b.error().message + "; nothing sent)");
  }
  AbiDecoder d(*b);
  auto hub = d.address(0);
  bool word_is_address = b->size() == 32;
  for (size_t i = 0; word_is_address && i < 12; ++i) word_is_address = (*b)[i] == 0;
  if (!hub || !word_is_address)
    return make_error(ErrorKind::BadInput, at + " is not a ChannelManager (hub() returns " +
                                               std::to_string(b->size()) + " bytes, not an address; nothing sent)");
  if (expected_hub && !(*hub == *expected_hub))
    return make_error(ErrorKind::BadInput, at + " is the ChannelManager of hub " + address_hex(*hub) + ", not of " +
                                               address_hex(*expected_hub) + " (nothing sent)");
  return ok_status();
}

Result<Receipt> ChannelManagerClient::tx(const Bytes& data, const U256& value) {
  if (check_before_tx_)
    PPC_CHECK(check_channel_manager(w_.rpc(), contract_, has_expected_hub_ ? &expected_hub_ : nullptr));
  TxRequest req;
  req.has_to = true;
  req.to = contract_;
  req.value = value;
  req.data = data;
  return w_.send(req);
}

Result<Bytes> ChannelManagerClient::view(const Bytes& data, const std::string& block) {
  return w_.rpc().eth_call(contract_, data, &w_.address(), block);
}

static Error need_sig(const char* which) {
  return make_error(ErrorKind::BadInput, std::string("state lacks ") + which);
}

Result<Receipt> ChannelManagerClient::user_authorized_update(const ChannelState& s, const Signature& sigHub) {
  return tx(encode_user_authorized_update(s, sigHub), s.pendingDepositWeiUser);
}

Result<Receipt> ChannelManagerClient::hub_authorized_update(const ChannelState& s, const Signature& sigUser) {
  return tx(encode_hub_authorized_update(s, sigUser));
}

Result<Receipt> ChannelManagerClient::start_exit(const Address& user) {
  return tx(AbiEncoder().address(user).finish(selector(sig::kStartExit)));
}

Result<Receipt> ChannelManagerClient::start_exit_with_update(const SignedChannelState& s) {
  if (!s.hasSigHub) return need_sig("sigHub");
  if (!s.hasSigUser) return need_sig("sigUser");
  return tx(encode_channel_dispute(sig::kStartExitWithUpdate, s.state, s.sigHub, s.sigUser));
}

Result<Receipt> ChannelManagerClient::empty_channel_with_challenge(const SignedChannelState& s) {
  if (!s.hasSigHub) return need_sig("sigHub");
  if (!s.hasSigUser) return need_sig("sigUser");
  return tx(encode_channel_dispute(sig::kEmptyChannelWithChallenge, s.state, s.sigHub, s.sigUser));
}

Result<Receipt> ChannelManagerClient::empty_channel(const Address& user) {
  return tx(AbiEncoder().address(user).finish(selector(sig::kEmptyChannel)));
}

Result<Receipt> ChannelManagerClient::start_exit_thread(const Address& user, const SignedThreadState& initial,
                                                        const Bytes& proof) {
  if (!initial.hasSigA) return need_sig("sigA");
  return tx(encode_thread_initial(sig::kStartExitThread, user, initial.state, proof, initial.sigA));
}

Result<Receipt> ChannelManagerClient::start_exit_thread_with_update(const Address& user,
                                                                    const SignedThreadState& initial,
                                                                    const Bytes& proof,
                                                                    const SignedThreadState& update) {
  if (!initial.hasSigA || !update.hasSigA) return need_sig("sigA");
  const ThreadState& t = initial.state;
  AbiEncoder e;
  e.address(user).address(t.sender).address(t.receiver).u64(t.threadId);
  put_thread_balances(e, t);
  e.bytes(proof).string(sig_text(initial.sigA));
  put_thread_balances(e, update.state);
  e.u64(update.state.txCount).string(sig_text(update.sigA));
  return tx(e.finish(selector(sig::kStartExitThreadWithUpdate)));
}

Result<Receipt> ChannelManagerClient::challenge_thread(const SignedThreadState& u) {
  if (!u.hasSigA) return need_sig("sigA");
  AbiEncoder e;
  e.address(u.state.sender).address(u.state.receiver).u64(u.state.threadId);
  put_thread_balances(e, u.state);
  e.u64(u.state.txCount).string(sig_text(u.sigA));
  return tx(e.finish(selector(sig::kChallengeThread)));
}

Result<Receipt> ChannelManagerClient::empty_thread(const Address& user, const SignedThreadState& initial,
                                                   const Bytes& proof) {
  if (!initial.hasSigA) return need_sig("sigA");
  return tx(encode_thread_initial(sig::kEmptyThread, user, initial.state, proof, initial.sigA));
}

Result<Receipt> ChannelManagerClient::nuke_threads(const Address& user) {
  return tx(AbiEncoder().address(user).finish(selector(sig::kNukeThreads)));
}

Result<Receipt> ChannelManagerClient::hub_contract_withdraw(const U256& wei, const U256& tokens) {
  return tx(AbiEncoder().u256(wei).u256(tokens).finish(selector(sig::kHubContractWithdraw)));
}

Result<Receipt> ChannelManagerClient::fund_reserve(const U256& wei) { return tx({}, wei); }

Result<Receipt> ChannelManagerClient::withdraw_owed() { return tx(AbiEncoder().finish(selector(sig::kWithdrawOwed))); }

Result<Receipt> ChannelManagerClient::withdraw_owed_to(const Address& to) {
  return tx(AbiEncoder().address(to).finish(selector(sig::kWithdrawOwedTo)));
}

Result<OnchainChannel> ChannelManagerClient::channel(const Address& user) {
  OnchainChannel c;
  PPC_TRY(uint64_t at, w_.rpc().block_number());
  const std::string block = hex_quantity(at);
  PPC_TRY(Bytes b, view(AbiEncoder().address(user).finish(selector("getChannelBalances(address)")), block));
  AbiDecoder d(b);
  PPC_TRY(c.weiHub, d.u256(0));
  PPC_TRY(c.weiUser, d.u256(1));
  PPC_TRY(c.weiTotal, d.u256(2));
  PPC_TRY(c.tokenHub, d.u256(3));
  PPC_TRY(c.tokenUser, d.u256(4));
  PPC_TRY(c.tokenTotal, d.u256(5));
  PPC_TRY(Bytes b2, view(AbiEncoder().address(user).finish(selector("getChannelDetails(address)")), block));
  AbiDecoder d2(b2);
  PPC_TRY(c.txCountGlobal, d2.u64(0));
  PPC_TRY(c.txCountChain, d2.u64(1));
  PPC_TRY(c.threadRoot, d2.bytes32(2));
  PPC_TRY(c.threadCount, d2.u64(3));
  PPC_TRY(c.exitInitiator, d2.address(4));
  PPC_TRY(c.channelClosingTime, d2.u64(5));
  PPC_TRY(uint64_t st, d2.u64(6));
  if (st > 2) return make_error(ErrorKind::BadJson, "unknown channel status " + std::to_string(st));
  c.status = static_cast<ChannelStatus>(st);
  return c;
}

Result<OnchainThread> ChannelManagerClient::thread(const Address& sender, const Address& receiver, uint64_t id) {
  PPC_TRY(Bytes b, view(AbiEncoder().address(sender).address(receiver).u64(id).finish(
                       selector("getThread(address,address,uint256)"))));
  AbiDecoder d(b);
  OnchainThread t;
  PPC_TRY(t.weiSender, d.u256(0));
  PPC_TRY(t.weiReceiver, d.u256(1));
  PPC_TRY(t.tokenSender, d.u256(2));
  PPC_TRY(t.tokenReceiver, d.u256(3));
  PPC_TRY(t.txCount, d.u64(4));
  PPC_TRY(t.threadClosingTime, d.u64(5));
  PPC_TRY(t.emptiedSender, d.boolean(6));
  PPC_TRY(t.emptiedReceiver, d.boolean(7));
  return t;
}

static Result<U256> view_u256(ChannelManagerClient& c, RpcClient& rpc, const char* fn,
                              const std::string& block = "latest") {
  PPC_TRY(Bytes b, rpc.eth_call(c.contract(), selector(fn), nullptr, block));
  return AbiDecoder(b).u256(0);
}

Result<U256> ChannelManagerClient::hub_reserve_wei(const std::string& block) {
  return view_u256(*this, w_.rpc(), "getHubReserveWei()", block);
}
Result<U256> ChannelManagerClient::hub_reserve_tokens() { return view_u256(*this, w_.rpc(), "getHubReserveTokens()"); }
Result<U256> ChannelManagerClient::total_channel_wei() { return view_u256(*this, w_.rpc(), "totalChannelWei()"); }
Result<U256> ChannelManagerClient::total_channel_token() { return view_u256(*this, w_.rpc(), "totalChannelToken()"); }
Result<Address> ChannelManagerClient::hub() {
  PPC_TRY(Bytes b, w_.rpc().eth_call(contract_, selector("hub()")));
  return AbiDecoder(b).address(0);
}
Result<uint64_t> ChannelManagerClient::challenge_period() {
  PPC_TRY(Bytes b, w_.rpc().eth_call(contract_, selector("challengePeriod()")));
  return AbiDecoder(b).u64(0);
}

static Result<U256> view_u256_of(RpcClient& rpc, const Address& cm, const char* fn, const Address& who) {
  PPC_TRY(Bytes b, rpc.eth_call(cm, AbiEncoder().address(who).finish(selector(fn))));
  return AbiDecoder(b).u256(0);
}
Result<U256> ChannelManagerClient::owed_wei(const Address& who) {
  return view_u256_of(w_.rpc(), contract_, "owedWei(address)", who);
}
Result<U256> ChannelManagerClient::owed_tokens(const Address& who) {
  return view_u256_of(w_.rpc(), contract_, "owedTokens(address)", who);
}
Result<U256> ChannelManagerClient::total_owed_wei() { return view_u256(*this, w_.rpc(), "totalOwedWei()"); }
Result<U256> ChannelManagerClient::total_owed_tokens() { return view_u256(*this, w_.rpc(), "totalOwedTokens()"); }
Result<uint64_t> ChannelManagerClient::nuke_threads_after(const Address& user) {
  PPC_TRY(Bytes b, w_.rpc().eth_call(contract_, AbiEncoder().address(user).finish(selector("nukeThreadsAfter(address)"))));
  return AbiDecoder(b).u64(0);
}

// ---------------------------------------------------------------- ERC-20

static Result<Receipt> call_token(Wallet& w, const Address& token, const Bytes& data) {
  TxRequest req;
  req.has_to = true;
  req.to = token;
  req.data = data;
  return w.send(req);
}

Result<Receipt> erc20_approve(Wallet& w, const Address& token, const Address& spender, const U256& amount) {
  return call_token(w, token, AbiEncoder().address(spender).u256(amount).finish(selector("approve(address,uint256)")));
}
Result<Receipt> erc20_transfer(Wallet& w, const Address& token, const Address& to, const U256& amount) {
  return call_token(w, token, AbiEncoder().address(to).u256(amount).finish(selector("transfer(address,uint256)")));
}
Result<Receipt> erc20_mint(Wallet& w, const Address& token, const Address& to, const U256& amount) {
  return call_token(w, token, AbiEncoder().address(to).u256(amount).finish(selector("mint(address,uint256)")));
}
Result<U256> erc20_balance(RpcClient& rpc, const Address& token, const Address& who) {
  PPC_TRY(Bytes b, rpc.eth_call(token, AbiEncoder().address(who).finish(selector("balanceOf(address)"))));
  return AbiDecoder(b).u256(0);
}

}  // namespace picopay::chain
