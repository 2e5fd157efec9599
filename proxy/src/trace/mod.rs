//! Distributed tracing: W3C trace context read from each request and passed upstream
//! with a new span id per attempt, and, for sampled requests, spans for the request,
//! its upstream attempts and its filter calls, exported over OTLP/HTTP (protobuf) by
//! OpenTelemetry's batch processor on a thread of its own.
//!
//! Requests pay for what they use: without `tracing:` in the configuration nothing
//! here runs; an unsampled request costs a parse, two random ids and a header; only a
//! sampled one allocates spans.

pub mod context;
pub mod export;
pub mod span;

pub use context::TRACEPARENT;
pub use export::{flush_all, tracer, Tracer};
pub use span::{Kind, SpanRec, Trace};
