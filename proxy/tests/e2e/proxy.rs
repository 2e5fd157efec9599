//! The data plane end to end: the real `weft` binary between real clients and real
//! upstreams on loopback, over HTTP/1.1 and HTTP/2.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::client::{self, empty, request, Conn, Version};
use crate::support::proxy::Weft;
use crate::support::upstream::Upstream;
use http::Method;

/// A port nothing listens on.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn routing_config(a: SocketAddr, b: SocketAddr) -> String {
    format!(
        r#"
admin:
  address: 127.0.0.1:0
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: by-header
        match: {{ headers: [{{ name: x-to, exact: b }}] }}
        cluster: b
      - name: by-host
        match: {{ host: "*.b.test" }}
        cluster: b
      - name: exact
        match: {{ path: /only-b }}
        cluster: b
      - name: posts
        match: {{ prefix: /write, methods: [POST] }}
        cluster: b
      - name: rest
        cluster: a
clusters:
  a:
    endpoints: ["{a}"]
  b:
    endpoints: ["{b}"]
"#
    )
}

#[tokio::test]
async fn routes_match_on_host_path_method_and_headers_over_http1_and_http2() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let weft = Weft::start(&routing_config(a.addr, b.addr));
    let addr = weft.addr("edge");
    for version in [Version::H1, Version::H2] {
        let mut c = Conn::open(addr, version).await;
        type Case<'a> = (Method, &'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (Method::GET, "/x", &[], "a"),
            (Method::GET, "/x", &[("x-to", "b")], "b"),
            (Method::GET, "/x", &[("x-to", "c")], "a"),
            (Method::GET, "/only-b", &[], "b"),
            (Method::GET, "/only-b/not", &[], "a"),
            (Method::POST, "/write/1", &[], "b"),
            (Method::GET, "/write/1", &[], "a"),
        ];
        for (method, path, headers, want) in cases {
            let reply = c
                .send(request(
                    version,
                    addr,
                    method.clone(),
                    path,
                    headers,
                    empty(),
                ))
                .await;
            assert_eq!(reply.status, 200, "{version:?} {method} {path}");
            assert_eq!(
                reply.json()["server"],
                *want,
                "{version:?} {method} {path} {headers:?}"
            );
        }
    }
    // Host matching, with the port stripped and case ignored.
    let reply = client::get(addr, "/x", &[("host", "API.b.test:8080")]).await;
    assert_eq!(reply.json()["server"], "b");
}

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_headers_removed() {
    let a = Upstream::start("a");
    let weft = Weft::start(&routing_config(a.addr, a.addr));
    let addr = weft.addr("edge");
    let reply = client::get(
        addr,
        "/path?q=1",
        &[
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("x-forwarded-for", "198.51.100.7"),
            ("x-keep", "yes"),
        ],
    )
    .await;
    let json = reply.json();
    assert_eq!(json["uri"], "/path?q=1");
    assert_eq!(
        reply.upstream_saw("x-forwarded-for").as_deref(),
        Some("198.51.100.7, 127.0.0.1")
    );
    assert_eq!(
        reply.upstream_saw("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(reply.upstream_saw("x-keep").as_deref(), Some("yes"));
    assert_eq!(
        reply.upstream_saw("x-secret"),
        None,
        "named by Connection: not forwarded"
    );
    assert_eq!(
        reply.upstream_saw("host").as_deref(),
        Some(addr.to_string().as_str())
    );
}

#[tokio::test]
async fn an_http2_cluster_is_spoken_to_in_http2() {
    let up = Upstream::start("h2");
    let config = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: h2
clusters:
  h2:
    endpoints: ["{}"]
    protocol: http2
"#,
        up.addr
    );
    let weft = Weft::start(&config);
    let addr = weft.addr("edge");
    for version in [Version::H1, Version::H2] {
        let mut c = Conn::open(addr, version).await;
        for _ in 0..20 {
            let reply = c
                .send(request(version, addr, Method::GET, "/v", &[], empty()))
                .await;
            assert_eq!(reply.json()["version"], "HTTP/2.0");
            assert_eq!(
                reply.upstream_saw("host"),
                None,
                "HTTP/2 carries the authority, not Host"
            );
        }
    }
    assert!(
        up.connections.load(std::sync::atomic::Ordering::Relaxed) <= 2,
        "one multiplexed connection per worker"
    );
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let up = Upstream::start("a");
    let weft = Weft::start_with(&routing_config(up.addr, up.addr), &["--workers", "1"]);
    let addr = weft.addr("edge");
    let mut c = Conn::open(addr, Version::H1).await;
    for _ in 0..200 {
        let reply = c
            .send(request(Version::H1, addr, Method::GET, "/k", &[], empty()))
            .await;
        assert_eq!(reply.status, 200);
    }
    let conns = up.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::Relaxed), 200);
    assert_eq!(
        conns, 1,
        "200 sequential requests over one kept-alive upstream connection"
    );
    assert_eq!(
        weft.metric(r#"weft_upstream_connections_total{cluster="a"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn upstream_failures_become_502_503_504_with_their_cause() {
    let slow = Upstream::start("slow");
    let config = format!(
        r#"
admin:
  address: 127.0.0.1:0
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: refused
        match: {{ prefix: /refused }}
        cluster: nobody
      - name: slow
        match: {{ prefix: /slow }}
        cluster: slow
        timeout: 300ms
      - name: dropping
        match: {{ prefix: /drop }}
        cluster: slow
      - name: ok
        match: {{ prefix: /ok }}
        cluster: slow
clusters:
  nobody:
    endpoints: ["{}"]
  slow:
    endpoints: ["{}"]
"#,
        closed_port(),
        slow.addr
    );
    let weft = Weft::start(&config);
    let addr = weft.addr("edge");

    let r = client::get(addr, "/refused", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-weft-error"), Some("connect-failure"));

    let started = Instant::now();
    let r = client::get(addr, "/slow/2000", &[]).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-weft-error"), Some("timeout"));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the route's 300ms timeout applied"
    );

    let r = client::get(addr, "/drop", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-weft-error"), Some("reset"));

    let r = client::get(addr, "/nowhere", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-weft-error"), Some("no-route"));

    // And the proxy still serves.
    assert_eq!(client::get(addr, "/ok", &[]).await.status, 200);
    assert_eq!(
        weft.metric(r#"weft_upstream_failures_total{cluster="nobody",kind="connect-failure"}"#)
            .await,
        1.0
    );
    assert_eq!(
        weft.metric(r#"weft_requests_no_route_total{listener="edge"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_proxy_keeps_serving() {
    let up = Upstream::start("a");
    let weft = Weft::start(&routing_config(up.addr, up.addr));
    let addr = weft.addr("edge");
    let garbage = client::raw(addr, b"THIS IS NOT HTTP\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");
    let no_host = client::raw(addr, b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host:?}");
    assert!(no_host.contains("x-weft-error: bad-request"), "{no_host:?}");
    let bad_header = client::raw(addr, b"GET / HTTP/1.1\r\nhost: a\r\nbad header: x\r\n\r\n").await;
    assert!(bad_header.starts_with("HTTP/1.1 400"), "{bad_header:?}");
    // A refused CONNECT ends the connection: what follows is not read as a request.
    let connect = client::raw(
        addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n\
          GET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await;
    assert!(connect.starts_with("HTTP/1.1 501"), "{connect:?}");
    assert_eq!(connect.matches("HTTP/1.1 ").count(), 1, "{connect:?}");
    // Two Host headers (RFC 9112 section 3.2), and a coding the proxy would drop.
    let two_hosts = client::raw(addr, b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n").await;
    assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts:?}");
    let gzip = client::raw(
        addr,
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(gzip.starts_with("HTTP/1.1 501"), "{gzip:?}");
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(client::get(addr, "/fine", &[]).await.status, 200);
}

#[tokio::test]
async fn workers_flag_sets_the_number_of_worker_threads() {
    let up = Upstream::start("a");
    let weft = Weft::start_with(&routing_config(up.addr, up.addr), &["--workers", "3"]);
    let tasks = std::fs::read_dir(format!("/proc/{}/task", weft.pid())).unwrap();
    let workers = tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim().starts_with("weft-worker-"))
        })
        .count();
    assert_eq!(workers, 3);
    // Every worker serves: many connections spread over them all.
    let addr = weft.addr("edge");
    for _ in 0..30 {
        assert_eq!(client::get(addr, "/w", &[]).await.status, 200);
    }
}

/// An HTTP/1.0-style upstream: answers every request with a body delimited by closing
/// the connection. Returns its address; serves until the test ends.
fn close_delimited_upstream() -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream
                .write_all(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end");
        }
    });
    addr
}

#[tokio::test]
async fn bodies_framed_by_length_chunks_or_close_are_relayed() {
    let up = Upstream::start("a");
    let old = close_delimited_upstream();
    let config = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ prefix: /old }}
        cluster: old
      - cluster: a
clusters:
  a:
    endpoints: ["{}"]
  old:
    endpoints: ["{old}"]
"#,
        up.addr
    );
    let weft = Weft::start(&config);
    let addr = weft.addr("edge");
    for version in [Version::H1, Version::H2] {
        let mut c = Conn::open(addr, version).await;
        let chunked = c
            .send(request(
                version,
                addr,
                Method::GET,
                "/chunked/300000",
                &[],
                empty(),
            ))
            .await;
        assert_eq!(chunked.body.len(), 300_000, "{version:?}");
        let sized = c
            .send(request(
                version,
                addr,
                Method::GET,
                "/bytes/70000",
                &[],
                empty(),
            ))
            .await;
        assert_eq!(sized.body.len(), 70_000);
        let head = c
            .send(request(
                version,
                addr,
                Method::HEAD,
                "/bytes/70000",
                &[],
                empty(),
            ))
            .await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty(), "HEAD has no body");
        for _ in 0..3 {
            let closed = c
                .send(request(version, addr, Method::GET, "/old", &[], empty()))
                .await;
            assert_eq!(&closed.body[..], b"until the end", "{version:?}");
        }
    }
}
