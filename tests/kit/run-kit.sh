#!/bin/bash
# Runs examples/ev-charger/README.md "Run by hand" literally, as a new user would: every
# ```sh block whose first line is "# kit-step N", in order, in one bash session started in
# the source tree, with only the variables the README itself defines set beforehand
# (PICOPAY_BIN, KIT, MQTT_PORT, RPC_PORT; PICOPAY_PASSPHRASE for the prompt of step 2).
# Then checks the outcome: the charger paid, the operator received the same, the hub's
# ledger agrees with both, and the cash-out moved exactly that wei on chain.
#   tests/kit/run-kit.sh SOURCE_DIR BIN_DIR
set -u
src=$(cd "$1" && pwd) bin=$(cd "$2" && pwd)
readme=$src/examples/ev-charger/README.md
work=$(mktemp -d /tmp/picopay-kit.XXXXXX)
export KIT=$work/kit PICOPAY_BIN=$bin
fail() { echo "KIT TEST FAILED: $*" >&2; exit 1; }

cleanup() {  # stop what the steps started (by the pid files they wrote), keep logs on failure
  local rc=$?
  for f in "$KIT"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  if [ $rc -ne 0 ]; then
    for f in "$KIT"/*.log; do [ -f "$f" ] && { echo "===== $f (tail)"; tail -n 25 "$f"; }; done
    echo "work dir kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export MQTT_PORT=$(free_port) RPC_PORT=$(free_port)
export PICOPAY_PASSPHRASE="kit test $$"

# The steps, extracted: ```sh blocks starting with "# kit-step N", N = 1, 2, ... in order.
awk '/^```sh$/ {getline l; if (l ~ /^# kit-step [0-9]+/) {on=1; print l; next}} /^```$/ {on=0} on' \
  "$readme" > "$work/steps.sh"
steps=$(grep -c '^# kit-step ' "$work/steps.sh")
[ "$steps" -ge 10 ] || fail "found $steps kit-step blocks in $readme"
grep '^# kit-step ' "$work/steps.sh" | awk '{ if ($3 != NR) { print "step " NR " is numbered " $3; exit 1 } }' ||
  fail "kit steps out of order"

echo "running $steps README steps (broker 127.0.0.1:$MQTT_PORT, dev chain 127.0.0.1:$RPC_PORT, KIT=$KIT)"
# Each step stops the run at its first failing command (a user would stop there too).
# The outcome is checked just before the last step (which stops the dev chain).
{ echo 'set -eo pipefail'
  sed "s|^# kit-step $steps\b.*|bash '$src/tests/kit/check-hook.sh' '$src' '$bin' \|\| exit 97\n&|" "$work/steps.sh" |
    sed 's/^# kit-step \([0-9]*\).*/echo "=== kit-step \1 $(date +%T)"/'; } > "$work/run.sh"
(cd "$src" && timeout 150 bash "$work/run.sh") > "$work/steps.log" 2>&1
rc=$?
cat "$work/steps.log"
[ $rc -ne 97 ] || fail "outcome check (before step $steps)"
[ $rc -eq 0 ] || fail "the README's steps exited with $rc"
grep -q '=== kit-step '"$steps" "$work/steps.log" || fail "the last step did not run"
echo "KIT TEST PASSED"
