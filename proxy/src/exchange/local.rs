//! Local responses: a filter's answer made into a response head, and a proxy error
//! made into a filter-style answer for the paths that hand responses over as values.

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;

use super::answer::error_response;
use crate::error::ProxyError;
use crate::host::{LocalResponse, ResponseCtx};

/// Headers a local response may not set: the proxy frames the message itself.
const FRAMING: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

/// Replaces a response head with a filter's local response head.
pub fn replace_head(resp: &mut ResponseCtx, local: &LocalResponse) {
    resp.head.status =
        StatusCode::from_u16(local.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.head.headers.clear();
    for (k, v) in &local.headers {
        if FRAMING.contains(&k.to_ascii_lowercase().as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            resp.head.headers.append(name, value);
        }
    }
    resp.upstream_failure = None;
}

/// A proxy error as a local response (for paths that hand responses over as values).
pub fn from_error(e: &ProxyError) -> LocalResponse {
    let resp = error_response(e);
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    LocalResponse {
        status: resp.status().as_u16(),
        headers,
        body: format!("{e}\n").into_bytes(),
    }
}
