// picopay-hub outbox: publishing replies and requests (only after the COMMIT that stored
// them) and the retained status of each channel (throttled).
#include "hub.hpp"
#include "hub_internal.hpp"
#include "log.hpp"

#include <cjson/cJSON.h>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include "picopay/agent/json_state.hpp"
#include "picopay/agent/log.hpp"
#include "picopay/chain/events.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/chain/tx.hpp"
#include "picopay/chain/watchtower.hpp"
#include "chain_follow.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "metrics.hpp"

namespace picopay::hub {

void Hub::flush_status(bool all) {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = status_dirty_.begin(); it != status_dirty_.end();) {
    Chan* c = *it;
    if (all || now - c->status_at >= kStatusInterval) {
      publish_status(*c);
      c->status_at = now;
      it = status_dirty_.erase(it);
    } else {
      ++it;
    }
  }
}

void Hub::publish_outs(std::vector<Out>& outs) {
  for (auto& o : outs) {
    if (sink_) {
      sink_(o.topic, o.payload, o.corr);
      continue;
    }
    mqtt::PublishProps p;
    p.response_topic = o.response_topic;
    if (o.has_corr) p.correlation = mqtt::correlation_encode(o.corr);
    std::string perr;
    if (!mqtt_->publish(o.topic, o.payload.data(), o.payload.size(), 1, o.retain, &p, &perr)) logf("warn", perr);
  }
}

void Hub::publish_status(Chan& ch) {
  const ChannelState& s = ch.latest.state;
  if (metrics_) metrics_->channel_state(ch.key, s);
  cJSON* j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "user", json::address_text(ch.user).c_str());
  cJSON_AddNumberToObject(j, "txCountGlobal", static_cast<double>(s.txCountGlobal));
  cJSON_AddNumberToObject(j, "txCountChain", static_cast<double>(s.txCountChain));
  cJSON_AddStringToObject(j, "balanceWeiHub", json::amount_text(s.balanceWeiHub).c_str());
  cJSON_AddStringToObject(j, "balanceWeiUser", json::amount_text(s.balanceWeiUser).c_str());
  cJSON_AddStringToObject(j, "balanceTokenHub", json::amount_text(s.balanceTokenHub).c_str());
  cJSON_AddStringToObject(j, "balanceTokenUser", json::amount_text(s.balanceTokenUser).c_str());
  cJSON_AddNumberToObject(j, "threadCount", static_cast<double>(s.threadCount));
  cJSON_AddNumberToObject(j, "requests", static_cast<double>(ch.requests.size()));
  cJSON_AddNumberToObject(j, "outstandingRequestId",
                          static_cast<double>(ch.outstanding() ? ch.requests.front().id : 0));
  if (ch.outstanding())
    cJSON_AddStringToObject(j, "outstandingRequest", update_reason_name(ch.requests.front().update.reason));
  cJSON_AddNumberToObject(j, "requestNacks", static_cast<double>(ch.nacks_total));
  if (const ChainMark* m = mark(ch.user)) cJSON_AddStringToObject(j, "chain", ChainFollow::describe(*m).c_str());
  if (ch.last_nack != Status::Ok) cJSON_AddStringToObject(j, "lastRequestNack", status_name(ch.last_nack));
  char* txt = cJSON_PrintUnformatted(j);
  if (txt) {
    if (sink_) sink_(mqtt::topic_hub_status(hub_, ch.user), Bytes(txt, txt + std::strlen(txt)), 0);
    else mqtt_->publish(mqtt::topic_hub_status(hub_, ch.user), std::string(txt), 1, true);
    cJSON_free(txt);
  }
  cJSON_Delete(j);
}

}  // namespace picopay::hub
