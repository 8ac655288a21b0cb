// The device's own deposit transaction (core/include/picopay/eth_tx.hpp), checked on the
// host against independent decoders: the chain adapter's RLP decoder and calldata
// builder (agent/chain), the signer's recovery, and ethers v6 (tests/crosscheck/
// decode_tx.mjs) when node and tests/crosscheck/node_modules are present.
//  - the raw transaction decodes to exactly the fields the device chose, recovers to the
//    device's address, and its calldata is the adapter's userAuthorizedUpdate calldata;
//  - a relay's offer beyond the device's bounds (gas price, fee, chain id, zero gas) is
//    refused and nothing is signed; a state with no user deposit is refused;
//  - a relay that alters the signed bytes (calldata, value, nonce) gets a transaction
//    whose sender is not the device (the chain would charge an unfunded account);
//  - the relay messages round-trip and refuse malformed input.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "picopay/chain/abi.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/eth_tx.hpp"
#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"

using namespace picopay;
namespace ch = picopay::chain;

namespace {

struct Fixture {
  Signer signer;
  PrivateKey user_key{}, hub_key{};
  Address user{}, hub{};
  SignedChannelState s{};
  EthTxParams p{};
  EthTxBounds b{};

  Fixture() {
    EXPECT_EQ(signer.init(), Status::Ok);
    std::memset(user_key.bytes, 0x42, 32);
    std::memset(hub_key.bytes, 0x33, 32);
    EXPECT_EQ(signer.address_of(user_key, user), Status::Ok);
    EXPECT_EQ(signer.address_of(hub_key, hub), Status::Ok);
    s.state = channel_state_zero();
    EXPECT_EQ(address_parse("0x7d73424a8256c0b2ba245e5d5a3de8820e45f390", 42, s.state.contractAddress), Status::Ok);
    s.state.user = user;
    s.state.recipient = user;
    s.state.pendingDepositWeiUser = U256::from_u64(1000000000000000000ULL);
    s.state.txCountGlobal = 1;
    s.state.txCountChain = 1;
    s.state.timeout = 1900000000;
    const Hash32 h = channel_hash(s.state);
    EXPECT_EQ(signer.sign_eth(hub_key, h, s.sigHub), Status::Ok);
    EXPECT_EQ(signer.sign_eth(user_key, h, s.sigUser), Status::Ok);
    s.hasSigHub = s.hasSigUser = true;
    p.chainId = 1337;
    p.nonce = 7;
    p.gasPriceWei = U256::from_u64(2000000000);  // 2 gwei
    p.gasLimit = 400000;
    b.chainId = 1337;
    b.maxGasPriceWei = U256::from_u64(50000000000ULL);         // 50 gwei
    b.maxFeeWei = U256::from_u64(20000000000000000ULL);        // 0.02 ETH
  }

  std::vector<uint8_t> sign(Status* st = nullptr, Hash32* hash = nullptr) {
    std::vector<uint8_t> out(kMaxUserAuthorizedUpdateTx);
    size_t n = 0;
    const Status e = sign_user_deposit_tx(signer, user_key, s, p, b, out.data(), out.size(), &n, hash);
    if (st) *st = e;
    out.resize(e == Status::Ok ? n : 0);
    return out;
  }
};

U256 rlp_u256(const ch::Rlp& r) {
  U256 v{};
  EXPECT_FALSE(r.is_list);
  EXPECT_EQ(u256_from_be(r.str.data(), r.str.size(), v), Status::Ok);
  if (!r.str.empty()) {
    EXPECT_NE(r.str[0], 0) << "not minimal";
  }
  return v;
}

// The sender of a decoded legacy EIP-155 transaction (recovered here from the fields).
Status sender_of(const Signer& signer, const ch::Rlp& tx, uint64_t chain_id, Address& out) {
  std::vector<ch::Rlp> items(tx.list.begin(), tx.list.begin() + 6);
  items.push_back(ch::Rlp::uint(chain_id));
  items.push_back(ch::Rlp::uint(uint64_t{0}));
  items.push_back(ch::Rlp::uint(uint64_t{0}));
  const ch::Bytes pre = ch::rlp_encode(ch::Rlp::list_of(items));
  Hash32 d{};
  keccak256(pre.data(), pre.size(), d.bytes);
  const U256 v = rlp_u256(tx.list[6]);
  Signature sig{};
  U256 r = rlp_u256(tx.list[7]), s = rlp_u256(tx.list[8]);
  u256_to_be32(r, sig.r);
  u256_to_be32(s, sig.s);
  const uint64_t rec = v.low64() - 35 - 2 * chain_id;
  if (rec > 1) return Status::BadRecoveryId;
  sig.v = static_cast<uint8_t>(27 + rec);
  return signer.recover_digest(d, sig, out);
}

TEST(EthTx, SelectorIsTheKeccakOfTheSignature) {
  uint8_t h[32];
  keccak256(reinterpret_cast<const uint8_t*>(kUserAuthorizedUpdateSignature),
            std::strlen(kUserAuthorizedUpdateSignature), h);
  EXPECT_EQ(0, std::memcmp(h, kUserAuthorizedUpdateSelector, 4));
  EXPECT_STREQ(kUserAuthorizedUpdateSignature, ch::sig::kUserAuthorizedUpdate);
}

TEST(EthTx, CalldataIsTheChainAdaptersCalldata) {
  Fixture f;
  uint8_t out[kUserAuthorizedUpdateCalldataSize];
  size_t n = 0;
  ASSERT_EQ(encode_user_authorized_update_call(f.s.state, f.s.sigHub, out, sizeof out, &n), Status::Ok);
  EXPECT_EQ(std::vector<uint8_t>(out, out + n), ch::encode_user_authorized_update(f.s.state, f.s.sigHub));
  EXPECT_EQ(encode_user_authorized_update_call(f.s.state, f.s.sigHub, out, sizeof out - 1, &n), Status::BufferTooSmall);
  EXPECT_EQ(n, kUserAuthorizedUpdateCalldataSize);
}

TEST(EthTx, SignedTransactionDecodesAndRecoversToTheDevice) {
  Fixture f;
  Hash32 hash{};
  Status st{};
  const std::vector<uint8_t> raw = f.sign(&st, &hash);
  ASSERT_EQ(st, Status::Ok);
  ASSERT_LE(raw.size(), kMaxUserAuthorizedUpdateTx);
  auto dec = ch::rlp_decode(raw);
  ASSERT_TRUE(dec.ok());
  const ch::Rlp& tx = *dec;
  ASSERT_TRUE(tx.is_list);
  ASSERT_EQ(tx.list.size(), 9u);
  EXPECT_EQ(rlp_u256(tx.list[0]), U256::from_u64(7));
  EXPECT_EQ(rlp_u256(tx.list[1]), f.p.gasPriceWei);
  EXPECT_EQ(rlp_u256(tx.list[2]), U256::from_u64(400000));
  EXPECT_EQ(tx.list[3].str, ch::Bytes(f.s.state.contractAddress.bytes, f.s.state.contractAddress.bytes + 20));
  EXPECT_EQ(rlp_u256(tx.list[4]), f.s.state.pendingDepositWeiUser);
  EXPECT_EQ(tx.list[5].str, ch::encode_user_authorized_update(f.s.state, f.s.sigHub));
  const U256 v = rlp_u256(tx.list[6]);
  EXPECT_TRUE(v == U256::from_u64(2 * 1337 + 35) || v == U256::from_u64(2 * 1337 + 36));
  Address from{};
  ASSERT_EQ(sender_of(f.signer, tx, 1337, from), Status::Ok);
  EXPECT_EQ(from, f.user);
  Hash32 h2{};
  keccak256(raw.data(), raw.size(), h2.bytes);
  EXPECT_EQ(hash, h2);
  // Deterministic (RFC 6979): the same offer gives the same bytes (a re-send is the same
  // transaction, never a second one).
  EXPECT_EQ(f.sign(), raw);
}

TEST(EthTx, AlteredBytesAreNotTheDevicesTransaction) {
  Fixture f;
  const std::vector<uint8_t> raw = f.sign();
  ASSERT_FALSE(raw.empty());
  auto dec = ch::rlp_decode(raw);
  ASSERT_TRUE(dec.ok());
  // A relay changes the calldata (another recipient), the value, the nonce: the
  // signature then recovers to some other address, never the device's.
  for (int field : {5, 4, 0}) {
    ch::Rlp t = *dec;
    if (field == 5) t.list[5].str[4 + 31] ^= 0x01;
    if (field == 4) t.list[4] = ch::Rlp::uint(uint64_t{1});
    if (field == 0) t.list[0] = ch::Rlp::uint(uint64_t{8});
    Address from{};
    const Status e = sender_of(f.signer, t, 1337, from);
    if (e == Status::Ok) {
      EXPECT_NE(from, f.user) << "field " << field;
    }
  }
}

TEST(EthTx, OffersBeyondTheDevicesBoundsAreRefused) {
  Fixture f;
  Status st{};
  // gas price above the maximum
  f.p.gasPriceWei = U256::from_u64(50000000001ULL);
  EXPECT_TRUE(f.sign(&st).empty());
  EXPECT_EQ(st, Status::OutOfBounds);
  // fee (gasPrice * gasLimit) above the maximum
  f.p.gasPriceWei = U256::from_u64(50000000000ULL);
  f.p.gasLimit = 400001;  // 50 gwei * 400001 > 0.02 ETH
  EXPECT_TRUE(f.sign(&st).empty());
  EXPECT_EQ(st, Status::OutOfBounds);
  f.p.gasLimit = 400000;  // exactly 0.02 ETH: allowed
  EXPECT_FALSE(f.sign(&st).empty());
  EXPECT_EQ(st, Status::Ok);
  // a fee that overflows 2^256
  f.p.gasPriceWei = U256::max();
  f.b.maxGasPriceWei = U256::max();
  EXPECT_TRUE(f.sign(&st).empty());
  EXPECT_EQ(st, Status::OutOfBounds);
  f.b.maxGasPriceWei = U256::from_u64(50000000000ULL);
  f.p.gasPriceWei = U256::from_u64(1);
  // zero gas
  f.p.gasLimit = 0;
  EXPECT_TRUE(f.sign(&st).empty());
  EXPECT_EQ(st, Status::OutOfBounds);
  f.p.gasLimit = 400000;
  // another chain
  f.p.chainId = 1;
  EXPECT_TRUE(f.sign(&st).empty());
  EXPECT_EQ(st, Status::WrongContract);
  f.p.chainId = 1337;
  // a state without a user deposit, or not double-signed
  f.s.state.pendingDepositWeiUser = U256::zero();
  EXPECT_TRUE(f.sign(&st).empty());
  EXPECT_EQ(st, Status::BadArgs);
  Fixture g;
  g.s.hasSigHub = false;
  EXPECT_TRUE(g.sign(&st).empty());
  EXPECT_EQ(st, Status::BadArgs);
  // a small buffer: nothing signed
  std::vector<uint8_t> small(kMaxUserAuthorizedUpdateTx - 1);
  size_t n = 0;
  EXPECT_EQ(sign_user_deposit_tx(g.signer, g.user_key, Fixture().s, g.p, g.b, small.data(), small.size(), &n, nullptr),
            Status::BufferTooSmall);
}

TEST(EthTx, RelayMessagesRoundTrip) {
  RelayOfferMsg o{};
  o.tx.chainId = 1337;
  o.tx.nonce = 3;
  o.tx.gasPriceWei = U256::from_u64(123456789);
  o.tx.gasLimit = 400000;
  o.facts.txCountGlobal = 5;
  o.facts.txCountChain = 2;
  o.facts.status = ChainChannelStatus::InDispute;
  o.facts.blockTime = 1800000000;
  uint8_t b[kRelayOfferSize];
  relay_offer_encode(o, b);
  RelayOfferMsg d{};
  ASSERT_EQ(relay_offer_decode(b, sizeof b, d), Status::Ok);
  EXPECT_EQ(d.tx.chainId, 1337u);
  EXPECT_EQ(d.tx.nonce, 3u);
  EXPECT_EQ(d.tx.gasPriceWei, o.tx.gasPriceWei);
  EXPECT_EQ(d.tx.gasLimit, 400000u);
  EXPECT_TRUE(d.facts.known);
  EXPECT_EQ(d.facts.txCountGlobal, 5u);
  EXPECT_EQ(d.facts.txCountChain, 2u);
  EXPECT_EQ(d.facts.status, ChainChannelStatus::InDispute);
  EXPECT_EQ(d.facts.blockTime, 1800000000u);
  EXPECT_EQ(relay_offer_decode(b, sizeof b - 1, d), Status::Truncated);
  uint8_t longer[kRelayOfferSize + 1] = {};
  std::memcpy(longer, b, sizeof b);
  EXPECT_EQ(relay_offer_decode(longer, sizeof longer, d), Status::TrailingBytes);
  b[0] = kRelayReceipt;
  EXPECT_EQ(relay_offer_decode(b, sizeof b, d), Status::BadKind);
  b[0] = kRelayOffer;
  b[1 + 8 + 8 + 32 + 8 + 8 + 8] = 2;  // status byte
  EXPECT_EQ(relay_offer_decode(b, sizeof b, d), Status::OutOfBounds);

  RelayReceiptMsg r{};
  std::memset(r.txHash.bytes, 0xab, 32);
  r.status = 1;
  r.gasUsed = 98765;
  r.blockNumber = 42;
  uint8_t rb[kRelayReceiptSize];
  relay_receipt_encode(r, rb);
  RelayReceiptMsg rd{};
  ASSERT_EQ(relay_receipt_decode(rb, sizeof rb, rd), Status::Ok);
  EXPECT_EQ(rd.txHash, r.txHash);
  EXPECT_EQ(rd.status, 1);
  EXPECT_EQ(rd.gasUsed, 98765u);
  EXPECT_EQ(rd.blockNumber, 42u);
  rb[33] = 3;
  EXPECT_EQ(relay_receipt_decode(rb, sizeof rb, rd), Status::OutOfBounds);
  EXPECT_EQ(relay_receipt_decode(rb, 0, rd), Status::Truncated);
}

#ifdef PICOPAY_NODE
// ethers v6 decodes the device's transaction: the sender it recovers is the device, and
// every field is the one the device chose.
TEST(EthTx, EthersDecodesTheDevicesTransaction) {
  const std::string script = std::string(PICOPAY_CROSSCHECK_DIR) + "/decode_tx.mjs";
  const std::string mods = std::string(PICOPAY_CROSSCHECK_DIR) + "/node_modules/ethers";
  if (FILE* m = std::fopen((mods + "/package.json").c_str(), "r")) {
    std::fclose(m);
  } else {
    GTEST_SKIP() << "no " << mods << " (run npm ci in tests/crosscheck)";
  }
  Fixture f;
  Hash32 hash{};
  const std::vector<uint8_t> raw = f.sign(nullptr, &hash);
  ASSERT_FALSE(raw.empty());
  const std::string cmd = std::string(PICOPAY_NODE) + " " + script + " " + ch::hex_bytes(raw);
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ASSERT_EQ(::pclose(p), 0) << out;
  char user[kAddressTextSize];
  hex_encode(f.user.bytes, 20, user, true);
  EXPECT_NE(out.find(std::string("\"from\":\"") + user + "\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"to\":\"0x7d73424a8256c0b2ba245e5d5a3de8820e45f390\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"value\":\"1000000000000000000\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"data\":\"" + ch::hex_bytes(ch::encode_user_authorized_update(f.s.state, f.s.sigHub)) + "\""),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("\"nonce\":7,"), std::string::npos) << out;
  EXPECT_NE(out.find("\"gasPrice\":\"2000000000\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"gasLimit\":\"400000\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"chainId\":\"1337\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"type\":0"), std::string::npos) << out;
  EXPECT_NE(out.find("\"hash\":\"" + ch::hash_hex(hash) + "\""), std::string::npos) << out;
}
#endif

}  // namespace
