#!/usr/bin/env python3
"""The outcome of the by-hand kit (tests/kit/run-kit.sh runs it before the README's last
step, while the dev chain still runs):
  check-kit.py KIT_DIR BIN_DIR [HUB_DB]   (HUB_DB: another copy of the ledger to check)
1. the charger paid: unitsPaid > 0 and weiPaid = unitsPaid * pricePerUnitWei, no thread
   left open;
2. the operator received exactly that: its last double-signed channel holds weiPaid (or,
   when the agent followed the settlement on chain, it is the EmptyChannel state that
   records the emptied channel: nothing left off chain, and 4. checks the payout);
3. the hub's ledger (hub.db, table channels) holds the very same double-signed channel
   state as each agent (decoded with `picopay decode channel`);
4. on chain, both channels were emptied (status Open, weiTotal 0) and each account got
   its channel balance paid out: balance = funded - sent - gas + payout, with funded,
   sent and gas summed over every transaction of the dev chain, and payout = the
   operator's received wei, or the charger's deposit minus what it paid.
Exits 1 with one line per failed check."""
import json, os, sqlite3, subprocess, sys, urllib.request

kit, bindir = sys.argv[1], sys.argv[2]
failures = []
def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok: failures.append(what)

def read(name): return open(os.path.join(kit, name)).read().strip()
def status(who):
    out = subprocess.run([os.path.join(bindir, "picopay-agent"), "status", "--state-dir",
                          os.path.join(kit, "state", who)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)

charger_cfg = json.load(open(os.path.join(kit, "charger1.json")))
price, deposit = int(charger_cfg["pricePerUnitWei"]), int(charger_cfg["depositWei"])
ch, op = status("charger1"), status("operator")
paid = int(ch["weiPaid"])
check(ch["unitsPaid"] > 0, f"the charger paid for {ch['unitsPaid']} Wh")
check(paid == ch["unitsPaid"] * price, f"weiPaid {paid} = unitsPaid x {price} wei")
check(all(not t["open"] for t in ch["threads"]), "the charger's threads are closed")
check(ch["channel"] is not None and op["channel"] is not None, "both agents hold a double-signed channel")
def emptied(c):  # the EmptyChannel state after the on-chain settlement (docs/chain.md)
    return (all(int(c[k]) == 0 for k in ("balanceWeiUser", "balanceWeiHub", "balanceTokenUser", "balanceTokenHub"))
            and c["threadCount"] == 0)
if ch["channel"] and op["channel"]:
    for who, c, want, what in (("operator", op["channel"], paid, "what the charger paid"),
                                ("charger", ch["channel"], deposit - paid, "deposit - paid")):
        if int(c["balanceWeiUser"]) == want:
            check(True, f"the {who}'s channel holds {c['balanceWeiUser']} wei = {what}")
        else:
            check(emptied(c), f"the {who}'s channel holds {c['balanceWeiUser']} wei = {what}, or is the "
                              f"EmptyChannel state after the settlement (txCountGlobal {c['txCountGlobal']})")

# 3. the hub's ledger
hub_db = sys.argv[3] if len(sys.argv) > 3 else os.path.join(kit, "hub.db")
db = sqlite3.connect(f"file:{hub_db}?mode=ro", uri=True)
for who, st in (("charger1", ch), ("operator", op)):
    row = db.execute("SELECT lower(hex(state)) FROM channels WHERE user=?", (read(f"{who}.addr").lower(),)).fetchone()
    check(row is not None, f"the hub's ledger has {who}'s channel")
    if row is None or st["channel"] is None: continue
    dec = subprocess.run([os.path.join(bindir, "picopay"), "decode", "channel"], input=row[0],
                         capture_output=True, text=True)
    check(dec.returncode == 0 and json.loads(dec.stdout) == st["channel"],
          f"the hub's ledger state of {who} is the agent's, signatures included")

# 4. on chain
url = json.loads(read("devchain.json"))["url"]
def rpc(method, *params):
    req = urllib.request.Request(url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                                  "params": list(params)}).encode(),
                                 {"Content-Type": "application/json"})
    r = json.load(urllib.request.urlopen(req, timeout=10))
    if "error" in r: raise RuntimeError(f"{method}: {r['error']}")
    return r["result"]
flows = {}  # address -> [funded, sent, gas]
for n in range(int(rpc("eth_blockNumber"), 16) + 1):
    for tx in rpc("eth_getBlockByNumber", hex(n), True)["transactions"]:
        rc = rpc("eth_getTransactionReceipt", tx["hash"])
        value = int(tx["value"], 16)
        f = flows.setdefault(tx["from"].lower(), [0, 0, 0])
        f[1] += value
        f[2] += int(rc["gasUsed"], 16) * int(rc["effectiveGasPrice"], 16)
        if tx.get("to") and int(rc["status"], 16) == 1:
            flows.setdefault(tx["to"].lower(), [0, 0, 0])[0] += value
contract = read("contract.addr")
for who, payout in (("operator", paid), ("charger1", deposit - paid)):
    a = read(f"{who}.addr")
    chan = json.loads(subprocess.run([os.path.join(bindir, "picopay"), "channel", "--rpc", url, "--contract",
                                      contract, "--user", a], capture_output=True, text=True, check=True).stdout)
    check(chan["status"] == "Open" and chan["weiTotal"] == "0",
          f"{who}'s channel on chain is emptied (status {chan['status']}, weiTotal {chan['weiTotal']})")
    funded, sent, gas = flows.get(a.lower(), [0, 0, 0])
    got = int(rpc("eth_getBalance", a, "latest"), 16) - funded + sent + gas
    check(got == payout and payout > 0, f"{who} was paid out {got} wei on chain (expected {payout})")
sys.exit(1 if failures else 0)
