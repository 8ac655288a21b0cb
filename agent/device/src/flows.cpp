// picopay-agent: the command inbox, the state dir lock and the history file (flows.hpp).
#include "picopay/device/flows.hpp"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "picopay/agent/json_state.hpp"

namespace picopay::device {
namespace {

int g_lock_fd = -1;
std::string g_lock_dir;

std::string inbox(const std::string& dir) { return dir + "/commands"; }

// mkdir -p, mode 0700 for what it creates (the state dir holds the channel record).
void make_dirs(const std::string& dir) {
  for (size_t p = dir.find('/', 1); p != std::string::npos; p = dir.find('/', p + 1))
    ::mkdir(dir.substr(0, p).c_str(), 0700);
  ::mkdir(dir.c_str(), 0700);
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

// tmp + fsync + rename + fsync dir.
bool write_atomic(const std::string& dir, const std::string& name, const std::string& text, std::string& err) {
  const std::string tmp = dir + "/." + name + ".tmp", path = dir + "/" + name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    err = "cannot write " + tmp + ": " + std::strerror(errno);
    return false;
  }
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    err = "cannot write " + path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

bool ensure_inbox(const std::string& dir, std::string& err) {
  make_dirs(dir);
  const std::string d = inbox(dir);
  if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) {
    err = "cannot create " + d + ": " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::stat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    err = d + " is not a directory";
    return false;
  }
  if ((st.st_mode & 0077) != 0 || st.st_uid != ::geteuid()) {
    err = d + " must be a directory of this user with mode 0700 (chmod 700 " + d + ")";
    return false;
  }
  return true;
}

std::vector<std::string> list_suffix(const std::string& d, const std::string& suffix) {
  std::vector<std::string> out;
  DIR* dp = ::opendir(d.c_str());
  if (!dp) return out;
  while (dirent* e = ::readdir(dp)) {
    std::string n = e->d_name;
    if (n.empty() || n[0] == '.') continue;
    if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0) {
      std::string stem = n.substr(0, n.size() - suffix.size());
      if (stem.find('.') == std::string::npos) out.push_back(stem);
    }
  }
  ::closedir(dp);
  std::sort(out.begin(), out.end());
  return out;
}

bool parse_command(const std::string& text, Command& c, std::string& err) {
  cJSON* o = cJSON_Parse(text.c_str());
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    err = "not a JSON object";
    return false;
  }
  bool ok = true;
  const cJSON* op = cJSON_GetObjectItemCaseSensitive(o, "op");
  const cJSON* wei = cJSON_GetObjectItemCaseSensitive(o, "wei");
  const cJSON* amount = cJSON_GetObjectItemCaseSensitive(o, "amount");
  const cJSON* to = cJSON_GetObjectItemCaseSensitive(o, "to");
  if (!cJSON_IsString(op) || (std::strcmp(op->valuestring, "deposit") != 0 && std::strcmp(op->valuestring, "withdraw") != 0 &&
                              std::strcmp(op->valuestring, "exchange") != 0)) {
    err = "op must be deposit, withdraw or exchange";
    ok = false;
  } else {
    c.op = op->valuestring;
  }
  if (ok && cJSON_IsString(amount) && !cJSON_IsString(wei)) {
    c.amount = amount->valuestring;
    if (c.amount.empty() || c.amount.size() > 100) {
      err = "amount must be an amount in units (e.g. \"2.5 PPT\")";
      ok = false;
    }
  } else if (ok && cJSON_IsString(wei) && std::strcmp(wei->valuestring, "all") == 0 && c.op == "withdraw") {
    c.all = true;
  } else if (ok && (!cJSON_IsString(wei) ||
                    u256_parse_decimal(wei->valuestring, std::strlen(wei->valuestring), c.wei) != Status::Ok ||
                    c.wei.is_zero())) {
    err = "wei must be a positive decimal amount";
    ok = false;
  }
  if (ok && c.op == "exchange" && c.amount.empty()) {
    err = "an exchange names the asset it sells: \"amount\":\"0.01 ETH\" or \"5 PPT\"";
    ok = false;
  }
  if (ok && cJSON_IsString(to)) {
    if (address_parse(to->valuestring, std::strlen(to->valuestring), c.to) != Status::Ok) {
      err = "to is not an address";
      ok = false;
    }
    c.has_to = true;
  }
  cJSON_Delete(o);
  return ok;
}

}  // namespace

bool state_dir_lock(const std::string& dir, std::string& err) {
  if (g_lock_fd >= 0 && g_lock_dir == dir) return true;
  make_dirs(dir);
  const std::string path = dir + "/agent.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    err = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    err = errno == EWOULDBLOCK ? "another picopay-agent runs on " + dir
                               : "cannot lock " + path + ": " + std::strerror(errno);
    ::close(fd);
    return false;
  }
  g_lock_fd = fd;
  g_lock_dir = dir;
  return true;
}

std::string command_result_json(const CommandResult& r) {
  cJSON* o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "ok", r.ok);
  cJSON_AddStringToObject(o, "op", r.op.c_str());
  cJSON_AddStringToObject(o, "wei", json::amount_text(r.wei).c_str());
  if (!r.amount.empty()) cJSON_AddStringToObject(o, "amount", r.amount.c_str());
  if (!r.asset.empty()) cJSON_AddStringToObject(o, "asset", r.asset.c_str());
  cJSON_AddNumberToObject(o, "txCountGlobal", static_cast<double>(r.txCountGlobal));
  if (!r.transaction.empty()) cJSON_AddStringToObject(o, "transaction", r.transaction.c_str());
  if (r.gasUsed) cJSON_AddNumberToObject(o, "gasUsed", static_cast<double>(r.gasUsed));
  if (r.elapsedMs) cJSON_AddNumberToObject(o, "elapsedMs", static_cast<double>(r.elapsedMs));
  if (!r.error.empty()) cJSON_AddStringToObject(o, "error", r.error.c_str());
  std::string s = json::print(o, false);
  cJSON_Delete(o);
  return s;
}

bool command_submit(const std::string& dir, Command& c, std::string& err) {
  if (!ensure_inbox(dir, err)) return false;
  char id[64];
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::snprintf(id, sizeof id, "%020lld-%d", static_cast<long long>(ns), static_cast<int>(::getpid()));
  c.id = id;
  cJSON* o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "op", c.op.c_str());
  if (!c.amount.empty())
    cJSON_AddStringToObject(o, "amount", c.amount.c_str());
  else
    cJSON_AddStringToObject(o, "wei", c.all ? "all" : json::amount_text(c.wei).c_str());
  if (c.has_to) cJSON_AddStringToObject(o, "to", json::address_text(c.to).c_str());
  std::string text = json::print(o, false);
  cJSON_Delete(o);
  return write_atomic(inbox(dir), c.id + ".json", text, err);
}

bool command_next(const std::string& dir, Command& c) {
  for (const auto& id : list_suffix(inbox(dir), ".json")) {
    std::string text, err;
    Command x;
    x.id = id;
    if (read_file(inbox(dir) + "/" + id + ".json", text) && parse_command(text, x, err)) {
      c = x;
      return true;
    }
    CommandResult r;
    r.error = "malformed command: " + err;
    ::rename((inbox(dir) + "/" + id + ".json").c_str(), (inbox(dir) + "/" + id + ".taken").c_str());
    std::string e2;
    (void)command_finish(dir, id, r, e2);
  }
  return false;
}

bool command_take(const std::string& dir, const std::string& id, std::string& err) {
  const std::string from = inbox(dir) + "/" + id + ".json", to = inbox(dir) + "/" + id + ".taken";
  if (::rename(from.c_str(), to.c_str()) != 0) {
    err = "cannot take command " + id + ": " + std::strerror(errno);
    return false;
  }
  int dfd = ::open(inbox(dir).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

bool command_finish(const std::string& dir, const std::string& id, const CommandResult& r, std::string& err) {
  if (!write_atomic(inbox(dir), id + ".result.json", command_result_json(r), err)) return false;
  ::unlink((inbox(dir) + "/" + id + ".taken").c_str());
  return true;
}

void command_recover(const std::string& dir) {
  for (const auto& id : list_suffix(inbox(dir), ".taken")) {
    struct stat st {};
    if (::stat((inbox(dir) + "/" + id + ".result.json").c_str(), &st) == 0) {
      ::unlink((inbox(dir) + "/" + id + ".taken").c_str());
      continue;
    }
    CommandResult r;
    r.error = "interrupted: the agent stopped while carrying it out; a pending operation it had signed is "
              "executed and confirmed by the agent (see picopay-agent history / status)";
    std::string err;
    (void)command_finish(dir, id, r, err);
  }
}

bool command_wait(const std::string& dir, const std::string& id, int timeout_ms, CommandResult& r) {
  const std::string path = inbox(dir) + "/" + id + ".result.json";
  for (int w = 0;; w += 100) {
    std::string text;
    if (read_file(path, text)) {
      cJSON* o = cJSON_Parse(text.c_str());
      if (cJSON_IsObject(o)) {
        r.ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ok"));
        if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "op"); cJSON_IsString(v)) r.op = v->valuestring;
        if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "wei"); cJSON_IsString(v))
          (void)u256_parse_decimal(v->valuestring, std::strlen(v->valuestring), r.wei);
        if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "txCountGlobal"); cJSON_IsNumber(v))
          r.txCountGlobal = static_cast<uint64_t>(v->valuedouble);
        if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "amount"); cJSON_IsString(v)) r.amount = v->valuestring;
        if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "asset"); cJSON_IsString(v)) r.asset = v->valuestring;
        if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "transaction"); cJSON_IsString(v)) r.transaction = v->valuestring;
        if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "error"); cJSON_IsString(v)) r.error = v->valuestring;
        if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "gasUsed"); cJSON_IsNumber(v))
          r.gasUsed = static_cast<uint64_t>(v->valuedouble);
        if (auto* v = cJSON_GetObjectItemCaseSensitive(o, "elapsedMs"); cJSON_IsNumber(v))
          r.elapsedMs = static_cast<uint64_t>(v->valuedouble);
        cJSON_Delete(o);
        return true;
      }
      cJSON_Delete(o);
    }
    if (w >= timeout_ms) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// ---------------------------------------------------------------- history

bool history_append(const std::string& dir, const HistoryEntry& e, std::string& err) {
  cJSON* o = history_entry_json(e);
  std::string line = json::print(o, false) + "\n";
  cJSON_Delete(o);
  const std::string path = dir + "/history.jsonl";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    err = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fdatasync(fd) == 0;
  if (!ok) err = "cannot append to " + path + ": " + std::strerror(errno);
  ::close(fd);
  return ok;
}

bool history_load(const std::string& dir, std::vector<HistoryEntry>& out, std::string& err) {
  out.clear();
  const std::string path = dir + "/history.jsonl";
  std::ifstream f(path);
  if (!f) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return true;  // no history yet
    err = "no state dir " + dir;
    return false;
  }
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    cJSON* o = cJSON_Parse(line.c_str());
    HistoryEntry e;
    if (history_entry_from_json(o, e)) out.push_back(e);  // a torn last line (crash mid-append) is skipped
    cJSON_Delete(o);
  }
  return true;
}

}  // namespace picopay::device
