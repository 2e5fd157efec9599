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
//! the 101 response: see `crate::upgrade`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::pool;
use super::send::RequestHead;
use crate::body::{BoxError, ProxyBody};
use crate::error::UpstreamFailure;
use crate::h1wire::{
    decode_chunk, list_items, push_chunk_size, push_decimal, Chunk, ChunkOut, ConnectionSays,
    Framing, RawHeaders, MAX_HEAD, READ_CHUNK,
};
use crate::upgrade::{Upgraded, UpstreamSide};

/// Most response headers accepted.
const MAX_HEADERS: usize = 128;

/// A kept-alive HTTP/1.1 connection.
pub struct H1Conn {
    stream: TcpStream,
    /// Bytes read past the end of the previous response (none in practice).
    buf: BytesMut,
    /// When it was last returned to the pool.
    pub since: Instant,
}

/// Why an exchange on a connection failed.
#[derive(Debug)]
pub struct H1Error {
    /// How.
    pub failure: UpstreamFailure,
    /// What happened.
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

impl H1Conn {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Box<H1Conn> {
        Box::new(H1Conn {
            stream,
            buf: BytesMut::new(),
            since: Instant::now(),
        })
    }

    /// Whether the upstream has closed this idle connection (or sent something it
    /// should not have). Costs a system call only when the socket reports activity.
    pub fn is_stale(&self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Writes the request head, then the body, framed.
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
    mut conn: Box<H1Conn>,
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
        let mut probe = [0u8; 1];
        let early = reader.peek(&mut probe);
        tokio::pin!(early);
        tokio::select! {
            biased;
            r = &mut send => match r {
                Ok(()) => true,
                Err(e) => {
                    // An upstream that answered early may close without reading the rest:
                    // its answer, if any, is what the client should get.
                    write_failed = Some(e);
                    false
                }
            },
            _ = &mut early => false,
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
            let H1Conn { stream, buf, .. } = *conn;
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
    let body = H1Body::start(conn, addr, max_idle, framing, reusable);
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

/// Reads into the connection's buffer; Ok(0) at end of stream.
async fn fill(conn: &mut H1Conn) -> io::Result<usize> {
    use tokio::io::AsyncReadExt;
    if conn.buf.capacity() - conn.buf.len() < 1024 {
        conn.buf.reserve(READ_CHUNK);
    }
    conn.stream.read_buf(&mut conn.buf).await
}

/// Reads a response head, skipping 1xx answers. The error says whether any byte came.
async fn read_head(
    conn: &mut H1Conn,
    is_head: bool,
    raw: bool,
) -> Result<(http::response::Parts, Framing, bool), (UpstreamFailure, String, bool)> {
    let mut read_any = !conn.buf.is_empty();
    loop {
        if !conn.buf.is_empty() {
            match parse_head(&mut conn.buf, raw && !is_head)? {
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

type Fail = (UpstreamFailure, String, bool);

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
/// ones left out; `Ok(None)` then means the head needs a header map after all (a
/// `Connection` naming other headers, which go with it).
fn collect(
    headers: &[httparse::Header<'_>],
    base: usize,
    raw: bool,
) -> Result<Option<Collected>, Fail> {
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
            Role::Connection if raw => return Ok(None),
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
    Ok(Some(out))
}

fn bad(what: &str) -> Fail {
    (
        UpstreamFailure::ProtocolError,
        format!("invalid response: {what}"),
        false,
    )
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
fn parse_head(
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
    let collected = match collect(resp.headers, base, raw)? {
        Some(c) => c,
        None => collect(resp.headers, base, false)?.expect("a header map is always possible"),
    };
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

/// A response body read straight from its connection.
pub struct H1Body {
    conn: Option<Box<H1Conn>>,
    addr: SocketAddr,
    max_idle: usize,
    framing: Framing,
    remaining: u64,
    chunk: Chunk,
    reusable: bool,
    done: bool,
}

impl H1Body {
    fn start(
        conn: Box<H1Conn>,
        addr: SocketAddr,
        max_idle: usize,
        framing: Framing,
        reusable: bool,
    ) -> ProxyBody {
        let remaining = if let Framing::Length(n) = framing {
            n
        } else {
            0
        };
        let mut b = H1Body {
            conn: Some(conn),
            addr,
            max_idle,
            framing,
            remaining,
            chunk: Chunk::Size,
            reusable,
            done: false,
        };
        if framing == Framing::Empty {
            b.finish();
        }
        ProxyBody::H1(b)
    }

    fn finish(&mut self) {
        self.done = true;
        if let Some(conn) = self.conn.take() {
            if self.reusable {
                pool::put_h1(self.addr, conn, self.max_idle);
            }
        }
    }

    fn fail(&mut self, msg: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        self.conn = None;
        Poll::Ready(Some(Err(msg.into())))
    }

    /// Reads more into the buffer. Ready(Ok(0)) at end of stream.
    fn poll_fill(conn: &mut H1Conn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if conn.buf.capacity() - conn.buf.len() < 1024 {
            conn.buf.reserve(READ_CHUNK);
        }
        let spare = conn.buf.spare_capacity_mut();
        let mut rb = ReadBuf::uninit(spare);
        match Pin::new(&mut conn.stream).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                // SAFETY: `poll_read` initialised the first `n` spare bytes.
                unsafe { conn.buf.set_len(conn.buf.len() + n) };
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    pub(crate) fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // Serve what is buffered first.
            match this.framing {
                Framing::Empty => {
                    this.finish();
                    continue;
                }
                Framing::Length(_) if this.remaining == 0 => {
                    this.finish();
                    continue;
                }
                Framing::Length(_) if !conn.buf.is_empty() => {
                    let n = (conn.buf.len() as u64).min(this.remaining) as usize;
                    let data = conn.buf.split_to(n).freeze();
                    this.remaining -= n as u64;
                    if this.remaining == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Close if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked if !conn.buf.is_empty() => {
                    match decode_chunk(&mut conn.buf, &mut this.chunk) {
                        Ok(Some(ChunkOut::Data(d))) => {
                            return Poll::Ready(Some(Ok(Frame::data(d))))
                        }
                        Ok(Some(ChunkOut::End)) => {
                            this.finish();
                            continue;
                        }
                        Ok(None) => {} // need more bytes
                        Err(e) => {
                            return this.fail(format!("{}: invalid chunked body: {e}", this.addr))
                        }
                    }
                }
                _ => {}
            }
            // Then read more.
            match Self::poll_fill(conn, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    return this.fail(format!("{}: reading the response body: {e}", this.addr))
                }
                Poll::Ready(Ok(0)) => {
                    if this.framing == Framing::Close {
                        this.reusable = false;
                        this.finish();
                        continue;
                    }
                    return this.fail(format!("{}: connection closed mid-body", this.addr));
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.done
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(_) => SizeHint::with_exact(self.remaining),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
