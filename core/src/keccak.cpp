#include "picopay/keccak.hpp"

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
// Rotation offsets and lane order of the combined rho + pi step, walking the pi cycle
// from lane 1.
constexpr unsigned kRho[24] = {1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14,
                               27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44};
constexpr unsigned kPi[24] = {10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4,
                              15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1};

inline uint64_t rotl(uint64_t x, unsigned n) noexcept { return (x << n) | (x >> (64 - n)); }
}  // namespace

void keccak_f1600(uint64_t s[25]) noexcept {
  for (int round = 0; round < 24; ++round) {
    // theta
    uint64_t c[5];
    for (int x = 0; x < 5; ++x) c[x] = s[x] ^ s[x + 5] ^ s[x + 10] ^ s[x + 15] ^ s[x + 20];
    for (int x = 0; x < 5; ++x) {
      const uint64_t d = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1);
      for (int y = 0; y < 25; y += 5) s[y + x] ^= d;
    }
    // rho and pi
    uint64_t cur = s[1];
    for (int i = 0; i < 24; ++i) {
      const unsigned j = kPi[i];
      const uint64_t tmp = s[j];
      s[j] = rotl(cur, kRho[i]);
      cur = tmp;
    }
    // chi
    for (int y = 0; y < 25; y += 5) {
      uint64_t row[5];
      for (int x = 0; x < 5; ++x) row[x] = s[y + x];
      for (int x = 0; x < 5; ++x) s[y + x] = row[x] ^ ((~row[(x + 1) % 5]) & row[(x + 2) % 5]);
    }
    // iota
    s[0] ^= kRoundConstants[round];
  }
}

void Keccak256::reset() noexcept {
  for (auto& lane : state_) lane = 0;
  pos_ = 0;
}

void Keccak256::update(const uint8_t* data, size_t len) noexcept {
  for (size_t i = 0; i < len; ++i) {
    state_[pos_ / 8] ^= static_cast<uint64_t>(data[i]) << (8 * (pos_ % 8));
    if (++pos_ == kRate) {
      keccak_f1600(state_);
      pos_ = 0;
    }
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
