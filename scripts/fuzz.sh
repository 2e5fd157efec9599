#!/usr/bin/env bash
# Fuzzes weft with cargo-fuzz (libFuzzer, nightly; fuzz/): the HTTP/1.1 wire format
# (request and response heads, the chunked decoder), the configuration loader and
# checker, the bundle manifest and signature reader, and the check of a filter's answer
# buffer. Each target runs for FUZZ_SECONDS (default 60), starting from the corpus in
# fuzz/corpus and adding what it finds there (target/fuzz-corpus, not the repository).
# A crash fails the run and leaves its input in fuzz/artifacts/<target>/: turn it into
# a regression test next to the code (h1/src, proxy/src). FUZZ_TARGETS picks targets.
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
for target in ${FUZZ_TARGETS:-request_head response_head chunked config bundle answer}; do
  corpus="$ROOT/target/fuzz-corpus/$target"
  mkdir -p "$corpus"
  cp -n "$ROOT/fuzz/corpus/$target"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $target for ${SECONDS_EACH}s"
  # The first build of a target on the proxy crate compiles wasmtime under nightly's
  # coverage instrumentation (~10 minutes); the run's clock starts after it.
  log="$ROOT/target/fuzz-$target.log"
  if ! cargo +nightly fuzz build --target-dir "$ROOT/target/fuzz" "$target" > "$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $target does not build" >&2
    exit 1
  fi
  status=0
  cargo +nightly fuzz run --target-dir "$ROOT/target/fuzz" "$target" "$corpus" -- \
    -max_total_time="$SECONDS_EACH" -max_len=8192 -print_final_stats=1 > "$log" 2>&1 || status=$?
  grep -E "stat::number_of_executed_units|stat::new_units_added|ERROR|panicked|SUMMARY|Done" "$log" || true
  if [ "$status" -ne 0 ] || ls "$ROOT/fuzz/artifacts/$target"/crash-* >/dev/null 2>&1; then
    tail -30 "$log" >&2
    echo "fuzz: $target failed (exit $status); inputs in fuzz/artifacts/$target" >&2
    exit 1
  fi
done
