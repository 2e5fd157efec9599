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

/// One request's tracing work when nothing is recorded, for the criterion benchmark in
/// `proxy/benches/observe.rs`: what the exchange does with `tracing:` configured and no
/// exporter in play.
#[doc(hidden)]
pub mod bench {
    use std::time::Instant;

    /// Reads `incoming`'s `traceparent`, starts the trace (sampled at `ratio` when none
    /// came), and writes the upstream attempt's `traceparent` into `upstream`; returns
    /// whether the trace is sampled.
    pub fn one_request(
        incoming: &http::HeaderMap,
        upstream: &mut http::HeaderMap,
        ratio: f64,
    ) -> bool {
        let trace = super::Trace::start(
            incoming.get(super::TRACEPARENT).map(|v| v.as_bytes()),
            ratio,
            None,
            Instant::now(),
        );
        let (_, traceparent) = trace.child();
        upstream.insert(super::TRACEPARENT, traceparent);
        trace.sampled()
    }
}
