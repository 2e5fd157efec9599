#!/usr/bin/env bash
# Connection scale: resident memory per idle connection, weft against nginx holding the
# same connections in the same run, and what idle connections cost busy ones.
#
# For each of weft (one worker) and nginx (one worker process), both proxying to the
# same nginx upstream on loopback:
#   1. RSS before; COUNT idle connections opened from several loopback source
#      addresses (127.0.0.2 and up, past the ephemeral-port range) in each MODE
#      (silent: connected, nothing sent; request: one GET answered, then kept alive;
#      h2: HTTP/2 preface and SETTINGS, no stream); RSS with them open; RSS 3 s after
#      they all closed;
#   2. (weft, then nginx) wrk on 64 more connections for DURATION seconds with COUNT
#      idle `request` connections held open, and without them: requests/s of each.
#
# Usage: benches/load/conns.sh        (after `make build`; as root, to raise the
#        descriptor limit past COUNT)
# Knobs: COUNT (default 100000), MODES (default "silent request h2"), DURATION (10).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WEFT="$ROOT/target/release/weft"
COUNT=${COUNT:-100000}
MODES=${MODES:-silent request h2}
DURATION=${DURATION:-10}
HOLD=$ROOT/benches/load/idle_conns.py
[ -x "$WEFT" ] || { echo "build first: make build" >&2; exit 1; }
for tool in wrk nginx taskset python3; do
  command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
# Every connection is a descriptor in the proxy and one in the holder: each needs a
# descriptor limit above COUNT. Without CAP_SYS_RESOURCE the hard limit cannot be
# raised; COUNT is then cut to what it allows, and the table says so.
NOFILE=$((COUNT + 4096))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$NOFILE" ]; then
  if ! ulimit -Hn "$NOFILE" 2>/dev/null; then
    CAPPED=$(( $(ulimit -Hn) - 2048 ))
    echo "the hard descriptor limit is $(ulimit -Hn) and cannot be raised here (no CAP_SYS_RESOURCE): $CAPPED connections instead of $COUNT" >&2
    COUNT=$CAPPED
    NOFILE=$(ulimit -Hn)
  fi
fi
ulimit -Sn "$NOFILE"

WORK=$(mktemp -d /tmp/weft-conns.XXXXXX)
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
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

UP_PORT=$(free_port); NGX_PORT=$(free_port); WEFT_PORT=$(free_port); ADMIN_PORT=$(free_port)
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
taskset -c 1 nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" -e stderr &
PIDS+=($!)
wait_port "$UP_PORT"

# nginx as the reverse proxy: HTTP/1.1 and HTTP/2 (prior knowledge) on one port is not
# something nginx does, so its h2 row uses a second, http2-only listener.
NGX_H2_PORT=$(free_port)
cat > "$WORK/ngx/nginx.conf" <<NGX
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $WORK/ngx/nginx.pid;
error_log stderr crit;
events { worker_connections $((COUNT + 4096)); }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGX_PORT backlog=4096;
    listen 127.0.0.1:$NGX_H2_PORT http2 backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGX
cat > "$WORK/weft.yaml" <<YAML
admin:
  address: 127.0.0.1:$ADMIN_PORT
listeners:
  - name: edge
    address: 127.0.0.1:$WEFT_PORT
    backlog: 4096
    routes:
      - cluster: up
clusters:
  up:
    endpoints: [127.0.0.1:$UP_PORT]
YAML

# open_idle PORT MODE: starts the holder, waits until its connections are open, and
# leaves its stdin on fd 7 (closing fd 7 closes them).
open_idle() {
  rm -f "$WORK/hold.out"
  exec 7> >(HOLD_SECONDS=600 python3 "$HOLD" 127.0.0.1 "$1" "$COUNT" "$2" > "$WORK/hold.out")
  for _ in $(seq 1 1200); do grep -q '^open' "$WORK/hold.out" 2>/dev/null && break; sleep 0.5; done
  cat "$WORK/hold.out"
}
close_idle() { exec 7>&-; sleep 3; }

measure() { # name pid port h2port
  local name=$1 pid=$2 port=$3 h2port=$4
  for mode in $MODES; do
    local p=$port; [ "$mode" = h2 ] && p=$h2port
    sleep 1
    local before; before=$(rss_kb "$pid")
    echo "$name $mode: opening $COUNT"
    open_idle "$p" "$mode"
    sleep 2
    local held; held=$(rss_kb "$pid")
    close_idle
    local after; after=$(rss_kb "$pid")
    awk -v n="$name" -v m="$mode" -v c="$COUNT" -v b="$before" -v h="$held" -v a="$after" 'BEGIN {
      printf "| %s | %s | %d | %.1f MB | %.1f MB | %.0f B | %.1f MB |\n", n, m, c, b/1024, h/1024, (h-b)*1024/c, a/1024 }' | tee -a "$WORK/rows"
  done
}

busy() { # name port: wrk rps with and without COUNT idle connections
  local name=$1 port=$2
  local alone with
  alone=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
  open_idle "$port" request
  with=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
  close_idle
  awk -v n="$name" -v a="$alone" -v w="$with" -v c="$COUNT" 'BEGIN {
    printf "| %s | %.0f | %.0f (%d idle) | %.2fx |\n", n, a, w, c, w/a }' | tee -a "$WORK/busy"
}

taskset -c 0 "$WEFT" run --config "$WORK/weft.yaml" --workers 1 > "$WORK/weft.log" 2>&1 &
WEFT_PID=$!; PIDS+=($WEFT_PID)
wait_port "$WEFT_PORT"
measure weft "$WEFT_PID" "$WEFT_PORT" "$WEFT_PORT"
busy weft "$WEFT_PORT"
kill "$WEFT_PID"; wait "$WEFT_PID" 2>/dev/null || true

taskset -c 0 nginx -c "$WORK/ngx/nginx.conf" -p "$WORK/ngx" -e stderr &
PIDS+=($!)
wait_port "$NGX_PORT"
NGX_WORKER=$(pgrep -P "$(cat "$WORK/ngx/nginx.pid")" | head -1)
measure nginx "$NGX_WORKER" "$NGX_PORT" "$NGX_H2_PORT"
busy nginx "$NGX_PORT"

echo
echo "| proxy | idle connections | count | RSS before | RSS with them | per connection | RSS after they closed |"
echo "|---|---|---|---|---|---|---|"
cat "$WORK/rows"
echo
echo "| proxy | requests/s, 64 busy connections alone | with idle connections held | ratio |"
echo "|---|---|---|---|"
cat "$WORK/busy"
