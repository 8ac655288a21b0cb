// picopay programs: payment history entries and their table / JSON / CSV forms
// (history.hpp).
#include "picopay/agent/history.hpp"

#include <cjson/cJSON.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>

#include "picopay/agent/json_state.hpp"

namespace picopay::agent {
namespace {

cJSON* entry_json(const HistoryEntry& e) {
  cJSON* o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "time", static_cast<double>(e.time));
  cJSON_AddStringToObject(o, "event", e.event.c_str());
  if (e.txCountGlobal) cJSON_AddNumberToObject(o, "txCountGlobal", static_cast<double>(e.txCountGlobal));
  if (!e.reason.empty()) cJSON_AddStringToObject(o, "reason", e.reason.c_str());
  cJSON_AddStringToObject(o, "wei", json::amount_text(e.wei).c_str());
  if (e.has_counterparty) cJSON_AddStringToObject(o, "counterparty", json::address_text(e.counterparty).c_str());
  if (e.threadId) cJSON_AddNumberToObject(o, "threadId", static_cast<double>(e.threadId));
  if (e.has_balances) {
    cJSON_AddStringToObject(o, "balanceWeiUser", json::amount_text(e.balanceWeiUser).c_str());
    cJSON_AddStringToObject(o, "balanceWeiHub", json::amount_text(e.balanceWeiHub).c_str());
  }
  if (!e.transaction.empty()) cJSON_AddStringToObject(o, "transaction", e.transaction.c_str());
  return o;
}

bool entry_from_json(const cJSON* o, HistoryEntry& e) {
  if (!cJSON_IsObject(o)) return false;
  const cJSON* t = cJSON_GetObjectItemCaseSensitive(o, "time");
  const cJSON* ev = cJSON_GetObjectItemCaseSensitive(o, "event");
  const cJSON* w = cJSON_GetObjectItemCaseSensitive(o, "wei");
  if (!cJSON_IsNumber(t) || !cJSON_IsString(ev) || !cJSON_IsString(w)) return false;
  e.time = static_cast<uint64_t>(t->valuedouble);
  e.event = ev->valuestring;
  if (u256_parse_decimal(w->valuestring, std::strlen(w->valuestring), e.wei) != Status::Ok) return false;
  if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "txCountGlobal"); cJSON_IsNumber(v))
    e.txCountGlobal = static_cast<uint64_t>(v->valuedouble);
  if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "reason"); cJSON_IsString(v)) e.reason = v->valuestring;
  if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "counterparty"); cJSON_IsString(v))
    e.has_counterparty = address_parse(v->valuestring, std::strlen(v->valuestring), e.counterparty) == Status::Ok;
  if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "threadId"); cJSON_IsNumber(v))
    e.threadId = static_cast<uint64_t>(v->valuedouble);
  const cJSON* bu = cJSON_GetObjectItemCaseSensitive(o, "balanceWeiUser");
  const cJSON* bh = cJSON_GetObjectItemCaseSensitive(o, "balanceWeiHub");
  if (cJSON_IsString(bu) && cJSON_IsString(bh))
    e.has_balances = u256_parse_decimal(bu->valuestring, std::strlen(bu->valuestring), e.balanceWeiUser) == Status::Ok &&
                     u256_parse_decimal(bh->valuestring, std::strlen(bh->valuestring), e.balanceWeiHub) == Status::Ok;
  if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "transaction"); cJSON_IsString(v)) e.transaction = v->valuestring;
  return true;
}

std::string utc_text(uint64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tmv{};
  gmtime_r(&tt, &tmv);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tmv);
  return b;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

// Events whose amount counts towards a running total (money that changed hands).
bool counts(const std::string& ev) {
  return ev == "payment" || ev == "thread-payment" || ev == "thread-received" || ev == "thread-settled";
}

}  // namespace

cJSON* history_entry_json(const HistoryEntry& e) { return entry_json(e); }
bool history_entry_from_json(const cJSON* o, HistoryEntry& e) { return entry_from_json(o, e); }

std::string history_format(const std::vector<HistoryEntry>& h, const std::string& format) {
  // Running totals: per thread (counterparty, threadId) and per counterparty.
  std::map<std::string, U256> per_thread, per_party;
  std::vector<std::pair<U256, U256>> running;  // (thread total, counterparty total) after each entry
  for (const auto& e : h) {
    U256 tt = U256::zero(), pt = U256::zero();
    if (e.has_counterparty) {
      const std::string party = json::address_text(e.counterparty);
      const std::string thread = party + "#" + std::to_string(e.threadId);
      if (counts(e.event)) {
        U256 s{};
        if (e.threadId && u256_add(per_thread[thread], e.wei, s) == Status::Ok) per_thread[thread] = s;
        if (u256_add(per_party[party], e.wei, s) == Status::Ok) per_party[party] = s;
      }
      if (e.threadId) tt = per_thread[thread];
      pt = per_party[party];
    }
    running.emplace_back(tt, pt);
  }
  std::string out;
  if (format == "json") {
    cJSON* a = cJSON_CreateArray();
    for (size_t i = 0; i < h.size(); ++i) {
      cJSON* o = entry_json(h[i]);
      if (h[i].threadId) cJSON_AddStringToObject(o, "threadTotalWei", json::amount_text(running[i].first).c_str());
      if (h[i].has_counterparty)
        cJSON_AddStringToObject(o, "counterpartyTotalWei", json::amount_text(running[i].second).c_str());
      cJSON_AddItemToArray(a, o);
    }
    out = json::print(a, true) + "\n";
    cJSON_Delete(a);
    return out;
  }
  if (format == "csv") {
    out = "time,event,txCountGlobal,reason,wei,counterparty,threadId,threadTotalWei,counterpartyTotalWei,"
          "balanceWeiUser,balanceWeiHub,transaction\n";
    for (size_t i = 0; i < h.size(); ++i) {
      const auto& e = h[i];
      out += utc_text(e.time) + "," + csv_field(e.event) + "," + (e.txCountGlobal ? std::to_string(e.txCountGlobal) : "") +
             "," + csv_field(e.reason) + "," + json::amount_text(e.wei) + "," +
             (e.has_counterparty ? json::address_text(e.counterparty) : "") + "," +
             (e.threadId ? std::to_string(e.threadId) : "") + "," +
             (e.threadId ? json::amount_text(running[i].first) : "") + "," +
             (e.has_counterparty ? json::amount_text(running[i].second) : "") + "," +
             (e.has_balances ? json::amount_text(e.balanceWeiUser) : "") + "," +
             (e.has_balances ? json::amount_text(e.balanceWeiHub) : "") + "," + e.transaction + "\n";
    }
    return out;
  }
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-20s  %-20s  %6s  %22s  %-12s  %6s  %22s  %22s  %22s\n", "time (UTC)", "event", "tx",
                "wei", "counterparty", "thread", "thread total", "counterparty total", "balance (user)");
  out += buf;
  for (size_t i = 0; i < h.size(); ++i) {
    const auto& e = h[i];
    const std::string party = e.has_counterparty ? json::address_text(e.counterparty).substr(0, 10) + ".." : "";
    std::snprintf(buf, sizeof buf, "%-20s  %-20s  %6s  %22s  %-12s  %6s  %22s  %22s  %22s\n", utc_text(e.time).c_str(),
                  e.event.c_str(), e.txCountGlobal ? std::to_string(e.txCountGlobal).c_str() : "",
                  json::amount_text(e.wei).c_str(), party.c_str(), e.threadId ? std::to_string(e.threadId).c_str() : "",
                  e.threadId ? json::amount_text(running[i].first).c_str() : "",
                  e.has_counterparty ? json::amount_text(running[i].second).c_str() : "",
                  e.has_balances ? json::amount_text(e.balanceWeiUser).c_str() : "");
    out += buf;
  }
  out += "\ntotals per counterparty (payments, thread payments sent and received, wei):\n";
  for (const auto& p : per_party) out += "  " + p.first + "  " + json::amount_text(p.second) + "\n";
  if (!per_thread.empty()) {
    out += "totals per thread:\n";
    for (const auto& p : per_thread) out += "  " + p.first + "  " + json::amount_text(p.second) + "\n";
  }
  return out;
}

}  // namespace picopay::agent
