#!/bin/sh
# Dev-chain wei for the kit (README "Run by hand"), over JSON-RPC with curl and jq:
#   ./dev-eth.sh send FROM TO WEI   eth_sendTransaction from an account the dev chain holds
#                                   unlocked (contracts/devchain.sh's accounts), waits for
#                                   the receipt, prints TO's balance in wei
#   ./dev-eth.sh balance ADDRESS    print ADDRESS's balance in wei (decimal)
#   ./dev-eth.sh skip SECONDS       move the dev chain's clock forward (evm_increaseTime and
#                                   evm_mine): a challenge period passes at once
# The JSON-RPC URL comes from RPC_URL (default http://127.0.0.1:8545).
set -eu
RPC_URL=${RPC_URL:-http://127.0.0.1:8545}

rpc() {  # rpc METHOD PARAMS_JSON -> the result, or exit 1 with the node's error
  out=$(curl -sS --fail -H 'Content-Type: application/json' \
    --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}" "$RPC_URL") || {
    echo "dev-eth.sh: no JSON-RPC answer from $RPC_URL" >&2; exit 1; }
  if echo "$out" | jq -e 'has("error")' >/dev/null; then
    echo "dev-eth.sh: $1: $(echo "$out" | jq -r .error.message)" >&2; exit 1
  fi
  echo "$out" | jq -r .result
}
addr() {  # a 0x address, or exit 2
  echo "$1" | grep -Eq '^0x[0-9a-fA-F]{40}$' || { echo "dev-eth.sh: not an address: $1" >&2; exit 2; }
}
hex2dec() { python3 -c 'import sys; print(int(sys.argv[1], 16))' "$1"; }

case "${1:-}" in
send)
  [ $# -eq 4 ] || { echo "usage: dev-eth.sh send FROM TO WEI" >&2; exit 2; }
  addr "$2"; addr "$3"
  echo "$4" | grep -Eq '^[0-9]+$' || { echo "dev-eth.sh: WEI must be a decimal number" >&2; exit 2; }
  value=$(python3 -c 'import sys; print(hex(int(sys.argv[1])))' "$4")
  tx=$(rpc eth_sendTransaction "[{\"from\":\"$2\",\"to\":\"$3\",\"value\":\"$value\"}]")
  status=$(rpc eth_getTransactionReceipt "[\"$tx\"]" | jq -r .status)
  [ "$status" = 0x1 ] || { echo "dev-eth.sh: transfer $tx failed (status $status)" >&2; exit 1; }
  hex2dec "$(rpc eth_getBalance "[\"$3\",\"latest\"]")"
  ;;
balance)
  [ $# -eq 2 ] || { echo "usage: dev-eth.sh balance ADDRESS" >&2; exit 2; }
  addr "$2"
  hex2dec "$(rpc eth_getBalance "[\"$2\",\"latest\"]")"
  ;;
skip)
  [ $# -eq 2 ] && echo "$2" | grep -Eq '^[0-9]+$' || { echo "usage: dev-eth.sh skip SECONDS" >&2; exit 2; }
  rpc evm_increaseTime "[$2]" >/dev/null
  rpc evm_mine "[]" >/dev/null
  echo "dev chain clock moved $2 s forward"
  ;;
*)
  echo "usage: dev-eth.sh send FROM TO WEI | balance ADDRESS | skip SECONDS" >&2; exit 2 ;;
esac
