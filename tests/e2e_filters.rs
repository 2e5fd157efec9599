//! Filters end to end: the example filter on a route, and misbehaving filters held to
//! their deadline, memory cap and failure policy, through the real proxy.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use support::client::{self, empty, request, Conn, Version};
use support::filters::component;
use support::proxy::Weft;
use support::upstream::Upstream;

fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn the_example_filter_gives_each_request_an_id_and_echoes_it() {
    let up = Upstream::start("a");
    let config = format!(
        r#"
admin:
  address: 127.0.0.1:0
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: api
        match: {{ prefix: /api }}
        cluster: a
        filters: [request-id]
      - name: down
        match: {{ prefix: /down }}
        cluster: down
        filters: [request-id]
      - name: plain
        cluster: a
clusters:
  a:
    endpoints: ["{}"]
  down:
    endpoints: ["{}"]
filters:
  request-id:
    module: {}
"#,
        up.addr,
        closed_port(),
        component("request-id").display()
    );
    let weft = Weft::start(&config);
    let addr = weft.addr("edge");
    let mut seen = std::collections::HashSet::new();
    for version in [Version::H1, Version::H2] {
        let mut c = Conn::open(addr, version).await;
        for _ in 0..10 {
            let reply = c
                .send(request(
                    version,
                    addr,
                    Method::GET,
                    "/api/items",
                    &[],
                    empty(),
                ))
                .await;
            let upstream_id = reply
                .upstream_saw("x-request-id")
                .expect("the upstream got an id");
            assert_eq!(
                reply.header("x-request-id"),
                Some(upstream_id.as_str()),
                "echoed to the client"
            );
            assert_eq!(upstream_id.len(), 36);
            assert!(seen.insert(upstream_id), "ids are unique");
        }
        // A client's own well-formed id is kept.
        let reply = c
            .send(request(
                version,
                addr,
                Method::GET,
                "/api/x",
                &[("x-request-id", "client-7")],
                empty(),
            ))
            .await;
        assert_eq!(
            reply.upstream_saw("x-request-id").as_deref(),
            Some("client-7")
        );
        assert_eq!(reply.header("x-request-id"), Some("client-7"));
    }
    // Routes without the filter are untouched.
    let plain = client::get(addr, "/plain", &[]).await;
    assert_eq!(plain.upstream_saw("x-request-id"), None);
    assert_eq!(plain.header("x-request-id"), None);
    // The id is on the proxy's own error responses too.
    let down = client::get(addr, "/down", &[]).await;
    assert_eq!(down.status, 502);
    assert_eq!(down.header("x-request-id").map(str::len), Some(36));
    // Its metric is on the admin endpoint.
    let generated = weft
        .metric(r#"weft_filter_request_ids_total{filter="request-id",source="generated"}"#)
        .await;
    assert_eq!(generated, 21.0);
}

fn misbehave_config(up: SocketAddr) -> String {
    let module = component("misbehave");
    format!(
        r#"
admin:
  address: 127.0.0.1:0
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: open
        match: {{ prefix: /open }}
        cluster: a
        filters: [lenient]
      - name: closed
        match: {{ prefix: /closed }}
        cluster: a
        filters: [strict]
clusters:
  a:
    endpoints: ["{up}"]
filters:
  lenient:
    module: {m}
    failure_policy: fail_open
    timeout: 30ms
    memory_limit: 4MiB
  strict:
    module: {m}
    failure_policy: fail_closed
    failure_status: 500
    timeout: 30ms
    memory_limit: 4MiB
"#,
        m = module.display()
    )
}

#[tokio::test]
async fn a_trapping_filter_fails_open_or_closed_as_configured_and_is_counted() {
    let up = Upstream::start("a");
    let weft = Weft::start(&misbehave_config(up.addr));
    let addr = weft.addr("edge");
    for version in [Version::H1, Version::H2] {
        let mut c = Conn::open(addr, version).await;
        let open = c
            .send(request(
                version,
                addr,
                Method::GET,
                "/open",
                &[("x-misbehave", "trap")],
                empty(),
            ))
            .await;
        assert_eq!(
            open.status, 200,
            "fail-open: the request went on to the upstream"
        );
        assert_eq!(open.json()["server"], "a");
        let closed = c
            .send(request(
                version,
                addr,
                Method::GET,
                "/closed",
                &[("x-misbehave", "trap")],
                empty(),
            ))
            .await;
        assert_eq!(closed.status, 500, "fail-closed with the configured status");
        assert_eq!(closed.header("x-weft-error"), Some("filter-failed"));
        // The next request on the same connection works: the trapped instance was replaced.
        let next = c
            .send(request(version, addr, Method::GET, "/closed", &[], empty()))
            .await;
        assert_eq!(next.status, 200);
    }
    assert_eq!(
        weft.metric(r#"weft_filter_failures_total{filter="lenient",reason="trap"}"#)
            .await,
        2.0
    );
    assert_eq!(
        weft.metric(r#"weft_filter_failures_total{filter="strict",reason="trap"}"#)
            .await,
        2.0
    );
}

#[tokio::test]
async fn a_filter_that_never_returns_is_cut_off_at_its_deadline() {
    let up = Upstream::start("a");
    let weft = Weft::start(&misbehave_config(up.addr));
    let addr = weft.addr("edge");
    let started = Instant::now();
    let closed = client::get(addr, "/closed", &[("x-misbehave", "loop")]).await;
    assert_eq!(closed.status, 500);
    let open = client::get(addr, "/open", &[("x-misbehave", "loop")]).await;
    assert_eq!(open.status, 200);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "both loops cut off at their 30ms deadline, not left running: {took:?}"
    );
    assert_eq!(client::get(addr, "/closed", &[]).await.status, 200);
    assert_eq!(
        weft.metric(r#"weft_filter_failures_total{filter="strict",reason="deadline"}"#)
            .await,
        1.0
    );
    assert_eq!(
        weft.metric(r#"weft_filter_failures_total{filter="lenient",reason="deadline"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_filter_over_its_memory_limit_is_stopped_and_counted() {
    let up = Upstream::start("a");
    let weft = Weft::start(&misbehave_config(up.addr));
    let addr = weft.addr("edge");
    let rss_before = weft.memory_kb("VmRSS");
    let closed = client::get(addr, "/closed", &[("x-misbehave", "oom")]).await;
    assert_eq!(closed.status, 500);
    assert_eq!(client::get(addr, "/closed", &[]).await.status, 200);
    assert_eq!(
        weft.metric(r#"weft_filter_failures_total{filter="strict",reason="memory"}"#)
            .await,
        1.0
    );
    let grew_kb = weft.memory_kb("VmRSS").saturating_sub(rss_before);
    assert!(
        grew_kb < 16 << 10,
        "the 4MiB cap held the filter's memory: grew {grew_kb} kB"
    );
}

#[tokio::test]
async fn the_admin_endpoint_shows_each_filters_module_and_counters() {
    let up = Upstream::start("a");
    let weft = Weft::start(&misbehave_config(up.addr));
    let addr = weft.addr("edge");
    client::get(addr, "/closed", &[("x-misbehave", "trap")]).await;
    let admin = weft.admin.unwrap();
    let filters: serde_json::Value =
        serde_json::from_str(&client::get_text(&format!("http://{admin}/filters")).await).unwrap();
    let strict = filters["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "strict")
        .unwrap()
        .clone();
    assert_eq!(strict["failure_policy"], "FailClosed");
    assert_eq!(strict["failures"]["trap"], 1);
    assert_eq!(strict["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(strict["phases"]["request_headers"], true);
    let config = client::get_text(&format!("http://{admin}/config")).await;
    assert!(
        config.contains("fail_closed"),
        "the live configuration is served"
    );
    assert_eq!(
        client::get_text(&format!("http://{admin}/ready")).await,
        "ready\n"
    );
}
