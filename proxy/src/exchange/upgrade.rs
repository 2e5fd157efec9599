//! Which requests are protocol upgrades (WebSocket and the like) that the proxy passes
//! through: the exchange asks the upstream for the upgrade, and on a 101 the client's
//! connection becomes a tunnel (`server::tunnel`).

use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderValue, Method, Version};

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
