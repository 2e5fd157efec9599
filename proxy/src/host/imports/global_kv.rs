//! `weft:filter/global-kv`: keys shared by every proxy on the global backend. Until a
//! backend is configured (`shared_state.global`), each proxy answers from its own
//! state, as the `local` fallback does, under keys apart from the filter's local ones.
//! The functions are asynchronous, so a filter importing this interface is called on a
//! fiber and can wait for a backend without blocking its worker.

use crate::host::bindings::weft::filter::global_kv::{GlobalError, Host};
use crate::host::state::HostState;

/// Marks the fallback's keys, so that a global key and a local key of the same name
/// stay apart.
const FALLBACK: &str = "\0global\0";

impl HostState {
    fn global_key(&self, key: &str) -> wasmtime::Result<String> {
        let mut scoped = String::with_capacity(FALLBACK.len() + key.len());
        scoped.push_str(FALLBACK);
        scoped.push_str(key);
        Ok(
            super::shared_state::scoped(&self.identity.state_prefix, &mut String::new(), &scoped)?
                .to_owned(),
        )
    }
}

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, GlobalError>> {
        self.host_calls += 1;
        let key = self.global_key(&key)?;
        Ok(Ok(self.services.state.with(&key, |s, now| {
            s.kv_get(&key, now).map(<[u8]>::to_vec)
        })))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> wasmtime::Result<Result<(), GlobalError>> {
        self.host_calls += 1;
        let key = self.global_key(&key)?;
        super::shared_state::check_value(&value)?;
        let ttl_ms = ttl.map(|ns| (ns / 1_000_000).max(1));
        self.services
            .state
            .with(&key, |s, now| s.kv_set(&key, value, ttl_ms, now));
        Ok(Ok(()))
    }

    async fn set_if_absent(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> wasmtime::Result<Result<bool, GlobalError>> {
        self.host_calls += 1;
        let key = self.global_key(&key)?;
        super::shared_state::check_value(&value)?;
        let ttl_ms = ttl.map(|ns| (ns / 1_000_000).max(1));
        Ok(Ok(self.services.state.with(&key, |s, now| {
            s.kv_set_if_absent(&key, value, ttl_ms, now)
        })))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, GlobalError>> {
        self.host_calls += 1;
        let key = self.global_key(&key)?;
        Ok(Ok(self
            .services
            .state
            .with(&key, |s, now| s.kv_delete(&key, now))))
    }
}
