// picopay-hub engine core (engine_core.hpp): the reorder buffer, the user's updates
// validated with the core's channel_accept and the signing policy, countersigned; the
// hub's requests (queue, sending, RequestNack backoff) and the collateral a payee channel
// needs for its thread mirrors. Pure: the channel view and Effects change, nothing else.
#include "engine_core.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "hub_internal.hpp"
#include "picopay/agent/collateral_request.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/codec.hpp"
#include "picopay/mqtt/protocol.hpp"

namespace picopay::hub {

Bytes encode_state(const SignedChannelState& s) {
  uint8_t buf[kMaxChannelStateWire];
  size_t n = 0;
  if (encode_channel_state(s, buf, sizeof buf, &n) != Status::Ok) return {};
  return Bytes(buf, buf + n);
}

Bytes encode_threads(const Chan& ch) {
  Bytes out;
  for (size_t i = 0; i < ch.thread_count; ++i) {
    SignedThreadState st{};
    st.state = ch.threads[i];
    st.hasSigA = false;
    uint8_t buf[kMaxThreadStateWire];
    size_t n = 0;
    if (encode_thread_state(st, buf, sizeof buf, &n) != Status::Ok) continue;
    out.push_back(static_cast<uint8_t>(n >> 8));
    out.push_back(static_cast<uint8_t>(n & 0xff));
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

bool hub_withdrawal(const ChannelUpdate& u) {
  return u.reason == UpdateReason::ProposePendingWithdrawal &&
         (!u.withdrawal.withdrawalWeiHub.is_zero() || !u.withdrawal.withdrawalTokenHub.is_zero()) &&
         u.withdrawal.withdrawalWeiUser.is_zero() && u.withdrawal.withdrawalTokenUser.is_zero();
}

namespace {

const char* reason_text(UpdateReason r) { return update_reason_name(r) ? update_reason_name(r) : "?"; }

U256 sum(const U256& a, const U256& b) {
  U256 r{};
  return u256_add(a, b, r) == Status::Ok ? r : a;
}

constexpr uint64_t kReserveFreshMs = 10000;
constexpr uint64_t kRequestClockSkewSeconds = 300;
constexpr uint64_t kReserveWarnEveryMs = 60000;

// One step: the environment it reads and the effects it appends to.
class Step {
 public:
  Step(const EngineEnv& env, Effects& fx) : env_(env), fx_(fx) {}

  void log(const char* level, std::string text) { fx_.logs.push_back({level, std::move(text)}); }
  const ChainMark* mark(const Address& user) const { return env_.mark ? env_.mark(user) : nullptr; }

  // ---------------------------------------------------------------- replies
  void reply_out(const Chan& ch, uint64_t tx, Bytes payload) {
    Out o;
    o.topic = mqtt::topic_reply(ch.user);
    o.payload = std::move(payload);
    o.corr = tx;
    o.has_corr = true;
    fx_.replies.push_back(std::move(o));
  }

  void nack(const Chan& ch, uint64_t tx, Status s) {
    Reply r = reply_make(ReplyKind::Nack);
    r.txCountGlobal = tx <= kMaxCounter ? tx : 0;
    r.status = s == Status::Ok ? Status::BadArgs : s;
    r.state = ch.latest;
    fx_.metrics.push_back({MetricEvent::Kind::NackSent, UpdateReason::Payment, r.status});
    if (env_.verbose) log("info", ch.key + ": Nack tx " + std::to_string(tx) + " " + status_name(r.status));
    Out o;
    o.topic = mqtt::topic_reply(ch.user);
    o.payload = reply_bytes(r);
    o.corr = r.txCountGlobal;
    o.has_corr = true;
    if (!o.payload.empty()) fx_.replies.push_back(std::move(o));
  }

  void sync(Chan& ch) {
    Reply r = reply_make(ReplyKind::Sync);
    r.txCountGlobal = ch.latest.state.txCountGlobal;
    r.state = ch.latest;
    reply_out(ch, r.txCountGlobal, reply_bytes(r));
    // The user (re)connected: the outstanding request again (after the Sync, so the
    // session is synced when it arrives).
    Out q;
    if (ch.outstanding() && engine_request_out(ch, env_, q)) fx_.replies.push_back(std::move(q));
  }

  // ---------------------------------------------------------------- updates
  // The stored answer at (ch, tx): this step's own writes first, then the ledger's.
  bool find_stored(const Chan& ch, uint64_t tx, Bytes& req, Bytes& rep, bool& found) {
    found = false;
    const std::string key = ch.key;
    for (auto it = fx_.writes.rbegin(); it != fx_.writes.rend(); ++it) {
      const auto* w = std::get_if<write::InsertUpdate>(&*it);
      if (w && w->key == key && w->tx == tx) {
        req = w->request;
        rep = w->reply;
        found = true;
        return true;
      }
    }
    if (!env_.find_update) return true;
    std::string err;
    if (!env_.find_update(key, tx, req, rep, found, err)) {
      fx_.read_error = err.empty() ? key + ": cannot read a stored update" : err;
      return false;
    }
    return true;
  }

  void update(Chan& ch, const Bytes& payload) {
    ChannelUpdate u{};
    Status s = decode_channel_update(payload.data(), payload.size(), u);
    if (s != Status::Ok) {
      nack(ch, 0, s);
      return;
    }
    const uint64_t latest = ch.latest.state.txCountGlobal;
    if (u.txCountGlobal <= latest) {
      // Duplicate or replay: the same bytes get the stored answer again; anything else is
      // a conflict and is refused with our latest state.
      Bytes req, rep;
      bool found = false;
      if (!find_stored(ch, u.txCountGlobal, req, rep, found)) return;
      if (found && req == payload) reply_out(ch, u.txCountGlobal, std::move(rep));
      else nack(ch, u.txCountGlobal, Status::BadTxCount);
      return;
    }
    if (ch.parked && !ch.parked->replaying) {
      // An update of this channel waits for the chain: this one waits behind it (a re-sent
      // copy is dropped: no answer until the chain's, and never a second signature).
      park(ch, payload);
      return;
    }
    if (u.txCountGlobal == latest + 2 && channel_is_skip(ch.latest.state, u)) {
      // The user's Invalidation of its half-signed latest + 1 (a skip): it follows the
      // latest state directly.
      apply(ch, u, payload);
      return;
    }
    if (u.txCountGlobal > latest + 1) {
      // Early (reordered) delivery: keep it unsigned in memory until the gap fills.
      if (u.txCountGlobal - latest <= kReorderWindow) {
        size_t total = 0;
        for (auto& f : ch.future) total += f.second.size();
        if (total < kFutureMax) {
          auto& v = ch.future[u.txCountGlobal];
          bool dup = false;
          for (auto& b : v) dup = dup || b == payload;
          if (!dup) v.push_back(payload);
          return;
        }
      }
      nack(ch, u.txCountGlobal, Status::BadTxCount);
      return;
    }
    apply(ch, u, payload);
    if (fx_.failed()) return;
    // Drain the reorder buffer.
    while (!ch.future.empty()) {
      auto it = ch.future.begin();
      const uint64_t next = ch.latest.state.txCountGlobal + 1;
      if (it->first < next) {
        for (auto& b : it->second) {
          ChannelUpdate old{};
          if (decode_channel_update(b.data(), b.size(), old) == Status::Ok) nack(ch, old.txCountGlobal, Status::BadTxCount);
        }
        ch.future.erase(it);
        continue;
      }
      if (it->first != next) break;
      auto cands = std::move(it->second);
      ch.future.erase(it);
      bool applied = false;
      for (auto& b : cands) {
        ChannelUpdate fu{};
        if (decode_channel_update(b.data(), b.size(), fu) != Status::Ok) continue;
        if (!applied) {
          applied = apply(ch, fu, b);
          if (fx_.failed()) return;
        } else {
          nack(ch, fu.txCountGlobal, Status::BadTxCount);
        }
      }
    }
  }

  // Whether the update was countersigned.
  bool apply(Chan& ch, const ChannelUpdate& u, const Bytes& payload) {
    if (ch.parked && !ch.parked->replaying) {
      park(ch, payload);  // behind the update that waits for the chain
      return false;
    }
    ChannelContext ctx{env_.hub};
    ThreadSet ts = ch.set();
    ChannelState next{};
    Hash32 h{};
    if (Status cs = engine_chain_refusal(ch, u, env_); cs != Status::Ok) {
      log("warn", ch.key + ": refused the user's " + reason_text(u.reason) + " tx " + std::to_string(u.txCountGlobal) +
                      ": " + status_name(cs) + " (" + ChainFollow::describe(*mark(ch.user)) + ")");
      nack(ch, u.txCountGlobal, cs);
      // Emptied on chain: the user's proposal at latest + 1 will never be countersigned
      // (only EmptyChannel is); its Invalidation lets the user's session give it up so the
      // requested EmptyChannel can follow (chain_empty.cpp).
      const ChainMark* m = mark(ch.user);
      if (m->emptied && !m->dispute && u.txCountGlobal == ch.latest.state.txCountGlobal + 1 &&
          channel_accept(ctx, *env_.signer, Party::Hub, ch.latest.state, ts, u, next, h) == Status::Ok)
        request_skip(ch);
      ch.compact();
      return false;
    }
    const PaymentJob* pre = env_.precomputed ? env_.precomputed(ch, u, payload) : nullptr;
    bool want_skip = false;
    Status s = pre != nullptr ? Status::Ok : channel_accept(ctx, *env_.signer, Party::Hub, ch.latest.state, ts, u, next, h);
    if (pre != nullptr) {
      next = pre->next;
      h = pre->hash;
    } else if (s == Status::Ok) {
      bool must_park = false;
      s = check_policy(ch, u, must_park);
      if (fx_.failed()) return false;
      if (must_park) {
        // The chain must answer first (chain worker): no reply now.
        ch.compact();
        park(ch, payload);
        return false;
      }
      // The user signed it (channel_accept checked its signature) and the hub will never
      // countersign it: after the Nack, ask the user to invalidate it, so its session can
      // go on.
      want_skip = s != Status::Ok && u.txCountGlobal == ch.latest.state.txCountGlobal + 1 && refused_for_good(s);
    }
    // Once the Invalidation of latest + 1 is requested, nothing is countersigned there (the
    // user's session may already have given its proposal up for the Invalidation).
    if (s == Status::Ok && !channel_is_skip(ch.latest.state, u) && skip_requested(ch)) s = Status::NotRequested;
    if (s != Status::Ok) {
      if (u.reason != UpdateReason::Payment || env_.verbose)
        log("warn", ch.key + ": refused the user's " + reason_text(u.reason) + " tx " + std::to_string(u.txCountGlobal) +
                        ": " + status_name(s));
      fx_.metrics.push_back({MetricEvent::Kind::Refused, u.reason, s});
      nack(ch, u.txCountGlobal, s);
      ch.compact();
      if (want_skip) request_skip(ch);
      return false;
    }
    SignedChannelState signed_state{};
    signed_state.state = next;
    signed_state.hasSigUser = true;
    signed_state.sigUser = u.sig;
    signed_state.hasSigHub = true;
    if (pre != nullptr) {
      signed_state.sigHub = pre->sigHub;
    } else if (env_.signer->sign_eth(*env_.key, h, signed_state.sigHub) != Status::Ok) {
      ch.compact();
      nack(ch, u.txCountGlobal, Status::CryptoUnavailable);
      return false;
    }
    Status ts_s = thread_set_apply(ts, u);
    if (ts_s != Status::Ok) {
      ch.compact();
      nack(ch, u.txCountGlobal, ts_s);
      return false;
    }
    ch.thread_count = ts.count;
    ch.compact();
    const ChannelState prev_state = ch.latest.state;
    ch.latest = signed_state;
    if (ch.legacy_tx != 0 && ch.latest.state.txCountGlobal >= ch.legacy_tx) {
      ch.legacy_tx = 0;
      ch.legacy_update.reset();
      ch.legacy_unsaved = true;  // the legacy row goes with the next write of the requests
    }
    Reply r = reply_make(ReplyKind::Ack);
    r.txCountGlobal = u.txCountGlobal;
    r.sig = signed_state.sigHub;
    Bytes rep = reply_bytes(r);
    Bytes st_wire = encode_state(signed_state);
    fx_.writes.emplace_back(write::InsertUpdate{ch.key, u.txCountGlobal, payload, rep, st_wire});
    save_channel(ch);
    fx_.writes.emplace_back(
        write::InsertHistory{ch.key, history_row(history_entry(prev_state, next, u, env_.unix_now))});
    reply_out(ch, u.txCountGlobal, std::move(rep));
    fx_.metrics.push_back({MetricEvent::Kind::Countersigned, u.reason, Status::Ok});
    if (env_.verbose)
      log("info", ch.key + ": " + reason_text(u.reason) + " tx " + std::to_string(u.txCountGlobal) + " signed");
    // A request the user fulfilled is done (the outstanding one or one still queued).
    bool changed = false;
    for (size_t i = 0; i < ch.requests.size(); ++i) {
      if (!policy_update_matches(ch.requests[i].update, u)) continue;
      if (i == 0 && ch.requests[0].id != 0) ch.resend_at_ms = 0;
      ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
      changed = true;
      break;
    }
    // The channel records the empty channel now: any other EmptyChannel request is moot
    // (one asked again, with another transaction hash, must not empty a new deposit).
    for (size_t i = 0; u.reason == UpdateReason::EmptyChannel && i < ch.requests.size();) {
      if (ch.requests[i].update.reason != UpdateReason::EmptyChannel) {
        ++i;
        continue;
      }
      if (i == 0 && ch.requests[0].id != 0) ch.resend_at_ms = 0;
      ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
      changed = true;
    }
    // A collateral deposit the hub requested, now countersigned: a job for the chain,
    // stored in the same transaction as the countersignature, so a crash before
    // hubAuthorizedUpdate (or before the ConfirmPending) does not lose it.
    // Likewise a hub-only withdrawal (collateral the hub takes back, docs/flows.md): the
    // hub executes the user-signed state with hubAuthorizedUpdate.
    if ((u.reason == UpdateReason::ProposePendingDeposit &&
         (!u.deposit.depositWeiHub.is_zero() || !u.deposit.depositTokenHub.is_zero())) ||
        hub_withdrawal(u)) {
      fx_.writes.emplace_back(write::SaveDeposit{ch.key, signed_state.state.txCountGlobal, std::move(st_wire)});
      fx_.deposits.push_back(DepositJob{ch.user, signed_state});  // to the chain worker after COMMIT
    }
    if (changed) engine_save_requests(ch, fx_);
    note_activity(ch, u);
    after_accept(ch, u);
    pump(ch);
    return true;
  }

  void save_channel(Chan& ch) {
    fx_.writes.emplace_back(
        write::SaveChannel{ch.key, ch.latest.state.txCountGlobal, encode_state(ch.latest), encode_threads(ch)});
    ch.dirty = true;
  }

  // After a countersigned update: activity time, the payee's received flow.
  void note_activity(Chan& ch, const ChannelUpdate& u) {
    const uint64_t now = env_.now_ms;
    ch.active_ms = now;
    if (u.reason == UpdateReason::ProposePendingDeposit &&
        (!u.deposit.depositWeiHub.is_zero() || !u.deposit.depositTokenHub.is_zero()))
      ch.collateralized = true;
    const ThreadState& t = u.thread.thread.state;
    if (u.reason == UpdateReason::CloseThread && t.receiver == ch.user && !t.balanceWeiReceiver.is_zero()) {
      if (!ch.flow) ch.flow = std::make_unique<Chan::PayeeFlow>();
      ch.flow->received.emplace_back(now, t.balanceWeiReceiver);
    }
    while (ch.flow && !ch.flow->received.empty() && now - ch.flow->received.front().first > env_.collateral_window_ms)
      ch.flow->received.pop_front();
  }

  void after_accept(const Chan& ch, const ChannelUpdate& u) {
    const ThreadState& t = u.thread.thread.state;
    if (u.reason == UpdateReason::OpenThread && t.sender == ch.user) {
      // The payer opened a thread: the hub asks the payee to open its mirror (hub funds
      // locked in the payee's channel).
      ChannelUpdate p = channel_update_make(UpdateReason::OpenThread);
      p.thread = u.thread;
      fx_.requests_for_other_channels.push_back({t.receiver, p});
    } else if (u.reason == UpdateReason::CloseThread && t.receiver == ch.user) {
      // The payee closed a thread: the hub asks the payer to close it with the same final
      // state (the hub collects what it paid the payee).
      ChannelUpdate p = channel_update_make(UpdateReason::CloseThread);
      p.thread = u.thread;
      fx_.requests_for_other_channels.push_back({t.sender, p});
    }
  }

  // ---------------------------------------------------------------- parking
  void park(Chan& ch, const Bytes& payload) {
    const bool ask = !ch.parked || ch.parked->replaying;
    if (!ch.parked) ch.parked = std::make_unique<Chan::Parked>();
    Chan::Parked& p = *ch.parked;
    if (ask) {
      p.replaying = false;
      p.answered = false;
      ChainJob j;
      j.kind = ChainJob::Kind::ReadChannel;
      j.user = ch.user;
      fx_.chain_jobs.push_back(std::move(j));
      if (env_.verbose) log("info", ch.key + ": an update waits for the chain's answer");
    }
    for (const auto& b : p.updates)
      if (b == payload) return;  // a re-sent copy
    if (p.updates.size() >= kFutureMax) return;  // the device re-sends it later
    p.updates.push_back(payload);
  }

  void replay_parked(Chan& ch, const ChainFacts& f) {
    if (!ch.parked) return;  // nothing waits (answered already)
    std::vector<Bytes> updates = std::move(ch.parked->updates);
    ch.parked->updates.clear();
    ch.parked->replaying = true;
    ch.parked->answered = true;
    ch.parked->facts = f;
    if (f.known && f.status == ChainChannelStatus::Open && !f.emptied && f.txCountChain > ch.open_read_tx_count_chain)
      ch.open_read_tx_count_chain = f.txCountChain;
    for (size_t i = 0; i < updates.size(); ++i) {
      if (ch.parked && !ch.parked->replaying) {
        // Parked again (a second update asserting chain facts): the rest waits behind it.
        ch.parked->updates.push_back(updates[i]);
        continue;
      }
      update(ch, updates[i]);
      if (fx_.failed()) return;
    }
    if (ch.parked && ch.parked->replaying) ch.parked.reset();
  }

  // ---------------------------------------------------------------- policy
  // The chain facts of `ch` for an update asserting one: the chain worker's answer for
  // this update (ch.parked), else must_park and the update waits for one (dev:
  // synthesised for ConfirmPending with --dev-skip-chain-checks). `has_access` false: no
  // chain at all.
  ChainFacts chain_facts(const Chan& ch, UpdateReason reason, bool& has_access, bool& must_park) {
    ChainFacts f{};
    f.known = false;
    has_access = env_.has_chain;
    const bool asserts = reason == UpdateReason::ConfirmPending || reason == UpdateReason::Invalidation ||
                         reason == UpdateReason::EmptyChannel;
    if (!asserts) return f;
    if (!env_.has_chain) {
      if (env_.dev_skip_chain_checks && reason == UpdateReason::ConfirmPending) {
        // DEV: as if the chain showed the pending operations executed.
        has_access = true;
        f.known = true;
        f.txCountGlobal = ch.latest.state.txCountGlobal;
        f.txCountChain = ch.latest.state.txCountChain;
        f.status = ChainChannelStatus::Open;
        f.emptied = false;
        f.blockTime = env_.unix_now;
      }
      return f;
    }
    // The chain worker's read of the channel, made after this update arrived (each answer
    // serves one update); without one the update waits for it.
    if (ch.parked && ch.parked->replaying && ch.parked->answered) {
      ch.parked->answered = false;
      return ch.parked->facts;
    }
    must_park = true;
    return f;
  }

  // The hub-side checks of a user proposal that channel_accept passed: the signing policy
  // (policy_hub_countersigns with the channel's requests, the rate, inventory and chain
  // facts) and the cross-channel rules of threads.
  Status check_policy(Chan& ch, const ChannelUpdate& u, bool& must_park) {
    const ChannelState& prev = ch.latest.state;
    if (ch.legacy_tx != 0 && u.txCountGlobal == ch.legacy_tx &&
        (ch.requests.empty() || !ch.legacy_update || !policy_update_matches(*ch.legacy_update, u)))
      return Status::NotRequested;  // only the update of the earlier hub-signed proposal here, as signed
    std::vector<ChannelUpdate> reqs;
    reqs.reserve(ch.requests.size());
    for (const auto& r : ch.requests) reqs.push_back(r.update);
    HubPolicyInput in{};
    in.requests = reqs.data();
    in.requestCount = reqs.size();
    in.rate = env_.rate;
    in.now = env_.unix_now;
    // Inventory: what the hub holds in this channel beyond what its thread mirrors need.
    U256 mtok = U256::zero();
    const U256 mwei = mirrored(ch, &mtok);
    if (u256_sub(prev.balanceWeiHub, mwei, in.inventoryWei) != Status::Ok) in.inventoryWei = U256::zero();
    if (u256_sub(prev.balanceTokenHub, mtok, in.inventoryToken) != Status::Ok) in.inventoryToken = U256::zero();
    in.chain = chain_facts(ch, u.reason, in.hasChainAccess, must_park);
    if (must_park) return Status::Ok;  // the caller parks the update
    if (!in.chain.known && mark(ch.user) && engine_mark_current(ch, *mark(ch.user)))
      in.chain = ChainFollow::facts(*mark(ch.user));
    in.limits = policy_limits_default();
    in.limits.maxSpreadBps = 0;  // only at the rate it publishes (rate.cpp; docs/tokens.md)
    Status s = policy_hub_countersigns(in, prev, u);
    if (s != Status::Ok) return s;

    const ThreadState& t = u.thread.thread.state;
    if (u.reason == UpdateReason::OpenThread && t.sender == ch.user) {
      // Payer channel: the hub must be able to lock the same amount in the receiver's
      // channel. Wei it lacks is deposited first (chain connection) and the mirror waits in
      // the stored requests; without a chain, or for tokens (the hub deposits no tokens),
      // the payer's OpenThread is refused before the hub countersigns it, so the payer's
      // funds are never locked for a thread that cannot be mirrored.
      if (t.receiver == env_.hub || t.receiver.is_zero()) return Status::WrongParty;  // nobody to mirror it to
      std::string err;
      Chan* payee = env_.peer ? env_.peer(t.receiver, err) : nullptr;
      if (!payee) {
        fx_.read_error = err.empty() ? "cannot read channel " + mqtt::topic_address(t.receiver) : err;
        return Status::IoError;
      }
      if (payee == &ch) return Status::Underflow;
      // The payee's mirrors: its stored requests and those this step routes to it.
      U256 tok = U256::zero(), wei = mirrored(*payee, &tok), need_wei{}, need_tok{};
      for (const RoutedRequest& q : fx_.requests_for_other_channels)
        if (q.to == payee->user) add_mirror(q.update, payee->user, wei, tok);
      if (u256_add(wei, t.balanceWeiSender, need_wei) != Status::Ok ||
          u256_add(tok, t.balanceTokenSender, need_tok) != Status::Ok)
        return Status::Overflow;
      if (!env_.has_chain &&
          (need_tok > payee->latest.state.balanceTokenHub || need_wei > payee->latest.state.balanceWeiHub)) {
        log("warn", ch.key + ": OpenThread refused: payee " + payee->key + " lacks hub collateral (" +
                        json::amount_text(need_wei) + " wei and " + json::amount_text(need_tok) + " tokens needed, " +
                        json::amount_text(payee->latest.state.balanceWeiHub) + " wei and " +
                        json::amount_text(payee->latest.state.balanceTokenHub) +
                        " tokens held, no --rpc-url to deposit)");
        return Status::Underflow;
      }
    }
    if (u.reason == UpdateReason::CloseThread && t.receiver == ch.user) {
      // Payee channel: the payer's channel must still hold the thread, or the hub would pay
      // the payee without being able to collect from the payer.
      std::string err;
      Chan* payer = env_.peer ? env_.peer(t.sender, err) : nullptr;
      if (!payer) {
        fx_.read_error = err.empty() ? "cannot read channel " + mqtt::topic_address(t.sender) : err;
        return Status::IoError;
      }
      if (payer == &ch) return Status::Unauthorized;
      const long found = thread_set_find(payer->set(), t.sender, t.receiver, t.threadId);
      payer->compact();
      if (found < 0) return Status::ThreadNotFound;
    }
    return Status::Ok;
  }

  // Adds the hub wei and tokens an OpenThread mirror in `user`'s channel locks.
  static void add_mirror(const ChannelUpdate& q, const Address& user, U256& wei, U256& tok) {
    if (q.reason != UpdateReason::OpenThread || q.thread.thread.state.receiver != user) return;
    U256 a{};
    if (u256_add(wei, q.thread.thread.state.balanceWeiSender, a) == Status::Ok) wei = a;
    if (u256_add(tok, q.thread.thread.state.balanceTokenSender, a) == Status::Ok) tok = a;
  }

  // Hub wei (and tokens) the OpenThread mirrors requested in `ch` will lock.
  static U256 mirrored(const Chan& ch, U256* tokens = nullptr) {
    U256 wei = U256::zero(), tok = U256::zero();
    for (const auto& r : ch.requests) add_mirror(r.update, ch.user, wei, tok);
    if (tokens) *tokens = tok;
    return wei;
  }

  // Payee channel: if the OpenThread mirrors requested need more hub wei than the channel
  // holds plus deposits on their way, requests a deposit of the shortfall (rounded up to a
  // multiple of the configured collateral) ahead of them.
  void ensure_collateral(Chan& payee) {
    if (!env_.has_chain) return;
    // Wei and tokens alike (docs/tokens.md): what the mirrored threads need against what the
    // hub holds in the channel, deposited in multiples of the configured chunk.
    U256 need_tok = U256::zero();
    const U256 need_wei = mirrored(payee, &need_tok);
    U256 have_wei = payee.latest.state.balanceWeiHub, have_tok = payee.latest.state.balanceTokenHub, t{};
    const ChannelState& ls = payee.latest.state;
    bool in_flight = !ls.pendingDepositWeiHub.is_zero() || !ls.pendingDepositTokenHub.is_zero();
    if (u256_add(have_wei, ls.pendingDepositWeiHub, t) == Status::Ok) have_wei = t;
    if (u256_add(have_tok, ls.pendingDepositTokenHub, t) == Status::Ok) have_tok = t;
    for (const auto& r : payee.requests) {
      const ChannelUpdate& q = r.update;
      if (q.reason == UpdateReason::ConfirmPending) in_flight = true;
      if (q.reason != UpdateReason::ProposePendingDeposit) continue;
      in_flight = true;
      if (u256_add(have_wei, q.deposit.depositWeiHub, t) == Status::Ok) have_wei = t;
      if (u256_add(have_tok, q.deposit.depositTokenHub, t) == Status::Ok) have_tok = t;
    }
    if (env_.deposit_jobs)
      for (const auto& j : *env_.deposit_jobs)
        if (j.user == payee.user) in_flight = true;
    if ((need_wei <= have_wei && need_tok <= have_tok) || in_flight) return;  // the next round starts when it lands
    auto amount_for = [](const U256& need, const U256& have, const U256& chunk) {
      U256 shortfall{}, amount{}, x{};
      if (need <= have || u256_sub(need, have, shortfall) != Status::Ok) return U256::zero();
      amount = chunk.is_zero() ? shortfall : chunk;
      for (int i = 0; i < 4096 && amount < shortfall; ++i)
        if (u256_add(amount, chunk, x) == Status::Ok) amount = x;
      return amount < shortfall ? shortfall : amount;
    };
    ChannelUpdate p = channel_update_make(UpdateReason::ProposePendingDeposit);
    p.deposit.depositWeiHub = amount_for(need_wei, have_wei, env_.collateral_wei);
    p.deposit.depositTokenHub = amount_for(need_tok, have_tok, env_.collateral_tokens);
    // The reserve on chain is checked before anything is promised (logged with the command
    // that funds it when short).
    if (!p.deposit.depositWeiHub.is_zero() && !engine_reserve_allows(p.deposit.depositWeiHub, payee.key, env_, fx_))
      return;
    log("info", payee.key + ": requesting a deposit of " + json::amount_text(p.deposit.depositWeiHub) + " wei and " +
                    json::amount_text(p.deposit.depositTokenHub) +
                    " token base units of hub collateral for threads to mirror (" + json::amount_text(need_wei) +
                    " wei, " + json::amount_text(need_tok) + " tokens; held " + json::amount_text(have_wei) + " wei, " +
                    json::amount_text(have_tok) + " tokens)");
    p.deposit.timeout = env_.unix_now + kDepositTimeoutSeconds;  // set again when it is sent
    engine_add_request(payee, p, true, fx_);
  }

  // ---------------------------------------------------------------- requests
  // Whether `u` applies to the channel's latest state now (channel_next_state).
  Status request_applies(Chan& ch, const ChannelUpdate& u) { return engine_request_applies(ch, u, env_.hub); }

  void schedule_resend(Chan& ch, uint64_t delay_ms) {
    ch.resend_at_ms = env_.now_ms + delay_ms;
    fx_.timer = true;
  }

  void pump(Chan& ch) {
    bool changed = false;
    if (ch.outstanding()) {
      // Still wanted? A request that can no longer apply to the latest state (e.g. the user
      // confirmed the deposit itself) is dropped: the user's session proposes on the same
      // latest state, so no proposal of it can be in flight.
      const Status s = request_applies(ch, ch.requests.front().update);
      if (s == Status::Ok || waits(ch.requests.front().update, s)) return;
      log("warn", ch.key + ": request " + std::to_string(ch.requests.front().id) + " (" +
                      update_reason_name(ch.requests.front().update.reason) + ") no longer applies (" +
                      status_name(s) + "): dropped");
      ch.requests.erase(ch.requests.begin());
      ch.resend_at_ms = 0;
      changed = true;
    }
    // The first request that applies now goes out; an OpenThread waiting for collateral (or
    // anything waiting for a pending operation) stays.
    bool waiting_thread = false;
    const uint64_t now = env_.now_ms;
    for (size_t i = 0; i < ch.requests.size();) {
      const ChannelUpdate q = ch.requests[i].update;
      if (ch.requests[i].not_before_ms > now && ch.requests[i].nacked_at_tx == ch.latest.state.txCountGlobal) {
        fx_.timer = true;  // refused at this state: again after its backoff (request_timers)
        ++i;
        continue;
      }
      const Status s = request_applies(ch, q);
      if (s == Status::Ok) {
        Request r = ch.requests[i];
        ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
        // A fresh timeout, except for the earlier hub-signed proposal while its txCountGlobal
        // is still ahead: the hub's signature on that state is out, so exactly that state
        // (its timeout included) is the only one it may sign there.
        const bool legacy =
            ch.legacy_tx != 0 && ch.legacy_update && policy_update_matches(r.update, *ch.legacy_update);
        if (!legacy && r.update.reason == UpdateReason::ProposePendingDeposit)
          r.update.deposit.timeout = env_.unix_now + kDepositTimeoutSeconds;
        if (!legacy && r.update.reason == UpdateReason::ProposePendingWithdrawal)
          r.update.withdrawal.timeout = env_.unix_now + kDepositTimeoutSeconds;
        r.id = ++ch.last_request_id;
        ch.requests.insert(ch.requests.begin(), r);
        engine_save_requests(ch, fx_);  // the id is stored before the request leaves (after COMMIT)
        Out o;
        if (engine_request_out(ch, env_, o)) fx_.replies.push_back(std::move(o));
        else log("ERROR", ch.key + ": cannot sign request " + std::to_string(r.id));
        schedule_resend(ch, kResendMs);
        if (env_.verbose) log("info", ch.key + ": request " + std::to_string(r.id) + " " + update_reason_name(r.update.reason));
        return;
      }
      if (waits(q, s)) {
        waiting_thread = waiting_thread || q.reason == UpdateReason::OpenThread;
        ++i;
        continue;
      }
      log("ERROR", ch.key + ": requested " + update_reason_name(q.reason) + " can never apply (" + status_name(s) +
                       "): dropped");
      ch.requests.erase(ch.requests.begin() + static_cast<long>(i));
      changed = true;
    }
    if (changed) engine_save_requests(ch, fx_);
    if (waiting_thread) {
      const size_t before = ch.requests.size();
      ensure_collateral(ch);
      if (ch.requests.size() != before) pump(ch);
    }
  }

  // Whether a skip (Invalidation of the half-signed state latest + 1) is requested in `ch`:
  // then nothing else is countersigned at latest + 1.
  static bool skip_requested(const Chan& ch) {
    for (const auto& r : ch.requests)
      if (channel_is_skip(ch.latest.state, r.update)) return true;
    return false;
  }

  // After refusing the user's valid proposal at latest + 1 for good: requests its
  // Invalidation (docs/mqtt-protocol.md), ahead of everything.
  void request_skip(Chan& ch) {
    if (skip_requested(ch)) return;
    ChannelUpdate iv = channel_update_make(UpdateReason::Invalidation);
    iv.invalidation.previousValidTxCount = ch.latest.state.txCountGlobal;
    iv.invalidation.lastInvalidTxCount = ch.latest.state.txCountGlobal + 1;
    if (request_applies(ch, iv) != Status::Ok) return;  // not on pending operations: a plain Nack
    if (ch.outstanding()) {
      ch.requests.front().id = 0;  // overtaken by the skip: a new id when it is sent again
      ch.resend_at_ms = 0;
    }
    Request r;
    r.update = iv;
    ch.requests.insert(ch.requests.begin(), r);
    engine_save_requests(ch, fx_);
    pump(ch);
  }

  // A payee's signed collateral request (picopay/agent/collateral_request.hpp).
  void collateral(Chan& ch, const Bytes& payload) {
    U256 expect{};
    uint64_t t = 0;
    std::string err;
    if (!agent::collateral_request_parse(*env_.signer, std::string(payload.begin(), payload.end()), env_.contract,
                                         ch.user, expect, t, err)) {
      log("warn", ch.key + ": " + err + ": ignored");
      return;
    }
    const uint64_t now = env_.unix_now;
    if (t + kRequestClockSkewSeconds < now || t > now + kRequestClockSkewSeconds ||
        (ch.flow && t <= ch.flow->collateral_time)) {
      log("warn", ch.key + ": collateral request with time " + std::to_string(t) + " (stale, early or replayed): ignored");
      return;
    }
    if (!ch.flow) ch.flow = std::make_unique<Chan::PayeeFlow>();
    ch.flow->collateral_time = t;
    if (!env_.has_chain) {
      log("warn", ch.key + ": collateral request: no --rpc-url, the hub deposits nothing");
      return;
    }
    // Size: what the payee expects or what it received in the flow window, whichever is
    // more, within [collateral_wei, collateral_max_wei].
    U256 flow = U256::zero();
    for (const auto& f : ch.flow->received) flow = sum(flow, f.second);
    U256 target = expect < flow ? flow : expect;
    if (target < env_.collateral_wei) target = env_.collateral_wei;
    if (!env_.collateral_max.is_zero() && env_.collateral_max < target) target = env_.collateral_max;
    U256 have = sum(ch.latest.state.balanceWeiHub, ch.latest.state.pendingDepositWeiHub);
    bool in_flight = channel_has_pending(ch.latest.state);
    for (const auto& r : ch.requests) {
      if (r.update.reason == UpdateReason::ProposePendingDeposit) {
        have = sum(have, r.update.deposit.depositWeiHub);
        in_flight = true;
      }
      if (r.update.reason == UpdateReason::ConfirmPending) in_flight = true;
    }
    if (env_.deposit_jobs)
      for (const auto& j : *env_.deposit_jobs)
        if (j.user == ch.user) in_flight = true;
    if (target <= have || in_flight) {
      log("info", ch.key + ": collateral request for " + json::amount_text(expect) + " wei: " + json::amount_text(have) +
                      " wei held" + (in_flight ? " or on its way" : "") + ", nothing to add");
      return;
    }
    U256 amount{};
    (void)u256_sub(target, have, amount);
    const bool waited = fx_.reserve_wait;
    const bool allows = engine_reserve_allows(amount, ch.key, env_, fx_);
    fx_.reserve_wait = waited;  // the payee asks again; its channel is not pumped on the next reading
    if (!allows) return;
    log("info", ch.key + ": collateral request for " + json::amount_text(expect) + " wei (recent flow " +
                    json::amount_text(flow) + "): requesting a deposit of " + json::amount_text(amount) + " wei");
    ChannelUpdate p = channel_update_make(UpdateReason::ProposePendingDeposit);
    p.deposit.depositWeiHub = amount;
    p.deposit.timeout = env_.unix_now + kDepositTimeoutSeconds;  // set again when sent
    engine_add_request(ch, p, true, fx_);
    pump(ch);
  }

  void reply(Chan& ch, const Bytes& payload) {
    Reply r = reply_make(ReplyKind::Ack);
    const Status s = decode_reply(payload.data(), payload.size(), r);
    if (s != Status::Ok || r.kind != ReplyKind::RequestNack) {
      // The hub proposes nothing, so it takes no Ack or Nack: a replayed answer to a
      // hub-signed proposal of an earlier version is ignored.
      if (env_.verbose) log("info", ch.key + ": ignored a reply on the hub's reply topic");
      return;
    }
    if (!ch.outstanding() || r.txCountGlobal != ch.requests.front().id) return;  // stale or forged
    ++ch.nacks_total;
    ch.last_nack = r.status;
    ch.dirty = true;
    Request q = ch.requests.front();
    ch.requests.erase(ch.requests.begin());
    ch.resend_at_ms = 0;
    if (channel_is_skip(ch.latest.state, q.update)) {
      // The user holds no such proposal (or will not give it up): nothing to invalidate.
      log("warn", ch.key + ": user refused the Invalidation of tx " +
                      std::to_string(q.update.invalidation.lastInvalidTxCount) + ": " + status_name(r.status) +
                      "; dropped");
      engine_save_requests(ch, fx_);
      pump(ch);
      return;
    }
    // A RequestNack carries no signature (anyone who can publish here could send one), so
    // it never drops a request (the user may in fact have proposed it: the hub keeps
    // countersigning it). The request goes to the back with a backoff (1 s doubling up to
    // 60 s, or at once when the channel moves on) and gets a new id when it is sent again,
    // so one refused request never blocks the others.
    q.id = 0;
    ++q.nacks;
    q.nacked_at_tx = ch.latest.state.txCountGlobal;
    const uint64_t delay = std::min<uint64_t>(kNackBackoffMaxMs, 1000ull << std::min(q.nacks - 1, 6u));
    q.not_before_ms = env_.now_ms + delay;
    log("warn", ch.key + ": user refused request " + std::to_string(r.txCountGlobal) + " (" +
                    update_reason_name(q.update.reason) + "): " + status_name(r.status) + "; again in " +
                    std::to_string(delay / 1000) + " s or when the channel moves on");
    ch.requests.push_back(q);
    engine_save_requests(ch, fx_);
    fx_.timer = true;
    pump(ch);
  }

 private:
  const EngineEnv& env_;
  Effects& fx_;
};

}  // namespace

void engine_update(Chan& ch, const Bytes& payload, const EngineEnv& env, Effects& fx) { Step(env, fx).update(ch, payload); }

void engine_replay_parked(Chan& ch, const ChainFacts& f, const EngineEnv& env, Effects& fx) {
  Step(env, fx).replay_parked(ch, f);
}

void engine_sync(Chan& ch, const EngineEnv& env, Effects& fx) { Step(env, fx).sync(ch); }

void engine_reply(Chan& ch, const Bytes& payload, const EngineEnv& env, Effects& fx) { Step(env, fx).reply(ch, payload); }

void engine_pump(Chan& ch, const EngineEnv& env, Effects& fx) { Step(env, fx).pump(ch); }

void engine_collateral(Chan& ch, const Bytes& payload, const EngineEnv& env, Effects& fx) {
  Step(env, fx).collateral(ch, payload);
}

void engine_add_request(Chan& ch, const ChannelUpdate& u0, bool front, Effects& fx) {
  Request r;
  r.update = u0;
  r.update.txCountGlobal = 0;
  if (front) {
    auto pos = ch.requests.begin();
    if (ch.outstanding()) ++pos;
    ch.requests.insert(pos, r);
  } else {
    ch.requests.push_back(r);
  }
  engine_save_requests(ch, fx);  // same transaction as the update that made it necessary
}

void engine_save_requests(Chan& ch, Effects& fx) {
  write::SaveRequests w;
  w.key = ch.key;
  w.last_request_id = ch.last_request_id;
  w.rows.reserve(ch.requests.size());
  for (const auto& r : ch.requests) {
    Ledger::RequestRow row;
    row.id = r.id;
    if (!update_wire(r.update, row.update)) {
      fx.read_error = ch.key + ": cannot encode a request";
      return;
    }
    w.rows.push_back(std::move(row));
  }
  if (ch.legacy_unsaved && ch.legacy_tx == 0) {
    w.delete_legacy = true;
    ch.legacy_unsaved = false;
  }
  fx.writes.emplace_back(std::move(w));
  ch.dirty = true;
}

bool engine_request_out(const Chan& ch, const EngineEnv& env, Out& o) {
  if (!ch.outstanding()) return false;
  HubRequest q{};
  q.contractAddress = env.contract;
  q.user = ch.user;
  q.requestId = ch.requests.front().id;
  q.update = ch.requests.front().update;
  q.update.txCountGlobal = 0;
  q.update.sig = Signature{};
  uint8_t buf[kMaxHubRequestWire];
  size_t n = 0;
  Status s = hub_request_sign(*env.signer, *env.key, q);
  if (s == Status::Ok) s = encode_hub_request(q, buf, sizeof buf, &n);
  if (s != Status::Ok) return false;
  o.topic = mqtt::topic_request(ch.user);
  o.payload.assign(buf, buf + n);
  o.response_topic = mqtt::topic_hub_reply(env.hub, ch.user);
  o.corr = q.requestId;
  o.has_corr = true;
  return true;
}

Status engine_request_applies(Chan& ch, const ChannelUpdate& u0, const Address& hub) {
  ChannelUpdate u = u0;
  u.txCountGlobal = ch.latest.state.txCountGlobal + (channel_is_skip(ch.latest.state, u0) ? 2 : 1);
  ChannelContext ctx{hub};
  ChannelState next{};
  const Status s = channel_next_state(ctx, ch.latest.state, ch.set(), u, next);
  ch.compact();
  return s;
}

bool engine_mark_current(const Chan& ch, const ChainMark& m) {
  return m.dispute || !m.emptied || ch.open_read_tx_count_chain <= m.tx_count_chain;
}

Status engine_chain_refusal(const Chan& ch, const ChannelUpdate& u, const EngineEnv& env) {
  const ChainMark* m = env.mark ? env.mark(ch.user) : nullptr;
  if (!m || !engine_mark_current(ch, *m)) return Status::Ok;
  // An update asserting a chain fact is checked against the chain read at once
  // (check_policy), not against the mark of the last round: a ConfirmPending of the new
  // deposit that reopens an emptied channel is not refused for a mark a second old.
  if (env.has_chain && (u.reason == UpdateReason::ConfirmPending || u.reason == UpdateReason::Invalidation ||
                        u.reason == UpdateReason::EmptyChannel))
    return Status::Ok;
  return policy_check_chain_status(ChainFollow::facts(*m), ch.latest.state, u.reason);
}

bool engine_reserve_allows(const U256& amount, const std::string& who, const EngineEnv& env, Effects& fx) {
  if (!env.has_chain) return false;
  auto log = [&fx](const char* level, std::string text) { fx.logs.push_back({level, std::move(text)}); };
  // The chain worker's latest reading (ChainWorker::kReserveRefreshMs); none fresh: no
  // promise now, and the channel is pumped again when the next reading arrives.
  if (!env.reserve_known || env.reserve_at_ms == 0 || env.now_ms - env.reserve_at_ms > kReserveFreshMs) {
    log("warn", who + ": no fresh reading of the hub's reserve from the chain: no collateral promised yet");
    fx.reserve_wait = true;
    return false;
  }
  // Deposits the users countersigned and the hub has not sent yet draw on it too.
  U256 promised = U256::zero();
  if (env.deposit_jobs)
    for (const auto& j : *env.deposit_jobs) promised = sum(promised, j.state.state.pendingDepositWeiHub);
  U256 free{};
  if (u256_sub(env.reserve_wei, promised, free) != Status::Ok) free = U256::zero();
  const std::string fund = "fund it: picopay deposit --rpc " + env.rpc_url + " --key HUB_KEY_FILE --contract " +
                           json::address_text(env.contract) + " --reserve WEI";
  if (free < amount) {
    log("ERROR", who + ": hub reserve too low for " + json::amount_text(amount) + " wei of collateral: " +
                     json::amount_text(free) + " wei free on chain (" + json::amount_text(env.reserve_wei) +
                     " reserve, " + json::amount_text(promised) + " promised); nothing promised; " + fund);
    return false;
  }
  U256 after{};
  (void)u256_sub(free, amount, after);
  if (after < env.reserve_warn && !fx.reserve_warned && env.now_ms - env.last_reserve_warn_ms >= kReserveWarnEveryMs) {
    fx.reserve_warned = true;
    log("warn", "hub reserve low: " + json::amount_text(after) + " wei free on chain after this deposit (warning below " +
                    json::amount_text(env.reserve_warn) + "); " + fund);
  }
  return true;
}

}  // namespace picopay::hub
