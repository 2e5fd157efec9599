//! The tunnel an upgraded connection becomes (WebSocket and the like, passed through as
//! Envoy and Linkerd do).
//!
//! A client's `Connection: upgrade` + `Upgrade: <protocol>` request, without a body, is
//! routed and filtered like any other (`exchange::upgrade`); the upgrade is then asked
//! of the upstream on a connection of its own. When the upstream answers 101 Switching
//! Protocols, the upstream connection travels with the response (a
//! [`crate::net::Upgraded`] extension) to the client's connection, which writes the 101
//! and from then on copies bytes both ways ([`tunnel`]) until both sides have closed,
//! the worker stops, or no byte has moved for [`TUNNEL_IDLE`]. Any other answer is an
//! ordinary response, and the connections stay HTTP.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::net::UpstreamSide;

/// How long a tunnel may carry no byte either way before both connections are closed
/// (Envoy applies its `stream_idle_timeout`, 5 minutes by default, to upgraded streams
/// too). WebSocket applications that idle longer send pings.
pub const TUNNEL_IDLE: Duration = Duration::from_secs(300);

/// Copies bytes both ways between the client and the upstream, after first passing on
/// what each sent early, until both directions have ended (each end's close is passed
/// to the other as a half-close), `stop` completes, or no byte has moved either way
/// for `idle` (a `TimedOut` error). Returns the bytes copied (client to upstream,
/// upstream to client).
pub async fn tunnel<C: AsyncRead + AsyncWrite + Unpin>(
    client: C,
    client_early: BytesMut,
    side: UpstreamSide,
    stop: impl std::future::Future<Output = ()>,
    idle: Duration,
) -> std::io::Result<(u64, u64)> {
    let UpstreamSide {
        stream: mut upstream,
        early,
        ..
    } = side;
    let mut client = client;
    upstream.write_all(&client_early).await?;
    client.write_all(&early).await?;
    let activity = Activity::new();
    let mut client = Tracked {
        inner: client,
        activity: &activity,
    };
    let mut upstream = Tracked {
        inner: upstream,
        activity: &activity,
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let quiet = async {
        loop {
            let since = activity.since();
            if since >= idle {
                return;
            }
            tokio::time::sleep(idle - since).await;
        }
    };
    tokio::select! {
        r = copy => r.map(|(up, down)| (up + client_early.len() as u64, down + early.len() as u64)),
        () = stop => Ok((0, 0)),
        () = quiet => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no bytes either way for {idle:?}"),
        )),
    }
}

/// When bytes last moved through a tunnel, either way.
struct Activity {
    base: Instant,
    /// Nanoseconds after `base`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.base.elapsed().as_nanos() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// How long since bytes last moved.
    fn since(&self) -> Duration {
        let last = Duration::from_nanos(self.last.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// A stream that records in an [`Activity`] every read or write that moved bytes.
struct Tracked<'a, S> {
    inner: S,
    activity: &'a Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use tokio::net::TcpStream;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn a_quiet_tunnel_is_closed_and_a_busy_one_is_not() {
        use tokio::io::AsyncReadExt;
        let idle = Duration::from_millis(300);
        // Busy: a byte each way every 100 ms for a second, well past `idle`.
        let (mut client, client_proxy) = pair().await;
        let (upstream_proxy, mut upstream) = pair().await;
        let side = UpstreamSide {
            stream: upstream_proxy,
            early: BytesMut::new(),
            protocol: HeaderValue::from_static("x"),
        };
        let t = tokio::spawn(tunnel(
            client_proxy,
            BytesMut::new(),
            side,
            std::future::pending(),
            idle,
        ));
        let mut byte = [0u8; 1];
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.write_all(b"c").await.unwrap();
            upstream.read_exact(&mut byte).await.unwrap();
            upstream.write_all(b"u").await.unwrap();
            client.read_exact(&mut byte).await.unwrap();
        }
        assert!(!t.is_finished(), "a busy tunnel was closed");
        // Quiet: nothing moves, and the tunnel ends on its own, closing both sides.
        let started = Instant::now();
        let err = t.await.unwrap().expect_err("a quiet tunnel must end");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            client.read(&mut byte).await.unwrap(),
            0,
            "the client sees the close"
        );
        assert_eq!(
            upstream.read(&mut byte).await.unwrap(),
            0,
            "so does the upstream"
        );
    }
}
