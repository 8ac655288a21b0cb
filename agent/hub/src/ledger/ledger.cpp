#include "ledger.hpp"

namespace picopay::hub {

const char* ledger_code_name(LedgerCode c) {
  switch (c) {
    case LedgerCode::Ok: return "ok";
    case LedgerCode::BadSpec: return "bad-spec";
    case LedgerCode::Unavailable: return "unavailable";
    case LedgerCode::Io: return "io";
    case LedgerCode::Conflict: return "conflict";
    case LedgerCode::Corrupt: return "corrupt";
    case LedgerCode::SchemaTooNew: return "schema-too-new";
    case LedgerCode::Unsupported: return "unsupported";
  }
  return "?";
}

namespace {
LedgerStatus unsupported(const Ledger& l) {
  return LedgerStatus::fail(LedgerCode::Unsupported,
                            std::string(l.backend()) + ": leases: several hub instances need a PostgreSQL ledger");
}
}  // namespace

LedgerStatus Ledger::lease_heartbeat(const std::string&, uint64_t, uint64_t&) { return unsupported(*this); }
LedgerStatus Ledger::lease_renew(const std::string&, uint64_t, std::vector<std::pair<int, uint64_t>>&) {
  return unsupported(*this);
}
LedgerStatus Ledger::lease_free(std::vector<int>&) { return unsupported(*this); }
LedgerStatus Ledger::lease_take(int, const std::string&, uint64_t, bool&, uint64_t&) { return unsupported(*this); }
LedgerStatus Ledger::lease_release(int, const std::string&) { return unsupported(*this); }
LedgerStatus Ledger::lease_fence(const std::string&, const std::vector<std::pair<int, uint64_t>>&, bool& held) {
  held = false;
  return unsupported(*this);
}
LedgerStatus Ledger::lease_session(uint64_t, const std::string&) { return unsupported(*this); }
LedgerStatus Ledger::list_request_users_in(const std::vector<int>&, std::vector<std::string>&) {
  return unsupported(*this);
}

LedgerStatus Ledger::forward_request(const std::string&, const Bytes&) { return unsupported(*this); }
LedgerStatus Ledger::list_forwarded(const std::vector<int>&, size_t, std::vector<ForwardedRow>&) {
  return unsupported(*this);
}
LedgerStatus Ledger::delete_forwarded(uint64_t) { return unsupported(*this); }
LedgerStatus Ledger::save_dispute(const std::string&, const Bytes&) { return unsupported(*this); }
LedgerStatus Ledger::list_disputes(bool, std::vector<DisputeRow>&) { return unsupported(*this); }
LedgerStatus Ledger::dispute_done(const std::string&, const Bytes&) { return unsupported(*this); }

LedgerStatus Ledger::open(const std::string& spec, std::unique_ptr<Ledger>& out) {
  out.reset();
  auto starts = [&](const char* p) { return spec.rfind(p, 0) == 0; };
  if (starts("postgresql://") || starts("postgres://")) return open_pg_ledger(spec, out);
  if (starts("sqlite:")) {
    std::string path = spec.substr(7);
    if (path.rfind("//", 0) == 0) path = path.substr(2);  // sqlite://PATH too
    if (path.empty()) return LedgerStatus::fail(LedgerCode::BadSpec, "--store sqlite: needs a path (sqlite:PATH)");
    return open_sqlite_ledger(path, out);
  }
  if (spec.empty()) return LedgerStatus::fail(LedgerCode::BadSpec, "--store: empty");
  const size_t colon = spec.find("://");
  if (colon != std::string::npos)
    return LedgerStatus::fail(LedgerCode::BadSpec, "--store " + spec.substr(0, colon) +
                                                       "://...: unknown backend (sqlite:PATH or postgresql://...)");
  return open_sqlite_ledger(spec, out);  // a bare path: SQLite (the old --db FILE)
}

}  // namespace picopay::hub
