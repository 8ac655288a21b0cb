// Amounts in an asset's units (agent/common units.hpp) and signed offers (quotes.hpp):
// what a person writes is read exactly or refused, and a signed rate or price list
// opens only untouched, from its signer, for its contract.
#include <gtest/gtest.h>

#include <cstring>

#include "picopay/agent/quotes.hpp"
#include "picopay/agent/units.hpp"
#include "picopay/policy.hpp"
#include "price.hpp"

using namespace picopay;

namespace {

U256 dec(const char* s) {
  U256 v{};
  EXPECT_EQ(u256_parse_decimal(s, std::strlen(s), v), Status::Ok) << s;
  return v;
}

units::Asset ppt(unsigned decimals = 18) {
  units::Asset a;
  a.token = true;
  a.symbol = "PPT";
  a.decimals = decimals;
  a.address.bytes[19] = 7;
  return a;
}

TEST(Units, FormatDropsTrailingZerosAndKeepsEveryDigit) {
  EXPECT_EQ(units::format(dec("2500000000000000000"), ppt()), "2.5 PPT");
  EXPECT_EQ(units::format(dec("1"), ppt()), "0.000000000000000001 PPT");
  EXPECT_EQ(units::format(U256::zero(), units::eth()), "0 ETH");
  EXPECT_EQ(units::format(dec("1234500"), ppt(6)), "1.2345 PPT");
  EXPECT_EQ(units::format(dec("42"), ppt(0)), "42 PPT");
}

TEST(Units, ParseInTheAssetsUnits) {
  U256 v{};
  std::string err;
  ASSERT_TRUE(units::parse("2.5 PPT", ppt(), v, err)) << err;
  EXPECT_EQ(v, dec("2500000000000000000"));
  ASSERT_TRUE(units::parse(" 2.5 ppt ", ppt(), v, err)) << err;  // case, spaces
  EXPECT_EQ(v, dec("2500000000000000000"));
  ASSERT_TRUE(units::parse("1.2345 PPT", ppt(6), v, err)) << err;
  EXPECT_EQ(v, dec("1234500"));
  ASSERT_TRUE(units::parse("1500", ppt(), v, err)) << err;  // base units
  EXPECT_EQ(v, dec("1500"));
  ASSERT_TRUE(units::parse("0.001 ETH", units::eth(), v, err)) << err;
  EXPECT_EQ(v, dec("1000000000000000"));
  ASSERT_TRUE(units::parse("5 gwei", units::eth(), v, err)) << err;
  EXPECT_EQ(v, dec("5000000000"));
  ASSERT_TRUE(units::parse("7 wei", units::eth(), v, err)) << err;
  EXPECT_EQ(v, dec("7"));
  ASSERT_TRUE(units::parse("2.50 PPT", ppt(2), v, err)) << "trailing zeros beyond the decimals are fine";
  EXPECT_EQ(v, dec("250"));
}

TEST(Units, ParseRefusesWhatItCannotReadExactly) {
  U256 v{};
  std::string err;
  for (const char* bad : {"", "PPT", "2.5", "1e18", "-1", "1..5 PPT", "1. PPT", ".5.5 PPT", "0x10", "2,5 PPT",
                          "0.0000000000000000001 PPT", "1 ETH", "1 wei", "1 gwei", "1 TST"}) {
    EXPECT_FALSE(units::parse(bad, ppt(), v, err)) << bad;
    EXPECT_FALSE(err.empty()) << bad;
  }
  EXPECT_FALSE(units::parse("1 PPT", units::eth(), v, err));
  EXPECT_NE(err.find("the unit must be ETH"), std::string::npos) << err;
  // 2^256 base units do not fit.
  EXPECT_FALSE(units::parse("115792089237316195423570985008687907853269984665640564039457584007913129639936", ppt(), v,
                            err));
  EXPECT_TRUE(units::parse(".5 PPT", ppt(), v, err));
  EXPECT_EQ(v, dec("500000000000000000"));
}

class Quotes : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(sg_.init(), Status::Ok);
    std::memset(key_.bytes, 0x22, 32);
    std::memset(other_.bytes, 0x33, 32);
    ASSERT_EQ(sg_.address_of(key_, me_), Status::Ok);
    contract_.bytes[0] = 0xcc;
  }
  Signer sg_;
  PrivateKey key_{}, other_{};
  Address me_{}, contract_{};
};

TEST_F(Quotes, ARateOpensOnlyFromItsSignerForItsContract) {
  quotes::Rate r;
  r.contract = contract_;
  r.hub = me_;
  r.tokensPerWei = U256::from_u64(200);
  r.time = 1700000000;
  std::string p, err;
  ASSERT_TRUE(quotes::rate_sign(r, sg_, key_, p));
  quotes::Rate got;
  ASSERT_TRUE(quotes::rate_open(p, sg_, me_, contract_, got, err)) << err;
  EXPECT_EQ(got.tokensPerWei, U256::from_u64(200));
  EXPECT_EQ(got.time, 1700000000u);
  // Another contract, another hub, a tampered body, a forger's signature.
  Address c2 = contract_;
  c2.bytes[1] = 1;
  EXPECT_FALSE(quotes::rate_open(p, sg_, me_, c2, got, err));
  EXPECT_NE(err.find("another contract"), std::string::npos);
  Address h2 = me_;
  h2.bytes[0] ^= 1;
  EXPECT_FALSE(quotes::rate_open(p, sg_, h2, contract_, got, err));
  EXPECT_NE(err.find("not signed by"), std::string::npos);
  std::string t = p;
  t.replace(t.find("200"), 3, "999");
  EXPECT_FALSE(quotes::rate_open(t, sg_, me_, contract_, got, err)) << "a changed rate no longer matches its signature";
  std::string f;
  ASSERT_TRUE(quotes::rate_sign(r, sg_, other_, f));
  EXPECT_FALSE(quotes::rate_open(f, sg_, me_, contract_, got, err));
  EXPECT_FALSE(quotes::rate_open("{\"body\":\"x\"}", sg_, me_, contract_, got, err));
  EXPECT_FALSE(quotes::rate_open("not json", sg_, me_, contract_, got, err));
  // A price list signed by the same key is not a rate.
  quotes::PriceList l;
  l.contract = contract_;
  l.payee = me_;
  l.validUntil = 10;
  ASSERT_TRUE(quotes::prices_sign(l, sg_, key_, f));
  EXPECT_FALSE(quotes::rate_open(f, sg_, me_, contract_, got, err));
  EXPECT_NE(err.find("not a rate"), std::string::npos);
}

TEST_F(Quotes, TheUsersToleranceForARate) {
  quotes::Rate r;
  r.tokensPerWei = U256::from_u64(200);
  r.time = 1000000;
  std::string err;
  EXPECT_TRUE(quotes::rate_acceptable(r, 1000000 + 3600, 3600, U256::zero(), 0, err)) << err;
  EXPECT_FALSE(quotes::rate_acceptable(r, 1000000 + 3601, 3600, U256::zero(), 0, err));
  EXPECT_NE(err.find("stale"), std::string::npos);
  EXPECT_FALSE(quotes::rate_acceptable(r, 1000000 - 61, 3600, U256::zero(), 0, err)) << "from the future";
  EXPECT_TRUE(quotes::rate_acceptable(r, 1000000, 3600, U256::from_u64(196), 205, err)) << err;  // 2.04 % < 2.05 %
  EXPECT_FALSE(quotes::rate_acceptable(r, 1000000, 3600, U256::from_u64(196), 200, err));
  EXPECT_NE(err.find("deviates"), std::string::npos);
  EXPECT_TRUE(policy_rate_within(U256::from_u64(102), U256::from_u64(100), 200));
  EXPECT_FALSE(policy_rate_within(U256::from_u64(103), U256::from_u64(100), 200));
  EXPECT_TRUE(policy_rate_within(U256::from_u64(100), U256::from_u64(100), 0));
  EXPECT_FALSE(policy_rate_within(U256::from_u64(101), U256::from_u64(100), 0));
}

TEST_F(Quotes, APriceListIsPaidOnlyWhenValidInOurAssetAndAtMostOurMaximum) {
  quotes::PriceList l;
  l.contract = contract_;
  l.payee = me_;
  l.token = true;
  l.tokenAddress = ppt().address;
  l.validFrom = 100;
  l.validUntil = 200;
  l.prices.push_back(quotes::Price{"energy", "Wh", dec("2000")});
  l.prices.push_back(quotes::Price{"data", "MB", dec("5")});
  std::string p, err;
  ASSERT_TRUE(quotes::prices_sign(l, sg_, key_, p));
  quotes::PriceList got;
  ASSERT_TRUE(quotes::prices_open(p, sg_, me_, contract_, got, err)) << err;
  ASSERT_EQ(got.prices.size(), 2u);
  U256 price{};
  EXPECT_TRUE(device::price_list_usable(got, 150, ppt(), "energy", dec("3000"), price, err)) << err;
  EXPECT_EQ(price, dec("2000"));
  EXPECT_FALSE(device::price_list_usable(got, 150, ppt(), "energy", dec("1999"), price, err));
  EXPECT_NE(err.find("above our maximum"), std::string::npos);
  EXPECT_FALSE(device::price_list_usable(got, 99, ppt(), "energy", dec("3000"), price, err));
  EXPECT_FALSE(device::price_list_usable(got, 200, ppt(), "energy", dec("3000"), price, err));
  EXPECT_NE(err.find("expired"), std::string::npos);
  EXPECT_FALSE(device::price_list_usable(got, 150, units::eth(), "energy", dec("3000"), price, err)) << "another asset";
  units::Asset other = ppt();
  other.address.bytes[19] = 8;
  EXPECT_FALSE(device::price_list_usable(got, 150, other, "energy", dec("3000"), price, err)) << "another token";
  EXPECT_FALSE(device::price_list_usable(got, 150, ppt(), "calls", dec("3000"), price, err));
  EXPECT_FALSE(device::price_list_usable(got, 150, ppt(), "data", dec("3000"), price, err)) << "MB, not Wh";
  // Forged or for another payee.
  std::string f;
  ASSERT_TRUE(quotes::prices_sign(l, sg_, other_, f));
  EXPECT_FALSE(quotes::prices_open(f, sg_, me_, contract_, got, err));
  std::string t = p;
  t.replace(t.find("2000"), 4, "1000");
  EXPECT_FALSE(quotes::prices_open(t, sg_, me_, contract_, got, err));
}

TEST(ServeCheck, StopsServingBeyondTheMargin) {
  const U256 price = U256::from_u64(1000);
  auto c = device::serve_check(100, price, U256::from_u64(90000), 10);
  EXPECT_TRUE(c.serving);
  EXPECT_EQ(c.behind_units, 10u);
  c = device::serve_check(100, price, U256::from_u64(89999), 10);  // 89 whole units paid
  EXPECT_FALSE(c.serving);
  EXPECT_EQ(c.paid_units, 89u);
  EXPECT_EQ(c.behind_units, 11u);
  c = device::serve_check(100, price, U256::from_u64(500000), 0);  // paid ahead
  EXPECT_TRUE(c.serving);
  EXPECT_EQ(c.behind_units, 0u);
  EXPECT_TRUE(device::serve_check(100, U256::zero(), U256::zero(), 0).serving) << "no price: nothing to compare";
}

}  // namespace
