// picopay-hub: its exchange rate, published retained and signed (docs/tokens.md).
//
// The hub countersigns a user's Exchange only at the rate it publishes (hub.cpp, the
// policy's spread is 0), at most 24 h after the rate's time (StaleRate after that). The
// message on picopay/v1/hub/{hub}/rate is a signed document (agent/common quotes.hpp):
// users verify the hub's signature, the contract, the hub and the age before they
// propose an Exchange at that rate.
#include "hub.hpp"
#include "log.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/agent/quotes.hpp"
#include "picopay/mqtt/protocol.hpp"

namespace picopay::hub {

void Hub::publish_rate() {
  if (!mqtt_) return;
  const std::string topic = mqtt::topic_hub_rate(hub_);
  if (!rate_.known) {
    // No exchanges: an empty retained message clears an older rate from the broker.
    mqtt_->publish(topic, std::string(), 1, true);
    return;
  }
  quotes::Rate r;
  r.contract = contract_;
  r.hub = hub_;
  r.tokensPerWei = rate_.tokensPerWei;
  r.time = rate_.time;
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
