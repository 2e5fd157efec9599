//! Attempts to a cluster spoken to over TLS. The handshake's ALPN decides the protocol:
//! HTTP/2 keeps one multiplexed connection per endpoint and worker, HTTP/1.1 a pool of
//! kept-alive connections, both served by hyper's client on the decrypted stream and
//! kept apart from cleartext connections and other clusters' TLS (pools are keyed by
//! endpoint and the cluster's TLS config).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Uri, Version};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::cluster::Cluster;
use super::send::{classify, AttemptError, RequestHead, UpstreamResponse};
use crate::body::ProxyBody;
use crate::error::UpstreamFailure;
use crate::tls::ClientTls;

/// Endpoint and the cluster's TLS config.
type Key = (SocketAddr, usize);

thread_local! {
    static H1: RefCell<HashMap<Key, Vec<http1::SendRequest<ProxyBody>>>> = RefCell::new(HashMap::new());
    static H2: RefCell<HashMap<Key, http2::SendRequest<ProxyBody>>> = RefCell::new(HashMap::new());
}

enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

/// A pooled connection for `key`: the HTTP/2 one if open, else an idle HTTP/1.1 one.
fn pooled(key: Key) -> Option<Sender> {
    let h2 = H2.with(|p| {
        let mut p = p.borrow_mut();
        match p.get(&key) {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                p.remove(&key);
                None
            }
            None => None,
        }
    });
    if let Some(s) = h2 {
        return Some(Sender::H2(s));
    }
    H1.with(|p| {
        let mut p = p.borrow_mut();
        let idle = p.get_mut(&key)?;
        // Connections still reading a response body stay; closed ones go.
        idle.retain(|s| !s.is_closed());
        let i = idle.iter().position(|s| s.is_ready())?;
        Some(Sender::H1(idle.swap_remove(i)))
    })
}

/// Gives an HTTP/1.1 connection back: it takes the next request once its response
/// body has been read.
fn give_back(key: Key, send: http1::SendRequest<ProxyBody>, max_idle: usize) {
    H1.with(|p| {
        let mut p = p.borrow_mut();
        let idle = p.entry(key).or_default();
        if idle.len() < max_idle {
            idle.push(send);
        }
    })
}

/// Connects, shakes hands and starts HTTP as ALPN chose.
async fn connect(
    cluster: &Cluster,
    tls: &ClientTls,
    addr: SocketAddr,
) -> Result<Sender, AttemptError> {
    let (_pending, open) = super::send::connection_slots(cluster)?;
    cluster.stats.connects.inc();
    let timeout = cluster.connect_timeout;
    let fail = |failure, detail: String| AttemptError::new(failure, detail, Some(addr));
    let setup = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| {
            fail(
                UpstreamFailure::ConnectFailure,
                format!("connecting to {addr}: {e}"),
            )
        })?;
        let _ = tcp.set_nodelay(true);
        let (stream, h2) = tls.connect(addr, tcp).await.map_err(|e| {
            fail(
                UpstreamFailure::ConnectFailure,
                format!("TLS handshake with {addr}: {}", crate::tls::describe(&e)),
            )
        })?;
        let io = TokioIo::new(stream);
        let handshake = |e: hyper::Error| {
            fail(
                UpstreamFailure::ConnectFailure,
                format!("HTTP handshake with {addr}: {e}"),
            )
        };
        if h2 {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30))
                .handshake(io)
                .await
                .map_err(handshake)?;
            tokio::spawn(async move {
                let _held = open;
                if let Err(e) = conn.await {
                    tracing::debug!(%addr, "upstream connection ended: {e}");
                }
            });
            Ok(Sender::H2(send))
        } else {
            let (send, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(handshake)?;
            tokio::spawn(async move {
                let _held = open;
                if let Err(e) = conn.await {
                    tracing::debug!(%addr, "upstream connection ended: {e}");
                }
            });
            Ok(Sender::H1(send))
        }
    };
    match tokio::time::timeout(timeout, setup).await {
        Ok(r) => r,
        Err(_) => Err(fail(
            UpstreamFailure::ConnectTimeout,
            format!("connecting to {addr} over TLS took over {timeout:?}"),
        )),
    }
}

fn request(head: RequestHead, body: ProxyBody, h2: bool) -> Result<Request<ProxyBody>, String> {
    let mut req = Request::new(body);
    *req.method_mut() = head.method;
    *req.headers_mut() = head.headers;
    if h2 {
        *req.uri_mut() = Uri::builder()
            .scheme("https")
            .authority(head.authority.as_str())
            .path_and_query(head.path)
            .build()
            .map_err(|_| "invalid authority".to_owned())?;
        *req.version_mut() = Version::HTTP_2;
    } else {
        *req.uri_mut() = Uri::from(head.path);
        *req.version_mut() = Version::HTTP_11;
        let host = http::HeaderValue::from_str(&head.authority)
            .map_err(|_| "invalid authority".to_owned())?;
        req.headers_mut().insert(http::header::HOST, host);
    }
    Ok(req)
}

/// Sends one attempt to `addr` over TLS and waits for the response head. A pooled
/// connection that turns out closed before the request left is replaced, once.
pub async fn send(
    cluster: &Cluster,
    tls: &ClientTls,
    addr: SocketAddr,
    head: RequestHead,
    body: ProxyBody,
) -> Result<UpstreamResponse, AttemptError> {
    let key = (addr, tls.id);
    let (mut sender, mut reused) = match pooled(key) {
        Some(s) => (s, true),
        None => (connect(cluster, tls, addr).await?, false),
    };
    let broken =
        |e: &hyper::Error| AttemptError::new(classify(e), format!("{addr}: {e}"), Some(addr));
    // Until the new connection is known to speak the same protocol, keep the parts.
    let mut parts = Some((head, body));
    let mut unsent: Option<Request<ProxyBody>> = None;
    loop {
        let ready = match &mut sender {
            Sender::H2(s) => s.ready().await,
            Sender::H1(s) => s.ready().await,
        };
        if let Err(e) = ready {
            if reused {
                sender = connect(cluster, tls, addr).await?;
                reused = false;
                continue;
            }
            return Err(broken(&e));
        }
        let h2 = matches!(sender, Sender::H2(_));
        let req = match unsent.take() {
            Some(r) if (r.version() == Version::HTTP_2) == h2 => r,
            Some(_) => {
                return Err(AttemptError::new(
                    UpstreamFailure::ProtocolError,
                    format!("{addr} changed its protocol between connections"),
                    Some(addr),
                ))
            }
            None => {
                let (head, body) = parts.take().expect("the request is built once");
                request(head, body, h2)
                    .map_err(|d| AttemptError::new(UpstreamFailure::ProtocolError, d, Some(addr)))?
            }
        };
        let result = match &mut sender {
            Sender::H2(s) => {
                H2.with(|p| p.borrow_mut().insert(key, s.clone()));
                s.try_send_request(req).await
            }
            Sender::H1(s) => s.try_send_request(req).await,
        };
        match result {
            Ok(resp) => {
                if let Sender::H1(s) = sender {
                    give_back(key, s, cluster.max_idle);
                }
                let (head, incoming) = resp.into_parts();
                return Ok(UpstreamResponse {
                    head,
                    body: ProxyBody::Incoming(incoming),
                    addr,
                });
            }
            Err(mut e) => match e.take_message() {
                Some(r) if reused => {
                    unsent = Some(r);
                    sender = connect(cluster, tls, addr).await?;
                    reused = false;
                }
                _ => return Err(broken(&e.into_error())),
            },
        }
    }
}
