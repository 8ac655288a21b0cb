// JSON-RPC over HTTP with libcurl; cJSON for parsing.
#include "picopay/chain/rpc.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "picopay/hex.hpp"

namespace picopay::chain {

const char* error_kind_name(ErrorKind k) noexcept {
  switch (k) {
    case ErrorKind::None: return "None";
    case ErrorKind::Transport: return "Transport";
    case ErrorKind::HttpStatus: return "HttpStatus";
    case ErrorKind::BadJson: return "BadJson";
    case ErrorKind::Rpc: return "Rpc";
    case ErrorKind::Reverted: return "Reverted";
    case ErrorKind::Timeout: return "Timeout";
    case ErrorKind::BadInput: return "BadInput";
    case ErrorKind::Signing: return "Signing";
    case ErrorKind::Io: return "Io";
    case ErrorKind::NotFound: return "NotFound";
    case ErrorKind::Reorg: return "Reorg";
  }
  return "Unknown";
}

std::string Error::to_string() const { return std::string(error_kind_name(kind)) + ": " + message; }

std::string hex_bytes(const uint8_t* p, size_t n) {
  std::string s(2 + 2 * n + 1, '\0');
  hex_encode(p, n, s.data(), true);
  s.resize(2 + 2 * n);
  return s;
}

std::string hex_quantity(uint64_t v) { return hex_quantity(U256::from_u64(v)); }

std::string hex_quantity(const U256& v) {
  uint8_t be[32];
  u256_to_be32(v, be);
  static const char* d = "0123456789abcdef";
  std::string s = "0x";
  bool started = false;
  for (int i = 0; i < 64; ++i) {
    int nib = (be[i / 2] >> ((i % 2) ? 0 : 4)) & 0xf;
    if (!started && nib == 0 && i != 63) continue;
    started = true;
    s.push_back(d[nib]);
  }
  return s;
}

std::string address_hex(const Address& a) { return hex_bytes(a.bytes, 20); }
std::string hash_hex(const Hash32& h) { return hex_bytes(h.bytes, 32); }

static Error bad_json(const char* what, const char* why) {
  return make_error(ErrorKind::BadJson, std::string(what) + ": " + why);
}

Result<U256> parse_quantity_u256(const cJSON* j, const char* what) {
  if (!cJSON_IsString(j)) return bad_json(what, "expected a 0x-hex quantity string");
  const char* s = j->valuestring;
  U256 v;
  if (u256_parse_hex(s, std::strlen(s), v) != picopay::Status::Ok) return bad_json(what, "bad hex quantity");
  return v;
}

Result<uint64_t> parse_quantity_u64(const cJSON* j, const char* what) {
  PPC_TRY(U256 v, parse_quantity_u256(j, what));
  if (!v.fits_u64()) return bad_json(what, "quantity exceeds 64 bits");
  return v.low64();
}

Result<std::vector<uint8_t>> parse_data(const cJSON* j, const char* what) {
  if (!cJSON_IsString(j)) return bad_json(what, "expected 0x-hex data");
  const char* s = j->valuestring;
  size_t n = std::strlen(s);
  if (n < 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return bad_json(what, "missing 0x");
  std::vector<uint8_t> out((n - 2) / 2 + 1);
  size_t got = 0;
  if (hex_decode(s + 2, n - 2, out.data(), out.size(), &got) != picopay::Status::Ok)
    return bad_json(what, "bad hex data");
  out.resize(got);
  return out;
}

Result<Hash32> parse_hash(const cJSON* j, const char* what) {
  if (!cJSON_IsString(j)) return bad_json(what, "expected a 32-byte 0x-hex string");
  Hash32 h;
  if (hash32_parse(j->valuestring, std::strlen(j->valuestring), h) != picopay::Status::Ok)
    return bad_json(what, "bad 32-byte hex");
  return h;
}

Result<Address> parse_address(const std::string& s) {
  Address a;
  picopay::Status st = address_parse(s.c_str(), s.size(), a);
  if (st != picopay::Status::Ok)
    return make_error(ErrorKind::BadInput, "bad address '" + s + "': " + status_message(st));
  return a;
}

Result<Address> parse_address_json(const cJSON* j, const char* what) {
  if (!cJSON_IsString(j)) return bad_json(what, "expected an address string");
  // Nodes return lowercase; parse as lowercase to skip the EIP-55 check.
  std::string s = j->valuestring;
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto r = parse_address(s);
  if (!r) return bad_json(what, "bad address");
  return r;
}

Result<U256> parse_amount(const std::string& s) {
  U256 v;
  picopay::Status st = (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
                           ? u256_parse_hex(s.c_str(), s.size(), v)
                           : u256_parse_decimal(s.c_str(), s.size(), v);
  if (st != picopay::Status::Ok)
    return make_error(ErrorKind::BadInput, "bad amount '" + s + "': " + status_message(st));
  return v;
}

// ---------------------------------------------------------------- transport

static size_t write_cb(char* p, size_t size, size_t n, void* ud) {
  static_cast<std::string*>(ud)->append(p, size * n);
  return size * n;
}

static void curl_global() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

RpcClient::RpcClient(std::string url, long timeout_ms) : url_(std::move(url)), timeout_ms_(timeout_ms) {
  curl_global();
  curl_ = curl_easy_init();
}

RpcClient::~RpcClient() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

Result<Json> RpcClient::call(const std::string& method, const std::string& params_json) {
  if (!curl_) return make_error(ErrorKind::Transport, "libcurl could not be initialised");
  CURL* c = static_cast<CURL*>(curl_);
  uint64_t id = next_id_++;
  std::string body = "{\"jsonrpc\":\"2.0\",\"id\":" + std::to_string(id) + ",\"method\":\"" + method +
                     "\",\"params\":" + params_json + "}";
  std::string resp;
  // A read-only call that gets no answer is tried again on a fresh connection, within the
  // same overall timeout: a request lost on a reused keep-alive connection (seen with the
  // ganache dev chain under load: one eth_estimateGas in a few hundred never answered)
  // must not fail a deposit. Calls that change state are never repeated here.
  const bool retryable = method != "eth_sendRawTransaction" && method != "eth_sendTransaction" &&
                         method.rfind("evm_", 0) != 0 && method.rfind("miner_", 0) != 0;
  const int attempts = retryable ? 3 : 1;
  const long per_attempt_ms = retryable ? std::max(5000L, timeout_ms_ / attempts) : timeout_ms_;
  CURLcode rc = CURLE_OK;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    resp.clear();
    curl_easy_reset(c);
    struct curl_slist* hdrs = curl_slist_append(nullptr, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, per_attempt_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (attempt > 0) curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
    rc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    if (rc == CURLE_OK || rc == CURLE_COULDNT_CONNECT) break;  // answered, or nobody listening
  }
  if (rc != CURLE_OK)
    return make_error(ErrorKind::Transport, method + " to " + url_ + ": " + curl_easy_strerror(rc), rc);
  long http = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
  if (http < 200 || http >= 300)
    return make_error(ErrorKind::HttpStatus, method + ": HTTP " + std::to_string(http) + " " + resp.substr(0, 200),
                      http);
  Json root(cJSON_Parse(resp.c_str()));
  if (!root || !cJSON_IsObject(root.get()))
    return make_error(ErrorKind::BadJson, method + ": response is not a JSON object: " + resp.substr(0, 200));
  const cJSON* err = cJSON_GetObjectItemCaseSensitive(root.get(), "error");
  if (err && !cJSON_IsNull(err)) {
    const cJSON* msg = cJSON_GetObjectItemCaseSensitive(err, "message");
    const cJSON* code = cJSON_GetObjectItemCaseSensitive(err, "code");
    std::string m = cJSON_IsString(msg) ? msg->valuestring : "(no message)";
    // JSON-RPC error codes are small integers; anything else (1e300, a fraction) is kept as 0
    // rather than cast (a float-to-integer cast out of range is undefined behaviour).
    const double cd = cJSON_IsNumber(code) ? code->valuedouble : 0;
    const long codev = cd >= -2147483648.0 && cd <= 2147483647.0 ? static_cast<long>(cd) : 0;
    bool revert = m.find("revert") != std::string::npos;
    return make_error(revert ? ErrorKind::Reverted : ErrorKind::Rpc, method + ": " + m, codev);
  }
  if (!cJSON_HasObjectItem(root.get(), "result"))
    return make_error(ErrorKind::BadJson, method + ": response has neither result nor error");
  return Json(cJSON_DetachItemFromObjectCaseSensitive(root.get(), "result"));
}

// ---------------------------------------------------------------- wrappers

Result<uint64_t> RpcClient::chain_id() {
  PPC_TRY(Json r, call("eth_chainId", "[]"));
  return parse_quantity_u64(r.get(), "eth_chainId");
}

Result<uint64_t> RpcClient::block_number() {
  PPC_TRY(Json r, call("eth_blockNumber", "[]"));
  return parse_quantity_u64(r.get(), "eth_blockNumber");
}

Result<U256> RpcClient::balance(const Address& a, const std::string& block) {
  PPC_TRY(Json r, call("eth_getBalance", "[\"" + address_hex(a) + "\",\"" + block + "\"]"));
  return parse_quantity_u256(r.get(), "eth_getBalance");
}

Result<uint64_t> RpcClient::transaction_count(const Address& a, const std::string& block) {
  PPC_TRY(Json r, call("eth_getTransactionCount", "[\"" + address_hex(a) + "\",\"" + block + "\"]"));
  return parse_quantity_u64(r.get(), "eth_getTransactionCount");
}

Result<Block> RpcClient::block_by_number(const std::string& tag) {
  PPC_TRY(Json r, call("eth_getBlockByNumber", "[\"" + tag + "\",false]"));
  if (cJSON_IsNull(r.get())) return make_error(ErrorKind::NotFound, "block " + tag + " not found");
  Block b;
  PPC_TRY(b.number, parse_quantity_u64(cJSON_GetObjectItemCaseSensitive(r.get(), "number"), "block.number"));
  PPC_TRY(b.hash, parse_hash(cJSON_GetObjectItemCaseSensitive(r.get(), "hash"), "block.hash"));
  PPC_TRY(b.parentHash, parse_hash(cJSON_GetObjectItemCaseSensitive(r.get(), "parentHash"), "block.parentHash"));
  PPC_TRY(b.timestamp, parse_quantity_u64(cJSON_GetObjectItemCaseSensitive(r.get(), "timestamp"), "block.timestamp"));
  const cJSON* bf = cJSON_GetObjectItemCaseSensitive(r.get(), "baseFeePerGas");
  if (bf) { PPC_TRY(b.baseFeePerGas, parse_quantity_u256(bf, "block.baseFeePerGas")); }
  return b;
}

Result<Block> RpcClient::block_by_number(uint64_t n) { return block_by_number(hex_quantity(n)); }

Result<U256> RpcClient::max_priority_fee() {
  auto r = call("eth_maxPriorityFeePerGas", "[]");
  if (!r) {
    if (r.error().kind == ErrorKind::Rpc) return U256::from_u64(1000000000ULL);
    return r.error();
  }
  return parse_quantity_u256(r->get(), "eth_maxPriorityFeePerGas");
}

static std::string call_object(const Address* from, const Address* to, const U256& value,
                               const std::vector<uint8_t>& data) {
  std::string o = "{";
  if (from) o += "\"from\":\"" + address_hex(*from) + "\",";
  if (to) o += "\"to\":\"" + address_hex(*to) + "\",";
  if (!value.is_zero()) o += "\"value\":\"" + hex_quantity(value) + "\",";
  o += "\"data\":\"" + hex_bytes(data) + "\"}";
  return o;
}

Result<uint64_t> RpcClient::estimate_gas(const Address& from, const Address* to, const U256& value,
                                         const std::vector<uint8_t>& data) {
  PPC_TRY(Json r, call("eth_estimateGas", "[" + call_object(&from, to, value, data) + "]"));
  return parse_quantity_u64(r.get(), "eth_estimateGas");
}

Result<std::vector<uint8_t>> RpcClient::eth_call(const Address& to, const std::vector<uint8_t>& data,
                                                 const Address* from, const std::string& block) {
  PPC_TRY(Json r, call("eth_call", "[" + call_object(from, &to, U256::zero(), data) + ",\"" + block + "\"]"));
  return parse_data(r.get(), "eth_call");
}

Result<Hash32> RpcClient::send_raw_transaction(const std::vector<uint8_t>& raw) {
  PPC_TRY(Json r, call("eth_sendRawTransaction", "[\"" + hex_bytes(raw) + "\"]"));
  return parse_hash(r.get(), "eth_sendRawTransaction");
}

Result<Log> parse_log(const cJSON* j) {
  Log l;
  PPC_TRY(l.address, parse_address_json(cJSON_GetObjectItemCaseSensitive(j, "address"), "log.address"));
  const cJSON* topics = cJSON_GetObjectItemCaseSensitive(j, "topics");
  if (!cJSON_IsArray(topics)) return bad_json("log.topics", "expected an array");
  const cJSON* t;
  cJSON_ArrayForEach(t, topics) {
    PPC_TRY(Hash32 h, parse_hash(t, "log.topic"));
    l.topics.push_back(h);
  }
  PPC_TRY(l.data, parse_data(cJSON_GetObjectItemCaseSensitive(j, "data"), "log.data"));
  PPC_TRY(l.blockNumber, parse_quantity_u64(cJSON_GetObjectItemCaseSensitive(j, "blockNumber"), "log.blockNumber"));
  PPC_TRY(l.blockHash, parse_hash(cJSON_GetObjectItemCaseSensitive(j, "blockHash"), "log.blockHash"));
  PPC_TRY(l.transactionHash,
          parse_hash(cJSON_GetObjectItemCaseSensitive(j, "transactionHash"), "log.transactionHash"));
  PPC_TRY(l.logIndex, parse_quantity_u64(cJSON_GetObjectItemCaseSensitive(j, "logIndex"), "log.logIndex"));
  return l;
}

Result<Receipt> RpcClient::receipt(const Hash32& tx) {
  PPC_TRY(Json r, call("eth_getTransactionReceipt", "[\"" + hash_hex(tx) + "\"]"));
  if (cJSON_IsNull(r.get())) return make_error(ErrorKind::NotFound, "no receipt yet for " + hash_hex(tx));
  const cJSON* o = r.get();
  Receipt rc;
  rc.transactionHash = tx;
  PPC_TRY(rc.blockNumber, parse_quantity_u64(cJSON_GetObjectItemCaseSensitive(o, "blockNumber"), "receipt.blockNumber"));
  PPC_TRY(rc.blockHash, parse_hash(cJSON_GetObjectItemCaseSensitive(o, "blockHash"), "receipt.blockHash"));
  PPC_TRY(uint64_t st, parse_quantity_u64(cJSON_GetObjectItemCaseSensitive(o, "status"), "receipt.status"));
  rc.status = st == 1;
  PPC_TRY(rc.gasUsed, parse_quantity_u64(cJSON_GetObjectItemCaseSensitive(o, "gasUsed"), "receipt.gasUsed"));
  const cJSON* egp = cJSON_GetObjectItemCaseSensitive(o, "effectiveGasPrice");
  if (egp) { PPC_TRY(rc.effectiveGasPrice, parse_quantity_u256(egp, "receipt.effectiveGasPrice")); }
  const cJSON* ca = cJSON_GetObjectItemCaseSensitive(o, "contractAddress");
  if (ca && cJSON_IsString(ca)) {
    PPC_TRY(rc.contractAddress, parse_address_json(ca, "receipt.contractAddress"));
    rc.hasContractAddress = true;
  }
  const cJSON* logs = cJSON_GetObjectItemCaseSensitive(o, "logs");
  const cJSON* l;
  cJSON_ArrayForEach(l, logs) {
    PPC_TRY(Log lg, parse_log(l));
    rc.logs.push_back(std::move(lg));
  }
  return rc;
}

Result<std::vector<Log>> RpcClient::logs(const Address& contract, uint64_t from_block, uint64_t to_block) {
  PPC_TRY(Json r, call("eth_getLogs", "[{\"address\":\"" + address_hex(contract) + "\",\"fromBlock\":\"" +
                                          hex_quantity(from_block) + "\",\"toBlock\":\"" +
                                          hex_quantity(to_block) + "\"}]"));
  if (!cJSON_IsArray(r.get())) return bad_json("eth_getLogs", "expected an array");
  std::vector<Log> out;
  const cJSON* l;
  cJSON_ArrayForEach(l, r.get()) {
    PPC_TRY(Log lg, parse_log(l));
    out.push_back(std::move(lg));
  }
  return out;
}

Result<std::vector<uint8_t>> RpcClient::code(const Address& a) {
  PPC_TRY(Json r, call("eth_getCode", "[\"" + address_hex(a) + "\",\"latest\"]"));
  return parse_data(r.get(), "eth_getCode");
}

Status RpcClient::increase_time(uint64_t seconds) {
  PPC_TRY(Json r, call("evm_increaseTime", "[" + std::to_string(seconds) + "]"));
  (void)r;
  return mine();
}

Status RpcClient::mine() {
  PPC_TRY(Json r, call("evm_mine", "[]"));
  (void)r;
  return ok_status();
}

Result<std::string> RpcClient::snapshot() {
  PPC_TRY(Json r, call("evm_snapshot", "[]"));
  if (!cJSON_IsString(r.get())) return bad_json("evm_snapshot", "expected a string id");
  return std::string(r->valuestring);
}

Status RpcClient::revert_to(const std::string& id) {
  PPC_TRY(Json r, call("evm_revert", "[\"" + id + "\"]"));
  if (!cJSON_IsTrue(r.get())) return make_error(ErrorKind::Rpc, "evm_revert " + id + " refused");
  return ok_status();
}

}  // namespace picopay::chain
