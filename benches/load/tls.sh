#!/usr/bin/env bash
# TLS rows of the load harness, in one run on loopback, each proxy on the same pinned
# core(s) with the same certificate (ECDSA P-256 from `weft cert`) and the cipher suite
# both pick for wrk's OpenSSL (TLS 1.3, TLS_AES_256_GCM_SHA384, X25519):
#   1. keep-alive requests over TLS (wrk, 64 connections): nginx, then weft;
#   2. a new TLS connection per request (wrk with `Connection: close`; a full
#      handshake each, no resumption): nginx, then weft;
#   3. HTTP/2 over TLS (h2load, 8 connections x 16 streams): nginx, then weft;
#   4. HTTP/3 (proxy/examples/h3load.rs, quinn + h3, the same 8 x 16) against weft's
#      own HTTP/2 over TLS of 3. (Debian's nginx 1.22 and h2load have no HTTP/3).
# Requests/s, p99 and the proxy's CPU per request (from /proc), best of ROUNDS.
#
# Usage: benches/load/tls.sh   (after `make build`)
# Knobs: WORKERS (default 1), DURATION (seconds per run, default 10), ROUNDS (default 2).
# Needs: wrk, h2load (nghttp2-client), nginx (nginx-light), taskset. Everything listens
# on 127.0.0.1 and is stopped by its process id at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WEFT="$ROOT/target/release/weft"
WORKERS=${WORKERS:-1}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
NCPU=$(nproc)
PROXY_CPUS="0-$((WORKERS - 1))"
LOAD_CPUS="$WORKERS-$((NCPU - 1))"
for tool in wrk h2load nginx taskset; do
  command -v $tool >/dev/null || { echo "missing $tool (apt-get install wrk nghttp2-client nginx-light util-linux)" >&2; exit 1; }
done
[ -x "$WEFT" ] || { echo "build first: make build" >&2; exit 1; }
(cd "$ROOT" && cargo build -q --release -p weft --example h3load)
H3LOAD="$ROOT/target/release/examples/h3load"

WORK=$(mktemp -d /tmp/weft-tls-load.XXXXXX)
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

"$WEFT" cert ca --trust-domain bench.local --out "$WORK/pki" >/dev/null
"$WEFT" cert svid --ca "$WORK/pki" --dns bench.test --out "$WORK/pki/server" >/dev/null
CERT="$WORK/pki/server.pem"; KEY="$WORK/pki/server.key"

UP_PORT=$(free_port); NGX_PORT=$(free_port); WEFT_PORT=$(free_port); H3_PORT=$(free_port)
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
    listen 127.0.0.1:$NGX_PORT ssl http2 reuseport;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGX
taskset -c "$PROXY_CPUS" nginx -c "$WORK/ngx/nginx.conf" -p "$WORK/ngx" -e stderr &
NGX_MASTER=$!
PIDS+=($NGX_MASTER)
wait_port "$NGX_PORT"
NGX_PIDS="$NGX_MASTER $(pgrep -P "$NGX_MASTER" | tr '\n' ' ')"

cat > "$WORK/weft.yaml" <<YAML
listeners:
  - name: tls
    address: 127.0.0.1:$WEFT_PORT
    tls:
      certificates: [{ cert: $CERT, key: $KEY }]
    routes:
      - cluster: up
  - name: quic
    address: 127.0.0.1:$H3_PORT
    protocol: http3
    tls:
      certificates: [{ cert: $CERT, key: $KEY }]
    routes:
      - cluster: up
clusters:
  up:
    endpoints: [127.0.0.1:$UP_PORT]
YAML
taskset -c "$PROXY_CPUS" "$WEFT" run --config "$WORK/weft.yaml" --workers "$WORKERS" >"$WORK/weft.log" 2>&1 &
WEFT_PID=$!
PIDS+=($WEFT_PID)
wait_port "$WEFT_PORT"

cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
to_ms() { python3 -c "import sys,re; v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)',v); f={'us':0.001,'ms':1,'s':1000}[m.group(2)]; print(f'{float(m.group(1))*f:.3f}')" "$1"; }

# wrk: "rps p99_ms cpu_us_per_request errors"
wrk_run() { # url conns extra-args... -- pids
  local url=$1 conns=$2; shift 2
  local extra=()
  while [ "$1" != "--" ]; do extra+=("$1"); shift; done; shift
  taskset -c "$LOAD_CPUS" wrk -t1 -c"$conns" -d2s "${extra[@]}" "$url" >/dev/null 2>&1 || true
  local t0 t1 out
  t0=$(cpu_ticks "$@")
  out=$(taskset -c "$LOAD_CPUS" wrk -t1 -c"$conns" -d"${DURATION}s" --latency "${extra[@]}" "$url")
  t1=$(cpu_ticks "$@")
  local rps p99 reqs errors
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr ' \n' '_ ')
  echo "$rps $(to_ms "$p99") $(python3 -c "print(f'{($t1-$t0)/$(getconf CLK_TCK)*1e6/$reqs:.1f}')") ${errors:-none}"
}
# h2load: "rps p99_ms cpu_us_per_request errors" (p99 of request times is not printed
# by h2load; the mean is given instead)
h2_run() { # url -- pids
  local url=$1; shift 2
  taskset -c "$LOAD_CPUS" h2load -c8 -m16 -D2 "$url" >/dev/null 2>&1 || true
  local t0 t1 out
  t0=$(cpu_ticks "$@")
  out=$(taskset -c "$LOAD_CPUS" h2load -c8 -m16 -D"$DURATION" "$url")
  t1=$(cpu_ticks "$@")
  local rps reqs mean failed
  rps=$(echo "$out" | awk '/^finished in/ {gsub(",","",$4); print $4}')
  reqs=$(echo "$out" | awk '/^requests:/ {print $8}')
  failed=$(echo "$out" | awk '/^requests:/ {print $10}')
  mean=$(echo "$out" | awk '/^time for request:/ {print $6}')
  echo "$rps $(to_ms "$mean") $(python3 -c "print(f'{($t1-$t0)/$(getconf CLK_TCK)*1e6/max($reqs,1):.1f}')") failed_$failed"
}

# h3load: "rps p99_ms cpu_us_per_request errors"
h3_run() { # url -- pids
  local url=$1; shift 2
  local t0 t1 out
  t0=$(cpu_ticks "$@")
  out=$(taskset -c "$LOAD_CPUS" "$H3LOAD" "$url" --connect 127.0.0.1 --ca "$WORK/pki/ca.pem" -c 8 -m 16 -d "$DURATION")
  t1=$(cpu_ticks "$@")
  # "requests N errors E requests/s R p50_us X p99_us Y"; the warm-up second's CPU is
  # counted too, so the CPU per request is slightly high.
  read -r _ reqs _ errors _ rps _ _ _ p99 <<<"$out"
  echo "$rps $(python3 -c "print(f'{$p99/1000:.3f}')") $(python3 -c "print(f'{($t1-$t0)/$(getconf CLK_TCK)*1e6/max($reqs,1):.1f}')") failed_$errors"
}

declare -A BEST
record() { # name "rps p99 cpu errors"
  local name=$1; shift
  local rps=$1
  if [ -z "${BEST[$name]:-}" ] || python3 -c "import sys; sys.exit(0 if float('$rps') > float('${BEST[$name]%% *}') else 1)"; then
    BEST[$name]="$*"
  fi
}

echo "tls load: $WORKERS proxy worker(s) on CPUs $PROXY_CPUS; load on $LOAD_CPUS; ${DURATION}s x $ROUNDS rounds" >&2
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round" >&2
  record nginx_keepalive $(wrk_run "https://127.0.0.1:$NGX_PORT/" 64 -- $NGX_PIDS)
  record weft_keepalive $(wrk_run "https://127.0.0.1:$WEFT_PORT/" 64 -- $WEFT_PID)
  record nginx_handshake $(wrk_run "https://127.0.0.1:$NGX_PORT/" 16 -H "Connection: close" -- $NGX_PIDS)
  record weft_handshake $(wrk_run "https://127.0.0.1:$WEFT_PORT/" 16 -H "Connection: close" -- $WEFT_PID)
  record nginx_h2 $(h2_run "https://127.0.0.1:$NGX_PORT/" -- $NGX_PIDS)
  record weft_h2 $(h2_run "https://127.0.0.1:$WEFT_PORT/" -- $WEFT_PID)
  record weft_h3 $(h3_run "https://bench.test:$H3_PORT/" -- $WEFT_PID)
done

printf '%-18s %12s %10s %14s  %s\n' row requests/s p99_ms cpu_us/req errors
for name in nginx_keepalive weft_keepalive nginx_handshake weft_handshake nginx_h2 weft_h2 weft_h3; do
  read -r rps p99 cpu errors <<<"${BEST[$name]}"
  printf '%-18s %12s %10s %14s  %s\n' "$name" "$rps" "$p99" "$cpu" "$errors"
done
ratio() { python3 -c "print(f'{float(\"$1\")/float(\"$2\"):.2f}x')"; }
echo "weft / nginx: keep-alive $(ratio "${BEST[weft_keepalive]%% *}" "${BEST[nginx_keepalive]%% *}"), new connections $(ratio "${BEST[weft_handshake]%% *}" "${BEST[nginx_handshake]%% *}"), HTTP/2 $(ratio "${BEST[weft_h2]%% *}" "${BEST[nginx_h2]%% *}"); weft HTTP/3 / weft HTTP/2 $(ratio "${BEST[weft_h3]%% *}" "${BEST[weft_h2]%% *}") (h2 rows: mean request time in the p99 column)"
