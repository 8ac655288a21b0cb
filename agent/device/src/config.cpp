#include <cjson/cJSON.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "picopay/agent/secret_file.hpp"
#include "picopay/device/agent.hpp"

namespace picopay::device {
namespace {

bool str(const cJSON* o, const char* k, std::string& v) {
  const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsString(n)) return false;
  v = n->valuestring;
  return true;
}

}  // namespace

bool parse_address_text(const std::string& s, Address& a) {
  return address_parse(s.c_str(), s.size(), a) == Status::Ok;
}

bool parse_amount_text(const std::string& s, U256& v) {
  return u256_parse_decimal(s.c_str(), s.size(), v) == Status::Ok;
}

bool config_load_file(const std::string& path, Config& cfg, std::string& err) {
  std::ifstream f(path);
  if (!f) {
    err = "cannot read config " + path;
    return false;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  std::string text = ss.str();
  cJSON* o = cJSON_ParseWithLength(text.data(), text.size());
  if (!o || !cJSON_IsObject(o)) {
    cJSON_Delete(o);
    err = "config " + path + ": not a JSON object";
    return false;
  }
  bool ok = true;
  auto fail = [&](const std::string& m) {
    if (ok) err = "config " + path + ": " + m;
    ok = false;
  };
  std::string s;
  str(o, "name", cfg.name);
  str(o, "stateDir", cfg.state_dir);
  if (const cJSON* b = cJSON_GetObjectItemCaseSensitive(o, "broker"); cJSON_IsObject(b)) {
    str(b, "host", cfg.host);
    if (const cJSON* p = cJSON_GetObjectItemCaseSensitive(b, "port"); cJSON_IsNumber(p)) cfg.port = p->valueint;
    str(b, "username", cfg.username);
    str(b, "password", cfg.password);
    str(b, "passwordFile", cfg.password_file);
    str(b, "tlsCa", cfg.tls_ca);
  }
  if (str(o, "hub", s)) {
    if (!parse_address_text(s, cfg.hub)) fail("hub is not an address");
    cfg.has_hub = true;
  }
  if (str(o, "contract", s)) {
    if (!parse_address_text(s, cfg.contract)) fail("contract is not an address");
    cfg.has_contract = true;
  }
  str(o, "privateKey", cfg.key_hex);
  str(o, "keyFile", cfg.key_file);
  str(o, "rpc", cfg.rpc_url);
  if (str(o, "role", s)) {
    cfg.payer = s == "payer" || s == "both";
    cfg.payee = s == "payee" || s == "both";
    if (!cfg.payer && !cfg.payee) fail("role must be payer, payee or both");
  }
  if (const cJSON* m = cJSON_GetObjectItemCaseSensitive(o, "meter"); cJSON_IsObject(m)) {
    str(m, "source", cfg.meter);
    str(m, "topic", cfg.meter_topic);
  }
  if (str(o, "pricePerUnitWei", s) && !parse_amount_text(s, cfg.price_wei)) fail("pricePerUnitWei: decimal wei");
  if (const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, "minUnitsPerPayment")) {
    // A whole number of units, 1 .. 2^53 (checked before the cast: 1e300 does not fit).
    if (!cJSON_IsNumber(n) || !(n->valuedouble >= 1 && n->valuedouble <= 9007199254740992.0) ||
        static_cast<double>(static_cast<uint64_t>(n->valuedouble)) != n->valuedouble)
      fail("minUnitsPerPayment: a whole number of units, 1 or more");
    else
      cfg.min_units = static_cast<uint64_t>(n->valuedouble);
  }
  if (str(o, "depositWei", s) && !parse_amount_text(s, cfg.deposit_wei)) fail("depositWei: decimal wei");
  if (str(o, "payTo", s)) {
    if (!parse_address_text(s, cfg.pay_to)) fail("payTo is not an address");
    cfg.has_pay_to = true;
  }
  if (str(o, "threadLockWei", s) && !parse_amount_text(s, cfg.thread_lock_wei)) fail("threadLockWei: decimal wei");
  if (str(o, "token", s)) {
    if (!parse_address_text(s, cfg.token)) fail("token is not an address");
    cfg.has_token = true;
  }
  str(o, "pricePerUnit", cfg.price_text);
  str(o, "deposit", cfg.deposit_text);
  str(o, "threadLock", cfg.thread_lock_text);
  str(o, "sellPrice", cfg.sell_price_text);
  str(o, "maxPrice", cfg.max_price_text);
  if (const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, "priceValiditySeconds"); cJSON_IsNumber(n))
    cfg.price_validity_s = n->valuedouble >= 60 && n->valuedouble < 3.2e7 ? static_cast<uint64_t>(n->valuedouble) : 60;
  if (const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, "serveMarginUnits"); cJSON_IsNumber(n))
    cfg.serve_margin_units = n->valuedouble >= 0 && n->valuedouble < 9e15 ? static_cast<uint64_t>(n->valuedouble) : 0;
  if (const cJSON* x = cJSON_GetObjectItemCaseSensitive(o, "exchange"); cJSON_IsObject(x)) {
    str(x, "sell", cfg.exchange_text);
    str(x, "referenceRate", cfg.exchange_reference);
    if (const cJSON* n = cJSON_GetObjectItemCaseSensitive(x, "maxRateAgeSeconds"); cJSON_IsNumber(n))
      cfg.exchange_max_age_s = n->valuedouble >= 0 && n->valuedouble < 3.2e9 ? static_cast<uint64_t>(n->valuedouble) : 0;
    if (const cJSON* n = cJSON_GetObjectItemCaseSensitive(x, "maxDeviationBps"); cJSON_IsNumber(n))
      cfg.exchange_max_deviation_bps = n->valuedouble >= 0 && n->valuedouble <= 10000 ? static_cast<uint32_t>(n->valuedouble) : 0;
  }
  if (const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, "closeOnExit"); cJSON_IsBool(n))
    cfg.close_on_exit = cJSON_IsTrue(n);
  if (const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, "exitOnEof"); cJSON_IsBool(n))
    cfg.exit_on_eof = cJSON_IsTrue(n);
  if (const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, "statusIntervalMs"); cJSON_IsNumber(n))
    cfg.status_interval_ms = n->valueint;
  if (const cJSON* t = cJSON_GetObjectItemCaseSensitive(o, "tower")) {
    // {"address": "0x..", "intervalMs": 1000} (docs/tower.md)
    std::string ta;
    if (!cJSON_IsObject(t) || !str(t, "address", ta) || !parse_address_text(ta, cfg.tower))
      fail("tower: {\"address\": the tower's 0x address, \"intervalMs\": N}");
    else if (cfg.tower.is_zero())
      fail("tower.address is the zero address: put your picopay-tower's address there, or remove \"tower\"");
    else
      cfg.has_tower = true;
    if (const cJSON* n = cJSON_GetObjectItemCaseSensitive(t, "intervalMs")) {
      if (!cJSON_IsNumber(n) || !(n->valuedouble >= 1 && n->valuedouble <= 3600000.0))
        fail("tower.intervalMs: milliseconds, 1 .. 3600000");
      else
        cfg.tower_interval_ms = static_cast<uint64_t>(n->valuedouble);
    }
  }
  const cJSON* b = cJSON_GetObjectItemCaseSensitive(o, "broker");
  const bool holds_secret = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "privateKey")) ||
                            (cJSON_IsObject(b) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(b, "password")));
  cJSON_Delete(o);
  std::string perr;
  if (ok && holds_secret &&
      !agent::secret_file_private(path, "config " + path + " holds a private key or password", perr)) {
    err = perr;
    ok = false;
  }
  return ok;
}

}  // namespace picopay::device
