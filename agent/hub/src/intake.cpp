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
  // MQTT thread: only enqueue. A full queue drops the message (the device re-sends an
  // unanswered update, docs/mqtt-protocol.md): memory stays bounded when the worker
  // cannot keep up, and the broker's connection is never held up.
  if (lease_ && !lease_accepts(m.topic)) return;  // several instances: a partition not held
  uint64_t dropped = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (queue_.size() >= kIntakeMax) {
      dropped = ++intake_dropped_;
    } else {
      queue_.push_back(m);
    }
  }
  if (dropped == 0) {
    cv_.notify_one();
  } else if ((dropped & (dropped - 1)) == 0) {  // 1, 2, 4, 8, ...: not a line per message
    logf("warn", "intake queue full (" + std::to_string(kIntakeMax) + " messages): " + std::to_string(dropped) +
                     " message(s) dropped so far; the devices re-send");
  }
}

}  // namespace picopay::hub
