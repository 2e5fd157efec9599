//! `weft:filter/random`.

use crate::host::bindings::weft::filter::random::Host;
use crate::host::state::HostState;

/// Most bytes one `fill` call returns; more is a filter bug, answered with a trap.
const MAX_FILL: u32 = 1 << 20;

impl Host for HostState {
    fn next_u64(&mut self) -> wasmtime::Result<u64> {
        self.host_calls += 1;
        Ok(fastrand::u64(..))
    }

    fn fill(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        self.host_calls += 1;
        if len > MAX_FILL {
            return Err(wasmtime::Error::msg(format!(
                "random.fill asked for {len} bytes; at most {MAX_FILL}"
            )));
        }
        let mut out = vec![0u8; len as usize];
        fastrand::fill(&mut out);
        Ok(out)
    }
}
