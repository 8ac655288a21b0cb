// picopay-soak: the soak campaign (docs/soak.md). See kHelp.
//
// Real parts on 127.0.0.1: mosquitto (passwords, the ACL of docs/mqtt-protocol.md, on-disk
// persistence), the dev chain (ganache with a database directory, tests/soak/chain.js, so
// it survives kill -9), a freshly deployed ChannelManager with a funded hub reserve,
// picopay-hub, one payee picopay-agent and several payer picopay-agents with stdin meters
// fed by this program. Every cycle kill -9s one part chosen at random while payments
// stream, restarts it, and checks that nothing was lost or signed twice.
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <cjson/cJSON.h>

#include "picopay/agent/json_state.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/codec.hpp"
#include "picopay/keccak.hpp"
#include "picopay/signer.hpp"
#include "picopay/demo/support.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"

#ifndef PICOPAY_SOAK_CHAIN_JS
#define PICOPAY_SOAK_CHAIN_JS "tests/soak/chain.js"
#endif
#ifndef PICOPAY_NODE_EXE
#define PICOPAY_NODE_EXE "node"
#endif

namespace {

using namespace picopay;
using namespace picopay::demo;
using Clock = std::chrono::steady_clock;

const char* kHelp =
    "usage: picopay-soak [--cycles N] [--seconds S] [--payers N] [--workdir DIR] [--seed N]\n"
    "                    [--chain-weight W] [--settle-timeout S]\n"
    "\n"
    "Soak campaign on 127.0.0.1 (docs/soak.md): mosquitto, the dev chain (with a database,\n"
    "so it survives kill -9), picopay-hub, one payee agent and N payer agents (the first pays\n"
    "the payee through a thread, the others pay the hub) with stdin meters fed by this\n"
    "program. Each cycle: payments stream, one part chosen at random (hub, broker, chain\n"
    "node, payee, a payer) gets SIGKILL, stays down a random time, is restarted; then the\n"
    "meters pause and the cycle's checks run:\n"
    "  - no payment lost: every payer's metered Wh = Wh paid, wei paid = Wh x price, and its\n"
    "    double-signed channel state (picopay-agent status) = the hub's SQLite ledger state\n"
    "    byte for byte; the payee received through threads what the thread payer paid;\n"
    "  - nothing signed twice: an observer subscribed to picopay/v1/# records every\n"
    "    signature on the wire per (channel, txCountGlobal) and per (thread, txCount); two\n"
    "    different hub signatures for one txCountGlobal, or two different sender signatures\n"
    "    for one thread txCount, is an anomaly, and so is a hub signature that differs from\n"
    "    the sigHub of the state the hub's ledger keeps for that txCountGlobal;\n"
    "  - every ledger equal at the end (after the payers stop and close their threads).\n"
    "A cycle whose checks do not hold within --settle-timeout is an anomaly; its state dirs,\n"
    "hub.db and logs are copied to WORKDIR/anomaly-<cycle>/.\n"
    "\n"
    "  --cycles N          kill cycles (default 1000)\n"
    "  --seconds S         stop starting new cycles after S seconds (default: no bound)\n"
    "  --payers N          payer agents, 1..8 (default 3)\n"
    "  --thread-payers N   how many of them (payer1, payer3, ...) pay the payee through\n"
    "                      threads (default and at most: half of the payers, rounded up)\n"
    "  --workdir DIR       (default: a new /tmp/picopay-soak-XXXXXX, kept)\n"
    "  --seed N            random seed (default: from the clock; printed)\n"
    "  --chain-weight W    relative weight of the chain node among the parts (default 1;\n"
    "                      every other part weighs 1; 0: never kill the chain)\n"
    "  --settle-timeout S  seconds a cycle's checks may take to hold (default 90)\n"
    "  --inject WHAT       test the checks themselves (the run must then report an anomaly):\n"
    "                      lost-payment: in cycle 2 the hub is killed and its SQLite ledger\n"
    "                      loses payer2's latest countersigned payment before the restart;\n"
    "                      double-sign: after cycle 2 a second, different hub-signed Ack for\n"
    "                      payer2's latest txCountGlobal is published (signed with the hub key)\n"
    "  -h, --help          this help\n"
    "Exit status: 0 no anomaly, 1 anomalies (listed), 2 usage, 3 set-up failed.\n";

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

const uint64_t kPriceWei = 1000000000ULL;            // 1 gwei per Wh
const char* kDepositWei = "1000000000000000000";      // 1 ETH per payer
// Threads lock 1000 Wh each, so thread payers close and reopen threads during the run and
// the hub deposits collateral in the payee's channel on chain every few threads.
const char* kThreadLockWei = "1000000000000";            // 1000 Wh
const char* kCollateralWei = "3000000000000";            // hub collateral step (payee channel)
const uint64_t kChallenge = 3600;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s.push_back(d[p[i] >> 4]);
    s.push_back(d[p[i] & 15]);
  }
  return s;
}
std::string sig_key(const Signature& s) {
  uint8_t b[65];
  std::memcpy(b, s.r, 32);
  std::memcpy(b + 32, s.s, 32);
  b[64] = s.v;
  return hex(b, sizeof b);
}

std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

// ------------------------------------------------------------------ the observer

// Every signature seen on the broker, per (channel, txCountGlobal) and per thread txCount.
class Observer {
 public:
  struct Sigs {
    std::set<std::string> hub, user;
  };
  void on_message(const mqtt::Message& m) {
    std::lock_guard<std::mutex> l(mu_);
    ++messages_;
    const uint8_t* p = m.payload.data();
    const size_t n = m.payload.size();
    Address hub{}, user{};
    std::string leaf;
    if (mqtt::parse_channel_topic(m.topic, hub, user, leaf)) {
      const std::string u = mqtt::topic_address(user);
      if (leaf == "update") {  // user-signed update
        ChannelUpdate up{};
        if (decode_channel_update(p, n, up) == Status::Ok) add(u, up.txCountGlobal, false, up.sig, "update");
      } else if (leaf == "reply") {  // the user's reply to a hub proposal/request
        mqtt::Reply r;
        if (mqtt::decode_reply(p, n, r) == Status::Ok) reply(u, r, false);
      }
      return;
    }
    const std::string pre_user = "picopay/v1/user/";
    if (m.topic.rfind(pre_user, 0) == 0 && m.topic.size() > pre_user.size() + 43) {
      const std::string u = m.topic.substr(pre_user.size(), 42);
      const std::string tail = m.topic.substr(pre_user.size() + 43);
      if (tail == "reply") {
        mqtt::Reply r;
        if (mqtt::decode_reply(p, n, r) == Status::Ok) reply(u, r, true);
      } else if (tail == "request") {  // a hub-signed proposal (decodes only if it is a ChannelUpdate)
        ChannelUpdate up{};
        if (decode_channel_update(p, n, up) == Status::Ok) add(u, up.txCountGlobal, true, up.sig, "request");
      }
      return;
    }
    const std::string pre_thread = "picopay/v1/thread/";
    if (m.topic.rfind(pre_thread, 0) == 0) {
      // Thread payments (0x06) and close requests (0x02) both carry a sender-signed state.
      WireKind k{};
      SignedThreadState ts{};
      if (wire_peek_kind(p, n, k) != Status::Ok) return;
      if (k == WireKind::ThreadPayment) {
        if (decode_thread_payment(p, n, ts) != Status::Ok) return;
      } else if (k == WireKind::ThreadState) {
        if (decode_thread_state(p, n, ts) != Status::Ok || !ts.hasSigA) return;
      } else {
        return;
      }
      const std::string key = mqtt::topic_address(ts.state.sender) + "/" + m.topic.substr(pre_thread.size(), 42) +
                              "/" + std::to_string(ts.state.threadId) + "/" + std::to_string(ts.state.txCount);
      auto& s = threads_[key];
      s.insert(sig_key(ts.sigA));
      ++thread_updates_;
      if (s.size() == 2) anomalies_.push_back("thread " + key + ": two different sender signatures for one txCount");
    }
  }
  // Anomalies found since the last call.
  std::vector<std::string> take_anomalies() {
    std::lock_guard<std::mutex> l(mu_);
    auto v = std::move(anomalies_);
    anomalies_.clear();
    return v;
  }
  // The hub signatures seen for (user, tx).
  std::set<std::string> hub_sigs(const std::string& user, uint64_t tx) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = ch_.find({user, tx});
    return it == ch_.end() ? std::set<std::string>{} : it->second.hub;
  }
  std::vector<std::pair<std::string, uint64_t>> keys() {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<std::pair<std::string, uint64_t>> v;
    for (auto& e : ch_) v.push_back(e.first);
    return v;
  }
  uint64_t messages() {
    std::lock_guard<std::mutex> l(mu_);
    return messages_;
  }
  uint64_t thread_updates() {
    std::lock_guard<std::mutex> l(mu_);
    return thread_updates_;
  }
  uint64_t user_resigned() {
    std::lock_guard<std::mutex> l(mu_);
    return user_resigned_;
  }

 private:
  void reply(const std::string& u, const mqtt::Reply& r, bool from_hub) {
    if (r.kind == mqtt::ReplyKind::Ack) {
      add(u, r.txCountGlobal, from_hub, r.sig, from_hub ? "hub Ack" : "user Ack");
    } else if (r.kind == mqtt::ReplyKind::Nack || r.kind == mqtt::ReplyKind::Sync) {
      if (r.state.hasSigHub) add(u, r.state.state.txCountGlobal, true, r.state.sigHub, "state in Nack/Sync");
      if (r.state.hasSigUser) add(u, r.state.state.txCountGlobal, false, r.state.sigUser, "state in Nack/Sync");
    }
  }
  void add(const std::string& u, uint64_t tx, bool hub, const Signature& sig, const char* where) {
    auto& s = ch_[{u, tx}];
    auto& set = hub ? s.hub : s.user;
    if (!set.insert(sig_key(sig)).second) return;
    if (set.size() < 2) return;
    if (hub)
      anomalies_.push_back("channel " + u + " txCountGlobal " + std::to_string(tx) +
                           ": two different hub signatures (second from " + where + ")");
    else
      ++user_resigned_;  // the user dropped an update the hub never countersigned (allowed)
  }
  std::mutex mu_;
  std::map<std::pair<std::string, uint64_t>, Sigs> ch_;
  std::map<std::string, std::set<std::string>> threads_;
  std::vector<std::string> anomalies_;
  uint64_t messages_ = 0, thread_updates_ = 0, user_resigned_ = 0;
};

// ------------------------------------------------------------------ the hub's ledger

struct HubLedger {
  bool ok = false;
  std::map<std::string, std::vector<uint8_t>> state;                   // user -> channel state wire
  std::map<std::string, std::map<uint64_t, std::string>> hub_sig;  // user -> tx -> sigHub of the stored state
  long long updates = 0;
};

HubLedger read_hub_ledger(const std::string& db) {
  HubLedger l;
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(h);
    return l;
  }
  sqlite3_busy_timeout(h, 5000);
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(h, "SELECT user, state FROM channels", -1, &s, nullptr) == SQLITE_OK) {
    while (sqlite3_step(s) == SQLITE_ROW) {
      const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s, 1));
      l.state[lower(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)))].assign(p,
                                                                                      p + sqlite3_column_bytes(s, 1));
    }
    l.ok = true;
  }
  sqlite3_finalize(s);
  if (sqlite3_prepare_v2(h, "SELECT user, tx, state FROM updates", -1, &s, nullptr) == SQLITE_OK) {
    while (sqlite3_step(s) == SQLITE_ROW) {
      ++l.updates;
      const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s, 2));
      SignedChannelState st{};
      if (p && decode_channel_state(p, static_cast<size_t>(sqlite3_column_bytes(s, 2)), st) == Status::Ok &&
          st.hasSigHub)
        l.hub_sig[lower(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)))]
                 [static_cast<uint64_t>(sqlite3_column_int64(s, 1))] = sig_key(st.sigHub);
    }
  } else {
    l.ok = false;
  }
  sqlite3_finalize(s);
  sqlite3_close(h);
  return l;
}

// ------------------------------------------------------------------ agent status

struct AgentView {
  bool ok = false;
  bool has_channel = false, pending = false;
  std::vector<uint8_t> channel;  // wire bytes of the double-signed state
  SignedChannelState ch{};
  uint64_t units_paid = 0, metered = 0;
  std::string wei_paid, received;
  std::map<std::string, U256> received_from;  // payee: sender -> sum of latest receiver balances
  size_t open_threads = 0;
  std::string err;
};

AgentView agent_view(const std::string& bin, const std::string& dir) {
  AgentView v;
  std::string out = run_capture("'" + bin + "/picopay-agent' status --state-dir '" + dir + "' 2>&1");
  std::string err;
  cJSON* o = json::parse_document(out, err);
  if (!o) {
    v.err = out.substr(0, 200);
    return v;
  }
  const cJSON* c = cJSON_GetObjectItemCaseSensitive(o, "channel");
  if (cJSON_IsObject(c) && json::channel_from_json(c, v.ch, err)) {
    uint8_t b[kMaxChannelStateWire];
    size_t n = 0;
    if (encode_channel_state(v.ch, b, sizeof b, &n) == Status::Ok) {
      v.channel.assign(b, b + n);
      v.has_channel = true;
    }
  }
  v.pending = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "pending"));
  auto u64 = [&](const char* k) {
    const cJSON* x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(x) ? static_cast<uint64_t>(x->valuedouble) : 0;
  };
  auto str = [&](const char* k) {
    const cJSON* x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(x) ? std::string(x->valuestring) : std::string();
  };
  v.units_paid = u64("unitsPaid");
  v.metered = u64("meteredWh");
  v.wei_paid = str("weiPaid");
  v.received = str("receivedWei");
  const cJSON* th = cJSON_GetObjectItemCaseSensitive(o, "threads");
  for (const cJSON* x = cJSON_IsArray(th) ? th->child : nullptr; x; x = x->next) {
    SignedThreadState t{};
    if (!json::thread_from_json(x, t, err)) continue;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "open"))) ++v.open_threads;
    const cJSON* role = cJSON_GetObjectItemCaseSensitive(x, "role");
    if (cJSON_IsString(role) && std::strcmp(role->valuestring, "receiver") == 0) {
      auto& r = v.received_from[mqtt::topic_address(t.state.sender)];
      (void)u256_add(r, t.state.balanceWeiReceiver, r);
    }
  }
  cJSON_Delete(o);
  v.ok = true;
  return v;
}

// ------------------------------------------------------------------ the campaign

struct Agent {
  std::string name, key, addr, dir, password;
  bool payer = true, thread = false;
  Child proc;
  int in = -1;                // our end of its stdin (payers), non-blocking
  uint64_t fed = 0;           // cumulative Wh last written
  bool fed_ok = true;         // the last value reached the pipe
};

class Soak {
 public:
  int run(int argc, char** argv);

 private:
  bool setup(std::string& err);
  bool start_chain(bool fresh, std::string& err);
  bool start_hub();
  bool start_agent(Agent& a);
  void feed_all(bool advance);
  bool feed(Agent& a, bool advance);
  // The cycle's checks; "" when they hold, else what differs.
  std::string check(bool final_round);
  bool settle(int cycle, bool final_round, std::string& why);
  void snapshot(const std::string& name);
  void stop_all();
  std::string part_name(int p) const;
  void kill_part(int p);
  bool restart_part(int p, std::string& err);
  // Restarts every part that exited by itself (not killed by us); counts and logs it.
  void supervise();
  void pause_ms(int ms, bool advance);
  std::map<std::string, uint64_t> self_exits_;
  std::vector<std::string> self_exit_log_;

  std::string inject_ = "none";
  void inject_lost_payment();
  void inject_double_sign();
  int thread_payers_ = -1;  // -1: payer1, payer3, ... (half, rounded up)
  int cycles_ = 1000, seconds_ = 0, payers_ = 3, chain_weight_ = 1, settle_timeout_ = 90;
  uint64_t seed_ = 0;
  std::string work_, bin_;
  std::mt19937_64 rng_;
  std::string hub_key_, hub_addr_, contract_, hub_pw_, obs_pw_;
  int chain_port_ = 0;
  std::string chain_url_;
  Child chain_, hub_;
  MosquittoBroker broker_;
  std::vector<std::unique_ptr<Agent>> agents_;  // [0] payee, then payers
  std::unique_ptr<mqtt::Client> mq_;
  Observer obs_;
  std::vector<std::string> anomalies_;
  std::map<std::string, uint64_t> kills_;
  std::set<std::string> reported_;
  uint64_t checks_ = 0, healed_ = 0;
};

std::string Soak::part_name(int p) const {
  if (p == 0) return "hub";
  if (p == 1) return "broker";
  if (p == 2) return "chain";
  return agents_[static_cast<size_t>(p - 3)]->name;
}

bool Soak::start_chain(bool fresh, std::string& err) {
  std::string js = PICOPAY_SOAK_CHAIN_JS;
  if (const char* e = std::getenv("PICOPAY_SOAK_CHAIN_JS")) js = e;
  std::vector<std::string> argv = {PICOPAY_NODE_EXE, js, "--db", work_ + "/chaindb", "--port",
                                   std::to_string(chain_port_)};
  if (fresh) {
    argv.push_back("--account");
    argv.push_back(hub_key_ + ",1000000000000000000000");
    for (auto& a : agents_) {
      argv.push_back("--account");
      argv.push_back(a->key + ",1000000000000000000000");
    }
  }
  if (!chain_.start(argv, work_ + "/chain.log")) {
    err = "cannot start " + js;
    return false;
  }
  if (!wait_port(chain_port_, 120000)) {
    err = "the chain node did not listen (see " + work_ + "/chain.log)";
    return false;
  }
  // Listening is not serving yet: wait for an answer.
  chain::RpcClient rpc(chain_url_);
  for (int i = 0; i < 600; ++i) {
    if (rpc.block_number()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  err = "the chain node does not answer (see " + work_ + "/chain.log)";
  return false;
}

bool Soak::start_hub() {
  return hub_.start({bin_ + "/picopay-hub", "--broker-host", "127.0.0.1", "--broker-port",
                     std::to_string(broker_.port()), "--broker-user", "hub", "--broker-password", hub_pw_,
                     "--private-key", hub_key_, "--contract", contract_, "--rpc-url", chain_url_, "--db",
                     work_ + "/hub.db", "--collateral-wei", kCollateralWei},
                    work_ + "/hub.log");
}

bool Soak::start_agent(Agent& a) {
  std::vector<std::string> argv = {bin_ + "/picopay-agent", "--name", a.name, "--state-dir", a.dir, "--broker",
                                   "127.0.0.1:" + std::to_string(broker_.port()), "--password", a.password, "--hub",
                                   hub_addr_, "--contract", contract_, "--key", a.key, "--rpc", chain_url_,
                                   "--status-interval-ms", "250"};
  if (!a.payer) {
    argv.insert(argv.end(), {"--role", "payee", "--meter", "none"});
    return a.proc.start(argv, work_ + "/" + a.name + ".log");
  }
  argv.insert(argv.end(), {"--role", "payer", "--meter", "stdin", "--price-wei", std::to_string(kPriceWei),
                           "--deposit-wei", kDepositWei});
  if (a.thread) argv.insert(argv.end(), {"--pay-to", agents_[0]->addr, "--thread-lock-wei", kThreadLockWei});
  if (!a.proc.start(argv, work_ + "/" + a.name + ".log", true)) return false;
  a.in = a.proc.stdin_fd();
  int fl = fcntl(a.in, F_GETFL);
  fcntl(a.in, F_SETFL, fl | O_NONBLOCK);
  a.fed_ok = false;  // the next feed re-sends the current value
  return true;
}

bool Soak::feed(Agent& a, bool advance) {
  if (!a.payer || a.in < 0 || !a.proc.running()) return false;
  uint64_t next = a.fed + (advance ? 1 + rng_() % 3 : 0);
  std::string line = "wh " + std::to_string(next) + "\n";
  ssize_t n = ::write(a.in, line.data(), line.size());
  if (n == static_cast<ssize_t>(line.size())) {
    a.fed = next;
    a.fed_ok = true;
    return true;
  }
  // A full pipe (a hung agent) or a dead one: the meter is cumulative, the next line carries it.
  if (advance) a.fed = next;
  a.fed_ok = false;
  return false;
}

void Soak::feed_all(bool advance) {
  for (auto& a : agents_)
    if (a->payer) feed(*a, advance);
}

std::string Soak::check(bool final_round) {
  std::string diff;
  HubLedger hl = read_hub_ledger(work_ + "/hub.db");
  if (!hl.ok) return "hub ledger unreadable";
  AgentView payee = agent_view(bin_, agents_[0]->dir);
  if (!payee.ok) return "payee status: " + payee.err;
  for (auto& a : agents_) {
    AgentView v = a->payer ? agent_view(bin_, a->dir) : payee;
    if (!v.ok) return a->name + " status: " + v.err;
    if (v.pending) diff += a->name + ": update pending; ";
    if (!v.has_channel) {
      // A payee nobody pays through a thread has no channel (nor has the hub one for it).
      if (!a->payer && !hl.state.count(a->addr)) continue;
      diff += a->name + ": no double-signed channel; ";
      continue;
    }
    auto it = hl.state.find(a->addr);
    if (it == hl.state.end())
      diff += a->name + ": not in the hub ledger; ";
    else if (it->second != v.channel) {
      SignedChannelState hs{};
      (void)decode_channel_state(it->second.data(), it->second.size(), hs);
      diff += a->name + ": agent state txCountGlobal " + std::to_string(v.ch.state.txCountGlobal) +
              " != hub ledger txCountGlobal " + std::to_string(hs.state.txCountGlobal) + "; ";
    }
    // Every hub signature the observer saw for a txCountGlobal the ledger holds a state for
    // is that state's sigHub (else the hub signed a state its ledger does not keep).
    for (auto& [tx, sig] : hl.hub_sig[a->addr])
      for (auto& s : obs_.hub_sigs(a->addr, tx))
        if (s != sig && reported_.insert(a->addr + "/" + std::to_string(tx)).second)
          anomalies_.push_back(a->name + " txCountGlobal " + std::to_string(tx) +
                               ": a hub signature on the wire differs from the sigHub of the hub ledger's state");
    if (!a->payer) continue;
    if (!final_round && v.metered != a->fed)
      diff += a->name + ": metered " + std::to_string(v.metered) + " Wh, fed " + std::to_string(a->fed) + "; ";
    if (v.units_paid != v.metered)
      diff += a->name + ": paid " + std::to_string(v.units_paid) + " of " + std::to_string(v.metered) + " Wh; ";
    U256 expect{}, paid{};
    (void)u256_mul(U256::from_u64(kPriceWei), U256::from_u64(v.units_paid), expect);
    (void)u256_parse_decimal(v.wei_paid.c_str(), v.wei_paid.size(), paid);
    if (!(expect == paid)) diff += a->name + ": weiPaid " + v.wei_paid + " != units x price; ";
    if (a->thread) {
      U256 got = payee.received_from.count(a->addr) ? payee.received_from[a->addr] : U256::zero();
      if (!(got == paid))
        diff += a->name + ": payee received " + json::amount_text(got) + " wei of " + v.wei_paid + "; ";
    } else if (!(v.ch.state.balanceWeiHub == paid)) {
      diff += a->name + ": hub balance " + json::amount_text(v.ch.state.balanceWeiHub) + " != paid " + v.wei_paid +
              "; ";
    }
    if (final_round && v.open_threads) diff += a->name + ": threads still open; ";
  }
  return diff;
}

void Soak::snapshot(const std::string& name) {
  const std::string d = work_ + "/" + name;
  std::string cmd = "mkdir -p '" + d + "' && cp -a '" + work_ + "'/hub.db* '" + work_ + "'/*.log '" + work_ +
                    "'/agents '" + d + "/' 2>/dev/null";
  (void)std::system(cmd.c_str());
}

bool Soak::settle(int cycle, bool final_round, std::string& why) {
  auto t0 = Clock::now();
  int polls = 0;
  for (;;) {
    if (!final_round && (polls % 5) == 0)
      for (auto& a : agents_)
        if (a->payer && !a->fed_ok) feed(*a, false);
    why = check(final_round);
    ++polls;
    if (why.empty()) return true;
    if (std::chrono::duration<double>(Clock::now() - t0).count() > settle_timeout_ || g_stop) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (!final_round) supervise();
  }
  (void)cycle;
  return false;
}

void Soak::kill_part(int p) {
  ++kills_[p < 3 ? part_name(p) : (agents_[static_cast<size_t>(p - 3)]->payer ? "payer" : "payee")];
  if (p == 0) hub_.kill9();
  else if (p == 1) broker_.kill9();
  else if (p == 2) chain_.kill9();
  else {
    Agent& a = *agents_[static_cast<size_t>(p - 3)];
    a.proc.kill9();
    a.in = -1;
  }
}

bool Soak::restart_part(int p, std::string& err) {
  if (p == 0) return start_hub() || (err = "cannot restart picopay-hub", false);
  if (p == 1) return broker_.restart(err);
  if (p == 2) return start_chain(false, err);
  Agent& a = *agents_[static_cast<size_t>(p - 3)];
  return start_agent(a) || (err = "cannot restart " + a.name, false);
}

void Soak::supervise() {
  auto restart = [&](int p, Child& c) {
    if (c.running()) return;
    const std::string name = part_name(p);
    ++self_exits_[name];
    if (self_exit_log_.size() < 50)
      self_exit_log_.push_back(name + " exited by itself with status " + std::to_string(c.status()));
    std::printf("[soak] %s exited by itself (status %d): restarted\n", name.c_str(), c.status());
    std::fflush(stdout);
    std::string err;
    if (!restart_part(p, err)) std::printf("[soak] restart of %s failed: %s\n", name.c_str(), err.c_str());
  };
  restart(0, hub_);
  restart(2, chain_);
  for (size_t k = 0; k < agents_.size(); ++k) restart(3 + static_cast<int>(k), agents_[k]->proc);
}

void Soak::pause_ms(int ms, bool advance) {
  for (int w = 0; w < ms; w += 50) {
    if (advance) feed_all(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  supervise();
}

bool Soak::setup(std::string& err) {
  bin_ = bin_dir();
  for (const char* b : {"picopay-agent", "picopay-hub"})
    if (access((bin_ + "/" + b).c_str(), X_OK) != 0) {
      err = "missing " + bin_ + "/" + b;
      return false;
    }
  make_dirs(work_ + "/agents");
  hub_key_ = random_key_hex();
  hub_addr_ = key_address(hub_key_);
  {
    auto a = std::make_unique<Agent>();
    a->name = "payee";
    a->payer = false;
    agents_.push_back(std::move(a));
  }
  for (int i = 0; i < payers_; ++i) {
    auto a = std::make_unique<Agent>();
    a->name = "payer" + std::to_string(i + 1);
    a->thread = i % 2 == 0 && i / 2 < thread_payers_;  // payer1, payer3, ... through threads
    agents_.push_back(std::move(a));
  }
  for (auto& a : agents_) {
    a->key = random_key_hex();
    a->addr = key_address(a->key);
    a->dir = work_ + "/agents/" + a->name;
    a->password = random_key_hex().substr(2, 24);
  }
  // 1. The chain node (with a database) and the contract.
  chain_port_ = free_port();
  chain_url_ = "http://127.0.0.1:" + std::to_string(chain_port_);
  if (!start_chain(true, err)) return false;
  {
    chain::RpcClient rpc(chain_url_);
    PrivateKey hk{};
    (void)private_key_parse(hub_key_.c_str(), hub_key_.size(), hk);
    chain::Wallet w(rpc, hk);
    if (!w.init()) {
      err = "chain wallet init failed";
      return false;
    }
    auto art = chain::load_artifact(chain::default_artifact_dir() + "/ChannelManager.json");
    if (!art) {
      err = "contract artifact: " + art.error().to_string();
      return false;
    }
    auto addr = chain::deploy_channel_manager(w, *art, w.address(), kChallenge, Address{});
    if (!addr) {
      err = "deploy: " + addr.error().to_string();
      return false;
    }
    contract_ = mqtt::topic_address(*addr);
    chain::ChannelManagerClient cm(w, *addr);
    U256 reserve{};
    (void)u256_parse_decimal("100000000000000000000", 21, reserve);
    auto f = cm.fund_reserve(reserve);
    if (!f) {
      err = "fund reserve: " + f.error().to_string();
      return false;
    }
  }
  std::printf("[soak] chain %s (db %s/chaindb), ChannelManager %s\n", chain_url_.c_str(), work_.c_str(),
              contract_.c_str());
  // 2. The broker: passwords, the ACL of docs/mqtt-protocol.md, an observer account.
  hub_pw_ = random_key_hex().substr(2, 24);
  obs_pw_ = random_key_hex().substr(2, 24);
  std::vector<BrokerUser> users = {{"hub", hub_pw_}, {"soak", obs_pw_}};
  for (auto& a : agents_) users.push_back({a->addr, a->password});
  std::string acl = "user hub\ntopic readwrite picopay/v1/#\n\nuser soak\ntopic read picopay/v1/#\n\n";
  acl += "pattern write picopay/v1/hub/+/channel/%u/update\n";
  acl += "pattern write picopay/v1/hub/+/channel/%u/reply\n";
  acl += "pattern write picopay/v1/hub/+/channel/%u/sync\n";
  acl += "pattern read picopay/v1/user/%u/reply\n";
  acl += "pattern read picopay/v1/user/%u/request\n";
  acl += "pattern readwrite picopay/v1/user/%u/status\n";
  acl += "pattern read picopay/v1/hub/+/status/%u\n";
  acl += "pattern read picopay/v1/hub/+/status\n";
  acl += "pattern write picopay/v1/thread/+/update\n";
  acl += "pattern read picopay/v1/thread/%u/update\n";
  if (!broker_.start(work_ + "/broker", users, acl, err)) return false;
  // 3. The observer: a persistent session, so what is queued for it while it reconnects
  // after a broker restart still reaches it (what the broker itself lost does not).
  mqtt::Options o;
  o.port = broker_.port();
  o.client_id = "picopay-soak-observer";
  o.username = "soak";
  o.password = obs_pw_;
  o.reconnect_max_ms = 500;
  o.max_inflight = 1000;
  mq_ = std::make_unique<mqtt::Client>(o);
  mq_->on_message([this](const mqtt::Message& m) { obs_.on_message(m); });
  mq_->subscribe("picopay/v1/#");
  if (!mq_->start(err) || !mq_->wait_connected(10000)) {
    err = "observer: " + (err.empty() ? mq_->last_error() : err);
    return false;
  }
  // 4. The hub, the payee, the payers.
  if (!start_hub()) {
    err = "cannot start picopay-hub";
    return false;
  }
  for (auto& a : agents_)
    if (!start_agent(*a)) {
      err = "cannot start " + a->name;
      return false;
    }
  std::printf("[soak] mosquitto :%d, picopay-hub %s, payee %s, %d payers (%d through threads)\n",
              broker_.port(), hub_addr_.c_str(), agents_[0]->addr.c_str(), payers_, thread_payers_);
  std::fflush(stdout);
  // 5. Every payer deposits, pays its first Wh (the meter's baseline is then on disk).
  feed_all(false);  // wh 0: the baseline
  auto t0 = Clock::now();
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    supervise();
    bool all = true;
    for (auto& a : agents_) {
      if (!a->payer) continue;
      AgentView v = agent_view(bin_, a->dir);
      if (!v.ok || !v.has_channel || v.units_paid < 1) {
        all = false;
        if (a->fed == 0 && v.ok && v.has_channel) feed(*a, true);
        else if (!a->fed_ok) feed(*a, false);
      }
    }
    if (all) break;
    if (std::chrono::duration<double>(Clock::now() - t0).count() > 300 || g_stop) {
      err = "payers did not deposit and pay within 300 s (see " + work_ + "/*.log)";
      return false;
    }
  }
  std::string why;
  if (!settle(0, false, why)) {
    err = "the initial state does not reconcile: " + why;
    return false;
  }
  return true;
}

// The hub's ledger forgets payer2's latest countersigned update (the hub is down).
void Soak::inject_lost_payment() {
  const Agent& a = *agents_[2];
  sqlite3* h = nullptr;
  if (sqlite3_open_v2((work_ + "/hub.db").c_str(), &h, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::printf("[soak] inject: cannot open hub.db\n");
    sqlite3_close(h);
    return;
  }
  sqlite3_busy_timeout(h, 5000);
  const std::string u = a.addr;
  std::string sql = "UPDATE channels SET tx = (SELECT tx FROM updates WHERE user='" + u +
                    "' ORDER BY tx DESC LIMIT 1 OFFSET 1), state = (SELECT state FROM updates WHERE user='" + u +
                    "' ORDER BY tx DESC LIMIT 1 OFFSET 1) WHERE user='" + u + "'; DELETE FROM updates WHERE user='" +
                    u + "' AND tx = (SELECT max(tx) FROM updates WHERE user='" + u + "');";
  char* msg = nullptr;
  if (sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK)
    std::printf("[soak] inject: %s\n", msg ? msg : "?");
  else
    std::printf("[soak] inject: the hub's ledger lost %s's latest update\n", a.name.c_str());
  sqlite3_free(msg);
  sqlite3_close(h);
}

// A second hub signature for payer2's latest txCountGlobal, over another state.
void Soak::inject_double_sign() {
  const Agent& a = *agents_[2];
  AgentView v = agent_view(bin_, a.dir);
  PrivateKey hk{};
  Signer signer;
  Hash32 other{};
  keccak256(reinterpret_cast<const uint8_t*>("picopay-soak: not the state"), 27, other.bytes);
  mqtt::Reply r;
  r.kind = mqtt::ReplyKind::Ack;
  r.txCountGlobal = v.ch.state.txCountGlobal;
  if (private_key_parse(hub_key_.c_str(), hub_key_.size(), hk) != Status::Ok || signer.init() != Status::Ok ||
      signer.sign_eth(hk, other, r.sig) != Status::Ok)
    return;
  std::vector<uint8_t> bytes;
  if (mqtt::encode_reply(r, bytes) != Status::Ok) return;
  mqtt::Options o;
  o.port = broker_.port();
  o.client_id = "picopay-soak-inject";
  o.username = "hub";
  o.password = hub_pw_;
  o.clean_start = true;
  mqtt::Client c(o);
  std::string err;
  Address user{};
  (void)address_parse(a.addr.c_str(), a.addr.size(), user);
  if (c.start(err) && c.wait_connected(10000)) {
    c.publish(mqtt::topic_reply(user), bytes.data(), bytes.size(), 1, false);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::printf("[soak] inject: a second hub signature for %s txCountGlobal %llu published\n", a.name.c_str(),
                static_cast<unsigned long long>(r.txCountGlobal));
  }
  c.stop();
}

void Soak::stop_all() {
  for (auto& a : agents_) a->proc.stop(5000);
  hub_.stop(5000);
  if (mq_) mq_->stop();
  broker_.stop();
  chain_.stop(5000);
}

int Soak::run(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "picopay-soak: %s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    const char* v = argv[++i];
    if (a == "--cycles") cycles_ = std::atoi(v);
    else if (a == "--seconds") seconds_ = std::atoi(v);
    else if (a == "--payers") payers_ = std::atoi(v);
    else if (a == "--workdir") work_ = v;
    else if (a == "--seed") seed_ = std::strtoull(v, nullptr, 10);
    else if (a == "--chain-weight") chain_weight_ = std::atoi(v);
    else if (a == "--settle-timeout") settle_timeout_ = std::atoi(v);
    else if (a == "--inject") inject_ = v;
    else if (a == "--thread-payers") thread_payers_ = std::atoi(v);
    else {
      std::fprintf(stderr, "picopay-soak: unknown option %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (inject_ != "none" && inject_ != "lost-payment" && inject_ != "double-sign") {
    std::fprintf(stderr, "picopay-soak: --inject none|lost-payment|double-sign\n");
    return 2;
  }
  if (inject_ != "none" && payers_ < 2) payers_ = 2;
  if (cycles_ < 0 || seconds_ < 0 || payers_ < 1 || payers_ > 8 || chain_weight_ < 0 || settle_timeout_ < 1) {
    std::fprintf(stderr, "picopay-soak: --cycles >= 0, --seconds >= 0, --payers 1..8, --chain-weight >= 0\n");
    return 2;
  }
  if (thread_payers_ < 0 || thread_payers_ > (payers_ + 1) / 2) thread_payers_ = (payers_ + 1) / 2;
  if (seed_ == 0) seed_ = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  rng_.seed(seed_);
  if (work_.empty()) {
    char tmpl[] = "/tmp/picopay-soak-XXXXXX";
    if (!mkdtemp(tmpl)) return 3;
    work_ = tmpl;
  }
  make_dirs(work_);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::printf("[soak] workdir %s, seed %llu, %d cycles%s\n", work_.c_str(), static_cast<unsigned long long>(seed_),
              cycles_, seconds_ ? (", at most " + std::to_string(seconds_) + " s").c_str() : "");
  std::fflush(stdout);
  auto t_start = Clock::now();
  std::string err;
  if (!setup(err)) {
    std::fprintf(stderr, "[soak] SET-UP FAILED: %s (workdir %s)\n", err.c_str(), work_.c_str());
    stop_all();
    return 3;
  }
  // The parts: 0 hub, 1 broker, 2 chain, 3.. agents; the chain weighs chain_weight_.
  std::vector<int> wheel = {0, 1};
  for (int k = 0; k < chain_weight_; ++k) wheel.push_back(2);
  for (size_t k = 0; k < agents_.size(); ++k) wheel.push_back(3 + static_cast<int>(k));
  int done = 0, unsettled_in_row = 0;
  double settle_sum = 0, settle_max = 0;
  auto t_cycles = Clock::now();
  for (int c = 1; c <= cycles_ && !g_stop; ++c) {
    if (seconds_ && std::chrono::duration<double>(Clock::now() - t_cycles).count() >= seconds_) break;
    const bool injecting = c == 2 && inject_ != "none";
    const int part = injecting && inject_ == "lost-payment" ? 0 : wheel[rng_() % wheel.size()];
    // Payments stream for 0.15-0.75 s (a reading every 50 ms), the part dies amid them.
    const int before_ms = 150 + static_cast<int>(rng_() % 600);
    pause_ms(before_ms, true);
    kill_part(part);
    const int down_ms = static_cast<int>(rng_() % 600);
    for (int w = 0; w < down_ms; w += 50) {
      feed_all(true);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }  // no supervise(): the killed part stays down
    if (injecting && inject_ == "lost-payment") inject_lost_payment();
    if (!restart_part(part, err)) {
      anomalies_.push_back("cycle " + std::to_string(c) + ": " + err);
      std::printf("[soak] cycle %d: restart failed: %s\n", c, err.c_str());
      break;
    }
    pause_ms(250, true);
    // The checks (the meters pause).
    auto t0 = Clock::now();
    std::string why;
    bool ok = settle(c, false, why);
    double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    settle_sum += dt;
    if (dt > settle_max) settle_max = dt;
    ++checks_;
    if (injecting && inject_ == "double-sign") {
      inject_double_sign();
      std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // the observer sees it
    }
    for (auto& a : obs_.take_anomalies()) anomalies_.push_back("cycle " + std::to_string(c) + ": " + a);
    if (!ok) {
      anomalies_.push_back("cycle " + std::to_string(c) + " (killed " + part_name(part) + "): not reconciled after " +
                           std::to_string(settle_timeout_) + " s: " + why);
      const size_t this_anomaly = anomalies_.size() - 1;
      snapshot("anomaly-" + std::to_string(c));
      ++unsettled_in_row;
      // Go on from a clean point: every payer stops gracefully (pays what is due, closes its
      // thread with its latest signed state) and restarts; the cycle counts as healed if
      // the checks then hold. The anomaly stays recorded.
      std::printf("[soak] cycle %d: FAILED: %s\n[soak] healing: payers stop with SIGTERM and restart\n", c,
                  why.c_str());
      for (auto& a : agents_)
        if (a->payer && inject_ == "none") {  // an injected fault is not healed
          kill(a->proc.pid(), SIGTERM);
          if (a->proc.wait(30000) < 0) a->proc.kill9();
          a->in = -1;
          if (!start_agent(*a)) anomalies_.push_back("cannot restart " + a->name + " after healing");
        }
      std::string why2;
      if (inject_ == "none" && settle(c, false, why2)) {
        ++healed_;
        unsettled_in_row = 0;
        anomalies_[this_anomaly] += " [healed: reconciled after the payers' graceful restart]";
      } else {
        anomalies_[this_anomaly] += inject_ == "none" ? " [not healed: " + why2 + "]" : " [injected: not healed]";
      }
    } else {
      unsettled_in_row = 0;
    }
    done = c;
    char hms[16];
    {
      time_t t = time(nullptr);
      strftime(hms, sizeof hms, "%H:%M:%S", gmtime(&t));
    }
    std::printf("[soak] %s cycle %d: killed %-7s down %4d ms, checks %s in %.1f s%s%s\n", hms, c, part_name(part).c_str(),
                down_ms, ok ? "held" : "FAILED", dt, ok ? "" : ": ", ok ? "" : why.c_str());
    std::fflush(stdout);
    if (unsettled_in_row >= 3) {
      std::printf("[soak] three cycles in a row did not reconcile: stopping\n");
      break;
    }
  }
  const double cycles_s = std::chrono::duration<double>(Clock::now() - t_cycles).count();
  // The end: the payers stop (close their threads), every ledger must be equal.
  std::string why;
  bool pre = settle(done + 1, false, why);
  if (!pre) anomalies_.push_back("before the final stop: not reconciled: " + why);
  for (auto& a : agents_)
    if (a->payer) {
      kill(a->proc.pid(), SIGTERM);
      int rc = a->proc.wait(60000);
      if (rc != 0) anomalies_.push_back(a->name + " exited with " + std::to_string(rc) + " on SIGTERM");
    }
  bool fin = settle(done + 1, true, why);
  if (!fin) anomalies_.push_back("final ledgers differ: " + why);
  for (auto& a : obs_.take_anomalies()) anomalies_.push_back("end: " + a);
  if (!fin || !pre) snapshot("anomaly-final");
  HubLedger hl = read_hub_ledger(work_ + "/hub.db");
  uint64_t wh = 0;
  for (auto& a : agents_)
    if (a->payer) wh += a->fed;
  std::printf("\n[soak] SUMMARY seed=%llu cycles=%d duration_s=%.0f cycle_phase_s=%.0f kills:", 
              static_cast<unsigned long long>(seed_), done,
              std::chrono::duration<double>(Clock::now() - t_start).count(), cycles_s);
  for (auto& [k, n] : kills_) std::printf(" %s=%llu", k.c_str(), static_cast<unsigned long long>(n));
  std::printf("\n[soak] channel updates countersigned (hub ledger rows)=%lld thread updates seen=%llu Wh paid=%llu "
              "observer messages=%llu user re-signed txCountGlobal=%llu settle avg/max s=%.2f/%.1f\n",
              hl.updates, static_cast<unsigned long long>(obs_.thread_updates()),
              static_cast<unsigned long long>(wh), static_cast<unsigned long long>(obs_.messages()),
              static_cast<unsigned long long>(obs_.user_resigned()), checks_ ? settle_sum / static_cast<double>(checks_) : 0, settle_max);
  std::printf("[soak] parts that exited by themselves (restarted):");
  for (auto& [k, n] : self_exits_) std::printf(" %s=%llu", k.c_str(), static_cast<unsigned long long>(n));
  std::printf("%s\n", self_exits_.empty() ? " none" : "");
  for (auto& l : self_exit_log_) std::printf("[soak]   %s\n", l.c_str());
  std::printf("[soak] anomalies=%zu (cycles healed by a graceful restart of the payers: %llu)\n", anomalies_.size(),
              static_cast<unsigned long long>(healed_));
  for (auto& a : anomalies_) std::printf("[soak] ANOMALY %s\n", a.c_str());
  stop_all();
  std::printf("[soak] logs and state in %s\n", work_.c_str());
  return anomalies_.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Soak s;
  return s.run(argc, argv);
}
