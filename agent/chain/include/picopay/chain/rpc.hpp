// picopay chain adapter: Ethereum JSON-RPC 2.0 over HTTP (libcurl) with cJSON.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <cjson/cJSON.h>

#include "picopay/chain/error.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::chain {

struct JsonDeleter {
  void operator()(cJSON* j) const noexcept { cJSON_Delete(j); }
};
using Json = std::unique_ptr<cJSON, JsonDeleter>;

// 0x-hex helpers for the quantities and data of the JSON-RPC API.
std::string hex_bytes(const uint8_t* p, size_t n);               // "0x" + 2n lowercase hex
inline std::string hex_bytes(const std::vector<uint8_t>& v) { return hex_bytes(v.data(), v.size()); }
std::string hex_quantity(uint64_t v);                            // "0x1a" (no leading zeros)
std::string hex_quantity(const U256& v);
std::string address_hex(const Address& a);                       // lowercase 0x-hex
std::string hash_hex(const Hash32& h);
Result<uint64_t> parse_quantity_u64(const cJSON* j, const char* what);
Result<U256> parse_quantity_u256(const cJSON* j, const char* what);
Result<std::vector<uint8_t>> parse_data(const cJSON* j, const char* what);
Result<Hash32> parse_hash(const cJSON* j, const char* what);
Result<Address> parse_address_json(const cJSON* j, const char* what);
Result<Address> parse_address(const std::string& s);
Result<U256> parse_amount(const std::string& s);  // decimal or 0x-hex

struct Block {
  uint64_t number = 0;
  Hash32 hash{};
  Hash32 parentHash{};
  uint64_t timestamp = 0;
  U256 baseFeePerGas = U256::zero();
};

struct Log {
  Address address{};
  std::vector<Hash32> topics;
  std::vector<uint8_t> data;
  uint64_t blockNumber = 0;
  Hash32 blockHash{};
  Hash32 transactionHash{};
  uint64_t logIndex = 0;
};

struct Receipt {
  Hash32 transactionHash{};
  uint64_t blockNumber = 0;
  Hash32 blockHash{};
  bool status = false;
  uint64_t gasUsed = 0;
  U256 effectiveGasPrice = U256::zero();
  bool hasContractAddress = false;
  Address contractAddress{};
  std::vector<Log> logs;
};

// One JSON-RPC endpoint. Not thread-safe (one curl handle); cheap to create.
class RpcClient {
 public:
  // url: http://127.0.0.1:PORT (any http(s) URL libcurl takes). timeout per request.
  explicit RpcClient(std::string url, long timeout_ms = 30000);
  ~RpcClient();
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  const std::string& url() const noexcept { return url_; }

  // Sends {"jsonrpc":"2.0","id":N,"method":method,"params":params} (params: a JSON
  // array text) and returns the detached "result" (may be JSON null).
  // Errors: Transport, HttpStatus, BadJson, Rpc (code + node message; a revert reported
  // by the node as an RPC error becomes Reverted).
  Result<Json> call(const std::string& method, const std::string& params_json);

  // Typed wrappers of the standard methods.
  Result<uint64_t> chain_id();
  Result<uint64_t> block_number();
  Result<U256> balance(const Address& a, const std::string& block = "latest");
  Result<uint64_t> transaction_count(const Address& a, const std::string& block = "pending");
  Result<Block> block_by_number(const std::string& tag_or_hex);  // NotFound if null
  Result<Block> block_by_number(uint64_t n);
  Result<U256> max_priority_fee();  // eth_maxPriorityFeePerGas, 1 gwei if unsupported
  Result<uint64_t> estimate_gas(const Address& from, const Address* to, const U256& value,
                                const std::vector<uint8_t>& data);
  // eth_call at `block` ("latest", or a block number as a hex quantity, e.g. from
  // hex_quantity(block_number())): reading several views at one block number gives one
  // consistent picture of the contract.
  Result<std::vector<uint8_t>> eth_call(const Address& to, const std::vector<uint8_t>& data,
                                        const Address* from = nullptr, const std::string& block = "latest");
  Result<Hash32> send_raw_transaction(const std::vector<uint8_t>& raw);
  // NotFound while the transaction is not mined.
  Result<Receipt> receipt(const Hash32& tx);
  Result<std::vector<Log>> logs(const Address& contract, uint64_t from_block, uint64_t to_block);
  Result<std::vector<uint8_t>> code(const Address& a);

  // Dev-chain (ganache) helpers for tests and the demo.
  Status increase_time(uint64_t seconds);  // evm_increaseTime + evm_mine
  Status mine();                           // evm_mine
  Result<std::string> snapshot();          // evm_snapshot id
  Status revert_to(const std::string& id); // evm_revert

 private:
  std::string url_;
  long timeout_ms_;
  void* curl_ = nullptr;
  uint64_t next_id_ = 1;
};

Result<Log> parse_log(const cJSON* j);

}  // namespace picopay::chain
