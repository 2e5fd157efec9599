//! A purpose-built HTTP/1.1 client for upstream requests.
//!
//! hyper's client gives each connection a task of its own and talks to it through
//! channels; for a proxy that sends one request at a time per connection, that hand-over
//! is most of the client's cost. Here the request's own task writes the request head
//! (framed by the proxy: `content-length` or chunked), streams the body, reads the
//! response head with `httparse`, and the response body reads straight from the
//! socket, giving the connection back to the pool at its end.
//!
//! What it handles: bodies framed by length, chunks or connection close; `HEAD`, 1xx,
//! 204 and 304 responses without bodies; an upstream that answers before the request
//! body is sent (the connection is then not reused); `Connection: close` and HTTP/1.0
//! responses; kept-alive connections closed by the upstream while idle (found before use
//! without a system call in the common case, and a request never sent is sent again on a
//! new connection); a protocol upgrade the client asked for (the connection leaves with
//! the 101 response: see `crate::server::tunnel`).

use std::io;
use std::net::SocketAddr;

use http::{Method, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use weft_h1::wire::{push_chunk_size, push_decimal};
use weft_h1::{Framing, MAX_HEAD, READ_CHUNK};

use super::pool;
use super::send::RequestHead;
use crate::body::h1::UpstreamBody;
use crate::body::ProxyBody;
use crate::error::UpstreamFailure;
use crate::net::{Upgraded, UpstreamConn, UpstreamSide};

/// Why an exchange on a connection failed.
#[derive(Debug)]
pub struct H1Error {
    pub failure: UpstreamFailure,
    pub detail: String,
    /// Whether nothing of the request reached the upstream (it may be sent again).
    pub unsent: bool,
}

impl H1Error {
    fn new(failure: UpstreamFailure, detail: impl Into<String>, unsent: bool) -> Self {
        H1Error {
            failure,
            detail: detail.into(),
            unsent,
        }
    }
}

fn io_failure(e: &io::Error) -> UpstreamFailure {
    match e.kind() {
        io::ErrorKind::TimedOut => UpstreamFailure::Timeout,
        _ => UpstreamFailure::Reset,
    }
}

/// Writes the request head (the framing headers for `framing` included) into `out`;
/// the body is sent separately.
fn encode_head(head: &RequestHead, framing: Framing, out: &mut Vec<u8>) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.path.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(head.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &head.headers {
        if name == http::header::CONTENT_LENGTH || name == http::header::HOST {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
    if let Some(protocol) = &head.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
        out.extend_from_slice(protocol.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How a request body will be framed, from what is known about it.
fn request_framing(method: &Method, body: &ProxyBody) -> Framing {
    let hint = body.size_hint();
    match hint.exact() {
        Some(0) if body.is_end_stream() => {
            // Methods that usually carry a body say so explicitly.
            if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                Framing::Length(0)
            } else {
                Framing::Empty
            }
        }
        Some(n) => Framing::Length(n),
        None => Framing::Chunked,
    }
}

/// Whether a request of this method may be sent again when the connection closed
/// before answering (RFC 9110 section 9.2.2: a proxy must not retry others itself).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Sends a request on `conn` and reads the response head. On success, the response
/// body reads from the connection and returns it to the pool at its end.
pub async fn exchange(
    mut conn: Box<UpstreamConn>,
    addr: SocketAddr,
    max_idle: usize,
    head: &RequestHead,
    mut body: ProxyBody,
) -> Result<(http::response::Parts, ProxyBody), H1Error> {
    let framing = request_framing(&head.method, &body);
    let bodiless = body.is_end_stream();
    let mut out = Vec::with_capacity(512);
    encode_head(head, framing, &mut out);
    // A small body already here goes out with the head, in one write.
    if let (ProxyBody::Full(Some(b)), Framing::Length(_)) = (&body, framing) {
        if b.len() <= 16 << 10 {
            out.extend_from_slice(b);
            body = ProxyBody::Empty;
        }
    }
    if let Err(e) = conn.stream.write_all(&out).await {
        return Err(H1Error::new(
            io_failure(&e),
            format!("{addr}: writing the request: {e}"),
            bodiless,
        ));
    }
    let mut write_failed: Option<(UpstreamFailure, String)> = None;
    let sent_all = if body.is_end_stream() {
        true
    } else {
        // Stream the body while watching for an answer that comes before its end (an
        // upstream refusing an upload): then stop sending, and do not reuse the
        // connection. `peek` waits for real data (or the end), not stale readiness.
        let (mut reader, mut writer) = conn.stream.split();
        let send = write_body(&mut writer, &mut body, framing);
        tokio::pin!(send);
        // `proxy_100_continue`: the upstream's interim answers are read here, and its
        // `100 Continue` released to the client, while the body waits for it.
        let mut relay = head.continue_relay.as_ref();
        loop {
            let mut probe = [0u8; 1];
            let early = reader.peek(&mut probe);
            tokio::select! {
                biased;
                r = &mut send => break match r {
                    Ok(()) => true,
                    Err(e) => {
                        // An upstream that answered early may close without reading the
                        // rest: its answer, if any, is what the client should get.
                        write_failed = Some(e);
                        false
                    }
                },
                _ = early => {
                    let Some(r) = relay else { break false };
                    use tokio::io::AsyncReadExt;
                    if conn.buf.capacity() - conn.buf.len() < 1024 {
                        conn.buf.reserve(READ_CHUNK);
                    }
                    if matches!(reader.read_buf(&mut conn.buf).await, Ok(0) | Err(_)) {
                        break false;
                    }
                    match interim(&conn.buf) {
                        Interim::Partial => {}
                        Interim::Continue(len) => {
                            let _ = conn.buf.split_to(len);
                            r.release();
                            relay = None;
                        }
                        Interim::Other(len) => {
                            let _ = conn.buf.split_to(len);
                        }
                        Interim::Final => break false,
                    }
                }
            }
        }
    };
    let is_head = head.method == Method::HEAD;
    let (parts, framing, reuse) = read_head(&mut conn, is_head, head.raw_response)
        .await
        .map_err(|(failure, detail, nothing_read)| {
            if let Some((wfailure, wdetail)) = &write_failed {
                return H1Error::new(
                    *wfailure,
                    format!("{addr}: sending the request body: {wdetail}"),
                    false,
                );
            }
            // A kept-alive connection that closed without a byte of answer, for a request
            // without a body, is the stale-connection race: safe to send again if idempotent.
            let unsent = nothing_read
                && failure == UpstreamFailure::Reset
                && bodiless
                && idempotent(&head.method);
            H1Error::new(failure, format!("{addr}: {detail}"), unsent)
        })?;
    let mut parts = parts;
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(asked) = &head.upgrade {
            // The connection now speaks the new protocol: it goes to the client's side
            // (never back to the pool), with whatever came after the 101.
            let protocol = parts
                .headers
                .get(http::header::UPGRADE)
                .cloned()
                .unwrap_or_else(|| asked.clone());
            let UpstreamConn { stream, buf, .. } = *conn;
            parts.extensions.insert(Upgraded::new(UpstreamSide {
                stream,
                early: buf,
                protocol,
            }));
            return Ok((parts, ProxyBody::Empty));
        }
    }
    // A 101 nobody asked for (answered 502 to the client) leaves the connection in
    // another protocol: not reusable either.
    let reusable = sent_all
        && reuse
        && framing != Framing::Close
        && parts.status != StatusCode::SWITCHING_PROTOCOLS;
    let body = UpstreamBody::start(conn, addr, max_idle, framing, reusable, pool::put_h1);
    Ok((parts, body))
}

async fn write_body(
    writer: &mut tokio::net::tcp::WriteHalf<'_>,
    body: &mut ProxyBody,
    framing: Framing,
) -> Result<(), (UpstreamFailure, String)> {
    let chunked = framing == Framing::Chunked;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            (
                UpstreamFailure::Reset,
                format!("the client's body failed: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let r = if chunked {
            let mut chunk = Vec::with_capacity(data.len() + 20);
            push_chunk_size(&mut chunk, data.len());
            chunk.extend_from_slice(&data);
            chunk.extend_from_slice(b"\r\n");
            writer.write_all(&chunk).await
        } else {
            writer.write_all(&data).await
        };
        r.map_err(|e| (io_failure(&e), e.to_string()))?;
    }
    if chunked {
        writer
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(|e| (io_failure(&e), e.to_string()))?;
    }
    Ok(())
}

/// What starts a response buffer, while a request body waits for `100 Continue`.
#[derive(Debug, PartialEq, Eq)]
enum Interim {
    /// Not a whole head yet.
    Partial,
    /// `100 Continue`, of this many bytes.
    Continue(usize),
    /// Another interim answer (103 Early Hints...), of this many bytes: skipped.
    Other(usize),
    /// A final answer (or not HTTP): sending stops; `read_head` takes it.
    Final,
}

fn interim(buf: &[u8]) -> Interim {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() < 1024 {
            Interim::Partial
        } else {
            Interim::Final
        };
    };
    match buf.get(..12) {
        Some(l) if l.starts_with(b"HTTP/1.") && &l[8..10] == b" 1" && l[11] != b'1' => {
            if &l[9..12] == b"100" {
                Interim::Continue(end + 4)
            } else {
                Interim::Other(end + 4)
            }
        }
        _ => Interim::Final,
    }
}

/// Reads into the connection's buffer; Ok(0) at end of stream.
async fn fill(conn: &mut UpstreamConn) -> io::Result<usize> {
    use tokio::io::AsyncReadExt;
    if conn.buf.capacity() - conn.buf.len() < 1024 {
        conn.buf.reserve(READ_CHUNK);
    }
    conn.stream.read_buf(&mut conn.buf).await
}

/// Reads a response head, skipping 1xx answers. The error says whether any byte came.
async fn read_head(
    conn: &mut UpstreamConn,
    is_head: bool,
    raw: bool,
) -> Result<(http::response::Parts, Framing, bool), (UpstreamFailure, String, bool)> {
    let mut read_any = !conn.buf.is_empty();
    loop {
        if !conn.buf.is_empty() {
            match weft_h1::response::parse_head(&mut conn.buf, raw && !is_head)
                .map_err(|e| (UpstreamFailure::ProtocolError, e.to_string(), false))?
            {
                Some((parts, framing, reuse)) => {
                    if parts.status.is_informational()
                        && parts.status != StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue; // 100 Continue and friends: the real answer follows.
                    }
                    let framing = if is_head
                        || parts.status.is_informational()
                        || parts.status == StatusCode::NO_CONTENT
                        || parts.status == StatusCode::NOT_MODIFIED
                    {
                        Framing::Empty
                    } else {
                        framing
                    };
                    return Ok((parts, framing, reuse));
                }
                None if conn.buf.len() > MAX_HEAD => {
                    return Err((
                        UpstreamFailure::ProtocolError,
                        "response head too large".into(),
                        false,
                    ));
                }
                None => {}
            }
        }
        match fill(conn).await {
            Ok(0) => {
                let msg = if read_any {
                    "connection closed mid-response"
                } else {
                    "connection closed before a response"
                };
                return Err((UpstreamFailure::Reset, msg.into(), !read_any));
            }
            Ok(_) => read_any = true,
            Err(e) => {
                return Err((
                    io_failure(&e),
                    format!("reading the response: {e}"),
                    !read_any,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn interim_answers_are_told_from_final_ones() {
        assert_eq!(
            interim(b"HTTP/1.1 100 Continue\r\n\r\nHTTP"),
            Interim::Continue(25)
        );
        assert_eq!(
            interim(b"HTTP/1.1 103 Early\r\nlink: x\r\n\r\n"),
            Interim::Other(31)
        );
        assert_eq!(interim(b"HTTP/1.1 101 Switching\r\n\r\n"), Interim::Final);
        assert_eq!(interim(b"HTTP/1.1 404 Not Found\r\n\r\n"), Interim::Final);
        assert_eq!(interim(b"HTTP/1.1 100 Cont"), Interim::Partial);
    }

    #[test]
    fn request_heads_are_framed_by_the_proxy() {
        let head = RequestHead {
            method: Method::POST,
            authority: "api.test".into(),
            path: "/a?b=1".parse().unwrap(),
            headers: {
                let mut h = HeaderMap::new();
                h.insert("content-length", "99".parse().unwrap());
                h.insert("x-one", "1".parse().unwrap());
                h
            },
            upgrade: None,
            raw_response: false,
            continue_relay: None,
            hash_key: None,
        };
        let mut out = Vec::new();
        encode_head(&head, Framing::Length(5), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /a?b=1 HTTP/1.1\r\nhost: api.test\r\nx-one: 1\r\ncontent-length: 5\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_head(&head, Framing::Chunked, &mut out);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("transfer-encoding: chunked\r\n"));
    }
}
