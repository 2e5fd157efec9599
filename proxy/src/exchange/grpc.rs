//! gRPC at the exchange's edges. A request is gRPC when it comes over HTTP/2 or HTTP/3
//! with a `content-type` of `application/grpc` (or `application/grpc+proto` and the
//! like). For such a request:
//!
//! - `grpc-timeout` (the client's deadline) shortens the route's timeout;
//! - a response the proxy makes (an error, or a filter's local answer that is not
//!   already gRPC) is turned into gRPC's trailers-only form: HTTP 200 with
//!   `content-type: application/grpc`, `grpc-status` mapped from the cause as gRPC's
//!   HTTP mapping (and Envoy) do, and `grpc-message` (percent-encoded), so that the
//!   client sees a gRPC status instead of a bare HTTP error.

use std::time::Duration;

use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::body::ProxyBody;

/// Marks a response a filter answered locally (in its extensions).
#[derive(Debug, Clone, Copy)]
pub struct LocalReply;

/// Whether the request is gRPC (HTTP/2 or later, gRPC's content type).
pub fn is_grpc(parts: &http::request::Parts) -> bool {
    parts.version >= http::Version::HTTP_2
        && parts
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The client's deadline from `grpc-timeout` (`TimeoutValue TimeoutUnit`: at most
/// eight digits and one of `H M S m u n`); `None` when absent or malformed.
pub fn timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.as_bytes();
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// gRPC status codes used here.
pub mod code {
    /// Unknown.
    pub const UNKNOWN: u32 = 2;
    /// The deadline passed.
    pub const DEADLINE_EXCEEDED: u32 = 4;
    /// Not allowed.
    pub const PERMISSION_DENIED: u32 = 7;
    /// Out of some resource.
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    /// No such method.
    pub const UNIMPLEMENTED: u32 = 12;
    /// Internal error.
    pub const INTERNAL: u32 = 13;
    /// Try again later.
    pub const UNAVAILABLE: u32 = 14;
    /// No valid credentials.
    pub const UNAUTHENTICATED: u32 = 16;
}

/// The gRPC status for a response the proxy made: its `x-weft-error` cause when it has
/// one (a timeout is `DEADLINE_EXCEEDED`, an unreachable or overloaded upstream
/// `UNAVAILABLE`), else its HTTP status by gRPC's mapping.
pub fn status_for(status: StatusCode, cause: Option<&str>) -> u32 {
    match cause {
        Some("timeout" | "connect-timeout") => return code::DEADLINE_EXCEEDED,
        Some(
            "connect-failure" | "reset" | "protocol-error" | "no-endpoints" | "overflow"
            | "unknown-cluster",
        ) => return code::UNAVAILABLE,
        _ => {}
    }
    match status.as_u16() {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        408 => code::DEADLINE_EXCEEDED,
        413 | 431 => code::RESOURCE_EXHAUSTED,
        429 | 502 | 503 | 504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// Whether `resp`, answering a gRPC request, is one the proxy made and must turn into
/// a gRPC status: an error (`x-weft-error`) or a filter's local answer, not already
/// carrying `grpc-status`.
pub fn needs_answer(resp: &Response<ProxyBody>) -> bool {
    (resp.headers().contains_key("x-weft-error") || resp.extensions().get::<LocalReply>().is_some())
        && !resp.headers().contains_key("grpc-status")
        && !(resp.status() == StatusCode::OK
            && resp
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc")))
}

/// Turns `resp` into gRPC's trailers-only form (see the module's description); its
/// text body becomes `grpc-message`.
pub fn answer(resp: &mut Response<ProxyBody>) {
    let cause = resp
        .headers()
        .get("x-weft-error")
        .and_then(|v| v.to_str().ok());
    let code = status_for(resp.status(), cause);
    let message = match resp.body() {
        ProxyBody::Full(Some(b)) => {
            let text = String::from_utf8_lossy(b);
            let line = text.lines().next().unwrap_or("").trim();
            percent_encode(&line[..floor_char(line, 1024)])
        }
        _ => String::new(),
    };
    let fallback = resp.status().canonical_reason().unwrap_or("").to_owned();
    *resp.status_mut() = StatusCode::OK;
    *resp.body_mut() = ProxyBody::Empty;
    let h = resp.headers_mut();
    h.remove(CONTENT_LENGTH);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    let message = if message.is_empty() {
        percent_encode(&fallback)
    } else {
        message
    };
    if let Ok(v) = HeaderValue::from_str(&message) {
        h.insert("grpc-message", v);
    }
}

/// The largest char boundary of `s` at or below `n`.
fn floor_char(s: &str, n: usize) -> usize {
    let mut n = n.min(s.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_refuse_nonsense() {
        let t = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            timeout(&h)
        };
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        assert_eq!(t("123456789m"), None, "nine digits");
        assert_eq!(t("10x"), None);
        assert_eq!(t("m"), None);
        assert_eq!(t("-1S"), None);
    }

    #[test]
    fn proxy_errors_become_trailers_only_grpc_statuses() {
        let e = crate::error::ProxyError::Upstream {
            failure: crate::error::UpstreamFailure::Timeout,
            detail: "no response head within 100ms".into(),
        };
        let mut r = super::super::answer::error_response(&e);
        assert!(needs_answer(&r));
        answer(&mut r);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "4");
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert!(r.headers()["grpc-message"]
            .to_str()
            .unwrap()
            .contains("timeout"));
        assert!(matches!(r.body(), ProxyBody::Empty));
        assert!(!needs_answer(&r), "once only");
        assert_eq!(
            status_for(StatusCode::FORBIDDEN, None),
            code::PERMISSION_DENIED
        );
        assert_eq!(status_for(StatusCode::NOT_FOUND, None), code::UNIMPLEMENTED);
        assert_eq!(percent_encode("50% ü"), "50%25 %C3%BC");
    }
}
