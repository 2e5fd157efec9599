//! Reading a request head: parsed with `httparse`, header values sliced from the
//! received bytes without copying, and the body's framing decided as RFC 9112
//! section 6 says, refusing what could smuggle a second request past the proxy.

use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING,
};
use http::{HeaderMap, Method, Uri, Version};

use crate::wire::{ConnectionSays, Framing};

/// Most request headers accepted.
pub const MAX_HEADERS: usize = 128;

/// A request head as the exchange gets it, and what the connection needs to know.
pub struct Head {
    /// Method, target, version and headers.
    pub parts: http::request::Parts,
    /// How the body is delimited (never `Close` for a request).
    pub framing: Framing,
    /// Whether the client lets the connection be reused.
    pub keep_alive: bool,
    /// Whether the client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
}

/// Why a head was refused: the status to answer with and what was wrong.
#[derive(Debug)]
pub struct Refused {
    /// 400, 431 or 501.
    pub status: http::StatusCode,
    /// For the response body and the log.
    pub reason: String,
}

fn bad(reason: impl Into<String>) -> Refused {
    Refused {
        status: http::StatusCode::BAD_REQUEST,
        reason: reason.into(),
    }
}

/// Parses a head from the front of `buf`. `Ok(None)`: it is not complete yet (the
/// caller reads more, up to its limit). On success the head's bytes leave `buf`.
pub fn parse(buf: &mut BytesMut) -> Result<Option<Head>, Refused> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refused {
                status: http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason: format!("more than {MAX_HEADERS} header fields"),
            })
        }
        Err(e) => return Err(bad(format!("malformed request head: {e}"))),
    };
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| bad("invalid method"))?;
    // What follows a CONNECT is another protocol's bytes: the connection ends with the
    // refusal, rather than reading them as the next request.
    if method == Method::CONNECT {
        return Err(Refused {
            status: http::StatusCode::NOT_IMPLEMENTED,
            reason: "CONNECT is not supported".into(),
        });
    }
    let target = span(req.path.unwrap_or_default().as_bytes());
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut fields: Vec<(HeaderName, (usize, usize))> = Vec::with_capacity(req.headers.len());
    // What the connection needs is read in the same pass (standard names compare as
    // integers), not looked up in the map afterwards.
    let mut says = ConnectionSays::default();
    let mut expect_continue = false;
    let mut framed = false;
    let mut hosts = 0;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| bad(format!("invalid header name {:?}", h.name)))?;
        if name == CONNECTION {
            says.read(h.value);
        } else if name == EXPECT {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        } else if name == TRANSFER_ENCODING || name == CONTENT_LENGTH {
            framed = true;
        } else if name == HOST {
            hosts += 1;
        }
        fields.push((name, span(h.value)));
    }
    // RFC 9112 section 3.2: a request with more than one Host gets 400 (which one a
    // route and an upstream would read is anyone's guess).
    if hosts > 1 {
        return Err(bad("more than one Host header"));
    }
    let framing = if framed {
        framing(version, &fields, &buf[..len])?
    } else {
        Framing::Empty
    };
    let keep_alive = says.reusable(version);
    let expect_continue = expect_continue && version == Version::HTTP_11;
    // The head's bytes become shared: every value below is a view into them.
    let bytes: Bytes = buf.split_to(len).freeze();
    let slice = |(at, n): (usize, usize)| bytes.slice(at..at + n);

    let uri = Uri::from_maybe_shared(slice(target)).map_err(|_| bad("invalid request target"))?;
    // Room for what the proxy (X-Forwarded-For, -Proto) and filters add, so adding them
    // does not rehash the map.
    let mut headers = HeaderMap::with_capacity(fields.len() + 6);
    for (name, value) in fields {
        // SAFETY: httparse admitted only the bytes a header value may hold (tab, space,
        // visible ASCII, obs-text), the set `HeaderValue::from_bytes` checks.
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(slice(value)) };
        headers.append(name, value);
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(Head {
        parts,
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// The request body's framing (RFC 9112 section 6.3). A message with both
/// `Transfer-Encoding` and `Content-Length`, with differing lengths, or with a transfer
/// coding other than a final `chunked` is refused: a proxy that guessed would read a
/// different request boundary than the upstream behind it.
fn framing(
    version: Version,
    fields: &[(HeaderName, (usize, usize))],
    head: &[u8],
) -> Result<Framing, Refused> {
    let values = |name: HeaderName| {
        fields
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, (at, n))| &head[*at..*at + *n])
    };
    let mut te = values(TRANSFER_ENCODING).peekable();
    if te.peek().is_some() {
        if version == Version::HTTP_10 {
            return Err(bad("transfer-encoding in an HTTP/1.0 request"));
        }
        if values(CONTENT_LENGTH).next().is_some() {
            return Err(bad("both transfer-encoding and content-length"));
        }
        let mut last_chunked = false;
        let mut other = false;
        for value in te {
            let text = std::str::from_utf8(value).map_err(|_| bad("invalid transfer-encoding"))?;
            for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if last_chunked {
                    return Err(bad("chunked is not the last transfer coding"));
                }
                last_chunked = coding.eq_ignore_ascii_case("chunked");
                other |= !last_chunked;
            }
        }
        // `gzip, chunked` is framed by its chunks, but the proxy would pass the body on
        // without its coding: refused, as any coding but `chunked`.
        if !last_chunked || other {
            return Err(Refused {
                status: http::StatusCode::NOT_IMPLEMENTED,
                reason: "transfer codings other than chunked are not supported".into(),
            });
        }
        return Ok(Framing::Chunked);
    }
    let mut length: Option<u64> = None;
    for value in values(CONTENT_LENGTH) {
        let text = std::str::from_utf8(value).map_err(|_| bad("invalid content-length"))?;
        for item in text.split(',').map(str::trim) {
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("invalid content-length"));
            }
            let n: u64 = item.parse().map_err(|_| bad("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting content-length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(raw: &str) -> Result<Option<Head>, Refused> {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse(&mut buf)
    }

    #[test]
    fn a_head_parses_and_leaves_the_rest() {
        let mut buf = BytesMut::from(
            &b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET"[..],
        );
        let head = parse(&mut buf).unwrap().unwrap();
        assert_eq!(head.parts.method, Method::POST);
        assert_eq!(head.parts.uri, "/a?b=1");
        assert_eq!(head.parts.headers["host"], "x");
        assert_eq!(head.framing, Framing::Length(3));
        assert!(head.keep_alive);
        assert_eq!(&buf[..], b"abcGET");
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert!(parse_str("GET / HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let refused = |raw: &str| parse_str(raw).err().map(|r| r.status.as_u16());
        assert_eq!(
            refused("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            refused("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            refused("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Some(501)
        );
        // Framed by its chunks, but the coding would be lost on the way.
        assert_eq!(
            refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Some(501)
        );
        assert_eq!(
            refused(
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Some(501)
        );
        assert_eq!(
            refused("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"),
            Some(400)
        );
        assert_eq!(refused("NOT A REQUEST\r\n\r\n"), Some(400));
        assert_eq!(
            refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            refused("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
            Some(501)
        );
        let many: String = (0..200).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(refused(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Some(431));
    }

    #[test]
    fn framing_and_reuse_follow_the_version_and_headers() {
        let h = parse_str("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = parse_str("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse_str("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = parse_str("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = parse_str("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.expect_continue);
        let h = parse_str("GET http://a.test/x HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.parts.uri.authority().unwrap(), "a.test");
    }
}
