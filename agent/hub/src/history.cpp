// picopay-hub: the history table (store.hpp) and `picopay-hub history` (docs/flows.md).
// Its SQL lives here only, apart from the channel ledger's.
#include <sqlite3.h>

#include <cstdio>
#include <cstring>
#include <ctime>

#include "hub.hpp"
#include "picopay/agent/history.hpp"
#include "picopay/agent/json_state.hpp"
#include "store.hpp"

namespace picopay::hub {
namespace {

// The rows of a SELECT tx, at, event, wei, counterparty, thread_id, balance_wei_user,
// balance_wei_hub, txhash. Returns the last sqlite3_step code (SQLITE_DONE when all read).
int read_rows(sqlite3_stmt* s, std::vector<agent::HistoryEntry>& out) {
  auto text = [&](int col) {
    const unsigned char* t = sqlite3_column_text(s, col);
    return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
  };
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    agent::HistoryEntry e;
    e.txCountGlobal = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    e.time = static_cast<uint64_t>(sqlite3_column_int64(s, 1));
    e.event = text(2);
    const std::string wei = text(3), party = text(4), bu = text(6), bh = text(7);
    (void)u256_parse_decimal(wei.c_str(), wei.size(), e.wei);
    e.has_counterparty = !party.empty() && address_parse(party.c_str(), party.size(), e.counterparty) == Status::Ok;
    e.threadId = static_cast<uint64_t>(sqlite3_column_int64(s, 5));
    e.has_balances = u256_parse_decimal(bu.c_str(), bu.size(), e.balanceWeiUser) == Status::Ok &&
                     u256_parse_decimal(bh.c_str(), bh.size(), e.balanceWeiHub) == Status::Ok;
    e.transaction = text(8);
    out.push_back(e);
  }
  return rc;
}

}  // namespace

bool Store::history_open(std::string& err) {
  if (!exec("CREATE TABLE IF NOT EXISTS history(user TEXT NOT NULL, tx INTEGER NOT NULL, at INTEGER NOT NULL,"
            " event TEXT NOT NULL, wei TEXT NOT NULL, counterparty TEXT, thread_id INTEGER,"
            " balance_wei_user TEXT, balance_wei_hub TEXT, txhash TEXT, PRIMARY KEY(user, tx))",
            err))
    return false;
  ins_hist_ = prep("INSERT OR REPLACE INTO history(user, tx, at, event, wei, counterparty, thread_id, balance_wei_user,"
                   " balance_wei_hub, txhash) VALUES(?,?,?,?,?,?,?,?,?,?)",
                   err);
  load_hist_ = prep("SELECT tx, at, event, wei, counterparty, thread_id, balance_wei_user, balance_wei_hub, txhash"
                    " FROM history WHERE user=? ORDER BY tx",
                    err);
  has_coll_ = prep("SELECT 1 FROM history WHERE user=? AND event='collateral-proposed' LIMIT 1", err);
  return ins_hist_ && load_hist_ && has_coll_;
}

bool Store::has_collateral(const std::string& user, bool& yes, std::string& err) {
  sqlite3_stmt* s = has_coll_;
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  const int rc = sqlite3_step(s);
  yes = rc == SQLITE_ROW;
  sqlite3_reset(s);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    err = std::string("history: ") + sqlite3_errmsg(sqlite3_db_handle(s));
    return false;
  }
  return true;
}

bool Store::insert_history(const std::string& user, uint64_t tx, const agent::HistoryEntry& e, std::string& err) {
  sqlite3_stmt* s = ins_hist_;
  sqlite3_reset(s);
  const std::string wei = json::amount_text(e.wei), party = e.has_counterparty ? json::address_text(e.counterparty) : "",
                    bu = json::amount_text(e.balanceWeiUser), bh = json::amount_text(e.balanceWeiHub);
  sqlite3_bind_text(s, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(tx));
  sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(e.time));
  sqlite3_bind_text(s, 4, e.event.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s, 5, wei.c_str(), -1, SQLITE_TRANSIENT);
  if (e.has_counterparty) sqlite3_bind_text(s, 6, party.c_str(), -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(s, 6);
  if (e.threadId) sqlite3_bind_int64(s, 7, static_cast<sqlite3_int64>(e.threadId));
  else sqlite3_bind_null(s, 7);
  sqlite3_bind_text(s, 8, bu.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s, 9, bh.c_str(), -1, SQLITE_TRANSIENT);
  if (!e.transaction.empty()) sqlite3_bind_text(s, 10, e.transaction.c_str(), -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(s, 10);
  return step_done(s, "insert history", err);
}

bool Store::load_history(const std::string& user, std::vector<agent::HistoryEntry>& out, std::string& err) {
  out.clear();
  sqlite3_stmt* s = load_hist_;
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, user.c_str(), -1, SQLITE_TRANSIENT);
  const int rc = read_rows(s, out);
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) {
    err = std::string("load history: ") + sqlite3_errmsg(sqlite3_db_handle(s));
    return false;
  }
  return true;
}

// What a countersigned update moved, from the hub's side of the user's channel.
agent::HistoryEntry Hub::history_entry(const ChannelState& prev, const ChannelState& next, const ChannelUpdate& u) {
  agent::HistoryEntry e;
  e.time = static_cast<uint64_t>(std::time(nullptr));
  e.txCountGlobal = next.txCountGlobal;
  e.reason = update_reason_name(u.reason) ? update_reason_name(u.reason) : "";
  e.has_balances = true;
  e.balanceWeiUser = next.balanceWeiUser;
  e.balanceWeiHub = next.balanceWeiHub;
  const ThreadState& t = u.thread.thread.state;
  switch (u.reason) {
    case UpdateReason::Payment:
      e.event = "payment";
      e.wei = u.payment.amountWei;
      break;
    case UpdateReason::ProposePendingDeposit:
      e.event = next.pendingDepositWeiUser.is_zero() ? "collateral-proposed" : "deposit-proposed";
      e.wei = next.pendingDepositWeiUser.is_zero() ? next.pendingDepositWeiHub : next.pendingDepositWeiUser;
      break;
    case UpdateReason::ProposePendingWithdrawal:
      e.event = next.pendingWithdrawalWeiUser.is_zero() ? "collateral-reclaim-proposed" : "withdrawal-proposed";
      e.wei = next.pendingWithdrawalWeiUser.is_zero() ? next.pendingWithdrawalWeiHub : next.pendingWithdrawalWeiUser;
      if (!next.pendingWithdrawalWeiUser.is_zero()) {
        e.has_counterparty = true;
        e.counterparty = next.recipient;
      }
      break;
    case UpdateReason::ConfirmPending:
      if (!prev.pendingDepositWeiUser.is_zero()) {
        e.event = "deposit-confirmed";
        e.wei = prev.pendingDepositWeiUser;
      } else if (!prev.pendingWithdrawalWeiUser.is_zero()) {
        e.event = "withdrawal-confirmed";
        e.wei = prev.pendingWithdrawalWeiUser;
        e.has_counterparty = true;
        e.counterparty = prev.recipient;
      } else if (!prev.pendingDepositWeiHub.is_zero()) {
        e.event = "collateral";
        e.wei = prev.pendingDepositWeiHub;
      } else if (!prev.pendingWithdrawalWeiHub.is_zero()) {
        e.event = "collateral-reclaimed";
        e.wei = prev.pendingWithdrawalWeiHub;
      } else {
        e.event = "confirm";
      }
      if (!u.chainTx.transactionHash.is_zero()) e.transaction = json::hash_text(u.chainTx.transactionHash);
      break;
    case UpdateReason::OpenThread:
      e.event = "thread-open";
      e.wei = t.balanceWeiSender;
      e.has_counterparty = true;
      e.counterparty = t.sender == next.user ? t.receiver : t.sender;
      e.threadId = t.threadId;
      break;
    case UpdateReason::CloseThread:
      // Counted in the running totals: what went through the thread to the payee.
      e.event = "thread-settled";
      e.wei = t.balanceWeiReceiver;
      e.has_counterparty = true;
      e.counterparty = t.sender == next.user ? t.receiver : t.sender;
      e.threadId = t.threadId;
      break;
    default:
      e.event = u.reason == UpdateReason::Invalidation ? "invalidation" : "update";
      break;
  }
  return e;
}

// `picopay-hub history --user ADDR [--db FILE] [--json|--csv]`.
int history_main(int argc, char** argv) {
  std::string db = "picopay-hub.db", user, format = "table";
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" || a == "--csv") {
      format = a.substr(2);
    } else if ((a == "--db" || a == "--user") && i + 1 < argc) {
      (a == "--db" ? db : user) = argv[++i];
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: picopay-hub history --user ADDR [--db FILE] [--json|--csv]\n"
                  "Every countersigned update of the user's channel with its time, what it moved and\n"
                  "running totals per thread and per counterparty (docs/flows.md).\n");
      return 0;
    } else {
      std::fprintf(stderr, "picopay-hub history: unknown option or missing value: %s\n", a.c_str());
      return 2;
    }
  }
  Address who{};
  if (user.empty() || address_parse(user.c_str(), user.size(), who) != Status::Ok) {
    std::fprintf(stderr, "picopay-hub history: --user ADDR (an address) is required\n");
    return 2;
  }
  // Read-only: the running hub keeps writing (WAL).
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::fprintf(stderr, "picopay-hub history: cannot open %s: %s\n", db.c_str(), h ? sqlite3_errmsg(h) : "?");
    sqlite3_close(h);
    return 1;
  }
  sqlite3_busy_timeout(h, 5000);
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(h,
                         "SELECT tx, at, event, wei, counterparty, thread_id, balance_wei_user, balance_wei_hub, txhash"
                         " FROM history WHERE user=? ORDER BY tx",
                         -1, &s, nullptr) != SQLITE_OK) {
    std::fprintf(stderr, "picopay-hub history: %s has no history table (%s)\n", db.c_str(), sqlite3_errmsg(h));
    sqlite3_close(h);
    return 1;
  }
  const std::string key = json::address_text(who);
  std::string lower = key;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  sqlite3_bind_text(s, 1, lower.c_str(), -1, SQLITE_TRANSIENT);
  std::vector<agent::HistoryEntry> out;
  const int rc = read_rows(s, out);
  sqlite3_finalize(s);
  sqlite3_close(h);
  if (rc != SQLITE_DONE) {
    std::fprintf(stderr, "picopay-hub history: read failed\n");
    return 1;
  }
  std::fputs(agent::history_format(out, format).c_str(), stdout);
  return 0;
}

}  // namespace picopay::hub
