// picopay-tower: see --help and docs/tower.md.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "picopay/agent/install.hpp"
#include "picopay/agent/options.hpp"
#include "picopay/agent/service.hpp"
#include "picopay/hex.hpp"
#include "picopay/keyfile.hpp"
#include "picopay/tower/config.hpp"
#include "picopay/tower/tower.hpp"

namespace {
std::atomic<bool> g_quit{false};
void on_signal(int) { g_quit.store(true); }

// The gas key: a sealed key file, else PICOPAY_TOWER_PRIVATE_KEY (never argv).
bool load_key(const picopay::tower::Config& cfg, picopay::PrivateKey& key) {
  using picopay::Status;
  if (!cfg.key_file.empty()) {
    // a picopay sealed key file or a Web3 v3 JSON keystore (agent/common options.hpp)
    std::string err;
    if (!picopay::agent::load_keystore_file(cfg.key_file, key, err)) {
      std::fprintf(stderr, "picopay-tower: %s\n", err.c_str());
      return false;
    }
    return true;
  }
  const char* env = std::getenv("PICOPAY_TOWER_PRIVATE_KEY");
  if (!env || !*env) {
    std::fprintf(stderr, "picopay-tower: no key: give --key FILE (a sealed key file) or set PICOPAY_TOWER_PRIVATE_KEY\n");
    return false;
  }
  if (picopay::private_key_parse(env, std::strlen(env), key) != Status::Ok) {
    std::fprintf(stderr, "picopay-tower: PICOPAY_TOWER_PRIVATE_KEY must be 0x + 64 hex digits\n");
    return false;
  }
  unsetenv("PICOPAY_TOWER_PRIVATE_KEY");
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  if (picopay::agent::version_requested(argc, argv)) return picopay::agent::print_version();
  picopay::tower::Config cfg;
  std::string err;
  int rc = picopay::tower::parse_config(argc, argv, cfg, err);
  if (rc == 1) {
    std::fputs(picopay::tower::help_text().c_str(), stdout);
    return 0;
  }
  if (rc != 0) {
    std::fprintf(stderr, "picopay-tower: %s\n", err.c_str());
    return 2;
  }
  picopay::PrivateKey key{};
  if (!load_key(cfg, key)) return 2;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  picopay::agent::refuse_sighup("picopay-tower", "the tower");  // no reload (docs/tower.md)
  picopay::tower::Tower tower(cfg, key);
  picopay::secure_wipe(&key, sizeof key);
  if (!tower.start(err)) {
    std::fprintf(stderr, "picopay-tower: %s\n", err.c_str());
    return 2;
  }
  tower.run(g_quit);
  const bool fatal = tower.fatal();
  tower.stop();
  return fatal ? 3 : 0;
}
