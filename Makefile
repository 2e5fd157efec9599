# The two commands the README gives:
#   make run    builds the proxy and every filter, then runs examples/gateway.yaml
#   make test   runs every test
# Both install the wasm toolchain if this machine lacks one (scripts/install-toolchain.sh);
# `make test` also installs the real peers the tests start (etcd: scripts/install-test-peers.sh).

CARGO ?= cargo

.PHONY: run build test lint bench toolchain test-peers

toolchain:
	@scripts/install-toolchain.sh

test-peers:
	@scripts/install-test-peers.sh

build: toolchain
	$(CARGO) build --release -p weft
	target/release/weft filter build --all .

run: build
	@scripts/run-example.sh

test: toolchain test-peers
	$(CARGO) test --release --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

bench: build
	$(CARGO) bench -p weft --bench filter_chain
	benches/load/run.sh
