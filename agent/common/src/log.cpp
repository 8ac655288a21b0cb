// One log format for every picopay program (see log.hpp).
#include "picopay/agent/log.hpp"

#include <sys/time.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>

namespace picopay::agent {
namespace {

std::mutex g_mu;
std::string g_program = "picopay";
std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};
std::atomic<int> g_format{static_cast<int>(LogFormat::Text)};

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
  }
  return "info";
}

// syslog priorities (sd-daemon.h SD_DEBUG .. SD_ERR)
int syslog_priority(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return 7;
    case LogLevel::Info: return 6;
    case LogLevel::Warn: return 4;
    case LogLevel::Error: return 3;
  }
  return 6;
}

bool under_journald() {
  const char* js = std::getenv("JOURNAL_STREAM");
  return js && *js;
}

bool timestamps() {
  if (const char* t = std::getenv("PICOPAY_LOG_TIMESTAMPS")) {
    if (std::strcmp(t, "0") == 0) return false;
    if (std::strcmp(t, "1") == 0) return true;
  }
  return !under_journald();
}

std::string now_iso() {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(tv.tv_usec / 1000));
  return buf;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += static_cast<char>(c);
    } else if (c == '\n') {
      o += "\\n";
    } else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += static_cast<char>(c);
    }
  }
  return o;
}

std::string one_line(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\n') o += "\\n";
    else if (c == '\r') o += "\\r";
    else o += c;
  }
  return o;
}

}  // namespace

void log_set_program(const std::string& name) {
  std::lock_guard<std::mutex> l(g_mu);
  g_program = name;
}
void log_set_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
void log_set_format(LogFormat format) { g_format.store(static_cast<int>(format)); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }
bool log_enabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

bool log_level_parse(const std::string& t, LogLevel& out) {
  if (t == "debug") out = LogLevel::Debug;
  else if (t == "info") out = LogLevel::Info;
  else if (t == "warn" || t == "warning") out = LogLevel::Warn;
  else if (t == "error") out = LogLevel::Error;
  else return false;
  return true;
}

bool log_format_parse(const std::string& t, LogFormat& out) {
  if (t == "text") out = LogFormat::Text;
  else if (t == "json") out = LogFormat::Json;
  else return false;
  return true;
}

std::string log_line(LogLevel level, const std::string& msg) {
  std::string program;
  {
    std::lock_guard<std::mutex> l(g_mu);
    program = g_program;
  }
  if (static_cast<LogFormat>(g_format.load()) == LogFormat::Json) {
    return "{\"ts\":\"" + now_iso() + "\",\"level\":\"" + level_name(level) + "\",\"program\":\"" +
           json_escape(program) + "\",\"msg\":\"" + json_escape(msg) + "\"}";
  }
  std::string line;
  if (under_journald()) line += "<" + std::to_string(syslog_priority(level)) + ">";
  if (timestamps()) line += now_iso() + " ";
  return line + program + " " + level_name(level) + ": " + one_line(msg);
}

void log(LogLevel level, const std::string& msg) {
  if (!log_enabled(level)) return;
  const std::string line = log_line(level, msg) + "\n";
  std::lock_guard<std::mutex> l(g_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

void logf(LogLevel level, const char* fmt, ...) {
  if (!log_enabled(level)) return;
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  log(level, buf);
}

}  // namespace picopay::agent

namespace picopay::agent {
void log_named(const char* level, const std::string& msg) {
  LogLevel lv;
  if (level && log_level_parse(level, lv)) return log(lv, msg);
  log(LogLevel::Error, std::string(level ? level : "?") + ": " + msg);
}
}  // namespace picopay::agent
