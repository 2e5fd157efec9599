//! Sending the request upstream: attempts, timeouts, and the response-headers phase
//! that may ask for another attempt.
//!
//! The route's timeout (or a filter's override) bounds everything from the end of the
//! request (its arrival when it has no body; the end of its body otherwise, as Envoy's
//! route timeout) to the response head, retries and backoffs included; a filter's
//! per-try timeout bounds each attempt, from its start or the body's end, whichever is
//! later. While the client's body streams, a stall longer than the listener's
//! `body_idle_timeout` ends the exchange with 408, and a malformed or cut-off body with
//! 400 at once: the client's faults, never blamed on the upstream. When an attempt fails, the proxy makes the response
//! (502, 503 or 504, saying why) and the response phase sees it like any other, so a
//! retry filter can act on connect failures, resets and timeouts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::HeaderMap;

use super::answer::error_response;
use super::chain::{self, ResponseDecision};
use super::request::AttemptBody;
use super::Exchange;
use crate::body::{BodyState, Progress, ProxyBody};
use crate::error::{ProxyError, UpstreamFailure};
use crate::host::ResponseCtx;
use crate::upstream::{send, AttemptError, RequestHead};

/// What happened upstream, for the log phase.
#[derive(Debug, Clone, Default)]
pub struct UpstreamOutcome {
    /// Attempts sent.
    pub attempts: u32,
    /// The last failure, if the proxy answered for the upstream.
    pub failure: Option<UpstreamFailure>,
    /// The last endpoint tried.
    pub addr: Option<SocketAddr>,
}

/// The response the proxy makes for a failed attempt.
fn failed_response(e: AttemptError) -> (Box<ResponseCtx>, ProxyBody) {
    tracing::debug!(
        failure = e.failure.as_str(),
        "upstream attempt failed: {}",
        e.detail
    );
    let addr = e.addr;
    let failure = e.failure;
    let (head, body) = error_response(&ProxyError::Upstream {
        failure,
        detail: e.detail,
    })
    .into_parts();
    (
        Box::new(ResponseCtx {
            head,
            upstream_failure: Some(failure),
            upstream_addr: addr,
        }),
        body,
    )
}

/// Sends attempts until one is delivered: the first, unless the response phase asks
/// for a retry that the body and the deadline allow.
pub async fn forward(
    ex: &mut Exchange,
    mut body: AttemptBody,
) -> Result<(Box<ResponseCtx>, ProxyBody), ProxyError> {
    // (The route's timeout, shortened by a gRPC client's deadline.)
    let total = ex.req().timeout.unwrap_or(ex.req().route_timeout);
    let progress = ex.progress.clone();
    // Without response filters nothing can need the request again: move its headers
    // and authority into the attempt.
    let keep_request =
        ex.route.needs.response_headers || ex.route.needs.log || ex.route.needs.response_body;
    let raw_response =
        ex.raw_response_ok && !ex.route.needs.response_headers && !ex.route.needs.response_body;
    // A retry's place under its cluster's `max_retries`, held until the next retry or
    // the end of forwarding.
    let mut _retry_slot = None;
    loop {
        let attempt_body = body.take().unwrap_or(ProxyBody::Empty);
        let upgrade = ex.upgrade.clone();
        let continue_relay = ex.continue_relay.take();
        // Each attempt is a span of its own: the upstream's `traceparent` names it.
        let attempt_span = ex.trace.as_ref().map(|t| t.child());
        let cluster = ex.snapshot.clusters.get(&*ex.req().cluster).cloned();
        // The key a hashing policy places the request by.
        let hash_key = cluster.as_ref().and_then(|c| {
            let req = ex.req();
            c.hash_key(
                &req.headers,
                req.client_addr,
                req.property(HASH_KEY_PROPERTY),
            )
        });
        let req = ex.req_mut();
        // (Moved, not cloned: a clone of a new header value allocates.)
        let attempt_span = attempt_span.map(|(id, traceparent)| {
            req.headers.insert(crate::trace::TRACEPARENT, traceparent);
            id
        });
        let head = RequestHead {
            method: req.method.clone(),
            authority: lend(&mut req.authority, keep_request),
            path: req.path.clone(),
            headers: lend(&mut req.headers, keep_request),
            upgrade,
            raw_response,
            continue_relay,
            hash_key,
        };
        let try_timeout = req.try_timeout;
        ex.outcome.attempts += 1;

        // An unfiltered request's first attempt leaves microseconds after it arrived:
        // for deadlines of seconds its start is the time now (one clock read less).
        let now = if ex.route.chain.is_empty() && ex.outcome.attempts == 1 {
            ex.start
        } else {
            Instant::now()
        };
        // The route's deadline, once it is known: from the body's end (or the arrival).
        let deadline = match &progress {
            None => Some(ex.start + total),
            Some(p) => p.done_at().map(|end| end + total),
        };
        let result = match (cluster, deadline.map(|d| d.checked_duration_since(now))) {
            (None, _) => Err(AttemptError {
                failure: UpstreamFailure::UnknownCluster,
                detail: format!("no cluster named {:?}", ex.req().cluster),
                addr: None,
            }),
            (_, Some(None)) => Err(timed_out(total)),
            (Some(cluster), Some(Some(left))) => {
                let limit = try_timeout.map_or(left, |t| t.min(left));
                // Boxed: the attempt's future is large, and moving it costs more than this.
                let deadline = tokio::time::Instant::from_std(now + limit);
                match crate::deadline::within(
                    deadline,
                    Box::pin(send(&cluster, head, attempt_body)),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => {
                        cluster.stats.failed(UpstreamFailure::Timeout);
                        Err(timed_out(limit))
                    }
                }
            }
            (Some(cluster), None) => {
                // The body still streams: the clocks start at its end.
                let p = progress
                    .as_ref()
                    .expect("only a streaming body has no deadline yet");
                let fut = Box::pin(send(&cluster, head, attempt_body));
                let limits = Limits {
                    total,
                    try_timeout,
                    idle: ex.body_idle_timeout,
                };
                match while_streaming(fut, p, now, limits).await {
                    Ok(r) => r,
                    Err(Expired::Timeout(after)) => {
                        cluster.stats.failed(UpstreamFailure::Timeout);
                        Err(timed_out(after))
                    }
                    Err(Expired::Stalled) => {
                        return Err(ProxyError::RequestBodyStalled(ex.body_idle_timeout))
                    }
                    Err(Expired::BodyFailed(why)) => return Err(body_failed(why)),
                }
            }
        };
        if let (Some(t), Some(id)) = (&ex.trace, attempt_span) {
            if t.recording() {
                trace_attempt(ex, t, id, now, &result);
            }
        }
        // An attempt that failed because the client's body did is the client's fault.
        if result.is_err() {
            if let Some(why) = progress.as_ref().and_then(|p| p.failure()) {
                return Err(body_failed(why));
            }
        }
        let (response, response_body) = match result {
            Ok(r) => {
                ex.outcome.addr = Some(r.addr);
                ex.outcome.failure = None;
                (
                    Box::new(ResponseCtx {
                        head: r.head,
                        upstream_failure: None,
                        upstream_addr: Some(r.addr),
                    }),
                    r.body,
                )
            }
            Err(e) => {
                ex.outcome.addr = e.addr;
                ex.outcome.failure = Some(e.failure);
                failed_response(e)
            }
        };
        if !ex.route.needs.response_headers {
            return Ok((response, response_body));
        }

        // Phase 3: response headers.
        ex.req_mut().body_replayable = body.replayable();
        let mut response = Some(response);
        let mut replaced = None;
        let decision = Box::pin(chain::response_headers(
            ex,
            &mut response,
            &mut replaced,
            true,
        ))
        .await?;
        let response = response.expect("response is back after every filter call");
        let response_body = match replaced {
            Some(b) => ProxyBody::full(b),
            None => response_body,
        };
        match decision {
            ResponseDecision::Deliver => return Ok((response, response_body)),
            ResponseDecision::Retry(backoff) => {
                let refused = if !body.replayable() {
                    Some("body")
                } else if progress
                    .as_ref()
                    .map_or(Some(ex.start), |p| p.done_at())
                    .is_none_or(|end| Instant::now() + backoff >= end + total)
                {
                    Some("deadline")
                } else {
                    None
                };
                if let Some(reason) = refused {
                    ex.route.stats.retry_refused(reason);
                    return Ok((response, response_body));
                }
                // The cluster's circuit breaker on retries in flight.
                if let Some(cluster) = ex.snapshot.clusters.get(&*ex.req().cluster) {
                    _retry_slot = None;
                    match cluster
                        .breaker
                        .take(crate::upstream::breaker::Limit::Retries)
                    {
                        Ok(slot) => _retry_slot = slot,
                        Err(_) => {
                            ex.route.stats.retry_refused("overflow");
                            return Ok((response, response_body));
                        }
                    }
                }
                ex.route.stats.retries.inc();
                drop(response_body);
                tokio::time::sleep(backoff).await;
                ex.req_mut().attempt += 1;
            }
        }
    }
}

/// The request property a filter sets to choose the key a hashing load-balancing policy
/// places the request by.
pub const HASH_KEY_PROPERTY: &str = "hash_key";

/// Records an upstream attempt in a sampled request's trace.
fn trace_attempt(
    ex: &Exchange,
    trace: &crate::trace::Trace,
    id: u64,
    start: Instant,
    result: &Result<crate::upstream::UpstreamResponse, AttemptError>,
) {
    use crate::trace::export::attr;
    let cluster = ex.req().cluster.to_string();
    let mut attributes = vec![
        attr("weft.cluster", cluster.clone()),
        attr("weft.attempt", i64::from(ex.outcome.attempts)),
    ];
    let addr = match result {
        Ok(r) => {
            attributes.push(attr(
                "http.response.status_code",
                i64::from(r.head.status.as_u16()),
            ));
            Some(r.addr)
        }
        Err(e) => {
            attributes.push(attr("weft.upstream_failure", e.failure.as_str()));
            e.addr
        }
    };
    if let Some(a) = addr {
        attributes.push(attr("server.address", a.ip().to_string()));
        attributes.push(attr("server.port", i64::from(a.port())));
    }
    trace.record(crate::trace::SpanRec {
        id,
        parent: trace.span_id(),
        name: format!("upstream {cluster}").into(),
        kind: crate::trace::Kind::Client,
        start,
        end: Instant::now(),
        attributes,
        error: result.as_ref().err().map(|e| e.failure.as_str().to_owned()),
    });
}

/// A request's value for an attempt: a copy when the request is needed again, else
/// the value itself.
fn lend<T: Clone + Default>(value: &mut T, keep: bool) -> T {
    if keep {
        value.clone()
    } else {
        std::mem::take(value)
    }
}

/// The limits on an attempt sent while the client's body still streams.
struct Limits {
    total: Duration,
    try_timeout: Option<Duration>,
    idle: Duration,
}

/// Why [`while_streaming`] gave up on an attempt.
enum Expired {
    /// The route's (or the try's) timeout, counted from the body's end.
    Timeout(Duration),
    /// The body stalled.
    Stalled,
    /// The body failed.
    BodyFailed(String),
}

/// Runs an attempt started at `started` while the client's body may still stream:
/// its timeouts start when the body ends; until then, the body's stalls and failures
/// end it.
async fn while_streaming<F: std::future::Future + Unpin>(
    mut fut: F,
    progress: &Progress,
    started: Instant,
    limits: Limits,
) -> Result<F::Output, Expired> {
    loop {
        let (wake, expired) = match progress.state() {
            BodyState::Failed(why) => return Err(Expired::BodyFailed(why)),
            BodyState::Streaming(last) => (last.max(started) + limits.idle, Expired::Stalled),
            BodyState::Done(end) => {
                let total = end + limits.total;
                match limits.try_timeout {
                    Some(t) if end.max(started) + t < total => {
                        (end.max(started) + t, Expired::Timeout(t))
                    }
                    _ => (total, Expired::Timeout(limits.total)),
                }
            }
        };
        let woke = tokio::select! {
            biased;
            r = &mut fut => return Ok(r),
            _ = progress.changed.notified() => false,
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => true,
        };
        if !woke {
            continue;
        }
        // The timer went off: the deadline passed unless the body moved on meanwhile.
        match (progress.state(), &expired) {
            (BodyState::Streaming(last), Expired::Stalled)
                if last.max(started) + limits.idle > Instant::now() => {}
            (BodyState::Streaming(_), Expired::Stalled) => return Err(expired),
            (BodyState::Done(_), Expired::Timeout(_)) => return Err(expired),
            _ => {}
        }
    }
}

/// The client's body failed: malformed (a bad chunk size, a chunk longer than its
/// size), or cut off before its length.
fn body_failed(why: String) -> ProxyError {
    ProxyError::Malformed {
        status: http::StatusCode::BAD_REQUEST,
        reason: why,
    }
}

fn timed_out(after: Duration) -> AttemptError {
    AttemptError {
        failure: UpstreamFailure::Timeout,
        detail: format!("no response head within {after:?}"),
        addr: None,
    }
}

/// Cleans a response head before it goes to the client.
pub fn client_headers(headers: &mut HeaderMap) {
    super::headers::strip_hop_by_hop(headers);
}
