// picopay-hub: see --help and docs/mqtt-protocol.md.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <unistd.h>
#ifdef PICOPAY_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "config.hpp"
#include "hub.hpp"
#include "picopay/agent/install.hpp"
#include "picopay/hex.hpp"
#include "picopay/keyfile.hpp"

namespace {
std::atomic<bool> g_quit{false};
void on_signal(int) { g_quit.store(true); }
// No reload: a documented refusal (docs/install.md) instead of dying on SIGHUP.
void on_sighup(int) {
  static const char kMsg[] = "picopay-hub: SIGHUP ignored: no reload, restart the hub to apply a new config\n";
  ssize_t n = ::write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
  (void)n;
}
// systemd's notify protocol (Type=notify); a no-op when not started by systemd.
void notify(const char* state) {
#ifdef PICOPAY_HAVE_SYSTEMD
  sd_notify(0, state);
#else
  (void)state;
#endif
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
  picopay::PrivateKey key{};
  if (!cfg.private_key.empty()) {
    if (picopay::private_key_parse(cfg.private_key.c_str(), cfg.private_key.size(), key) != picopay::Status::Ok) {
      std::fprintf(stderr, "picopay-hub: --private-key must be 0x + 64 hex digits\n");
      return 2;
    }
    picopay::secure_wipe(&cfg.private_key[0], cfg.private_key.size());
  } else {
    char pass[1024];
    size_t plen = 0;
    picopay::Status s = picopay::passphrase_obtain(pass, sizeof pass, &plen, false);
    if (s != picopay::Status::Ok) {
      std::fprintf(stderr, "picopay-hub: no passphrase (set PICOPAY_PASSPHRASE or PICOPAY_PASSPHRASE_FILE): %s\n", picopay::status_name(s));
      return 2;
    }
    s = picopay::keyfile_read(cfg.key_file.c_str(), pass, plen, key);
    picopay::secure_wipe(pass, sizeof pass);
    if (s != picopay::Status::Ok) {
      std::fprintf(stderr, "picopay-hub: key file %s: %s\n", cfg.key_file.c_str(), picopay::status_message(s));
      return 2;
    }
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGHUP, on_sighup);
  picopay::hub::Hub hub(cfg, key);
  picopay::secure_wipe(&key, sizeof key);
  if (!hub.start(err)) {
    std::fprintf(stderr, "picopay-hub: %s\n", err.c_str());
    return 2;
  }
  notify("READY=1\nSTATUS=serving");
  hub.wait_until_stopped(g_quit);
  bool fatal = hub.fatal();
  notify("STOPPING=1");
  hub.stop();
  return fatal ? 3 : 0;
}
