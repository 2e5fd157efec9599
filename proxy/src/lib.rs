//! weft: a programmable proxy for service meshes.
//!
//! The modules, bottom up (each imports only from those above it in this list):
//! leaves (`alloc_count`, `clock`, `shard`, `background`, `metrics`, `deadline`, `net`,
//! `logsink`, `logging`, `trace`, `overload`), `error`,
//! `body`, `config`, then `host`, `upstream` and `tls` (host imports neither),
//! `snapshot`, `exchange`, `server`, and the tooling on top (`app`, `reload`, `admin`,
//! `control`, `bundle`, `build`, `runner`, `bench`, `cli`). `scripts/layers.py` checks it.

pub(crate) mod admin;
pub mod alloc_count;
pub(crate) mod app;
pub(crate) mod background;
pub(crate) mod bench;
pub(crate) mod body;
pub(crate) mod build;
pub(crate) mod bundle;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub(crate) mod control;
pub(crate) mod deadline;
pub(crate) mod error;
pub(crate) mod exchange;
pub mod host;
pub mod logging;
pub(crate) mod logsink;
pub mod metrics;
pub(crate) mod net;
pub(crate) mod overload;
pub(crate) mod reload;
pub(crate) mod runner;
pub(crate) mod server;
pub mod shard;
pub(crate) mod snapshot;
pub(crate) mod tls;
pub(crate) mod trace;
pub(crate) mod upstream;

/// Pieces of the request path, one request's worth each, for the criterion benchmarks
/// in `proxy/benches/`. Not an API: they change with the code they measure.
/// What the fuzz targets (`fuzz/`, cargo-fuzz) call: each entry panics on a bug.
#[doc(hidden)]
pub mod fuzz_hooks {
    pub use crate::bundle::{fuzz as bundle, fuzz_seed as bundle_seed};
    pub use crate::config::fuzz as config;
    pub use crate::host::answer::fuzz as answer;
}

#[doc(hidden)]
pub mod bench_hooks {
    pub use crate::exchange::access::bench::OneRequest as AccessLogRequest;
    pub use crate::trace::bench::one_request as trace_request;
    pub use crate::upstream::balance::{hash_bytes, Balancer, FAILED_CHECK};
}
