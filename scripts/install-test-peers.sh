#!/usr/bin/env bash
# Installs the real peers the tests start, from Debian: etcd (etcd-server) for the
# control plane's shared store, Chromium to open `weft bench --html` reports, curl and
# openssl as TLS clients, nginx as a TLS upstream,
# wrk for load during certificate rotation. Only what is missing is installed.
set -euo pipefail
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v chromium >/dev/null || need+=(chromium)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "test peers: installing Debian's ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# etcd's package may start a system etcd on the default ports; the tests start their
# own on free ports and do not need it.
command -v etcd >/dev/null
command -v chromium >/dev/null
command -v curl >/dev/null
command -v openssl >/dev/null
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]
command -v wrk >/dev/null
