// picopay_bench_multi: several picopay-hub instances on one PostgreSQL ledger
// (docs/multi-instance.md, docs/benchmarks.md "Several instances"). See kHelp.
//
// Real parts on 127.0.0.1: a PostgreSQL server (tests/support/postgres.hpp), mosquitto,
// N picopay-hub processes with --instance-id, simulated devices (tests/hub/sim_device.hpp)
// paying in a closed loop (each device one payment in flight).
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hub_ledger.hpp"
#include "sim_device.hpp"
#include "support/broker.hpp"
#include "support/postgres.hpp"
#include "support/process.hpp"

using namespace picopay;
using namespace picopay::testsupport;
using Clock = std::chrono::steady_clock;

namespace {

const char* kHelp =
    "usage: picopay_bench_multi --bin-dir DIR [--instances 1,2,3] [--devices N] [--duration S]\n"
    "                           [--ttl-ms MS] [--takeovers K] [--json FILE] [--quick]\n"
    "\n"
    "For each instance count: a fresh mosquitto and database, that many picopay-hub\n"
    "processes (--instance-id, one PostgreSQL ledger), N devices paying 1 wei each in a\n"
    "closed loop for S seconds. Reports payments/s and CPU microseconds per payment of each\n"
    "instance (utime + stime from /proc) and of the PostgreSQL server. With 2 or more\n"
    "instances, K times: kill -9 the instance holding a device's partition while payments\n"
    "run; takeover_ms = from the kill to the first answer to a payment started after the\n"
    "kill on a channel the killed instance held (then it is restarted).\n"
    "  --quick: 4 s per count, one takeover (defaults: 10 s, 5 takeovers, 16 devices,\n"
    "  ttl 1000 ms)\n";

const char* kContract = "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390";
constexpr uint32_t kHubIndex = 0xABCDEF;

double cpu_s(pid_t pid) {
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(st, line)) return 0;
  const size_t rp = line.rfind(')');
  if (rp == std::string::npos) return 0;
  std::istringstream is(line.substr(rp + 2));
  std::vector<std::string> v;
  std::string f;
  while (is >> f) v.push_back(f);
  if (v.size() < 13) return 0;
  return (std::stod(v[11]) + std::stod(v[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The PostgreSQL server's CPU: the postmaster and its children.
double pg_cpu_s(pid_t postmaster) {
  double sum = cpu_s(postmaster);
  DIR* d = opendir("/proc");
  if (!d) return sum;
  while (dirent* e = readdir(d)) {
    const long pid = std::atol(e->d_name);
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
    if (ppid == postmaster) sum += cpu_s(static_cast<pid_t>(pid));
  }
  closedir(d);
  return sum;
}

std::string jnum(double v) {
  if (!(v == v)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.3f", v);
  return b;
}

struct Opts {
  std::string bin_dir, json;
  std::vector<int> instances{1, 2, 3};
  int devices = 16;
  double duration = 10;
  int ttl_ms = 1000;
  int takeovers = 5;
};

struct Run {
  PgServer* pg = nullptr;
  std::string db_uri, dir, hub_bin;
  int ttl_ms = 1000;
  std::string tag;
  std::unique_ptr<Broker> broker;
  std::vector<std::unique_ptr<Process>> hubs;
  std::vector<std::unique_ptr<SimDevice>> devs;
  Address hub{}, contract{};

  bool start_instance(size_t k) {
    const std::string id = tag + "i" + std::to_string(k + 1);
    std::vector<std::string> argv = {hub_bin,         "--broker-host", "127.0.0.1",
                                     "--broker-port", std::to_string(broker->port()),
                                     "--contract",    kContract,
                                     "--private-key", hex_key(test_key(kHubIndex)),
                                     "--store",       db_uri,
                                     "--db",          dir + "/" + id + ".db",
                                     "--instance-id", id,
                                     "--lease-ttl-ms", std::to_string(ttl_ms),
                                     "--dev-skip-chain-checks"};
    return hubs[k]->start(argv, dir + "/" + id + ".log");
  }
};

int main_impl(int argc, char** argv) {
  Opts o;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "picopay_bench_multi: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--bin-dir") o.bin_dir = val();
    else if (a == "--json") o.json = val();
    else if (a == "--devices") o.devices = std::atoi(val().c_str());
    else if (a == "--duration") o.duration = std::atof(val().c_str());
    else if (a == "--ttl-ms") o.ttl_ms = std::atoi(val().c_str());
    else if (a == "--takeovers") o.takeovers = std::atoi(val().c_str());
    else if (a == "--quick") quick = true;
    else if (a == "--instances") {
      o.instances.clear();
      std::stringstream ss(val());
      std::string x;
      while (std::getline(ss, x, ',')) o.instances.push_back(std::atoi(x.c_str()));
    } else if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "picopay_bench_multi: unknown option %s\n%s", a.c_str(), kHelp);
      return 2;
    }
  }
  if (quick) {
    o.duration = std::min(o.duration, 4.0);
    o.takeovers = 1;
  }
  if (o.bin_dir.empty() || o.devices < 1 || o.devices > 200 || o.instances.empty()) {
    std::fprintf(stderr, "picopay_bench_multi: --bin-dir is required; --devices 1..200\n");
    return 2;
  }
  const std::string dir = make_temp_dir("picopay-bench-multi");
  PgServer pg;
  std::string err;
  if (!pg.start(err)) {
    std::fprintf(stderr, "picopay_bench_multi: PostgreSQL: %s\n", err.c_str());
    return 1;
  }
  std::string runs_json;
  std::vector<double> takeover_ms;
  int run_no = 0;
  for (int n : o.instances) {
    if (n < 1 || n > 8) continue;
    ++run_no;
    Run r;
    r.pg = &pg;
    r.dir = dir;
    r.hub_bin = o.bin_dir + "/picopay-hub";
    r.ttl_ms = o.ttl_ms;
    r.tag = "r" + std::to_string(run_no);
    const std::string db = "multi" + std::to_string(run_no);
    if (!pg.create_database(db, err)) {
      std::fprintf(stderr, "picopay_bench_multi: %s\n", err.c_str());
      return 1;
    }
    r.db_uri = pg.uri(db);
    BrokerOptions bo;
    bo.dir = dir + "/broker" + std::to_string(run_no);
    r.broker = std::make_unique<Broker>(bo);
    if (!r.broker->start(err)) {
      std::fprintf(stderr, "picopay_bench_multi: mosquitto: %s\n", err.c_str());
      return 1;
    }
    Signer s;
    if (s.init() != Status::Ok || s.address_of(test_key(kHubIndex), r.hub) != Status::Ok ||
        address_parse(kContract, std::strlen(kContract), r.contract) != Status::Ok)
      return 1;
    for (int k = 0; k < n; ++k) {
      r.hubs.push_back(std::make_unique<Process>());
      if (!r.start_instance(static_cast<size_t>(k))) return 1;
    }
    // the leases table is in the run's database
    auto leased = [&](int timeout_ms) {
      const auto t0 = Clock::now();
      while (Clock::now() - t0 < std::chrono::milliseconds(timeout_ms)) {
        if (pg.query(db, "SELECT count(*) FROM leases WHERE holder IS NOT NULL AND expires_at > now()") == "257")
          return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      return false;
    };
    auto holder_of = [&](int p) {
      return pg.query(db, "SELECT split_part(holder, '#', 1) FROM leases WHERE partition=" + std::to_string(p) +
                              " AND expires_at > now()");
    };
    if (!leased(30000)) {
      std::fprintf(stderr, "picopay_bench_multi: %d instance(s): leases not all held (logs in %s)\n", n, dir.c_str());
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(3 * o.ttl_ms));  // the fair share settles
    for (int i = 1; i <= o.devices; ++i) {
      auto d = std::make_unique<SimDevice>(static_cast<uint32_t>(i), r.hub, r.contract);
      mqtt::Options mo;
      mo.port = r.broker->port();
      if (!d->start(mo, "", err) || d->fund(1000000000) != Status::Ok) {
        std::fprintf(stderr, "picopay_bench_multi: device %d: %s\n", i, err.c_str());
        return 1;
      }
      r.devs.push_back(std::move(d));
    }
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> paid{0};
    // per device: (ms the last answered payment was started) << 32 | (ms it was answered)
    std::vector<std::atomic<uint64_t>> last_ok(r.devs.size());
    for (auto& l : last_ok) l = 0;
    const auto t0 = Clock::now();
    std::vector<std::thread> th;
    std::atomic<int> failures{0};
    for (size_t i = 0; i < r.devs.size(); ++i)
      th.emplace_back([&, i] {
        auto ms = [&] {
          return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
        };
        while (!stop.load()) {
          const uint64_t started = ms();
          if (r.devs[i]->pay(1, nullptr, 60000) != Status::Ok) {
            ++failures;
            return;
          }
          ++paid;
          last_ok[i] = (started << 32) | ms();
        }
      });
    std::vector<double> c0;
    for (auto& h : r.hubs) c0.push_back(cpu_s(h->pid()));
    const double pg0 = pg_cpu_s(pg.postmaster_pid());
    const uint64_t p0 = paid.load();
    const auto m0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(o.duration * 1000)));
    const uint64_t p1 = paid.load();
    const double secs = std::chrono::duration<double>(Clock::now() - m0).count();
    std::vector<double> c1;
    for (auto& h : r.hubs) c1.push_back(cpu_s(h->pid()));
    const double pg1 = pg_cpu_s(pg.postmaster_pid());
    const double pays = static_cast<double>(p1 - p0);
    std::string per = "[";
    double total = 0;
    for (size_t k = 0; k < r.hubs.size(); ++k) {
      const double us = pays > 0 ? (c1[k] - c0[k]) * 1e6 / pays : NAN;
      total += c1[k] - c0[k];
      per += (k ? "," : "") + jnum(us);
    }
    per += "]";
    std::printf("[bench/multi] %d instance(s), %d devices: %.0f payments/s; hub CPU %.1f us/payment in all (%s per "
                "instance), PostgreSQL %.1f us/payment\n",
                n, o.devices, pays / secs, pays > 0 ? total * 1e6 / pays : NAN, per.c_str(),
                pays > 0 ? (pg1 - pg0) * 1e6 / pays : NAN);
    std::string tk = "[";
    if (n >= 2) {
      for (int t = 0; t < o.takeovers; ++t) {
        // the instance holding device 0's partition
        const std::string victim_id = holder_of(r.devs[0]->address().bytes[0]);
        size_t victim = 0;
        for (size_t k = 0; k < r.hubs.size(); ++k)
          if (victim_id == r.tag + "i" + std::to_string(k + 1)) victim = k;
        std::vector<size_t> its;
        for (size_t i = 0; i < r.devs.size(); ++i)
          if (holder_of(r.devs[i]->address().bytes[0]) == victim_id) its.push_back(i);
        const int64_t killed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
        r.hubs[victim]->kill9();
        // the first payment started after the kill and answered (one answered just after
        // the kill may have been committed and sent by the killed instance)
        int64_t first = -1;
        for (int w = 0; w < 1200 && first < 0; ++w) {
          for (size_t i : its) {
            const uint64_t v = last_ok[i].load();
            const int64_t started = static_cast<int64_t>(v >> 32), ok = static_cast<int64_t>(v & 0xffffffffu);
            if (started >= killed && (first < 0 || ok < first)) first = ok;
          }
          if (first < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (first >= 0) takeover_ms.push_back(static_cast<double>(first - killed));
        tk += (t ? "," : "") + (first >= 0 ? std::to_string(first - killed) : std::string("null"));
        std::printf("[bench/multi] takeover %d: %s ms (ttl %d ms)\n", t + 1,
                    first >= 0 ? std::to_string(first - killed).c_str() : "none", o.ttl_ms);
        if (!r.start_instance(victim)) return 1;
        std::this_thread::sleep_for(std::chrono::milliseconds(4 * o.ttl_ms));  // rejoins, shares settle
      }
    }
    tk += "]";
    stop = true;
    for (auto& t : th) t.join();
    for (auto& h : r.hubs) h->terminate(5000);
    r.devs.clear();
    runs_json += std::string(runs_json.empty() ? "" : ",") + "{\"instances\":" + std::to_string(n) +
                 ",\"devices\":" + std::to_string(o.devices) + ",\"seconds\":" + jnum(secs) +
                 ",\"payments\":" + std::to_string(p1 - p0) + ",\"payments_per_s\":" + jnum(pays / secs) +
                 ",\"hub_cpu_us_per_payment\":" + jnum(pays > 0 ? total * 1e6 / pays : NAN) +
                 ",\"hub_cpu_us_per_payment_per_instance\":" + per +
                 ",\"postgresql_cpu_us_per_payment\":" + jnum(pays > 0 ? (pg1 - pg0) * 1e6 / pays : NAN) +
                 ",\"unanswered\":" + std::to_string(failures.load()) + ",\"takeover_ms\":" + tk + "}";
  }
  std::sort(takeover_ms.begin(), takeover_ms.end());
  const double med = takeover_ms.empty() ? NAN : takeover_ms[takeover_ms.size() / 2];
  const std::string doc = "{\"available\":true,\"ttl_ms\":" + std::to_string(o.ttl_ms) +
                          ",\"takeover_ms\":" + jnum(med) +
                          ",\"takeover_max_ms\":" + jnum(takeover_ms.empty() ? NAN : takeover_ms.back()) +
                          ",\"runs\":[" + runs_json + "]}\n";
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << doc;
  }
  std::fputs(doc.c_str(), stdout);
  remove_tree(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  return main_impl(argc, argv);
}
