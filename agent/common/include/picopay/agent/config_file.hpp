// Strictly parsed JSON config files, one mechanism for picopay-agent, picopay-hub and
// picopay-tower (docs/operations.md "Config files").
//
// Usage: load the file, read each key the program knows with one call, then finish():
//
//   agent::ConfigFile f;
//   if (!f.load(path, err)) return false;
//   f.str("broker.host", cfg.host);                       // "a.b" = key b of object a
//   f.integer("broker.port", cfg.port, 1, 65535);
//   f.path("db", cfg.db);                                  // relative -> config's directory
//   f.amount("collateral.depositWei", cfg.collateral_wei);
//   return f.finish(err);                                  // first error, or unknown keys
//
// Every getter leaves its output untouched when the key is absent. A present key with a
// bad value (wrong JSON type, negative, out of range, not a whole number, not an amount,
// not an address) records an error "config FILE: KEY: <why>"; finish() returns false with
// the first recorded error, else with "config FILE: unknown key KEY" for the first key
// that no getter (or known()) asked for. To add a key: one getter call in the program's
// loader, and the key in its docs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "picopay/types.hpp"
#include "picopay/u256.hpp"

struct cJSON;

namespace picopay::agent {

struct TokenUnit;

class ConfigFile {
 public:
  ConfigFile() = default;
  ~ConfigFile();
  ConfigFile(const ConfigFile&) = delete;
  ConfigFile& operator=(const ConfigFile&) = delete;

  // Reads and parses `path` (a JSON object). Errors (false, `err` one line naming the
  // file): unreadable file, not JSON, not an object, a key given twice in one object.
  bool load(const std::string& path, std::string& err);
  // Parses `text` as if read from `path` (tests, fuzzing).
  bool load_text(const std::string& path, const std::string& text, std::string& err);

  const std::string& file() const { return path_; }
  // The directory relative paths resolve against ("." for a bare file name).
  const std::string& dir() const { return dir_; }
  // True if the key is present (any type); marks it known.
  bool has(const char* key);

  // A JSON string.
  void str(const char* key, std::string& out);
  // A JSON string naming a file or directory: relative paths resolve against dir();
  // "" stays "".
  void path(const char* key, std::string& out);
  // A JSON number that is a whole number within [min, max] (no fraction, no exponent
  // beyond the range; 2^53 at most since JSON numbers are doubles).
  void integer(const char* key, int64_t& out, int64_t min, int64_t max);
  void integer(const char* key, int& out, int min, int max);
  void integer(const char* key, uint64_t& out, uint64_t min, uint64_t max);
  // true or false.
  void boolean(const char* key, bool& out);
  // An amount (agent::amount_parse): a string with an optional unit ("1ether", "2gwei",
  // "1000"; token symbol if `token`), or a whole JSON number of wei below 2^53.
  void amount(const char* key, U256& out, const TokenUnit* token = nullptr);
  // The same, kept as the canonical decimal text of the value (for configs that hold
  // amounts as strings).
  void amount_text(const char* key, std::string& out, const TokenUnit* token = nullptr);
  // A 0x-prefixed 20-byte address (EIP-55 checksum checked when mixed case); `*given`
  // (optional) set true when present and valid.
  void address(const char* key, Address& out, bool* given = nullptr);
  // One of `choices` (a JSON string).
  void choice(const char* key, std::string& out, const std::vector<std::string>& choices);
  // Accepts the key (any value) without reading it.
  void known(const char* key);
  // Records an error about `key` (for checks a program makes on the values it read).
  void error(const char* key, const std::string& why);

  bool ok() const { return err_.empty(); }
  // The first error, else the first unknown key. True if neither.
  bool finish(std::string& err);

 private:
  const cJSON* find(const char* key);
  void fail(const char* key, const std::string& why);
  cJSON* root_ = nullptr;
  std::string path_, dir_, err_;
  std::vector<std::string> seen_;
};

// Resolves `p` against directory `dir` unless `p` is absolute or empty.
std::string resolve_path(const std::string& dir, const std::string& p);

}  // namespace picopay::agent
