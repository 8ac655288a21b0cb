// Keccak-256 (Ethereum's pre-FIPS Keccak, padding byte 0x01): fixed vectors, streaming
// versus one-shot, and an independent textbook reference implementation.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "picopay/keccak.hpp"
#include "test_util.hpp"

using picopay::Keccak256;
using picopay::keccak256;
using picopay_test::from_hex;
using picopay_test::Rng;
using picopay_test::to_hex;

namespace {

std::string hash_hex(const std::string& msg) {
  uint8_t out[32];
  keccak256(reinterpret_cast<const uint8_t*>(msg.data()), msg.size(), out);
  return to_hex(out, 32);
}

// ---------------------------------------------------------------------------------
// Reference Keccak-f[1600], written from the Keccak reference's pseudo-code: a 5x5
// array of lanes A[x][y], round constants produced by the rc(t) LFSR (not a table),
// rho offsets from an explicit table, pi as B[y][2x+3y] = rot(A[x][y], r[x][y]).
// Deliberately unlike an optimised implementation (no lane unrolling, no precomputed
// round-constant table).
namespace ref {

uint64_t rotl(uint64_t v, unsigned n) { return n == 0 ? v : (v << n) | (v >> (64 - n)); }

// rc(t) of the Keccak reference: output bit of an LFSR with x^8+x^6+x^5+x^4+1.
unsigned rc_bit(unsigned t) {
  if (t % 255 == 0) return 1;
  unsigned r = 1;
  for (unsigned i = 1; i <= t % 255; ++i) {
    r <<= 1;
    if (r & 0x100u) r ^= 0x171u;  // feedback into bits 0, 4, 5, 6; drop bit 8
  }
  return r & 1u;
}

uint64_t round_constant(unsigned round) {
  uint64_t rc = 0;
  for (unsigned j = 0; j <= 6; ++j) {
    if (rc_bit(j + 7 * round)) rc |= uint64_t{1} << ((1u << j) - 1);
  }
  return rc;
}

// r[x][y]
const unsigned kRho[5][5] = {
    {0, 36, 3, 41, 18},   // x = 0
    {1, 44, 10, 45, 2},   // x = 1
    {62, 6, 43, 15, 61},  // x = 2
    {28, 55, 25, 21, 56}, // x = 3
    {27, 20, 39, 8, 14},  // x = 4
};

void permute(uint64_t lanes[25]) {
  uint64_t A[5][5];
  for (int x = 0; x < 5; ++x)
    for (int y = 0; y < 5; ++y) A[x][y] = lanes[x + 5 * y];
  for (unsigned round = 0; round < 24; ++round) {
    // theta
    uint64_t C[5], D[5];
    for (int x = 0; x < 5; ++x) C[x] = A[x][0] ^ A[x][1] ^ A[x][2] ^ A[x][3] ^ A[x][4];
    for (int x = 0; x < 5; ++x) D[x] = C[(x + 4) % 5] ^ rotl(C[(x + 1) % 5], 1);
    for (int x = 0; x < 5; ++x)
      for (int y = 0; y < 5; ++y) A[x][y] ^= D[x];
    // rho and pi
    uint64_t B[5][5];
    for (int x = 0; x < 5; ++x)
      for (int y = 0; y < 5; ++y) B[y][(2 * x + 3 * y) % 5] = rotl(A[x][y], kRho[x][y]);
    // chi
    for (int x = 0; x < 5; ++x)
      for (int y = 0; y < 5; ++y) A[x][y] = B[x][y] ^ (~B[(x + 1) % 5][y] & B[(x + 2) % 5][y]);
    // iota
    A[0][0] ^= round_constant(round);
  }
  for (int x = 0; x < 5; ++x)
    for (int y = 0; y < 5; ++y) lanes[x + 5 * y] = A[x][y];
}

// Keccak[r=1088, c=512] with the original multi-rate padding 0x01 ... 0x80.
std::vector<uint8_t> keccak256(const std::vector<uint8_t>& msg) {
  const size_t rate = 136;
  std::vector<uint8_t> padded(msg);
  padded.push_back(0x01);
  while (padded.size() % rate != 0) padded.push_back(0x00);
  padded.back() |= 0x80;
  uint64_t lanes[25] = {};
  for (size_t block = 0; block < padded.size(); block += rate) {
    for (size_t i = 0; i < rate; ++i) {
      size_t lane = i / 8, shift = 8 * (i % 8);
      lanes[lane] ^= uint64_t{padded[block + i]} << shift;
    }
    permute(lanes);
  }
  std::vector<uint8_t> out(32);
  for (size_t i = 0; i < 32; ++i) out[i] = static_cast<uint8_t>(lanes[i / 8] >> (8 * (i % 8)));
  return out;
}

}  // namespace ref

}  // namespace

TEST(Keccak, EmptyStringVector) {
  EXPECT_EQ(hash_hex(""), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
}

TEST(Keccak, AbcVector) {
  EXPECT_EQ(hash_hex("abc"), "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
}

TEST(Keccak, QuickBrownFoxVector) {
  EXPECT_EQ(hash_hex("The quick brown fox jumps over the lazy dog"),
            "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15");
}

TEST(Keccak, IsNotFips202Sha3) {
  // SHA3-256("") and SHA3-256("abc"): what the 0x06 padding byte would produce.
  EXPECT_NE(hash_hex(""), "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a");
  EXPECT_NE(hash_hex("abc"), "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532");
}

TEST(Keccak, NullPointerWithZeroLength) {
  uint8_t a[32], b[32];
  keccak256(nullptr, 0, a);
  Keccak256 k;
  k.update(nullptr, 0);
  k.final(b);
  EXPECT_EQ(to_hex(a, 32), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  EXPECT_EQ(to_hex(b, 32), to_hex(a, 32));
}

TEST(Keccak, ReferenceRoundConstantsAreTheKnownOnes) {
  // Guards the reference itself: RC[0], RC[1], RC[23] of Keccak-f[1600].
  EXPECT_EQ(ref::round_constant(0), 0x0000000000000001ULL);
  EXPECT_EQ(ref::round_constant(1), 0x0000000000008082ULL);
  EXPECT_EQ(ref::round_constant(23), 0x8000000080008008ULL);
}

TEST(Keccak, ReferenceMatchesKnownVectors) {
  EXPECT_EQ(to_hex(ref::keccak256({})), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  EXPECT_EQ(to_hex(ref::keccak256({'a', 'b', 'c'})),
            "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
}

TEST(Keccak, PermutationMatchesReferenceOnRandomStates) {
  Rng rng(0xF1600);
  for (int iter = 0; iter < 200; ++iter) {
    uint64_t a[25], b[25];
    for (int i = 0; i < 25; ++i) a[i] = b[i] = rng.next();
    picopay::keccak_f1600(a);
    ref::permute(b);
    ASSERT_EQ(0, std::memcmp(a, b, sizeof a)) << "iteration " << iter;
  }
  uint64_t z1[25] = {}, z2[25] = {};
  picopay::keccak_f1600(z1);
  ref::permute(z2);
  EXPECT_EQ(0, std::memcmp(z1, z2, sizeof z1));
  // Keccak-f[1600] on the all-zero state: first lane of the known test output.
  EXPECT_EQ(z1[0], 0xF1258F7940E1DDE7ULL);
}

TEST(Keccak, OneShotMatchesReferenceForEveryLength0To300) {
  Rng rng(42);
  for (size_t len = 0; len <= 300; ++len) {
    std::vector<uint8_t> msg = rng.bytes(len);
    uint8_t got[32];
    keccak256(msg.data(), msg.size(), got);
    ASSERT_EQ(to_hex(got, 32), to_hex(ref::keccak256(msg))) << "length " << len;
  }
}

TEST(Keccak, StreamingInRandomChunksEqualsOneShot) {
  Rng rng(7);
  for (size_t len = 0; len <= 300; ++len) {
    std::vector<uint8_t> msg = rng.bytes(len);
    uint8_t expect[32];
    keccak256(msg.data(), msg.size(), expect);
    for (int trial = 0; trial < 4; ++trial) {
      Keccak256 k;
      size_t pos = 0;
      while (pos < len) {
        // Chunks of 0..len bytes, including empty updates and rate-sized chunks.
        size_t chunk = static_cast<size_t>(rng.below(trial == 0 ? 2 : trial == 1 ? 9 : 150));
        if (chunk > len - pos) chunk = len - pos;
        k.update(msg.data() + pos, chunk);
        pos += chunk;
      }
      uint8_t got[32];
      k.final(got);
      ASSERT_EQ(to_hex(got, 32), to_hex(expect, 32)) << "length " << len << " trial " << trial;
    }
  }
}

TEST(Keccak, ByteAtATimeAcrossRateBoundary) {
  for (size_t len : {135u, 136u, 137u, 271u, 272u, 273u}) {
    std::vector<uint8_t> msg(len, 0xA5);
    Keccak256 k;
    for (uint8_t b : msg) k.update(&b, 1);
    uint8_t got[32];
    k.final(got);
    EXPECT_EQ(to_hex(got, 32), to_hex(ref::keccak256(msg))) << "length " << len;
  }
}

TEST(Keccak, FinalResetsForReuse) {
  Keccak256 k;
  const uint8_t abc[3] = {'a', 'b', 'c'};
  k.update(abc, 3);
  uint8_t first[32], second[32];
  k.final(first);
  k.final(second);  // after final the object is back to the empty state
  EXPECT_EQ(to_hex(second, 32), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
  k.update(abc, 3);
  k.final(second);
  EXPECT_EQ(to_hex(first, 32), to_hex(second, 32));
}

TEST(Keccak, ResetDiscardsAbsorbedInput) {
  Keccak256 k;
  std::vector<uint8_t> junk(200, 0x33);
  k.update(junk.data(), junk.size());
  k.reset();
  const uint8_t abc[3] = {'a', 'b', 'c'};
  k.update(abc, 3);
  uint8_t got[32];
  k.final(got);
  EXPECT_EQ(to_hex(got, 32), "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
}
