// ChannelManager event decoding and the confirmed, resumable, reorg-safe poller.
#include "picopay/chain/events.hpp"

#include <cstdio>
#include <fstream>

#include <unistd.h>
#include <fcntl.h>

namespace picopay::chain {

const char* event_kind_name(EventKind k) noexcept {
  switch (k) {
    case EventKind::DidUpdateChannel: return "DidUpdateChannel";
    case EventKind::DidStartExitChannel: return "DidStartExitChannel";
    case EventKind::DidEmptyChannel: return "DidEmptyChannel";
    case EventKind::DidStartExitThread: return "DidStartExitThread";
    case EventKind::DidChallengeThread: return "DidChallengeThread";
    case EventKind::DidEmptyThread: return "DidEmptyThread";
    case EventKind::DidNukeThreads: return "DidNukeThreads";
    case EventKind::DidHubContractWithdraw: return "DidHubContractWithdraw";
    case EventKind::DidCreditOwed: return "DidCreditOwed";
    case EventKind::DidWithdrawOwed: return "DidWithdrawOwed";
    case EventKind::Unknown: return "Unknown";
  }
  return "Unknown";
}

static Address topic_address(const Hash32& t) {
  Address a;
  for (int i = 0; i < 20; ++i) a.bytes[i] = t.bytes[12 + i];
  return a;
}

#define DEC(dst, expr) PPC_TRY(dst, expr)

Result<ChannelEvent> decode_event(const Log& log) {
  static const Hash32 tUpd = keccak_text(sig::kDidUpdateChannel), tSx = keccak_text(sig::kDidStartExitChannel),
                      tEmp = keccak_text(sig::kDidEmptyChannel), tSxt = keccak_text(sig::kDidStartExitThread),
                      tCh = keccak_text(sig::kDidChallengeThread), tEt = keccak_text(sig::kDidEmptyThread),
                      tNk = keccak_text(sig::kDidNukeThreads), tHw = keccak_text(sig::kDidHubContractWithdraw),
                      tCo = keccak_text(sig::kDidCreditOwed), tWo = keccak_text(sig::kDidWithdrawOwed);
  ChannelEvent e;
  e.log = log;
  if (log.topics.empty()) return e;
  const Hash32& t0 = log.topics[0];
  AbiDecoder d(e.log.data);
  auto need_topics = [&](size_t n) { return log.topics.size() >= n; };
  auto bad = [] { return make_error(ErrorKind::BadJson, "event log has the wrong number of topics"); };
  if (t0 == tUpd || t0 == tSx || t0 == tEmp) {
    if (!need_topics(2)) return bad();
    e.kind = t0 == tUpd ? EventKind::DidUpdateChannel
                        : (t0 == tSx ? EventKind::DidStartExitChannel : EventKind::DidEmptyChannel);
    e.user = topic_address(log.topics[1]);
    size_t i = 0;
    DEC(e.senderIdx, d.u64(i++));
    for (auto& w : e.weiBalances) { DEC(w, d.u256(i++)); }
    for (auto& w : e.tokenBalances) { DEC(w, d.u256(i++)); }
    if (e.kind == EventKind::DidUpdateChannel) {
      for (auto& w : e.pendingWeiUpdates) { DEC(w, d.u256(i++)); }
      for (auto& w : e.pendingTokenUpdates) { DEC(w, d.u256(i++)); }
    }
    DEC(e.txCount[0], d.u64(i++));
    DEC(e.txCount[1], d.u64(i++));
    DEC(e.threadRoot, d.bytes32(i++));
    DEC(e.threadCount, d.u64(i++));
  } else if (t0 == tSxt || t0 == tCh) {
    if (!need_topics(3)) return bad();
    e.kind = t0 == tSxt ? EventKind::DidStartExitThread : EventKind::DidChallengeThread;
    e.sender = topic_address(log.topics[1]);
    e.receiver = topic_address(log.topics[2]);
    size_t i = 0;
    if (e.kind == EventKind::DidStartExitThread) { DEC(e.user, d.address(i++)); }
    DEC(e.threadId, d.u64(i++));
    DEC(e.senderAddress, d.address(i++));
    for (auto& w : e.weiBalances) { DEC(w, d.u256(i++)); }
    for (auto& w : e.tokenBalances) { DEC(w, d.u256(i++)); }
    DEC(e.txCount[0], d.u64(i++));
  } else if (t0 == tEt) {
    if (!need_topics(3)) return bad();
    e.kind = EventKind::DidEmptyThread;
    e.sender = topic_address(log.topics[1]);
    e.receiver = topic_address(log.topics[2]);
    size_t i = 0;
    DEC(e.user, d.address(i++));
    DEC(e.threadId, d.u64(i++));
    DEC(e.senderAddress, d.address(i++));
    for (auto& w : e.weiBalances) { DEC(w, d.u256(i++)); }
    for (auto& w : e.tokenBalances) { DEC(w, d.u256(i++)); }
    DEC(e.txCount[0], d.u64(i++));
    DEC(e.txCount[1], d.u64(i++));
    DEC(e.threadRoot, d.bytes32(i++));
    DEC(e.threadCount, d.u64(i++));
  } else if (t0 == tNk) {
    if (!need_topics(2)) return bad();
    e.kind = EventKind::DidNukeThreads;
    e.user = topic_address(log.topics[1]);
    size_t i = 0;
    DEC(e.senderAddress, d.address(i++));
    DEC(e.weiAmount, d.u256(i++));
    DEC(e.tokenAmount, d.u256(i++));
    for (auto& w : e.weiBalances) { DEC(w, d.u256(i++)); }
    for (auto& w : e.tokenBalances) { DEC(w, d.u256(i++)); }
    DEC(e.txCount[0], d.u64(i++));
    DEC(e.txCount[1], d.u64(i++));
    DEC(e.threadRoot, d.bytes32(i++));
    DEC(e.threadCount, d.u64(i++));
  } else if (t0 == tHw) {
    e.kind = EventKind::DidHubContractWithdraw;
    DEC(e.weiAmount, d.u256(0));
    DEC(e.tokenAmount, d.u256(1));
  } else if (t0 == tCo || t0 == tWo) {
    if (!need_topics(2)) return bad();
    e.kind = t0 == tCo ? EventKind::DidCreditOwed : EventKind::DidWithdrawOwed;
    e.owner = topic_address(log.topics[1]);
    size_t i = 0;
    if (e.kind == EventKind::DidWithdrawOwed) { DEC(e.to, d.address(i++)); }
    DEC(e.weiAmount, d.u256(i++));
    DEC(e.tokenAmount, d.u256(i++));
  }
  return e;
}

// ---------------------------------------------------------------- poller

static constexpr size_t kKeepHashes = 128;

EventPoller::EventPoller(RpcClient& rpc, const Address& contract, uint64_t confirmations, std::string state_file,
                         uint64_t start_block)
    : rpc_(rpc), contract_(contract), confirmations_(confirmations), file_(std::move(state_file)),
      next_block_(start_block) {}

// File format (text): line 1 "picopay-events 1 <contract> <next_block>", then one line
// per recent processed block: "<number> <hash>".
Status EventPoller::load() {
  if (file_.empty()) return ok_status();
  std::ifstream f(file_);
  if (!f) return ok_status();  // first run
  std::string magic, contract;
  int version = 0;
  uint64_t next = 0;
  if (!(f >> magic >> version >> contract >> next) || magic != "picopay-events" || version != 1)
    return make_error(ErrorKind::BadJson, file_ + ": not a picopay event-poller state file");
  if (contract != address_hex(contract_))
    return make_error(ErrorKind::BadInput, file_ + ": state belongs to contract " + contract);
  next_block_ = next;
  recent_.clear();
  uint64_t n;
  std::string h;
  while (f >> n >> h) {
    Hash32 hh;
    if (hash32_parse(h.c_str(), h.size(), hh) != picopay::Status::Ok)
      return make_error(ErrorKind::BadJson, file_ + ": bad block hash");
    recent_.emplace_back(n, hh);
  }
  return ok_status();
}

Status EventPoller::save() const {
  if (file_.empty()) return ok_status();
  std::string text = "picopay-events 1 " + address_hex(contract_) + " " + std::to_string(next_block_) + "\n";
  for (const auto& r : recent_) text += std::to_string(r.first) + " " + hash_hex(r.second) + "\n";
  std::string tmp = file_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return make_error(ErrorKind::Io, "cannot write " + tmp);
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), file_.c_str()) != 0) return make_error(ErrorKind::Io, "cannot write " + file_);
  return ok_status();
}

Status EventPoller::check_reorg() {
  // Walk back over the kept hashes until one still matches the chain.
  size_t keep = recent_.size();
  while (keep > 0) {
    auto b = rpc_.block_by_number(recent_[keep - 1].first);
    if (!b && b.error().kind != ErrorKind::NotFound) return b.error();
    if (b && b->hash == recent_[keep - 1].second) break;
    --keep;
  }
  if (keep == recent_.size()) return ok_status();
  ++reorgs_;
  if (keep == 0 && !recent_.empty())
    return make_error(ErrorKind::Reorg, "chain reorganised below the " + std::to_string(recent_.size()) +
                                            " kept block hashes; resync from an earlier block");
  next_block_ = recent_[keep - 1].first + 1;
  recent_.resize(keep);
  return save();
}

Result<size_t> EventPoller::poll(const std::function<void(const ChannelEvent&)>& on_event, uint64_t max_blocks) {
  PPC_CHECK(check_reorg());
  PPC_TRY(uint64_t head, rpc_.block_number());
  if (head < confirmations_) return size_t{0};
  uint64_t safe = head - confirmations_;
  if (next_block_ > safe) return size_t{0};
  uint64_t to = std::min(safe, next_block_ + max_blocks - 1);
  PPC_TRY(std::vector<Log> logs, rpc_.logs(contract_, next_block_, to));
  // Record the hashes of the scanned range's last blocks (for reorg detection).
  uint64_t first_hash = to + 1 > kKeepHashes && to + 1 - kKeepHashes > next_block_ ? to + 1 - kKeepHashes : next_block_;
  std::vector<std::pair<uint64_t, Hash32>> hashes;
  for (uint64_t n = first_hash; n <= to; ++n) {
    PPC_TRY(Block b, rpc_.block_by_number(n));
    hashes.emplace_back(n, b.hash);
  }
  // Logs must come from the blocks whose hashes we hold; otherwise a reorg raced us.
  for (const auto& l : logs) {
    for (const auto& h : hashes)
      if (h.first == l.blockNumber && h.second != l.blockHash)
        return make_error(ErrorKind::Reorg, "block " + std::to_string(l.blockNumber) + " changed during the poll; retry");
  }
  size_t n = 0;
  for (const auto& l : logs) {
    auto e = decode_event(l);
    if (!e) return e.error();
    on_event(*e);
    ++n;
  }
  recent_.insert(recent_.end(), hashes.begin(), hashes.end());
  if (recent_.size() > kKeepHashes) recent_.erase(recent_.begin(), recent_.end() - kKeepHashes);
  next_block_ = to + 1;
  PPC_CHECK(save());
  return n;
}

}  // namespace picopay::chain
