// picopay agent programs: amounts in an asset's own units (docs/tokens.md).
//
// A channel moves one asset at a time in picopay's programs: ETH (18 decimals, base unit
// wei) or the ERC-20 token the ChannelManager was deployed with (its `decimals()`, base
// unit "token base unit"). People write and read amounts in whole units ("2.5 PPT",
// "0.001 ETH"); the chain and the core count base units (U256).
#pragma once

#include <cstdint>
#include <string>

#include "picopay/types.hpp"
#include "picopay/u256.hpp"

namespace picopay::units {

struct Asset {
  bool token = false;       // false: ETH (wei)
  Address address{};        // the token's contract (token only)
  std::string symbol = "ETH";
  unsigned decimals = 18;   // 0 .. 77 (10^77 < 2^256)
};

// ETH: symbol "ETH", 18 decimals.
Asset eth();

// "2.5 PPT": base units `v` scaled down by asset.decimals, trailing zeros of the fraction
// dropped, then a space and the symbol. Never fails.
std::string format(const U256& v, const Asset& a);
// The number only ("2.5").
std::string format_number(const U256& v, unsigned decimals);

// Parses an amount written by a person or a config file:
//   "<decimal> <SYMBOL>"  e.g. "2.5 PPT", "0.001 ETH" (the symbol must be the asset's,
//                         case-insensitive; at most `decimals` fraction digits)
//   "<integer>"           base units (wei, or token base units), as the *Wei keys always took
//   "<integer> wei"       ETH only, base units
//   "<decimal> gwei"      ETH only
// Returns false with `err` (one line: what is wrong and what is expected) on a malformed
// number, a fraction finer than the base unit, a value above 2^256-1, or a unit that is
// not the asset's (e.g. "2 ETH" for a token channel: a price meant in ETH is refused, not
// silently taken as tokens).
bool parse(const std::string& text, const Asset& a, U256& out, std::string& err);

// Parses "<decimal>" scaled by 10^decimals (no unit). False on malformed input, more than
// `decimals` fraction digits or overflow.
bool parse_scaled(const std::string& number, unsigned decimals, U256& out);

}  // namespace picopay::units
