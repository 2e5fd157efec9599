//! The control plane end to end, all real processes: `weft control serve`, proxies
//! started with `--control`, bundles packed, signed and pushed with the CLI, traffic
//! through the proxies while bundles change, a tampered bundle, a control plane that
//! dies and comes back, a staged rollout and its rollback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::client::{self, empty, request, Conn, Reply, Version};
use crate::support::filters::component;
use crate::support::proxy::{weft_cli, ControlPlane, TempDir, Weft};
use crate::support::upstream::Upstream;
use http::Method;

/// What a response says about the bundle that served it.
fn served_by(r: &Reply) -> String {
    if r.status != 200 {
        return format!("status {}", r.status);
    }
    match (r.header("x-stamp"), r.header("x-request-id")) {
        (Some(s), None) => format!("stamp:{s}"),
        (None, Some(_)) => "request-id".into(),
        _ => format!("unexpected {:?}", r.headers),
    }
}

/// A workspace for bundles: an operator key and a directory per bundle.
struct Operator {
    dir: TempDir,
    upstream: SocketAddr,
}

impl Operator {
    fn new(upstream: SocketAddr) -> Operator {
        let dir = TempDir::new("operator");
        let out = dir.0.join("op");
        let (ok, _, err) = weft_cli(&["bundle", "keygen", "--out", out.to_str().unwrap()]);
        assert!(ok, "{err}");
        Operator { dir, upstream }
    }

    fn public_key(&self) -> PathBuf {
        self.dir.0.join("op.pub")
    }

    /// Packs and signs a bundle whose filter is the stamp module with `stamp`, or the
    /// request-id module when `stamp` is `None`. Returns its directory.
    fn bundle(&self, name: &str, stamp: Option<&str>) -> PathBuf {
        let filter = match stamp {
            Some(s) => format!(
                "module: {}\n    config: {{ stamp: {s} }}",
                component("stamp").display()
            ),
            None => format!("module: {}", component("request-id").display()),
        };
        let config = format!(
            r#"
admin:
  address: 127.0.0.1:0
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: up
        filters: [f]
clusters:
  up:
    endpoints: ["{}"]
filters:
  f:
    {filter}
"#,
            self.upstream
        );
        let cfg = self.dir.0.join(format!("{name}.yaml"));
        std::fs::write(&cfg, config).unwrap();
        let out = self.dir.0.join(name);
        let (ok, _, err) = weft_cli(&[
            "bundle",
            "pack",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--name",
            name,
        ]);
        assert!(ok, "pack: {err}");
        let key = self.dir.0.join("op.key");
        let (ok, _, err) = weft_cli(&[
            "bundle",
            "sign",
            "--key",
            key.to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        assert!(ok, "sign: {err}");
        out
    }
}

fn push(cp: SocketAddr, bundle: &Path, select: &[&str]) {
    let addr = cp.to_string();
    let mut args = vec![
        "control",
        "push",
        "--server",
        &addr,
        bundle.to_str().unwrap(),
    ];
    for s in select {
        args.extend(["--select", s]);
    }
    let (ok, out, err) = weft_cli(&args);
    assert!(ok, "push: {out} {err}");
}

fn version_of(bundle: &Path) -> String {
    let manifest = std::fs::read(bundle.join("manifest.json")).unwrap();
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(manifest))
}

async fn status(cp: SocketAddr) -> serde_json::Value {
    let text = client::get_text(&format!("http://{cp}/v1/status")).await;
    serde_json::from_str(&text).unwrap()
}

fn proxy(cp: &[SocketAddr], name: &str, track: &str, trust: &Path, state: Option<&Path>) -> Weft {
    let servers = cp
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let label = format!("track={track}");
    let mut args = vec![
        "--control",
        &servers,
        "--name",
        name,
        "--label",
        &label,
        "--service",
        "shop",
        "--trust",
        trust.to_str().unwrap(),
        "--workers",
        "1",
    ];
    let state_str;
    if let Some(s) = state {
        state_str = s.display().to_string();
        args.extend(["--state-dir", &state_str]);
    }
    Weft::start_controlled(&args)
}

/// Waits (up to 20 s) until every proxy serves `wanted`; returns how long it took.
async fn converge(proxies: &[&Weft], wanted: &str) -> Duration {
    let start = Instant::now();
    for p in proxies {
        let addr = p.addr("edge");
        loop {
            let got = served_by(&client::get(addr, "/", &[]).await);
            if got == wanted {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{}: still {got}, not {wanted}",
                addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    start.elapsed()
}

/// Keep-alive clients (one HTTP/1.1, one HTTP/2 per proxy) counting failures until
/// stopped (bounded to 90 s).
struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<parking_lot::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(addrs: &[SocketAddr]) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for &addr in addrs {
            for version in [Version::H1, Version::H2] {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                tasks.push(tokio::spawn(async move {
                    let mut conn = Conn::open(addr, version).await;
                    let deadline = Instant::now() + Duration::from_secs(90);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let req = request(version, addr, Method::GET, "/", &[], empty());
                        match conn.try_send(req).await {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures
                                .lock()
                                .push(format!("{addr} {version:?}: {}", r.status)),
                            Err(e) => {
                                failures.lock().push(format!("{addr} {version:?}: {e}"));
                                conn = Conn::open(addr, version).await;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }));
            }
        }
        Traffic {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    /// Lets the traffic run until `n` requests have succeeded (10 s at most): a test
    /// whose proxies converged in milliseconds still shows requests flowing on the
    /// configuration they ended on, rather than however many fit in that time.
    async fn at_least(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ok.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_reaches_three_proxies_and_a_tampered_one_is_refused() {
    let up = Upstream::start("up");
    let op = Operator::new(up.addr);
    let store = TempDir::new("store");
    let cp = ControlPlane::start(&store.0, "127.0.0.1:0");
    let v1 = op.bundle("v1", Some("one"));
    push(cp.addr, &v1, &[]);

    let proxies: Vec<Weft> = (1..=3)
        .map(|i| {
            proxy(
                &[cp.addr],
                &format!("p{i}"),
                "stable",
                &op.public_key(),
                None,
            )
        })
        .collect();
    let all: Vec<&Weft> = proxies.iter().collect();
    converge(&all, "stamp:one").await;
    let traffic = Traffic::start(&proxies.iter().map(|p| p.addr("edge")).collect::<Vec<_>>());

    // A new bundle, with a module the proxies do not have yet.
    let v2 = op.bundle("v2", None);
    push(cp.addr, &v2, &[]);
    let took = converge(&all, "request-id").await;
    eprintln!("v2 reached 3 proxies in {took:?}");
    let v2_version = version_of(&v2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(cp.addr).await;
        let acked = (1..=3)
            .filter(|i| s["proxies"][format!("p{i}")]["running"] == v2_version.as_str())
            .count();
        if acked == 3 {
            for i in 1..=3 {
                assert_eq!(s["proxies"][format!("p{i}")]["connected"], true);
            }
            break;
        }
        assert!(Instant::now() < deadline, "not every proxy ACKed v2: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Each proxy fetched the one blob it lacked (the request-id module), nothing else.
    for p in &proxies {
        assert_eq!(p.metric("weft_control_blobs_fetched_total").await, 1.0);
        assert_eq!(
            p.metric("weft_control_pushes_total{outcome=\"applied\"}")
                .await,
            1.0
        );
        assert_eq!(p.metric("weft_control_connected").await, 1.0);
    }

    // Tampered after signing: the manifest says stamp "evil" now. Every proxy refuses
    // it (NACK with the reason) and keeps serving v2.
    let v3 = op.bundle("v3", Some("three"));
    let manifest = std::fs::read_to_string(v3.join("manifest.json")).unwrap();
    std::fs::write(v3.join("manifest.json"), manifest.replace("three", "evil")).unwrap();
    push(cp.addr, &v3, &[]);
    let v3_version = version_of(&v3);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(cp.addr).await;
        let refused: Vec<String> = (1..=3)
            .filter_map(|i| {
                let p = &s["proxies"][format!("p{i}")];
                (p["refused"]["version"] == v3_version.as_str())
                    .then(|| p["refused"]["reason"].as_str().unwrap().to_owned())
            })
            .collect();
        if refused.len() == 3 {
            assert!(
                refused.iter().all(|r| r.contains("signature")),
                "{refused:?}"
            );
            assert!(
                (1..=3).all(|i| s["proxies"][format!("p{i}")]["running"] == v2_version.as_str())
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tampered bundle not refused by all: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(converge(&all, "request-id").await < Duration::from_secs(1));

    traffic.at_least(150).await;
    let (ok, failures) = traffic.finish().await;
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(ok > 100, "only {ok} requests");

    // The CLI's view.
    let (done, out, err) = weft_cli(&["control", "status", "--server", &cp.addr.to_string()]);
    assert!(done, "{err}");
    assert!(out.contains("p1") && out.contains("signature"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_serve_through_a_control_plane_outage_and_converge_after() {
    let up = Upstream::start("up");
    let op = Operator::new(up.addr);
    let store = TempDir::new("store");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cp = ControlPlane::start(&store.0, &port.to_string());
    push(cp.addr, &op.bundle("v1", Some("one")), &[]);
    let state3 = TempDir::new("state3");
    let p1 = proxy(&[port], "p1", "stable", &op.public_key(), None);
    let p2 = proxy(&[port], "p2", "stable", &op.public_key(), None);
    let p3 = proxy(&[port], "p3", "stable", &op.public_key(), Some(&state3.0));
    converge(&[&p1, &p2, &p3], "stamp:one").await;
    let traffic = Traffic::start(&[p1.addr("edge"), p2.addr("edge")]);

    cp.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A proxy restarted while the control plane is down starts from its last good
    // configuration.
    drop(p3);
    let p3 = proxy(&[port], "p3", "stable", &op.public_key(), Some(&state3.0));
    assert_eq!(
        served_by(&client::get(p3.addr("edge"), "/", &[]).await),
        "stamp:one"
    );

    // The control plane comes back (same store, same address); a new bundle reaches all.
    let cp = ControlPlane::start(&store.0, &port.to_string());
    push(cp.addr, &op.bundle("v2", Some("two")), &[]);
    let took = converge(&[&p1, &p2, &p3], "stamp:two").await;
    eprintln!("converged {took:?} after the control plane returned");
    // v2 uses the module v1 brought: nothing fetched.
    assert_eq!(p1.metric("weft_control_blobs_fetched_total").await, 0.0);
    traffic.at_least(150).await;
    let (ok, failures) = traffic.finish().await;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(ok > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_gets_the_bundle_first_then_all_then_it_is_rolled_back() {
    let up = Upstream::start("up");
    let op = Operator::new(up.addr);
    let store = TempDir::new("store");
    let cp = ControlPlane::start(&store.0, "127.0.0.1:0");
    let server = cp.addr.to_string();
    push(cp.addr, &op.bundle("v1", Some("one")), &[]);
    let canary = proxy(&[cp.addr], "c1", "canary", &op.public_key(), None);
    let stable = proxy(&[cp.addr], "s1", "stable", &op.public_key(), None);
    converge(&[&canary, &stable], "stamp:one").await;

    let v2 = op.bundle("v2", Some("two"));
    push(cp.addr, &v2, &["track=canary"]);
    converge(&[&canary], "stamp:two").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(converge(&[&stable], "stamp:one").await < Duration::from_secs(1));

    push(cp.addr, &v2, &[]);
    converge(&[&stable], "stamp:two").await;

    // Roll "all" back: the stable proxy returns to v1; the canary rule still holds v2.
    let (ok, out, err) = weft_cli(&["control", "rollback", "--server", &server]);
    assert!(ok, "{out}{err}");
    converge(&[&stable], "stamp:one").await;
    converge(&[&canary], "stamp:two").await;
    // Roll the canary back: its rule goes, and it follows "all" (v1).
    let (ok, out, err) = weft_cli(&[
        "control",
        "rollback",
        "--server",
        &server,
        "--select",
        "track=canary",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("rule removed"), "{out}");
    converge(&[&canary], "stamp:one").await;
}

/// An unsigned bundle is refused by proxies that trust a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_bundles_are_refused_when_signatures_are_required() {
    let up = Upstream::start("up");
    let op = Operator::new(up.addr);
    let store = TempDir::new("store");
    let cp = ControlPlane::start(&store.0, "127.0.0.1:0");
    push(cp.addr, &op.bundle("v1", Some("one")), &[]);
    let p = proxy(&[cp.addr], "p1", "stable", &op.public_key(), None);
    converge(&[&p], "stamp:one").await;
    let v2 = op.bundle("v2", Some("two"));
    std::fs::remove_file(v2.join("manifest.sig")).unwrap();
    push(cp.addr, &v2, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(cp.addr).await;
        if let Some(reason) = s["proxies"]["p1"]["refused"]["reason"].as_str() {
            assert!(reason.contains("not signed"), "{reason}");
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        served_by(&client::get(p.addr("edge"), "/", &[]).await),
        "stamp:one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_bundles_through_etcd_and_proxies_fail_over() {
    let etcd = crate::support::proxy::EtcdServer::start();
    let up = Upstream::start("up");
    let op = Operator::new(up.addr);
    let (store_a, store_b) = (TempDir::new("replica-a"), TempDir::new("replica-b"));
    let etcd_addr = etcd.addr.to_string();
    let a = ControlPlane::start_with(&store_a.0, "127.0.0.1:0", &["--etcd", &etcd_addr]);
    let b = ControlPlane::start_with(&store_b.0, "127.0.0.1:0", &["--etcd", &etcd_addr]);

    // Pushed through A; p1 knows only B, and gets it (bundle and blobs from etcd).
    push(a.addr, &op.bundle("v1", Some("one")), &[]);
    let p1 = proxy(&[b.addr], "p1", "stable", &op.public_key(), None);
    // p2 prefers A, and knows B.
    let p2 = proxy(&[a.addr, b.addr], "p2", "stable", &op.public_key(), None);
    converge(&[&p1, &p2], "stamp:one").await;

    // A change through B reaches p2, connected to A.
    let v2 = op.bundle("v2", Some("two"));
    push(b.addr, &v2, &[]);
    converge(&[&p1, &p2], "stamp:two").await;
    // Each replica's status shows both proxies, wherever they are connected.
    let deadline = Instant::now() + Duration::from_secs(10);
    let v2_version = version_of(&v2);
    loop {
        let s = status(a.addr).await;
        if s["proxies"]["p1"]["running"] == v2_version.as_str()
            && s["proxies"]["p2"]["running"] == v2_version.as_str()
        {
            assert_eq!(s["proxies"]["p1"]["replica"], b.addr.to_string());
            assert_eq!(s["proxies"]["p2"]["replica"], a.addr.to_string());
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A dies: p2 fails over to B, and a push through B reaches it.
    let traffic = Traffic::start(&[p1.addr("edge"), p2.addr("edge")]);
    a.kill();
    push(b.addr, &op.bundle("v3", None), &[]);
    let took = converge(&[&p1, &p2], "request-id").await;
    eprintln!("after replica A died, v3 reached both proxies in {took:?}");
    traffic.at_least(150).await;
    let (ok, failures) = traffic.finish().await;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(ok > 50);
    let s = status(b.addr).await;
    assert_eq!(s["proxies"]["p2"]["replica"], b.addr.to_string(), "{s}");
}
