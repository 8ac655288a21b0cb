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
// SIGHUP with --exchange-rate-file: reread it (rate.cpp); nothing else is reloaded.
// Without one, SIGHUP is refused with one line (agent::refuse_sighup, docs/install.md).
void on_sighup_rate(int) {
  static const char kRate[] =
      "picopay-hub: SIGHUP: rereading the exchange rate file (nothing else is reloaded: restart to apply a new config)\n";
  ssize_t n = ::write(STDERR_FILENO, kRate, sizeof kRate - 1);
  (void)n;
  picopay::hub::rate_reload_request();
}
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
  if (!cfg.exchange_rate_file.empty()) std::signal(SIGHUP, on_sighup_rate);
  else picopay::agent::refuse_sighup("picopay-hub", "the hub");  // no reload: a documented refusal
  picopay::hub::Hub hub(cfg, key);
  picopay::secure_wipe(&key, sizeof key);
  if (!hub.start(err)) {
    std::fprintf(stderr, "picopay-hub: %s\n", err.c_str());
    return hub.fatal() ? 3 : 2;  // 3: the PostgreSQL ledger unreachable (a restart may find it)
  }
  picopay::agent::service_notify("READY=1\nSTATUS=serving");
  hub.wait_until_stopped(g_quit);
  bool fatal = hub.fatal();
  picopay::agent::service_notify("STOPPING=1");
  hub.stop();
  return fatal ? 3 : 0;
}
