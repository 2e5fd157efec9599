//! The native backend: reads go to the [`TestRequest`] and [`TestResponse`] as they were
//! before the call, and host calls go to the current
//! [`TestHost`](crate::testing::TestHost).

use std::time::Duration;

use crate::http::{CallError, OutboundRequest, OutboundResponse};
use crate::log::Level;
use crate::state::{Counter, Scope, TakeResult, TokenBucket, Unavailable};
use crate::testing::{current_host, TestRequest, TestResponse};

fn get(list: &[(String, String)], name: &str) -> Option<Vec<u8>> {
    list.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_bytes().to_vec())
}

fn get_all(list: &[(String, String)], name: &str) -> Vec<Vec<u8>> {
    list.iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_bytes().to_vec())
        .collect()
}

fn pairs(list: &[(String, String)]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(n, v)| (n.clone(), v.as_bytes().to_vec()))
        .collect()
}

/// Reads of the request under test, as it was when the call began.
pub(crate) struct RequestHost<'a>(pub(crate) &'a TestRequest);

impl RequestHost<'_> {
    pub(crate) fn method(&self) -> String {
        self.0.method.clone()
    }
    pub(crate) fn scheme(&self) -> String {
        self.0.scheme.clone()
    }
    pub(crate) fn version(&self) -> String {
        self.0.version.clone()
    }
    pub(crate) fn authority(&self) -> String {
        self.0.authority.clone()
    }
    pub(crate) fn path(&self) -> String {
        self.0.path.clone()
    }
    pub(crate) fn original_path(&self) -> String {
        self.0
            .original_path
            .clone()
            .unwrap_or_else(|| self.0.path.clone())
    }
    pub(crate) fn header(&self, name: &str) -> Option<Vec<u8>> {
        get(&self.0.headers, name)
    }
    pub(crate) fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
        get_all(&self.0.headers, name)
    }
    pub(crate) fn headers(&self) -> Vec<(String, Vec<u8>)> {
        pairs(&self.0.headers)
    }
    pub(crate) fn client_address(&self) -> String {
        self.0.client_address.clone()
    }
    pub(crate) fn peer_identity(&self) -> Option<String> {
        self.0.peer_identity.clone()
    }
    pub(crate) fn listener(&self) -> String {
        self.0.listener.clone()
    }
    pub(crate) fn route(&self) -> String {
        self.0.route.clone()
    }
    pub(crate) fn cluster(&self) -> String {
        self.0.cluster.clone()
    }
    pub(crate) fn attempt(&self) -> u32 {
        self.0.attempt
    }
    pub(crate) fn trace_id(&self) -> Option<String> {
        self.0.trace_id.clone()
    }
    pub(crate) fn property(&self, key: &str) -> Option<String> {
        self.0.properties.get(key).cloned()
    }
    pub(crate) fn body_replayable(&self) -> bool {
        self.0.body_replayable
    }
}

/// Reads of the response under test, as it was when the call began.
pub(crate) struct ResponseHost<'a>(pub(crate) &'a TestResponse);

impl ResponseHost<'_> {
    pub(crate) fn header(&self, name: &str) -> Option<Vec<u8>> {
        get(&self.0.headers, name)
    }
    pub(crate) fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
        get_all(&self.0.headers, name)
    }
    pub(crate) fn headers(&self) -> Vec<(String, Vec<u8>)> {
        pairs(&self.0.headers)
    }
    pub(crate) fn upstream_address(&self) -> Option<String> {
        self.0.upstream_address.clone()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Host functions, served by the current test host.
pub(crate) mod host {
    use super::*;

    pub(crate) fn log_write(level: Level, message: &str) {
        current_host().log(level, message)
    }
    pub(crate) fn log_enabled(_level: Level) -> bool {
        true
    }
    pub(crate) fn clock_now_ns() -> u64 {
        current_host().now_ms().saturating_mul(1_000_000)
    }
    pub(crate) fn clock_monotonic_ns() -> u64 {
        current_host().monotonic_ns()
    }
    pub(crate) fn random_u64() -> u64 {
        current_host().next_random()
    }
    pub(crate) fn random_fill(len: u32) -> Vec<u8> {
        let host = current_host();
        let mut out = Vec::with_capacity(len as usize);
        while out.len() < len as usize {
            out.extend_from_slice(&host.next_random().to_le_bytes());
        }
        out.truncate(len as usize);
        out
    }
    pub(crate) fn metrics_describe(name: &str, help: &str, buckets: Option<&[f64]>) {
        current_host().describe(name, help, buckets)
    }
    pub(crate) fn metrics_resolve(
        kind: crate::metrics::Kind,
        name: &str,
        labels: &[(&str, &str)],
    ) -> u32 {
        current_host().resolve(kind, name, labels)
    }
    pub(crate) fn metrics_counter_add(id: u32, value: u64) {
        current_host().metric_add(id, value as f64)
    }
    pub(crate) fn metrics_gauge_set(id: u32, value: f64) {
        current_host().metric_set(id, value)
    }
    pub(crate) fn metrics_gauge_add(id: u32, delta: f64) {
        current_host().metric_add(id, delta)
    }
    pub(crate) fn metrics_histogram_record(id: u32, value: f64) {
        current_host().observe(id, value)
    }
    pub(crate) fn state_counter_add(
        scope: Scope,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Counter {
        let host = current_host();
        let now = host.monotonic_ms();
        let c = host.store(scope).counter_add(key, delta, ttl.map(ms), now);
        Counter::from_store(c, now)
    }
    pub(crate) fn state_counter_get(scope: Scope, key: &str) -> Counter {
        let host = current_host();
        let now = host.monotonic_ms();
        let c = host.store(scope).counter_get(key, now);
        Counter::from_store(c, now)
    }
    pub(crate) fn state_token_bucket_take(
        scope: Scope,
        key: &str,
        bucket: &TokenBucket,
        tokens: u64,
    ) -> TakeResult {
        let host = current_host();
        let now = host.monotonic_ms();
        let b = weft_shared_state::Bucket {
            capacity: bucket.capacity,
            refill_tokens: bucket.refill_tokens,
            refill_interval_ms: ms(bucket.refill_interval).max(1),
        };
        let r = host.store(scope).token_bucket_take(key, b, tokens, now);
        TakeResult {
            allowed: r.allowed,
            remaining: r.remaining,
            retry_after: Duration::from_millis(r.retry_after_ms),
            reset: Duration::from_millis(r.reset_ms),
        }
    }
    pub(crate) fn state_kv_get(key: &str) -> Option<Vec<u8>> {
        let host = current_host();
        let now = host.monotonic_ms();
        let result = host
            .store(Scope::Local)
            .kv_get(key, now)
            .map(<[u8]>::to_vec);
        result
    }
    pub(crate) fn state_kv_set(key: &str, value: &[u8], ttl: Option<Duration>) {
        let host = current_host();
        let now = host.monotonic_ms();
        host.store(Scope::Local)
            .kv_set(key, value.to_vec(), ttl.map(ms), now);
    }
    pub(crate) fn state_kv_set_if_absent(key: &str, value: &[u8], ttl: Option<Duration>) -> bool {
        let host = current_host();
        let now = host.monotonic_ms();
        let result =
            host.store(Scope::Local)
                .kv_set_if_absent(key, value.to_vec(), ttl.map(ms), now);
        result
    }
    pub(crate) fn state_kv_delete(key: &str) -> bool {
        let host = current_host();
        let now = host.monotonic_ms();
        let result = host.store(Scope::Local).kv_delete(key, now);
        result
    }
    pub(crate) fn global_get(key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let host = current_host();
        host.global_available()?;
        let now = host.monotonic_ms();
        let result = host
            .store(Scope::Global)
            .kv_get(key, now)
            .map(<[u8]>::to_vec);
        Ok(result)
    }
    pub(crate) fn global_set(
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), Unavailable> {
        let host = current_host();
        host.global_available()?;
        let now = host.monotonic_ms();
        host.store(Scope::Global)
            .kv_set(key, value.to_vec(), ttl.map(ms), now);
        Ok(())
    }
    pub(crate) fn global_set_if_absent(
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, Unavailable> {
        let host = current_host();
        host.global_available()?;
        let now = host.monotonic_ms();
        let result =
            host.store(Scope::Global)
                .kv_set_if_absent(key, value.to_vec(), ttl.map(ms), now);
        Ok(result)
    }
    pub(crate) fn global_delete(key: &str) -> Result<bool, Unavailable> {
        let host = current_host();
        host.global_available()?;
        let now = host.monotonic_ms();
        let result = host.store(Scope::Global).kv_delete(key, now);
        Ok(result)
    }
    pub(crate) fn http_send(
        cluster: &str,
        request: &OutboundRequest,
    ) -> Result<OutboundResponse, CallError> {
        current_host().http_send(cluster, request)
    }
}
