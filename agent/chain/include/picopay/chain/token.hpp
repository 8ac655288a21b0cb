// picopay_chain: the ERC-20 token of a ChannelManager (docs/tokens.md).
//
// A ChannelManager moves ETH and the one ERC-20 fixed at deploy time (`approvedToken()`).
// A program configured to work in a token reads the token from the contract and checks it
// is the one it was told (a config naming another token would put amounts in the wrong
// unit), then reads `symbol()` and `decimals()` to show and parse amounts
// (agent/common units.hpp).
#pragma once

#include <string>

#include "picopay/agent/units.hpp"
#include "picopay/chain/error.hpp"
#include "picopay/chain/rpc.hpp"

namespace picopay::chain {

// approvedToken() of the ChannelManager at `contract` (zero: ETH only).
// Errors: Transport/Rpc/Timeout from the node, BadJson on a malformed answer.
Result<Address> approved_token(RpcClient& rpc, const Address& contract);

// The asset for amounts of a channel on `contract`: `token` null -> ETH; otherwise the
// contract's approvedToken() must equal *token (BadInput "0x.. is not the token of
// ChannelManager 0x.. (its approvedToken() is 0x..)"; a zero approvedToken: "... takes
// no token"), and the token's symbol() and decimals() are read (BadInput if the token
// has no code, or decimals() is above 77; a token without symbol() is shown as "TOKEN").
Result<units::Asset> channel_asset(RpcClient& rpc, const Address& contract, const Address* token);

}  // namespace picopay::chain
