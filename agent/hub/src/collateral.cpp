// picopay-hub: collateral management (docs/flows.md): hub withdrawals of collateral it no
// longer needs.
#include "hub.hpp"
#include "log.hpp"

#include "picopay/agent/json_state.hpp"

namespace picopay::hub {

bool Hub::hub_withdrawal(const ChannelUpdate& u) {
  return u.reason == UpdateReason::ProposePendingWithdrawal &&
         (!u.withdrawal.withdrawalWeiHub.is_zero() || !u.withdrawal.withdrawalTokenHub.is_zero()) &&
         u.withdrawal.withdrawalWeiUser.is_zero() && u.withdrawal.withdrawalTokenUser.is_zero();
}

void Hub::collateral_onchain(const Address& user, bool reclaim, uint64_t gas) {
  (void)user;
  (void)reclaim;
  (void)gas;
}

}  // namespace picopay::hub
