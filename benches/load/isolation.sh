#!/usr/bin/env bash
# Filter isolation under attack: one route's filter loops (or exhausts its memory) on
# every request of 48 attacking connections, while 16 connections use a healthy route
# of the same proxy. Reports the healthy route's requests/s and p99 alone and under
# attack, and what the attackers got. weft on one pinned core (WORKERS=1 by default),
# wrk on the others; nginx as the upstream. Bounded: DURATION seconds per run.
#
# Usage: benches/load/isolation.sh   (after `make build`)
# Knobs: WORKERS (default 1), DURATION (default 10), MODE (loop | oom, default loop).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WEFT=${WEFT:-"$ROOT/target/release/weft"}
WORKERS=${WORKERS:-1}
DURATION=${DURATION:-10}
MODE=${MODE:-loop}
NCPU=$(nproc)
PROXY_CPUS="0-$((WORKERS - 1))"
LOAD_CPUS="$WORKERS-$((NCPU - 1))"
for tool in wrk nginx taskset; do
  command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[ -x "$WEFT" ] || { echo "build first: make build" >&2; exit 1; }
MISBEHAVE=${MISBEHAVE:-"$ROOT/target/filters/misbehave.wasm"}
[ -f "$MISBEHAVE" ] || "$WEFT" filter build "$ROOT/tests/filters/misbehave" >/dev/null

WORK=$(mktemp -d /tmp/weft-isolation.XXXXXX)
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

UP_PORT=$(free_port); WEFT_PORT=$(free_port)
cat > "$WORK/nginx.conf" <<NGX
worker_processes 1;
master_process off;
daemon off;
pid $WORK/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok\n"; } }
}
NGX
taskset -c "$LOAD_CPUS" nginx -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)
cat > "$WORK/weft.yaml" <<YAML
listeners:
  - name: edge
    address: 127.0.0.1:$WEFT_PORT
    routes:
      - { match: { prefix: /bad }, cluster: up, filters: [misbehave] }
      - { cluster: up }
clusters:
  up: { endpoints: ["127.0.0.1:$UP_PORT"] }
filters:
  misbehave:
    module: $MISBEHAVE
    failure_policy: fail_closed
    timeout: 50ms
YAML
WEFT_LOG=error taskset -c "$PROXY_CPUS" "$WEFT" run --config "$WORK/weft.yaml" --workers "$WORKERS" >"$WORK/weft.log" 2>&1 &
PIDS+=($!)
wait_port "$UP_PORT"; wait_port "$WEFT_PORT"

# rps and p99 (ms) of a wrk run's output.
summary() {
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$1")
  p99=$(awk '/ 99%/ {print $2}' "$1")
  echo "$rps req/s, p99 $p99"
}
run() { taskset -c "$LOAD_CPUS" wrk -t1 -c"$1" -d"${DURATION}s" --latency "${@:2}" > "$WORK/$1.$RANDOM.out" 2>&1; }

taskset -c "$LOAD_CPUS" wrk -t1 -c16 -d"${DURATION}s" --latency "http://127.0.0.1:$WEFT_PORT/good" > "$WORK/alone.out"
echo "healthy route alone (16 connections): $(summary "$WORK/alone.out")"

taskset -c "$LOAD_CPUS" wrk -t1 -c48 -d"$((DURATION + 2))s" --latency -H "x-misbehave: $MODE" \
  "http://127.0.0.1:$WEFT_PORT/bad" > "$WORK/attack.out" 2>&1 &
ATTACK=$!
PIDS+=($ATTACK)
sleep 1
taskset -c "$LOAD_CPUS" wrk -t1 -c16 -d"${DURATION}s" --latency "http://127.0.0.1:$WEFT_PORT/good" > "$WORK/under.out"
wait "$ATTACK" || true
echo "healthy route under attack:          $(summary "$WORK/under.out")"
echo "attacking route ($MODE, 48 connections): $(summary "$WORK/attack.out"); non-2xx: $(awk '/Non-2xx/ {print $5}' "$WORK/attack.out")"
curl -s "http://127.0.0.1:$WEFT_PORT/" >/dev/null || true
echo "breaker: $(grep -c 'filter breaker open' "$WORK/weft.log" || true) openings logged"
