// Amounts with units, the one parser every program and config uses for wei and token
// amounts (docs/operations.md "Amounts").
//
//   "1000" / "1000wei"    1000 wei (a plain integer is wei, or token base units for a token)
//   "2gwei", "1.5ether"   unit names as in ethers.js / foundry: wei (0 decimals), kwei (3),
//                         mwei (6), gwei (9), szabo (12), finney (15), ether or eth (18)
//   "3.25USDC"            a token amount: the configured token's symbol (case-insensitive),
//                         scaled by its decimals (TokenUnit)
// Spaces between number and unit are allowed ("1 ether"); nothing else is.
#pragma once

#include <string>

#include "picopay/u256.hpp"

namespace picopay::agent {

// A configured token: its symbol and decimals (ERC-20 decimals(), at most 77).
struct TokenUnit {
  std::string symbol;    // e.g. "USDC"; matched case-insensitively
  unsigned decimals = 18;
};

// Parses `text` into `out` in wei (or in the token's base units when the unit is the
// token's symbol). Errors (false, `err` one line naming the text, `out` untouched):
// empty text or no digits, a character that is not a digit or '.', an unknown unit,
// a fraction finer than 1 wei / 1 base unit ("0.5wei", "1.0000000001gwei"), and a value
// above 2^256 - 1 (overflow).
bool amount_parse(const std::string& text, U256& out, std::string& err, const TokenUnit* token = nullptr);

// Formats `v` (base units with `decimals` decimals) as a decimal with its fraction
// trimmed, e.g. 1500000000000000000 with 18 -> "1.5". Never fails (U256 fits 78 digits).
std::string amount_format(const U256& v, unsigned decimals);

}  // namespace picopay::agent
