//! A real upstream server for tests: HTTP/1.1 and HTTP/2 (prior knowledge) on an
//! ephemeral loopback port, answering by path:
//!
//! - `/status/<code>`: that status;
//! - `/slow/<ms>`: waits, then answers;
//! - `/bytes/<n>`: a body of `n` bytes, streamed in 64 KiB chunks;
//! - `/drop`: closes the connection without answering;
//! - anything else: JSON describing the request (method, path, headers, body length,
//!   which server answered). Request bodies are counted as they stream, never held.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A running upstream. Stops when dropped.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections it accepted.
    pub connections: Arc<AtomicUsize>,
    /// Requests it answered.
    pub requests: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
    _thread: std::thread::JoinHandle<()>,
}

fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into()).boxed()
}

async fn answer(
    name: Arc<str>,
    req: Request<Incoming>,
    requests: Arc<AtomicUsize>,
) -> Result<Response<Body>, std::io::Error> {
    requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["status", code] => {
            let status = code
                .parse()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::OK);
            let mut r = Response::new(full(format!("status {status}")));
            *r.status_mut() = status;
            return Ok(r);
        }
        ["slow", ms] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        }
        ["bytes", n] => {
            let body = Repeat::new(n.parse().unwrap_or(0));
            return Ok(Response::new(body.boxed()));
        }
        ["chunked", n] => {
            // Length not announced: sent with chunked transfer coding.
            let body = Repeat::new(n.parse().unwrap_or(0)).unannounced();
            return Ok(Response::new(body.boxed()));
        }
        ["drop"] => return Err(std::io::Error::other("dropping the connection")),
        ["flaky", percent] => {
            // Fails with 503 this share of the time.
            let p: f64 = percent.parse().unwrap_or(0.0);
            if fastrand::f64() * 100.0 < p {
                let mut r = Response::new(full("flaky failure"));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return Ok(r);
            }
        }
        ["check", ..] => {
            // An authorization service: allows `Bearer good`, with a tenant header.
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if auth == Some("Bearer good") {
                let mut r = Response::new(full("ok"));
                r.headers_mut().insert("x-tenant", "acme".parse().unwrap());
                return Ok(r);
            }
            let mut r = Response::new(full("denied by the authorization service"));
            *r.status_mut() = StatusCode::FORBIDDEN;
            r.headers_mut().insert("x-authz", "denied".parse().unwrap());
            return Ok(r);
        }
        ["early"] => {
            // Refuses without reading the request body (as an upstream refusing a large
            // upload does).
            let mut r = Response::new(full("too large, not reading it"));
            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return Ok(r);
        }
        _ => {}
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let mut body = req.into_body();
    let mut body_len: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_len += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(e) => return Err(std::io::Error::other(e)),
        }
    }
    let json = serde_json::json!({
        "server": &*name,
        "method": method,
        "uri": uri,
        "version": version,
        "headers": headers,
        "body_len": body_len,
    });
    let mut r = Response::new(full(json.to_string()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut().insert("x-upstream", name.parse().unwrap());
    Ok(r)
}

/// A body of `n` bytes in 64 KiB chunks, made as it is read (the same chunk each time,
/// so it costs no memory whatever its size).
pub struct Repeat {
    left: u64,
    chunk: Bytes,
    announced: bool,
}

impl Repeat {
    /// `n` bytes.
    pub fn new(n: u64) -> Repeat {
        Repeat {
            left: n,
            chunk: Bytes::from(vec![b'x'; 64 << 10]),
            announced: true,
        }
    }

    /// Without telling its length up front (so HTTP/1.1 sends it chunked).
    pub fn unannounced(mut self) -> Repeat {
        self.announced = false;
        self
    }
}

impl http_body::Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let take = self.left.min(self.chunk.len() as u64);
        self.left -= take;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..take as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.announced {
            http_body::SizeHint::with_exact(self.left)
        } else {
            http_body::SizeHint::default()
        }
    }
}

impl Upstream {
    /// Starts an upstream named `name` (it says so in its answers).
    pub fn start(name: &str) -> Upstream {
        Upstream::start_delayed(name, Duration::ZERO)
    }

    /// Starts an upstream that waits `delay` before every answer (a slow endpoint).
    pub fn start_delayed(name: &str, delay: Duration) -> Upstream {
        let name: Arc<str> = name.into();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, mut stop_rx) = oneshot::channel::<()>();
        let (c, r) = (connections.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let (stream, _) = tokio::select! {
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                        _ = &mut stop_rx => return,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    let (name, r) = (name.clone(), r.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let (name, r) = (name.clone(), r.clone());
                            async move {
                                if !delay.is_zero() {
                                    tokio::time::sleep(delay).await;
                                }
                                answer(name, req, r).await
                            }
                        });
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("upstream started");
        Upstream {
            addr,
            connections,
            requests,
            _stop: stop,
            _thread: thread,
        }
    }
}
