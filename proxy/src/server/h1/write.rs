//! Writing a response: the head framed by the proxy (`content-length` when the body's
//! size is known, chunked otherwise, nothing for `HEAD`, 1xx, 204 and 304), `date` as
//! every HTTP server sends it, and the body streamed after it. A small body that is
//! already here goes out with the head, in one write.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderValue, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::net::TcpStream;

use crate::body::ProxyBody;
use weft_h1::wire::{push_chunk_size, push_decimal};
use weft_h1::{Framing, RawHeaders};

/// A body this small that is already here is sent with the head.
const COALESCE: usize = 16 << 10;

/// How long a client may accept none of a response's bytes before its connection is
/// closed (Envoy's `stream_idle_timeout` is also 5 minutes by default). A client that
/// stops reading would otherwise hold its connection, and the upstream connection
/// feeding it, for ever.
pub const WRITE_STALL: Duration = Duration::from_secs(300);

/// Writes all of `data`, waiting for the socket when it is full, at most
/// [`WRITE_STALL`] at a time.
pub async fn write_all(stream: &TcpStream, data: &[u8]) -> io::Result<()> {
    write_all_within(stream, data, WRITE_STALL).await
}

/// [`write_all`] with the stall limit given. The timer exists only while the socket is
/// full, so a client that keeps up costs none.
async fn write_all_within(stream: &TcpStream, mut data: &[u8], stall: Duration) -> io::Result<()> {
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(stall, stream.writable()).await {
                    Ok(ready) => ready?,
                    Err(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the client accepted no bytes for {stall:?}"),
                        ))
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

thread_local! {
    static DATE_CACHE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
}

/// The `date` value for now, formatted at most once a second per thread.
fn date() -> HeaderValue {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match &c.1 {
            Some(v) if c.0 == secs => v.clone(),
            _ => {
                let v = HeaderValue::from_maybe_shared(Bytes::from(httpdate::fmt_http_date(now)))
                    .expect("an HTTP date is a valid header value");
                *c = (secs, Some(v.clone()));
                v
            }
        }
    })
}

/// What the request that this response answers looked like.
pub struct Answering {
    /// A `HEAD` request: the response has no body whatever its headers say.
    pub head: bool,
    /// The client's version: an HTTP/1.0 client gets no chunked coding.
    pub version: Version,
}

/// Writes a 101 Switching Protocols head for an upgrade the upstream accepted: its
/// headers (as filters left them) with the proxy's own `Connection` and `Upgrade`.
pub async fn switching(
    stream: &TcpStream,
    parts: &http::response::Parts,
    protocol: &HeaderValue,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in parts.headers.iter() {
        if name == CONNECTION
            || name == UPGRADE
            || name == TRANSFER_ENCODING
            || name == CONTENT_LENGTH
            || name.as_str() == "keep-alive"
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: upgrade\r\nupgrade: ");
    out.extend_from_slice(protocol.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    write_all(stream, &out).await
}

/// Writes `resp`. Returns whether the connection may carry another request (the
/// caller's `keep` and the response agreeing); an error means the connection is done.
pub async fn response(
    stream: &TcpStream,
    resp: Response<ProxyBody>,
    to: &Answering,
    mut keep: bool,
) -> io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    if status.is_informational() {
        // Interim responses are not passed on; one as the final answer would leave the
        // client waiting for another.
        let bad = crate::error::ProxyError::Upstream {
            failure: crate::error::UpstreamFailure::ProtocolError,
            detail: format!("{status} as a final response"),
        };
        return Box::pin(response(
            stream,
            crate::exchange::error_response(&bad),
            to,
            false,
        ))
        .await;
    }
    let headers = &parts.headers;
    let bodiless = to.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Empty
    } else {
        match body.size_hint().exact() {
            Some(0) => Framing::Length(0),
            Some(n) => Framing::Length(n),
            None if to.version == Version::HTTP_11 => Framing::Chunked,
            None => Framing::Close,
        }
    };
    // A `HEAD` or 304 answer keeps the length its headers state; 1xx and 204 have none;
    // every other length is the proxy's own, from the body it sends.
    let keep_length = bodiless && !(status.is_informational() || status == StatusCode::NO_CONTENT);

    let raw = parts.extensions.get::<RawHeaders>();
    let mut out = Vec::with_capacity(256 + raw.map_or(0, |r| r.lines.len()));
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    // An upstream's headers as it sent them, already without what the proxy frames.
    if let Some(raw) = raw {
        out.extend_from_slice(&raw.lines);
        dated = raw.dated;
    }
    // One pass writes the headers, leaving out the ones the proxy frames itself.
    for (name, value) in headers.iter() {
        if name == CONNECTION {
            if value.as_bytes().eq_ignore_ascii_case(b"close") {
                keep = false;
            }
            continue;
        }
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && !keep_length) {
            continue;
        }
        if name == DATE {
            dated = true;
        } else if name.as_str() == "keep-alive" {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(&mut out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Close => keep = false,
        Framing::Empty => {}
    }
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    } else if to.version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let framing = if framing == Framing::Length(0) {
        Framing::Empty
    } else {
        framing
    };

    if framing == Framing::Empty {
        write_all(stream, &out).await?;
        return Ok(keep);
    }
    // The first piece of a body that is already here (a local answer, a short upstream
    // response read with its head) goes in the same write as the head.
    let mut sent: u64 = 0;
    let mut ended = false;
    let first = {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(&mut body).poll_frame(&mut cx)
    };
    match first {
        Poll::Ready(Some(Ok(frame))) => {
            // Empty data frames (an HTTP/2 upstream's bare END_STREAM) carry nothing: in
            // chunked framing an empty chunk would end the body early.
            if let Some(data) = frame.into_data().ok().filter(|d| !d.is_empty()) {
                if let Framing::Length(n) = framing {
                    if data.len() as u64 > n {
                        return Err(io::Error::other("the body is longer than its length"));
                    }
                }
                if data.len() <= COALESCE {
                    frame_into(&mut out, &data, framing);
                    sent += data.len() as u64;
                } else {
                    write_all(stream, &out).await?;
                    out.clear();
                    write_data(stream, &data, framing).await?;
                    sent += data.len() as u64;
                }
            }
        }
        Poll::Ready(Some(Err(e))) => return Err(io::Error::other(e)),
        Poll::Ready(None) => ended = true,
        Poll::Pending => {}
    }
    if ended || body.is_end_stream() {
        finish(&mut out, framing, sent)?;
        write_all(stream, &out).await?;
        return Ok(keep && complete(framing, sent));
    }
    if !out.is_empty() {
        write_all(stream, &out).await?;
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not forwarded
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if let Framing::Length(n) = framing {
            if sent > n {
                return Err(io::Error::other("the body is longer than its length"));
            }
        }
        write_data(stream, &data, framing).await?;
    }
    let mut tail = Vec::new();
    finish(&mut tail, framing, sent)?;
    write_all(stream, &tail).await?;
    Ok(keep && complete(framing, sent))
}

fn complete(framing: Framing, sent: u64) -> bool {
    match framing {
        Framing::Length(n) => sent == n,
        Framing::Close => false,
        _ => true,
    }
}

/// The end of a body: the last chunk, or a check that the length was met.
fn finish(out: &mut Vec<u8>, framing: Framing, sent: u64) -> io::Result<()> {
    match framing {
        Framing::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
        Framing::Length(n) if sent != n => {
            return Err(io::Error::other(format!(
                "the body ended after {sent} of {n} bytes"
            )))
        }
        _ => {}
    }
    Ok(())
}

fn frame_into(out: &mut Vec<u8>, data: &[u8], framing: Framing) {
    if data.is_empty() {
        return;
    }
    if framing == Framing::Chunked {
        push_chunk_size(out, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

async fn write_data(stream: &TcpStream, data: &[u8], framing: Framing) -> io::Result<()> {
    if framing != Framing::Chunked {
        return write_all(stream, data).await;
    }
    if data.len() <= COALESCE {
        let mut out = Vec::with_capacity(data.len() + 12);
        frame_into(&mut out, data, framing);
        return write_all(stream, &out).await;
    }
    let mut size = Vec::with_capacity(20);
    push_chunk_size(&mut size, data.len());
    write_all(stream, &size).await?;
    write_all(stream, data).await?;
    write_all(stream, b"\r\n").await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `response` writes for `resp`, read from the other end of a loopback socket.
    async fn written(resp: Response<ProxyBody>, to: Answering) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let keep = response(&server, resp, &to, true).await.unwrap();
        drop(server);
        let mut out = Vec::new();
        let mut client = client;
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut out)
            .await
            .unwrap();
        format!("keep={keep}\n{}", String::from_utf8_lossy(&out))
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Far more than the socket buffers hold; the client never reads.
        let big = vec![b'x'; 64 << 20];
        let started = std::time::Instant::now();
        let err = write_all_within(&server, &big, Duration::from_millis(300))
            .await
            .expect_err("a stalled client cannot take 64 MiB");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(client);
    }

    #[tokio::test]
    async fn an_empty_first_frame_does_not_end_a_chunked_body_twice() {
        let (tx, body) = crate::body::channel(4);
        tx.send(Ok(http_body::Frame::data(Bytes::new())))
            .await
            .unwrap();
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"abc"))))
            .await
            .unwrap();
        drop(tx);
        let resp = Response::new(ProxyBody::Channel(body));
        let to = Answering {
            head: false,
            version: Version::HTTP_11,
        };
        let out = written(resp, to).await;
        assert!(out.starts_with("keep=true\nHTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("transfer-encoding: chunked"), "{out}");
        assert!(out.ends_with("\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), "{out:?}");
    }

    #[tokio::test]
    async fn a_final_1xx_becomes_502_and_closes() {
        let mut resp = Response::new(ProxyBody::Empty);
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let to = Answering {
            head: false,
            version: Version::HTTP_11,
        };
        let out = written(resp, to).await;
        assert!(out.starts_with("keep=false\nHTTP/1.1 502"), "{out}");
        assert!(out.contains("connection: close"), "{out}");
    }
}
