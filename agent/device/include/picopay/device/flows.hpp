// picopay-agent: the money flows a person starts by hand (docs/flows.md) and the agent's
// history of payments and channel events.
//
// Commands. `picopay-agent deposit|withdraw AMOUNT --state-dir DIR` talks to the agent
// that runs on DIR through a command inbox in the state dir (DIR/commands/, mode 0700:
// only the device's own account can write there, as for the state record itself):
//
//   <id>.json          {"op":"deposit"|"withdraw"|"exchange","wei":"<decimal>","to":"0x.."}
//                      (new); instead of "wei", "amount":"2.5 PPT" is an amount in units
//                      (agent/common units.hpp) the agent reads in its channel's asset
//                      (exchange: the asset sold, ETH or the contract's token)
//   <id>.taken         the same file, renamed by the agent before it signs anything
//   <id>.result.json   {"ok":bool,"op":..,"wei":..,"amount":"1 PPT","asset":"PPT",
//                       "txCountGlobal":N,"transaction":"0x..","error":".."}  (written by the
//                       agent when the flow ended; "wei" counts base units of "asset": wei in
//                       an ETH channel, token base units in a token channel)
//
// A command is carried out at most once: the agent renames it to .taken (atomic) before it
// proposes; a .taken file without a result found at start (the agent stopped meanwhile)
// gets the result "interrupted" (the channel's pending operation, if any was
// double-signed, is still executed on chain and confirmed by the agent: nothing is lost,
// nothing is done twice). When no agent runs on DIR (its lock DIR/agent.lock is free),
// the command itself runs the agent in one-shot mode holding the lock: it connects,
// carries out the inbox and exits. Two programs never act on one state dir at once.
//
// History. DIR/history.jsonl: one JSON object per line, appended after the record that
// made it true was stored (state.hpp), fdatasync'd:
//   {"time":unix s,"event":"<kind>","txCountGlobal":N,"reason":"Payment"|..,
//    "wei":"<dec>","counterparty":"0x..","threadId":N,"balanceWeiUser":"<dec>",
//    "balanceWeiHub":"<dec>","transaction":"0x.."}
// events: payment (to the hub), thread-open, thread-payment (payer: one signed thread
// state), thread-received (payee), thread-close, deposit-proposed, deposit-confirmed,
// withdrawal-proposed, withdrawal-confirmed, collateral (hub funds in), collateral-reclaimed
// (hub funds out), update (anything else). Fields that do not apply are absent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "picopay/agent/history.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::device {

// ---------------------------------------------------------------- state dir lock

// Takes the exclusive lock DIR/agent.lock (flock, held until the process exits). True if
// this process holds it (also when it already did); false with `err` naming the holder
// ("another picopay-agent runs on DIR") or the I/O error.
bool state_dir_lock(const std::string& dir, std::string& err);

// ---------------------------------------------------------------- commands

struct Command {
  std::string id;          // file stem (time-pid), orders commands
  std::string op;          // "deposit" | "withdraw" | "exchange"
  U256 wei = U256::zero(); // amount in base units of the channel's asset; withdraw with all = true: the whole balance
  std::string amount;      // instead of wei: the amount in units ("2.5 PPT", "0.01 ETH"), read by the agent
  bool all = false;
  bool has_to = false;     // withdraw: recipient (default the user)
  Address to{};
};

struct CommandResult {
  bool ok = false;
  std::string op;
  U256 wei = U256::zero();  // base units of `asset`
  std::string amount;       // the same in units ("1 PPT"), empty if unknown
  std::string asset;        // "ETH" or the token's symbol, empty if unknown
  uint64_t txCountGlobal = 0;
  std::string transaction;  // the on-chain transaction (0x..), if any
  uint64_t gasUsed = 0;     // its gas
  uint64_t elapsedMs = 0;   // from taking the command to the ConfirmPending (steady clock)
  std::string error;        // one line when !ok
};

// Writes `c` into DIR/commands/ (tmp + rename). Sets c.id. False with `err`.
bool command_submit(const std::string& dir, Command& c, std::string& err);
// The oldest new command, or false if none. A malformed file gets an error result.
bool command_next(const std::string& dir, Command& c);
// Renames DIR/commands/<id>.json to .taken (before the agent signs anything for it).
bool command_take(const std::string& dir, const std::string& id, std::string& err);
// Writes DIR/commands/<id>.result.json and removes <id>.taken.
bool command_finish(const std::string& dir, const std::string& id, const CommandResult& r, std::string& err);
// Taken commands without a result (the agent stopped while carrying them out): each gets
// the result "interrupted" (at agent start).
void command_recover(const std::string& dir);
// Waits up to `timeout_ms` for the result of `id`. False if none came.
bool command_wait(const std::string& dir, const std::string& id, int timeout_ms, CommandResult& r);
std::string command_result_json(const CommandResult& r);

// ---------------------------------------------------------------- history

using agent::HistoryEntry;
using agent::history_format;

// Appends one line to DIR/history.jsonl and fdatasyncs it. False with `err`.
bool history_append(const std::string& dir, const HistoryEntry& e, std::string& err);
// Reads DIR/history.jsonl (a torn last line is skipped). False with `err` if unreadable.
bool history_load(const std::string& dir, std::vector<HistoryEntry>& out, std::string& err);
}  // namespace picopay::device
