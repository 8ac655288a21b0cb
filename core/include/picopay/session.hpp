// picopay core: the device (user) side of one channel and its threads, allocation-free
// (docs/device-session.md).
//
// The session is the one implementation of the user's protocol: picopay-agent, the test
// simulator, the load generator and the firmware image drive it with the messages they
// receive and carry out the Effects it returns. It knows no transport: messages go out
// as (Route, bytes); agent/mqtt maps routes to topics.
//
// Rules it enforces (docs/mqtt-protocol.md, docs/signing-policy.md):
//   - the user is the only proposer: the session proposes its own updates and turns an
//     acceptable HubRequest into its own proposal, one at a time (at most one proposal
//     in flight), so no two proposals ever race for one txCountGlobal; it never
//     countersigns a hub-signed-first update;
//   - it never signs two states with one txCountGlobal: a proposal is persisted before
//     it leaves and re-sent as the same bytes until the hub answers;
//   - what it proposes on the hub's request passes policy_user_accepts_request;
//   - it signs nothing until a Sync (or a Nack/Ack) shows the hub at its own state.
//
// Every entry point returns a Status (why something was refused or ignored; Ok when
// handled) and fills an Effects: if `persist` is set, the caller serialises the session
// (serialise()) and stores the record durably BEFORE it sends any of `out` (a program
// stores its own bookkeeping, e.g. metered units paid, in the same atomic write).
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/channel.hpp"
#include "picopay/codec.hpp"
#include "picopay/policy.hpp"
#include "picopay/signer.hpp"
#include "picopay/state.hpp"
#include "picopay/status.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay {

// Where a message goes. agent/mqtt: ToHubUpdate -> .../channel/{user}/update (Correlation
// Data = `correlation`), ToHubReply -> .../channel/{user}/reply, ToHubSync ->
// .../channel/{user}/sync (empty payload), ToThreadReceiver -> picopay/v1/thread/{to}/update.
enum class Route : uint8_t {
  None = 0,
  ToHubUpdate = 1,       // a ChannelUpdate (wire kind 0x03) proposed by the user
  ToHubReply = 2,        // a Reply (RequestNack) to a HubRequest
  ToHubSync = 3,         // "send me your latest state" (len 0)
  ToThreadReceiver = 4,  // a thread payment (ThreadPayment, 0x06) or a close request (ThreadState, 0x02) to `to`
};

constexpr size_t kSessionMaxMessage = kMaxReplyWire > kMaxChannelUpdateWire ? kMaxReplyWire : kMaxChannelUpdateWire;
constexpr size_t kSessionMaxOut = 2;

struct OutMessage {
  Route route;
  Address to;            // ToThreadReceiver: the thread's receiver
  uint64_t correlation;  // ToHubUpdate: the update's txCountGlobal; ToHubReply: the request id
  size_t len;
  uint8_t bytes[kSessionMaxMessage];
};

// What happened, for the caller's bookkeeping (meters, logs, status JSON).
enum class SessionEvent : uint8_t {
  None = 0,
  UpdateCompleted = 1,        // our proposal is double-signed: `reason`, `txCountGlobal` (Payment: the amounts)
  ThreadPaymentReceived = 2,  // payee: a thread payment was accepted: `amountWei`, `amountToken` (what the
                              // receiver's balances grew by: one payment, or several the payee had missed)
  Synced = 3,                 // the hub's latest state is ours: the session signs again
};

struct Effects {
  bool persist;  // store serialise() durably before sending anything in `out`
  size_t count;
  OutMessage out[kSessionMaxOut];
  SessionEvent event;
  UpdateReason reason;
  uint64_t txCountGlobal;
  U256 amountWei, amountToken;
  bool needsChain;  // a request or proposal waits for chain facts (call on_chain_fact)
  Status refused;   // the hub refused our proposal (Nack status), or Ok
};
void effects_clear(Effects& fx) noexcept;

// A thread where the user is sender (payer) or receiver (payee).
struct SessionThread {
  bool used;     // slot in use
  bool sender;   // the user is the thread's sender
  bool open;     // in the channel's thread set (OpenThread double-signed)
  bool closing;  // a close was requested (payer: asked the payee; payee: the payer asked)
  SignedThreadState initial;
  SignedThreadState latest;
  // Volatile (not in the record; zero after init/restore). Payer: the re-sending of the
  // latest thread payment (see Session::tick).
  uint64_t seenTxCount;  // latest.state.txCount when tick last looked
  uint64_t resendAt;     // Unix seconds of the next re-send (0: none planned)
  uint64_t resendGap;    // seconds until the one after (doubles, at most kThreadResendMaxSeconds)
};

// A payer re-sends an idle thread's latest payment at most this far apart (seconds).
constexpr uint64_t kThreadResendMaxSeconds = 300;

// Caller-owned storage: `threads[capacity]`, `setItems[capacity]` and
// `setScratch[capacity + 2]` (the core's ThreadSet is built there).
struct SessionStorage {
  SessionThread* threads;
  size_t capacity;
  ThreadState* setItems;
  Hash32* setScratch;
};

struct SessionConfig {
  Address contract, user, hub;
  // Verify the hub's countersignature on the Ack of a plain Payment to the hub. false
  // (firmware may): the signature is stored unchecked and verified before the session
  // relies on the state as evidence: before any proposal or accepted request that raises
  // the user's claim (anything but a Payment to the hub), and in verify_evidence()
  // (call it before an exit). A bad one halts the session (Halted).
  bool verifyCountersigOnPayment;
  bool hasChainAccess;          // the device can read the chain (ChainFacts)
  bool acceptIncomingThreads;   // payee role
  uint64_t resendSeconds;       // re-send a proposal / sync / close request after this (2)
  uint64_t refusedBackoffSeconds;  // after a Nack at our state, re-offer after this (10)
  PolicyLimits limits;
};
// Defaults: verifyCountersigOnPayment true, no chain, no incoming threads, 2 s / 10 s,
// policy_limits_default().
SessionConfig session_config_default() noexcept;

// The persistent record's upper bound for `capacity` threads (bytes).
constexpr size_t session_record_max(size_t capacity) noexcept {
  return 4 + 1 + 60 + 1 + (2 + kMaxChannelStateWire) + (2 + kMaxChannelUpdateWire) + 8 + (2 + kMaxHubRequestWire) +
         8 + 8 + (1 + 20 + 64) + (1 + 64) + (2 + 96) + 2 + capacity * (1 + 2 * (2 + kMaxThreadStateWire));
}

class Session {
 public:
  Session() noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // A new channel at its genesis state (txCountGlobal 0, no signatures). `signer` and
  // `key` (the user's, cfg.user's address) are borrowed and must outlive the session.
  // Errors: BadArgs (a null storage array or zero capacity), WrongParty (cfg.user zero).
  [[nodiscard]] Status init(const SessionConfig& cfg, const Signer& signer, const PrivateKey& key,
                            const SessionStorage& storage) noexcept;

  // Replaces the session's state with a record written by serialise() (call after init
  // with the same cfg). Errors: Truncated, TrailingBytes, BadVersion, Corrupt (bad magic,
  // a pending update that does not apply), WrongContract / WrongParty (another channel),
  // TooManyThreads (more threads than capacity), and the codec's decode errors. On error
  // the session is unchanged.
  [[nodiscard]] Status restore(const uint8_t* in, size_t len) noexcept;
  // Writes the persistent record. Errors: BufferTooSmall (`*written` gets the size
  // needed; session_record_max(capacity) always suffices).
  [[nodiscard]] Status serialise(uint8_t* out, size_t cap, size_t* written) const noexcept;

  // The transport (re)connected: asks the hub for its latest state (ToHubSync); the
  // session signs nothing until the answer shows the hub at our state. Payer: the latest
  // payment of every open thread is re-sent at the next tick.
  Status on_connect(uint64_t now, Effects& fx) noexcept;
  // Re-sends: the pending proposal (same bytes), the sync request, the payer's close
  // requests, every cfg.resendSeconds; the payer's latest thread payment (the same bytes:
  // the state is cumulative, a payee takes it whatever it missed) once a thread has been
  // idle for cfg.resendSeconds, then after 2x, 4x ... that (at most
  // kThreadResendMaxSeconds), and at the first tick after on_connect: a payment the broker
  // lost, the payee refused or the payer never sent (killed after persisting) reaches the
  // payee without a new payment. `now`: Unix seconds.
  Status tick(uint64_t now, Effects& fx) noexcept;

  // Pays the hub (a Payment, recipient hub). Errors: Busy (a proposal in flight),
  // OutOfSync, Halted, BadArgs (zero amounts), Underflow (balance), PendingOperation (the
  // channel has pending ops), and channel_propose's errors. Nothing is persisted or sent
  // on error.
  Status propose_payment(const U256& wei, const U256& token, uint64_t now, Effects& fx) noexcept;

  // Payer: opens a thread to `receiver` locking (wei, token) of the user's balance.
  // `*threadId` gets the new thread's id. Errors: as propose_payment, TooManyThreads.
  Status propose_thread_open(const Address& receiver, const U256& wei, const U256& token, uint64_t now,
                             Effects& fx, uint64_t* threadId) noexcept;
  // Payer: pays on an open thread (signs the next thread state, persisted before it
  // leaves as a ThreadPayment, wire kind 0x06, carrying the whole cumulative state; no hub
  // involvement). Errors: ThreadNotFound (not open, or closing), Underflow, BadArgs,
  // Halted, thread_propose's errors.
  Status thread_pay(const Address& receiver, uint64_t threadId, const U256& wei, const U256& token,
                    Effects& fx) noexcept;
  // Payer: asks the payee to close the thread (sends the latest signed thread state;
  // re-sent by tick until the hub's CloseThread request arrives). Errors: ThreadNotFound.
  Status thread_close_request(const Address& receiver, uint64_t threadId, uint64_t now, Effects& fx) noexcept;

  // Records a request of the user and proposes it (ProposePendingWithdrawal /
  // ProposePendingDeposit / Exchange with seller user). `timeout`: Unix seconds, in
  // (now, now + limits.maxTimeoutSeconds] (unchecked if now is 0). Errors: as
  // propose_payment, TimeoutOutOfBounds, RateOutOfBounds (exchange rate outside
  // [minRate, maxRate]), and the signature errors of verify_evidence (Halted after).
  Status request_withdrawal(const Address& recipient, const U256& wei, const U256& token, uint64_t timeout,
                            uint64_t now, Effects& fx) noexcept;
  Status request_deposit(const U256& wei, const U256& token, uint64_t timeout, uint64_t now, Effects& fx) noexcept;
  // Sells `amount` wei (sellWei) or tokens at `rate` (token base units per wei), which
  // must lie in [minRate, maxRate]: the hub countersigns only near its own rate.
  Status request_exchange(bool sellWei, const U256& amount, const U256& rate, const U256& minRate,
                          const U256& maxRate, uint64_t now, Effects& fx) noexcept;
  // Proposes ConfirmPending of the pending operations of the latest state (after the
  // user's own on-chain deposit or withdrawal); needs chain facts showing it executed.
  // Errors: NeedsChain, NotOnChain, as propose_payment.
  Status propose_confirm_pending(const Hash32& transactionHash, uint64_t now, Effects& fx) noexcept;

  // A Reply on the user's reply topic (Ack / Nack / Sync). Ignored ones return why:
  // a decode error, Duplicate (not about our pending proposal), WrongContract /
  // WrongParty (another channel), StaleState, StateConflict, NotDoubleSigned, the
  // signature errors, UnknownState (halts), Halted.
  Status on_reply(const uint8_t* in, size_t len, uint64_t now, Effects& fx) noexcept;
  // A HubRequest on the user's request topic. Forgeries (WrongSigner, ...) and other
  // channels are dropped without an answer; OutOfSync: ignored until synced (the hub
  // re-sends); Duplicate: an id already handled (re-sends the pending proposal if it is
  // that request's); a refused request is answered with a RequestNack (its status is the
  // return value); Busy: queued behind the proposal in flight; Ok: proposed. An
  // Invalidation of the half-signed state txCountGlobal + 1 (channel_is_skip) is the
  // hub refusing our pending proposal for good: it replaces that proposal at once (a
  // skip of anything but our pending proposal: NotRequested).
  Status on_hub_request(const uint8_t* in, size_t len, uint64_t now, Effects& fx) noexcept;
  // A message on the user's thread topic: a ThreadPayment (payee: the payer's latest
  // state, checked by thread_accept_state; it is accepted whatever the channel is doing,
  // pending deposits included) or a ThreadState (payee: the payer asks to close; the
  // session proposes CloseThread with the latest state it holds). Errors: decode errors,
  // BadKind (also for the retired increment form, kind 0x04, of older payers),
  // ThreadNotFound, and those of thread_accept_state (Duplicate: a re-send, StaleState,
  // StateConflict, the thread rules, signature errors); nothing is stored on error.
  Status on_thread_message(const uint8_t* in, size_t len, uint64_t now, Effects& fx) noexcept;
  // Chain facts the caller read (all at one block); re-evaluates a hub request waiting
  // for them, then proposes it (Ok) or keeps it (NeedsChain / NotOnChain with
  // Effects::needsChain) or refuses it with a RequestNack (its status is returned).
  Status on_chain_fact(const ChainFacts& facts, uint64_t now, Effects& fx) noexcept;

  // Verifies the hub's countersignature on the latest state if it was stored unchecked
  // (cfg.verifyCountersigOnPayment false). Call before an exit. Errors: the signature
  // errors (the session is then Halted).
  Status verify_evidence() noexcept;

  // Read access.
  const SignedChannelState& channel() const noexcept { return channel_; }
  bool synced() const noexcept { return synced_; }
  bool halted() const noexcept { return halted_; }
  bool has_pending() const noexcept { return hasPending_; }
  const ChannelUpdate& pending() const noexcept { return pending_; }
  bool has_hub_request() const noexcept { return hasHubRequest_; }
  const HubRequest& hub_request() const noexcept { return hubRequest_; }
  const UserRequests& requests() const noexcept { return requests_; }
  const ChainFacts& chain() const noexcept { return chain_; }
  size_t thread_capacity() const noexcept { return storage_.capacity; }
  // Slot i (0 .. thread_capacity()-1); check `used`.
  const SessionThread& thread_slot(size_t i) const noexcept { return storage_.threads[i]; }
  // Slot index of a thread or -1.
  long find_thread(const Address& sender, const Address& receiver, uint64_t threadId) const noexcept;
  uint64_t next_thread_id() const noexcept { return nextThreadId_; }
  // The last reason the session refused or ignored something (for logs/status).
  Status last_status() const noexcept { return last_; }

 private:
  enum class HubState : uint8_t { Ours, Pending, Unknown, Ignored };
  HubState check_hub_state(const SignedChannelState& s, Status& why) noexcept;
  ThreadSet thread_set() const noexcept;
  Status propose(ChannelUpdate& u, uint64_t now, Effects& fx, bool fromRequest, uint64_t requestId) noexcept;
  Status complete_pending(const Signature& sigHub, bool verified, Effects& fx) noexcept;
  Status next_work(uint64_t now, Effects& fx) noexcept;
  Status evaluate_request(uint64_t now, Effects& fx) noexcept;
  Status abandon_pending(const HubRequest& q, uint64_t now, Effects& fx) noexcept;
  Status ready_to_propose(bool raisesClaim) noexcept;
  Status send_pending(uint64_t now, Effects& fx) noexcept;
  Status send_sync(uint64_t now, Effects& fx) noexcept;
  Status send_request_nack(uint64_t requestId, Status why, Effects& fx) noexcept;
  Status send_thread_state(const SessionThread& t, Effects& fx) noexcept;
  Status send_thread_payment(const SessionThread& t, Effects& fx) noexcept;
  Status tick_channel(uint64_t now, Effects& fx) noexcept;
  void resend_thread_payments(uint64_t now, Effects& fx) noexcept;
  OutMessage* add_out(Effects& fx, Route r) noexcept;
  long free_slot() const noexcept;
  Status ret(Status s) noexcept {
    if (s != Status::Ok) last_ = s;
    return s;
  }

  SessionConfig cfg_;
  const Signer* signer_;
  const PrivateKey* key_;
  SessionStorage storage_;
  ChannelContext ctx_;

  // Persistent (serialise / restore).
  SignedChannelState channel_;  // latest double-signed state (or genesis)
  bool sigHubUnverified_;       // channel_.sigHub stored unchecked (lazy verification)
  bool hasPending_;
  ChannelUpdate pending_;       // signed by us, not yet countersigned
  bool pendingFromRequest_;
  uint64_t pendingRequestId_;
  bool hasHubRequest_;          // a verified hub request not yet proposed or refused
  HubRequest hubRequest_;
  uint64_t lastRequestId_;      // highest request id proposed or refused
  bool lastRequestProposed_;    // lastRequestId_ was proposed (not refused): never again
  UserRequests requests_;
  uint64_t nextThreadId_;

  // Volatile.
  ChainFacts chain_;
  bool synced_;
  bool halted_;
  uint64_t lastSend_;
  uint64_t lastSync_;
  uint64_t lastClose_;
  Status last_;
};

}  // namespace picopay
