// Strictly parsed JSON config files (see config_file.hpp).
#include "picopay/agent/config_file.hpp"

#include <cjson/cJSON.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "picopay/agent/amount.hpp"

namespace picopay::agent {

std::string resolve_path(const std::string& dir, const std::string& p) {
  if (p.empty() || p[0] == '/' || dir.empty() || dir == ".") return p;
  return dir + "/" + p;
}

ConfigFile::~ConfigFile() { cJSON_Delete(root_); }

bool ConfigFile::load(const std::string& path, std::string& err) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    err = "cannot read config file " + path;
    return false;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return load_text(path, ss.str(), err);
}

namespace {
// A key given twice in one object: cJSON keeps both and finds the first; refuse instead.
const cJSON* duplicate_key(const cJSON* o, std::string& where, const std::string& prefix) {
  for (const cJSON* a = o->child; a; a = a->next) {
    for (const cJSON* b = a->next; b; b = b->next) {
      if (a->string && b->string && std::string(a->string) == b->string) {
        where = prefix + a->string;
        return a;
      }
    }
    if (cJSON_IsObject(a) && a->string) {
      if (const cJSON* d = duplicate_key(a, where, prefix + a->string + ".")) return d;
    }
  }
  return nullptr;
}
}  // namespace

bool ConfigFile::load_text(const std::string& path, const std::string& text, std::string& err) {
  cJSON_Delete(root_);
  root_ = nullptr;
  path_ = path;
  err_.clear();
  seen_.clear();
  const size_t slash = path.rfind('/');
  dir_ = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const char* end = nullptr;
  root_ = cJSON_ParseWithLengthOpts(text.data(), text.size(), &end, false);
  if (!root_) {
    const size_t off = end ? static_cast<size_t>(end - text.data()) : 0;
    err = "config " + path + ": not valid JSON (near byte " + std::to_string(off) + ")";
    return false;
  }
  if (!cJSON_IsObject(root_)) {
    err = "config " + path + ": not a JSON object";
    return false;
  }
  std::string where;
  if (duplicate_key(root_, where, "")) {
    err = "config " + path + ": key " + where + " given twice";
    return false;
  }
  return true;
}

void ConfigFile::fail(const char* key, const std::string& why) {
  if (err_.empty()) err_ = "config " + path_ + ": " + key + ": " + why;
}

void ConfigFile::error(const char* key, const std::string& why) { fail(key, why); }

const cJSON* ConfigFile::find(const char* key) {
  if (!root_) return nullptr;
  const std::string k = key;
  const cJSON* node = root_;
  size_t start = 0;
  while (node) {
    const size_t dot = k.find('.', start);
    const std::string part = k.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cJSON_IsObject(node)) return nullptr;
    node = cJSON_GetObjectItemCaseSensitive(node, part.c_str());
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (node) seen_.push_back(k);
  return node;
}

bool ConfigFile::has(const char* key) { return find(key) != nullptr; }

void ConfigFile::known(const char* key) { seen_.push_back(key); }

void ConfigFile::str(const char* key, std::string& out) {
  const cJSON* v = find(key);
  if (!v) return;
  if (!cJSON_IsString(v)) return fail(key, "must be a string");
  out = v->valuestring;
}

void ConfigFile::path(const char* key, std::string& out) {
  std::string p;
  const cJSON* v = find(key);
  if (!v) return;
  if (!cJSON_IsString(v)) return fail(key, "must be a string (a file name; relative to " + dir_ + ")");
  out = resolve_path(dir_, v->valuestring);
}

void ConfigFile::integer(const char* key, int64_t& out, int64_t min, int64_t max) {
  const cJSON* v = find(key);
  if (!v) return;
  const std::string range = " from " + std::to_string(min) + " to " + std::to_string(max);
  if (!cJSON_IsNumber(v)) return fail(key, "must be a number (a whole number" + range + ")");
  const double d = v->valuedouble;
  if (!std::isfinite(d) || std::floor(d) != d) return fail(key, "must be a whole number" + range);
  if (d < static_cast<double>(min) || d > static_cast<double>(max) || d > 9007199254740992.0 ||
      d < -9007199254740992.0)
    return fail(key, "out of range: must be" + range);
  out = static_cast<int64_t>(d);
}

void ConfigFile::integer(const char* key, int& out, int min, int max) {
  int64_t v = out;
  integer(key, v, min, max);
  out = static_cast<int>(v);
}

void ConfigFile::integer(const char* key, uint64_t& out, uint64_t min, uint64_t max) {
  const uint64_t cap = 9007199254740992ULL;  // 2^53: JSON numbers are doubles
  int64_t v = static_cast<int64_t>(std::min(out, cap));
  integer(key, v, static_cast<int64_t>(std::min(min, cap)), static_cast<int64_t>(std::min(max, cap)));
  if (has(key) && ok()) out = static_cast<uint64_t>(v);
}

void ConfigFile::boolean(const char* key, bool& out) {
  const cJSON* v = find(key);
  if (!v) return;
  if (!cJSON_IsBool(v)) return fail(key, "must be true or false");
  out = cJSON_IsTrue(v);
}

void ConfigFile::amount(const char* key, U256& out, const TokenUnit* token) {
  const cJSON* v = find(key);
  if (!v) return;
  if (cJSON_IsNumber(v)) {
    const double d = v->valuedouble;
    if (!std::isfinite(d) || d < 0 || std::floor(d) != d || d > 9007199254740992.0)
      return fail(key, "a number must be a whole number of wei from 0 to 2^53; write larger amounts as a "
                       "string, e.g. \"1.5ether\"");
    out = U256::from_u64(static_cast<uint64_t>(d));
    return;
  }
  if (!cJSON_IsString(v)) return fail(key, "must be an amount, e.g. \"1000\" (wei), \"2gwei\", \"1.5ether\"");
  std::string err;
  U256 a;
  if (!amount_parse(v->valuestring, a, err, token)) return fail(key, err);
  out = a;
}

void ConfigFile::amount_text(const char* key, std::string& out, const TokenUnit* token) {
  if (!has(key)) return;
  U256 v;
  const std::string before = err_;
  amount(key, v, token);
  if (err_ != before) return;
  char buf[100];
  if (u256_to_decimal(v, buf, sizeof buf, nullptr) == Status::Ok) out = buf;
}

void ConfigFile::address(const char* key, Address& out, bool* given) {
  const cJSON* v = find(key);
  if (!v) return;
  if (!cJSON_IsString(v)) return fail(key, "must be a string: 0x + 40 hex digits");
  Address a;
  const std::string s = v->valuestring;
  const Status st = address_parse(s.data(), s.size(), a);
  if (st == Status::BadChecksum) return fail(key, "\"" + s + "\": mixed-case address with a wrong EIP-55 checksum");
  if (st != Status::Ok) return fail(key, "\"" + s + "\": not an address (0x + 40 hex digits)");
  out = a;
  if (given) *given = true;
}

void ConfigFile::choice(const char* key, std::string& out, const std::vector<std::string>& choices) {
  const cJSON* v = find(key);
  if (!v) return;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  if (!cJSON_IsString(v)) return fail(key, "must be one of: " + list);
  for (const auto& c : choices) {
    if (c == v->valuestring) {
      out = c;
      return;
    }
  }
  fail(key, "\"" + std::string(v->valuestring) + "\" is not one of: " + list);
}

bool ConfigFile::finish(std::string& err) {
  if (!err_.empty()) {
    err = err_;
    return false;
  }
  if (!root_) {
    err = "config: not loaded";
    return false;
  }
  // The first key no getter asked for (depth first, in file order).
  std::string unknown;
  auto seen = [&](const std::string& k) { return std::find(seen_.begin(), seen_.end(), k) != seen_.end(); };
  auto walk = [&](auto& self, const cJSON* o, const std::string& prefix) -> bool {
    for (const cJSON* c = o->child; c; c = c->next) {
      const std::string k = prefix + (c->string ? c->string : "");
      if (seen(k)) continue;
      if (cJSON_IsObject(c) && c->child) {
        if (!self(self, c, k + ".")) return false;
        continue;
      }
      unknown = k;
      return false;
    }
    return true;
  };
  if (!walk(walk, root_, "")) {
    err = "config " + path_ + ": unknown key " + unknown + " (see --help for the keys)";
    return false;
  }
  return true;
}

}  // namespace picopay::agent
