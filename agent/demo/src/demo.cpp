// picopay demo: see `picopay demo --help` (Demo::run).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <cjson/cJSON.h>

#include <CLI/CLI.hpp>

#include "picopay/agent/json_state.hpp"
#include "picopay/agent/options.hpp"
#include "picopay/agent/secret_file.hpp"
#include "picopay/agent/units.hpp"
#include "picopay/broker_files.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/codec.hpp"
#include "demo_firmware.hpp"
#include "picopay/demo.hpp"
#include "picopay/demo/flows.hpp"
#include "picopay/demo/support.hpp"
#include "picopay/device/flows.hpp"
#include "picopay/device/state.hpp"
#include "picopay/mqtt/client.hpp"
#include "picopay/mqtt/protocol.hpp"

namespace {

using namespace picopay;
using namespace picopay::demo;

// `picopay demo --help`: what the demo does (CLI11's description), each option (below, in
// Demo::run) and how amounts print (its footer).
const char* kAbout =
    "Runs the pay-per-use demo end to end on 127.0.0.1: a private mosquitto (a password per\n"
    "client, client ids bound to usernames, the shipped ACL and limits of packaging/mosquitto/;\n"
    "keys and passwords only in mode 0600 config files), the local dev chain with a freshly deployed ChannelManager,\n"
    "picopay-hub, one payee picopay-agent (the charging operator) and N EV chargers\n"
    "(picopay-agent, Tasmota meter) that deposit on chain, open a thread to the payee and pay\n"
    "per Wh of simulated Tasmota telemetry. Shows live progress, then reconciles the hub's\n"
    "state, each device's state dir and the payee's receipts, settles every channel on chain\n"
    "and prints the on-chain balances. Exit status 0 only if everything reconciles.\n"
    "\n"
    "Latency (p50/p99/max, ms): the demo publishes each charger's telemetry and observes the\n"
    "payment topics on the same broker, so one clock measures, per reading, the time from its\n"
    "publish to the first payment (thread update or channel Payment) from that charger seen on\n"
    "the broker. Payments per second follow --rate: each reading is at least 1 Wh, so a\n"
    "charger pays about once per telemetry message.";
const char* kFooter =
    "Amounts print in ETH (1 ETH = 10^18 wei, every significant digit kept: exact), parties by\n"
    "name: charger1..N, payee, hub, hub reserve (the hub's wei held by the ChannelManager).";

std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }

const uint64_t kPriceWei = 100000000000ULL;  // 100 gwei per Wh
const char* kDepositWei = "1000000000000000000";  // 1 ETH per device
const char* kCollateralWei = "5000000000000000000";
const char* kTopUpWei = "500000000000000000";  // 0.5 ETH: charger1 tops up while it charges
const int kCollateralIdleSeconds = 5;           // the hub takes back the payee's idle collateral
const uint64_t kChallenge = 60;

struct Dev {
  std::string name, key, addr, dir;
  double power_w = 7400;  // charging power
  double total_kwh = 0;   // the Tasmota counter
  Child proc;
  // Progress from the agent's retained status. Its "payments" counter is per process
  // (0 again after a restart) and its Last Will {"state":"offline"} has no counters, so
  // the demo keeps the last value seen and a running total that never goes down.
  uint64_t payments_seen = 0, payments_total = 0, wh = 0, units_paid = 0;
};

std::string now_iso() {
  time_t t = time(nullptr);
  char b[32];
  strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", gmtime(&t));
  return b;
}

bool json_has_u64(const cJSON* o, const char* k, uint64_t& v) {
  const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(n) || n->valuedouble < 0) return false;
  v = static_cast<uint64_t>(n->valuedouble);
  return true;
}

uint64_t json_u64(const cJSON* o, const char* k) {
  const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(n) ? static_cast<uint64_t>(n->valuedouble) : 0;
}
std::string json_str(const cJSON* o, const char* k) {
  const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(n) ? n->valuestring : "";
}

// Wei as ETH, exact: "0.0002859 ETH" (all 18 decimals, trailing zeros dropped).
std::string eth_text(const U256& wei) {
  std::string d = json::amount_text(wei);
  if (d.size() < 19) d = std::string(19 - d.size(), '0') + d;
  std::string ip = d.substr(0, d.size() - 18), fp = d.substr(d.size() - 18);
  while (!fp.empty() && fp.back() == '0') fp.pop_back();
  return ip + (fp.empty() ? "" : "." + fp) + " ETH";
}

// A decimal wei string (agent status); 0 if absent or malformed.
U256 wei_of(const std::string& dec) {
  U256 v = U256::zero();
  if (dec.empty() || u256_parse_decimal(dec.c_str(), dec.size(), v) != Status::Ok) return U256::zero();
  return v;
}

// Round axis ticks 0..top with a step of 1, 2 or 5 x 10^k (about 5 intervals).
double nice_top(double vmax, double& step) {
  if (!(vmax > 0)) vmax = 1;
  double raw = vmax / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
  step = 10 * mag;
  for (double m : {1.0, 2.0, 5.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  return std::ceil(vmax / step - 1e-9) * step;
}

// One per-second sample of the run (for the summary's series and the plot).
struct Sample {
  double t = 0, rate = 0, p50 = 0, p99 = 0, max = 0;
  uint64_t n = 0;  // readings timed in this second
};

// The plot of a run: payments/s over time (top), latency over time (bottom). Plain SVG 1.1
// without rotated text, so ImageMagick's renderer and browsers draw the same thing.
std::string demo_svg(const std::vector<Sample>& ss, const std::string& subtitle) {
  const double W = 760, H = 600, L = 70, R = 25, T1 = 70, H1 = 200, T2 = T1 + H1 + 70, H2 = 200, pw = W - L - R;
  double tmax = 1, rmax = 0, lmax = 0;
  for (const auto& x : ss) {
    tmax = std::max(tmax, x.t);
    rmax = std::max(rmax, x.rate);
    lmax = std::max(lmax, x.max);
  }
  double tstep = 1, rstep = 1, lstep = 1;
  tmax = nice_top(tmax, tstep);
  rmax = nice_top(rmax * 1.5, rstep);  // headroom for the legend
  lmax = nice_top(lmax * 1.5, lstep);
  std::string o;
  char b[512];
  auto add = [&](const char* fmt, auto... a) {
    std::snprintf(b, sizeof b, fmt, a...);
    o += b;
    o += '\n';
  };
  add("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f "
      "%.0f\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" font-size=\"12\">",
      W, H, W, H);
  add("<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>", W, H);
  add("<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">picopay demo: "
      "payments per second and latency</text>",
      W / 2);
  add("<text x=\"%.0f\" y=\"42\" text-anchor=\"middle\" fill=\"#555555\">%s</text>", W / 2, subtitle.c_str());
  auto X = [&](double t) { return L + t / tmax * pw; };
  struct Line {
    const char* colour;
    const char* label;
    double Sample::*field;
    const char* dash;  // stroke-dasharray, "" for a solid line
  };
  auto panel = [&](double top, double h, double vmax, double step, const char* title,
                   const std::vector<Line>& lines) {
    auto Y = [&](double v) { return top + h - v / vmax * h; };
    for (double v = 0; v <= vmax + step / 2; v += step) {
      add("<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>", L, Y(v), L + pw, Y(v));
      add("<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%g</text>", L - 8, Y(v) + 4, v);
    }
    for (double t = 0; t <= tmax + tstep / 2; t += tstep) {
      add("<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#e6e6e6\"/>", X(t), top, X(t), top + h);
      add("<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>", X(t), top + h + 18, t);
    }
    add("<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">seconds of telemetry</text>", L + pw / 2, top + h + 36);
    add("<text x=\"%.0f\" y=\"%.0f\" font-weight=\"bold\">%s</text>", L + 6, top - 8, title);
    for (const auto& ln : lines) {
      if (ss.empty()) break;
      std::string pts;
      for (const auto& x : ss) {
        char p[48];
        std::snprintf(p, sizeof p, "%.1f,%.1f ", X(x.t), Y(x.*ln.field));
        pts += p;
      }
      o += "<polyline points=\"" + pts + "\" fill=\"none\" stroke=\"" + ln.colour + "\" stroke-width=\"2\"" +
           (*ln.dash ? std::string(" stroke-dasharray=\"") + ln.dash + "\"" : std::string()) + "/>\n";
      for (const auto& x : ss)
        add("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", X(x.t), Y(x.*ln.field), ln.colour);
    }
    if (ss.empty())
      add("<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#555555\">no samples (the run ended before "
          "its first full second)</text>",
          L + pw / 2, top + h / 2);
    add("<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#333333\"/>", L, top,
        pw, h);
    // legend, inside the panel (top left)
    double lw = 0;
    for (const auto& ln : lines) lw = std::max(lw, 7.0 * static_cast<double>(std::strlen(ln.label)));
    add("<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"white\" stroke=\"#999999\"/>", L + 10,
        top + 10, lw + 50, 8.0 + 18.0 * static_cast<double>(lines.size()));
    double y = top + 24;
    for (const auto& ln : lines) {
      add("<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"2\" "
          "stroke-dasharray=\"%s\"/>",
          L + 18, y, L + 44, y, ln.colour, *ln.dash ? ln.dash : "none");
      add("<circle cx=\"%.0f\" cy=\"%.0f\" r=\"3\" fill=\"%s\"/>", L + 31, y, ln.colour);
      add("<text x=\"%.0f\" y=\"%.0f\">%s</text>", L + 52, y + 4, ln.label);
      y += 18;
    }
  };
  panel(T1, H1, rmax, rstep, "payments per second (all chargers)",
        {{"#1f5fbf", "countersigned payments/s", &Sample::rate, ""}});
  panel(T2, H2, lmax, lstep, "latency, ms (meter reading published -> payment on the broker)",
        {{"#8e44ad", "max", &Sample::max, "6,4"}, {"#c0392b", "p99", &Sample::p99, ""}, {"#e67e22", "p50", &Sample::p50, ""}});
  o += "</svg>\n";
  return o;
}

struct Statuses {
  std::mutex mu;
  std::map<std::string, std::string> user;  // addr -> agent status JSON
  std::map<std::string, std::string> hub;   // addr -> hub channel status JSON
};

// Latency histogram in microseconds, bounded (fixed buckets): exact below 128 us, then 64
// sub-buckets per power of two (under 1.6 % relative error). The maximum is exact.
class LatHist {
 public:
  void add(uint64_t us) {
    if (us > kMaxUs) us = kMaxUs;
    ++b_[index(us)];
    ++n_;
    if (us > max_) max_ = us;
  }
  uint64_t count() const { return n_; }
  double max_ms() const { return static_cast<double>(max_) / 1000.0; }
  // The q-quantile (0 < q <= 1) in ms: the midpoint of the bucket holding it.
  double quantile_ms(double q) const {
    if (n_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(n_)));
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += b_[i];
      if (seen >= rank) {
        double lo = 0, hi = 0;
        bounds(i, lo, hi);
        double mid = (lo + hi) / 2.0;
        return (mid > static_cast<double>(max_) ? static_cast<double>(max_) : mid) / 1000.0;
      }
    }
    return max_ms();
  }
  void clear() { *this = LatHist(); }

 private:
  static constexpr uint64_t kMaxUs = (1ULL << 36) - 1;  // ~19 h
  static constexpr size_t kBuckets = 128 + 30 * 64;
  static size_t index(uint64_t v) {
    if (v < 128) return static_cast<size_t>(v);
    int e = 63 - __builtin_clzll(v) - 6;  // v >> e in [64, 128)
    return 128 + static_cast<size_t>(e - 1) * 64 + static_cast<size_t>((v >> e) - 64);
  }
  static void bounds(size_t i, double& lo, double& hi) {
    if (i < 128) {
      lo = static_cast<double>(i);
      hi = lo + 1;
      return;
    }
    int e = static_cast<int>((i - 128) / 64) + 1;
    uint64_t m = (i - 128) % 64 + 64;
    lo = static_cast<double>(m << e);
    hi = static_cast<double>((m + 1) << e);
  }
  uint32_t b_[kBuckets] = {};
  uint64_t n_ = 0, max_ = 0;
};

// End-to-end latency, one process, one clock (steady_clock): for each telemetry message
// the demo publishes for a device, the time until the first payment message from that
// device is seen on the broker (thread update, or a Payment channel update to the hub).
// Every telemetry message still waiting when a payment arrives is matched to that
// arrival (a device that batches readings shows the older readings' full wait).
class LatencyProbe {
 public:
  using Clock = std::chrono::steady_clock;
  void add_device(const std::string& addr) {
    idx_[addr] = devs_.size();
    devs_.emplace_back();
  }
  // The index of a device address (lowercase 0x-hex), or -1.
  long device(const std::string& addr) const {
    auto it = idx_.find(addr);
    return it == idx_.end() ? -1 : static_cast<long>(it->second);
  }
  // A reading published at `t`. A device's first reading only sets its meter baseline
  // (the agent pays for consumption after it), so it is not timed.
  void telemetry(size_t dev, Clock::time_point t) {
    std::lock_guard<std::mutex> l(mu_);
    auto& d = devs_[dev];
    if (!d.baseline) {
      d.baseline = true;
      return;
    }
    if (d.pending.size() >= kMaxPending) {
      d.pending.pop_front();
      ++dropped_;
    }
    d.pending.push_back(t);
  }
  // A payment seen at `t`; `key` orders a device's payments (stream id, counter) so a
  // duplicate or stale delivery (QoS 1 redelivery) does not count as a new payment.
  void payment(size_t dev, uint64_t stream, uint64_t counter, Clock::time_point t) {
    std::lock_guard<std::mutex> l(mu_);
    auto& d = devs_[dev];
    if (d.seen && d.stream == stream && counter <= d.counter) return;
    d.seen = true;
    d.stream = stream;
    d.counter = counter;
    while (!d.pending.empty() && d.pending.front() <= t) {
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(t - d.pending.front()).count();
      uint64_t v = us > 0 ? static_cast<uint64_t>(us) : 0;
      total_.add(v);
      window_.add(v);
      d.pending.pop_front();
    }
  }
  struct Summary {
    uint64_t n = 0;
    double p50 = 0, p99 = 0, max = 0;
  };
  Summary total() const {
    std::lock_guard<std::mutex> l(mu_);
    return summarize(total_);
  }
  // Since the previous call.
  Summary take_window() {
    std::lock_guard<std::mutex> l(mu_);
    Summary s = summarize(window_);
    window_.clear();
    return s;
  }
  // Telemetry messages never followed by a payment, and those dropped from a full queue.
  uint64_t unmatched() const {
    std::lock_guard<std::mutex> l(mu_);
    uint64_t n = dropped_;
    for (const auto& d : devs_) n += d.pending.size();
    return n;
  }

 private:
  static constexpr size_t kMaxPending = 4096;  // per device
  static Summary summarize(const LatHist& h) {
    Summary s;
    s.n = h.count();
    s.p50 = h.quantile_ms(0.50);
    s.p99 = h.quantile_ms(0.99);
    s.max = h.max_ms();
    return s;
  }
  struct DevLat {
    std::deque<Clock::time_point> pending;
    bool baseline = false, seen = false;
    uint64_t stream = 0, counter = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, size_t> idx_;  // filled before the MQTT client starts, then read-only
  std::vector<DevLat> devs_;
  LatHist total_, window_;
  uint64_t dropped_ = 0;
};

class Demo {
 public:
  int run(int argc, char** argv);

 private:
  bool setup(std::string& err);
  void progress_loop();
  bool wait_for(const std::function<bool()>& pred, int timeout_ms);
  int finish();
  void stop_all();
  cJSON* user_status(const std::string& addr);
  // An amount for people: ETH (exact), or exact wei with --wei.
  std::string amount(const U256& wei) const {
    if (wei_) return json::amount_text(wei) + (token_ ? " base units" : " wei");
    return token_ ? units::format(wei, asset_) : eth_text(wei);
  }
  // The name of a party's address: charger1..N, payee, hub; else the EIP-55 address.
  std::string name_of(const Address& a) const;
  void add_gas(const char* what, uint64_t gas);
  // Writes --summary and --plot; returns false (and says why) if a file cannot be written.
  bool write_outputs(bool reconciled, const std::string& error);

  int devices_ = 3, seconds_ = 10, rate_ = 20;
  int firmware_ = 0;  // --firmware N (0 when qemu-system-arm or the image is missing)
  std::string firmware_missing_;
  FirmwareFleet fleet_;
  std::string work_;
  std::string hub_key_, hub_addr_, payee_key_, payee_addr_, contract_;
  std::vector<std::unique_ptr<Dev>> devs_;
  MosquittoBroker broker_;
  DevChain chain_;
  Child hub_, payee_;
  std::unique_ptr<mqtt::Client> mq_;
  Statuses st_;
  LatencyProbe lat_;
  double max_rate_ = 0, avg_rate_ = 0;
  bool wei_ = false;
  // --token: the channels move the test token (docs/tokens.md); ETH otherwise.
  bool token_ = false;
  Address token_addr_{};
  units::Asset asset_ = units::eth();
  const U256& bal_user(const ChannelState& c) const { return token_ ? c.balanceTokenUser : c.balanceWeiUser; }
  const U256& bal_hub(const ChannelState& c) const { return token_ ? c.balanceTokenHub : c.balanceWeiHub; }
  const U256& received_of(const ThreadState& t) const { return token_ ? t.balanceTokenReceiver : t.balanceWeiReceiver; }
  // The agent config line naming the token (token mode), or nothing.
  std::string token_line() const {
    return token_ ? ",\n  \"token\": \"" + json::address_text(token_addr_) + "\"" : std::string();
  }
  std::string summary_path_, plot_path_;
  std::vector<Sample> series_;
  cJSON* devices_json_ = nullptr;  // filled by finish()
  cJSON* chain_json_ = nullptr;
  cJSON* gas_json_ = nullptr;
  cJSON* flows_json_ = nullptr;  // the money flows (docs/flows.md): top-up, cash-out, collateral
  FlowRun topup_, cashout_;
  uint64_t gas_total_ = 0;
  uint64_t chain_id_ = 0;
  U256 total_paid_ = U256::zero(), total_received_ = U256::zero();
  uint64_t total_wh_ = 0;

 public:
  ~Demo() {
    cJSON_Delete(devices_json_);
    cJSON_Delete(chain_json_);
    cJSON_Delete(gas_json_);
    cJSON_Delete(flows_json_);
  }
};

std::string Demo::name_of(const Address& a) const {
  std::string t = mqtt::topic_address(a);
  if (t == hub_addr_) return "hub";
  if (t == payee_addr_) return "payee";
  for (const auto& d : devs_)
    if (t == d->addr) return d->name;
  for (int i = 0; i < fleet_.count(); ++i)
    if (t == fleet_.address(static_cast<size_t>(i))) return fleet_.name(static_cast<size_t>(i));
  return json::address_text(a);
}

void Demo::add_gas(const char* what, uint64_t gas) {
  if (!gas_json_) gas_json_ = cJSON_CreateObject();
  cJSON* n = cJSON_GetObjectItemCaseSensitive(gas_json_, what);
  if (n)
    cJSON_SetNumberValue(n, n->valuedouble + static_cast<double>(gas));
  else
    cJSON_AddNumberToObject(gas_json_, what, static_cast<double>(gas));
  gas_total_ += gas;
}

bool Demo::write_outputs(bool reconciled, const std::string& error) {
  cJSON* j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "workdir", work_.c_str());
  cJSON_AddBoolToObject(j, "reconciled", reconciled);
  if (!error.empty()) cJSON_AddStringToObject(j, "error", error.c_str());
  cJSON_AddNumberToObject(j, "devices", devices_);
  cJSON_AddNumberToObject(j, "firmwareDevices", firmware_);
  if (!firmware_missing_.empty()) cJSON_AddStringToObject(j, "firmwareMissing", firmware_missing_.c_str());
  cJSON_AddNumberToObject(j, "seconds", seconds_);
  cJSON_AddNumberToObject(j, "rateHz", rate_);
  cJSON_AddStringToObject(j, "pricePerWhWei", std::to_string(kPriceWei).c_str());
  cJSON_AddStringToObject(j, "contract", contract_.c_str());
  cJSON_AddNumberToObject(j, "wh", static_cast<double>(total_wh_));
  cJSON_AddStringToObject(j, "paidWei", json::amount_text(total_paid_).c_str());
  cJSON_AddStringToObject(j, "paidEth", eth_text(total_paid_).c_str());
  cJSON_AddStringToObject(j, "asset", asset_.symbol.c_str());
  if (token_) cJSON_AddStringToObject(j, "token", json::address_text(token_addr_).c_str());
  cJSON_AddStringToObject(j, "paid", units::format(total_paid_, asset_).c_str());
  cJSON_AddStringToObject(j, "receivedWei", json::amount_text(total_received_).c_str());
  cJSON_AddStringToObject(j, "receivedEth", eth_text(total_received_).c_str());
  cJSON* ps = cJSON_AddObjectToObject(j, "paymentsPerSecond");
  cJSON_AddNumberToObject(ps, "avg", avg_rate_);
  cJSON_AddNumberToObject(ps, "peak", max_rate_);
  LatencyProbe::Summary ls = lat_.total();
  cJSON* lj = cJSON_AddObjectToObject(j, "latencyMs");
  cJSON_AddNumberToObject(lj, "p50", ls.p50);
  cJSON_AddNumberToObject(lj, "p99", ls.p99);
  cJSON_AddNumberToObject(lj, "max", ls.max);
  cJSON_AddNumberToObject(lj, "readings", static_cast<double>(ls.n));
  cJSON_AddNumberToObject(lj, "unmatched", static_cast<double>(lat_.unmatched()));
  cJSON_AddStringToObject(lj, "method", "meter reading published -> first payment from that device on the broker");
  cJSON_AddItemToObject(j, "perDevice", devices_json_ ? cJSON_Duplicate(devices_json_, 1) : cJSON_CreateArray());
  cJSON_AddItemToObject(j, "onChain", chain_json_ ? cJSON_Duplicate(chain_json_, 1) : cJSON_CreateObject());
  cJSON* g = gas_json_ ? cJSON_Duplicate(gas_json_, 1) : cJSON_CreateObject();
  cJSON_AddNumberToObject(g, "total", static_cast<double>(gas_total_));
  cJSON_AddStringToObject(g, "scope", "gas used by the demo's own transactions (the chargers' deposits are not counted)");
  cJSON_AddItemToObject(j, "gas", g);
  cJSON_AddItemToObject(j, "flows", flows_json_ ? cJSON_Duplicate(flows_json_, 1) : cJSON_CreateObject());
  cJSON* ser = cJSON_AddArrayToObject(j, "series");
  for (const auto& x : series_) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "t", x.t);
    cJSON_AddNumberToObject(o, "paymentsPerSecond", x.rate);
    cJSON_AddNumberToObject(o, "p50Ms", x.p50);
    cJSON_AddNumberToObject(o, "p99Ms", x.p99);
    cJSON_AddNumberToObject(o, "maxMs", x.max);
    cJSON_AddNumberToObject(o, "readings", static_cast<double>(x.n));
    cJSON_AddItemToArray(ser, o);
  }
  cJSON_AddStringToObject(j, "plot", plot_path_.c_str());
  char* text = cJSON_Print(j);
  cJSON_Delete(j);
  bool ok = text && write_text(summary_path_, std::string(text) + "\n");
  cJSON_free(text);
  if (!ok) std::fprintf(stderr, "[demo] cannot write the summary %s\n", summary_path_.c_str());
  char sub[256];
  std::snprintf(sub, sizeof sub, "%d chargers, %d Hz telemetry each; avg %.1f, peak %.1f payments/s; p50 %.1f, p99 "
                "%.1f, max %.1f ms",
                devices_, rate_, avg_rate_, max_rate_, ls.p50, ls.p99, ls.max);
  if (!write_text(plot_path_, demo_svg(series_, sub))) {
    std::fprintf(stderr, "[demo] cannot write the plot %s\n", plot_path_.c_str());
    ok = false;
  }
  if (ok) std::printf("[demo] summary %s, plot %s\n", summary_path_.c_str(), plot_path_.c_str());
  return ok;
}

bool Demo::wait_for(const std::function<bool()>& pred, int timeout_ms) {
  for (int w = 0; w <= timeout_ms && !g_interrupted; w += 100) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

cJSON* Demo::user_status(const std::string& addr) {
  std::lock_guard<std::mutex> l(st_.mu);
  auto it = st_.user.find(addr);
  if (it == st_.user.end()) return nullptr;
  return cJSON_Parse(it->second.c_str());
}

bool Demo::setup(std::string& err) {
  const std::string bin = bin_dir();
  for (const char* b : {"picopay-agent", "picopay-hub"})
    if (access((bin + "/" + b).c_str(), X_OK) != 0) {
      err = std::string("missing ") + bin + "/" + b + " (build the whole project)";
      return false;
    }
  make_dirs(work_ + "/devices");
  hub_key_ = random_key_hex();
  hub_addr_ = key_address(hub_key_);
  payee_key_ = random_key_hex();
  payee_addr_ = key_address(payee_key_);
  const double powers[] = {11000, 7400, 22000, 3700, 11000, 7400};
  for (int i = 0; i < devices_; ++i) {
    auto d = std::make_unique<Dev>();
    d->name = "charger" + std::to_string(i + 1);
    d->key = random_key_hex();
    d->addr = key_address(d->key);
    d->dir = work_ + "/devices/" + d->name;
    d->power_w = powers[i % 6];
    d->total_kwh = 1000.0 + 137.25 * i;  // a used meter
    devs_.push_back(std::move(d));
  }
  // The firmware devices make their keys on their first boot (QEMU); the demo learns
  // only their addresses.
  if (firmware_ > 0) {
    firmware_missing_ = fleet_.check();
    if (!firmware_missing_.empty()) {
      std::printf("[demo] --firmware: missing %s; running without firmware devices\n", firmware_missing_.c_str());
      firmware_ = 0;
    } else {
      std::printf("[demo] provisioning %d firmware devices under qemu-system-arm...\n", firmware_);
      if (!fleet_.provision(work_, firmware_, err)) return false;
    }
  }
  // 1. The dev chain with every party funded, and the contract.
  std::printf("[demo] starting the dev chain...\n");
  std::vector<std::string> keys = {hub_key_, payee_key_};
  for (auto& d : devs_) keys.push_back(d->key);
  if (!chain_.start(work_, keys, err)) return false;
  {
    chain::RpcClient rpc(chain_.url());
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
    if (token_) {
      // The test token (contracts/test/TestToken.sol), 10 PPT per charger.
      auto tart = chain::load_artifact(chain::default_artifact_dir() + "/TestToken.json");
      if (!tart) {
        err = "token artifact: " + tart.error().to_string();
        return false;
      }
      chain::Receipt tr;
      auto t = chain::deploy_artifact(w, *tart, {}, &tr);
      if (!t) {
        err = "deploy token: " + t.error().to_string();
        return false;
      }
      token_addr_ = *t;
      add_gas("deployToken", tr.gasUsed);
      for (auto& d : devs_) {
        Address a{};
        (void)address_parse(d->addr.c_str(), d->addr.size(), a);
        U256 ten{};
        (void)u256_parse_decimal("10000000000000000000", 20, ten);
        auto m = chain::erc20_mint(w, token_addr_, a, ten);
        if (!m) {
          err = "mint: " + m.error().to_string();
          return false;
        }
      }
      asset_.token = true;
      asset_.address = token_addr_;
      asset_.symbol = "PPT";
      asset_.decimals = 18;
    }
    chain::Receipt deploy_receipt;
    auto addr = chain::deploy_channel_manager(w, *art, w.address(), kChallenge, token_ ? token_addr_ : Address{},
                                              &deploy_receipt);
    if (!addr) {
      err = "deploy: " + addr.error().to_string();
      return false;
    }
    contract_ = mqtt::topic_address(*addr);
    add_gas("deploy", deploy_receipt.gasUsed);
    chain::ChannelManagerClient cm(w, *addr);
    U256 reserve{};
    (void)u256_parse_decimal("100000000000000000000", 21, reserve);
    auto f = cm.fund_reserve(reserve);
    if (!f) {
      err = "fund reserve: " + f.error().to_string();
      return false;
    }
    add_gas("fundReserve", f->gasUsed);
    if (token_) {
      // The hub's token reserve: tokens the contract holds beyond the channels.
      auto m = chain::erc20_mint(w, token_addr_, *addr, reserve);
      if (!m) {
        err = "token reserve: " + m.error().to_string();
        return false;
      }
      add_gas("fundTokenReserve", m->gasUsed);
      std::printf("[demo] test token PPT %s (18 decimals): 10 PPT per charger, 100 PPT hub token reserve\n",
                  json::address_text(token_addr_).c_str());
    }
    if (firmware_ > 0 && !fleet_.fund(w, err)) return false;
    if (firmware_ > 0) {
      auto cid = rpc.chain_id();
      if (!cid) {
        err = "chain id: " + cid.error().to_string();
        return false;
      }
      chain_id_ = *cid;
    }
  }
  std::printf("[demo] dev chain %s, ChannelManager %s (challenge period %llus)\n", chain_.url().c_str(),
              contract_.c_str(), static_cast<unsigned long long>(kChallenge));
  // 2. The broker: a password per client, the ACL of docs/mqtt-protocol.md.
  std::vector<BrokerUser> users = {{"hub", random_key_hex().substr(2, 24)},
                                   {payee_addr_, random_key_hex().substr(2, 24)},
                                   {"demo", random_key_hex().substr(2, 24)}};
  for (auto& d : devs_) users.push_back({d->addr, random_key_hex().substr(2, 24)});
  for (int i = 0; i < fleet_.count(); ++i) users.push_back({fleet_.address(static_cast<size_t>(i)), random_key_hex().substr(2, 24)});
  if (fleet_.count() > 0) users.push_back({"relay", random_key_hex().substr(2, 24)});
  // The shipped ACL (packaging/mosquitto/picopay.acl; hub username "hub"), plus the
  // demo's observer (reads payments, writes telemetry) and each charger's meter topic.
  std::string acl = broker_files::kAcl;
  acl += "\nuser demo\ntopic write tele/#\ntopic read picopay/v1/#\n";
  for (auto& d : devs_) acl += "\nuser " + d->addr + "\ntopic read tele/" + d->name + "/SENSOR\n";
  if (fleet_.count() > 0) acl += firmware_relay_acl("relay");
  if (!broker_.start(work_ + "/broker", users, acl, err)) return false;
  std::map<std::string, std::string> pw;
  for (auto& u : users) pw[u.name] = u.password;
  const std::string port = std::to_string(broker_.port());
  std::printf("[demo] mosquitto on 127.0.0.1:%s (%zu users, ACL)\n", port.c_str(), users.size());
  // 3. Our own client: telemetry and progress.
  mqtt::Options o;
  o.port = broker_.port();
  o.client_id = "picopay-demo";
  o.username = "demo";
  o.password = pw["demo"];
  o.clean_start = true;
  for (auto& d : devs_) {
    std::string a = d->addr;
    for (auto& c : a) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    lat_.add_device(a);
  }
  mq_ = std::make_unique<mqtt::Client>(o);
  mq_->on_message([this](const mqtt::Message& m) {
    const auto arrived = LatencyProbe::Clock::now();
    // Payments on the wire (observer only): attribute to a device, stamp the arrival.
    const std::string pre_thread = "picopay/v1/thread/";
    if (m.topic.rfind(pre_thread, 0) == 0) {
      WireKind k{};
      SignedThreadState u{};
      if (wire_peek_kind(m.payload.data(), m.payload.size(), k) != Status::Ok || k != WireKind::ThreadPayment ||
          decode_thread_payment(m.payload.data(), m.payload.size(), u) != Status::Ok)
        return;  // a close request (ThreadState) or garbage
      long dev = lat_.device(mqtt::topic_address(u.state.sender));
      if (dev >= 0) lat_.payment(static_cast<size_t>(dev), u.state.threadId, u.state.txCount, arrived);
      return;
    }
    Address hub{}, user{};
    std::string leaf;
    if (mqtt::parse_channel_topic(m.topic, hub, user, leaf)) {
      if (leaf != "update") return;
      ChannelUpdate u{};
      if (decode_channel_update(m.payload.data(), m.payload.size(), u) != Status::Ok ||
          u.reason != UpdateReason::Payment)
        return;
      long dev = lat_.device(mqtt::topic_address(user));
      if (dev >= 0) lat_.payment(static_cast<size_t>(dev), 0, u.txCountGlobal, arrived);
      fleet_.observe_payment(mqtt::topic_address(user), u.txCountGlobal);
      return;
    }
    std::string p(m.payload.begin(), m.payload.end());
    std::lock_guard<std::mutex> l(st_.mu);
    const std::string pre_user = "picopay/v1/user/";
    if (m.topic.rfind(pre_user, 0) == 0 && m.topic.size() > pre_user.size() + 42)
      st_.user[m.topic.substr(pre_user.size(), 42)] = p;
    else if (m.topic.find("/status/0x") != std::string::npos)
      st_.hub[m.topic.substr(m.topic.size() - 42)] = p;
  });
  mq_->subscribe("picopay/v1/user/+/status");
  mq_->subscribe("picopay/v1/hub/+/status/+");
  mq_->subscribe("picopay/v1/thread/+/update");         // payments to the payee
  mq_->subscribe("picopay/v1/hub/+/channel/+/update");  // payments to the hub, if any
  if (!mq_->start(err) || !mq_->wait_connected(10000)) {
    err = "demo MQTT client: " + (err.empty() ? mq_->last_error() : err);
    return false;
  }
  // 4. The hub.
  // Secrets (keys, broker passwords) go in 0600 config files, never on a command line
  // (every local user can read /proc/<pid>/cmdline).
  const std::string bin_hub = bin + "/picopay-hub";
  const std::string hub_cfg = work_ + "/hub.json";
  if (!agent::secret_file_write(hub_cfg,
                                "{\n  \"broker\": {\"host\": \"127.0.0.1\", \"port\": " + port +
                                    ", \"username\": \"hub\", \"password\": \"" + pw["hub"] +
                                    "\"},\n  \"hub\": {\"privateKey\": \"" + hub_key_ + "\"},\n  \"contract\": \"" +
                                    contract_ + "\",\n  \"rpcUrl\": \"" + chain_.url() + "\",\n  \"db\": \"" + work_ +
                                    "/hub.db\",\n  \"collateral\": {\"" + (token_ ? "depositTokens" : "depositWei") +
                                    "\": \"" + kCollateralWei + "\", \"idleSeconds\": " +
                                    std::to_string(kCollateralIdleSeconds) +
                                    "}\n}\n",
                                err))
    return false;
  if (!hub_.start({bin_hub, "--config", hub_cfg}, work_ + "/hub.log")) {
    err = "cannot start picopay-hub";
    return false;
  }
  std::printf("[demo] picopay-hub %s\n", hub_addr_.c_str());
  // 5. The payee and the devices.
  const std::string agent = bin + "/picopay-agent";
  const std::string payee_cfg = work_ + "/payee.json";
  if (!agent::secret_file_write(payee_cfg,
                                "{\n  \"name\": \"payee\",\n  \"stateDir\": \"" + work_ +
                                    "/payee\",\n  \"broker\": {\"host\": \"127.0.0.1\", \"port\": " + port +
                                    ", \"password\": \"" + pw[payee_addr_] + "\"},\n  \"hub\": \"" + hub_addr_ +
                                    "\",\n  \"contract\": \"" + contract_ + "\",\n  \"privateKey\": \"" + payee_key_ +
                                    "\",\n  \"rpc\": \"" + chain_.url() +
                                    "\",\n  \"role\": \"payee\",\n  \"statusIntervalMs\": 250" + token_line() + "\n}\n",
                                err))
    return false;
  if (!payee_.start({agent, "--config", payee_cfg}, work_ + "/payee.log")) {
    err = "cannot start the payee agent";
    return false;
  }
  for (auto& d : devs_) {
    std::string cfg = "{\n  \"name\": \"" + d->name + "\",\n  \"stateDir\": \"" + d->dir +
                      "\",\n  \"broker\": {\"host\": \"127.0.0.1\", \"port\": " + port + ", \"password\": \"" +
                      pw[d->addr] + "\"},\n  \"hub\": \"" + hub_addr_ + "\",\n  \"contract\": \"" + contract_ +
                      "\",\n  \"privateKey\": \"" + d->key + "\",\n  \"rpc\": \"" + chain_.url() +
                      "\",\n  \"role\": \"payer\",\n  \"meter\": {\"source\": \"tasmota\", \"topic\": \"tele/" +
                      d->name + "/SENSOR\"},\n  \"pricePerUnitWei\": \"" + std::to_string(kPriceWei) +
                      "\",\n  \"depositWei\": \"" + kDepositWei + "\",\n  \"payTo\": \"" + payee_addr_ +
                      "\",\n  \"statusIntervalMs\": 250" + token_line() + "\n}\n";
    if (!agent::secret_file_write(work_ + "/" + d->name + ".json", cfg, err)) return false;
    if (!d->proc.start({agent, "--config", work_ + "/" + d->name + ".json"}, work_ + "/" + d->name + ".log")) {
      err = "cannot start " + d->name;
      return false;
    }
  }
  if (fleet_.count() > 0) {
    FirmwareFleet::Run fr;
    fr.broker_port = broker_.port();
    fr.passwords = pw;
    fr.relay_user = "relay";
    fr.relay_password = pw["relay"];
    fr.rpc_url = chain_.url();
    fr.hub_addr = hub_addr_;
    fr.contract = contract_;
    fr.chain_id = chain_id_;
    fr.pay_seconds = static_cast<uint64_t>(seconds_);
    if (!fleet_.start(work_, fr, err)) return false;
    std::printf("[demo] %d firmware devices started (QEMU mps2-an386; logs %s/firmware/): each signs its own deposit "
                "transaction, the relay submits it, then it pays the hub for %d s\n",
                fleet_.count(), work_.c_str(), seconds_);
  }
  std::printf("[demo] payee %s and %d chargers started; waiting for deposits and threads...\n", payee_addr_.c_str(),
              devices_);
  // Wait until every device has an open thread (deposit on chain + OpenThread done).
  bool ready = wait_for(
      [&] {
        for (auto& d : devs_) {
          cJSON* s = user_status(d->addr);
          bool ok = s && json_u64(s, "openThreads") > 0 && !cJSON_IsTrue(cJSON_GetObjectItem(s, "pending"));
          cJSON_Delete(s);
          if (!ok) return false;
        }
        return true;
      },
      60000);
  if (!ready) {
    err = "devices did not get an open thread within 60 s (see " + work_ + "/*.log)";
    return false;
  }
  return true;
}

void Demo::progress_loop() {
  const int tick_ms = 1000 / (rate_ > 0 ? rate_ : 20);
  const double sim_seconds_per_tick = 6.0;  // simulated charging time per message
  auto t0 = std::chrono::steady_clock::now();
  auto last_print = t0;
  uint64_t last_payments = 0;
  int prints = 0;
  double rate_sum = 0;
  while (!g_interrupted) {
    auto now = std::chrono::steady_clock::now();
    double el = std::chrono::duration<double>(now - t0).count();
    if (el >= seconds_) break;
    for (size_t i = 0; i < devs_.size(); ++i) {
      Dev* d = devs_[i].get();
      // Ramp like a real session: full power, tapering a little with time.
      double p = d->power_w * (0.97 + 0.03 * std::sin(el + d->total_kwh));
      d->total_kwh += p * sim_seconds_per_tick / 3600.0 / 1000.0;
      char msg[512];
      std::snprintf(msg, sizeof msg,
                    "{\"Time\":\"%s\",\"ENERGY\":{\"TotalStartTime\":\"2026-11-01T00:00:00\",\"Total\":%.3f,"
                    "\"Yesterday\":0.000,\"Today\":%.3f,\"Power\":%.0f,\"ApparentPower\":%.0f,\"ReactivePower\":%.0f,"
                    "\"Factor\":0.99,\"Voltage\":230,\"Current\":%.3f}}",
                    now_iso().c_str(), d->total_kwh, std::fmod(d->total_kwh, 40.0), p, p / 0.99, p * 0.14,
                    p / 230.0 / 3.0);
      std::string topic = "tele/" + d->name + "/SENSOR", payload(msg);
      lat_.telemetry(i, LatencyProbe::Clock::now());  // the reading's publish time
      mq_->publish(topic, payload, 1, false);
    }
    if (std::chrono::duration<double>(now - last_print).count() >= 1.0) {
      uint64_t payments = 0, wh = 0, paid_units = 0;
      U256 received = U256::zero();
      for (auto& d : devs_) {
        cJSON* s = user_status(d->addr);
        uint64_t v = 0;
        if (s && json_has_u64(s, "payments", v)) {
          // A smaller value: the agent restarted and counts from 0 again.
          d->payments_total += v >= d->payments_seen ? v - d->payments_seen : v;
          d->payments_seen = v;
        }
        if (s && json_has_u64(s, "meteredWh", v)) d->wh = v;
        if (s && json_has_u64(s, "unitsPaid", v)) d->units_paid = v;
        cJSON_Delete(s);
        payments += d->payments_total;
        wh += d->wh;
        paid_units += d->units_paid;
      }
      payments += fleet_.payments();  // the firmware devices' payments to the hub
      if (cJSON* s = user_status(payee_addr_)) {
        received = wei_of(json_str(s, "receivedWei"));
        cJSON_Delete(s);
      }
      double dt = std::chrono::duration<double>(now - last_print).count();
      double r = static_cast<double>(payments - last_payments) / dt;  // payments never decreases
      LatencyProbe::Summary ls = lat_.take_window();
      if (prints > 0) {  // the first second includes the payments made while starting
        rate_sum += r;
        if (r > max_rate_) max_rate_ = r;
        series_.push_back({el, r, ls.p50, ls.p99, ls.max, ls.n});
      }
      ++prints;
      U256 paid_wei{};
      (void)u256_mul(U256::from_u64(kPriceWei), U256::from_u64(paid_units), paid_wei);
      std::printf(
          "[demo] t=%4.1fs  payments/s=%7.1f  latency p50/p99/max=%6.1f/%6.1f/%6.1f ms  metered %llu Wh, paid %llu Wh "
          "= %s  payee received %s\n",
          el, r, ls.p50, ls.p99, ls.max, static_cast<unsigned long long>(wh),
          static_cast<unsigned long long>(paid_units), amount(paid_wei).c_str(), amount(received).c_str());
      std::fflush(stdout);
      last_payments = payments;
      last_print = now;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(tick_ms));
  }
  avg_rate_ = prints > 1 ? rate_sum / (prints - 1) : 0;
}

void Demo::stop_all() {
  fleet_.stop();
  for (auto& d : devs_) d->proc.stop(5000);
  payee_.stop(5000);
  hub_.stop(5000);
  if (mq_) mq_->stop();
  broker_.stop();
  chain_.stop();
}

int Demo::finish() {
  int failures = 0;
  std::printf("[demo] telemetry stopped; waiting until every Wh is paid...\n");
  bool paid = wait_for(
      [&] {
        for (auto& d : devs_) {
          cJSON* s = user_status(d->addr);
          bool ok = s && json_u64(s, "unitsPaid") == json_u64(s, "meteredWh");
          cJSON_Delete(s);
          if (!ok) return false;
        }
        return true;
      },
      30000);
  if (!paid) std::printf("[demo] WARNING: not every device caught up within 30 s\n");
  if (fleet_.count() > 0) {
    std::printf("[demo] waiting for the firmware devices' final states...\n");
    fleet_.wait(90000);  // they stop paying when the telemetry ends, then verify and print FINAL
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the hub's last status messages
  }
  std::printf("[demo] stopping the chargers (each closes its thread through the payee)...\n");
  for (auto& d : devs_) kill(d->proc.pid(), SIGTERM);
  for (auto& d : devs_) {
    int rc = d->proc.wait(40000);
    if (rc != 0) {
      std::printf("[demo] %s exited with %d (see %s/%s.log)\n", d->name.c_str(), rc, work_.c_str(), d->name.c_str());
      ++failures;
      d->proc.kill9();
    }
  }
  wait_for(
      [&] {
        cJSON* s = user_status(payee_addr_);
        bool ok = s && json_u64(s, "openThreads") == 0 && !cJSON_IsTrue(cJSON_GetObjectItem(s, "pending"));
        cJSON_Delete(s);
        return ok;
      },
      20000);
  // The payee cashes out everything it received, cooperatively (no exit, no challenge
  // period), then the hub takes back its idle collateral (docs/flows.md).
  {  // in ETH, or in the token with --token (docs/flows.md, docs/tokens.md)
    std::printf("[demo] the payee cashes out (cooperative withdrawal, channel stays open)...\n");
    cashout_ = run_agent_flow(bin_dir() + "/picopay-agent", "withdraw", "all", work_ + "/payee.json",
                              work_ + "/payee.cashout.log");
    std::printf("[demo] payee cash-out: %s (gas %llu, %llu ms)\n", cashout_.ok ? "ok" : cashout_.error.c_str(),
                static_cast<unsigned long long>(cashout_.gasUsed), static_cast<unsigned long long>(cashout_.elapsedMs));
    std::printf("[demo] waiting for the hub to take back the payee's idle collateral (%d s idle)...\n",
                kCollateralIdleSeconds);
    const bool reclaimed = wait_for(
        [&] {
          // The payee's record: nothing left, and the hub's withdrawal confirmed.
          device::AgentState p;
          std::string perr;
          return device::state_load(work_ + "/payee", p, perr) && bal_hub(p.channel.state).is_zero() &&
                 bal_user(p.channel.state).is_zero() && !channel_has_pending(p.channel.state) && !p.has_pending;
        },
        60000);
    if (!reclaimed) std::printf("[demo] WARNING: the payee's collateral was not taken back within 60 s\n");
  }
  payee_.stop(10000);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // last hub status messages
  hub_.stop(10000);

  // Reconciliation.
  std::string err;
  device::AgentState payee;
  if (!device::state_load(work_ + "/payee", payee, err)) {
    std::printf("[demo] payee state: %s\n", err.c_str());
    return 1;
  }
  std::printf("\n%-10s %10s %24s %8s %6s %6s %6s %9s\n", "device", "Wh", wei_ ? "paid (wei)" : "paid", "txCount",
              "hub", "device", "payee", "conserved");
  cJSON_Delete(devices_json_);
  devices_json_ = cJSON_CreateArray();
  U256 total_paid = U256::zero(), total_received = U256::zero();
  for (const auto& t : payee.threads) (void)u256_add(total_received, received_of(t.latest.state), total_received);
  std::vector<SignedChannelState> finals;
  std::vector<Address> users;
  for (auto& d : devs_) {
    device::AgentState s;
    if (!device::state_load(d->dir, s, err)) {
      std::printf("%-10s state: %s\n", d->name.c_str(), err.c_str());
      ++failures;
      continue;
    }
    // device: metered = paid, wei = units * price, double-signed, nothing pending
    U256 expect{};
    (void)u256_mul(U256::from_u64(kPriceWei), U256::from_u64(s.units_paid), expect);
    bool dev_ok = s.meter.units() == s.units_paid && expect == s.wei_paid && !s.has_pending &&
                  s.channel.hasSigHub && s.channel.hasSigUser;
    // hub: its retained status for this channel names the same txCountGlobal and balances
    bool hub_ok = false;
    {
      std::lock_guard<std::mutex> l(st_.mu);
      auto it = st_.hub.find(d->addr);
      if (it != st_.hub.end()) {
        cJSON* h = cJSON_Parse(it->second.c_str());
        uint64_t tx = json_u64(h, "txCountGlobal");
        std::string bu = json_str(h, token_ ? "balanceTokenUser" : "balanceWeiUser"),
                    bh = json_str(h, token_ ? "balanceTokenHub" : "balanceWeiHub");
        hub_ok = tx == s.channel.state.txCountGlobal &&
                 (bu.empty() || bu == json::amount_text(bal_user(s.channel.state))) &&
                 (bh.empty() || bh == json::amount_text(bal_hub(s.channel.state)));
        cJSON_Delete(h);
      }
    }
    // payee: what it received from this device over all threads
    U256 got = U256::zero();
    for (const auto& t : payee.threads)
      if (t.latest.state.sender == s.user) (void)u256_add(got, received_of(t.latest.state), got);
    bool payee_ok = got == s.wei_paid;
    // conservation: the device's channel holds deposit = user + hub balances (threads closed)
    U256 sum{}, dep{};
    (void)u256_add(bal_user(s.channel.state), bal_hub(s.channel.state), sum);
    (void)u256_parse_decimal(kDepositWei, std::strlen(kDepositWei), dep);
    if (d == devs_.front() && topup_.ok) {  // charger1's top-up is in its channel too
      U256 t{};
      (void)u256_parse_decimal(kTopUpWei, std::strlen(kTopUpWei), t);
      (void)u256_add(dep, t, dep);
    }
    bool conserved = s.channel.state.threadCount == 0 && sum == dep && bal_hub(s.channel.state) == s.wei_paid;
    (void)u256_add(total_paid, s.wei_paid, total_paid);
    total_wh_ += s.meter.units();
    {
      cJSON* o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "name", d->name.c_str());
      cJSON_AddStringToObject(o, "address", json::address_text(s.user).c_str());
      cJSON_AddNumberToObject(o, "wh", static_cast<double>(s.meter.units()));
      cJSON_AddStringToObject(o, "paidWei", json::amount_text(s.wei_paid).c_str());
      cJSON_AddStringToObject(o, "paidEth", eth_text(s.wei_paid).c_str());
      cJSON_AddStringToObject(o, "receivedByPayeeWei", json::amount_text(got).c_str());
      cJSON_AddNumberToObject(o, "txCountGlobal", static_cast<double>(s.channel.state.txCountGlobal));
      cJSON_AddBoolToObject(o, "hubAgrees", hub_ok);
      cJSON_AddBoolToObject(o, "deviceConsistent", dev_ok);
      cJSON_AddBoolToObject(o, "payeeAgrees", payee_ok);
      cJSON_AddBoolToObject(o, "conserved", conserved);
      cJSON_AddItemToArray(devices_json_, o);
    }
    std::printf("%-10s %10llu %24s %8llu %6s %6s %6s %9s\n", d->name.c_str(),
                static_cast<unsigned long long>(s.meter.units()), amount(s.wei_paid).c_str(),
                static_cast<unsigned long long>(s.channel.state.txCountGlobal), hub_ok ? "ok" : "DIFF",
                dev_ok ? "ok" : "DIFF", payee_ok ? "ok" : "DIFF", conserved ? "ok" : "NO");
    if (!(hub_ok && dev_ok && payee_ok && conserved)) ++failures;
    finals.push_back(s.channel);
    users.push_back(s.user);
  }
  // The firmware devices pay the hub (no thread, no payee): the hub's status must name
  // their final state, and their channel holds exactly the deposit.
  for (const auto& r : fleet_.results()) {
    const ChannelState& st = r.state.state;
    const bool dev_ok = r.exit == 0 && r.has_final && r.state.hasSigHub && r.state.hasSigUser;
    bool hub_ok = false;
    {
      std::lock_guard<std::mutex> l(st_.mu);
      auto it = st_.hub.find(r.addr);
      if (it != st_.hub.end() && r.has_final) {
        cJSON* h = cJSON_Parse(it->second.c_str());
        std::string bu = json_str(h, "balanceWeiUser"), bh = json_str(h, "balanceWeiHub");
        hub_ok = json_u64(h, "txCountGlobal") == st.txCountGlobal &&
                 (bu.empty() || bu == json::amount_text(st.balanceWeiUser)) &&
                 (bh.empty() || bh == json::amount_text(st.balanceWeiHub));
        cJSON_Delete(h);
      }
    }
    U256 sum{};
    (void)u256_add(st.balanceWeiUser, st.balanceWeiHub, sum);
    const bool conserved = r.has_final && st.threadCount == 0 && sum == U256::from_u64(FirmwareFleet::kDepositWei) &&
                           st.balanceWeiHub == U256::from_u64(r.payments * FirmwareFleet::kAmountWei);
    cJSON* o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", r.name.c_str());
    cJSON_AddStringToObject(o, "address", r.addr.c_str());
    cJSON_AddBoolToObject(o, "firmware", true);
    cJSON_AddNumberToObject(o, "payments", static_cast<double>(r.payments));
    cJSON_AddStringToObject(o, "paidWei", json::amount_text(st.balanceWeiHub).c_str());
    cJSON_AddStringToObject(o, "paidEth", eth_text(st.balanceWeiHub).c_str());
    cJSON_AddNumberToObject(o, "txCountGlobal", static_cast<double>(st.txCountGlobal));
    cJSON_AddStringToObject(o, "depositTx", r.deposit_tx.c_str());
    cJSON_AddNumberToObject(o, "exitStatus", r.exit);
    cJSON_AddBoolToObject(o, "hubAgrees", hub_ok);
    cJSON_AddBoolToObject(o, "deviceConsistent", dev_ok);
    cJSON_AddBoolToObject(o, "conserved", conserved);
    cJSON_AddItemToArray(devices_json_, o);
    std::printf("%-10s %10s %24s %8llu %6s %6s %6s %9s  (%llu payments to the hub; log %s)\n", r.name.c_str(), "-",
                amount(st.balanceWeiHub).c_str(), static_cast<unsigned long long>(st.txCountGlobal),
                hub_ok ? "ok" : "DIFF", dev_ok ? "ok" : "DIFF", "-", conserved ? "ok" : "NO",
                static_cast<unsigned long long>(r.payments), r.log.c_str());
    if (!(hub_ok && dev_ok && conserved)) ++failures;
    if (r.has_final) {
      Address a{};
      if (address_parse(r.addr.c_str(), r.addr.size(), a) == Status::Ok) {
        finals.push_back(r.state);
        users.push_back(a);
      }
    }
  }
  bool totals = total_paid == total_received;
  total_paid_ = total_paid;
  total_received_ = total_received;
  std::printf("%-10s %10llu %24s   payee received %s: %s\n", "total", static_cast<unsigned long long>(total_wh_),
              amount(total_paid).c_str(), amount(total_received).c_str(),
              totals ? "totals conserved" : "TOTALS DIFFER");
  if (!totals) ++failures;
  // The flows (docs/flows.md): the top-up confirmed, the payee cashed out exactly what it
  // received, the hub's collateral back in its reserve; both histories show them (in ETH,
  // or with --token in token base units: the histories' "wei" counts the channel's asset).
  {
    cJSON_Delete(flows_json_);
    flows_json_ = cJSON_CreateObject();
    std::vector<device::HistoryEntry> ph, dh;
    std::string herr;
    (void)device::history_load(work_ + "/payee", ph, herr);
    if (!devs_.empty()) (void)device::history_load(devs_[0]->dir, dh, herr);
    auto sum_of = [](const std::vector<device::HistoryEntry>& h, const char* ev, size_t* n) {
      U256 t = U256::zero();
      *n = 0;
      for (const auto& e : h)
        if (e.event == ev) {
          (void)u256_add(t, e.wei, t);
          ++*n;
        }
      return t;
    };
    size_t n_top = 0, n_coll = 0, n_back = 0, n_out = 0;
    (void)sum_of(dh, "deposit-confirmed", &n_top);
    const U256 coll = sum_of(ph, "collateral", &n_coll);
    const U256 back = sum_of(ph, "collateral-reclaimed", &n_back);
    const U256 out = sum_of(ph, "withdrawal-confirmed", &n_out);
    const bool top_ok = topup_.ok && n_top >= 2;  // the first deposit and the top-up
    const bool cash_ok = cashout_.ok && n_out == 1 && out == total_received;
    const bool coll_ok = n_back >= 1 && bal_hub(payee.channel.state).is_zero() &&
                         bal_user(payee.channel.state).is_zero() && !channel_has_pending(payee.channel.state);
    cJSON* t = flow_json(topup_);
    cJSON_AddStringToObject(t, "device", devs_.empty() ? "" : devs_[0]->name.c_str());
    cJSON_AddBoolToObject(t, "reconciled", top_ok);
    cJSON_AddItemToObject(flows_json_, "topUp", t);
    cJSON* c = flow_json(cashout_);
    cJSON_AddStringToObject(c, "receivedWei", json::amount_text(total_received).c_str());
    cJSON_AddStringToObject(c, "cashedOutWei", json::amount_text(out).c_str());
    cJSON_AddBoolToObject(c, "reconciled", cash_ok);
    cJSON_AddItemToObject(flows_json_, "cashOut", c);
    cJSON* k = cJSON_CreateObject();
    cJSON_AddStringToObject(k, "depositedWei", json::amount_text(coll).c_str());
    cJSON_AddNumberToObject(k, "deposits", static_cast<double>(n_coll));
    cJSON_AddStringToObject(k, "reclaimedWei", json::amount_text(back).c_str());
    cJSON_AddNumberToObject(k, "reclaims", static_cast<double>(n_back));
    cJSON_AddNumberToObject(k, "idleSeconds", kCollateralIdleSeconds);
    cJSON_AddBoolToObject(k, "reconciled", coll_ok);
    cJSON_AddItemToObject(flows_json_, "collateral", k);
    U256 topup_wei{};
    (void)u256_parse_decimal(kTopUpWei, std::strlen(kTopUpWei), topup_wei);
    std::printf("[demo] flows: top-up %s %s; payee cashed out %s of %s received %s; collateral %s in, %s back "
                "%s\n",
                amount(topup_wei).c_str(), top_ok ? "ok" : "DIFF",
                amount(out).c_str(), amount(total_received).c_str(), cash_ok ? "ok" : "DIFF", amount(coll).c_str(),
                amount(back).c_str(), coll_ok ? "ok" : "DIFF");
    failures += (top_ok ? 0 : 1) + (cash_ok ? 0 : 1) + (coll_ok ? 0 : 1);
  }
  // A payee channel that still holds something is settled on chain with the devices'; an
  // empty one (cashed out, collateral back) needs nothing: it stays open, no challenge.
  const ChannelState& pc = payee.channel.state;
  if (payee.channel.hasSigHub && (!bal_hub(pc).is_zero() || !bal_user(pc).is_zero() || pc.threadCount != 0)) {
    finals.push_back(payee.channel);
    users.push_back(payee.user);
  }

  // Settlement on chain: the hub starts the exit with each latest double-signed state,
  // the challenge period passes (dev chain time), the channel is emptied.
  std::printf("\n[demo] settling %zu channels on chain...\n", finals.size());
  chain::RpcClient rpc(chain_.url());
  PrivateKey hk{};
  (void)private_key_parse(hub_key_.c_str(), hub_key_.size(), hk);
  chain::Wallet w(rpc, hk);
  Address cm_addr{};
  (void)address_parse(contract_.c_str(), contract_.size(), cm_addr);
  if (!w.init()) return 1;
  chain::ChannelManagerClient cm(w, cm_addr);
  for (auto& f : finals) {
    auto r = cm.start_exit_with_update(f);
    if (r) add_gas("startExitWithUpdate", r->gasUsed);
    if (!r) {
      std::printf("[demo] startExitWithUpdate %s: %s\n", json::address_text(f.state.user).c_str(),
                  r.error().to_string().c_str());
      ++failures;
    }
  }
  (void)rpc.increase_time(kChallenge + 1);
  for (auto& u : users) {
    auto r = cm.empty_channel(u);
    if (r) add_gas("emptyChannel", r->gasUsed);
    if (!r) {
      std::printf("[demo] emptyChannel %s: %s\n", json::address_text(u).c_str(), r.error().to_string().c_str());
      ++failures;
    }
  }
  // Every party the demo funded (1000 ETH each at start): the chargers spent their
  // payments, deposits' and gas; the payee gained what it received.
  cJSON_Delete(chain_json_);
  chain_json_ = cJSON_CreateObject();
  cJSON* accounts = cJSON_AddArrayToObject(chain_json_, "accounts");
  std::printf("\n%-11s %-42s %28s %30s\n", "on chain", "address", wei_ ? "account balance (wei)" : "account balance",
              "left in the channel (hub/user)");
  std::vector<Address> shown = users;
  bool payee_shown = false;
  for (const auto& u : users) payee_shown = payee_shown || u == payee.user;
  if (!payee_shown) shown.push_back(payee.user);  // cashed out: its channel stays open, empty
  const size_t with_channel = shown.size();
  Address hub_a{};
  if (address_parse(hub_addr_.c_str(), hub_addr_.size(), hub_a) == Status::Ok) shown.push_back(hub_a);
  for (size_t i = 0; i < shown.size(); ++i) {
    const bool is_user = i < with_channel;
    auto b = rpc.balance(shown[i]);
    cJSON* o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name_of(shown[i]).c_str());
    cJSON_AddStringToObject(o, "address", json::address_text(shown[i]).c_str());
    if (b) {
      cJSON_AddStringToObject(o, "balanceWei", json::amount_text(*b).c_str());
      cJSON_AddStringToObject(o, "balanceEth", eth_text(*b).c_str());
    }
    chain::Result<U256> tb = U256::zero();
    if (token_) {
      tb = chain::erc20_balance(rpc, token_addr_, shown[i]);
      if (tb) cJSON_AddStringToObject(o, "balanceTokens", json::amount_text(*tb).c_str());
    }
    std::string chan = "-";
    if (is_user) {
      auto c = cm.channel(shown[i]);
      if (c) {
        cJSON_AddStringToObject(o, "channelWeiHub", json::amount_text(c->weiHub).c_str());
        cJSON_AddStringToObject(o, "channelWeiUser", json::amount_text(c->weiUser).c_str());
        if (token_) {
          cJSON_AddStringToObject(o, "channelTokenHub", json::amount_text(c->tokenHub).c_str());
          cJSON_AddStringToObject(o, "channelTokenUser", json::amount_text(c->tokenUser).c_str());
        }
        chan = token_ ? amount(c->tokenHub) + " / " + amount(c->tokenUser) : amount(c->weiHub) + " / " + amount(c->weiUser);
      } else {
        chan = "?";
      }
    }
    cJSON_AddItemToArray(accounts, o);
    std::printf("%-11s %-42s %28s %30s\n", name_of(shown[i]).c_str(), json::address_text(shown[i]).c_str(),
                token_ ? (tb ? amount(*tb).c_str() : "?") : (b ? amount(*b).c_str() : "?"), chan.c_str());
  }
  auto reserve = cm.hub_reserve_wei();
  if (reserve) {
    cJSON_AddStringToObject(chain_json_, "hubReserveWei", json::amount_text(*reserve).c_str());
    cJSON_AddStringToObject(chain_json_, "hubReserveEth", eth_text(*reserve).c_str());
  }
  if (token_) {
    auto rt = cm.hub_reserve_tokens();
    if (rt) cJSON_AddStringToObject(chain_json_, "hubReserveTokens", json::amount_text(*rt).c_str());
    std::printf("%-11s %-42s %28s   (the hub's tokens held by the ChannelManager)\n", "hub reserve", contract_.c_str(),
                rt ? amount(*rt).c_str() : "?");
  } else {
    std::printf("%-11s %-42s %28s   (the hub's wei held by the ChannelManager)\n", "hub reserve", contract_.c_str(),
                reserve ? amount(*reserve).c_str() : "?");
  }
  std::printf("[demo] gas used by the demo's own transactions (deploy, reserve, settlement): %llu\n",
              static_cast<unsigned long long>(gas_total_));
  std::printf("\n[demo] payments/s: avg %.1f, peak %.1f over %d devices\n", avg_rate_, max_rate_, devices_);
  LatencyProbe::Summary ls = lat_.total();
  std::printf("[demo] latency (meter reading published -> first payment from that device on the broker): p50 %.1f ms, "
              "p99 %.1f ms, max %.1f ms over %llu readings (%llu readings never followed by a payment)\n",
              ls.p50, ls.p99, ls.max, static_cast<unsigned long long>(ls.n),
              static_cast<unsigned long long>(lat_.unmatched()));
  return failures;
}

int Demo::run(int argc, char** argv) {
  // One parser for every picopay program (CLI11, agent/common options.hpp): a bad number or
  // an unknown option is one line on stderr and exit 2.
  CLI::App app{kAbout, "picopay demo"};
  app.footer(kFooter);
  app.add_option("--devices", devices_, "metered devices, 1..50 (default 3)")->type_name("N")->check(CLI::Range(1, 50));
  app.add_option("--seconds", seconds_, "seconds of telemetry (default 10)")
      ->type_name("S")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--workdir", work_,
                 "state dirs (DIR/devices/<name>/), configs and logs (default: a new /tmp/picopay-demo-XXXXXX, kept)")
      ->type_name("DIR");
  app.add_option("--rate", rate_,
                 "telemetry messages per second per device, 1..200 (default 20); sets the payment rate (about one "
                 "payment per message)")
      ->type_name("HZ")
      ->check(CLI::Range(1, 200));
  app.add_option("--summary", summary_path_,
                 "the run's summary as JSON (default DIR/summary.json): devices, Wh, paid and received (exact wei as "
                 "decimal strings, and ETH), payments/s avg/peak, latency p50/p99/max (ms), reconciled (true/false), "
                 "on-chain balances, gas of the demo's own transactions (deploy, reserve, settlement), the per-second "
                 "series; written also when the run fails")
      ->type_name("FILE");
  app.add_option("--plot", plot_path_,
                 "an SVG plot of the run (default DIR/demo.svg): payments/s over time and latency p50/p99/max over "
                 "time, one sample per second")
      ->type_name("FILE");
  app.add_flag("--wei", wei_, "print amounts in exact wei instead of ETH (the summary has both)");
  app.add_flag("--token", token_,
               "run in the dev chain's test ERC-20 (PPT, 18 decimals) instead of ETH: the demo deploys it and a "
               "ChannelManager with it, gives every charger 10 PPT and the hub a 100 PPT token reserve; deposits, "
               "prices, payments, hub collateral and the reconciliation are in PPT (docs/tokens.md). The summary's "
               "*Wei amounts are then token base units; \"asset\" and \"paid\" name them");
  app.add_option("--firmware", firmware_,
                 "also N Cortex-M4 devices under qemu-system-arm (examples/firmware, 0..8, default 0), paying the hub "
                 "for S seconds from its first payment: each makes its key on its first boot (it never leaves the "
                 "device), signs its own deposit transaction, which a keyless relay of the demo submits "
                 "(docs/firmware.md), and is reconciled and settled like the chargers. Without qemu-system-arm or the "
                 "device image the demo says so in one line and runs without them")
      ->type_name("N")
      ->check(CLI::Range(0, 8));
  const int parsed = agent::parse_args(app, std::vector<std::string>(argv, argv + argc));
  if (parsed >= 0) return parsed;
  if (token_) {
    asset_.token = true;  // symbol and address once the token is deployed
    asset_.symbol = "PPT";
  }
  if (token_ && firmware_ > 0) {
    std::fprintf(stderr, "picopay demo: the firmware devices pay in ETH: --firmware cannot be combined with --token\n");
    return 2;
  }
  if (work_.empty()) {
    char tmpl[] = "/tmp/picopay-demo-XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    work_ = tmpl;
  }
  if (summary_path_.empty()) summary_path_ = work_ + "/summary.json";
  if (plot_path_.empty()) plot_path_ = work_ + "/demo.svg";
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::printf("[demo] workdir %s: %d chargers, %d s of telemetry at %d Hz, %s per Wh\n", work_.c_str(), devices_,
              seconds_, rate_, amount(U256::from_u64(kPriceWei)).c_str());
  std::string err;
  int rc = 0;
  if (!make_dirs(work_)) {
    std::fprintf(stderr, "[demo] cannot create the workdir %s\n", work_.c_str());
    return 1;
  }
  if (!setup(err)) {
    if (g_interrupted) err = "interrupted";
    std::fprintf(stderr, "[demo] FAILED: %s\n", err.c_str());
    rc = 1;
  } else {
    // charger1 tops up its channel while it charges (picopay-agent deposit, docs/flows.md).
    std::thread topup([this] {
      for (int i = 0; i < seconds_ * 5 && !g_interrupted; ++i)  // about a third of the run
        std::this_thread::sleep_for(std::chrono::milliseconds(66));
      if (devs_.empty() || g_interrupted) return;
      topup_ = run_agent_flow(bin_dir() + "/picopay-agent", "deposit", kTopUpWei,
                              work_ + "/" + devs_[0]->name + ".json", work_ + "/" + devs_[0]->name + ".topup.log");
      U256 t{};
      (void)u256_parse_decimal(kTopUpWei, std::strlen(kTopUpWei), t);
      std::printf("[demo] %s topped up %s while charging: %s (gas %llu, %llu ms)\n", devs_[0]->name.c_str(),
                  amount(t).c_str(), topup_.ok ? "ok" : topup_.error.c_str(),
                  static_cast<unsigned long long>(topup_.gasUsed), static_cast<unsigned long long>(topup_.elapsedMs));
    });
    progress_loop();
    topup.join();
    if (g_interrupted) {
      std::fprintf(stderr, "[demo] interrupted\n");
      err = "interrupted";
      rc = 130;
    } else {
      int failures = finish();
      rc = failures == 0 && !g_interrupted ? 0 : 1;
      if (rc != 0) err = "did not reconcile (see the table above)";
      std::printf("[demo] %s\n", rc == 0 ? "RECONCILED: every ledger agrees" : "FAILED to reconcile");
    }
  }
  if (!write_outputs(rc == 0, err) && rc == 0) rc = 1;
  stop_all();
  std::printf("[demo] all processes stopped; logs and state in %s\n", work_.c_str());
  return rc;
}

}  // namespace

int picopay_demo_main(int argc, char** argv) {
  Demo d;
  return d.run(argc, argv);
}
