// The Reply codec the fuzz target uses: the core's (picopay/codec.hpp), through the
// std::vector front end of agent/mqtt (picopay/mqtt/protocol.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "picopay/mqtt/protocol.hpp"

namespace picopay_fuzz::reply {

using Reply = picopay::mqtt::Reply;
using Kind = picopay::mqtt::ReplyKind;

inline picopay::Status decode(const uint8_t* in, size_t len, Reply& out) { return picopay::mqtt::decode_reply(in, len, out); }
inline picopay::Status encode(const Reply& r, std::vector<uint8_t>& out) { return picopay::mqtt::encode_reply(r, out); }

}  // namespace picopay_fuzz::reply
