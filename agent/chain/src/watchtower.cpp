// The watchtower: answers stale exits with the latest double-signed state, challenges
// stale thread states, and empties channels and threads when their timers end.
#include "picopay/chain/watchtower.hpp"

#include <cstring>

namespace picopay::chain {

static std::string key_of(const Address& a) { return address_hex(a); }

bool Watchtower::ThreadKey::operator<(const ThreadKey& o) const {
  int c = std::memcmp(sender.bytes, o.sender.bytes, 20);
  if (c) return c < 0;
  c = std::memcmp(receiver.bytes, o.receiver.bytes, 20);
  if (c) return c < 0;
  return id < o.id;
}

void Watchtower::watch(const WatchedChannel& ch) { channels_[key_of(ch.user)] = ch; }

void Watchtower::on_event(const ChannelEvent& e) {
  switch (e.kind) {
    case EventKind::DidStartExitChannel:
      if (channels_.count(key_of(e.user))) {
        exiting_[key_of(e.user)] = true;
      } else if (lookup_) {
        exiting_[key_of(e.user)] = true;
        unresolved_[key_of(e.user)] = e.user;
      }
      break;
    case EventKind::DidStartExitThread:
    case EventKind::DidChallengeThread:
      thread_disputes_[ThreadKey{e.sender, e.receiver, e.threadId}] = e.txCount[0];
      break;
    case EventKind::DidEmptyChannel:
      // A channel emptied into ThreadDispute still has threads to settle.
      break;
    default:
      break;
  }
}

static WatchtowerAction act(const char* what, const Address& user, const Result<Receipt>& r) {
  WatchtowerAction a;
  a.what = what;
  a.user = user;
  a.ok = r.ok();
  if (r) a.gasUsed = r->gasUsed;
  else a.error = r.error().to_string();
  return a;
}

Result<std::vector<WatchtowerAction>> Watchtower::tick() {
  std::vector<WatchtowerAction> done;
  PPC_TRY(size_t n, poller_.poll([this](const ChannelEvent& e) { on_event(e); }));
  (void)n;
  PPC_TRY(Block now, cm_.wallet().rpc().block_by_number("latest"));

  // Channels the owner's store has to tell about (set_lookup).
  for (auto it = unresolved_.begin(); it != unresolved_.end();) {
    WatchedChannel w;
    bool found = false;
    if (!lookup_(it->second, w, found)) {
      ++it;  // read error: again next round
      continue;
    }
    if (found) channels_[it->first] = w;
    else exiting_.erase(it->first);  // not a channel the owner guards
    it = unresolved_.erase(it);
  }

  // Channel exits.
  for (auto it = exiting_.begin(); it != exiting_.end();) {
    if (unresolved_.count(it->first)) {
      ++it;
      continue;
    }
    const WatchedChannel& wc = channels_[it->first];
    PPC_TRY(OnchainChannel oc, cm_.channel(wc.user));
    if (oc.status != ChannelStatus::ChannelDispute) {
      it = exiting_.erase(it);
      continue;
    }
    bool newer = wc.latest && wc.latest->state.txCountGlobal > oc.txCountGlobal && wc.latest->state.timeout == 0;
    if (newer && now.timestamp < oc.channelClosingTime) {
      done.push_back(act("emptyChannelWithChallenge", wc.user, cm_.empty_channel_with_challenge(*wc.latest)));
    } else if (now.timestamp > oc.channelClosingTime) {
      done.push_back(act("emptyChannel", wc.user, cm_.empty_channel(wc.user)));
    }
    ++it;
  }

  // Thread disputes.
  for (auto it = thread_disputes_.begin(); it != thread_disputes_.end();) {
    const ThreadKey& k = it->first;
    PPC_TRY(OnchainThread ot, cm_.thread(k.sender, k.receiver, k.id));
    bool settled_all = true;
    for (auto& [user_key, wc] : channels_) {
      for (const WatchedThread& wt : wc.threads) {
        const ThreadState& t = wt.initial.state;
        if (t.sender != k.sender || t.receiver != k.receiver || t.threadId != k.id) continue;
        if (now.timestamp < ot.threadClosingTime) {
          settled_all = false;
          // The contract takes a sender-signed state that is newer or pays the receiver
          // more (a sender could sign a huge txCount that pays the receiver nothing), as
          // long as the receiver's balances do not go down.
          if (wt.latest) {
            const ThreadState& l = wt.latest->state;
            const bool better = l.txCount > ot.txCount || l.balanceWeiReceiver > ot.weiReceiver ||
                                l.balanceTokenReceiver > ot.tokenReceiver;
            const bool not_worse = l.balanceWeiReceiver >= ot.weiReceiver && l.balanceTokenReceiver >= ot.tokenReceiver;
            if (better && not_worse) {
              auto r = cm_.challenge_thread(*wt.latest);
              done.push_back(act("challengeThread", wc.user, r));
              if (r) {
                ot.txCount = l.txCount;
                ot.weiReceiver = l.balanceWeiReceiver;
                ot.tokenReceiver = l.balanceTokenReceiver;
              }
            }
          }
          continue;
        }
        bool emptied = (wc.user == k.sender) ? ot.emptiedSender : ot.emptiedReceiver;
        if (emptied) continue;
        PPC_TRY(OnchainChannel oc, cm_.channel(wc.user));
        if (oc.status != ChannelStatus::ThreadDispute) {
          settled_all = false;  // its channel dispute has not reached the thread phase yet
          continue;
        }
        PPC_TRY(Hash32 leaf, Result<Hash32>(thread_hash(t)));
        auto proof = thread_proof(wt.rootLeaves, leaf);
        if (!proof) {
          done.push_back(act("emptyThread", wc.user, Result<Receipt>(proof.error())));
          continue;
        }
        auto r = cm_.empty_thread(wc.user, wt.initial, *proof);
        if (!r) settled_all = false;
        done.push_back(act("emptyThread", wc.user, r));
      }
    }
    if (settled_all && now.timestamp >= ot.threadClosingTime) it = thread_disputes_.erase(it);
    else ++it;
  }
  return done;
}

}  // namespace picopay::chain
