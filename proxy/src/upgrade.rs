//! HTTP/1.1 protocol upgrades (WebSocket and the like), passed through as Envoy and
//! Linkerd do.
//!
//! A client's `Connection: upgrade` + `Upgrade: <protocol>` request, without a body, is
//! routed and filtered like any other; the upgrade is then asked of the upstream on a
//! connection of its own. When the upstream answers 101 Switching Protocols, the
//! upstream connection travels with the response (an [`Upgraded`] extension) to the
//! client's connection, which writes the 101 and from then on copies bytes both ways
//! ([`tunnel`]) until both sides have closed or the worker stops. Any other answer is
//! an ordinary response, and the connections stay HTTP.

use std::sync::Arc;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderValue, Method, Version};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The protocol a request asks to switch to, if it is an upgrade the proxy passes on:
/// HTTP/1.1, `Upgrade` named in `Connection`, and no request body (the upgrade would
/// otherwise start after a body the proxy streams).
pub fn requested(parts: &http::request::Parts) -> Option<HeaderValue> {
    if parts.version != Version::HTTP_11 || parts.method == Method::CONNECT {
        return None;
    }
    let h = &parts.headers;
    let protocol = h.get(UPGRADE)?;
    let named = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let bodiless = !h.contains_key(TRANSFER_ENCODING)
        && h.get(CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0");
    (named && bodiless).then(|| protocol.clone())
}

/// The upstream side of an accepted upgrade, carried by the 101 response to the
/// client's connection. Taken once.
#[derive(Clone)]
pub struct Upgraded(Arc<Mutex<Option<UpstreamSide>>>);

/// The upstream connection after its 101, with what it sent past the head.
pub struct UpstreamSide {
    /// The connection.
    pub stream: TcpStream,
    /// Bytes of the new protocol already read with the 101.
    pub early: BytesMut,
    /// The protocol the upstream switched to (its `Upgrade` header).
    pub protocol: HeaderValue,
}

impl Upgraded {
    /// Wraps the upstream side.
    pub fn new(side: UpstreamSide) -> Upgraded {
        Upgraded(Arc::new(Mutex::new(Some(side))))
    }

    /// Takes the upstream side (once).
    pub fn take(&self) -> Option<UpstreamSide> {
        self.0.lock().take()
    }
}

/// Copies bytes both ways between the client and the upstream, after first passing on
/// what each sent early, until both directions have ended (each end's close is passed
/// to the other as a half-close) or `stop` completes. Returns the bytes copied
/// (client to upstream, upstream to client).
pub async fn tunnel(
    mut client: TcpStream,
    client_early: BytesMut,
    side: UpstreamSide,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<(u64, u64)> {
    let UpstreamSide {
        stream: mut upstream,
        early,
        ..
    } = side;
    upstream.write_all(&client_early).await?;
    client.write_all(&early).await?;
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::select! {
        r = copy => r.map(|(up, down)| (up + client_early.len() as u64, down + early.len() as u64)),
        () = stop => Ok((0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::request::Builder) -> http::request::Parts {
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_bodiless_http11_upgrades_named_in_connection() {
        let ws = || {
            http::Request::get("/chat")
                .header("upgrade", "websocket")
                .header("connection", "keep-alive, Upgrade")
        };
        assert_eq!(requested(&parts(ws())).unwrap(), "websocket");
        assert!(requested(&parts(ws().version(Version::HTTP_10))).is_none());
        assert!(requested(&parts(ws().header("content-length", "5"))).is_none());
        assert!(requested(&parts(ws().header("transfer-encoding", "chunked"))).is_none());
        let unnamed = http::Request::get("/").header("upgrade", "websocket");
        assert!(requested(&parts(unnamed)).is_none());
        let no_protocol = http::Request::get("/").header("connection", "upgrade");
        assert!(requested(&parts(no_protocol)).is_none());
    }
}
