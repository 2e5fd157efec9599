//! Cost per request of filter chains, measured on the filter host directly (no network):
//! the request-headers and response-headers phases of a chain of 0, 1 and 5 no-op
//! filters, of the example request-id filter and of the five built-in filters of the
//! load harness's /chain5 route; and the cost of a new instance.
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

/// The proxy's allocator (see `proxy/src/main.rs`), so the numbers are the proxy's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use http::{HeaderMap, Method, StatusCode};
use weft::config::model::FailurePolicy;
use weft::config::CheckedFilter;
use weft::host::services::BoxFuture;
use weft::host::{
    Action, CallError, FilterHost, HostServices, LoadedFilter, Outbound, OutboundRequest,
    OutboundResponse, RequestCtx, ResponseCtx,
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
    checked_with(name, module, "null")
}

fn checked_with(name: &str, module: PathBuf, config: &str) -> CheckedFilter {
    CheckedFilter {
        name: name.to_owned(),
        module,
        config_json: config.to_owned(),
        files: vec![],
        failure_policy: FailurePolicy::FailOpen,
        failure_status: StatusCode::SERVICE_UNAVAILABLE,
        timeout: Duration::from_millis(50),
        memory_limit: 16 << 20,
        field: String::new(),
    }
}

/// An HS256 token signed with the authz test secret, valid for an hour.
fn token() -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::Mac;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"hs-1"}"#);
    let claims =
        URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"user-7","aud":"orders","exp":{exp}}}"#));
    let signed = format!("{header}.{claims}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(
        b"a shared secret of the test suite, 32+ bytes long",
    )
    .unwrap();
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
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
        ..RequestCtx::default()
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
    exchange_with(chain, request()).await
}

async fn exchange_with(chain: &[Arc<LoadedFilter>], req: Box<RequestCtx>) {
    let mut req = Some(req);
    for f in chain.iter().filter(|f| f.info.phases.request_headers) {
        let _ = f.request_headers(&mut req).await;
    }
    let mut resp = Some(response());
    for f in chain
        .iter()
        .rev()
        .filter(|f| f.info.phases.response_headers)
    {
        let _ = f.response_headers(&mut req, &mut resp).await;
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
        rt.block_on(host.load_filter(&checked(name, dir.join(file)), outbound.clone(), None))
            .unwrap()
    };
    let noops: Vec<Arc<LoadedFilter>> = (0..5)
        .map(|i| load(&format!("noop{i}"), "noop.wasm"))
        .collect();
    let request_id = load("request-id", "request-id.wasm");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let jwks = std::fs::read(repo.join("filters/authz/testdata/jwks.json")).unwrap();
    let load_with = |name: &str, config: &str, files: Vec<(String, Vec<u8>)>| {
        let mut c = checked_with(name, dir.join(format!("{name}.wasm")), config);
        c.files = files;
        rt.block_on(host.load_filter(&c, outbound.clone(), None))
            .unwrap()
    };
    // The same five filters and configuration as the load harness's /chain5 route.
    let chain5: Vec<Arc<LoadedFilter>> = vec![
        load_with(
            "authz",
            r#"{"jwt":{"audiences":["orders"],"jwks_file":"jwks"}}"#,
            vec![("jwks".into(), jwks)],
        ),
        load_with(
            "ratelimit",
            r#"{"rules":[{"name":"ip","key":"client_ip","rate":1000000000,"per":"1s"}]}"#,
            vec![],
        ),
        load_with(
            "fault",
            r#"{"abort":{"percent":0},"delay":{"percent":0,"duration":"1ms"}}"#,
            vec![],
        ),
        load_with(
            "router",
            r#"{"routes":[{"match":{"path":{"prefix":"/api"}},"cluster":"echo"}]}"#,
            vec![],
        ),
        load_with("retry", "null", vec![]),
    ];
    let bearer: http::HeaderValue = format!("Bearer {}", token()).parse().unwrap();
    let authorized = || {
        let mut r = request();
        r.headers
            .insert(http::header::AUTHORIZATION, bearer.clone());
        r
    };
    // The bench is only meaningful if the chain lets the request through.
    rt.block_on(async {
        let mut req = Some(authorized());
        for f in &chain5 {
            match f.request_headers(&mut req).await {
                Ok(Action::Continue | Action::RouteTo(_)) => {}
                Ok(a) => panic!("{} stopped the request: {a:?}", f.name),
                Err(e) => panic!("{} failed: {e}", f.name),
            }
        }
    });

    let mut g = c.benchmark_group("chain_per_request");
    g.bench_function("0_filters", |b| b.iter(|| rt.block_on(exchange(&[]))));
    g.bench_function("1_noop", |b| b.iter(|| rt.block_on(exchange(&noops[..1]))));
    g.bench_function("5_noop", |b| b.iter(|| rt.block_on(exchange(&noops))));
    g.bench_function("request_id", |b| {
        b.iter(|| rt.block_on(exchange(std::slice::from_ref(&request_id))))
    });
    g.bench_function("5_builtin_authz_ratelimit_fault_router_retry", |b| {
        b.iter(|| rt.block_on(exchange_with(&chain5, authorized())))
    });
    // Two workers (threads with their own runtime, as the proxy's) running the chain of
    // five no-op filters at once: the time per request on each, to compare with
    // `5_noop` (what sharing the filters across workers costs).
    g.bench_function("5_noop_2_workers_at_once", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            let workers: Vec<_> = (0..2)
                .map(|w| {
                    let noops = noops.clone();
                    std::thread::spawn(move || {
                        weft::shard::set_worker(w);
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap();
                        for _ in 0..iters {
                            rt.block_on(exchange(&noops));
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            start.elapsed()
        })
    });
    for f in &chain5 {
        g.bench_function(format!("builtin_{}", f.name), |b| {
            b.iter(|| rt.block_on(exchange_with(std::slice::from_ref(f), authorized())))
        });
    }
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
