// picopay-agent: the payee's "stop serving" as an action (docs/tokens.md, "The seller's
// price list"): when the payers fall behind what its meter delivered by more than the
// margin, the payee switches its metered output off with the command the meter already
// understands, and on again once they caught up.
//
//   tasmota:TOPIC   cmnd/TOPIC/POWER with "OFF" / "ON" (Tasmota's MQTT command topic)
//   shelly:ID       ID/rpc with {"id":1,"src":"picopay-ID","method":"Switch.Set",
//                   "params":{"id":0,"on":false|true}} (Shelly Gen2 RPC over MQTT)
//
// The broker's ACL must let the payee's MQTT user write that topic. The switch state is a
// command, not a proof: a meter that ignores it is still metered, and the payee goes on
// comparing what it delivered with what it was paid.
#pragma once

#include <string>

namespace picopay::device {

struct ServeSwitch {
  std::string kind;  // "tasmota" | "shelly"; empty: no switch configured
  std::string id;    // the device's MQTT topic (Tasmota) or id (Shelly)
};

struct SwitchCommand {
  std::string topic, payload;
};

// Parses "tasmota:TOPIC" / "shelly:ID" (TOPIC/ID: 1..64 characters, no '/', '+', '#',
// spaces or control characters). False with `err` (one line) otherwise.
inline bool serve_switch_parse(const std::string& spec, ServeSwitch& out, std::string& err) {
  const size_t c = spec.find(':');
  const std::string kind = c == std::string::npos ? spec : spec.substr(0, c);
  const std::string id = c == std::string::npos ? std::string() : spec.substr(c + 1);
  if (kind != "tasmota" && kind != "shelly") {
    err = "serve switch: expected tasmota:TOPIC or shelly:ID, got '" + spec + "'";
    return false;
  }
  bool ok = !id.empty() && id.size() <= 64;
  for (char ch : id) ok = ok && ch > ' ' && ch != '/' && ch != '+' && ch != '#' && ch != '"' && ch != '\\' && ch != 0x7f;
  if (!ok) {
    err = "serve switch: the " + kind + " topic must be 1..64 characters without '/', '+', '#', quotes or spaces";
    return false;
  }
  out.kind = kind;
  out.id = id;
  return true;
}

// The MQTT message that switches the output on or off.
inline SwitchCommand serve_switch_command(const ServeSwitch& s, bool on) {
  if (s.kind == "tasmota") return {"cmnd/" + s.id + "/POWER", on ? "ON" : "OFF"};
  return {s.id + "/rpc", std::string("{\"id\":1,\"src\":\"picopay-") + s.id +
                             "\",\"method\":\"Switch.Set\",\"params\":{\"id\":0,\"on\":" + (on ? "true" : "false") + "}}"};
}

}  // namespace picopay::device
