// picopay-agent meter inputs: Tasmota and Shelly Gen2 telemetry (MQTT JSON) and a plain
// line protocol (stdin), turned into energy readings in milliwatt-hours.
//
// Units: the agent bills per whole unit; for energy meters one unit = 1 Wh. Internally
// readings are integral mWh so Tasmota's kWh with up to 5 decimals (EnergyRes 5) and
// Shelly's fractional Wh are kept exactly enough (rounded to the nearest mWh).
//
// Sources:
//   Tasmota  `tele/<topic>/SENSOR`: {"Time":"..","ENERGY":{"Total":12.345,...}}
//            ENERGY.Total is the cumulative energy in kWh (Tasmota docs, "Energy").
//   Shelly Gen2 (Plus/Pro/Mini): `<prefix>/status/switch:0` (or pm1:0, em1:0 ...):
//            {"id":0,"aenergy":{"total":1234.567,...},...} with aenergy.total cumulative
//            in Wh; the NotifyStatus / NotifyFullStatus RPC frames on `<prefix>/events/rpc`
//            ({"method":"NotifyStatus","params":{"switch:0":{"aenergy":{"total":..}}}})
//            are accepted too (Shelly Gen2 API, Switch component status).
//   Line protocol (one command per line, ASCII, '#' starts a comment, blank lines skipped):
//            wh <cumulative Wh>      cumulative meter reading in Wh (decimal, '.' fraction)
//            kwh <cumulative kWh>    cumulative meter reading in kWh
//            units <n>               n more units consumed (integer, incremental)
//            quit                    end of input (same as end of file)
#pragma once

#include <cstdint>
#include <string>

namespace picopay::device {

struct MeterReading {
  enum class Kind { Cumulative, Increment, Quit, None } kind = Kind::None;
  uint64_t mwh = 0;    // Cumulative: total energy in mWh
  uint64_t units = 0;  // Increment: whole units consumed since the previous line
};

// Parses a Tasmota SENSOR payload. Returns false with `err` if it is not JSON or has no
// numeric, non-negative ENERGY.Total.
bool parse_tasmota_sensor(const std::string& payload, MeterReading& out, std::string& err);

// Parses a Shelly Gen2 component status or a NotifyStatus/NotifyFullStatus frame.
// Returns false with `err` if no non-negative aenergy.total is found. A NotifyStatus
// frame without energy (e.g. only "output") is reported as kind None with true.
bool parse_shelly_status(const std::string& payload, MeterReading& out, std::string& err);

// Parses one line of the line protocol (without the newline; a trailing '\r' is ignored).
// Blank and comment lines give kind None. Returns false with `err` on anything else.
bool parse_meter_line(const std::string& line, MeterReading& out, std::string& err);

// Parses a non-negative decimal with an optional fraction ("12", "12.345") scaled by
// 10^scale_digits, rounding half up beyond that. False if malformed or over 2^63.
bool parse_scaled_decimal(const std::string& s, unsigned scale_digits, uint64_t& out);

// Running account of a meter: cumulative readings become consumed energy. The first
// cumulative reading is the baseline (nothing consumed); a reading lower than the
// previous one means the meter was reset or replaced: the new reading counts from 0.
struct MeterAccount {
  bool has_last = false;
  uint64_t last_mwh = 0;      // last cumulative reading
  uint64_t metered_mwh = 0;   // energy consumed since the channel's metering began
  uint64_t extra_units = 0;   // units from Increment readings

  // Applies a reading; returns true if the consumed total changed or a baseline was set.
  // A reading that would take metered_mwh or extra_units past 2^53 is ignored (false).
  bool apply(const MeterReading& r);
  // Whole units consumed: floor(metered_mwh / 1000) + extra_units.
  uint64_t units() const { return metered_mwh / 1000 + extra_units; }
};

}  // namespace picopay::device
