#!/usr/bin/env bash
# Starts a demo upstream (`weft echo`) and the proxy on examples/gateway.yaml, in the
# foreground. Ctrl-C stops both.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WEFT="$ROOT/target/release/weft"

"$WEFT" echo --listen 127.0.0.1:8081 --name demo-upstream &
ECHO_PID=$!
trap 'kill $ECHO_PID 2>/dev/null || true' EXIT

cat <<MSG

weft is starting on examples/gateway.yaml, in front of a demo upstream on 127.0.0.1:8081.
Try, from another terminal:

  curl -i http://127.0.0.1:8080/api/hello          # runs the request-id filter
  curl -i http://127.0.0.1:8080/other              # a route without filters
  curl -i --http2-prior-knowledge http://127.0.0.1:8080/api/h2
  curl -s http://127.0.0.1:9901/metrics | grep weft_
  curl -s http://127.0.0.1:9901/filters

Ctrl-C stops the proxy and the demo upstream.

MSG
"$WEFT" run --config "$ROOT/examples/gateway.yaml"
