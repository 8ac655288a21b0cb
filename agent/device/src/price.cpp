#include "price.hpp"

#include "picopay/agent/json_state.hpp"

namespace picopay::device {

bool price_list_usable(const quotes::PriceList& list, uint64_t now, const units::Asset& asset,
                       const std::string& source, const U256& max, U256& price, std::string& err) {
  if (list.token != asset.token || (asset.token && list.tokenAddress != asset.address)) {
    err = std::string("the list prices in ") + (list.token ? "a token" : "ETH") + ", our channel pays in " + asset.symbol;
    return false;
  }
  if (now < list.validFrom) {
    err = "the list is valid only from " + std::to_string(list.validFrom) + " (now " + std::to_string(now) + ")";
    return false;
  }
  if (now >= list.validUntil) {
    err = "the list expired at " + std::to_string(list.validUntil) + " (now " + std::to_string(now) + ")";
    return false;
  }
  const quotes::Price* p = list.find(source);
  if (!p || p->unit != kEnergyUnit) {
    err = "the list has no price for " + source + " in " + kEnergyUnit;
    return false;
  }
  if (p->price.is_zero()) {
    err = "the list's price is 0";
    return false;
  }
  if (p->price > max) {
    err = units::format(p->price, asset) + " per " + p->unit + " is above our maximum " + units::format(max, asset);
    return false;
  }
  price = p->price;
  return true;
}

ServeCheck serve_check(uint64_t delivered_units, const U256& price, const U256& received, uint64_t margin_units) {
  ServeCheck c;
  c.delivered_units = delivered_units;
  if (price.is_zero()) {
    c.paid_units = delivered_units;
    return c;
  }
  U256 q{}, r{};
  if (u256_divmod(received, price, q, r) != Status::Ok) return c;
  c.paid_units = q.fits_u64() ? q.low64() : UINT64_MAX;
  c.behind_units = delivered_units > c.paid_units ? delivered_units - c.paid_units : 0;
  c.serving = c.behind_units <= margin_units;
  return c;
}

}  // namespace picopay::device
