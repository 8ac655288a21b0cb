// picopay chain adapter: EIP-1559 (type 2) transactions signed with the core's signer,
// nonce, gas and fee handling, and receipts.
#pragma once

#include <cstdint>
#include <string>

#include "picopay/chain/abi.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/signer.hpp"

namespace picopay::chain {

struct TxRequest {
  bool has_to = false;  // false: contract creation
  Address to{};
  U256 value = U256::zero();
  Bytes data;
  uint64_t gas_limit = 0;  // 0: eth_estimateGas * 1.25 + 10000
};

struct Eip1559Tx {
  uint64_t chain_id = 0;
  uint64_t nonce = 0;
  U256 max_priority_fee = U256::zero();
  U256 max_fee = U256::zero();
  uint64_t gas_limit = 0;
  bool has_to = false;
  Address to{};
  U256 value = U256::zero();
  Bytes data;
};

// keccak256(0x02 || rlp([chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gasLimit,
// to, value, data, accessList=[]])): the digest the sender signs (EIP-1559, EIP-2718).
Hash32 eip1559_signing_hash(const Eip1559Tx& tx);
// 0x02 || rlp([... , yParity, r, s]): the raw transaction for eth_sendRawTransaction.
// Errors: Signing (bad key).
Result<Bytes> eip1559_sign(const Eip1559Tx& tx, const Signer& signer, const PrivateKey& key);

// A key on one chain: sends transactions and waits for their receipts.
// Nonces: taken from eth_getTransactionCount(pending) for the first send, then counted
// locally; a nonce error from the node re-reads it at once and sends again (once, see
// is_nonce_error); any other send error re-reads it on the next send.
// Fees: maxFee = 2 * baseFee(latest) + tip, tip = eth_maxPriorityFeePerGas.
class Wallet {
 public:
  // The key is copied and wiped on destruction. Errors of init: Signing (bad key).
  Wallet(RpcClient& rpc, const PrivateKey& key);
  ~Wallet();
  Wallet(const Wallet&) = delete;
  Wallet& operator=(const Wallet&) = delete;

  Status init();  // signer context, address, chain id
  const Address& address() const noexcept { return address_; }
  uint64_t chain_id() const noexcept { return chain_id_; }
  RpcClient& rpc() noexcept { return rpc_; }
  const Signer& signer() const noexcept { return signer_; }
  // Signs a 32-byte hash the eth_sign way with this wallet's key (channel/thread states).
  Result<Signature> sign_eth(const Hash32& hash) const;

  // Builds, signs and sends; then waits for the receipt (polling up to timeout_ms).
  // A reverted transaction is ErrorKind::Reverted; the receipt is in last_receipt().
  // Gas estimation failures (the call would revert) are Reverted with the node's reason.
  Result<Receipt> send(const TxRequest& req, long timeout_ms = 60000);
  // Sends without waiting; returns the hash.
  Result<Hash32> send_async(const TxRequest& req);
  Result<Receipt> wait_receipt(const Hash32& tx, long timeout_ms = 60000);
  const Receipt& last_receipt() const noexcept { return last_receipt_; }

 private:
  RpcClient& rpc_;
  PrivateKey key_;
  Signer signer_;
  Address address_{};
  uint64_t chain_id_ = 0;
  bool have_nonce_ = false;
  uint64_t nonce_ = 0;
  Receipt last_receipt_;
};

// True when a node's answer to eth_sendRawTransaction says the nonce is taken or out of
// order ("nonce too low", "nonce too high", ganache's "the tx doesn't have the correct
// nonce", "replacement transaction underpriced"). Wallet::send_async then re-reads the
// pending nonce at once and sends the transaction again, once.
bool is_nonce_error(const std::string& message);

// Reads a private key: "0x" + 64 hex, from a string or the first line of a file.
Result<PrivateKey> read_private_key_text(const std::string& text);
Result<PrivateKey> read_private_key_file(const std::string& path);

}  // namespace picopay::chain
