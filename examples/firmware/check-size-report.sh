#!/usr/bin/env bash
# Checks the firmware budget (docs/firmware.md):
#   the check image (size-report.json, written by run-qemu-test.sh):
#     stack_sign <= 6 KiB, instructions_per_payment measured;
#   the paying device image (size-report-device.json, written by its link) with its run
#   against the real hub (device-pay.log, written by firmware_device_pay_test):
#     flash_total <= 64 KiB (core incl. the device session + libsecp256k1 + port incl. the
#     MQTT client), ram_total <= 8 KiB (all of the image's data+bss: session, signer,
#     MQTT buffers, record buffer, board); flash_core is reported, not budgeted (the core
#     now holds the device session and the policy: docs/firmware.md),
#     instructions_per_payment <= 1,000,000 (mean over the run's payments).
#
#   check-size-report.sh <size-report.json> [<size-report-device.json> <device-pay.log>]
set -euo pipefail
json=${1:?size-report.json}
device_json=${2:-}
device_log=${3:-}
get() { sed -n "s/^ *\"$2\": *\([0-9][0-9]*\).*/\1/p" "$1"; }
fail=0
budget() {
  local file=$1 key=$2 max=$3 v
  v=$(get "$file" "$key")
  if [ -z "$v" ]; then echo "FAIL $key: missing from $file"; fail=1; return; fi
  if [ "$v" -le "$max" ]; then echo "PASS $(basename "$file") $key = $v <= $max"; else echo "FAIL $(basename "$file") $key = $v > $max"; fail=1; fi
}
budget "$json" stack_sign 6144
v=$(get "$json" instructions_per_payment)
if [ -n "$v" ] && [ "$v" -gt 0 ]; then echo "PASS check image instructions_per_payment = $v (simulated hub)"; else echo "FAIL instructions_per_payment not measured"; fail=1; fi
if [ -n "$device_json" ]; then
  echo "INFO $(basename "$device_json") flash_core = $(get "$device_json" flash_core)"
  budget "$device_json" flash_total 65536
  budget "$device_json" ram_total 8192
  v=$(awk '$1 == "METRIC" && $2 == "instructions_per_payment" {v = $3} END {print v}' "$device_log" 2>/dev/null || true)
  if [ -z "$v" ]; then echo "FAIL device instructions_per_payment: no measurement in $device_log"; fail=1
  elif [ "$v" -le 1000000 ]; then echo "PASS device instructions_per_payment = $v <= 1000000 (real hub)"
  else echo "FAIL device instructions_per_payment = $v > 1000000"; fail=1; fi
fi
exit $fail
