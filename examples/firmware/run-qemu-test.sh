#!/usr/bin/env bash
# Cross-builds the picopay firmware image and runs it under QEMU (mps2-an386, Cortex-M4).
# Used by the `firmware` CTest tests of the host build (tests/firmware/CMakeLists.txt).
#
#   run-qemu-test.sh <source root> <firmware build dir>
#
# 1. configures (once) and builds examples/firmware with toolchains/cortex-m4.cmake into
#    the build dir (libsecp256k1 from Debian's source package, the core, port/baremetal,
#    the image; the link writes size-report.json and fails on any heap allocator);
# 2. runs the image: qemu-system-arm -M mps2-an386 with semihosting (console + exit
#    status) and -icount shift=0 (one instruction = 1 ns of virtual time, so the
#    image's timer counts instructions); the log goes to <build dir>/qemu.log;
# 3. adds the run's measurements (stack_sign, instructions_per_payment, ...) to
#    <build dir>/size-report.json;
# 4. exits 0 only if QEMU's exit status (= the image's failed-check count) is 0 and
#    the log ends with "RESULT 0".
set -euo pipefail
src=$(cd "${1:?source root}" && pwd)
bld=${2:?firmware build dir}
mkdir -p "$bld"
bld=$(cd "$bld" && pwd)

for tool in arm-none-eabi-g++ qemu-system-arm; do
  command -v "$tool" >/dev/null || { echo "run-qemu-test: $tool is not installed (.ci/packages.apt)" >&2; exit 1; }
done

if [ ! -f "$bld/CMakeCache.txt" ]; then
  cmake -S "$src/examples/firmware" -B "$bld" \
        -DCMAKE_TOOLCHAIN_FILE="$src/toolchains/cortex-m4.cmake" -DCMAKE_BUILD_TYPE=MinSizeRel
fi
cmake --build "$bld" -j2

set +e
timeout 300 qemu-system-arm -M mps2-an386 -cpu cortex-m4 -nographic -monitor none -serial none \
  -semihosting-config enable=on,target=native -icount shift=0 \
  -kernel "$bld/picopay_firmware.elf" > "$bld/qemu.log" 2>&1
status=$?
set -e
cat "$bld/qemu.log" | grep -v '^\(STATE\|UPDATE\|THREAD\|TUPDATE\|FINAL\) ' || true
echo "run-qemu-test: qemu-system-arm exit status $status"

# Measurements from the run, into the size report.
metric() { awk -v k="$1" '$1 == "METRIC" && $2 == k {v = $3} END {print (v == "" ? "null" : v)}' "$bld/qemu.log"; }
static="$bld/size-report.static.json"
{
  sed '$d' "$static" | sed '$ s/$/,/'
  cat <<JSON
  "stack_sign": $(metric stack_sign),
  "stack_verify": $(metric stack_verify),
  "instructions_per_payment": $(metric instructions_per_payment),
  "instructions_per_payment_max": $(metric instructions_per_payment_max),
  "instructions_propose_sign": $(metric insn_propose_sign),
  "instructions_verify_countersig": $(metric insn_verify_countersig),
  "instructions_channel_hash": $(metric insn_channel_hash),
  "instructions_sign_eth": $(metric insn_sign_eth),
  "instructions_calibration_2000000": $(metric insn_calibration_2000000)
}
JSON
} > "$bld/size-report.json"
echo "run-qemu-test: wrote $bld/size-report.json"
cat "$bld/size-report.json"

[ "$status" -eq 0 ] || { echo "run-qemu-test: FAILED (status $status)" >&2; exit 1; }
tail -n 1 "$bld/qemu.log" | grep -qx 'RESULT 0' || { echo "run-qemu-test: no 'RESULT 0' at the end of the log" >&2; exit 1; }
echo "run-qemu-test: firmware checks passed on the Cortex-M4"
