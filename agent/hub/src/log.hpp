// picopay-hub's log line: the one format of every picopay program (agent/common log.hpp),
// with the level by name; thread-safe (the hub logs from several threads).
#pragma once

#include <string>

namespace picopay::hub {
void logf(const char* level, const std::string& msg);
}  // namespace picopay::hub
