//! Phase 5, log: after the response's last byte (or its abandonment), filters with a
//! log phase learn what happened. Routes without such filters pay nothing here.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::Response;

use super::{chain, Exchange};
use crate::body::{BodyEnd, ObservedBody, ProxyBody};
use crate::host::{ExchangeSummary, LoadedFilter};

/// Arranges for the log phase to run when the response body ends.
pub fn attach(mut ex: Exchange, response: Response<ProxyBody>) -> Response<ProxyBody> {
    if !ex.route.needs.log {
        return response;
    }
    let filters: Vec<Arc<LoadedFilter>> = ex.route.chain[..ex.request_ran]
        .iter()
        .filter(|f| f.info.phases.log)
        .cloned()
        .collect();
    let Some(request) = ex.request.take().filter(|_| !filters.is_empty()) else {
        return response;
    };
    let status = response.status().as_u16();
    let outcome = ex.outcome.clone();
    let start = ex.start;
    let request_bytes = ex.request_bytes.clone();
    let (parts, body) = response.into_parts();
    let body = ObservedBody::wrap(body, move |end: BodyEnd| {
        let summary = ExchangeSummary {
            status,
            upstream_failure: outcome.failure,
            upstream_address: outcome.addr,
            attempts: outcome.attempts,
            request_body_bytes: request_bytes
                .as_ref()
                .map_or(0, |n| n.load(Ordering::Relaxed)),
            response_body_bytes: end.bytes,
            duration: start.elapsed(),
            completed: end.completed,
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            chain::log(&filters, &mut Some(request), &summary).await;
        });
    });
    Response::from_parts(parts, body)
}
