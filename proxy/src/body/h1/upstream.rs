//! An upstream's HTTP/1.1 response body, read straight from its connection, which goes
//! back to its pool at the body's end.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};
use weft_h1::{BodyDecoder, Decoded, Framing, READ_CHUNK};

use crate::body::{BoxError, ProxyBody};
use crate::net::UpstreamConn;

/// Where a connection goes when its response body was read to the end: the pool that
/// lent it (its endpoint, and how many idle connections the pool keeps).
pub type GiveBack = fn(SocketAddr, Box<UpstreamConn>, usize);

/// A response body read straight from its connection.
pub struct UpstreamBody {
    conn: Option<Box<UpstreamConn>>,
    addr: SocketAddr,
    max_idle: usize,
    decoder: BodyDecoder,
    reusable: bool,
    give_back: GiveBack,
}

impl UpstreamBody {
    /// The body of a response on `conn`, framed as `framing`; the connection goes to
    /// `give_back` at the body's end when `reusable`.
    pub fn start(
        conn: Box<UpstreamConn>,
        addr: SocketAddr,
        max_idle: usize,
        framing: Framing,
        reusable: bool,
        give_back: GiveBack,
    ) -> ProxyBody {
        let mut b = UpstreamBody {
            conn: Some(conn),
            addr,
            max_idle,
            decoder: BodyDecoder::new(framing),
            reusable,
            give_back,
        };
        if b.decoder.is_done() {
            b.finish();
        }
        ProxyBody::Upstream(b)
    }

    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable {
                (self.give_back)(self.addr, conn, self.max_idle);
            }
        }
    }

    fn fail(&mut self, msg: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(msg.into())))
    }

    /// Reads more into the buffer. Ready(Ok(0)) at end of stream.
    fn poll_fill(conn: &mut UpstreamConn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
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
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // Serve what is buffered first.
            match this.decoder.decode(&mut conn.buf) {
                Ok(Decoded::Data(d)) => {
                    if this.decoder.exact_remaining() == Some(0) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => return this.fail(format!("{}: {e}", this.addr)),
            }
            // Then read more.
            match Self::poll_fill(conn, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    return this.fail(format!("{}: reading the response body: {e}", this.addr))
                }
                Poll::Ready(Ok(0)) => {
                    // The end of a body framed by the close; the connection is done.
                    this.reusable = false;
                    if let Err(e) = this.decoder.at_eof() {
                        return this.fail(format!("{}: {e}", this.addr));
                    }
                    this.finish();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.decoder.exact_remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
