// picopay-hub chain worker (chain_worker.hpp): the hub's JSON-RPC calls on two threads of
// their own, one for the reads and one for the transactions.
#include "chain_worker.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>

#include "hub_internal.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/hex.hpp"

namespace picopay::hub {

ChainWorker::ChainWorker(Options o, const PrivateKey& key, Metrics* metrics, std::function<void(ChainResult)> post)
    : o_(std::move(o)), key_(key), metrics_(metrics), post_(std::move(post)) {}

ChainWorker::~ChainWorker() {
  stop();
  secure_wipe(&key_, sizeof key_);
}

bool ChainWorker::open(std::string& err) {
  rpc_ = std::make_unique<chain::RpcClient>(o_.rpc_url);
  wallet_ = std::make_unique<chain::Wallet>(*rpc_, key_);
  auto st = wallet_->init();
  if (!st.ok()) {
    err = "chain: " + st.error().to_string();
    return false;
  }
  // The contract must be this hub's ChannelManager: checked now and before each transaction.
  if (auto chk = chain::check_channel_manager(*rpc_, o_.contract, &o_.hub); !chk) {
    err = "chain: " + chk.error().message;
    return false;
  }
  cm_ = std::make_unique<chain::ChannelManagerClient>(*wallet_, o_.contract);
  cm_->require_hub(o_.hub);
  poller_ = std::make_unique<chain::EventPoller>(*rpc_, o_.contract, o_.confirmations, o_.event_state);
  auto ls = poller_->load();
  if (!ls.ok()) logf("warn", "watchtower: event state: " + ls.error().to_string());
  tower_ = std::make_unique<chain::Watchtower>(*cm_, *poller_);
  // The reader's client: its own connection (a receipt wait on the sender's never delays
  // a read); its wallet is only the `from` of its views.
  read_rpc_ = std::make_unique<chain::RpcClient>(o_.rpc_url);
  read_wallet_ = std::make_unique<chain::Wallet>(*read_rpc_, key_);
  if (auto rs = read_wallet_->init(); !rs.ok()) {
    err = "chain: " + rs.error().to_string();
    return false;
  }
  read_cm_ = std::make_unique<chain::ChannelManagerClient>(*read_wallet_, o_.contract);
  follow_ = std::make_unique<ChainFollow>(*read_rpc_, *read_cm_, o_.contract, o_.confirmations, o_.follow_state,
                                          o_.marks_file);
  if (!follow_->load(err)) return false;
  if (!o_.store.empty()) {
    LedgerStatus s = Ledger::open(o_.store, ledger_);
    if (!s.ok()) {
      err = s.message;
      return false;
    }
    tower_->set_lookup([this](const Address& u, chain::WatchedChannel& w, bool& found) { return lookup(u, w, found); });
  }
  return true;
}

bool ChainWorker::lookup(const Address& user, chain::WatchedChannel& out, bool& found) {
  const std::string k = mqtt::topic_address(user);
  Bytes state, threads;
  found = false;
  LedgerStatus s = ledger_->load_channel(k, state, threads, found);
  if (!s.ok()) {
    logf("warn", "watchtower: cannot read " + k + " from the ledger: " + s.message);
    return false;
  }
  if (!found) return true;
  SignedChannelState st{};
  if (decode_channel_state(state.data(), state.size(), st) != Status::Ok) {
    logf("ERROR", "watchtower: corrupt stored state for " + k);
    return false;
  }
  out.user = user;
  if (st.hasSigHub && st.hasSigUser && st.state.timeout == 0) out.latest = st;
  return true;
}

std::vector<std::pair<Address, ChainMark>> ChainWorker::marks() const {
  std::vector<std::pair<Address, ChainMark>> out;
  for (const Address& u : follow_->marked())
    if (const ChainMark* m = follow_->mark(u)) out.emplace_back(u, *m);
  return out;
}

void ChainWorker::start() {
  reader_ = std::thread([this] { read_loop(); });
  thread_ = std::thread([this] { run(); });
}

void ChainWorker::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  read_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (reader_.joinable()) reader_.join();
}

void ChainWorker::post(ChainJob job) {
  const bool read = job.kind == ChainJob::Kind::ReadChannel;
  {
    std::lock_guard<std::mutex> lk(mu_);
    (read ? reads_ : jobs_).push_back(std::move(job));
  }
  (read ? read_cv_ : cv_).notify_one();
}

void ChainWorker::read_loop() {
  // The first reserve reading (and round of the follower) at once: a collateral request
  // that arrives before any reading promises nothing (the payee asks again later).
  read_rounds();
  while (true) {
    std::deque<ChainJob> jobs;
    {
      std::unique_lock<std::mutex> lk(mu_);
      read_cv_.wait_for(lk, std::chrono::milliseconds(200), [this] { return stop_ || !reads_.empty(); });
      if (stop_) break;
      jobs.swap(reads_);
    }
    for (const auto& j : jobs) read_channel(j.user);
    read_rounds();
  }
}

void ChainWorker::crash_point(const char* name) const {
  if (o_.crash_at.empty() || o_.crash_at != name) return;
  logf("warn", std::string("PICOPAY_HUB_CRASH_AT=") + name + ": SIGKILL");
  std::raise(SIGKILL);
}

void ChainWorker::run() {
  while (true) {
    std::deque<ChainJob> jobs;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(200), [this] { return stop_ || !jobs_.empty(); });
      if (stop_) break;
      jobs.swap(jobs_);
    }
    // Transactions (deposits, disputes, the watchtower's) only from the process that
    // sends the hub's transactions (reads are the reader thread's: read_loop).
    const bool role = chain_role();
    for (auto& j : jobs) {
      switch (j.kind) {
        case ChainJob::Kind::ReadChannel: break;  // posted to reads_ (post)
        case ChainJob::Kind::Deposit: {
          // The countersignature is committed; nothing is on chain yet.
          crash_point("deposit-countersigned");
          Pending p;
          p.job = std::move(j);
          deposits_.push_back(std::move(p));
          break;
        }
        case ChainJob::Kind::Dispute:
          if (role) {
            dispute(j);
          } else {
            ChainResult r;  // not ours: asked again after the next round
            r.kind = ChainResult::Kind::Disputed;
            r.user = j.user;
            post_(std::move(r));
          }
          break;
      }
    }
    if (o_.shared_deposits) reload_deposits();
    if (o_.shared_deposits) reload_disputes(role);
    // Due deposits, one at a time (the reader serves reads meanwhile). Without the chain
    // role a job is only looked at on chain (sent by the role's holder).
    const uint64_t now = now_ms();
    for (size_t i = 0; i < deposits_.size();) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (stop_) return;
      }
      if (deposits_[i].next_try_ms > now) {
        ++i;
        continue;
      }
      deposit(deposits_[i].job);
      if (deposits_[i].next_try_ms == 0) deposits_.erase(deposits_.begin() + static_cast<long>(i));  // DepositDone posted
      else ++i;
    }
    if (metrics_) metrics_->deposit_backlog(deposits_.size());
    rounds(role);
  }
}

void ChainWorker::deposit(ChainJob& j) {
  Pending* p = nullptr;
  for (auto& d : deposits_)
    if (&d.job == &j) p = &d;
  const std::string who = json::address_text(j.user);
  const ChannelState& want = j.state.state;
  const bool reclaim = !want.pendingWithdrawalWeiHub.is_zero() || !want.pendingWithdrawalTokenHub.is_zero();
  const std::string what = reclaim ? "collateral withdrawal" : "collateral deposit";
  auto retry = [&](const std::string& why) {
    ++p->failures;
    const uint64_t wait_ms = std::min<uint64_t>(60000, 1000ull << std::min(p->failures, 6u));
    p->next_try_ms = now_ms() + wait_ms;
    logf("warn", what + " for " + who + " (txCountChain " + std::to_string(want.txCountChain) + "): " + why +
                     "; retry in " + std::to_string(wait_ms / 1000) + " s");
  };
  // Idempotent: the contract refuses a txCount it has already seen, and a deposit sent
  // before a crash may have been mined, so look at the channel on chain first.
  auto oc = cm_->channel(j.user);
  if (!oc.ok()) return retry("cannot read the chain: " + oc.error().to_string());
  ChainResult r;
  r.kind = ChainResult::Kind::DepositDone;
  r.user = j.user;
  if (oc->txCountChain >= want.txCountChain) {
    // Mined at or before the block the channel was read at: the latest block now is at or
    // after it (the reserve readings before it are the engine's to ignore).
    auto at = rpc_->block_number();
    if (!at.ok()) return retry("cannot read the latest block: " + at.error().to_string());
    r.block = *at;
    logf("info", what + " for " + who + " is already on chain (txCountChain " + std::to_string(oc->txCountChain) +
                     "): confirming");
  } else if (!chain_role()) {
    p->next_try_ms = now_ms() + 1000;  // several instances: the chain role's holder sends it
    return;
  } else {
    auto rc = cm_->hub_authorized_update(want, j.state.sigUser);
    if (!rc.ok()) return retry("hubAuthorizedUpdate: " + rc.error().to_string());
    r.tx = rc->transactionHash;
    r.block = rc->blockNumber;
    logf("info", what + " for " + who + " on chain: " + json::hash_text(r.tx) + " (gas " + std::to_string(rc->gasUsed) +
                     ")");
    crash_point("deposit-sent");
  }
  p->next_try_ms = 0;
  done_[{who, want.txCountChain}] = now_ms();
  const uint64_t at = r.block;
  post_(std::move(r));
  // The reserve at that block, after the DepositDone: the engine drops its older reading
  // and need not wait for the reader's next one to promise collateral again (a failed
  // read posts nothing: the reader's next reading serves).
  ChainResult reserve = reserve_at(*cm_, chain::Result<uint64_t>(at));
  if (reserve.known) post_(std::move(reserve));
}

void ChainWorker::reload_deposits() {
  const uint64_t now = now_ms();
  if (!ledger_ || now - last_reload_ms_ < 1000) return;
  last_reload_ms_ = now;
  std::vector<std::pair<std::string, Bytes>> rows;
  LedgerStatus s = ledger_->list_deposits(rows);
  if (!s.ok()) {
    logf("warn", "deposit jobs: " + s.message);
    return;
  }
  for (auto it = done_.begin(); it != done_.end();) it = now - it->second >= kDoneAgainMs ? done_.erase(it) : std::next(it);
  for (auto& row : rows) {
    ChainJob j;
    j.kind = ChainJob::Kind::Deposit;
    if (address_parse(row.first.c_str(), row.first.size(), j.user) != Status::Ok ||
        decode_channel_state(row.second.data(), row.second.size(), j.state) != Status::Ok)
      continue;  // refused where it is written and at start (Hub::load_deposit_jobs)
    const std::string who = json::address_text(j.user);
    if (done_.count({who, j.state.state.txCountChain})) continue;
    bool have = false;
    for (const auto& d : deposits_)
      have = have || (d.job.user == j.user && d.job.state.state.txCountChain == j.state.state.txCountChain);
    if (have) continue;
    Pending p;
    p.job = std::move(j);
    deposits_.push_back(std::move(p));
  }
}

void ChainWorker::read_channel(const Address& user) {
  ChainResult r;
  r.kind = ChainResult::Kind::Facts;
  r.user = user;
  r.facts.known = false;
  const std::string who = json::address_text(user);
  auto oc = read_cm_->channel(user);
  if (!oc.ok()) {
    logf("warn", who + ": cannot read the chain: " + oc.error().to_string());
    return post_(std::move(r));
  }
  auto blk = read_rpc_->block_by_number("latest");
  if (!blk.ok()) {
    logf("warn", who + ": cannot read the latest block: " + blk.error().to_string());
    return post_(std::move(r));
  }
  ChainFacts& f = r.facts;
  f.known = true;
  f.txCountGlobal = oc->txCountGlobal;
  f.txCountChain = oc->txCountChain;
  f.status = oc->status == chain::ChannelStatus::Open ? ChainChannelStatus::Open : ChainChannelStatus::InDispute;
  // emptyChannel(WithChallenge) completed: no dispute, nothing left in the channel, and a
  // state was applied on chain (txCount[0] > 0).
  f.emptied = oc->status == chain::ChannelStatus::Open && oc->weiTotal.is_zero() && oc->tokenTotal.is_zero() &&
              oc->txCountGlobal > 0 && oc->channelClosingTime == 0 && oc->threadCount == 0;
  f.blockTime = blk->timestamp;
  post_(std::move(r));
}

bool ChainWorker::dispute(const ChainJob& j, bool report) {
  ChainResult res;
  res.kind = ChainResult::Kind::Disputed;
  res.user = j.user;
  auto finish = [&](bool done) {
    res.done = done;
    if (report) post_(std::move(res));
    return done;
  };
  const std::string key = mqtt::topic_address(j.user);
  const ChainJob::DisputeInfo& d = j.dispute;
  auto oc = cm_->channel(j.user);
  if (!oc.ok()) return finish(false);
  if (oc->status == chain::ChannelStatus::ChannelDispute) {
    // The user started the exit with the hub's latest state (an older one is answered by
    // the watchtower): the hub, not the initiator, may empty it now and go to the threads.
    if (oc->exitInitiator != o_.hub && oc->txCountGlobal == d.latest.state.txCountGlobal &&
        !threads_emptying_.count(key)) {
      threads_emptying_.insert(key);
      auto r = cm_->empty_channel(j.user);
      if (!r.ok()) threads_emptying_.erase(key);  // retried next round
      logf(r.ok() ? "info" : "warn", key + ": emptyChannel (to dispute its threads): " +
                                         (r.ok() ? json::hash_text(r->transactionHash) : r.error().to_string()));
    } else if (!threads_emptying_.count(key)) {
      threads_emptying_.insert(key);
      logf("info", key + ": exit with open threads (chain txCountGlobal " + std::to_string(oc->txCountGlobal) +
                       ", hub's " + std::to_string(d.latest.state.txCountGlobal) +
                       "): the threads are disputed once the channel is emptied");
    }
    return finish(false);
  }
  if (oc->status != chain::ChannelStatus::ThreadDispute || (d.leaves.empty() && d.threads.empty()))
    return finish(false);
  if (oc->threadRoot != d.latest.state.threadRoot) {
    logf("warn", key + ": thread dispute on a thread root the hub does not hold: threads not disputed");
    return finish(true);
  }
  bool all = !d.missing_initial;
  for (const ChainJob::Thread& t : d.threads) {
    const ThreadState& s = t.initial.state;
    auto ot = cm_->thread(s.sender, s.receiver, s.threadId);
    if (!ot.ok()) {
      all = false;
      continue;
    }
    if (ot->threadClosingTime != 0) continue;  // already in dispute (the watchtower challenges)
    auto proof = chain::thread_proof(d.leaves, thread_hash(s));
    if (!proof.ok()) {
      all = false;
      continue;
    }
    auto r = t.has_latest ? cm_->start_exit_thread_with_update(j.user, t.initial, *proof, t.latest)
                          : cm_->start_exit_thread(j.user, t.initial, *proof);
    logf(r.ok() ? "info" : "warn",
         key + ": thread " + std::to_string(s.threadId) + " dispute started (" +
             (t.has_latest ? "payee's final state, txCount " + std::to_string(t.latest.state.txCount)
                           : std::string("initial state")) +
             "): " + (r.ok() ? json::hash_text(r->transactionHash) : r.error().to_string()));
    if (!r.ok()) all = false;
  }
  tower_->watch(watched(j));
  return finish(all);
}

chain::WatchedChannel ChainWorker::watched(const ChainJob& j) {
  const ChainJob::DisputeInfo& d = j.dispute;
  chain::WatchedChannel w;
  w.user = j.user;
  if (d.latest.hasSigHub && d.latest.hasSigUser && d.latest.state.timeout == 0) w.latest = d.latest;
  for (const ChainJob::Thread& t : d.threads) {
    chain::WatchedThread wt;
    wt.initial = t.initial;
    wt.rootLeaves = d.leaves;
    if (t.has_latest) wt.latest = t.latest;
    w.threads.push_back(wt);
  }
  return w;
}

void ChainWorker::reload_disputes(bool role) {
  if (!role) {
    disputes_watched_ = false;  // gained again: the done jobs are watched again
    return;
  }
  const uint64_t now = now_ms();
  if (!ledger_ || now - last_disputes_ms_ < 1000) return;
  last_disputes_ms_ = now;
  std::vector<Ledger::DisputeRow> rows;
  LedgerStatus s = ledger_->list_disputes(!disputes_watched_, rows);
  if (!s.ok()) {
    logf("warn", "thread disputes: " + s.message);
    return;
  }
  const bool first = !disputes_watched_;
  disputes_watched_ = true;
  size_t watched_done = 0;
  for (const auto& row : rows) {
    ChainJob j;
    j.kind = ChainJob::Kind::Dispute;
    if (address_parse(row.user.c_str(), row.user.size(), j.user) != Status::Ok || !decode_dispute_job(row.job, j.dispute)) {
      logf("warn", "thread disputes: the stored job of " + row.user + " does not decode; skipped");
      continue;
    }
    if (row.done) {
      // Disputed by an earlier holder of the chain role: this one's watchtower challenges
      // and empties the threads when their timers end.
      tower_->watch(watched(j));
      ++watched_done;
      continue;
    }
    if (!dispute(j, false)) continue;  // again next round (the chain is read first)
    LedgerStatus d = ledger_->dispute_done(row.user, row.job);
    if (!d.ok()) logf("warn", "thread disputes: " + d.message);
  }
  if (first && watched_done)
    logf("info", "thread disputes: " + std::to_string(watched_done) + " done by an earlier chain role holder, watched");
}

ChainResult ChainWorker::reserve_at(chain::ChannelManagerClient& cm, const chain::Result<uint64_t>& block) {
  ChainResult r;
  r.kind = ChainResult::Kind::Reserve;
  chain::Result<U256> reserve =
      block.ok() ? cm.hub_reserve_wei(chain::hex_quantity(*block)) : chain::Result<U256>(block.error());
  r.known = reserve.ok();
  if (reserve.ok()) {
    r.wei = *reserve;
    r.block = *block;
  } else {
    logf("warn", "cannot read the hub's reserve: " + reserve.error().to_string());
  }
  return r;
}

void ChainWorker::read_rounds() {
  const uint64_t now = now_ms();
  if (now - last_reserve_ms_ >= kReserveRefreshMs) {
    last_reserve_ms_ = now;
    post_(reserve_at(*read_cm_, read_rpc_->block_number()));
  }
  if (follow_->due()) {
    auto changes = follow_->tick();
    if (!changes.ok()) {
      logf("warn", "chain follow: " + changes.error().to_string());
      return;
    }
    ChainResult r;
    r.kind = ChainResult::Kind::Marks;
    r.changes = std::move(*changes);
    r.marks = marks();
    for (const auto& m : r.marks) r.empty_tx.emplace_back(m.first, follow_->empty_tx(m.first));
    post_(std::move(r));
  }
}

void ChainWorker::rounds(bool role) {
  if (role && now_ms() - last_tower_ms_ >= o_.watchtower_interval_ms) {
    last_tower_ms_ = now_ms();
    auto acts = tower_->tick();
    if (!acts.ok()) {
      logf("warn", "watchtower: " + acts.error().to_string());
    } else {
      for (auto& a : *acts) {
        if (metrics_) metrics_->watchtower_action(a.what, a.ok);
        logf(a.ok ? "info" : "warn",
             "watchtower: " + a.what + " " + json::address_text(a.user) + (a.ok ? " ok" : " failed: " + a.error));
      }
    }
    if (metrics_) metrics_->chain_round(*rpc_, *cm_, o_.hub, poller_->last_block(), acts.ok());
  }
}

}  // namespace picopay::hub
