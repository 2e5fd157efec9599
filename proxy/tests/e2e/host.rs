//! The filter host with real components: phases, instance reuse, traps, deadlines,
//! memory caps, configuration refusal and bad modules.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode};
use weft::config::model::FailurePolicy;
use weft::config::CheckedFilter;
use weft::host::services::BoxFuture;
use weft::host::{
    Action, CallError, FilterFailure, FilterHost, FilterLoadError, HostServices, LoadedFilter,
    ModuleError, Outbound, OutboundRequest, OutboundResponse, RequestCtx, ResponseCtx,
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

fn host(cache: &Path) -> FilterHost {
    FilterHost::new(
        Some(cache.to_owned()),
        64,
        HostServices::new(Registry::new()),
    )
    .expect("host")
}

fn checked(name: &str, module: &Path, config: &str) -> CheckedFilter {
    CheckedFilter {
        name: name.to_owned(),
        module: module.to_owned(),
        config_json: config.to_owned(),
        files: vec![],
        failure_policy: FailurePolicy::FailClosed,
        failure_status: StatusCode::SERVICE_UNAVAILABLE,
        timeout: Duration::from_millis(50),
        memory_limit: 8 << 20,
        field: format!("filters.{name}"),
    }
}

fn request(headers: &[(&str, &str)]) -> Option<Box<RequestCtx>> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    Some(Box::new(RequestCtx {
        method: Method::GET,
        scheme: "http",
        authority: "example.com".into(),
        path: "/x".parse().unwrap(),
        headers: map,
        client_addr: SocketAddr::from(([127, 0, 0, 1], 4000)),
        peer_identity: None,
        listener: "l".into(),
        route: "r".into(),
        cluster: "c".into(),
        ..RequestCtx::default()
    }))
}

fn response() -> Option<Box<ResponseCtx>> {
    let (head, ()) = http::Response::new(()).into_parts();
    Some(Box::new(ResponseCtx {
        head,
        upstream_failure: None,
        upstream_addr: None,
    }))
}

async fn load(
    host: &FilterHost,
    name: &str,
    module: &str,
    config: &str,
) -> Result<Arc<LoadedFilter>, FilterLoadError> {
    host.load_filter(
        &checked(name, &crate::support::filters::component(module), config),
        Arc::new(NoOutbound),
        None,
    )
    .await
}

async fn request_headers(
    f: &LoadedFilter,
    req: &mut Option<Box<RequestCtx>>,
) -> Result<Action, FilterFailure> {
    f.request_headers(req).await
}

#[tokio::test]
async fn request_id_sets_the_id_and_asks_for_it_on_the_response() {
    let dir = tempdir();
    let host = host(&dir);
    let f = load(&host, "rid", "request-id", "null").await.unwrap();
    assert!(f.info.phases.request_headers);
    assert!(
        !f.info.phases.response_headers && !f.info.phases.request_body && !f.info.phases.log,
        "undefined phases are not declared"
    );

    let mut req = request(&[]);
    assert_eq!(
        request_headers(&f, &mut req).await.unwrap(),
        Action::Continue
    );
    let req = req.unwrap();
    let id = req.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36);
    assert_eq!(req.response_headers.len(), 1);
    assert_eq!(req.response_headers[0].0, "x-request-id");
    assert_eq!(req.response_headers[0].1, id.as_str());
    let generated = host.services.metrics.value(
        "weft_filter_request_ids_total",
        &[("filter", "rid"), ("source", "generated")],
    );
    assert_eq!(generated, Some(1.0));
}

#[tokio::test]
async fn workers_keep_their_own_instances_and_borrow_before_making_one() {
    let dir = tempdir();
    let host = host(&dir);
    let f = load(&host, "mis", "misbehave", "null").await.unwrap();
    // Another worker's first call borrows the instance loading made, rather than
    // instantiating (and running `init`) again.
    let on_worker = |worker: usize, calls: usize| {
        let f = f.clone();
        std::thread::spawn(move || {
            weft::shard::set_worker(worker);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for _ in 0..calls {
                    let mut req = request(&[]);
                    assert_eq!(
                        request_headers(&f, &mut req).await.unwrap(),
                        Action::Continue
                    );
                }
            })
        })
    };
    on_worker(1, 1).join().unwrap();
    assert_eq!(f.stats.instances.get(), 1, "borrowed, not made");
    assert_eq!(f.idle_instances(), 1);
    // Two workers calling at once: at most one instance each, all back in the pools.
    let (a, b) = (on_worker(0, 300), on_worker(1, 300));
    a.join().unwrap();
    b.join().unwrap();
    let made = f.stats.instances.get();
    assert!((1..=2).contains(&made), "{made} instances for two workers");
    assert_eq!(f.idle_instances() as u64, made);
    assert_eq!(f.stats.calls.get(), 601);
}

#[tokio::test]
async fn instances_are_reused_and_a_trapped_one_is_replaced() {
    let dir = tempdir();
    let host = host(&dir);
    let f = load(&host, "mis", "misbehave", "null").await.unwrap();
    let calls = |resp: Option<Box<ResponseCtx>>| {
        resp.unwrap().head.headers["x-misbehave-calls"]
            .to_str()
            .unwrap()
            .to_owned()
    };

    for expected in ["1", "2", "3"] {
        let mut req = request(&[]);
        request_headers(&f, &mut req).await.unwrap();
        let mut resp = response();
        f.response_headers(&mut req, &mut resp).await.unwrap();
        assert_eq!(
            calls(resp),
            expected,
            "the same instance serves call after call"
        );
    }

    let mut req = request(&[("x-misbehave", "trap")]);
    let err = request_headers(&f, &mut req).await.unwrap_err();
    assert!(matches!(err, FilterFailure::Trap(_)), "{err:?}");
    assert!(req.is_some(), "the request survives the trap");

    let mut req = request(&[]);
    request_headers(&f, &mut req).await.unwrap();
    let mut resp = response();
    f.response_headers(&mut req, &mut resp).await.unwrap();
    assert_eq!(
        calls(resp),
        "1",
        "a fresh instance replaced the trapped one"
    );
    assert_eq!(
        f.stats
            .failures()
            .iter()
            .find(|(r, _)| *r == "trap")
            .unwrap()
            .1,
        1
    );
    assert_eq!(f.stats.instances.get(), 2);
}

#[tokio::test]
async fn an_endless_loop_is_cut_off_at_its_deadline() {
    let dir = tempdir();
    let host = host(&dir);
    let f = load(&host, "mis", "misbehave", "null").await.unwrap();
    let started = Instant::now();
    let mut req = request(&[("x-misbehave", "loop")]);
    let err = request_headers(&f, &mut req).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, FilterFailure::Deadline);
    assert!(
        took >= Duration::from_millis(50),
        "not before the 50ms deadline: {took:?}"
    );
    assert!(
        took < Duration::from_millis(500),
        "soon after the deadline: {took:?}"
    );
    // The next call works.
    assert_eq!(
        request_headers(&f, &mut request(&[])).await.unwrap(),
        Action::Continue
    );
}

#[tokio::test]
async fn an_idle_host_stops_ticking_and_still_cuts_off_an_endless_loop() {
    let dir = tempdir();
    let host = host(&dir);
    let f = load(&host, "mis", "misbehave", "null").await.unwrap();
    // Idle past the ticker's 100 ticks: it sleeps.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host.ticker_asleep() {
        assert!(Instant::now() < deadline, "the ticker never slept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A call wakes it, and the call's deadline holds.
    let started = Instant::now();
    let mut req = request(&[("x-misbehave", "loop")]);
    assert_eq!(
        request_headers(&f, &mut req).await.unwrap_err(),
        FilterFailure::Deadline
    );
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn memory_beyond_the_cap_is_refused_and_counted() {
    let dir = tempdir();
    let host = host(&dir);
    let f = load(&host, "mis", "misbehave", "null").await.unwrap();
    let err = request_headers(&f, &mut request(&[("x-misbehave", "oom")]))
        .await
        .unwrap_err();
    assert_eq!(err, FilterFailure::Memory);
    assert_eq!(
        f.stats
            .failures()
            .iter()
            .find(|(r, _)| *r == "memory")
            .unwrap()
            .1,
        1
    );
    assert_eq!(
        request_headers(&f, &mut request(&[])).await.unwrap(),
        Action::Continue
    );
}

#[tokio::test]
async fn a_refused_configuration_is_reported_with_the_filters_reason() {
    let dir = tempdir();
    let host = host(&dir);
    let err = load(
        &host,
        "mis",
        "misbehave",
        r#"{"reject": "threshold must be positive"}"#,
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(&err, FilterLoadError::Rejected { path, message } if path.is_empty() && message == "threshold must be positive"),
        "{err}"
    );
    let err = load(&host, "rid", "request-id", r#"{"hedaer": 1}"#)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("unknown field `hedaer`"), "{err}");
    assert!(
        matches!(&err, FilterLoadError::Rejected { path, .. } if path == "hedaer"),
        "the field in error is named: {err:?}"
    );
}

#[tokio::test]
async fn bad_modules_are_refused_with_a_reason() {
    let dir = tempdir();
    let host = host(&dir);
    let core = dir.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    assert!(matches!(
        host.load_module(&core),
        Err(ModuleError::CoreModule(_))
    ));
    let junk = dir.join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();
    assert!(matches!(
        host.load_module(&junk),
        Err(ModuleError::NotWasm(_))
    ));
    let broken = dir.join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let err = host.load_module(&broken).err().unwrap();
    assert!(matches!(err, ModuleError::Invalid { .. }), "{err}");
}

#[tokio::test]
async fn filters_built_for_older_contracts_are_refused_with_how_to_fix_it() {
    // The no-op test filter as weft's SDK built it for weft:filter@0.1.0 (81ee00f) and
    // for @0.2.0 (d102f30).
    for v in ["0.1.0", "0.2.0"] {
        let old = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../tests/fixtures/noop-weft-filter-{v}.wasm"));
        let dir = tempdir();
        let err = host(&dir)
            .load_module(&old)
            .err()
            .unwrap_or_else(|| panic!("a {v} component links"));
        assert!(matches!(err, ModuleError::Link { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("weft:filter@0.3 contract"), "{text}");
        assert!(text.contains("weft filter build"), "{text}");
        assert!(
            text.contains(&format!("built for weft:filter@{v}")),
            "{text}"
        );
    }
}

#[tokio::test]
async fn compiled_modules_are_cached_on_disk_by_digest() {
    let dir = tempdir();
    let module = crate::support::filters::component("noop");
    let first = host(&dir).load_module(&module).unwrap();
    assert!(!first.from_cache);
    let cached = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .count();
    assert_eq!(cached, 1);
    // A new host (as after a restart) reads it instead of compiling.
    let second = host(&dir).load_module(&module).unwrap();
    assert!(second.from_cache);
    assert_eq!(first.digest, second.digest);
}

#[tokio::test]
async fn a_module_file_changed_in_place_is_read_again() {
    let dir = tempdir();
    let host = host(&dir);
    let path = dir.join("f.wasm");
    std::fs::copy(crate::support::filters::component("noop"), &path).unwrap();
    let first = host.load_module(&path).unwrap();
    // Unchanged: the same module (found by the file's stamp, not read again).
    let again = host.load_module(&path).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    // Overwritten in place (same inode, same directory entry): the new content counts.
    let other = std::fs::read(crate::support::filters::component("stamp")).unwrap();
    std::fs::write(&path, &other).unwrap();
    let changed = host.load_module(&path).unwrap();
    assert_ne!(changed.digest, first.digest);
    assert_eq!(changed.digest, weft::host::module::digest(&other));
    // And back, in place again.
    std::fs::copy(crate::support::filters::component("noop"), &path).unwrap();
    assert_eq!(host.load_module(&path).unwrap().digest, first.digest);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "weft-host-test-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn only_filters_that_can_call_out_are_called_asynchronously() {
    let dir = tempdir();
    let host = host(&dir);
    for (name, wants_async) in [
        ("authz", false),
        ("ext-authz", true),
        ("retry", false),
        ("request-id", false),
    ] {
        let module = host
            .load_module(&crate::support::filters::component(name))
            .unwrap();
        assert_eq!(module.needs_async, wants_async, "{name}");
    }
}
