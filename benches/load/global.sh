#!/usr/bin/env bash
# What a global rate-limit rule costs per request against a local one, in CPU: weft on
# one pinned core (wrk, an nginx upstream and redis-server on the others), three
# configurations of the same route and rule (one bucket, a rate no request reaches, so
# every request is allowed and the lease is spent at full speed):
#   local          scope: local (this proxy's sharded store)
#   global         scope: global, the default lease (a tenth of the capacity, at most 1000)
#   global_lease100 scope: global, lease: 20 (a Redis round trip every ~10 requests)
# wrk, 64 connections, DURATION seconds, ROUNDS rounds alternating the configurations;
# weft's CPU per request from /proc (every thread: the worker and the weft-global thread
# that talks to Redis), and Redis's own CPU per request.
#
# Usage: benches/load/global.sh   (after `make build` and scripts/install-test-peers.sh)
# Knobs: DURATION (default 5), ROUNDS (default 3).
# Everything listens on 127.0.0.1 and is stopped by its process id at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WEFT="$ROOT/target/release/weft"
FILTERS="$ROOT/target/filters"
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
NCPU=$(nproc)
LOAD_CPUS="1-$((NCPU - 1))"
for tool in wrk nginx taskset redis-server; do
  command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[ -x "$WEFT" ] && [ -f "$FILTERS/ratelimit.wasm" ] || { echo "build first: make build" >&2; exit 1; }

WORK=$(mktemp -d /tmp/weft-global-load.XXXXXX)
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
mkdir -p "$WORK/up"
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

REDIS_PORT=$(free_port)
taskset -c "$LOAD_CPUS" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --dir "$WORK" >/dev/null 2>&1 &
REDIS_PID=$!
PIDS+=($REDIS_PID)
wait_port "$REDIS_PORT"

CONFIGS="local global global_lease100"
declare -A PORT PID
for c in $CONFIGS; do
  PORT[$c]=$(free_port)
  scope=global; lease=""
  case $c in
    local) scope=local ;;
    global_lease100) lease="lease: 100," ;;
  esac
  cat > "$WORK/$c.yaml" <<YAML
listeners:
  - name: edge
    address: 127.0.0.1:${PORT[$c]}
    routes: [{ cluster: up, filters: [limit] }]
clusters:
  up: { endpoints: [127.0.0.1:$UP_PORT] }
filters:
  limit:
    module: $FILTERS/ratelimit.wasm
    config: { rules: [{ name: $c, key: global, rate: 1000000000, per: 1s, scope: $scope }] }
shared_state:
  global: { $lease redis: { endpoints: [127.0.0.1:$REDIS_PORT] } }
filter_host:
  cache_dir: $WORK/cache
YAML
  WEFT_LOG=error taskset -c 0 "$WEFT" run --config "$WORK/$c.yaml" --workers 1 --no-watch >"$WORK/$c.log" 2>&1 &
  PID[$c]=$!
  PIDS+=(${PID[$c]})
  wait_port "${PORT[$c]}"
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A CPU RCPU
for round in $(seq 1 "$ROUNDS"); do
  for c in $CONFIGS; do
    url="http://127.0.0.1:${PORT[$c]}/"
    taskset -c "$LOAD_CPUS" wrk -t1 -c64 -d1s "$url" >/dev/null 2>&1 || true
    t0=$(ticks "${PID[$c]}"); r0=$(ticks "$REDIS_PID")
    out=$(taskset -c "$LOAD_CPUS" wrk -t1 -c64 -d"${DURATION}s" "$url")
    t1=$(ticks "${PID[$c]}"); r1=$(ticks "$REDIS_PID")
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    [ -z "$non2xx" ] || echo "$c: $non2xx responses were not 2xx (the lease is too small for this rate)"
    us=$(python3 -c "print(f'{($t1-$t0)/$(getconf CLK_TCK)*1e6/$reqs:.2f}')")
    rus=$(python3 -c "print(f'{($r1-$r0)/$(getconf CLK_TCK)*1e6/$reqs:.3f}')")
    CPU[$c]="${CPU[$c]:-} $us"
    RCPU[$c]="${RCPU[$c]:-} $rus"
    echo "round $round $c: $(echo "$out" | awk '/Requests\/sec/ {print $2}') requests/s, $us us weft CPU per request, $rus us Redis CPU per request"
  done
done
trips=$(redis-cli -p "$REDIS_PORT" INFO commandstats | grep -E 'evalsha|eval:' | tr '\r\n' '  ')
echo
echo "Redis commands: $trips"
median() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(' '.join(f'{x:.2f}' for x in v), f'({statistics.median(v):.2f})')" "$@"; }
printf '%-15s %-34s %s\n' config "weft CPU us/request (median)" "Redis CPU us/request (median)"
for c in $CONFIGS; do
  printf '%-15s %-34s %s\n' "$c" "$(median ${CPU[$c]})" "$(median ${RCPU[$c]})"
done
