#!/usr/bin/env bash
# Checks the firmware size report against the budget of issue 5 (docs/firmware.md):
#   flash_core <= 16 KiB, flash_total <= 64 KiB, ram_total <= 8 KiB, stack_sign <= 6 KiB,
# and that instructions_per_payment was measured.
set -euo pipefail
json=${1:?size-report.json}
get() { sed -n "s/^ *\"$1\": *\([0-9][0-9]*\).*/\1/p" "$json"; }
fail=0
budget() {
  local key=$1 max=$2 v
  v=$(get "$key")
  if [ -z "$v" ]; then echo "FAIL $key: missing from $json"; fail=1; return; fi
  if [ "$v" -le "$max" ]; then echo "PASS $key = $v <= $max"; else echo "FAIL $key = $v > $max"; fail=1; fi
}
budget flash_core 16384
budget flash_total 65536
budget ram_total 8192
budget stack_sign 6144
v=$(get instructions_per_payment)
if [ -n "$v" ] && [ "$v" -gt 0 ]; then echo "PASS instructions_per_payment = $v"; else echo "FAIL instructions_per_payment not measured"; fail=1; fi
exit $fail
