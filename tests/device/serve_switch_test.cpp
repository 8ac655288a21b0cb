// The payee's meter switch (agent/device serve_switch.hpp, docs/tokens.md): the commands
// Tasmota and Shelly Gen2 understand, and the specs refused because they would publish
// on a topic the payee does not name (MQTT wildcards, another topic level).
#include <gtest/gtest.h>

#include <cjson/cJSON.h>

#include "serve_switch.hpp"

using namespace picopay::device;

TEST(ServeSwitch, TasmotaPowerCommand) {
  ServeSwitch s;
  std::string err;
  ASSERT_TRUE(serve_switch_parse("tasmota:plug1", s, err)) << err;
  const SwitchCommand off = serve_switch_command(s, false), on = serve_switch_command(s, true);
  EXPECT_EQ(off.topic, "cmnd/plug1/POWER");
  EXPECT_EQ(off.payload, "OFF");
  EXPECT_EQ(on.topic, "cmnd/plug1/POWER");
  EXPECT_EQ(on.payload, "ON");
}

TEST(ServeSwitch, ShellyGen2SwitchSet) {
  ServeSwitch s;
  std::string err;
  ASSERT_TRUE(serve_switch_parse("shelly:shellyplusplugs-a1b2c3", s, err)) << err;
  for (bool want : {false, true}) {
    const SwitchCommand c = serve_switch_command(s, want);
    EXPECT_EQ(c.topic, "shellyplusplugs-a1b2c3/rpc");
    cJSON* j = cJSON_Parse(c.payload.c_str());
    ASSERT_NE(j, nullptr) << c.payload;
    EXPECT_STREQ(cJSON_GetObjectItem(j, "method")->valuestring, "Switch.Set");
    const cJSON* p = cJSON_GetObjectItem(j, "params");
    EXPECT_EQ(cJSON_GetObjectItem(p, "id")->valueint, 0);
    EXPECT_EQ(cJSON_IsTrue(cJSON_GetObjectItem(p, "on")), want);
    cJSON_Delete(j);
  }
}

TEST(ServeSwitch, RefusesOtherKindsWildcardsAndLevels) {
  for (const char* bad : {"", "tasmota", "tasmota:", "sonoff:plug1", "tasmota:+", "tasmota:plug/#", "tasmota:a/b",
                          "shelly:#", "shelly:x y", "tasmota:\"x"}) {
    ServeSwitch s;
    std::string err;
    EXPECT_FALSE(serve_switch_parse(bad, s, err)) << bad;
    EXPECT_FALSE(err.empty()) << bad;
    EXPECT_TRUE(s.kind.empty()) << bad;
  }
  ServeSwitch s;
  std::string err;
  EXPECT_FALSE(serve_switch_parse("tasmota:" + std::string(65, 'p'), s, err));
}
