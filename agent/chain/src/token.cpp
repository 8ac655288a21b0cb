#include "picopay/chain/token.hpp"

#include "picopay/chain/abi.hpp"

namespace picopay::chain {

Result<Address> approved_token(RpcClient& rpc, const Address& contract) {
  PPC_TRY(Bytes b, rpc.eth_call(contract, selector("approvedToken()")));
  return AbiDecoder(b).address(0);
}

Result<units::Asset> channel_asset(RpcClient& rpc, const Address& contract, const Address* token) {
  if (!token) return units::eth();
  PPC_TRY(Address approved, approved_token(rpc, contract));
  if (approved.is_zero())
    return make_error(ErrorKind::BadInput, "ChannelManager " + address_hex(contract) +
                                               " takes no token (approvedToken() is 0): configure no token (ETH)");
  if (!(approved == *token))
    return make_error(ErrorKind::BadInput, address_hex(*token) + " is not the token of ChannelManager " +
                                               address_hex(contract) + " (its approvedToken() is " +
                                               address_hex(approved) + ")");
  PPC_TRY(Bytes code, rpc.code(*token));
  if (code.empty()) return make_error(ErrorKind::BadInput, "no contract code at the token " + address_hex(*token));
  units::Asset a;
  a.token = true;
  a.address = *token;
  PPC_TRY(Bytes d, rpc.eth_call(*token, selector("decimals()")));
  PPC_TRY(uint64_t dec, AbiDecoder(d).u64(0));
  if (dec > 77)
    return make_error(ErrorKind::BadInput, "token " + address_hex(*token) + ": decimals() is " + std::to_string(dec) +
                                               " (at most 77 are supported)");
  a.decimals = static_cast<unsigned>(dec);
  a.symbol = "TOKEN";
  auto s = rpc.eth_call(*token, selector("symbol()"));
  if (s) {
    auto sym = AbiDecoder(*s).string(0);
    if (sym && !sym->empty() && sym->size() <= 16) {
      bool clean = true;
      for (char c : *sym) clean = clean && c > ' ' && c < 127;
      if (clean) a.symbol = *sym;
    }
  }
  return a;
}

}  // namespace picopay::chain
