//! The native backend: requests are [`TestRequest`]s and host calls go to the current
//! [`TestHost`](crate::testing::TestHost).

use std::time::Duration;

use super::headers;
use crate::http::{CallError, OutboundRequest, OutboundResponse};
use crate::log::Level;
use crate::testing::{current_host, TestRequest, TestResponse};
use crate::UpstreamFailure;

fn get(list: &[(String, String)], name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    list.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
}

fn get_all(list: &[(String, String)], name: &str) -> Vec<String> {
    let name = name.to_ascii_lowercase();
    list.iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
        .collect()
}

fn set(list: &mut Vec<(String, String)>, name: &str, value: &str) -> Result<(), String> {
    let name = headers::name(name)?;
    headers::value(value)?;
    list.retain(|(n, _)| *n != name);
    list.push((name, value.to_owned()));
    Ok(())
}

fn append(list: &mut Vec<(String, String)>, name: &str, value: &str) -> Result<(), String> {
    let name = headers::name(name)?;
    headers::value(value)?;
    list.push((name, value.to_owned()));
    Ok(())
}

fn remove(list: &mut Vec<(String, String)>, name: &str) {
    let name = name.to_ascii_lowercase();
    list.retain(|(n, _)| *n != name);
}

/// A request under test.
pub(crate) struct RequestHandle<'a>(pub(crate) &'a mut TestRequest);

impl RequestHandle<'_> {
    pub(crate) fn method(&self) -> String {
        self.0.method.clone()
    }
    pub(crate) fn scheme(&self) -> String {
        self.0.scheme.clone()
    }
    pub(crate) fn authority(&self) -> String {
        self.0.authority.clone()
    }
    pub(crate) fn set_authority(&mut self, authority: &str) -> Result<(), String> {
        if authority.is_empty() || authority.contains(['/', ' ', '?', '#', '@']) {
            return Err(format!("invalid authority {authority:?}"));
        }
        self.0.authority = authority.to_owned();
        Ok(())
    }
    pub(crate) fn path(&self) -> String {
        self.0.path.clone()
    }
    pub(crate) fn set_path(&mut self, path: &str) -> Result<(), String> {
        if !path.starts_with('/') || path.contains([' ', '#']) || path.chars().any(char::is_control)
        {
            return Err(format!(
                "invalid path {path:?}: it must start with / and hold no spaces"
            ));
        }
        self.0.path = path.to_owned();
        Ok(())
    }
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        get(&self.0.headers, name)
    }
    pub(crate) fn header_all(&self, name: &str) -> Vec<String> {
        get_all(&self.0.headers, name)
    }
    pub(crate) fn headers(&self) -> Vec<(String, String)> {
        self.0.headers.clone()
    }
    pub(crate) fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        set(&mut self.0.headers, name, value)
    }
    pub(crate) fn append_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        append(&mut self.0.headers, name, value)
    }
    pub(crate) fn remove_header(&mut self, name: &str) {
        remove(&mut self.0.headers, name)
    }
    pub(crate) fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        append(&mut self.0.response_headers, name, value)
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
    pub(crate) fn property(&self, key: &str) -> Option<String> {
        self.0.properties.get(key).cloned()
    }
    pub(crate) fn set_property(&mut self, key: &str, value: &str) {
        self.0.properties.insert(key.to_owned(), value.to_owned());
    }
    pub(crate) fn set_replay_limit(&mut self, limit: u64) {
        self.0.replay_limit = Some(limit);
    }
    pub(crate) fn body_replayable(&self) -> bool {
        self.0.body_replayable
    }
    pub(crate) fn set_timeout(&mut self, ms: u32) {
        self.0.timeout = Some(Duration::from_millis(ms.into()));
    }
    pub(crate) fn set_try_timeout(&mut self, ms: u32) {
        self.0.try_timeout = Some(Duration::from_millis(ms.into()));
    }
}

/// A response under test.
pub(crate) struct ResponseHandle<'a>(pub(crate) &'a mut TestResponse);

impl ResponseHandle<'_> {
    pub(crate) fn status(&self) -> u16 {
        self.0.status
    }
    pub(crate) fn set_status(&mut self, status: u16) -> Result<(), String> {
        if !(100..=999).contains(&status) {
            return Err(format!("invalid status {status}"));
        }
        self.0.status = status;
        Ok(())
    }
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        get(&self.0.headers, name)
    }
    pub(crate) fn header_all(&self, name: &str) -> Vec<String> {
        get_all(&self.0.headers, name)
    }
    pub(crate) fn headers(&self) -> Vec<(String, String)> {
        self.0.headers.clone()
    }
    pub(crate) fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        set(&mut self.0.headers, name, value)
    }
    pub(crate) fn append_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        append(&mut self.0.headers, name, value)
    }
    pub(crate) fn remove_header(&mut self, name: &str) {
        remove(&mut self.0.headers, name)
    }
    pub(crate) fn upstream_failure(&self) -> Option<UpstreamFailure> {
        self.0.upstream_failure
    }
    pub(crate) fn upstream_address(&self) -> Option<String> {
        self.0.upstream_address.clone()
    }
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
    pub(crate) fn clock_now_ms() -> u64 {
        current_host().now_ms()
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
    pub(crate) fn state_counter_add(key: &str, delta: i64, ttl_ms: Option<u64>) -> i64 {
        let host = current_host();
        let now = host.monotonic_ms();
        let result = host.store().counter_add(key, delta, ttl_ms, now);
        result
    }
    pub(crate) fn state_counter_get(key: &str) -> i64 {
        let host = current_host();
        let now = host.monotonic_ms();
        let result = host.store().counter_get(key, now);
        result
    }
    pub(crate) fn state_token_bucket_take(
        key: &str,
        capacity: u64,
        refill_tokens: u64,
        refill_interval_ms: u64,
        tokens: u64,
    ) -> weft_shared_state::TakeResult {
        let host = current_host();
        let now = host.monotonic_ms();
        let bucket = weft_shared_state::Bucket {
            capacity,
            refill_tokens,
            refill_interval_ms,
        };
        let result = host.store().token_bucket_take(key, bucket, tokens, now);
        result
    }
    pub(crate) fn state_kv_get(key: &str) -> Option<Vec<u8>> {
        let host = current_host();
        let now = host.monotonic_ms();
        let result = host.store().kv_get(key, now).map(<[u8]>::to_vec);
        result
    }
    pub(crate) fn state_kv_set(key: &str, value: &[u8], ttl_ms: Option<u64>) {
        let host = current_host();
        let now = host.monotonic_ms();
        host.store().kv_set(key, value.to_vec(), ttl_ms, now);
    }
    pub(crate) fn state_kv_set_if_absent(key: &str, value: &[u8], ttl_ms: Option<u64>) -> bool {
        let host = current_host();
        let now = host.monotonic_ms();
        let result = host
            .store()
            .kv_set_if_absent(key, value.to_vec(), ttl_ms, now);
        result
    }
    pub(crate) fn state_kv_delete(key: &str) -> bool {
        let host = current_host();
        let now = host.monotonic_ms();
        let result = host.store().kv_delete(key, now);
        result
    }
    pub(crate) fn http_send(
        cluster: &str,
        request: &OutboundRequest,
    ) -> Result<OutboundResponse, CallError> {
        current_host().http_send(cluster, request)
    }
}
