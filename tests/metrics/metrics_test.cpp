// What an operator watches (docs/operations.md), end to end on real parts: a real
// mosquitto (tests/support), the real picopay-hub binary with --metrics-listen, simulated
// devices (tests/hub/sim_device.hpp), a real Prometheus server from Debian scraping the hub,
// and headless Chromium loading the hub's /dashboard page. Everything on 127.0.0.1. No
// timing assertions: every wait is bounded.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cjson/cJSON.h>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "../hub/hub_ledger.hpp"
#include "../hub/sim_device.hpp"
#include "ledger/ledger.hpp"
#include "picopay/codec.hpp"
#include "support/broker.hpp"
#include "support/postgres.hpp"

using namespace picopay;
using namespace picopay::testsupport;

namespace {

const char* kContract = "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390";
constexpr uint32_t kHubIndex = 0xABCDEF;
constexpr uint64_t kPayWei = 7;

size_t on_body(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

// GET http://127.0.0.1:port/path; the HTTP status (0 if no answer), body in `body`.
long http_get(int port, const std::string& path, std::string& body, std::string* content_type = nullptr) {
  body.clear();
  CURL* c = curl_easy_init();
  if (!c) return 0;
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  long code = 0;
  if (curl_easy_perform(c) == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    char* ct = nullptr;
    if (content_type && curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct) *content_type = ct;
  }
  curl_easy_cleanup(c);
  return code;
}

// One series' value in a Prometheus text exposition: `series` is the exact text before
// the value, e.g. `picopay_hub_updates_total{reason="Payment",result="countersigned"}`.
// NAN if absent.
double series_value(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.compare(0, series.size(), series) == 0 && line.size() > series.size() && line[series.size()] == ' ')
      return std::strtod(line.c_str() + series.size() + 1, nullptr);
  }
  return NAN;
}

// A PNG's pixels (8-bit RGB or RGBA, non-interlaced, as Chromium writes them) as 0xRRGGBB.
bool png_pixels(const std::string& png, uint32_t& w, uint32_t& h, std::vector<uint32_t>& px, std::string& err) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (png.size() < 8 || std::memcmp(png.data(), sig, 8) != 0) return err = "not a PNG", false;
  auto be32 = [&](size_t o) {
    return (uint32_t(uint8_t(png[o])) << 24) | (uint32_t(uint8_t(png[o + 1])) << 16) |
           (uint32_t(uint8_t(png[o + 2])) << 8) | uint32_t(uint8_t(png[o + 3]));
  };
  std::string idat;
  unsigned bpp = 0;
  w = h = 0;
  for (size_t o = 8; o + 12 <= png.size();) {
    const uint32_t len = be32(o);
    const std::string type = png.substr(o + 4, 4);
    if (o + 12 + len > png.size()) return err = "truncated chunk", false;
    if (type == "IHDR") {
      w = be32(o + 8);
      h = be32(o + 12);
      const int depth = uint8_t(png[o + 16]), color = uint8_t(png[o + 17]), interlace = uint8_t(png[o + 20]);
      if (depth != 8 || (color != 2 && color != 6) || interlace != 0) return err = "unsupported PNG format", false;
      bpp = color == 6 ? 4 : 3;
    } else if (type == "IDAT") {
      idat.append(png, o + 8, len);
    }
    o += 12 + len;
  }
  if (!w || !h || !bpp || w > 10000 || h > 10000) return err = "bad IHDR", false;
  const size_t stride = size_t(w) * bpp;
  std::vector<unsigned char> raw((stride + 1) * h);
  uLongf n = static_cast<uLongf>(raw.size());
  if (uncompress(raw.data(), &n, reinterpret_cast<const Bytef*>(idat.data()), static_cast<uLong>(idat.size())) != Z_OK ||
      n != raw.size())
    return err = "bad IDAT", false;
  std::vector<unsigned char> prev(stride, 0), cur(stride);
  px.resize(size_t(w) * h);
  for (uint32_t y = 0; y < h; ++y) {
    const unsigned char f = raw[y * (stride + 1)];
    const unsigned char* in = &raw[y * (stride + 1) + 1];
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
      int pred = 0;
      if (f == 1) pred = a;
      else if (f == 2) pred = b;
      else if (f == 3) pred = (a + b) / 2;
      else if (f == 4) {
        const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
        pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
      } else if (f != 0) {
        return err = "bad filter", false;
      }
      cur[i] = static_cast<unsigned char>(in[i] + pred);
    }
    for (uint32_t x = 0; x < w; ++x)
      px[size_t(y) * w + x] = (uint32_t(cur[x * bpp]) << 16) | (uint32_t(cur[x * bpp + 1]) << 8) | cur[x * bpp + 2];
    prev.swap(cur);
  }
  return true;
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("picopay-metricstest");
    Signer s;
    ASSERT_EQ(s.init(), Status::Ok);
    ASSERT_EQ(s.address_of(test_key(kHubIndex), hub_addr_), Status::Ok);
    ASSERT_EQ(address_parse(kContract, std::strlen(kContract), contract_), Status::Ok);
  }
  void TearDown() override {
    hub_.kill9();
    devices_.clear();
    broker_.reset();
    if (!HasFailure()) remove_tree(dir_);
    else std::fprintf(stderr, "kept %s\n", dir_.c_str());
  }

  void start_broker(uint32_t devices) {
    BrokerOptions o;
    o.users.push_back({"hub", "hub-pass"});
    for (uint32_t i = 1; i <= devices; ++i) {
      auto login = device_broker_login(i);
      o.users.push_back({login.first, login.second});
    }
    o.acl = picopay_acl("hub");
    o.dir = dir_ + "/broker";
    broker_ = std::make_unique<Broker>(o);
    std::string err;
    ASSERT_TRUE(broker_->start(err)) << err;
  }

  std::vector<std::string> hub_argv(const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {PICOPAY_HUB_BIN,   "--broker-host", "127.0.0.1", "--broker-port",
                                     std::to_string(broker_ ? broker_->port() : 1), "--broker-user", "hub",
                                     "--broker-password", "hub-pass", "--contract", kContract,
                                     "--private-key", hex_key(test_key(kHubIndex)), "--db", dir_ + "/hub.db",
                                     "--dev-skip-chain-checks"};
    if (!store_.empty()) argv.insert(argv.end(), {"--store", store_});
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  // Starts the hub with metrics on a free port and waits until /metrics answers.
  void start_hub() {
    mport_ = free_port();
    ASSERT_GT(mport_, 0);
    ASSERT_TRUE(hub_.start(hub_argv({"--metrics-listen", "127.0.0.1:" + std::to_string(mport_)}), dir_ + "/hub.log"));
    ASSERT_TRUE(wait_port_open(mport_, 15000)) << read_file(dir_ + "/hub.log");
  }

  SimDevice& device(uint32_t i) {
    auto d = std::make_unique<SimDevice>(i, hub_addr_, contract_);
    mqtt::Options o;
    o.port = broker_->port();
    std::string err;
    EXPECT_TRUE(d->start(o, "pw-" + std::to_string(i), err)) << err;
    devices_.push_back(std::move(d));
    return *devices_.back();
  }

  std::string scrape() {
    std::string body;
    EXPECT_EQ(http_get(mport_, "/metrics", body), 200);
    return body;
  }

  // Scrapes until `series` has `want` (bounded: the channel gauges follow the retained
  // status publish, at most once a second per channel).
  std::string scrape_until(const std::string& series, double want, int timeout_ms = 15000) {
    std::string m;
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
      m = scrape();
      if (series_value(m, series) == want) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return m;
  }

  // Two devices fund and pay `payments` each; one forged update (WrongSigner) from device 1.
  void traffic(int payments) {
    SimDevice& a = device(1);
    SimDevice& b = device(2);
    ASSERT_EQ(a.fund(1000000), Status::Ok);
    ASSERT_EQ(b.fund(1000000), Status::Ok);
    for (int k = 0; k < payments; ++k) {
      ASSERT_EQ(a.pay(kPayWei), Status::Ok);
      ASSERT_EQ(b.pay(kPayWei), Status::Ok);
    }
    ChannelUpdate f = channel_update_make(UpdateReason::Payment);
    f.payment.recipient = Party::Hub;
    f.payment.amountWei = U256::from_u64(1);
    ChannelState nf{};
    auto wf = a.build(f, nf);
    ASSERT_FALSE(wf.empty());
    Signer s;
    ASSERT_EQ(s.init(), Status::Ok);
    Signature bad{};
    ASSERT_EQ(s.sign_eth(test_key(77), channel_hash(nf), bad), Status::Ok);
    std::memcpy(&wf[wf.size() - 65], bad.r, 32);
    std::memcpy(&wf[wf.size() - 33], bad.s, 32);
    wf.back() = bad.v;
    ASSERT_TRUE(a.publish_raw(mqtt::topic_update(hub_addr_, a.address()), wf, f.txCountGlobal));
    Reply r;
    ASSERT_TRUE(a.wait_reply(f.txCountGlobal, r, 20000));
    ASSERT_EQ(r.kind, ReplyKind::Nack);
    ASSERT_EQ(r.status, Status::WrongSigner);
  }

  // Idle channels written before the hub ever ran (as the load bench preloads them), then
  // the hub started, paid on, restarted: the channel sums of /metrics are the ledger's
  // totals at every step, and start-up loads no channel. `spec` the ledger; out: the final
  // collateral (wei) and thread sums. Leaves the hub running.
  void channel_sums_survive_a_restart(const std::string& spec, int idle, double& wei_out, double& threads_out);

  std::string dir_;
  std::string store_;  // --store (empty: the default, sqlite: next to --db)
  std::unique_ptr<Broker> broker_;
  Process hub_;
  int mport_ = -1;
  Address hub_addr_{}, contract_{};
  std::vector<std::unique_ptr<SimDevice>> devices_;
};

}  // namespace

TEST_F(MetricsTest, ListenAddressIsCheckedAndABusyPortIsAClearError) {
  std::string out = dir_ + "/help.txt";
  ASSERT_EQ(run_command({PICOPAY_HUB_BIN, "--help"}, out), 0);
  EXPECT_NE(read_file(out).find("--metrics-listen HOST:PORT"), std::string::npos);
  for (const char* bad : {"9464", "127.0.0.1:", ":9464", "127.0.0.1:70000", "127.0.0.1:94a4", "a b:1", "[::1]:9464"}) {
    const std::string log = dir_ + "/bad.txt";
    EXPECT_EQ(run_command(hub_argv({"--metrics-listen", bad}), log), 2) << bad;
    EXPECT_NE(read_file(log).find("--metrics-listen"), std::string::npos) << read_file(log);
  }
  // A port another process holds: the hub refuses to start (exit 2, one clear line).
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t al = sizeof a;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &al), 0);
  const std::string busy = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  const std::string log = dir_ + "/busy.txt";
  EXPECT_EQ(run_command(hub_argv({"--metrics-listen", busy}), log), 2);
  EXPECT_NE(read_file(log).find("cannot listen"), std::string::npos) << read_file(log);
  ::close(fd);
  // The config file key works like the flag.
  const int port = free_port();
  ASSERT_TRUE(write_file(dir_ + "/hub.json", "{\"metricsListen\": \"127.0.0.1:" + std::to_string(port) + "\"}"));
  start_broker(0);
  ASSERT_TRUE(hub_.start(hub_argv({"--config", dir_ + "/hub.json"}), dir_ + "/hub.log"));
  ASSERT_TRUE(wait_port_open(port, 15000)) << read_file(dir_ + "/hub.log");
  std::string body;
  EXPECT_EQ(http_get(port, "/metrics", body), 200);
  EXPECT_EQ(series_value(body, "picopay_hub_payments_total"), 0);
}

TEST_F(MetricsTest, MetricsCountPaymentsRefusalsBatchesAndCollateral) {
  constexpr int kPayments = 12;
  start_broker(2);
  start_hub();
  std::string m = scrape();
  EXPECT_EQ(series_value(m, "picopay_hub_payments_total"), 0);
  EXPECT_EQ(series_value(m, "picopay_hub_build_info{version=\"" PICOPAY_VERSION "\"}"), 1);
  EXPECT_TRUE(std::isnan(series_value(m, "picopay_hub_reserve_wei"))) << "no chain: no reserve series";
  traffic(kPayments);
  // Collateral = sum of balanceWeiHub = what the two users paid the hub.
  m = scrape_until("picopay_hub_collateral_wei", 2.0 * kPayments * kPayWei);
  EXPECT_EQ(series_value(m, "picopay_hub_collateral_wei"), 2.0 * kPayments * kPayWei) << m;
  EXPECT_EQ(series_value(m, "picopay_hub_payments_total"), 2 * kPayments);
  EXPECT_EQ(series_value(m, "picopay_hub_updates_total{reason=\"Payment\",result=\"countersigned\"}"), 2 * kPayments);
  EXPECT_EQ(series_value(m, "picopay_hub_updates_total{reason=\"ProposePendingDeposit\",result=\"countersigned\"}"), 2);
  EXPECT_EQ(series_value(m, "picopay_hub_updates_total{reason=\"ConfirmPending\",result=\"countersigned\"}"), 2);
  EXPECT_EQ(series_value(m, "picopay_hub_updates_total{reason=\"Payment\",result=\"WrongSigner\"}"), 1);
  EXPECT_EQ(series_value(m, "picopay_hub_nacks_total{status=\"WrongSigner\"}"), 1);
  // Every update got its reply (device retries can add duplicates, never fewer).
  EXPECT_GE(series_value(m, "picopay_hub_replies_published_total"), 2 * kPayments + 4 + 1);
  const double batches = series_value(m, "picopay_hub_batch_seconds_count");
  EXPECT_GE(batches, 1);
  EXPECT_EQ(series_value(m, "picopay_hub_batch_seconds_bucket{le=\"+Inf\"}"), batches);
  EXPECT_GE(series_value(m, "picopay_hub_batch_messages_sum"), 2 * kPayments + 4 + 1);
  EXPECT_EQ(series_value(m, "picopay_hub_channels_cached"), 2);
  EXPECT_EQ(series_value(m, "picopay_hub_channels_known"), 2);
  EXPECT_EQ(series_value(m, "picopay_hub_threads_open"), 0);
  EXPECT_EQ(series_value(m, "picopay_hub_deposit_jobs"), 0);
  EXPECT_EQ(series_value(m, "picopay_hub_queue_messages"), 0) << "idle: nothing waits";
  EXPECT_EQ(series_value(m, "picopay_hub_mqtt_connected"), 1);

  // The broker goes away: the gauge says so.
  broker_->kill9();
  m = scrape_until("picopay_hub_mqtt_connected", 0);
  EXPECT_EQ(series_value(m, "picopay_hub_mqtt_connected"), 0);

  // A restarted hub knows its channels and collateral from the store before any update.
  ASSERT_EQ(hub_.terminate(), 0);
  start_hub();
  m = scrape();
  EXPECT_EQ(series_value(m, "picopay_hub_channels_known"), 2);
  EXPECT_EQ(series_value(m, "picopay_hub_collateral_wei"), 2.0 * kPayments * kPayWei);
  EXPECT_EQ(series_value(m, "picopay_hub_payments_total"), 0) << "counters start at 0 per process";
}

TEST_F(MetricsTest, RealPrometheusScrapesTheHub) {
  constexpr int kPayments = 10;
  start_broker(2);
  start_hub();
  traffic(kPayments);
  const int pport = free_port();
  const std::string pdir = dir_ + "/prometheus";
  ASSERT_EQ(run_command({"mkdir", "-p", pdir + "/data"}), 0);
  // The alert rules docs/operations.md suggests, loaded as written: they must parse and
  // evaluate against the hub's real series.
  const std::string doc = read_file(PICOPAY_OPERATIONS_MD);
  const size_t r0 = doc.find("```yaml\ngroups:");
  ASSERT_NE(r0, std::string::npos) << "docs/operations.md lost its alert rules";
  const size_t r1 = doc.find("```", r0 + 8);
  ASSERT_NE(r1, std::string::npos);
  ASSERT_TRUE(write_file(pdir + "/rules.yml", doc.substr(r0 + 8, r1 - r0 - 8)));
  ASSERT_TRUE(write_file(pdir + "/prometheus.yml",
                         "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                         "rule_files: ['" + pdir + "/rules.yml']\n"
                         "scrape_configs:\n  - job_name: picopay-hub\n    scrape_interval: 1s\n"
                         "    static_configs:\n      - targets: ['127.0.0.1:" + std::to_string(mport_) + "']\n"));
  Process prom;
  ASSERT_TRUE(prom.start({"prometheus", "--config.file=" + pdir + "/prometheus.yml",
                          "--web.listen-address=127.0.0.1:" + std::to_string(pport),
                          "--storage.tsdb.path=" + pdir + "/data", "--log.level=warn"},
                         pdir + "/prometheus.log"))
      << "the Debian package prometheus must be installed (.ci/packages.apt)";
  ASSERT_TRUE(wait_port_open(pport, 30000)) << read_file(pdir + "/prometheus.log");
  // Ask Prometheus (its HTTP API) until its scrapes hold the hub's numbers.
  auto query = [&](const std::string& q, double& value) {
    char* enc = curl_easy_escape(nullptr, q.c_str(), static_cast<int>(q.size()));
    std::string body;
    const long code = http_get(pport, std::string("/api/v1/query?query=") + enc, body);
    curl_free(enc);
    if (code != 200) return false;
    cJSON* j = cJSON_Parse(body.c_str());
    bool ok = false;
    const cJSON* res = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "data"), "result");
    if (cJSON_IsArray(res) && cJSON_GetArraySize(res) == 1) {
      const cJSON* v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(res, 0), "value"), 1);
      if (cJSON_IsString(v)) {
        value = std::strtod(v->valuestring, nullptr);
        ok = true;
      }
    }
    cJSON_Delete(j);
    return ok;
  };
  double payments = -1, up = -1, countersigned = -1, refused = -1, collateral = -1, p95 = -1;
  for (int i = 0; i < 300 && payments != 2 * kPayments; ++i) {
    query("picopay_hub_payments_total{job=\"picopay-hub\"}", payments);
    if (payments != 2 * kPayments) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(payments, 2 * kPayments) << read_file(pdir + "/prometheus.log");
  EXPECT_TRUE(query("up{job=\"picopay-hub\"}", up));
  EXPECT_EQ(up, 1);
  EXPECT_TRUE(query("sum(picopay_hub_updates_total{result=\"countersigned\"})", countersigned));
  EXPECT_EQ(countersigned, 2 * kPayments + 4);
  EXPECT_TRUE(query("sum(picopay_hub_updates_total{result!=\"countersigned\"})", refused));
  EXPECT_EQ(refused, 1);
  EXPECT_TRUE(query("picopay_hub_collateral_wei", collateral));
  EXPECT_EQ(collateral, 2.0 * kPayments * kPayWei);
  // The histogram is usable as documented (docs/operations.md): a finite p95 in seconds.
  EXPECT_TRUE(query("histogram_quantile(0.95, sum by (le) (picopay_hub_batch_seconds_bucket))", p95));
  EXPECT_TRUE(p95 > 0 && p95 < 60) << p95;
  // Every suggested rule loaded and evaluated without error.
  size_t rules = 0, healthy = 0;
  for (int i = 0; i < 100; ++i) {
    std::string body;
    rules = healthy = 0;
    if (http_get(pport, "/api/v1/rules", body) == 200) {
      cJSON* j = cJSON_Parse(body.c_str());
      const cJSON* groups = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "data"), "groups");
      const cJSON* g = nullptr;
      cJSON_ArrayForEach(g, groups) {
        const cJSON* r = nullptr;
        cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(g, "rules")) {
          ++rules;
          const cJSON* h = cJSON_GetObjectItemCaseSensitive(r, "health");
          if (cJSON_IsString(h) && std::strcmp(h->valuestring, "ok") == 0) ++healthy;
        }
      }
      cJSON_Delete(j);
    }
    if (rules > 0 && healthy == rules) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GE(rules, 5u) << read_file(pdir + "/prometheus.log");
  EXPECT_EQ(healthy, rules) << read_file(pdir + "/prometheus.log");
  EXPECT_TRUE(prom.running()) << read_file(pdir + "/prometheus.log");
  prom.terminate();
}

TEST_F(MetricsTest, DashboardPageRendersInHeadlessChromium) {
  constexpr int kPayments = 15;
  start_broker(2);
  start_hub();
  traffic(kPayments);
  const std::string m = scrape_until("picopay_hub_channels_known", 2);
  ASSERT_EQ(series_value(m, "picopay_hub_channels_known"), 2);
  // The page itself.
  std::string html, type;
  ASSERT_EQ(http_get(mport_, "/dashboard", html, &type), 200);
  EXPECT_NE(type.find("text/html"), std::string::npos);
  EXPECT_NE(html.find("id=\"payments-total\""), std::string::npos);
  EXPECT_EQ(http_get(mport_, "/nothing-here", html), 404);

  const std::string url = "http://127.0.0.1:" + std::to_string(mport_) + "/dashboard";
  auto chromium = [&](const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                     "--disable-dev-shm-usage", "--disable-background-networking",
                                     "--no-first-run", "--disable-component-update", "--disable-sync",
                                     "--disable-extensions", "--user-data-dir=" + dir_ + "/chromium-" + name,
                                     "--window-size=1280,900", "--virtual-time-budget=4000"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    std::string cmd;
    for (auto& a : argv) cmd += "'" + a + "' ";
    cmd += "> '" + dir_ + "/" + name + ".out' 2> '" + dir_ + "/" + name + ".err'";
    Process p;
    if (!p.start({"/bin/sh", "-c", cmd}, "", {"HOME=" + dir_})) return -1;
    return p.wait(90000);
  };
  // One Chromium run (its start-up is the slow part): the DOM after ~4 s of the page's
  // virtual time, and a screenshot, while device 1 keeps paying (the chart has data).
  const double before = series_value(scrape(), "picopay_hub_payments_total");
  ASSERT_EQ(before, 2 * kPayments);
  std::atomic<bool> stop{false};
  std::thread payer([&] {
    for (int i = 0; i < 5000 && !stop.load(); ++i)
      if (devices_[0]->pay(kPayWei) != Status::Ok) break;
  });
  const std::string shot = dir_ + "/dashboard.png";
  const int rc = chromium("page", {"--dump-dom", "--screenshot=" + shot, "--hide-scrollbars"});
  stop.store(true);
  payer.join();
  const double after = series_value(scrape(), "picopay_hub_payments_total");
  ASSERT_EQ(rc, 0) << read_file(dir_ + "/page.err");
  const std::string dom = read_file(dir_ + "/page.out");
  // The rendered payment count is one the hub reported while the page was open.
  const std::string tag = "id=\"payments-total\">";
  const size_t at = dom.find(tag);
  ASSERT_NE(at, std::string::npos) << dom;
  std::string shown;
  for (size_t i = at + tag.size(); i < dom.size() && dom[i] != '<'; ++i)
    if (dom[i] != ',') shown += dom[i];
  ASSERT_FALSE(shown.empty()) << dom;
  ASSERT_TRUE(std::isdigit(static_cast<unsigned char>(shown[0]))) << "not a number: " << shown;
  const double n = std::strtod(shown.c_str(), nullptr);
  EXPECT_GE(n, before) << dom;
  EXPECT_LE(n, after) << dom;
  EXPECT_NE(dom.find("id=\"scrape\" class=\"pill ok\">live<"), std::string::npos) << dom;
  EXPECT_NE(dom.find("id=\"mqtt\" class=\"pill ok\">MQTT connected<"), std::string::npos);
  EXPECT_NE(dom.find("id=\"channels\">2 / 2<"), std::string::npos);
  EXPECT_NE(dom.find("<td>WrongSigner</td>"), std::string::npos);
  std::fprintf(stderr, "dashboard showed %.0f payments (hub: %.0f before, %.0f after)\n", n, before, after);

  uint32_t w = 0, h = 0;
  std::vector<uint32_t> px;
  std::string err;
  ASSERT_TRUE(png_pixels(read_file(shot), w, h, px, err)) << err;
  EXPECT_EQ(w, 1280u);
  EXPECT_EQ(h, 900u);
  // Not blank: many pixels differ from the background and there are many colours
  // (anti-aliased text, cards, the chart line).
  std::map<uint32_t, size_t> colours;
  for (uint32_t p : px) ++colours[p];
  size_t bg = 0;
  for (auto& c : colours) bg = std::max(bg, c.second);
  const double non_bg = 1.0 - double(bg) / double(px.size());
  EXPECT_GT(non_bg, 0.05) << "screenshot looks blank: " << shot;
  EXPECT_GT(colours.size(), 64u) << "screenshot has too few colours: " << shot;
  if (const char* keep = std::getenv("PICOPAY_KEEP_SCREENSHOT"))
    run_command({"cp", shot, keep});
}

// The sums over every channel come from the ledger's channel_totals row (kept with every
// write), not from reading every channel: a restarted hub shows the same values before any
// message and has loaded no channel; a ledger of an earlier version (no totals row) gets
// them computed once at open.
void MetricsTest::channel_sums_survive_a_restart(const std::string& spec, int idle, double& wei_out,
                                                 double& threads_out) {
  constexpr int kPayments = 5;
  // Channel i holds balanceWeiHub 1000 * i and threadCount i % 3.
  double idle_wei = 0, idle_threads = 0;
  {
    std::unique_ptr<hub::Ledger> l;
    hub::LedgerStatus st = hub::Ledger::open(spec, l);
    ASSERT_TRUE(st.ok()) << st.message;
    ASSERT_TRUE(l->begin().ok());
    for (int i = 1; i <= idle; ++i) {
      SignedChannelState s{};
      s.state = channel_state_zero();
      s.state.contractAddress = contract_;
      s.state.user.bytes[0] = 0xA0;
      s.state.user.bytes[19] = static_cast<uint8_t>(i);
      s.state.recipient = s.state.user;
      s.state.balanceWeiHub = U256::from_u64(5000u * static_cast<uint64_t>(i));
      s.state.threadCount = 2;
      s.state.txCountGlobal = 2;
      s.state.txCountChain = 1;
      idle_wei += 1000.0 * i;
      idle_threads += i % 3;
      // Written twice: the second write (an update of the row) replaces the first's terms.
      ASSERT_TRUE(l->save_channel(mqtt::topic_address(s.state.user), 2, wire(s), {}).ok());
      s.state.balanceWeiHub = U256::from_u64(1000u * static_cast<uint64_t>(i));
      s.state.threadCount = static_cast<uint64_t>(i % 3);
      s.state.txCountGlobal = 3;
      ASSERT_TRUE(l->save_channel(mqtt::topic_address(s.state.user), 3, wire(s), {}).ok());
    }
    ASSERT_TRUE(l->commit().ok());
    hub::Ledger::ChannelTotals t;
    ASSERT_TRUE(l->channel_totals(t).ok());
    EXPECT_EQ(t.channels, static_cast<uint64_t>(idle));
    EXPECT_EQ(static_cast<double>(t.threads), idle_threads);
  }
  start_broker(2);
  start_hub();
  std::string m = scrape();
  EXPECT_EQ(series_value(m, "picopay_hub_channels_known"), idle);
  EXPECT_EQ(series_value(m, "picopay_hub_collateral_wei"), idle_wei);
  EXPECT_EQ(series_value(m, "picopay_hub_threads_open"), idle_threads);
  EXPECT_EQ(series_value(m, "picopay_hub_channels_loaded_total"), 0) << "start-up loads no channel";
  traffic(kPayments);
  const double wei = idle_wei + 2.0 * kPayments * kPayWei;
  m = scrape_until("picopay_hub_collateral_wei", wei);
  EXPECT_EQ(series_value(m, "picopay_hub_collateral_wei"), wei) << m;
  EXPECT_EQ(series_value(m, "picopay_hub_channels_known"), idle + 2);
  EXPECT_EQ(series_value(m, "picopay_hub_threads_open"), idle_threads);
  EXPECT_EQ(series_value(m, "picopay_hub_channels_loaded_total"), 2) << "only the two paying channels";

  // Restarted: the same sums before any message, and no channel loaded.
  ASSERT_EQ(hub_.terminate(), 0);
  start_hub();
  m = scrape();
  EXPECT_EQ(series_value(m, "picopay_hub_channels_known"), idle + 2);
  EXPECT_EQ(series_value(m, "picopay_hub_collateral_wei"), wei);
  EXPECT_EQ(series_value(m, "picopay_hub_threads_open"), idle_threads);
  EXPECT_EQ(series_value(m, "picopay_hub_channels_loaded_total"), 0);
  EXPECT_EQ(series_value(m, "picopay_hub_channels_cached"), 0);
  wei_out = wei;
  threads_out = idle_threads;
}

TEST_F(MetricsTest, ChannelSumsSurviveARestartWithoutLoadingChannels) {
  constexpr int kIdle = 50;
  double wei = 0, idle_threads = 0;
  channel_sums_survive_a_restart("sqlite:" + dir_ + "/hub.db", kIdle, wei, idle_threads);
  if (HasFatalFailure()) return;

  // A ledger of an earlier version has no totals row: the next open computes it once.
  ASSERT_EQ(hub_.terminate(), 0);
  ASSERT_EQ(run_command({"sqlite3", dir_ + "/hub.db", "DROP TABLE channel_totals"}), 0);
  start_hub();
  const std::string m = scrape();
  EXPECT_EQ(series_value(m, "picopay_hub_channels_known"), kIdle + 2);
  EXPECT_EQ(series_value(m, "picopay_hub_collateral_wei"), wei);
  EXPECT_EQ(series_value(m, "picopay_hub_threads_open"), idle_threads);
  EXPECT_EQ(series_value(m, "picopay_hub_channels_loaded_total"), 0);
}

// The same on a PostgreSQL ledger (a server started here on 127.0.0.1): its channel_totals
// (one row per partition, kept by a trigger) seed and follow the gauges; the hub reads no
// channel at start.
TEST_F(MetricsTest, PostgresqlChannelSumsSurviveARestartWithoutLoadingChannels) {
  PgServer pg;
  std::string err;
  ASSERT_TRUE(pg.start(err)) << err;
  ASSERT_TRUE(pg.create_database("metrics", err)) << err;
  store_ = pg.uri("metrics");
  double wei = 0, threads = 0;
  channel_sums_survive_a_restart(store_, 50, wei, threads);
  if (HasFatalFailure()) return;
  EXPECT_EQ(pg.query("metrics", "SELECT channels FROM channel_totals WHERE partition = 160"), "50")
      << "the idle channels' users all start 0xa0: partition 160";
  ASSERT_EQ(hub_.terminate(), 0);
}

// The SQLite ledger's channel_totals follow every write of the channels table in its
// transaction: inserts, updates in place, a rolled-back transaction (nothing), bytes that
// are not a channel state (counted as 0), and a reopened ledger.
TEST_F(MetricsTest, SqliteChannelTotalsFollowEveryWriteAndIgnoreARolledBackOne) {
  const std::string spec = "sqlite:" + dir_ + "/totals.db";
  std::unique_ptr<hub::Ledger> l;
  ASSERT_TRUE(hub::Ledger::open(spec, l).ok());
  auto state = [&](uint8_t who, uint64_t wei_hub, uint64_t threads) {
    SignedChannelState s{};
    s.state = channel_state_zero();
    s.state.contractAddress = contract_;
    s.state.user.bytes[0] = who;
    s.state.recipient = s.state.user;
    s.state.balanceWeiHub = U256::from_u64(wei_hub);
    s.state.threadCount = threads;
    s.state.txCountGlobal = 1;
    return wire(s);
  };
  auto totals = [&](uint64_t channels, uint64_t threads, uint64_t wei) {
    hub::Ledger::ChannelTotals t;
    hub::LedgerStatus st = l->channel_totals(t);
    ASSERT_TRUE(st.ok()) << st.message;
    EXPECT_EQ(t.channels, channels);
    EXPECT_EQ(t.threads, threads);
    EXPECT_EQ(t.wei_hub, U256::from_u64(wei));
  };
  totals(0, 0, 0);
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->save_channel("0x01", 1, state(1, 100, 1), {}).ok());
  ASSERT_TRUE(l->save_channel("0x02", 1, state(2, 20, 2), {}).ok());
  ASSERT_TRUE(l->save_channel("0x03", 1, state(3, 3, 0), {}).ok());
  totals(3, 3, 123);  // the transaction reads its own writes
  ASSERT_TRUE(l->commit().ok());
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->save_channel("0x01", 2, state(1, 1000, 0), {}).ok());
  totals(3, 2, 1023);
  l->rollback();
  totals(3, 3, 123);
  ASSERT_TRUE(l->begin().ok());
  ASSERT_TRUE(l->save_channel("0x02", 2, state(2, 5, 4), {}).ok());
  ASSERT_TRUE(l->save_channel("0x03", 2, {0x01, 0x01, 0xff}, {}).ok());  // not a state: counts 0
  ASSERT_TRUE(l->commit().ok());
  totals(3, 5, 105);
  l.reset();
  ASSERT_TRUE(hub::Ledger::open(spec, l).ok());
  totals(3, 5, 105);
}
