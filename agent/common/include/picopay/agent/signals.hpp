// SIGHUP for the long-running programs (picopay-hub, picopay-agent, picopay-tower): none of
// them reloads its config, so a SIGHUP is refused with one line on stderr instead of
// ending the process (the default action) — docs/install.md "Reload: refused".
#pragma once

#include <string>

namespace picopay::agent {

// Installs a SIGHUP handler (sigaction, SA_RESTART) that writes
// "<program>: SIGHUP ignored: no reload, restart <what> to apply a new config" to stderr
// and nothing else. The line is built here, once; the handler only calls write(2)
// (async-signal-safe). Lines longer than 255 bytes are cut. Never fails.
void refuse_sighup(const std::string& program, const std::string& what);

}  // namespace picopay::agent
