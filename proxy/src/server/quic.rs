//! HTTP/3: a QUIC endpoint (quinn) per worker on the listener's UDP socket, HTTP/3
//! framing by h3, and every request into the same exchange as TCP's. Each new
//! connection is accepted with the TLS of the snapshot current then, so a reload's new
//! certificates apply to new connections as on TCP.

use std::net::UdpSocket;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::sync::watch;

use super::accepting::{Accepting, Live, LiveGuard};
use crate::body::{sized_channel, ProxyBody};
use crate::exchange::{self, ConnInfo};
use crate::snapshot::SnapshotHandle;

type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;
type H3Send = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type H3Recv = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// The listener's QUIC config in the current snapshot.
fn quic_config(handle: &SnapshotHandle, listener: &Accepting) -> Option<Arc<quinn::ServerConfig>> {
    handle
        .load()
        .listener(&listener.name, listener.hint)
        .and_then(|l| l.tls.as_ref())
        .and_then(|t| t.quic.clone())
}

/// Serves a listener's UDP socket until shutdown or the listener's removal.
pub async fn serve_endpoint(
    socket: UdpSocket,
    mut listener: Accepting,
    handle: SnapshotHandle,
    mut shutdown: watch::Receiver<bool>,
    live: Arc<Live>,
) {
    let Some(config) = quic_config(&handle, &listener) else {
        tracing::error!(listener = %listener.name, "an HTTP/3 listener without TLS");
        return;
    };
    let endpoint = match quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(Arc::unwrap_or_clone(config)),
        socket,
        Arc::new(quinn::TokioRuntime),
    ) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(listener = %listener.name, "cannot use a UDP socket: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    let Some(config) = quic_config(&handle, &listener) else {
                        incoming.refuse();
                        continue;
                    };
                    let guard = live.enter();
                    let (listener, handle, shutdown) = (listener.clone(), handle.clone(), shutdown.clone());
                    tokio::spawn(serve_connection(incoming, config, listener, handle, shutdown, guard));
                }
                None => break,
            },
            _ = shutdown.changed() => break,
            _ = listener.stop.changed() => break,
        }
    }
    // Connections were told to go away (GOAWAY) by their own tasks; wait for them.
    endpoint.wait_idle().await;
}

async fn serve_connection(
    incoming: quinn::Incoming,
    config: Arc<quinn::ServerConfig>,
    mut listener: Accepting,
    handle: SnapshotHandle,
    mut shutdown: watch::Receiver<bool>,
    _live: LiveGuard,
) {
    let client = incoming.remote_address();
    let snapshot = handle.load_full();
    let Some((tls, http)) = snapshot
        .listener(&listener.name, listener.hint)
        .and_then(|l| Some((l.tls.clone()?, l.http)))
    else {
        incoming.refuse();
        return;
    };
    drop(snapshot);
    let connecting = match incoming.accept_with(config) {
        Ok(c) => c,
        Err(e) => {
            tls.quic_handshake_failed(&e, client, &listener.name);
            return;
        }
    };
    let conn = match tokio::time::timeout(tls.handshake_timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tls.quic_handshake_failed(&e, client, &listener.name);
            return;
        }
        Err(_) => {
            tls.quic_handshake_failed(&quinn::ConnectionError::TimedOut, client, &listener.name);
            return;
        }
    };
    tls.quic_handshake_done();
    let certs = conn.peer_identity().and_then(|any| {
        any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()
    });
    let (peer_identity, forward_client_cert) = tls.identify(certs.as_ref().and_then(|c| c.first()));
    let info = Arc::new(ConnInfo {
        client_text: Default::default(),
        client,
        client_ip: ConnInfo::client_ip_value(client),
        listener: listener.name.clone(),
        listener_hint: listener.hint,
        scheme: "https",
        peer_identity,
        forward_client_cert,
        own_h1: false,
    });
    // As over HTTP/2: the exchange answers heads over the listener's limit itself.
    let limit = super::conn::hyper_head_limit(http.max_request_headers) as u64;
    let mut h3: H3Conn = match h3::server::builder()
        .max_field_section_size(limit)
        .build(h3_quinn::Connection::new(conn))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%client, "HTTP/3 connection setup failed: {e}");
            return;
        }
    };
    let mut going_away = false;
    loop {
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let (info, handle) = (info.clone(), handle.clone());
                    tokio::spawn(async move {
                        match resolver.resolve_request().await {
                            Ok((req, stream)) => serve_request(req, stream, info, handle).await,
                            Err(e) => tracing::debug!(client = %info.client, "HTTP/3 request not read: {e}"),
                        }
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%client, "HTTP/3 connection ended: {e}");
                    break;
                }
            },
            _ = shutdown.changed(), if !going_away => {
                going_away = true;
                let _ = h3.shutdown(0).await;
            }
            _ = listener.stop.changed(), if !going_away => {
                going_away = true;
                let _ = h3.shutdown(0).await;
            }
        }
    }
}

/// One request: its body fed from the stream, the exchange, the response written back.
async fn serve_request(
    req: Request<()>,
    stream: h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    info: Arc<ConnInfo>,
    handle: SnapshotHandle,
) {
    let (mut send, mut recv): (H3Send, H3Recv) = stream.split();
    // The first read tells a request without a body (its HEADERS ended the stream)
    // from one with: only the latter gets a streaming body.
    let body = match recv.recv_data().await {
        Ok(None) => ProxyBody::Empty,
        Ok(Some(mut first)) => {
            // With a `content-length`, the body is held to it (RFC 9114 section 4.1.2: a
            // request whose DATA differs is malformed) and an HTTP/1.1 upstream gets it.
            let declared = req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let (tx, body) = sized_channel(4, declared);
            let first = first.copy_to_bytes(first.remaining());
            tokio::spawn(async move {
                let mut total = first.len() as u64;
                let mismatch = |total: u64| -> crate::body::BoxError {
                    format!("the body's DATA ({total} bytes) differs from its content-length")
                        .into()
                };
                if declared.is_some_and(|d| total > d) {
                    let _ = tx.send(Err(mismatch(total))).await;
                    return;
                }
                if tx.send(Ok(http_body::Frame::data(first))).await.is_err() {
                    return;
                }
                loop {
                    match recv.recv_data().await {
                        Ok(Some(mut chunk)) => {
                            let bytes = chunk.copy_to_bytes(chunk.remaining());
                            total += bytes.len() as u64;
                            if declared.is_some_and(|d| total > d) {
                                let _ = tx.send(Err(mismatch(total))).await;
                                return;
                            }
                            if tx.send(Ok(http_body::Frame::data(bytes))).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send(Err(Box::new(e))).await;
                            return;
                        }
                    }
                }
                if declared.is_some_and(|d| total != d) {
                    let _ = tx.send(Err(mismatch(total))).await;
                    return;
                }
                if let Ok(Some(trailers)) = recv.recv_trailers().await {
                    let _ = tx.send(Ok(http_body::Frame::trailers(trailers))).await;
                }
            });
            ProxyBody::Channel(body)
        }
        Err(e) => {
            tracing::debug!(client = %info.client, "HTTP/3 request body: {e}");
            return;
        }
    };
    let snapshot = handle.load_full();
    let response = exchange::serve(snapshot, &info, req.map(|()| body)).await;
    if let Err(e) = respond(&mut send, response).await {
        tracing::debug!(client = %info.client, "HTTP/3 response not sent: {e}");
    }
}

async fn respond(
    send: &mut H3Send,
    response: Response<ProxyBody>,
) -> Result<(), h3::error::StreamError> {
    let (mut parts, mut body) = response.into_parts();
    // Connection-specific headers have no place in HTTP/3 (RFC 9114, 4.2).
    for name in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::HeaderName::from_static("keep-alive"),
        http::HeaderName::from_static("proxy-connection"),
    ] {
        parts.headers.remove(name);
    }
    parts.version = http::Version::HTTP_3;
    send.send_response(Response::from_parts(parts, ())).await?;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // The upstream's body broke off: the client must not take it as complete.
            send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
            return Ok(());
        };
        match frame.into_data() {
            Ok(data) => {
                if !data.is_empty() {
                    send.send_data(data).await?;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                }
            }
        }
    }
    send.finish().await
}
