//! What a metric update costs on the request path: weft's own counters and histograms
//! (`weft::metrics`, an atomic add on a handle resolved once) against the `prometheus`
//! crate's, updated the same way (a handle from `with_label_values` resolved once), and
//! the crate's label lookup per update for comparison. A request updates about four
//! series (a class counter, the duration histogram, the cluster's attempt counter and
//! attempt histogram); a filter call one histogram and one counter.
//!
//! Run: `cargo bench -p weft --bench metrics`. Numbers are in benches/README.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn metrics(c: &mut Criterion) {
    let weft = weft::metrics::Registry::new();
    let counter = weft.counter(
        "weft_requests_total",
        "Requests.",
        &[("listener", "edge"), ("route", "api"), ("class", "2xx")],
    );
    let histogram = weft.histogram(
        "weft_request_duration_seconds",
        "Latency.",
        &[("listener", "edge"), ("route", "api")],
    );

    let registry = prometheus::Registry::new();
    let p_counters = prometheus::IntCounterVec::new(
        prometheus::Opts::new("weft_requests_total", "Requests."),
        &["listener", "route", "class"],
    )
    .unwrap();
    let p_histograms = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("weft_request_duration_seconds", "Latency.")
            .buckets(weft::metrics::LATENCY_BUCKETS.to_vec()),
        &["listener", "route"],
    )
    .unwrap();
    registry.register(Box::new(p_counters.clone())).unwrap();
    registry.register(Box::new(p_histograms.clone())).unwrap();
    let p_counter = p_counters.with_label_values(&["edge", "api", "2xx"]);
    let p_histogram = p_histograms.with_label_values(&["edge", "api"]);

    let mut g = c.benchmark_group("metrics");
    g.bench_function("weft counter inc", |b| b.iter(|| black_box(&counter).inc()));
    g.bench_function("prometheus IntCounter inc", |b| {
        b.iter(|| black_box(&p_counter).inc())
    });
    g.bench_function("prometheus IntCounterVec with_label_values + inc", |b| {
        b.iter(|| {
            p_counters
                .with_label_values(black_box(&["edge", "api", "2xx"]))
                .inc()
        })
    });
    g.bench_function("weft histogram observe", |b| {
        b.iter(|| black_box(&histogram).observe(black_box(0.0031)))
    });
    g.bench_function("prometheus Histogram observe", |b| {
        b.iter(|| black_box(&p_histogram).observe(black_box(0.0031)))
    });
    g.finish();
}

criterion_group!(benches, metrics);
criterion_main!(benches);
