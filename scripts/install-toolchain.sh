#!/usr/bin/env bash
# Makes sure this machine can build the proxy and wasm32 filters with the toolchain
# rust-toolchain.toml pins (rustup installs it, with the wasm32 standard library).
# Where rustup cannot reach its servers, it falls back the way `weft filter build`
# will choose (see the README, "Building filters"):
#   1. the active Rust toolchain already has the wasm32 standard library, or
#   2. Debian's Rust with its standard library sources is installed (std is then built
#      for wasm32 from source), or
#   3. neither: try `rustup target add`, then install Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null; then
  # Installs the pinned toolchain and its targets and components if missing.
  rustup toolchain install >/dev/null 2>&1 || echo "rustup could not install the pinned toolchain; trying the fallbacks" >&2
fi

TARGET=wasm32-unknown-unknown

has_wasm_std() {
  local libdir
  libdir=$(rustc --print target-libdir --target "$TARGET" 2>/dev/null) || return 1
  compgen -G "$libdir/libstd-*" >/dev/null
}

has_debian_build_std() {
  [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] || return 1
  local sysroot
  sysroot=$(/usr/bin/rustc --print sysroot 2>/dev/null) || return 1
  [ -f "$sysroot/lib/rustlib/src/rust/library/Cargo.lock" ] && { command -v rust-lld >/dev/null || [ -e /usr/bin/rust-lld ]; }
}

if has_wasm_std; then
  echo "wasm toolchain: the default toolchain has the $TARGET standard library"
  exit 0
fi
if has_debian_build_std; then
  echo "wasm toolchain: Debian's Rust with std sources (std is built for $TARGET from source)"
  exit 0
fi
if command -v rustup >/dev/null && rustup target add "$TARGET" >/dev/null 2>&1 && has_wasm_std; then
  echo "wasm toolchain: added $TARGET with rustup"
  exit 0
fi
echo "wasm toolchain: installing Debian's Rust with std sources (rustc-web cargo-web rust-web-src lld-22)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rustc-web cargo-web rust-web-src lld-22 >/dev/null
has_debian_build_std || { echo "the wasm toolchain is still not usable; see the README" >&2; exit 1; }
echo "wasm toolchain: ready"
