//! Hot reload end to end: configurations and filter modules swapped on a live proxy
//! under a bounded load of keep-alive HTTP/1.1 and HTTP/2 clients, broken ones refused,
//! listeners added and removed, file-change and SIGHUP triggers, and memory over many
//! reloads.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::client::{self, empty, request, Conn, Reply, Version};
use crate::support::filters::component;
use crate::support::proxy::{TempDir, Weft};
use crate::support::upstream::Upstream;
use http::{Method, StatusCode};

/// Which configuration served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// The stamp module, configured with stamp `A`.
    A,
    /// The request-id module, configured with header `x-b-id`.
    B,
}

/// Version A: the `stamp` module marks the request and the response with `A`.
/// Version B: another module (`request-id`) gives the request an `x-b-id` and echoes it.
/// A request served half by one and half by the other would show marks of both.
fn config(version: Served, upstream: SocketAddr, modules: &Path, extra: &str) -> String {
    let filter = match version {
        Served::A => format!(
            "module: {}\n    config: {{ stamp: A }}",
            modules.join("a.wasm").display()
        ),
        Served::B => format!(
            "module: {}\n    config: {{ header: x-b-id }}",
            modules.join("b.wasm").display()
        ),
    };
    format!(
        r#"
admin:
  address: 127.0.0.1:0
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: all
        cluster: up
        filters: [f]
{extra}
clusters:
  up:
    endpoints: ["{upstream}"]
filters:
  f:
    {filter}
"#
    )
}

/// The two modules, under their own names in a directory of the test's.
fn modules() -> TempDir {
    let dir = TempDir::new("modules");
    std::fs::copy(component("stamp"), dir.0.join("a.wasm")).unwrap();
    std::fs::copy(component("request-id"), dir.0.join("b.wasm")).unwrap();
    dir
}

/// Replaces a file the way deploy tools do: write beside it, rename over it.
fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn classify(r: &Reply) -> Result<Served, String> {
    if r.status != StatusCode::OK {
        return Err(format!("status {}: {:?}", r.status, r.body));
    }
    let seen_stamp = r.upstream_saw("x-stamp-seen");
    let seen_id = r.upstream_saw("x-b-id");
    match (r.header("x-stamp"), r.header("x-b-id")) {
        (Some("A"), None) if seen_stamp.as_deref() == Some("A") && seen_id.is_none() => {
            Ok(Served::A)
        }
        (None, Some(id)) if seen_id.as_deref() == Some(id) && seen_stamp.is_none() => Ok(Served::B),
        _ => Err(format!(
            "a mix of versions: response {:?}, upstream saw stamp {seen_stamp:?} id {seen_id:?}",
            r.headers
        )),
    }
}

async fn admin_reload(weft: &Weft) -> (StatusCode, serde_json::Value) {
    let (status, body) = client::post_text(&format!("http://{}/reload", weft.admin.unwrap())).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

async fn reload_status(weft: &Weft) -> serde_json::Value {
    let text = client::get_text(&format!("http://{}/reload", weft.admin.unwrap())).await;
    serde_json::from_str(&text).unwrap()
}

/// Bounded load: `clients` keep-alive connections (half HTTP/1.1, half HTTP/2) sending
/// requests back to back until `stop`, each response classified.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
}

#[derive(Default, Debug)]
struct Tally {
    a: u64,
    b: u64,
    failures: Vec<String>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|i| {
                let stop = stop.clone();
                let version = if i % 2 == 0 { Version::H1 } else { Version::H2 };
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut conn = Conn::open(addr, version).await;
                    // Bounded: stops when told, or after 60 s whatever happens.
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let req = request(version, addr, Method::GET, "/x", &[], empty());
                        match conn.try_send(req).await.and_then(|r| classify(&r)) {
                            Ok(Served::A) => tally.a += 1,
                            Ok(Served::B) => tally.b += 1,
                            Err(e) => {
                                tally.failures.push(format!("{version:?}: {e}"));
                                conn = Conn::open(addr, version).await;
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        Load { stop, tasks }
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for t in self.tasks {
            let t = t.await.expect("client task");
            total.a += t.a;
            total.b += t.b;
            total.failures.extend(t.failures);
        }
        total
    }
}

/// An upstream, the two modules, and a proxy (not watching files) serving version A.
fn proxy_on_a(workers: &str) -> (Upstream, TempDir, Weft) {
    let up = Upstream::start("up");
    let dir = modules();
    let weft = Weft::start_with(
        &config(Served::A, up.addr, &dir.0, ""),
        &["--workers", workers, "--no-watch"],
    );
    (up, dir, weft)
}

/// Writes a new configuration and asks for a reload: the status and the outcome.
async fn swap(weft: &Weft, config: &str) -> (StatusCode, serde_json::Value) {
    replace(&weft.config, config.as_bytes());
    admin_reload(weft).await
}

async fn served_now(addr: SocketAddr) -> Served {
    classify(&client::get(addr, "/x", &[]).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_module_swapped_20_times_under_load_fail_nothing() {
    let (up, dir, weft) = proxy_on_a("2");
    let addr = weft.addr("edge");
    assert_eq!(served_now(addr).await, Served::A);

    let load = Load::start(addr, 8);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20 {
        let next = if i % 2 == 0 { Served::B } else { Served::A };
        let (status, outcome) = swap(&weft, &config(next, up.addr, &dir.0, "")).await;
        assert_eq!(status, StatusCode::OK, "reload {i}: {outcome}");
        assert_eq!(outcome["applied"], true);
        assert_eq!(outcome["version"], i + 2);
        assert_eq!(outcome["trigger"], "admin");
        // The next request on a fresh connection sees the new version at once.
        assert_eq!(served_now(addr).await, next, "after reload {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tally = load.finish().await;
    assert!(
        tally.failures.is_empty(),
        "{} failed or mixed requests, first: {:?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(3)]
    );
    // Both versions served a real share of the load; kept-alive connections moved.
    assert!(tally.a > 100 && tally.b > 100, "{tally:?}");

    let status = reload_status(&weft).await;
    assert_eq!(status["version"], 21);
    assert_eq!(status["applied"], 20);
    assert_eq!(status["refused"], 0);
    assert_eq!(weft.metric("weft_config_version").await, 21.0);
    assert_eq!(
        weft.metric("weft_config_reloads_total{outcome=\"applied\"}")
            .await,
        20.0
    );
    // Twenty swaps between two modules: each compiled at most once (the shared test
    // cache may even spare that), then loaded precompiled from the disk cache.
    let compiled = "weft_filter_module_loads_total{how=\"compiled\"}";
    let reused = "weft_filter_module_loads_total{how=\"reused\"}";
    assert!(weft.metric(compiled).await <= 2.0);
    // A reload that leaves the module as it is reuses the loaded one.
    let before = weft.metric(reused).await;
    let (status, _) = admin_reload(&weft).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(weft.metric(reused).await, before + 1.0);
    eprintln!("served during 20 swaps: {tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_and_a_broken_module_are_refused_while_traffic_continues() {
    let (_up, dir, weft) = proxy_on_a("2");
    let addr = weft.addr("edge");
    let load = Load::start(addr, 4);
    let good = std::fs::read_to_string(&weft.config).unwrap();

    // An unknown field: refused, naming the file, the line and the field.
    let broken = good.replace("cluster: up\n", "cluster: up\n        retries: 3\n");
    let (status, outcome) = swap(&weft, &broken).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(outcome["applied"], false);
    assert_eq!(outcome["version"], 1);
    let error = outcome["error"].as_str().unwrap();
    assert!(
        error.contains("weft.yaml:") && error.contains("retries"),
        "{error}"
    );
    assert_eq!(served_now(addr).await, Served::A);

    // A module that is not a component: refused with its path; A keeps serving.
    std::fs::write(dir.0.join("bad.wasm"), b"\0asm not really").unwrap();
    let bad_module = good.replace(
        &dir.0.join("a.wasm").display().to_string(),
        &dir.0.join("bad.wasm").display().to_string(),
    );
    let (status, outcome) = swap(&weft, &bad_module).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = outcome["error"].as_str().unwrap();
    assert!(
        error.contains("bad.wasm") && error.contains("module"),
        "{error}"
    );
    assert_eq!(served_now(addr).await, Served::A);

    // A filter configuration the filter rejects: refused with the filter's reason.
    let rejected = good.replace("{ stamp: A }", "{ stamp: \"\" }");
    let (status, outcome) = swap(&weft, &rejected).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        outcome["error"]
            .as_str()
            .unwrap()
            .contains("must not be empty"),
        "{outcome}"
    );

    let tally = load.finish().await;
    assert!(tally.failures.is_empty(), "{:?}", tally.failures);
    assert!(tally.a > 0 && tally.b == 0, "{tally:?}");
    let status = reload_status(&weft).await;
    assert_eq!(status["version"], 1);
    assert_eq!(status["refused"], 3);
    assert_eq!(status["recent"].as_array().unwrap().len(), 3);
    assert_eq!(
        weft.metric("weft_config_reloads_total{outcome=\"refused\"}")
            .await,
        3.0
    );
    assert_eq!(weft.metric("weft_config_last_reload_successful").await, 0.0);
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_added_and_removed_without_dropping_the_others() {
    let (up, dir, weft) = proxy_on_a("2");
    let edge = weft.addr("edge");
    // Kept-alive connections on the listener that stays, one of each version.
    let mut h1 = Conn::open(edge, Version::H1).await;
    let mut h2 = Conn::open(edge, Version::H2).await;
    for (c, v) in [(&mut h1, Version::H1), (&mut h2, Version::H2)] {
        let r = c
            .send(request(v, edge, Method::GET, "/x", &[], empty()))
            .await;
        assert_eq!(classify(&r), Ok(Served::A));
    }

    let extra_addr = free_port();
    let extra =
        format!("  - name: extra\n    address: {extra_addr}\n    routes:\n      - cluster: up\n");
    let (status, outcome) = swap(&weft, &config(Served::B, up.addr, &dir.0, &extra)).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(
        outcome["listeners_added"],
        serde_json::json!([format!("extra {extra_addr}")])
    );
    let r = client::get(extra_addr, "/y", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/y");
    // The same connections go on, now on version B.
    for (c, v) in [(&mut h1, Version::H1), (&mut h2, Version::H2)] {
        let r = c
            .send(request(v, edge, Method::GET, "/x", &[], empty()))
            .await;
        assert_eq!(classify(&r), Ok(Served::B));
    }

    // Removing it: it stops accepting; edge's connections are untouched.
    let mut on_extra = Conn::open(extra_addr, Version::H1).await;
    let (status, outcome) = swap(&weft, &config(Served::A, up.addr, &dir.0, "")).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(
        outcome["listeners_removed"],
        serde_json::json!([format!("extra {extra_addr}")])
    );
    assert!(
        tokio::net::TcpStream::connect(extra_addr).await.is_err(),
        "a removed listener still accepts"
    );
    // A connection that was open on it is closed gracefully (it was idle).
    let gone = on_extra
        .try_send(request(
            Version::H1,
            extra_addr,
            Method::GET,
            "/",
            &[],
            empty(),
        ))
        .await;
    assert!(gone.is_err() || gone.unwrap().status == 503);
    for (c, v) in [(&mut h1, Version::H1), (&mut h2, Version::H2)] {
        let r = c
            .send(request(v, edge, Method::GET, "/x", &[], empty()))
            .await;
        assert_eq!(classify(&r), Ok(Served::A));
    }

    // A port that cannot be had refuses the reload whole.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = format!(
        "  - name: busy\n    address: {}\n    routes:\n      - cluster: up\n",
        taken.local_addr().unwrap()
    );
    let (status, outcome) = swap(&weft, &config(Served::B, up.addr, &dir.0, &busy)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{outcome}");
    assert!(
        outcome["error"].as_str().unwrap().contains("busy"),
        "{outcome}"
    );
    assert_eq!(served_now(edge).await, Served::A);
}

/// Waits (up to 15 s) until a fresh request's response satisfies `ok`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_on_a_removed_listener_are_closed_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, dir, weft) = proxy_on_a("1");
    let extra_addr = free_port();
    let extra =
        format!("  - name: extra\n    address: {extra_addr}\n    routes:\n      - cluster: up\n");
    let (status, outcome) = swap(&weft, &config(Served::A, up.addr, &dir.0, &extra)).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    // Kept-alive HTTP/1.1 connections that have each served requests, now idle: they
    // wait for their next head as every kept-alive connection does.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(extra_addr).await.unwrap();
        for _ in 0..2 {
            s.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
                .await
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&got).contains("\"server\"") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed early");
                got.extend_from_slice(&buf[..n]);
            }
        }
        idle.push(s);
    }
    let (status, outcome) = swap(&weft, &config(Served::A, up.addr, &dir.0, "")).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    // Each is closed by the proxy without a byte more, well before any timeout.
    for mut s in idle {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "an idle connection outlived its listener");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
}

async fn wait_until(addr: SocketAddr, what: &str, ok: impl Fn(&Reply) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = client::get(addr, "/x", &[]).await;
        if ok(&r) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still answering {} {:?}",
            r.status,
            r.headers
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One filter `f` from `module`, with `config` (YAML flow text) if any.
fn single(upstream: SocketAddr, module: &Path, config: Option<&str>) -> String {
    let config = config.map_or(String::new(), |c| format!("\n    config: {c}"));
    format!(
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
    endpoints: ["{upstream}"]
filters:
  f:
    module: {}{config}
"#,
        module.display()
    )
}

fn stamped(r: &Reply, stamp: &str) -> bool {
    r.status == 200 && r.header("x-stamp") == Some(stamp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_reload_the_configuration_and_modules() {
    let (up, _dir, module, weft) = stamping_one("watched").await;
    let addr = weft.addr("edge");

    // The configuration changes on disk.
    replace(
        &weft.config,
        single(up.addr, &module, Some("{ stamp: two }")).as_bytes(),
    );
    wait_until(addr, "after the config changed", |r| stamped(r, "two")).await;
    replace(&weft.config, single(up.addr, &module, None).as_bytes());
    wait_until(addr, "after the config changed again", |r| {
        stamped(r, "stamp")
    })
    .await;

    // The module changes on disk under the same name, under load: the request-id
    // module takes over with no failed request.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = [Version::H1, Version::H2]
        .into_iter()
        .map(|v| {
            let (stop, failures) = (stop.clone(), failures.clone());
            tokio::spawn(async move {
                let mut c = Conn::open(addr, v).await;
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let req = request(v, addr, Method::GET, "/x", &[], empty());
                    match c.try_send(req).await {
                        Ok(r) if r.status == 200 => {}
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            c = Conn::open(addr, v).await;
                        }
                    }
                }
            })
        })
        .collect();
    replace(&module, &std::fs::read(component("request-id")).unwrap());
    wait_until(addr, "after the module changed", |r| {
        r.status == 200 && r.header("x-request-id").is_some() && r.header("x-stamp").is_none()
    })
    .await;

    // A broken module written over it is refused; the request-id module keeps serving.
    replace(&module, b"\0asm\x0d\0\x01\0 truncated");
    let deadline = Instant::now() + Duration::from_secs(15);
    let refusal = loop {
        let s = reload_status(&weft).await;
        if s["refused"] == 1 {
            break s["recent"][0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the broken module was not noticed: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refusal["trigger"], "file_change");
    assert!(
        refusal["error"].as_str().unwrap().contains("f.wasm"),
        "{refusal}"
    );
    let r = client::get(addr, "/x", &[]).await;
    assert!(r.status == 200 && r.header("x-request-id").is_some());

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads() {
    let (up, dir, weft) = proxy_on_a("1");
    let addr = weft.addr("edge");
    replace(
        &weft.config,
        config(Served::B, up.addr, &dir.0, "").as_bytes(),
    );
    // Not watched: nothing changes until the signal.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(served_now(addr).await, Served::A);
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &weft.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(sent);
    wait_until(addr, "after SIGHUP", |r| classify(r) == Ok(Served::B)).await;
    // The outcome is recorded just after the swap.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = reload_status(&weft).await;
        if s["recent"][0]["trigger"] == "signal" {
            assert_eq!(s["version"], 2);
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reloads_leave_memory_where_it_was() {
    let (up, dir, weft) = proxy_on_a("2");
    let addr = weft.addr("edge");
    let versions = [
        config(Served::B, up.addr, &dir.0, ""),
        config(Served::A, up.addr, &dir.0, ""),
    ];
    let served = Arc::new(AtomicU64::new(0));
    let round = |n: usize| {
        let versions = &versions;
        let weft = &weft;
        let served = served.clone();
        async move {
            for i in 0..n {
                replace(&weft.config, versions[i % 2].as_bytes());
                let (status, outcome) = admin_reload(weft).await;
                assert_eq!(status, StatusCode::OK, "{outcome}");
                // Each version serves a request, so its instances are really used.
                let _ = served_now(addr).await;
                served.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    // Warm up: allocator arenas, caches, the first instances of both modules.
    round(20).await;
    let before = weft.memory_kb("VmRSS");
    round(200).await;
    let after = weft.memory_kb("VmRSS");
    assert_eq!(served.load(Ordering::Relaxed), 220);
    let grown = after.saturating_sub(before);
    eprintln!("RSS before {before} kB, after 200 reloads {after} kB (+{grown} kB)");
    assert!(grown < 8 * 1024, "RSS grew by {grown} kB over 200 reloads");
    assert_eq!(reload_status(&weft).await["version"], 221);
}

/// Instances made for filter `f`, from the admin endpoint.
async fn instances_created(weft: &Weft) -> f64 {
    weft.metric("weft_filter_instances_created_total{filter=\"f\"}")
        .await
}

/// A proxy whose one filter `f` is the stamp module at `<dir>/f.wasm`, stamping `one`.
async fn stamping_one(dir: &str) -> (Upstream, TempDir, std::path::PathBuf, Weft) {
    let up = Upstream::start("up");
    let dir = TempDir::new(dir);
    let module = dir.0.join("f.wasm");
    std::fs::copy(component("stamp"), &module).unwrap();
    let weft = Weft::start(&single(up.addr, &module, Some("{ stamp: one }")));
    assert!(stamped(
        &client::get(weft.addr("edge"), "/x", &[]).await,
        "one"
    ));
    (up, dir, module, weft)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_unchanged_filters_and_restarts_changed_ones() {
    let (up, _dir, module, weft) = stamping_one("kept").await;
    let addr = weft.addr("edge");
    let started = instances_created(&weft).await;

    // Nothing about the filter changed: the running one, and its instances, stay.
    for _ in 0..5 {
        let (status, body) = admin_reload(&weft).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(stamped(&client::get(addr, "/x", &[]).await, "one"));
    assert_eq!(instances_created(&weft).await, started);

    // Its configuration changed: it is started again with the new one.
    replace(
        &weft.config,
        single(up.addr, &module, Some("{ stamp: two }")).as_bytes(),
    );
    let (status, body) = admin_reload(&weft).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(stamped(&client::get(addr, "/x", &[]).await, "two"));
    assert!(instances_created(&weft).await > started);

    // Its module's content changed in place, the configuration did not: started again
    // on the new module (request-id answers with an id, not a stamp).
    replace(&weft.config, single(up.addr, &module, None).as_bytes());
    let (status, body) = admin_reload(&weft).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(stamped(&client::get(addr, "/x", &[]).await, "stamp"));
    let after_config = instances_created(&weft).await;
    std::fs::write(&module, std::fs::read(component("request-id")).unwrap()).unwrap();
    let (status, body) = admin_reload(&weft).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = client::get(addr, "/x", &[]).await;
    assert!(r.header("x-request-id").is_some(), "{:?}", r.headers);
    assert!(instances_created(&weft).await > after_config);
}
