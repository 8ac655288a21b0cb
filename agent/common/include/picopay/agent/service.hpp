// What the long-running programs (picopay-hub, picopay-agent, picopay-tower) do for their
// supervisor (docs/install.md):
// - SIGHUP: none of them reloads its config, so a SIGHUP is refused with one line on
//   stderr instead of ending the process (the default action): "Reload: refused".
// - systemd's notify protocol (Type=notify units): READY=1 once serving, STOPPING=1.
#pragma once

#include <string>

namespace picopay::agent {

// Installs a SIGHUP handler (sigaction, SA_RESTART) that writes
// "<program>: SIGHUP ignored: no reload, restart <what> to apply a new config" to stderr
// and nothing else. The line is built here, once; the handler only calls write(2)
// (async-signal-safe). Lines longer than 255 bytes are cut. Never fails.
void refuse_sighup(const std::string& program, const std::string& what);

// sd_notify(0, state), e.g. "READY=1\nSTATUS=serving" or "STOPPING=1" (libsystemd, when
// built with it). A no-op when not started by systemd (no NOTIFY_SOCKET) or built without
// libsystemd. Never fails.
void service_notify(const char* state);

}  // namespace picopay::agent
