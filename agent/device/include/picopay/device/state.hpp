// picopay-agent: the state dir. One atomic record `<dir>/agent.json` (PosixStateStore:
// temp + fsync + rename + fsync dir, CRC-32) holds everything the agent must not lose:
//
//   {"version":1, "user":"0x..", "hub":"0x..", "contract":"0x..",
//    "channel": {Connext v1 ChannelState, sigUser+sigHub (genesis: txCountGlobal 0, none)},
//    "pending": null | {"update":"<hex wire ChannelUpdate, kind 0x03>", "units":N,
//                       "weiPaid":"dec"},   // the user-proposed update in flight
//    "meter": {"hasLast":bool,"lastMwh":N,"meteredMwh":N,"extraUnits":N},
//    "unitsPaid":N, "weiPaid":"dec", "nextThreadId":N,
//    "threads":[{"role":"sender"|"receiver","open":bool,"closing":bool,
//                "initial":{ThreadState+sigA}, "latest":{ThreadState+sigA}}]}
//
// Invariant (DESIGN.md §4.1): every state this agent signs is in the record before the
// signature is published: a user-proposed update as `pending` (its bytes are re-sent
// unchanged after a crash, never re-signed), a hub-proposed one as the new `channel`,
// a thread update as the thread's `latest`.
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
  SignedThreadState initial{};
  SignedThreadState latest{};
};

struct AgentState {
  Address user{}, hub{}, contract{};
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
