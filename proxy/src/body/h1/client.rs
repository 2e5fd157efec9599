//! A request body read straight from the client's HTTP/1.1 connection by whoever
//! consumes it (the upstream exchange, or a filter buffering it), within the
//! connection's own task.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use weft_h1::{BodyDecoder, Decoded, Framing, READ_CHUNK};

use crate::body::BoxError;

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
    /// Set when the upstream decides (`proxy_100_continue`): `100 Continue` goes out
    /// only once the upstream sent its own ([`ContinueRelay::release`]).
    pub continue_held: AtomicBool,
    /// The body's task, woken when a held `100 Continue` is released.
    waiting: Mutex<Option<std::task::Waker>>,
}

/// Lets the upstream side release a `100 Continue` the client's connection holds
/// (`proxy_100_continue`): the upstream sent its own, so the client may send the body.
/// Carried in the request's extensions.
#[derive(Clone)]
pub struct ContinueRelay(pub Arc<Handoff>);

impl std::fmt::Debug for ContinueRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContinueRelay")
    }
}

impl ContinueRelay {
    /// Lets `100 Continue` go to the client (if no response started meanwhile).
    pub fn release(&self) {
        let h = &self.0;
        if h.continue_held.swap(false, Ordering::AcqRel) {
            if let Some(w) = h.waiting.lock().take() {
                w.wake();
            }
        }
    }
}

/// The body of a request on an HTTP/1.1 connection served by weft.
pub struct ClientBody {
    stream: Arc<TcpStream>,
    buf: BytesMut,
    decoder: BodyDecoder,
    handoff: Arc<Handoff>,
    done: bool,
}

impl ClientBody {
    /// A body of `framing` whose first bytes may already be in `buf`.
    pub fn new(
        stream: Arc<TcpStream>,
        buf: BytesMut,
        framing: Framing,
        handoff: Arc<Handoff>,
    ) -> ClientBody {
        ClientBody {
            stream,
            buf,
            decoder: BodyDecoder::new(framing),
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
            if this.handoff.continue_held.load(Ordering::Acquire) {
                // Held until the upstream says: be woken by the release, and meanwhile
                // read what the client sends anyway (it may stop waiting).
                *this.handoff.waiting.lock() = Some(cx.waker().clone());
            }
            if !this.handoff.continue_held.load(Ordering::Acquire) {
                if let Err(e) = std::task::ready!(this.poll_continue(cx)) {
                    return this.fail(format!("sending 100 Continue: {e}"));
                }
            }
        }
        loop {
            match this.decoder.decode(&mut this.buf) {
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
                Err(e) => return this.fail(format!("request body: {e}")),
            }
            if this.buf.capacity() - this.buf.len() < 1024 {
                this.buf.reserve(READ_CHUNK);
            }
            match crate::net::read_some(&this.stream, &mut this.buf) {
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
        match self.decoder.exact_remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
