//! A request body read straight from the client's connection by whoever consumes it
//! (the upstream exchange, or a filter buffering it), within the connection's own task.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::body::BoxError;
use crate::h1wire::{decode_chunk, Chunk, ChunkOut, Framing, READ_CHUNK};

/// The interim response a client sending `Expect: 100-continue` waits for.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the body hands back to its connection.
#[derive(Default)]
pub struct Handoff {
    /// The connection's read buffer, returned when the body was read to its end (it
    /// may hold the start of the next, pipelined, request). `None`: the body was not
    /// read to the end, and the connection cannot be reused.
    pub leftover: Mutex<Option<BytesMut>>,
    /// Set while `100 Continue` is still owed to the client; cleared once it is sent or
    /// when the response starts.
    pub continue_owed: AtomicBool,
    /// How many bytes of [`CONTINUE`] went out: a response must not start in the middle
    /// of it.
    pub continue_sent: AtomicUsize,
}

/// The body of a request on an HTTP/1.1 connection served by weft.
pub struct RequestBody {
    stream: Arc<TcpStream>,
    buf: BytesMut,
    framing: Framing,
    remaining: u64,
    chunk: Chunk,
    handoff: Arc<Handoff>,
    done: bool,
}

impl RequestBody {
    /// A body of `framing` whose first bytes may already be in `buf`.
    pub(crate) fn new(
        stream: Arc<TcpStream>,
        buf: BytesMut,
        framing: Framing,
        handoff: Arc<Handoff>,
    ) -> RequestBody {
        let remaining = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        RequestBody {
            stream,
            buf,
            framing,
            remaining,
            chunk: Chunk::Size,
            handoff,
            done: false,
        }
    }

    fn finish(&mut self) {
        self.done = true;
        *self.handoff.leftover.lock() = Some(std::mem::take(&mut self.buf));
    }

    fn fail(&mut self, msg: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        Poll::Ready(Some(Err(msg.into())))
    }

    /// Sends `100 Continue` if the client waits for it and no response has started.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let h = &self.handoff;
        while h.continue_owed.load(Ordering::Relaxed) {
            let sent = h.continue_sent.load(Ordering::Relaxed);
            if sent >= CONTINUE.len() {
                h.continue_owed.store(false, Ordering::Relaxed);
                break;
            }
            match self.stream.try_write(&CONTINUE[sent..]) {
                Ok(n) => h.continue_sent.store(sent + n, Ordering::Relaxed),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(self.stream.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.handoff.continue_owed.load(Ordering::Relaxed) {
            if let Err(e) = std::task::ready!(this.poll_continue(cx)) {
                return this.fail(format!("sending 100 Continue: {e}"));
            }
        }
        loop {
            match this.framing {
                Framing::Empty | Framing::Close => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(_) if this.remaining == 0 => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(_) if !this.buf.is_empty() => {
                    let n = (this.buf.len() as u64).min(this.remaining) as usize;
                    let data = this.buf.split_to(n).freeze();
                    this.remaining -= n as u64;
                    if this.remaining == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked if !this.buf.is_empty() => {
                    match decode_chunk(&mut this.buf, &mut this.chunk) {
                        Ok(Some(ChunkOut::Data(d))) => {
                            return Poll::Ready(Some(Ok(Frame::data(d))))
                        }
                        Ok(Some(ChunkOut::End)) => {
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Ok(None) => {}
                        Err(e) => return this.fail(format!("invalid chunked request body: {e}")),
                    }
                }
                _ => {}
            }
            if this.buf.capacity() - this.buf.len() < 1024 {
                this.buf.reserve(READ_CHUNK);
            }
            match crate::h1wire::read_some(&this.stream, &mut this.buf) {
                Ok(0) => return this.fail("the client closed the connection mid-body".into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = std::task::ready!(this.stream.poll_read_ready(cx)) {
                        return this.fail(format!("reading the request body: {e}"));
                    }
                }
                Err(e) => return this.fail(format!("reading the request body: {e}")),
            }
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.done
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(_) => SizeHint::with_exact(self.remaining),
            Framing::Empty => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
