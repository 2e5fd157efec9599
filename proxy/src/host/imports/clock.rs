//! `weft:filter/clock`: nanoseconds, as every duration in the contract.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::host::bindings::weft::filter::clock::Host;
use crate::host::state::HostState;

impl Host for HostState {
    fn now_ns(&mut self) -> wasmtime::Result<u64> {
        self.host_calls += 1;
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }

    fn monotonic_ns(&mut self) -> wasmtime::Result<u64> {
        self.host_calls += 1;
        Ok(self.services.origin.elapsed().as_nanos() as u64)
    }
}
