// picopay-hub: see --help and docs/mqtt-protocol.md.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <unistd.h>

#include "config.hpp"
#include "hub.hpp"
#include "picopay/agent/install.hpp"
#include "picopay/agent/options.hpp"
#include "picopay/agent/service.hpp"
#include "picopay/hex.hpp"
#include "picopay/keyfile.hpp"

namespace {
std::atomic<bool> g_quit{false};
void on_signal(int) { g_quit.store(true); }
}  // namespace

int main(int argc, char** argv) {
  if (picopay::agent::version_requested(argc, argv)) return picopay::agent::print_version();
  if (argc > 1 && std::strcmp(argv[1], "history") == 0) return picopay::hub::history_main(argc, argv);
  picopay::hub::Config cfg;
  std::string err;
  int rc = picopay::hub::parse_config(argc, argv, cfg, err);
  if (rc == 1) {
    std::fputs(picopay::hub::help_text().c_str(), stdout);
    return 0;
  }
  if (rc != 0) {
    std::fprintf(stderr, "picopay-hub: %s\n", err.c_str());
    return 2;
  }
  // The key: a hex key, a picopay sealed key file or a Web3 v3 JSON keystore (options.hpp).
  picopay::PrivateKey key{};
  const picopay::agent::KeyOptions keys{cfg.private_key, cfg.key_file, ""};
  if (!cfg.private_key.empty()) picopay::secure_wipe(&cfg.private_key[0], cfg.private_key.size());
  if (!picopay::agent::load_key(keys, key, err)) {
    std::fprintf(stderr, "picopay-hub: %s\n", err.c_str());
    return 2;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  // No reload: a documented refusal (docs/install.md) instead of dying on SIGHUP.
  picopay::agent::refuse_sighup("picopay-hub", "the hub");
  picopay::hub::Hub hub(cfg, key);
  picopay::secure_wipe(&key, sizeof key);
  if (!hub.start(err)) {
    std::fprintf(stderr, "picopay-hub: %s\n", err.c_str());
    return 2;
  }
  picopay::agent::service_notify("READY=1\nSTATUS=serving");
  hub.wait_until_stopped(g_quit);
  bool fatal = hub.fatal();
  picopay::agent::service_notify("STOPPING=1");
  hub.stop();
  return fatal ? 3 : 0;
}
