// picopay-tower's store: one SQLite file, one row per guarded channel holding the latest
// double-signed state the tower was handed (docs/tower.md).
//
// Schema: meta(key, value) with the contract and hub the file was made for (a file is
// never reused for another contract or hub); channels(user PRIMARY KEY, tx_count_global,
// state = core wire SignedChannelState, state_hash = channel_hash, check_chain = the
// channel must be looked at on chain (a new row, an exit event, a restart), updated =
// unix seconds); threads(sender, receiver, thread_id, tx_count, state = wire
// SignedThreadState, state_hash, check_chain, updated). WAL, synchronous=FULL: a state is durable before the tower acks it.
// Thread-safe (one mutex); every method reports failures as text in `err`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "picopay/state.hpp"
#include "picopay/types.hpp"

struct sqlite3;

namespace picopay::tower {

// What the tower holds for one channel.
struct Held {
  bool found = false;
  uint64_t txCountGlobal = 0;
  Hash32 stateHash{};
};

// A thread, as the contract keys it.
struct ThreadKey {
  Address sender{}, receiver{};
  uint64_t threadId = 0;
};

enum class PutResult {
  Stored,  // the state is now the one held
  Held,    // not newer than the held one: nothing changed
  Full,    // a new channel, but max_channels rows are held already: nothing changed
};

class Store {
 public:
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Opens (creating file and schema if needed) the store at `path` for `contract`/`hub`.
  // Errors (nullptr, err set): cannot open/create, not a tower store, or made for another
  // contract or hub.
  static std::unique_ptr<Store> open(const std::string& path, const Address& contract, const Address& hub,
                                     std::string& err);

  // Keeps `s` (already checked by check_handover) if its txCountGlobal is higher than
  // the held one's, in one transaction. A new row is marked check_chain. `held` gets
  // what is held afterwards. Returns false on a database error (nothing changed).
  bool put(const SignedChannelState& s, size_t max_channels, PutResult& result, Held& held, std::string& err);
  // What is held for `user` (held.found false if nothing).
  bool held(const Address& user, Held& out, std::string& err);
  // The held state of `user`; found false if none. A row that does not decode is an
  // error (the file was altered).
  bool latest(const Address& user, SignedChannelState& out, bool& found, std::string& err);
  // Marks (on) or clears the check_chain mark of `user`'s row; no row: nothing happens.
  bool set_check(const Address& user, bool on, std::string& err);
  // Marks every channel and thread row (at start-up: the chain may have moved while the
  // tower was down).
  bool check_all(std::string& err);
  // Users whose row is marked check_chain.
  bool to_check(std::vector<Address>& out, std::string& err);
  // Number of channels held.
  bool count(size_t& n, std::string& err);

  // Threads (table threads: one row per (sender, receiver, threadId), the best
  // sender-signed state for the receiver by thread_state_better()).
  // Keeps `t` (already checked by check_thread_handover) if thread_state_better(t, held)
  // or nothing is held; a new row is marked check_chain and refused (Full) when its
  // receiver has max_per_receiver rows already. `held` gets what is held afterwards
  // (txCountGlobal = the thread's txCount, stateHash = thread_hash).
  bool put_thread(const SignedThreadState& t, size_t max_per_receiver, PutResult& result, Held& held,
                  std::string& err);
  bool thread_held(const ThreadKey& k, Held& out, std::string& err);
  // Deletes the row of thread `k` (a release by its receiver); `dropped` tells whether
  // there was one. Returns false on a database error (nothing changed).
  bool drop_thread(const ThreadKey& k, bool& dropped, std::string& err);
  bool latest_thread(const ThreadKey& k, SignedThreadState& out, bool& found, std::string& err);
  bool set_thread_check(const ThreadKey& k, bool on, std::string& err);
  bool threads_to_check(std::vector<ThreadKey>& out, std::string& err);

 private:
  Store() = default;
  bool exec(const char* sql, std::string& err);
  sqlite3* db_ = nullptr;
  std::mutex mu_;
};

}  // namespace picopay::tower
