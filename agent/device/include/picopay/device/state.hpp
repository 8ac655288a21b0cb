// picopay-agent: the state dir. One atomic record `<dir>/agent.json` (PosixStateStore:
// temp + fsync + rename + fsync dir, CRC-32) holds everything the agent must not lose:
//
//   {"version":2, "user":"0x..", "hub":"0x..", "contract":"0x..",
//    "session": "<hex: the core Session's persistent record (session.hpp serialise())>",
//    "pendingUnits":N, "pendingWei":"dec",  // unitsPaid/weiPaid once the pending Payment completes
//    "deposited":bool,                      // the user's own first deposit was proposed
//    "meter": {"hasLast":bool,"lastMwh":N,"meteredMwh":N,"extraUnits":N},
//    "unitsPaid":N, "weiPaid":"dec",
//    and, for people and tools only (rewritten from the session at every save, never read
//    back as the truth): "channel", "pending", "nextThreadId", "threads":[{"role",
//    "open","closing","initial","latest"}]}
//
// Invariant (docs/ARCHITECTURE.md, safety invariant 1): every state this agent signs is in
// the record before the signature is published: the session says so (Effects.persist)
// and the agent writes the record before it sends anything. Version 1 records (before the
// single-proposer session) are refused with a clear error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "picopay/channel.hpp"
#include "picopay/device/meter.hpp"
#include "picopay/state.hpp"
#include "picopay/u256.hpp"

namespace picopay::device {

struct ThreadRecord {
  bool sender = true;   // this agent is the thread's sender (payer) or receiver (payee)
  bool open = true;     // still in the channel's thread set
  bool closing = false; // a close was requested
  bool tower_released = false;  // receiver, closed: picopay-tower confirmed it holds nothing of it
  SignedThreadState initial{};
  SignedThreadState latest{};
};

struct AgentState {
  Address user{}, hub{}, contract{};
  std::vector<uint8_t> session;   // the Session record: the truth for everything below it
  bool deposited = false;         // the first user deposit was proposed (role both: whoever deposits first)
  SignedChannelState channel{};
  bool has_pending = false;
  ChannelUpdate pending{};
  uint64_t pending_units = 0;     // unitsPaid once `pending` is countersigned
  U256 pending_wei = U256::zero();  // weiPaid once `pending` is countersigned
  MeterAccount meter{};
  uint64_t units_paid = 0;
  U256 wei_paid = U256::zero();
  uint64_t next_thread_id = 1;
  std::vector<ThreadRecord> threads;

  // The open threads' initial states, as the core's ThreadSet wants them.
  std::vector<ThreadState> open_thread_initials() const;
  // Index of a thread or -1.
  long find_thread(const Address& sender, const Address& receiver, uint64_t id) const;
};

// A genesis channel state: contract, user = recipient = user, everything else zero.
SignedChannelState genesis_channel(const Address& contract, const Address& user);

// JSON form (above). to_json never fails; from_json returns false with `err`.
std::string state_to_json(const AgentState& s, bool pretty = false);
bool state_from_json(const std::string& text, AgentState& out, std::string& err);

// The record in `dir`. load: NotFound is reported as false with err "no state" and
// `*missing` = true.
bool state_load(const std::string& dir, AgentState& out, std::string& err, bool* missing = nullptr);
bool state_save(const std::string& dir, const AgentState& s, std::string& err);

// `picopay-agent status` output: {"user","hub","contract","channel": latest double-signed
// state (null if none yet), "pending": update JSON or null, "threads": [...],
// "unitsPaid","weiPaid","meteredWh","received": {"wei": payee total}}.
std::string status_json(const AgentState& s);

// Builds a ThreadSet over `items` (scratch sized capacity + 2) for the core.
struct ThreadSetBuf {
  std::vector<ThreadState> items;
  std::vector<Hash32> scratch;
  ThreadSet set{};
  explicit ThreadSetBuf(const AgentState& s, size_t extra = 4);
};

}  // namespace picopay::device
