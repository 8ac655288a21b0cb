// Uses picopay::core and picopay::port_posix from an installed prefix; prints "ok" and
// exits 0 when the known answers match.
#include <cstdio>
#include <cstring>

#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"
#include "picopay/port/posix.hpp"
#include "picopay/signer.hpp"
#include "picopay/types.hpp"

int main() {
  // keccak-256 of the empty string.
  uint8_t h[32];
  picopay::keccak256(nullptr, 0, h);
  char hex[2 + 64 + 1];
  picopay::hex_encode(h, sizeof h, hex, true);
  if (std::strcmp(hex, "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470") != 0) {
    std::fprintf(stderr, "keccak256(\"\") = %s\n", hex);
    return 1;
  }
  // The address of ganache's first deterministic key (libsecp256k1 through the package).
  const char* key_hex = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";
  picopay::PrivateKey key{};
  picopay::Signer signer;
  picopay::Address addr{};
  if (picopay::private_key_parse(key_hex, std::strlen(key_hex), key) != picopay::Status::Ok ||
      signer.init() != picopay::Status::Ok || signer.address_of(key, addr) != picopay::Status::Ok) {
    std::fprintf(stderr, "signer failed\n");
    return 1;
  }
  char text[picopay::kAddressTextSize];
  picopay::address_to_eip55(addr, text);
  if (std::strcmp(text, "0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1") != 0) {
    std::fprintf(stderr, "address = %s\n", text);
    return 1;
  }
  // The POSIX port: 32 bytes from getrandom, not all zero.
  picopay::port::PosixEntropy entropy;
  uint8_t r[32] = {};
  if (entropy.fill(r, sizeof r) != picopay::Status::Ok) return 1;
  bool nonzero = false;
  for (uint8_t b : r) nonzero = nonzero || b != 0;
  if (!nonzero) return 1;
  std::puts("ok");
  return 0;
}
