// The hub's retained status with several instances (hub.hpp "the hub's retained status";
// docs/multi-instance.md, "The hub's status"). Each instance's Last Will is the hub-level
// topic's "offline" naming it; every instance watches the hub-level topic and the
// instances' own topics: the hub reads "online" while any instance serves, each instance's
// topic reads its own state, and the last one to stop cleanly leaves "offline".
#include <cjson/cJSON.h>

#include <chrono>

#include "hub.hpp"
#include "log.hpp"
#include "picopay/agent/json_state.hpp"

namespace picopay::hub {

namespace {

// The "state" and "instance" fields of a status payload ("" when absent or not JSON).
void status_fields(const std::vector<uint8_t>& payload, std::string& state, std::string& instance) {
  state.clear();
  instance.clear();
  cJSON* j = cJSON_ParseWithLength(reinterpret_cast<const char*>(payload.data()), payload.size());
  if (!j) return;
  const cJSON* s = cJSON_GetObjectItemCaseSensitive(j, "state");
  const cJSON* i = cJSON_GetObjectItemCaseSensitive(j, "instance");
  if (cJSON_IsString(s)) state = s->valuestring;
  if (cJSON_IsString(i)) instance = i->valuestring;
  cJSON_Delete(j);
}

}  // namespace

std::string Hub::presence_instance(const char* state, const std::string& instance) {
  return std::string("{\"state\":\"") + state + "\",\"instance\":\"" + instance + "\"}";
}

void Hub::presence_connected() {
  if (!cfg_.instance_id.empty())
    mqtt_->publish(mqtt::topic_hub_instance_status(hub_, cfg_.instance_id), presence_instance("online", cfg_.instance_id),
                   1, true);
  mqtt_->publish(mqtt::topic_hub_online(hub_), presence_online(), 1, true);
}

std::string Hub::presence_online() const {
  return "{\"state\":\"online\",\"hub\":\"" + json::address_text(hub_) + "\",\"contract\":\"" +
         json::address_text(contract_) + "\"" +
         (cfg_.instance_id.empty() ? std::string() : ",\"instance\":\"" + cfg_.instance_id + "\"") + "}";
}

bool Hub::presence_message(const mqtt::Message& m) {
  const std::string& me = cfg_.instance_id;
  std::string id;
  const bool hub_level = m.topic == mqtt::topic_hub_online(hub_);
  if (!hub_level && !mqtt::parse_hub_instance_topic(m.topic, hub_, id)) return false;
  std::string state, named;
  status_fields(m.payload, state, named);
  const bool serving = !stopped_.load() && !fatal_.load();
  if (hub_level) {
    if (state != "offline" || !serving) return true;
    // An instance's Last Will (or a clean stop that did not see this one): the hub serves.
    mqtt_->publish(mqtt::topic_hub_online(hub_), presence_online(), 1, true);
    if (instance_id_valid(named) && named != me) {
      mqtt_->publish(mqtt::topic_hub_instance_status(hub_, named), presence_instance("offline", named), 1, true);
      logf("warn", "hub status: instance " + named + " went offline; the hub's status is online again");
    }
    return true;
  }
  {
    std::lock_guard<std::mutex> lk(presence_mu_);
    presence_[id] = state == "online";
    if (id == me && state == "offline") presence_own_offline_ = true;
  }
  presence_cv_.notify_all();
  // Marked offline by another instance (after a Last Will of this instance's previous
  // connection or process) while it serves: online again.
  if (id == me && state == "offline" && serving)
    mqtt_->publish(mqtt::topic_hub_instance_status(hub_, me), presence_instance("online", me), 1, true);
  return true;
}

void Hub::presence_stop() {
  const std::string& me = cfg_.instance_id;
  if (!mqtt_->connected()) return;  // the broker sends the Last Will (the others answer it)
  {
    std::lock_guard<std::mutex> lk(presence_mu_);
    presence_own_offline_ = false;
  }
  mqtt_->publish(mqtt::topic_hub_instance_status(hub_, me), presence_instance("offline", me), 1, true);
  // The broker sends this instance's "offline" back after every instance status it handled
  // before it (one broker, one subscriber: in order): when two instances stop at once, the
  // later one sees the earlier one's "offline" and publishes the hub's.
  bool others = false;
  {
    std::unique_lock<std::mutex> lk(presence_mu_);
    presence_cv_.wait_for(lk, std::chrono::milliseconds(kPresenceWaitMs), [this] { return presence_own_offline_; });
    for (const auto& p : presence_) others = others || (p.first != me && p.second);
  }
  // An instance topic left "online" by a process that died with the whole hub is not
  // counted once its heartbeat has expired.
  if (lease_ && lease_->live_instances() <= 1) others = false;
  if (others) {
    logf("info", "hub status: another instance serves; the hub's status stays online");
    return;
  }
  mqtt_->publish(mqtt::topic_hub_online(hub_), presence_instance("offline", me), 1, true);
  logf("info", "hub status: the last instance stops; the hub's status is offline");
}

}  // namespace picopay::hub
