#!/bin/sh
# Writes the kit's addresses and ports into its configs (README "Run by hand", step 6):
#   ./fill-addresses.sh MQTT_PORT RPC_URL
# reads hub.addr, operator.addr, charger1.addr and contract.addr (one 0x address each, as
# `picopay keygen` and `picopay deploy` printed them) and rewrites, in this directory:
#   hub.json       broker.port, hub.address, contract, rpcUrl
#   payee.json     broker.port, hub, contract, rpc
#   charger1.json  broker.port, hub, contract, rpc, payTo (the operator)
#   mosquitto.conf the listener's port, and `user YOU` (you: `id -un`): mosquitto started
#                  by root drops to the user "mosquitto", which cannot read your mode-0600
#                  passwd nor write its persistence here; started by anyone else, the
#                  line changes nothing
# Nothing else changes; run it again after a new deploy.
set -eu
[ $# -eq 2 ] || { echo "usage: fill-addresses.sh MQTT_PORT RPC_URL" >&2; exit 2; }
port=$1 rpc=$2
echo "$port" | grep -Eq '^[0-9]+$' || { echo "fill-addresses.sh: bad MQTT port: $port" >&2; exit 2; }
read_addr() {
  [ -s "$1.addr" ] || { echo "fill-addresses.sh: $1.addr is missing (see the README)" >&2; exit 1; }
  a=$(tr -d ' \r\n' < "$1.addr")
  echo "$a" | grep -Eq '^0x[0-9a-fA-F]{40}$' || { echo "fill-addresses.sh: $1.addr: not an address: $a" >&2; exit 1; }
  echo "$a"
}
hub=$(read_addr hub) operator=$(read_addr operator) contract=$(read_addr contract)
read_addr charger1 >/dev/null

edit() {  # edit FILE JQ_PROGRAM: rewrite FILE through jq, keeping its mode
  jq --arg hub "$hub" --arg operator "$operator" --arg contract "$contract" --arg rpc "$rpc" \
     --argjson port "$port" "$2" "$1" > "$1.new"
  cat "$1.new" > "$1" && rm -f "$1.new"
}
edit hub.json '.broker.port = $port | .hub.address = $hub | .contract = $contract | .rpcUrl = $rpc'
edit payee.json '.broker.port = $port | .hub = $hub | .contract = $contract | .rpc = $rpc'
edit charger1.json '.broker.port = $port | .hub = $hub | .contract = $contract | .rpc = $rpc | .payTo = $operator'
me=$(id -un)
sed -e "s/^listener [0-9]* 127.0.0.1\$/listener $port 127.0.0.1/" -e '/^user /d' mosquitto.conf > mosquitto.conf.new
echo "user $me" >> mosquitto.conf.new
cat mosquitto.conf.new > mosquitto.conf && rm -f mosquitto.conf.new
echo "hub $hub, contract $contract, operator $operator; broker 127.0.0.1:$port (runs as $me), RPC $rpc"
