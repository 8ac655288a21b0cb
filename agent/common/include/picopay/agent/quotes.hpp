// picopay agent programs: signed offers published retained on MQTT (docs/tokens.md):
// the hub's exchange rate and a payee's price list.
//
// Both are "signed documents": the payload is the JSON object
//   {"body": "<the offer as JSON text>", "sig": "0x<130 hex>"}
// where sig is eth_sign (EIP-191, as channel states) over keccak256 of the body's exact
// bytes, by the hub's (rate) or the payee's (price list) key. The broker is untrusted: a
// topic proves nothing; only the signature, the contract and the party named in the body
// do. Bodies name their kind, so a signed rate can never be read as a price list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "picopay/signer.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::quotes {

// Wraps `body` with its signature by `key`. Errors: false if signing fails.
bool sign_document(const std::string& body, const Signer& signer, const PrivateKey& key, std::string& payload);
// Unwraps a payload: the signature must recover to `signer_addr`. Errors (false, `err`
// one line): not JSON / no body or sig ("malformed"), a bad signature, another signer
// ("not signed by 0x…").
bool open_document(const std::string& payload, const Signer& signer, const Address& signer_addr, std::string& body,
                   std::string& err);

// ------------------------------------------------------------ the hub's exchange rate
// Body: {"kind":"picopay-rate/1","contract":"0x…","hub":"0x…","tokensPerWei":"200","time":N}
// tokensPerWei: token base units per wei (the core's ExchangeArgs rate); time: Unix seconds
// the hub set the rate.
struct Rate {
  Address contract{}, hub{};
  U256 tokensPerWei{};
  uint64_t time = 0;
};
bool rate_sign(const Rate& r, const Signer& signer, const PrivateKey& key, std::string& payload);
// Checks signature (by `hub`), kind, contract and hub; rate above 0. Errors as open_document,
// plus "another contract", "another hub", "not a rate", "rate 0".
bool rate_open(const std::string& payload, const Signer& signer, const Address& hub, const Address& contract, Rate& out,
               std::string& err);

// What the user accepts (its tolerance): the rate is at most `max_age` seconds old (and
// not more than 60 s in the future), and, when `reference` is non-zero, within
// `max_deviation_bps` of it (100 = 1 %). Errors (false, `err`): "stale: set N s ago (max
// M s)", "from the future", "N deviates from the reference R by more than B bps".
bool rate_acceptable(const Rate& r, uint64_t now, uint64_t max_age, const U256& reference, uint32_t max_deviation_bps,
                     std::string& err);

// ------------------------------------------------------------ a payee's price list
// Body: {"kind":"picopay-prices/1","contract":"0x…","payee":"0x…","asset":"ETH"|"0x<token>",
//        "validFrom":N,"validUntil":N,"prices":[{"source":"energy","unit":"Wh","price":"1000"}]}
// price: base units of the asset (wei or token base units) per unit of that source.
struct Price {
  std::string source;  // the metering source: "energy" (Wh: Tasmota, Shelly, stdin meters)
  std::string unit;    // "Wh"
  U256 price{};
};
struct PriceList {
  Address contract{}, payee{};
  bool token = false;
  Address tokenAddress{};
  uint64_t validFrom = 0, validUntil = 0;
  std::vector<Price> prices;
  // The price for `source`, or nullptr.
  const Price* find(const std::string& source) const;
};
bool prices_sign(const PriceList& p, const Signer& signer, const PrivateKey& key, std::string& payload);
// Checks signature (by `payee`), kind, contract and payee. Errors as open_document plus
// "another contract", "another payee", "not a price list", a malformed entry.
bool prices_open(const std::string& payload, const Signer& signer, const Address& payee, const Address& contract,
                 PriceList& out, std::string& err);

}  // namespace picopay::quotes
