#include "picopay/keccak.hpp"

#include <cstring>

namespace picopay {

namespace {
constexpr uint64_t kRoundConstants[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};
// rho rotation of lane (x, y), indexed x + 5y.
constexpr unsigned kRho[25] = {0,  1,  62, 28, 27, 36, 44, 6,  55, 20, 3,  10, 43,
                               25, 39, 41, 45, 15, 21, 8,  18, 2,  61, 56, 14};
// pi: lane (x, y) moves to (y, 2x + 3y mod 5); indexed x + 5y, value is the new index.
constexpr uint8_t kPi[25] = {0, 10, 20, 5, 15, 16, 1, 11, 21, 6, 7, 17, 2, 12, 22, 23, 8, 18, 3, 13, 14, 24, 9, 19, 4};
// x of lane i (i % 5) and (k % 5) for k < 10, as tables so that even a loop at -Os does
// no division.
constexpr uint8_t kX[25] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4};
constexpr uint8_t kMod5[10] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4};

// Rotation that is also defined for n = 0.
inline uint64_t rotl(uint64_t x, unsigned n) noexcept { return (x << n) | (x >> ((64 - n) & 63)); }
}  // namespace

// The loops have constant trip counts and constant-index tables: at -O2 the compiler
// unrolls them into straight-line lane arithmetic (fast on hosts); with -Os (firmware)
// they stay loops (small flash).
#if defined(__OPTIMIZE_SIZE__)
#define PICOPAY_UNROLL(n)
#else
#define PICOPAY_STR(x) #x
#define PICOPAY_UNROLL(n) _Pragma(PICOPAY_STR(GCC unroll n))
#endif

void keccak_f1600(uint64_t a[25]) noexcept {
  uint64_t b[25];
  for (int round = 0; round < 24; ++round) {
    // theta
    uint64_t c[5], d[5];
    PICOPAY_UNROLL(5)
    for (unsigned x = 0; x < 5; ++x) c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
    PICOPAY_UNROLL(5)
    for (unsigned x = 0; x < 5; ++x) d[x] = c[kMod5[x + 4]] ^ rotl(c[kMod5[x + 1]], 1);
    // theta applied, then rho and pi in one pass
    PICOPAY_UNROLL(25)
    for (unsigned i = 0; i < 25; ++i) b[kPi[i]] = rotl(a[i] ^ d[kX[i]], kRho[i]);
    // chi
    PICOPAY_UNROLL(25)
    for (unsigned i = 0; i < 25; ++i) {
      const unsigned x = kX[i], row = i - x;
      a[i] = b[i] ^ (~b[row + kMod5[x + 1]] & b[row + kMod5[x + 2]]);
    }
    // iota
    a[0] ^= kRoundConstants[round];
  }
}

void Keccak256::reset() noexcept {
  for (auto& lane : state_) lane = 0;
  pos_ = 0;
}

namespace {
// A little-endian 64-bit load (lanes are little-endian in Keccak).
inline uint64_t load_le64(const uint8_t* p) noexcept {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
#else
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
#endif
}
}  // namespace

void Keccak256::update(const uint8_t* data, size_t len) noexcept {
  size_t i = 0;
  // Bytes up to a lane boundary, then whole lanes, then the tail.
  while (i < len && pos_ % 8 != 0) {
    state_[pos_ / 8] ^= static_cast<uint64_t>(data[i++]) << (8 * (pos_ % 8));
    if (++pos_ == kRate) {
      keccak_f1600(state_);
      pos_ = 0;
    }
  }
  for (; len - i >= 8; i += 8) {
    state_[pos_ / 8] ^= load_le64(data + i);
    pos_ += 8;
    if (pos_ == kRate) {
      keccak_f1600(state_);
      pos_ = 0;
    }
  }
  for (; i < len; ++i) {
    state_[pos_ / 8] ^= static_cast<uint64_t>(data[i]) << (8 * (pos_ % 8));
    ++pos_;  // cannot reach kRate: fewer than 8 bytes remain and pos_ % 8 == 0 before them
  }
}

void Keccak256::final(uint8_t out[32]) noexcept {
  state_[pos_ / 8] ^= static_cast<uint64_t>(0x01) << (8 * (pos_ % 8));
  state_[(kRate - 1) / 8] ^= static_cast<uint64_t>(0x80) << (8 * ((kRate - 1) % 8));
  keccak_f1600(state_);
  for (size_t i = 0; i < kDigestSize; ++i) out[i] = static_cast<uint8_t>(state_[i / 8] >> (8 * (i % 8)));
  reset();
}

void keccak256(const uint8_t* data, size_t len, uint8_t out[32]) noexcept {
  Keccak256 k;
  k.update(data, len);
  k.final(out);
}

}  // namespace picopay
