// picopay-hub: its exchange rate, published retained and signed (docs/tokens.md).
//
// The hub countersigns a user's Exchange only at the rate it publishes (hub.cpp, the
// policy's spread is 0), at most 24 h after the rate's time (StaleRate after that). The
// message on picopay/v1/hub/{hub}/rate is a signed document (agent/common quotes.hpp):
// users verify the hub's signature, the contract, the hub and the age before they
// propose an Exchange at that rate.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>

#include "hub.hpp"
#include "log.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/agent/quotes.hpp"
#include "picopay/mqtt/protocol.hpp"

namespace picopay::hub {
namespace {

std::atomic<bool> g_rate_reload{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");
constexpr uint64_t kRateRoundMs = 2000;

uint64_t rate_steady_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

}  // namespace

void rate_reload_request() { g_rate_reload.store(true); }

// The rate file: "TOKENS_PER_WEI [UNIX_TIME]" (decimal; 0 = no exchanges), owned by the
// hub's account or root and not writable by group or others (whoever writes it sets the price the
// hub countersigns at). A bad file changes nothing: the hub keeps its rate and says why.
bool Hub::rate_file_load(bool at_start, std::string& err) {
  const std::string& path = cfg_.exchange_rate_file;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    err = "exchange rate file " + path + ": " + std::strerror(errno);
    return false;
  }
  const int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  if (!at_start && mtime == rate_file_mtime_ns_ && !g_rate_reload.load()) return true;
  g_rate_reload.store(false);
  rate_file_mtime_ns_ = mtime;
  if ((st.st_mode & 022) != 0 || (st.st_uid != ::geteuid() && st.st_uid != 0)) {
    err = "exchange rate file " + path + " must belong to the hub's account or root and not be writable by group or "
          "others (chmod 644)";
    return false;
  }
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string rate_text, time_text, extra;
  ss >> rate_text >> time_text >> extra;
  U256 r{};
  uint64_t t = 0;
  bool ok = f.good() || f.eof();
  ok = ok && !rate_text.empty() && extra.empty() &&
       u256_parse_decimal(rate_text.c_str(), rate_text.size(), r) == Status::Ok;
  if (ok && !time_text.empty()) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(time_text.c_str(), &end, 10);
    ok = errno == 0 && end && *end == '\0' && time_text[0] != '-' && v > 0;
    t = v;
  }
  if (!ok) {
    err = "exchange rate file " + path + ": expected \"TOKENS_PER_WEI [UNIX_TIME]\" (decimal)";
    return false;
  }
  if (t == 0) t = static_cast<uint64_t>(std::time(nullptr));
  if (!at_start && rate_.known == !r.is_zero() && rate_.tokensPerWei == r && rate_.time == t) return true;
  {
    std::lock_guard<std::mutex> lk(rate_mu_);  // publish_rate() runs on the MQTT thread too
    rate_.known = !r.is_zero();
    rate_.tokensPerWei = r;
    rate_.time = t;
  }
  logf("info", std::string("exchange rate ") + (at_start ? "read" : "reloaded") + " from " + path + ": " +
                   (rate_.known ? json::amount_text(r) + " token base units per wei, set at " + std::to_string(t)
                                : std::string("0 (no exchanges)")));
  return true;
}

// Called every round of the hub's loop: a changed rate file (or SIGHUP) takes effect at
// once: Exchanges are countersigned at the new rate only, and it is published retained.
void Hub::rate_round() {
  if (cfg_.exchange_rate_file.empty()) return;
  const uint64_t now = rate_steady_ms();
  if (!g_rate_reload.load() && now - last_rate_round_ms_ < kRateRoundMs) return;
  last_rate_round_ms_ = now;
  const HubRate before = rate_;
  std::string err;
  if (!rate_file_load(false, err)) {
    logf("error", err + ": the rate stays " + json::amount_text(rate_.tokensPerWei));
    return;
  }
  if (before.known != rate_.known || before.tokensPerWei != rate_.tokensPerWei || before.time != rate_.time)
    publish_rate();
}

void Hub::publish_rate() {
  if (!mqtt_) return;
  const std::string topic = mqtt::topic_hub_rate(hub_);
  HubRate rate{};
  {
    std::lock_guard<std::mutex> lk(rate_mu_);
    rate = rate_;
  }
  if (!rate.known) {
    // No exchanges: an empty retained message clears an older rate from the broker.
    mqtt_->publish(topic, std::string(), 1, true);
    return;
  }
  quotes::Rate r;
  r.contract = contract_;
  r.hub = hub_;
  r.tokensPerWei = rate.tokensPerWei;
  r.time = rate.time;
  std::string payload;
  if (!quotes::rate_sign(r, signer_, key_, payload)) {
    logf("error", "cannot sign the exchange rate: not published");
    return;
  }
  mqtt_->publish(topic, payload, 1, true);
  logf("info", "exchange rate " + json::amount_text(r.tokensPerWei) + " token base units per wei (set at " +
                   std::to_string(r.time) + ") published on " + topic);
}

}  // namespace picopay::hub
