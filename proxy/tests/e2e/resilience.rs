//! Resilience end to end: misbehaving upstream processes (`sick.py`) behind the real
//! `weft` binary. Health checks take a dead or failing endpoint out and bring it back
//! (panic mode when none is left), outlier detection ejects an endpoint that fails in a
//! row and returns it, and circuit breakers answer overflow at their limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::client::{self, empty, request, Conn, Version};
use crate::support::filters::component;
use crate::support::proxy::Weft;
use crate::support::sick::Sick;
use http::Method;

fn config(cluster: &str) -> String {
    format!(
        r#"
admin:
  address: 127.0.0.1:0
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ cluster: svc }}]
clusters:
  svc:
{cluster}
"#
    )
}

fn endpoints(ups: &[&Sick]) -> String {
    let list: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    format!("    endpoints: [{}]\n", list.join(", "))
}

/// Sends `n` requests one after another; counts answers by status and by server.
async fn send(addr: SocketAddr, n: usize) -> (HashMap<u16, usize>, HashMap<String, usize>) {
    let mut c = Conn::open(addr, Version::H1).await;
    let (mut statuses, mut servers) = (HashMap::new(), HashMap::new());
    for _ in 0..n {
        let r = match c
            .try_send(request(Version::H1, addr, Method::GET, "/", &[], empty()))
            .await
        {
            Ok(r) => r,
            Err(_) => {
                c = Conn::open(addr, Version::H1).await;
                continue;
            }
        };
        *statuses.entry(r.status.as_u16()).or_default() += 1;
        if r.status == 200 {
            let server = r.json()["server"].as_str().unwrap().to_owned();
            *servers.entry(server).or_default() += 1;
        }
    }
    (statuses, servers)
}

/// The cluster's endpoints' health as the admin endpoint shows it, by address.
async fn health(weft: &Weft) -> HashMap<String, String> {
    let text = client::get_text(&format!("http://{}/stats", weft.admin.unwrap())).await;
    let stats: serde_json::Value = serde_json::from_str(&text).unwrap();
    stats["clusters"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_owned(),
                e["health"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits (up to 10 s) until `up`'s health reads `want`; returns how long it took.
async fn until_health(weft: &Weft, up: &Sick, want: &str) -> Duration {
    let start = Instant::now();
    loop {
        let h = health(weft).await;
        if h[&up.addr.to_string()] == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} still {:?}, not {want}",
            up.addr,
            h[&up.addr.to_string()]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn health_checks_take_dead_and_failing_endpoints_out_and_bring_them_back() {
    let a = Sick::start("a");
    let b = Sick::start("b");
    let mut c = Sick::start("c");
    let weft = Weft::start(&config(&format!(
        "{}    health_check: {{ path: /healthz, interval: 100ms, jitter: 20ms, timeout: 500ms, \
         unhealthy_threshold: 3, healthy_threshold: 2 }}\n",
        endpoints(&[&a, &b, &c])
    )));
    let addr = weft.addr("edge");
    let (statuses, servers) = send(addr, 30).await;
    assert_eq!(statuses[&200], 30);
    assert_eq!(servers.len(), 3, "{servers:?}");

    // b fails its checks (while still serving): after three in a row it gets nothing.
    b.set("health/fail").await;
    let took = until_health(&weft, &b, "unhealthy").await;
    assert!(
        took >= Duration::from_millis(150),
        "three checks take two intervals: {took:?}"
    );
    let before = b.count().await;
    let (statuses, servers) = send(addr, 60).await;
    assert_eq!(statuses[&200], 60);
    assert!(!servers.contains_key("b"), "{servers:?}");
    assert_eq!(b.count().await, before);

    // c dies: once its checks fail, no request is sent its way (no 502s).
    c.kill();
    until_health(&weft, &c, "unhealthy").await;
    let (statuses, servers) = send(addr, 60).await;
    assert_eq!(statuses.get(&200), Some(&60), "{statuses:?}");
    assert_eq!(servers["a"], 60);

    // b passes again: back in the rotation.
    b.set("health/pass").await;
    until_health(&weft, &b, "healthy").await;
    let (_, servers) = send(addr, 60).await;
    assert!((25..=35).contains(&servers["b"]), "{servers:?}");

    // Every endpoint failing: panic mode sends to all rather than to none, counted.
    a.set("health/fail").await;
    b.set("health/fail").await;
    until_health(&weft, &a, "unhealthy").await;
    until_health(&weft, &b, "unhealthy").await;
    let (statuses, servers) = send(addr, 60).await;
    assert!(servers["a"] > 5 && servers["b"] > 5, "{servers:?}");
    // (c is dead: its share fails.)
    assert!(statuses.get(&502).copied().unwrap_or(0) > 5, "{statuses:?}");
    assert!(
        weft.metric(r#"weft_upstream_panic_total{cluster="svc"}"#)
            .await
            >= 60.0
    );
    assert!(
        weft.metric(r#"weft_health_transitions_total{cluster="svc",to="unhealthy"}"#)
            .await
            >= 4.0
    );
    assert!(
        weft.metric(r#"weft_health_checks_total{cluster="svc",result="fail"}"#)
            .await
            >= 9.0
    );
    assert!(a.checks().await > 10, "checks reach the endpoints");
}

#[tokio::test]
async fn a_tcp_health_check_notices_a_dead_endpoint() {
    let a = Sick::start("a");
    let mut b = Sick::start("b");
    let weft = Weft::start(&config(&format!(
        "{}    health_check: {{ tcp: true, interval: 100ms, unhealthy_threshold: 2 }}\n",
        endpoints(&[&a, &b])
    )));
    b.kill();
    until_health(&weft, &b, "unhealthy").await;
    let (statuses, _) = send(weft.addr("edge"), 20).await;
    assert_eq!(statuses.get(&200), Some(&20), "{statuses:?}");
}

#[tokio::test]
async fn outlier_detection_ejects_an_endpoint_failing_in_a_row_and_brings_it_back() {
    let a = Sick::start("a");
    let b = Sick::start("b");
    let mut c = Sick::start("c");
    let weft = Weft::start(&config(&format!(
        "{}    outlier_detection: {{ consecutive_5xx: 3, consecutive_connect_failure: 2, \
         interval: 100ms, base_ejection_time: 3s, max_ejection_percent: 70 }}\n",
        endpoints(&[&a, &b, &c])
    )));
    let addr = weft.addr("edge");
    b.set("mode/fail").await;
    let (statuses, servers) = send(addr, 60).await;
    // Its third 503 in a row ejects it: no more requests its way.
    assert_eq!(b.count().await, 3, "{statuses:?} {servers:?}");
    assert_eq!(statuses[&503], 3, "{statuses:?}");
    assert_eq!(statuses[&200], 57);
    assert!(!servers.contains_key("b"));
    assert_eq!(health(&weft).await[&b.addr.to_string()], "ejected");
    assert_eq!(
        weft.metric(r#"weft_outlier_ejections_total{cluster="svc",reason="consecutive_5xx"}"#)
            .await,
        1.0
    );

    // Healed, it comes back once the base ejection time is over.
    b.set("mode/ok").await;
    until_health(&weft, &b, "healthy").await;
    let (statuses, servers) = send(addr, 30).await;
    assert_eq!(statuses[&200], 30);
    assert!((8..=12).contains(&servers["b"]), "{servers:?}");
    assert_eq!(
        weft.metric(r#"weft_outlier_returns_total{cluster="svc"}"#)
            .await,
        1.0
    );

    // A dead endpoint: two refused connections in a row eject it.
    c.kill();
    let (statuses, _) = send(addr, 30).await;
    assert_eq!(statuses.get(&502), Some(&2), "{statuses:?}");
    assert_eq!(statuses[&200], 28);
    assert_eq!(
        weft.metric(
            r#"weft_outlier_ejections_total{cluster="svc",reason="consecutive_connect_failure"}"#
        )
        .await,
        1.0
    );

    // An endpoint that resets its connections: the failures count as 5xx (no answer)
    // and it is ejected too; the rest keep answering.
    a.set("mode/reset").await;
    let (statuses, _) = send(addr, 30).await;
    assert!(
        statuses.get(&502).copied().unwrap_or(0) >= 1,
        "{statuses:?}"
    );
    assert_eq!(health(&weft).await[&a.addr.to_string()], "ejected");
    let (statuses, servers) = send(addr, 20).await;
    assert_eq!(statuses.get(&200), Some(&20), "{statuses:?}");
    assert_eq!(servers.get("b"), Some(&20));
}

/// Sends `n` requests at once, each on its own connection: statuses, `x-weft-error`s and
/// how long each took.
async fn burst(addr: SocketAddr, path: &str, n: usize) -> Vec<(u16, Option<String>, Duration)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let path = path.to_owned();
            tokio::spawn(async move {
                let start = Instant::now();
                let r = client::get(addr, &path, &[]).await;
                (
                    r.status.as_u16(),
                    r.header("x-weft-error").map(str::to_owned),
                    start.elapsed(),
                )
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn circuit_breakers_answer_overflow_at_their_limits_and_recover() {
    // Two slow endpoints: upstream connections are pooled by address, so each cluster
    // gets its own.
    let slow = Sick::start("slow");
    slow.set("mode/slow:600").await;
    let slow2 = Sick::start("slow2");
    slow2.set("mode/slow:600").await;
    let failing = Sick::start("failing");
    failing.set("mode/fail").await;
    let weft = Weft::start(&format!(
        r#"
admin:
  address: 127.0.0.1:0
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - {{ match: {{ prefix: /requests }}, cluster: requests }}
      - {{ match: {{ prefix: /connections }}, cluster: connections }}
      - {{ match: {{ prefix: /retries }}, cluster: retries, filters: [retry] }}
clusters:
  requests:
    endpoints: ["{slow}"]
    circuit_breakers: {{ max_requests: 4 }}
  connections:
    endpoints: ["{slow2}"]
    circuit_breakers: {{ max_connections: 2 }}
  retries:
    endpoints: ["{failing}"]
    circuit_breakers: {{ max_retries: 0 }}
filters:
  retry:
    module: {retry}
    config: {{ max_attempts: 3, backoff: {{ base: 1ms, max: 1ms }}, budget: {{ ratio: 1.0, min_per_second: 50, window: 10s }} }}
"#,
        slow = slow.addr,
        slow2 = slow2.addr,
        failing = failing.addr,
        retry = component("retry").display(),
    ));
    let addr = weft.addr("edge");
    for (path, limit, allowed) in [
        ("/requests", "max_requests", 4),
        ("/connections", "max_connections", 2),
    ] {
        let answers = burst(addr, path, 12).await;
        let ok = answers.iter().filter(|a| a.0 == 200).count();
        let overflow: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
        assert_eq!(ok, allowed, "{path}: {answers:?}");
        assert_eq!(overflow.len(), 12 - allowed, "{path}: {answers:?}");
        for (_, why, took) in overflow {
            assert_eq!(why.as_deref(), Some("overflow"));
            // At once, not after the slow upstream's 600 ms.
            assert!(
                *took < Duration::from_millis(400),
                "{path}: overflow took {took:?}"
            );
        }
        let cluster = &path[1..];
        assert_eq!(
            weft.metric(&format!(
                r#"weft_upstream_overflow_total{{cluster="{cluster}",limit="{limit}"}}"#
            ))
            .await,
            (12 - allowed) as f64
        );
        // The burst over, the cluster takes requests again.
        let r = client::get(addr, path, &[]).await;
        assert_eq!(r.status, 200, "{path} recovers");
    }

    // The retry filter's retry counts against max_retries: refused at 0, the failing
    // answer delivered, the upstream asked once.
    let r = client::get(addr, "/retries", &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.header("x-weft-error").is_none(), "the upstream's own 503");
    assert_eq!(failing.count().await, 1);
    assert_eq!(
        weft.metric(
            r#"weft_retries_refused_total{listener="edge",reason="overflow",route="edge-2"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn the_route_timeout_covers_filter_delays_and_idle_connections_close() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Sick::start("up");
    let authz = Sick::start("authz");
    authz.set("mode/slow:3000").await;
    let weft = Weft::start(&format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    idle_timeout: 300ms
    routes:
      - {{ match: {{ prefix: /delayed }}, cluster: up, filters: [slow], timeout: 300ms }}
      - {{ match: {{ prefix: /checked }}, cluster: up, filters: [ext], timeout: 300ms }}
      - {{ cluster: up }}
clusters:
  up: {{ endpoints: ["{}"] }}
  authz: {{ endpoints: ["{}"] }}
filters:
  slow:
    module: {}
    config: {{ delay: {{ percent: 100, duration: 5s }} }}
  ext:
    module: {}
    config: {{ ext_authz: {{ cluster: authz, timeout: 5s }} }}
"#,
        up.addr,
        authz.addr,
        component("fault").display(),
        component("ext-authz").display(),
    ));
    let addr = weft.addr("edge");
    // A filter's 5 s delay on a route with a 300 ms timeout: 504 when the timeout is up,
    // not after the delay, and the upstream never asked.
    let start = Instant::now();
    let r = client::get(addr, "/delayed", &[]).await;
    let took = start.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-weft-error"), Some("timeout"));
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(up.count().await, 0);

    // A filter's outbound call (ext_authz, its own timeout 5 s) to a server that takes
    // 3 s ends at the route's 300 ms too: the filter sees the call fail and denies.
    let start = Instant::now();
    let r = client::get(addr, "/checked", &[]).await;
    let took = start.elapsed();
    assert_ne!(r.status, 200);
    assert!(took < Duration::from_millis(1500), "{took:?}: {}", r.status);
    assert_eq!(up.count().await, 0);

    // HTTP/1.1: a kept-alive connection with nothing to do is closed after 300 ms.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let start = Instant::now();
    // (The rest of the response may come in a second read; then the close.)
    loop {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("closed within the idle timeout")
            .unwrap();
        if n == 0 {
            break;
        }
    }
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );

    // HTTP/2: the same, by GOAWAY.
    let mut c = Conn::open(addr, Version::H2).await;
    let r = c
        .send(request(Version::H2, addr, Method::GET, "/", &[], empty()))
        .await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        c.try_send(request(Version::H2, addr, Method::GET, "/", &[], empty()))
            .await
            .is_err(),
        "the idle HTTP/2 connection was closed"
    );
}
