// picopay programs: one payment or channel event with its time (the agent's history file,
// the hub's history table; docs/flows.md "Receipts and history") and its printed forms.
#pragma once

#include <cjson/cJSON.h>

#include <cstdint>
#include <string>
#include <vector>

#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::agent {

struct HistoryEntry {
  uint64_t time = 0;            // Unix seconds
  std::string event;            // see above
  uint64_t txCountGlobal = 0;   // 0: not a channel update (a thread payment)
  std::string reason;           // UpdateReason name, or ""
  U256 wei = U256::zero();      // the amount this event moved (wei)
  bool has_counterparty = false;
  Address counterparty{};       // payee (payer side), payer (payee side), recipient (withdrawal)
  uint64_t threadId = 0;
  bool has_balances = false;
  U256 balanceWeiUser = U256::zero(), balanceWeiHub = U256::zero();
  std::string transaction;      // 0x.. for on-chain steps
};

// JSON object of one entry (the caller frees it) and back (false if a required field,
// time / event / wei, is missing or malformed).
cJSON* history_entry_json(const HistoryEntry& e);
bool history_entry_from_json(const cJSON* o, HistoryEntry& e);

// Prints entries as "table" (aligned, with running totals per thread and per
// counterparty, then the totals), "json" (an array of the entries with the running
// totals threadTotalWei / counterpartyTotalWei) or "csv" (a header line, one line per
// entry). Running totals add the events that move money between the parties: payment,
// thread-payment, thread-received (the agent) and thread-settled (the hub).
std::string history_format(const std::vector<HistoryEntry>& h, const std::string& format);

}  // namespace picopay::agent
