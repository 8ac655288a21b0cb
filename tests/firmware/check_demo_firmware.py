#!/usr/bin/env python3
"""Runs `picopay demo --firmware 1` and checks the firmware device in what it leaves behind.

usage: check_demo_firmware.py PICOPAY_BINARY
1. With the device image (PICOPAY_FIRMWARE_ELF or <bin>/../firmware/picopay_device.elf) and
   qemu-system-arm: the demo exits 0; summary.json says reconciled with firmwareDevices 1;
   the firmware entry paid at least one payment, names its own deposit transaction, and
   agrees with the hub (hubAgrees, deviceConsistent, conserved); the settlement lists it
   on chain with nothing left in its channel.
2. With the image missing (PICOPAY_FIRMWARE_ELF=/nonexistent): the demo says so in one
   line, runs without it and still reconciles (firmwareDevices 0, firmwareMissing set).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile


def fail(msg, work):
    print(f"check_demo_firmware: FAIL: {msg} (workdir {work} kept)", file=sys.stderr)
    sys.exit(1)


def run(picopay, opts, env=None):
    work = tempfile.mkdtemp(prefix="picopay-demo-fw-")
    r = subprocess.run([picopay, "demo", "--workdir", work] + opts, env=env, capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        fail(f"picopay demo exited {r.returncode}", work)
    try:
        with open(f"{work}/summary.json") as fh:
            return work, r.stdout, json.load(fh)
    except (OSError, ValueError) as e:
        fail(f"summary.json: {e}", work)


def main():
    picopay = sys.argv[1]
    work, out, s = run(picopay, ["--devices", "1", "--seconds", "5", "--firmware", "1"])
    if s.get("reconciled") is not True or s.get("firmwareDevices") != 1:
        fail(f"reconciled {s.get('reconciled')!r}, firmwareDevices {s.get('firmwareDevices')!r}", work)
    fw = [d for d in s.get("perDevice", []) if d.get("firmware")]
    if len(fw) != 1:
        fail(f"{len(fw)} firmware entries in perDevice", work)
    d = fw[0]
    for k in ("hubAgrees", "deviceConsistent", "conserved"):
        if d.get(k) is not True:
            fail(f"firmware1 {k} = {d.get(k)!r}", work)
    if d.get("payments", 0) < 1 or int(d.get("paidWei", "0")) != d["payments"] * 10**12:
        fail(f"firmware1 paid {d.get('paidWei')!r} for {d.get('payments')!r} payments", work)
    if not str(d.get("depositTx", "")).startswith("0x") or len(d["depositTx"]) != 66:
        fail(f"firmware1 depositTx {d.get('depositTx')!r}", work)
    acct = [a for a in s.get("onChain", {}).get("accounts", []) if a.get("name") == "firmware1"]
    if len(acct) != 1 or acct[0].get("channelWeiUser") != "0" or acct[0].get("channelWeiHub") != "0":
        fail(f"firmware1 on chain: {acct!r}", work)
    if "firmware1" not in out:
        fail("the reconciliation table has no firmware1 row", work)
    shutil.rmtree(work, ignore_errors=True)

    env = dict(os.environ, PICOPAY_FIRMWARE_ELF="/nonexistent/picopay_device.elf")
    work, out, s = run(picopay, ["--devices", "1", "--seconds", "2", "--firmware", "1"], env)
    lines = [l for l in out.splitlines() if "--firmware: missing" in l]
    if len(lines) != 1 or "/nonexistent/picopay_device.elf" not in lines[0]:
        fail(f"no one-line notice of the missing image: {lines!r}", work)
    if s.get("reconciled") is not True or s.get("firmwareDevices") != 0 or not s.get("firmwareMissing"):
        fail(f"without the image: reconciled {s.get('reconciled')!r}, firmwareDevices "
             f"{s.get('firmwareDevices')!r}, firmwareMissing {s.get('firmwareMissing')!r}", work)
    shutil.rmtree(work, ignore_errors=True)
    print("check_demo_firmware: OK")


if __name__ == "__main__":
    main()
