#!/usr/bin/env bash
# cmake --install into a fresh prefix, then, from outside the build tree:
#   - the layout (programs, contract artifact, dev-chain launcher, units, /etc examples,
#     CMake package, pkg-config files) is there;
#   - no build-tree or source-tree path is compiled into the programs (.rodata);
#   - `--version` of every program prints "picopay <project VERSION> (git <hash>)";
#   - the installed dev-chain launcher starts a chain on 127.0.0.1 and the installed
#     `picopay deploy` finds the installed ChannelManager.json by itself (no PICOPAY_*
#     variable set); PICOPAY_DATA_DIR overrides the lookup of deploy and of the demo's
#     dev-chain launcher (a wrong one fails loudly, naming the path);
#   - tests/install/consumer configures, builds and runs against the prefix with
#     find_package(picopay), and a program builds and runs with `pkg-config picopay`.
# usage: install_test.sh BUILD_DIR SOURCE_DIR VERSION
set -euo pipefail
build=$(cd "$1" && pwd); src=$(cd "$2" && pwd); version=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/picopay-install-XXXXXX")
chain_pid=
cleanup() {
  if [ -n "$chain_pid" ]; then kill "$chain_pid" 2>/dev/null || true; wait "$chain_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
prefix=$work/prefix

echo "== cmake --install --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "cmake --install"; }
for f in bin/picopay bin/picopay-agent bin/picopay-hub bin/picopay-tower \
         share/picopay/contracts/ChannelManager.json \
         share/picopay/devchain/devchain.sh share/picopay/devchain/scripts/devchain.js \
         share/picopay/devchain/node_modules/ganache/package.json \
         lib/systemd/system/picopay-hub.service lib/systemd/system/picopay-agent@.service \
         etc/picopay/hub.json etc/picopay/agent-example.json \
         lib/cmake/picopay/picopayConfig.cmake lib/cmake/picopay/picopayConfigVersion.cmake \
         lib/pkgconfig/picopay.pc lib/pkgconfig/picopay-port-baremetal.pc \
         lib/libpicopay_core.a lib/libpicopay_port_posix.a lib/libpicopay_port_baremetal.a \
         include/picopay/keccak.hpp include/picopay/port/posix.hpp \
         include/picopay/port/baremetal/flash_state_store.hpp; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
[ -e "$prefix/share/picopay/devchain/node_modules/solc" ] && fail "the compiler (solc) was installed"
# The units name the prefix's programs and configs.
grep -qx "ExecStart=$prefix/bin/picopay-hub .*" "$prefix/lib/systemd/system/picopay-hub.service" \
  || fail "picopay-hub.service ExecStart does not name $prefix/bin"
grep -q "LoadCredential=hub.json:$prefix/etc/picopay/hub.json" "$prefix/lib/systemd/system/picopay-hub.service" \
  || fail "picopay-hub.service does not load $prefix/etc/picopay/hub.json"

echo "== no build-tree path in the programs"
for p in picopay picopay-agent picopay-hub picopay-tower; do
  objcopy -O binary --only-section=.rodata "$prefix/bin/$p" "$work/rodata"
  if grep -aq -e "$build" -e "$src" "$work/rodata"; then
    grep -ao -e "$build[^[:cntrl:]]*" -e "$src[^[:cntrl:]]*" "$work/rodata" | head -3 >&2
    fail "$p has a build or source path compiled in"
  fi
done

echo "== --version"
for p in picopay picopay-agent picopay-hub picopay-tower; do
  out=$(cd "$work" && env -i PATH=/usr/bin:/bin "$prefix/bin/$p" --version)
  echo "$p: $out"
  [[ "$out" =~ ^picopay\ ${version//./\\.}\ \(git\ ([0-9a-f]{7,40}|unknown)\)$ ]] || fail "$p --version: '$out'"
done

echo "== the installed dev chain and the installed artifact"
mkfifo "$work/chain.in"
(cd "$work" && exec env -u PICOPAY_DATA_DIR -u PICOPAY_CONTRACTS_DIR \
   "$prefix/share/picopay/devchain/devchain.sh" --port 0 --watch-stdin <"$work/chain.in" >"$work/chain.out" 2>"$work/chain.err") &
chain_pid=$!
exec 9>"$work/chain.in"   # the chain exits when this closes (when the test ends)
for _ in $(seq 1 300); do [ -s "$work/chain.out" ] && break; kill -0 "$chain_pid" 2>/dev/null || break; sleep 0.2; done
[ -s "$work/chain.out" ] || { cat "$work/chain.err" >&2; fail "the installed devchain.sh did not start"; }
read -r url key addr < <(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); a=d["accounts"][0]; print(d["url"], a["privateKey"], a["address"])' "$work/chain.out")
case $url in http://127.0.0.1:*) ;; *) fail "dev chain not on 127.0.0.1: $url";; esac
out=$(cd "$work" && env -u PICOPAY_DATA_DIR -u PICOPAY_CONTRACTS_DIR \
      "$prefix/bin/picopay" deploy --rpc "$url" --private-key "$key" --hub "$addr" --challenge-period 60) \
  || fail "installed picopay deploy (default artifact) failed"
echo "$out"
grep -q '^contract 0x[0-9a-f]\{40\}' <<<"$out" || fail "no contract address in: $out"
# The override: a data dir without the artifact is used, and fails loudly.
if err=$(cd "$work" && PICOPAY_DATA_DIR=$work/empty "$prefix/bin/picopay" deploy --rpc "$url" \
         --private-key "$key" --hub "$addr" --challenge-period 60 2>&1); then
  fail "deploy succeeded with PICOPAY_DATA_DIR pointing nowhere"
fi
grep -q "$work/empty/contracts/ChannelManager.json" <<<"$err" || fail "the error does not name the looked-up path: $err"
exec 9>&-

# The demo looks up the same data dir for its dev-chain launcher: a wrong one fails loudly.
if err=$(cd "$work" && PICOPAY_DATA_DIR=$work/empty "$prefix/bin/picopay" demo --devices 1 --seconds 1 \
         --workdir "$work/demo" 2>&1); then
  fail "the demo succeeded with PICOPAY_DATA_DIR pointing nowhere"
fi
grep -q "no dev chain launcher at $work/empty/devchain/devchain.sh" <<<"$err" \
  || fail "the demo's error does not name the looked-up launcher: $err"

echo "== find_package(picopay): tests/install/consumer"
cmake -S "$src/tests/install/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release >"$work/consumer.log" 2>&1 || { cat "$work/consumer.log"; fail "consumer configure"; }
cmake --build "$work/consumer" >>"$work/consumer.log" 2>&1 || { cat "$work/consumer.log"; fail "consumer build"; }
[ "$("$work/consumer/consumer_posix")" = ok ] || fail "consumer_posix"
[ "$("$work/consumer/consumer_baremetal")" = ok ] || fail "consumer_baremetal"
# Nothing of the build tree is referenced by the consumer's build.
if grep -rq "$build" "$work/consumer/CMakeCache.txt" "$work/consumer/CMakeFiles" 2>/dev/null; then
  fail "the consumer build refers to the picopay build tree"
fi

echo "== pkg-config picopay"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
[ "$(pkg-config --modversion picopay)" = "$version" ] || fail "pkg-config --modversion"
# shellcheck disable=SC2046
c++ -std=c++17 -o "$work/pc_posix" "$src/tests/install/consumer/posix.cpp" $(pkg-config --cflags --libs picopay) \
  || fail "build with pkg-config picopay"
[ "$("$work/pc_posix")" = ok ] || fail "pc_posix"
# shellcheck disable=SC2046
c++ -std=c++17 -o "$work/pc_bare" "$src/tests/install/consumer/baremetal.cpp" $(pkg-config --cflags --libs picopay-port-baremetal) \
  || fail "build with pkg-config picopay-port-baremetal"
[ "$("$work/pc_bare")" = ok ] || fail "pc_bare"
echo "PASS"
