// picopay-hub: small helpers and limits shared by the hub's parts (engine, requests, cache,
// chain jobs); private to agent/hub/src.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>

#include "picopay/codec.hpp"
#include "ledger/ledger.hpp"
#include "picopay/mqtt/protocol.hpp"

namespace picopay::hub {

constexpr size_t kThreadCap = 256;
constexpr uint64_t kReorderWindow = 64;
constexpr size_t kFutureMax = 64;

inline uint64_t now_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// The core's Reply codec (codec.hpp): Ack, Nack, Sync to the user.
inline Bytes reply_bytes(const Reply& r) {
  uint8_t buf[kMaxReplyWire];
  size_t n = 0;
  if (encode_reply(r, buf, sizeof buf, &n) != Status::Ok) return {};
  return Bytes(buf, buf + n);
}

inline uint64_t unix_now() { return static_cast<uint64_t>(std::time(nullptr)); }

// A stored request: the update's wire with txCountGlobal 0 and a placeholder signature (a
// request is unsigned; the codec wants a well-formed one).
inline bool update_wire(ChannelUpdate u, Bytes& out) {
  u.sig = Signature{};
  u.sig.v = 27;
  u.txCountGlobal = 0;
  uint8_t buf[kMaxChannelUpdateWire];
  size_t n = 0;
  if (encode_channel_update(u, buf, sizeof buf, &n) != Status::Ok) return false;
  out.assign(buf, buf + n);
  return true;
}

// Whether a request that does not apply now may apply later (it waits, stored).
inline bool waits(const ChannelUpdate& u, Status s) {
  return s == Status::PendingOperation || (u.reason == UpdateReason::OpenThread && s == Status::Underflow);
}

// A policy refusal the hub will not lift by itself (the user's proposal is then
// invalidated on request); the others may pass later (the chain catches up, an I/O error).
inline bool refused_for_good(Status s) {
  return s != Status::IoError && s != Status::NotOnChain && s != Status::CryptoUnavailable &&
         s != Status::PendingOperation;
}

// Re-send an outstanding request nobody answered after this; after a RequestNack the
// delay doubles from 1 s up to kNackBackoffMaxMs.
constexpr uint64_t kResendMs = 30000;
constexpr uint64_t kNackBackoffMaxMs = 60000;
// Timeout of a collateral deposit the hub requests (Unix seconds from when it is sent).
constexpr uint64_t kDepositTimeoutSeconds = 3600;

}  // namespace picopay::hub
