#include "metrics.hpp"

#include <CivetServer.h>  // CivetCallbacks (prometheus::Exposer takes them)
#include <civetweb.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>

#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/codec.hpp"

#ifndef PICOPAY_HUB_VERSION
#define PICOPAY_HUB_VERSION "unknown"
#endif

namespace picopay::hub {

// The dashboard page (agent/dashboard/index.html), embedded at build time.
extern const unsigned char kDashboardHtml[];
extern const size_t kDashboardHtmlSize;

double wei_to_double(const U256& v) noexcept {
  double d = 0;
  for (int i = 3; i >= 0; --i) d = d * 18446744073709551616.0 + static_cast<double>(v.w[i]);
  return d;
}

namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

const char* reason_label(UpdateReason r) {
  const char* n = update_reason_name(r);
  return n ? n : "unknown";
}

// "HOST:PORT": HOST an IPv4 address or a host name (the civetweb prometheus-cpp runs has
// no IPv6 listener in Debian's build), PORT 0..65535.
bool valid_listen(const std::string& s) {
  const size_t c = s.rfind(':');
  if (c == std::string::npos || c == 0 || c + 1 >= s.size() || s.size() - c - 1 > 5) return false;
  for (size_t i = c + 1; i < s.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  if (std::stoul(s.substr(c + 1)) > 65535) return false;
  for (size_t i = 0; i < c; ++i) {
    const char ch = s[i];
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-'))
      return false;
  }
  return true;
}

}  // namespace

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> reg = std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer;
  int port = 0;

  Family<Counter>& payments = prometheus::BuildCounter()
                                  .Name("picopay_hub_payments_total")
                                  .Help("Payment updates countersigned by the hub (rate() gives payments/s)")
                                  .Register(*reg);
  Family<Counter>& updates = prometheus::BuildCounter()
                                 .Name("picopay_hub_updates_total")
                                 .Help("Device updates that reached validation, by Connext reason and result "
                                       "(countersigned, or the picopay Status name it was refused with)")
                                 .Register(*reg);
  Family<Counter>& nacks = prometheus::BuildCounter()
                               .Name("picopay_hub_nacks_total")
                               .Help("Nack replies sent, by Status name (includes undecodable, replayed and "
                                     "out-of-window updates)")
                               .Register(*reg);
  Family<Histogram>& batch_seconds = prometheus::BuildHistogram()
                                         .Name("picopay_hub_batch_seconds")
                                         .Help("Seconds from taking a batch off the queue to handing its replies "
                                               "to MQTT (validation, signing, SQLite commit)")
                                         .Register(*reg);
  Family<Histogram>& batch_messages = prometheus::BuildHistogram()
                                          .Name("picopay_hub_batch_messages")
                                          .Help("MQTT messages per batch (one SQLite transaction)")
                                          .Register(*reg);
  Family<Counter>& published = prometheus::BuildCounter()
                                   .Name("picopay_hub_replies_published_total")
                                   .Help("Replies and proposals handed to the MQTT client after their commit")
                                   .Register(*reg);
  Family<Gauge>& gauges_channels_cached =
      prometheus::BuildGauge().Name("picopay_hub_channels_cached").Help("Channels held in memory").Register(*reg);
  Family<Counter>& loaded = prometheus::BuildCounter()
                                .Name("picopay_hub_channels_loaded_total")
                                .Help("Channels read from the ledger into the cache (first use, or use after "
                                      "eviction)")
                                .Register(*reg);
  Family<Gauge>& gauges_channels_known = prometheus::BuildGauge()
                                             .Name("picopay_hub_channels_known")
                                             .Help("Channels with a stored state (the store at start, plus "
                                                   "channels updated since)")
                                             .Register(*reg);
  Family<Gauge>& gauges_threads = prometheus::BuildGauge()
                                      .Name("picopay_hub_threads_open")
                                      .Help("Open threads over the known channels' latest states (threadCount)")
                                      .Register(*reg);
  Family<Gauge>& gauges_collateral = prometheus::BuildGauge()
                                         .Name("picopay_hub_collateral_wei")
                                         .Help("Hub wei locked in channel balances: sum of balanceWeiHub over "
                                               "the known channels' latest double-signed states (wei, as float)")
                                         .Register(*reg);
  Family<Gauge>& gauges_deposits = prometheus::BuildGauge()
                                       .Name("picopay_hub_deposit_jobs")
                                       .Help("Countersigned collateral deposits waiting for the chain "
                                             "(hubAuthorizedUpdate, then ConfirmPending)")
                                       .Register(*reg);
  Family<Gauge>& gauges_queue = prometheus::BuildGauge()
                                    .Name("picopay_hub_queue_messages")
                                    .Help("MQTT messages received and still waiting for the worker after it "
                                          "took its last batch (grows when the hub cannot keep up)")
                                    .Register(*reg);
  Family<Gauge>& gauges_mqtt = prometheus::BuildGauge()
                                   .Name("picopay_hub_mqtt_connected")
                                   .Help("1 while the hub is connected to the MQTT broker")
                                   .Register(*reg);
  Family<Gauge>& gauges_build = prometheus::BuildGauge()
                                    .Name("picopay_hub_build_info")
                                    .Help("Always 1; the labels name the build")
                                    .Register(*reg);
  Family<Gauge>& gauges_start = prometheus::BuildGauge()
                                    .Name("picopay_hub_start_time_seconds")
                                    .Help("Unix time the hub started (seconds)")
                                    .Register(*reg);
  // chain (registered at the first chain round: absent without --rpc-url)
  Family<Gauge>* reserve = nullptr;
  Family<Gauge>* account = nullptr;
  Family<Gauge>* head = nullptr;
  Family<Gauge>* tower_block = nullptr;
  Family<Gauge>* tower_lag = nullptr;
  Family<Gauge>* tower_last = nullptr;
  Family<Counter>* tower_actions = nullptr;
  Family<Counter>* rpc_errors = nullptr;

  Counter* payments_c = nullptr;
  Counter* published_c = nullptr;
  Counter* loaded_c = nullptr;
  Counter* countersigned[16] = {};
  Histogram* batch_h = nullptr;
  Histogram* batch_n = nullptr;
  Gauge* channels_cached = nullptr;
  Gauge* channels_known = nullptr;
  Gauge* threads_open = nullptr;
  Gauge* collateral = nullptr;
  Gauge* deposits = nullptr;
  Gauge* mqtt = nullptr;
  Gauge* queue = nullptr;

  Ledger* totals_ledger = nullptr;  // keeps channel_totals: the sums are read from it (worker thread only)
  std::mutex mu;  // guards the probe
  std::function<bool()> mqtt_probe;

  Impl() {
    payments_c = &payments.Add({});
    published_c = &published.Add({});
    loaded_c = &loaded.Add({});
    batch_h = &batch_seconds.Add({}, Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                                  0.1, 0.25, 0.5, 1, 2.5, 5});
    batch_n = &batch_messages.Add({}, Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024});
    channels_cached = &gauges_channels_cached.Add({});
    channels_known = &gauges_channels_known.Add({});
    threads_open = &gauges_threads.Add({});
    collateral = &gauges_collateral.Add({});
    deposits = &gauges_deposits.Add({});
    mqtt = &gauges_mqtt.Add({});
    queue = &gauges_queue.Add({});
    gauges_build.Add({{"version", PICOPAY_HUB_VERSION}}).Set(1);
    gauges_start.Add({}).Set(unix_now());
  }

  // The ledger's totals to the gauges; the read's status (a failed read leaves them as
  // they were: the next batch reads again).
  LedgerStatus read_totals() {
    Ledger::ChannelTotals t;
    LedgerStatus s = totals_ledger->channel_totals(t);
    if (!s.ok()) return s;
    collateral->Set(wei_to_double(t.wei_hub));
    threads_open->Set(static_cast<double>(t.threads));
    channels_known->Set(static_cast<double>(t.channels));
    return s;
  }

  // The totals follow the ledger at most once a second (on PostgreSQL each read is a
  // query): a change marks them stale, and a stale read is done when a second has passed
  // since the last one, at the next change or the worker's next tick().
  std::chrono::steady_clock::time_point totals_at{};
  bool totals_stale = false;
  void totals_changed() {
    totals_stale = true;
    totals_due();
  }
  void totals_due() {
    if (!totals_stale) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - totals_at < std::chrono::seconds(1)) return;
    totals_at = now;
    if (read_totals().ok()) totals_stale = false;
  }

  void refresh() {
    std::lock_guard<std::mutex> lk(mu);
    if (mqtt_probe) mqtt->Set(mqtt_probe() ? 1 : 0);
  }

  void ensure_chain() {
    if (reserve) return;
    reserve = &prometheus::BuildGauge()
                   .Name("picopay_hub_reserve_wei")
                   .Help("The hub's reserve in the ChannelManager (hubReserveWei, wei as float): what it can "
                         "still deposit into channels as collateral")
                   .Register(*reg);
    account = &prometheus::BuildGauge()
                   .Name("picopay_hub_account_balance_wei")
                   .Help("The hub account's own balance (eth_getBalance, wei as float): pays the gas of "
                         "collateral deposits and watchtower transactions")
                   .Register(*reg);
    head = &prometheus::BuildGauge().Name("picopay_hub_chain_head_block").Help("Latest block number seen (eth_blockNumber)").Register(*reg);
    tower_block = &prometheus::BuildGauge()
                       .Name("picopay_hub_watchtower_block")
                       .Help("Last block the watchtower has read ChannelManager events up to")
                       .Register(*reg);
    tower_lag = &prometheus::BuildGauge()
                     .Name("picopay_hub_watchtower_lag_blocks")
                     .Help("Blocks between the chain head and the watchtower's last read block (includes "
                           "--confirmations)")
                     .Register(*reg);
    tower_last = &prometheus::BuildGauge()
                      .Name("picopay_hub_watchtower_last_round_timestamp_seconds")
                      .Help("Unix time of the watchtower's last successful round (seconds)")
                      .Register(*reg);
    tower_actions = &prometheus::BuildCounter()
                         .Name("picopay_hub_watchtower_actions_total")
                         .Help("Watchtower transactions (disputes answered, channels and threads emptied), by "
                               "action and result")
                         .Register(*reg);
    rpc_errors = &prometheus::BuildCounter()
                      .Name("picopay_hub_chain_rpc_errors_total")
                      .Help("Failed JSON-RPC reads made for these metrics or failed watchtower rounds")
                      .Register(*reg);
  }
};

namespace {
std::atomic<Metrics::Impl*> g_live{nullptr};
std::mutex g_start_mu;

void send(mg_connection* conn, int code, const char* status, const char* type, const void* body, size_t n,
          const char* extra = "") {
  const mg_request_info* ri = mg_get_request_info(conn);
  const bool head = ri && ri->request_method && std::strcmp(ri->request_method, "HEAD") == 0;
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n%sConnection: close\r\n\r\n",
            code, status, type, n, extra);
  if (!head && n) mg_write(conn, body, n);
}

// civetweb calls this for every request before its own handlers: the dashboard and the
// redirect are answered here (return the status code); /metrics falls through (return 0)
// to prometheus-cpp's handler after the probe-based gauges are refreshed.
int begin_request(mg_connection* conn) {
  const mg_request_info* ri = mg_get_request_info(conn);
  Metrics::Impl* m = g_live.load();
  if (!ri || !ri->local_uri || !m) return 0;
  const std::string uri = ri->local_uri;
  const std::string method = ri->request_method ? ri->request_method : "";
  if (uri == "/metrics") {
    m->refresh();
    return 0;
  }
  if (uri != "/" && uri != "/dashboard" && uri != "/dashboard/") {
    static const char nf[] = "not found: try /metrics or /dashboard\n";
    send(conn, 404, "Not Found", "text/plain; charset=utf-8", nf, sizeof nf - 1);
    return 404;
  }
  if (method != "GET" && method != "HEAD") {
    static const char na[] = "method not allowed\n";
    send(conn, 405, "Method Not Allowed", "text/plain; charset=utf-8", na, sizeof na - 1, "Allow: GET, HEAD\r\n");
    return 405;
  }
  if (uri == "/") {
    send(conn, 302, "Found", "text/plain; charset=utf-8", "", 0, "Location: /dashboard\r\n");
    return 302;
  }
  send(conn, 200, "OK", "text/html; charset=utf-8", kDashboardHtml, kDashboardHtmlSize,
       "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'\r\n");
  return 200;
}
}  // namespace

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {}

Metrics::~Metrics() {
  impl_->exposer.reset();  // stops the HTTP threads before the instance goes away
  Impl* self = impl_.get();
  g_live.compare_exchange_strong(self, nullptr);
}

std::unique_ptr<Metrics> Metrics::start(const std::string& listen, Ledger& ledger, std::string& err) {
  if (!valid_listen(listen)) {
    err = "--metrics-listen: expected IPv4-HOST:PORT (e.g. 127.0.0.1:9464), got '" + listen + "'";
    return nullptr;
  }
  std::unique_ptr<Metrics> m(new Metrics());
  // The ledger keeps the totals (ledger.hpp channel_totals): no channel is read here.
  m->impl_->totals_ledger = &ledger;
  if (const LedgerStatus ts = m->impl_->read_totals(); !ts.ok()) {
    err = "metrics: " + ts.message;
    return nullptr;
  }
  std::lock_guard<std::mutex> lk(g_start_mu);
  Impl* expected = nullptr;
  if (!g_live.compare_exchange_strong(expected, m->impl_.get())) {
    err = "metrics: another metrics listener is already running in this process";
    return nullptr;
  }
  static CivetCallbacks callbacks{};
  callbacks.begin_request = begin_request;
  try {
    m->impl_->exposer = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", listen, "num_threads", "2", "request_timeout_ms", "10000"},
        &callbacks);
    m->impl_->exposer->RegisterCollectable(m->impl_->reg);
    auto ports = m->impl_->exposer->GetListeningPorts();
    m->impl_->port = ports.empty() ? 0 : ports.front();
  } catch (const std::exception& e) {
    g_live.store(nullptr);
    err = "--metrics-listen " + listen + ": cannot listen: " + e.what();
    return nullptr;
  }
  return m;
}

int Metrics::port() const { return impl_->port; }

void Metrics::set_mqtt_probe(std::function<bool()> connected) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  impl_->mqtt_probe = std::move(connected);
  if (impl_->mqtt_probe) impl_->mqtt->Set(impl_->mqtt_probe() ? 1 : 0);
}

void Metrics::update_countersigned(UpdateReason r) {
  const size_t i = static_cast<size_t>(r) & 15u;
  if (!impl_->countersigned[i])
    impl_->countersigned[i] = &impl_->updates.Add({{"reason", reason_label(r)}, {"result", "countersigned"}});
  impl_->countersigned[i]->Increment();
  if (r == UpdateReason::Payment) impl_->payments_c->Increment();
}

void Metrics::update_refused(UpdateReason r, Status s) {
  impl_->updates.Add({{"reason", reason_label(r)}, {"result", status_name(s)}}).Increment();
}

void Metrics::nack_sent(Status s) { impl_->nacks.Add({{"status", status_name(s)}}).Increment(); }

void Metrics::batch_done(size_t messages, double seconds, size_t channels_cached) {
  impl_->totals_changed();
  impl_->batch_h->Observe(seconds);
  impl_->batch_n->Observe(static_cast<double>(messages));
  impl_->channels_cached->Set(static_cast<double>(channels_cached));
}

void Metrics::queue_depth(size_t messages) { impl_->queue->Set(static_cast<double>(messages)); }

void Metrics::replies_published(size_t n) { impl_->published_c->Increment(static_cast<double>(n)); }

void Metrics::channel_state(const std::string&, const ChannelState&) { impl_->totals_changed(); }

void Metrics::tick() { impl_->totals_due(); }

void Metrics::channel_loaded() { impl_->loaded_c->Increment(); }

void Metrics::deposit_backlog(size_t jobs) { impl_->deposits->Set(static_cast<double>(jobs)); }

void Metrics::chain_round(chain::RpcClient& rpc, chain::ChannelManagerClient& cm, const Address& hub,
                          uint64_t tower_block, bool tower_ok) {
  impl_->ensure_chain();
  auto& errors = impl_->rpc_errors->Add({});
  if (tower_ok) {
    impl_->tower_last->Add({}).Set(unix_now());
    impl_->tower_block->Add({}).Set(static_cast<double>(tower_block));
  } else {
    errors.Increment();
  }
  auto head = rpc.block_number();
  if (head.ok()) {
    impl_->head->Add({}).Set(static_cast<double>(*head));
    impl_->tower_lag->Add({}).Set(static_cast<double>(*head > tower_block ? *head - tower_block : 0));
  } else {
    errors.Increment();
  }
  auto reserve = cm.hub_reserve_wei();
  if (reserve.ok()) impl_->reserve->Add({}).Set(wei_to_double(*reserve));
  else errors.Increment();
  auto bal = rpc.balance(hub);
  if (bal.ok()) impl_->account->Add({}).Set(wei_to_double(*bal));
  else errors.Increment();
}

void Metrics::watchtower_action(const std::string& what, bool ok) {
  impl_->ensure_chain();
  impl_->tower_actions->Add({{"action", what}, {"result", ok ? "ok" : "failed"}}).Increment();
}

}  // namespace picopay::hub
