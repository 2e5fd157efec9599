//! weft's end-to-end and integration tests, in one binary (as wasmtime's `tests/all`):
//! the real `weft` binary between real clients and real upstreams on loopback, and the
//! filter host driven directly. One module per area; `support` starts the processes
//! and builds the test filters once for all of them.

mod access_log;
mod author;
mod balance;
mod bench;
mod body;
mod builtin;
mod cli;
mod compat;
mod control;
mod filters;
mod global_state;
mod grpc;
mod host;
mod hostile;
mod http1;
mod http3;
mod observe;
mod overload;
mod proxy;
mod reload;
mod resilience;
mod support;
mod tls;
mod upgrade;
