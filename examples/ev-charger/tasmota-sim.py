#!/usr/bin/env python3
"""Simulated Tasmota energy monitor of an EV charging session (tele/<topic>/SENSOR).

Prints one Tasmota SENSOR JSON per line: pipe it into mosquitto_pub -l, e.g.
  ./tasmota-sim.py --power 11000 --messages 600 --interval 1 --speedup 10 |
    mosquitto_pub -h 127.0.0.1 -u demo -P PASS -t tele/charger1/SENSOR -l
A session: ramp-up, constant-current phase, then the taper of a nearly full battery.
ENERGY.Total is cumulative kWh (3 decimals, Tasmota's default EnergyRes).
"""
import argparse, datetime, json, math, sys, time

p = argparse.ArgumentParser()
p.add_argument("--power", type=float, default=11000, help="max charging power, W")
p.add_argument("--start-kwh", type=float, default=1523.417, help="meter reading at start")
p.add_argument("--messages", type=int, default=120)
p.add_argument("--interval", type=float, default=0.0, help="real seconds between lines")
p.add_argument("--speedup", type=float, default=60, help="simulated seconds per message")
a = p.parse_args()

total = a.start_kwh
t0 = datetime.datetime(2026, 11, 21, 8, 0, 0)
for i in range(a.messages):
    frac = i / max(1, a.messages - 1)
    if frac < 0.05:
        power = a.power * frac / 0.05                 # ramp-up
    elif frac < 0.8:
        power = a.power * (0.98 + 0.02 * math.sin(i))  # constant current
    else:
        power = a.power * max(0.1, (1 - frac) / 0.2)  # taper
    total += power * a.speedup / 3600 / 1000
    voltage = 230 + 2 * math.sin(i / 7)
    msg = {
        "Time": (t0 + datetime.timedelta(seconds=i * a.speedup)).isoformat(),
        "ENERGY": {
            "TotalStartTime": "2026-01-01T00:00:00", "Total": round(total, 3),
            "Yesterday": 11.204, "Today": round(total - a.start_kwh, 3), "Period": 0,
            "Power": round(power), "ApparentPower": round(power / 0.99), "ReactivePower": round(power * 0.14),
            "Factor": 0.99, "Voltage": round(voltage), "Current": round(power / voltage / 3, 3),
        },
    }
    print(json.dumps(msg, separators=(",", ":")), flush=True)
    if a.interval:
        time.sleep(a.interval)
