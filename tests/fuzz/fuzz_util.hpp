// Helpers shared by the libFuzzer targets (docs/reliability.md): a check that aborts with
// one clear line (libFuzzer then saves the input as a crash), fixed test keys with a
// ready signer, and a file the file-reading parsers can be pointed at.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "picopay/signer.hpp"
#include "picopay/state.hpp"
#include "picopay/types.hpp"

// An invariant of the code under test; a violation is a finding.
#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

namespace picopay_fuzz {

// A process-wide signer (its context is built once).
inline const picopay::Signer& signer() {
  static picopay::Signer* s = [] {
    static picopay::Signer inst;
    if (inst.init() != picopay::Status::Ok) std::abort();
    return &inst;
  }();
  return *s;
}

// Deterministic test keys (never funded anywhere): the hub's, the user's and a third
// party's (a thread receiver / payee).
inline picopay::PrivateKey key_of(uint8_t tag) {
  picopay::PrivateKey k{};
  for (int i = 0; i < 32; ++i) k.bytes[i] = static_cast<uint8_t>(tag + 7 * i + 1);
  return k;
}
inline const picopay::PrivateKey& hub_key() { static picopay::PrivateKey k = key_of(0x11); return k; }
inline const picopay::PrivateKey& user_key() { static picopay::PrivateKey k = key_of(0x22); return k; }
inline const picopay::PrivateKey& other_key() { static picopay::PrivateKey k = key_of(0x33); return k; }

inline picopay::Address address_of(const picopay::PrivateKey& k) {
  picopay::Address a{};
  if (signer().address_of(k, a) != picopay::Status::Ok) std::abort();
  return a;
}
inline const picopay::Address& hub_addr() { static picopay::Address a = address_of(hub_key()); return a; }
inline const picopay::Address& user_addr() { static picopay::Address a = address_of(user_key()); return a; }
inline const picopay::Address& other_addr() { static picopay::Address a = address_of(other_key()); return a; }
inline const picopay::Address& contract_addr() {
  static picopay::Address a = [] {
    picopay::Address c{};
    for (int i = 0; i < 20; ++i) c.bytes[i] = static_cast<uint8_t>(0xC0 + i);
    return c;
  }();
  return a;
}

// A file in memory (memfd) whose path, /proc/self/fd/N, the parsers that take a path
// can open; rewritten for every input.
class MemFile {
 public:
  MemFile() {
    fd_ = memfd_create("picopay-fuzz", 0);
    if (fd_ < 0) std::abort();
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  const std::string& write(const uint8_t* data, size_t size) {
    if (ftruncate(fd_, 0) != 0) std::abort();
    size_t off = 0;
    while (off < size) {
      ssize_t n = pwrite(fd_, data + off, size - off, static_cast<off_t>(off));
      if (n <= 0) std::abort();
      off += static_cast<size_t>(n);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace picopay_fuzz
