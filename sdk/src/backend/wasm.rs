//! The wasm32 backend: the raw `weft:filter` bindings, hidden behind the SDK's types.

use std::marker::PhantomData;
use std::time::Duration;

use crate::http::{CallError, OutboundRequest, OutboundResponse};
use crate::log::Level;
use crate::{Action, BodyAction, BodyMode, LocalResponse, UpstreamFailure};

#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "filter",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "weft_sdk::__private::bindings",
        runtime_path: "weft_sdk::__private::wit_bindgen::rt",
    });
}

use bindings::weft::filter as raw;

fn failure_from_raw(f: raw::types::UpstreamFailure) -> UpstreamFailure {
    use raw::types::UpstreamFailure as R;
    match f {
        R::ConnectFailure => UpstreamFailure::ConnectFailure,
        R::ConnectTimeout => UpstreamFailure::ConnectTimeout,
        R::Reset => UpstreamFailure::Reset,
        R::Timeout => UpstreamFailure::Timeout,
        R::ProtocolError => UpstreamFailure::ProtocolError,
        R::NoEndpoints => UpstreamFailure::NoEndpoints,
        R::UnknownCluster => UpstreamFailure::UnknownCluster,
    }
}

/// The request of the phase call in progress. The `request` interface acts on it
/// implicitly; the lifetime ties a handle to the call it was made for.
pub(crate) struct RequestHandle<'a>(pub(crate) PhantomData<&'a ()>);

impl RequestHandle<'_> {
    pub(crate) fn method(&self) -> String {
        raw::request::method()
    }
    pub(crate) fn scheme(&self) -> String {
        raw::request::scheme()
    }
    pub(crate) fn authority(&self) -> String {
        raw::request::authority()
    }
    pub(crate) fn set_authority(&mut self, authority: &str) -> Result<(), String> {
        raw::request::set_authority(authority)
    }
    pub(crate) fn path(&self) -> String {
        raw::request::path()
    }
    pub(crate) fn set_path(&mut self, path: &str) -> Result<(), String> {
        raw::request::set_path(path)
    }
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        raw::request::header(name)
    }
    pub(crate) fn header_all(&self, name: &str) -> Vec<String> {
        raw::request::header_all(name)
    }
    pub(crate) fn headers(&self) -> Vec<(String, String)> {
        raw::request::headers()
    }
    pub(crate) fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        raw::request::set_header(name, value)
    }
    pub(crate) fn append_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        raw::request::append_header(name, value)
    }
    pub(crate) fn remove_header(&mut self, name: &str) {
        raw::request::remove_header(name)
    }
    pub(crate) fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        raw::request::add_response_header(name, value)
    }
    pub(crate) fn client_address(&self) -> String {
        raw::request::client_address()
    }
    pub(crate) fn peer_identity(&self) -> Option<String> {
        raw::request::peer_identity()
    }
    pub(crate) fn listener(&self) -> String {
        raw::request::listener()
    }
    pub(crate) fn route(&self) -> String {
        raw::request::route()
    }
    pub(crate) fn cluster(&self) -> String {
        raw::request::cluster()
    }
    pub(crate) fn attempt(&self) -> u32 {
        raw::request::attempt()
    }
    pub(crate) fn property(&self, key: &str) -> Option<String> {
        raw::request::property(key)
    }
    pub(crate) fn set_property(&mut self, key: &str, value: &str) {
        raw::request::set_property(key, value)
    }
    pub(crate) fn set_replay_limit(&mut self, limit: u64) {
        raw::request::set_replay_limit(limit)
    }
    pub(crate) fn body_replayable(&self) -> bool {
        raw::request::body_replayable()
    }
    pub(crate) fn set_timeout(&mut self, ms: u32) {
        raw::request::set_timeout(ms)
    }
    pub(crate) fn set_try_timeout(&mut self, ms: u32) {
        raw::request::set_try_timeout(ms)
    }
}

/// The response of the phase call in progress (response phases only), as
/// [`RequestHandle`] is for the request.
pub(crate) struct ResponseHandle<'a>(pub(crate) PhantomData<&'a ()>);

impl ResponseHandle<'_> {
    pub(crate) fn status(&self) -> u16 {
        raw::response::status()
    }
    pub(crate) fn set_status(&mut self, status: u16) -> Result<(), String> {
        raw::response::set_status(status)
    }
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        raw::response::header(name)
    }
    pub(crate) fn header_all(&self, name: &str) -> Vec<String> {
        raw::response::header_all(name)
    }
    pub(crate) fn headers(&self) -> Vec<(String, String)> {
        raw::response::headers()
    }
    pub(crate) fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        raw::response::set_header(name, value)
    }
    pub(crate) fn append_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        raw::response::append_header(name, value)
    }
    pub(crate) fn remove_header(&mut self, name: &str) {
        raw::response::remove_header(name)
    }
    pub(crate) fn upstream_failure(&self) -> Option<UpstreamFailure> {
        raw::response::failure().map(failure_from_raw)
    }
    pub(crate) fn upstream_address(&self) -> Option<String> {
        raw::response::upstream_address()
    }
}

/// Host functions, served by the proxy through the WIT imports.
pub(crate) mod host {
    use super::*;

    fn level(level: Level) -> raw::log::Level {
        match level {
            Level::Trace => raw::log::Level::Trace,
            Level::Debug => raw::log::Level::Debug,
            Level::Info => raw::log::Level::Info,
            Level::Warn => raw::log::Level::Warn,
            Level::Error => raw::log::Level::Error,
        }
    }

    fn labels(labels: &[(&str, &str)]) -> Vec<(String, String)> {
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    pub(crate) fn log_write(l: Level, message: &str) {
        raw::log::write(level(l), message)
    }
    pub(crate) fn log_enabled(l: Level) -> bool {
        raw::log::enabled(level(l))
    }
    pub(crate) fn clock_now_ms() -> u64 {
        raw::clock::now_ms()
    }
    pub(crate) fn clock_monotonic_ns() -> u64 {
        raw::clock::monotonic_ns()
    }
    pub(crate) fn random_u64() -> u64 {
        raw::random::next_u64()
    }
    pub(crate) fn random_fill(len: u32) -> Vec<u8> {
        raw::random::fill(len)
    }
    pub(crate) fn metrics_describe(name: &str, help: &str, buckets: Option<&[f64]>) {
        raw::metrics::describe(name, help, buckets)
    }
    pub(crate) fn metrics_resolve(
        kind: crate::metrics::Kind,
        name: &str,
        l: &[(&str, &str)],
    ) -> u32 {
        use crate::metrics::Kind;
        let labels = labels(l);
        match kind {
            Kind::Counter => raw::metrics::counter(name, &labels),
            Kind::Gauge => raw::metrics::gauge(name, &labels),
            Kind::Histogram => raw::metrics::histogram(name, &labels),
        }
    }
    pub(crate) fn metrics_counter_add(id: u32, value: u64) {
        raw::metrics::counter_add(id, value)
    }
    pub(crate) fn metrics_gauge_set(id: u32, value: f64) {
        raw::metrics::gauge_set(id, value)
    }
    pub(crate) fn metrics_gauge_add(id: u32, delta: f64) {
        raw::metrics::gauge_add(id, delta)
    }
    pub(crate) fn metrics_histogram_record(id: u32, value: f64) {
        raw::metrics::histogram_record(id, value)
    }
    pub(crate) fn state_counter_add(key: &str, delta: i64, ttl_ms: Option<u64>) -> i64 {
        raw::shared_state::counter_add(key, delta, ttl_ms)
    }
    pub(crate) fn state_counter_get(key: &str) -> i64 {
        raw::shared_state::counter_get(key)
    }
    pub(crate) fn state_token_bucket_take(
        key: &str,
        capacity: u64,
        refill_tokens: u64,
        refill_interval_ms: u64,
        tokens: u64,
    ) -> raw::shared_state::TakeResult {
        let bucket = raw::shared_state::Bucket {
            capacity,
            refill_tokens,
            refill_interval_ms,
        };
        raw::shared_state::token_bucket_take(key, bucket, tokens)
    }
    pub(crate) fn state_kv_get(key: &str) -> Option<Vec<u8>> {
        raw::shared_state::kv_get(key)
    }
    pub(crate) fn state_kv_set(key: &str, value: &[u8], ttl_ms: Option<u64>) {
        raw::shared_state::kv_set(key, value, ttl_ms)
    }
    pub(crate) fn state_kv_set_if_absent(key: &str, value: &[u8], ttl_ms: Option<u64>) -> bool {
        raw::shared_state::kv_set_if_absent(key, value, ttl_ms)
    }
    pub(crate) fn state_kv_delete(key: &str) -> bool {
        raw::shared_state::kv_delete(key)
    }
    pub(crate) fn http_send(
        cluster: &str,
        request: &OutboundRequest,
    ) -> Result<OutboundResponse, CallError> {
        use raw::http_client as h;
        let raw_request = h::OutboundRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            authority: request.authority.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
            timeout_ms: request
                .timeout
                .map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
        };
        match h::send(cluster, &raw_request) {
            Ok(r) => Ok(OutboundResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(h::CallError::UnknownCluster(c)) => Err(CallError::UnknownCluster(c)),
            Err(h::CallError::InvalidRequest(m)) => Err(CallError::InvalidRequest(m)),
            Err(h::CallError::Failed(f)) => Err(CallError::Failed(failure_from_raw(f))),
            Err(h::CallError::ResponseTooLarge) => Err(CallError::ResponseTooLarge),
        }
    }
}

/// The glue between the raw exports and a [`crate::Filter`], used by
/// [`crate::filter`]'s expansion.
pub mod glue {
    use super::*;
    use crate::__private::Slot;
    use crate::filter::parse_config;
    use crate::{ExchangeSummary, Filter, InitContext, Request, Response};

    pub use super::bindings::exports::weft::filter::handler::Guest;
    pub use super::raw::types::{
        Action as RawAction, BodyAction as RawBodyAction, ExchangeSummary as RawSummary,
        FilterConfig as RawConfig, FilterInfo as RawInfo,
    };

    fn local(r: LocalResponse) -> raw::types::LocalResponse {
        raw::types::LocalResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }

    fn mode(m: BodyMode) -> raw::types::BodyMode {
        match m {
            BodyMode::None => raw::types::BodyMode::None,
            BodyMode::Stream => raw::types::BodyMode::Stream,
            BodyMode::Buffer(n) => raw::types::BodyMode::Buffer(n),
        }
    }

    fn action(a: Action) -> RawAction {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        match a {
            Action::Continue => RawAction::Continue,
            Action::Respond(r) => RawAction::Respond(local(r)),
            Action::Delay(d) => RawAction::Delay(ms(d)),
            Action::RouteTo(c) => RawAction::RouteTo(c),
            Action::Retry { backoff } => RawAction::Retry(ms(backoff)),
        }
    }

    fn body_action(a: BodyAction) -> RawBodyAction {
        match a {
            BodyAction::Continue => RawBodyAction::Continue,
            BodyAction::Replace(b) => RawBodyAction::Replace(b),
            BodyAction::Respond(r) => RawBodyAction::Respond(local(r)),
        }
    }

    /// Builds the filter and says what it wants.
    pub fn init<F: Filter>(slot: &Slot<F>, config: RawConfig) -> Result<RawInfo, String> {
        let parsed = parse_config::<F::Config>(&config.config)?;
        let ctx = InitContext {
            name: config.name,
            files: config.files.into_iter().collect(),
        };
        let filter = F::new(parsed, &ctx)?;
        let p = F::__PHASES;
        let mut phases = raw::types::Phases::empty();
        phases.set(raw::types::Phases::REQUEST_HEADERS, p.request_headers);
        phases.set(raw::types::Phases::REQUEST_BODY, p.request_body);
        phases.set(raw::types::Phases::RESPONSE_HEADERS, p.response_headers);
        phases.set(raw::types::Phases::RESPONSE_BODY, p.response_body);
        phases.set(raw::types::Phases::LOG, p.log);
        let info = RawInfo {
            phases,
            request_body: mode(if p.request_body {
                filter.request_body_mode()
            } else {
                BodyMode::None
            }),
            response_body: mode(if p.response_body {
                filter.response_body_mode()
            } else {
                BodyMode::None
            }),
        };
        slot.set(filter);
        Ok(info)
    }

    /// Phase 1 for filter `F`.
    pub fn on_request_headers<F: Filter>(slot: &Slot<F>) -> RawAction {
        action(slot.get().on_request_headers(&mut Request {
            raw: RequestHandle(PhantomData),
        }))
    }

    /// Phase 2 for filter `F`.
    pub fn on_request_body<F: Filter>(slot: &Slot<F>, body: Vec<u8>, eos: bool) -> RawBodyAction {
        body_action(slot.get().on_request_body(
            &mut Request {
                raw: RequestHandle(PhantomData),
            },
            &body,
            eos,
        ))
    }

    /// Phase 3 for filter `F`.
    pub fn on_response_headers<F: Filter>(slot: &Slot<F>) -> RawAction {
        action(slot.get().on_response_headers(
            &mut Request {
                raw: RequestHandle(PhantomData),
            },
            &mut Response {
                raw: ResponseHandle(PhantomData),
            },
        ))
    }

    /// Phase 4 for filter `F`.
    pub fn on_response_body<F: Filter>(slot: &Slot<F>, body: Vec<u8>, eos: bool) -> RawBodyAction {
        body_action(slot.get().on_response_body(
            &mut Request {
                raw: RequestHandle(PhantomData),
            },
            &mut Response {
                raw: ResponseHandle(PhantomData),
            },
            &body,
            eos,
        ))
    }

    /// Phase 5 for filter `F`.
    pub fn on_log<F: Filter>(slot: &Slot<F>, s: RawSummary) {
        let summary = ExchangeSummary {
            status: s.status,
            upstream_failure: s.upstream_failure.map(failure_from_raw),
            upstream_address: s.upstream_address,
            attempts: s.attempts,
            request_body_bytes: s.request_body_bytes,
            response_body_bytes: s.response_body_bytes,
            duration: Duration::from_micros(s.duration_us),
            completed: s.completed,
        };
        slot.get().on_log(
            &Request {
                raw: RequestHandle(PhantomData),
            },
            &summary,
        )
    }
}
