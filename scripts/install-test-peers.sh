#!/usr/bin/env bash
# Installs the real peers the tests start: etcd (Debian's etcd-server) for the control
# plane's shared store. Nothing happens when they are already there.
set -euo pipefail
if command -v etcd >/dev/null; then
  exit 0
fi
echo "test peers: installing Debian's etcd-server"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
# The package may start a system etcd on the default ports; the tests start their own
# on free ports and do not need it.
command -v etcd >/dev/null
