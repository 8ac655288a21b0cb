// picopay programs: a payee's collateral request (collateral_request.hpp).
#include "picopay/agent/collateral_request.hpp"

#include <cjson/cJSON.h>

#include <cstring>

#include "picopay/agent/json_state.hpp"
#include "picopay/keccak.hpp"

namespace picopay::agent {
namespace {

Hash32 request_hash(const Address& contract, const Address& user, const U256& wei, uint64_t time) {
  static const char kTag[] = "picopay/v1 collateral request";
  uint8_t buf[sizeof kTag - 1 + 20 + 20 + 32 + 8];
  size_t p = 0;
  std::memcpy(buf, kTag, sizeof kTag - 1);
  p += sizeof kTag - 1;
  std::memcpy(buf + p, contract.bytes, 20);
  p += 20;
  std::memcpy(buf + p, user.bytes, 20);
  p += 20;
  u256_to_be32(wei, buf + p);
  p += 32;
  for (int i = 7; i >= 0; --i) buf[p++] = static_cast<uint8_t>(time >> (8 * i));
  Hash32 h{};
  keccak256(buf, p, h.bytes);
  return h;
}

}  // namespace

std::string collateral_request_make(const Signer& signer, const PrivateKey& key, const Address& contract,
                                    const Address& user, const U256& expectWei, uint64_t time) {
  Signature sig{};
  if (signer.sign_eth(key, request_hash(contract, user, expectWei, time), sig) != Status::Ok) return "";
  cJSON* o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "expectWei", json::amount_text(expectWei).c_str());
  cJSON_AddNumberToObject(o, "time", static_cast<double>(time));
  cJSON_AddStringToObject(o, "sig", json::signature_text(sig).c_str());
  std::string s = json::print(o, false);
  cJSON_Delete(o);
  return s;
}

bool collateral_request_parse(const Signer& signer, const std::string& payload, const Address& contract,
                              const Address& user, U256& expectWei, uint64_t& time, std::string& err) {
  cJSON* o = cJSON_ParseWithLength(payload.data(), payload.size());
  const cJSON* w = cJSON_GetObjectItemCaseSensitive(o, "expectWei");
  const cJSON* t = cJSON_GetObjectItemCaseSensitive(o, "time");
  const cJSON* s = cJSON_GetObjectItemCaseSensitive(o, "sig");
  Signature sig{};
  bool ok = cJSON_IsObject(o) && cJSON_IsString(w) && cJSON_IsNumber(t) && cJSON_IsString(s) &&
            t->valuedouble >= 0 && t->valuedouble <= 9007199254740991.0 &&
            u256_parse_decimal(w->valuestring, std::strlen(w->valuestring), expectWei) == Status::Ok &&
            signature_parse(s->valuestring, std::strlen(s->valuestring), sig) == Status::Ok;
  if (ok) time = static_cast<uint64_t>(t->valuedouble);
  cJSON_Delete(o);
  if (!ok) {
    err = "collateral request: not {\"expectWei\":\"<dec>\",\"time\":N,\"sig\":\"0x..\"}";
    return false;
  }
  if (signer.verify_eth(request_hash(contract, user, expectWei, time), sig, user) != Status::Ok) {
    err = "collateral request: not signed by the channel's user";
    return false;
  }
  return true;
}

}  // namespace picopay::agent
