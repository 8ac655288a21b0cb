// EIP-1559 transactions, nonce/gas/fee handling, receipts.
#include "picopay/chain/tx.hpp"

#include <cctype>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"

namespace picopay::chain {

static std::vector<Rlp> tx_fields(const Eip1559Tx& tx) {
  return {Rlp::uint(tx.chain_id),
          Rlp::uint(tx.nonce),
          Rlp::uint(tx.max_priority_fee),
          Rlp::uint(tx.max_fee),
          Rlp::uint(tx.gas_limit),
          tx.has_to ? Rlp::address(tx.to) : Rlp::bytes({}),
          Rlp::uint(tx.value),
          Rlp::bytes(tx.data),
          Rlp::list_of({})};
}

Hash32 eip1559_signing_hash(const Eip1559Tx& tx) {
  Bytes enc = rlp_encode(Rlp::list_of(tx_fields(tx)));
  enc.insert(enc.begin(), 0x02);
  Hash32 h;
  keccak256(enc.data(), enc.size(), h.bytes);
  return h;
}

Result<Bytes> eip1559_sign(const Eip1559Tx& tx, const Signer& signer, const PrivateKey& key) {
  Hash32 h = eip1559_signing_hash(tx);
  Signature sig;
  picopay::Status st = signer.sign_digest(key, h, sig);
  if (st != picopay::Status::Ok)
    return make_error(ErrorKind::Signing, std::string("cannot sign transaction: ") + status_message(st));
  auto fields = tx_fields(tx);
  U256 r, s;
  (void)u256_from_be(sig.r, 32, r);
  (void)u256_from_be(sig.s, 32, s);
  fields.push_back(Rlp::uint(static_cast<uint64_t>(sig.v - 27)));
  fields.push_back(Rlp::uint(r));
  fields.push_back(Rlp::uint(s));
  Bytes raw = rlp_encode(Rlp::list_of(std::move(fields)));
  raw.insert(raw.begin(), 0x02);
  return raw;
}

Wallet::Wallet(RpcClient& rpc, const PrivateKey& key) : rpc_(rpc), key_(key) {}

Wallet::~Wallet() { secure_wipe(key_.bytes, sizeof key_.bytes); }

Status Wallet::init() {
  if (!signer_.ready()) {
    picopay::Status st = signer_.init();
    if (st != picopay::Status::Ok)
      return make_error(ErrorKind::Signing, std::string("signer: ") + status_message(st));
  }
  picopay::Status st = signer_.address_of(key_, address_);
  if (st != picopay::Status::Ok) return make_error(ErrorKind::Signing, std::string("key: ") + status_message(st));
  PPC_TRY(chain_id_, rpc_.chain_id());
  return ok_status();
}

Result<Signature> Wallet::sign_eth(const Hash32& hash) const {
  Signature sig;
  picopay::Status st = signer_.sign_eth(key_, hash, sig);
  if (st != picopay::Status::Ok) return make_error(ErrorKind::Signing, std::string("sign: ") + status_message(st));
  return sig;
}

Result<Hash32> Wallet::send_async(const TxRequest& req) {
  if (!signer_.ready()) PPC_CHECK(init());
  if (!have_nonce_) {
    PPC_TRY(nonce_, rpc_.transaction_count(address_, "pending"));
    have_nonce_ = true;
  }
  Eip1559Tx tx;
  tx.chain_id = chain_id_;
  tx.nonce = nonce_;
  tx.has_to = req.has_to;
  tx.to = req.to;
  tx.value = req.value;
  tx.data = req.data;
  tx.gas_limit = req.gas_limit;
  if (tx.gas_limit == 0) {
    auto g = rpc_.estimate_gas(address_, req.has_to ? &req.to : nullptr, req.value, req.data);
    if (!g) {
      Error e = g.error();
      if (e.kind == ErrorKind::Rpc && e.message.find("revert") != std::string::npos) e.kind = ErrorKind::Reverted;
      return e;
    }
    tx.gas_limit = *g + *g / 4 + 10000;
  }
  PPC_TRY(Block latest, rpc_.block_by_number("latest"));
  PPC_TRY(tx.max_priority_fee, rpc_.max_priority_fee());
  U256 twice;
  if (u256_add(latest.baseFeePerGas, latest.baseFeePerGas, twice) != picopay::Status::Ok ||
      u256_add(twice, tx.max_priority_fee, tx.max_fee) != picopay::Status::Ok)
    return make_error(ErrorKind::BadJson, "base fee out of range");
  for (int attempt = 0;; ++attempt) {
    PPC_TRY(Bytes raw, eip1559_sign(tx, signer_, key_));
    auto h = rpc_.send_raw_transaction(raw);
    if (h) {
      nonce_ = tx.nonce + 1;
      return *h;
    }
    have_nonce_ = false;  // any other error: re-read the nonce on the next send
    const Error& e = h.error();
    // The node answered that this nonce is taken or not next (another process with the
    // same key, or an earlier send whose answer was lost): this transaction was not
    // accepted and can never run, so the nonce is re-read at once and the transaction
    // signed again and sent once more. Transport errors are never retried (the node may
    // have accepted the transaction).
    if (attempt > 0 || e.kind != ErrorKind::Rpc || !is_nonce_error(e.message)) return e;
    PPC_TRY(tx.nonce, rpc_.transaction_count(address_, "pending"));
    have_nonce_ = true;
    nonce_ = tx.nonce;
  }
}

bool is_nonce_error(const std::string& message) {
  std::string m = message;
  for (char& c : m) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return m.find("nonce") != std::string::npos || m.find("replacement transaction underpriced") != std::string::npos;
}

Result<Receipt> Wallet::wait_receipt(const Hash32& tx, long timeout_ms) {
  auto start = std::chrono::steady_clock::now();
  long delay = 5;
  for (;;) {
    auto r = rpc_.receipt(tx);
    if (r) {
      last_receipt_ = *r;
      if (!r->status) return make_error(ErrorKind::Reverted, "transaction " + hash_hex(tx) + " reverted");
      return r;
    }
    if (r.error().kind != ErrorKind::NotFound) return r.error();
    auto el = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    if (el.count() > timeout_ms)
      return make_error(ErrorKind::Timeout, "no receipt for " + hash_hex(tx) + " after " +
                                                std::to_string(timeout_ms) + " ms");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    if (delay < 500) delay *= 2;
  }
}

Result<Receipt> Wallet::send(const TxRequest& req, long timeout_ms) {
  PPC_TRY(Hash32 h, send_async(req));
  return wait_receipt(h, timeout_ms);
}

Result<PrivateKey> read_private_key_text(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ' || t.back() == '\t')) t.pop_back();
  size_t b = t.find_first_not_of(" \t");
  if (b != std::string::npos) t = t.substr(b);
  PrivateKey k;
  if (private_key_parse(t.c_str(), t.size(), k) != picopay::Status::Ok) {
    secure_wipe(&t[0], t.size());
    return make_error(ErrorKind::BadInput, "private key must be 0x + 64 hex digits");
  }
  secure_wipe(&t[0], t.size());
  return k;
}

Result<PrivateKey> read_private_key_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) return make_error(ErrorKind::Io, "cannot read key file " + path);
  std::string line;
  std::getline(f, line);
  auto k = read_private_key_text(line);
  secure_wipe(&line[0], line.size());
  return k;
}

}  // namespace picopay::chain
