// picopay-agent: the seller sets the price (docs/tokens.md, "The seller's price list").
//
// A payee publishes a signed price list (agent/common quotes.hpp) retained on
// picopay/v1/payee/{payee}/prices; a payer that pays that payee by its list
// (--max-price) accepts a list only if the payee signed it for this contract and asset,
// it is valid now and its price for our metering source is at most our maximum. A payee
// with its own meter compares what it delivered with what it received and stops serving
// when the payer falls behind by more than a margin.
#pragma once

#include <cstdint>
#include <string>

#include "picopay/agent/quotes.hpp"
#include "picopay/agent/units.hpp"
#include "picopay/u256.hpp"

namespace picopay::device {

// The metering source of picopay-agent's meters (Tasmota, Shelly, stdin: energy in Wh).
constexpr const char* kEnergySource = "energy";
constexpr const char* kEnergyUnit = "Wh";

// Payer: whether `list` may be paid by now. Ok: `price` = its price for `source`.
// Refusals (false, `err` one line): another asset than the channel's, not valid yet,
// expired, no price for the source or another unit, a zero price, a price above `max`.
bool price_list_usable(const quotes::PriceList& list, uint64_t now, const units::Asset& asset,
                       const std::string& source, const U256& max, U256& price, std::string& err);

// Payee: what it delivered (its own meter, whole units) against what it received
// (base units of the asset since the meter's baseline).
struct ServeCheck {
  bool serving = true;
  uint64_t delivered_units = 0;
  uint64_t paid_units = 0;    // floor(received / price)
  uint64_t behind_units = 0;  // delivered - paid, 0 when ahead
};
// Serving stops when the payer is behind by more than `margin_units`. `price` 0: always
// serving (no price to compare with).
ServeCheck serve_check(uint64_t delivered_units, const U256& price, const U256& received, uint64_t margin_units);

}  // namespace picopay::device
