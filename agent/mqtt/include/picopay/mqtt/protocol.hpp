// picopay over MQTT, protocol v1 (docs/mqtt-protocol.md): topic builders, topic
// parsing, the Correlation Data form and the Reply codec.
//
// Addresses in topics are lowercase 0x-hex (42 chars). Topic parsing proves nothing
// about who sent a message (the broker is untrusted, docs/design.md §4.3); it only tells a
// receiver which channel the sender claims, and every payload is checked on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "picopay/codec.hpp"
#include "picopay/state.hpp"
#include "picopay/status.hpp"
#include "picopay/types.hpp"

namespace picopay::mqtt {

constexpr const char* kTopicPrefix = "picopay/v1";

// "0x" + 40 lowercase hex.
std::string topic_address(const Address& a);

// user -> hub: ChannelUpdate proposed by the user.  picopay/v1/hub/{hub}/channel/{user}/update
std::string topic_update(const Address& hub, const Address& user);
// user -> hub: Reply to a hub-proposed update.      picopay/v1/hub/{hub}/channel/{user}/reply
std::string topic_hub_reply(const Address& hub, const Address& user);
// user -> hub: empty payload, "send me your latest state". .../channel/{user}/sync
std::string topic_sync(const Address& hub, const Address& user);
// picopay/v1/hub/{hub}/channel/{user}/collateral: a payee's signed collateral request
// (picopay/agent/collateral_request.hpp, docs/flows.md).
std::string topic_collateral(const Address& hub, const Address& user);
// hub -> user: Reply to a user-proposed update (and to sync). picopay/v1/user/{user}/reply
std::string topic_reply(const Address& user);
// hub -> user: ChannelUpdate proposed by the hub.   picopay/v1/user/{user}/request
std::string topic_request(const Address& user);
// payer -> payee: ThreadUpdate.                     picopay/v1/thread/{receiver}/update
std::string topic_thread_update(const Address& receiver);
// agent, retained JSON status; Last Will.           picopay/v1/user/{user}/status
std::string topic_user_status(const Address& user);
// hub, retained JSON per channel.                   picopay/v1/hub/{hub}/status/{user}
std::string topic_hub_status(const Address& hub, const Address& user);
// hub, retained JSON about the hub itself ({"state":"online"|"offline",...}; its Will).
//                                                   picopay/v1/hub/{hub}/status
std::string topic_hub_online(const Address& hub);
// hub, several instances (docs/multi-instance.md): one instance's own retained status
// ({"state":"online"|"offline","instance":id}; the instance's Last Will is the hub-level
// topic's, so a survivor publishes a dead instance's "offline" here). `instance`: the
// --instance-id ([A-Za-z0-9._-], a valid topic level as is).
//                                                   picopay/v1/hub/{hub}/instance/{instance}/status
std::string topic_hub_instance_status(const Address& hub, const std::string& instance);
// Every instance's status of one hub:               picopay/v1/hub/{hub}/instance/+/status
std::string topic_hub_instance_filter(const Address& hub);
// The instance id of a topic_hub_instance_status topic of `hub`; false for any other topic.
bool parse_hub_instance_topic(const std::string& topic, const Address& hub, std::string& instance);
// hub, retained signed exchange rate (agent/common quotes.hpp; docs/tokens.md)
//                                                   picopay/v1/hub/{hub}/rate
std::string topic_hub_rate(const Address& hub);
// payee, retained signed price list (quotes.hpp; docs/tokens.md)
//                                                   picopay/v1/payee/{payee}/prices
std::string topic_payee_prices(const Address& payee);
// A process's claim on its MQTT client id, retained (client.hpp Options::claim_client_id,
// docs/mqtt-protocol.md "One process per client id"):
//                                                   picopay/v1/claim/{username}/{clientId}
// `username` "" (no authentication) is written "-". '%', '/', '+' and '#' in either are
// percent-encoded (%25, %2F, %2B, %23) so that any id gives one valid topic level.
std::string topic_client_claim(const std::string& username, const std::string& client_id);
// The hub's subscription filter for everything users send it: picopay/v1/hub/{hub}/channel/+/+
std::string topic_hub_filter(const Address& hub);

// Parses "picopay/v1/hub/{hub}/channel/{user}/{leaf}" (leaf: update, reply, sync).
// Addresses must be lowercase hex. Returns false for any other shape.
bool parse_channel_topic(const std::string& topic, Address& hub, Address& user, std::string& leaf);

// True for the topics that carry requests, updates and replies (never retained, see
// docs/mqtt-protocol.md "Retained messages"): picopay/v1/hub/{hub}/channel/{user}/{leaf}
// with leaf update, reply, sync or '+'; picopay/v1/user/{user}/reply and .../request;
// picopay/v1/thread/{receiver}/update. Works on topics and on subscription filters
// ('+' levels allowed where an address or a channel leaf stands); false for the status
// topics (retained on purpose) and for anything outside picopay/v1.
bool topic_never_retained(const std::string& topic_or_filter);

// Correlation Data: the update's txCountGlobal as 8 bytes big-endian.
std::vector<uint8_t> correlation_encode(uint64_t txCountGlobal);
// False unless exactly 8 bytes.
bool correlation_decode(const std::vector<uint8_t>& data, uint64_t& txCountGlobal);

// ------------------------------------------------------------------ Reply

// The Reply codec is the core's (picopay/codec.hpp: Ack, Nack, Sync, RequestNack); these
// are the same types with defaults and a std::vector front end for the Linux programs.
using ReplyKind = picopay::ReplyKind;
struct Reply : picopay::Reply {
  Reply() : picopay::Reply(reply_make(ReplyKind::Ack)) {}
  Reply(const picopay::Reply& r) : picopay::Reply(r) {}  // NOLINT(google-explicit-constructor)
};

// Appends the encoded reply to `out` (nothing on error). Errors: those of
// picopay::encode_reply (OutOfBounds, BadArgs, BadKind, BadRecoveryId, state errors).
[[nodiscard]] Status encode_reply(const picopay::Reply& r, std::vector<uint8_t>& out);
// Errors: those of picopay::decode_reply.
[[nodiscard]] Status decode_reply(const uint8_t* in, size_t len, picopay::Reply& out);

}  // namespace picopay::mqtt
