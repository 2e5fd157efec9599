//! Cost per request of filter chains, measured on the filter host directly (no network):
//! the request-headers and response-headers phases of a chain of 0, 1 and 5 no-op
//! filters and of the example request-id filter; and the cost of a new instance.
//!
//! Run: `cargo bench -p weft --bench filter_chain` (the README's `make bench` also runs
//! the load harness). Numbers are reported in benches/README.md.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, Method, StatusCode};
use weft::config::model::FailurePolicy;
use weft::config::CheckedFilter;
use weft::host::bindings::weft::filter::http_client::{
    CallError, OutboundRequest, OutboundResponse,
};
use weft::host::services::BoxFuture;
use weft::host::{
    FilterHost, HostServices, LoadedFilter, Outbound, PhaseCall, RequestCtx, ResponseCtx,
};
use weft::metrics::Registry;

struct NoOutbound;

impl Outbound for NoOutbound {
    fn send(
        &self,
        cluster: String,
        _: OutboundRequest,
    ) -> BoxFuture<Result<OutboundResponse, CallError>> {
        Box::pin(async move { Err(CallError::UnknownCluster(cluster)) })
    }
}

fn components() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["filter", "build", "--all"])
        .arg(&repo)
        .status()
        .expect("weft filter build");
    assert!(status.success());
    repo.join("target/filters")
}

fn checked(name: &str, module: PathBuf) -> CheckedFilter {
    CheckedFilter {
        name: name.to_owned(),
        module,
        config_json: "null".to_owned(),
        files: vec![],
        failure_policy: FailurePolicy::FailOpen,
        failure_status: StatusCode::SERVICE_UNAVAILABLE,
        timeout: Duration::from_millis(50),
        memory_limit: 16 << 20,
        field: String::new(),
    }
}

/// A request like the load harness sends: a handful of ordinary headers.
fn request() -> Box<RequestCtx> {
    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("user-agent", "wrk"),
        ("accept", "*/*"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
    ] {
        headers.insert(k, v.parse().unwrap());
    }
    Box::new(RequestCtx {
        method: Method::GET,
        scheme: "http",
        authority: "127.0.0.1:8080".into(),
        path: "/api/items?limit=10".parse().unwrap(),
        headers,
        client_addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
        peer_identity: None,
        listener: "edge".into(),
        route: "api".into(),
        cluster: "echo".into(),
        attempt: 1,
        properties: vec![],
        replay_limit: None,
        body_replayable: true,
        timeout: None,
        try_timeout: None,
        response_headers: vec![],
    })
}

fn response() -> Box<ResponseCtx> {
    let (head, ()) = http::Response::new(()).into_parts();
    Box::new(ResponseCtx {
        head,
        upstream_failure: None,
        upstream_addr: None,
    })
}

/// The header phases of a chain, as the exchange runs them: each filter's declared
/// phases only.
async fn exchange(chain: &[Arc<LoadedFilter>]) {
    let mut req = Some(request());
    for f in chain.iter().filter(|f| f.info.phases.request_headers) {
        let _ = f.call(PhaseCall::RequestHeaders, &mut req, &mut None).await;
    }
    let mut resp = Some(response());
    for f in chain
        .iter()
        .rev()
        .filter(|f| f.info.phases.response_headers)
    {
        let _ = f
            .call(PhaseCall::ResponseHeaders, &mut req, &mut resp)
            .await;
    }
    black_box((req, resp));
}

fn benches(c: &mut Criterion) {
    let dir = components();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = std::env::temp_dir().join("weft-bench-cache");
    let host = FilterHost::new(Some(cache), 100, HostServices::new(Registry::new())).unwrap();
    let outbound: Arc<dyn Outbound> = Arc::new(NoOutbound);
    let load = |name: &str, file: &str| -> Arc<LoadedFilter> {
        Arc::new(
            rt.block_on(host.load_filter(&checked(name, dir.join(file)), outbound.clone()))
                .unwrap(),
        )
    };
    let noops: Vec<Arc<LoadedFilter>> = (0..5)
        .map(|i| load(&format!("noop{i}"), "noop.wasm"))
        .collect();
    let request_id = load("request-id", "request-id.wasm");

    let mut g = c.benchmark_group("chain_per_request");
    g.bench_function("0_filters", |b| b.iter(|| rt.block_on(exchange(&[]))));
    g.bench_function("1_noop", |b| b.iter(|| rt.block_on(exchange(&noops[..1]))));
    g.bench_function("5_noop", |b| b.iter(|| rt.block_on(exchange(&noops))));
    g.bench_function("request_id", |b| {
        b.iter(|| rt.block_on(exchange(std::slice::from_ref(&request_id))))
    });
    g.finish();

    let module = host.load_module(&dir.join("noop.wasm")).unwrap();
    let noop_checked = checked("fresh", dir.join("noop.wasm"));
    let services = host.services.clone();
    c.bench_function("instantiate_and_init_noop", |b| {
        b.iter(|| {
            let f = rt.block_on(LoadedFilter::start(
                module.clone(),
                &noop_checked,
                services.clone(),
                outbound.clone(),
            ));
            black_box(f.unwrap());
        })
    });
}

criterion_group! {
    name = group;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(group);
