// Connext v1 JSON for picopay states and updates (docs/design.md §3), through cJSON.
//
// Field names are the Connext client's. Amounts are decimal strings (wei or token base
// units, 0..2^256-1); counters are JSON numbers (0..2^53-1, integral); addresses are
// 0x-hex (mixed case must be valid EIP-55; output is always EIP-55); hashes 0x + 64 hex;
// signatures 0x + 130 hex (v 0/1/27/28 accepted, 27/28 printed).
#pragma once

#include <cjson/cJSON.h>

#include <string>

#include "picopay/channel.hpp"
#include "picopay/state.hpp"

namespace picopay::json {

// Reads a ChannelState object; sigUser/sigHub are optional (absent or null = none).
// Every other field is required; unknown fields are ignored (as Connext clients do).
// On failure returns false and sets `err` to one line naming the field and the problem.
bool channel_from_json(const cJSON* obj, SignedChannelState& out, std::string& err);
// A new cJSON object (caller frees with cJSON_Delete); sigs included when present.
cJSON* channel_to_json(const SignedChannelState& s);

// ThreadState; sigA optional.
bool thread_from_json(const cJSON* obj, SignedThreadState& out, std::string& err);
cJSON* thread_to_json(const SignedThreadState& s);

// A channel update request: {"reason": "Payment", "txCount": n, "args": {...}, "sigUser"
// or "sig": "0x.."}. Args use the names of channel.hpp (e.g. Payment: recipient "hub" |
// "user", amountWei, amountToken).
bool update_from_json(const cJSON* obj, ChannelUpdate& out, std::string& err);
cJSON* update_to_json(const ChannelUpdate& u);

// Parses a whole JSON document; on failure returns null and sets `err`.
cJSON* parse_document(const std::string& text, std::string& err);

// Prints compactly (or indented) and frees nothing.
std::string print(const cJSON* obj, bool pretty);

// Helpers shared by the programs.
std::string address_text(const Address& a);     // EIP-55
std::string hash_text(const Hash32& h);         // 0x + 64 lowercase hex
std::string signature_text(const Signature& s); // 0x + 130 lowercase hex
std::string amount_text(const U256& v);         // decimal

}  // namespace picopay::json
