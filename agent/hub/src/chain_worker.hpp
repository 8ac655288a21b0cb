// picopay-hub chain worker: every JSON-RPC call of the hub, on two threads of its own
// (docs/operations.md, "Inside the hub"). The engine (the payment worker) posts jobs and never
// waits for the chain; the worker posts results back, which the engine drains between
// batches like inbound MQTT messages. No RPC, and no wait for a receipt, happens inside
// a batch or an open write transaction of the ledger.
//
// The reader thread serves the reads: a read of one channel for an update asserting chain
// facts (ConfirmPending, Invalidation, EmptyChannel: Facts), the hub's reserve (Reserve)
// and following the chain (Marks). The sender thread sends the transactions from the
// hub's account and waits for their receipts: a collateral deposit (or hub withdrawal)
// the user countersigned (hubAuthorizedUpdate, then DepositDone), a payer's thread
// dispute and the watchtower rounds (which read a channel's latest state from the ledger,
// on the sender's own connection, when an exit starts on it). So a read the engine waits
// on never waits behind a receipt (up to a minute). Each thread has its own JSON-RPC
// client; only the sender's wallet sends (one holder of the account's nonces), and both
// post to the same engine inbox.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chain_follow.hpp"
#include "ledger/ledger.hpp"
#include "picopay/chain/watchtower.hpp"
#include "picopay/policy.hpp"
#include "picopay/signer.hpp"

namespace picopay::chain {
class RpcClient;
class Wallet;
class ChannelManagerClient;
class EventPoller;
}  // namespace picopay::chain

namespace picopay::hub {

class Metrics;

// What the engine asks of the chain.
struct ChainJob {
  enum class Kind {
    Deposit,     // state: the user-countersigned ProposePendingDeposit / hub-only withdrawal
    ReadChannel, // user: read the channel and the latest block (answered with Facts)
    Dispute,     // dispute: a payer's channel in dispute with open threads
  };
  Kind kind = Kind::ReadChannel;
  Address user{};
  SignedChannelState state{};
  // Dispute: the hub's latest state of the channel and, for a thread dispute, each of the
  // payer's threads with its signed initial state and the payee's close (if any).
  struct Thread {
    SignedThreadState initial{};
    bool has_latest = false;
    SignedThreadState latest{};
  };
  struct DisputeInfo {
    SignedChannelState latest{};
    std::vector<Hash32> leaves;  // the thread root's leaves (every open thread)
    std::vector<Thread> threads;
    bool missing_initial = false;  // a thread's initial state is not stored
  };
  DisputeInfo dispute;
};

// A dispute job as stored in the ledger's thread_disputes (several instances): the
// channel's owner writes it, the chain role's holder sends it (thread_dispute.cpp). The
// bytes: version 1, the latest state's wire (u16 length first), missing_initial (1 byte),
// the leaves (u16 count, 32 bytes each), the threads (u16 count; each: the initial
// state's wire, u16 length first, has_latest (1 byte) and then the latest's likewise).
// encode: empty when a state does not encode; decode: false on anything else.
std::vector<uint8_t> encode_dispute_job(const ChainJob::DisputeInfo& d);
bool decode_dispute_job(const std::vector<uint8_t>& b, ChainJob::DisputeInfo& d);

// What the chain answers.
struct ChainResult {
  enum class Kind {
    DepositDone,  // user, block: the deposit is on chain (tx: its hash, zero when found made already)
    Facts,        // user, facts: the chain's view of the channel (known false: unreadable)
    Reserve,      // known, wei, block: the hub's reserve (hubReserveWei) at that block
    Marks,        // changes, marks, empty_tx: a round of following the chain
    Disputed,     // user, done: a dispute job finished (done: every thread disputed)
  };
  Kind kind = Kind::Facts;
  Address user{};
  Hash32 tx{};
  ChainFacts facts{};
  bool known = false;
  U256 wei = U256::zero();
  // The chain's clock, a block number. Reserve: the block the reading is of. DepositDone:
  // the block its receipt is in, or (found made already) a block at or after it. The
  // reader and the sender answer independently, so a reading taken before a deposit was
  // mined may arrive after its DepositDone: the engine uses no reading of a block before
  // the last DepositDone's (Hub::chain_results).
  uint64_t block = 0;
  bool done = false;
  std::vector<ChainChange> changes;
  std::vector<std::pair<Address, ChainMark>> marks;
  std::vector<std::pair<Address, Hash32>> empty_tx;
};

// Where the engine posts chain jobs: the chain worker, or a test's fake (engine tests).
class ChainPort {
 public:
  virtual ~ChainPort() = default;
  virtual void post(ChainJob job) = 0;
};

class ChainWorker : public ChainPort {
 public:
  struct Options {
    std::string rpc_url;
    Address contract{};
    Address hub{};
    uint64_t confirmations = 0;
    std::string event_state;   // the watchtower poller's progress file
    std::string follow_state;  // the follower's poller progress file
    std::string marks_file;    // the follower's marks
    uint64_t watchtower_interval_ms = 5000;
    std::string crash_at;      // PICOPAY_HUB_CRASH_AT (test-only fault injection)
    // The ledger (as --store): the watchtower reads a channel's latest state from it, on
    // its own connection, when an exit starts on the channel (no channel read at start).
    std::string store;
    // Several instances (docs/multi-instance.md): whether this process holds the chain role
    // now (empty: always, the only instance), and whether deposit jobs are shared through
    // the ledger (every worker re-reads the stored jobs each second: the role's holder sends
    // them, any worker that sees one executed on chain reports DepositDone, and the engine
    // of the channel's owner confirms it).
    std::function<bool()> chain_role;
    bool shared_deposits = false;  // and the thread disputes (reload_disputes)
  };
  // post: called on the reader's or the sender's thread with each result (the engine
  // queues it; so it must be thread-safe).
  ChainWorker(Options o, const PrivateKey& key, Metrics* metrics, std::function<void(ChainResult)> post);
  ~ChainWorker() override;
  // Connects both threads' clients (eth_chainId), loads the follower's marks and the
  // watchtower's progress, opens its ledger connection. Errors: the chain's, a file's or
  // the ledger's, as one line in err.
  bool open(std::string& err);
  // The follower's marks (before start(): the stored ones, the engine's first copy).
  std::vector<std::pair<Address, ChainMark>> marks() const;
  // Starts the reader and the sender threads.
  void start();
  // Stops both threads after their current job (a receipt wait included) and joins them.
  void stop();
  void post(ChainJob job) override;
  // The hub's reserve is read every kReserveRefreshMs and posted as Reserve.
  static constexpr uint64_t kReserveRefreshMs = 2000;

 private:
  // The sender thread: deposits, disputes, the watchtower.
  void run();
  // The reader thread: channel reads, the reserve, following the chain.
  void read_loop();
  // Whether this process may send the hub's transactions now (deposits, disputes, the
  // watchtower's): one sender of the account's nonces. Checked by the sender once per
  // round of jobs; reads (channels, the reserve, following the chain) need no role.
  bool chain_role() const { return !o_.chain_role || o_.chain_role(); }
  // shared_deposits: adds the stored jobs this worker does not have yet (every second).
  void reload_deposits();
  uint64_t last_reload_ms_ = 0;
  // shared_deposits, chain role only: every second, the stored thread dispute jobs not done
  // are run (dispute() reads the chain first: a thread already disputed is not sent again)
  // and those that finish are marked done in the ledger; once after gaining the role the
  // done ones are handed to the watchtower too (it empties their threads after the timers).
  void reload_disputes(bool role);
  uint64_t last_disputes_ms_ = 0;
  bool disputes_watched_ = false;
  // The watchtower's view of a dispute job's channel and threads.
  static chain::WatchedChannel watched(const ChainJob& j);
  // (user, txCountChain) of the jobs this worker reported done, with when: a stored job
  // is reported again only after kDoneAgainMs (its owner may have been fenced).
  std::map<std::pair<std::string, uint64_t>, uint64_t> done_;
  static constexpr uint64_t kDoneAgainMs = 30000;
  void deposit(ChainJob& j);
  void read_channel(const Address& user);
  // Runs a dispute job; true when every thread is disputed. `report`: posts Disputed.
  bool dispute(const ChainJob& j, bool report = true);
  // Sender: the watchtower's round, when due (role only).
  void rounds(bool role);
  // Reader: the reserve reading and the follower, when due.
  void read_rounds();
  // The hub's reserve (hubReserveWei) read at `block` (its error: none read), as a Reserve
  // result stamped with it (known false on an error, logged). The reader's every
  // kReserveRefreshMs at the latest block; the sender's after each DepositDone at its block.
  static ChainResult reserve_at(chain::ChannelManagerClient& cm, const chain::Result<uint64_t>& block);
  void crash_point(const char* name) const;

  Options o_;
  PrivateKey key_{};
  Metrics* metrics_ = nullptr;
  std::function<void(ChainResult)> post_;
  // The sender thread's (after open): the only wallet that sends.
  std::unique_ptr<chain::RpcClient> rpc_;
  std::unique_ptr<chain::Wallet> wallet_;
  std::unique_ptr<chain::ChannelManagerClient> cm_;
  std::unique_ptr<chain::EventPoller> poller_;
  std::unique_ptr<chain::Watchtower> tower_;
  std::unique_ptr<Ledger> ledger_;
  // The reader thread's (after open): views only, its wallet never sends.
  std::unique_ptr<chain::RpcClient> read_rpc_;
  std::unique_ptr<chain::Wallet> read_wallet_;
  std::unique_ptr<chain::ChannelManagerClient> read_cm_;
  std::unique_ptr<ChainFollow> follow_;
  // The watchtower's lookup: the channel's latest double-signed state from the ledger.
  bool lookup(const Address& user, chain::WatchedChannel& out, bool& found);

  struct Pending {
    ChainJob job;
    uint64_t next_try_ms = 0;
    unsigned failures = 0;
  };
  std::vector<Pending> deposits_;             // sender thread only
  std::set<std::string> threads_emptying_;    // sender thread only
  uint64_t last_tower_ms_ = 0;                // sender thread only
  uint64_t last_reserve_ms_ = 0;              // reader thread only

  std::mutex mu_;
  std::condition_variable cv_;       // the sender's
  std::condition_variable read_cv_;  // the reader's
  std::deque<ChainJob> jobs_;        // the sender's: deposits, disputes
  std::deque<ChainJob> reads_;       // the reader's: ReadChannel
  bool stop_ = false;
  std::thread thread_;  // the sender
  std::thread reader_;
};

}  // namespace picopay::hub
