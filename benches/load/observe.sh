#!/usr/bin/env bash
# What observability costs per request, in CPU: weft on one pinned core (wrk, an nginx
# upstream and the OTLP receiver on the others), five configurations of the same
# unfiltered route, each its own weft process: none; an access log (JSON lines to a
# file); tracing with sampling 0 (context propagated, no spans), 0.01 and 1.0 (spans
# exported over OTLP/HTTP to proxy/tests/peers/otlp_receiver.py). wrk, 64 connections,
# DURATION seconds, ROUNDS rounds alternating the configurations; weft's CPU per request
# from /proc (every thread: workers, the log writer, the span exporter).
#
# Usage: benches/load/observe.sh   (after `make build` and scripts/install-test-peers.sh)
# Knobs: DURATION (default 5), ROUNDS (default 3).
# Everything listens on 127.0.0.1 and is stopped by its process id at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WEFT="$ROOT/target/release/weft"
PY="$ROOT/target/test-tools/py/bin/python"
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
NCPU=$(nproc)
LOAD_CPUS="1-$((NCPU - 1))"
for tool in wrk nginx taskset; do
  command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[ -x "$WEFT" ] || { echo "build first: make build" >&2; exit 1; }

WORK=$(mktemp -d /tmp/weft-observe-load.XXXXXX)
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

taskset -c "$LOAD_CPUS" "$PY" "$ROOT/proxy/tests/peers/otlp_receiver.py" /dev/null 3600 > "$WORK/otlp.port" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/otlp.port" ] && break; sleep 0.1; done
OTLP="http://127.0.0.1:$(head -1 "$WORK/otlp.port")"

CONFIGS="none access_log trace_0 trace_0.01 trace_1"
declare -A PORT PID
for c in $CONFIGS; do
  PORT[$c]=$(free_port)
  extra=""; top=""
  case $c in
    access_log) extra="    access_log: { path: $WORK/access.log }" ;;
    trace_*) top="tracing: { sampling: ${c#trace_}, otlp: { endpoint: \"$OTLP\" } }" ;;
  esac
  cat > "$WORK/$c.yaml" <<YAML
$top
listeners:
  - name: edge
    address: 127.0.0.1:${PORT[$c]}
$extra
    routes: [{ cluster: up }]
clusters:
  up: { endpoints: [127.0.0.1:$UP_PORT] }
YAML
  WEFT_LOG=error taskset -c 0 "$WEFT" run --config "$WORK/$c.yaml" --workers 1 --no-watch >"$WORK/$c.log" 2>&1 &
  PID[$c]=$!
  PIDS+=(${PID[$c]})
  wait_port "${PORT[$c]}"
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
declare -A CPU USER
for round in $(seq 1 "$ROUNDS"); do
  for c in $CONFIGS; do
    url="http://127.0.0.1:${PORT[$c]}/"
    taskset -c "$LOAD_CPUS" wrk -t1 -c64 -d1s "$url" >/dev/null 2>&1 || true
    t0=$(ticks "${PID[$c]}")
    u0=$(user_ticks "${PID[$c]}")
    out=$(taskset -c "$LOAD_CPUS" wrk -t1 -c64 -d"${DURATION}s" "$url")
    # Spans and log lines of the run are written within a second.
    sleep 1
    t1=$(ticks "${PID[$c]}")
    u1=$(user_ticks "${PID[$c]}")
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    us=$(python3 -c "print(f'{($t1-$t0)/$(getconf CLK_TCK)*1e6/$reqs:.2f}')")
    user=$(python3 -c "print(f'{($u1-$u0)/$(getconf CLK_TCK)*1e6/$reqs:.2f}')")
    CPU[$c]="${CPU[$c]:-} $us"
    USER[$c]="${USER[$c]:-} $user"
    echo "round $round $c: $(echo "$out" | awk '/Requests\/sec/ {print $2}') requests/s, $us us CPU per request ($user us in user space)"
  done
done
echo
printf '%-12s %s\n' config "CPU us per request, by round (median)"
for c in $CONFIGS; do
  printf '%-12s %s\n' "$c" "$(python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(' '.join(f'{x:.2f}' for x in v), f'({statistics.median(v):.2f})')" ${CPU[$c]})"
done
# User-space time is the part instructions measure: with callgrind's instructions per
# request for the same route, it gives this machine's nanoseconds per instruction.
echo
printf '%-12s %s\n' config "user-space CPU us per request, by round (median)"
for c in $CONFIGS; do
  printf '%-12s %s\n' "$c" "$(python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(' '.join(f'{x:.2f}' for x in v), f'({statistics.median(v):.2f})')" ${USER[$c]})"
done
