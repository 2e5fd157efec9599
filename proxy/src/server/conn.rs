//! Serving HTTP on one accepted connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderValue, Request};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::accepting::{Accepting, LiveGuard};
use super::h1;
use super::rewind::Rewind;
use crate::body::ProxyBody;
use crate::config::model::ListenerProtocol;
use crate::config::HttpOptions;
use crate::exchange::{self, ConnInfo};
use crate::net::Upgraded;
use crate::overload::Action;
use crate::snapshot::SnapshotHandle;
use crate::tls::ServerTls;

/// HTTP/2's connection preface, which a client with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the first bytes tell HTTP/2's preface from anything else. `None`: the
/// client went away, stayed silent past the head timeout, or the worker or listener
/// stopped first.
async fn sniff(
    stream: &TcpStream,
    buf: &mut BytesMut,
    shutdown: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
) -> Option<bool> {
    if *shutdown.borrow() || *stop.borrow() {
        return None;
    }
    let read = async {
        loop {
            let n = buf.len().min(H2_PREFACE.len());
            if buf[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            if stream.readable().await.is_err() {
                return None;
            }
            // Taken only now: a connection that has sent nothing holds no buffer.
            if buf.capacity() == 0 {
                *buf = crate::net::take_buffer(weft_h1::READ_CHUNK);
            } else if buf.capacity() == buf.len() {
                buf.reserve(weft_h1::READ_CHUNK);
            }
            match crate::net::read_some(stream, buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if buf.is_empty() {
                        // (A new socket can be said readable with nothing to read.)
                        crate::net::give_buffer(std::mem::take(buf));
                    }
                }
                Err(_) => return None,
            }
        }
    };
    tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(30), read) => r.ok().flatten(),
        _ = shutdown.changed() => None,
        _ = stop.changed() => None,
        _ = crate::overload::closing_idle() => None,
    }
}

/// How large a head hyper lets through to the exchange, which holds it to `limit`:
/// twice that, so a head somewhat over the limit gets weft's own 431 (saying why).
pub(crate) fn hyper_head_limit(limit: usize) -> usize {
    (limit * 2).max(16 << 10)
}

/// Serves a connection until it closes, or until shutdown lets it finish gracefully.
/// HTTP/1.1 is served by weft's own server side (`h1`); HTTP/2 by hyper.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    mut listener: Accepting,
    handle: SnapshotHandle,
    mut shutdown: watch::Receiver<bool>,
    _live: LiveGuard,
    _counted: Option<crate::snapshot::ConnOpen>,
) {
    let _ = stream.set_nodelay(true);
    // A listener removed by a reload just after accepting: its requests are answered
    // 503 `listener-removed` and the connection closed (see `exchange::serve`).
    let (protocol, tls, http) = handle
        .load()
        .listener(&listener.name, listener.hint)
        .map_or(
            (ListenerProtocol::Auto, None, HttpOptions::default()),
            |l| (l.protocol, l.tls.clone(), l.http),
        );
    if let Some(tls) = tls {
        let h2_only = protocol == ListenerProtocol::Http2;
        // (Boxed, as HTTP/2 below: each protocol's state is only as large as it needs
        // be, and an idle HTTP/1.1 connection does not carry the others'.)
        return Box::pin(serve_tls(
            stream, peer, listener, handle, shutdown, &tls, h2_only, http,
        ))
        .await;
    }
    let mut buf = BytesMut::new();
    let h2 = match protocol {
        ListenerProtocol::Http2 => true,
        // HTTP/3 listeners are served on UDP (`quic`), never here.
        ListenerProtocol::Http1 | ListenerProtocol::Http3 => false,
        ListenerProtocol::Auto => {
            match sniff(&stream, &mut buf, &mut shutdown, &mut listener.stop).await {
                Some(h2) => h2,
                None => return,
            }
        }
    };
    let info = Arc::new(ConnInfo {
        client_text: Default::default(),
        client: peer,
        client_ip: ConnInfo::client_ip_value(peer),
        listener: listener.name.clone(),
        listener_hint: listener.hint,
        scheme: "http",
        peer_identity: None,
        forward_client_cert: None,
        // weft's own HTTP/1.1 server holds heads to the limit as it reads them.
        own_h1: !h2,
    });
    if h2 {
        Box::pin(serve_h2(
            Rewind::new(buf, stream),
            peer,
            listener,
            handle,
            shutdown,
            info,
            http,
        ))
        .await;
    } else {
        let stop = h1::Stop {
            shutdown,
            listener: listener.stop,
        };
        h1::serve(stream, buf, info, handle, stop, http).await;
    }
}

/// A TLS connection: the handshake (bounded by the listener's timeout, abandoned if
/// the worker or listener stops), then HTTP/2 or HTTP/1.1 as ALPN chose, both served by
/// hyper on the decrypted stream and both into the same exchange.
#[allow(
    clippy::too_many_arguments,
    reason = "the connection, its stop signals and the listener's settings, as the plaintext path takes them"
)]
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    mut listener: Accepting,
    handle: SnapshotHandle,
    mut shutdown: watch::Receiver<bool>,
    tls: &ServerTls,
    h2_only: bool,
    http: HttpOptions,
) {
    let accepted = tokio::select! {
        a = tls.accept(stream, peer, &listener.name) => a,
        _ = shutdown.changed() => None,
        _ = listener.stop.changed() => None,
    };
    let Some(accepted) = accepted else { return };
    let info = Arc::new(ConnInfo {
        client_text: Default::default(),
        client: peer,
        client_ip: ConnInfo::client_ip_value(peer),
        listener: listener.name.clone(),
        listener_hint: listener.hint,
        scheme: "https",
        peer_identity: accepted.peer_identity,
        forward_client_cert: accepted.forward_client_cert,
        own_h1: false,
    });
    if accepted.h2 || h2_only {
        serve_h2(
            accepted.stream,
            peer,
            listener,
            handle,
            shutdown,
            info,
            http,
        )
        .await;
    } else {
        serve_h1_hyper(
            accepted.stream,
            peer,
            listener,
            handle,
            shutdown,
            info,
            http,
        )
        .await;
    }
}

/// HTTP/1.1 over TLS, by hyper (weft's own HTTP/1.1 server reads the socket directly).
/// An upgrade (WebSocket) the upstream accepts joins hyper's upgraded connection to the
/// upstream's, as on cleartext.
async fn serve_h1_hyper<I>(
    io: I,
    peer: SocketAddr,
    mut listener: Accepting,
    handle: SnapshotHandle,
    mut shutdown: watch::Receiver<bool>,
    info: Arc<ConnInfo>,
    http: HttpOptions,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stop = shutdown.clone();
    let activity = Arc::new(Activity::default());
    let seen = activity.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        let info = info.clone();
        let snapshot = handle.load_full();
        let mut stop = stop.clone();
        let busy = seen.begin();
        async move {
            let on_upgrade = hyper::upgrade::on(&mut req);
            let req = req.map(ProxyBody::Incoming);
            let mut resp = exchange::serve(snapshot, &info, req).await;
            // (Until the response head, as for HTTP/2: hyper closes an idle keep-alive
            // connection only after a response has been written whole.)
            drop(busy);
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                if let Some(side) = resp.extensions().get::<Upgraded>().and_then(Upgraded::take) {
                    let h = resp.headers_mut();
                    h.insert(
                        http::header::CONNECTION,
                        HeaderValue::from_static("upgrade"),
                    );
                    h.insert(http::header::UPGRADE, side.protocol.clone());
                    tokio::spawn(async move {
                        let client = match on_upgrade.await {
                            Ok(c) => TokioIo::new(c),
                            Err(e) => {
                                tracing::debug!(peer = %info.client, "upgrade not completed: {e}");
                                return;
                            }
                        };
                        let stopped = async move {
                            let _ = stop.changed().await;
                        };
                        let r = super::tunnel::tunnel(
                            client,
                            BytesMut::new(),
                            side,
                            stopped,
                            super::tunnel::TUNNEL_IDLE,
                        )
                        .await;
                        tracing::debug!(peer = %info.client, "upgraded connection ended: {r:?}");
                    });
                }
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // Room for the exchange to answer an over-limit head itself (431 with
        // `x-weft-error`); beyond this hyper answers 431 on its own.
        .max_buf_size(hyper_head_limit(http.max_request_headers))
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        _ = listener.stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        _ = activity.idle_for(http.idle_timeout) => {
            tracing::debug!(%peer, "idle connection closed");
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        _ = activity.overload_ends() => {
            tracing::debug!(%peer, "connection closed: overload");
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn serve_h2<I>(
    io: I,
    peer: SocketAddr,
    mut listener: Accepting,
    handle: SnapshotHandle,
    mut shutdown: watch::Receiver<bool>,
    info: Arc<ConnInfo>,
    http: HttpOptions,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let seen = activity.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let info = info.clone();
        let snapshot = handle.load_full();
        let busy = seen.begin();
        async move {
            let req = req.map(ProxyBody::Incoming);
            let response = exchange::serve(snapshot, &info, req).await;
            // (Until the response head: a stream still sending its body when the
            // connection goes idle finishes after the GOAWAY, as graceful shutdown lets
            // it; wrapping every body to watch its end would cost every response.)
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        // As for HTTP/1.1: the exchange answers heads over the listener's limit; h2
        // answers a bare 431 only beyond this.
        .max_header_list_size(hyper_head_limit(http.max_request_headers) as u32)
        .keep_alive_interval(Duration::from_secs(30));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        _ = listener.stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        _ = activity.idle_for(http.idle_timeout) => {
            tracing::debug!(%peer, "idle connection closed (GOAWAY)");
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        _ = activity.overload_ends() => {
            tracing::debug!(%peer, "connection closed: overload (GOAWAY)");
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A hyper-served connection's requests in progress and when the last one ended, for
/// its idle timeout.
#[derive(Default)]
struct Activity {
    active: std::sync::atomic::AtomicUsize,
    /// [`crate::clock::process_millis`] when the last request ended (or the
    /// connection began, 0).
    last_ms: std::sync::atomic::AtomicU64,
}

/// A request in progress on an [`Activity`].
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        self.0
            .last_ms
            .store(crate::clock::process_millis(), Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        self.active
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Resolves once the overload actions end this connection: at once under
    /// `disable_keepalive`, once it has no request in progress under `close_idle`.
    async fn overload_ends(&self) {
        use std::sync::atomic::Ordering;
        let mut rx = crate::overload::watch();
        loop {
            let mask = *rx.borrow_and_update();
            if mask & Action::DisableKeepalive.bit() != 0 {
                return;
            }
            if mask & Action::CloseIdle.bit() != 0 {
                if self.active.load(Ordering::Relaxed) == 0 {
                    return;
                }
                // Busy: looked at again soon, while the action is in force.
                tokio::select! {
                    _ = rx.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Resolves once no request has been in progress for `idle`.
    async fn idle_for(&self, idle: Duration) {
        use std::sync::atomic::Ordering;
        let idle_ms = idle.as_millis() as u64;
        let started = crate::clock::process_millis();
        self.last_ms.store(started, Ordering::Relaxed);
        loop {
            let last = self.last_ms.load(Ordering::Relaxed);
            let now = crate::clock::process_millis();
            let due = last + idle_ms;
            if self.active.load(Ordering::Relaxed) == 0 && now >= due {
                return;
            }
            let wait = if now >= due { idle_ms } else { due - now };
            tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
        }
    }
}
