//! Every call into a route's filters, and every decision about what a filter answered
//! or how it failed. The other phase modules decide when a phase runs and over which
//! filters; what a filter's answer means, and what its failure policy makes of a
//! failure, is decided here only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::local::{from_error, replace_head};
use super::Exchange;
use crate::config::model::FailurePolicy;
use crate::error::ProxyError;
use crate::host::{
    Action, BodyAction, ExchangeSummary, FilterFailure, LoadedFilter, LocalResponse, RequestCtx,
    ResponseCtx,
};

/// What the request phase decided.
pub enum RequestDecision {
    /// Send the request upstream.
    Forward,
    /// Answer with this response.
    Respond(LocalResponse),
}

/// What the response phase decided.
pub enum ResponseDecision {
    /// Send this response to the client.
    Deliver,
    /// Discard it and try again after a backoff.
    Retry(Duration),
}

/// The failure policy: go on (fail-open), or stop with the filter's status.
fn on_failure(filter: &LoadedFilter, failure: FilterFailure) -> Result<(), ProxyError> {
    match filter.policy {
        FailurePolicy::FailOpen => Ok(()),
        FailurePolicy::FailClosed => Err(ProxyError::FilterFailed {
            filter: filter.name.clone(),
            reason: failure.to_string(),
            status: filter.failure_status,
        }),
    }
}

/// An action a phase does not allow: counted as a failure of the filter.
fn invalid(filter: &LoadedFilter, what: &str) -> Result<(), ProxyError> {
    let failure = FilterFailure::InvalidAction(what.to_owned());
    filter.record_failure(&failure);
    on_failure(filter, failure)
}

/// Phase 1, in chain order. Records how far the chain got, so that a local response
/// passes back only through the filters before the one that answered.
pub async fn request_headers(ex: &mut Exchange) -> Result<RequestDecision, ProxyError> {
    let chain: Arc<[Arc<LoadedFilter>]> = ex.route.chain.clone();
    for (i, f) in chain.iter().enumerate() {
        ex.request_ran = i;
        if !f.info.phases.request_headers {
            continue;
        }
        let action = match f.request_headers(&mut ex.request).await {
            Ok(a) => a,
            Err(failure) => {
                on_failure(f, failure)?;
                continue;
            }
        };
        match action {
            Action::Continue => {}
            Action::Respond(local) => return Ok(RequestDecision::Respond(local)),
            Action::Delay(d) => delay(ex, d).await?,
            Action::RouteTo(cluster) => ex.req_mut().cluster = cluster.into(),
            Action::Retry(_) => invalid(f, "retry in the request-headers phase")?,
        }
    }
    ex.request_ran = chain.len();
    Ok(RequestDecision::Forward)
}

/// A filter's delay, within the request's deadline: a delay that would pass it ends
/// the request with 504 (`timeout`) when the deadline comes.
async fn delay(ex: &Exchange, d: Duration) -> Result<(), ProxyError> {
    let now = std::time::Instant::now();
    match ex.req().deadline() {
        Some(deadline) if now + d >= deadline => {
            tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
            Err(ProxyError::Upstream {
                failure: crate::error::UpstreamFailure::Timeout,
                detail: format!("the route's timeout passed during a filter's delay of {d:?}"),
            })
        }
        _ => {
            tokio::time::sleep(d).await;
            Ok(())
        }
    }
}

/// Phase 2 in `buffer` mode: every body filter, in order, on the whole body. `Err` of
/// the inner result: a filter answered instead.
pub async fn request_body_whole(
    ex: &mut Exchange,
    filters: &[Arc<LoadedFilter>],
    mut bytes: Bytes,
) -> Result<Result<Bytes, LocalResponse>, ProxyError> {
    for f in filters {
        match f.request_body(&mut ex.request, &bytes, true).await {
            Ok(BodyAction::Continue) => {}
            Ok(BodyAction::Replace(b)) => bytes = Bytes::from(b),
            Ok(BodyAction::Respond(local)) => return Ok(Err(local)),
            Err(failure) => on_failure(f, failure)?,
        }
    }
    Ok(Ok(bytes))
}

/// Phase 2 in `stream` mode: every stream-mode filter, in order, on one chunk. `Err`:
/// the response the client gets instead (a filter's, or a fail-closed failure's).
pub async fn request_body_chunk(
    filters: &[Arc<LoadedFilter>],
    request: &mut Option<Box<RequestCtx>>,
    mut data: Bytes,
    eos: bool,
) -> Result<Bytes, LocalResponse> {
    for f in filters {
        match f.request_body(request, &data, eos).await {
            Ok(BodyAction::Continue) => {}
            Ok(BodyAction::Replace(b)) => data = Bytes::from(b),
            Ok(BodyAction::Respond(local)) => return Err(local),
            Err(failure) => {
                if let Err(e) = on_failure(f, failure) {
                    return Err(from_error(&e));
                }
            }
        }
    }
    Ok(data)
}

/// Phase 3, in reverse chain order, over the filters whose request phase ran. A filter
/// answering `respond` replaces the response and the chain goes on with it; `retry`
/// stops the chain.
pub async fn response_headers(
    ex: &mut Exchange,
    response: &mut Option<Box<ResponseCtx>>,
    replaced_body: &mut Option<Vec<u8>>,
    may_retry: bool,
) -> Result<ResponseDecision, ProxyError> {
    let chain: Arc<[Arc<LoadedFilter>]> = ex.route.chain.clone();
    for f in chain[..ex.request_ran].iter().rev() {
        if !f.info.phases.response_headers {
            continue;
        }
        let action = match f.response_headers(&mut ex.request, response).await {
            Ok(a) => a,
            Err(failure) => {
                on_failure(f, failure)?;
                continue;
            }
        };
        match action {
            Action::Continue => {}
            Action::Respond(local) => {
                if let Some(r) = response.as_deref_mut() {
                    replace_head(r, &local);
                }
                *replaced_body = Some(local.body);
            }
            Action::Delay(d) => tokio::time::sleep(d).await,
            Action::Retry(backoff) if may_retry => return Ok(ResponseDecision::Retry(backoff)),
            Action::Retry(_) => invalid(f, "retry of a response the proxy made locally")?,
            Action::RouteTo(_) => invalid(f, "route-to in the response-headers phase")?,
        }
    }
    Ok(ResponseDecision::Deliver)
}

/// Phase 4 in `buffer` mode: every body filter, in order, on the whole body; the head
/// has not left, so `respond` replaces the whole response.
pub async fn response_body_whole(
    ex: &mut Exchange,
    filters: &[Arc<LoadedFilter>],
    response: &mut Option<Box<ResponseCtx>>,
    mut bytes: Bytes,
) -> Result<Bytes, ProxyError> {
    for f in filters {
        match f
            .response_body(&mut ex.request, response, &bytes, true)
            .await
        {
            Ok(BodyAction::Continue) => {}
            Ok(BodyAction::Replace(b)) => bytes = Bytes::from(b),
            Ok(BodyAction::Respond(local)) => {
                if let Some(r) = response.as_deref_mut() {
                    replace_head(r, &local);
                }
                bytes = Bytes::from(local.body);
            }
            Err(failure) => on_failure(f, failure)?,
        }
    }
    Ok(bytes)
}

/// Phase 4 in `stream` mode: every stream-mode filter, in order, on one chunk. The head
/// has left, so `respond` is no longer possible and counts as a failure of the filter;
/// `Err`: a fail-closed failure, which ends the body with an error (the client sees the
/// response cut short rather than a body the filter did not approve).
pub async fn response_body_chunk(
    filters: &[Arc<LoadedFilter>],
    request: &mut Option<Box<RequestCtx>>,
    response: &mut Option<Box<ResponseCtx>>,
    mut data: Bytes,
    eos: bool,
) -> Result<Bytes, ProxyError> {
    for f in filters {
        let failure = match f.response_body(request, response, &data, eos).await {
            Ok(BodyAction::Continue) => continue,
            Ok(BodyAction::Replace(b)) => {
                data = Bytes::from(b);
                continue;
            }
            Ok(BodyAction::Respond(_)) => {
                let failure =
                    FilterFailure::InvalidAction("respond after the response head was sent".into());
                f.record_failure(&failure);
                failure
            }
            Err(failure) => failure,
        };
        on_failure(f, failure)?;
    }
    Ok(data)
}

/// Phase 5, in chain order. A failing log phase changes nothing for the client (the
/// response is over); it is counted like any failure.
pub async fn log(
    filters: &[Arc<LoadedFilter>],
    request: &mut Option<Box<RequestCtx>>,
    summary: &ExchangeSummary,
) {
    for f in filters {
        let _ = f.log(request, summary).await;
    }
}
