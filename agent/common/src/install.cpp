#include "picopay/agent/install.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "picopay_version.h"  // generated at build time: PICOPAY_VERSION_TEXT

namespace picopay::agent {

const char* version_text() noexcept { return PICOPAY_VERSION_TEXT; }

bool version_requested(int argc, char** argv) noexcept {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) return false;
    if (std::strcmp(argv[i], "--version") == 0) return true;
  }
  return false;
}

int print_version() noexcept {
  std::printf("%s\n", version_text());
  return std::fflush(stdout) == 0 ? 0 : 1;
}

std::string exe_dir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  std::string p(buf);
  size_t s = p.rfind('/');
  if (s == std::string::npos) return ".";
  return s == 0 ? "/" : p.substr(0, s);
}

std::string data_dir() {
  if (const char* e = std::getenv("PICOPAY_DATA_DIR"); e && *e) return e;
  return exe_dir() + "/../share/picopay";
}

}  // namespace picopay::agent
