//! What RFC 9110 asks of an intermediary besides dropping hop-by-hop headers:
//! `Max-Forwards` on `TRACE` and `OPTIONS` (section 7.6.2), and `Via` (section 7.6.3)
//! when the listener names itself (`via:`; none by default, as Envoy).

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_TYPE, VIA};
use http::{Method, Response, StatusCode, Version};

use crate::body::ProxyBody;

const MAX_FORWARDS: http::HeaderName = http::HeaderName::from_static("max-forwards");

/// Methods weft forwards, for the `Allow` of an `OPTIONS` it answers itself.
const ALLOWED: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH";

/// Fields a `TRACE` answered here does not reflect (credentials a browser might have
/// added).
const NOT_REFLECTED: [http::HeaderName; 3] = [
    http::header::AUTHORIZATION,
    http::header::COOKIE,
    http::header::PROXY_AUTHORIZATION,
];

/// `Max-Forwards` on a `TRACE` or `OPTIONS`: at 0 the proxy is the final recipient and
/// answers (an `OPTIONS` with what it forwards, a `TRACE` with the request as it came,
/// credentials left out); above 0 it is decremented. Other methods, and requests
/// without the field or with an unreadable one, are untouched.
pub fn max_forwards(parts: &mut http::request::Parts) -> Option<Response<ProxyBody>> {
    if parts.method != Method::OPTIONS && parts.method != Method::TRACE {
        return None;
    }
    let left: u64 = parts
        .headers
        .get(MAX_FORWARDS)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if left > 0 {
        parts
            .headers
            .insert(MAX_FORWARDS, HeaderValue::from(left - 1));
        return None;
    }
    let mut resp = if parts.method == Method::OPTIONS {
        let mut r = Response::new(ProxyBody::Empty);
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(ALLOWED));
        r
    } else {
        let mut r = Response::new(ProxyBody::full(Bytes::from(reflect(parts))));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("message/http"));
        r
    };
    *resp.status_mut() = StatusCode::OK;
    Some(resp)
}

/// A `TRACE` request as HTTP/1.1 would carry it.
fn reflect(parts: &http::request::Parts) -> String {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = format!("TRACE {target} HTTP/1.1\r\n");
    if let Some(a) = parts.uri.authority() {
        if !parts.headers.contains_key(http::header::HOST) {
            out.push_str(&format!("host: {a}\r\n"));
        }
    }
    for (name, value) in &parts.headers {
        if NOT_REFLECTED.contains(name) {
            continue;
        }
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out
}

/// Appends this hop to `Via`: the protocol the message came in (`1.1`, `2`, `3`) and the
/// listener's pseudonym.
pub fn add_via(headers: &mut HeaderMap, version: Version, name: &str) {
    let protocol = match version {
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{protocol} {name}")) {
        headers.append(VIA, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri("/x?y=1");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn max_forwards_is_decremented_or_answered_at_zero() {
        let mut p = parts("OPTIONS", &[("max-forwards", "3")]);
        assert!(max_forwards(&mut p).is_none());
        assert_eq!(p.headers["max-forwards"], "2");

        let mut p = parts("OPTIONS", &[("max-forwards", "0")]);
        let r = max_forwards(&mut p).expect("answered here");
        assert_eq!(r.status(), 200);
        assert!(r.headers()["allow"].to_str().unwrap().contains("TRACE"));

        let mut p = parts(
            "TRACE",
            &[("max-forwards", "0"), ("x-a", "1"), ("cookie", "secret")],
        );
        let r = max_forwards(&mut p).expect("answered here");
        assert_eq!(r.headers()["content-type"], "message/http");

        // Other methods are left alone.
        let mut p = parts("GET", &[("max-forwards", "0")]);
        assert!(max_forwards(&mut p).is_none());
        assert_eq!(p.headers["max-forwards"], "0");
    }

    #[test]
    fn a_trace_reflects_the_request_but_not_its_credentials() {
        let p = parts(
            "TRACE",
            &[
                ("host", "a"),
                ("x-a", "1"),
                ("authorization", "Bearer t"),
                ("cookie", "s=1"),
            ],
        );
        let text = reflect(&p);
        assert!(text.starts_with("TRACE /x?y=1 HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("x-a: 1\r\n"));
        assert!(!text.contains("Bearer") && !text.contains("s=1"), "{text}");
    }

    #[test]
    fn via_names_the_protocol_and_the_hop() {
        let mut h = HeaderMap::new();
        h.append(VIA, HeaderValue::from_static("1.1 edge"));
        add_via(&mut h, Version::HTTP_2, "weft");
        let all: Vec<_> = h.get_all(VIA).iter().collect();
        assert_eq!(all, ["1.1 edge", "2 weft"]);
    }
}
