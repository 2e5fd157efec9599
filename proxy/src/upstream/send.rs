//! Sending one attempt of a request to a cluster.

use std::net::SocketAddr;

use http::{HeaderMap, Method, Request, Uri, Version};
use hyper::client::conn::http2;

use super::breaker::{Limit, Overflow, Slot};
use super::cluster::{Canned, Cluster};
use super::connect::{connect, Conn};
use super::h1;
use super::pool;
use crate::body::h1::ContinueRelay;
use crate::body::ProxyBody;
use crate::config::model::UpstreamProtocol;
use crate::error::UpstreamFailure;
use crate::net::UpstreamConn;

/// The head of a request to send upstream.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    /// Host and optional port.
    pub authority: String,
    /// Path and query.
    pub path: http::uri::PathAndQuery,
    /// Headers, without `Host` and hop-by-hop headers.
    pub headers: HeaderMap,
    /// The protocol the client asked to switch to (see [`crate::exchange::upgrade`]); asked of
    /// HTTP/1.1 upstreams only.
    pub upgrade: Option<http::HeaderValue>,
    /// Whether an HTTP/1.1 upstream's response headers may stay as received lines
    /// ([`weft_h1::RawHeaders`]): nothing on the way back reads them.
    pub raw_response: bool,
    /// The client waits for `100 Continue` and the upstream is to decide
    /// (`proxy_100_continue`): its `Expect` header is kept, and its 100 relayed.
    pub continue_relay: Option<ContinueRelay>,
    /// The request's hash key, for a cluster with a hashing load-balancing policy.
    pub hash_key: Option<u64>,
}

/// The upstream's answer: its head, a body streaming from it, and who answered.
pub struct UpstreamResponse {
    /// The response head.
    pub head: http::response::Parts,
    /// The body, giving its connection back to the pool at its end.
    pub body: ProxyBody,
    /// The endpoint.
    pub addr: SocketAddr,
}

/// An attempt that failed before a response head arrived.
#[derive(Debug)]
pub struct AttemptError {
    /// How it failed.
    pub failure: UpstreamFailure,
    /// What the proxy saw.
    pub detail: String,
    /// The endpoint tried, if one was chosen.
    pub addr: Option<SocketAddr>,
}

impl AttemptError {
    pub(super) fn new(
        failure: UpstreamFailure,
        detail: impl Into<String>,
        addr: Option<SocketAddr>,
    ) -> Self {
        AttemptError {
            failure,
            detail: detail.into(),
            addr,
        }
    }
}

/// Sorts a hyper client error into the failure kinds retries and metrics use.
pub(super) fn classify(e: &hyper::Error) -> UpstreamFailure {
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        UpstreamFailure::ProtocolError
    } else if e.is_timeout() {
        UpstreamFailure::Timeout
    } else {
        UpstreamFailure::Reset
    }
}

/// An HTTP/2 request for hyper's client.
fn build(
    head: RequestHead,
    body: ProxyBody,
    addr: SocketAddr,
) -> Result<Request<ProxyBody>, AttemptError> {
    let uri = Uri::builder()
        .scheme("http")
        .authority(head.authority.as_str())
        .path_and_query(head.path)
        .build()
        .map_err(|_| {
            AttemptError::new(
                UpstreamFailure::ProtocolError,
                "invalid authority",
                Some(addr),
            )
        })?;
    let mut req = Request::new(body);
    *req.method_mut() = head.method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_2;
    *req.headers_mut() = head.headers;
    Ok(req)
}

/// What a failed attempt counts as in an endpoint's latency estimate.
const FAILURE_LATENCY: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends one attempt to the next endpoint of `cluster` and waits for the response
/// head. A kept-alive connection that turns out to be closed before the request left is
/// replaced by a new one, transparently.
pub async fn send(
    cluster: &Cluster,
    head: RequestHead,
    body: ProxyBody,
) -> Result<UpstreamResponse, AttemptError> {
    if let Some(canned) = cluster.canned.get() {
        cluster.stats.attempts.inc();
        if let Some(script) = &canned.script {
            let scripted = script.calls.lock().pop_front();
            match scripted {
                Some(Err(failure)) => {
                    return Err(AttemptError::new(failure, "scripted".to_owned(), None))
                }
                Some(Ok(r)) => return Ok(scripted_response(r)),
                None => {}
            }
        }
        return Ok(canned_response(canned, &cluster.name, &head, body).await);
    }
    // Circuit breaker: attempts in flight, from now to the response body's end.
    let slot = cluster
        .breaker
        .take(Limit::Requests)
        .map_err(|o| overflowed(cluster, o))?;
    let Some(picked) = cluster.pick(head.hash_key) else {
        cluster.stats.failed(UpstreamFailure::NoEndpoints);
        return Err(AttemptError::new(
            UpstreamFailure::NoEndpoints,
            format!("cluster {} has no endpoints", cluster.name),
            None,
        ));
    };
    if picked.panic {
        cluster.stats.panics.inc();
    }
    let addr = picked.addr();
    cluster.stats.attempts.inc();
    // The worker read the clock as the request arrived (or its previous attempt
    // ended): close enough to the attempt's start for a latency histogram.
    let started = crate::clock::recent();
    let mut result = send_to(cluster, addr, head, body).await;
    let took = crate::clock::now().duration_since(started);
    match &result {
        Ok(_) => picked.endpoint.observe(took),
        Err(e) => {
            cluster.stats.failed(e.failure);
            // A failure counts as a slow answer for `least_request`: an endpoint that
            // refuses at once must not look like the fastest.
            picked.endpoint.observe(took.max(FAILURE_LATENCY));
        }
    }
    if let Some(d) = &cluster.outlier {
        let seen = match &result {
            Ok(r) => Ok(r.head.status.as_u16()),
            Err(e) => Err(e.failure),
        };
        d.observe(&cluster.balancer, picked.endpoint, seen);
    }
    cluster.stats.latency.observe(took.as_secs_f64());
    // (`picked` ends here: the endpoint counts the attempt in flight until its
    // response head.)
    // The breaker's place is held until the response body ends.
    if let (Some(slot), Ok(r)) = (slot, &mut result) {
        let body = std::mem::replace(&mut r.body, ProxyBody::Empty);
        r.body = crate::body::ObservedBody::wrap(body, move |_| drop(slot));
    }
    result
}

/// The failure for an attempt a circuit breaker refused.
fn overflowed(cluster: &Cluster, o: Overflow) -> AttemptError {
    AttemptError::new(
        UpstreamFailure::Overflow,
        format!(
            "cluster {}: circuit breaker {} ({}) reached",
            cluster.name,
            o.limit.as_str(),
            o.max
        ),
        None,
    )
}

/// Sends one attempt to `addr`, an endpoint of `cluster`, over the cluster's protocol
/// and TLS (health checks use it too): no endpoint choice, no attempt counted.
pub(super) async fn send_to(
    cluster: &Cluster,
    addr: SocketAddr,
    mut head: RequestHead,
    body: ProxyBody,
) -> Result<UpstreamResponse, AttemptError> {
    if cluster.tls.is_some() || cluster.protocol != UpstreamProtocol::Http1 {
        // Only weft's own HTTP/1.1 client relays a 100: elsewhere the proxy answers
        // the expectation itself, at once.
        if let Some(relay) = head.continue_relay.take() {
            head.headers.remove(http::header::EXPECT);
            relay.release();
        }
    }
    match (&cluster.tls, cluster.protocol) {
        // TLS and HTTP/2 attempts are boxed: their futures are kilobytes, and the
        // attempt's future (moved into a box per request) stays the size of the
        // plain HTTP/1.1 path's.
        (Some(tls), _) => Box::pin(super::secure::send(cluster, tls, addr, head, body)).await,
        (None, UpstreamProtocol::Http1) => send_h1(cluster, addr, head, body).await,
        // An upgrade (WebSocket) is an HTTP/1.1 mechanism: asked of an h2c endpoint on
        // an HTTP/1.1 connection of its own (h2c servers commonly speak both on one
        // port; one that does not answers with a protocol error, 502).
        (None, UpstreamProtocol::Http2) if head.upgrade.is_some() => {
            send_h1(cluster, addr, head, body).await
        }
        (None, UpstreamProtocol::Http2) => {
            Box::pin(send_h2(cluster, addr, build(head, body, addr)?)).await
        }
    }
}

/// The canned response, after the request body was read to its end (as an upstream
/// would), all in memory.
async fn canned_response(
    canned: &Canned,
    cluster: &str,
    request: &RequestHead,
    body: ProxyBody,
) -> UpstreamResponse {
    // Stream-mode body filters run as the body is read.
    let _ = http_body_util::BodyExt::collect(body).await;
    let mut head = http::Response::new(()).into_parts().0;
    let mut answer = canned.body.clone();
    head.status = canned.status;
    head.headers = canned.headers.clone();
    if let Some(script) = &canned.script {
        match script.next.lock().take() {
            Some((status, headers, body)) => {
                head.status = status;
                head.headers = headers;
                answer = body;
            }
            None => answer = echo(request),
        }
        if let Ok(v) = http::HeaderValue::from_str(cluster) {
            head.headers.insert(super::cluster::ECHO_CLUSTER, v);
        }
    }
    head.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(answer.len()),
    );
    UpstreamResponse {
        head,
        body: ProxyBody::full(answer),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

fn scripted_response(
    (status, headers, body): super::cluster::ScriptedResponse,
) -> UpstreamResponse {
    let mut head = http::Response::new(()).into_parts().0;
    head.status = status;
    head.headers = headers;
    head.headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    UpstreamResponse {
        head,
        body: ProxyBody::full(body),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

/// The request as the upstream received it, as JSON: `method`, `authority`, `path`,
/// and `headers` as `[name, value]` pairs in order.
fn echo(request: &RequestHead) -> bytes::Bytes {
    let headers: Vec<(&str, String)> = request
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let json = serde_json::json!({
        "method": request.method.as_str(),
        "authority": request.authority,
        "path": request.path.as_str(),
        "headers": headers,
    });
    bytes::Bytes::from(json.to_string())
}

/// The circuit breakers' places a new connection takes: one among the attempts
/// waiting for a connection (held while it opens), and one among open connections
/// (held as long as it stays open).
pub(super) fn connection_slots(
    cluster: &Cluster,
) -> Result<(Option<Slot>, Option<Slot>), AttemptError> {
    let refused = |o| overflowed(cluster, o);
    let pending = cluster.breaker.take(Limit::Pending).map_err(refused)?;
    let open = cluster.breaker.take(Limit::Connections).map_err(refused)?;
    Ok((pending, open))
}

async fn new_conn(
    cluster: &Cluster,
    addr: SocketAddr,
    protocol: UpstreamProtocol,
) -> Result<Conn, AttemptError> {
    let (_pending, open) = connection_slots(cluster)?;
    cluster.stats.connects.inc();
    // Boxed: connecting is rare (pools reuse connections) and its future is large.
    Box::pin(connect(addr, protocol, cluster.connect_timeout, open))
        .await
        .map_err(|(failure, detail)| AttemptError::new(failure, detail, Some(addr)))
}

async fn fresh_h1(cluster: &Cluster, addr: SocketAddr) -> Result<Box<UpstreamConn>, AttemptError> {
    match new_conn(cluster, addr, UpstreamProtocol::Http1).await? {
        Conn::H1(c) => Ok(c),
        Conn::H2(_) => Err(AttemptError::new(
            UpstreamFailure::ProtocolError,
            "expected HTTP/1.1",
            Some(addr),
        )),
    }
}

async fn send_h1(
    cluster: &Cluster,
    addr: SocketAddr,
    head: RequestHead,
    body: ProxyBody,
) -> Result<UpstreamResponse, AttemptError> {
    let (conn, reused) = match pool::take_h1(addr, cluster.idle_timeout) {
        Some(c) => (c, true),
        None => (fresh_h1(cluster, addr).await?, false),
    };
    match h1::exchange(conn, addr, cluster.max_idle, &head, body).await {
        Ok((head, body)) => Ok(UpstreamResponse { head, body, addr }),
        // The kept-alive connection had closed and the request was certainly not acted
        // on: send it again on a new connection.
        Err(e) if e.unsent && reused => {
            let conn = fresh_h1(cluster, addr).await?;
            h1::exchange(conn, addr, cluster.max_idle, &head, ProxyBody::Empty)
                .await
                .map(|(head, body)| UpstreamResponse { head, body, addr })
                .map_err(|e| AttemptError::new(e.failure, e.detail, Some(addr)))
        }
        Err(e) => Err(AttemptError::new(e.failure, e.detail, Some(addr))),
    }
}

async fn send_h2(
    cluster: &Cluster,
    addr: SocketAddr,
    mut req: Request<ProxyBody>,
) -> Result<UpstreamResponse, AttemptError> {
    let mut reused = true;
    let mut send = match pool::get_h2(addr) {
        Some(s) => s,
        None => {
            reused = false;
            fresh_h2(cluster, addr).await?
        }
    };
    loop {
        if let Err(e) = send.ready().await {
            if reused {
                send = fresh_h2(cluster, addr).await?;
                reused = false;
                continue;
            }
            return Err(AttemptError::new(
                classify(&e),
                format!("{addr}: {e}"),
                Some(addr),
            ));
        }
        match send.try_send_request(req).await {
            Ok(resp) => {
                let (head, incoming) = resp.into_parts();
                return Ok(UpstreamResponse {
                    head,
                    body: ProxyBody::Incoming(incoming),
                    addr,
                });
            }
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => {
                    req = unsent;
                    send = fresh_h2(cluster, addr).await?;
                    reused = false;
                }
                _ => {
                    let err = e.into_error();
                    return Err(AttemptError::new(
                        classify(&err),
                        format!("{addr}: {err}"),
                        Some(addr),
                    ));
                }
            },
        }
    }
}

async fn fresh_h2(
    cluster: &Cluster,
    addr: SocketAddr,
) -> Result<http2::SendRequest<ProxyBody>, AttemptError> {
    match new_conn(cluster, addr, UpstreamProtocol::Http2).await? {
        Conn::H2(s) => {
            pool::set_h2(addr, s.clone());
            Ok(s)
        }
        Conn::H1(_) => Err(AttemptError::new(
            UpstreamFailure::ProtocolError,
            "expected HTTP/2",
            Some(addr),
        )),
    }
}
