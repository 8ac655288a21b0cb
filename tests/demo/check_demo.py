#!/usr/bin/env python3
"""Runs `picopay demo` and checks what it leaves behind.

usage: check_demo.py PICOPAY_BINARY [demo options...]
The demo runs with --workdir in a fresh temporary directory; the test fails unless it exits 0,
its summary JSON (the default <workdir>/summary.json) says reconciled: true with every device
agreeing, totals paid = received (exact wei), at least one Wh and one payment per second, a
latency p50 <= p99 <= max, settlement gas, on-chain balances for every charger, the payee and
the hub, the money flows of docs/flows.md reconciled (a charger's top-up, the payee's
cooperative cash-out of exactly what it received, the hub's idle collateral taken back),
and its plot (<workdir>/demo.svg) is well-formed SVG.
"""
import json
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def fail(msg, work):
    print(f"check_demo: FAIL: {msg} (workdir {work} kept)", file=sys.stderr)
    sys.exit(1)


def main():
    picopay, opts = sys.argv[1], sys.argv[2:]
    work = tempfile.mkdtemp(prefix="picopay-demo-test-")
    r = subprocess.run([picopay, "demo", "--workdir", work] + opts)
    if r.returncode != 0:
        fail(f"picopay demo exited {r.returncode}", work)
    try:
        with open(f"{work}/summary.json") as fh:
            s = json.load(fh)
    except (OSError, ValueError) as e:
        fail(f"summary.json: {e}", work)
    if s.get("reconciled") is not True:
        fail(f"summary says reconciled: {s.get('reconciled')!r}", work)
    devs = s.get("perDevice", [])
    want = int(opts[opts.index("--devices") + 1]) if "--devices" in opts else 3
    if s.get("devices") != want or len(devs) != want:
        fail(f"summary lists {len(devs)} devices, expected {want}", work)
    for d in devs:
        if not all(d.get(k) is True for k in ("hubAgrees", "deviceConsistent", "payeeAgrees", "conserved")):
            fail(f"device {d.get('name')} does not reconcile: {d}", work)
    if s["paidWei"] != s["receivedWei"] or int(s["paidWei"]) != sum(int(d["paidWei"]) for d in devs):
        fail(f"totals differ: paid {s['paidWei']}, received {s['receivedWei']}", work)
    if s["wh"] < 1 or int(s["paidWei"]) != s["wh"] * int(s["pricePerWhWei"]):
        fail(f"paid {s['paidWei']} wei is not {s['wh']} Wh x {s['pricePerWhWei']} wei", work)
    if not s["paidEth"].endswith(" ETH"):
        fail(f"paidEth {s['paidEth']!r}", work)
    # --token: amounts are in the test token; the summary names it and its reserve.
    token = "--token" in opts
    if s.get("asset") != ("PPT" if token else "ETH") or not s.get("paid", "").endswith(" " + s.get("asset", "?")):
        fail(f"asset {s.get('asset')!r}, paid {s.get('paid')!r}", work)
    if token:
        accounts = {a["name"]: a for a in s["onChain"]["accounts"]}
        payee_tokens = int(accounts.get("payee", {}).get("balanceTokens", "-1"))
        if payee_tokens != int(s["receivedWei"]) or "hubReserveTokens" not in s["onChain"] or not s.get("token"):
            fail(f"token mode: payee holds {payee_tokens} token base units, received {s['receivedWei']}", work)
    if not (s["paymentsPerSecond"]["peak"] >= s["paymentsPerSecond"]["avg"] > 0):
        fail(f"payments/s {s['paymentsPerSecond']}", work)
    lat = s["latencyMs"]
    if not (lat["readings"] > 0 and 0 <= lat["p50"] <= lat["p99"] <= lat["max"]):
        fail(f"latency {lat}", work)
    if not (s["gas"].get("startExitWithUpdate", 0) > 0 and s["gas"].get("emptyChannel", 0) > 0):
        fail(f"gas {s['gas']}", work)
    names = {a["name"] for a in s["onChain"]["accounts"] if "balanceWei" in a}
    expect = {d["name"] for d in devs} | {"payee", "hub"}
    if not expect <= names:
        fail(f"on-chain balances for {sorted(names)}, expected {sorted(expect)}", work)
    if "hubReserveWei" not in s["onChain"]:
        fail("no hub reserve in the summary", work)
    # The money flows (docs/flows.md): a charger topped up while charging, the payee cashed
    # out cooperatively exactly what it received, the hub took its idle collateral back.
    # The same in ETH and with --token (amounts then in token base units).
    flows = s.get("flows", {})
    for k in ("topUp", "cashOut", "collateral"):
        if flows.get(k, {}).get("reconciled") is not True:
            fail(f"flow {k} does not reconcile: {flows.get(k)}", work)
    if flows["cashOut"]["cashedOutWei"] != s["receivedWei"]:
        fail(f"payee cashed out {flows['cashOut']['cashedOutWei']}, received {s['receivedWei']}", work)
    if not (flows["topUp"]["gasUsed"] > 0 and flows["cashOut"]["gasUsed"] > 0):
        fail(f"flow gas {flows}", work)
    if int(flows["collateral"]["reclaimedWei"]) <= 0:
        fail(f"no collateral taken back: {flows['collateral']}", work)
    try:
        root = ET.parse(f"{work}/demo.svg").getroot()
    except (OSError, ET.ParseError) as e:
        fail(f"demo.svg: {e}", work)
    if not root.tag.endswith("svg") or len(s["series"]) < 1 or len(root.findall(".//{http://www.w3.org/2000/svg}polyline")) < 4:
        fail("demo.svg has no plotted series", work)
    print(f"check_demo: reconciled; {s['wh']} Wh, paid {s['paidEth']}, {s['paymentsPerSecond']['avg']:.1f} payments/s "
          f"avg, latency p50/p99/max {lat['p50']:.1f}/{lat['p99']:.1f}/{lat['max']:.1f} ms, gas {s['gas']['total']}; " +
          f"top-up {flows['topUp']['gasUsed']} gas / {flows['topUp']['elapsedMs']} ms, cash-out "
          f"{flows['cashOut']['gasUsed']} gas / {flows['cashOut']['elapsedMs']} ms, collateral back "
          f"{flows['collateral']['reclaimedWei']} " + ("token base units" if token else "wei"))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
