// picopay_bench_flood: does one flooding client stall everyone? (issue 14; results in
// docs/benchmarks.md "Flood").
//
// A real mosquitto (tests/support/broker: passwords, the shipped ACL, the shipped limits
// of packaging/mosquitto/conf.d/picopay-limits.conf, persistence on), the real
// picopay-hub (durable SQLite), N simulated devices (tests/hub/sim_device) paying the hub
// at a fixed rate each, and one sleeping payee: a persistent session subscribed to its
// thread topic, disconnected. Phase 1 (baseline): the devices pay for --seconds. Phase
// 2 (flood): the same, while a device account publishes QoS 1 messages of --flood-bytes
// bytes as fast as the broker takes them to the sleeping payee's thread topic (any device
// may publish there). Latency is measured per payment from its SCHEDULED time to the
// hub's Ack (a stall delays the payments due behind it: coordinated omission is not
// hidden). Phase 3 (after): the same again once the flood has stopped, its target still
// asleep (what the flood left in the broker stays). Reports p50/p99/max per phase,
// payments/s, flood messages/s and the size of the broker's persistence file.
//
// --legacy replays the broker setup before issue 14 (max_queued_messages 100000, no
// byte limit, autosave every second) with everything else identical. --flood-nice N runs
// the flooding client's thread at nice N (setpriority on its thread id): a real attacker
// spends its own CPU elsewhere, while here it shares the same cores with the broker, the
// hub and the devices; the report gives the flood rate actually reached.
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "picopay/hex.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "sim_device.hpp"
#include "support/broker.hpp"

using namespace picopay;
using namespace picopay::testsupport;
using Clock = std::chrono::steady_clock;

namespace {

const char* kContract = "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390";
constexpr uint32_t kHubIndex = 0xF100D;
constexpr uint32_t kPayeeIndex = 900001, kFlooderIndex = 900002;

std::string addr_of(uint32_t i) {
  Signer s;
  Address a{};
  (void)s.init();
  (void)s.address_of(test_key(i), a);
  return mqtt::topic_address(a);
}

struct Opts {
  int devices = 8;
  double rate = 20;      // payments per second per device
  int seconds = 15;      // per phase
  size_t flood_bytes = 400;
  int flood_rate = 20000;  // messages per second offered by the flooder
  int flood_nice = 0;      // nice value of the flooder's thread
  bool legacy = false;
  std::string hub_bin;
  std::string work;
};

struct Phase {
  std::vector<double> lat_ms;
  uint64_t errors = 0;
  double secs = 0;
  uint64_t flood_msgs = 0;
  long long max_db = 0;
};

double q(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

long long file_size(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0 ? static_cast<long long>(st.st_size) : 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: picopay_bench_flood --hub PATH [--legacy] [--devices N] [--rate HZ] [--seconds S]\n"
               "                           [--flood-bytes B] [--flood-rate MSGS_PER_S] [--flood-nice N]\n"
               "                           [--work-dir DIR]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Opts o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--legacy") o.legacy = true;
    else if (a == "--hub" && (v = val())) o.hub_bin = v;
    else if (a == "--devices" && (v = val())) o.devices = std::atoi(v);
    else if (a == "--rate" && (v = val())) o.rate = std::atof(v);
    else if (a == "--seconds" && (v = val())) o.seconds = std::atoi(v);
    else if (a == "--flood-bytes" && (v = val())) o.flood_bytes = static_cast<size_t>(std::atol(v));
    else if (a == "--flood-rate" && (v = val())) o.flood_rate = std::atoi(v);
    else if (a == "--flood-nice" && (v = val())) o.flood_nice = std::atoi(v);
    else if (a == "--work-dir" && (v = val())) o.work = v;
    else return usage();
  }
  if (o.hub_bin.empty() || o.devices < 1 || o.rate <= 0 || o.seconds < 1) return usage();
  signal(SIGPIPE, SIG_IGN);
  const bool own_work = o.work.empty();
  if (own_work) o.work = make_temp_dir("picopay-bench-flood");
  std::printf("[flood] %s broker setup, flooder at nice %d, work dir %s\n", o.legacy ? "LEGACY" : "shipped",
              o.flood_nice, o.work.c_str());

  BrokerOptions bo;
  bo.users.push_back({"hub", "hub-pass"});
  for (int i = 1; i <= o.devices; ++i) bo.users.push_back({addr_of(static_cast<uint32_t>(i)), "pw"});
  bo.users.push_back({addr_of(kPayeeIndex), "pw"});
  bo.users.push_back({addr_of(kFlooderIndex), "pw"});
  bo.acl = picopay_acl("hub");
  bo.dir = o.work + "/broker";
  if (o.legacy) bo.extra_conf = "max_queued_messages 100000\nmax_queued_bytes 0\nautosave_interval 1\n";
  Broker broker(bo);
  std::string err;
  if (!broker.start(err)) {
    std::fprintf(stderr, "[flood] broker: %s\n", err.c_str());
    return 1;
  }
  const std::string hub_addr_text = addr_of(kHubIndex);
  Address hub{}, contract{};
  (void)address_parse(hub_addr_text.c_str(), hub_addr_text.size(), hub);
  (void)address_parse(kContract, std::strlen(kContract), contract);
  char key[2 + 64 + 1];
  PrivateKey hk = test_key(kHubIndex);
  hex_encode(hk.bytes, sizeof hk.bytes, key, true);
  const std::string cfg = o.work + "/hub.json";
  write_file(cfg, "{\"broker\": {\"port\": " + std::to_string(broker.port()) +
                      ", \"username\": \"hub\", \"password\": \"hub-pass\"}, \"hub\": {\"privateKey\": \"" + key +
                      "\"}, \"contract\": \"" + kContract + "\", \"db\": \"" + o.work +
                      "/hub.db\", \"devSkipChainChecks\": true}\n");
  chmod(cfg.c_str(), 0600);
  Process hubp;
  if (!hubp.start({o.hub_bin, "--config", cfg}, o.work + "/hub.log")) {
    std::fprintf(stderr, "[flood] cannot start %s\n", o.hub_bin.c_str());
    return 1;
  }
  // The sleeping payee.
  const std::string payee = addr_of(kPayeeIndex);
  Address pa{};
  (void)address_parse(payee.c_str(), payee.size(), pa);
  const std::string flood_topic = mqtt::topic_thread_update(pa);
  {
    mqtt::Options po;
    po.port = broker.port();
    po.username = payee;
    po.password = "pw";
    po.client_id = payee;
    mqtt::Client p(po);
    p.subscribe(flood_topic, 1);
    if (!p.start(err) || !p.wait_connected(15000)) {
      std::fprintf(stderr, "[flood] payee session: %s\n", p.last_error().c_str());
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    p.stop();
  }
  // The paying devices.
  std::vector<std::unique_ptr<SimDevice>> devs;
  for (int i = 1; i <= o.devices; ++i) {
    auto d = std::make_unique<SimDevice>(static_cast<uint32_t>(i), hub, contract);
    mqtt::Options dopt;
    dopt.port = broker.port();
    if (!d->start(dopt, "pw", err) || d->fund(1000000000) != Status::Ok) {
      std::fprintf(stderr, "[flood] device %d: %s\n", i, err.c_str());
      return 1;
    }
    devs.push_back(std::move(d));
  }

  auto run_phase = [&](bool flood) {
    Phase ph;
    std::mutex mu;
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> flood_msgs{0};
    std::atomic<long long> max_db{0};
    const auto t0 = Clock::now();
    const auto end = t0 + std::chrono::seconds(o.seconds);
    const auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / o.rate));
    std::vector<std::thread> th;
    for (size_t k = 0; k < devs.size(); ++k)
      th.emplace_back([&, k] {
        auto due = t0 + period * static_cast<long>(k) / static_cast<long>(devs.size());
        while (due < end) {
          std::this_thread::sleep_until(due);
          Status s = devs[k]->pay(1);
          const double ms = std::chrono::duration<double, std::milli>(Clock::now() - due).count();
          std::lock_guard<std::mutex> l(mu);
          if (s == Status::Ok) ph.lat_ms.push_back(ms);
          else ++ph.errors;
          due += period;
        }
      });
    std::thread flooder;
    if (flood)
      flooder = std::thread([&] {
        // Threads the client starts below inherit this nice value.
        if (o.flood_nice != 0 &&
            setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), o.flood_nice) != 0)
          std::fprintf(stderr, "[flood] cannot set nice %d on the flooder\n", o.flood_nice);
        mqtt::Options fo;
        fo.port = broker.port();
        fo.username = addr_of(kFlooderIndex);
        fo.password = "pw";
        fo.client_id = fo.username;
        fo.max_inflight = 1000;
        mqtt::Client f(fo);
        std::string e;
        if (!f.start(e) || !f.wait_connected(15000)) return;
        std::vector<uint8_t> junk(o.flood_bytes, 0x5a);
        // --flood-rate messages a second, in bursts every 10 ms.
        const int burst = std::max(1, o.flood_rate / 100);
        auto due = Clock::now();
        while (!stop.load()) {
          for (int b = 0; b < burst && !stop.load(); ++b)
            if (f.publish(flood_topic, junk.data(), junk.size(), 1, false)) flood_msgs.fetch_add(1);
          due += std::chrono::milliseconds(10);
          std::this_thread::sleep_until(due);
        }
        f.stop();
      });
    std::thread watcher([&] {
      while (!stop.load()) {
        long long s = file_size(broker.persistence_file());
        if (s > max_db.load()) max_db.store(s);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    for (auto& t : th) t.join();
    ph.secs = std::chrono::duration<double>(Clock::now() - t0).count();
    stop.store(true);
    if (flooder.joinable()) flooder.join();
    watcher.join();
    ph.flood_msgs = flood_msgs.load();
    ph.max_db = max_db.load();
    return ph;
  };

  auto report = [&](const char* name, const Phase& p) {
    std::printf("[flood] %-8s %s: %zu payments (%.0f/s), p50 %.2f ms, p99 %.2f ms, max %.1f ms, errors %llu; "
                "flood %llu msgs (%.0f/s); persistence file max %.1f MB\n",
                o.legacy ? "legacy" : "shipped", name, p.lat_ms.size(), static_cast<double>(p.lat_ms.size()) / p.secs,
                q(p.lat_ms, 0.50), q(p.lat_ms, 0.99), q(p.lat_ms, 1.0), static_cast<unsigned long long>(p.errors),
                static_cast<unsigned long long>(p.flood_msgs), static_cast<double>(p.flood_msgs) / p.secs,
                static_cast<double>(p.max_db) / 1e6);
    std::fflush(stdout);
  };
  Phase base = run_phase(false);
  report("baseline", base);
  Phase fl = run_phase(true);
  report("flood", fl);
  // The flood is over, its target still asleep: what it left in the broker stays.
  Phase after = run_phase(false);
  report("after", after);
  // Nothing else is left behind: the payee's queue on the broker.
  devs.clear();
  hubp.terminate(10000);
  broker.stop();
  std::printf("[flood] persistence file at shutdown: %.2f MB\n",
              static_cast<double>(file_size(broker.persistence_file())) / 1e6);
  if (own_work) remove_tree(o.work);
  return 0;
}
