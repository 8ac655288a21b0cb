// U256: parse/format round trips, refusals, checked arithmetic at the edges, divmod,
// and a randomized cross-check against an independent decimal-string bignum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "picopay/u256.hpp"
#include "test_util.hpp"

using picopay::Status;
using picopay::U256;
using picopay_test::dec;
using picopay_test::Rng;
using picopay_test::u;

namespace {

// GCC/Clang 128-bit integer, the small-value reference (__extension__: -Wpedantic).
__extension__ typedef unsigned __int128 u128;

const char* kMaxDec = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
const char* kTwo256Dec = "115792089237316195423570985008687907853269984665640564039457584007913129639936";

Status parse_dec(const std::string& s, U256& out) { return picopay::u256_parse_decimal(s.data(), s.size(), out); }
Status parse_hex(const std::string& s, U256& out) { return picopay::u256_parse_hex(s.data(), s.size(), out); }

U256 dec_value(const std::string& s) {
  U256 v = U256::zero();
  EXPECT_EQ(parse_dec(s, v), Status::Ok) << s;
  return v;
}

// ------------------------------------------------------------------------------
// An independent bignum: non-negative integers as decimal digit strings (no leading
// zeros), schoolbook arithmetic. Slow and obvious on purpose.
namespace decimal {

std::string norm(std::string s) {
  size_t i = 0;
  while (i + 1 < s.size() && s[i] == '0') ++i;
  return s.substr(i);
}

int cmp(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  int c = a.compare(b);
  return c < 0 ? -1 : c > 0 ? 1 : 0;
}

std::string add(const std::string& a, const std::string& b) {
  std::string r;
  int carry = 0;
  for (size_t i = 0; i < std::max(a.size(), b.size()) || carry; ++i) {
    int da = i < a.size() ? a[a.size() - 1 - i] - '0' : 0;
    int db = i < b.size() ? b[b.size() - 1 - i] - '0' : 0;
    int s = da + db + carry;
    r.push_back(static_cast<char>('0' + s % 10));
    carry = s / 10;
  }
  std::reverse(r.begin(), r.end());
  return norm(r);
}

// a - b, requires a >= b.
std::string sub(const std::string& a, const std::string& b) {
  std::string r;
  int borrow = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    int da = a[a.size() - 1 - i] - '0' - borrow;
    int db = i < b.size() ? b[b.size() - 1 - i] - '0' : 0;
    borrow = 0;
    if (da < db) {
      da += 10;
      borrow = 1;
    }
    r.push_back(static_cast<char>('0' + (da - db)));
  }
  std::reverse(r.begin(), r.end());
  return norm(r);
}

std::string mul(const std::string& a, const std::string& b) {
  std::string acc(a.size() + b.size(), '\0');  // digits as 0..9 values, little endian
  std::vector<int> d(a.size() + b.size(), 0);
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t j = 0; j < b.size(); ++j) d[i + j] += (a[a.size() - 1 - i] - '0') * (b[b.size() - 1 - j] - '0');
  for (size_t k = 0; k + 1 < d.size(); ++k) {
    d[k + 1] += d[k] / 10;
    d[k] %= 10;
  }
  std::string r;
  for (size_t k = d.size(); k-- > 0;) r.push_back(static_cast<char>('0' + d[k]));
  return norm(r);
}

// Long division: q = a / b, rem = a % b, b != 0.
void divmod(const std::string& a, const std::string& b, std::string& q, std::string& rem) {
  q.clear();
  rem = "0";
  for (char c : a) {
    rem = norm(rem + c);
    int digit = 0;
    while (cmp(rem, b) >= 0) {
      rem = sub(rem, b);
      ++digit;
    }
    q.push_back(static_cast<char>('0' + digit));
  }
  q = norm(q);
}

// The value of a U256 from its limbs, computed without the code under test.
std::string of(const U256& v) {
  const std::string two64 = "18446744073709551616";
  std::string r = "0";
  for (int i = 3; i >= 0; --i) r = add(mul(r, two64), std::to_string(v.w[i]));
  return r;
}

}  // namespace decimal

}  // namespace

// ----------------------------------------------------------------- parse / format

TEST(U256, DecimalRoundTripsAtTheEdges) {
  const char* cases[] = {"0", "1", "9", "10", "18446744073709551615", "18446744073709551616",
                         "340282366920938463463374607431768211455", "340282366920938463463374607431768211456",
                         kMaxDec};
  for (const char* c : cases) {
    U256 v;
    ASSERT_EQ(parse_dec(c, v), Status::Ok) << c;
    EXPECT_EQ(decimal::of(v), c);
    EXPECT_EQ(dec(v), c);
  }
  U256 v;
  ASSERT_EQ(parse_dec("18446744073709551615", v), Status::Ok);
  EXPECT_EQ(v, U256::from_u64(~0ULL));
  EXPECT_TRUE(v.fits_u64());
  ASSERT_EQ(parse_dec("18446744073709551616", v), Status::Ok);
  EXPECT_EQ(v, (U256{{0, 1, 0, 0}}));
  EXPECT_FALSE(v.fits_u64());
  ASSERT_EQ(parse_dec(kMaxDec, v), Status::Ok);
  EXPECT_EQ(v, U256::max());
  ASSERT_EQ(parse_dec("0", v), Status::Ok);
  EXPECT_TRUE(v.is_zero());
}

TEST(U256, DecimalRefusals) {
  U256 v = u(77);
  EXPECT_EQ(parse_dec("", v), Status::BadDecimal);
  EXPECT_EQ(parse_dec("-1", v), Status::BadDecimal);
  EXPECT_EQ(parse_dec("+1", v), Status::BadDecimal);
  EXPECT_EQ(parse_dec("01", v), Status::BadDecimal);
  EXPECT_EQ(parse_dec("00", v), Status::BadDecimal);
  EXPECT_EQ(parse_dec("1a", v), Status::BadDecimal);
  EXPECT_EQ(parse_dec(" 1", v), Status::BadDecimal);
  EXPECT_EQ(parse_dec("1 ", v), Status::BadDecimal);
  EXPECT_EQ(parse_dec("0x10", v), Status::BadDecimal);
  EXPECT_EQ(parse_dec("1.0", v), Status::BadDecimal);
  EXPECT_EQ(parse_dec(kTwo256Dec, v), Status::Overflow);
  EXPECT_EQ(parse_dec(std::string(kMaxDec) + "0", v), Status::Overflow);
  EXPECT_EQ(parse_dec(std::string(200, '9'), v), Status::Overflow);
  // The length argument is honoured: a NUL or digits beyond len are not read.
  const char buf[] = "12345";
  ASSERT_EQ(picopay::u256_parse_decimal(buf, 3, v), Status::Ok);
  EXPECT_EQ(v, u(123));
}

TEST(U256, HexParse) {
  U256 v;
  ASSERT_EQ(parse_hex("0x0", v), Status::Ok);
  EXPECT_TRUE(v.is_zero());
  ASSERT_EQ(parse_hex("0x1", v), Status::Ok);
  EXPECT_EQ(v, u(1));
  ASSERT_EQ(parse_hex("0xffffffffffffffff", v), Status::Ok);
  EXPECT_EQ(v, u(~0ULL));
  ASSERT_EQ(parse_hex("0x10000000000000000", v), Status::Ok);
  EXPECT_EQ(v, (U256{{0, 1, 0, 0}}));
  ASSERT_EQ(parse_hex("0x" + std::string(64, 'f'), v), Status::Ok);
  EXPECT_EQ(v, U256::max());
  ASSERT_EQ(parse_hex("0x" + std::string(64, 'F'), v), Status::Ok);
  EXPECT_EQ(v, U256::max());
  ASSERT_EQ(parse_hex("0x000000000000000000000000000000000000000000000000000000000000abCD", v), Status::Ok);
  EXPECT_EQ(v, u(0xabcd));
  ASSERT_EQ(parse_hex("0x0123456789abcdef0011223344556677", v), Status::Ok);
  EXPECT_EQ(v, (U256{{0x0011223344556677ULL, 0x0123456789abcdefULL, 0, 0}}));
}

TEST(U256, HexRefusals) {
  U256 v;
  EXPECT_EQ(parse_hex("", v), Status::BadHex);
  EXPECT_EQ(parse_hex("0x", v), Status::BadHex);
  EXPECT_EQ(parse_hex("1a", v), Status::BadHex);
  EXPECT_EQ(parse_hex("x1a", v), Status::BadHex);
  EXPECT_EQ(parse_hex("0x1g", v), Status::BadHex);
  EXPECT_EQ(parse_hex("0x 1", v), Status::BadHex);
  EXPECT_EQ(parse_hex("0x-1", v), Status::BadHex);
  EXPECT_EQ(parse_hex("0x1" + std::string(64, '0'), v), Status::BadHex);  // 65 digits
}

TEST(U256, HexRoundTripThroughBigEndian) {
  Rng rng(11);
  for (int i = 0; i < 300; ++i) {
    U256 v = picopay_test::random_u256_any_size(rng);
    uint8_t be[32];
    picopay::u256_to_be32(v, be);
    std::string text = "0x" + picopay_test::to_hex(be, 32);
    U256 back;
    ASSERT_EQ(parse_hex(text, back), Status::Ok);
    EXPECT_EQ(back, v);
    // minimal-length big-endian form
    size_t n = picopay::u256_byte_length(v);
    ASSERT_LE(n, 32u);
    for (size_t k = 0; k < 32 - n; ++k) ASSERT_EQ(be[k], 0) << "byte_length too small";
    if (n > 0) {
      ASSERT_NE(be[32 - n], 0) << "byte_length not minimal";
    }
    U256 from;
    ASSERT_EQ(picopay::u256_from_be(be + 32 - n, n, from), Status::Ok);
    EXPECT_EQ(from, v);
  }
}

TEST(U256, BigEndianEdges) {
  uint8_t be[32];
  picopay::u256_to_be32(u(0x0102), be);
  EXPECT_EQ(be[31], 0x02);
  EXPECT_EQ(be[30], 0x01);
  EXPECT_EQ(be[0], 0x00);
  EXPECT_EQ(picopay::u256_byte_length(U256::zero()), 0u);
  EXPECT_EQ(picopay::u256_byte_length(u(1)), 1u);
  EXPECT_EQ(picopay::u256_byte_length(u(0xff)), 1u);
  EXPECT_EQ(picopay::u256_byte_length(u(0x100)), 2u);
  EXPECT_EQ(picopay::u256_byte_length(U256{{0, 0, 0, 1ULL << 56}}), 32u);
  EXPECT_EQ(picopay::u256_byte_length(U256{{0, 0, 0, (1ULL << 56) - 1}}), 31u);
  EXPECT_EQ(picopay::u256_byte_length(U256::max()), 32u);
  U256 v;
  ASSERT_EQ(picopay::u256_from_be(nullptr, 0, v), Status::Ok);
  EXPECT_TRUE(v.is_zero());
  uint8_t big[33] = {};
  EXPECT_EQ(picopay::u256_from_be(big, 33, v), Status::OutOfBounds);
  uint8_t three[3] = {0x01, 0x00, 0xff};
  ASSERT_EQ(picopay::u256_from_be(three, 3, v), Status::Ok);
  EXPECT_EQ(v, u(0x0100ff));
}

TEST(U256, ToDecimalBufferTooSmallReportsNeededLength) {
  char buf[picopay::kU256DecimalMax];
  size_t n = 999;
  EXPECT_EQ(picopay::u256_to_decimal(U256::max(), buf, 78, &n), Status::BufferTooSmall);  // no room for NUL
  EXPECT_EQ(n, 78u);
  n = 999;
  ASSERT_EQ(picopay::u256_to_decimal(U256::max(), buf, 79, &n), Status::Ok);
  EXPECT_EQ(n, 78u);
  EXPECT_STREQ(buf, kMaxDec);
  n = 999;
  EXPECT_EQ(picopay::u256_to_decimal(U256::zero(), buf, 1, &n), Status::BufferTooSmall);
  EXPECT_EQ(n, 1u);
  ASSERT_EQ(picopay::u256_to_decimal(U256::zero(), buf, 2, &n), Status::Ok);
  EXPECT_STREQ(buf, "0");
  n = 999;
  EXPECT_EQ(picopay::u256_to_decimal(u(12345), buf, 5, &n), Status::BufferTooSmall);
  EXPECT_EQ(n, 5u);
  ASSERT_EQ(picopay::u256_to_decimal(u(12345), buf, 6, nullptr), Status::Ok);  // written is optional
  EXPECT_STREQ(buf, "12345");
}

// ----------------------------------------------------------------- comparisons

TEST(U256, CompareLooksAtHighLimbsFirst) {
  U256 a{{~0ULL, 0, 0, 0}}, b{{0, 1, 0, 0}}, c{{0, 0, 0, 1}}, d{{~0ULL, ~0ULL, ~0ULL, 0}};
  EXPECT_EQ(picopay::u256_cmp(a, b), -1);
  EXPECT_EQ(picopay::u256_cmp(b, a), 1);
  EXPECT_EQ(picopay::u256_cmp(d, c), -1);
  EXPECT_EQ(picopay::u256_cmp(c, c), 0);
  EXPECT_TRUE(a < b && b > a && a <= a && a >= a && a != b && !(a == b));
}

// ----------------------------------------------------------------- checked arithmetic

TEST(U256, AddOverflowAtTheEdge) {
  U256 out = u(5);
  ASSERT_EQ(picopay::u256_add(U256::max(), U256::zero(), out), Status::Ok);
  EXPECT_EQ(out, U256::max());
  out = u(5);
  EXPECT_EQ(picopay::u256_add(U256::max(), u(1), out), Status::Overflow);
  EXPECT_EQ(out, u(5)) << "out must be unchanged on Overflow";
  EXPECT_EQ(picopay::u256_add(U256::max(), U256::max(), out), Status::Overflow);
  EXPECT_EQ(out, u(5));
  // carry across every limb
  ASSERT_EQ(picopay::u256_add(U256{{~0ULL, ~0ULL, ~0ULL, 0}}, u(1), out), Status::Ok);
  EXPECT_EQ(out, (U256{{0, 0, 0, 1}}));
  U256 m1;
  ASSERT_EQ(picopay::u256_sub(U256::max(), u(1), m1), Status::Ok);
  ASSERT_EQ(picopay::u256_add(m1, u(1), out), Status::Ok);
  EXPECT_EQ(out, U256::max());
}

TEST(U256, SubUnderflowAtTheEdge) {
  U256 out = u(9);
  ASSERT_EQ(picopay::u256_sub(u(1), u(1), out), Status::Ok);
  EXPECT_TRUE(out.is_zero());
  out = u(9);
  EXPECT_EQ(picopay::u256_sub(U256::zero(), u(1), out), Status::Underflow);
  EXPECT_EQ(out, u(9)) << "out must be unchanged on Underflow";
  EXPECT_EQ(picopay::u256_sub(U256{{0, 0, 0, 1}}, U256{{0, 0, 0, 2}}, out), Status::Underflow);
  EXPECT_EQ(picopay::u256_sub(U256::max(), U256::max(), out), Status::Ok);
  EXPECT_TRUE(out.is_zero());
  ASSERT_EQ(picopay::u256_sub(U256{{0, 0, 0, 1}}, u(1), out), Status::Ok);
  EXPECT_EQ(out, (U256{{~0ULL, ~0ULL, ~0ULL, 0}}));
}

TEST(U256, MulOverflowAtTheEdge) {
  U256 out = u(3);
  ASSERT_EQ(picopay::u256_mul(U256::max(), u(1), out), Status::Ok);
  EXPECT_EQ(out, U256::max());
  ASSERT_EQ(picopay::u256_mul(U256::max(), U256::zero(), out), Status::Ok);
  EXPECT_TRUE(out.is_zero());
  out = u(3);
  EXPECT_EQ(picopay::u256_mul(U256::max(), u(2), out), Status::Overflow);
  EXPECT_EQ(out, u(3)) << "out must be unchanged on Overflow";
  // 2^128 * 2^128 = 2^256 overflows; 2^128 * (2^128 - 1) fits.
  U256 two128{{0, 0, 1, 0}}, two128m1{{~0ULL, ~0ULL, 0, 0}};
  EXPECT_EQ(picopay::u256_mul(two128, two128, out), Status::Overflow);
  ASSERT_EQ(picopay::u256_mul(two128, two128m1, out), Status::Ok);
  EXPECT_EQ(out, (U256{{0, 0, ~0ULL, ~0ULL}}));
  // (2^128-1)^2 = 2^256 - 2^129 + 1 fits
  ASSERT_EQ(picopay::u256_mul(two128m1, two128m1, out), Status::Ok);
  EXPECT_EQ(out, (U256{{1, 0, ~0ULL - 1, ~0ULL}}));
  // overflow visible only through a carry out of the top limb
  U256 top{{0, 0, 0, 1ULL << 63}};
  EXPECT_EQ(picopay::u256_mul(top, u(2), out), Status::Overflow);
  // a high limb product that would be discarded by a wrapping multiply
  EXPECT_EQ(picopay::u256_mul(U256{{0, 1, 0, 0}}, U256{{0, 0, 0, 1}}, out), Status::Overflow);
}

TEST(U256, DivmodKnownValues) {
  U256 q, r;
  ASSERT_EQ(picopay::u256_divmod(U256::max(), u(10), q, r), Status::Ok);
  EXPECT_EQ(dec(q), "11579208923731619542357098500868790785326998466564056403945758400791312963993");
  EXPECT_EQ(r, u(5));
  ASSERT_EQ(picopay::u256_divmod(dec_value("123456789012345678901234567890123456789"), dec_value("987654321987654321"),
                                 q, r),
            Status::Ok);
  EXPECT_EQ(dec(q), "124999998748437501153");
  EXPECT_EQ(dec(r), "142745764920524676");
  ASSERT_EQ(picopay::u256_divmod(U256::max(), U256{{1, 0, 1, 0}}, q, r), Status::Ok);  // / (2^128 + 1)
  EXPECT_EQ(q, (U256{{~0ULL, ~0ULL, 0, 0}}));
  EXPECT_TRUE(r.is_zero());
  ASSERT_EQ(picopay::u256_divmod(u(7), u(9), q, r), Status::Ok);
  EXPECT_TRUE(q.is_zero());
  EXPECT_EQ(r, u(7));
  ASSERT_EQ(picopay::u256_divmod(U256::max(), U256::max(), q, r), Status::Ok);
  EXPECT_EQ(q, u(1));
  EXPECT_TRUE(r.is_zero());
  ASSERT_EQ(picopay::u256_divmod(U256::zero(), u(3), q, r), Status::Ok);
  EXPECT_TRUE(q.is_zero() && r.is_zero());
}

TEST(U256, DivmodByZeroIsBadArgsAndLeavesOutputs) {
  U256 q = u(1), r = u(2);
  EXPECT_EQ(picopay::u256_divmod(u(10), U256::zero(), q, r), Status::BadArgs);
  EXPECT_EQ(q, u(1));
  EXPECT_EQ(r, u(2));
}

TEST(U256, DivmodOutputsMayAliasInputs) {
  U256 a = dec_value("123456789012345678901234567890123456789");
  U256 b = dec_value("987654321987654321");
  U256 r;
  ASSERT_EQ(picopay::u256_divmod(a, b, a, r), Status::Ok);  // quotient aliases a
  EXPECT_EQ(dec(a), "124999998748437501153");
  EXPECT_EQ(dec(r), "142745764920524676");
  a = dec_value("123456789012345678901234567890123456789");
  U256 q;
  ASSERT_EQ(picopay::u256_divmod(a, b, q, b), Status::Ok);  // remainder aliases b
  EXPECT_EQ(dec(q), "124999998748437501153");
  EXPECT_EQ(dec(b), "142745764920524676");
}

// ----------------------------------------------------------------- randomized cross-checks

TEST(U256, RandomAgainstUInt128OnSmallValues) {
  Rng rng(128);
  for (int i = 0; i < 20000; ++i) {
    uint64_t x = rng.next() >> rng.below(64), y = rng.next() >> rng.below(64);
    if (y == 0) y = 1;
    U256 out, q, r;
    u128 s = static_cast<u128>(x) + y;
    ASSERT_EQ(picopay::u256_add(u(x), u(y), out), Status::Ok);
    ASSERT_EQ(out, (U256{{static_cast<uint64_t>(s), static_cast<uint64_t>(s >> 64), 0, 0}}));
    u128 p = static_cast<u128>(x) * y;
    ASSERT_EQ(picopay::u256_mul(u(x), u(y), out), Status::Ok);
    ASSERT_EQ(out, (U256{{static_cast<uint64_t>(p), static_cast<uint64_t>(p >> 64), 0, 0}}));
    if (x >= y) {
      ASSERT_EQ(picopay::u256_sub(u(x), u(y), out), Status::Ok);
      ASSERT_EQ(out, u(x - y));
    } else {
      ASSERT_EQ(picopay::u256_sub(u(x), u(y), out), Status::Underflow);
    }
    // 128-bit dividend / 64-bit divisor
    u128 big = p + x;
    U256 a{{static_cast<uint64_t>(big), static_cast<uint64_t>(big >> 64), 0, 0}};
    ASSERT_EQ(picopay::u256_divmod(a, u(y), q, r), Status::Ok);
    u128 qq = big / y;
    ASSERT_EQ(q, (U256{{static_cast<uint64_t>(qq), static_cast<uint64_t>(qq >> 64), 0, 0}}));
    ASSERT_EQ(r, u(static_cast<uint64_t>(big % y)));
  }
}

TEST(U256, RandomAgainstDecimalBignum) {
  Rng rng(256);
  const std::string max = kMaxDec;
  for (int i = 0; i < 1500; ++i) {
    U256 a = picopay_test::random_u256_any_size(rng);
    U256 b = picopay_test::random_u256_any_size(rng);
    std::string da = decimal::of(a), db = decimal::of(b);
    ASSERT_EQ(dec(a), da);  // u256_to_decimal
    U256 back;
    ASSERT_EQ(parse_dec(da, back), Status::Ok);
    ASSERT_EQ(back, a);

    U256 out = u(0xDEAD);
    std::string sum = decimal::add(da, db);
    if (decimal::cmp(sum, max) > 0) {
      ASSERT_EQ(picopay::u256_add(a, b, out), Status::Overflow) << da << " + " << db;
    } else {
      ASSERT_EQ(picopay::u256_add(a, b, out), Status::Ok) << da << " + " << db;
      ASSERT_EQ(decimal::of(out), sum);
    }
    if (decimal::cmp(da, db) >= 0) {
      ASSERT_EQ(picopay::u256_sub(a, b, out), Status::Ok);
      ASSERT_EQ(decimal::of(out), decimal::sub(da, db));
    } else {
      ASSERT_EQ(picopay::u256_sub(a, b, out), Status::Underflow);
    }
    std::string prod = decimal::mul(da, db);
    if (decimal::cmp(prod, max) > 0) {
      ASSERT_EQ(picopay::u256_mul(a, b, out), Status::Overflow) << da << " * " << db;
    } else {
      ASSERT_EQ(picopay::u256_mul(a, b, out), Status::Ok) << da << " * " << db;
      ASSERT_EQ(decimal::of(out), prod);
    }
    if (!b.is_zero()) {
      U256 q, r;
      ASSERT_EQ(picopay::u256_divmod(a, b, q, r), Status::Ok);
      std::string eq, er;
      decimal::divmod(da, db, eq, er);
      ASSERT_EQ(decimal::of(q), eq) << da << " / " << db;
      ASSERT_EQ(decimal::of(r), er) << da << " % " << db;
    }
  }
}

TEST(U256, RandomDivmodIdentityWithSmallAndLargeDivisors) {
  // q*b + r == a and r < b, with divisors of every size (normalisation shift cases).
  Rng rng(999);
  for (int i = 0; i < 3000; ++i) {
    U256 a = picopay_test::random_u256(rng);
    U256 b = picopay_test::random_u256_any_size(rng);
    if (b.is_zero()) b = u(1);
    U256 q, r, qb, back;
    ASSERT_EQ(picopay::u256_divmod(a, b, q, r), Status::Ok);
    ASSERT_LT(picopay::u256_cmp(r, b), 0);
    ASSERT_EQ(picopay::u256_mul(q, b, qb), Status::Ok);
    ASSERT_EQ(picopay::u256_add(qb, r, back), Status::Ok);
    ASSERT_EQ(back, a);
  }
}
