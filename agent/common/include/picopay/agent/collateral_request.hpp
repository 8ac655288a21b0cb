// picopay programs: a payee's collateral request (docs/flows.md "Collateral").
//
// A payee that expects income asks its hub to hold collateral in its channel, so thread
// payments to it are mirrored at once. The payee publishes, on
// picopay/v1/hub/{hub}/channel/{user}/collateral, the JSON
//   {"expectWei":"<decimal wei>","time":<Unix seconds>,"sig":"0x<65 bytes>"}
// where sig is the user's eth_sign over keccak256("picopay/v1 collateral request" ||
// contract (20 bytes) || user (20) || expectWei (32, big-endian) || time (8, big-endian)).
// The hub acts on it only if the signature is the channel user's, the time is within
// 300 s of its clock and newer than the last request it took from that user (a replay
// changes nothing), and sizes what it deposits within its configured bounds.
#pragma once

#include <cstdint>
#include <string>

#include "picopay/signer.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::agent {

// The signed payload. Empty on a signing error (BadPrivateKey, CryptoUnavailable).
std::string collateral_request_make(const Signer& signer, const PrivateKey& key, const Address& contract,
                                    const Address& user, const U256& expectWei, uint64_t time);

// Parses and verifies a payload for the channel (contract, user). False with one line in
// `err`: not JSON / a field missing or malformed, or the signature is not the user's.
// The time window and replays are the caller's (it knows its clock and the last time).
bool collateral_request_parse(const Signer& signer, const std::string& payload, const Address& contract,
                              const Address& user, U256& expectWei, uint64_t& time, std::string& err);

}  // namespace picopay::agent
