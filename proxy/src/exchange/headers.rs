//! Header handling at the proxy's edges: what a hop may not carry on (RFC 9110 section
//! 7.6.1), and what the proxy adds for the upstream.

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

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

/// The connection-specific headers other than `Connection`, with their bits in the set
/// [`hop_bit`] makes.
const OTHER_HOPS: [(u8, HeaderName); 6] = [
    (1 << 1, HeaderName::from_static("keep-alive")),
    (1 << 2, HeaderName::from_static("proxy-connection")),
    (1 << 3, header::TE),
    (1 << 4, header::TRAILER),
    (1 << 5, header::TRANSFER_ENCODING),
    (1 << 6, header::UPGRADE),
];
/// `Connection`'s bit.
const CONNECTION_BIT: u8 = 1;

/// The bit of a connection-specific header (`connection`, `keep-alive`,
/// `proxy-connection`, `te`, `trailer`, `transfer-encoding`, `upgrade`), or 0.
fn hop_bit(name: &HeaderName) -> u8 {
    if name == header::CONNECTION {
        return CONNECTION_BIT;
    }
    OTHER_HOPS
        .iter()
        .find(|(_, hop)| hop == name)
        .map_or(0, |(bit, _)| *bit)
}

#[cfg(test)]
fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_bit(name) != 0
}

/// Removes hop-by-hop headers, including those the `Connection` header names. One scan
/// of the names decides what to remove; nothing is allocated unless `Connection` names
/// a header outside the standard list (`Connection: keep-alive` or `close` names none).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, false)
}

/// The bit of `te` in [`hop_bit`]'s set.
const TE_BIT: u8 = 1 << 3;

fn strip(headers: &mut HeaderMap, keep_te_trailers: bool) {
    let present = headers.keys().fold(0, |set, name| set | hop_bit(name));
    if present == 0 {
        return;
    }
    // `TE: trailers` says the client takes trailers: gRPC requires it end to end, and
    // it is the one `TE` HTTP/2 allows (RFC 9113 section 8.2.2), so it passes on.
    let te_trailers = keep_te_trailers
        && present & TE_BIT != 0
        && headers.get_all(header::TE).iter().any(|v| {
            weft_h1::wire::list_items(v.as_bytes()).any(|t| {
                let name = t.split(|b| *b == b';').next().unwrap_or(t);
                name.trim_ascii().eq_ignore_ascii_case(b"trailers")
            })
        });
    let mut named: Vec<HeaderName> = Vec::new();
    if present & CONNECTION_BIT != 0 {
        for value in headers.get_all(header::CONNECTION) {
            for token in weft_h1::wire::list_items(value.as_bytes()) {
                if token.eq_ignore_ascii_case(b"close") || token.eq_ignore_ascii_case(b"keep-alive")
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token) {
                    if hop_bit(&name) == 0 && !named.contains(&name) {
                        named.push(name);
                    }
                }
            }
        }
        headers.remove(header::CONNECTION);
    }
    for (bit, name) in &OTHER_HOPS {
        if present & bit != 0 {
            headers.remove(name);
        }
    }
    for name in &named {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Prepares a client's request headers for the upstream: hop-by-hop headers go,
/// `Host` moves to the authority, `Expect` is answered here (unless `keep_expect`: the
/// upstream's `100 Continue` is relayed), and the client's address
/// (`client_ip`, made once per connection) is appended to `X-Forwarded-For` with
/// `X-Forwarded-Proto` set if absent.
pub fn for_upstream(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    scheme: &'static str,
    keep_expect: bool,
) {
    strip(headers, true);
    headers.remove(header::HOST);
    if !keep_expect {
        headers.remove(header::EXPECT);
    }
    // One lookup each (`entry`), not a lookup and then an insert.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(e) => {
            e.insert(client_ip.clone());
        }
        Entry::Occupied(mut e) => {
            let prior = e.get();
            let mut joined = Vec::with_capacity(prior.len() + 2 + client_ip.len());
            joined.extend_from_slice(prior.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
                e.insert(v);
            }
        }
    }
    if let Entry::Vacant(e) = headers.entry(X_FORWARDED_PROTO) {
        e.insert(match scheme {
            "https" => HTTPS,
            "http" => HTTP,
            other => HeaderValue::from_static(other),
        });
    }
}

/// Joins separate `cookie` fields into one, with `"; "` (RFC 9113 section 8.2.3): an
/// HTTP/2 or HTTP/3 client may split its cookies into one field each, which an
/// HTTP/1.1 application would read as a single cookie (joined with `,`). Nothing is
/// allocated unless there are several.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut all = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (all.next(), all.next()) else {
        return;
    };
    let mut joined = Vec::with_capacity(first.len() * 3);
    for (i, v) in headers.get_all(header::COOKIE).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
        headers.insert(header::COOKIE, v);
    }
}

// Made at compile time (`from_static` outside a constant checks its input at each call).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const HTTP: HeaderValue = HeaderValue::from_static("http");
const HTTPS: HeaderValue = HeaderValue::from_static("https");

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

        let mut h = HeaderMap::new();
        h.append("connection", "Keep-Alive".parse().unwrap());
        h.append("connection", " ,X-One ,upgrade".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("x-one", "1".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-keep"]);
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
        for_upstream(
            &mut h,
            &HeaderValue::from_static("192.0.2.7"),
            "http",
            false,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("host"));
    }

    #[test]
    fn te_trailers_alone_goes_upstream() {
        let ip = HeaderValue::from_static("192.0.2.7");
        for (given, kept) in [
            ("trailers", true),
            ("gzip, Trailers", true),
            ("trailers;q=0.5", true),
            ("gzip", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert("te", given.parse().unwrap());
            h.insert("connection", "te".parse().unwrap());
            for_upstream(&mut h, &ip, "http", false);
            assert_eq!(
                h.get("te").map(|v| v.to_str().unwrap()),
                kept.then_some("trailers"),
                "{given}"
            );
            assert!(!h.contains_key("connection"));
        }
    }

    #[test]
    fn separate_cookie_fields_are_joined_with_semicolons() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("session=abc"));
        h.append(header::COOKIE, HeaderValue::from_static("csrf=xyz"));
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["session=abc; csrf=xyz; a=1; b=2"]);
        let mut one = HeaderMap::new();
        one.insert(header::COOKIE, HeaderValue::from_static("x=1"));
        join_cookies(&mut one);
        assert_eq!(one[header::COOKIE], "x=1");
    }
}
