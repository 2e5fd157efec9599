#!/usr/bin/env bash
# Instructions per request on the proxy's worker thread, counted by valgrind's callgrind:
# deterministic for a given binary and input, unlike requests/s on a shared VM.
#
# Usage: benches/callgrind/run.sh [WEFT_BINARY] [FILTER_DIR]
#   (defaults: target/release/weft and target/filters, after `make build`)
# Knobs: REQUESTS (per route, default 2000), ROUTES (default "plain example chain5"; also
#   "empty": one filter with a request phase that does nothing, "noop": both header phases,
#   "rl_local" and "rl_global": the rate limiter alone with one bucket in the local or the
#   global scope; the global one on a redis-server this script starts, with LEASE tokens
#   per lease when set, else the default),
#   ACCESS_LOG=1 (the listener writes JSON access-log lines to a file), TRACING=RATIO
#   (tracing with that sampling ratio, spans exported over OTLP/HTTP to
#   proxy/tests/peers/otlp_receiver.py, which needs target/test-tools/py), KEEP=DIR
#   (copy the callgrind outputs there, for callgrind_annotate).
#
# For each route: the proxy (one worker, WEFT_FILTER_POOLING=off since valgrind cannot
# map the pooling allocator's reservation) runs under callgrind with one file per
# thread; a keep-alive client warms the route up with 200 requests, the counters are
# zeroed, REQUESTS requests are sent on one connection, and the counters are dumped.
# The worker thread's total divided by REQUESTS is printed. The upstream is `weft echo`
# outside valgrind. Everything listens on 127.0.0.1 and is stopped by process id.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WEFT=${1:-$ROOT/target/release/weft}
FILTERS=${2:-$ROOT/target/filters}
REQUESTS=${REQUESTS:-2000}
ROUTES=${ROUTES:-plain example chain5}
command -v valgrind >/dev/null || { echo "missing valgrind" >&2; exit 1; }
[ -x "$WEFT" ] || { echo "no $WEFT: build first (make build)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/weft-callgrind.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 3000); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

EXTRA_LISTENER=""
[ -n "${ACCESS_LOG:-}" ] && EXTRA_LISTENER="    access_log: { path: $WORK/access.log }"
TRACING_YAML=""
if [ -n "${TRACING:-}" ]; then
  PY=$ROOT/target/test-tools/py/bin/python
  "$PY" "$ROOT/proxy/tests/peers/otlp_receiver.py" "$WORK/spans.jsonl" 3600 > "$WORK/otlp.port" &
  PIDS+=($!)
  for _ in $(seq 1 100); do [ -s "$WORK/otlp.port" ] && break; sleep 0.1; done
  TRACING_YAML="tracing: { sampling: $TRACING, otlp: { endpoint: \"http://127.0.0.1:$(head -1 "$WORK/otlp.port")\" } }"
fi

SHARED_STATE=""
case " $ROUTES " in
  *" rl_global "*)
    REDIS_PORT=$(free_port)
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$WORK" \
      > "$WORK/redis.log" 2>&1 &
    PIDS+=($!)
    wait_port "$REDIS_PORT"
    SHARED_STATE="shared_state: { global: { ${LEASE:+lease: $LEASE,} redis: { endpoints: [127.0.0.1:$REDIS_PORT] } } }"
    ;;
esac

UP_PORT=$(free_port)
"$WEFT" echo --listen "127.0.0.1:$UP_PORT" --name upstream > "$WORK/echo.log" 2>&1 &
PIDS+=($!)
wait_port "$UP_PORT"

TOKEN=$(python3 - <<'PY'
import base64, hashlib, hmac, json, time
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
head = b(json.dumps({"alg": "HS256", "kid": "hs-1"}).encode())
body = b(json.dumps({"sub": "bench", "aud": "orders", "exp": int(time.time()) + 86400}).encode())
sig = hmac.new(b"a shared secret of the test suite, 32+ bytes long", f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b(sig)}")
PY
)

# Sends N keep-alive GETs on one connection; exits non-zero on any non-200.
cat > "$WORK/client.py" <<'PY'
import http.client, sys
port, path, n, token = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
headers = {"authorization": f"Bearer {token}"}
for _ in range(n):
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"{path}: status {r.status}")
PY

for route in $ROUTES; do
  PORT=$(free_port)
  cat > "$WORK/weft.yaml" <<YAML
$TRACING_YAML
listeners:
  - name: edge
    address: 127.0.0.1:$PORT
$EXTRA_LISTENER
    routes:
      - name: example
        match: { prefix: /example }
        cluster: up
        filters: [request-id]
      - name: noop
        match: { prefix: /noop }
        cluster: up
        filters: [noop]
      - name: empty
        match: { prefix: /empty }
        cluster: up
        filters: [empty]
      - name: chain5
        match: { prefix: /chain5 }
        cluster: up
        filters: [authz, ratelimit, fault, router, retry]
      - name: rl_local
        match: { prefix: /rl_local }
        cluster: up
        filters: [rl-local]
      - name: rl_global
        match: { prefix: /rl_global }
        cluster: up
        filters: [rl-global]
      - name: plain
        cluster: up
$SHARED_STATE
clusters:
  up:
    endpoints: [127.0.0.1:$UP_PORT]
filters:
  request-id: { module: $FILTERS/request-id.wasm }
  noop: { module: $FILTERS/noop.wasm }
  empty: { module: $FILTERS/empty.wasm }
  authz:
    module: $FILTERS/authz.wasm
    files: { jwks: $ROOT/filters/authz/testdata/jwks.json }
    config: { jwt: { audiences: [orders], jwks_file: jwks } }
  ratelimit:
    module: $FILTERS/ratelimit.wasm
    config: { rules: [{ name: ip, key: client_ip, rate: 1000000000, per: 1s }] }
  fault:
    module: $FILTERS/fault.wasm
    config: { abort: { percent: 0 }, delay: { percent: 0, duration: 1ms } }
  router:
    module: $FILTERS/router.wasm
    config: { routes: [{ match: { path: { prefix: /chain5 } }, cluster: up }] }
  retry: { module: $FILTERS/retry.wasm }
  rl-local:
    module: $FILTERS/ratelimit.wasm
    config: { rules: [{ name: all, key: global, rate: 1000000000, per: 1s, scope: local }] }
  rl-global:
    module: $FILTERS/ratelimit.wasm
    config: { rules: [{ name: all, key: global, rate: 1000000000, per: 1s, scope: global }] }
filter_host:
  cache_dir: $WORK/cache
YAML
  # Compiled once outside valgrind (into the disk cache), so that the measured proxy
  # starts from the cache instead of compiling filters under valgrind.
  WEFT_FILTER_POOLING=off "$WEFT" validate --config "$WORK/weft.yaml" > /dev/null
  OUT="$WORK/cg-$route"
  mkdir -p "$OUT"
  WEFT_FILTER_POOLING=off WEFT_LOG=warn valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$OUT/cg.out" "$WEFT" run --config "$WORK/weft.yaml" --workers 1 --no-watch \
    > "$WORK/weft-$route.log" 2>&1 &
  VG=$!
  PIDS+=($VG)
  wait_port "$PORT" || { tail -20 "$WORK/weft-$route.log" >&2; exit 1; }
  python3 "$WORK/client.py" "$PORT" "/$route" 200 "$TOKEN"
  callgrind_control -z "$VG" >/dev/null 2>&1
  python3 "$WORK/client.py" "$PORT" "/$route" "$REQUESTS" "$TOKEN"
  # Background threads (access-log writer, span exporter) catch up before the dump.
  [ -n "${ACCESS_LOG:-}${TRACING:-}" ] && sleep 2
  callgrind_control -d "$VG" >/dev/null 2>&1
  sleep 1
  kill "$VG" 2>/dev/null || true
  wait "$VG" 2>/dev/null || true
  # The worker's dump: the file of the thread whose functions include the worker loop.
  total=""
  all=0
  for f in "$OUT"/cg.out.*-*; do
    [ -f "$f" ] || continue
    t=$(awk '/^summary:|^totals:/ {print $2; exit}' "$f")
    [ -n "$t" ] && all=$((all + t))
    if grep -q "exchange::serve" "$f" 2>/dev/null; then
      [ -n "$t" ] && [ -z "$total" ] && total=$t
    fi
  done
  [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp -r "$OUT" "$KEEP/"
  if [ -z "$total" ]; then
    echo "$route: no worker dump found (files: $(ls "$OUT"))" >&2
    continue
  fi
  python3 -c "print(f'$route: {int($total) / $REQUESTS:,.0f} instructions per request (worker thread, {$REQUESTS} requests); all threads {int($all) / $REQUESTS:,.0f}')"
done
