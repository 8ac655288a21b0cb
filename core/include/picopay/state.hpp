// picopay core: Connext v1 channel and thread states, their exact hash preimages, the
// eth_sign message hash and the thread Merkle root.
//
// Field names are the Connext client's (ChannelState / ThreadState). Amounts are wei or
// token base units (uint256). Counters are bounded by kMaxCounter = 2^53-1 (the JS
// client's Number.MAX_SAFE_INTEGER) so every state has one exact JSON form.
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/status.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay {

constexpr uint64_t kMaxCounter = (1ULL << 53) - 1;

// A Connext v1 channel state between the hub and one user.
struct ChannelState {
  Address contractAddress;  // the ChannelManager
  Address user;
  Address recipient;  // receives pending withdrawals; the user unless withdrawing elsewhere
  U256 balanceWeiHub, balanceWeiUser;
  U256 balanceTokenHub, balanceTokenUser;
  U256 pendingDepositWeiHub, pendingDepositWeiUser;
  U256 pendingDepositTokenHub, pendingDepositTokenUser;
  U256 pendingWithdrawalWeiHub, pendingWithdrawalWeiUser;
  U256 pendingWithdrawalTokenHub, pendingWithdrawalTokenUser;
  uint64_t txCountGlobal;  // every off-chain update: +1
  uint64_t txCountChain;   // every update that needs an on-chain transaction: +1
  Hash32 threadRoot;       // Merkle root of the open threads' initial states (0 if none)
  uint64_t threadCount;    // number of open threads
  uint64_t timeout;        // Unix seconds after which pending ops lapse; 0 = none
};

// A channel state with the signatures that make it evidence.
struct SignedChannelState {
  ChannelState state;
  bool hasSigUser;
  bool hasSigHub;
  Signature sigUser;
  Signature sigHub;
};

// A Connext v1 thread (virtual channel) state: sender pays receiver through the hub.
struct ThreadState {
  Address contractAddress;
  Address sender;
  Address receiver;
  uint64_t threadId;
  U256 balanceWeiSender, balanceWeiReceiver;
  U256 balanceTokenSender, balanceTokenReceiver;
  uint64_t txCount;
};

// A thread state with the sender's signature (Connext's sigA).
struct SignedThreadState {
  ThreadState state;
  bool hasSigA;
  Signature sigA;
};

// A zero-initialised state (all addresses, amounts and counters zero).
ChannelState channel_state_zero() noexcept;
ThreadState thread_state_zero() noexcept;

bool operator==(const ChannelState& a, const ChannelState& b) noexcept;
inline bool operator!=(const ChannelState& a, const ChannelState& b) noexcept { return !(a == b); }
bool operator==(const ThreadState& a, const ThreadState& b) noexcept;
inline bool operator!=(const ThreadState& a, const ThreadState& b) noexcept { return !(a == b); }

constexpr size_t kChannelPreimageSize = 628;
constexpr size_t kThreadPreimageSize = 252;

// The channel hash preimage: abi.encodePacked(address(this), [user, recipient],
// [balanceWeiHub, balanceWeiUser], [balanceTokenHub, balanceTokenUser],
// [pendingDepositWeiHub, pendingWithdrawalWeiHub, pendingDepositWeiUser,
// pendingWithdrawalWeiUser], (same for tokens), [txCountGlobal, txCountChain],
// threadRoot, threadCount, timeout): 20 + 32*19 = 628 bytes (array elements, including
// the two addresses, are padded to 32 bytes; the lone contract address is not).
// Source: ChannelManager._verifySig (Connext v1).
void channel_preimage(const ChannelState& s, uint8_t out[kChannelPreimageSize]) noexcept;

// keccak256 of channel_preimage: the hash both parties sign (via eth_sign).
Hash32 channel_hash(const ChannelState& s) noexcept;

// The thread hash preimage: abi.encodePacked(address(this), sender, receiver,
// uint256 threadId, [balanceWeiSender, balanceWeiReceiver], [balanceTokenSender,
// balanceTokenReceiver], uint256 txCount): 3*20 + 6*32 = 252 bytes.
// Source: ChannelManager._verifyThread (Connext v1).
void thread_preimage(const ThreadState& s, uint8_t out[kThreadPreimageSize]) noexcept;
Hash32 thread_hash(const ThreadState& s) noexcept;

// keccak256("\x19Ethereum Signed Message:\n32" ++ hash): what eth_sign actually signs.
// Source: EIP-191 (version 0x45, personal_sign / eth_sign).
Hash32 eth_sign_hash(const Hash32& hash) noexcept;

// The thread root over `leaves[0..n)` (thread-state hashes of the initial thread
// states), as the Connext v1 client builds it: if n is odd append a zero hash; sort
// ascending; drop duplicates; each level hashes pairs as keccak(min ++ max) and carries
// a lone last element up unchanged. n = 0 gives the zero hash. Works in place: the
// caller's array is reordered and overwritten, and must have room for n + 1 entries.
// Errors: BufferTooSmall if cap < n + 1 (leaves untouched).
[[nodiscard]] Status thread_root_in_place(Hash32* leaves, size_t n, size_t cap, Hash32& root) noexcept;

// Sum checks used by the state machines: the channel's wei (or token) total as the
// contract will hold it once the pending operations settle, minus what they add:
// balanceHub + balanceUser + sum over both sides of max(0, withdrawal - deposit)
// (ChannelManager._applyPendingUpdates: a withdrawal larger than the deposit was already
// taken out of the balance; a larger deposit is not yet in it).
// Errors: Overflow.
[[nodiscard]] Status channel_committed_wei(const ChannelState& s, U256& out) noexcept;
[[nodiscard]] Status channel_committed_token(const ChannelState& s, U256& out) noexcept;

// True if any pending deposit or withdrawal field is non-zero.
bool channel_has_pending(const ChannelState& s) noexcept;

// Checks every counter is <= kMaxCounter. Errors: OutOfBounds.
[[nodiscard]] Status channel_check_bounds(const ChannelState& s) noexcept;
[[nodiscard]] Status thread_check_bounds(const ThreadState& s) noexcept;

}  // namespace picopay
