#!/usr/bin/env bash
# The Debian packages: built with CPack, inspected, installed with dpkg, run, units
# verified, and the hub started as its unit would start it.
#   - cpack -G DEB writes picopay, picopay-dev, picopay-devchain;
#   - picopay: Depends from dpkg-shlibdeps, /etc/picopay/* are conffiles, the programs,
#     ChannelManager.json and both systemd units are in it;
#   - dpkg installs the three into a private root (dpkg --root, the default) or, with
#     PICOPAY_DEB_TEST_SYSTEM=1 as root, into the real system;
#   - the installed `picopay --version` (and -agent, -hub) answers;
#   - systemd-analyze verify accepts both units (skipped, and said so, if absent);
#   - picopay-hub.service: with systemd as PID 1 and a system install, systemctl starts it;
#     otherwise tests/install/run_unit.py runs its ExecStart line by hand with the unit's
#     Environment=, LoadCredential= (key file, config and passphrase as credentials,
#     PICOPAY_PASSPHRASE_FILE) and NOTIFY_SOCKET, against a private mosquitto on
#     127.0.0.1: READY=1 arrives, the hub's retained status says online, SIGHUP is
#     refused and logged, SIGTERM sends STOPPING=1 and exits 0;
#   - picopay-agent@charger1.service the same way (a payee agent, Type=notify too): READY=1,
#     online on the broker under its name, SIGHUP refused and logged, STOPPING=1 and exit 0
#     on SIGTERM, its state in the unit's StateDirectory.
# usage: deb_test.sh BUILD_DIR SOURCE_DIR VERSION
set -euo pipefail
build=$(cd "$1" && pwd); src=$(cd "$2" && pwd); version=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/picopay-deb-XXXXXX")
broker_pid=
system_install=0
cleanup() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  if [ "$system_install" = 1 ]; then  # leave the system as it was
    rm -f /etc/picopay/hub.key /etc/picopay/hub.passphrase /etc/picopay/agent-charger1.*
    dpkg --purge picopay-devchain picopay-dev picopay >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
arch=$(dpkg --print-architecture)

echo "== cpack -G DEB"
t0=$(date +%s)
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/pkg" >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; fail cpack; }
echo "cpack: $(( $(date +%s) - t0 )) s"
deb=$work/pkg/picopay_${version}_${arch}.deb
dev=$work/pkg/picopay-dev_${version}_${arch}.deb
chain=$work/pkg/picopay-devchain_${version}_all.deb
for f in "$deb" "$dev" "$chain"; do [ -f "$f" ] || { ls -l "$work/pkg" >&2; fail "no $(basename "$f")"; }; ls -l "$f"; done

echo "== package contents"
dpkg-deb -c "$deb" >"$work/deb.list"
for f in ./usr/bin/picopay ./usr/bin/picopay-agent ./usr/bin/picopay-hub ./usr/bin/picopay-tower \
         ./usr/share/picopay/contracts/ChannelManager.json \
         ./usr/lib/systemd/system/picopay-hub.service ./usr/lib/systemd/system/picopay-agent@.service \
         ./etc/picopay/hub.json ./etc/picopay/agent-example.json ./usr/share/doc/picopay/install.md; do
  grep -q " $f\$" "$work/deb.list" || fail "picopay.deb lacks $f"
done
dpkg-deb -c "$dev" >"$work/dev.list"
grep -q ' ./usr/lib/cmake/picopay/picopayConfig.cmake$' "$work/dev.list" || fail "picopay-dev lacks the CMake package"
dpkg-deb -c "$chain" >"$work/chain.list"
grep -q ' ./usr/share/picopay/devchain/devchain.sh$' "$work/chain.list" || fail "picopay-devchain lacks devchain.sh"
grep -q ' ./usr/share/picopay/devchain/node_modules/ganache/package.json$' "$work/chain.list" \
  || fail "picopay-devchain lacks ganache"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for lib in libc6 libsecp256k1 libsodium libmosquitto libcjson libsqlite3 libcurl libsystemd; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib (dpkg-shlibdeps)"
done
dpkg-deb -e "$deb" "$work/control"
for c in /etc/picopay/hub.json /etc/picopay/agent-example.json; do
  grep -qx "$c" "$work/control/conffiles" || fail "$c is not a conffile"
done

echo "== dpkg -i"
if [ "${PICOPAY_DEB_TEST_SYSTEM:-0}" = 1 ] && [ "$(id -u)" = 0 ]; then
  root=/
  system_install=1
  dpkg -i "$deb" "$dev" "$chain" || fail "dpkg -i (system)"
  dpkg_q=(dpkg-query)
  echo "installed into the real system"
else
  root=$work/root
  mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
  : >"$root/var/lib/dpkg/status"; : >"$root/var/lib/dpkg/available"
  # --force-depends: the private root has no libc6 etc. (the host's libraries serve);
  # --force-script-chrootless: the maintainer scripts run on the host with DPKG_ROOT set
  # (they only reload systemd, and not when DPKG_ROOT is set).
  dpkg --root="$root" --log="$work/dpkg.log" --force-depends --force-script-chrootless \
       -i "$deb" "$dev" "$chain" >"$work/dpkg.out" 2>&1 || { cat "$work/dpkg.out"; fail "dpkg --root -i"; }
  dpkg_q=(dpkg-query --root="$root")
  echo "installed into $root (dpkg --root)"
fi
for p in picopay picopay-dev picopay-devchain; do
  [ "$("${dpkg_q[@]}" -W -f '${Status}' "$p")" = "install ok installed" ] || fail "$p not installed"
done

echo "== the installed programs"
for p in picopay picopay-agent picopay-hub picopay-tower; do
  out=$(cd "$work" && "$root/usr/bin/$p" --version)
  echo "$root/usr/bin/$p --version: $out"
  [[ "$out" =~ ^picopay\ ${version//./\\.}\ \(git\ ([0-9a-f]{7,40}|unknown)\)$ ]] || fail "$p --version: '$out'"
done

echo "== systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
  # --root: units and their ExecStart programs are looked up in the install root; a
  # private root gets the host's own units too (targets the default dependencies need).
  if [ "$root" != / ]; then cp -an /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"; fi
  for u in picopay-hub.service picopay-agent@charger1.service; do
    if ! SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no --root="$root" "$u" >"$work/verify.out" 2>&1; then
      cat "$work/verify.out" >&2; fail "systemd-analyze verify $u"
    fi
    # Unknown keys and bad values are only warnings: none is accepted.
    if [ -s "$work/verify.out" ]; then cat "$work/verify.out" >&2; fail "systemd-analyze verify $u: warnings"; fi
    echo "verified: $u"
  done
else
  echo "systemd-analyze not found: unit verification SKIPPED"
fi

echo "== picopay-hub.service started"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' "$port" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker_pid=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
# The hub's key, passphrase and config where the unit's LoadCredential= expects them.
etc=$root/etc/picopay
pass="unit test passphrase $$"
umask 077
printf '%s\n' "$pass" >"$etc/hub.passphrase"
PICOPAY_PASSPHRASE=$pass "$root/usr/bin/picopay" keygen --out "$etc/hub.key" >"$work/keygen.out" \
  || fail "picopay keygen"
hub_addr=$(grep -o '0x[0-9a-fA-F]\{40\}' "$work/keygen.out" | head -1)
[ -n "$hub_addr" ] || fail "no address from keygen: $(cat "$work/keygen.out")"
cat >"$etc/hub.json" <<JSON
{
  "broker": {"host": "127.0.0.1", "port": $port, "username": "hub", "password": "unused"},
  "hub": {"address": "$hub_addr"},
  "contract": "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390"
}
JSON
umask 022
# Run once READY=1 arrived: the hub's retained status (topic and payload name the hub).
check="out=\$(mosquitto_sub -h 127.0.0.1 -p $port -t 'picopay/v1/hub/+/status' -C 1 -W 30 -v) && echo \"retained status: \$out\" && grep -qi '^picopay/v1/hub/$hub_addr/status {\"state\":\"online\",\"hub\":\"$hub_addr\"' <<<\"\$out\""
if [ "$root" = / ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
  echo "systemd is PID 1: systemctl start picopay-hub"
  systemctl daemon-reload
  systemctl start picopay-hub || { journalctl -u picopay-hub --no-pager | tail -30; fail "systemctl start"; }
  bash -c "$check" || fail "hub not online"
  systemctl kill -s HUP picopay-hub; systemctl is-active picopay-hub || fail "SIGHUP stopped the hub"
  systemctl stop picopay-hub
else
  echo "systemd is not PID 1 (PID 1: $(cat /proc/1/comm 2>/dev/null)): ExecStart run by hand with the unit's environment"
  python3 "$src/tests/install/run_unit.py" "$root/usr/lib/systemd/system/picopay-hub.service" \
    --root "$root" --state "$work/state" --creds "$work/creds" --log "$work/hub.log" \
    --then-sighup --check bash -c "$check" || fail "picopay-hub.service by hand"
  [ -f "$work/state/picopay-hub/hub.db" ] || fail "the ledger is not in the unit's StateDirectory"
fi

echo "== picopay-agent@charger1.service started"
# A payee agent (no meter, no deposit) for the instance charger1: its config, key and
# passphrase where the unit's LoadCredential= expects them; it must come up on the broker.
umask 077
printf '%s\n' "$pass" >"$etc/agent-charger1.passphrase"
PICOPAY_PASSPHRASE=$pass "$root/usr/bin/picopay" keygen --out "$etc/agent-charger1.key" >"$work/keygen2.out" \
  || fail "picopay keygen (agent)"
agent_addr=$(grep -o '0x[0-9a-fA-F]\{40\}' "$work/keygen2.out" | head -1)
cat >"$etc/agent-charger1.json" <<JSON
{
  "broker": {"host": "127.0.0.1", "port": $port, "password": "unused"},
  "hub": "$hub_addr",
  "contract": "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390",
  "role": "payee",
  "meter": {"source": "none"}
}
JSON
umask 022
check="out=\$(mosquitto_sub -h 127.0.0.1 -p $port -t 'picopay/v1/user/+/status' -C 1 -W 30 -v) && echo \"retained status: \$out\" && grep -qi '^picopay/v1/user/$agent_addr/status {\"state\":\"online\",\"name\":\"charger1\"' <<<\"\$out\""
if [ "$root" = / ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
  systemctl start picopay-agent@charger1 || { journalctl -u picopay-agent@charger1 --no-pager | tail -30; fail "systemctl start agent"; }
  bash -c "$check" || fail "agent not online"
  systemctl stop picopay-agent@charger1
else
  python3 "$src/tests/install/run_unit.py" "$root/usr/lib/systemd/system/picopay-agent@.service" \
    --instance charger1 --root "$root" --state "$work/state" --creds "$work/creds-agent" --log "$work/agent.log" \
    --then-sighup --check bash -c "$check" || fail "picopay-agent@charger1.service by hand"
  [ -d "$work/state/picopay-agent/charger1" ] || fail "the agent state is not in the unit's StateDirectory"
  [ -n "$(ls -A "$work/state/picopay-agent/charger1")" ] || fail "the agent wrote no state"
fi
echo "PASS"
