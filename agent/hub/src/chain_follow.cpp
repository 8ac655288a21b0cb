// picopay-hub: following what the chain did to the hub's channels (chain_follow.hpp).
#include "chain_follow.hpp"

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <unistd.h>
#include <fcntl.h>

namespace picopay::hub {

ChainFollow::ChainFollow(chain::RpcClient& rpc, chain::ChannelManagerClient& cm, const Address& contract,
                         uint64_t confirmations, std::string poller_file, std::string marks_file)
    : cm_(cm), poller_(rpc, contract, confirmations, std::move(poller_file)), file_(std::move(marks_file)) {}

bool ChainFollow::load(std::string& err) {
  auto ls = poller_.load();
  if (!ls.ok()) {
    err = "chain follow: event state: " + ls.error().to_string();
    return false;
  }
  std::ifstream in(file_);
  if (!in) return true;  // none stored yet
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    std::istringstream ls2(line);
    std::string addr;
    ChainMark m;
    int d = 0, td = 0, e = 0;
    if (!(ls2 >> addr >> d >> td >> e >> m.since_block >> m.closing_time >> m.tx_count_global >> m.tx_count_chain)) {
      err = file_ + ":" + std::to_string(n) + ": not a chain mark";
      return false;
    }
    auto a = chain::parse_address(addr);
    if (!a) {
      err = file_ + ":" + std::to_string(n) + ": bad address";
      return false;
    }
    m.dispute = d != 0;
    m.thread_dispute = td != 0;
    m.emptied = e != 0;
    marks_[chain::address_hex(*a)] = {*a, m};
  }
  return true;
}

bool ChainFollow::save(std::string& err) const {
  const std::string tmp = file_ + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) {
    err = "cannot write " + tmp;
    return false;
  }
  for (const auto& [k, v] : marks_) {
    const ChainMark& m = v.second;
    std::fprintf(f, "%s %d %d %d %llu %llu %llu %llu\n", k.c_str(), m.dispute ? 1 : 0, m.thread_dispute ? 1 : 0,
                 m.emptied ? 1 : 0, static_cast<unsigned long long>(m.since_block),
                 static_cast<unsigned long long>(m.closing_time), static_cast<unsigned long long>(m.tx_count_global),
                 static_cast<unsigned long long>(m.tx_count_chain));
  }
  bool ok = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), file_.c_str()) != 0) {
    err = "cannot write " + file_;
    return false;
  }
  return true;
}

bool ChainFollow::due() {
  const auto now = std::chrono::steady_clock::now();
  if (last_ != std::chrono::steady_clock::time_point{} && now - last_ < std::chrono::milliseconds(kIntervalMs))
    return false;
  last_ = now;
  return true;
}

const ChainMark* ChainFollow::mark(const Address& user) const {
  auto it = marks_.find(chain::address_hex(user));
  return it == marks_.end() ? nullptr : &it->second.second;
}

Hash32 ChainFollow::empty_tx(const Address& user) const {
  auto it = empty_tx_.find(chain::address_hex(user));
  return it == empty_tx_.end() ? Hash32{} : it->second;
}

std::vector<Address> ChainFollow::marked() const {
  std::vector<Address> out;
  for (const auto& [k, v] : marks_) out.push_back(v.first);
  return out;
}

ChainFacts ChainFollow::facts(const ChainMark& m) {
  ChainFacts f{};
  f.known = true;
  f.txCountGlobal = m.tx_count_global;
  f.txCountChain = m.tx_count_chain;
  f.status = m.dispute ? ChainChannelStatus::InDispute : ChainChannelStatus::Open;
  f.emptied = m.emptied;
  f.blockTime = 0;
  return f;
}

std::string ChainFollow::describe(const ChainMark& m) {
  if (m.dispute)
    return std::string(m.thread_dispute ? "thread dispute" : "in dispute") + " since block " +
           std::to_string(m.since_block);
  if (m.emptied) return "emptied on chain at block " + std::to_string(m.since_block);
  return "";
}

chain::Result<bool> ChainFollow::refresh(const Address& user, uint64_t block, ChainChange& change) {
  PPC_TRY(chain::OnchainChannel oc, cm_.channel(user));
  ChainMark m;
  m.dispute = oc.status != chain::ChannelStatus::Open;
  m.thread_dispute = oc.status == chain::ChannelStatus::ThreadDispute;
  m.emptied = oc.status == chain::ChannelStatus::Open && oc.weiTotal.is_zero() && oc.tokenTotal.is_zero() &&
              oc.txCountGlobal > 0 && oc.threadCount == 0;
  m.closing_time = oc.channelClosingTime;
  m.tx_count_global = oc.txCountGlobal;
  m.tx_count_chain = oc.txCountChain;
  const std::string k = chain::address_hex(user);
  auto it = marks_.find(k);
  const bool marked = m.dispute || m.emptied;
  if (it == marks_.end()) {
    if (!marked) return false;
    m.since_block = block;
  } else {
    const ChainMark& o = it->second.second;
    // The block the current condition began: kept while it lasts.
    m.since_block = (o.dispute == m.dispute && o.emptied == m.emptied) ? o.since_block : block;
    if (marked && o.dispute == m.dispute && o.thread_dispute == m.thread_dispute && o.emptied == m.emptied &&
        o.closing_time == m.closing_time && o.tx_count_global == m.tx_count_global &&
        o.tx_count_chain == m.tx_count_chain)
      return false;
  }
  change.user = user;
  change.mark = m;
  change.what = marked ? describe(m) : "open";
  if (marked) marks_[k] = {user, m};
  else marks_.erase(k);
  return true;
}

chain::Result<std::vector<ChainChange>> ChainFollow::tick() {
  std::map<std::string, std::pair<Address, uint64_t>> named;  // user -> (address, first block)
  auto note = [&](const Address& u, uint64_t b) {
    if (u.is_zero()) return;
    named.emplace(chain::address_hex(u), std::make_pair(u, b));
  };
  PPC_TRY(size_t n, poller_.poll([&](const chain::ChannelEvent& e) {
    switch (e.kind) {
      case chain::EventKind::DidEmptyChannel:
        if (!e.user.is_zero()) empty_tx_[chain::address_hex(e.user)] = e.log.transactionHash;
        [[fallthrough]];
      case chain::EventKind::DidUpdateChannel:
      case chain::EventKind::DidStartExitChannel:
      case chain::EventKind::DidStartExitThread:
      case chain::EventKind::DidEmptyThread:
      case chain::EventKind::DidNukeThreads:
        note(e.user, e.log.blockNumber);
        break;
      default:
        break;
    }
  }));
  (void)n;
  uint64_t head = poller_.last_block();
  for (const auto& [k, v] : marks_) named.emplace(k, std::make_pair(v.first, head));
  std::vector<ChainChange> out;
  for (const auto& [k, v] : named) {
    ChainChange c;
    PPC_TRY(bool changed, refresh(v.first, v.second, c));
    if (changed) out.push_back(c);
  }
  if (!out.empty()) {
    std::string err;
    if (!save(err)) return chain::make_error(chain::ErrorKind::Io, err);
  }
  return out;
}

}  // namespace picopay::hub
