// picopay chain adapter: the ChannelManager contract (Connext v1 ABI) from C++.
//
// States are the core's ChannelState / ThreadState with their signatures; every call
// encodes exactly the arguments v1 takes, signatures as "0x" + 130 hex strings.
#pragma once

#include <string>
#include <vector>

#include "picopay/chain/abi.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/state.hpp"

namespace picopay::chain {

// The compiled contract as the build writes it (<build>/contracts/<Name>.json).
struct Artifact {
  std::string name;
  Bytes bytecode;  // creation code
  size_t deployed_size = 0;
};
// Errors: Io (cannot read), BadJson (no abi/bytecode, not hex).
Result<Artifact> load_artifact(const std::string& path);
// The default artifact directory: $PICOPAY_CONTRACTS_DIR if set and non-empty, else
// agent::data_dir() + "/contracts" (<exe>/../share/picopay/contracts, in an install
// prefix as in the build tree; see picopay/agent/install.hpp).
std::string default_artifact_dir();

enum class ChannelStatus : uint8_t { Open = 0, ChannelDispute = 1, ThreadDispute = 2 };
const char* channel_status_name(ChannelStatus s) noexcept;

struct OnchainChannel {
  U256 weiHub, weiUser, weiTotal, tokenHub, tokenUser, tokenTotal;
  uint64_t txCountGlobal = 0, txCountChain = 0;
  Hash32 threadRoot{};
  uint64_t threadCount = 0;
  Address exitInitiator{};
  uint64_t channelClosingTime = 0;
  ChannelStatus status = ChannelStatus::Open;
};

struct OnchainThread {
  U256 weiSender, weiReceiver, tokenSender, tokenReceiver;
  uint64_t txCount = 0;
  uint64_t threadClosingTime = 0;
  bool emptiedSender = false, emptiedReceiver = false;
};

// Function signatures (for selectors) exactly as v1 declares them.
namespace sig {
extern const char* const kHubAuthorizedUpdate;
extern const char* const kUserAuthorizedUpdate;
extern const char* const kStartExit;
extern const char* const kStartExitWithUpdate;
extern const char* const kEmptyChannelWithChallenge;
extern const char* const kEmptyChannel;
extern const char* const kStartExitThread;
extern const char* const kStartExitThreadWithUpdate;
extern const char* const kChallengeThread;
extern const char* const kEmptyThread;
extern const char* const kNukeThreads;
extern const char* const kHubContractWithdraw;
extern const char* const kWithdrawOwed;    // not in v1 (docs/chain.md, pull payments)
extern const char* const kWithdrawOwedTo;  // not in v1
// events
extern const char* const kDidUpdateChannel;
extern const char* const kDidStartExitChannel;
extern const char* const kDidEmptyChannel;
extern const char* const kDidStartExitThread;
extern const char* const kDidChallengeThread;
extern const char* const kDidEmptyThread;
extern const char* const kDidNukeThreads;
extern const char* const kDidHubContractWithdraw;
extern const char* const kDidCreditOwed;    // not in v1
extern const char* const kDidWithdrawOwed;  // not in v1
}  // namespace sig

// Deploys ChannelManager(hub, challengePeriod, token) from `artifact` with `wallet`.
Result<Address> deploy_channel_manager(Wallet& wallet, const Artifact& artifact, const Address& hub,
                                       uint64_t challenge_period, const Address& token,
                                       Receipt* receipt_out = nullptr);
// Deploys any artifact with ABI-encoded constructor args.
Result<Address> deploy_artifact(Wallet& wallet, const Artifact& artifact, const Bytes& ctor_args,
                                Receipt* receipt_out = nullptr);

// Calldata builders (public for tests and for tools that send by other means).
Bytes encode_hub_authorized_update(const ChannelState& s, const Signature& sigUser);
Bytes encode_user_authorized_update(const ChannelState& s, const Signature& sigHub);
Bytes encode_channel_dispute(const char* signature, const ChannelState& s, const Signature& sigHub,
                             const Signature& sigUser);
Bytes encode_thread_initial(const char* signature, const Address& user, const ThreadState& initial,
                            const Bytes& proof, const Signature& sig);

// Checks that `contract` is a ChannelManager of `expected_hub` before anything is sent to
// it (a plain address or another contract would take the wei and never give it back):
// the address holds code (eth_getCode, latest block) and hub() answers with an address,
// equal to *expected_hub when expected_hub is not null. Errors: BadInput with one clear
// line naming the address ("no contract code at ...", "... is not a ChannelManager
// (hub() ...)", "... is the ChannelManager of hub X, not of Y"); Transport/Rpc/Timeout
// from the node.
Status check_channel_manager(RpcClient& rpc, const Address& contract, const Address* expected_hub);

class ChannelManagerClient {
 public:
  ChannelManagerClient(Wallet& wallet, const Address& contract) : w_(wallet), contract_(contract) {}
  const Address& contract() const noexcept { return contract_; }
  Wallet& wallet() noexcept { return w_; }
  // From now on every transaction first runs check_channel_manager(contract, &hub)
  // and is not sent when it fails (its error is returned).
  void require_hub(const Address& hub) noexcept {
    expected_hub_ = hub;
    has_expected_hub_ = true;
    check_before_tx_ = true;
  }
  // As require_hub, for any hub (check_channel_manager(contract, nullptr)).
  void require_channel_manager() noexcept { check_before_tx_ = true; }

  // -- transactions (each returns the receipt; Reverted carries the revert reason) --
  // The user (this wallet) executes a hub-signed state; sends pendingDepositWeiUser as
  // value (token deposits need an ERC-20 approve first).
  Result<Receipt> user_authorized_update(const ChannelState& s, const Signature& sigHub);
  // The hub (this wallet) executes a user-signed state.
  Result<Receipt> hub_authorized_update(const ChannelState& s, const Signature& sigUser);
  Result<Receipt> start_exit(const Address& user);
  Result<Receipt> start_exit_with_update(const SignedChannelState& s);
  Result<Receipt> empty_channel_with_challenge(const SignedChannelState& s);
  Result<Receipt> empty_channel(const Address& user);
  Result<Receipt> start_exit_thread(const Address& user, const SignedThreadState& initial, const Bytes& proof);
  Result<Receipt> start_exit_thread_with_update(const Address& user, const SignedThreadState& initial,
                                                const Bytes& proof, const SignedThreadState& update);
  Result<Receipt> challenge_thread(const SignedThreadState& update);
  Result<Receipt> empty_thread(const Address& user, const SignedThreadState& initial, const Bytes& proof);
  Result<Receipt> nuke_threads(const Address& user);
  Result<Receipt> hub_contract_withdraw(const U256& wei, const U256& tokens);
  // Plain ETH transfer to the contract (the hub funds its reserve this way).
  Result<Receipt> fund_reserve(const U256& wei);
  // Pull payments (not in v1): withdrawOwed() pays this wallet's credit to itself,
  // withdrawOwedTo(to) to `to`. Reverted "nothing owed" without a credit; Reverted
  // "wei transfer failed" / "token transfer failed" (credit kept) when the payee refuses.
  Result<Receipt> withdraw_owed();
  Result<Receipt> withdraw_owed_to(const Address& to);

  // -- views --
  // getChannelBalances + getChannelDetails, both read at one block number (the latest
  // when called), so a transaction mined between the two calls cannot mix two states.
  Result<OnchainChannel> channel(const Address& user);
  Result<OnchainThread> thread(const Address& sender, const Address& receiver, uint64_t threadId);
  // hubReserveWei (wei) at `block` ("latest", or a block number as a hex quantity).
  Result<U256> hub_reserve_wei(const std::string& block = "latest");
  Result<U256> hub_reserve_tokens();
  Result<U256> total_channel_wei();
  Result<U256> total_channel_token();
  Result<Address> hub();
  Result<uint64_t> challenge_period();
  // owedWei / owedTokens of `who` (wei, token base units) and their totals.
  Result<U256> owed_wei(const Address& who);
  Result<U256> owed_tokens(const Address& who);
  Result<U256> total_owed_wei();
  Result<U256> total_owed_tokens();
  // nukeThreadsAfter(user): nukeThreads(user) is refused until a block after this time
  // (unix seconds; not in v1, see docs/chain.md).
  Result<uint64_t> nuke_threads_after(const Address& user);

 private:
  Result<Receipt> tx(const Bytes& data, const U256& value = U256::zero());
  Result<Bytes> view(const Bytes& data, const std::string& block = "latest");
  Wallet& w_;
  Address contract_;
  Address expected_hub_{};
  bool has_expected_hub_ = false;
  bool check_before_tx_ = false;
};

// ERC-20 helpers (the test token and any standard token).
Result<Receipt> erc20_approve(Wallet& w, const Address& token, const Address& spender, const U256& amount);
Result<Receipt> erc20_transfer(Wallet& w, const Address& token, const Address& to, const U256& amount);
Result<Receipt> erc20_mint(Wallet& w, const Address& token, const Address& to, const U256& amount);  // TestToken
Result<U256> erc20_balance(RpcClient& rpc, const Address& token, const Address& who);

// ---- thread Merkle proofs (the Connext v1 client's tree; see merkle.cpp) ----
// The proof v1's _isContained takes for `leaf` among `leaves` (initial thread-state
// hashes): leaf ++ one sibling per level, 32 bytes each. Errors: NotFound if the leaf is
// not among the leaves.
Result<Bytes> thread_proof(const std::vector<Hash32>& leaves, const Hash32& leaf);
// The root of the same tree (equals the core's thread_root_in_place).
Hash32 thread_tree_root(const std::vector<Hash32>& leaves);
// Folds a proof as the contract does (for checks): sorted-pair hashing from the leaf.
bool proof_is_contained(const Hash32& leaf, const Bytes& proof, const Hash32& root);

// ---- Connext JSON (field names of docs/wire-format.md; codec: agent/common json_state.hpp) ----
// Parses a ChannelState JSON object (sigUser/sigHub optional). Errors: BadJson/BadInput.
Result<SignedChannelState> channel_state_from_json(const std::string& text);
std::string channel_state_to_json(const SignedChannelState& s);
// Parses a ThreadState JSON object (sigA optional).
Result<SignedThreadState> thread_state_from_json(const std::string& text);
std::string thread_state_to_json(const SignedThreadState& s);
Result<std::string> read_text_file(const std::string& path);

}  // namespace picopay::chain
