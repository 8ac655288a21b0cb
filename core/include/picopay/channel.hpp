// picopay core: the Connext v1 channel and thread state machines.
//
// A channel update travels as an *update request* (reason, args, txCountGlobal and the
// proposer's signature), as the Connext client sends it: the receiver rebuilds the next
// state from its own stored previous state and the args, so the args explain the change
// exactly by construction, then checks the proposer's signature over the rebuilt state
// (docs/design.md §3, §4).
//
// Roles: the *proposer* calls channel_propose() (builds, signs), persists the result, and
// sends the request; the *receiver* calls channel_accept() (rebuilds, validates, checks
// the signature), persists, then countersigns with Signer::sign_eth over the returned
// hash. Both are pure: nothing is stored here; the caller owns persistence and the set of
// open threads.
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/signer.hpp"
#include "picopay/state.hpp"
#include "picopay/status.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay {

// The Connext client's ChannelUpdateReasons, with the wire codes of docs/wire-format.md.
enum class UpdateReason : uint8_t {
  Payment = 1,
  Exchange = 2,
  ProposePendingDeposit = 3,
  ProposePendingWithdrawal = 4,
  ConfirmPending = 5,
  Invalidation = 6,
  OpenThread = 7,
  CloseThread = 8,
  EmptyChannel = 9,
};
// "Payment", "Exchange", ... (the Connext names), or null for an unknown code.
const char* update_reason_name(UpdateReason r) noexcept;
// Parses a Connext reason name. Errors: BadReason.
[[nodiscard]] Status update_reason_parse(const char* s, size_t len, UpdateReason& out) noexcept;

// The two parties of a channel. Wire codes: Hub = 0, User = 1.
enum class Party : uint8_t { Hub = 0, User = 1 };

// Payment: `recipient` receives amountWei and amountToken from the other party.
struct PaymentArgs {
  Party recipient;
  U256 amountWei;
  U256 amountToken;
};

// Exchange (Connext's in-channel swap): `seller` sells exactly one of weiToSell or
// tokensToSell (the other is zero) at `exchangeRate` token base units per wei
// (an integer). Amounts that do not divide evenly follow Connext v1 (exchange_amounts in
// policy.hpp): tokens are sold only in whole wei, the remainder stays with the seller.
struct ExchangeArgs {
  Party seller;
  U256 weiToSell;
  U256 tokensToSell;
  U256 exchangeRate;
};

// ProposePendingDeposit: deposits that an on-chain hubAuthorizedUpdate /
// userAuthorizedUpdate will add; `timeout` is the Unix second after which the
// proposal lapses (must be non-zero).
struct DepositArgs {
  U256 depositWeiHub, depositWeiUser;
  U256 depositTokenHub, depositTokenUser;
  uint64_t timeout;
};

// ProposePendingWithdrawal: amounts moved out of the balances into pending withdrawals,
// paid on chain to `recipient` (user withdrawals) and to the hub's reserve.
struct WithdrawalArgs {
  Address recipient;
  U256 withdrawalWeiHub, withdrawalWeiUser;
  U256 withdrawalTokenHub, withdrawalTokenUser;
  uint64_t timeout;
};

// ConfirmPending and EmptyChannel carry the transaction that made them happen
// (informational: it is not part of the signed state).
struct ChainTxArgs {
  Hash32 transactionHash;
};

// Invalidation, two forms (Connext v1):
//   - of pending operations: undoes the pending operations of the latest state, whose
//     on-chain transaction never happened. lastInvalidTxCount must be the previous
//     state's txCountGlobal and previousValidTxCount lower than it.
//   - of a half-signed state ("skip"): lastInvalidTxCount = prev.txCountGlobal + 1 (a
//     proposal that was never countersigned) and previousValidTxCount =
//     prev.txCountGlobal; the new state repeats prev's contents with txCountGlobal
//     prev + 2, so the half-signed state can never become the latest one
//     (channel_is_skip). Only on a state without pending operations.
struct InvalidationArgs {
  uint64_t previousValidTxCount;
  uint64_t lastInvalidTxCount;
};

// OpenThread: the thread's initial state (receiver balances zero, txCount 0) signed by
// its sender. CloseThread: the thread's final state signed by its sender.
struct ThreadArgs {
  SignedThreadState thread;
};

// An update request. Only the member named by `reason` is meaningful.
struct ChannelUpdate {
  UpdateReason reason;
  uint64_t txCountGlobal;  // the txCountGlobal of the state it produces
  PaymentArgs payment;
  ExchangeArgs exchange;
  DepositArgs deposit;
  WithdrawalArgs withdrawal;
  ChainTxArgs chainTx;  // ConfirmPending, EmptyChannel
  InvalidationArgs invalidation;
  ThreadArgs thread;  // OpenThread, CloseThread
  Signature sig;      // the proposer's eth_sign signature over the resulting state hash
};

// A zeroed update of the given reason (fill the args, then propose).
ChannelUpdate channel_update_make(UpdateReason reason) noexcept;

// The open threads of a channel, as their initial states, in caller-owned storage
// (firmware: a static array; the hub: a vector). `scratch` must have room for
// capacity + 2 hashes: the thread root is computed there.
struct ThreadSet {
  ThreadState* items;
  size_t count;
  size_t capacity;
  Hash32* scratch;
};

// What a channel needs to know beyond its latest state.
struct ChannelContext {
  Address hub;  // the hub's address (ChannelManager.hub)
};

// Builds the state that `u` produces from `prev` and the open `threads` (their initial
// states): next.txCountGlobal = prev.txCountGlobal + 1 = u.txCountGlobal (+ 2 for an
// Invalidation of a half-signed state). Pure.
// Rules (ChannelManager + Connext client semantics; docs/design.md §4):
//   On a state with pending operations (channel_blocks_updates) only ConfirmPending and
//   Invalidation may follow (PendingOperation otherwise): Connext's rule, so a pending
//   withdrawal is never carried into a second state. EmptyChannel (what the chain
//   already did) also may.
//   Payment: moves the amounts from the payer's balances to `recipient`'s (balances are
//     checked for underflow).
//   Exchange: as ExchangeArgs. ProposePendingDeposit: sets the pending deposits,
//     timeout; txCountChain + 1. ProposePendingWithdrawal: balances -= withdrawals; sets
//     recipient, timeout; txCountChain + 1.
//   ConfirmPending: pending ops settle per _applyPendingUpdates; recipient = user,
//     timeout 0. Invalidation: pending withdrawals return to the balances, pending
//     cleared, timeout 0. OpenThread: the thread's sender balances leave the payer's
//     balance (payer channel: user = sender) or the hub's (payee channel: user =
//     receiver); threadCount + 1; threadRoot recomputed. CloseThread: the final
//     balances return: payer channel user += sender's, hub += receiver's; payee channel
//     user += receiver's, hub += sender's; threadCount - 1; root recomputed.
//   EmptyChannel: every balance and pending field zero, no threads (after the on-chain
//     emptyChannel / emptyChannelWithChallenge).
// Errors: BadTxCount (u.txCountGlobal != prev + 1 or counter bound), BadReason,
//   BadArgs, Underflow, Overflow, PendingOperation, ThreadNotFound, ThreadExists,
//   TooManyThreads, WrongParty / WrongContract (thread does not belong to this channel),
//   BadTxCount (thread initial txCount not 0), NotConserved (a thread's totals changed),
//   BufferTooSmall (scratch).
[[nodiscard]] Status channel_next_state(const ChannelContext& ctx, const ChannelState& prev, const ThreadSet& threads,
                                        const ChannelUpdate& u, ChannelState& next) noexcept;

// Whether `proposer` may propose `u` at all: the payer proposes a Payment (a user never
// proposes a payment to itself, the hub never proposes one to itself); in the payer's
// channel a thread is opened by its sender only; otherwise either side. In the MQTT
// protocol the user proposes everything (the mirror OpenThread in the payee's channel
// and the CloseThread in the payer's channel on a HubRequest) and the user's session
// never accepts a hub-signed-first update; which proposals a party then signs is the
// signing policy's decision (policy.hpp), not this function's.
// Errors: Unauthorized.
[[nodiscard]] Status channel_check_proposer(const ChannelState& prev, Party proposer, const ChannelUpdate& u) noexcept;

// True if `u` is an Invalidation of the half-signed state prev.txCountGlobal + 1 (its
// txCountGlobal is then prev + 2; see InvalidationArgs).
bool channel_is_skip(const ChannelState& prev, const ChannelUpdate& u) noexcept;

// True if `s` has pending operations (any pending field non-zero, or a timeout): then
// only ConfirmPending, Invalidation (or EmptyChannel) may follow.
bool channel_blocks_updates(const ChannelState& s) noexcept;

// Checks the totals between two consecutive states: committed wei and token
// (channel_committed_*) are equal, except that ConfirmPending adds the settled deposits
// and removes the settled withdrawals, OpenThread/CloseThread move the thread's amounts
// out of / back into the channel, and EmptyChannel empties it. Also: txCountGlobal =
// prev + 1, txCountChain never decreases, contract and user unchanged.
// Errors: NotConserved, BadTxCount, TxCountChainDecreased, WrongContract, WrongParty.
[[nodiscard]] Status channel_check_transition(const ChannelState& prev, const ChannelState& next,
                                              const ChannelUpdate& u) noexcept;

// Proposer side: fills u.txCountGlobal, builds `next`, checks the policy and the
// transition, signs `next` with `key` into u.sig. Precondition: `key` is the private key
// of `self`'s address (programs derive the address from the key once at start-up; a
// wrong key yields a signature the counterparty refuses as WrongSigner). The caller must persist `next` with
// its own signature BEFORE the request leaves (docs/design.md §4.1).
// Errors: those of channel_next_state, channel_check_proposer, channel_check_transition;
//   BadPrivateKey, CryptoUnavailable.
// `next_hash` (optional) receives channel_hash(next), the hash the counterparty
// countersigns, so the caller need not hash the state again to check that signature.
[[nodiscard]] Status channel_propose(const ChannelContext& ctx, const Signer& signer, const PrivateKey& key,
                                     Party self, const ChannelState& prev, const ThreadSet& threads, ChannelUpdate& u,
                                     ChannelState& next, Hash32* next_hash = nullptr) noexcept;

// Receiver side: rebuilds `next` from `prev` and `u`, checks policy and transition,
// checks u.sig is the counterparty's (hub: prev.user; user: ctx.hub), and for
// OpenThread/CloseThread that the thread state is signed by its sender. On Ok,
// `next_hash` is the hash to countersign (after persisting `next`).
// Errors: those of channel_propose, plus the signature errors of Signer::verify_eth
//   (WrongSigner, HighS, BadSignature, BadRecoveryId).
[[nodiscard]] Status channel_accept(const ChannelContext& ctx, const Signer& signer, Party self,
                                    const ChannelState& prev, const ThreadSet& threads, const ChannelUpdate& u,
                                    ChannelState& next, Hash32& next_hash) noexcept;

// After Ok from channel_accept/propose, applies OpenThread/CloseThread to the caller's
// thread set (other reasons: no change; EmptyChannel: clears it).
// Errors: TooManyThreads, ThreadNotFound.
[[nodiscard]] Status thread_set_apply(ThreadSet& threads, const ChannelUpdate& u) noexcept;

// Index of the open thread (sender, receiver, threadId) in `threads`, or -1.
long thread_set_find(const ThreadSet& threads, const Address& sender, const Address& receiver,
                     uint64_t threadId) noexcept;

// ------------------------------------------------------------------ threads

// A thread payment request: the sender pays amountWei/amountToken more to the receiver
// in thread (sender, threadId); `sig` is the sender's eth_sign over the new thread state.
struct ThreadUpdate {
  Address sender;
  uint64_t threadId;
  uint64_t txCount;  // the txCount of the new thread state
  U256 amountWei;
  U256 amountToken;
  Signature sig;
};

// Builds the next thread state: sender balances - amounts, receiver balances + amounts,
// txCount = u.txCount which must be > prev.txCount.
// Errors: WrongParty (sender differs), BadArgs (threadId differs, or both amounts zero),
//   BadTxCount (not increasing or over kMaxCounter), Underflow, Overflow.
[[nodiscard]] Status thread_next_state(const ThreadState& prev, const ThreadUpdate& u, ThreadState& next) noexcept;

// Checks a thread transition between two full states: same contract, parties and
// threadId; txCount strictly increases; the receiver's balances never decrease; the
// wei and token totals are conserved.
// Errors: WrongContract, WrongParty, BadArgs, BadTxCount, NotConserved.
[[nodiscard]] Status thread_check_transition(const ThreadState& prev, const ThreadState& next) noexcept;

// Sender side: builds the next state for a payment of (amountWei, amountToken) with
// txCount prev.txCount + 1 and signs it into u.sig. Persist `next` before sending.
// Precondition: `key` is prev.sender's private key.
// Errors: as thread_next_state; BadPrivateKey, CryptoUnavailable.
[[nodiscard]] Status thread_propose(const Signer& signer, const PrivateKey& key, const ThreadState& prev,
                                    const U256& amountWei, const U256& amountToken, ThreadUpdate& u,
                                    ThreadState& next) noexcept;

// Receiver side of the increment form (ThreadUpdate): rebuilds `next` and checks u.sig
// is prev.sender's. Not used on the thread topic any more (one lost increment made every
// later one unverifiable, docs/soak.md finding 1): payees take thread_accept_state.
// Errors: as thread_next_state and thread_check_transition, plus signature errors.
[[nodiscard]] Status thread_accept(const Signer& signer, const ThreadState& prev, const ThreadUpdate& u,
                                   ThreadState& next) noexcept;

// Receiver side of a thread payment (wire kind 0x06, docs/wire-format.md): `in` is the
// sender's latest thread state, cumulative, with the sender's signature; `prev` is the
// latest state the receiver holds for that thread (its initial state or a state it
// accepted before). `in` is accepted when it is a later state of the same thread that
// moves value only from sender to receiver: thread_check_transition(prev, in.state) (same
// contract, sender, receiver, threadId; txCount higher, by any step, so the payments the
// receiver missed are included; the receiver's wei and token balances never decrease; both
// totals, the thread's deposit, unchanged), at least one receiver balance higher, and
// in.sigA by prev.sender (not by in.state.sender: the stored state names the sender).
// The receiver then stores `in` as its latest state; nothing is stored on any error.
// Returns Ok (accept), or:
//   Duplicate      in.state equals prev (a re-send; nothing to do, signature not checked)
//   StaleState     in.state.txCount < prev.txCount (a replayed or re-delivered old state)
//   StateConflict  same txCount as prev, other contents, validly signed by the sender
//                  (the sender signed two states with one txCount)
//   BadArgs        no sigA, a threadId other than prev's, or no value moves
//   WrongContract, WrongParty, BadTxCount (over kMaxCounter), NotConserved (a receiver
//   balance lower, or a total changed): as thread_check_transition
//   the signature errors of Signer::verify_eth (WrongSigner, HighS, BadSignature, BadRecoveryId).
[[nodiscard]] Status thread_accept_state(const Signer& signer, const ThreadState& prev,
                                         const SignedThreadState& in) noexcept;

}  // namespace picopay
