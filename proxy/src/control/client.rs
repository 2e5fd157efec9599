//! A small HTTP/1.1 client for the control plane's API (`weft control push`, `status`,
//! `rollback`).

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Sends one request to `server` (`host:port`); returns the status and the body. An
/// answer that is not 2xx is an error carrying the control plane's message.
pub async fn call(
    server: &str,
    method: Method,
    path: &str,
    body: impl Into<Bytes>,
) -> anyhow::Result<Bytes> {
    let stream = TcpStream::connect(server)
        .await
        .map_err(|e| anyhow::anyhow!("control plane {server}: {e}"))?;
    let (mut send, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, server)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.into()))?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        let msg = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        anyhow::bail!("{path}: {status}: {msg}");
    }
    Ok(bytes)
}
