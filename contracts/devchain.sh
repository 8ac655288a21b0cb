#!/bin/sh
# Start the local dev chain on 127.0.0.1 (see scripts/devchain.js for the options).
# Example: contracts/devchain.sh --port 8545
# Needs `npm ci --prefix contracts` once.
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -d "$here/node_modules/ganache" ]; then
  echo "devchain.sh: run 'npm ci --prefix $here' first" >&2
  exit 1
fi
exec node "$here/scripts/devchain.js" "$@"
