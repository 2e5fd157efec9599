//! `weft:filter/http-client`: a filter awaits a call to a cluster while the worker goes
//! on with other requests. Time spent waiting does not count against the filter's
//! deadline. The WIT types are converted here, at the import boundary.

use std::time::{Duration, Instant};

use crate::host::bindings::weft::filter::http_client::{
    CallError, Host, OutboundRequest, OutboundResponse,
};
use crate::host::bindings::weft::filter::types::HeaderField;
use crate::host::services;
use crate::host::state::HostState;

impl Host for HostState {
    async fn send(
        &mut self,
        cluster: String,
        request: OutboundRequest,
    ) -> wasmtime::Result<Result<OutboundResponse, CallError>> {
        self.host_calls += 1;
        let started = Instant::now();
        // The request's deadline bounds the call too.
        let left = self
            .request
            .as_ref()
            .and_then(|r| r.deadline())
            .map(|d| d.saturating_duration_since(started));
        let request = services::OutboundRequest {
            method: request.method,
            path: request.path,
            authority: request.authority,
            headers: request
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            body: request.body,
            timeout: match (request.timeout.map(Duration::from_nanos), left) {
                (Some(t), Some(l)) => Some(t.min(l)),
                (t, None) => t,
                (None, l) => l.map(|l| l.min(services::DEFAULT_CALL_TIMEOUT)),
            },
        };
        let result = self.outbound.send(cluster, request).await;
        self.waited += started.elapsed();
        Ok(match result {
            Ok(r) => Ok(OutboundResponse {
                status: r.status,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(name, value)| HeaderField { name, value })
                    .collect(),
                body: r.body,
            }),
            Err(services::CallError::UnknownCluster(c)) => Err(CallError::UnknownCluster(c)),
            Err(services::CallError::InvalidRequest(m)) => Err(CallError::InvalidRequest(m)),
            Err(services::CallError::Failed(f)) => Err(CallError::Failed(f.into())),
            Err(services::CallError::ResponseTooLarge) => Err(CallError::ResponseTooLarge),
        })
    }
}
