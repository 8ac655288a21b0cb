#include "picopay/device/meter.hpp"

#include <cjson/cJSON.h>

#include <cmath>
#include <cstring>

namespace picopay::device {
namespace {

struct Doc {
  cJSON* j;
  explicit Doc(const std::string& s) : j(cJSON_ParseWithLength(s.data(), s.size())) {}
  ~Doc() { cJSON_Delete(j); }
  Doc(const Doc&) = delete;
  Doc& operator=(const Doc&) = delete;
};

// A JSON number (or numeric string) >= 0 scaled by `scale` and rounded to an integer.
bool number_scaled(const cJSON* n, double scale, uint64_t& out) {
  double v = 0;
  if (cJSON_IsNumber(n)) {
    v = n->valuedouble;
  } else if (cJSON_IsString(n) && n->valuestring) {
    uint64_t tmp = 0;
    unsigned digits = scale >= 1e6 ? 6 : scale >= 1e3 ? 3 : 0;
    if (!parse_scaled_decimal(n->valuestring, digits, tmp)) return false;
    out = tmp;
    return true;
  } else {
    return false;
  }
  if (!std::isfinite(v) || v < 0) return false;
  double scaled = v * scale;
  if (scaled < 0 || scaled > 9.2e18) return false;
  out = static_cast<uint64_t>(std::llround(scaled));
  return true;
}

const cJSON* find_aenergy_total(const cJSON* obj) {
  if (!cJSON_IsObject(obj)) return nullptr;
  const cJSON* ae = cJSON_GetObjectItemCaseSensitive(obj, "aenergy");
  if (cJSON_IsObject(ae)) {
    const cJSON* t = cJSON_GetObjectItemCaseSensitive(ae, "total");
    if (t) return t;
  }
  return nullptr;
}

}  // namespace

bool parse_scaled_decimal(const std::string& s, unsigned scale_digits, uint64_t& out) {
  size_t i = 0;
  const size_t n = s.size();
  if (n == 0) return false;
  uint64_t whole = 0;
  size_t digits = 0;
  while (i < n && s[i] >= '0' && s[i] <= '9') {
    if (whole > (UINT64_C(1) << 62) / 10) return false;
    whole = whole * 10 + static_cast<uint64_t>(s[i] - '0');
    ++i;
    ++digits;
  }
  uint64_t frac = 0;
  unsigned frac_digits = 0;
  bool round_up = false;
  if (i < n && s[i] == '.') {
    ++i;
    size_t fd = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
      if (frac_digits < scale_digits) {
        frac = frac * 10 + static_cast<uint64_t>(s[i] - '0');
        ++frac_digits;
      } else if (fd == scale_digits) {
        round_up = s[i] >= '5';
      }
      ++i;
      ++fd;
    }
    if (fd == 0) return false;
  }
  if (digits == 0 || i != n) return false;
  while (frac_digits < scale_digits) {
    frac *= 10;
    ++frac_digits;
  }
  uint64_t scale = 1;
  for (unsigned k = 0; k < scale_digits; ++k) scale *= 10;
  if (whole > (UINT64_C(1) << 63) / scale) return false;
  out = whole * scale + frac + (round_up ? 1 : 0);
  return true;
}

bool parse_tasmota_sensor(const std::string& payload, MeterReading& out, std::string& err) {
  Doc d(payload);
  if (!d.j || !cJSON_IsObject(d.j)) {
    err = "tasmota: payload is not a JSON object";
    return false;
  }
  const cJSON* energy = cJSON_GetObjectItemCaseSensitive(d.j, "ENERGY");
  if (!cJSON_IsObject(energy)) {
    err = "tasmota: no ENERGY object";
    return false;
  }
  const cJSON* total = cJSON_GetObjectItemCaseSensitive(energy, "Total");
  uint64_t mwh = 0;
  if (!total || !number_scaled(total, 1e6, mwh)) {
    err = "tasmota: ENERGY.Total missing or not a non-negative number (kWh)";
    return false;
  }
  out = MeterReading{MeterReading::Kind::Cumulative, mwh, 0};
  return true;
}

bool parse_shelly_status(const std::string& payload, MeterReading& out, std::string& err) {
  Doc d(payload);
  if (!d.j || !cJSON_IsObject(d.j)) {
    err = "shelly: payload is not a JSON object";
    return false;
  }
  const cJSON* total = find_aenergy_total(d.j);
  bool rpc_frame = false;
  if (!total) {
    const cJSON* method = cJSON_GetObjectItemCaseSensitive(d.j, "method");
    const cJSON* params = cJSON_GetObjectItemCaseSensitive(d.j, "params");
    if (cJSON_IsString(method) && cJSON_IsObject(params)) {
      rpc_frame = true;
      // The first component (switch:N, pm1:N, ...) that reports aenergy.total.
      for (const cJSON* c = params->child; c && !total; c = c->next) {
        if (c->string && std::strchr(c->string, ':')) total = find_aenergy_total(c);
      }
    }
  }
  if (!total) {
    if (rpc_frame) {
      out = MeterReading{};
      return true;
    }
    err = "shelly: no aenergy.total";
    return false;
  }
  uint64_t mwh = 0;
  if (!number_scaled(total, 1e3, mwh)) {
    err = "shelly: aenergy.total is not a non-negative number (Wh)";
    return false;
  }
  out = MeterReading{MeterReading::Kind::Cumulative, mwh, 0};
  return true;
}

bool parse_meter_line(const std::string& raw, MeterReading& out, std::string& err) {
  std::string line = raw;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  size_t hash = line.find('#');
  if (hash != std::string::npos) line.resize(hash);
  // split into words
  std::string w[3];
  size_t nw = 0, i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i >= line.size()) break;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (nw == 3) {
      err = "line: too many words";
      return false;
    }
    w[nw++] = line.substr(i, j - i);
    i = j;
  }
  out = MeterReading{};
  if (nw == 0) return true;
  if (w[0] == "quit" && nw == 1) {
    out.kind = MeterReading::Kind::Quit;
    return true;
  }
  if (nw != 2) {
    err = "line: expected '<wh|kwh|units> <number>'";
    return false;
  }
  uint64_t v = 0;
  if (w[0] == "wh") {
    if (!parse_scaled_decimal(w[1], 3, v)) {
      err = "line: bad Wh value '" + w[1] + "'";
      return false;
    }
    out.kind = MeterReading::Kind::Cumulative;
    out.mwh = v;
  } else if (w[0] == "kwh") {
    if (!parse_scaled_decimal(w[1], 6, v)) {
      err = "line: bad kWh value '" + w[1] + "'";
      return false;
    }
    out.kind = MeterReading::Kind::Cumulative;
    out.mwh = v;
  } else if (w[0] == "units") {
    if (w[1].find('.') != std::string::npos || !parse_scaled_decimal(w[1], 0, v)) {
      err = "line: bad unit count '" + w[1] + "' (a non-negative integer)";
      return false;
    }
    out.kind = MeterReading::Kind::Increment;
    out.units = v;
  } else {
    err = "line: unknown command '" + w[0] + "'";
    return false;
  }
  return true;
}

namespace {
constexpr uint64_t kMeterMax = 1ull << 53;  // bound on metered_mwh and extra_units
}  // namespace

bool MeterAccount::apply(const MeterReading& r) {
  switch (r.kind) {
    case MeterReading::Kind::Cumulative: {
      if (!has_last) {
        has_last = true;
        last_mwh = r.mwh;
        return true;
      }
      uint64_t delta = r.mwh >= last_mwh ? r.mwh - last_mwh : r.mwh;  // reset: from 0
      // Totals stay below 2^53 (mWh, units): a reading that would pass it is implausible
      // (anyone who can publish on the meter topic could send it) and is ignored, so the
      // account never wraps and the device never stops paying because of it.
      if (delta > kMeterMax - metered_mwh) return false;
      last_mwh = r.mwh;
      metered_mwh += delta;
      return delta != 0;
    }
    case MeterReading::Kind::Increment:
      if (r.units > kMeterMax - extra_units) return false;
      extra_units += r.units;
      return r.units != 0;
    default:
      return false;
  }
}

}  // namespace picopay::device
