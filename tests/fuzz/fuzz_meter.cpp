// libFuzzer target: meter payloads (agent/device meter.hpp): Tasmota SENSOR JSON, Shelly
// Gen2 status / NotifyStatus JSON (both from MQTT, any device on the broker can publish
// them) and the stdin line protocol. Checks: a refusal always says why; an accepted
// reading applies to a meter account without its totals going backwards.
#include <string>

#include "fuzz_util.hpp"
#include "picopay/device/meter.hpp"

using namespace picopay::device;

namespace {

void apply_checked(MeterAccount& acc, const MeterReading& r) {
  const uint64_t before = acc.units();
  const uint64_t metered = acc.metered_mwh;
  acc.apply(r);
  FUZZ_CHECK(acc.metered_mwh >= metered);  // consumption never decreases
  FUZZ_CHECK(acc.units() >= before);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  MeterAccount acc;
  acc.apply(MeterReading{MeterReading::Kind::Cumulative, 1000, 0});
  std::string err;
  MeterReading r;
  if (parse_tasmota_sensor(text, r, err)) apply_checked(acc, r);
  else FUZZ_CHECK(!err.empty());
  err.clear();
  r = MeterReading{};
  if (parse_shelly_status(text, r, err)) apply_checked(acc, r);
  else FUZZ_CHECK(!err.empty());
  // Every line of the input through the line protocol.
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    err.clear();
    r = MeterReading{};
    if (parse_meter_line(text.substr(start, nl - start), r, err)) apply_checked(acc, r);
    else FUZZ_CHECK(!err.empty());
    start = nl + 1;
  }
  for (unsigned scale = 0; scale <= 6; scale += 3) {
    uint64_t v = 0;
    (void)parse_scaled_decimal(text, scale, v);
  }
  return 0;
}
