// picopay chain adapter: typed errors as values.
//
// Every JSON-RPC, ABI, transaction and file failure is a `chain::Error` with a kind and a
// clear English message; functions return `Result<T>` (value or error) and never throw.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace picopay::chain {

enum class ErrorKind {
  None = 0,
  Transport,    // HTTP could not be carried out (connect refused, timeout, DNS): libcurl
  HttpStatus,   // the server answered with a non-2xx HTTP status
  BadJson,      // the response (or an input file) is not the JSON expected
  Rpc,          // the node answered with a JSON-RPC error object (code and message kept)
  Reverted,     // the transaction or eth_call reverted (reason in the message if known)
  Timeout,      // a receipt or event did not come within the time allowed
  BadInput,     // a caller's argument is malformed (address, amount, key, state file)
  Signing,      // the core signer refused (bad key) or a signature does not verify
  Io,           // reading or writing a local file failed
  NotFound,     // a looked-up item (artifact, receipt, block) does not exist
  Reorg,        // the chain reorganised deeper than the persisted history can repair
};

// A short stable name for the kind ("Transport", "Rpc", ...).
const char* error_kind_name(ErrorKind k) noexcept;

struct Error {
  ErrorKind kind = ErrorKind::None;
  std::string message;
  long code = 0;  // JSON-RPC error code or HTTP status, when there is one

  explicit operator bool() const noexcept { return kind != ErrorKind::None; }
  // "<Kind>: <message>"
  std::string to_string() const;
};

inline Error make_error(ErrorKind k, std::string msg, long code = 0) {
  return Error{k, std::move(msg), code};
}

// A value or an error (never both).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T v) : value_(std::move(v)) {}            // NOLINT: implicit by design
  Result(Error e) : error_(std::move(e)) {}        // NOLINT
  bool ok() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& value() { return *value_; }
  const Error& error() const noexcept { return error_; }

 private:
  std::optional<T> value_;
  Error error_;
};

// Result for operations with no value.
struct Unit {};
using Status = Result<Unit>;
inline Status ok_status() { return Unit{}; }

}  // namespace picopay::chain

// Propagates an error: `PPC_TRY(auto x, expr);` declares x = *expr or returns the error.
#define PPC_CAT2(a, b) a##b
#define PPC_CAT(a, b) PPC_CAT2(a, b)
#define PPC_TRY(decl, expr)                                      \
  auto PPC_CAT(_ppc_r_, __LINE__) = (expr);                      \
  if (!PPC_CAT(_ppc_r_, __LINE__)) return PPC_CAT(_ppc_r_, __LINE__).error(); \
  decl = std::move(*PPC_CAT(_ppc_r_, __LINE__))
#define PPC_CHECK(expr)                                          \
  do {                                                           \
    auto _ppc_s = (expr);                                        \
    if (!_ppc_s) return _ppc_s.error();                          \
  } while (0)
