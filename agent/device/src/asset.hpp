// picopay-agent: which balance fields an amount of the channel's asset lives in
// (docs/tokens.md). A channel in picopay's agent pays in one asset: ETH (the wei fields)
// or the ChannelManager's token (the token fields).
#pragma once

#include "picopay/state.hpp"
#include "picopay/u256.hpp"

namespace picopay::device {

struct AssetAmounts {
  U256 wei, token;
};

// `v` as (wei, token) of the channel's asset.
inline AssetAmounts in_asset(bool token, const U256& v) {
  return token ? AssetAmounts{U256::zero(), v} : AssetAmounts{v, U256::zero()};
}
inline const U256& user_balance(bool token, const ChannelState& c) {
  return token ? c.balanceTokenUser : c.balanceWeiUser;
}
inline const U256& pending_user_deposit(bool token, const ChannelState& c) {
  return token ? c.pendingDepositTokenUser : c.pendingDepositWeiUser;
}
// `c` with the asset's fields in the wei fields (a token channel's history and reports
// read one set of fields whatever the asset).
inline ChannelState asset_view(bool token, ChannelState c) {
  if (!token) return c;
  c.balanceWeiHub = c.balanceTokenHub;
  c.balanceWeiUser = c.balanceTokenUser;
  c.pendingDepositWeiHub = c.pendingDepositTokenHub;
  c.pendingDepositWeiUser = c.pendingDepositTokenUser;
  c.pendingWithdrawalWeiHub = c.pendingWithdrawalTokenHub;
  c.pendingWithdrawalWeiUser = c.pendingWithdrawalTokenUser;
  return c;
}
inline const U256& sender_balance(bool token, const ThreadState& t) {
  return token ? t.balanceTokenSender : t.balanceWeiSender;
}
inline const U256& receiver_balance(bool token, const ThreadState& t) {
  return token ? t.balanceTokenReceiver : t.balanceWeiReceiver;
}

}  // namespace picopay::device
