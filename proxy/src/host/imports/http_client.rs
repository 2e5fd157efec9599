//! `weft:filter/http-client`: a filter awaits a call to a cluster while the worker goes
//! on with other requests. Time spent waiting does not count against the filter's
//! deadline.

use std::time::Instant;

use crate::host::bindings::weft::filter::http_client::{
    CallError, Host, OutboundRequest, OutboundResponse,
};
use crate::host::state::HostState;

impl Host for HostState {
    async fn send(
        &mut self,
        cluster: String,
        request: OutboundRequest,
    ) -> wasmtime::Result<Result<OutboundResponse, CallError>> {
        let started = Instant::now();
        let result = self.outbound.send(cluster, request).await;
        self.waited += started.elapsed();
        Ok(result)
    }
}
