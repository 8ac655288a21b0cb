// picopay core: Keccak-256 as Ethereum uses it (the original Keccak submission with
// padding byte 0x01, NOT FIPS-202 SHA3-256 whose padding byte is 0x06).
//
// Source: Keccak reference (keccak.team), Ethereum Yellow Paper "KEC". Rate 136 bytes,
// capacity 512 bits, 24 rounds of Keccak-f[1600]. Vectors: "" -> c5d24601...,
// "abc" -> 4e03657a... (docs/design.md §3).
#pragma once

#include <cstddef>
#include <cstdint>

namespace picopay {

// Streaming Keccak-256. No heap; 208 bytes of state. Usage: update()* then final().
class Keccak256 {
 public:
  static constexpr size_t kRate = 136;       // bytes absorbed per permutation
  static constexpr size_t kDigestSize = 32;  // bytes

  Keccak256() noexcept { reset(); }
  // Back to the empty-input state.
  void reset() noexcept;
  // Absorbs data[0..len) (len may be 0; data may be null when len is 0).
  void update(const uint8_t* data, size_t len) noexcept;
  // Pads (0x01 ... 0x80), permutes and writes the 32-byte digest; then resets.
  void final(uint8_t out[32]) noexcept;

 private:
  uint64_t state_[25];
  size_t pos_;  // bytes absorbed into the current block
};

// One-shot Keccak-256 of data[0..len) into out[0..32).
void keccak256(const uint8_t* data, size_t len, uint8_t out[32]) noexcept;

// The Keccak-f[1600] permutation on 25 little-endian lanes (exposed for tests/bench).
void keccak_f1600(uint64_t state[25]) noexcept;

}  // namespace picopay
