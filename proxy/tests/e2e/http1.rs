//! weft's own HTTP/1.1 server side, seen by raw clients: pipelining, request framing
//! (chunked bodies, smuggling shapes refused), `Expect: 100-continue`, HTTP/1.0
//! clients, `HEAD`, and oversized heads. Real `weft`, real upstream, loopback.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::client;
use crate::support::proxy::Weft;
use crate::support::upstream::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(up: SocketAddr) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: all
        cluster: up
clusters:
  up:
    endpoints: ["{up}"]
"#
    )
}

/// The JSON bodies of the responses in `raw`, in order (the test upstream echoes what
/// it received as one JSON object per response).
fn echoes(raw: &str) -> Vec<serde_json::Value> {
    raw.split("\r\n\r\n")
        .filter(|part| part.starts_with('{'))
        .filter_map(|part| {
            let end = part.rfind('}')?;
            serde_json::from_str(&part[..=end]).ok()
        })
        .collect()
}

/// Reads until `pattern` has arrived (or 5 s pass); returns everything read.
async fn read_until(s: &mut TcpStream, pattern: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&out).contains(pattern) {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr));
    let raw = client::raw(
        weft.addr("edge"),
        b"GET /one HTTP/1.1\r\nhost: a\r\n\r\n\
          POST /two HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc\
          GET /three HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 3, "{raw}");
    let uris: Vec<String> = echoes(&raw)
        .iter()
        .map(|j| j["uri"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(uris, ["/one", "/two", "/three"], "{raw}");
    assert_eq!(echoes(&raw)[1]["body_len"], 3);
    assert!(
        raw.contains("connection: close"),
        "the last answer says close: {raw}"
    );
}

#[tokio::test]
async fn chunked_request_bodies_reach_the_upstream_whole() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr));
    let raw = client::raw(
        weft.addr("edge"),
        b"POST /upload HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert_eq!(echoes(&raw)[0]["body_len"], 12, "{raw}");
}

#[tokio::test]
async fn request_smuggling_shapes_are_refused_before_the_upstream() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr));
    let addr = weft.addr("edge");
    let cases: [&[u8]; 4] = [
        // CL.TE: the upstream and the proxy could disagree on where the body ends.
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 40\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: -1\r\n\r\n",
    ];
    for case in cases {
        let raw = client::raw(addr, case).await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
        assert!(raw.contains("x-weft-error: malformed-request"), "{raw}");
        assert!(raw.contains("connection: close"), "{raw}");
        assert_eq!(
            raw.matches("HTTP/1.1 ").count(),
            1,
            "one answer only: {raw}"
        );
    }
    let gzip = client::raw(
        addr,
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\n",
    )
    .await;
    assert!(gzip.starts_with("HTTP/1.1 501"), "{gzip}");
    assert_eq!(
        up.requests.load(Ordering::Relaxed),
        0,
        "nothing reached the upstream"
    );
    assert_eq!(client::get(addr, "/fine", &[]).await.status, 200);
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr));
    let mut s = TcpStream::connect(weft.addr("edge")).await.unwrap();
    s.write_all(
        b"PUT /put HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let interim = read_until(&mut s, "\r\n\r\n").await;
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim:?}"
    );
    s.write_all(b"hello").await.unwrap();
    let answer = read_until(&mut s, "}").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(echoes(&answer)[0]["body_len"], 5, "{answer}");
    // The connection stays usable.
    s.write_all(b"GET /again HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let again = read_until(&mut s, "}").await;
    assert_eq!(echoes(&again)[0]["uri"], "/again", "{again}");
}

#[tokio::test]
async fn http10_clients_get_bodies_delimited_by_close() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr));
    // The upstream sends this body chunked; an HTTP/1.0 client cannot take chunks.
    let raw = client::raw(
        weft.addr("edge"),
        b"GET /chunked/1000 HTTP/1.0\r\nhost: a\r\n\r\n",
    )
    .await;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.contains("chunked"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body.len(), 1000);
    // Asking for keep-alive keeps the connection, with a length.
    let mut s = TcpStream::connect(weft.addr("edge")).await.unwrap();
    s.write_all(b"GET /bytes/10 HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let first = read_until(&mut s, "\r\n\r\n").await;
    assert!(first.contains("connection: keep-alive"), "{first}");
    assert!(first.contains("content-length: 10"), "{first}");
}

#[tokio::test]
async fn head_answers_keep_their_length_and_send_no_body() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr));
    let raw = client::raw(
        weft.addr("edge"),
        b"HEAD /bytes/100 HTTP/1.1\r\nhost: a\r\n\r\nGET /after HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-length: 100"), "{head}");
    // What follows the HEAD answer's head is the next answer, not a body.
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert_eq!(echoes(rest)[0]["uri"], "/after");
}

#[tokio::test]
async fn oversized_heads_get_431_and_the_proxy_keeps_serving() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr));
    let addr = weft.addr("edge");
    let mut big = b"GET / HTTP/1.1\r\nhost: a\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("x-filler-{i}: {}\r\n", "v".repeat(40)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let raw = client::raw(addr, &big).await;
    assert!(
        raw.starts_with("HTTP/1.1 431"),
        "{}",
        &raw[..raw.len().min(200)]
    );
    let many: String = (0..200).map(|i| format!("x-{i}: 1\r\n")).collect();
    let raw = client::raw(
        addr,
        format!("GET / HTTP/1.1\r\nhost: a\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 431"), "{raw}");
    assert_eq!(client::get(addr, "/fine", &[]).await.status, 200);
}

#[tokio::test]
async fn an_early_answer_reaches_a_client_still_sending_its_body() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr));
    let s = TcpStream::connect(weft.addr("edge")).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    // The upstream answers 413 without reading; the client is still uploading.
    let writer = tokio::spawn(async move {
        let _ = wr
            .write_all(b"POST /early HTTP/1.1\r\nhost: a\r\ncontent-length: 4000000\r\n\r\n")
            .await;
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..8 {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        wr
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    let _ = writer.await;
}
