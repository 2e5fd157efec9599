#!/usr/bin/env python3
"""Compatibility suite: real Python servers and real clients, each case run directly
against the app and through weft, and the two compared.

Usage (from the repository, with the venv scripts/install-test-peers.sh makes):

    target/test-tools/py/bin/python proxy/tests/peers/compat/compat.py \
        --weft target/release/weft [--only CASE ...] [--json [FILE]] [--verbose]

Servers (started from the venv this script runs in, on free 127.0.0.1 ports):
  uv  uvicorn (h11)     Starlette app  HTTP/1.1
  hc  hypercorn         Starlette app  HTTP/1.1 and h2c prior knowledge
  gu  gunicorn gthread  Flask app      HTTP/1.1
weft gets, per app, a cleartext listener (HTTP/1.1 + h2c), a TLS one (ALPN h2 and
http/1.1) and an HTTP/3 one (QUIC on UDP, on the TLS listener's port number); the uv and
gu listeners get a /slow-upload route with a 2 s timeout. A second
weft process carries the `proxy_100_continue: true` listeners, so that a binary that does
not know the option still runs everything else.

Clients: httpx (HTTP/1.1, h2c, HTTP/1.1 and h2 over TLS), aioquic (HTTP/3, h3client.py
beside this file), curl (--http1.1, --http2-prior-knowledge, https with h2), ab
(HTTP/1.0, with and without -k), h2load (h2c) and the websockets client.

A case's direct run speaks the client's protocol when the app speaks it, otherwise the
nearest one the app speaks (HTTP/1.1, cleartext): the app and the client should see the
same through weft as they do then. Intended differences are not compared:
x-forwarded-for / x-forwarded-proto (checked to be present through weft only), date,
server, via, and what only frames a hop (connection, keep-alive, transfer-encoding).

--limits adds the cases of limitations weft's README documents (none at present);
--serve SECONDS only starts everything and
prints where, to reproduce by hand. See README.md beside this file.

Exit status 0 only if every case matches.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.dirname(sys.executable)

# Deviations issue 25 found and weft fixed, kept as regression cases (each also has an
# end-to-end test in proxy/tests/e2e/compat.rs).
KNOWN = {
    "a": "HTTP/2 and HTTP/3 split cookie fields must be joined with '; ' for an HTTP/1.1 app",
    "b": "slow upload through a route with a 2s timeout must not be cut off (504)",
    "c": "a 17 KB request header must pass over HTTP/1.1, HTTP/2 and HTTP/3 alike",
    "d": "proxy_100_continue: the client must send no body before the app's 404",
}

SERVER_LIFETIME = 300  # seconds (a run takes ~20-30); every child is also killed at the end
CLIENT_TIMEOUT = 40

# ----------------------------------------------------------------------------------
# Deterministic content (the same as the apps').
_BLOCK = random.Random(20261201).randbytes(65521)


def content(size: int, offset: int = 0) -> bytes:
    out = bytearray()
    pos = offset
    while len(out) < size:
        start = pos % len(_BLOCK)
        take = min(len(_BLOCK) - start, size - len(out))
        out += _BLOCK[start : start + take]
        pos += take
    return bytes(out)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ----------------------------------------------------------------------------------
# Processes


class Procs:
    """Children in their own process groups with a bounded lifetime; stopped by pid."""

    def __init__(self, workdir: str, lifetime: int = SERVER_LIFETIME):
        self.workdir = workdir
        self.lifetime = lifetime
        self.procs: list[tuple[str, subprocess.Popen, str]] = []
        self.lock = threading.Lock()

    def start(self, name: str, argv: list[str], env=None, cwd=None, lifetime=None):
        lifetime = lifetime or self.lifetime
        log = os.path.join(self.workdir, f"{name}.log")
        with open(log, "wb") as f:
            p = subprocess.Popen(
                ["timeout", "-k", "3", str(lifetime)] + argv,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                cwd=cwd,
            )
        with self.lock:
            self.procs.append((name, p, log))
        return p, log

    def stop_all(self):
        with self.lock:
            procs = list(self.procs)
        for _, p, _ in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 4
        for _, p, _ in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for _, p, _ in procs:
            # The group too: gunicorn's worker, anything the server forked.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass


def free_port(udp: bool = False) -> int:
    """A free TCP port number on 127.0.0.1; with udp, free for UDP as well (a TLS listener
    and the HTTP/3 listener beside it share the number)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not udp:
            return port
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free for both TCP and UDP")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def wait_ports(ports: list[int], proc: subprocess.Popen, log: str, timeout: float, marker: str | None = None):
    """None when every port accepts (and the marker is logged); else why not."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return f"exited with {proc.returncode}: " + tail(log)
        ready = all(port_open(p) for p in ports)
        if ready and marker:
            with open(log, "rb") as f:
                ready = marker.encode() in f.read()
        if ready:
            return None
        time.sleep(0.05)
    return f"not ready after {timeout}s: " + tail(log)


def tail(path: str, n: int = 6) -> str:
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in lines]
    return " | ".join(lines[-n:])


# ----------------------------------------------------------------------------------
# The world: apps, weft, listeners


@dataclass
class App:
    key: str
    server: str
    framework: str
    port: int
    h2: bool  # speaks h2c prior knowledge directly
    ws: bool


@dataclass
class World:
    workdir: str
    apps: dict[str, App]
    weft: dict[str, int] = field(default_factory=dict)  # listener name -> port
    weft_error: str | None = None
    weft100_error: str | None = None
    cert: str = ""
    key: str = ""
    files: dict[str, str] = field(default_factory=dict)

    def url(self, app: str, mode: str, through: bool, path: str) -> str:
        if not through:
            return f"http://127.0.0.1:{self.apps[app].port}{path}"
        if mode == "h3":
            return f"https://127.0.0.1:{self.weft[app + '-h3']}{path}"
        tls = mode.endswith("tls")
        name = app + ("-tls" if tls else "")
        return f"{'https' if tls else 'http'}://127.0.0.1:{self.weft[name]}{path}"


def is_tls(mode: str) -> bool:
    """Whether a client->weft mode runs over TLS (HTTP/3 always does)."""
    return mode.endswith("tls") or mode == "h3"


def direct_mode(mode: str, app: App) -> str:
    """The protocol a direct run uses: the client's if the app speaks it."""
    if mode == "h3":
        # No app here speaks HTTP/3 (nor TLS): h3's nearest is h2c, else HTTP/1.1, by an
        # httpx client that keeps no cookies, as h3client keeps none.
        return ("h2c" if app.h2 else "h1") + NO_JAR
    if mode in ("h2c", "h2tls"):
        return "h2c" if app.h2 else "h1"
    if mode == "h1tls":
        return "h1"
    return mode


def start_world(procs: Procs, weft_bin: str, workdir: str) -> World:
    env = dict(os.environ)
    env["COMPAT_FILE"] = os.path.join(workdir, "file.bin")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    with open(env["COMPAT_FILE"], "wb") as f:
        f.write(content(100_000, 7))
    os.utime(env["COMPAT_FILE"], (1_700_000_000, 1_700_000_000))

    apps = {
        "uv": App("uv", "uvicorn", "Starlette", free_port(), h2=False, ws=True),
        "hc": App("hc", "hypercorn", "Starlette", free_port(), h2=True, ws=True),
        "gu": App("gu", "gunicorn", "Flask", free_port(), h2=False, ws=False),
    }
    world = World(workdir, apps)
    py = sys.executable
    hc_conf = os.path.join(workdir, "hypercorn.toml")
    with open(hc_conf, "w") as f:
        # hypercorn's h2 strands a connection's open streams (until its keep-alive timeout)
        # once it has said GOAWAY after keep_alive_max_requests (1000 by default): weft
        # keeps one pooled connection per worker, so lift the cap.
        f.write("h11_max_incomplete_size = 65536\nkeep_alive_max_requests = 1000000000\n")
    started = []
    started.append(("uv", procs.start("uvicorn", [
        py, "-m", "uvicorn", "asgi_app:app", "--host", "127.0.0.1", "--port", str(apps["uv"].port),
        "--http", "h11", "--ws", "websockets-sansio", "--h11-max-incomplete-event-size", "65536",
        "--no-access-log", "--log-level", "warning", "--timeout-keep-alive", "30",
    ], env=env, cwd=HERE)))
    started.append(("hc", procs.start("hypercorn", [
        py, "-m", "hypercorn", "-c", hc_conf, "asgi_app:app", "-b", f"127.0.0.1:{apps['hc'].port}",
        "--log-level", "warning", "--keep-alive", "30",
    ], env=env, cwd=HERE)))
    started.append(("gu", procs.start("gunicorn", [
        py, "-m", "gunicorn", "wsgi_app:app", "-b", f"127.0.0.1:{apps['gu'].port}", "-w", "1",
        "-k", "gthread", "--threads", "24", "--keep-alive", "30", "--log-level", "warning",
        "--chdir", HERE,
    ], env=env, cwd=HERE)))

    # A self-signed certificate for weft's TLS listeners.
    world.cert = os.path.join(workdir, "cert.pem")
    world.key = os.path.join(workdir, "key.pem")
    global H3_CAFILE
    H3_CAFILE = world.cert
    subprocess.run([
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", world.key, "-out", world.cert,
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ], check=True, capture_output=True, timeout=20)

    clusters = {
        k: {"endpoints": [f"127.0.0.1:{a.port}"], "protocol": "http2" if a.h2 else "http1",
            "connect_timeout": "1s"}
        for k, a in apps.items()
    }

    def routes(cluster: str, slow: bool):
        r = []
        if slow:
            r.append({"name": f"{cluster}-slow", "match": {"prefix": "/slow-upload"},
                      "cluster": cluster, "timeout": "2s"})
        r.append({"name": f"{cluster}-all", "cluster": cluster, "timeout": "60s"})
        return r

    tls = {"certificates": [{"cert": world.cert, "key": world.key}]}
    listeners = []
    for k in apps:
        for suffix in ("", "-tls", "-h3"):
            name = k + suffix
            if suffix == "-h3":
                # HTTP/3 (QUIC on UDP) on the TLS listener's port number.
                world.weft[name] = world.weft[k + "-tls"]
            else:
                world.weft[name] = free_port(udp=suffix == "-tls")
            l = {"name": name, "address": f"127.0.0.1:{world.weft[name]}", "routes": routes(k, k != "hc")}
            if suffix == "-h3":
                l["protocol"] = "http3"
            if suffix:
                l["tls"] = tls
            listeners.append(l)
    main_conf = os.path.join(workdir, "weft.yaml")
    with open(main_conf, "w") as f:  # JSON is YAML
        json.dump({"admin": {"address": "127.0.0.1:0"}, "listeners": listeners, "clusters": clusters}, f, indent=1)

    listeners100 = []
    for k in ("uv", "gu"):
        name = k + "-100c"
        world.weft[name] = free_port()
        listeners100.append({"name": name, "address": f"127.0.0.1:{world.weft[name]}",
                             "proxy_100_continue": True, "routes": routes(k, True)})
    conf100 = os.path.join(workdir, "weft-100-continue.yaml")
    with open(conf100, "w") as f:
        json.dump({"admin": {"address": "127.0.0.1:0"}, "listeners": listeners100, "clusters": clusters}, f, indent=1)

    for k, (p, log) in started:
        err = wait_ports([apps[k].port], p, log, 20)
        if err:
            raise RuntimeError(f"{apps[k].server} did not start: {err}")

    wenv = dict(os.environ)
    wenv.setdefault("WEFT_LOG", "warn")
    p, log = procs.start("weft", [weft_bin, "run", "--no-watch", "--config", main_conf], env=wenv)
    p100, log100 = procs.start("weft-100c", [weft_bin, "run", "--no-watch", "--config", conf100], env=wenv)
    main_ports = [world.weft[l["name"]] for l in listeners if l.get("protocol") != "http3"]
    world.weft_error = wait_ports(main_ports, p, log, 15, "weft ready")
    world.weft100_error = wait_ports([world.weft[l["name"]] for l in listeners100], p100, log100, 15, "weft ready")
    if world.weft_error:
        raise RuntimeError(f"weft did not start: {world.weft_error}")
    return world


# ----------------------------------------------------------------------------------
# Normalising and comparing

IGNORED_RESPONSE = {"date", "server", "via", "connection", "keep-alive", "proxy-connection",
                    "transfer-encoding", "x-app-proto"}
IGNORED_REQUEST = {"x-forwarded-for", "x-forwarded-proto", "via", "connection", "keep-alive",
                   "proxy-connection"}


def norm_headers(items, ignored=IGNORED_RESPONSE) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in items:
        k = k.lower()
        if k in ignored or k.startswith("x-forwarded-"):
            continue
        out.setdefault(k, []).append(v)
    return dict(sorted(out.items()))


def norm_request_headers(pairs, through: bool, scheme: str, problems: list[str]) -> dict[str, list[str]]:
    """What the app saw, less what only weft adds (checked here: present through weft only)."""
    got = {}
    for k, v in pairs:
        got.setdefault(k.lower(), []).append(v)
    xff, xfp = got.get("x-forwarded-for"), got.get("x-forwarded-proto")
    if through:
        if xff != ["127.0.0.1"]:
            problems.append(f"x-forwarded-for through weft: {xff}")
        if xfp != [scheme]:
            problems.append(f"x-forwarded-proto through weft: {xfp} (expected {scheme})")
    elif xff or xfp:
        problems.append(f"x-forwarded-* seen directly: {xff} {xfp}")
    out = norm_headers(pairs, IGNORED_REQUEST)
    if "host" in out:
        out["host"] = [re.sub(r":\d+$", ":PORT", h) for h in out["host"]]
    return out


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(f"{p}: direct <absent>, weft {short(b[k])}")
            elif k not in b:
                out.append(f"{p}: direct {short(a[k])}, weft <absent>")
            else:
                out += diff(a[k], b[k], p)
        return out
    if a != b:
        return [f"{path}: direct {short(a)}, weft {short(b)}"]
    return []


def short(v: Any, n: int = 140) -> str:
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


# ----------------------------------------------------------------------------------
# Clients

_clients: dict[tuple[int, str], Any] = {}


NO_JAR = "-nojar"  # a direct-run mode suffix: the httpx client stores no cookies


def httpx_client(mode: str):
    import httpx

    key = (threading.get_ident(), mode)
    c = _clients.get(key)
    if c is None:
        kw = dict(timeout=httpx.Timeout(CLIENT_TIMEOUT), follow_redirects=False)
        no_jar = mode.endswith(NO_JAR)
        mode = mode.removesuffix(NO_JAR)
        if mode == "h1":
            c = httpx.Client(http1=True, http2=False, **kw)
        elif mode == "h2c":
            c = httpx.Client(http1=False, http2=True, **kw)
        elif mode == "h1tls":
            c = httpx.Client(http1=True, http2=False, verify=False, **kw)
        elif mode == "h2tls":
            c = httpx.Client(http1=True, http2=True, verify=False, **kw)
        else:
            raise ValueError(mode)
        if no_jar:
            # A thread's client otherwise keeps the cookies an earlier case was set
            # (set-cookie-x3) and sends them on: h3client has none to send.
            from http.cookiejar import DefaultCookiePolicy

            c.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        _clients[key] = c
    return c


@dataclass
class Obs:
    """One run's observation: `cmp` is compared, the rest is shown."""

    cmp: dict
    summary: str
    client_proto: str = "?"
    app_proto: str = "?"
    problems: list = field(default_factory=list)  # failures within one run


H3_CAFILE: str | None = None  # the suite's self-signed certificate, set by start_world


class H3Resp:
    """An h3client.H3Response with the few attributes of an httpx.Response the cases read."""

    def __init__(self, method: str, r):
        import httpx

        self.status_code = r.status
        self.headers = httpx.Headers(r.headers)
        self.http_version = r.http_version
        self.request = httpx.Request(method, "https://h3.invalid/")
        self.h3 = r


def h3_request(method, url, headers=None, body=None):
    """One HTTP/3 request (h3client.py) that carries what the httpx client of the direct run
    sends: its default fields (accept, accept-encoding, user-agent; not the
    connection-specific ones HTTP/3 forbids) replaced by the case's, as httpx merges them.
    The certificate is verified against the suite's self-signed one (IP SAN 127.0.0.1)."""
    import httpx
    from urllib.parse import urlsplit

    import h3client

    u = urlsplit(url)
    merged = httpx.Headers(httpx_client("h1").headers)
    merged.update(httpx.Headers(headers or []))
    fields = [(k, v) for k, v in merged.multi_items() if k.lower() not in h3client.CONNECTION_FIELDS]
    r = h3client.request(u.hostname, u.port, method, u.path + ("?" + u.query if u.query else ""), fields, body,
                         authority=u.netloc, cafile=H3_CAFILE, timeout=CLIENT_TIMEOUT)
    return H3Resp(method, r)


def httpx_request(mode, method, url, headers=None, body=None, through=False):
    """(response, raw body bytes, seconds) with the raw (not decoded) body."""
    if mode == "h3":
        t0 = time.time()
        r = h3_request(method, url, headers, body)
        return r, r.h3.body, time.time() - t0
    c = httpx_client(mode)
    t0 = time.time()
    with c.stream(method, url, headers=headers, content=body) as r:
        raw = b"".join(r.iter_raw())
    return r, raw, time.time() - t0


def http_obs(r, raw: bytes, *, body: str = "sha", drop=(), problems=None) -> Obs:
    """Status, compared headers and body of an httpx response."""
    problems = problems if problems is not None else []
    hdrs = norm_headers(r.headers.multi_items())
    for d in drop:
        hdrs.pop(d, None)
    cl = r.headers.get("content-length")
    bodiless = r.request.method == "HEAD" or r.status_code in (204, 304) or r.status_code < 200
    if cl is not None and not bodiless and int(cl) != len(raw):
        problems.append(f"content-length {cl} but {len(raw)} body bytes")
    if bodiless and raw:
        problems.append(f"{len(raw)} body bytes on a bodiless response")
    cmp = {"status": r.status_code, "headers": hdrs}
    if body == "sha":
        cmp["body"] = {"sha256": sha(raw)[:16], "length": len(raw)}
    elif body == "json":
        try:
            cmp["body"] = json.loads(raw)
        except ValueError:
            cmp["body"] = {"not-json": raw[:200].decode("latin-1")}
    return Obs(cmp, f"{r.status_code} {len(raw)}B", r.http_version, r.headers.get("x-app-proto", "?"), problems)


# curl ------------------------------------------------------------------------------

CURL_MODE = {"h1": ["--http1.1"], "h2c": ["--http2-prior-knowledge"], "h2tls": ["--http2", "-k"],
             "h1tls": ["--http1.1", "-k"]}


def run_curl(mode: str, url: str, args: list[str], workdir: str, timeout=CLIENT_TIMEOUT):
    """(status, version, size_upload, final response's headers, body, stderr, every head as received)."""
    fd, hfile = tempfile.mkstemp(dir=workdir, suffix=".h")
    os.close(fd)
    fd, bfile = tempfile.mkstemp(dir=workdir, suffix=".b")
    os.close(fd)
    try:
        cp = subprocess.run(
            ["curl", "-sS", "--max-time", str(timeout), "-D", hfile, "-o", bfile,
             "-w", "%{http_code} %{http_version} %{size_upload}"] + CURL_MODE[mode] + args + [url],
            capture_output=True, timeout=timeout + 10,
        )
        with open(hfile, "rb") as f:
            heads = f.read().decode("latin-1")
        with open(bfile, "rb") as f:
            body = f.read()
    finally:
        os.unlink(hfile)
        os.unlink(bfile)
    parts = cp.stdout.decode().split()
    status, version, up = (int(parts[0]), parts[1], int(float(parts[2]))) if len(parts) == 3 else (0, "?", 0)
    # the last head (after any 100 Continue)
    blocks = [b for b in re.split(r"\r?\n\r?\n", heads) if b.strip()]
    items = []
    if blocks:
        for line in blocks[-1].splitlines()[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                items.append((k.strip(), v.strip()))
    return status, version, up, items, body, cp.stderr.decode("utf-8", "replace").strip(), heads


def curl_obs(mode, url, args, workdir, body="sha", drop=()) -> Obs:
    status, version, up, items, raw, err, _ = run_curl(mode, url, args, workdir)
    hdrs = norm_headers(items)
    app_proto = next((v for k, v in items if k.lower() == "x-app-proto"), "?")
    for d in drop:
        hdrs.pop(d, None)
    cmp = {"status": status, "headers": hdrs}
    if body == "sha":
        cmp["body"] = {"sha256": sha(raw)[:16], "length": len(raw)}
    elif body == "json":
        try:
            cmp["body"] = json.loads(raw)
        except ValueError:
            cmp["body"] = {"not-json": raw[:200].decode("latin-1")}
    if err:
        cmp["curl_error"] = err
    return Obs(cmp, f"{status} {len(raw)}B", "HTTP/" + version if version not in ("0", "?") else "no answer", app_proto)


# ----------------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    name: str  # what is tested
    client: str  # httpx, aioquic, curl, ab, h2load, websockets
    mode: str  # client->weft protocol asked for: h1, h2c, h1tls, h2tls, h3, h1.0, h1.0-k, ws, wss
    app: str
    run: Callable[["World", str, bool], Obs]  # (world, mode, through) -> Obs
    known: str | None = None
    limit: str | None = None  # a limitation weft's README documents: run only with --limits
    phase: int = 1  # 0: timing-sensitive or slow (run first, few at once), 2: load (serially)
    parallel_sides: bool = False  # run direct and through at the same time

    @property
    def id(self) -> str:
        return f"{self.name}/{self.client}-{self.mode}/{self.app}"


def echo_obs(world, mode, app, through, method="GET", path="/echo?a=1&b=2&b=3&sp=%20x%2Fy",
             headers=None, body=None) -> Obs:
    headers = headers or [("x-custom", "v1"), ("x-multi", "1"), ("x-multi", "2"),
                          ("accept-language", "en, fr;q=0.5"), ("x-empty", "")]
    url = world.url(app, mode, through, path)
    m = mode if through else direct_mode(mode, world.apps[app])
    r, raw, _ = httpx_request(m, method, url, headers=headers, body=body)
    problems = []
    o = http_obs(r, raw, body="json", drop=("content-length",), problems=problems)
    b = o.cmp["body"]
    if isinstance(b, dict) and "headers" in b:
        o.app_proto = b.pop("http_version")
        scheme = "https" if (through and is_tls(mode)) else "http"
        b["headers"] = norm_request_headers(b["headers"], through, scheme, problems)
    return o


def c_echo(world, mode, through, app):
    return echo_obs(world, mode, app, through)


def c_echo_post(world, mode, through, app):
    return echo_obs(world, mode, app, through, method="POST", path="/echo?post=1",
                    headers=[("content-type", "application/octet-stream")], body=content(100_000))


def simple(path, method="GET", headers=None, body=None, drop=(), body_mode="sha"):
    def run(world, mode, through, app):
        m = mode if through else direct_mode(mode, world.apps[app])
        r, raw, _ = httpx_request(m, method, world.url(app, mode, through, path), headers=headers,
                                  body=body() if callable(body) else body)
        return http_obs(r, raw, body=body_mode, drop=drop)

    return run


def c_gzip(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    r, raw, _ = httpx_request(m, "GET", world.url(app, mode, through, "/gzip"), headers=[("accept-encoding", "gzip")])
    o = http_obs(r, raw, body=None)
    try:
        plain = gzip.decompress(raw) if r.headers.get("content-encoding") == "gzip" else raw
    except OSError as e:
        plain = repr(e).encode()
    # gzip's header holds the time it was made: compare the decoded body, and the length.
    o.cmp["body"] = {"encoded_length": len(raw), "decoded_sha256": sha(plain)[:16], "decoded_length": len(plain)}
    return o


def c_multirange(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    r, raw, _ = httpx_request(m, "GET", world.url(app, mode, through, "/file"),
                              headers=[("range", "bytes=0-9,100-199,-50")])
    ct = r.headers.get("content-type", "")
    bnd = ct.split("boundary=")[-1] if "boundary=" in ct else None
    o = http_obs(r, raw, body=None)
    # Starlette draws a random boundary per response: compare with it replaced.
    if bnd:
        o.cmp["headers"]["content-type"] = [ct.replace(bnd, "BOUNDARY")]
        raw = raw.replace(bnd.encode(), b"BOUNDARY")
    o.cmp["body"] = {"sha256": sha(raw)[:16], "length": len(raw)}
    return o


def c_upload(world, mode, through, app, size=5 * 1024 * 1024):
    body = content(size, 3)
    m = mode if through else direct_mode(mode, world.apps[app])
    r, raw, _ = httpx_request(m, "POST", world.url(app, mode, through, "/upload"), body=body,
                              headers=[("content-type", "application/octet-stream")])
    o = http_obs(r, raw, body="json")
    if r.status_code == 200:
        want = {"sha256": sha(body), "length": size}
        if o.cmp["body"] != want:
            o.problems.append(f"app got {o.cmp['body']} not {want}")
    return o


def c_download_3mb(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    r, raw, _ = httpx_request(m, "GET", world.url(app, mode, through, "/download?size=3000000&chunk=65536"))
    o = http_obs(r, raw)
    if r.status_code == 200 and o.cmp["body"]["sha256"] != sha(content(3_000_000))[:16]:
        o.problems.append("downloaded bytes differ from what the app sent")
    return o


def c_cookies_one(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    r, raw, _ = httpx_request(m, "GET", world.url(app, mode, through, "/cookies"),
                              headers=[("cookie", "session=abc; csrf=xyz")])
    return http_obs(r, raw, body="json")


WANT_COOKIES = {"session": "abc", "csrf": "xyz"}


def split_cookie_headers(direct_proto: str):
    # HTTP/2 may split Cookie into fields; HTTP/1.1 has one field joined with "; "
    # (RFC 9113 8.2.3): a direct HTTP/1.1 run sends what an HTTP/2->1.1 hop must make.
    if direct_proto in ("h1", "h1" + NO_JAR):
        return [("cookie", "session=abc; csrf=xyz")]
    return [("cookie", "session=abc"), ("cookie", "csrf=xyz")]


def c_cookies_split(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    r, raw, _ = httpx_request(m, "GET", world.url(app, mode, through, "/cookies"), headers=split_cookie_headers(m))
    o = http_obs(r, raw, body="json")
    if o.cmp["body"] != WANT_COOKIES:
        o.problems.append(f"app parsed cookies {o.cmp['body']}, want {WANT_COOKIES}")
    o.summary = f"{r.status_code} {json.dumps(o.cmp['body'], separators=(',', ':'))}"
    return o


BIG = "b" * 17000


def c_big_header(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    r, raw, _ = httpx_request(m, "GET", world.url(app, mode, through, "/big-header"), headers=[("x-big", BIG)])
    o = http_obs(r, raw, body="json")
    o.summary = f"{r.status_code} {len(raw)}B"
    return o


def c_sse(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    url = world.url(app, mode, through, "/sse?n=5&gap=0.2")
    arrivals, events = [], []
    buf = b""

    def feed(chunk, at):
        nonlocal buf
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            events.append(ev.decode())
            arrivals.append(at)

    if m == "h3":
        # h3client gives each DATA event's arrival time (since the request went).
        r = h3_request("GET", url)
        for at, chunk in r.h3.chunks:
            feed(chunk, at)
    else:
        c = httpx_client(m)
        t0 = time.time()
        with c.stream("GET", url) as r:
            for chunk in r.iter_raw():
                feed(chunk, time.time() - t0)
    o = http_obs(r, b"", body=None)
    gaps = [round(b - a, 3) for a, b in zip(arrivals, arrivals[1:])]
    o.cmp["events"] = events
    # Events 200 ms apart arriving one by one: they span most of the stream's 0.8 s and
    # most gaps are near 200 ms. Buffered until the end, they would arrive together.
    # (Not min(gaps) or the first arrival: on a loaded 2-core machine one event can be
    # late and the next one then close behind it, directly as through weft.)
    o.cmp["incremental"] = (
        bool(gaps)
        and arrivals[-1] - arrivals[0] >= 0.5
        and sorted(gaps)[len(gaps) // 2] >= 0.12
    )
    o.summary = f"{r.status_code} {len(events)} ev, gaps {','.join(f'{g * 1000:.0f}' for g in gaps)}ms"
    if not o.cmp["incremental"]:
        o.problems.append(f"events not incremental: first at {arrivals[:1]}, gaps {gaps}")
    return o


# curl cases


def cu_echo(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    o = curl_obs(m, world.url(app, mode, through, "/echo?c=1&d=%2F"), ["-H", "X-Custom: v1", "-H", "X-Multi: 1",
                 "-H", "X-Multi: 2"], world.workdir, body="json", drop=("content-length",))
    b = o.cmp["body"]
    if isinstance(b, dict) and "headers" in b:
        o.app_proto = b.pop("http_version")
        scheme = "https" if (through and mode.endswith("tls")) else "http"
        b["headers"] = norm_request_headers(b["headers"], through, scheme, o.problems)
    return o


def cu_upload(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    o = curl_obs(m, world.url(app, mode, through, "/upload"), ["-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                 "--data-binary", "@" + world.files["5m"]], world.workdir, body="json")
    want = {"sha256": sha(content(5 * 1024 * 1024, 3)), "length": 5 * 1024 * 1024}
    if o.cmp["status"] == 200 and o.cmp["body"] != want:
        o.problems.append(f"app got {o.cmp['body']}")
    return o


def cu_download(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    o = curl_obs(m, world.url(app, mode, through, "/download?size=3000000&chunk=65536"), [], world.workdir)
    if o.cmp["status"] == 200 and o.cmp["body"]["sha256"] != sha(content(3_000_000))[:16]:
        o.problems.append("downloaded bytes differ from what the app sent")
    return o


def cu_cookies_split(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    args = []
    for k, v in split_cookie_headers(m):
        args += ["-H", f"Cookie: {v}"]
    o = curl_obs(m, world.url(app, mode, through, "/cookies"), args, world.workdir, body="json")
    if o.cmp["body"] != WANT_COOKIES:
        o.problems.append(f"app parsed cookies {o.cmp['body']}, want {WANT_COOKIES}")
    o.summary = f"{o.cmp['status']} {json.dumps(o.cmp['body'], separators=(',', ':'))}"
    return o


def cu_big_header(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    return curl_obs(m, world.url(app, mode, through, "/big-header"), ["-H", f"x-big: {BIG}"], world.workdir, body="json")


def cu_slow_upload(world, mode, through, app):
    m = mode if through else direct_mode(mode, world.apps[app])
    t0 = time.time()
    o = curl_obs(m, world.url(app, mode, through, "/slow-upload"), ["-H", "Expect:", "--limit-rate", "1M",
                 "-H", "Content-Type: application/octet-stream", "--data-binary", "@" + world.files["6m"]],
                 world.workdir, body="json")
    o.summary = f"{o.cmp['status']} after {time.time() - t0:.1f}s"
    return o


def cu_expect_refuse(world, mode, through, app):
    if through and world.weft100_error:
        return Obs({"weft": "refused the proxy_100_continue config"},
                   "weft refused config: " + world.weft100_error[:150])
    url = (f"http://127.0.0.1:{world.weft[app + '-100c']}/refuse" if through
           else world.url(app, mode, False, "/refuse"))
    status, version, up, items, raw, err, heads = run_curl(
        "h1", url, ["-H", "Expect: 100-continue", "--expect100-timeout", "5",
                    "-H", "Content-Type: application/octet-stream", "--data-binary", "@" + world.files["3m"]],
        world.workdir)
    app_proto = next((v for k, v in items if k.lower() == "x-app-proto"), "?")
    got_100 = bool(re.search(r"^HTTP/\S+ 100", heads, re.M))
    # uvicorn answers 100 Continue only when the app reads the body: no body may go.
    # gunicorn answers 100 Continue as soon as it has the head, and then how much body
    # curl sends before the 404 is a race: there, the 100 must be relayed.
    if got_100:
        body_state = "may go (100 Continue received)"
    elif up == 0:
        body_state = "none"
    else:
        body_state = "sent without a 100 Continue"
    return Obs({"status": status, "100_continue": got_100, "body_before_answer": body_state},
               f"{status}{' after 100' if got_100 else ''}, uploaded {up}B", "HTTP/" + version, app_proto)


# websockets ----------------------------------------------------------------------


def ws_case(world, mode, through, app):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    tls = through and mode == "wss"
    if through:
        port = world.weft[app + ("-tls" if tls else "")]
    else:
        port = world.apps[app].port
    uri = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/ws"
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    msgs = ["hello", "ünïcödé ✓", "x" * 65536, content(1024 * 1024, 11), content(10, 5)]
    got = []
    cmp: dict[str, Any] = {}
    try:
        with connect(uri, subprotocols=["chat.v1", "chat.v2"], max_size=4 * 1024 * 1024, ssl=ctx,
                     open_timeout=10, close_timeout=5) as ws:
            cmp["subprotocol"] = ws.subprotocol
            hdrs = norm_headers(ws.response.headers.raw_items())
            hdrs.pop("sec-websocket-accept", None)  # depends on the client's random key; checked by the client
            cmp["handshake_status"] = ws.response.status_code
            cmp["handshake_headers"] = hdrs
            for m in msgs:
                ws.send(m)
                r = ws.recv(timeout=10)
                got.append(r == m)
            ws.send("close:4321")
            try:
                ws.recv(timeout=10)
                cmp["close"] = "no close"
            except ConnectionClosed as e:
                cmp["close"] = {"code": e.rcvd.code if e.rcvd else None, "reason": e.rcvd.reason if e.rcvd else None}
    except Exception as e:  # noqa: BLE001 - the failure is the observation
        cmp["error"] = f"{type(e).__name__}: {e}"[:200]
    cmp["echoed"] = got
    summary = (f"{cmp.get('handshake_status', '-')} proto={cmp.get('subprotocol')} "
               f"echo {sum(got)}/{len(msgs)} close={cmp.get('close', {}).get('code') if isinstance(cmp.get('close'), dict) else cmp.get('close')}")
    if "error" in cmp:
        summary = cmp["error"][:60]
    return Obs(cmp, summary, "HTTP/1.1 upgrade" + (" (TLS)" if tls else ""), "1.1 upgrade")


# load clients -------------------------------------------------------------------


def seen(world, app, tag) -> str:
    import httpx

    try:
        r = httpx.get(f"http://127.0.0.1:{world.apps[app].port}/_seen?tag={tag}", timeout=5)
        return ",".join(r.json()) or "?"
    except Exception:  # noqa: BLE001
        return "?"


def ab_case(world, mode, through, app):
    tag = f"ab{random.randrange(1 << 30)}"
    url = world.url(app, "h1", through, f"/bytes?size=4096&tag={tag}")
    n = 400
    args = ["ab", "-q", "-n", str(n), "-c", "8", "-s", "20"] + (["-k"] if mode == "h1.0-k" else []) + [url]
    cp = subprocess.run(args, capture_output=True, timeout=60)
    out = cp.stdout.decode("utf-8", "replace")

    def num(label):
        m = re.search(rf"^{label}:\s+(\d+)", out, re.M)
        return int(m.group(1)) if m else None

    cmp = {"exit": cp.returncode, "complete": num("Complete requests"), "failed": num("Failed requests"),
           "non_2xx": num("Non-2xx responses") or 0, "document_length": num("Document Length")}
    ka = num("Keep-Alive requests")
    o = Obs(cmp, f"{cmp['complete']} done, {cmp['failed']} failed, {cmp['non_2xx']} non-2xx" +
            (f", {ka} kept-alive" if ka is not None else ""), "HTTP/1.0",
            seen(world, app, tag))
    if cp.returncode != 0:
        o.problems.append("ab: " + (cp.stderr.decode()[-200:] or out[-200:]))
    if cmp["failed"] != 0 or cmp["non_2xx"] != 0 or cmp["complete"] != n:
        o.problems.append(f"ab: {cmp}")
    return o


def h2load_case(world, mode, through, app):
    tag = f"h2l{random.randrange(1 << 30)}"
    a = world.apps[app]
    url = world.url(app, "h2c", through, f"/bytes?size=4096&tag={tag}")
    n = 600
    args = ["h2load", "-n", str(n), "-c", "4", "-m", "8", "-T", "20", "-N", "20"]
    if not through and not a.h2:
        args.append("--h1")
    cp = subprocess.run(args + [url], capture_output=True, timeout=60)
    out = cp.stdout.decode("utf-8", "replace")
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    cmp = {"exit": cp.returncode}
    if m:
        cmp.update(total=int(m.group(1)), succeeded=int(m.group(4)), failed=int(m.group(5)),
                   errored=int(m.group(6)), timeout=int(m.group(7)))
    if s:
        cmp["2xx"] = int(s.group(1))
    o = Obs(cmp, f"{cmp.get('succeeded')}/{n} ok, {cmp.get('2xx')} 2xx", proto.group(1) if proto else "?",
            seen(world, app, tag))
    if cmp.get("succeeded") != n or cmp.get("2xx") != n:
        o.problems.append(f"h2load: {cmp} {out[-300:]}")
    return o


# ----------------------------------------------------------------------------------
# The matrix

ALL_APPS = ("uv", "hc", "gu")
ASGI = ("uv", "hc")
HTTPX_MODES = ("h1", "h2c", "h1tls", "h2tls")
CURL_MODES = ("h1", "h2c", "h2tls")


def bind(fn, app):
    return lambda world, mode, through: fn(world, mode, through, app)


def build_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name, client, modes, apps, fn, **kw):
        for app in apps:
            for mode in modes:
                cases.append(Case(name, client, mode, app, bind(fn, app), **kw))

    # httpx, every protocol
    add("echo", "httpx", HTTPX_MODES, ALL_APPS, c_echo)
    add("echo-post", "httpx", HTTPX_MODES, ALL_APPS, c_echo_post)
    add("upload-5MiB", "httpx", HTTPX_MODES, ALL_APPS, c_upload)
    add("cookies", "httpx", HTTPX_MODES, ALL_APPS, c_cookies_one)
    add("head-bytes", "httpx", HTTPX_MODES, ALL_APPS, simple("/bytes?size=1000", "HEAD"))
    # Not against hypercorn: hypercorn 0.18 fails the whole HTTP/2 connection (KeyError in
    # h2.py _handle_events) when DATA arrives for a stream it has already answered.
    add("refuse-small", "httpx", HTTPX_MODES, ("uv", "gu"), simple("/refuse", "POST", body=content(2_000)))
    add("download-1MiB", "httpx", HTTPX_MODES, ASGI, simple("/download?size=1048576"))
    for code in (201, 204, 404, 418, 500, 503):
        add(f"status-{code}", "httpx", HTTPX_MODES, ASGI, simple(f"/status/{code}"))
    add("head-file", "httpx", HTTPX_MODES, ASGI, simple("/file", "HEAD"))
    add("set-cookie-x3", "httpx", HTTPX_MODES, ASGI, simple("/set-cookies"))
    add("redirect", "httpx", HTTPX_MODES, ASGI, simple("/redirect"))
    add("gzip", "httpx", HTTPX_MODES, ASGI, c_gzip)
    add("etag", "httpx", HTTPX_MODES, ASGI, simple("/etag"))
    add("etag-304", "httpx", HTTPX_MODES, ASGI, simple("/etag", headers=[("if-none-match", '"nope", ' + _etag())]))
    add("range", "httpx", HTTPX_MODES, ASGI, simple("/file", headers=[("range", "bytes=100-1099")]))
    add("range-suffix", "httpx", HTTPX_MODES, ASGI, simple("/file", headers=[("range", "bytes=-500")]))
    add("range-multi", "httpx", HTTPX_MODES, ASGI, c_multirange)
    add("range-416", "httpx", HTTPX_MODES, ASGI, simple("/file", headers=[("range", "bytes=999999-")]))
    add("sse", "httpx", HTTPX_MODES, ASGI, c_sse, phase=0)
    # known deviations
    add("cookies-split", "httpx", ("h2c", "h2tls"), ("gu", "uv"), c_cookies_split, known="a")
    add("header-17KB", "httpx", ("h1", "h2c", "h2tls"), ("uv",), c_big_header, known="c")
    add("header-17KB", "httpx", ("h2c", "h2tls"), ("hc",), c_big_header, known="c")

    # HTTP/3 (aioquic, h3client.py), the httpx cases that make sense over it
    add("echo", "aioquic", ("h3",), ALL_APPS, c_echo)
    add("echo-post", "aioquic", ("h3",), ALL_APPS, c_echo_post)
    add("upload-5MiB", "aioquic", ("h3",), ALL_APPS, c_upload)
    add("cookies", "aioquic", ("h3",), ALL_APPS, c_cookies_one)
    add("head-bytes", "aioquic", ("h3",), ALL_APPS, simple("/bytes?size=1000", "HEAD"))
    add("refuse-small", "aioquic", ("h3",), ("uv", "gu"), simple("/refuse", "POST", body=content(2_000)))
    add("download-1MiB", "aioquic", ("h3",), ASGI, simple("/download?size=1048576"))
    add("download-3MB", "aioquic", ("h3",), ASGI, c_download_3mb)
    for code in (201, 204, 404, 418, 500, 503):
        add(f"status-{code}", "aioquic", ("h3",), ASGI, simple(f"/status/{code}"))
    add("head-file", "aioquic", ("h3",), ASGI, simple("/file", "HEAD"))
    add("set-cookie-x3", "aioquic", ("h3",), ASGI, simple("/set-cookies"))
    add("redirect", "aioquic", ("h3",), ASGI, simple("/redirect"))
    add("gzip", "aioquic", ("h3",), ASGI, c_gzip)
    add("etag", "aioquic", ("h3",), ASGI, simple("/etag"))
    add("etag-304", "aioquic", ("h3",), ASGI, simple("/etag", headers=[("if-none-match", '"nope", ' + _etag())]))
    add("range", "aioquic", ("h3",), ASGI, simple("/file", headers=[("range", "bytes=100-1099")]))
    add("range-suffix", "aioquic", ("h3",), ASGI, simple("/file", headers=[("range", "bytes=-500")]))
    add("range-multi", "aioquic", ("h3",), ASGI, c_multirange)
    add("range-416", "aioquic", ("h3",), ASGI, simple("/file", headers=[("range", "bytes=999999-")]))
    add("sse", "aioquic", ("h3",), ASGI, c_sse, phase=0)
    # HTTP/3 clients may split Cookie too (RFC 9114 4.2.1): joined for an HTTP/1.1 app
    add("cookies-split", "aioquic", ("h3",), ("gu", "uv"), c_cookies_split, known="a")
    add("header-17KB", "aioquic", ("h3",), ("uv", "hc"), c_big_header, known="c")

    # curl
    add("echo", "curl", CURL_MODES, ALL_APPS, cu_echo)
    add("upload-5MiB", "curl", CURL_MODES, ALL_APPS, cu_upload)
    add("download-3MB", "curl", CURL_MODES, ASGI, cu_download)
    add("cookies-split", "curl", ("h2c", "h2tls"), ("gu", "uv"), cu_cookies_split, known="a")
    add("header-17KB", "curl", CURL_MODES, ("uv",), cu_big_header, known="c")
    add("header-17KB", "curl", ("h2c", "h2tls"), ("hc",), cu_big_header, known="c")
    add("slow-upload-6MB", "curl", ("h1",), ("uv", "gu"), cu_slow_upload, known="b", phase=0, parallel_sides=True)
    add("slow-upload-6MB", "curl", ("h2c",), ("uv",), cu_slow_upload, known="b", phase=0, parallel_sides=True)
    add("expect-100-refuse", "curl", ("h1",), ("uv", "gu"), cu_expect_refuse, known="d", phase=0)

    # websockets
    add("ws-echo", "websockets", ("ws",), ("uv",), ws_case, phase=0)
    # Upgrades to an HTTP/2 cluster (asked on an HTTP/1.1 connection of their own) and
    # upgrades on TLS listeners (hyper's HTTP/1.1 server side).
    add("ws-echo", "websockets", ("ws",), ("hc",), ws_case, phase=0)
    add("ws-echo", "websockets", ("wss",), ("uv",), ws_case, phase=0)

    # load
    add("ab-400", "ab", ("h1.0", "h1.0-k"), ALL_APPS, ab_case, phase=2)
    add("h2load-600", "h2load", ("h2c",), ALL_APPS, h2load_case, phase=2)
    return cases


def _etag() -> str:
    return '"v1-' + hashlib.sha256(content(4096)).hexdigest()[:16] + '"'


# ----------------------------------------------------------------------------------
# Running


@dataclass
class Result:
    case: Case
    direct: Obs | None = None
    through: Obs | None = None
    diffs: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.diffs


def run_side(case: Case, world: World, through: bool) -> Obs:
    try:
        return case.run(world, case.mode, through)
    except Exception as e:  # noqa: BLE001 - a client error is an observation
        msg = f"{type(e).__name__}: {e}".strip()
        return Obs({"client_error": msg[:200]}, "error: " + msg[:70])


def run_case(case: Case, world: World) -> Result:
    t0 = time.time()
    res = Result(case)
    if case.parallel_sides:
        out: dict[bool, Obs] = {}
        ts = [threading.Thread(target=lambda t=t: out.__setitem__(t, run_side(case, world, t))) for t in (False, True)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        res.direct, res.through = out[False], out[True]
    else:
        res.direct = run_side(case, world, False)
        res.through = run_side(case, world, True)
    res.diffs = diff(res.direct.cmp, res.through.cmp)
    res.diffs += [f"direct: {p}" for p in res.direct.problems]
    res.diffs += [f"weft: {p}" for p in res.through.problems]
    res.seconds = time.time() - t0
    return res


def run_parallel(cases: list[Case], world: World, workers: int) -> list[Result]:
    if not cases:
        return []
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(run_case, c, world) for c in cases]
        return [f.result() for f in futures]
    except BaseException:
        # Ctrl-C: drop what has not started; what runs fails fast once the servers stop.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=False)


def proto_label(p: str) -> str:
    return {"HTTP/1.1": "h1.1", "HTTP/2": "h2", "HTTP/3": "h3", "HTTP/2.0": "h2", "HTTP/1.0": "h1.0", "1.1": "h1.1",
            "2": "h2", "1.0": "h1.0", "HTTP/1.1 upgrade": "ws/h1.1", "1.1 upgrade": "ws/h1.1",
            "HTTP/1.1 upgrade (TLS)": "wss/h1.1", "h2c": "h2c", "h2": "h2"}.get(p, p)


def hop_client(case: Case, o: Obs, through: bool = True) -> str:
    p = proto_label(o.client_proto)
    if through and case.mode.endswith("tls") and not p.endswith("+tls"):
        p += "+tls"
    return p


def print_table(results: list[Result], verbose: bool):
    rows = [("CASE", "CLIENT", "CLIENT->WEFT", "WEFT->APP", "DIRECT (proto: result)", "THROUGH WEFT", "RESULT")]
    for r in results:
        c = r.case
        d, t = r.direct, r.through
        srv = world_apps_names[c.app]
        if r.ok:
            verdict = "MATCH"
        elif c.known:
            verdict = f"DIFF (known {c.known})"
        elif c.limit:
            verdict = "DIFF (documented)"
        else:
            verdict = "DIFF"
        rows.append((
            c.name, c.client + (" -k" if c.mode == "h1.0-k" else ""), hop_client(c, t), f"{proto_label(t.app_proto)}->{srv}",
            f"{hop_client(c, d, through=False)}: {d.summary}",
            t.summary, verdict,
        ))
    widths = [min(max(len(str(row[i])) for row in rows), cap) for i, cap in enumerate((18, 10, 13, 19, 46, 46, 18))]
    for i, row in enumerate(rows):
        print("  ".join(str(v)[:w].ljust(w) for v, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
        else:
            r = results[i - 1]
            if not r.ok:
                for dline in r.diffs[: (20 if verbose else 4)]:
                    print(f"      {r.case.id}: {dline}")


world_apps_names: dict[str, str] = {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weft", required=True, help="the weft binary")
    ap.add_argument("--only", nargs="+", metavar="CASE",
                    help="run only cases whose id (name/client-mode/app) contains one of these")
    ap.add_argument("--limits", action="store_true",
                    help="also run cases of limitations weft's README documents (WebSocket over TLS listeners or to HTTP/2 clusters)")
    ap.add_argument("--json", nargs="?", const="compat-results.json", metavar="FILE",
                    help="also write a machine-readable summary (default compat-results.json)")
    ap.add_argument("--verbose", action="store_true", help="every difference, and the children's logs on failure")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    ap.add_argument("--serve", type=float, metavar="SECONDS",
                    help="only start the servers and weft, print where, and keep them up this long (to reproduce by hand)")
    args = ap.parse_args()

    import warnings

    warnings.filterwarnings("ignore")
    cases = [c for c in build_cases() if args.limits or not c.limit]
    if args.only:
        cases = [c for c in cases if any(s in c.id for s in args.only)]
        if not cases:
            print("no case matches --only", file=sys.stderr)
            return 2

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    workdir = tempfile.mkdtemp(prefix="weft-compat-")
    procs = Procs(workdir, SERVER_LIFETIME + int(args.serve or 0))
    t_start = time.time()
    results: list[Result] = []
    world = None
    try:
        world = start_world(procs, os.path.abspath(args.weft), workdir)
        for k, a in world.apps.items():
            world_apps_names[k] = a.server
        for name, size, off in (("3m", 3_000_000, 1), ("5m", 5 * 1024 * 1024, 3), ("6m", 6_000_000, 2)):
            world.files[name] = os.path.join(workdir, f"{name}.bin")
            with open(world.files[name], "wb") as f:
                f.write(content(size, off))
        print(f"servers: " + ", ".join(f"{a.server} ({a.framework}) 127.0.0.1:{a.port}" for a in world.apps.values()))
        print(f"weft listeners: " + ", ".join(f"{k}={p}" for k, p in world.weft.items()))
        if world.weft100_error:
            print(f"weft with proxy_100_continue listeners did not start: {world.weft100_error}")
        if args.serve:
            print(f"work directory: {workdir}; serving for {args.serve:.0f}s", flush=True)
            time.sleep(args.serve)
            return 0
        print(f"{len(cases)} cases\n", flush=True)

        by_id: dict[int, Result] = {}
        phase0 = [c for c in cases if c.phase == 0]
        phase1 = [c for c in cases if c.phase == 1]
        phase2 = [c for c in cases if c.phase == 2]
        # Timing-sensitive and slow cases first, all at once (they mostly wait), then
        # the rest four at a time, then the load clients one after another.
        for batch, workers in ((phase0, max(1, len(phase0))), (phase1, 4), (phase2, 1)):
            for c, r in zip(batch, run_parallel(batch, world, workers)):
                by_id[id(c)] = r
        results = [by_id[id(c)] for c in cases]
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        for name, p, log in procs.procs:
            print(f"--- {name}: {tail(log, 10)}", file=sys.stderr)
        return 2
    finally:
        for c in list(_clients.values()):
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        if world is not None and args.verbose and any(not r.ok for r in results):
            for name, p, log in procs.procs:
                print(f"--- {name} log: {tail(log, 8)}")
        procs.stop_all()
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory kept: {workdir}")

    print_table(results, args.verbose)
    n_ok = sum(r.ok for r in results)
    known_fail = [r for r in results if not r.ok and r.case.known]
    limit_fail = [r for r in results if not r.ok and r.case.limit]
    other_fail = [r for r in results if not r.ok and not r.case.known and not r.case.limit]
    print(f"\n{n_ok} match, {len(results) - n_ok} differ ({len(known_fail)} in the fixed deviations, "
          + (f"{len(limit_fail)} in documented limitations, " if args.limits else "")
          + f"{len(other_fail)} other) in {time.time() - t_start:.0f}s")
    for k, text in KNOWN.items():
        rs = [r for r in results if r.case.known == k]
        if rs:
            bad = sum(not r.ok for r in rs)
            print(f"  known ({k}) {text}: {'FAIL' if bad else 'now MATCHES'} ({bad}/{len(rs)} differ)")
    if args.json:
        summary = {
            "ok": n_ok == len(results),
            "matched": n_ok,
            "differed": len(results) - n_ok,
            "known_deviations": KNOWN,
            "cases": [
                {
                    "id": r.case.id, "name": r.case.name, "client": r.case.client, "mode": r.case.mode,
                    "app": world_apps_names.get(r.case.app, r.case.app), "known": r.case.known,
                    "documented_limitation": r.case.limit,
                    "client_to_weft": hop_client(r.case, r.through), "weft_to_app": proto_label(r.through.app_proto),
                    "direct_protocol": hop_client(r.case, r.direct, through=False),
                    "direct": {"summary": r.direct.summary, "observed": r.direct.cmp},
                    "through_weft": {"summary": r.through.summary, "observed": r.through.cmp},
                    "match": r.ok, "differences": r.diffs, "seconds": round(r.seconds, 2),
                }
                for r in results
            ],
        }
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1, default=str)
        print(f"summary written to {args.json}")
    return 0 if n_ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
