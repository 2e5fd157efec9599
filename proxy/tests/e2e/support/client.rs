//! Real HTTP clients for tests: HTTP/1.1 and HTTP/2 (prior knowledge) over hyper, and a
//! raw TCP client for malformed requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The body type of test requests.
pub type Body = BoxBody<Bytes, Infallible>;

/// An empty body.
pub fn empty() -> Body {
    Empty::new().boxed()
}

/// A body of bytes.
pub fn bytes(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (the test upstream's answers).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value the upstream saw for a request header, if it saw it.
    pub fn upstream_saw(&self, name: &str) -> Option<String> {
        self.json()["headers"][name][0].as_str().map(str::to_owned)
    }
}

/// Which HTTP version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.1.
    H1,
    /// HTTP/2 with prior knowledge.
    H2,
}

/// A client connection (kept alive across requests).
pub enum Conn {
    /// HTTP/1.1.
    H1(http1::SendRequest<Body>),
    /// HTTP/2.
    H2(http2::SendRequest<Body>),
}

impl Conn {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr, version: Version) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let io = TokioIo::new(stream);
        match version {
            Version::H1 => {
                let (send, conn) = http1::handshake(io).await.expect("h1 handshake");
                tokio::spawn(conn);
                Conn::H1(send)
            }
            Version::H2 => {
                let (send, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .expect("h2 handshake");
                tokio::spawn(conn);
                Conn::H2(send)
            }
        }
    }

    /// Sends a request and reads the whole response. `uri` is a path; `host` the authority.
    pub async fn send(&mut self, req: Request<Body>) -> Reply {
        self.try_send(req).await.expect("response")
    }

    /// [`Conn::send`], with a failed or reset exchange as an error instead of a panic.
    pub async fn try_send(&mut self, req: Request<Body>) -> Result<Reply, String> {
        let resp = match self {
            Conn::H1(s) => {
                s.ready().await.map_err(|e| format!("h1 not ready: {e}"))?;
                s.send_request(req).await
            }
            Conn::H2(s) => {
                s.ready().await.map_err(|e| format!("h2 not ready: {e}"))?;
                s.send_request(req).await
            }
        }
        .map_err(|e| format!("no response: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body cut: {e}"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Builds a request: a path for HTTP/1.1 (with a Host header), a full URI for HTTP/2.
pub fn request(
    version: Version,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Request<Body> {
    let mut b = Request::builder().method(method);
    let own_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
    b = match version {
        Version::H1 if own_host => b.uri(path),
        Version::H1 => b.uri(path).header("host", addr.to_string()),
        Version::H2 => b
            .uri(format!("http://{addr}{path}"))
            .version(http::Version::HTTP_2),
    };
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).unwrap()
}

/// One GET on a fresh HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut c = Conn::open(addr, Version::H1).await;
    c.send(request(
        Version::H1,
        addr,
        Method::GET,
        path,
        headers,
        empty(),
    ))
    .await
}

/// The text of a GET to a full URL (for the admin endpoint).
pub async fn get_text(url: &str) -> String {
    let uri: http::Uri = url.parse().unwrap();
    let addr: SocketAddr = uri.authority().unwrap().as_str().parse().unwrap();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let reply = get(addr, path, &[]).await;
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// A POST with no body to a full URL (for the admin endpoint): the status and the body.
pub async fn post_text(url: &str) -> (StatusCode, String) {
    let uri: http::Uri = url.parse().unwrap();
    let addr: SocketAddr = uri.authority().unwrap().as_str().parse().unwrap();
    let mut c = Conn::open(addr, Version::H1).await;
    let reply = c
        .send(request(
            Version::H1,
            addr,
            Method::POST,
            uri.path(),
            &[],
            empty(),
        ))
        .await;
    (
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned(),
    )
}

/// Writes raw bytes and returns what comes back until the server closes or 2 s pass.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
