# The two commands the README gives:
#   make run    builds the proxy and every filter, then runs examples/gateway.yaml
#   make test   runs every test
# Both install the wasm toolchain if this machine lacks one (scripts/install-toolchain.sh);
# `make test` also installs the real peers the tests start (etcd: scripts/install-test-peers.sh).

CARGO ?= cargo

# The oldest Rust the workspace supports (wasmtime 50's floor; rust-version in
# Cargo.toml, msrv in clippy.toml). `make msrv` compiles the crates a filter author
# builds (the SDK, the filters, weft-h1, shared-state) with it, natively and for wasm32;
# the proxy is built with rust-toolchain.toml's compiler and clippy holds it to the floor.
MSRV ?= 1.97

.PHONY: run build install test lint msrv layers bench toolchain test-peers fuzz

toolchain:
	@scripts/install-toolchain.sh

test-peers:
	@scripts/install-test-peers.sh

build: toolchain
	$(CARGO) build --release -p weft
	target/release/weft filter build --all .

run: build
	@scripts/run-example.sh

# Puts `weft` on PATH (rustup's ~/.cargo/bin by default).
BINDIR ?= $(HOME)/.cargo/bin
install: build
	install -d $(BINDIR)
	install -m 755 target/release/weft $(BINDIR)/weft
	@echo "installed $(BINDIR)/weft"

test: toolchain test-peers
	$(CARGO) test --release --workspace

lint: layers
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

layers:
	scripts/layers.py

msrv:
	rustup toolchain install $(MSRV) --profile minimal --target wasm32-unknown-unknown >/dev/null
	$(CARGO) +$(MSRV) check --workspace --exclude weft --all-targets
	$(CARGO) +$(MSRV) check --target wasm32-unknown-unknown -p weft-sdk -p request-id \
		-p authz -p ext-authz -p fault -p ratelimit -p retry -p router

# The HTTP/1.1 parsers under libFuzzer, FUZZ_SECONDS (default 60) per target.
fuzz:
	scripts/fuzz.sh

bench: build
	$(CARGO) bench -p weft --bench filter_chain
	benches/load/run.sh
	benches/load/tls.sh
