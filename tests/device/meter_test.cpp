// Meter parsing (Tasmota, Shelly Gen2, line protocol), the meter account, and the agent's
// state record round trip.
#include <gtest/gtest.h>

#include "picopay/device/meter.hpp"
#include "picopay/device/state.hpp"

using namespace picopay;
using namespace picopay::device;

TEST(Meter, TasmotaSensor) {
  MeterReading r;
  std::string err;
  ASSERT_TRUE(parse_tasmota_sensor(
      R"({"Time":"2026-11-21T10:00:00","ENERGY":{"TotalStartTime":"2026-11-01T00:00:00","Total":12.345,)"
      R"("Yesterday":1.2,"Today":0.5,"Power":11040,"Voltage":230,"Current":16.0}})",
      r, err))
      << err;
  EXPECT_EQ(r.kind, MeterReading::Kind::Cumulative);
  EXPECT_EQ(r.mwh, 12345000u);
  ASSERT_TRUE(parse_tasmota_sensor(R"({"ENERGY":{"Total":0.00001}})", r, err));  // EnergyRes 5
  EXPECT_EQ(r.mwh, 10u);
  EXPECT_FALSE(parse_tasmota_sensor(R"({"ENERGY":{"Power":5}})", r, err));
  EXPECT_FALSE(parse_tasmota_sensor(R"({"ENERGY":{"Total":-1}})", r, err));
  EXPECT_FALSE(parse_tasmota_sensor(R"({"ENERGY":{"Total":"x"}})", r, err));
  EXPECT_FALSE(parse_tasmota_sensor("not json", r, err));
  EXPECT_FALSE(parse_tasmota_sensor(R"({"DS18B20":{"Temperature":21}})", r, err));
}

TEST(Meter, ShellyGen2) {
  MeterReading r;
  std::string err;
  ASSERT_TRUE(parse_shelly_status(
      R"({"id":0,"source":"timer","output":true,"apower":1500.2,"voltage":230.1,)"
      R"("aenergy":{"total":1234.567,"by_minute":[1,2,3],"minute_ts":1700000000},"temperature":{"tC":40}})",
      r, err))
      << err;
  EXPECT_EQ(r.mwh, 1234567u);
  ASSERT_TRUE(parse_shelly_status(
      R"({"src":"shellyplus1pm-a8032ab12345","dst":"x","method":"NotifyStatus",)"
      R"("params":{"ts":1700000000.5,"switch:0":{"id":0,"aenergy":{"total":10.5}}}})",
      r, err));
  EXPECT_EQ(r.mwh, 10500u);
  ASSERT_TRUE(parse_shelly_status(R"({"method":"NotifyStatus","params":{"switch:0":{"output":false}}})", r, err));
  EXPECT_EQ(r.kind, MeterReading::Kind::None);
  EXPECT_FALSE(parse_shelly_status(R"({"id":0,"apower":3})", r, err));
  EXPECT_FALSE(parse_shelly_status(R"({"aenergy":{"total":-3}})", r, err));
}

TEST(Meter, LineProtocol) {
  MeterReading r;
  std::string err;
  ASSERT_TRUE(parse_meter_line("wh 12.5", r, err));
  EXPECT_EQ(r.kind, MeterReading::Kind::Cumulative);
  EXPECT_EQ(r.mwh, 12500u);
  ASSERT_TRUE(parse_meter_line("kwh 1.0005\r", r, err));
  EXPECT_EQ(r.mwh, 1000500u);
  ASSERT_TRUE(parse_meter_line("  units 7  # a comment", r, err));
  EXPECT_EQ(r.kind, MeterReading::Kind::Increment);
  EXPECT_EQ(r.units, 7u);
  ASSERT_TRUE(parse_meter_line("# only a comment", r, err));
  EXPECT_EQ(r.kind, MeterReading::Kind::None);
  ASSERT_TRUE(parse_meter_line("", r, err));
  ASSERT_TRUE(parse_meter_line("quit", r, err));
  EXPECT_EQ(r.kind, MeterReading::Kind::Quit);
  for (const char* bad : {"wh", "wh -1", "wh 1.", "wh .5", "wh 1e3", "units 1.5", "volts 3", "wh 1 2", "wh 0x10"})
    EXPECT_FALSE(parse_meter_line(bad, r, err)) << bad;
}

TEST(Meter, ScaledDecimalRounding) {
  uint64_t v = 0;
  ASSERT_TRUE(parse_scaled_decimal("1.2345", 3, v));
  EXPECT_EQ(v, 1235u);  // half up beyond the scale
  ASSERT_TRUE(parse_scaled_decimal("1.2344", 3, v));
  EXPECT_EQ(v, 1234u);
  EXPECT_FALSE(parse_scaled_decimal("99999999999999999999", 3, v));
}

TEST(Meter, AccountBaselineResetAndIncrements) {
  MeterAccount a;
  a.apply({MeterReading::Kind::Cumulative, 1000000, 0});  // baseline: nothing consumed
  EXPECT_EQ(a.units(), 0u);
  a.apply({MeterReading::Kind::Cumulative, 1002500, 0});
  EXPECT_EQ(a.units(), 2u);  // 2.5 Wh -> 2 whole units
  a.apply({MeterReading::Kind::Cumulative, 1002500, 0});  // duplicate reading
  EXPECT_EQ(a.units(), 2u);
  a.apply({MeterReading::Kind::Cumulative, 600, 0});  // meter reset: counts from 0
  EXPECT_EQ(a.metered_mwh, 3100u);
  a.apply({MeterReading::Kind::Increment, 0, 5});
  EXPECT_EQ(a.units(), 8u);
}

TEST(State, JsonRoundTrip) {
  AgentState s;
  s.user.bytes[19] = 1;
  s.hub.bytes[19] = 2;
  s.contract.bytes[19] = 3;
  s.channel = genesis_channel(s.contract, s.user);
  s.session = {0x50, 0x50, 0x53, 0x01};
  s.deposited = true;
  s.meter.has_last = true;
  s.meter.last_mwh = 77;
  s.units_paid = 5;
  s.wei_paid = U256::from_u64(500);
  s.has_pending = true;
  s.pending = channel_update_make(UpdateReason::Payment);
  s.pending.txCountGlobal = 1;
  s.pending.payment.recipient = Party::Hub;
  s.pending.payment.amountWei = U256::from_u64(100);
  s.pending.sig.v = 27;
  s.pending.sig.r[31] = 1;
  s.pending.sig.s[31] = 1;
  s.pending_units = 6;
  s.pending_wei = U256::from_u64(600);
  ThreadRecord t;
  t.initial.state = thread_state_zero();
  t.initial.state.threadId = 4;
  t.latest = t.initial;
  s.threads.push_back(t);
  std::string text = state_to_json(s);
  AgentState back;
  std::string err;
  ASSERT_TRUE(state_from_json(text, back, err)) << err;
  EXPECT_EQ(state_to_json(back), text);
  EXPECT_TRUE(back.has_pending);
  EXPECT_EQ(back.pending.txCountGlobal, 1u);
  EXPECT_EQ(back.threads.size(), 1u);
  EXPECT_EQ(back.session, s.session);
  EXPECT_TRUE(back.deposited);
  EXPECT_EQ(back.pending_units, 6u);
  EXPECT_FALSE(back.threads[0].tower_released);
  // A closed thread the tower confirmed released stays recorded as such (the agent does
  // not release it again after a restart); a record without the key reads as not released.
  s.threads[0].open = false;
  s.threads[0].tower_released = true;
  ASSERT_TRUE(state_from_json(state_to_json(s), back, err)) << err;
  EXPECT_TRUE(back.threads[0].tower_released);
  // A record of the agent before the single-proposer session is refused, not misread.
  std::string v1 = text;
  v1.replace(v1.find("\"version\":2"), 11, "\"version\":1");
  EXPECT_FALSE(state_from_json(v1, back, err));
  EXPECT_NE(err.find("older picopay-agent"), std::string::npos) << err;
  EXPECT_FALSE(state_from_json("{}", back, err));
  EXPECT_FALSE(state_from_json("nope", back, err));
}

// Readings that would wrap the account (huge values with resets between them, which
// anyone who can publish on the meter topic can send) are ignored: the consumed total
// never goes backwards and the device keeps paying.
TEST(MeterAccount, HugeReadingsNeverWrapTheAccount) {
  MeterAccount a;
  a.apply({MeterReading::Kind::Cumulative, 1000, 0});
  a.apply({MeterReading::Kind::Cumulative, 3000, 0});
  ASSERT_EQ(a.units(), 2u);
  uint64_t before = a.units();
  for (int i = 0; i < 3; ++i) {
    a.apply({MeterReading::Kind::Cumulative, 9223372036854775000ull, 0});
    a.apply({MeterReading::Kind::Cumulative, 0, 0});  // a reset
    EXPECT_GE(a.units(), before);
    before = a.units();
  }
  EXPECT_FALSE(a.apply({MeterReading::Kind::Increment, 0, ~0ull}));
  EXPECT_GE(a.units(), before);
  EXPECT_TRUE(a.apply({MeterReading::Kind::Cumulative, 5000, 0}));  // sane readings still count
}
