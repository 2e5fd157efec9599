#!/usr/bin/env bash
# Installs the real peers the tests start, from Debian: etcd (etcd-server) for the
# control plane's shared store, redis-server (and redis-cli, to form a Redis Cluster) for
# filters' global state, Prometheus (and promtool) to scrape and check /metrics, Chromium to open `weft bench --html` reports, curl and
# openssl as TLS clients, nginx as a TLS upstream, Python's aioquic (PyPI, in a venv) as the
# HTTP/3 client and grpcio as the gRPC server and client,
# wrk for load during certificate rotation, ab (apache2-utils) and h2load (nghttp2-client)
# as load clients of the compatibility suite (proxy/tests/peers/compat), and there too
# Python's starlette/uvicorn/hypercorn/flask/gunicorn as real apps and httpx/websockets as
# clients (PyPI, same venv). Only what is missing is installed.
set -euo pipefail
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || need+=(redis-server redis-tools)
command -v chromium >/dev/null || need+=(chromium)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v ab >/dev/null || need+=(apache2-utils)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
if [ ${#need[@]} -gt 0 ]; then
  echo "test peers: installing Debian's ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# etcd's package may start a system etcd on the default ports; the tests start their
# own on free ports and do not need it.
command -v etcd >/dev/null
command -v redis-server >/dev/null
command -v redis-cli >/dev/null
command -v chromium >/dev/null
command -v curl >/dev/null
command -v openssl >/dev/null
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]
command -v wrk >/dev/null
command -v ab >/dev/null
command -v h2load >/dev/null
command -v prometheus >/dev/null
command -v promtool >/dev/null

# Python's aioquic (PyPI) as the HTTP/3 client, in a virtual environment of the
# repository's own (target/test-tools/py; the tests look for it there).
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/target/test-tools/py"
if ! "$VENV/bin/python" -c 'import aioquic' 2>/dev/null; then
  echo "test peers: installing aioquic from PyPI into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q aioquic
fi
"$VENV/bin/python" -c 'import aioquic'

# The compatibility suite's real servers (Starlette on uvicorn and hypercorn, Flask on
# gunicorn) and clients (httpx with HTTP/2, websockets), in the same venv.
compat_mods='import starlette, uvicorn, hypercorn, flask, gunicorn, httpx, h2, websockets'
if ! "$VENV/bin/python" -c "$compat_mods" 2>/dev/null; then
  echo "test peers: installing the compatibility suite's servers and clients from PyPI into $VENV"
  "$VENV/bin/pip" install -q starlette uvicorn hypercorn flask gunicorn "httpx[http2]" websockets
fi
"$VENV/bin/python" -c "$compat_mods"

# The OTLP trace receiver of the tracing tests decodes with opentelemetry-proto (PyPI).
if ! "$VENV/bin/python" -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null; then
  echo "test peers: installing opentelemetry-proto from PyPI into $VENV"
  "$VENV/bin/pip" install -q opentelemetry-proto
fi
"$VENV/bin/python" -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2'

# Python's grpcio (PyPI) as the real gRPC server and client (proxy/tests/peers/grpc_peer.py).
if ! "$VENV/bin/python" -c 'import grpc' 2>/dev/null; then
  echo "test peers: installing grpcio from PyPI into $VENV"
  "$VENV/bin/pip" install -q grpcio
fi
"$VENV/bin/python" -c 'import grpc'
