// One log format for every picopay program (docs/operations.md "Logs").
//
// Text (default), one line per event on stderr:
//   2026-12-02T04:40:00.123Z picopay-hub warn: broker: connection refused
// Under systemd (JOURNAL_STREAM set: stderr is the journal) the timestamp is left out
// (journald adds its own) and the line starts with the syslog priority, "<4>picopay-hub
// warn: ...", which journald turns into the entry's PRIORITY. PICOPAY_LOG_TIMESTAMPS=0/1
// forces timestamps off/on.
// JSON (--log-format json), one object per line:
//   {"ts":"2026-12-02T04:40:00.123Z","level":"warn","program":"picopay-hub","msg":"..."}
// Levels: debug < info < warn < error. Thread-safe (one line is written at once).
#pragma once

#include <string>

namespace picopay::agent {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };
enum class LogFormat { Text, Json };

// Sets the program name shown in each line (default "picopay").
void log_set_program(const std::string& name);
void log_set_level(LogLevel level);
void log_set_format(LogFormat format);
// Parses "debug", "info", "warn" (or "warning"), "error"; false if unknown.
bool log_level_parse(const std::string& text, LogLevel& out);
// Parses "text" or "json"; false if unknown.
bool log_format_parse(const std::string& text, LogFormat& out);
LogLevel log_level();
bool log_enabled(LogLevel level);

// Writes one line (if `level` is enabled). Newlines in `msg` are escaped.
void log(LogLevel level, const std::string& msg);
void logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// The line log() would write (without the trailing newline), for tests.
std::string log_line(LogLevel level, const std::string& msg);

}  // namespace picopay::agent

namespace picopay::agent {
// The same with the level given by name ("debug", "info", "warn", "error"; "FATAL" and
// anything else unknown log at error, "FATAL" keeps its word at the start of `msg`).
void log_named(const char* level, const std::string& msg);
}  // namespace picopay::agent
