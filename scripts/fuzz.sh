#!/usr/bin/env bash
# Fuzzes weft's HTTP/1.1 wire format (fuzz/: request and response heads, the chunked
# decoder) with cargo-fuzz (libFuzzer, nightly), each target for FUZZ_SECONDS (default
# 60), starting from the corpus in fuzz/corpus and adding what it finds there
# (target/fuzz-corpus, not the repository). A crash fails the run and leaves its input in
# fuzz/artifacts/<target>/: turn it into a regression test in h1/src.
# Installs what it needs: rustup's nightly and cargo-fuzz (in target/fuzz-tools).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_EACH=${FUZZ_SECONDS:-60}
rustup toolchain install nightly --profile minimal >/dev/null 2>&1
TOOLS="$ROOT/target/fuzz-tools"
if ! [ -x "$TOOLS/bin/cargo-fuzz" ]; then
  echo "fuzz: installing cargo-fuzz into $TOOLS"
  cargo install -q --locked --root "$TOOLS" cargo-fuzz
fi
export PATH="$TOOLS/bin:$PATH"
cd "$ROOT/fuzz"
for target in request_head response_head chunked; do
  corpus="$ROOT/target/fuzz-corpus/$target"
  mkdir -p "$corpus"
  cp -n "$ROOT/fuzz/corpus/$target"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $target for ${SECONDS_EACH}s"
  cargo +nightly fuzz run --target-dir "$ROOT/target/fuzz" "$target" "$corpus" -- \
    -max_total_time="$SECONDS_EACH" -max_len=8192 -print_final_stats=1 2>&1 \
    | grep -E "stat::number_of_executed_units|stat::new_units_added|ERROR|panicked|SUMMARY|Done" || true
  # libFuzzer exits non-zero on a crash; the pipe hides it: look for an artifact.
  if ls "$ROOT/fuzz/artifacts/$target"/crash-* >/dev/null 2>&1; then
    echo "fuzz: $target crashed; inputs in fuzz/artifacts/$target" >&2
    exit 1
  fi
done
