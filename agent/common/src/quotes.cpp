#include "picopay/agent/quotes.hpp"

#include <cjson/cJSON.h>

#include <cmath>

#include "picopay/agent/json_state.hpp"
#include "picopay/keccak.hpp"
#include "picopay/policy.hpp"

namespace picopay::quotes {
namespace {

Hash32 body_hash(const std::string& body) {
  Hash32 h{};
  keccak256(reinterpret_cast<const uint8_t*>(body.data()), body.size(), h.bytes);
  return h;
}

struct Doc {
  cJSON* j = nullptr;
  ~Doc() { cJSON_Delete(j); }
};

bool get_str(const cJSON* o, const char* k, std::string& v) {
  const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsString(n)) return false;
  v = n->valuestring;
  return true;
}
bool get_addr(const cJSON* o, const char* k, Address& a) {
  std::string s;
  return get_str(o, k, s) && address_parse(s.c_str(), s.size(), a) == Status::Ok;
}
bool get_amount(const cJSON* o, const char* k, U256& v) {
  std::string s;
  return get_str(o, k, s) && !s.empty() && u256_parse_decimal(s.c_str(), s.size(), v) == Status::Ok;
}
bool get_u64(const cJSON* o, const char* k, uint64_t& v) {
  const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(n) || !(n->valuedouble >= 0 && n->valuedouble <= 9007199254740991.0) ||
      std::floor(n->valuedouble) != n->valuedouble)
    return false;
  v = static_cast<uint64_t>(n->valuedouble);
  return true;
}
std::string lower_addr(const Address& a) {
  std::string s = json::address_text(a);
  for (auto& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return s;
}

}  // namespace

bool sign_document(const std::string& body, const Signer& signer, const PrivateKey& key, std::string& payload) {
  Signature sig{};
  if (signer.sign_eth(key, body_hash(body), sig) != Status::Ok) return false;
  cJSON* o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "body", body.c_str());
  cJSON_AddStringToObject(o, "sig", json::signature_text(sig).c_str());
  char* t = cJSON_PrintUnformatted(o);
  payload = t ? t : "";
  cJSON_free(t);
  cJSON_Delete(o);
  return !payload.empty();
}

bool open_document(const std::string& payload, const Signer& signer, const Address& signer_addr, std::string& body,
                   std::string& err) {
  Doc d;
  d.j = cJSON_ParseWithLength(payload.data(), payload.size());
  std::string sig_text;
  if (!cJSON_IsObject(d.j) || !get_str(d.j, "body", body) || !get_str(d.j, "sig", sig_text)) {
    err = "malformed (not {\"body\",\"sig\"})";
    return false;
  }
  Signature sig{};
  if (signature_parse(sig_text.c_str(), sig_text.size(), sig) != Status::Ok) {
    err = "malformed signature";
    return false;
  }
  Address who{};
  if (signer.recover_eth(body_hash(body), sig, who) != Status::Ok) {
    err = "bad signature";
    return false;
  }
  if (who != signer_addr) {
    err = "not signed by " + json::address_text(signer_addr) + " (signed by " + json::address_text(who) + ")";
    return false;
  }
  return true;
}

bool rate_sign(const Rate& r, const Signer& signer, const PrivateKey& key, std::string& payload) {
  const std::string body = "{\"kind\":\"picopay-rate/1\",\"contract\":\"" + lower_addr(r.contract) + "\",\"hub\":\"" +
                           lower_addr(r.hub) + "\",\"tokensPerWei\":\"" + json::amount_text(r.tokensPerWei) +
                           "\",\"time\":" + std::to_string(r.time) + "}";
  return sign_document(body, signer, key, payload);
}

bool rate_open(const std::string& payload, const Signer& signer, const Address& hub, const Address& contract, Rate& out,
               std::string& err) {
  std::string body;
  if (!open_document(payload, signer, hub, body, err)) return false;
  Doc d;
  d.j = cJSON_ParseWithLength(body.data(), body.size());
  std::string kind;
  if (!cJSON_IsObject(d.j) || !get_str(d.j, "kind", kind) || kind != "picopay-rate/1") {
    err = "not a rate (kind picopay-rate/1)";
    return false;
  }
  Rate r;
  if (!get_addr(d.j, "contract", r.contract) || !get_addr(d.j, "hub", r.hub) ||
      !get_amount(d.j, "tokensPerWei", r.tokensPerWei) || !get_u64(d.j, "time", r.time)) {
    err = "malformed rate (contract, hub, tokensPerWei, time)";
    return false;
  }
  if (r.contract != contract) {
    err = "a rate for another contract (" + json::address_text(r.contract) + ")";
    return false;
  }
  if (r.hub != hub) {
    err = "a rate naming another hub";
    return false;
  }
  if (r.tokensPerWei.is_zero()) {
    err = "rate 0";
    return false;
  }
  out = r;
  return true;
}

bool rate_acceptable(const Rate& r, uint64_t now, uint64_t max_age, const U256& reference, uint32_t max_deviation_bps,
                     std::string& err) {
  if (r.time > now + 60) {
    err = "rate set in the future (" + std::to_string(r.time - now) + " s ahead)";
    return false;
  }
  if (now > r.time && now - r.time > max_age) {
    err = "stale rate: set " + std::to_string(now - r.time) + " s ago (max " + std::to_string(max_age) + " s)";
    return false;
  }
  if (!reference.is_zero() && !policy_rate_within(r.tokensPerWei, reference, max_deviation_bps)) {
    err = "rate " + json::amount_text(r.tokensPerWei) + " deviates from the reference " + json::amount_text(reference) +
          " by more than " + std::to_string(max_deviation_bps) + " bps";
    return false;
  }
  return true;
}

const Price* PriceList::find(const std::string& source) const {
  for (const auto& p : prices)
    if (p.source == source) return &p;
  return nullptr;
}

bool prices_sign(const PriceList& p, const Signer& signer, const PrivateKey& key, std::string& payload) {
  std::string body = "{\"kind\":\"picopay-prices/1\",\"contract\":\"" + lower_addr(p.contract) + "\",\"payee\":\"" +
                     lower_addr(p.payee) + "\",\"asset\":\"" + (p.token ? lower_addr(p.tokenAddress) : "ETH") +
                     "\",\"validFrom\":" + std::to_string(p.validFrom) + ",\"validUntil\":" +
                     std::to_string(p.validUntil) + ",\"prices\":[";
  for (size_t i = 0; i < p.prices.size(); ++i) {
    cJSON* e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "source", p.prices[i].source.c_str());
    cJSON_AddStringToObject(e, "unit", p.prices[i].unit.c_str());
    cJSON_AddStringToObject(e, "price", json::amount_text(p.prices[i].price).c_str());
    char* t = cJSON_PrintUnformatted(e);
    body += (i ? "," : "") + std::string(t ? t : "{}");
    cJSON_free(t);
    cJSON_Delete(e);
  }
  body += "]}";
  return sign_document(body, signer, key, payload);
}

bool prices_open(const std::string& payload, const Signer& signer, const Address& payee, const Address& contract,
                 PriceList& out, std::string& err) {
  std::string body;
  if (!open_document(payload, signer, payee, body, err)) return false;
  Doc d;
  d.j = cJSON_ParseWithLength(body.data(), body.size());
  std::string kind, asset;
  if (!cJSON_IsObject(d.j) || !get_str(d.j, "kind", kind) || kind != "picopay-prices/1") {
    err = "not a price list (kind picopay-prices/1)";
    return false;
  }
  PriceList p;
  if (!get_addr(d.j, "contract", p.contract) || !get_addr(d.j, "payee", p.payee) || !get_str(d.j, "asset", asset) ||
      !get_u64(d.j, "validFrom", p.validFrom) || !get_u64(d.j, "validUntil", p.validUntil)) {
    err = "malformed price list (contract, payee, asset, validFrom, validUntil)";
    return false;
  }
  if (asset != "ETH") {
    if (address_parse(asset.c_str(), asset.size(), p.tokenAddress) != Status::Ok) {
      err = "malformed price list: asset is neither ETH nor a token address";
      return false;
    }
    p.token = true;
  }
  const cJSON* arr = cJSON_GetObjectItemCaseSensitive(d.j, "prices");
  if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > 64) {
    err = "malformed price list: prices is not an array (at most 64)";
    return false;
  }
  const cJSON* e = nullptr;
  cJSON_ArrayForEach(e, arr) {
    Price x;
    if (!get_str(e, "source", x.source) || !get_str(e, "unit", x.unit) || !get_amount(e, "price", x.price)) {
      err = "malformed price entry (source, unit, price)";
      return false;
    }
    p.prices.push_back(x);
  }
  if (p.contract != contract) {
    err = "a price list for another contract";
    return false;
  }
  if (p.payee != payee) {
    err = "a price list naming another payee";
    return false;
  }
  out = p;
  return true;
}

}  // namespace picopay::quotes
