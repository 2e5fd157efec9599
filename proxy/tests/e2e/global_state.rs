//! Filters' `global` state on a real Redis (Debian's `redis-server`, started by the
//! tests): a rate limit shared by three proxies, counters and `global-kv` across
//! proxies, Redis killed and restarted under each `on_error`, a Redis Cluster, and a
//! password.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;

use crate::support::client::{self, empty, request, Conn, Version};
use crate::support::filters::component;
use crate::support::proxy::{TempDir, Weft};
use crate::support::redis::{RedisCluster, RedisServer};
use crate::support::upstream::Upstream;
use crate::tls::Pki;

/// A proxy whose route runs the rate limiter `filter` (one bucket for all requests,
/// `rate` per second, burst `rate`, in `scope`) in front of `up`, with the global
/// backend `redis` (a `shared_state.global.redis` body) and `on_error`.
fn limited(up: SocketAddr, filter: &str, rate: u64, scope: &str, global: &str) -> String {
    format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: up
        filters: [{filter}]
clusters:
  up: {{ endpoints: ["{up}"] }}
filters:
  {filter}:
    module: {module}
    config:
      rules: [{{ name: all, key: global, rate: {rate}, per: 1s, scope: {scope} }}]
shared_state:
  global: {global}
"#,
        module = component("ratelimit").display(),
    )
}

/// What a client loop saw.
#[derive(Default, Debug)]
struct Seen {
    ok: u64,
    limited: u64,
    other: u64,
    /// Each request's latency.
    latencies: Vec<Duration>,
}

impl Seen {
    fn p99(&mut self) -> Duration {
        self.latencies.sort();
        self.latencies
            .get(self.latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default()
    }
}

/// Sends GETs to `addr` over `conns` connections for `run_for`, as fast as answered.
async fn hammer(addr: SocketAddr, conns: usize, run_for: Duration) -> Seen {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut c = Conn::open(addr, Version::H1).await;
            while started.elapsed() < run_for {
                let at = Instant::now();
                let r = c
                    .send(request(Version::H1, addr, Method::GET, "/", &[], empty()))
                    .await;
                seen.latencies.push(at.elapsed());
                match r.status.as_u16() {
                    200 => seen.ok += 1,
                    429 => seen.limited += 1,
                    _ => seen.other += 1,
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.ok += s.ok;
        all.limited += s.limited;
        all.other += s.other;
        all.latencies.extend(s.latencies);
    }
    all
}

/// Hammers the three proxies at once.
async fn hammer_all(proxies: &[Weft], run_for: Duration) -> (Seen, f64) {
    let started = Instant::now();
    let runs: Vec<_> = proxies
        .iter()
        .map(|w| tokio::spawn(hammer(w.addr("edge"), 3, run_for)))
        .collect();
    let mut all = Seen::default();
    for r in runs {
        let s = r.await.unwrap();
        all.ok += s.ok;
        all.limited += s.limited;
        all.other += s.other;
    }
    (all, started.elapsed().as_secs_f64())
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics(w: &Weft) -> String {
    client::get_text(&format!("http://{}/metrics", w.admin.unwrap())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_proxies_share_one_global_limit_and_local_rules_stay_per_proxy() {
    let redis = RedisServer::start(&[]);
    let up = Upstream::start("up");
    let global = format!("{{ redis: {{ endpoints: [\"{}\"] }} }}", redis.addr);
    // The documented bound: the bucket (100 burst + 100/s) plus 3 proxies × the lease
    // (a tenth of the capacity: 10 tokens).
    let proxies: Vec<Weft> = (0..3)
        .map(|_| Weft::start(&limited(up.addr, "limit", 100, "global", &global)))
        .collect();
    let (seen, elapsed) = hammer_all(&proxies, Duration::from_secs(3)).await;
    let allowance = 100.0 + 100.0 * elapsed;
    let bound = allowance + 3.0 * 10.0;
    assert_eq!(seen.other, 0, "{seen:?}");
    assert!(
        seen.limited > seen.ok,
        "the clients asked for much more than the limit: {seen:?}"
    );
    assert!(
        (seen.ok as f64) <= bound,
        "{} allowed by three proxies in {elapsed:.2}s; the bound is {bound:.0}",
        seen.ok
    );
    assert!(
        (seen.ok as f64) >= allowance * 0.8,
        "{} allowed in {elapsed:.2}s: the global bucket allows {allowance:.0}",
        seen.ok
    );
    // The bucket is in Redis, under the filter's key.
    let keys = redis.cli(&["--scan", "--pattern", "weft:b:*"]);
    assert!(keys.contains("limit"), "Redis keys: {keys:?}");
    let m = metrics(&proxies[0]).await;
    let trips = metric(&m, "weft_shared_state_global_round_trips_total").unwrap();
    assert!(trips > 0.0, "no round trips counted");
    drop(proxies);

    // The same rule in the local scope: each proxy allows its own 100 + 100/s.
    let proxies: Vec<Weft> = (0..3)
        .map(|_| Weft::start(&limited(up.addr, "limit", 100, "local", &global)))
        .collect();
    let (seen, elapsed) = hammer_all(&proxies, Duration::from_secs(3)).await;
    let per_proxy = 100.0 + 100.0 * elapsed;
    assert!(
        (seen.ok as f64 - 3.0 * per_proxy).abs() < 3.0 * per_proxy * 0.15,
        "{} allowed by three local limits in {elapsed:.2}s; each allows {per_proxy:.0}",
        seen.ok
    );
}

/// Three proxies on one Redis, one per `on_error`; the rule's filter name differs per
/// proxy, so each has its own bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_run_each_on_error_does_what_it_says_and_the_limit_comes_back() {
    let mut redis = RedisServer::start(&[]);
    let up = Upstream::start("up");
    let modes = ["local", "allow", "deny"];
    let proxies: Vec<Weft> = modes
        .iter()
        .map(|mode| {
            let global = format!(
                "{{ redis: {{ endpoints: [\"{}\"], timeout: 20ms }}, on_error: {mode} }}",
                redis.addr
            );
            Weft::start(&limited(
                up.addr,
                &format!("limit-{mode}"),
                50,
                "global",
                &global,
            ))
        })
        .collect();
    let run = |i: usize| hammer(proxies[i].addr("edge"), 2, Duration::from_millis(1500));

    // Redis up: each proxy's global bucket limits it.
    for (i, mode) in modes.iter().enumerate() {
        let seen = run(i).await;
        assert!(
            seen.ok > 0 && seen.limited > 0,
            "{mode}, Redis up: {seen:?}"
        );
        assert!(seen.ok <= 50 + 75 + 5 + 10, "{mode}, Redis up: {seen:?}");
    }

    redis.kill();
    // The first grant asked for after the kill fails and switches to on_error.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for (i, mode) in modes.iter().enumerate() {
        let _ = run(i).await; // notices the failure
        let mut seen = run(i).await;
        let p99 = seen.p99();
        // Requests never wait on Redis at all; the margin is for a loaded CI machine.
        assert!(
            p99 < Duration::from_millis(20 + 50),
            "{mode}, Redis down: p99 {p99:?} (timeout 20ms): requests must not wait on Redis"
        );
        match *mode {
            // This proxy's own bucket: 50 burst, 50/s.
            "local" => assert!(
                seen.ok > 0 && seen.limited > 0 && seen.ok <= 50 + 75 + 5,
                "local, Redis down: {seen:?}"
            ),
            "allow" => assert!(
                seen.ok > 0 && seen.limited == 0,
                "allow, Redis down: {seen:?}"
            ),
            _ => assert!(
                seen.ok == 0 && seen.limited > 0,
                "deny, Redis down: {seen:?}"
            ),
        }
        assert_eq!(seen.other, 0, "{mode}: {seen:?}");
        let m = metrics(&proxies[i]).await;
        assert_eq!(
            metric(&m, "weft_shared_state_global_up"),
            Some(0.0),
            "{mode}"
        );
        assert!(
            metric(&m, "weft_shared_state_global_fallbacks_total").unwrap_or(0.0) > 0.0,
            "{mode}: fallbacks not counted"
        );
        let failures: f64 = m
            .lines()
            .filter(|l| l.starts_with("weft_shared_state_global_failures_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(failures > 0.0, "{mode}: failures not counted");
    }

    // Redis back (empty): within a probe interval and a window, the global limit holds
    // again on every proxy.
    redis.restart();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (i, mode) in modes.iter().enumerate() {
        let m = metrics(&proxies[i]).await;
        assert_eq!(
            metric(&m, "weft_shared_state_global_up"),
            Some(1.0),
            "{mode}"
        );
        let seen = run(i).await;
        assert!(
            seen.ok > 0 && seen.limited > 0 && seen.ok <= 50 + 75 + 5 + 10,
            "{mode}, Redis back: {seen:?}"
        );
        // (A bucket left alone expires once it would be full again.)
        let keys = redis.cli(&["--scan", "--pattern", &format!("weft:b:limit-{mode}*")]);
        assert_eq!(keys.lines().count(), 1, "{mode}: no bucket in Redis again");
    }
}

/// A configuration whose route runs the `tally` test filter on `global`.
fn tallied(global: &str) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: none
        filters: [tally]
clusters:
  none: {{ endpoints: ["127.0.0.1:9"] }}
filters:
  tally:
    module: {}
shared_state:
  global: {global}
"#,
        component("tally").display()
    )
}

async fn text(w: &Weft, path: &str) -> (u16, String) {
    let r = client::get(w.addr("edge"), path, &[]).await;
    (
        r.status.as_u16(),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

/// Counters and `global-kv` seen from two proxies, on one server with a password and
/// on a Redis Cluster.
async fn counters_and_keys_are_shared(a: &Weft, b: &Weft) {
    for _ in 0..20 {
        assert_eq!(text(a, "/count").await.0, 200);
        assert_eq!(text(b, "/count").await.0, 200);
    }
    // Counter updates reach Redis asynchronously, in batches: both proxies see all 40
    // within a refresh.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, va) = text(a, "/read").await;
        let (_, vb) = text(b, "/read").await;
        if va == "40" && vb == "40" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counters read {va} and {vb}, not 40"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(text(a, "/kv/get").await, (200, "absent".into()));
    assert_eq!(text(a, "/kv/set/blue").await, (200, "stored".into()));
    assert_eq!(text(b, "/kv/get").await, (200, "blue".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_and_global_keys_are_shared_through_a_password_protected_redis() {
    let redis = RedisServer::start(&["--requirepass", "s3cret-pass"]);
    let dir = TempDir::new("redis-pass");
    let pass = dir.0.join("redis.pass");
    std::fs::write(&pass, "s3cret-pass\n").unwrap();
    let global = format!(
        "{{ redis: {{ endpoints: [\"{}\"], password_file: {} }}, on_error: deny }}",
        redis.addr,
        pass.display()
    );
    let a = Weft::start(&tallied(&global));
    let b = Weft::start(&tallied(&global));
    counters_and_keys_are_shared(&a, &b).await;
    let keys = redis.cli(&["--scan", "--pattern", "weft:*"]);
    assert!(
        keys.contains("weft:c:") && keys.contains("weft:k:"),
        "{keys:?}"
    );

    // A wrong password: Redis refuses, so global-kv calls fail (on_error: deny), and
    // neither the password nor the file's content is shown anywhere.
    std::fs::write(&pass, "wrong\n").unwrap();
    let c = Weft::start(&tallied(&global));
    let (status, body) = text(&c, "/kv/get").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        !body.contains("wrong") && !body.contains("s3cret"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_and_global_keys_are_shared_through_redis_over_mutual_tls() {
    let pki = Pki::new("redis-tls");
    let (server_cert, server_key) = pki.svid("redis", &["--dns", "localhost"]);
    let (client_cert, client_key) =
        pki.svid("weft", &["--id", "spiffe://cluster.local/ns/edge/sa/weft"]);
    let redis = RedisServer::start_tls(
        &["--requirepass", "tls-and-pass"],
        Some([pki.ca(), server_cert, server_key]),
    );
    let pass = pki.dir.0.join("redis.pass");
    std::fs::write(&pass, "tls-and-pass").unwrap();
    let port = redis.addr.port();
    let global = |client: &str| {
        format!(
            "{{ redis: {{ endpoints: [\"localhost:{port}\"], password_file: {}, timeout: 500ms, \
             tls: {{ ca: {}{client} }} }}, on_error: deny }}",
            pass.display(),
            pki.ca()
        )
    };
    let with_cert = global(&format!(", cert: {client_cert}, key: {client_key}"));
    let a = Weft::start(&tallied(&with_cert));
    let b = Weft::start(&tallied(&with_cert));
    counters_and_keys_are_shared(&a, &b).await;
    assert!(redis
        .cli(&["--scan", "--pattern", "weft:k:*"])
        .contains("tally"));

    // Without a client certificate, Redis refuses the handshake.
    let c = Weft::start(&tallied(&global("")));
    assert_eq!(text(&c, "/kv/get").await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_redis_never_holds_a_request_past_its_timeout() {
    let redis = RedisServer::start(&["--enable-debug-command", "yes"]);
    let global = format!(
        "{{ redis: {{ endpoints: [\"{}\"], timeout: 50ms }}, on_error: allow }}",
        redis.addr
    );
    let w = Weft::start(&tallied(&global));
    assert_eq!(text(&w, "/kv/set/x").await, (200, "stored".into()));
    assert_eq!(text(&w, "/count").await.0, 200);
    // Redis stops answering for 2 s.
    let addr = redis.addr;
    let sleeper = std::thread::spawn(move || {
        crate::support::redis::redis_cli(addr, &[], &["DEBUG", "SLEEP", "2"])
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at = Instant::now();
    let (status, body) = text(&w, "/kv/get").await;
    let took = at.elapsed();
    assert_eq!(status, 503, "{body}");
    // Redis sleeps 2 s; the call ends at its 50 ms timeout (the margin is for a loaded
    // CI machine and the new connection).
    assert!(
        took < Duration::from_millis(50 + 100),
        "a global-kv call waited {took:?} on a Redis that does not answer (timeout 50ms)"
    );
    // Counters answer from this proxy's view, never waiting.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let at = Instant::now();
        assert_eq!(text(&w, "/count").await.0, 200);
        slowest = slowest.max(at.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(50 + 40),
        "a count took {slowest:?}"
    );
    sleeper.join().unwrap();
    // Redis answers again: global-kv is back within a probe interval or so.
    let deadline = Instant::now() + Duration::from_secs(5);
    while text(&w, "/kv/get").await != (200, "x".into()) {
        assert!(Instant::now() < deadline, "global-kv did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_and_global_keys_work_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let endpoints: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("\"{}\"", n.addr))
        .collect();
    let global = format!(
        "{{ redis: {{ endpoints: [{}], cluster: true, timeout: 200ms }} }}",
        endpoints.join(", ")
    );
    let a = Weft::start(&tallied(&global));
    let b = Weft::start(&tallied(&global));
    counters_and_keys_are_shared(&a, &b).await;
}

#[test]
fn a_bad_shared_state_section_names_its_field() {
    let cases = [
        (
            "{ redis: { endpoints: [] } }",
            "shared_state.global.redis.endpoints",
        ),
        (
            "{ redis: { endpoints: [\"nohost\"] } }",
            "shared_state.global.redis.endpoints[0]",
        ),
        (
            "{ redis: { endpoints: [\"127.0.0.1:1\", \"127.0.0.1:2\"] } }",
            "add `cluster: true`",
        ),
        (
            "{ redis: { endpoints: [\"127.0.0.1:1\"] }, on_error: maybe }",
            "on_error",
        ),
        (
            "{ redis: { endpoints: [\"127.0.0.1:1\"], password_file: /nonexistent/p } }",
            "shared_state.global.redis.password_file",
        ),
        (
            "{ redis: { endpoints: [\"127.0.0.1:1\"] }, lease: 0 }",
            "shared_state.global.lease",
        ),
    ];
    for (global, expected) in cases {
        let dir = TempDir::new("bad-global");
        let path = dir.0.join("weft.yaml");
        std::fs::write(&path, tallied(global)).unwrap();
        let (ok, _out, err) =
            crate::support::proxy::weft_cli(&["validate", "--config", &path.display().to_string()]);
        assert!(!ok, "{global} was accepted");
        assert!(err.contains(expected), "{global}: {err}");
        let line = err
            .split_once("weft.yaml:")
            .and_then(|(_, rest)| rest.split(':').next()?.parse::<u32>().ok());
        assert!(line.is_some_and(|l| l >= 14), "{global}: no line in {err}");
    }
}
