// SIGHUP refused with one line (see signals.hpp).
#include "picopay/agent/service.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstring>

#ifdef PICOPAY_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace picopay::agent {
namespace {
char g_line[256];
size_t g_len = 0;
void on_sighup(int) {
  ssize_t n = ::write(STDERR_FILENO, g_line, g_len);
  (void)n;
}
}  // namespace

void refuse_sighup(const std::string& program, const std::string& what) {
  const std::string line = program + ": SIGHUP ignored: no reload, restart " + what + " to apply a new config\n";
  g_len = line.size() < sizeof g_line ? line.size() : sizeof g_line - 1;
  std::memcpy(g_line, line.data(), g_len);
  if (g_line[g_len - 1] != '\n') g_line[g_len - 1] = '\n';
  struct sigaction sa {};
  sa.sa_handler = on_sighup;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGHUP, &sa, nullptr);
}

void service_notify(const char* state) {
#ifdef PICOPAY_HAVE_SYSTEMD
  (void)sd_notify(0, state);
#else
  (void)state;
#endif
}

}  // namespace picopay::agent
