// Connext v1 ChannelState / ThreadState JSON (field names of DESIGN.md §3).
#include <cstring>

#include "picopay/chain/manager.hpp"

namespace picopay::chain {

static Error field_error(const char* f, const std::string& why) {
  return make_error(ErrorKind::BadInput, std::string("state field ") + f + ": " + why);
}

static Result<Address> j_addr(const cJSON* o, const char* f) {
  const cJSON* j = cJSON_GetObjectItemCaseSensitive(o, f);
  if (!cJSON_IsString(j)) return field_error(f, "missing or not a string");
  auto a = parse_address(j->valuestring);
  if (!a) return field_error(f, a.error().message);
  return a;
}

static Result<U256> j_amount(const cJSON* o, const char* f) {
  const cJSON* j = cJSON_GetObjectItemCaseSensitive(o, f);
  if (cJSON_IsNumber(j) && j->valuedouble >= 0 && j->valuedouble < 9007199254740992.0)
    return U256::from_u64(static_cast<uint64_t>(j->valuedouble));
  if (!cJSON_IsString(j)) return field_error(f, "missing or not a decimal string");
  U256 v;
  if (u256_parse_decimal(j->valuestring, std::strlen(j->valuestring), v) != picopay::Status::Ok)
    return field_error(f, "not a decimal amount");
  return v;
}

static Result<uint64_t> j_counter(const cJSON* o, const char* f, bool optional = false) {
  const cJSON* j = cJSON_GetObjectItemCaseSensitive(o, f);
  if (!j && optional) return uint64_t{0};
  if (cJSON_IsNumber(j) && j->valuedouble >= 0 && j->valuedouble <= static_cast<double>(kMaxCounter) &&
      j->valuedouble == static_cast<double>(static_cast<uint64_t>(j->valuedouble)))
    return static_cast<uint64_t>(j->valuedouble);
  if (cJSON_IsString(j)) {
    U256 v;
    if (u256_parse_decimal(j->valuestring, std::strlen(j->valuestring), v) == picopay::Status::Ok && v.fits_u64() &&
        v.low64() <= kMaxCounter)
      return v.low64();
  }
  return field_error(f, "missing or not a counter (0..2^53-1)");
}

static Result<bool> j_sig(const cJSON* o, const char* f, Signature& out) {
  const cJSON* j = cJSON_GetObjectItemCaseSensitive(o, f);
  if (!j || cJSON_IsNull(j) || (cJSON_IsString(j) && j->valuestring[0] == 0)) return false;
  if (!cJSON_IsString(j)) return field_error(f, "not a string");
  if (signature_parse(j->valuestring, std::strlen(j->valuestring), out) != picopay::Status::Ok)
    return field_error(f, "not 0x + 130 hex");
  return true;
}

Result<SignedChannelState> channel_state_from_json(const std::string& text) {
  Json root(cJSON_Parse(text.c_str()));
  if (!root || !cJSON_IsObject(root.get())) return make_error(ErrorKind::BadJson, "channel state is not a JSON object");
  const cJSON* o = root.get();
  SignedChannelState s{};
  s.state = channel_state_zero();
  ChannelState& c = s.state;
  PPC_TRY(c.contractAddress, j_addr(o, "contractAddress"));
  PPC_TRY(c.user, j_addr(o, "user"));
  if (cJSON_HasObjectItem(o, "recipient")) {
    PPC_TRY(c.recipient, j_addr(o, "recipient"));
  } else {
    c.recipient = c.user;
  }
  PPC_TRY(c.balanceWeiHub, j_amount(o, "balanceWeiHub"));
  PPC_TRY(c.balanceWeiUser, j_amount(o, "balanceWeiUser"));
  PPC_TRY(c.balanceTokenHub, j_amount(o, "balanceTokenHub"));
  PPC_TRY(c.balanceTokenUser, j_amount(o, "balanceTokenUser"));
  PPC_TRY(c.pendingDepositWeiHub, j_amount(o, "pendingDepositWeiHub"));
  PPC_TRY(c.pendingDepositWeiUser, j_amount(o, "pendingDepositWeiUser"));
  PPC_TRY(c.pendingDepositTokenHub, j_amount(o, "pendingDepositTokenHub"));
  PPC_TRY(c.pendingDepositTokenUser, j_amount(o, "pendingDepositTokenUser"));
  PPC_TRY(c.pendingWithdrawalWeiHub, j_amount(o, "pendingWithdrawalWeiHub"));
  PPC_TRY(c.pendingWithdrawalWeiUser, j_amount(o, "pendingWithdrawalWeiUser"));
  PPC_TRY(c.pendingWithdrawalTokenHub, j_amount(o, "pendingWithdrawalTokenHub"));
  PPC_TRY(c.pendingWithdrawalTokenUser, j_amount(o, "pendingWithdrawalTokenUser"));
  PPC_TRY(c.txCountGlobal, j_counter(o, "txCountGlobal"));
  PPC_TRY(c.txCountChain, j_counter(o, "txCountChain"));
  const cJSON* tr = cJSON_GetObjectItemCaseSensitive(o, "threadRoot");
  if (tr) {
    auto h = parse_hash(tr, "threadRoot");
    if (!h) return field_error("threadRoot", "not 0x + 64 hex");
    c.threadRoot = *h;
  }
  PPC_TRY(c.threadCount, j_counter(o, "threadCount", true));
  PPC_TRY(c.timeout, j_counter(o, "timeout", true));
  PPC_TRY(s.hasSigUser, j_sig(o, "sigUser", s.sigUser));
  PPC_TRY(s.hasSigHub, j_sig(o, "sigHub", s.sigHub));
  return s;
}

static std::string dec(const U256& v) {
  char buf[kU256DecimalMax];
  (void)u256_to_decimal(v, buf, sizeof buf, nullptr);
  return buf;
}

static std::string eip55(const Address& a) {
  char buf[kAddressTextSize];
  address_to_eip55(a, buf);
  return buf;
}

static std::string sig_hex(const Signature& s) {
  char buf[kSignatureTextSize];
  signature_to_hex(s, buf);
  return buf;
}

std::string channel_state_to_json(const SignedChannelState& s) {
  const ChannelState& c = s.state;
  std::string o = "{";
  auto kv = [&](const char* k, const std::string& v, bool quote = true) {
    if (o.size() > 1) o += ",";
    o += std::string("\"") + k + "\":" + (quote ? "\"" + v + "\"" : v);
  };
  kv("contractAddress", eip55(c.contractAddress));
  kv("user", eip55(c.user));
  kv("recipient", eip55(c.recipient));
  kv("balanceWeiHub", dec(c.balanceWeiHub));
  kv("balanceWeiUser", dec(c.balanceWeiUser));
  kv("balanceTokenHub", dec(c.balanceTokenHub));
  kv("balanceTokenUser", dec(c.balanceTokenUser));
  kv("pendingDepositWeiHub", dec(c.pendingDepositWeiHub));
  kv("pendingDepositWeiUser", dec(c.pendingDepositWeiUser));
  kv("pendingDepositTokenHub", dec(c.pendingDepositTokenHub));
  kv("pendingDepositTokenUser", dec(c.pendingDepositTokenUser));
  kv("pendingWithdrawalWeiHub", dec(c.pendingWithdrawalWeiHub));
  kv("pendingWithdrawalWeiUser", dec(c.pendingWithdrawalWeiUser));
  kv("pendingWithdrawalTokenHub", dec(c.pendingWithdrawalTokenHub));
  kv("pendingWithdrawalTokenUser", dec(c.pendingWithdrawalTokenUser));
  kv("txCountGlobal", std::to_string(c.txCountGlobal), false);
  kv("txCountChain", std::to_string(c.txCountChain), false);
  kv("threadRoot", hash_hex(c.threadRoot));
  kv("threadCount", std::to_string(c.threadCount), false);
  kv("timeout", std::to_string(c.timeout), false);
  if (s.hasSigUser) kv("sigUser", sig_hex(s.sigUser));
  if (s.hasSigHub) kv("sigHub", sig_hex(s.sigHub));
  return o + "}";
}

Result<SignedThreadState> thread_state_from_json(const std::string& text) {
  Json root(cJSON_Parse(text.c_str()));
  if (!root || !cJSON_IsObject(root.get())) return make_error(ErrorKind::BadJson, "thread state is not a JSON object");
  const cJSON* o = root.get();
  SignedThreadState s{};
  s.state = thread_state_zero();
  ThreadState& t = s.state;
  PPC_TRY(t.contractAddress, j_addr(o, "contractAddress"));
  PPC_TRY(t.sender, j_addr(o, "sender"));
  PPC_TRY(t.receiver, j_addr(o, "receiver"));
  PPC_TRY(t.threadId, j_counter(o, "threadId"));
  PPC_TRY(t.balanceWeiSender, j_amount(o, "balanceWeiSender"));
  PPC_TRY(t.balanceWeiReceiver, j_amount(o, "balanceWeiReceiver"));
  PPC_TRY(t.balanceTokenSender, j_amount(o, "balanceTokenSender"));
  PPC_TRY(t.balanceTokenReceiver, j_amount(o, "balanceTokenReceiver"));
  PPC_TRY(t.txCount, j_counter(o, "txCount"));
  PPC_TRY(s.hasSigA, j_sig(o, "sigA", s.sigA));
  return s;
}

std::string thread_state_to_json(const SignedThreadState& s) {
  const ThreadState& t = s.state;
  std::string o = "{\"contractAddress\":\"" + eip55(t.contractAddress) + "\",\"sender\":\"" + eip55(t.sender) +
                  "\",\"receiver\":\"" + eip55(t.receiver) + "\",\"threadId\":" + std::to_string(t.threadId) +
                  ",\"balanceWeiSender\":\"" + dec(t.balanceWeiSender) + "\",\"balanceWeiReceiver\":\"" +
                  dec(t.balanceWeiReceiver) + "\",\"balanceTokenSender\":\"" + dec(t.balanceTokenSender) +
                  "\",\"balanceTokenReceiver\":\"" + dec(t.balanceTokenReceiver) +
                  "\",\"txCount\":" + std::to_string(t.txCount);
  if (s.hasSigA) o += ",\"sigA\":\"" + sig_hex(s.sigA) + "\"";
  return o + "}";
}

}  // namespace picopay::chain
