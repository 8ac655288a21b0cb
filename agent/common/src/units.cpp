#include "picopay/agent/units.hpp"

#include <cctype>

namespace picopay::units {
namespace {

U256 pow10(unsigned n) {
  U256 v = U256::from_u64(1), t{};
  for (unsigned i = 0; i < n; ++i) {
    if (u256_mul(v, U256::from_u64(10), t) != Status::Ok) return U256::zero();
    v = t;
  }
  return v;
}

std::string dec(const U256& v) {
  char buf[80];
  size_t n = 0;
  if (u256_to_decimal(v, buf, sizeof buf, &n) != Status::Ok) return "?";
  return std::string(buf, n);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Asset eth() { return Asset{}; }

std::string format_number(const U256& v, unsigned decimals) {
  if (decimals == 0) return dec(v);
  U256 q{}, r{};
  if (decimals > 77 || u256_divmod(v, pow10(decimals), q, r) != Status::Ok) return dec(v);
  std::string frac = dec(r);
  if (frac.size() < decimals) frac.insert(0, decimals - frac.size(), '0');
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  return frac.empty() ? dec(q) : dec(q) + "." + frac;
}

std::string format(const U256& v, const Asset& a) { return format_number(v, a.decimals) + " " + a.symbol; }

bool parse_scaled(const std::string& number, unsigned decimals, U256& out) {
  if (decimals > 77 || number.empty()) return false;
  const size_t dot = number.find('.');
  std::string whole = number.substr(0, dot);
  std::string frac = dot == std::string::npos ? "" : number.substr(dot + 1);
  if (whole.empty() && frac.empty()) return false;
  if (dot != std::string::npos && frac.empty()) return false;
  for (char c : whole + frac)
    if (c < '0' || c > '9') return false;
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  if (frac.size() > decimals) return false;
  std::string digits = (whole.empty() ? "0" : whole) + frac + std::string(decimals - frac.size(), '0');
  size_t k = 0;
  while (k + 1 < digits.size() && digits[k] == '0') ++k;
  digits = digits.substr(k);
  return u256_parse_decimal(digits.c_str(), digits.size(), out) == Status::Ok;
}

bool parse(const std::string& text, const Asset& a, U256& out, std::string& err) {
  size_t b = 0, e = text.size();
  while (b < e && std::isspace(static_cast<unsigned char>(text[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(text[e - 1]))) --e;
  const std::string t = text.substr(b, e - b);
  const size_t sp = t.find(' ');
  std::string number = t.substr(0, sp), unit;
  if (sp != std::string::npos) {
    unit = t.substr(sp + 1);
    while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  }
  const std::string expect = "\"<amount> " + a.symbol + "\" (up to " + std::to_string(a.decimals) +
                             " decimals) or a whole number of base units";
  if (number.empty()) {
    err = "empty amount: expected " + expect;
    return false;
  }
  unsigned scale = 0;
  if (unit.empty()) {
    scale = 0;
  } else if (lower(unit) == lower(a.symbol)) {
    scale = a.decimals;
  } else if (!a.token && lower(unit) == "wei") {
    scale = 0;
  } else if (!a.token && lower(unit) == "gwei") {
    scale = 9;
  } else {
    err = "amount \"" + t + "\": the unit must be " + a.symbol + (a.token ? " (this channel is in the token " : " (this channel is in ") +
          a.symbol + "), expected " + expect;
    return false;
  }
  if (!parse_scaled(number, scale, out)) {
    err = "amount \"" + t + "\": not a number of " + (scale == 0 ? std::string("base units (a whole number)") : unit) +
          " with at most " + std::to_string(scale) + " decimals below 2^256; expected " + expect;
    return false;
  }
  return true;
}

}  // namespace picopay::units
