//! Sockets: reading a TCP stream without wasted system calls, the kept-alive upstream
//! connection that pools hold and response bodies read from, and the upstream side of
//! an accepted protocol upgrade as it travels to the client's connection.

use std::io;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use http::HeaderValue;
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Read buffers an idle connection gave back, for the next connection that has bytes to
/// read, per worker thread: a connection holds a buffer only while it reads a request
/// (idle ones hold none), and taking one from here costs no allocation.
mod spare {
    use std::cell::RefCell;

    use bytes::BytesMut;

    /// Most buffers kept per thread.
    const KEEP: usize = 64;

    thread_local! {
        static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer with room for at least `size` bytes.
    pub fn take(size: usize) -> BytesMut {
        let mut buf = FREE
            .try_with(|f| f.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        // (A given-back buffer that was split is reclaimed whole here when nothing else
        // holds its bytes any more; otherwise this allocates.)
        buf.reserve(size);
        buf
    }

    /// Gives `buf` back (emptied), or drops it when enough are kept.
    pub fn give(mut buf: BytesMut) {
        if buf.capacity() == 0 {
            return;
        }
        buf.clear();
        let _ = FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < KEEP {
                f.push(buf);
            }
        });
    }

    /// Drops every kept buffer of this thread (before its memory is given back).
    pub fn clear() {
        let _ = FREE.try_with(|f| f.borrow_mut().clear());
    }
}

pub use spare::{clear as clear_spare_buffers, give as give_buffer, take as take_buffer};

/// Reads what the socket holds into `buf`'s spare room (at least one byte of which must
/// be free), as `TcpStream::try_read_buf` does, except that a read which leaves room
/// also forgets the socket's readiness: the kernel had no more, so the next read would
/// only say `WouldBlock`. Without this, every request on a keep-alive connection costs
/// one such wasted read (tokio's `AsyncRead` forgets readiness after a short read; its
/// `try_read*` methods do not). A read that races new data is safe: the new data
/// brings a new readiness event, which this does not clear.
pub fn read_some(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    debug_assert!(buf.capacity() > buf.len(), "read_some needs spare room");
    let mut read = 0;
    let outcome = stream.try_io(Interest::READABLE, || {
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        let n = socket2::SockRef::from(stream).recv(spare)?;
        // SAFETY: `recv` initialised the first `n` bytes of the spare room.
        unsafe { buf.advance_mut(n) };
        read = n;
        if n > 0 && n < room {
            // Clears the readiness this call started from; the bytes are kept.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    });
    match outcome {
        Ok(()) => Ok(read),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => Ok(read),
        Err(e) => Err(e),
    }
}

/// A kept-alive HTTP/1.1 connection to an upstream: the stream and what was read
/// from it past the last response.
pub struct UpstreamConn {
    /// The connection.
    pub stream: TcpStream,
    /// Bytes read past the end of the previous response (none in practice).
    pub buf: BytesMut,
    /// When it was last returned to a pool.
    pub since: Instant,
    /// Held as long as the connection is open (a circuit breaker's place).
    pub held: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl UpstreamConn {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Box<UpstreamConn> {
        Box::new(UpstreamConn {
            stream,
            buf: BytesMut::new(),
            since: Instant::now(),
            held: None,
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

/// The upstream side of an accepted upgrade, carried by the 101 response to the
/// client's connection. Taken once.
#[derive(Clone)]
pub struct Upgraded(Arc<Mutex<Option<UpstreamSide>>>);

/// The upstream connection after its 101, with what it sent past the head.
pub struct UpstreamSide {
    /// The connection.
    pub stream: TcpStream,
    /// Bytes of the new protocol already read with the 101.
    pub early: BytesMut,
    /// The protocol the upstream switched to (its `Upgrade` header).
    pub protocol: HeaderValue,
}

impl Upgraded {
    /// Wraps the upstream side.
    pub fn new(side: UpstreamSide) -> Upgraded {
        Upgraded(Arc::new(Mutex::new(Some(side))))
    }

    /// Takes the upstream side (once).
    pub fn take(&self) -> Option<UpstreamSide> {
        self.0.lock().take()
    }
}
