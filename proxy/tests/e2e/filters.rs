//! Filters end to end: the example filter on a route, and misbehaving filters held to
//! their deadline, memory cap and failure policy, through the real proxy.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::client::{self, empty, request, Conn, Version};
use crate::support::filters::{component, filtered_and_plain};
use crate::support::proxy::Weft;
use crate::support::upstream::Upstream;
use http::Method;

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

/// An upstream that answers every request head on a kept-alive connection with
/// `response`, byte for byte (a real socket; the tests send bodiless requests).
async fn canned_upstream(response: &'static [u8]) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    if s.write_all(response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The header lines of a raw HTTP/1.1 response, names lower-cased, in order.
fn header_lines(raw: &str) -> Vec<(String, String)> {
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

#[tokio::test]
async fn upstream_response_headers_reach_the_client_as_sent_less_connection_specific_ones() {
    // Mixed case, a repeated header, and every connection-specific header there is.
    let up = canned_upstream(
        b"HTTP/1.1 200 OK\r\nServer: canned\r\nSet-Cookie: a=1\r\nKeep-Alive: timeout=5\r\n\
          Connection: keep-alive\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
          Trailer: x-t\r\nUpgrade: h2c\r\nset-cookie: b=2\r\nX-Mixed-Case:  Value With Spaces \r\n\
          Date: Mon, 30 Nov 2026 12:00:00 GMT\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    let weft = Weft::start(&filtered_and_plain(up));
    let addr = weft.addr("edge");
    let gone = ["keep-alive", "proxy-connection", "te", "trailer", "upgrade"];

    // HTTP/1.1: twice on one kept-alive connection per route, then closing.
    for path in ["/plain", "/filtered"] {
        let ask = format!(
            "GET {path} HTTP/1.1\r\nhost: a\r\n\r\nGET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
        );
        let raw = client::raw(addr, ask.as_bytes()).await;
        let answers: Vec<&str> = raw.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 2, "{raw}");
        for (i, answer) in answers.iter().enumerate() {
            assert!(answer.starts_with("200 OK\r\n"), "{answer}");
            assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
            let lines = header_lines(&format!("HTTP/1.1 {answer}"));
            let values = |name: &str| -> Vec<&str> {
                lines
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
                    .collect()
            };
            assert_eq!(values("server"), ["canned"], "{path}: {lines:?}");
            assert_eq!(values("set-cookie"), ["a=1", "b=2"], "{path}: in order");
            assert_eq!(values("x-mixed-case"), ["Value With Spaces"], "{path}");
            assert_eq!(
                values("date"),
                ["Mon, 30 Nov 2026 12:00:00 GMT"],
                "{path}: the upstream's date, once"
            );
            assert_eq!(values("content-length"), ["5"], "{path}");
            for name in gone {
                assert!(
                    values(name).is_empty(),
                    "{path}: {name} passed on: {lines:?}"
                );
            }
            let closing = if i == 1 { vec!["close"] } else { vec![] };
            assert_eq!(values("connection"), closing, "{path}: {lines:?}");
            assert_eq!(
                values("x-request-id").len(),
                usize::from(path == "/filtered"),
                "{path}: the filter's header comes with the upstream's"
            );
        }
    }

    // HTTP/2: the same headers, from a header map.
    let mut c = Conn::open(addr, Version::H2).await;
    for path in ["/plain", "/filtered"] {
        let reply = c
            .send(request(Version::H2, addr, Method::GET, path, &[], empty()))
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(&reply.body[..], b"hello");
        let cookies: Vec<_> = reply.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"], "{path}");
        assert_eq!(reply.header("x-mixed-case"), Some("Value With Spaces"));
        for name in gone {
            assert!(reply.header(name).is_none(), "{path}: {name} passed on");
        }
        assert_eq!(reply.header("x-request-id").is_some(), path == "/filtered");
    }
}
