//! A configured filter: a module, its configuration, its limits and failure policy, and
//! a pool of idle instances that calls reuse.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use parking_lot::Mutex;

use super::action::{Action, BodyAction, ExchangeSummary, FilterInfo};
use super::bindings::weft::filter::types as wit;
use super::breaker::{Breaker, Gate};
use super::call::{RequestCtx, ResponseCtx};
use super::failure::FilterFailure;
use super::instance::{
    FilterInstance, Log, PhaseCall, RequestBody, RequestHeaders, ResponseBody, ResponseHeaders,
    Start,
};
use super::module::FilterModule;
use super::probe;
use super::services::{HostServices, Outbound};
use super::state::{FilterIdentity, HostState};
use crate::config::model::FailurePolicy;
use crate::config::CheckedFilter;
use crate::metrics::{Counter, Histogram};
use crate::shard::Sharded;

/// Idle instances kept per filter; more are dropped when returned.
const MAX_IDLE: usize = 256;

/// Counters of one filter.
pub struct FilterStats {
    /// Calls made.
    pub calls: Arc<Counter>,
    /// Instances made.
    pub instances: Arc<Counter>,
    failures: [Arc<Counter>; 6],
    /// Call durations by phase (in [`probe::Phase::ALL`]'s order), for the phases the
    /// filter has.
    pub durations: [Option<Arc<Histogram>>; 5],
}

/// Buckets of filter call durations, in seconds: 1 µs to 1 s.
pub const CALL_BUCKETS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
];

const REASONS: [&str; 6] = [
    "trap",
    "deadline",
    "memory",
    "instantiate",
    "invalid_action",
    "breaker_open",
];

impl FilterStats {
    fn new(services: &HostServices, name: &str, info: &FilterInfo) -> FilterStats {
        let m = &services.metrics;
        let has = |p: probe::Phase| match p {
            probe::Phase::RequestHeaders => info.phases.request_headers,
            probe::Phase::RequestBody => info.request_body != super::BodyMode::None,
            probe::Phase::ResponseHeaders => info.phases.response_headers,
            probe::Phase::ResponseBody => info.response_body != super::BodyMode::None,
            probe::Phase::Log => info.phases.log,
        };
        FilterStats {
            calls: m.counter(
                "weft_filter_calls_total",
                "Calls into each filter.",
                &[("filter", name)],
            ),
            instances: m.counter(
                "weft_filter_instances_created_total",
                "Filter instances made (a trapped instance is replaced).",
                &[("filter", name)],
            ),
            failures: REASONS.map(|r| {
                m.counter(
                    "weft_filter_failures_total",
                    "Filter calls that failed, by reason; the filter's failure policy applied.",
                    &[("filter", name), ("reason", r)],
                )
            }),
            durations: probe::Phase::ALL.map(|p| {
                has(p).then(|| {
                    m.histogram_with(
                        "weft_filter_call_duration_seconds",
                        "Time of each filter call, by phase: taking an instance, the call, \
                         putting it back.",
                        &[("filter", name), ("phase", p.label())],
                        CALL_BUCKETS,
                    )
                })
            }),
        }
    }

    /// Failures by reason.
    pub fn failures(&self) -> Vec<(&'static str, u64)> {
        REASONS
            .iter()
            .zip(&self.failures)
            .map(|(r, c)| (*r, c.get()))
            .collect()
    }
}

/// Why a filter could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FilterLoadError {
    /// The module is unusable.
    #[error(transparent)]
    Module(#[from] super::module::ModuleError),
    /// The filter refused its configuration: the path of the field in error within
    /// `config:` (empty when the error is not about one field) and why.
    #[error("filter configuration rejected: {}", rejection(.path, .message))]
    Rejected {
        /// `limit`, `rules[2].rate`, or empty.
        path: String,
        /// What the filter said.
        message: String,
    },
    /// The first instance failed.
    #[error("filter failed to start: {0}")]
    Start(FilterFailure),
}

/// A configured filter.
pub struct LoadedFilter {
    pub name: String,
    pub module: Arc<FilterModule>,
    /// What it declared at `init`.
    pub info: FilterInfo,
    /// What happens when it fails.
    pub policy: FailurePolicy,
    /// The status a fail-closed failure answers with.
    pub failure_status: StatusCode,
    /// Longest single call.
    pub timeout: Duration,
    pub stats: FilterStats,
    config: wit::FilterConfig,
    identity: Arc<FilterIdentity>,
    services: Arc<HostServices>,
    outbound: Arc<dyn Outbound>,
    memory_limit: usize,
    /// One pool per worker, so that calls on different workers do not take the same
    /// lock.
    #[allow(
        clippy::vec_box,
        reason = "an instance (its store and export handles) moves out of the pool and \
                  back on every call, and a pointer moves for less"
    )]
    idle: Sharded<Mutex<Vec<Box<FilterInstance>>>>,
    /// Skips the filter for a cool-down after repeated deadline or memory failures.
    breaker: Breaker,
}

fn rejection(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// A later instance failing to start. The configuration was accepted when the filter
/// started; a later instance refusing it is a filter that changed its mind.
fn start_failure(e: Start) -> FilterFailure {
    match e {
        Start::Failed(f) => f,
        Start::Rejected { path, message } => FilterFailure::Instantiate(format!(
            "configuration rejected: {}",
            rejection(&path, &message)
        )),
    }
}

/// `init` may take longer than a request-path call: it parses configuration.
fn init_timeout(call_timeout: Duration) -> Duration {
    call_timeout.max(Duration::from_secs(2))
}

impl LoadedFilter {
    /// Starts a filter: makes its first instance and runs `init`, which may refuse the
    /// configuration.
    pub async fn start(
        module: Arc<FilterModule>,
        checked: &CheckedFilter,
        services: Arc<HostServices>,
        outbound: Arc<dyn Outbound>,
    ) -> Result<LoadedFilter, FilterLoadError> {
        let identity = FilterIdentity::new(&checked.name);
        let config = wit::FilterConfig {
            name: checked.name.clone(),
            config: checked.config_json.clone(),
            files: checked.files.clone(),
        };
        let memory_limit = checked.memory_limit as usize;
        let state = HostState::new(
            identity.clone(),
            services.clone(),
            outbound.clone(),
            memory_limit,
        );
        let (first, info) =
            match FilterInstance::create(&module, state, &config, init_timeout(checked.timeout))
                .await
            {
                Ok(ok) => ok,
                Err(Start::Rejected { path, message }) => {
                    return Err(FilterLoadError::Rejected { path, message });
                }
                Err(Start::Failed(f)) => return Err(FilterLoadError::Start(f)),
            };
        let stats = FilterStats::new(&services, &checked.name, &info);
        stats.instances.inc();
        let idle = Sharded::<Mutex<Vec<_>>>::default();
        idle.get().lock().push(Box::new(first));
        Ok(LoadedFilter {
            name: checked.name.clone(),
            module,
            info,
            policy: checked.failure_policy,
            failure_status: checked.failure_status,
            timeout: checked.timeout,
            stats,
            config,
            identity,
            services,
            outbound,
            memory_limit,
            idle,
            breaker: Breaker::default(),
        })
    }

    /// Whether this filter is what `checked` asks for with `module`: the same name,
    /// module content, configuration, files and limits. Such a filter is kept across a
    /// reload. One that can call out (`http-client`) is always started again: its
    /// calls go to the clusters of the configuration it was started with.
    pub fn unchanged(&self, checked: &CheckedFilter, module: &Arc<FilterModule>) -> bool {
        !module.needs_async
            && Arc::ptr_eq(&self.module, module)
            && self.name == checked.name
            && self.config.config == checked.config_json
            && self.config.files == checked.files
            && self.policy == checked.failure_policy
            && self.failure_status == checked.failure_status
            && self.timeout == checked.timeout
            && self.memory_limit == checked.memory_limit as usize
    }

    /// Idle instances ready for calls.
    pub fn idle_instances(&self) -> usize {
        self.idle.all().map(|pool| pool.lock().len()).sum()
    }

    /// An idle instance: this worker's, else one another worker is not using (as after
    /// a reload, when the first instance sits in one pool), else a new one.
    async fn checkout(&self) -> Result<Box<FilterInstance>, FilterFailure> {
        if let Some(instance) = self.idle.get().lock().pop() {
            return Ok(instance);
        }
        let spare = self
            .idle
            .all()
            .find_map(|pool| pool.try_lock().and_then(|mut p| p.pop()));
        if let Some(instance) = spare {
            return Ok(instance);
        }
        let state = HostState::new(
            self.identity.clone(),
            self.services.clone(),
            self.outbound.clone(),
            self.memory_limit,
        );
        let (instance, _) = FilterInstance::create(
            &self.module,
            state,
            &self.config,
            init_timeout(self.timeout),
        )
        .await
        .map_err(start_failure)?;
        self.stats.instances.inc();
        Ok(Box::new(instance))
    }

    fn checkin(&self, instance: Box<FilterInstance>) {
        let mut idle = self.idle.get().lock();
        if idle.len() < MAX_IDLE {
            idle.push(instance);
        }
    }

    /// Counts and logs a failure. Every failure goes through here.
    pub fn record_failure(&self, failure: &FilterFailure) {
        if let Some(i) = REASONS.iter().position(|r| *r == failure.reason()) {
            self.stats.failures[i].inc();
        }
        if *failure == FilterFailure::BreakerOpen {
            // Logged once, when it opened.
            return;
        }
        let policy = match self.policy {
            FailurePolicy::FailOpen => "fail_open: continuing",
            FailurePolicy::FailClosed => "fail_closed: answering the request",
        };
        tracing::warn!(filter = %self.name, reason = failure.reason(), "filter {failure}; {policy}");
    }

    /// Phase 1: the request head, lent to the filter for the call.
    pub async fn request_headers(
        &self,
        request: &mut Option<Box<RequestCtx>>,
    ) -> Result<Action, FilterFailure> {
        self.call(&RequestHeaders, request, &mut None).await
    }

    /// Phase 2: a chunk of the request body (the whole body in `buffer` mode).
    pub async fn request_body(
        &self,
        request: &mut Option<Box<RequestCtx>>,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<BodyAction, FilterFailure> {
        self.call(&RequestBody(chunk, end_of_stream), request, &mut None)
            .await
    }

    /// Phase 3: the response head (from the upstream, or made by the proxy).
    pub async fn response_headers(
        &self,
        request: &mut Option<Box<RequestCtx>>,
        response: &mut Option<Box<ResponseCtx>>,
    ) -> Result<Action, FilterFailure> {
        self.call(&ResponseHeaders, request, response).await
    }

    /// Phase 4: a chunk of the response body (the whole body in `buffer` mode).
    pub async fn response_body(
        &self,
        request: &mut Option<Box<RequestCtx>>,
        response: &mut Option<Box<ResponseCtx>>,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<BodyAction, FilterFailure> {
        self.call(&ResponseBody(chunk, end_of_stream), request, response)
            .await
    }

    /// Phase 5: the exchange is over.
    pub async fn log(
        &self,
        request: &mut Option<Box<RequestCtx>>,
        summary: &ExchangeSummary,
    ) -> Result<(), FilterFailure> {
        self.call(&Log(summary), request, &mut None).await
    }

    /// Runs one phase on an instance from the pool. A failed call is counted, and an
    /// instance that trapped is thrown away, never reused.
    async fn call<P: PhaseCall>(
        &self,
        call: &P,
        request: &mut Option<Box<RequestCtx>>,
        response: &mut Option<Box<ResponseCtx>>,
    ) -> Result<P::Answer, FilterFailure> {
        let gate = self.breaker.gate();
        if gate == Gate::Skip {
            let f = FilterFailure::BreakerOpen;
            self.record_failure(&f);
            return Err(f);
        }
        self.stats.calls.inc();
        let measuring = probe::begin();
        let t0 = std::time::Instant::now();
        // A sampled request's trace gets a span for the call.
        let trace = request
            .as_deref()
            .and_then(|r| r.trace.as_ref())
            .filter(|t| t.recording())
            .cloned();
        let mut instance = match self.checkout().await {
            Ok(i) => i,
            Err(f) => {
                self.record_failure(&f);
                return Err(f);
            }
        };
        let result = instance.invoke(call, request, response, self.timeout).await;
        let (host_calls, memory) = (instance.host_calls(), instance.memory_size());
        let t1 = std::time::Instant::now();
        if let Some(h) = &self.stats.durations[P::PHASE.index()] {
            h.observe((t1 - t0).as_secs_f64());
        }
        if let Some(trace) = trace {
            self.record_span(&trace, P::PHASE, t0, t1, result.as_ref().err());
        }
        let result = match result {
            Ok(answer) => {
                self.checkin(instance);
                if gate == Gate::Probe {
                    self.breaker.record(gate, false);
                    tracing::info!(filter = %self.name, "filter breaker closed: the probe call succeeded");
                }
                Ok(answer)
            }
            Err(f) => {
                self.record_failure(&f);
                let costly = matches!(f, FilterFailure::Deadline | FilterFailure::Memory);
                if self.breaker.record(gate, costly) {
                    tracing::warn!(
                        filter = %self.name,
                        "filter breaker open: {} deadline or memory failures within {:?}; \
                         its failure policy applies without calling it for {:?}",
                        super::breaker::THRESHOLD,
                        super::breaker::WINDOW,
                        super::breaker::COOL_DOWN
                    );
                }
                if !f.poisons_instance() {
                    self.checkin(instance);
                }
                Err(f)
            }
        };
        if let Some(m) = measuring {
            m.end(
                std::ptr::from_ref(self) as usize,
                P::PHASE,
                host_calls,
                memory,
            );
        }
        result
    }

    /// Records a filter call in a sampled request's trace.
    fn record_span(
        &self,
        trace: &crate::trace::Trace,
        phase: probe::Phase,
        start: std::time::Instant,
        end: std::time::Instant,
        failure: Option<&FilterFailure>,
    ) {
        use crate::trace::export::attr;
        let outcome = failure.map_or("ok", |f| f.reason());
        trace.record(crate::trace::SpanRec {
            id: crate::trace::context::new_span_id(),
            parent: trace.span_id(),
            name: format!("filter {} {}", self.name, phase.as_str()).into(),
            kind: crate::trace::Kind::Internal,
            start,
            end,
            attributes: vec![
                attr("weft.filter.name", self.name.clone()),
                attr("weft.filter.phase", phase.label()),
                attr("weft.filter.outcome", outcome),
            ],
            error: failure.map(|f| f.to_string()),
        });
    }

    /// Times making a fresh instance of this filter: instantiation, then `init` with
    /// its configuration. The instance is dropped.
    pub async fn time_start(&self) -> Result<(Duration, Duration), FilterFailure> {
        let state = HostState::new(
            self.identity.clone(),
            self.services.clone(),
            self.outbound.clone(),
            self.memory_limit,
        );
        let timeout = init_timeout(self.timeout);
        let t0 = std::time::Instant::now();
        let mut instance = FilterInstance::instantiate(&self.module, state, timeout)
            .await
            .map_err(start_failure)?;
        let t1 = std::time::Instant::now();
        instance
            .init(&self.config, timeout)
            .await
            .map_err(start_failure)?;
        Ok((t1 - t0, t1.elapsed()))
    }

    /// The most linear memory any idle instance of this filter has, in bytes.
    pub fn instance_memory(&self) -> usize {
        self.idle
            .all()
            .flat_map(|pool| pool.lock().iter().map(|i| i.memory_size()).max())
            .max()
            .unwrap_or(0)
    }
}
