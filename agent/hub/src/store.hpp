// picopay-hub: the SQLite ledger (WAL, synchronous=FULL). One writer: the hub's worker.
// WAL checkpoints run on a background thread with its own connection (PASSIVE, a few
// times a second), so the writer's COMMIT never pays for copying the WAL into the
// database file and fsyncing it; that used to stall a batch for tens of ms every few
// thousand updates.
//
// Tables:
//   channels(user PK, tx, state, threads)  latest double-signed state (wire kind 0x01),
//                                          open threads (u16 length-prefixed thread wires)
//   updates(user, tx, request, reply, state, PK(user, tx))  every countersigned update:
//                                          the request bytes, the reply bytes that were
//                                          released, the resulting double-signed state
//   requests(user, seq, id, request, PK(user, seq))
//                                          the HubRequests the hub wants from this user, in
//                                          order (docs/mqtt-protocol.md): seq 0 first; `id`
//                                          the request id once sent (0 = not sent yet; at most
//                                          one per channel is sent and outstanding); `request`
//                                          the update's reason and args as a ChannelUpdate wire
//                                          (txCountGlobal 0, no meaningful sig); rewritten in
//                                          the same transaction as the update that changes them
//   request_ids(user PK, last)             the last request id sent to this user (ids only grow)
//   proposals, queued                      legacy (hub-signed proposals of earlier versions):
//                                          read once at start, turned into requests, emptied
//   deposits(user PK, tx, state)           collateral deposits the payee countersigned and
//                                          the hub has not yet confirmed: the double-signed
//                                          ProposePendingDeposit state (wire kind 0x01) for
//                                          hubAuthorizedUpdate; stored with the payee's
//                                          countersignature, deleted in the transaction
//                                          that proposes (or queues) the ConfirmPending
//   history(user, tx, at, event, wei, counterparty, thread_id, balance_wei_user,
//           balance_wei_hub, txhash, PK(user, tx))
//                                          every countersigned update with its time (Unix
//                                          seconds) and what it moved (history.cpp,
//                                          docs/flows.md), in the update's transaction
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "picopay/agent/history.hpp"

namespace picopay::hub {

using Bytes = std::vector<uint8_t>;

class Store {
 public:
  Store() = default;
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  bool open(const std::string& path, std::string& err);
  bool begin(std::string& err);
  bool commit(std::string& err);
  void rollback();

  // found=false if the channel has no row.
  bool load_channel(const std::string& user, Bytes& state, Bytes& threads, bool& found, std::string& err);
  bool save_channel(const std::string& user, uint64_t tx, const Bytes& state, const Bytes& threads, std::string& err);
  bool find_update(const std::string& user, uint64_t tx, Bytes& request, Bytes& reply, bool& found, std::string& err);
  bool insert_update(const std::string& user, uint64_t tx, const Bytes& request, const Bytes& reply,
                     const Bytes& state, std::string& err);
  // One stored request: its id (0 = not sent yet) and its update wire.
  struct RequestRow {
    uint64_t id = 0;
    Bytes update;
  };
  // The channel's requests in order and the last id sent (0 if none ever).
  bool load_requests(const std::string& user, uint64_t& last_id, std::vector<RequestRow>& items, std::string& err);
  // Replaces the channel's requests and its last id (same transaction as the caller's update).
  bool save_requests(const std::string& user, uint64_t last_id, const std::vector<RequestRow>& items,
                     std::string& err);
  // Users with stored requests, or with legacy proposals (to re-send / convert at start).
  bool list_request_users(std::vector<std::string>& out, std::string& err);
  // Legacy rows of earlier versions: the outstanding hub-signed proposal (its update wire
  // and txCountGlobal; found=false if none) and the queued update wires, in order.
  bool load_legacy(const std::string& user, bool& found, uint64_t& tx, Bytes& proposal, std::vector<Bytes>& queued,
                   std::string& err);
  bool delete_legacy(const std::string& user, std::string& err);
  // Collateral deposit jobs (see the deposits table). One per channel.
  bool save_deposit(const std::string& user, uint64_t tx, const Bytes& state, std::string& err);
  bool delete_deposit(const std::string& user, std::string& err);
  bool list_deposits(std::vector<std::pair<std::string, Bytes>>& out, std::string& err);
  // The history table (history.cpp): created at open; one row per countersigned update,
  // written in the update's transaction; read back in txCountGlobal order.
  bool history_open(std::string& err);
  bool insert_history(const std::string& user, uint64_t tx, const agent::HistoryEntry& e, std::string& err);
  bool load_history(const std::string& user, std::vector<agent::HistoryEntry>& out, std::string& err);
  // Whether the hub ever proposed collateral into this channel (a collateral-proposed row).
  bool has_collateral(const std::string& user, bool& yes, std::string& err);
  // All channel rows (user, state), for the watchtower at startup.
  bool list_channels(std::vector<std::pair<std::string, Bytes>>& out, std::string& err);

 private:
  bool exec(const char* sql, std::string& err);
  sqlite3_stmt* prep(const char* sql, std::string& err);
  sqlite3* db_ = nullptr;
  std::vector<sqlite3_stmt*> stmts_;
  sqlite3_stmt *load_ch_ = nullptr, *save_ch_ = nullptr, *find_up_ = nullptr, *ins_up_ = nullptr;
  sqlite3_stmt *load_pr_ = nullptr, *del_pr_ = nullptr, *del_q_ = nullptr, *load_q_ = nullptr;
  sqlite3_stmt *load_rq_ = nullptr, *del_rq_ = nullptr, *ins_rq_ = nullptr, *load_id_ = nullptr, *save_id_ = nullptr;
  bool step_done(sqlite3_stmt* s, const char* what, std::string& err);
  sqlite3_stmt *save_dep_ = nullptr, *del_dep_ = nullptr;
  sqlite3_stmt *ins_hist_ = nullptr, *load_hist_ = nullptr, *has_coll_ = nullptr;

  void checkpointer(std::string path);
  std::thread ckpt_;
  std::mutex ckpt_mu_;
  std::condition_variable ckpt_cv_;
  bool ckpt_stop_ = false;
};

}  // namespace picopay::hub
