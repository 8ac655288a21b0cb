// picopay-hub intake: the MQTT client's callbacks only enqueue; the worker takes batches
// from the queue (hub.cpp worker()).
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

void Hub::on_message(const mqtt::Message& m) {
  // MQTT thread: only enqueue.
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(m);
  }
  cv_.notify_one();
}

}  // namespace picopay::hub
