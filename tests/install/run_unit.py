#!/usr/bin/env python3
"""Starts a service's ExecStart by hand, as systemd would, when systemd is not PID 1.

usage: run_unit.py UNIT_FILE --root DIR --state DIR --creds DIR [--instance NAME]
                   --log FILE --notify-timeout S [--then-sighup] [--topic-check CMD...]

What systemd would do, done here (and only this):
  - Environment= lines become the environment (plus PATH);
  - LoadCredential=ID:PATH copies DIR/PATH to --creds/ID (mode 0400) and sets
    CREDENTIALS_DIRECTORY, as the service would see it;
  - the specifiers %d (credentials dir), %S (state root), %i (instance), %% are expanded
    in ExecStart; its program is looked up under --root;
  - StateDirectory= is created under --state;
  - NOTIFY_SOCKET (Type=notify only) is a datagram socket bound here: the script waits
    for READY=1 (failing if the process exits first or --notify-timeout passes).
Then: optionally SIGHUP (the process must log the refusal and stay up), then SIGTERM;
for Type=notify STOPPING=1 must arrive and the exit status must be 0.
Prints each step; exits non-zero on the first failure.
"""
import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def parse_unit(path):
    """[Service] keys -> list of values (a key may repeat)."""
    section, keys = None, {}
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if section != "Service":
                continue
            k, _, v = line.partition("=")
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def expand(s, spec):
    out, i = [], 0
    while i < len(s):
        if s[i] == "%" and i + 1 < len(s):
            c = s[i + 1]
            if c not in spec:
                fail("specifier %%%s not handled by this runner" % c)
            out.append(spec[c])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("unit")
    ap.add_argument("--root", default="/")
    ap.add_argument("--state", required=True)
    ap.add_argument("--creds", required=True)
    ap.add_argument("--instance", default="")
    ap.add_argument("--log", required=True)
    ap.add_argument("--notify-timeout", type=float, default=60)
    ap.add_argument("--then-sighup", action="store_true")
    ap.add_argument("--check", nargs=argparse.REMAINDER, default=[],
                    help="a command run once READY=1 arrived; it must exit 0")
    a = ap.parse_args()

    keys = parse_unit(a.unit)
    spec = {"d": a.creds, "S": a.state, "i": a.instance, "%": "%"}
    unit_type = keys.get("Type", ["simple"])[-1]

    env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    for e in keys.get("Environment", []):
        for item in shlex.split(e):
            k, _, v = item.partition("=")
            env[k] = expand(v, spec)

    os.makedirs(a.creds, exist_ok=True)
    for c in keys.get("LoadCredential", []):
        cid, _, src = c.partition(":")
        src = expand(src, spec)
        real = os.path.join(a.root, src.lstrip("/"))
        dst = os.path.join(a.creds, cid)
        shutil.copyfile(real, dst)
        os.chmod(dst, 0o400)
        print("credential %s <- %s" % (cid, real))
    env["CREDENTIALS_DIRECTORY"] = a.creds
    for d in keys.get("StateDirectory", []):
        for one in d.split():
            p = os.path.join(a.state, expand(one, spec))
            os.makedirs(p, mode=0o700, exist_ok=True)
            env["STATE_DIRECTORY"] = p

    execs = keys.get("ExecStart", [])
    if len(execs) != 1:
        fail("expected one ExecStart, got %r" % execs)
    argv = [expand(x, spec) for x in shlex.split(execs[0])]
    prog = os.path.join(a.root, argv[0].lstrip("/"))
    argv[0] = prog

    # systemd passes NOTIFY_SOCKET to Type=notify services (or with NotifyAccess=) only.
    sock_path = os.path.join(a.state, "notify.sock")
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.5)
    if unit_type == "notify" or "NotifyAccess" in keys:
        env["NOTIFY_SOCKET"] = sock_path

    print("Type=%s" % unit_type)
    print("ExecStart (by hand): %s" % " ".join(shlex.quote(x) for x in argv))
    print("environment: %s" % " ".join("%s=%s" % kv for kv in sorted(env.items())))
    log = open(a.log, "wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=a.state)

    def wait_message(word, deadline):
        while time.monotonic() < deadline:
            try:
                msg = sock.recv(4096).decode()
            except socket.timeout:
                if proc.poll() is not None:
                    return None
                continue
            print("sd_notify: %r" % msg)
            if word in msg.split("\n"):
                return msg
        return None

    try:
        if unit_type == "notify":
            if wait_message("READY=1", time.monotonic() + a.notify_timeout) is None:
                fail("no READY=1 (exit status %r); log:\n%s" % (proc.poll(), open(a.log).read()))
        else:
            if proc.poll() is not None:
                fail("exited at once (%r); log:\n%s" % (proc.returncode, open(a.log).read()))
        if a.check:
            r = subprocess.run(a.check)
            if r.returncode != 0:
                fail("check %r failed; log:\n%s" % (a.check, open(a.log).read()))
        if a.then_sighup:
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and b"SIGHUP ignored" not in open(a.log, "rb").read():
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
            if proc.poll() is not None:
                fail("SIGHUP ended the process (status %r)" % proc.returncode)
            if b"SIGHUP ignored" not in open(a.log, "rb").read():
                fail("no SIGHUP refusal logged")
            print("SIGHUP: refused and logged, still running")
        proc.send_signal(signal.SIGTERM)
        if unit_type == "notify" and wait_message("STOPPING=1", time.monotonic() + 60) is None:
            fail("no STOPPING=1 after SIGTERM")
        rc = proc.wait(timeout=60)
        if rc != 0:
            fail("exit status %d after SIGTERM; log:\n%s" % (rc, open(a.log).read()))
        print("SIGTERM: exit status 0")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    print("log:\n" + open(a.log).read())


if __name__ == "__main__":
    main()
