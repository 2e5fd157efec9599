//! Bodies stream through the proxy: 100 MB each way without the proxy's memory growing.

mod support;

use std::net::SocketAddr;

use http::Method;
use http_body_util::BodyExt;
use support::client::{request, Conn, Version};
use support::filters::component;
use support::proxy::Weft;
use support::upstream::{Repeat, Upstream};

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
            support::client::empty(),
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
            support::client::empty(),
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
