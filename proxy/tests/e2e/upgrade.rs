//! HTTP/1.1 upgrades (WebSocket) through the proxy: the handshake is routed and filtered,
//! the upstream's 101 reaches the client, and from then on bytes flow both ways until
//! each side closes. An upstream that declines keeps the connection HTTP. Real `weft`,
//! a real upstream speaking the upgrade on a loopback socket, raw clients.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::filters::filtered_and_plain;
use crate::support::proxy::Weft;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that accepts `Upgrade: websocket` with 101 (saying `hi` at once in the
/// new protocol), then answers each chunk it receives upper-cased, until the client
/// closes its side; then it closes too. Requests without the upgrade get 426 and a
/// JSON echo of the head they came with.
pub(crate) async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                let lower = head.to_ascii_lowercase();
                if !(lower.contains("\r\nupgrade: websocket\r\n")
                    && lower.contains("\r\nconnection: upgrade\r\n"))
                {
                    let body = serde_json::json!({ "head": head }).to_string();
                    let resp = format!(
                        "HTTP/1.1 426 Upgrade Required\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    return;
                }
                let seen = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("x-request-id: "))
                    .unwrap_or("none")
                    .to_owned();
                let resp = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                     connection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                     x-upstream-saw-request-id: {seen}\r\n\r\nhi"
                );
                s.write_all(resp.as_bytes()).await.unwrap();
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let up = buf[..n].to_ascii_uppercase();
                            if s.write_all(&up).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Reads a request head (up to its blank line), byte by byte so nothing after it is
/// consumed.
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads until `want` bytes came or 5 s passed.
async fn read_exact_within(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut out = vec![0u8; want];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut out))
        .await
        .expect("bytes in time")
        .expect("bytes");
    out
}

const HANDSHAKE: &str = "GET {path} HTTP/1.1\r\nhost: chat.test\r\nupgrade: websocket\r\n\
    connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    sec-websocket-version: 13\r\n\r\n";

/// Sends a handshake for `path` (with `early` bytes of the new protocol in the same
/// write) and returns the connection and the 101 head.
async fn handshake(weft: &Weft, path: &str, early: &[u8]) -> (TcpStream, String) {
    let mut s = TcpStream::connect(weft.addr("edge")).await.unwrap();
    let mut req = HANDSHAKE.replace("{path}", path).into_bytes();
    req.extend_from_slice(early);
    s.write_all(&req).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut s))
        .await
        .expect("a response head in time");
    (s, head)
}

#[tokio::test]
async fn a_websocket_upgrade_becomes_a_tunnel_to_the_upstream() {
    let weft = Weft::start(&filtered_and_plain(upstream().await));
    let (mut s, head) = handshake(&weft, "/chat", b"early").await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(
        lower.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "the upstream's handshake headers pass: {head}"
    );
    assert!(!lower.contains("content-length"), "{head}");

    // What the upstream said at once, then the bytes sent with the handshake, answered.
    assert_eq!(read_exact_within(&mut s, 2).await, b"hi");
    assert_eq!(read_exact_within(&mut s, 5).await, b"EARLY");
    // Both ways, as many times as the client likes.
    for msg in [&b"one"[..], b"two frames later", &[0u8, 255, 10, 13]] {
        s.write_all(msg).await.unwrap();
        assert_eq!(
            read_exact_within(&mut s, msg.len()).await,
            msg.to_ascii_uppercase()
        );
    }
    // The client closes its side: the upstream sees the end and closes, and so does the
    // client's connection.
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the tunnel ends when both sides have closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing after the end: {rest:?}");
}

#[tokio::test]
async fn filters_run_on_the_handshake() {
    let weft = Weft::start(&filtered_and_plain(upstream().await));
    let (mut s, head) = handshake(&weft, "/filtered/chat", b"").await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let id = lower
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("the example filter's id echoed on the 101")
        .to_owned();
    assert!(
        lower.contains(&format!("x-upstream-saw-request-id: {id}")),
        "the upstream got the same id on its handshake: {head}"
    );
    assert_eq!(read_exact_within(&mut s, 2).await, b"hi");
    s.write_all(b"ping").await.unwrap();
    assert_eq!(read_exact_within(&mut s, 4).await, b"PING");
}

#[tokio::test]
async fn a_declined_upgrade_is_an_ordinary_response() {
    let weft = Weft::start(&filtered_and_plain(upstream().await));
    let mut s = TcpStream::connect(weft.addr("edge")).await.unwrap();
    // Not an upgrade the proxy passes on: `Upgrade` is not named in `Connection`, so the
    // upstream sees neither header and declines; the connection stays HTTP.
    s.write_all(b"GET /a HTTP/1.1\r\nhost: chat.test\r\nupgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    let len: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length: ").map(str::to_owned))
        .and_then(|v| v.trim().parse().ok())
        .expect("a length");
    let body = read_exact_within(&mut s, len).await;
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let upstream_head = echoed["head"].as_str().unwrap().to_ascii_lowercase();
    assert!(!upstream_head.contains("upgrade"), "{upstream_head}");

    // The same connection still carries HTTP.
    s.write_all(b"GET /b HTTP/1.1\r\nhost: chat.test\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
}
