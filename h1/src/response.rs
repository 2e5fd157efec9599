//! Reading an upstream's response head: parsed with `httparse`, its framing and reuse
//! decided, and its headers kept either as a header map (values are views of the
//! received bytes) or, when nothing on the way back reads them, as the lines the
//! upstream sent ([`RawHeaders`]).

use bytes::{Buf, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode, Version};

use crate::wire::{list_items, ConnectionSays, Framing, RawHeaders};

/// Most response headers accepted.
const MAX_HEADERS: usize = 128;

/// A response head the proxy cannot take (the upstream broke the protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidResponse(pub String);

impl std::fmt::Display for InvalidResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid response: {}", self.0)
    }
}

impl std::error::Error for InvalidResponse {}

type Fail = InvalidResponse;

/// What a response header is to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `Transfer-Encoding`: read for framing, never passed on.
    TransferEncoding,
    /// `Content-Length`: read for framing.
    ContentLength,
    /// `Connection`: read for reuse.
    Connection,
    /// `Keep-Alive`: never passed on.
    KeepAlive,
    /// `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`: connection-specific.
    OtherHop,
    /// `Date`.
    Date,
    /// Everything else.
    Other,
}

/// A header's role, from its name as received (any case), without allocating.
fn role(name: &[u8]) -> Role {
    let is = |s: &[u8]| name.eq_ignore_ascii_case(s);
    match name.len() {
        2 if is(b"te") => Role::OtherHop,
        4 if is(b"date") => Role::Date,
        7 if is(b"trailer") || is(b"upgrade") => Role::OtherHop,
        10 if is(b"connection") => Role::Connection,
        10 if is(b"keep-alive") => Role::KeepAlive,
        14 if is(b"content-length") => Role::ContentLength,
        16 if is(b"proxy-connection") => Role::OtherHop,
        17 if is(b"transfer-encoding") => Role::TransferEncoding,
        _ => Role::Other,
    }
}

/// A response's headers, as the proxy passes them on.
enum Kept {
    /// Header names with the offset and length of their values in the head.
    Map(Vec<(HeaderName, usize, usize)>),
    /// Lines to write as they are (see [`RawHeaders`]).
    Raw(RawHeaders),
}

/// The framing and reuse a response head states, and its headers to pass on.
struct Collected {
    kept: Kept,
    length: Option<u64>,
    chunked: bool,
    says: ConnectionSays,
}

/// Reads a parsed head's headers. With `raw`, they are kept as lines, connection-specific
/// ones left out, unless a `Connection` names other headers (which go with it, from a
/// header map).
fn collect(headers: &[httparse::Header<'_>], base: usize, raw: bool) -> Result<Collected, Fail> {
    let mut out = Collected {
        kept: if raw {
            Kept::Raw(RawHeaders {
                lines: Vec::with_capacity(256),
                dated: false,
            })
        } else {
            Kept::Map(Vec::with_capacity(headers.len()))
        },
        length: None,
        chunked: false,
        says: ConnectionSays::default(),
    };
    for h in headers {
        let role = role(h.name.as_bytes());
        match role {
            Role::TransferEncoding => {
                out.chunked = list_items(h.value)
                    .next_back()
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
                if !out.chunked {
                    return Err(bad("unsupported transfer-encoding"));
                }
                continue;
            }
            Role::ContentLength => {
                let n: u64 = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| bad("content-length"))?;
                if out.length.is_some_and(|l| l != n) {
                    return Err(bad("conflicting content-length"));
                }
                out.length = Some(n);
            }
            // Kept only when it names more than the proxy consumes here.
            Role::Connection if !out.says.read(h.value) => continue,
            Role::Connection if raw => return collect(headers, base, false),
            Role::KeepAlive => continue,
            _ => {}
        }
        match &mut out.kept {
            Kept::Raw(lines) => {
                // The proxy frames the body itself, from what it sends.
                if matches!(role, Role::ContentLength | Role::OtherHop) {
                    continue;
                }
                lines.dated |= role == Role::Date;
                lines.lines.extend_from_slice(h.name.as_bytes());
                lines.lines.extend_from_slice(b": ");
                lines.lines.extend_from_slice(h.value);
                lines.lines.extend_from_slice(b"\r\n");
            }
            Kept::Map(fields) => {
                let name =
                    HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("header name"))?;
                fields.push((name, h.value.as_ptr() as usize - base, h.value.len()));
            }
        }
    }
    Ok(out)
}

fn bad(what: &str) -> Fail {
    InvalidResponse(what.to_owned())
}

/// Parses a response head from the front of `buf`: `Ok(None)` until it is complete.
/// On success the head's bytes leave `buf`, and header values are views of them, not
/// copies. Returns the head as the proxy passes it on, how its body is framed, and
/// whether the connection may be reused. The version is the proxy's own (HTTP/1.1): the
/// upstream's only decides reuse.
///
/// What the proxy consumes here does not go on: `Transfer-Encoding` (the proxy frames
/// the body itself), `Keep-Alive`, and `Connection` values naming only `keep-alive` or
/// `close`. A `Connection` naming other headers stays, for `strip_hop_by_hop` to remove
/// them with it.
///
/// With `raw` (nothing on the way back reads the headers), a response with a body gets
/// its headers as [`RawHeaders`] in its extensions and an empty header map; they are
/// then already free of connection-specific headers and `Content-Length`.
pub fn parse_head(
    buf: &mut BytesMut,
    raw: bool,
) -> Result<Option<(http::response::Parts, Framing, bool)>, Fail> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(bad(&e.to_string())),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| bad("status"))?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let base = buf.as_ptr() as usize;
    // Heads without a body of their own (1xx, 204, 304) keep their headers in a map: the
    // writer decides what of their length to keep.
    let raw = raw
        && !(status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED);
    let collected = collect(resp.headers, base, raw)?;
    let framing = if collected.chunked {
        // Transfer-Encoding wins over Content-Length (RFC 9112 6.3).
        Framing::Chunked
    } else {
        match collected.length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    let reuse = collected.says.reusable(version);
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = Version::HTTP_11;
    match collected.kept {
        Kept::Raw(lines) => {
            buf.advance(len);
            parts.extensions.insert(lines);
        }
        Kept::Map(mut fields) => {
            if collected.chunked {
                fields.retain(|(name, ..)| name != http::header::CONTENT_LENGTH);
            }
            // The head's bytes become shared: every value below is a view into them.
            let bytes = buf.split_to(len).freeze();
            // Room for headers filters and the proxy add on the way back, without a rehash.
            let mut headers = HeaderMap::with_capacity(fields.len() + 4);
            for (name, at, n) in fields {
                // SAFETY: httparse admitted only the bytes a header value may hold (tab,
                // space, visible ASCII, obs-text), the set `HeaderValue::from_bytes` checks.
                let value =
                    unsafe { HeaderValue::from_maybe_shared_unchecked(bytes.slice(at..at + n)) };
                headers.append(name, value);
            }
            parts.headers = headers;
        }
    }
    Ok(Some((parts, framing, reuse)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_obs_folded_response_field_is_refused() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx-a: 1\r\n  folded\r\n\r\n"[..]);
        assert!(parse_head(&mut buf, false).is_err());
    }

    #[test]
    fn response_heads_decide_framing() {
        let parse = |raw: &[u8]| {
            let mut buf = BytesMut::from(raw);
            parse_head(&mut buf, false).map(|head| {
                let (p, f, _) = head.expect("a whole head");
                (p.status.as_u16(), f)
            })
        };
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n").unwrap(),
            (200, Framing::Length(3))
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n")
                .unwrap(),
            (200, Framing::Chunked)
        );
        assert_eq!(
            parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap(),
            (200, Framing::Close)
        );
        assert!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n").is_err()
        );
        assert!(parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n").is_err());
    }

    #[test]
    fn what_the_proxy_consumes_does_not_go_on() {
        let parse = |raw: &[u8]| {
            let mut buf = BytesMut::from(raw);
            let (p, _, reuse) = parse_head(&mut buf, false).unwrap().unwrap();
            assert!(buf.is_empty());
            let names: Vec<String> = p.headers.keys().map(|k| k.to_string()).collect();
            (names, reuse)
        };
        let (names, reuse) = parse(
            b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!((names, reuse), (vec!["server".to_owned()], true));
        let (names, reuse) =
            parse(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
        assert_eq!((names, reuse), (vec!["content-length".to_owned()], false));
        assert!(!parse(b"HTTP/1.0 200 OK\r\n\r\n").1);
        assert!(parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n").1);
        // A Connection naming another header stays, for strip_hop_by_hop.
        let (names, reuse) = parse(b"HTTP/1.1 200 OK\r\nConnection: x-a, close\r\nx-a: 1\r\n\r\n");
        assert_eq!(
            (names, reuse),
            (vec!["connection".to_owned(), "x-a".to_owned()], false)
        );
        // Values are the received bytes.
        let mut buf = BytesMut::from(&b"HTTP/1.1 204 No Content\r\nx-b:  v 1 \r\n\r\nrest"[..]);
        let (p, framing, _) = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(p.headers["x-b"], "v 1");
        assert_eq!(framing, Framing::Close);
        assert_eq!(&buf[..], b"rest");
    }

    #[test]
    fn raw_heads_keep_the_upstream_lines_less_what_the_proxy_frames() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nServer: up\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
               Content-Length: 2\r\nSet-Cookie: a=1\r\nTE: trailers\r\nProxy-Connection: x\r\n\
               Upgrade: h2c\r\nTrailer: x-t\r\nset-cookie:  b=2 \r\nDate: Mon, 30 Nov 2026 12:00:00 GMT\r\n\r\nok"[..],
        );
        let (p, framing, reuse) = parse_head(&mut buf, true).unwrap().unwrap();
        assert_eq!((framing, reuse), (Framing::Length(2), true));
        assert!(p.headers.is_empty(), "no header map is built");
        let raw = p.extensions.get::<RawHeaders>().expect("raw lines");
        assert_eq!(
            String::from_utf8_lossy(&raw.lines),
            "Server: up\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nDate: Mon, 30 Nov 2026 12:00:00 GMT\r\n"
        );
        assert!(raw.dated);
        assert_eq!(
            &buf[..],
            b"ok",
            "the head left the buffer, the body did not"
        );

        // A Connection naming another header needs the map (both go, later).
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nConnection: x-a\r\nx-a: 1\r\nx-b: 2\r\n\r\n"[..]);
        let (p, framing, _) = parse_head(&mut buf, true).unwrap().unwrap();
        assert!(p.extensions.get::<RawHeaders>().is_none());
        assert_eq!(p.headers.len(), 3);
        assert_eq!(framing, Framing::Close);

        // Heads without a body of their own keep a map (the writer decides on length).
        for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
            let head = format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\nx-c: 3\r\n\r\n");
            let mut buf = BytesMut::from(head.as_bytes());
            let (p, _, _) = parse_head(&mut buf, true).unwrap().unwrap();
            assert!(p.extensions.get::<RawHeaders>().is_none(), "{status}");
            assert_eq!(p.headers["x-c"], "3");
        }

        // The same errors as with a map.
        for bad in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
        ] {
            assert!(parse_head(&mut BytesMut::from(bad), true).is_err());
        }
    }
}
