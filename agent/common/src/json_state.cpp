#include "picopay/agent/json_state.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace picopay::json {

namespace {

struct Reader {
  const cJSON* obj;
  std::string& err;
  bool ok = true;

  bool fail(const char* field, const std::string& why) {
    if (ok) err = std::string("field \"") + field + "\": " + why;
    ok = false;
    return false;
  }
  const cJSON* get(const char* field, bool required) {
    const cJSON* it = cJSON_GetObjectItemCaseSensitive(obj, field);
    if ((it == nullptr || cJSON_IsNull(it)) && required) {
      fail(field, "missing");
      return nullptr;
    }
    return (it == nullptr || cJSON_IsNull(it)) ? nullptr : it;
  }
  const char* string(const char* field, bool required = true) {
    const cJSON* it = get(field, required);
    if (it == nullptr) return nullptr;
    if (!cJSON_IsString(it) || it->valuestring == nullptr) {
      fail(field, "must be a string");
      return nullptr;
    }
    return it->valuestring;
  }
  void address(const char* field, Address& out) {
    const char* s = string(field);
    if (s == nullptr) return;
    const Status st = address_parse(s, std::strlen(s), out);
    if (st == Status::BadChecksum) fail(field, "EIP-55 checksum mismatch");
    else if (st != Status::Ok) fail(field, "must be 0x followed by 40 hex digits");
  }
  void amount(const char* field, U256& out) {
    const cJSON* it = get(field, true);
    if (it == nullptr) return;
    if (!cJSON_IsString(it)) {
      fail(field, "amounts must be decimal strings");
      return;
    }
    const Status st = u256_parse_decimal(it->valuestring, std::strlen(it->valuestring), out);
    if (st == Status::Overflow) fail(field, "exceeds 2^256-1");
    else if (st != Status::Ok) fail(field, "must be a decimal string (digits only, no leading zero)");
  }
  void counter(const char* field, uint64_t& out) {
    const cJSON* it = get(field, true);
    if (it == nullptr) return;
    if (!cJSON_IsNumber(it)) {
      fail(field, "must be a JSON number");
      return;
    }
    const double d = it->valuedouble;
    if (!(d >= 0) || d > 9007199254740991.0 || std::floor(d) != d) {
      fail(field, "must be an integer from 0 to 2^53-1");
      return;
    }
    out = static_cast<uint64_t>(d);
  }
  void hash(const char* field, Hash32& out) {
    const char* s = string(field);
    if (s == nullptr) return;
    if (hash32_parse(s, std::strlen(s), out) != Status::Ok) fail(field, "must be 0x followed by 64 hex digits");
  }
  bool signature(const char* field, Signature& out) {
    const char* s = string(field, false);
    if (s == nullptr) return false;
    const Status st = signature_parse(s, std::strlen(s), out);
    if (st == Status::BadRecoveryId) return fail(field, "v must be 0, 1, 27 or 28");
    if (st != Status::Ok) return fail(field, "must be 0x followed by 130 hex digits");
    return true;
  }
  void party(const char* field, Party& out) {
    const char* s = string(field);
    if (s == nullptr) return;
    if (std::strcmp(s, "hub") == 0) out = Party::Hub;
    else if (std::strcmp(s, "user") == 0) out = Party::User;
    else fail(field, "must be \"hub\" or \"user\"");
  }
};

void add_amount(cJSON* o, const char* k, const U256& v) { cJSON_AddStringToObject(o, k, amount_text(v).c_str()); }
void add_counter(cJSON* o, const char* k, uint64_t v) {
  // Printed exactly (cJSON's number printing goes through double).
  cJSON_AddItemToObject(o, k, cJSON_CreateRaw(std::to_string(v).c_str()));
}
void add_address(cJSON* o, const char* k, const Address& a) { cJSON_AddStringToObject(o, k, address_text(a).c_str()); }
void add_hash(cJSON* o, const char* k, const Hash32& h) { cJSON_AddStringToObject(o, k, hash_text(h).c_str()); }
void add_sig(cJSON* o, const char* k, const Signature& s) { cJSON_AddStringToObject(o, k, signature_text(s).c_str()); }
const char* party_text(Party p) { return p == Party::Hub ? "hub" : "user"; }

}  // namespace

std::string address_text(const Address& a) {
  char b[kAddressTextSize];
  address_to_eip55(a, b);
  return b;
}
std::string hash_text(const Hash32& h) {
  char b[kHash32TextSize];
  hash32_to_hex(h, b);
  return b;
}
std::string signature_text(const Signature& s) {
  char b[kSignatureTextSize];
  signature_to_hex(s, b);
  return b;
}
std::string amount_text(const U256& v) {
  char b[kU256DecimalMax];
  size_t n = 0;
  (void)u256_to_decimal(v, b, sizeof b, &n);
  return b;
}

bool channel_from_json(const cJSON* obj, SignedChannelState& out, std::string& err) {
  if (!cJSON_IsObject(obj)) {
    err = "channel state must be a JSON object";
    return false;
  }
  Reader r{obj, err};
  SignedChannelState c;
  std::memset(&c, 0, sizeof c);
  ChannelState& s = c.state;
  r.address("contractAddress", s.contractAddress);
  r.address("user", s.user);
  r.address("recipient", s.recipient);
  r.amount("balanceWeiHub", s.balanceWeiHub);
  r.amount("balanceWeiUser", s.balanceWeiUser);
  r.amount("balanceTokenHub", s.balanceTokenHub);
  r.amount("balanceTokenUser", s.balanceTokenUser);
  r.amount("pendingDepositWeiHub", s.pendingDepositWeiHub);
  r.amount("pendingDepositWeiUser", s.pendingDepositWeiUser);
  r.amount("pendingDepositTokenHub", s.pendingDepositTokenHub);
  r.amount("pendingDepositTokenUser", s.pendingDepositTokenUser);
  r.amount("pendingWithdrawalWeiHub", s.pendingWithdrawalWeiHub);
  r.amount("pendingWithdrawalWeiUser", s.pendingWithdrawalWeiUser);
  r.amount("pendingWithdrawalTokenHub", s.pendingWithdrawalTokenHub);
  r.amount("pendingWithdrawalTokenUser", s.pendingWithdrawalTokenUser);
  r.counter("txCountGlobal", s.txCountGlobal);
  r.counter("txCountChain", s.txCountChain);
  r.hash("threadRoot", s.threadRoot);
  r.counter("threadCount", s.threadCount);
  r.counter("timeout", s.timeout);
  c.hasSigUser = r.signature("sigUser", c.sigUser);
  c.hasSigHub = r.signature("sigHub", c.sigHub);
  if (!r.ok) return false;
  out = c;
  return true;
}

cJSON* channel_to_json(const SignedChannelState& c) {
  const ChannelState& s = c.state;
  cJSON* o = cJSON_CreateObject();
  add_address(o, "contractAddress", s.contractAddress);
  add_address(o, "user", s.user);
  add_address(o, "recipient", s.recipient);
  add_amount(o, "balanceWeiHub", s.balanceWeiHub);
  add_amount(o, "balanceWeiUser", s.balanceWeiUser);
  add_amount(o, "balanceTokenHub", s.balanceTokenHub);
  add_amount(o, "balanceTokenUser", s.balanceTokenUser);
  add_amount(o, "pendingDepositWeiHub", s.pendingDepositWeiHub);
  add_amount(o, "pendingDepositWeiUser", s.pendingDepositWeiUser);
  add_amount(o, "pendingDepositTokenHub", s.pendingDepositTokenHub);
  add_amount(o, "pendingDepositTokenUser", s.pendingDepositTokenUser);
  add_amount(o, "pendingWithdrawalWeiHub", s.pendingWithdrawalWeiHub);
  add_amount(o, "pendingWithdrawalWeiUser", s.pendingWithdrawalWeiUser);
  add_amount(o, "pendingWithdrawalTokenHub", s.pendingWithdrawalTokenHub);
  add_amount(o, "pendingWithdrawalTokenUser", s.pendingWithdrawalTokenUser);
  add_counter(o, "txCountGlobal", s.txCountGlobal);
  add_counter(o, "txCountChain", s.txCountChain);
  add_hash(o, "threadRoot", s.threadRoot);
  add_counter(o, "threadCount", s.threadCount);
  add_counter(o, "timeout", s.timeout);
  if (c.hasSigUser) add_sig(o, "sigUser", c.sigUser);
  if (c.hasSigHub) add_sig(o, "sigHub", c.sigHub);
  return o;
}

bool thread_from_json(const cJSON* obj, SignedThreadState& out, std::string& err) {
  if (!cJSON_IsObject(obj)) {
    err = "thread state must be a JSON object";
    return false;
  }
  Reader r{obj, err};
  SignedThreadState t;
  std::memset(&t, 0, sizeof t);
  ThreadState& s = t.state;
  r.address("contractAddress", s.contractAddress);
  r.address("sender", s.sender);
  r.address("receiver", s.receiver);
  r.counter("threadId", s.threadId);
  r.amount("balanceWeiSender", s.balanceWeiSender);
  r.amount("balanceWeiReceiver", s.balanceWeiReceiver);
  r.amount("balanceTokenSender", s.balanceTokenSender);
  r.amount("balanceTokenReceiver", s.balanceTokenReceiver);
  r.counter("txCount", s.txCount);
  t.hasSigA = r.signature("sigA", t.sigA);
  if (!r.ok) return false;
  out = t;
  return true;
}

cJSON* thread_to_json(const SignedThreadState& t) {
  const ThreadState& s = t.state;
  cJSON* o = cJSON_CreateObject();
  add_address(o, "contractAddress", s.contractAddress);
  add_address(o, "sender", s.sender);
  add_address(o, "receiver", s.receiver);
  add_counter(o, "threadId", s.threadId);
  add_amount(o, "balanceWeiSender", s.balanceWeiSender);
  add_amount(o, "balanceWeiReceiver", s.balanceWeiReceiver);
  add_amount(o, "balanceTokenSender", s.balanceTokenSender);
  add_amount(o, "balanceTokenReceiver", s.balanceTokenReceiver);
  add_counter(o, "txCount", s.txCount);
  if (t.hasSigA) add_sig(o, "sigA", t.sigA);
  return o;
}

bool update_from_json(const cJSON* obj, ChannelUpdate& out, std::string& err) {
  if (!cJSON_IsObject(obj)) {
    err = "update must be a JSON object";
    return false;
  }
  Reader top{obj, err};
  const char* reason = top.string("reason");
  if (!top.ok) return false;
  UpdateReason code;
  if (update_reason_parse(reason, std::strlen(reason), code) != Status::Ok) {
    err = std::string("field \"reason\": unknown update reason \"") + reason + "\"";
    return false;
  }
  ChannelUpdate u = channel_update_make(code);
  top.counter("txCount", u.txCountGlobal);
  if (!top.signature("sig", u.sig) && top.ok) top.fail("sig", "missing");
  const cJSON* args = cJSON_GetObjectItemCaseSensitive(obj, "args");
  if (!top.ok) return false;
  if (!cJSON_IsObject(args)) {
    err = "field \"args\": must be an object";
    return false;
  }
  Reader r{args, err};
  switch (code) {
    case UpdateReason::Payment:
      r.party("recipient", u.payment.recipient);
      r.amount("amountWei", u.payment.amountWei);
      r.amount("amountToken", u.payment.amountToken);
      break;
    case UpdateReason::Exchange:
      r.party("seller", u.exchange.seller);
      r.amount("weiToSell", u.exchange.weiToSell);
      r.amount("tokensToSell", u.exchange.tokensToSell);
      r.amount("exchangeRate", u.exchange.exchangeRate);
      break;
    case UpdateReason::ProposePendingDeposit:
      r.amount("depositWeiHub", u.deposit.depositWeiHub);
      r.amount("depositWeiUser", u.deposit.depositWeiUser);
      r.amount("depositTokenHub", u.deposit.depositTokenHub);
      r.amount("depositTokenUser", u.deposit.depositTokenUser);
      r.counter("timeout", u.deposit.timeout);
      break;
    case UpdateReason::ProposePendingWithdrawal:
      r.address("recipient", u.withdrawal.recipient);
      r.amount("withdrawalWeiHub", u.withdrawal.withdrawalWeiHub);
      r.amount("withdrawalWeiUser", u.withdrawal.withdrawalWeiUser);
      r.amount("withdrawalTokenHub", u.withdrawal.withdrawalTokenHub);
      r.amount("withdrawalTokenUser", u.withdrawal.withdrawalTokenUser);
      r.counter("timeout", u.withdrawal.timeout);
      break;
    case UpdateReason::ConfirmPending:
    case UpdateReason::EmptyChannel:
      r.hash("transactionHash", u.chainTx.transactionHash);
      break;
    case UpdateReason::Invalidation:
      r.counter("previousValidTxCount", u.invalidation.previousValidTxCount);
      r.counter("lastInvalidTxCount", u.invalidation.lastInvalidTxCount);
      break;
    case UpdateReason::OpenThread:
    case UpdateReason::CloseThread: {
      const cJSON* t = cJSON_GetObjectItemCaseSensitive(args, "thread");
      if (!thread_from_json(t, u.thread.thread, err)) {
        err = "args.thread: " + err;
        return false;
      }
      if (!u.thread.thread.hasSigA) {
        err = "args.thread: sigA is required";
        return false;
      }
      break;
    }
  }
  if (!r.ok) {
    err = "args: " + err;
    return false;
  }
  out = u;
  return true;
}

cJSON* update_to_json(const ChannelUpdate& u) {
  cJSON* o = cJSON_CreateObject();
  const char* name = update_reason_name(u.reason);
  cJSON_AddStringToObject(o, "reason", name ? name : "Unknown");
  add_counter(o, "txCount", u.txCountGlobal);
  cJSON* a = cJSON_AddObjectToObject(o, "args");
  switch (u.reason) {
    case UpdateReason::Payment:
      cJSON_AddStringToObject(a, "recipient", party_text(u.payment.recipient));
      add_amount(a, "amountWei", u.payment.amountWei);
      add_amount(a, "amountToken", u.payment.amountToken);
      break;
    case UpdateReason::Exchange:
      cJSON_AddStringToObject(a, "seller", party_text(u.exchange.seller));
      add_amount(a, "weiToSell", u.exchange.weiToSell);
      add_amount(a, "tokensToSell", u.exchange.tokensToSell);
      add_amount(a, "exchangeRate", u.exchange.exchangeRate);
      break;
    case UpdateReason::ProposePendingDeposit:
      add_amount(a, "depositWeiHub", u.deposit.depositWeiHub);
      add_amount(a, "depositWeiUser", u.deposit.depositWeiUser);
      add_amount(a, "depositTokenHub", u.deposit.depositTokenHub);
      add_amount(a, "depositTokenUser", u.deposit.depositTokenUser);
      add_counter(a, "timeout", u.deposit.timeout);
      break;
    case UpdateReason::ProposePendingWithdrawal:
      add_address(a, "recipient", u.withdrawal.recipient);
      add_amount(a, "withdrawalWeiHub", u.withdrawal.withdrawalWeiHub);
      add_amount(a, "withdrawalWeiUser", u.withdrawal.withdrawalWeiUser);
      add_amount(a, "withdrawalTokenHub", u.withdrawal.withdrawalTokenHub);
      add_amount(a, "withdrawalTokenUser", u.withdrawal.withdrawalTokenUser);
      add_counter(a, "timeout", u.withdrawal.timeout);
      break;
    case UpdateReason::ConfirmPending:
    case UpdateReason::EmptyChannel:
      add_hash(a, "transactionHash", u.chainTx.transactionHash);
      break;
    case UpdateReason::Invalidation:
      add_counter(a, "previousValidTxCount", u.invalidation.previousValidTxCount);
      add_counter(a, "lastInvalidTxCount", u.invalidation.lastInvalidTxCount);
      break;
    case UpdateReason::OpenThread:
    case UpdateReason::CloseThread:
      cJSON_AddItemToObject(a, "thread", thread_to_json(u.thread.thread));
      break;
  }
  add_sig(o, "sig", u.sig);
  return o;
}

cJSON* parse_document(const std::string& text, std::string& err) {
  const char* end = nullptr;
  cJSON* doc = cJSON_ParseWithLengthOpts(text.data(), text.size(), &end, false);
  if (doc == nullptr) {
    const size_t at = end ? static_cast<size_t>(end - text.data()) : 0;
    err = "invalid JSON near byte " + std::to_string(at);
    return nullptr;
  }
  // Only whitespace may follow the document.
  for (const char* p = end; p && p < text.data() + text.size(); ++p) {
    if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
      cJSON_Delete(doc);
      err = "unexpected data after the JSON document";
      return nullptr;
    }
  }
  return doc;
}

std::string print(const cJSON* obj, bool pretty) {
  char* s = pretty ? cJSON_Print(obj) : cJSON_PrintUnformatted(obj);
  std::string out = s ? s : "";
  cJSON_free(s);
  return out;
}

}  // namespace picopay::json
