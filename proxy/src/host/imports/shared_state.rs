//! `weft:filter/shared-state`: the filter's keys, prefixed with its name, in the
//! proxy-wide sharded store. Durations cross as nanoseconds; the store keeps
//! milliseconds. The `global` scope goes to the global backend's leases when
//! `shared_state.global` is configured, and is this proxy's state otherwise.

use weft_shared_state::{Bucket as StoreBucket, CounterValue};

use crate::host::bindings::weft::filter::shared_state::{Bucket, Counter, Host, Scope, TakeResult};
use crate::host::global::GlobalBackend;
use crate::host::services::HostServices;
use crate::host::state::HostState;
use std::sync::Arc;

const NS_PER_MS: u64 = 1_000_000;

fn ms(ns: u64) -> u64 {
    ns / NS_PER_MS
}

fn counter(c: CounterValue, now_ms: u64) -> Counter {
    Counter {
        value: c.value,
        expires_in: c
            .expires_at_ms
            .map(|at| at.saturating_sub(now_ms).saturating_mul(NS_PER_MS)),
    }
}

/// Longest key a filter may use.
const MAX_KEY: usize = 4 << 10;
/// Largest value a filter may store.
const MAX_VALUE: usize = 1 << 20;

/// `key` within the filter's own key space (`prefix` + `key`), built in `buf` (reused
/// call after call, so a lookup allocates nothing).
pub(super) fn scoped<'b>(
    prefix: &str,
    buf: &'b mut String,
    key: &str,
) -> wasmtime::Result<&'b str> {
    if key.len() > MAX_KEY {
        return Err(wasmtime::Error::msg(format!(
            "shared-state key of {} bytes; at most {MAX_KEY}",
            key.len()
        )));
    }
    buf.clear();
    buf.push_str(prefix);
    buf.push_str(key);
    Ok(buf.as_str())
}

/// The global backend, when `scope` is global and one is configured (the `local`
/// scope never looks).
fn global(scope: Scope, services: &HostServices) -> Option<Arc<GlobalBackend>> {
    match scope {
        Scope::Global => services.global.load_full(),
        Scope::Local => None,
    }
}

pub(super) fn check_value(value: &[u8]) -> wasmtime::Result<()> {
    if value.len() > MAX_VALUE {
        return Err(wasmtime::Error::msg(format!(
            "shared-state value of {} bytes; at most {MAX_VALUE}",
            value.len()
        )));
    }
    Ok(())
}

impl Host for HostState {
    fn counter_add(
        &mut self,
        scope: Scope,
        key: String,
        delta: i64,
        ttl: Option<u64>,
    ) -> wasmtime::Result<Counter> {
        self.host_calls += 1;
        let key = scoped(&self.identity.state_prefix, &mut self.key_buf, &key)?;
        let ttl_ms = ttl.map(|ns| ms(ns).max(1));
        if let Some(g) = global(scope, &self.services) {
            let now = self.services.clock.monotonic_ms();
            return Ok(counter(g.counter_add(key, delta, ttl_ms), now));
        }
        Ok(self.services.state.with(key, |s, now| {
            counter(s.counter_add(key, delta, ttl_ms, now), now)
        }))
    }

    fn counter_get(&mut self, scope: Scope, key: String) -> wasmtime::Result<Counter> {
        self.host_calls += 1;
        let key = scoped(&self.identity.state_prefix, &mut self.key_buf, &key)?;
        if let Some(g) = global(scope, &self.services) {
            let now = self.services.clock.monotonic_ms();
            return Ok(counter(g.counter_get(key), now));
        }
        Ok(self
            .services
            .state
            .with(key, |s, now| counter(s.counter_get(key, now), now)))
    }

    fn token_bucket_take(
        &mut self,
        scope: Scope,
        key: String,
        bucket: Bucket,
        tokens: u64,
    ) -> wasmtime::Result<TakeResult> {
        self.host_calls += 1;
        let key = scoped(&self.identity.state_prefix, &mut self.key_buf, &key)?;
        let b = StoreBucket {
            capacity: bucket.capacity,
            refill_tokens: bucket.refill_tokens,
            refill_interval_ms: ms(bucket.refill_interval).max(1),
        };
        let r = match global(scope, &self.services) {
            Some(g) => g.take(key, b, tokens, &self.services.state),
            None => self
                .services
                .state
                .with(key, |s, now| s.token_bucket_take(key, b, tokens, now)),
        };
        Ok(TakeResult {
            allowed: r.allowed,
            remaining: r.remaining,
            retry_after: r.retry_after_ms.saturating_mul(NS_PER_MS),
            reset: r.reset_ms.saturating_mul(NS_PER_MS),
        })
    }

    fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.host_calls += 1;
        let key = scoped(&self.identity.state_prefix, &mut self.key_buf, &key)?;
        Ok(self
            .services
            .state
            .with(key, |s, now| s.kv_get(key, now).map(<[u8]>::to_vec)))
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>, ttl: Option<u64>) -> wasmtime::Result<()> {
        self.host_calls += 1;
        let key = scoped(&self.identity.state_prefix, &mut self.key_buf, &key)?;
        let ttl_ms = ttl.map(|ns| ms(ns).max(1));
        check_value(&value)?;
        self.services
            .state
            .with(key, |s, now| s.kv_set(key, value, ttl_ms, now));
        Ok(())
    }

    fn kv_set_if_absent(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> wasmtime::Result<bool> {
        self.host_calls += 1;
        let key = scoped(&self.identity.state_prefix, &mut self.key_buf, &key)?;
        let ttl_ms = ttl.map(|ns| ms(ns).max(1));
        check_value(&value)?;
        Ok(self
            .services
            .state
            .with(key, |s, now| s.kv_set_if_absent(key, value, ttl_ms, now)))
    }

    fn kv_delete(&mut self, key: String) -> wasmtime::Result<bool> {
        self.host_calls += 1;
        let key = scoped(&self.identity.state_prefix, &mut self.key_buf, &key)?;
        Ok(self
            .services
            .state
            .with(key, |s, now| s.kv_delete(key, now)))
    }
}
