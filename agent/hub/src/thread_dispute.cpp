// picopay-hub: thread disputes on a payer's channel exit (hub.hpp dispute_threads).
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "chain_follow.hpp"
#include "hub.hpp"
#include "log.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/watchtower.hpp"
#include "picopay/codec.hpp"

namespace picopay::hub {

void Hub::dispute_threads(Chan& ch) {
  if (!cm_ || threads_disputed_.count(ch.key)) return;
  // The payer's threads in the hub's latest state of the channel.
  std::vector<size_t> mine;
  for (size_t i = 0; i < ch.thread_count; ++i)
    if (ch.threads[i].sender == ch.user) mine.push_back(i);
  if (mine.empty()) return;
  auto oc = cm_->channel(ch.user);
  if (!oc.ok()) return;
  if (oc->status == chain::ChannelStatus::ChannelDispute) {
    // The user started the exit with the hub's latest state (an older one is answered by
    // the watchtower): the hub, not the initiator, may empty it now and go to the threads.
    if (oc->exitInitiator != hub_ && oc->txCountGlobal == ch.latest.state.txCountGlobal &&
        !threads_emptying_.count(ch.key)) {
      threads_emptying_.insert(ch.key);
      auto r = cm_->empty_channel(ch.user);
      if (!r.ok()) threads_emptying_.erase(ch.key);  // retried next round
      logf(r.ok() ? "info" : "warn", ch.key + ": emptyChannel (to dispute its threads): " +
                                         (r.ok() ? json::hash_text(r->transactionHash) : r.error().to_string()));
    } else if (!threads_emptying_.count(ch.key)) {
      threads_emptying_.insert(ch.key);
      logf("info", ch.key + ": exit with open threads (chain txCountGlobal " + std::to_string(oc->txCountGlobal) +
                       ", hub's " + std::to_string(ch.latest.state.txCountGlobal) +
                       "): the threads are disputed once the channel is emptied");
    }
    return;
  }
  if (oc->status != chain::ChannelStatus::ThreadDispute) return;
  if (oc->threadRoot != ch.latest.state.threadRoot) {
    logf("warn", ch.key + ": thread dispute on a thread root the hub does not hold: threads not disputed");
    threads_disputed_.insert(ch.key);
    return;
  }
  std::vector<Hash32> leaves;
  for (size_t i = 0; i < ch.thread_count; ++i) leaves.push_back(thread_hash(ch.threads[i]));
  chain::WatchedChannel w;
  w.user = ch.user;
  if (ch.latest.hasSigHub && ch.latest.hasSigUser && ch.latest.state.timeout == 0) w.latest = ch.latest;
  bool all = true;
  for (size_t i : mine) {
    const ThreadState& t = ch.threads[i];
    // The initial state with the payer's signature: the OpenThread update that made it.
    SignedThreadState initial{};
    bool found_initial = false;
    for (uint64_t tx = ch.latest.state.txCountGlobal; tx > 0 && !found_initial; --tx) {
      Bytes req, rep;
      bool found = false;
      std::string err;
      if (!ok(ledger_->find_update(ch.key, tx, req, rep, found), err) || !found) continue;
      ChannelUpdate u{};
      if (decode_channel_update(req.data(), req.size(), u) != Status::Ok || u.reason != UpdateReason::OpenThread)
        continue;
      if (thread_hash(u.thread.thread.state) == thread_hash(t)) {
        initial = u.thread.thread;
        found_initial = true;
      }
    }
    if (!found_initial) {
      logf("warn", ch.key + ": thread " + std::to_string(t.threadId) + ": its signed initial state is not stored");
      all = false;
      continue;
    }
    // The latest state: the payee's close (requested here as CloseThread), if any.
    const SignedThreadState* latest = nullptr;
    for (const auto& r : ch.requests) {
      const SignedThreadState& c = r.update.thread.thread;
      if (r.update.reason == UpdateReason::CloseThread && c.state.sender == t.sender &&
          c.state.receiver == t.receiver && c.state.threadId == t.threadId)
        latest = &c;
    }
    chain::WatchedThread wt;
    wt.initial = initial;
    wt.rootLeaves = leaves;
    if (latest) wt.latest = *latest;
    w.threads.push_back(wt);
    auto ot = cm_->thread(t.sender, t.receiver, t.threadId);
    if (!ot.ok()) {
      all = false;
      continue;
    }
    if (ot->threadClosingTime != 0) continue;  // already in dispute (the watchtower challenges)
    auto proof = chain::thread_proof(leaves, thread_hash(initial.state));
    if (!proof.ok()) {
      all = false;
      continue;
    }
    auto r = latest ? cm_->start_exit_thread_with_update(ch.user, initial, *proof, *latest)
                    : cm_->start_exit_thread(ch.user, initial, *proof);
    logf(r.ok() ? "info" : "warn",
         ch.key + ": thread " + std::to_string(t.threadId) + " dispute started (" +
             (latest ? "payee's final state, txCount " + std::to_string(latest->state.txCount) : std::string("initial state")) +
             "): " + (r.ok() ? json::hash_text(r->transactionHash) : r.error().to_string()));
    if (!r.ok()) all = false;
  }
  if (tower_) tower_->watch(w);
  if (all) threads_disputed_.insert(ch.key);
}

}  // namespace picopay::hub
