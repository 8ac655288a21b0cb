#!/bin/bash
# Run by run-kit.sh just before the README's last step (the dev chain still runs), in KIT:
# the outcome check, then the same check on a copy of the hub's ledger in which the
# operator's stored channel state has one balance byte changed, which it must refuse (a
# check that cannot fail proves nothing).
#   check-hook.sh SOURCE_DIR BIN_DIR
set -u
src=$1 bin=$2
python3 "$src/tests/kit/check-kit.py" "$KIT" "$bin" || exit 1
cp "$KIT/hub.db" "$KIT/hub-tampered.db"
user=$(tr A-F a-f < "$KIT/operator.addr")
python3 - "$KIT/hub-tampered.db" "$user" <<'PY' || exit 1
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
(state,) = db.execute("SELECT state FROM channels WHERE user=?", (sys.argv[2],)).fetchone()
b = bytearray(state)
b[len(b) // 2] ^= 0x01          # a byte inside the balances / counters, not the signatures
db.execute("UPDATE channels SET state=? WHERE user=?", (bytes(b), sys.argv[2]))
db.commit()
PY
if python3 "$src/tests/kit/check-kit.py" "$KIT" "$bin" "$KIT/hub-tampered.db" > "$KIT/tampered-check.log" 2>&1; then
  echo "the outcome check accepted a tampered hub ledger" >&2
  exit 1
fi
grep -q '^FAIL the hub.s ledger state of operator' "$KIT/tampered-check.log" ||
  { echo "the tampered ledger was refused for another reason:" >&2; cat "$KIT/tampered-check.log" >&2; exit 1; }
echo "ok   a tampered hub ledger is refused by the same check"
rm -f "$KIT/hub-tampered.db"
