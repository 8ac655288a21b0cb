// picopay-hub: thread disputes on a payer's channel exit (hub.hpp dispute_threads). The
// engine gathers what the dispute needs from the channel and the ledger; the chain worker
// (chain_worker.cpp ChainWorker::dispute) reads the chain and sends the transactions. With
// several instances the job goes through the ledger (thread_disputes): the channel's owner
// stores it, the chain role's holder sends it (ChainWorker::reload_disputes).
#include <algorithm>
#include <string>
#include <vector>

#include "chain_follow.hpp"
#include "hub.hpp"
#include "log.hpp"
#include "picopay/codec.hpp"

namespace picopay::hub {

namespace {
void put16(Bytes& out, size_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
bool put_thread(Bytes& out, const SignedThreadState& t) {
  uint8_t buf[kMaxThreadStateWire];
  size_t n = 0;
  if (encode_thread_state(t, buf, sizeof buf, &n) != Status::Ok) return false;
  put16(out, n);
  out.insert(out.end(), buf, buf + n);
  return true;
}
// A reader of the job's bytes: every get fails once the bytes run out.
struct Reader {
  const Bytes& b;
  size_t at = 0;
  bool get16(size_t& v) {
    if (at + 2 > b.size()) return false;
    v = (static_cast<size_t>(b[at]) << 8) | b[at + 1];
    at += 2;
    return true;
  }
  bool get8(uint8_t& v) {
    if (at >= b.size()) return false;
    v = b[at++];
    return true;
  }
  const uint8_t* take(size_t n) {
    if (at + n > b.size()) return nullptr;
    at += n;
    return b.data() + at - n;
  }
  bool thread(SignedThreadState& t) {
    size_t n = 0;
    const uint8_t* p = get16(n) ? take(n) : nullptr;
    return p && decode_thread_state(p, n, t) == Status::Ok;
  }
};
}  // namespace

Bytes encode_dispute_job(const ChainJob::DisputeInfo& d) {
  Bytes out{1};
  uint8_t buf[kMaxChannelStateWire];
  size_t n = 0;
  if (encode_channel_state(d.latest, buf, sizeof buf, &n) != Status::Ok) return {};
  put16(out, n);
  out.insert(out.end(), buf, buf + n);
  out.push_back(d.missing_initial ? 1 : 0);
  put16(out, d.leaves.size());
  for (const Hash32& h : d.leaves) out.insert(out.end(), h.bytes, h.bytes + sizeof h.bytes);
  put16(out, d.threads.size());
  for (const ChainJob::Thread& t : d.threads) {
    if (!put_thread(out, t.initial)) return {};
    out.push_back(t.has_latest ? 1 : 0);
    if (t.has_latest && !put_thread(out, t.latest)) return {};
  }
  return out;
}

bool decode_dispute_job(const Bytes& b, ChainJob::DisputeInfo& d) {
  d = ChainJob::DisputeInfo{};
  Reader r{b};
  uint8_t v = 0, flag = 0;
  size_t n = 0;
  const uint8_t* p = nullptr;
  if (!r.get8(v) || v != 1 || !r.get16(n) || !(p = r.take(n)) || decode_channel_state(p, n, d.latest) != Status::Ok ||
      !r.get8(flag) || !r.get16(n))
    return false;
  d.missing_initial = flag != 0;
  for (size_t i = 0; i < n; ++i) {
    Hash32 h{};
    if (!(p = r.take(sizeof h.bytes))) return false;
    std::copy(p, p + sizeof h.bytes, h.bytes);
    d.leaves.push_back(h);
  }
  if (!r.get16(n)) return false;
  for (size_t i = 0; i < n; ++i) {
    ChainJob::Thread t;
    if (!r.thread(t.initial) || !r.get8(flag)) return false;
    t.has_latest = flag != 0;
    if (t.has_latest && !r.thread(t.latest)) return false;
    d.threads.push_back(t);
  }
  return r.at == b.size();
}

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
  if (lease_) {
    // Several instances: stored for the chain role's holder (which may be another
    // instance); stored again only when the job changes (the chain moved on, the payee
    // closed a thread meanwhile), which makes it not done again.
    const Bytes job = encode_dispute_job(j.dispute);
    if (job.empty()) {
      logf("ERROR", ch.key + ": cannot encode the thread dispute job");
      return;
    }
    auto it = disputes_stored_.find(ch.key);
    if (it != disputes_stored_.end() && it->second == job) return;
    const std::string key = ch.key;
    if (!in_transaction([&] {
          std::string err;
          if (!ok(ledger_->save_dispute(key, job), err)) {
            txerr_ = err;
            tx_failed_ = true;
          }
        }))
      return;  // fenced: the channel's new owner stores it
    disputes_stored_[key] = job;
    logf("info", key + ": thread dispute job stored for the chain role's holder");
    return;
  }
  disputes_posted_.insert(ch.key);
  chain_->post(std::move(j));
}

}  // namespace picopay::hub
