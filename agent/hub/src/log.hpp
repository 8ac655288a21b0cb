// picopay-hub's log line: "HH:MM:SS picopay-hub <level>: <msg>" on stderr (local time,
// thread-safe: the hub logs from its MQTT, worker, verify and chain threads).
#pragma once

#include <string>

namespace picopay::hub {
void logf(const char* level, const std::string& msg);
}  // namespace picopay::hub
