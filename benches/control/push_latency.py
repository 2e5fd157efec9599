#!/usr/bin/env python3
"""How long a push takes to reach every proxy: a control plane and N proxies
(default 50) on loopback, each started with --control; ROUNDS bundles pushed in turn,
and for each the time from the push to each proxy's ACK (the control plane records
when each proxy last spoke). Prints p50 and max over all proxies and rounds.

Usage: benches/control/push_latency.py [N] [ROUNDS]   (after `make build`)
Everything listens on 127.0.0.1 and is stopped by its process id at the end.
"""
import json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEFT = os.path.join(ROOT, "target/release/weft")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
work = tempfile.mkdtemp(prefix="weft-push-")
procs = []


def spawn(args, wait_for):
    p = subprocess.Popen([WEFT] + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, WEFT_LOG="error"))
    procs.append(p)
    out = {}
    for line in p.stdout:
        if line.startswith("weft control listening: http://"):
            out["addr"] = line.split()[3][len("http://"):]
        if line.startswith(wait_for):
            break
    return p, out


def run(args):
    subprocess.run([WEFT] + args, check=True, stdout=subprocess.DEVNULL)


def status(addr):
    with urllib.request.urlopen(f"http://{addr}/v1/status") as r:
        return json.load(r)


def bundle(name, stamp):
    cfg = os.path.join(work, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: up
        filters: [f]
clusters:
  up:
    endpoints: ["127.0.0.1:9"]
filters:
  f:
    module: {ROOT}/target/filters/stamp.wasm
    config: {{ stamp: {stamp} }}
""")
    out = os.path.join(work, name)
    run(["bundle", "pack", "--config", cfg, "--out", out, "--name", name])
    run(["bundle", "sign", "--key", os.path.join(work, "op.key"), out])
    with open(os.path.join(out, "manifest.json"), "rb") as f:
        import hashlib
        return out, hashlib.sha256(f.read()).hexdigest()


try:
    run(["bundle", "keygen", "--out", os.path.join(work, "op")])
    _, cp = spawn(["control", "serve", "--listen", "127.0.0.1:0", "--store", os.path.join(work, "store")], "weft ready")
    addr = cp["addr"]
    first, _ = bundle("v0", "zero")
    run(["control", "push", "--server", addr, first])
    for i in range(N):
        spawn(["run", "--control", addr, "--name", f"p{i:02}", "--workers", "1",
               "--trust", os.path.join(work, "op.pub"), "--state-dir", os.path.join(work, f"p{i:02}")],
              "weft ready")
    print(f"{N} proxies up", file=sys.stderr)
    latencies = []
    for r in range(1, ROUNDS + 1):
        path, version = bundle(f"v{r}", f"s{r}")
        t0 = time.time() * 1000
        run(["control", "push", "--server", addr, path])
        deadline = time.time() + 60
        while True:
            s = status(addr)["proxies"]
            done = [p for p in s.values() if p.get("running") == version]
            if len(done) == N:
                latencies += [p["last_seen_unix_ms"] - t0 for p in done]
                break
            if time.time() > deadline:
                sys.exit(f"round {r}: only {len(done)} of {N} proxies ACKed")
            time.sleep(0.02)
        print(f"round {r}: all {N} ACKed", file=sys.stderr)
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    print(f"push to ACK, {N} proxies x {ROUNDS} rounds: p50 {p50:.0f} ms, max {latencies[-1]:.0f} ms")
finally:
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()
    shutil.rmtree(work, ignore_errors=True)
