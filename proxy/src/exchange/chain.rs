//! Running one phase over a route's filter chain, and applying each filter's failure
//! policy. Every filter failure on the request path is decided here.

use std::sync::Arc;
use std::time::Duration;

use super::Exchange;
use crate::config::model::FailurePolicy;
use crate::error::ProxyError;
use crate::host::{
    Action, FilterFailure, LoadedFilter, LocalResponse, PhaseCall, PhaseResult, ResponseCtx,
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
pub fn on_failure(filter: &LoadedFilter, failure: FilterFailure) -> Result<(), ProxyError> {
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
        let action = match f
            .call(PhaseCall::RequestHeaders, &mut ex.request, &mut None)
            .await
        {
            Ok(PhaseResult::Action(a)) => a,
            Ok(_) => Action::Continue,
            Err(failure) => {
                on_failure(f, failure)?;
                continue;
            }
        };
        match action {
            Action::Continue => {}
            Action::Respond(local) => return Ok(RequestDecision::Respond(local)),
            Action::Delay(d) => tokio::time::sleep(d).await,
            Action::RouteTo(cluster) => ex.req_mut().cluster = cluster.into(),
            Action::Retry(_) => invalid(f, "retry in the request-headers phase")?,
        }
    }
    ex.request_ran = chain.len();
    Ok(RequestDecision::Forward)
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
        let action = match f
            .call(PhaseCall::ResponseHeaders, &mut ex.request, response)
            .await
        {
            Ok(PhaseResult::Action(a)) => a,
            Ok(_) => Action::Continue,
            Err(failure) => {
                on_failure(f, failure)?;
                continue;
            }
        };
        match action {
            Action::Continue => {}
            Action::Respond(local) => {
                if let Some(r) = response.as_deref_mut() {
                    super::response::replace_head(r, &local);
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
