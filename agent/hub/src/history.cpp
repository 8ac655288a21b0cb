// picopay-hub: what each countersigned update moved, for the ledger's history table
// (ledger/ledger.hpp, version 2), and `picopay-hub history` (docs/flows.md).
#include <cstdio>
#include <cstring>
#include <ctime>
#include <unistd.h>

#include "hub.hpp"
#include "picopay/agent/history.hpp"
#include "picopay/agent/json_state.hpp"
#include "ledger/ledger.hpp"
#include "picopay/mqtt/protocol.hpp"

namespace picopay::hub {
Ledger::HistoryRow history_row(const agent::HistoryEntry& e) {
  Ledger::HistoryRow h;
  h.tx = e.txCountGlobal;
  h.at = e.time;
  h.event = e.event;
  h.wei = json::amount_text(e.wei);
  h.counterparty = e.has_counterparty ? json::address_text(e.counterparty) : "";
  h.thread_id = e.threadId;
  h.balance_wei_user = json::amount_text(e.balanceWeiUser);
  h.balance_wei_hub = json::amount_text(e.balanceWeiHub);
  h.txhash = e.transaction;
  return h;
}

static agent::HistoryEntry history_entry_of(const Ledger::HistoryRow& h) {
  agent::HistoryEntry e;
  e.txCountGlobal = h.tx;
  e.time = h.at;
  e.event = h.event;
  (void)u256_parse_decimal(h.wei.c_str(), h.wei.size(), e.wei);
  e.has_counterparty =
      !h.counterparty.empty() && address_parse(h.counterparty.c_str(), h.counterparty.size(), e.counterparty) == Status::Ok;
  e.threadId = h.thread_id;
  e.has_balances =
      u256_parse_decimal(h.balance_wei_user.c_str(), h.balance_wei_user.size(), e.balanceWeiUser) == Status::Ok &&
      u256_parse_decimal(h.balance_wei_hub.c_str(), h.balance_wei_hub.size(), e.balanceWeiHub) == Status::Ok;
  e.transaction = h.txhash;
  return e;
}

namespace {
// A channel may hold ETH and the contract's token: an event is classified by either
// asset, and its amount is the wei, or the token base units when it moved no wei.
bool nz(const U256& wei, const U256& token) { return !wei.is_zero() || !token.is_zero(); }
const U256& pick(const U256& wei, const U256& token) { return wei.is_zero() ? token : wei; }
}  // namespace

// What a countersigned update moved, from the hub's side of the user's channel.
agent::HistoryEntry history_entry(const ChannelState& prev, const ChannelState& next, const ChannelUpdate& u,
                                  uint64_t unix_time) {
  agent::HistoryEntry e;
  e.time = unix_time;
  e.txCountGlobal = next.txCountGlobal;
  e.reason = update_reason_name(u.reason) ? update_reason_name(u.reason) : "";
  e.has_balances = true;
  e.balanceWeiUser = next.balanceWeiUser;
  e.balanceWeiHub = next.balanceWeiHub;
  const ThreadState& t = u.thread.thread.state;
  switch (u.reason) {
    case UpdateReason::Payment:
      e.event = "payment";
      e.wei = pick(u.payment.amountWei, u.payment.amountToken);
      break;
    case UpdateReason::ProposePendingDeposit:
      e.event = nz(next.pendingDepositWeiUser, next.pendingDepositTokenUser) ? "deposit-proposed" : "collateral-proposed";
      e.wei = nz(next.pendingDepositWeiUser, next.pendingDepositTokenUser) ? pick(next.pendingDepositWeiUser, next.pendingDepositTokenUser)
                                                                          : pick(next.pendingDepositWeiHub, next.pendingDepositTokenHub);
      break;
    case UpdateReason::ProposePendingWithdrawal:
      e.event = nz(next.pendingWithdrawalWeiUser, next.pendingWithdrawalTokenUser) ? "withdrawal-proposed" : "collateral-reclaim-proposed";
      e.wei = nz(next.pendingWithdrawalWeiUser, next.pendingWithdrawalTokenUser)
                  ? pick(next.pendingWithdrawalWeiUser, next.pendingWithdrawalTokenUser)
                  : pick(next.pendingWithdrawalWeiHub, next.pendingWithdrawalTokenHub);
      if (nz(next.pendingWithdrawalWeiUser, next.pendingWithdrawalTokenUser)) {
        e.has_counterparty = true;
        e.counterparty = next.recipient;
      }
      break;
    case UpdateReason::ConfirmPending:
      if (nz(prev.pendingDepositWeiUser, prev.pendingDepositTokenUser)) {
        e.event = "deposit-confirmed";
        e.wei = pick(prev.pendingDepositWeiUser, prev.pendingDepositTokenUser);
      } else if (nz(prev.pendingWithdrawalWeiUser, prev.pendingWithdrawalTokenUser)) {
        e.event = "withdrawal-confirmed";
        e.wei = pick(prev.pendingWithdrawalWeiUser, prev.pendingWithdrawalTokenUser);
        e.has_counterparty = true;
        e.counterparty = prev.recipient;
      } else if (nz(prev.pendingDepositWeiHub, prev.pendingDepositTokenHub)) {
        e.event = "collateral";
        e.wei = pick(prev.pendingDepositWeiHub, prev.pendingDepositTokenHub);
      } else if (nz(prev.pendingWithdrawalWeiHub, prev.pendingWithdrawalTokenHub)) {
        e.event = "collateral-reclaimed";
        e.wei = pick(prev.pendingWithdrawalWeiHub, prev.pendingWithdrawalTokenHub);
      } else {
        e.event = "confirm";
      }
      if (!u.chainTx.transactionHash.is_zero()) e.transaction = json::hash_text(u.chainTx.transactionHash);
      break;
    case UpdateReason::OpenThread:
      e.event = "thread-open";
      e.wei = pick(t.balanceWeiSender, t.balanceTokenSender);
      e.has_counterparty = true;
      e.counterparty = t.sender == next.user ? t.receiver : t.sender;
      e.threadId = t.threadId;
      break;
    case UpdateReason::CloseThread:
      // Counted in the running totals: what went through the thread to the payee.
      e.event = "thread-settled";
      e.wei = pick(t.balanceWeiReceiver, t.balanceTokenReceiver);
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

// `picopay-hub history --user ADDR [--store SPEC | --db FILE] [--json|--csv]`.
int history_main(int argc, char** argv) {
  std::string store = "sqlite:picopay-hub.db", user, format = "table";
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" || a == "--csv") {
      format = a.substr(2);
    } else if ((a == "--db" || a == "--store" || a == "--user") && i + 1 < argc) {
      (a == "--user" ? user : store) = a == "--db" ? std::string("sqlite:") + argv[++i] : std::string(argv[++i]);
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: picopay-hub history --user ADDR [--store sqlite:PATH|postgresql://...] [--db FILE]\n"
                  "                           [--json|--csv]\n"
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
  // The running hub keeps writing (SQLite WAL / PostgreSQL MVCC): this only reads, and
  // never creates a SQLite file that is not there.
  const bool pg = store.rfind("postgresql://", 0) == 0 || store.rfind("postgres://", 0) == 0;
  const std::string path = store.rfind("sqlite:", 0) == 0 ? store.substr(7) : store;
  if (!pg && access(path.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "picopay-hub history: no ledger at %s (--store sqlite:PATH or --db FILE)\n", path.c_str());
    return 1;
  }
  std::unique_ptr<Ledger> ledger;
  LedgerStatus st = Ledger::open(store, ledger);
  std::vector<Ledger::HistoryRow> rows;
  if (st.ok()) st = ledger->load_history(mqtt::topic_address(who), rows);
  if (!st.ok()) {
    std::fprintf(stderr, "picopay-hub history: %s\n", st.message.c_str());
    return 1;
  }
  std::vector<agent::HistoryEntry> out;
  for (const auto& r : rows) out.push_back(history_entry_of(r));
  std::fputs(agent::history_format(out, format).c_str(), stdout);
  return 0;
}

}  // namespace picopay::hub
