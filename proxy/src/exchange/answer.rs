//! The one place a [`ProxyError`] becomes the response a client sees.
//!
//! A response made here carries `x-weft-error` naming the cause, as linkerd's
//! `l5d-proxy-error` does, so an operator can tell the proxy's answers from the
//! upstream's; the status and the code come from the error, the body is one line of
//! text saying what happened.

use bytes::Bytes;
use http::{HeaderValue, Response};

use crate::body::ProxyBody;
use crate::error::ProxyError;

/// The response the client sees for `e`: its status, `x-weft-error` with its code,
/// and a one-line plain-text body. Errors after which the connection cannot carry on
/// (a malformed head, a removed listener) also say `Connection: close`.
pub fn error_response(e: &ProxyError) -> Response<ProxyBody> {
    let body = format!("{e}\n");
    let mut resp = Response::new(ProxyBody::full(Bytes::from(body)));
    *resp.status_mut() = e.status();
    let headers = resp.headers_mut();
    if matches!(
        e,
        ProxyError::ListenerRemoved(_) | ProxyError::Malformed { .. }
    ) {
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-weft-error", HeaderValue::from_static(e.code()));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Source, UpstreamFailure};

    #[test]
    fn responses_name_their_cause() {
        let e = ProxyError::Upstream {
            failure: UpstreamFailure::ConnectFailure,
            detail: "refused".into(),
        };
        let resp = error_response(&e);
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()["x-weft-error"], "connect-failure");
        assert_eq!(e.source_of(), Source::Upstream);
        let e = ProxyError::NoRoute {
            authority: "a".into(),
            path: "/".into(),
        };
        assert_eq!(error_response(&e).status(), 404);
        assert_eq!(e.source_of(), Source::Config);
    }
}
