//! The built-in load generator: kept-alive HTTP/1.1 connections (one request in flight
//! on each, as wrk) or HTTP/2 connections with several streams each (as h2load), every
//! response read to its end and its latency recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::bench::stats::Nanos;
use crate::runner::RequestSpec;

/// What the connections saw during the measured window.
#[derive(Default)]
pub struct Tally {
    pub latency: Nanos,
    pub statuses: BTreeMap<u16, u64>,
    /// Connections that failed or responses that could not be read.
    pub errors: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latency.merge(&other.latency);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_insert(0) += n;
        }
        self.errors += other.errors;
    }

    /// Responses received in the window.
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// When the measured window opens and when everything stops.
#[derive(Clone, Copy)]
pub struct Window {
    pub from: Instant,
    pub until: Instant,
}

impl Window {
    fn record(&self, tally: &mut Tally, started: Instant, status: u16) {
        if started >= self.from {
            tally.latency.record(started.elapsed().as_nanos() as u64);
            *tally.statuses.entry(status).or_insert(0) += 1;
        }
    }
}

/// The request as HTTP/1.1 bytes.
pub fn encode_http1(spec: &RequestSpec) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        spec.method, spec.path, spec.authority
    )
    .into_bytes();
    for (name, value) in &spec.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !spec.body.is_empty() {
        out.extend_from_slice(format!("Content-Length: {}\r\n", spec.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&spec.body);
    out
}

/// HTTP/1.1: `connections` connections, each sending the request again as soon as the
/// response is in.
pub async fn http1(
    addr: SocketAddr,
    request: Arc<[u8]>,
    connections: usize,
    window: Window,
) -> Tally {
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(http1_connection(addr, request.clone(), window)))
        .collect();
    let mut tally = Tally::default();
    for t in tasks {
        if let Ok(t) = t.await {
            tally.merge(t);
        }
    }
    tally
}

async fn http1_connection(addr: SocketAddr, request: Arc<[u8]>, window: Window) -> Tally {
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(8192);
    'connect: while Instant::now() < window.until {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tally.errors += 1;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        while Instant::now() < window.until {
            let started = Instant::now();
            if stream.write_all(&request).await.is_err() {
                tally.errors += 1;
                continue 'connect;
            }
            match read_response(&mut stream, &mut buf).await {
                Some((status, keep)) => {
                    window.record(&mut tally, started, status);
                    if !keep {
                        continue 'connect;
                    }
                }
                None => {
                    tally.errors += 1;
                    continue 'connect;
                }
            }
        }
        break;
    }
    tally
}

/// Reads one response; its status and whether the connection stays open.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, bool)> {
    buf.clear();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(head)) => {
                let status = parsed.code?;
                let mut length = None;
                let mut chunked = false;
                let mut keep = true;
                for h in parsed.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value).ok()?.trim().parse().ok();
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = h.value.eq_ignore_ascii_case(b"chunked");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        keep = !h.value.eq_ignore_ascii_case(b"close");
                    }
                }
                if chunked {
                    while !buf[head..].windows(5).any(|w| w == b"0\r\n\r\n") {
                        read_more(stream, buf).await?;
                    }
                } else {
                    let need = head + length.unwrap_or(0);
                    while buf.len() < need {
                        read_more(stream, buf).await?;
                    }
                }
                return Some((status, keep));
            }
            Ok(httparse::Status::Partial) => read_more(stream, buf).await?,
            Err(_) => return None,
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(8192);
    }
    match stream.read_buf(buf).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(()),
    }
}

/// HTTP/2 with prior knowledge: `connections` connections with `streams` requests in
/// flight on each.
pub async fn http2(
    addr: SocketAddr,
    spec: Arc<RequestSpec>,
    connections: usize,
    streams: usize,
    window: Window,
) -> Tally {
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(http2_connection(addr, spec.clone(), streams, window)))
        .collect();
    let mut tally = Tally::default();
    for t in tasks {
        if let Ok(t) = t.await {
            tally.merge(t);
        }
    }
    tally
}

async fn http2_connection(
    addr: SocketAddr,
    spec: Arc<RequestSpec>,
    streams: usize,
    window: Window,
) -> Tally {
    let mut tally = Tally::default();
    let Ok(stream) = TcpStream::connect(addr).await else {
        tally.errors += 1;
        return tally;
    };
    let _ = stream.set_nodelay(true);
    let Ok((sender, conn)) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await
    else {
        tally.errors += 1;
        return tally;
    };
    tokio::spawn(conn);
    let uri: http::Uri = format!("http://{}{}", spec.authority, spec.path)
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("http://bench.local/"));
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let mut sender = sender.clone();
            let spec = spec.clone();
            let uri = uri.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < window.until {
                    let mut req = http::Request::new(Full::new(spec.body.clone()));
                    *req.method_mut() = spec.method.clone();
                    *req.uri_mut() = uri.clone();
                    *req.headers_mut() = spec.headers.clone();
                    let started = Instant::now();
                    match sender.send_request(req).await {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            if resp.into_body().collect().await.is_err() {
                                tally.errors += 1;
                                continue;
                            }
                            window.record(&mut tally, started, status);
                        }
                        Err(_) => {
                            tally.errors += 1;
                            break;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    for t in tasks {
        if let Ok(t) = t.await {
            tally.merge(t);
        }
    }
    tally
}
