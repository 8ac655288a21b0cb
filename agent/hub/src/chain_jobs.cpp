// picopay-hub: the engine's side of chain work (chain_worker.hpp does the JSON-RPC): the
// collateral deposits it posts and what it does with the results (ConfirmPending after a
// deposit, the reserve reading, the follower's marks).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "chain_follow.hpp"
#include "hub.hpp"
#include "hub_internal.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/codec.hpp"

namespace picopay::hub {

void Hub::post_deposit(const DepositJob& d) {
  deposit_jobs_.push_back(d);
  if (!chain_) return;  // stored; sent by a hub with --rpc-url
  ChainJob j;
  j.kind = ChainJob::Kind::Deposit;
  j.user = d.user;
  j.state = d.state;
  chain_->post(std::move(j));
}

bool Hub::load_deposit_jobs(std::string& err) {
  std::vector<std::pair<std::string, Bytes>> rows;
  if (!ok(ledger_->list_deposits(rows), err)) return false;
  for (auto& r : rows) {
    DepositJob j;
    if (address_parse(r.first.c_str(), r.first.size(), j.user) != Status::Ok ||
        decode_channel_state(r.second.data(), r.second.size(), j.state) != Status::Ok) {
      err = "corrupt stored deposit job for " + r.first;
      return false;
    }
    post_deposit(j);
  }
  if (!rows.empty())
    logf("info", "recovered " + std::to_string(rows.size()) + " countersigned collateral deposit(s): checking the chain");
  return true;
}

bool Hub::deposit_done(const ChainResult& r) {
  for (size_t i = 0; i < deposit_jobs_.size(); ++i) {
    if (deposit_jobs_[i].user != r.user) continue;
    deposit_jobs_.erase(deposit_jobs_.begin() + static_cast<long>(i));
    break;
  }
  // Several instances: the channel's owner requests the ConfirmPending and deletes the job.
  if (!lease_owns(r.user)) return true;
  std::vector<Out> outs;
  if (!in_transaction([&] {
        Chan* ch = channel(r.user);
        if (!ch) {
          tx_failed_ = true;
          return;
        }
        ChannelUpdate c = channel_update_make(UpdateReason::ConfirmPending);
        std::memcpy(c.chainTx.transactionHash.bytes, r.tx.bytes, 32);
        add_request(*ch, c, true);  // ahead of the OpenThreads that wait for it
        if (!tx_failed_) pump(*ch, outs);
        std::string err;
        if (!tx_failed_ && !ok(ledger_->delete_deposit(ch->key), err)) {
          txerr_ = err;
          tx_failed_ = true;
        }
      }))
    return fenced_;  // fenced (several instances): the job stays stored; its owner confirms it
  publish_outs(outs);
  return true;
}

const ChainMark* Hub::mark(const Address& user) const {
  if (marks_.empty()) return nullptr;
  auto it = marks_.find(user);
  return it == marks_.end() ? nullptr : &it->second;
}

bool Hub::chain_results(std::vector<ChainResult>& results, std::vector<ChainResult>& facts) {
  for (ChainResult& r : results) {
    switch (r.kind) {
      case ChainResult::Kind::Facts: facts.push_back(std::move(r)); break;
      case ChainResult::Kind::DepositDone:
        // The job leaves the promised deposits now: a reading of a block before the
        // deposit's would count its amount as free reserve a second time.
        deposit_done_block_ = std::max(deposit_done_block_, r.block);
        if (reserve_known_ && reserve_block_ < r.block) reserve_known_ = false;
        if (!deposit_done(r)) return false;
        break;
      case ChainResult::Kind::Reserve: {
        if (r.known && r.block < deposit_done_block_) {
          if (cfg_.verbose)
            logf("info", "reserve reading of block " + std::to_string(r.block) + " ignored: before the deposit of block " +
                             std::to_string(deposit_done_block_));
          break;
        }
        reserve_known_ = r.known;
        if (!r.known) break;
        reserve_wei_ = r.wei;
        reserve_block_ = r.block;
        reserve_at_ms_ = now_ms();
        if (reserve_waiters_.empty()) break;
        // Channels whose collateral waited for a reading: their requests again.
        std::vector<Out> outs;
        std::set<std::string> waiters;
        waiters.swap(reserve_waiters_);
        if (!in_transaction([&] {
              for (const std::string& k : waiters) {
                Address u{};
                if (address_parse(k.c_str(), k.size(), u) != Status::Ok) continue;
                Chan* ch = channel(u);
                if (!ch) {
                  tx_failed_ = true;
                  return;
                }
                pump(*ch, outs);
                if (tx_failed_) return;
              }
            })) {
          if (!fenced_) return false;
          reserve_waiters_.insert(waiters.begin(), waiters.end());  // fenced: asked again at the next reading
          break;
        }
        publish_outs(outs);
        break;
      }
      case ChainResult::Kind::Marks:
        follow_chain(r);
        if (fatal_.load()) return false;
        break;
      case ChainResult::Kind::Disputed: {
        const std::string k = mqtt::topic_address(r.user);
        disputes_posted_.erase(k);
        if (r.done) threads_disputed_.insert(k);
        break;
      }
    }
  }
  return true;
}

void Hub::follow_chain(ChainResult& r) {
  marks_.clear();
  for (const auto& m : r.marks) marks_[m.first] = m.second;
  empty_tx_.clear();
  for (const auto& e : r.empty_tx) empty_tx_[e.first] = e.second;
  for (const ChainChange& c : r.changes) {
    const std::string who = json::address_text(c.user);
    logf(c.what == "open" ? "info" : "warn",
         "chain: channel " + who + " " + c.what +
             (c.mark.dispute ? ": no more updates are countersigned on it" : c.mark.emptied ? ": only EmptyChannel is countersigned on it" : ""));
    Chan* ch = lease_owns(c.user) ? channel(c.user) : nullptr;  // several instances: its owner's
    if (ch) status_dirty_.insert(ch);
  }
  for (const auto& kv : r.marks) {
    const ChainMark* m = mark(kv.first);
    Chan* ch = m && (m->dispute || m->emptied) && lease_owns(kv.first) ? channel(kv.first) : nullptr;
    if (ch && m->dispute) dispute_threads(*ch);
    if (ch && m->emptied) request_empty_channel(*ch);
    if (fatal_.load()) return;
  }
}

}  // namespace picopay::hub
