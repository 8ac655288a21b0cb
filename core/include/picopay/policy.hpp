// picopay core: the signing policy (docs/signing-policy.md), one module for both sides.
//
// A valid transition (channel.hpp) is not a reason to sign it. A party signs a channel
// update only if
//   (a) it asked for exactly this change and still wants it (a request it made, with the
//       amount, rate and recipient it chose), or
//   (b) in every on-chain outcome the update cannot lower what the party can claim, or
//   (c) the party verified on chain the fact the update asserts (ConfirmPending,
//       EmptyChannel, Invalidation).
// Every channel update is proposed (signed first) by the user (docs/mqtt-protocol.md):
// the hub asks for the changes it wants with a HubRequest (codec.hpp). So the user
// decides "do I propose what the hub requests?" (policy_user_accepts_request) and the
// hub decides "do I countersign what the user proposes?" (policy_hub_countersigns).
//
// Both functions are pure (no heap, no I/O, no clock): the caller passes everything it
// knows, including the chain facts it read. Call them AFTER the arithmetic checks of
// channel_accept / channel_next_state passed (they assume `u` applies to `prev`), and
// BEFORE signing anything.
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/channel.hpp"
#include "picopay/state.hpp"
#include "picopay/status.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay {

// The channel's status in ChannelManager, as the caller read it.
enum class ChainChannelStatus : uint8_t {
  Open = 0,       // no dispute running (also after a completed emptyChannel: see `emptied`)
  InDispute = 1,  // ChannelDispute or ThreadDispute: an exit is running
};

// What the caller verified on chain for this channel (ChannelManager.getChannelDetails
// and the latest block). `known` false means nothing was read: every rule that needs
// the chain then refuses (NeedsChain).
struct ChainFacts {
  bool known;
  uint64_t txCountGlobal;  // channel.txCount[0]: the last state applied on chain
  uint64_t txCountChain;   // channel.txCount[1]: counts executed authorized updates
  ChainChannelStatus status;
  bool emptied;            // the last change on chain was emptyChannel(WithChallenge): balances zero
  uint64_t blockTime;      // the latest block's timestamp, Unix seconds
};

// Limits shared by both sides (defaults as Connext v1's hub: 2 %, 24 h).
struct PolicyLimits {
  uint64_t maxRateAgeSeconds;  // an exchange rate older than this is stale (86400)
  uint32_t maxSpreadBps;       // an exchange rate may differ from the hub's by this much (200 = 2 %)
  uint64_t maxTimeoutSeconds;  // a pending op's timeout must lie in (now, now + this] (86400)
};
PolicyLimits policy_limits_default() noexcept;

// ---------------------------------------------------------------- exchange amounts

// What an Exchange moves (docs/tokens.md, "Amounts that do not divide evenly"): the one
// place that decides, used by the channel transition (channel.cpp) and by both policies.
// Connext v1's calculateExchange: the buyer pays floor(amount x rate) tokens for wei sold,
// floor(tokens / rate) wei for tokens sold (rounded down, toward zero: the buyer never
// pays for a fraction it does not get), and of the tokens offered only those that buy a
// whole wei are sold: the remainder (tokensToSell mod rate) stays with the seller
// (tokensSold = tokensToSell - remainder). `rate`: token base units per wei (an integer).
struct ExchangeAmounts {
  U256 weiSold, tokensSold;        // leave the seller's balances
  U256 weiBought, tokensBought;    // leave the buyer's balances, to the seller
  U256 tokensKept;                 // the remainder that stays with the seller
};
// Errors: BadArgs (zero rate, both or neither amount set, tokens that buy no whole wei),
// Overflow (weiToSell x rate above 2^256-1).
[[nodiscard]] Status exchange_amounts(const ExchangeArgs& a, ExchangeAmounts& out) noexcept;

// True if `proposed` lies within `bps` basis points (100 = 1 %) of `reference`
// (|proposed - reference| * 10000 <= reference * bps). The hub's spread check and a
// user's tolerance for a published rate both use it.
bool policy_rate_within(const U256& proposed, const U256& reference, uint32_t bps) noexcept;

// ---------------------------------------------------------------- user side

// What the user asked for itself and still wants (its open requests). A request is
// cleared once the update it asked for is double-signed (session.hpp does this).
struct WithdrawalRequest {
  bool active;
  Address recipient;  // where the user's withdrawal is paid on chain
  U256 weiUser, tokenUser;
};
struct DepositRequest {
  bool active;
  U256 weiUser, tokenUser;  // what the user will pay into the contract itself
};
// The user sells `amount` of wei (sellWei) or of tokens, at a rate (token base units per
// wei) within [minRate, maxRate].
struct ExchangeRequest {
  bool active;
  bool sellWei;
  U256 amount;
  U256 minRate, maxRate;
};
struct UserRequests {
  WithdrawalRequest withdrawal;
  DepositRequest deposit;
  ExchangeRequest exchange;
};

struct UserPolicyInput {
  Address user;                 // this user (prev.user)
  const UserRequests* requests; // may be null: nothing requested
  bool hasChainAccess;          // false: a device that cannot read the chain at all
  ChainFacts chain;             // what the caller verified (known false: not read yet)
  uint64_t now;                 // Unix seconds (the device's clock); 0 = unknown
  bool acceptIncomingThreads;   // payee role: the user receives threads
  // CloseThread: the latest state the user holds of that thread (its own signature as
  // payer, or the payer's as payee); null if the user holds none.
  const ThreadState* threadLatest;
  PolicyLimits limits;
};

// Whether the user proposes `u` (reason + args of a HubRequest) on top of its latest
// double-signed state `prev`. Rules (docs/signing-policy.md has the table):
//   Payment: never on request (the user pays what it decides; a hub refund is out of scope):
//     NotRequested.
//   Exchange: only an open ExchangeRequest: seller User, the same side and amount
//     (NotRequested), rate within [minRate, maxRate] (RateOutOfBounds).
//   ProposePendingDeposit: user fields only as an open DepositRequest, exactly
//     (NotRequested); hub fields any (collateral: adds hub funds); timeout in
//     (now, now + maxTimeoutSeconds] (TimeoutOutOfBounds).
//   ProposePendingWithdrawal: user fields only as an open WithdrawalRequest, amounts and
//     recipient exactly (NotRequested); hub-only withdrawals need recipient = user
//     (NotRequested); timeout as deposits.
//   ConfirmPending: the chain shows the pending operation executed
//     (chain.txCountChain >= prev.txCountChain); Invalidation: it was not executed and
//     can no longer be (chain.txCountChain < prev.txCountChain and chain.blockTime >=
//     prev.timeout); EmptyChannel: chain.emptied with status Open, chain.txCountGlobal
//     <= prev.txCountGlobal (the new state supersedes the one the contract applied) and
//     chain.txCountChain <= prev.txCountChain (the state's txCountChain is not behind
//     the contract's txCount[1]); pending operations of prev only once the contract
//     can no longer run them (chain.txCountGlobal >= prev's, or prev.timeout passed at
//     chain.blockTime). No chain access or facts not read:
//     NeedsChain; facts say otherwise: NotOnChain. An Invalidation of a half-signed state
//     (channel_is_skip) repeats prev's contents: Ok without chain facts (the session
//     proposes it only for its own refused proposal).
//   OpenThread: only the mirror in a payee channel (receiver = user; hub funds locked)
//     when acceptIncomingThreads (else Unauthorized); a thread with sender = user:
//     NotRequested.
//   CloseThread: payer channel (sender = user): a state the user signed, not newer than
//     threadLatest (StaleState if it differs at the same txCount or is newer: the user
//     never signed it); payee channel (receiver = user): equal to or newer than
//     threadLatest (StaleState: an older state would take back received payments).
//   Any reason with chain facts showing a dispute: ChannelInDispute; an emptied channel
//   takes only EmptyChannel. An Invalidation of a half-signed state (a skip) passes both
//   (it repeats prev's contents).
[[nodiscard]] Status policy_user_accepts_request(const UserPolicyInput& in, const ChannelState& prev,
                                                 const ChannelUpdate& u) noexcept;

// ---------------------------------------------------------------- hub side

struct HubRate {
  bool known;
  U256 tokensPerWei;  // the hub's current rate (configured or fed), token base units per wei
  uint64_t time;      // Unix seconds the rate was set
};

struct HubPolicyInput {
  // The updates the hub asked this user to propose and still wants (reason + args; their
  // txCountGlobal and sig are ignored). A user proposal that draws on the hub matches one
  // exactly (policy_update_matches).
  const ChannelUpdate* requests;
  size_t requestCount;
  HubRate rate;
  uint64_t now;                      // Unix seconds
  U256 inventoryWei, inventoryToken; // what the hub still gives out in exchanges
  bool hasChainAccess;
  ChainFacts chain;
  PolicyLimits limits;
};

// Whether the hub countersigns the user's proposal `u` on top of `prev` (after
// channel_accept passed). Rules:
//   Payment: to the hub (the user pays): Ok. To the user: only as requested, else
//     NotRequested (channel_check_proposer already refuses it as Unauthorized).
//   Exchange: a request matching it exactly: Ok. Otherwise the hub's rate must be known
//     and fresh (StaleRate), the proposed rate within maxSpreadBps of it
//     (RateOutOfBounds), and what the hub gives out within inventory (NoInventory).
//   ProposePendingDeposit: hub fields zero unless it matches a request exactly
//     (NotRequested); timeout in (now, now + maxTimeoutSeconds] (TimeoutOutOfBounds).
//   ProposePendingWithdrawal: hub fields zero unless it matches a request exactly
//     (NotRequested); the user's own balance to any recipient; timeout as deposits.
//   ConfirmPending / Invalidation / EmptyChannel: chain facts as on the user side
//     (NeedsChain, NotOnChain); an Invalidation of a half-signed state: Ok.
//   OpenThread: payer channel (sender = user, user funds locked): Ok (the caller still
//     decides whether it can mirror it in the payee's channel); payee channel (receiver
//     = user, hub funds locked): only as requested (NotRequested).
//   CloseThread: payee channel (receiver = user): Ok (the final state is the payer's
//     signature; the hub requests the same close in the payer's channel); payer channel
//     (sender = user): only as requested, exactly (NotRequested: e.g. an older thread
//     state than the payee's close).
//   Dispute / emptied as on the user side.
[[nodiscard]] Status policy_hub_countersigns(const HubPolicyInput& in, const ChannelState& prev,
                                             const ChannelUpdate& u) noexcept;

// True if `a` and `b` have the same reason and the same args of that reason
// (txCountGlobal and sig are ignored). Thread args compare the thread state and sigA.
bool policy_update_matches(const ChannelUpdate& a, const ChannelUpdate& b) noexcept;

// Checks the chain facts against the latest state `prev`: ChannelInDispute if the chain
// shows a dispute, or shows the channel emptied while `prev` still holds balances,
// pending ops or threads, for any reason but EmptyChannel; Ok if facts are unknown.
[[nodiscard]] Status policy_check_chain_status(const ChainFacts& chain, const ChannelState& prev,
                                               UpdateReason reason) noexcept;

}  // namespace picopay
