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

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

mod head;

use super::pool;
use super::send::RequestHead;
use crate::body::{BoxError, ProxyBody};
use crate::error::UpstreamFailure;
use crate::h1wire::{
    decode_chunk, push_chunk_size, push_decimal, Chunk, ChunkOut, Framing, MAX_HEAD, READ_CHUNK,
};
use crate::upgrade::{Upgraded, UpstreamSide};

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
            match head::parse_head(&mut conn.buf, raw && !is_head)? {
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
    use http::HeaderMap;

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
}
