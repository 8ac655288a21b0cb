// picopay_bench_load: end-to-end load through a real mosquitto and picopay-hub with
// durable SQLite (WAL, synchronous=FULL), all on 127.0.0.1 (issue 6; docs/benchmarks.md).
//
// For each device count N: N simulated devices, multiplexed over min(N, --max-conns)
// MQTT v5 connections, each pay the hub in a closed loop (one update in flight per
// device, the next one leaves when the Ack arrives), following docs/mqtt-protocol.md:
// ChannelUpdate (wire 0x03) on picopay/v1/hub/{hub}/channel/{user}/update with the v5
// Response Topic and Correlation Data, Ack (Reply 0x10) on picopay/v1/user/{user}/reply.
// Reports countersigned payments/s, p50/p99/max latency (publish -> Ack received), and
// the CPU (utime+stime from /proc/<pid>/stat) and peak RSS (VmHWM from
// /proc/<pid>/status, reset per run through /proc/<pid>/clear_refs) of the hub and of
// the broker.
//
// Fixed-rate (open-loop) runs, --rate R or --rate-devices N --rate-load F: every device
// pays R times a second (Poisson arrivals, or --arrivals even: evenly spaced with a
// random phase), whether or not its previous payment has been acknowledged. A device
// keeps one update in flight, like picopay-agent; payments that fall due meanwhile wait
// in the device and leave as soon as the Ack arrives. Latency is measured from the
// payment's SCHEDULED time to its Ack, so time spent queued in the device (or in a
// late load generator) counts: coordinated omission is not hidden. Reports offered
// (scheduled in the window) and achieved (Acks in the window) payments/s, p50/p99/max
// from the scheduled time, p50/p99 from the actual publish (hub + broker service time),
// the generator's own lag, and payments never answered (counted as errors; their
// latency enters the distribution as the time waited until the drain gave up).
// --rate-devices N --rate-load F runs the closed-loop sweep first, then one fixed-rate
// run at N devices with R = F x (best closed-loop payments/s) / N.
//
// Every device is the core's device Session (picopay/session.hpp), the same code as
// picopay-agent and the firmware. Channels are opened the way a device opens one when
// the hub runs without a chain (picopay-hub --dev-skip-chain-checks): Sync (the hub's
// genesis state), then the session proposes ProposePendingDeposit and, told by the
// harness that its deposit is on chain, ConfirmPending; the hub countersigns both.
//
// Device crypto is done outside the measured window: before each run every device's
// session proposes the chain of payments it will send, and each is completed locally
// with the hub's countersignature computed from the hub key (libsecp256k1 signs
// deterministically, RFC 6979, so the real hub's Ack must carry exactly that
// signature: every Ack is compared after the run). The session is then rebuilt to the
// last payment the real hub acknowledged. On a real deployment devices run on their own
// CPUs; here they would otherwise compete with the hub for the same 2 cores.
// --inline-crypto proposes and verifies inside the window instead.
//
// Thread payments: S senders stream ThreadPayments (wire 0x06, the whole thread state)
// to one payee on picopay/v1/thread/{payee}/update; the payee (in this process) checks
// each with thread_accept_state. The threads are set up directly (both ends hold the same initial
// thread state); opening them through the hub is not part of this measurement. Each
// sender keeps --thread-window updates in flight.
//
// The ledger (docs/benchmarks.md, "A million channels"): --store postgresql runs the hub on a
// PostgreSQL server this tool starts on 127.0.0.1 (tests/support/postgres.hpp) instead of
// a SQLite file. --preload N writes N idle channels into the ledger before the hub starts
// (well-formed states of random users with placeholder signatures: nobody pays on them);
// the devices' own channels are opened among them as usual. The report then has the
// hub's start-up time with that ledger, and --idle-probe K asks the hub for the Sync of K
// preloaded channels (each loads that channel into its cache) and reports the hub's RSS
// growth per channel (idle_channel_bytes). --channel-cache N is passed to the hub.
// --preload-file FILE (SQLite only) keeps the preloaded ledger for the next run: when FILE
// exists it is copied in as the ledger instead of writing the channels again (it must hold
// exactly N channels), otherwise the freshly written ledger is copied to FILE.
//
// Output: --json FILE (see docs/benchmarks.md); a short summary on stderr.
#include "ledger/ledger.hpp"
#include "support/postgres.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "picopay/channel.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/session.hpp"
#include "picopay/signer.hpp"
#include "picopay/state.hpp"
#include "support/process.hpp"

using namespace picopay;
using Clock = std::chrono::steady_clock;
using Bytes = std::vector<uint8_t>;

namespace {

uint64_t unix_now() { return static_cast<uint64_t>(std::time(nullptr)); }

double secs_since(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

void logf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void logf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "[bench/load] ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
}

std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += c;
    }
  }
  return o + "\"";
}
std::string jnum(double v) {
  if (!std::isfinite(v)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

// ------------------------------------------------------------------ /proc

struct ProcSample {
  double cpu_s = 0;  // utime + stime
  long hwm_kb = -1;
  long rss_kb = -1;
};
ProcSample proc_sample(pid_t pid) {
  ProcSample s;
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (std::getline(st, line)) {
    const size_t rp = line.rfind(')');
    if (rp != std::string::npos) {
      std::istringstream is(line.substr(rp + 2));
      std::string f;
      // fields after "comm": state(3) ... utime(14) stime(15)
      std::vector<std::string> v;
      while (is >> f) v.push_back(f);
      if (v.size() > 13) {
        const double tck = static_cast<double>(sysconf(_SC_CLK_TCK));
        s.cpu_s = (std::stod(v[11]) + std::stod(v[12])) / tck;
      }
    }
  }
  std::ifstream ss("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(ss, line)) {
    if (line.rfind("VmHWM:", 0) == 0) s.hwm_kb = std::atol(line.c_str() + 6);
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kb = std::atol(line.c_str() + 6);
  }
  return s;
}
// The PostgreSQL server's CPU (its postmaster and every child: the hub's backend, the WAL
// writer, the checkpointer, ...), utime + stime in seconds; 0 without a server.
pid_t g_postmaster = -1;
double pg_cpu_s() {
  if (g_postmaster <= 0) return 0;
  double sum = proc_sample(g_postmaster).cpu_s;
  DIR* d = opendir("/proc");
  if (!d) return sum;
  while (dirent* e = readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
    if (pid <= 0) continue;
    std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(st, line)) continue;
    const size_t rp = line.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream is(line.substr(rp + 2));
    std::string state;
    long ppid = 0;
    is >> state >> ppid;
    if (ppid == g_postmaster) sum += proc_sample(pid).cpu_s;
  }
  closedir(d);
  return sum;
}

// Resets the peak RSS (VmHWM) to the current RSS (Linux: "5" > clear_refs).
void reset_hwm(pid_t pid) {
  std::ofstream f("/proc/" + std::to_string(pid) + "/clear_refs");
  f << "5";
}

// ------------------------------------------------------------------ options

struct Opts {
  std::string bin_dir;
  std::string mosquitto = "mosquitto";
  std::vector<int> devices{1, 10, 100, 1000};
  double duration = 10;
  std::string json;
  std::string work_dir;
  bool quick = false;
  int max_conns = 100;
  bool inline_crypto = false;
  int thread_senders = 10;
  int thread_window = 16;
  int batch_max = 256;
  double rate = 0;        // > 0: every --devices run is fixed-rate at this many payments/s per device
  int rate_devices = 0;   // > 0: after the closed-loop sweep, one fixed-rate run at this N
  double rate_load = 0.5; // ... offering this fraction of the best closed-loop payments/s
  bool even = false;      // arrivals evenly spaced (random phase) instead of Poisson
  std::string store = "sqlite";  // or "postgresql" (a server started here)
  long preload = 0;       // idle channels written into the ledger before the hub starts
  long idle_probe = 0;    // preloaded channels synced to measure memory per cached channel
  long channel_cache = 0; // --channel-cache for the hub (0: its default)
  std::string preload_file;  // SQLite: a kept copy of the preloaded ledger (reused when present)
};

void usage() {
  std::fprintf(stderr,
               "usage: picopay_bench_load --bin-dir DIR [--devices 1,10,100,1000] [--duration S] --json FILE\n"
               "       [--work-dir DIR] [--quick] [--max-conns 100] [--inline-crypto] [--mosquitto PATH]\n"
               "       [--thread-senders 10] [--thread-window 16] [--batch-max 256]\n"
               "       [--rate R | --rate-devices N [--rate-load 0.5]] [--arrivals poisson|even]\n"
               "       [--store sqlite|postgresql] [--preload N] [--idle-probe K] [--channel-cache N]\n"
               "       [--preload-file FILE]\n"
               "  --rate R          fixed-rate (open-loop) runs: R payments/s per device for every --devices N\n"
               "  --rate-devices N  after the closed-loop sweep, one fixed-rate run at N devices offering\n"
               "                    --rate-load x the best closed-loop payments/s\n"
               "  --preload-file F  SQLite: copy F in as the preloaded ledger if it exists (it must hold\n"
               "                    exactly --preload channels), else write the channels and copy them to F\n");
}

// ------------------------------------------------------------------ fixed identities

PrivateKey key_for(uint32_t tag, uint32_t i) {
  PrivateKey k;
  std::memset(k.bytes, 0, sizeof k.bytes);
  k.bytes[0] = 0x10;
  k.bytes[27] = static_cast<uint8_t>(tag);
  for (int b = 0; b < 4; ++b) k.bytes[28 + b] = static_cast<uint8_t>(i >> (24 - 8 * b));
  // bytes[0] = 0x10 keeps it non-zero and below the group order
  return k;
}
const PrivateKey kHubKey = [] {
  PrivateKey k;
  std::memset(k.bytes, 0x33, 32);
  return k;
}();
const char* kContract = "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390";

// ------------------------------------------------------------------ devices

struct Pre {
  uint64_t tx;        // its txCountGlobal
  Signature sigHub;   // the hub's (deterministic) countersignature
  Bytes wire;
};

struct Mailbox {  // setup phase: replies handed to the waiting thread
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Bytes> items;
};

struct Device {
  uint32_t idx = 0;
  PrivateKey key{};
  Address addr{};
  std::string update_topic, reply_topic;
  int conn = 0;
  // The device: the core Session with room for one thread (this benchmark opens none).
  Session sess;
  SessionThread slot[1];
  ThreadState set_item[1];
  Hash32 set_scratch[3];
  Bytes record;  // the session's record before the pre-signed chain (rebuilt after a run)
  // run phase (touched by the connection's network thread while running)
  std::vector<Pre> pre;
  size_t sent = 0;    // index of the update in flight (pre[sent]) / next to send
  size_t acked = 0;   // number of Acks received
  uint64_t inflight_tx = 0;
  Clock::time_point sent_at{};
  std::vector<Signature> acks;  // acks[k] countersigns pre[k]
  std::vector<float> lat_ms;    // latencies inside the window
  uint64_t in_window = 0;
  bool failed = false;
  std::atomic<bool> idle{true};
  std::string error;
  Mailbox box;
  // fixed-rate runs (guarded by mu: the scheduler thread and the network thread)
  std::mutex mu;
  std::vector<Clock::time_point> sched;  // sched[k]: when payment k (pre[k]) falls due
  size_t due = 0;                        // payments due so far (sched[0..due))
  bool inflight = false;
  uint64_t sched_in_window = 0, acked_in_window = 0;
  std::vector<float> lat_send_ms;        // Ack - actual publish, for payments scheduled in the window
};

struct Shared {
  Opts opt;
  Address hub{}, contract{};
  ChannelContext ctx{};
  std::vector<std::unique_ptr<mqtt::Client>> conns;
  std::vector<std::unique_ptr<Device>> devs;
  std::unordered_map<std::string, Device*> by_reply;
  std::atomic<int> phase{0};  // 0 setup, 1 run
  bool open_loop = false;     // the current run is fixed-rate
  std::atomic<bool> stop_sending{false};
  Clock::time_point win_start{}, win_end{};
  std::atomic<uint64_t> nacks{0}, bad_replies{0}, exhausted{0};
  std::mutex err_mu;
  std::vector<std::string> errors;
  Signer signer;  // thread-safe for const use (libsecp256k1 contexts are read-only after init)
  void note_error(const std::string& e) {
    std::lock_guard<std::mutex> lk(err_mu);
    if (errors.size() < 10) errors.push_back(e);
  }
};

mqtt::PublishProps props_for(const Device& d, uint64_t tx) {
  mqtt::PublishProps p;
  p.response_topic = d.reply_topic;
  p.correlation = mqtt::correlation_encode(tx);
  return p;
}

// Sends pre[d.sent] (called on the network thread of d's connection or by main).
void send_next(Shared& S, Device& d) {
  if (S.stop_sending.load() || d.failed) {
    d.idle = true;
    return;
  }
  if (S.opt.inline_crypto && d.sent == d.pre.size()) {
    // the session proposes the next one now (inside the window)
    Effects fx;
    if (d.sess.propose_payment(U256::from_u64(1000), U256::zero(), unix_now(), fx) != Status::Ok || fx.count != 1) {
      d.failed = true;
      d.idle = true;
      return;
    }
    Pre p;
    p.tx = d.sess.pending().txCountGlobal;
    p.wire.assign(fx.out[0].bytes, fx.out[0].bytes + fx.out[0].len);
    d.pre.push_back(std::move(p));
  }
  if (d.sent >= d.pre.size()) {
    S.exhausted++;
    d.idle = true;
    return;
  }
  Pre& p = d.pre[d.sent];
  d.inflight_tx = p.tx;
  d.idle = false;
  d.sent_at = Clock::now();
  const mqtt::PublishProps props = props_for(d, d.inflight_tx);
  std::string err;
  if (!S.conns[d.conn]->publish(d.update_topic, p.wire.data(), p.wire.size(), 1, false, &props, &err)) {
    d.failed = true;
    d.idle = true;
    d.error = "publish: " + err;
  }
}

float ms_between(Clock::time_point a, Clock::time_point b) {
  return static_cast<float>(std::chrono::duration<double, std::milli>(b - a).count());
}

// Fixed-rate runs. Caller holds d.mu. Puts pre[d.sent] in flight if it is due, nothing is
// in flight and the device has not failed; returns whether the caller must publish it
// (after releasing d.mu: publish_open).
bool take_next_open(Shared& S, Device& d, Clock::time_point now) {
  if (d.inflight || d.failed || d.sent >= d.due || S.stop_sending.load()) return false;
  d.inflight = true;
  d.idle = false;
  d.inflight_tx = d.pre[d.sent].tx;
  d.sent_at = now;
  return true;
}

void publish_open(Shared& S, Device& d, size_t k) {
  const Pre& p = d.pre[k];  // pre is not resized during a fixed-rate run
  const mqtt::PublishProps props = props_for(d, p.tx);
  std::string err;
  if (!S.conns[d.conn]->publish(d.update_topic, p.wire.data(), p.wire.size(), 1, false, &props, &err)) {
    std::lock_guard<std::mutex> lk(d.mu);
    d.failed = true;
    d.inflight = false;
    d.idle = true;
    d.error = "publish: " + err;
  }
}

void on_reply_open(Shared& S, Device& d, const mqtt::Reply& r) {
  const auto now = Clock::now();
  bool send = false;
  size_t k = 0;
  {
    std::lock_guard<std::mutex> lk(d.mu);
    if (r.kind == mqtt::ReplyKind::Nack) {
      S.nacks++;
      d.failed = true;
      d.inflight = false;
      d.idle = true;
      S.note_error(std::string("Nack ") + status_name(r.status) + " for tx " + std::to_string(r.txCountGlobal));
      return;
    }
    if (r.kind != mqtt::ReplyKind::Ack || !d.inflight || r.txCountGlobal != d.inflight_tx) {
      S.bad_replies++;  // duplicate or stale
      return;
    }
    const size_t j = d.sent;
    d.acks.push_back(r.sig);
    ++d.acked;
    ++d.sent;
    d.inflight = false;
    if (d.sched[j] >= S.win_start && d.sched[j] < S.win_end) {
      d.lat_ms.push_back(ms_between(d.sched[j], now));
      d.lat_send_ms.push_back(ms_between(d.sent_at, now));
    }
    if (now >= S.win_start && now <= S.win_end) ++d.in_window;
    if (take_next_open(S, d, now)) {
      send = true;
      k = d.sent;
    } else if (d.sent >= d.sched.size()) {
      d.idle = true;
    }
  }
  if (send) publish_open(S, d, k);
}

void on_reply(Shared& S, Device& d, const mqtt::Message& m) {
  mqtt::Reply r;
  const Status st = mqtt::decode_reply(m.payload.data(), m.payload.size(), r);
  if (st != Status::Ok) {
    S.bad_replies++;
    return;
  }
  if (S.phase.load() == 0) {
    std::lock_guard<std::mutex> lk(d.box.mu);
    d.box.items.push_back(m.payload);
    d.box.cv.notify_all();
    return;
  }
  if (S.open_loop) {
    on_reply_open(S, d, r);
    return;
  }
  if (r.kind == mqtt::ReplyKind::Nack) {
    S.nacks++;
    d.failed = true;
    d.idle = true;
    S.note_error(std::string("Nack ") + status_name(r.status) + " for tx " + std::to_string(r.txCountGlobal));
    return;
  }
  if (r.kind != mqtt::ReplyKind::Ack || d.idle || r.txCountGlobal != d.inflight_tx) {
    S.bad_replies++;  // duplicate or stale
    return;
  }
  const auto now = Clock::now();
  if (S.opt.inline_crypto) {
    Effects fx;  // the session verifies the countersignature and stores the state
    if (d.sess.on_reply(m.payload.data(), m.payload.size(), unix_now(), fx) != Status::Ok ||
        fx.event != SessionEvent::UpdateCompleted) {
      d.failed = true;
      d.idle = true;
      S.note_error("bad countersignature");
      return;
    }
  }
  d.acks.push_back(r.sig);
  ++d.acked;
  ++d.sent;
  if (d.sent_at >= S.win_start && now <= S.win_end) {
    d.lat_ms.push_back(static_cast<float>(std::chrono::duration<double, std::milli>(now - d.sent_at).count()));
    ++d.in_window;
  }
  send_next(S, d);
}

// Setup: publishes what the session wants sent, then feeds it the hub's replies until
// `done` holds (bounded: 3 re-sends, 10 s each).
bool exchange(Shared& S, Device& d, const Effects& first, const std::function<bool()>& done, std::string& err) {
  Effects fx = first;
  for (int attempt = 0; attempt < 3; ++attempt) {
    for (size_t i = 0; i < fx.count; ++i) {
      const OutMessage& m = fx.out[i];
      bool ok = true;
      if (m.route == Route::ToHubSync) {
        mqtt::PublishProps p;
        p.response_topic = d.reply_topic;
        ok = S.conns[d.conn]->publish(mqtt::topic_sync(S.hub, d.addr), nullptr, 0, 1, false, &p, &err);
      } else if (m.route == Route::ToHubUpdate) {
        const mqtt::PublishProps props = props_for(d, m.correlation);
        ok = S.conns[d.conn]->publish(d.update_topic, m.bytes, m.len, 1, false, &props, &err);
      }
      if (!ok) return false;
    }
    std::unique_lock<std::mutex> lk(d.box.mu);
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      while (!d.box.items.empty()) {
        Bytes b = std::move(d.box.items.front());
        d.box.items.erase(d.box.items.begin());
        Effects out;
        const Status st = d.sess.on_reply(b.data(), b.size(), unix_now(), out);
        if (out.refused != Status::Ok) {
          err = std::string("hub refused ") + update_reason_name(d.sess.pending().reason) + ": " +
                status_name(out.refused);
          return false;
        }
        if (st != Status::Ok && st != Status::Duplicate) S.bad_replies++;
        if (done()) return true;
      }
      d.box.cv.wait_until(lk, deadline);
    }
    fx = Effects{};
    if (d.sess.tick(unix_now() + 3600, fx) != Status::Ok) break;  // re-send now
  }
  err = "no reply from the hub within 30 s (device " + std::to_string(d.idx) + ", stray replies " +
        std::to_string(S.bad_replies.load()) + ")";
  return false;
}

// Starts d's session and opens and funds its channel at the hub (no chain:
// --dev-skip-chain-checks).
bool open_channel(Shared& S, Device& d, std::string& err) {
  SessionConfig cfg = session_config_default();
  cfg.contract = S.contract;
  cfg.user = d.addr;
  cfg.hub = S.hub;
  cfg.hasChainAccess = true;  // the harness tells the session its deposit is on chain
  cfg.verifyCountersigOnPayment = S.opt.inline_crypto;
  Status st = d.sess.init(cfg, S.signer, d.key, SessionStorage{d.slot, 1, d.set_item, d.set_scratch});
  if (st != Status::Ok) {
    err = std::string("session: ") + status_name(st);
    return false;
  }
  Effects fx;
  (void)d.sess.on_connect(unix_now(), fx);
  if (!exchange(S, d, fx, [&] { return d.sess.synced(); }, err)) return false;
  if (d.sess.channel().state.balanceWeiUser.is_zero()) {
    const uint64_t now = unix_now();
    st = d.sess.request_deposit(U256::from_u64(1000000000000000000ULL), U256::zero(), now + 3600, now, fx);  // 1 ETH
    if (st != Status::Ok) {
      err = std::string("deposit: ") + status_name(st);
      return false;
    }
    if (!exchange(S, d, fx, [&] { return !d.sess.has_pending(); }, err)) return false;
    // No chain in this benchmark: the harness asserts the deposit executed.
    ChainFacts f{};
    f.known = true;
    f.txCountChain = d.sess.channel().state.txCountChain;
    f.status = ChainChannelStatus::Open;
    f.blockTime = now;
    (void)d.sess.on_chain_fact(f, now, fx);
    Hash32 txh{};
    std::memset(txh.bytes, 0xd0, 32);
    txh.bytes[31] = static_cast<uint8_t>(d.idx);
    st = d.sess.propose_confirm_pending(txh, now, fx);
    if (st != Status::Ok) {
      err = std::string("ConfirmPending: ") + status_name(st);
      return false;
    }
    if (!exchange(S, d, fx, [&] { return !d.sess.has_pending(); }, err)) return false;
  }
  return true;
}

// An Ack reply carrying `sig` for txCountGlobal `tx`.
Bytes ack_bytes(uint64_t tx, const Signature& sig) {
  mqtt::Reply r;
  r.kind = mqtt::ReplyKind::Ack;
  r.txCountGlobal = tx;
  r.sig = sig;
  Bytes out;
  if (mqtt::encode_reply(r, out) != Status::Ok) std::abort();
  return out;
}

// The session after its own latest state was confirmed by a (local) Sync.
void resync_local(Device& d) {
  mqtt::Reply r;
  r.kind = mqtt::ReplyKind::Sync;
  r.txCountGlobal = d.sess.channel().state.txCountGlobal;
  r.state = d.sess.channel();
  Bytes b;
  Effects fx;
  if (mqtt::encode_reply(r, b) != Status::Ok || d.sess.on_reply(b.data(), b.size(), unix_now(), fx) != Status::Ok)
    std::abort();
}

// The session proposes `count` payments (outside the window); each is completed with the
// hub's countersignature computed here.
void presign(Shared& S, Device& d, size_t count) {
  d.pre.clear();
  d.pre.reserve(count);
  d.record.resize(session_record_max(1));
  size_t n = 0;
  if (d.sess.serialise(d.record.data(), d.record.size(), &n) != Status::Ok) std::abort();
  d.record.resize(n);
  Hash32 scratch[2];
  ThreadSet none{nullptr, 0, 0, scratch};
  for (size_t k = 0; k < count; ++k) {
    Effects fx;
    if (d.sess.propose_payment(U256::from_u64(1000), U256::zero(), unix_now(), fx) != Status::Ok || fx.count != 1)
      std::abort();
    Pre p;
    p.tx = d.sess.pending().txCountGlobal;
    p.wire.assign(fx.out[0].bytes, fx.out[0].bytes + fx.out[0].len);
    ChannelState next;
    if (channel_next_state(S.ctx, d.sess.channel().state, none, d.sess.pending(), next) != Status::Ok) std::abort();
    if (S.signer.sign_eth(kHubKey, channel_hash(next), p.sigHub) != Status::Ok) std::abort();
    const Bytes ack = ack_bytes(p.tx, p.sigHub);
    if (d.sess.on_reply(ack.data(), ack.size(), unix_now(), fx) != Status::Ok) std::abort();
    d.pre.push_back(std::move(p));
  }
}

// After a pre-signed run: the session back at the last payment the hub acknowledged
// (replayed: the session signs deterministically, so the bytes are the same).
void rebuild(Device& d) {
  if (d.sess.restore(d.record.data(), d.record.size()) != Status::Ok) std::abort();
  resync_local(d);
  for (size_t j = 0; j < d.acks.size(); ++j) {
    Effects fx;
    if (d.sess.propose_payment(U256::from_u64(1000), U256::zero(), unix_now(), fx) != Status::Ok) std::abort();
    const Bytes ack = ack_bytes(d.pre[j].tx, d.acks[j]);
    if (d.sess.on_reply(ack.data(), ack.size(), unix_now(), fx) != Status::Ok) std::abort();
  }
}

template <typename F>
void parallel_for(size_t n, unsigned threads, F f) {
  std::atomic<size_t> next{0};
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < n;) f(i);
    });
  for (auto& t : ts) t.join();
}

double percentile(std::vector<float>& v, double p) {
  if (v.empty()) return NAN;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - (p > 0 ? 1 : 0));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

struct ProcPair {
  pid_t hub = -1, broker = -1;
};

std::string proc_json(pid_t pid, const ProcSample& a, const ProcSample& b, double secs) {
  if (pid < 0) return "null";
  return "{\"pid\":" + std::to_string(pid) + ",\"cpu_s\":" + jnum(b.cpu_s - a.cpu_s) +
         ",\"cpu_pct\":" + jnum(100.0 * (b.cpu_s - a.cpu_s) / secs) + ",\"peak_rss_kb\":" + std::to_string(b.hwm_kb) + "}";
}

double self_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// One run with devs[0..n): closed loop (rate 0) or fixed-rate (rate payments/s per device).
// rate_out: in, the previous run's payments/s (sizes the closed-loop budget); out, this run's.
std::string run_channels(Shared& S, ProcPair pp, size_t n, double& rate_out, double rate = 0) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const double warm = S.opt.quick ? 0.2 : 1.0;
  const double dur = S.opt.duration;
  const bool open = rate > 0;
  const bool inline_crypto = S.opt.inline_crypto && !open;  // fixed-rate runs always pre-sign
  size_t per_dev;
  if (open) {
    // Poisson: mean + 6 standard deviations, plus slack (running out is reported)
    const double mean = rate * (warm + dur);
    per_dev = static_cast<size_t>(std::ceil(mean + 6 * std::sqrt(mean))) + 8;
  } else {
    // Budget of pre-signed updates: generous for the rate we can expect at this N.
    const double est = std::min(40000.0, rate_out > 0 ? rate_out * 3 : 4000.0);
    per_dev = static_cast<size_t>(std::ceil(est * (dur + warm + 1) / static_cast<double>(n))) + 4;
  }
  const auto t_pre = Clock::now();
  if (!inline_crypto) {
    parallel_for(n, cores, [&](size_t i) { presign(S, *S.devs[i], per_dev); });
  } else {
    for (size_t i = 0; i < n; ++i) S.devs[i]->pre.clear();
  }
  logf("N=%zu%s: %zu pre-signed updates per device in %.1f s", n, open ? " (fixed rate)" : "",
       inline_crypto ? 0 : per_dev, secs_since(t_pre, Clock::now()));
  for (size_t i = 0; i < n; ++i) {
    Device& d = *S.devs[i];
    d.sent = d.acked = 0;
    d.acks.clear();
    d.acks.reserve(d.pre.size());
    d.lat_ms.clear();
    d.lat_send_ms.clear();
    d.in_window = 0;
    d.failed = false;
    d.idle = true;
    d.sched.clear();
    d.due = 0;
    d.inflight = false;
    d.sched_in_window = 0;
  }
  S.nacks = 0;
  S.bad_replies = 0;
  S.exhausted = 0;
  S.stop_sending = false;
  S.open_loop = open;
  if (pp.hub > 0) reset_hwm(pp.hub);
  if (pp.broker > 0) reset_hwm(pp.broker);
  // fixed rate: the schedule starts a little after t0 so that it is all computed first
  const auto t0 = Clock::now() + std::chrono::milliseconds(open ? 100 : 0);
  S.win_start = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warm));
  S.win_end = S.win_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(dur));
  uint64_t scheduled = 0;
  std::vector<float> lag_ms;  // fixed rate: publish time - scheduled time, when the device was idle
  std::thread scheduler;
  if (open) {
    for (size_t i = 0; i < n; ++i) {
      Device& d = *S.devs[i];
      std::mt19937_64 rng(0x9e3779b97f4a7c15ULL * (i + 1) + n);
      std::exponential_distribution<double> gap(rate);
      std::uniform_real_distribution<double> phase(0.0, 1.0 / rate);
      double t = S.opt.even ? phase(rng) : gap(rng);
      const double end = warm + dur;
      while (t < end) {
        if (d.sched.size() == d.pre.size()) {
          S.exhausted++;
          break;
        }
        const auto at = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(t));
        d.sched.push_back(at);
        if (at >= S.win_start) d.sched_in_window++;
        t += S.opt.even ? 1.0 / rate : gap(rng);
      }
      scheduled += d.sched_in_window;
      d.idle = d.sched.empty();
    }
    S.phase = 1;
    scheduler = std::thread([&S, n, &lag_ms] {
      using E = std::pair<Clock::time_point, size_t>;
      std::priority_queue<E, std::vector<E>, std::greater<E>> q;
      std::vector<size_t> next(n, 0);
      for (size_t i = 0; i < n; ++i)
        if (!S.devs[i]->sched.empty()) q.push({S.devs[i]->sched[0], i});
      while (!q.empty() && !S.stop_sending.load()) {
        const E e = q.top();
        const auto now = Clock::now();
        if (e.first > now) {
          std::this_thread::sleep_until(e.first);
          continue;
        }
        q.pop();
        Device& d = *S.devs[e.second];
        bool send = false;
        size_t k = 0;
        {
          std::lock_guard<std::mutex> lk(d.mu);
          d.due = ++next[e.second];
          if (take_next_open(S, d, now)) {
            send = true;
            k = d.sent;
            if (e.first >= S.win_start && e.first < S.win_end) lag_ms.push_back(ms_between(e.first, now));
          }
        }
        if (send) publish_open(S, d, k);
        if (next[e.second] < d.sched.size()) q.push({d.sched[next[e.second]], e.second});
      }
    });
  } else {
    S.phase = 1;
    for (size_t i = 0; i < n; ++i) {
      Device& d = *S.devs[i];
      std::lock_guard<std::mutex> lk(d.box.mu);  // never contended here; orders the start
      send_next(S, d);
    }
  }
  std::this_thread::sleep_until(S.win_start);
  const ProcSample h0 = pp.hub > 0 ? proc_sample(pp.hub) : ProcSample{};
  const ProcSample b0 = pp.broker > 0 ? proc_sample(pp.broker) : ProcSample{};
  const double pg0 = pg_cpu_s();
  const double self0 = self_cpu_s();
  std::this_thread::sleep_until(S.win_end);
  const ProcSample h1 = pp.hub > 0 ? proc_sample(pp.hub) : ProcSample{};
  const ProcSample b1 = pp.broker > 0 ? proc_sample(pp.broker) : ProcSample{};
  const double pg1 = pg_cpu_s();
  const double self1 = self_cpu_s();
  // Closed loop: stop sending now. Fixed rate: nothing is scheduled after the window,
  // but what is due still leaves and its latency counts.
  if (!open) S.stop_sending = true;
  // Drain: wait for the updates in flight (bounded).
  const auto drain_end = Clock::now() + std::chrono::seconds(10);
  for (;;) {
    bool busy = false;
    for (size_t i = 0; i < n; ++i)
      if (!S.devs[i]->idle) busy = true;
    if (!busy || Clock::now() > drain_end) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto gave_up = Clock::now();
  S.stop_sending = true;
  if (scheduler.joinable()) scheduler.join();
  S.phase = 0;
  // Countersignature checks, and the devices' latest double-signed states.
  std::atomic<uint64_t> verified{0}, badsig{0}, stuck{0}, unanswered{0};
  parallel_for(n, cores, [&](size_t i) {
    Device& d = *S.devs[i];
    std::lock_guard<std::mutex> lk(d.mu);
    if (!d.idle) stuck++;
    if (open) {
      // payments scheduled in the window and never acknowledged: errors, and their
      // latency is at least the time they waited until the drain gave up
      for (size_t j = d.sent; j < d.sched.size(); ++j)
        if (d.sched[j] >= S.win_start && d.sched[j] < S.win_end) {
          unanswered++;
          d.lat_ms.push_back(ms_between(d.sched[j], gave_up));
        }
    }
    const size_t k = d.acks.size();
    if (inline_crypto) {
      verified += k;  // the session verified each one as it arrived
      return;
    }
    // The hub signs deterministically: its Ack must be the countersignature computed here.
    for (size_t j = 0; j < k; ++j) {
      if (d.acks[j] == d.pre[j].sigHub) verified++;
      else badsig++;
    }
    rebuild(d);
  });
  S.open_loop = false;
  std::vector<float> lat, lat_send;
  uint64_t count = 0, failed = 0;
  for (size_t i = 0; i < n; ++i) {
    Device& d = *S.devs[i];
    lat.insert(lat.end(), d.lat_ms.begin(), d.lat_ms.end());
    lat_send.insert(lat_send.end(), d.lat_send_ms.begin(), d.lat_send_ms.end());
    count += d.in_window;
    if (d.failed) failed++;
  }
  const double achieved = static_cast<double>(count) / dur;
  rate_out = achieved;
  const double p50 = percentile(lat, 0.50), p99 = percentile(lat, 0.99);
  const double mx = lat.empty() ? NAN : *std::max_element(lat.begin(), lat.end());
  const uint64_t errors = S.nacks.load() + badsig.load() + failed + unanswered.load();
  std::string j = "{\"devices\":" + std::to_string(n) + ",\"mode\":" + (open ? "\"fixed_rate\"" : "\"closed_loop\"") +
                  ",\"connections\":" + std::to_string(std::min<size_t>(n, S.conns.size())) +
                  ",\"duration_s\":" + jnum(dur) + ",\"payments\":" + std::to_string(count) +
                  ",\"payments_per_s\":" + jnum(achieved) + ",\"p50_ms\":" + jnum(p50) + ",\"p99_ms\":" + jnum(p99) +
                  ",\"max_ms\":" + jnum(mx);
  if (open) {
    const double offered = static_cast<double>(scheduled) / dur;
    const double s50 = percentile(lat_send, 0.50), s99 = percentile(lat_send, 0.99);
    const double g99 = percentile(lag_ms, 0.99);
    const double gmx = lag_ms.empty() ? NAN : *std::max_element(lag_ms.begin(), lag_ms.end());
    logf("N=%zu fixed rate %.3g/s each (%s): offered %.0f/s, achieved %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms "
         "(from the scheduled time; from publish: p50 %.2f, p99 %.2f), generator lag p99 %.2f ms, hub cpu %.0f%%, "
         "broker cpu %.0f%%, unanswered %llu, errors %llu",
         n, rate, S.opt.even ? "even" : "Poisson", offered, achieved, p50, p99, mx, s50, s99, g99,
         100 * (h1.cpu_s - h0.cpu_s) / dur, 100 * (b1.cpu_s - b0.cpu_s) / dur,
         static_cast<unsigned long long>(unanswered.load()), static_cast<unsigned long long>(errors));
    j += ",\"rate_per_device\":" + jnum(rate) + ",\"arrivals\":" + (S.opt.even ? "\"even\"" : "\"poisson\"") +
         ",\"scheduled\":" + std::to_string(scheduled) + ",\"offered_per_s\":" + jnum(offered) +
         ",\"achieved_per_s\":" + jnum(achieved) + ",\"latency_from\":\"scheduled time\"" +
         ",\"p50_from_publish_ms\":" + jnum(s50) + ",\"p99_from_publish_ms\":" + jnum(s99) +
         ",\"generator_lag_p99_ms\":" + jnum(g99) + ",\"generator_lag_max_ms\":" + jnum(gmx) +
         ",\"unanswered\":" + std::to_string(unanswered.load());
  } else {
    logf("N=%zu: %.0f payments/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, hub cpu %.0f%%, broker cpu %.0f%%, errors %llu",
         n, achieved, p50, p99, mx, 100 * (h1.cpu_s - h0.cpu_s) / dur, 100 * (b1.cpu_s - b0.cpu_s) / dur,
         static_cast<unsigned long long>(errors));
  }
  j += ",\"errors\":" + std::to_string(errors) + ",\"nacks\":" + std::to_string(S.nacks.load()) +
       ",\"bad_countersignatures\":" + std::to_string(badsig.load()) +
       ",\"countersignatures_verified\":" + std::to_string(verified.load()) +
       ",\"stray_replies\":" + std::to_string(S.bad_replies.load()) +
       ",\"devices_out_of_presigned\":" + std::to_string(S.exhausted.load()) +
       ",\"devices_stuck\":" + std::to_string(stuck.load()) +
       ",\"hub\":" + proc_json(pp.hub, h0, h1, dur) + ",\"broker\":" + proc_json(pp.broker, b0, b1, dur) +
       ",\"postgresql\":" +
       (g_postmaster > 0 ? "{\"pid\":" + std::to_string(g_postmaster) + ",\"cpu_s\":" + jnum(pg1 - pg0) +
                               ",\"cpu_pct\":" + jnum(100.0 * (pg1 - pg0) / dur) + "}"
                         : std::string("null")) +
       ",\"load_tool_cpu_pct\":" + jnum(100 * (self1 - self0) / dur) + "}";
  return j;
}

// ------------------------------------------------------------------ thread payments

struct Sender {
  PrivateKey key{};
  Address addr{};
  ThreadState initial{};
  std::vector<Bytes> wires;  // wires[k]: txCount k+1
  std::vector<Clock::time_point> sent_at;
  size_t next = 0;
  std::atomic<size_t> done{0};
  int conn = 0;
  ThreadState payee_view{};  // the payee's latest state of this thread
};

std::string run_threads(Shared& S, int port, pid_t broker) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const int ns = std::max(1, S.opt.thread_senders);
  const double warm = S.opt.quick ? 0.2 : 1.0;
  const double dur = S.opt.duration;
  const size_t per = static_cast<size_t>(std::ceil(25000.0 * (dur + warm + 1) / ns)) + S.opt.thread_window;
  PrivateKey payee_key = key_for(2, 0);
  Address payee;
  if (S.signer.address_of(payee_key, payee) != Status::Ok) std::abort();
  std::vector<std::unique_ptr<Sender>> snd;
  for (int i = 0; i < ns; ++i) {
    auto s = std::make_unique<Sender>();
    s->key = key_for(3, static_cast<uint32_t>(i));
    if (S.signer.address_of(s->key, s->addr) != Status::Ok) std::abort();
    s->initial = thread_state_zero();
    s->initial.contractAddress = S.contract;
    s->initial.sender = s->addr;
    s->initial.receiver = payee;
    s->initial.threadId = 1;
    s->initial.balanceWeiSender = U256::from_u64(1000000000000000000ULL);
    s->payee_view = s->initial;
    s->conn = i;
    snd.push_back(std::move(s));
  }
  const auto t_pre = Clock::now();
  parallel_for(snd.size(), cores, [&](size_t i) {
    Sender& s = *snd[i];
    ThreadState prev = s.initial;
    s.wires.reserve(per);
    for (size_t k = 0; k < per; ++k) {
      ThreadUpdate u{};
      u.sender = s.addr;
      u.threadId = prev.threadId;
      u.txCount = prev.txCount + 1;
      u.amountWei = U256::from_u64(1000);
      u.amountToken = U256::zero();
      ThreadState next;
      if (thread_next_state(prev, u, next) != Status::Ok) std::abort();
      SignedThreadState pay{};  // on the wire: the whole state (ThreadPayment, kind 0x06)
      pay.state = next;
      pay.hasSigA = true;
      if (S.signer.sign_eth(s.key, thread_hash(next), pay.sigA) != Status::Ok) std::abort();
      Bytes w(kMaxThreadStateWire);
      size_t n = 0;
      if (encode_thread_payment(pay, w.data(), w.size(), &n) != Status::Ok) std::abort();
      w.resize(n);
      s.wires.push_back(std::move(w));
      prev = next;
    }
    s.sent_at.assign(per, Clock::time_point{});
  });
  logf("threads: %d senders, %zu pre-signed thread updates each in %.1f s", ns, per, secs_since(t_pre, Clock::now()));

  const std::string topic = mqtt::topic_thread_update(payee);
  std::vector<std::unique_ptr<mqtt::Client>> conns;
  std::atomic<bool> stop{false};
  std::mutex mu;  // guards sender send state (publish from payee thread + main)
  std::vector<float> lat;
  std::atomic<uint64_t> in_window{0}, rejected{0}, total{0}, duplicates{0};
  Clock::time_point win_start{}, win_end{};
  auto send = [&](Sender& s) {  // caller holds mu
    if (stop.load() || s.next >= s.wires.size()) return;
    const size_t k = s.next++;
    s.sent_at[k] = Clock::now();
    conns[static_cast<size_t>(s.conn)]->publish(topic, s.wires[k].data(), s.wires[k].size(), 1, false);
  };
  // payee
  mqtt::Options po;
  po.host = "127.0.0.1";
  po.port = port;
  po.client_id = "picopay-bench-payee";
  po.clean_start = true;
  po.session_expiry_s = 60;
  po.max_inflight = 1000;
  auto payee_conn = std::make_unique<mqtt::Client>(po);
  Signer& signer = S.signer;
  payee_conn->on_message([&](const mqtt::Message& m) {
    SignedThreadState u;
    if (decode_thread_payment(m.payload.data(), m.payload.size(), u) != Status::Ok) {
      rejected++;
      return;
    }
    Sender* s = nullptr;
    for (auto& x : snd)
      if (x->addr == u.state.sender) s = x.get();
    if (s == nullptr) {
      rejected++;
      return;
    }
    const Status st = thread_accept_state(signer, s->payee_view, u);
    if (st == Status::Duplicate || st == Status::StaleState) {
      duplicates++;  // a replay of a payment already taken (MQTT may duplicate)
      return;
    }
    if (st != Status::Ok) {
      if (rejected++ < 3)
        S.note_error(std::string("payee refused thread payment tx ") + std::to_string(u.state.txCount) + " (at " +
                     std::to_string(s->payee_view.txCount) + "): " + status_name(st));
      return;
    }
    s->payee_view = u.state;
    const auto now = Clock::now();
    total++;
    std::lock_guard<std::mutex> lk(mu);
    const size_t k = static_cast<size_t>(u.state.txCount - 1);
    if (s->sent_at[k] >= win_start && now <= win_end) {
      lat.push_back(static_cast<float>(std::chrono::duration<double, std::milli>(now - s->sent_at[k]).count()));
      in_window++;
    }
    s->done++;
    send(*s);
  });
  payee_conn->subscribe(topic, 1);
  std::string err;
  if (!payee_conn->start(err) || !payee_conn->wait_connected(10000)) return "{\"error\":" + jstr("payee: " + err) + "}";
  for (int i = 0; i < ns; ++i) {
    mqtt::Options o = po;
    o.client_id = "picopay-bench-sender-" + std::to_string(i);
    conns.push_back(std::make_unique<mqtt::Client>(o));
    if (!conns.back()->start(err) || !conns.back()->wait_connected(10000))
      return "{\"error\":" + jstr("sender: " + err) + "}";
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // SUBSCRIBE settles
  if (broker > 0) reset_hwm(broker);
  const auto t0 = Clock::now();
  {
    std::lock_guard<std::mutex> lk(mu);
    win_start = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warm));
    win_end = win_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(dur));
    for (auto& s : snd)
      for (int w = 0; w < S.opt.thread_window; ++w) send(*s);
  }
  std::this_thread::sleep_until(win_start);
  const ProcSample b0 = broker > 0 ? proc_sample(broker) : ProcSample{};
  const double self0 = self_cpu_s();
  std::this_thread::sleep_until(win_end);
  const ProcSample b1 = broker > 0 ? proc_sample(broker) : ProcSample{};
  const double self1 = self_cpu_s();
  stop = true;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (auto& c : conns) c->stop();
  payee_conn->stop();
  std::lock_guard<std::mutex> lk(mu);
  const double rate = static_cast<double>(in_window.load()) / dur;
  const double p50 = percentile(lat, 0.5), p99 = percentile(lat, 0.99);
  const double mx = lat.empty() ? NAN : *std::max_element(lat.begin(), lat.end());
  logf("threads: %.0f payments/s, p50 %.2f ms, p99 %.2f ms, rejected %llu", rate, p50, p99,
       static_cast<unsigned long long>(rejected.load()));
  {
    std::lock_guard<std::mutex> elk(S.err_mu);
    for (auto& e : S.errors) logf("  %s", e.c_str());
  }
  return "{\"senders\":" + std::to_string(ns) + ",\"window\":" + std::to_string(S.opt.thread_window) +
         ",\"duration_s\":" + jnum(dur) + ",\"payments\":" + std::to_string(in_window.load()) +
         ",\"payments_per_s\":" + jnum(rate) + ",\"p50_ms\":" + jnum(p50) + ",\"p99_ms\":" + jnum(p99) +
         ",\"max_ms\":" + jnum(mx) + ",\"rejected\":" + std::to_string(rejected.load()) +
         ",\"duplicates\":" + std::to_string(duplicates.load()) +
         ",\"broker\":" + proc_json(broker, b0, b1, dur) +
         ",\"payee_and_senders_cpu_pct\":" + jnum(100 * (self1 - self0) / dur) + "}";
}

// ------------------------------------------------------------------ main

bool write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  return static_cast<bool>(f);
}

std::string find_exe(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "";
  p += ":/usr/sbin:/sbin";
  std::istringstream is(p);
  std::string dir;
  while (std::getline(is, dir, ':')) {
    const std::string f = dir + "/" + name;
    if (!dir.empty() && access(f.c_str(), X_OK) == 0) return f;
  }
  return "";
}

// ------------------------------------------------------------------ ledger preload

// A user address for preloaded channel i (splitmix64: distinct, spread over the key space).
Address filler_address(uint64_t i) {
  Address a{};
  uint64_t x = i * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  for (size_t k = 0; k < sizeof a.bytes; ++k) {
    if (k % 8 == 0) {
      x += 0x9E3779B97F4A7C15ull;
      uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      x = z ^ (z >> 31);
    }
    a.bytes[k] = static_cast<uint8_t>(x >> (8 * (k % 8)));
  }
  return a;
}

// Writes n idle channels into the ledger `spec` (10,000 per transaction): a funded state
// (user 1000 wei, txCountGlobal 2) with placeholder signatures, as wire kind 0x01. The
// first `keep` users go to `kept`.
bool preload_ledger(const std::string& spec, const Shared& S, long n, size_t keep, std::vector<Address>& kept,
                    std::string& err) {
  std::unique_ptr<hub::Ledger> l;
  hub::LedgerStatus st = hub::Ledger::open(spec, l);
  if (!st.ok()) {
    err = st.message;
    return false;
  }
  SignedChannelState s{};
  s.state = channel_state_zero();
  s.state.contractAddress = S.contract;
  s.state.balanceWeiUser = U256::from_u64(1000);
  s.state.txCountGlobal = 2;
  s.state.txCountChain = 1;
  s.hasSigUser = s.hasSigHub = true;
  std::memset(s.sigUser.r, 0x11, sizeof s.sigUser.r);
  std::memset(s.sigUser.s, 0x22, sizeof s.sigUser.s);
  s.sigUser.v = 27;
  s.sigHub = s.sigUser;
  const hub::Bytes none;
  for (long i = 0; i < n;) {
    if (!(st = l->begin()).ok()) break;
    for (long k = 0; k < 10000 && i < n; ++k, ++i) {
      const Address a = filler_address(static_cast<uint64_t>(i));
      if (kept.size() < keep) kept.push_back(a);
      s.state.user = s.state.recipient = a;
      uint8_t buf[kMaxChannelStateWire];
      size_t len = 0;
      if (encode_channel_state(s, buf, sizeof buf, &len) != Status::Ok) {
        err = "cannot encode a preloaded state";
        l->rollback();
        return false;
      }
      if (!(st = l->save_channel(mqtt::topic_address(a), 2, hub::Bytes(buf, buf + len), none)).ok()) break;
    }
    if (!st.ok() || !(st = l->commit()).ok()) break;
  }
  if (!st.ok()) {
    l->rollback();
    err = st.message;
    return false;
  }
  return true;
}

// Copies the kept preloaded ledger `from` (a SQLite file written by preload_ledger and
// closed, so it has no WAL) to `to`, checks it holds exactly n channels, and puts the
// first `keep` preloaded users into `kept`.
bool reuse_preloaded(const std::string& from, const std::string& to, long n, size_t keep, std::vector<Address>& kept,
                     std::string& err) {
  if (testsupport::run_command({"cp", from, to}) != 0) {
    err = "cannot copy it to " + to;
    return false;
  }
  std::unique_ptr<hub::Ledger> l;
  hub::LedgerStatus st = hub::Ledger::open("sqlite:" + to, l);
  uint64_t have = 0;
  if (st.ok()) st = l->count_channels(have);
  if (!st.ok()) {
    err = st.message;
    return false;
  }
  if (have != static_cast<uint64_t>(n)) {
    err = "holds " + std::to_string(have) + " channels, not --preload " + std::to_string(n);
    return false;
  }
  for (size_t i = 0; i < keep; ++i) kept.push_back(filler_address(i));
  return true;
}

// Asks the hub for the Sync of every channel in `users` (each loads that channel into its
// cache), 1000 in flight at a time, and reads the hub's VmRSS before, after the first half
// (`rss_half`: by then the fixed caches, SQLite's page cache among them, are full) and
// after all.
bool idle_probe(const Shared& S, int port, pid_t hub, const std::vector<Address>& users, long& rss0, long& rss_half,
                long& rss1, std::string& err) {
  mqtt::Options mo;
  mo.host = "127.0.0.1";
  mo.port = port;
  mo.client_id = "picopay-bench-idle-probe";
  mo.clean_start = true;
  mo.session_expiry_s = 10;
  mo.max_inflight = 1000;
  mqtt::Client c(mo);
  std::mutex mu;
  std::condition_variable cv;
  size_t replies = 0;
  c.on_message([&](const mqtt::Message&) {
    std::lock_guard<std::mutex> lk(mu);
    ++replies;
    cv.notify_all();
  });
  c.subscribe("picopay/v1/user/+/reply", 0);
  if (!c.start(err) || !c.wait_connected(15000)) {
    if (err.empty()) err = "MQTT client did not connect";
    return false;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the SUBSCRIBE settles
  rss0 = proc_sample(hub).rss_kb;
  const size_t half = users.size() / 2;
  for (size_t i = 0; i < users.size(); ++i) {
    if (i == half) {
      std::unique_lock<std::mutex> lk(mu);
      if (!cv.wait_for(lk, std::chrono::seconds(120), [&] { return replies >= half; })) {
        err = "the hub answered " + std::to_string(replies) + " of " + std::to_string(half) + " Syncs";
        return false;
      }
      lk.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the status publishes settle
      rss_half = proc_sample(hub).rss_kb;
    }
    {
      std::unique_lock<std::mutex> lk(mu);
      if (!cv.wait_for(lk, std::chrono::seconds(60), [&] { return i < replies + 1000; })) {
        err = "the hub answered " + std::to_string(replies) + " of " + std::to_string(i) + " Syncs within 60 s";
        return false;
      }
    }
    if (!c.publish(mqtt::topic_sync(S.hub, users[i]), std::string(), 1, false)) {
      err = "publish failed";
      return false;
    }
  }
  {
    std::unique_lock<std::mutex> lk(mu);
    if (!cv.wait_for(lk, std::chrono::seconds(120), [&] { return replies >= users.size(); })) {
      err = "the hub answered " + std::to_string(replies) + " of " + std::to_string(users.size()) + " Syncs";
      return false;
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the status publishes of the batch settle
  rss1 = proc_sample(hub).rss_kb;
  c.stop();
  return true;
}

int main_impl(int argc, char** argv) {
  Opts o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--bin-dir") o.bin_dir = val();
    else if (a == "--devices") {
      o.devices.clear();
      std::istringstream is(val());
      std::string x;
      while (std::getline(is, x, ','))
        if (!x.empty()) o.devices.push_back(std::atoi(x.c_str()));
    } else if (a == "--duration") o.duration = std::atof(val().c_str());
    else if (a == "--json") o.json = val();
    else if (a == "--work-dir") o.work_dir = val();
    else if (a == "--quick") o.quick = true;
    else if (a == "--max-conns") o.max_conns = std::atoi(val().c_str());
    else if (a == "--inline-crypto") o.inline_crypto = true;
    else if (a == "--mosquitto") o.mosquitto = val();
    else if (a == "--thread-senders") o.thread_senders = std::atoi(val().c_str());
    else if (a == "--thread-window") o.thread_window = std::atoi(val().c_str());
    else if (a == "--batch-max") o.batch_max = std::atoi(val().c_str());
    else if (a == "--rate") o.rate = std::atof(val().c_str());
    else if (a == "--rate-devices") o.rate_devices = std::atoi(val().c_str());
    else if (a == "--rate-load") o.rate_load = std::atof(val().c_str());
    else if (a == "--store") o.store = val();
    else if (a == "--preload") o.preload = std::atol(val().c_str());
    else if (a == "--idle-probe") o.idle_probe = std::atol(val().c_str());
    else if (a == "--channel-cache") o.channel_cache = std::atol(val().c_str());
    else if (a == "--preload-file") o.preload_file = val();
    else if (a == "--arrivals") {
      const std::string v = val();
      if (v != "poisson" && v != "even") {
        usage();
        return 2;
      }
      o.even = v == "even";
    }
    else {
      usage();
      return 2;
    }
  }
  if (o.devices.empty() || o.duration <= 0 || o.rate < 0 || o.rate_devices < 0 || o.rate_load <= 0 ||
      (o.rate > 0 && o.rate_devices > 0) || (o.store != "sqlite" && o.store != "postgresql") || o.preload < 0 ||
      o.idle_probe < 0 || o.idle_probe > o.preload || o.channel_cache < 0 ||
      (!o.preload_file.empty() && (o.store != "sqlite" || o.preload == 0))) {
    usage();
    return 2;
  }
  if (o.bin_dir.empty()) {
    // default: the directory of this executable
    char buf[4096];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
      buf[n] = 0;
      o.bin_dir = std::string(buf);
      o.bin_dir = o.bin_dir.substr(0, o.bin_dir.rfind('/'));
    }
  }
  if (o.work_dir.empty()) o.work_dir = testsupport::make_temp_dir("picopay-bench-load");
  testsupport::remove_tree(o.work_dir);
  testsupport::run_command({"mkdir", "-p", o.work_dir});

  Shared S;
  S.opt = o;
  const uint8_t seed[32] = {7};
  if (S.signer.init(seed) != Status::Ok) return 1;
  if (S.signer.address_of(kHubKey, S.hub) != Status::Ok) return 1;
  if (address_parse(kContract, std::strlen(kContract), S.contract) != Status::Ok) return 1;
  S.ctx.hub = S.hub;

  std::string method =
      std::string(o.rate > 0 ? "fixed rate (open loop) at --rate per device" : "closed loop") +
      ", one update in flight per device" +
      (o.rate > 0 || o.rate_devices > 0
           ? std::string(" (fixed rate: ") + (o.even ? "evenly spaced arrivals with a random phase" : "Poisson arrivals") +
                 ", due payments queue in the device, latency from the scheduled time to the Ack)"
           : std::string()) +
      "; devices multiplexed over min(N, " +
      std::to_string(o.max_conns) + ") MQTT v5 connections (QoS 1); " +
      (o.inline_crypto ? "device signing and countersignature checks inside the window"
                       : "device updates pre-signed before the window, hub countersignatures checked after it") +
      (o.rate > 0 ? "" : "; closed-loop latency = publish to Ack received") + "; hub: picopay-hub --dev-skip-chain-checks, " +
      (o.store == "postgresql" ? std::string("PostgreSQL (libpq, synchronous_commit on, fsync on, 127.0.0.1)")
                               : std::string("SQLite WAL synchronous=FULL")) + ", "
      "batch-max " + std::to_string(o.batch_max) + "; channels opened by ProposePendingDeposit + ConfirmPending";
  std::string report_head = "{\"tool\":\"picopay_bench_load\",\"method\":" + jstr(method) + ",\"cores\":" +
                            std::to_string(std::thread::hardware_concurrency()) + ",\"quick\":" +
                            (o.quick ? "true" : "false");
  std::string fixed_runs, fixed_choice;
  std::string ledger_json = "null";  // the ledger's figures (store, preload, start-up, idle memory)
  auto finish = [&](bool available, const std::string& reason, const std::string& runs, const std::string& thread) {
    std::string j = report_head + ",\"ledger\":" + ledger_json + ",\"available\":" + (available ? "true" : "false") +
                    ",\"reason\":" + (reason.empty() ? "null" : jstr(reason)) + ",\"runs\":[" + runs +
                    "],\"fixed_rate_runs\":[" + fixed_runs + "],\"fixed_rate_choice\":" +
                    (fixed_choice.empty() ? "null" : fixed_choice) + ",\"thread\":" +
                    (thread.empty() ? "null" : thread) + "}\n";
    if (!o.json.empty() && !write_text(o.json, j)) {
      logf("cannot write %s", o.json.c_str());
      return 1;
    }
    if (o.json.empty()) std::fputs(j.c_str(), stdout);
    return 0;
  };

  // ---- broker
  const std::string mosq = find_exe(o.mosquitto);
  if (mosq.empty()) return finish(false, "mosquitto not found (Debian package mosquitto)", "", "");
  const int port = testsupport::free_port();
  std::string conf;
  conf += "listener " + std::to_string(port) + " 127.0.0.1\n";
  conf += "allow_anonymous true\npersistence false\n";
  conf += "max_queued_messages 100000\nmax_inflight_messages 0\nset_tcp_nodelay true\n";
  conf += "log_dest file " + o.work_dir + "/mosquitto.log\nlog_type error\nlog_type warning\n";
  write_text(o.work_dir + "/mosquitto.conf", conf);
  testsupport::Process broker;
  if (!broker.start({mosq, "-c", o.work_dir + "/mosquitto.conf"}, o.work_dir + "/mosquitto.out") ||
      !testsupport::wait_port_open(port, 10000))
    return finish(false, "mosquitto did not start (see " + o.work_dir + "/mosquitto.log)", "", "");
  logf("mosquitto pid %d on 127.0.0.1:%d", broker.pid(), port);

  // ---- ledger
  std::string store_spec = "sqlite:" + o.work_dir + "/hub.db";
  std::unique_ptr<testsupport::PgServer> pg;
  if (o.store == "postgresql") {
    pg = std::make_unique<testsupport::PgServer>();
    std::string perr;
    if (!pg->start(perr)) return finish(false, "PostgreSQL: " + perr, "", "");
    store_spec = pg->uri("postgres");
    g_postmaster = pg->postmaster_pid();
    logf("PostgreSQL on 127.0.0.1:%d (postmaster pid %d)", pg->port(), static_cast<int>(g_postmaster));
  }
  std::vector<Address> filler;  // the first --idle-probe preloaded users
  double preload_s = 0;
  if (o.preload > 0) {
    std::string perr;
    const auto t = Clock::now();
    if (!o.preload_file.empty() && access(o.preload_file.c_str(), R_OK) == 0) {
      if (!reuse_preloaded(o.preload_file, o.work_dir + "/hub.db", o.preload, static_cast<size_t>(o.idle_probe),
                           filler, perr))
        return finish(false, "--preload-file " + o.preload_file + ": " + perr, "", "");
      logf("%ld idle channels copied in from %s", o.preload, o.preload_file.c_str());
      preload_s = NAN;  // not written in this run: preload_s is null in the JSON
    } else {
      if (!preload_ledger(store_spec, S, o.preload, static_cast<size_t>(o.idle_probe), filler, perr))
        return finish(false, "preloading the ledger: " + perr, "", "");
      preload_s = secs_since(t, Clock::now());
      logf("%ld idle channels written into the %s ledger in %.1f s", o.preload, o.store.c_str(), preload_s);
      if (!o.preload_file.empty() &&
          testsupport::run_command({"cp", o.work_dir + "/hub.db", o.preload_file}) != 0)
        return finish(false, "--preload-file: cannot copy the ledger to " + o.preload_file, "", "");
    }
    // The preload's (or the copy's) dirty pages go to disk now, not during the runs, where
    // the kernel's writeback would slow the hub's fsyncs.
    if (o.store == "sqlite") (void)testsupport::run_command({"sync"});
  }

  // ---- hub
  std::string hub_reason;
  testsupport::Process hub;
  const std::string hub_exe = o.bin_dir + "/picopay-hub";
  Clock::time_point hub_spawned{}, hub_online{};
  if (access(hub_exe.c_str(), X_OK) != 0) {
    hub_reason = "picopay-hub is not built (" + hub_exe + " missing)";
  } else {
    char keyhex[67];
    hex_encode(kHubKey.bytes, 32, keyhex, true);
    std::vector<std::string> argv_hub = {hub_exe,
                                         "--broker-host", "127.0.0.1",
                                         "--broker-port", std::to_string(port),
                                         "--private-key", keyhex,
                                         "--contract", kContract,
                                         "--store", store_spec,
                                         "--db", o.work_dir + "/hub.db",
                                         "--batch-max", std::to_string(o.batch_max),
                                         "--dev-skip-chain-checks"};
    if (o.channel_cache > 0) {
      argv_hub.push_back("--channel-cache");
      argv_hub.push_back(std::to_string(o.channel_cache));
    }
    hub_spawned = Clock::now();
    if (!hub.start(argv_hub, o.work_dir + "/hub.log")) hub_reason = "picopay-hub did not start";
  }
  double idle_bytes = NAN;
  long rss_idle_kb = -1, rss_half_kb = -1, rss_probed_kb = -1;
  double idle_bytes_average = NAN;  // including the fixed caches filled by the probe

  std::string runs;
  if (hub_reason.empty()) {
    // connections for the largest N
    const int maxn = std::max(*std::max_element(o.devices.begin(), o.devices.end()), o.rate_devices);
    const int nconn = std::max(1, std::min(maxn, o.max_conns));
    for (int c = 0; c < nconn; ++c) {
      mqtt::Options mo;
      mo.host = "127.0.0.1";
      mo.port = port;
      mo.client_id = "picopay-bench-dev-" + std::to_string(c);
      mo.clean_start = true;
      mo.session_expiry_s = 60;
      mo.max_inflight = 1000;
      S.conns.push_back(std::make_unique<mqtt::Client>(mo));
    }
    for (int i = 0; i < maxn; ++i) {
      auto d = std::make_unique<Device>();
      d->idx = static_cast<uint32_t>(i);
      d->key = key_for(1, static_cast<uint32_t>(i));
      if (S.signer.address_of(d->key, d->addr) != Status::Ok) std::abort();
      d->update_topic = mqtt::topic_update(S.hub, d->addr);
      d->reply_topic = mqtt::topic_reply(d->addr);
      d->conn = i % nconn;
      S.by_reply[d->reply_topic] = d.get();
      S.conns[static_cast<size_t>(d->conn)]->subscribe(d->reply_topic, 1);
      S.devs.push_back(std::move(d));
    }
    for (auto& c : S.conns) {
      c->on_message([&S](const mqtt::Message& m) {
        auto it = S.by_reply.find(m.topic);
        if (it != S.by_reply.end()) on_reply(S, *it->second, m);
      });
    }
    std::string err;
    {
      // Wait for the hub's retained {"state":"online"} (it subscribes before announcing).
      mqtt::Options wo;
      wo.host = "127.0.0.1";
      wo.port = port;
      wo.client_id = "picopay-bench-watch";
      wo.clean_start = true;
      wo.session_expiry_s = 10;
      mqtt::Client watch(wo);
      std::mutex wmu;
      std::condition_variable wcv;
      bool online = false;
      watch.on_message([&](const mqtt::Message& m) {
        const std::string t(m.payload.begin(), m.payload.end());
        if (t.find("\"online\"") != std::string::npos) {
          std::lock_guard<std::mutex> lk(wmu);
          if (!online) hub_online = Clock::now();
          online = true;
          wcv.notify_all();
        }
      });
      watch.subscribe(mqtt::topic_hub_online(S.hub), 1);
      if (!watch.start(err)) hub_reason = "MQTT client: " + err;
      std::unique_lock<std::mutex> lk(wmu);
      if (!wcv.wait_for(lk, std::chrono::seconds(20), [&] { return online; }) && hub_reason.empty())
        hub_reason = "picopay-hub did not come online within 20 s: " + testsupport::read_file(o.work_dir + "/hub.log");
      lk.unlock();
      watch.stop();
    }
    for (auto& c : S.conns)
      if (hub_reason.empty() && !c->start(err)) hub_reason = "MQTT client: " + err;
    for (auto& c : S.conns)
      if (hub_reason.empty() && !c->wait_connected(15000)) hub_reason = "MQTT client did not connect: " + c->last_error();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // SUBSCRIBEs settle
    if (hub_reason.empty() && !hub.running()) hub_reason = "picopay-hub exited: " + testsupport::read_file(o.work_dir + "/hub.log");
    if (hub_reason.empty() && !filler.empty()) {
      std::string perr;
      if (!idle_probe(S, port, hub.pid(), filler, rss_idle_kb, rss_half_kb, rss_probed_kb, perr)) {
        logf("idle probe: %s", perr.c_str());
      } else {
        // Per channel: the growth over the second half, once the fixed caches (SQLite's
        // 16 MiB page cache, the allocator's arenas) are full; the average over all
        // includes them.
        const size_t second = filler.size() - filler.size() / 2;
        idle_bytes = 1024.0 * static_cast<double>(rss_probed_kb - rss_half_kb) / static_cast<double>(second);
        idle_bytes_average =
            1024.0 * static_cast<double>(rss_probed_kb - rss_idle_kb) / static_cast<double>(filler.size());
        logf("idle probe: %zu channels cached, hub RSS %ld -> %ld -> %ld kB: %.0f bytes per idle channel "
             "(%.0f on average with the fixed caches)",
             filler.size(), rss_idle_kb, rss_half_kb, rss_probed_kb, idle_bytes, idle_bytes_average);
      }
    }
    // open and fund every channel (in parallel)
    if (hub_reason.empty()) {
      const auto t = Clock::now();
      std::atomic<int> bad{0};
      std::mutex emu;
      std::string first;
      const unsigned setup_threads = std::getenv("PICOPAY_BENCH_SETUP_THREADS")
                                         ? static_cast<unsigned>(std::atoi(std::getenv("PICOPAY_BENCH_SETUP_THREADS")))
                                         : 32;
      parallel_for(S.devs.size(), setup_threads, [&](size_t i) {
        std::string e;
        if (!open_channel(S, *S.devs[i], e)) {
          bad++;
          std::lock_guard<std::mutex> lk(emu);
          if (first.empty()) first = e;
        }
      });
      if (bad > 0)
        hub_reason = "opening channels at the hub failed for " + std::to_string(bad.load()) + " devices: " + first;
      else
        logf("%zu channels opened and funded in %.1f s", S.devs.size(), secs_since(t, Clock::now()));
    }
    if (hub_reason.empty()) {
      double rate = 0, best = 0;
      std::vector<int> ns = o.devices;
      std::sort(ns.begin(), ns.end());
      for (int n : ns) {
        if (!hub.running()) {
          hub_reason = "picopay-hub exited during the runs";
          break;
        }
        const std::string r =
            run_channels(S, ProcPair{hub.pid(), broker.pid()}, static_cast<size_t>(n), rate, o.rate);
        std::string& into = o.rate > 0 ? fixed_runs : runs;
        into += (into.empty() ? "" : ",") + r;
        best = std::max(best, rate);
      }
      if (hub_reason.empty() && o.rate_devices > 0) {
        if (best <= 0) {
          logf("no closed-loop throughput measured: no fixed-rate run");
        } else if (!hub.running()) {
          hub_reason = "picopay-hub exited during the runs";
        } else {
          // per-device rate offering rate_load x the best closed-loop throughput, to 2 significant digits
          const double raw = o.rate_load * best / o.rate_devices;
          const double mag = std::pow(10.0, std::floor(std::log10(raw)) - 1);
          const double r = std::round(raw / mag) * mag;
          logf("fixed-rate run: %d devices x %.3g payments/s each = %.0f/s offered (%.2f x best closed-loop %.0f/s)",
               o.rate_devices, r, r * o.rate_devices, o.rate_load, best);
          fixed_choice = "{\"devices\":" + std::to_string(o.rate_devices) + ",\"rate_per_device\":" + jnum(r) +
                         ",\"offered_per_s\":" + jnum(r * o.rate_devices) + ",\"load_fraction\":" + jnum(o.rate_load) +
                         ",\"closed_loop_capacity_per_s\":" + jnum(best) + "}";
          double dummy = best;
          fixed_runs = run_channels(S, ProcPair{hub.pid(), broker.pid()}, static_cast<size_t>(o.rate_devices), dummy, r);
        }
      }
    }
    for (auto& c : S.conns) c->stop();
  }
  if (!hub_reason.empty()) logf("end to end through the hub unavailable: %s", hub_reason.c_str());
  const double start_ms = hub_online == Clock::time_point{} ? NAN : 1000.0 * secs_since(hub_spawned, hub_online);
  ledger_json = "{\"store\":" + jstr(o.store) + ",\"preload_channels\":" + std::to_string(o.preload) +
                ",\"preload_s\":" + jnum(o.preload > 0 ? preload_s : NAN) + ",\"hub_start_ms\":" + jnum(start_ms) +
                ",\"channel_cache\":" + (o.channel_cache > 0 ? std::to_string(o.channel_cache) : std::string("null")) +
                ",\"idle_probe_channels\":" + std::to_string(filler.size()) + ",\"rss_idle_kb\":" +
                std::to_string(rss_idle_kb) + ",\"rss_half_kb\":" + std::to_string(rss_half_kb) +
                ",\"rss_probed_kb\":" + std::to_string(rss_probed_kb) + ",\"idle_channel_bytes\":" +
                jnum(idle_bytes) + ",\"idle_channel_bytes_average\":" + jnum(idle_bytes_average) + "}";
  if (!std::isnan(start_ms)) logf("hub start-up (spawn to online) %.0f ms", start_ms);
  if (hub.pid() > 0) hub.terminate(5000);

  const std::string th = run_threads(S, port, broker.pid());
  broker.terminate(5000);
  return finish(hub_reason.empty(), hub_reason, runs, th);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  return main_impl(argc, argv);
}
