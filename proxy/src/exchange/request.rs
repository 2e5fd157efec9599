//! The request's way in: admission (routing, the request as filters see it) and phase
//! 2, the request body.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::uri::PathAndQuery;
use http::{Method, Version};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use super::chain;
use super::headers::{for_upstream, join_cookies};
use super::route::destination;
use super::{ConnInfo, Exchange};
use crate::body::{channel, BodySender, ObservedBody, ProxyBody, ReplaySource};
use crate::error::ProxyError;
use crate::host::{BodyMode, LoadedFilter, LocalResponse, RequestCtx};
use crate::snapshot::{ListenerSnap, Route};

const X_FORWARDED_CLIENT_CERT: http::HeaderName =
    http::HeaderName::from_static("x-forwarded-client-cert");

/// Finds the route and builds the request filters will see. Malformed requests hyper
/// let through are refused here with 400.
pub fn admit<'a>(
    listener: &'a ListenerSnap,
    conn: &ConnInfo,
    parts: http::request::Parts,
    keep_expect: bool,
) -> Result<(&'a Arc<Route>, Box<RequestCtx>), ProxyError> {
    if parts.method == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT is not supported".into()));
    }
    let (authority, host) = destination(&parts.uri, &parts.headers)?;
    if authority.is_empty() && parts.version >= Version::HTTP_11 {
        return Err(ProxyError::BadRequest("missing Host".into()));
    }
    let mut path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    // Routing, filters and the upstream see the normalized path; filters can read the
    // original.
    let http = &listener.http;
    let mut original_path = None;
    if http.normalize_path || http.merge_slashes {
        let normalized = if http.normalize_path {
            super::path::normalize(&path, http.merge_slashes, http.escaped_slashes)?
        } else {
            super::path::merge_only(&path)
        };
        if let Some(n) = normalized {
            original_path = Some(std::mem::replace(&mut path, n));
        }
    }
    let Some(route) = listener.route_for(&parts.method, &host, path.as_str(), &parts.headers)
    else {
        listener.no_route.inc();
        return Err(ProxyError::NoRoute {
            authority: authority.to_owned(),
            path: path.as_str().to_owned(),
        });
    };
    let authority = authority.to_owned();
    let mut headers = parts.headers;
    for_upstream(&mut headers, &conn.client_ip, conn.scheme, keep_expect);
    if parts.version >= Version::HTTP_2 {
        join_cookies(&mut headers);
    }
    if let Some(name) = &listener.via {
        super::intermediary::add_via(&mut headers, parts.version, name);
    }
    // What the upstream learns of the client's certificate is the listener's to say,
    // never the client's.
    match &conn.forward_client_cert {
        Some(v) => {
            headers.insert(X_FORWARDED_CLIENT_CERT, v.clone());
        }
        None => {
            headers.remove(X_FORWARDED_CLIENT_CERT);
        }
    }
    let request = Box::new(RequestCtx {
        method: parts.method,
        scheme: conn.scheme,
        authority,
        path,
        headers,
        client_addr: conn.client,
        peer_identity: conn.peer_identity.clone(),
        listener: listener.name.clone(),
        route: route.name.clone(),
        cluster: route.cluster.clone(),
        attempt: 1,
        properties: Vec::new(),
        replay_limit: None,
        body_replayable: true,
        timeout: None,
        arrived: None,
        route_timeout: route.timeout,
        try_timeout: None,
        response_headers: Vec::new(),
        version: parts.version,
        original_path,
        hash_key: None,
        span_attributes: Vec::new(),
        trace: None,
    });
    Ok((route, request))
}

/// Holds a head that came by HTTP/2, HTTP/3 or hyper's HTTP/1.1 to the limits weft's
/// own HTTP/1.1 server applies as it reads one: `limit` bytes as HTTP/1.1 would carry
/// it (request line and `name: value` lines), and as many fields.
pub fn head_within(parts: &http::request::Parts, limit: usize) -> Result<(), ProxyError> {
    let too_large = |reason: String| ProxyError::Malformed {
        status: http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        reason,
    };
    if parts.headers.len() > weft_h1::request::MAX_HEADERS {
        return Err(too_large(format!(
            "more than {} header fields",
            weft_h1::request::MAX_HEADERS
        )));
    }
    let line = parts.method.as_str().len()
        + parts.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len();
    let size = parts
        .headers
        .iter()
        .fold(line + 2, |n, (k, v)| n + k.as_str().len() + v.len() + 4);
    if size > limit {
        return Err(too_large(format!("request head larger than {limit} bytes")));
    }
    Ok(())
}

/// A request body as attempts need it.
pub enum AttemptBody {
    /// No body: every attempt can be sent.
    Empty,
    /// A body that can be sent once.
    Once(Option<ProxyBody>),
    /// A body recorded for replay (a filter set a replay limit).
    Replay(ReplaySource),
}

impl AttemptBody {
    /// The body for the next attempt, if it can still be sent.
    pub fn take(&mut self) -> Option<ProxyBody> {
        match self {
            AttemptBody::Empty => Some(ProxyBody::Empty),
            AttemptBody::Once(b) => b.take(),
            AttemptBody::Replay(r) => r.body(),
        }
    }

    /// Whether another attempt can be sent.
    pub fn replayable(&self) -> bool {
        match self {
            AttemptBody::Empty => true,
            AttemptBody::Once(b) => b.is_some(),
            AttemptBody::Replay(r) => r.replayable(),
        }
    }
}

/// The body of a request no filter looks at.
pub fn unfiltered(body: ProxyBody) -> AttemptBody {
    if body.is_end_stream() {
        AttemptBody::Empty
    } else {
        AttemptBody::Once(Some(body))
    }
}

/// What phase 2 decided.
pub enum BodyOutcome {
    /// Send upstream with this body.
    Forward(AttemptBody),
    /// Answer with this response.
    Respond(LocalResponse),
}

/// Phase 2. The body streams past untouched unless a filter asked for it: filters in
/// `buffer` mode get it whole first (then every body filter sees the whole body, once);
/// otherwise filters in `stream` mode see each chunk as it passes on to the upstream.
pub async fn body(ex: &mut Exchange, body: ProxyBody) -> Result<BodyOutcome, ProxyError> {
    let mut body = if body.is_end_stream() {
        ProxyBody::Empty
    } else {
        body
    };
    if ex.route.needs.log && !body.is_end_stream() {
        let counter: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        ex.request_bytes = Some(counter.clone());
        body = ObservedBody::wrap(body, move |end| counter.store(end.bytes, Ordering::Relaxed));
    }
    if ex.route.needs.request_body && !body.is_end_stream() {
        let filters: Vec<Arc<LoadedFilter>> = ex.route.chain[..ex.request_ran]
            .iter()
            .filter(|f| f.info.phases.request_body)
            .cloned()
            .collect();
        let buffer_limit = filters
            .iter()
            .filter_map(|f| match f.info.request_body {
                BodyMode::Buffer(n) => Some((n, f.name.clone())),
                _ => None,
            })
            .min();
        if !filters.is_empty() {
            // The length is the proxy's to set again once filters may change the body.
            ex.req_mut().headers.remove(http::header::CONTENT_LENGTH);
            body = match buffer_limit {
                Some((limit, name)) => {
                    // The filter needs the body before the upstream is asked: weft
                    // answers the client's expectation itself (`proxy_100_continue`).
                    if let Some(relay) = ex.continue_relay.take() {
                        ex.req_mut().headers.remove(http::header::EXPECT);
                        relay.release();
                    }
                    let whole = collect_limited(body, limit).await?.ok_or(
                        ProxyError::RequestBodyTooLarge {
                            filter: name,
                            limit,
                        },
                    )?;
                    match chain::request_body_whole(ex, &filters, whole).await? {
                        Ok(bytes) => ProxyBody::full(bytes),
                        Err(local) => return Ok(BodyOutcome::Respond(local)),
                    }
                }
                None => streamed(ex, filters, body),
            };
        }
    }
    let body = match (body.is_end_stream(), ex.req().replay_limit) {
        (true, _) => AttemptBody::Empty,
        (false, Some(limit)) => AttemptBody::Replay(ReplaySource::new(body, limit)),
        (false, None) => AttemptBody::Once(Some(body)),
    };
    Ok(BodyOutcome::Forward(body))
}

/// Reads a body whole if it fits in `limit` bytes; `None` if it does not.
pub async fn collect_limited(mut body: ProxyBody, limit: u64) -> Result<Option<Bytes>, ProxyError> {
    let mut all = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ProxyError::BadRequest(format!("reading the body: {e}")))?;
        if let Some(d) = frame.data_ref() {
            if (all.len() + d.len()) as u64 > limit {
                return Ok(None);
            }
            all.extend_from_slice(d);
        }
    }
    Ok(Some(all.freeze()))
}

/// Streams the body through the filters in a task. A filter answering `respond` (or
/// failing closed) ends the upstream body with an error and leaves its response in
/// `ex.body_verdict`, which wins over whatever the upstream says.
fn streamed(
    ex: &mut Exchange,
    filters: Vec<Arc<LoadedFilter>>,
    mut source: ProxyBody,
) -> ProxyBody {
    let (tx, out) = channel(2);
    let (verdict_tx, verdict_rx) = oneshot::channel();
    ex.body_verdict = Some(verdict_rx);
    // Header changes are no longer possible once the body streams: filters get a copy.
    let mut request = ex.request.clone();
    tokio::spawn(async move {
        let outcome = pump(&filters, &mut request, &mut source, &tx).await;
        if let Err(local) = outcome {
            let _ = verdict_tx.send(local);
            let _ = tx
                .send(Err("a request-body filter answered instead".into()))
                .await;
        }
    });
    ProxyBody::Channel(out)
}

async fn pump(
    filters: &[Arc<LoadedFilter>],
    request: &mut Option<Box<RequestCtx>>,
    source: &mut ProxyBody,
    tx: &BodySender,
) -> Result<(), LocalResponse> {
    let mut saw_end = false;
    loop {
        let frame = match source.frame().await {
            None if saw_end => return Ok(()),
            None => {
                // The end came without data: filters still get their end-of-stream call.
                let data = chain::request_body_chunk(filters, request, Bytes::new(), true).await?;
                if !data.is_empty() {
                    let _ = tx.send(Ok(http_body::Frame::data(data))).await;
                }
                return Ok(());
            }
            Some(Err(e)) => {
                let _ = tx.send(Err(e)).await;
                return Ok(());
            }
            Some(Ok(frame)) => frame,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                let eos = source.is_end_stream();
                saw_end |= eos;
                http_body::Frame::data(
                    chain::request_body_chunk(filters, request, data, eos).await?,
                )
            }
            Err(other) => other,
        };
        if tx.send(Ok(frame)).await.is_err() {
            return Ok(()); // The upstream no longer reads.
        }
    }
}
