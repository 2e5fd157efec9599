//! Serving HTTP on one accepted connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::worker::{Accepting, LiveGuard};
use crate::config::model::ListenerProtocol;
use crate::exchange::{self, ConnInfo};
use crate::snapshot::SnapshotHandle;

fn builder(protocol: ListenerProtocol) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true)
        .max_buf_size(256 << 10);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .keep_alive_interval(Duration::from_secs(30));
    match protocol {
        ListenerProtocol::Auto => b,
        ListenerProtocol::Http1 => b.http1_only(),
        ListenerProtocol::Http2 => b.http2_only(),
    }
}

/// Serves a connection until it closes, or until shutdown lets it finish gracefully.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    mut listener: Accepting,
    handle: SnapshotHandle,
    mut shutdown: watch::Receiver<bool>,
    _live: LiveGuard,
) {
    let _ = stream.set_nodelay(true);
    // A listener removed by a reload just after accepting: its requests are answered
    // 503 `listener-removed` and the connection closed (see `exchange::serve`).
    let protocol = handle
        .load()
        .listener(&listener.name, listener.hint)
        .map_or(ListenerProtocol::Auto, |l| l.protocol);
    let info = Arc::new(ConnInfo {
        client: peer,
        client_ip: ConnInfo::client_ip_value(peer),
        listener: listener.name.clone(),
        listener_hint: listener.hint,
        scheme: "http",
        peer_identity: None,
    });
    let service = service_fn(move |req| {
        let info = info.clone();
        let snapshot = handle.load_full();
        async move { Ok::<_, Infallible>(exchange::serve(snapshot, &info, req).await) }
    });
    let builder = builder(protocol);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
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
    }
}
