//! weft's own HTTP/1.1 server side.
//!
//! hyper's server runs each connection as a dispatcher state machine that hands the
//! request to a service and the body through its own buffers; for a proxy, which only
//! forwards, most of that is overhead. Here the connection's task reads a head
//! (`head`), runs the exchange with a body that reads straight from the socket
//! (`body`), and writes the response (`write`); then the next request, from the bytes
//! already read if the client pipelined.
//!
//! What it handles: keep-alive by version and `Connection`; bodies framed by length or
//! chunks, and smuggling shapes refused (`weft_h1::request`); `Expect: 100-continue` (answered
//! when the body is first read, unless a response came first); [`HEAD_TIMEOUT`] for a
//! request head to arrive (408 when one had started); a client that pipelines; a
//! response whose `Connection: close` ends the connection (a listener removed by a
//! reload); shutdown and listener removal closing idle connections at once and busy
//! ones after their response; a client that accepts none of a response's bytes for
//! `write::WRITE_STALL` is cut off. A malformed head gets 400 (431 when too large) and
//! the connection closes. An upgrade (WebSocket) the upstream accepts turns
//! the connection into a tunnel to it (`super::tunnel`).

mod write;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use http::Request;
use tokio::net::TcpStream;
use tokio::sync::watch;

use weft_h1::request as head;
use weft_h1::{Framing, READ_CHUNK};

use crate::body::h1::{ClientBody, ContinueRelay, Handoff, CONTINUE};
use crate::body::ProxyBody;
use crate::config::HttpOptions;
use crate::deadline::Lazy;
use crate::error::ProxyError;
use crate::exchange::{self, ConnInfo};
use crate::net::{Upgraded, UpstreamSide};
use crate::snapshot::SnapshotHandle;
use write::Answering;

/// How long a request head may take to arrive once the connection is waiting for one.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Signals that end a connection: the worker shutting down, the listener removed; and,
/// for an idle one, the overload action `close_idle`.
pub struct Stop {
    /// Worker shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Listener removed by a reload.
    pub listener: watch::Receiver<bool>,
}

/// A connection's [`Stop::signal`], and whether the connection's task has polled it
/// (and so is woken when it fires).
pub struct Stopped {
    /// Completes when either signal fires.
    pub signal: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Polled once already.
    registered: bool,
    /// The overload actions as the signal last looked at them: a wake-up after they
    /// changed polls the signal again (which registers it for the next change).
    overload: watch::Receiver<u8>,
}

impl Stop {
    /// Whether either signal has fired since the connection began (only `true` is ever
    /// sent) or its sender is gone. A signal that fired before is seen by
    /// [`Stop::signal`]'s first poll, or by the accept loop that stops taking connections.
    fn requested(&self) -> bool {
        let fired = |rx: &watch::Receiver<bool>| rx.has_changed().unwrap_or(true);
        fired(&self.shutdown) || fired(&self.listener)
    }

    /// Completes when either signal fires, or (with `idle`) once idle connections are
    /// being closed (overload). Made once per connection and polled while the
    /// connection waits for a head: it stays registered with the signals instead of
    /// registering anew for every request. (A tunnel is not idle: it takes the signal
    /// without `idle`.)
    fn signal(&self, idle: bool) -> Stopped {
        let mut shutdown = self.shutdown.clone();
        let mut listener = self.listener.clone();
        let signal = Box::pin(async move {
            if *shutdown.borrow_and_update() || *listener.borrow_and_update() {
                return;
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => {}
                _ = listener.changed() => {}
                _ = crate::overload::closing_idle(), if idle => {}
            }
        });
        Stopped {
            signal,
            registered: false,
            overload: crate::overload::watch(),
        }
    }
}

impl Stopped {
    /// Whether a stop signal fired. The signal is polled once per connection, which
    /// registers the task with both senders; after that a wake-up is enough, and the
    /// channels' versions say whether it was the signal (polling it again costs more
    /// than the rest of a wait for a head).
    fn fired(&mut self, cx: &mut std::task::Context<'_>, stop: &Stop) -> bool {
        if self.registered {
            if stop.requested() {
                return true;
            }
            // (Looking whether the overload actions changed costs one atomic load;
            // while any is in force, the signal is polled on every wake-up, so none
            // is missed.)
            if !self.overload.has_changed().unwrap_or(false) && crate::overload::mask() == 0 {
                return false;
            }
        }
        self.overload.borrow_and_update();
        if self.signal.as_mut().poll(cx).is_ready() {
            return true;
        }
        self.registered = true;
        false
    }
}

/// What waiting for a head came to.
enum Next {
    Head(Box<head::Head>),
    /// The connection is over (closed, idle at shutdown, or answered with an error).
    Done,
}

/// Serves HTTP/1.1 on `stream`, whose first bytes may already be in `buf`.
pub async fn serve(
    stream: TcpStream,
    mut buf: BytesMut,
    info: Arc<ConnInfo>,
    handle: SnapshotHandle,
    stop: Stop,
    http: HttpOptions,
) {
    let mut stopped = stop.signal(true);
    let stream = Arc::new(stream);
    let mut timer = Lazy::new(tokio::time::Instant::now() + HEAD_TIMEOUT);
    loop {
        let head = match next_head(
            &stream,
            &mut buf,
            &stop,
            &mut stopped,
            &mut timer,
            http.max_request_headers,
            http.idle_timeout,
        )
        .await
        {
            Next::Head(h) => h,
            Next::Done => return,
        };
        // Boxed: answering a request (the exchange above all) is most of a
        // connection's state, and an idle connection (most of them, at scale) should
        // not carry it. One allocation per request.
        let answered = Box::pin(respond(
            &stream,
            head,
            std::mem::take(&mut buf),
            &info,
            &handle,
            &stop,
            http,
        ))
        .await;
        match answered {
            Answered::Next(leftover) => buf = leftover,
            Answered::Over => return,
            Answered::Switch(upgrade) => {
                let (early, resp, side) = *upgrade;
                let stopped = stop.signal(false);
                return Box::pin(switch(stream, early, resp, side, stopped, &info)).await;
            }
        }
        if stop.requested() {
            return close(&stream).await;
        }
    }
}

/// What answering a request came to.
enum Answered {
    /// The connection carries another request; the bytes already read past this one.
    Next(BytesMut),
    /// The connection is over (closed as it had to be).
    Over,
    /// The upstream accepted an upgrade: its 101 response, to be answered, and the
    /// bytes the client sent after the request.
    Switch(Box<(BytesMut, http::Response<ProxyBody>, UpstreamSide)>),
}

/// Answers one request whose head was read: runs the exchange with the request's body
/// read from the connection (`buf` holds what was read past the head), and writes the
/// response.
async fn respond(
    stream: &Arc<TcpStream>,
    head: Box<head::Head>,
    mut buf: BytesMut,
    info: &Arc<ConnInfo>,
    handle: &SnapshotHandle,
    stop: &Stop,
    http: HttpOptions,
) -> Answered {
    let head::Head {
        mut parts,
        framing,
        keep_alive,
        expect_continue,
    } = *head;
    let answering = Answering {
        head: parts.method == http::Method::HEAD,
        version: parts.version,
    };
    // A request with a body lends the connection's buffer to it, and gets it back
    // through a `Handoff` if the body is read to its end; one without keeps it here.
    let (body, handoff) = if framing == Framing::Empty {
        (ProxyBody::Empty, None)
    } else {
        let handoff = Arc::new(Handoff::default());
        handoff
            .continue_owed
            .store(expect_continue, Ordering::Relaxed);
        if expect_continue && http.proxy_100_continue {
            // The upstream decides whether the client sends its body.
            handoff.continue_held.store(true, Ordering::Relaxed);
            parts.extensions.insert(ContinueRelay(handoff.clone()));
        }
        let body = ClientBody::new(
            stream.clone(),
            std::mem::take(&mut buf),
            framing,
            handoff.clone(),
        );
        (ProxyBody::Client(body), Some(handoff))
    };
    let snapshot = handle.load_full();
    let resp = exchange::serve(snapshot, info, Request::from_parts(parts, body)).await;
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS && handoff.is_none() {
        if let Some(side) = resp.extensions().get::<Upgraded>().and_then(Upgraded::take) {
            return Answered::Switch(Box::new((buf, resp, side)));
        }
    }
    // Whether the request body was read to its end decides, before the head is
    // written, whether the connection can carry another request.
    let leftover = match &handoff {
        None => Some(std::mem::take(&mut buf)),
        Some(handoff) => {
            // The response starts: a client still waiting for 100 Continue gets this
            // instead, after the rest of a 100 Continue that went out in part.
            handoff.continue_owed.store(false, Ordering::Relaxed);
            let partial = handoff.continue_sent.load(Ordering::Relaxed);
            if partial > 0
                && partial < CONTINUE.len()
                && write::write_all(stream, &CONTINUE[partial..])
                    .await
                    .is_err()
            {
                return Answered::Over;
            }
            handoff.leftover.lock().take()
        }
    };
    // (Overload: `close_idle` and `disable_keepalive` end a connection here.)
    let keep = keep_alive
        && leftover.is_some()
        && !stop.requested()
        && !crate::overload::ends_after_response();
    match write::response(stream, resp, &answering, keep).await {
        Ok(true) => Answered::Next(leftover.unwrap_or_default()),
        Ok(false) => {
            close(stream).await;
            Answered::Over
        }
        Err(e) => {
            tracing::debug!(peer = %info.client, "response not completed: {e}");
            close(stream).await;
            Answered::Over
        }
    }
}

/// Answers 101 for an upgrade the upstream accepted, then carries the new protocol's
/// bytes both ways until both sides close or the worker or listener stops.
async fn switch(
    stream: Arc<TcpStream>,
    early: BytesMut,
    resp: http::Response<ProxyBody>,
    side: UpstreamSide,
    stopped: Stopped,
    info: &ConnInfo,
) {
    let (parts, body) = resp.into_parts();
    // The exchange is over for the log phase: what follows is not HTTP.
    drop(body);
    if let Err(e) = write::switching(&stream, &parts, &side.protocol).await {
        tracing::debug!(peer = %info.client, "101 not written: {e}");
        return;
    }
    // Only this task holds the connection: the request had no body to read from it.
    let Ok(stream) = Arc::try_unwrap(stream) else {
        return;
    };
    match super::tunnel::tunnel(
        stream,
        early,
        side,
        stopped.signal,
        super::tunnel::TUNNEL_IDLE,
    )
    .await
    {
        Ok((up, down)) => {
            tracing::debug!(peer = %info.client, up, down, "upgraded connection ended")
        }
        Err(e) => tracing::debug!(peer = %info.client, "upgraded connection ended: {e}"),
    }
}

/// How long a closing connection keeps reading what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How much it reads at most meanwhile.
const LINGER_BYTES: usize = 1 << 20;

/// Closes a connection after its last response without losing that response: the
/// write side is shut (the client sees the end), what the client still sends is read
/// and dropped for a while (closing a socket with unread data resets the connection,
/// and a reset can destroy the response before the client reads it: RFC 9112 section
/// 9.6), then both sides are shut, which also ends a request body still being read
/// elsewhere.
async fn close(stream: &TcpStream) {
    let sock = socket2::SockRef::from(stream);
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let drain = async {
        let mut scratch = vec![0u8; 16 << 10];
        let mut total = 0;
        while total < LINGER_BYTES {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

/// Reads until a whole head is in `buf`. Idle connections close at shutdown, or after
/// the listener's `idle_timeout` without a byte; a head that does not arrive within
/// [`HEAD_TIMEOUT`] of its first byte gets 408; a malformed one gets its 4xx.
async fn next_head(
    stream: &TcpStream,
    buf: &mut BytesMut,
    stop: &Stop,
    stopped: &mut Stopped,
    timer: &mut Lazy,
    limit: usize,
    idle_timeout: Duration,
) -> Next {
    let mut armed = false;
    // Armed for the listener's idle timeout (no byte of a next request yet), rather
    // than the head's.
    let mut armed_idle = false;
    // Woken by the socket since the wait began (the first read waits for it).
    let mut woken = false;
    loop {
        if !buf.is_empty() {
            let before = buf.len();
            let too_large = || head::Refused {
                status: http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason: format!("request head larger than {limit} bytes"),
            };
            match head::parse(buf) {
                // A head that came whole in one read is held to the limit too.
                Ok(Some(_)) if before - buf.len() > limit => {
                    return refuse(stream, too_large()).await
                }
                Ok(Some(h)) => return Next::Head(Box::new(h)),
                Ok(None) if buf.len() > limit => return refuse(stream, too_large()).await,
                Ok(None) => {}
                Err(refused) => return refuse(stream, refused).await,
            }
        }
        // Idle and not woken yet: nothing to read for sure (the last read that found
        // nothing cleared the socket's readiness, and bytes since then set it), so the
        // wait comes first.
        if !(buf.is_empty() && !woken) {
            if buf.capacity() == 0 {
                *buf = crate::net::take_buffer(READ_CHUNK);
            } else if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            match crate::net::read_some(stream, buf) {
                Ok(0) => return Next::Done,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Next::Done,
            }
        }
        if buf.is_empty() && buf.capacity() != 0 {
            // An idle connection waits holding no buffer (it costs little more than
            // its task), and takes one when bytes arrive.
            crate::net::give_buffer(std::mem::take(buf));
        }
        if !armed {
            armed_idle = buf.is_empty();
            let limit = if armed_idle {
                idle_timeout
            } else {
                HEAD_TIMEOUT
            };
            timer.set(tokio::time::Instant::now() + limit);
            armed = true;
        } else if armed_idle && !buf.is_empty() {
            // The first bytes of a head: its own limit starts now.
            timer.set(tokio::time::Instant::now() + HEAD_TIMEOUT);
            armed_idle = false;
        }
        let idle = buf.is_empty();
        let readable = stream.readable();
        tokio::pin!(readable);
        let woke = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = readable.as_mut().poll(cx) {
                return Poll::Ready(if r.is_ok() {
                    Woke::Readable
                } else {
                    Woke::Stop
                });
            }
            if timer.poll(cx).is_ready() {
                return Poll::Ready(Woke::Timer);
            }
            if idle && stopped.fired(cx, stop) {
                return Poll::Ready(Woke::Stop);
            }
            Poll::Pending
        })
        .await;
        match woke {
            Woke::Readable => woken = true,
            Woke::Stop => return Next::Done,
            Woke::Timer => {
                if idle {
                    return Next::Done;
                }
                let refused = head::Refused {
                    status: http::StatusCode::REQUEST_TIMEOUT,
                    reason: "the request head did not arrive in time".into(),
                };
                return refuse(stream, refused).await;
            }
        }
    }
}

/// What ended a wait for more of a head.
enum Woke {
    /// Bytes (or the end) arrived.
    Readable,
    /// The head timer fired.
    Timer,
    /// Shutdown, listener removal, or a failed socket.
    Stop,
}

/// Answers a head that could not be taken, and ends the connection. (Boxed: it is
/// rare, and writing a response would otherwise be part of every waiting connection's
/// state.)
fn refuse(
    stream: &TcpStream,
    refused: head::Refused,
) -> Pin<Box<dyn Future<Output = Next> + Send + '_>> {
    Box::pin(async move {
        tracing::debug!(
            status = refused.status.as_u16(),
            "request refused: {}",
            refused.reason
        );
        let resp = exchange::error_response(&ProxyError::Malformed {
            status: refused.status,
            reason: refused.reason,
        });
        let to = Answering {
            head: false,
            version: http::Version::HTTP_11,
        };
        let _ = write::response(stream, resp, &to, false).await;
        close(stream).await;
        Next::Done
    })
}
