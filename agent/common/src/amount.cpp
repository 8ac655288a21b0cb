// Amounts with units (see amount.hpp).
#include "picopay/agent/amount.hpp"

#include <cctype>
#include <cstring>

namespace picopay::agent {
namespace {

struct Unit {
  const char* name;
  unsigned decimals;
};
const Unit kUnits[] = {{"wei", 0},    {"kwei", 3},    {"babbage", 3}, {"mwei", 6},  {"lovelace", 6},
                       {"gwei", 9},   {"shannon", 9}, {"szabo", 12},  {"finney", 15}, {"ether", 18},
                       {"eth", 18}};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

bool amount_parse(const std::string& text, U256& out, std::string& err, const TokenUnit* token) {
  auto fail = [&](const std::string& why) {
    err = "amount \"" + text + "\": " + why;
    return false;
  };
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  const size_t num_begin = i;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  std::string number = text.substr(num_begin, i - num_begin);
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  std::string unit = text.substr(i);
  while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.back()))) unit.pop_back();
  if (number.empty()) return fail("expected a number with an optional unit, e.g. 1000, 2gwei, 1.5ether");
  const size_t dot = number.find('.');
  if (dot != std::string::npos && number.find('.', dot + 1) != std::string::npos) return fail("two decimal points");
  std::string whole = dot == std::string::npos ? number : number.substr(0, dot);
  std::string frac = dot == std::string::npos ? "" : number.substr(dot + 1);
  if (whole.empty() && frac.empty()) return fail("no digits");
  unsigned decimals = 0;
  if (!unit.empty()) {
    const std::string u = lower(unit);
    bool found = false;
    for (const Unit& k : kUnits) {
      if (u == k.name) {
        decimals = k.decimals;
        found = true;
      }
    }
    if (!found && token && !token->symbol.empty() && u == lower(token->symbol)) {
      decimals = token->decimals;
      found = true;
    }
    if (!found) {
      std::string known = "wei, kwei, mwei, gwei, szabo, finney, ether";
      if (token && !token->symbol.empty()) known += ", " + token->symbol;
      return fail("unknown unit \"" + unit + "\" (known: " + known + ")");
    }
  }
  if (decimals > 77) return fail("more than 77 decimals");
  // Trailing zeros of the fraction carry no value; what remains must fit the unit.
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  if (frac.size() > decimals)
    return fail(decimals == 0 ? "a fraction of the smallest unit (1 wei) is not an amount"
                              : "more than " + std::to_string(decimals) + " decimals: finer than the smallest unit");
  std::string digits = whole + frac + std::string(decimals - frac.size(), '0');
  size_t nz = digits.find_first_not_of('0');
  digits = nz == std::string::npos ? "0" : digits.substr(nz);
  U256 v;
  const Status st = u256_parse_decimal(digits.data(), digits.size(), v);
  if (st == Status::Overflow) return fail("above 2^256 - 1 wei (overflow)");
  if (st != Status::Ok) return fail("not a decimal number");
  out = v;
  return true;
}

std::string amount_format(const U256& v, unsigned decimals) {
  char buf[100];
  size_t n = 0;
  if (u256_to_decimal(v, buf, sizeof buf, &n) != Status::Ok) return "?";
  std::string s(buf, n);
  if (decimals == 0) return s;
  if (s.size() <= decimals) s = std::string(decimals - s.size() + 1, '0') + s;
  std::string whole = s.substr(0, s.size() - decimals);
  std::string frac = s.substr(s.size() - decimals);
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  return frac.empty() ? whole : whole + "." + frac;
}

}  // namespace picopay::agent
