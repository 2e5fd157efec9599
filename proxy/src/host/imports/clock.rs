//! `weft:filter/clock`: nanoseconds, as every duration in the contract.

use crate::host::bindings::weft::filter::clock::Host;
use crate::host::state::HostState;

impl Host for HostState {
    fn now_ns(&mut self) -> wasmtime::Result<u64> {
        self.host_calls += 1;
        Ok(self.services.clock.wall_ns())
    }

    fn monotonic_ns(&mut self) -> wasmtime::Result<u64> {
        self.host_calls += 1;
        Ok(self.services.clock.monotonic_ns())
    }
}
