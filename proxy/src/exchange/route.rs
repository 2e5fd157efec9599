//! Where a request is going: its authority and the host routes match on.

use std::borrow::Cow;

use http::HeaderMap;

use crate::error::ProxyError;

/// Where a request is going: its authority as received (the target's in absolute form
/// and HTTP/2, else `Host`; empty when there is neither) and the host routes match on
/// (lower-cased, without the port). Reads `Host` once for both.
pub fn destination<'a>(
    uri: &'a http::Uri,
    headers: &'a HeaderMap,
) -> Result<(&'a str, Cow<'a, str>), ProxyError> {
    if let Some(a) = uri.authority() {
        return Ok((a.as_str(), lower(a.host())));
    }
    let authority = headers
        .get(http::header::HOST)
        .map(|h| h.to_str())
        .transpose()
        .map_err(|_| ProxyError::BadRequest("the Host header is not text".into()))?
        .unwrap_or_default();
    Ok((authority, lower(strip_port(authority))))
}

/// `raw`, lower-cased only if it has to be.
fn lower(raw: &str) -> Cow<'_, str> {
    if raw.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(raw.to_ascii_lowercase())
    } else {
        Cow::Borrowed(raw)
    }
}

fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.bytes().rposition(|b| b == b':') {
        Some(at)
            if authority.as_bytes()[at + 1..]
                .iter()
                .all(u8::is_ascii_digit) =>
        {
            &authority[..at]
        }
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_comes_from_authority_or_host_header() {
        let mut h = HeaderMap::new();
        h.insert("host", "Example.COM:8080".parse().unwrap());
        let host = |uri: &str, h: &HeaderMap| {
            let uri: http::Uri = uri.parse().unwrap();
            destination(&uri, h).unwrap().1.into_owned()
        };
        assert_eq!(host("/x", &h), "example.com");
        assert_eq!(host("http://a.b:1/x", &h), "a.b");
        h.insert("host", "[::1]:80".parse().unwrap());
        assert_eq!(host("/x", &h), "::1");
    }
}
