//! Bodies stream through the proxy: 100 MB each way without the proxy's memory growing.

use std::net::SocketAddr;

use crate::support::client::{request, Conn, Version};
use crate::support::filters::component;
use crate::support::proxy::Weft;
use crate::support::upstream::{Repeat, Upstream};
use http::Method;
use http_body_util::BodyExt;

const HUNDRED_MB: u64 = 100 << 20;
/// "A few MB": the proxy's peak resident memory may not grow more than this.
const GROWTH_LIMIT_KB: u64 = 8 << 10;

fn config(up: SocketAddr) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: a
        filters: [request-id]
        timeout: 60s
clusters:
  a:
    endpoints: ["{up}"]
filters:
  request-id:
    module: {}
"#,
        component("request-id").display()
    )
}

#[tokio::test]
async fn a_100mb_request_body_streams_through_without_growing_memory() {
    let up = Upstream::start("a");
    let weft = Weft::start(&config(up.addr));
    let addr = weft.addr("edge");
    for version in [Version::H1, Version::H2] {
        // Warm up, so buffers and pools exist before measuring.
        let mut c = Conn::open(addr, version).await;
        let warm = c
            .send(request(
                version,
                addr,
                Method::POST,
                "/upload",
                &[],
                Repeat::new(1 << 20).boxed(),
            ))
            .await;
        assert_eq!(warm.json()["body_len"], 1 << 20);
        let peak_before = weft.memory_kb("VmHWM");
        let reply = c
            .send(request(
                version,
                addr,
                Method::POST,
                "/upload",
                &[],
                Repeat::new(HUNDRED_MB).boxed(),
            ))
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json()["body_len"],
            HUNDRED_MB,
            "{version:?}: every byte arrived"
        );
        let grew = weft.memory_kb("VmHWM").saturating_sub(peak_before);
        assert!(
            grew < GROWTH_LIMIT_KB,
            "{version:?}: peak memory grew {grew} kB for a 100 MB upload"
        );
    }
}

#[tokio::test]
async fn a_100mb_response_body_streams_through_without_growing_memory() {
    let up = Upstream::start("a");
    let weft = Weft::start(&config(up.addr));
    let addr = weft.addr("edge");
    for version in [Version::H1, Version::H2] {
        let mut c = Conn::open(addr, version).await;
        let path = format!("/bytes/{}", 1 << 20);
        c.send(request(
            version,
            addr,
            Method::GET,
            &path,
            &[],
            crate::support::client::empty(),
        ))
        .await;
        let peak_before = weft.memory_kb("VmHWM");
        // Read it chunk by chunk, counting, as a client that does not buffer would.
        let req = request(
            version,
            addr,
            Method::GET,
            &format!("/bytes/{HUNDRED_MB}"),
            &[],
            crate::support::client::empty(),
        );
        let resp = match &mut c {
            Conn::H1(s) => s.send_request(req).await.unwrap(),
            Conn::H2(s) => s.send_request(req).await.unwrap(),
        };
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("x-request-id"));
        let mut body = resp.into_body();
        let mut got = 0u64;
        while let Some(frame) = body.frame().await {
            got += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
        }
        assert_eq!(got, HUNDRED_MB, "{version:?}");
        let grew = weft.memory_kb("VmHWM").saturating_sub(peak_before);
        assert!(
            grew < GROWTH_LIMIT_KB,
            "{version:?}: peak memory grew {grew} kB for a 100 MB download"
        );
    }
}

#[tokio::test]
async fn an_upstream_refusing_an_upload_early_is_heard() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("a");
    let weft = Weft::start(&config(up.addr));
    let addr = weft.addr("edge");
    // A raw client: it keeps sending while it reads, as curl does, so it sees an answer
    // that comes before the end of its upload (hyper's client reports the broken pipe
    // instead).
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let size = 32u64 << 20;
    let head = format!("POST /early HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {size}\r\n\r\n");
    wr.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 << 10];
        let mut sent = 0;
        while sent < size {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
    });
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), rd.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "the upstream's early answer, not a 502: {answer:?}"
    );
    writer.abort();
    // The proxy keeps serving, on a fresh upstream connection.
    let mut c = Conn::open(addr, Version::H1).await;
    let ok = c
        .send(request(
            Version::H1,
            addr,
            Method::POST,
            "/echo",
            &[],
            Repeat::new(1 << 20).boxed(),
        ))
        .await;
    assert_eq!(ok.json()["body_len"], 1 << 20);
}
