//! What a real application behind weft must not notice: cookies an HTTP/2 client split
//! reach an HTTP/1.1 upstream joined; a slow upload is timed from its end, not its
//! start; one header-size limit on every protocol, answered with weft's own 431; and
//! `Expect: 100-continue` passed to the upstream when the listener says so. The same
//! deviations are run against real applications and clients by `compat_suite` (the
//! Python suite in `tests/peers/compat`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::client::{self, Conn, Version};
use crate::support::proxy::Weft;
use crate::support::upstream::Upstream;

fn config(up: SocketAddr, listener_extra: &str) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
{listener_extra}
    routes:
      - name: all
        cluster: up
        timeout: 1s
clusters:
  up:
    endpoints: ["{up}"]
"#
    )
}

/// A request body of `chunks` pieces of `size` bytes, one every `every`.
struct Paced {
    left: usize,
    chunk: Bytes,
    every: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Paced {
    fn body(chunks: usize, size: usize, every: Duration) -> client::Body {
        Paced {
            left: chunks,
            chunk: Bytes::from(vec![b'u'; size]),
            every,
            sleep: None,
        }
        .boxed()
    }
}

impl Body for Paced {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let every = self.every;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
        std::task::ready!(sleep.as_mut().poll(cx));
        self.sleep = None;
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.left * self.chunk.len()) as u64)
    }
}

/// Reads until the peer closes or `limit` passes.
async fn read_all(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn cookies_an_http2_client_splits_reach_an_http1_upstream_joined() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr, ""));
    let addr = weft.addr("edge");
    let mut c = Conn::open(addr, Version::H2).await;
    let mut req = client::request(Version::H2, addr, Method::GET, "/c", &[], client::empty());
    req.headers_mut()
        .append("cookie", "session=abc".parse().unwrap());
    req.headers_mut()
        .append("cookie", "csrf=xyz".parse().unwrap());
    let reply = c.send(req).await;
    assert_eq!(reply.status, 200);
    let seen = &reply.json()["headers"]["cookie"];
    assert_eq!(
        seen,
        &serde_json::json!(["session=abc; csrf=xyz"]),
        "{seen}"
    );
}

#[tokio::test]
async fn a_slow_upload_is_timed_from_the_end_of_its_body() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr, ""));
    let addr = weft.addr("edge");
    // 4 chunks 450 ms apart: 1.8 s to upload through a route whose timeout is 1 s.
    for version in [Version::H1, Version::H2] {
        let mut c = Conn::open(addr, version).await;
        let body = Paced::body(4, 64 << 10, Duration::from_millis(450));
        let req = client::request(version, addr, Method::POST, "/upload", &[], body);
        let started = Instant::now();
        let reply = c.send(req).await;
        assert_eq!(reply.status, 200, "{version:?}: {:?}", reply.body);
        assert_eq!(reply.json()["body_len"], 4 * (64 << 10), "{version:?}");
        assert!(started.elapsed() > Duration::from_millis(1700));
    }
    // The timeout still holds once the body is in: a slow upstream gets 504.
    let mut c = Conn::open(addr, Version::H1).await;
    let body = Paced::body(2, 1024, Duration::from_millis(100));
    let req = client::request(Version::H1, addr, Method::POST, "/slow/3000", &[], body);
    let reply = c.send(req).await;
    assert_eq!(reply.status, 504);
    assert_eq!(reply.header("x-weft-error"), Some("timeout"));
}

#[tokio::test]
async fn a_stalled_or_malformed_body_is_the_clients_fault_at_once() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr, "    body_idle_timeout: 400ms"));
    let addr = weft.addr("edge");

    // Stalls after 10 of 100 bytes: 408 after the idle timeout, not 504 after the route's.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_all(&mut s, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("x-weft-error: request-body-timeout"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_millis(900));

    // An invalid chunk size: 400 at once, never the route's 504.
    for bad in ["zz", "ffffffffffffffffff", "0x5"] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST /up HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n{bad}\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let started = Instant::now();
        let answer = read_all(&mut s, Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
        assert!(
            answer.contains("x-weft-error: malformed-request"),
            "{answer}"
        );
        assert!(started.elapsed() < Duration::from_millis(500), "{bad}");
    }
    // A body cut short by a half-close: 400 at once.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\nshort")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let answer = read_all(&mut s, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(client::get(addr, "/fine", &[]).await.status, 200);
}

/// A GET with one header of `size` bytes, over `version`.
async fn big_header(addr: SocketAddr, version: Version, size: usize) -> client::Reply {
    let mut c = Conn::open(addr, version).await;
    let value = "j".repeat(size);
    let req = client::request(
        version,
        addr,
        Method::GET,
        "/h",
        &[("x-big", &value)],
        client::empty(),
    );
    c.send(req).await
}

#[tokio::test]
async fn one_header_size_limit_holds_on_every_protocol() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr, ""));
    let addr = weft.addr("edge");
    for version in [Version::H1, Version::H2] {
        // A large JWT or cookie: 17 KB passes on both (64 KiB by default).
        let ok = big_header(addr, version, 17_000).await;
        assert_eq!(ok.status, 200, "{version:?}");
        assert_eq!(ok.upstream_saw("x-big").map(|v| v.len()), Some(17_000));
        // Over the limit: weft's own 431, saying why, on both.
        let refused = big_header(addr, version, 70_000).await;
        assert_eq!(refused.status, 431, "{version:?}");
        assert_eq!(
            refused.header("x-weft-error"),
            Some("malformed-request"),
            "{version:?}"
        );
    }
    drop(weft);
    // Configured lower, the same on both protocols.
    let weft = Weft::start(&config(up.addr, "    max_request_headers: 8KiB"));
    let addr = weft.addr("edge");
    for version in [Version::H1, Version::H2] {
        assert_eq!(big_header(addr, version, 6_000).await.status, 200);
        let refused = big_header(addr, version, 10_000).await;
        assert_eq!(refused.status, 431, "{version:?}");
        assert_eq!(refused.header("x-weft-error"), Some("malformed-request"));
    }
}

/// Sends a PUT with `Expect: 100-continue` and a 3 MB length, and waits for the first
/// answer without sending the body: what came back, and whether the body was wanted.
async fn expect_continue(addr: SocketAddr, path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nhost: a\r\ncontent-length: 3000000\r\nexpect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !String::from_utf8_lossy(&out).contains("\r\n\r\n") {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn expect_100_continue_goes_to_the_upstream_when_the_listener_says_so() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr, "    proxy_100_continue: true"));
    let addr = weft.addr("edge");

    // The upstream refuses without reading: the client learns it before sending a byte.
    let (_s, first) = expect_continue(addr, "/early").await;
    assert!(first.starts_with("HTTP/1.1 413"), "{first}");
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::Relaxed), 1);

    // The upstream wants the body: its 100 reaches the client, the upload goes through,
    // and the upstream saw the expectation.
    let (mut s, first) = expect_continue(addr, "/take").await;
    assert!(first.starts_with("HTTP/1.1 100 Continue\r\n"), "{first}");
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..3 {
        s.write_all(&chunk[..1_000_000]).await.unwrap();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains('}') {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"body_len\":3000000"), "{answer}");
    assert!(answer.contains("\"expect\":[\"100-continue\"]"), "{answer}");
    drop(weft);

    // By default the proxy answers the expectation itself, and the upstream never sees it.
    let weft = Weft::start(&config(up.addr, ""));
    let (_s, first) = expect_continue(weft.addr("edge"), "/early").await;
    assert!(first.starts_with("HTTP/1.1 100 Continue\r\n"), "{first}");
}

#[tokio::test]
async fn via_and_max_forwards_behave_as_rfc_9110_asks() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr, "    via: edge-1"));
    let addr = weft.addr("edge");
    // Via names this hop on the request (with the client's protocol) and the response.
    for (version, protocol) in [(Version::H1, "1.1"), (Version::H2, "2")] {
        let mut c = Conn::open(addr, version).await;
        let req = client::request(
            version,
            addr,
            Method::GET,
            "/v",
            &[("via", "1.1 browser-proxy")],
            client::empty(),
        );
        let reply = c.send(req).await;
        assert_eq!(
            reply.json()["headers"]["via"],
            serde_json::json!(["1.1 browser-proxy", format!("{protocol} edge-1")]),
            "{version:?}"
        );
        assert_eq!(reply.header("via"), Some("1.1 edge-1"), "{version:?}");
    }
    // Max-Forwards: decremented on the way; at 0 weft answers an OPTIONS or TRACE itself.
    let mut c = Conn::open(addr, Version::H1).await;
    let req = client::request(
        Version::H1,
        addr,
        Method::OPTIONS,
        "/m",
        &[("max-forwards", "5")],
        client::empty(),
    );
    let reply = c.send(req).await;
    assert_eq!(reply.upstream_saw("max-forwards").as_deref(), Some("4"));
    let before = up.requests.load(std::sync::atomic::Ordering::Relaxed);
    let req = client::request(
        Version::H1,
        addr,
        Method::TRACE,
        "/m",
        &[
            ("max-forwards", "0"),
            ("x-probe", "1"),
            ("cookie", "secret=1"),
        ],
        client::empty(),
    );
    let reply = c.send(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("message/http"));
    let text = String::from_utf8_lossy(&reply.body);
    assert!(
        text.starts_with("TRACE /m HTTP/1.1\r\n") && text.contains("x-probe: 1"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
    assert_eq!(
        up.requests.load(std::sync::atomic::Ordering::Relaxed),
        before
    );
    // obs-fold (a header continued on the next line) is refused (RFC 9112 section 5.2).
    let answer = client::raw(
        addr,
        b"GET / HTTP/1.1\r\nhost: a\r\nx-a: 1\r\n  folded\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

/// Runs the compatibility suite (`tests/peers/compat/compat.py`) with `args`: whether
/// every case matched, its report, and the ids of the cases that differed.
fn run_compat_suite(args: &[&str]) -> (bool, String, Vec<String>) {
    let repo = crate::support::filters::repo();
    let python = repo.join("target/test-tools/py/bin/python");
    let dir = crate::support::proxy::TempDir::new("compat");
    let json = dir.0.join("results.json");
    let out = std::process::Command::new(&python)
        .arg(repo.join("proxy/tests/peers/compat/compat.py"))
        .args(["--weft", env!("CARGO_BIN_EXE_weft")])
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} (run scripts/install-test-peers.sh): {e}",
                python.display()
            )
        });
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("the suite wrote no summary:\n{report}"));
    let differed = summary["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["match"] == false)
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    let cases = summary["cases"].as_array().map_or(0, Vec::len);
    (
        out.status.success(),
        format!("{cases} cases\n{report}"),
        differed,
    )
}

/// The compatibility suite: Starlette on uvicorn and hypercorn, Flask on gunicorn, each
/// behind weft and alone, driven by httpx, curl, ab, h2load, websockets and aioquic over
/// HTTP/1.1, h2c, TLS (h1 and h2 by ALPN) and HTTP/3; every case must see through weft
/// what it sees directly. A case that differs is run once more on its own: a real
/// deviation differs both times; one that then matches was the timing of a loaded
/// machine (event gaps, a slow handshake) and is reported, not failed.
#[test]
fn compat_suite_real_apps_and_clients() {
    let (ok, report, differed) = run_compat_suite(&[]);
    let summary = report
        .lines()
        .rev()
        .find(|l| l.contains(" match, "))
        .unwrap_or("");
    println!("{summary}");
    // It really ran: hundreds of cases.
    let cases: usize = report
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(cases >= 200, "too few cases ran:\n{report}");
    if ok {
        return;
    }
    assert!(!differed.is_empty(), "the suite failed:\n{report}");
    let mut again = vec!["--only"];
    again.extend(differed.iter().map(String::as_str));
    let (ok_again, report_again, _) = run_compat_suite(&again);
    assert!(
        ok_again,
        "the compatibility suite found differences, twice:\n{report}\n--- run again:\n{report_again}"
    );
    println!("matched when run again (timing on a loaded machine): {differed:?}");
}

#[tokio::test]
async fn http11_over_tls_keeps_the_upstreams_headers_and_upgrades() {
    use crate::tls::{curl, Pki};
    let pki = Pki::new("compat-tls");
    let (cert, key) = pki.svid("edge", &["--dns", "edge.test"]);
    let up = Upstream::start("up");
    let ws = crate::upgrade::upstream().await;
    let weft = Weft::start(&format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    tls:
      certificates: [{{ cert: {cert}, key: {key} }}]
    routes:
      - match: {{ prefix: /chat }}
        cluster: ws
      - cluster: up
clusters:
  up: {{ endpoints: ["{}"] }}
  ws: {{ endpoints: ["{ws}"] }}
"#,
        up.addr
    ));
    let addr = weft.addr("edge");
    // The upstream's response headers reach an HTTP/1.1 client over TLS (they were
    // lost: only content-length and date came).
    for version in ["--http1.1", "--http2"] {
        let r = curl(&pki, "edge.test", addr, "/h", &[version, "-D", "-"]);
        let head = r.body.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/json"),
            "{version}: {head}"
        );
        assert!(head.contains("x-upstream: up"), "{version}: {head}");
    }
    // A WebSocket upgrade on a TLS listener: the 101 says what it switched to, and the
    // upstream's first bytes in the new protocol arrive.
    let r = tokio::task::spawn_blocking(move || {
        curl(
            &pki,
            "edge.test",
            addr,
            "/chat",
            &[
                "--http1.1",
                "--max-time",
                "2",
                "-D",
                "-",
                "-H",
                "connection: Upgrade",
                "-H",
                "upgrade: websocket",
                "-H",
                "sec-websocket-version: 13",
                "-H",
                "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
            ],
        )
    })
    .await
    .unwrap();
    let text = r.body.to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 101"), "{text} {}", r.stderr);
    assert!(text.contains("upgrade: websocket"), "{text}");
    assert!(text.contains("\r\n\r\nhi"), "{text}");
}
