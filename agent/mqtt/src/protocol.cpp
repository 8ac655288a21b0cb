// picopay_mqtt: topics and the Reply codec (docs/mqtt-protocol.md).
#include "picopay/mqtt/protocol.hpp"

#include <cstring>

#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/signer.hpp"

namespace picopay::mqtt {

namespace {
// Topic addresses are lowercase 0x-hex only (one topic per channel).
bool parse_lower_address(const std::string& s, Address& out) {
  if (s.size() != 42 || s[1] != 'x') return false;
  for (size_t i = 2; i < s.size(); ++i) {
    if (s[i] >= 'A' && s[i] <= 'F') return false;
  }
  return hex_decode_0x(s.data(), s.size(), out.bytes, sizeof out.bytes) == Status::Ok;
}

}  // namespace

namespace {
std::string topic_level(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '%': out += "%25"; break;
      case '/': out += "%2F"; break;
      case '+': out += "%2B"; break;
      case '#': out += "%23"; break;
      default: out += c;
    }
  }
  return out;
}
}  // namespace

std::string topic_client_claim(const std::string& username, const std::string& client_id) {
  return std::string(kTopicPrefix) + "/claim/" + (username.empty() ? std::string("-") : topic_level(username)) + "/" +
         topic_level(client_id);
}

std::string topic_address(const Address& a) {
  char s[kAddressTextSize];
  hex_encode(a.bytes, sizeof a.bytes, s, true);
  return s;
}

static std::string hub_channel(const Address& hub, const Address& user, const char* leaf) {
  return std::string(kTopicPrefix) + "/hub/" + topic_address(hub) + "/channel/" + topic_address(user) + "/" + leaf;
}
std::string topic_update(const Address& hub, const Address& user) { return hub_channel(hub, user, "update"); }
std::string topic_hub_reply(const Address& hub, const Address& user) { return hub_channel(hub, user, "reply"); }
std::string topic_sync(const Address& hub, const Address& user) { return hub_channel(hub, user, "sync"); }
std::string topic_collateral(const Address& hub, const Address& user) { return hub_channel(hub, user, "collateral"); }
std::string topic_reply(const Address& user) { return std::string(kTopicPrefix) + "/user/" + topic_address(user) + "/reply"; }
std::string topic_request(const Address& user) {
  return std::string(kTopicPrefix) + "/user/" + topic_address(user) + "/request";
}
std::string topic_thread_update(const Address& receiver) {
  return std::string(kTopicPrefix) + "/thread/" + topic_address(receiver) + "/update";
}
std::string topic_user_status(const Address& user) {
  return std::string(kTopicPrefix) + "/user/" + topic_address(user) + "/status";
}
std::string topic_hub_status(const Address& hub, const Address& user) {
  return std::string(kTopicPrefix) + "/hub/" + topic_address(hub) + "/status/" + topic_address(user);
}
std::string topic_hub_online(const Address& hub) { return std::string(kTopicPrefix) + "/hub/" + topic_address(hub) + "/status"; }
std::string topic_hub_instance_status(const Address& hub, const std::string& instance) {
  return std::string(kTopicPrefix) + "/hub/" + topic_address(hub) + "/instance/" + instance + "/status";
}
std::string topic_hub_instance_filter(const Address& hub) { return topic_hub_instance_status(hub, "+"); }
bool parse_hub_instance_topic(const std::string& topic, const Address& hub, std::string& instance) {
  const std::string head = std::string(kTopicPrefix) + "/hub/" + topic_address(hub) + "/instance/";
  const std::string tail = "/status";
  if (topic.size() <= head.size() + tail.size() || topic.compare(0, head.size(), head) != 0 ||
      topic.compare(topic.size() - tail.size(), tail.size(), tail) != 0)
    return false;
  instance = topic.substr(head.size(), topic.size() - head.size() - tail.size());
  return instance.find('/') == std::string::npos;
}
std::string topic_hub_rate(const Address& hub) { return std::string(kTopicPrefix) + "/hub/" + topic_address(hub) + "/rate"; }
std::string topic_payee_prices(const Address& payee) {
  return std::string(kTopicPrefix) + "/payee/" + topic_address(payee) + "/prices";
}
std::string topic_hub_filter(const Address& hub) {
  return std::string(kTopicPrefix) + "/hub/" + topic_address(hub) + "/channel/+/+";
}

bool parse_channel_topic(const std::string& topic, Address& hub, Address& user, std::string& leaf) {
  const std::string pre = std::string(kTopicPrefix) + "/hub/";
  if (topic.compare(0, pre.size(), pre) != 0) return false;
  size_t p = pre.size();
  if (topic.size() < p + 42 + 9 + 42 + 2) return false;
  if (!parse_lower_address(topic.substr(p, 42), hub)) return false;
  p += 42;
  if (topic.compare(p, 9, "/channel/") != 0) return false;
  p += 9;
  if (!parse_lower_address(topic.substr(p, 42), user)) return false;
  p += 42;
  if (topic[p] != '/') return false;
  leaf = topic.substr(p + 1);
  return !leaf.empty() && leaf.find('/') == std::string::npos;
}

bool topic_never_retained(const std::string& t) {
  std::vector<std::string> lv;
  size_t start = 0;
  for (;;) {
    size_t slash = t.find('/', start);
    lv.push_back(t.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  // picopay / v1 / hub / {hub} / channel / {user} / {leaf}
  // picopay / v1 / user / {user} / {leaf}      picopay / v1 / thread / {receiver} / update
  if (lv.size() < 5 || lv[0] != "picopay" || lv[1] != "v1") return false;
  if (lv[2] == "hub")
    return lv.size() == 7 && lv[4] == "channel" &&
           (lv[6] == "update" || lv[6] == "reply" || lv[6] == "sync" || lv[6] == "+");
  if (lv[2] == "user") return lv.size() == 5 && (lv[4] == "reply" || lv[4] == "request");
  if (lv[2] == "thread") return lv.size() == 5 && lv[4] == "update";
  return false;
}

std::vector<uint8_t> correlation_encode(uint64_t tx) {
  std::vector<uint8_t> out(8);
  for (int i = 7; i >= 0; --i) {
    out[static_cast<size_t>(i)] = static_cast<uint8_t>(tx & 0xff);
    tx >>= 8;
  }
  return out;
}

bool correlation_decode(const std::vector<uint8_t>& d, uint64_t& tx) {
  if (d.size() != 8) return false;
  tx = 0;
  for (uint8_t b : d) tx = (tx << 8) | b;
  return true;
}

Status encode_reply(const picopay::Reply& r, std::vector<uint8_t>& out) {
  uint8_t buf[kMaxReplyWire];
  size_t n = 0;
  const Status s = picopay::encode_reply(r, buf, sizeof buf, &n);
  if (s != Status::Ok) return s;
  out.insert(out.end(), buf, buf + n);
  return Status::Ok;
}

Status decode_reply(const uint8_t* in, size_t len, picopay::Reply& out) { return picopay::decode_reply(in, len, out); }

}  // namespace picopay::mqtt
