//! What observability adds to a request, in nanoseconds, where the load harness's
//! spread (±2 µs a round on this VM) cannot see it:
//!
//! - `access_log/worker`: the worker's part of one access-log line: the entry copied
//!   out of the request, the response body observed to its end, the JSON line built and
//!   appended to the sink's buffer (`weft::bench_hooks::AccessLogRequest`, the code the
//!   exchange runs). The sink's writer thread writes to `/dev/null` here.
//! - `access_log/writer_per_1000_lines`: the writer thread's part: 1,000 lines of the
//!   same length written to a file in one call, as the writer does every 50 ms (the
//!   page-cache copy; divide by 1,000 for a line).
//! - `tracing/new_trace_1pct` and `tracing/continued`: an unsampled request's tracing
//!   work: `traceparent` looked up, the trace started (sampled at 1% when none came),
//!   the upstream attempt's `traceparent` written. A sampled request's spans are
//!   measured by `benches/load/observe.sh` at 100% sampling and weighted by 1%.
//!
//! Run: `cargo bench -p weft --bench observe`. Numbers are in benches/README.md.

use std::hint::black_box;
use std::os::unix::fs::FileExt;

use criterion::{criterion_group, criterion_main, Criterion};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An access-log line as the worker writes it (344 bytes).
const LINE: &[u8] = br#"{"time":"2026-12-02T07:41:12.345Z","method":"GET","authority":"api.example.com","path":"/v1/orders?page=2","status":200,"request_bytes":0,"response_bytes":24,"duration_ms":0.213,"upstream":"127.0.0.1:8081","attempts":1,"route":"api","cluster":"backend","listener":"edge","client":"127.0.0.1:54321","peer_identity":null,"trace_id":null,"flags":"-","properties":{}}
"#;

fn access_log(c: &mut Criterion) {
    let one = weft::bench_hooks::AccessLogRequest::new(std::path::Path::new("/dev/null"))
        .expect("a sink on /dev/null");
    c.bench_function("access_log/worker", |b| b.iter(|| one.run()));

    let path = std::env::temp_dir().join(format!("weft-bench-access-{}.log", std::process::id()));
    let file = std::fs::File::create(&path).expect("a file");
    let batch: Vec<u8> = LINE.repeat(1000);
    c.bench_function("access_log/writer_per_1000_lines", |b| {
        // Written at offset 0 each time: the page-cache copy a write costs, without
        // the file growing by gigabytes.
        b.iter(|| file.write_all_at(black_box(&batch), 0).expect("written"))
    });
    let _ = std::fs::remove_file(&path);
}

fn tracing(c: &mut Criterion) {
    let fresh = http::HeaderMap::new();
    let mut continued = http::HeaderMap::new();
    continued.insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
    );
    let mut upstream = http::HeaderMap::new();
    upstream.insert("host", http::HeaderValue::from_static("api.example.com"));
    c.bench_function("tracing/new_trace_1pct", |b| {
        b.iter(|| weft::bench_hooks::trace_request(black_box(&fresh), &mut upstream, 0.01))
    });
    c.bench_function("tracing/continued", |b| {
        b.iter(|| weft::bench_hooks::trace_request(black_box(&continued), &mut upstream, 0.01))
    });
}

criterion_group!(benches, access_log, tracing);
criterion_main!(benches);
