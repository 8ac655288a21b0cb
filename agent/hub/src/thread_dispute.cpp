// picopay-hub: thread disputes on a payer's channel exit (hub.hpp dispute_threads). The
// engine gathers what the dispute needs from the channel and the ledger; the chain worker
// (chain_worker.cpp ChainWorker::dispute) reads the chain and sends the transactions.
#include <string>
#include <vector>

#include "chain_follow.hpp"
#include "hub.hpp"
#include "log.hpp"
#include "picopay/codec.hpp"

namespace picopay::hub {

void Hub::dispute_threads(Chan& ch) {
  if (!chain_ || threads_disputed_.count(ch.key) || disputes_posted_.count(ch.key)) return;
  // The payer's threads in the hub's latest state of the channel.
  std::vector<size_t> mine;
  for (size_t i = 0; i < ch.thread_count; ++i)
    if (ch.threads[i].sender == ch.user) mine.push_back(i);
  if (mine.empty()) return;
  ChainJob j;
  j.kind = ChainJob::Kind::Dispute;
  j.user = ch.user;
  j.dispute.latest = ch.latest;
  const ChainMark* m = mark(ch.user);
  if (m && m->thread_dispute) {
    // The threads themselves (ThreadDispute on chain): each with its signed initial state
    // and the payee's close, if the hub holds one.
    for (size_t i = 0; i < ch.thread_count; ++i) j.dispute.leaves.push_back(thread_hash(ch.threads[i]));
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
        j.dispute.missing_initial = true;
        continue;
      }
      ChainJob::Thread th;
      th.initial = initial;
      // The latest state: the payee's close (requested here as CloseThread), if any.
      for (const auto& r : ch.requests) {
        const SignedThreadState& c = r.update.thread.thread;
        if (r.update.reason == UpdateReason::CloseThread && c.state.sender == t.sender &&
            c.state.receiver == t.receiver && c.state.threadId == t.threadId) {
          th.has_latest = true;
          th.latest = c;
        }
      }
      j.dispute.threads.push_back(th);
    }
  }
  disputes_posted_.insert(ch.key);
  chain_->post(std::move(j));
}

}  // namespace picopay::hub
