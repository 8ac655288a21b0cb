// Address (EIP-55), Hash32, Signature and PrivateKey text forms; hex helpers; status names.
#include <gtest/gtest.h>

#include <cctype>
#include <cstring>
#include <string>

#include "picopay/hex.hpp"
#include "picopay/status.hpp"
#include "picopay/types.hpp"
#include "test_util.hpp"

using picopay::Address;
using picopay::Hash32;
using picopay::Signature;
using picopay::Status;
using picopay_test::Rng;

namespace {

Status parse_addr(const std::string& s, Address& a) { return picopay::address_parse(s.data(), s.size(), a); }
Status parse_sig(const std::string& s, Signature& sig) { return picopay::signature_parse(s.data(), s.size(), sig); }

std::string eip55(const Address& a) {
  char buf[picopay::kAddressTextSize];
  std::memset(buf, 'Z', sizeof buf);
  picopay::address_to_eip55(a, buf);
  EXPECT_EQ(buf[42], '\0');
  return std::string(buf);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string upper_digits(std::string s) {  // keeps the "0x" prefix lowercase
  for (size_t i = 2; i < s.size(); ++i) s[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[i])));
  return s;
}

const char* kEip55Examples[] = {
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
};

const std::string kR = "16f1c52cfdfcac6b24a7eb7cef66e98568dea5c7fc49afbbe25b786d1da1fd11";
const std::string kS = "1d3f7c772a27df6a61fdb9010d9ace38a5bbeb0a83902a1ba0c6fc61b9764885";

}  // namespace

TEST(Address, Eip55SpecExamplesPrintExactly) {
  for (const char* text : kEip55Examples) {
    Address a;
    ASSERT_EQ(parse_addr(text, a), Status::Ok) << text;
    EXPECT_EQ(eip55(a), text);
    Address b = picopay_test::addr(text);
    EXPECT_EQ(a, b) << "parsed bytes differ from the hex digits";
  }
}

TEST(Address, AllLowerAndAllUpperAccepted) {
  for (const char* text : kEip55Examples) {
    Address expect = picopay_test::addr(text), a;
    ASSERT_EQ(parse_addr(lower(text), a), Status::Ok) << lower(text);
    EXPECT_EQ(a, expect);
    ASSERT_EQ(parse_addr(upper_digits(text), a), Status::Ok) << upper_digits(text);
    EXPECT_EQ(a, expect);
  }
}

TEST(Address, OneFlippedCaseLetterIsBadChecksum) {
  int flipped = 0;
  for (const char* text : kEip55Examples) {
    std::string s = text;
    for (size_t i = 2; i < s.size(); ++i) {
      if (!std::isalpha(static_cast<unsigned char>(s[i]))) continue;
      std::string t = s;
      t[i] = std::isupper(static_cast<unsigned char>(t[i])) ? static_cast<char>(std::tolower(t[i]))
                                                            : static_cast<char>(std::toupper(t[i]));
      bool single_case = (t == lower(t)) || (t == upper_digits(t));
      Address a;
      EXPECT_EQ(parse_addr(t, a), single_case ? Status::Ok : Status::BadChecksum) << t;
      ++flipped;
    }
  }
  EXPECT_GT(flipped, 40);
}

TEST(Address, ShapeErrorsAreBadHex) {
  Address a;
  std::string good = kEip55Examples[0];
  EXPECT_EQ(parse_addr("", a), Status::BadHex);
  EXPECT_EQ(parse_addr("0x", a), Status::BadHex);
  EXPECT_EQ(parse_addr(good.substr(0, 41), a), Status::BadHex);  // 39 digits
  EXPECT_EQ(parse_addr(good + "a", a), Status::BadHex);          // 41 digits
  EXPECT_EQ(parse_addr(good + "aa", a), Status::BadHex);         // 42 digits
  EXPECT_EQ(parse_addr(lower(good).substr(2), a), Status::BadHex);      // no prefix, 40 digits
  EXPECT_EQ(parse_addr("00" + lower(good).substr(2), a), Status::BadHex);  // "00" instead of "0x"
  std::string bad = lower(good);
  bad[10] = 'g';
  EXPECT_EQ(parse_addr(bad, a), Status::BadHex);
  bad = lower(good);
  bad[41] = ' ';
  EXPECT_EQ(parse_addr(bad, a), Status::BadHex);
}

TEST(Address, RandomRoundTripThroughEip55) {
  Rng rng(55);
  for (int i = 0; i < 500; ++i) {
    Address a;
    rng.fill(a.bytes, 20);
    std::string text = eip55(a);
    ASSERT_EQ(text.size(), 42u);
    ASSERT_EQ(text.substr(0, 2), "0x");
    ASSERT_EQ(lower(text).substr(2), picopay_test::to_hex(a.bytes, 20));
    Address b;
    ASSERT_EQ(parse_addr(text, b), Status::Ok) << text;
    ASSERT_EQ(a, b);
  }
}

TEST(Address, ZeroAndEquality) {
  Address z{}, a = picopay_test::addr(kEip55Examples[0]);
  EXPECT_TRUE(z.is_zero());
  EXPECT_FALSE(a.is_zero());
  Address b = a;
  b.bytes[19] ^= 1;
  EXPECT_NE(a, b);
  Address c = a;
  EXPECT_EQ(a, c);
}

TEST(Hash32, ParseFormatCompare) {
  std::string text = "0x94d622244e6754b4b88fc5b13467fed24d6722f6416890d462b9dc109ba0dd97";
  Hash32 h;
  ASSERT_EQ(picopay::hash32_parse(text.data(), text.size(), h), Status::Ok);
  char out[picopay::kHash32TextSize];
  picopay::hash32_to_hex(h, out);
  EXPECT_EQ(std::string(out), text);
  std::string up = upper_digits(text);
  Hash32 h2;
  ASSERT_EQ(picopay::hash32_parse(up.data(), up.size(), h2), Status::Ok);
  EXPECT_EQ(h, h2);
  EXPECT_EQ(picopay::hash32_parse(text.data(), text.size() - 1, h2), Status::BadHex);
  std::string nop = text.substr(2);
  EXPECT_EQ(picopay::hash32_parse(nop.data(), nop.size(), h2), Status::BadHex);
  Hash32 a{}, b{};
  EXPECT_TRUE(a.is_zero());
  EXPECT_EQ(picopay::hash32_cmp(a, b), 0);
  b.bytes[31] = 1;
  EXPECT_EQ(picopay::hash32_cmp(a, b), -1);
  a.bytes[0] = 1;  // first byte decides (lexicographic, like Buffer.compare)
  EXPECT_EQ(picopay::hash32_cmp(a, b), 1);
  EXPECT_EQ(picopay::hash32_cmp(b, a), -1);
  a.bytes[0] = 0x80;
  b.bytes[0] = 0x7f;
  EXPECT_EQ(picopay::hash32_cmp(a, b), 1) << "bytes compare unsigned";
}

TEST(Signature, ParseNormalisesV) {
  struct Case {
    const char* v;
    uint8_t want;
  } cases[] = {{"00", 27}, {"01", 28}, {"1b", 27}, {"1c", 28}, {"1B", 27}};
  for (const Case& c : cases) {
    std::string text = "0x" + kR + kS + c.v;
    Signature sig;
    ASSERT_EQ(parse_sig(text, sig), Status::Ok) << text;
    EXPECT_EQ(sig.v, c.want) << c.v;
    EXPECT_EQ(picopay_test::to_hex(sig.r, 32), kR);
    EXPECT_EQ(picopay_test::to_hex(sig.s, 32), kS);
  }
}

TEST(Signature, ParseRefusesOtherV) {
  for (const char* v : {"02", "1d", "1a", "ff", "25", "26"}) {  // 2, 29, 26, 255, 37, 38 (EIP-155 style)
    Signature sig;
    EXPECT_EQ(parse_sig("0x" + kR + kS + v, sig), Status::BadRecoveryId) << v;
  }
}

TEST(Signature, ParseShapeErrorsAreBadHex) {
  Signature sig;
  std::string good = "0x" + kR + kS + "1c";
  EXPECT_EQ(parse_sig(good.substr(0, good.size() - 2), sig), Status::BadHex);
  EXPECT_EQ(parse_sig(good + "00", sig), Status::BadHex);
  EXPECT_EQ(parse_sig(good.substr(2), sig), Status::BadHex);
  std::string bad = good;
  bad[50] = 'x';
  EXPECT_EQ(parse_sig(bad, sig), Status::BadHex);
  EXPECT_EQ(parse_sig("", sig), Status::BadHex);
}

TEST(Signature, FormatRoundTrip) {
  std::string text = "0x" + kR + kS + "1c";
  Signature sig;
  ASSERT_EQ(parse_sig(text, sig), Status::Ok);
  char out[picopay::kSignatureTextSize];
  picopay::signature_to_hex(sig, out);
  EXPECT_EQ(std::string(out), text);
  Signature sig0;
  ASSERT_EQ(parse_sig("0x" + kR + kS + "01", sig0), Status::Ok);
  EXPECT_EQ(sig, sig0);
  sig0.v = 27;
  EXPECT_NE(sig, sig0);
}

TEST(PrivateKey, Parse) {
  std::string text = "0x" + std::string(64, '2');
  picopay::PrivateKey k;
  ASSERT_EQ(picopay::private_key_parse(text.data(), text.size(), k), Status::Ok);
  for (uint8_t b : k.bytes) EXPECT_EQ(b, 0x22);
  EXPECT_EQ(picopay::private_key_parse(text.data(), text.size() - 1, k), Status::BadHex);
  std::string nop = std::string(64, '2');
  EXPECT_EQ(picopay::private_key_parse(nop.data(), nop.size(), k), Status::BadHex);
}

TEST(Hex, DecodeAndEncode) {
  uint8_t out[4];
  EXPECT_EQ(picopay::hex_decode_0x("0xdeadBEEF", 10, out, 4), Status::Ok);
  EXPECT_EQ(picopay_test::to_hex(out, 4), "deadbeef");
  EXPECT_EQ(picopay::hex_decode_0x("0XdeadBEEF", 10, out, 4), Status::Ok);
  EXPECT_EQ(picopay::hex_decode_0x("deadBEEF", 8, out, 4), Status::BadHex);
  EXPECT_EQ(picopay::hex_decode_0x("0xdeadBEE", 9, out, 4), Status::BadHex);
  EXPECT_EQ(picopay::hex_decode_0x("0xdeadBEEF00", 12, out, 4), Status::BadHex);
  size_t n = 0;
  EXPECT_EQ(picopay::hex_decode("0a0b", 4, out, 4, &n), Status::Ok);
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(out[0], 0x0a);
  EXPECT_EQ(out[1], 0x0b);
  EXPECT_EQ(picopay::hex_decode("0a0", 3, out, 4, &n), Status::BadHex);
  EXPECT_EQ(picopay::hex_decode("0z", 2, out, 4, &n), Status::BadHex);
  EXPECT_EQ(picopay::hex_decode("0102030405", 10, out, 4, &n), Status::BufferTooSmall);
  char text[16];
  const uint8_t in[3] = {0x00, 0xAB, 0xff};
  picopay::hex_encode(in, 3, text, true);
  EXPECT_STREQ(text, "0x00abff");
  picopay::hex_encode(in, 3, text, false);
  EXPECT_STREQ(text, "00abff");
  EXPECT_EQ(picopay::hex_digit_value('0'), 0);
  EXPECT_EQ(picopay::hex_digit_value('a'), 10);
  EXPECT_EQ(picopay::hex_digit_value('F'), 15);
  EXPECT_EQ(picopay::hex_digit_value('g'), -1);
  EXPECT_EQ(picopay::hex_digit_value('/'), -1);
  EXPECT_EQ(picopay::hex_digit_value(':'), -1);
  uint8_t secret[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  picopay::secure_wipe(secret, sizeof secret);
  for (uint8_t b : secret) EXPECT_EQ(b, 0);
}

TEST(StatusNames, EveryCodeHasANameAndMessage) {
  for (int i = 0; i <= static_cast<int>(Status::Corrupt); ++i) {
    Status s = static_cast<Status>(i);
    ASSERT_NE(picopay::status_name(s), nullptr);
    ASSERT_NE(picopay::status_message(s), nullptr);
    EXPECT_GT(std::strlen(picopay::status_name(s)), 0u) << i;
  }
  EXPECT_STREQ(picopay::status_name(Status::Truncated), "Truncated");
  EXPECT_STREQ(picopay::status_name(Status::HighS), "HighS");
  EXPECT_STREQ(picopay::status_name(Status::Ok), "Ok");
  EXPECT_NE(picopay::status_name(static_cast<Status>(250)), nullptr);
}
