//! Header handling at the proxy's edges: what a hop may not carry on (RFC 9110 section
//! 7.6.1), and what the proxy adds for the upstream.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Connection-specific headers, never forwarded (the list [`is_hop_by_hop`] checks).
#[cfg(test)]
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name` is a connection-specific header: `connection`, `keep-alive`,
/// `proxy-connection`, `te`, `trailer`, `transfer-encoding`, `upgrade`.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

/// Removes hop-by-hop headers, including those the `Connection` header names. One scan
/// decides whether there is anything to remove: ordinary messages have none.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    // Remove only what is there (usually just `connection`): each removal hashes.
    // `keys` yields each name once.
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k) || named.contains(k))
        .cloned()
        .collect();
    for name in &present {
        headers.remove(name);
    }
}

/// Prepares a client's request headers for the upstream: hop-by-hop headers go,
/// `Host` moves to the authority, `Expect` is answered here, and the client's address
/// (`client_ip`, made once per connection) is appended to `X-Forwarded-For` with
/// `X-Forwarded-Proto` set if absent.
pub fn for_upstream(headers: &mut HeaderMap, client_ip: &HeaderValue, scheme: &'static str) {
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    headers.remove(header::EXPECT);
    let xff = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&xff) {
        None => Some(client_ip.clone()),
        Some(prior) => {
            let mut joined = Vec::with_capacity(prior.len() + 2 + client_ip.len());
            joined.extend_from_slice(prior.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client_ip.as_bytes());
            HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)).ok()
        }
    };
    if let Some(v) = value {
        headers.insert(xff, v);
    }
    headers
        .entry(HeaderName::from_static("x-forwarded-proto"))
        .or_insert(HeaderValue::from_static(scheme));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn the_quick_check_agrees_with_the_list() {
        for name in HOP_BY_HOP.iter() {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in ["host", "x-keep", "content-length", "keep-alives"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn forwarding_headers_are_added() {
        let mut h = HeaderMap::new();
        h.insert("host", "a".parse().unwrap());
        h.insert("x-forwarded-for", "10.0.0.1".parse().unwrap());
        for_upstream(&mut h, &HeaderValue::from_static("192.0.2.7"), "http");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("host"));
    }
}
