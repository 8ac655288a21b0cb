// Signer: address derivation, sign/recover round trips, RFC 6979 determinism, low-S,
// EIP-2 high-S refusal, recovery-id and range checks, wrong signer, bad keys.
#include <gtest/gtest.h>

#include <cstring>
#include <initializer_list>
#include <string>

#include "picopay/signer.hpp"
#include "picopay/state.hpp"
#include "test_util.hpp"

using picopay::Address;
using picopay::Hash32;
using picopay::PrivateKey;
using picopay::Signature;
using picopay::Signer;
using picopay::Status;
using picopay::U256;
using picopay_test::addr;
using picopay_test::from_hex;
using picopay_test::Rng;
using picopay_test::to_hex;

namespace {

const std::string kOrderHex = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
const std::string kHalfOrderHex = "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0";

PrivateKey key_fill(uint8_t b) {
  PrivateKey k;
  std::memset(k.bytes, b, 32);
  return k;
}
PrivateKey key_hex(const std::string& hex) {
  PrivateKey k;
  std::vector<uint8_t> b = from_hex(hex);
  std::memcpy(k.bytes, b.data(), 32);
  return k;
}

U256 be_to_u256(const uint8_t* p) {
  U256 v;
  EXPECT_EQ(picopay::u256_from_be(p, 32, v), Status::Ok);
  return v;
}

// The high-S twin of a valid signature: s' = n - s, recovery id flipped.
Signature high_s_twin(const Signature& sig) {
  U256 n = be_to_u256(from_hex(kOrderHex).data()), s = be_to_u256(sig.s), t;
  EXPECT_EQ(picopay::u256_sub(n, s, t), Status::Ok);
  Signature out = sig;
  picopay::u256_to_be32(t, out.s);
  out.v = sig.v == 27 ? 28 : 27;
  return out;
}

class SignerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(signer_.init(), Status::Ok); }
  Signer signer_;
};

}  // namespace

TEST_F(SignerTest, ReadyAfterInit) {
  EXPECT_TRUE(signer_.ready());
  Signer other;
  EXPECT_FALSE(other.ready());
}

TEST_F(SignerTest, KnownAddresses) {
  Address a;
  ASSERT_EQ(signer_.address_of(key_fill(0x22), a), Status::Ok);
  EXPECT_EQ(a, addr("0x1563915e194D8CfBA1943570603F7606A3115508"));
  ASSERT_EQ(signer_.address_of(key_hex("0x" + std::string(63, '0') + "1"), a), Status::Ok);
  EXPECT_EQ(a, addr("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"));
  ASSERT_EQ(signer_.address_of(key_hex("0x" + std::string(63, '0') + "2"), a), Status::Ok);
  EXPECT_EQ(a, addr("0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"));
}

TEST_F(SignerTest, KnownDigestSignature) {
  // ethers SigningKey(0x22..22).sign(0x00..01): RFC 6979, low-S
  Hash32 d{};
  d.bytes[31] = 1;
  Signature sig;
  ASSERT_EQ(signer_.sign_digest(key_fill(0x22), d, sig), Status::Ok);
  char text[picopay::kSignatureTextSize];
  picopay::signature_to_hex(sig, text);
  EXPECT_EQ(std::string(text),
            "0x130986debc972c96a0b9f7fc4962237efeae7c95ffa31ff7f97e64cb367b48a30d225f2f57fa84dc589a50945dffbc70c0d1165b"
            "0782bda78491222eef02476d1b");
}

TEST_F(SignerTest, SignRecoverRoundTripRandomKeysAndHashes) {
  Rng rng(6979);
  for (int i = 0; i < 200; ++i) {
    PrivateKey k;
    rng.fill(k.bytes, 32);
    Hash32 h;
    rng.fill(h.bytes, 32);
    Address who;
    ASSERT_EQ(signer_.address_of(k, who), Status::Ok);
    Signature sig;
    ASSERT_EQ(signer_.sign_eth(k, h, sig), Status::Ok);
    ASSERT_TRUE(sig.v == 27 || sig.v == 28) << int(sig.v);
    ASSERT_TRUE(picopay::signature_s_is_low(sig.s)) << "produced a high-S signature";
    Address got;
    ASSERT_EQ(signer_.recover_eth(h, sig, got), Status::Ok);
    ASSERT_EQ(got, who);
    ASSERT_EQ(signer_.verify_eth(h, sig, who), Status::Ok);
    // eth_sign = sign_digest over the EIP-191 hash
    Signature raw;
    ASSERT_EQ(signer_.sign_digest(k, picopay::eth_sign_hash(h), raw), Status::Ok);
    ASSERT_EQ(raw, sig);
    ASSERT_EQ(signer_.recover_digest(picopay::eth_sign_hash(h), raw, got), Status::Ok);
    ASSERT_EQ(got, who);
    // and the raw digest is not the eth_sign one
    ASSERT_EQ(signer_.recover_digest(h, sig, got) == Status::Ok && got == who, false);
  }
}

TEST_F(SignerTest, Rfc6979Deterministic) {
  Rng rng(17);
  Signer blinded;
  uint8_t seed[32];
  rng.fill(seed, 32);
  ASSERT_EQ(blinded.init(seed), Status::Ok);
  for (int i = 0; i < 20; ++i) {
    PrivateKey k;
    rng.fill(k.bytes, 32);
    Hash32 h;
    rng.fill(h.bytes, 32);
    Signature a, b, c;
    ASSERT_EQ(signer_.sign_eth(k, h, a), Status::Ok);
    ASSERT_EQ(signer_.sign_eth(k, h, b), Status::Ok);
    ASSERT_EQ(blinded.sign_eth(k, h, c), Status::Ok);
    EXPECT_EQ(a, b);
    EXPECT_EQ(a, c) << "blinding must not change RFC 6979 output";
    h.bytes[0] ^= 1;
    ASSERT_EQ(signer_.sign_eth(k, h, b), Status::Ok);
    EXPECT_NE(a, b);
  }
}

TEST_F(SignerTest, HighSTwinRefused) {
  Rng rng(2);
  for (int i = 0; i < 30; ++i) {
    PrivateKey k;
    rng.fill(k.bytes, 32);
    Hash32 h;
    rng.fill(h.bytes, 32);
    Signature sig;
    ASSERT_EQ(signer_.sign_eth(k, h, sig), Status::Ok);
    Signature twin = high_s_twin(sig);
    EXPECT_FALSE(picopay::signature_s_is_low(twin.s));
    Address got;
    EXPECT_EQ(signer_.recover_eth(h, twin, got), Status::HighS);
    Address who;
    ASSERT_EQ(signer_.address_of(k, who), Status::Ok);
    EXPECT_EQ(signer_.verify_eth(h, twin, who), Status::HighS);
  }
}

TEST(SignatureSIsLow, HalfOrderBoundary) {
  std::vector<uint8_t> half = from_hex(kHalfOrderHex);
  EXPECT_TRUE(picopay::signature_s_is_low(half.data()));
  std::vector<uint8_t> above = half;
  above[31] = static_cast<uint8_t>(above[31] + 1);
  EXPECT_FALSE(picopay::signature_s_is_low(above.data()));
  std::vector<uint8_t> top(32, 0);
  top[0] = 0x80;
  EXPECT_FALSE(picopay::signature_s_is_low(top.data()));
  std::vector<uint8_t> one(32, 0);
  one[31] = 1;
  EXPECT_TRUE(picopay::signature_s_is_low(one.data()));
}

namespace {
void expect_v_refused(const Signer& signer, std::initializer_list<int> vs) {
  Hash32 h{};
  h.bytes[0] = 7;
  Signature sig;
  ASSERT_EQ(signer.sign_eth(key_fill(0x22), h, sig), Status::Ok);
  Address got;
  for (int vi : vs) {
    Signature bad = sig;
    bad.v = static_cast<uint8_t>(vi);
    EXPECT_EQ(signer.recover_eth(h, bad, got), Status::BadRecoveryId) << "v = " << vi;
    EXPECT_EQ(signer.recover_digest(picopay::eth_sign_hash(h), bad, got), Status::BadRecoveryId) << "v = " << vi;
    EXPECT_EQ(signer.verify_eth(h, bad, addr("0x1563915e194D8CfBA1943570603F7606A3115508")), Status::BadRecoveryId)
        << "v = " << vi;
  }
}
}  // namespace

TEST_F(SignerTest, RecoveryIdOutside0To1And27To28Refused) { expect_v_refused(signer_, {2, 26, 29, 37, 255}); }

// signer.hpp: "Verification rejects ... v outside {27, 28} (parsing normalises 0/1 to
// 27/28)" and recover_digest: "BadRecoveryId (v not 27/28)". A Signature struct is
// "always 27 or 28 once parsed or produced by the core", so a raw 0/1 must be refused.
TEST_F(SignerTest, RawRecoveryId0Or1InStructRefusedAsDocumented) { expect_v_refused(signer_, {0, 1}); }

TEST_F(SignerTest, ZeroOrOutOfRangeRSIsBadSignature) {
  Hash32 h{};
  h.bytes[5] = 9;
  Signature sig;
  ASSERT_EQ(signer_.sign_eth(key_fill(0x22), h, sig), Status::Ok);
  Address got;
  Signature bad = sig;
  std::memset(bad.r, 0, 32);
  EXPECT_EQ(signer_.recover_eth(h, bad, got), Status::BadSignature);
  bad = sig;
  std::memset(bad.s, 0, 32);
  EXPECT_EQ(signer_.recover_eth(h, bad, got), Status::BadSignature);
  bad = sig;
  std::vector<uint8_t> n = from_hex(kOrderHex);
  std::memcpy(bad.r, n.data(), 32);  // r = n
  EXPECT_EQ(signer_.recover_eth(h, bad, got), Status::BadSignature);
  std::memset(bad.r, 0xff, 32);  // r > n
  EXPECT_EQ(signer_.recover_eth(h, bad, got), Status::BadSignature);
}

TEST_F(SignerTest, VerifyWithDifferentExpectedAddressIsWrongSigner) {
  Hash32 h{};
  h.bytes[1] = 3;
  Signature sig;
  ASSERT_EQ(signer_.sign_eth(key_fill(0x22), h, sig), Status::Ok);
  EXPECT_EQ(signer_.verify_eth(h, sig, addr("0x1563915e194D8CfBA1943570603F7606A3115508")), Status::Ok);
  EXPECT_EQ(signer_.verify_eth(h, sig, addr("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf")), Status::WrongSigner);
  // a signature over another hash recovers to someone else
  Hash32 other = h;
  other.bytes[31] ^= 0x80;
  Status st = signer_.verify_eth(other, sig, addr("0x1563915e194D8CfBA1943570603F7606A3115508"));
  EXPECT_TRUE(st == Status::WrongSigner || st == Status::BadSignature) << picopay::status_name(st);
}

TEST_F(SignerTest, BadPrivateKeys) {
  Hash32 h{};
  Address a;
  Signature sig;
  PrivateKey zero = key_fill(0), order = key_hex(kOrderHex), ff = key_fill(0xff);
  for (const PrivateKey& k : {zero, order, ff}) {
    EXPECT_EQ(signer_.address_of(k, a), Status::BadPrivateKey);
    EXPECT_EQ(signer_.sign_eth(k, h, sig), Status::BadPrivateKey);
    EXPECT_EQ(signer_.sign_digest(k, h, sig), Status::BadPrivateKey);
  }
  // n - 1 is the largest valid key
  std::vector<uint8_t> nm1 = from_hex(kOrderHex);
  nm1[31] = static_cast<uint8_t>(nm1[31] - 1);
  PrivateKey k;
  std::memcpy(k.bytes, nm1.data(), 32);
  EXPECT_EQ(signer_.address_of(k, a), Status::Ok);
  EXPECT_EQ(signer_.sign_eth(k, h, sig), Status::Ok);
}

TEST(SignerUninitialised, ReportsCryptoUnavailable) {
  Signer s;
  Address a;
  Signature sig;
  Hash32 h{};
  EXPECT_EQ(s.address_of(key_fill(0x22), a), Status::CryptoUnavailable);
  EXPECT_EQ(s.sign_eth(key_fill(0x22), h, sig), Status::CryptoUnavailable);
}
