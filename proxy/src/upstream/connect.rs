//! Opening a connection to an endpoint and starting HTTP on it: HTTP/1.1 connections are
//! driven by the requests using them (see [`super::h1`]); an HTTP/2 connection, shared
//! by concurrent requests, runs in a task of its own.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::body::ProxyBody;
use crate::config::model::UpstreamProtocol;
use crate::error::UpstreamFailure;

/// A connection ready to send requests on.
pub enum Conn {
    /// HTTP/1.1: one request at a time, driven by its user.
    H1(Box<crate::net::UpstreamConn>),
    /// HTTP/2: many at once.
    H2(http2::SendRequest<ProxyBody>),
}

/// Connects to `addr` within `timeout` and performs the HTTP handshake; `slot` (a
/// circuit breaker's place among open connections) is held as long as the connection
/// stays open.
pub async fn connect(
    addr: SocketAddr,
    protocol: UpstreamProtocol,
    timeout: Duration,
    slot: Option<super::breaker::Slot>,
) -> Result<Conn, (UpstreamFailure, String)> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err((
                UpstreamFailure::ConnectTimeout,
                format!("connecting to {addr} took over {timeout:?}"),
            ))
        }
        Ok(Err(e)) => {
            return Err((
                UpstreamFailure::ConnectFailure,
                format!("connecting to {addr}: {e}"),
            ))
        }
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let handshake_failed = |e: hyper::Error| {
        (
            UpstreamFailure::ConnectFailure,
            format!("HTTP handshake with {addr}: {e}"),
        )
    };
    match protocol {
        UpstreamProtocol::Http1 => {
            let mut conn = crate::net::UpstreamConn::new(stream);
            conn.held = slot.map(|s| Box::new(s) as Box<dyn std::any::Any + Send + Sync>);
            Ok(Conn::H1(conn))
        }
        UpstreamProtocol::Http2 => {
            let io = TokioIo::new(stream);
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .handshake(io)
                .await
                .map_err(handshake_failed)?;
            tokio::spawn(async move {
                let _held = slot;
                if let Err(e) = conn.await {
                    tracing::debug!(%addr, "upstream connection ended: {e}");
                }
            });
            Ok(Conn::H2(send))
        }
    }
}
