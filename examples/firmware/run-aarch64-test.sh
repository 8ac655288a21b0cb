#!/usr/bin/env bash
# Cross-builds the firmware checks for an aarch64 Linux gateway
# (toolchains/aarch64-linux-gnu.cmake) and runs them under qemu-user (qemu-aarch64);
# the log goes to <build dir>/aarch64.log for the host-side check.
#
#   run-aarch64-test.sh <source root> <build dir>
set -euo pipefail
src=$(cd "${1:?source root}" && pwd)
bld=${2:?build dir}
mkdir -p "$bld"
bld=$(cd "$bld" && pwd)
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "run-aarch64-test: $tool is not installed (.ci/packages.apt)" >&2; exit 1; }
done
if [ ! -f "$bld/CMakeCache.txt" ]; then
  cmake -S "$src/examples/firmware" -B "$bld" \
        -DCMAKE_TOOLCHAIN_FILE="$src/toolchains/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$bld" -j2
set +e
timeout 300 qemu-aarch64 -L /usr/aarch64-linux-gnu "$bld/picopay_firmware.elf" > "$bld/aarch64.log" 2>&1
status=$?
set -e
grep -v '^\(STATE\|UPDATE\|THREAD\|TUPDATE\|FINAL\) ' "$bld/aarch64.log" || true
echo "run-aarch64-test: qemu-aarch64 exit status $status"
[ "$status" -eq 0 ] && tail -n 1 "$bld/aarch64.log" | grep -qx 'RESULT 0'
