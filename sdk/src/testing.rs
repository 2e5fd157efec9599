//! A native test harness: run a filter's logic with `cargo test`, without wasm.
//!
//! [`Harness`] builds a filter from its configuration exactly as the proxy does (same
//! JSON, same `null`-as-`{}` rule) and calls only the phases the filter implements, as
//! the proxy does. Host capabilities come from a [`TestHost`]: a manual clock, seeded
//! randomness, captured logs and metrics, shared state with the proxy's own semantics,
//! and clusters that a test mocks for [`crate::http::send`].
//!
//! ```
//! use weft_sdk::testing::{Harness, TestRequest};
//! use weft_sdk::{Action, Filter, InitContext, Request};
//!
//! struct Deny;
//!
//! #[weft_sdk::filter]
//! impl Filter for Deny {
//!     type Config = ();
//!     fn new(_: (), _: &InitContext) -> Result<Self, String> {
//!         Ok(Deny)
//!     }
//!     fn on_request_headers(&self, req: &mut Request) -> Action {
//!         match req.header("authorization") {
//!             Some(_) => Action::Continue,
//!             None => Action::respond(401, "who are you?"),
//!         }
//!     }
//! }
//!
//! let h = Harness::<Deny>::new("null").unwrap();
//! let action = h.on_request_headers(&mut TestRequest::get("/"));
//! assert!(matches!(action, Action::Respond(r) if r.status == 401));
//! let action = h.on_request_headers(&mut TestRequest::get("/").header("authorization", "x"));
//! assert_eq!(action, Action::Continue);
//! ```
#![cfg(not(target_arch = "wasm32"))]

use std::cell::{Cell, RefCell, RefMut};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use crate::backend::{RequestHost, ResponseHost};
use weft_abi::answer::{Edit, Item};

use crate::call::{
    self, Declared, PhaseKind, RequestCall, RequestView, ResponseCall, ResponseView, View,
};
use crate::filter::{parse_config, Reads};
use crate::http::{CallError, OutboundRequest, OutboundResponse};
use crate::log::Level;
use crate::state::Scope;
use crate::{
    Action, BodyAction, BodyMode, ExchangeSummary, Filter, InitContext, Phases, Request, Response,
    UpstreamFailure,
};

/// 2026-01-01T00:00:00Z, where every test clock starts.
const TEST_EPOCH_MS: u64 = 1_767_225_600_000;

/// A request under test: build it, pass it through [`Harness`] phases, then read what
/// the filter changed.
#[derive(Debug, Clone)]
pub struct TestRequest {
    pub(crate) method: String,
    pub(crate) scheme: String,
    pub(crate) version: String,
    pub(crate) authority: String,
    pub(crate) path: String,
    pub(crate) original_path: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) client_address: String,
    pub(crate) peer_identity: Option<String>,
    pub(crate) listener: String,
    pub(crate) route: String,
    pub(crate) cluster: String,
    pub(crate) attempt: u32,
    pub(crate) properties: BTreeMap<String, String>,
    pub(crate) replay_limit: Option<u64>,
    pub(crate) body_replayable: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) try_timeout: Option<Duration>,
    pub(crate) response_headers: Vec<(String, String)>,
    pub(crate) trace_id: Option<String>,
    pub(crate) hash_key: Option<Vec<u8>>,
    pub(crate) span_attributes: Vec<(String, String)>,
}

/// Checks a header a test builds (any token name, including those the proxy manages,
/// which a client may send) and returns the name in lower case.
fn test_header(name: &str, value: &str) -> Result<String, crate::Error> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(crate::Error(format!("invalid header name {name:?}")));
    }
    call::header_value(value.as_bytes())?;
    Ok(name.to_ascii_lowercase())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn header_edit(list: &mut Vec<(String, String)>, edit: &Edit<'_>, request_side: bool) -> bool {
    match (*edit, request_side) {
        (Edit::SetRequestHeader(n, v), true) | (Edit::SetResponseHeader(n, v), false) => {
            let n = text(n);
            list.retain(|(k, _)| *k != n);
            list.push((n, text(v)));
        }
        (Edit::AppendRequestHeader(n, v), true) | (Edit::AppendResponseHeader(n, v), false) => {
            list.push((text(n), text(v)));
        }
        (Edit::RemoveRequestHeader(n), true) | (Edit::RemoveResponseHeader(n), false) => {
            let n = text(n);
            list.retain(|(k, _)| *k != n);
        }
        _ => return false,
    }
    true
}

/// Applies a call's answer as the proxy does: its edits in order (the SDK checked each
/// when it was made); metric updates were recorded by the test host as they happened.
fn apply(req: &mut TestRequest, mut resp: Option<&mut TestResponse>, answer: &[u8]) {
    for item in weft_abi::answer::items(answer) {
        let Ok(Item::Edit(e)) = item else {
            continue;
        };
        if header_edit(&mut req.headers, &e, true) {
            continue;
        }
        if let Some(r) = resp.as_deref_mut() {
            if header_edit(&mut r.headers, &e, false) {
                continue;
            }
        }
        match e {
            Edit::AddClientResponseHeader(n, v) => req.response_headers.push((text(n), text(v))),
            Edit::SetStatus(s) => {
                if let Some(r) = resp.as_deref_mut() {
                    r.status = s;
                }
            }
            Edit::SetPath(p) => req.path = p.to_owned(),
            Edit::SetAuthority(a) => req.authority = a.to_owned(),
            Edit::SetProperty(k, v) => {
                req.properties.insert(k.to_owned(), v.to_owned());
            }
            Edit::SetHashKey(k) => req.hash_key = Some(k.to_vec()),
            Edit::SpanAttribute(k, v) => req.span_attributes.push((k.to_owned(), v.to_owned())),
            Edit::SetTimeout(ns) => req.timeout = Some(Duration::from_nanos(ns)),
            Edit::SetTryTimeout(ns) => req.try_timeout = Some(Duration::from_nanos(ns)),
            Edit::SetReplayLimit(n) => {
                req.replay_limit = Some(req.replay_limit.map_or(n, |l| l.max(n)));
            }
            _ => {}
        }
    }
}

impl TestRequest {
    /// A request with a method and a path (with query), from client `127.0.0.1:40000`
    /// for `example.com`, on listener `test`, route `test`, cluster `test`.
    pub fn new(method: &str, path: &str) -> Self {
        TestRequest {
            method: method.to_owned(),
            scheme: "http".to_owned(),
            version: "HTTP/1.1".to_owned(),
            authority: "example.com".to_owned(),
            path: path.to_owned(),
            original_path: None,
            headers: Vec::new(),
            client_address: "127.0.0.1:40000".to_owned(),
            peer_identity: None,
            listener: "test".to_owned(),
            route: "test".to_owned(),
            cluster: "test".to_owned(),
            attempt: 1,
            properties: BTreeMap::new(),
            replay_limit: None,
            body_replayable: true,
            timeout: None,
            try_timeout: None,
            response_headers: Vec::new(),
            trace_id: None,
            hash_key: None,
            span_attributes: Vec::new(),
        }
    }

    /// A `GET` request.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// A `POST` request.
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// Adds a header (the name is stored in lower case).
    ///
    /// # Panics
    /// If the name or value is not valid HTTP: a test's own input should be.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = test_header(name, value).expect("valid test header");
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Sets the HTTP version the client spoke (`HTTP/1.1` by default).
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// Sets the path as the client sent it, before the proxy normalized it (the same as
    /// the path by default).
    pub fn original_path(mut self, path: &str) -> Self {
        self.original_path = Some(path.to_owned());
        self
    }

    /// Sets the trace id the request carries.
    pub fn trace_id(mut self, trace_id: &str) -> Self {
        self.trace_id = Some(trace_id.to_owned());
        self
    }

    /// Sets the authority.
    pub fn authority(mut self, authority: &str) -> Self {
        self.authority = authority.to_owned();
        self
    }

    /// Sets the scheme (`http` or `https`).
    pub fn scheme(mut self, scheme: &str) -> Self {
        self.scheme = scheme.to_owned();
        self
    }

    /// Sets the client address (`ip:port`).
    pub fn client_address(mut self, address: &str) -> Self {
        self.client_address = address.to_owned();
        self
    }

    /// Sets the client's verified identity.
    pub fn peer_identity(mut self, identity: &str) -> Self {
        self.peer_identity = Some(identity.to_owned());
        self
    }

    /// Sets the listener, route and cluster names.
    pub fn routed(mut self, listener: &str, route: &str, cluster: &str) -> Self {
        self.listener = listener.to_owned();
        self.route = route.to_owned();
        self.cluster = cluster.to_owned();
        self
    }

    /// Sets the attempt number (1 for the first).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Sets a request property, as an earlier filter would.
    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.properties.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets whether the body can be replayed (true by default).
    pub fn body_replayable(mut self, replayable: bool) -> Self {
        self.body_replayable = replayable;
        self
    }

    /// Moves on to the next attempt, as the proxy does before a retry.
    pub fn next_attempt(&mut self) {
        self.attempt += 1;
    }

    /// The method now.
    pub fn method_now(&self) -> &str {
        &self.method
    }

    /// The path now.
    pub fn path_now(&self) -> &str {
        &self.path
    }

    /// The authority now.
    pub fn authority_now(&self) -> &str {
        &self.authority
    }

    /// The first value of a header now.
    pub fn header_now(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    /// Every header now.
    pub fn headers_now(&self) -> &[(String, String)] {
        &self.headers
    }

    /// A property now.
    pub fn property_now(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    /// The headers filters asked to add to the client's response
    /// ([`Request::add_response_header`](crate::Request::add_response_header)).
    pub fn response_headers_now(&self) -> &[(String, String)] {
        &self.response_headers
    }

    /// The first value of a header filters asked to add to the client's response.
    pub fn response_header_now(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.response_headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The replay limit a filter asked for.
    pub fn replay_limit(&self) -> Option<u64> {
        self.replay_limit
    }

    /// The timeout a filter set for the whole request.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The per-attempt timeout a filter set.
    pub fn try_timeout(&self) -> Option<Duration> {
        self.try_timeout
    }

    /// The load-balancing hash key a filter set.
    pub fn hash_key_now(&self) -> Option<&[u8]> {
        self.hash_key.as_deref()
    }

    /// The trace-span attributes filters added, in order.
    pub fn span_attributes_now(&self) -> &[(String, String)] {
        &self.span_attributes
    }
}

/// A response under test.
#[derive(Debug, Clone)]
pub struct TestResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) upstream_failure: Option<UpstreamFailure>,
    pub(crate) upstream_address: Option<String>,
}

impl TestResponse {
    /// An upstream response with a status, from `127.0.0.1:8080`.
    pub fn new(status: u16) -> Self {
        TestResponse {
            status,
            headers: Vec::new(),
            upstream_failure: None,
            upstream_address: Some("127.0.0.1:8080".to_owned()),
        }
    }

    /// The response the proxy makes when the upstream exchange fails: 503 for
    /// `NoEndpoints` and `UnknownCluster`, 504 for timeouts, 502 otherwise.
    pub fn failed(failure: UpstreamFailure) -> Self {
        let status = match failure {
            UpstreamFailure::NoEndpoints | UpstreamFailure::UnknownCluster => 503,
            UpstreamFailure::ConnectTimeout | UpstreamFailure::Timeout => 504,
            _ => 502,
        };
        TestResponse {
            status,
            headers: Vec::new(),
            upstream_failure: Some(failure),
            upstream_address: None,
        }
    }

    /// Adds a header.
    ///
    /// # Panics
    /// If the name or value is not valid HTTP.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = test_header(name, value).expect("valid test header");
        self.headers.push((name, value.to_owned()));
        self
    }

    /// The status now.
    pub fn status_now(&self) -> u16 {
        self.status
    }

    /// The first value of a header now.
    pub fn header_now(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// Every header now.
    pub fn headers_now(&self) -> &[(String, String)] {
        &self.headers
    }
}

/// Runs `f` with a test request as the SDK's [`Request`], for testing helpers that take
/// one (such as [`crate::matching::Match::matches`]).
pub fn with_request<R>(req: &mut TestRequest, f: impl FnOnce(&mut Request) -> R) -> R {
    let mut rc = RequestCall::new(PhaseKind::RequestHeaders, RequestView::empty());
    call::begin();
    let result = f(&mut Request {
        call: &mut rc,
        host: RequestHost(req),
    });
    apply(req, None, call::take().as_bytes());
    result
}

/// A handler standing in for a cluster in tests.
type ClusterMock = Box<dyn FnMut(&OutboundRequest) -> Result<OutboundResponse, CallError>>;

/// Labels as a sorted, owned key for a metric series.
type SeriesKey = (String, Vec<(String, String)>);

fn series(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    l.sort();
    (name.to_owned(), l)
}

/// What the host gives a filter under test. Share one between harnesses (with
/// [`Harness::with_host`]) to test state shared across instances.
pub struct TestHost {
    pub(crate) now_ms: Cell<u64>,
    monotonic_ns: Cell<u64>,
    rng: Cell<u64>,
    store: RefCell<weft_shared_state::Store>,
    global: RefCell<weft_shared_state::Store>,
    global_up: Cell<bool>,
    series: RefCell<Vec<(crate::metrics::Kind, SeriesKey)>>,
    values: RefCell<BTreeMap<SeriesKey, f64>>,
    observations: RefCell<BTreeMap<SeriesKey, Vec<f64>>>,
    help: RefCell<BTreeMap<String, String>>,
    logs: RefCell<Vec<(Level, String)>>,
    clusters: RefCell<HashMap<String, ClusterMock>>,
    calls: RefCell<Vec<(String, OutboundRequest)>>,
    /// Which host this is in the process (recordings of harnesses sharing one are
    /// told apart by it).
    pub(crate) id: u64,
    /// What each call got, in order (recorded for `weft filter test`).
    pub(crate) answers: RefCell<Vec<(String, Result<OutboundResponse, CallError>)>>,
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost {
            now_ms: Cell::new(TEST_EPOCH_MS),
            monotonic_ns: Cell::new(1_000_000_000),
            rng: Cell::new(0x5eed),
            store: RefCell::new(weft_shared_state::Store::new()),
            global: RefCell::new(weft_shared_state::Store::new()),
            global_up: Cell::new(true),
            series: RefCell::default(),
            values: RefCell::default(),
            observations: RefCell::default(),
            help: RefCell::default(),
            logs: RefCell::default(),
            clusters: RefCell::default(),
            calls: RefCell::default(),
            answers: RefCell::default(),
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Rc<TestHost>> = RefCell::new(Rc::new(TestHost::default()));
}

/// The host that SDK calls on this thread go to.
pub(crate) fn current_host() -> Rc<TestHost> {
    CURRENT.with(|c| c.borrow().clone())
}

fn install(host: &Rc<TestHost>) {
    let changed = CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        let changed = !Rc::ptr_eq(&current, host);
        *current = host.clone();
        changed
    });
    if changed {
        // Draws follow the new host's seed, as a new instance would.
        crate::random::reseed();
    }
}

impl TestHost {
    /// A host at 2026-01-01T00:00:00Z with a fixed random seed.
    pub fn new() -> Rc<TestHost> {
        Rc::new(TestHost::default())
    }

    /// Moves both clocks forward.
    pub fn advance(&self, by: Duration) {
        self.now_ms.set(self.now_ms.get() + by.as_millis() as u64);
        self.monotonic_ns
            .set(self.monotonic_ns.get() + by.as_nanos() as u64);
    }

    /// Sets the wall clock (milliseconds since the Unix epoch).
    pub fn set_now_ms(&self, now_ms: u64) {
        self.now_ms.set(now_ms);
    }

    /// Restarts the random sequence from a seed (for the filter's next draws too).
    pub fn seed(&self, seed: u64) {
        self.rng.set(seed);
        crate::random::reseed();
    }

    /// Answers [`crate::http::send`] calls to `cluster` with `handler`.
    pub fn mock_cluster(
        &self,
        cluster: &str,
        handler: impl FnMut(&OutboundRequest) -> Result<OutboundResponse, CallError> + 'static,
    ) {
        self.clusters
            .borrow_mut()
            .insert(cluster.to_owned(), Box::new(handler));
    }

    /// Every call the filter made, with its cluster, in order.
    pub fn calls(&self) -> Vec<(String, OutboundRequest)> {
        self.calls.borrow().clone()
    }

    /// A counter's or gauge's value for exactly these labels (0 if never touched).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.values
            .borrow()
            .get(&series(name, labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// A counter's or gauge's total over every label set.
    pub fn metric_total(&self, name: &str) -> f64 {
        self.values
            .borrow()
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }

    /// A histogram's observations for exactly these labels.
    pub fn observations(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.observations
            .borrow()
            .get(&series(name, labels))
            .cloned()
            .unwrap_or_default()
    }

    /// The help text a filter gave a metric.
    pub fn help(&self, name: &str) -> Option<String> {
        self.help.borrow().get(name).cloned()
    }

    /// Every message the filter logged, in order.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.logs.borrow().clone()
    }

    pub(crate) fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    pub(crate) fn monotonic_ns(&self) -> u64 {
        self.monotonic_ns.get()
    }

    pub(crate) fn monotonic_ms(&self) -> u64 {
        self.monotonic_ns.get() / 1_000_000
    }

    /// splitmix64: small, fast and good enough for tests.
    pub(crate) fn next_random(&self) -> u64 {
        let mut z = self.rng.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.rng.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The state of a scope: global state is apart from local state, as in the proxy
    /// with a global backend.
    pub(crate) fn store(&self, scope: Scope) -> RefMut<'_, weft_shared_state::Store> {
        match scope {
            Scope::Local => self.store.borrow_mut(),
            Scope::Global => self.global.borrow_mut(),
        }
    }

    /// Makes the global backend answer (the default) or fail with
    /// [`Unavailable`](crate::state::Unavailable), to test a filter's fallback.
    pub fn set_global_available(&self, up: bool) {
        self.global_up.set(up);
    }

    pub(crate) fn global_available(&self) -> Result<(), crate::state::Unavailable> {
        if self.global_up.get() {
            Ok(())
        } else {
            Err(crate::state::Unavailable)
        }
    }

    pub(crate) fn describe(&self, name: &str, help: &str, _buckets: Option<&[f64]>) {
        self.help
            .borrow_mut()
            .insert(name.to_owned(), help.to_owned());
    }

    /// Resolves a series to a handle, as the proxy does (same inputs, same handle).
    pub(crate) fn resolve(
        &self,
        kind: crate::metrics::Kind,
        name: &str,
        labels: &[(&str, &str)],
    ) -> u32 {
        let key = series(name, labels);
        let mut all = self.series.borrow_mut();
        if let Some(i) = all.iter().position(|(k, s)| *k == kind && *s == key) {
            return i as u32 + 1;
        }
        all.push((kind, key));
        all.len() as u32
    }

    fn key_of(&self, id: u32) -> Option<SeriesKey> {
        let i = (id as usize).checked_sub(1)?;
        self.series.borrow().get(i).map(|(_, k)| k.clone())
    }

    pub(crate) fn metric_add(&self, id: u32, delta: f64) {
        if let Some(key) = self.key_of(id) {
            *self.values.borrow_mut().entry(key).or_default() += delta;
        }
    }

    pub(crate) fn metric_set(&self, id: u32, value: f64) {
        if let Some(key) = self.key_of(id) {
            self.values.borrow_mut().insert(key, value);
        }
    }

    pub(crate) fn observe(&self, id: u32, value: f64) {
        if let Some(key) = self.key_of(id) {
            self.observations
                .borrow_mut()
                .entry(key)
                .or_default()
                .push(value);
        }
    }

    pub(crate) fn http_send(
        &self,
        cluster: &str,
        request: &OutboundRequest,
    ) -> Result<OutboundResponse, CallError> {
        self.calls
            .borrow_mut()
            .push((cluster.to_owned(), request.clone()));
        // Take the mock out while it runs so it may itself use the host.
        let mock = self.clusters.borrow_mut().remove(cluster);
        let Some(mut mock) = mock else {
            let e = CallError::UnknownCluster(cluster.to_owned());
            self.answers
                .borrow_mut()
                .push((cluster.to_owned(), Err(e.clone())));
            return Err(e);
        };
        let result = mock(request);
        self.answers
            .borrow_mut()
            .push((cluster.to_owned(), result.clone()));
        self.clusters
            .borrow_mut()
            .entry(cluster.to_owned())
            .or_insert(mock);
        result
    }
}

/// Runs one filter natively, as the proxy would.
pub struct Harness<F: Filter> {
    filter: F,
    host: Rc<TestHost>,
    reads: Reads,
    /// What the filter declared, for the views handed to each call (kept for the
    /// process's life, as in an instance).
    declared: &'static Declared,
    /// Where calls are recorded for `weft filter test`, when it asks.
    recorder: Option<crate::record::Recorder>,
}

impl<F: Filter> Harness<F> {
    /// Builds the filter from its configuration as JSON (`"null"` for none), named
    /// `test`, with a fresh [`TestHost`]. The error is the one the proxy would report.
    pub fn new(config_json: &str) -> Result<Self, String> {
        Self::with_host(config_json, TestHost::new())
    }

    /// Builds the filter on a given host, for example one shared with other harnesses.
    pub fn with_host(config_json: &str, host: Rc<TestHost>) -> Result<Self, String> {
        Self::with_context(config_json, "test", BTreeMap::new(), host)
    }

    /// Builds the filter with a name and the files its configuration lists.
    pub fn with_context(
        config_json: &str,
        name: &str,
        files: BTreeMap<String, Vec<u8>>,
        host: Rc<TestHost>,
    ) -> Result<Self, String> {
        install(&host);
        let recorder = crate::record::Recorder::start(config_json, name, !files.is_empty(), &host);
        let ctx = InitContext {
            name: name.to_owned(),
            files,
        };
        let built = parse_config::<F::Config>(config_json)
            .map_err(|e| e.to_string())
            .and_then(|config| F::new(config, &ctx));
        if let (Some(r), Err(e)) = (&recorder, &built) {
            r.rejected(e);
        }
        let filter = built?;
        let reads = filter.reads().normalized();
        let declared: &'static Declared = Box::leak(Box::new(Declared {
            method: reads.method,
            path: reads.path,
            authority: reads.authority,
            client_address: reads.client_address,
            attempt: reads.attempt,
            request_headers: reads.request_headers.clone(),
            response_headers: reads.response_headers.clone(),
        }));
        Ok(Harness {
            filter,
            host,
            reads,
            declared,
            recorder,
        })
    }

    /// What the filter declared it reads on every request.
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// What the proxy would hand over of `req` with a call: the same buffer, decoded
    /// by the same code, as in the proxy.
    fn request_view(&self, req: &TestRequest) -> RequestView {
        let d = self.declared;
        let host = RequestHost(req);
        let headers: Vec<Option<Vec<u8>>> =
            d.request_headers.iter().map(|n| host.header(n)).collect();
        let attempt = req.attempt.to_le_bytes();
        let parts = [
            d.method.then_some(req.method.as_bytes()),
            d.path.then_some(req.path.as_bytes()),
            d.authority.then_some(req.authority.as_bytes()),
            d.client_address.then_some(req.client_address.as_bytes()),
            d.attempt.then_some(&attempt[..]),
        ];
        let items = parts
            .into_iter()
            .flatten()
            .map(Some)
            .chain(headers.iter().map(Option::as_deref));
        RequestView::new(View::encode(items), d)
    }

    /// What the proxy would hand over of `resp` with a response-phase call.
    fn response_view(&self, resp: &TestResponse) -> ResponseView {
        let d = self.declared;
        let host = ResponseHost(resp);
        let headers: Vec<Option<Vec<u8>>> =
            d.response_headers.iter().map(|n| host.header(n)).collect();
        ResponseView::new(
            resp.status,
            resp.upstream_failure,
            View::encode(headers.iter().map(Option::as_deref)),
            d,
        )
    }

    /// The filter.
    pub fn filter(&self) -> &F {
        &self.filter
    }

    /// The host the filter runs on.
    pub fn host(&self) -> &TestHost {
        &self.host
    }

    /// The phases the filter implements (the proxy calls only these).
    pub fn phases(&self) -> Phases {
        F::__PHASES
    }

    /// How the filter wants request bodies ([`BodyMode::None`] if it has no
    /// `on_request_body`).
    pub fn request_body_mode(&self) -> BodyMode {
        if F::__PHASES.request_body {
            self.filter.request_body_mode()
        } else {
            BodyMode::None
        }
    }

    /// How the filter wants response bodies.
    pub fn response_body_mode(&self) -> BodyMode {
        if F::__PHASES.response_body {
            self.filter.response_body_mode()
        } else {
            BodyMode::None
        }
    }

    /// Runs the request-headers phase.
    pub fn on_request_headers(&self, req: &mut TestRequest) -> Action {
        install(&self.host);
        if !F::__PHASES.request_headers {
            return Action::Continue;
        }
        let before = self.recorder.as_ref().map(|_| {
            (
                req.clone(),
                self.host.answers.borrow().len(),
                crate::random::draws(),
            )
        });
        let mut rc = RequestCall::new(PhaseKind::RequestHeaders, self.request_view(req));
        call::begin();
        let action = self.filter.on_request_headers(&mut Request {
            call: &mut rc,
            host: RequestHost(req),
        });
        apply(req, None, call::take().as_bytes());
        if let (Some(r), Some((before, calls, draws))) = (&self.recorder, before) {
            let outbound = &self.host.answers.borrow()[calls..];
            let random = crate::random::draws() > draws;
            let now = self.host.now_ms.get();
            r.request_headers(now, &before, &action, req, outbound, random);
        }
        action
    }

    /// Runs the request-body phase with one chunk.
    pub fn on_request_body(
        &self,
        req: &mut TestRequest,
        body: &[u8],
        end_of_stream: bool,
    ) -> BodyAction {
        install(&self.host);
        if !F::__PHASES.request_body {
            return BodyAction::Continue;
        }
        let mut rc = RequestCall::new(PhaseKind::RequestBody, self.request_view(req));
        call::begin();
        let action = self.filter.on_request_body(
            &mut Request {
                call: &mut rc,
                host: RequestHost(req),
            },
            body,
            end_of_stream,
        );
        apply(req, None, call::take().as_bytes());
        action
    }

    /// Runs the response-headers phase.
    pub fn on_response_headers(&self, req: &mut TestRequest, resp: &mut TestResponse) -> Action {
        install(&self.host);
        if !F::__PHASES.response_headers {
            return Action::Continue;
        }
        let before = self.recorder.as_ref().map(|_| {
            (
                req.clone(),
                resp.clone(),
                self.host.answers.borrow().len(),
                crate::random::draws(),
            )
        });
        let mut rc = RequestCall::new(PhaseKind::ResponseHeaders, self.request_view(req));
        let mut rcall = ResponseCall::new(PhaseKind::ResponseHeaders, self.response_view(resp));
        call::begin();
        let action = self.filter.on_response_headers(
            &mut Request {
                call: &mut rc,
                host: RequestHost(req),
            },
            &mut Response {
                call: &mut rcall,
                host: ResponseHost(resp),
            },
        );
        apply(req, Some(resp), call::take().as_bytes());
        if let (Some(r), Some((req_before, before, calls, draws))) = (&self.recorder, before) {
            let outbound = &self.host.answers.borrow()[calls..];
            let random = crate::random::draws() > draws;
            let now = self.host.now_ms.get();
            r.response_headers(now, &req_before, &before, &action, resp, outbound, random);
        }
        action
    }

    /// Runs the response-body phase with one chunk.
    pub fn on_response_body(
        &self,
        req: &mut TestRequest,
        resp: &mut TestResponse,
        body: &[u8],
        end_of_stream: bool,
    ) -> BodyAction {
        install(&self.host);
        if !F::__PHASES.response_body {
            return BodyAction::Continue;
        }
        let before = self.recorder.as_ref().map(|_| {
            (
                req.clone(),
                resp.clone(),
                self.host.answers.borrow().len(),
                crate::random::draws(),
            )
        });
        let mut rc = RequestCall::new(PhaseKind::ResponseBody, self.request_view(req));
        let mut rcall = ResponseCall::new(PhaseKind::ResponseBody, self.response_view(resp));
        call::begin();
        let action = self.filter.on_response_body(
            &mut Request {
                call: &mut rc,
                host: RequestHost(req),
            },
            &mut Response {
                call: &mut rcall,
                host: ResponseHost(resp),
            },
            body,
            end_of_stream,
        );
        apply(req, Some(resp), call::take().as_bytes());
        if let (Some(r), Some((req_before, before, calls, draws))) = (&self.recorder, before) {
            let outbound = &self.host.answers.borrow()[calls..];
            let random = crate::random::draws() > draws;
            let buffered = matches!(self.response_body_mode(), BodyMode::Buffer(_));
            let now = self.host.now_ms.get();
            r.response_body(
                now,
                &req_before,
                &before,
                body,
                end_of_stream,
                buffered,
                &action,
                outbound,
                random,
            );
        }
        action
    }

    /// Runs the log phase.
    pub fn on_log(&self, req: &mut TestRequest, summary: &ExchangeSummary) {
        install(&self.host);
        if F::__PHASES.log {
            let mut rc = RequestCall::new(PhaseKind::Log, self.request_view(req));
            call::begin();
            self.filter.on_log(
                &Request {
                    call: &mut rc,
                    host: RequestHost(req),
                },
                summary,
            );
            call::take();
        }
    }
}
