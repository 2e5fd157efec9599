//! One instance of a filter: its own store, reused call after call until it fails.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, UpdateDeadline};

use super::action::{Action, BodyAction, ExchangeSummary, FilterInfo, Reads};
use super::answer::{Decision, EditPhase};
use super::bindings::weft::filter::types as wit;
use super::bindings::Filter as Bindings;
use super::call::{RequestCtx, ResponseCtx};
use super::engine::{Ticks, EPOCH_TICK};
use super::failure::{classify, DeadlineExceeded, FilterFailure};
use super::module::FilterModule;
use super::probe::Phase;
use super::state::HostState;

/// One call into a filter's export: what it hands over and what it answers, in the
/// core's own types (the WIT types stay in this file).
pub(crate) trait PhaseCall: Sync {
    /// What the filter answers.
    type Answer: Send;
    /// The phase, for measurements.
    const PHASE: Phase;
    /// Runs the export on `instance` (its store already holds the lent heads) and
    /// applies what the answer carries besides its decision; the inner error is an
    /// answer the proxy refuses.
    fn run<'a>(
        &'a self,
        instance: &'a mut FilterInstance,
    ) -> impl Future<Output = wasmtime::Result<Result<Self::Answer, FilterFailure>>> + Send + 'a;
}

/// Phase 1: the request head.
pub(crate) struct RequestHeaders;
/// Phase 2: a chunk of the request body (or all of it), and whether it is the last.
pub(crate) struct RequestBody<'c>(pub &'c [u8], pub bool);
/// Phase 3: the response head.
pub(crate) struct ResponseHeaders;
/// Phase 4: a chunk of the response body (or all of it), and whether it is the last.
pub(crate) struct ResponseBody<'c>(pub &'c [u8], pub bool);
/// Phase 5: what happened.
pub(crate) struct Log<'s>(pub &'s ExchangeSummary);

/// Calls `$func` with `$args` on the instance's store, synchronously or (for filters
/// that call out) on a fiber.
macro_rules! call {
    ($instance:expr, $func:ident, $args:expr) => {{
        let instance = &mut *$instance;
        let func = instance.bindings.weft_filter_handler().$func();
        if instance.needs_async {
            func.call_async(&mut instance.store, $args).await
        } else {
            func.call(&mut instance.store, $args)
        }
    }};
}

/// Marks an absent item in a view buffer (`types.view`).
const ABSENT: [u8; 4] = u32::MAX.to_le_bytes();

fn push_item(buf: &mut Vec<u8>, item: Option<&[u8]>) {
    match item {
        Some(bytes) => {
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            buf.extend_from_slice(bytes);
        }
        None => buf.extend_from_slice(&ABSENT),
    }
}

/// Encodes what a filter declared it reads of the request into `buf` (`types.view`).
fn request_view(reads: &Reads, req: Option<&RequestCtx>, buf: &mut Vec<u8>) {
    buf.clear();
    let Some(req) = req else {
        return;
    };
    if reads.method {
        push_item(buf, Some(req.method.as_str().as_bytes()));
    }
    if reads.path {
        push_item(buf, Some(req.path.as_str().as_bytes()));
    }
    if reads.authority {
        push_item(buf, Some(req.authority.as_bytes()));
    }
    if reads.client_address {
        match super::imports::address_v4(req.client_addr) {
            Some((text, n)) => push_item(buf, Some(&text[..n])),
            None => push_item(buf, Some(req.client_addr.to_string().as_bytes())),
        }
    }
    if reads.attempt {
        push_item(buf, Some(&req.attempt.to_le_bytes()));
    }
    for n in &reads.request_headers {
        if n == http::header::HOST {
            push_item(buf, Some(req.authority.as_bytes()));
        } else {
            push_item(buf, req.headers.get(n).map(http::HeaderValue::as_bytes));
        }
    }
}

/// Encodes the declared response headers into `buf`.
fn response_view(reads: &Reads, resp: &ResponseCtx, buf: &mut Vec<u8>) {
    buf.clear();
    for n in &reads.response_headers {
        push_item(
            buf,
            resp.head.headers.get(n).map(http::HeaderValue::as_bytes),
        );
    }
}

/// The view buffers of an instance, reused call after call: `None` when the filter
/// declared nothing to hand over (the export then gets `none`).
#[derive(Default)]
struct Views {
    request: Option<Vec<u8>>,
    response: Option<Vec<u8>>,
}

impl Views {
    fn for_reads(reads: &Reads) -> Views {
        let request = reads.method
            || reads.path
            || reads.authority
            || reads.client_address
            || reads.attempt
            || !reads.request_headers.is_empty();
        Views {
            request: request.then(Vec::new),
            response: (!reads.response_headers.is_empty()).then(Vec::new),
        }
    }
}

/// Applies an answer (metric updates, edits) and returns its decision; a refused
/// answer fails the call and changes nothing.
fn settle(
    instance: &mut FilterInstance,
    answer: &[u8],
    phase: EditPhase,
) -> Result<Decision, FilterFailure> {
    if answer.is_empty() {
        return Ok(Decision::Continue);
    }
    let data = instance.store.data_mut();
    let HostState {
        request,
        response,
        names,
        ..
    } = data;
    let Some(request) = request.as_deref_mut() else {
        return Err(FilterFailure::InvalidAction(
            "an answer without a request".into(),
        ));
    };
    let mut pending = Vec::new();
    let decision = super::answer::settle(
        answer,
        phase,
        names,
        request,
        response.as_deref_mut(),
        |m| pending.push(m),
    )?;
    for m in pending {
        data.metric_update(m);
    }
    Ok(decision)
}

/// A headers phase's decision as the exchange takes it.
fn action(d: Decision) -> Result<Action, FilterFailure> {
    Ok(match d {
        Decision::Continue => Action::Continue,
        Decision::Respond(r) => Action::Respond(r),
        Decision::Delay(d) => Action::Delay(d),
        Decision::RouteTo(c) => Action::RouteTo(c),
        Decision::Retry(d) => Action::Retry(d),
        Decision::Replace(_) => {
            return Err(FilterFailure::InvalidAction(
                "replace in a headers phase".into(),
            ))
        }
    })
}

/// A body phase's decision as the exchange takes it.
fn body_action(d: Decision) -> Result<BodyAction, FilterFailure> {
    Ok(match d {
        Decision::Continue => BodyAction::Continue,
        Decision::Replace(b) => BodyAction::Replace(b),
        Decision::Respond(r) => BodyAction::Respond(r),
        other => {
            return Err(FilterFailure::InvalidAction(format!(
                "{other:?} in a body phase"
            )))
        }
    })
}

impl FilterInstance {
    /// Encodes the request view for the call in progress, if the filter asked for one.
    fn encode_request(&mut self) {
        if let Some(buf) = self.views.request.as_mut() {
            request_view(&self.reads, self.store.data().request.as_deref(), buf);
        }
    }

    /// The response head's status and failure, and its view encoded if asked for.
    fn encode_response(&mut self) -> (u16, Option<wit::UpstreamFailure>) {
        let Some(resp) = self.store.data().response.as_deref() else {
            return (0, None);
        };
        if let Some(buf) = self.views.response.as_mut() {
            response_view(&self.reads, resp, buf);
        }
        (
            resp.head.status.as_u16(),
            resp.upstream_failure.map(Into::into),
        )
    }
}

impl PhaseCall for RequestHeaders {
    type Answer = Action;
    const PHASE: Phase = Phase::RequestHeaders;
    async fn run(
        &self,
        instance: &mut FilterInstance,
    ) -> wasmtime::Result<Result<Action, FilterFailure>> {
        instance.encode_request();
        let views = std::mem::take(&mut instance.views);
        let result = call!(instance, func_on_request_headers, (&views.request,));
        instance.views = views;
        let (answer,) = result?;
        Ok(settle(instance, &answer, EditPhase::RequestHeaders).and_then(action))
    }
}

impl PhaseCall for ResponseHeaders {
    type Answer = Action;
    const PHASE: Phase = Phase::ResponseHeaders;
    async fn run(
        &self,
        instance: &mut FilterInstance,
    ) -> wasmtime::Result<Result<Action, FilterFailure>> {
        instance.encode_request();
        let (status, failure) = instance.encode_response();
        let views = std::mem::take(&mut instance.views);
        let result = call!(
            instance,
            func_on_response_headers,
            (&views.request, status, failure, &views.response)
        );
        instance.views = views;
        let (answer,) = result?;
        Ok(settle(instance, &answer, EditPhase::ResponseHeaders).and_then(action))
    }
}

impl PhaseCall for RequestBody<'_> {
    type Answer = BodyAction;
    const PHASE: Phase = Phase::RequestBody;
    async fn run(
        &self,
        instance: &mut FilterInstance,
    ) -> wasmtime::Result<Result<BodyAction, FilterFailure>> {
        instance.encode_request();
        let views = std::mem::take(&mut instance.views);
        let result = call!(
            instance,
            func_on_request_body,
            (&views.request, self.0, self.1)
        );
        instance.views = views;
        let (answer,) = result?;
        Ok(settle(instance, &answer, EditPhase::RequestBody).and_then(body_action))
    }
}

impl PhaseCall for ResponseBody<'_> {
    type Answer = BodyAction;
    const PHASE: Phase = Phase::ResponseBody;
    async fn run(
        &self,
        instance: &mut FilterInstance,
    ) -> wasmtime::Result<Result<BodyAction, FilterFailure>> {
        instance.encode_request();
        let (status, failure) = instance.encode_response();
        let views = std::mem::take(&mut instance.views);
        let result = call!(
            instance,
            func_on_response_body,
            (
                &views.request,
                status,
                failure,
                &views.response,
                self.0,
                self.1
            )
        );
        instance.views = views;
        let (answer,) = result?;
        Ok(settle(instance, &answer, EditPhase::ResponseBody).and_then(body_action))
    }
}

impl PhaseCall for Log<'_> {
    type Answer = ();
    const PHASE: Phase = Phase::Log;
    async fn run(
        &self,
        instance: &mut FilterInstance,
    ) -> wasmtime::Result<Result<(), FilterFailure>> {
        let summary = wit::ExchangeSummary::from(self.0);
        instance.encode_request();
        let views = std::mem::take(&mut instance.views);
        let result = call!(instance, func_on_log, (&views.request, &summary));
        instance.views = views;
        let (answer,) = result?;
        Ok(settle(instance, &answer, EditPhase::Log).map(|_| ()))
    }
}

/// A live instance.
pub struct FilterInstance {
    store: Store<HostState>,
    bindings: Bindings,
    needs_async: bool,
    ticks: Arc<Ticks>,
    /// What its `init` declared it reads, handed over with every call.
    reads: Arc<Reads>,
    /// Buffers the views are encoded into, reused call after call.
    views: Views,
}

/// Why an instance could not be started.
#[derive(Debug)]
pub(crate) enum Start {
    /// Instantiation or `init` failed (trapped, overran, ...).
    Failed(FilterFailure),
    /// `init` refused the configuration: the path of the field in error within
    /// `config:` (empty when it is not about one field) and why.
    Rejected { path: String, message: String },
}

fn ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos() / EPOCH_TICK.as_nanos()) as u64 + 1
}

impl FilterInstance {
    /// Makes an instance and runs its `init` with the filter's configuration.
    pub(crate) async fn create(
        module: &FilterModule,
        state: HostState,
        config: &wit::FilterConfig,
        timeout: Duration,
    ) -> Result<(FilterInstance, FilterInfo), Start> {
        let mut instance = FilterInstance::instantiate(module, state, timeout).await?;
        let info = instance.init(config, timeout).await?;
        Ok((instance, info))
    }

    /// Makes an instance, not yet initialized.
    pub(crate) async fn instantiate(
        module: &FilterModule,
        state: HostState,
        timeout: Duration,
    ) -> Result<FilterInstance, Start> {
        // Instantiation runs under a deadline too.
        let _in_flight = module.ticks.call();
        let mut store = Store::new(module.pre.engine(), state);
        store.limiter(|s| &mut s.memory);
        // The epoch deadline is the call's budget in ticks; when it is reached, time the
        // call spent waiting on the host (outbound calls) that was not yet given back is
        // given back, and only then is the deadline final. No clock read per call.
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            let owed = s.waited.saturating_sub(s.credited);
            if owed.is_zero() {
                return Err(DeadlineExceeded.into());
            }
            s.credited = s.waited;
            Ok(UpdateDeadline::Continue(ticks(owed)))
        });
        arm(&mut store, timeout);
        let instantiated = if module.needs_async {
            module.pre.instantiate_async(&mut store).await
        } else {
            module.pre.instantiate(&mut store)
        };
        let bindings = instantiated
            .map_err(|e| Start::Failed(FilterFailure::Instantiate(format!("{e:#}"))))?;
        Ok(FilterInstance {
            store,
            bindings,
            needs_async: module.needs_async,
            ticks: module.ticks.clone(),
            reads: Arc::default(),
            views: Views::default(),
        })
    }

    /// Runs `init` with the filter's configuration: what the filter declares, or why
    /// it refuses.
    pub(crate) async fn init(
        &mut self,
        config: &wit::FilterConfig,
        timeout: Duration,
    ) -> Result<FilterInfo, Start> {
        let _in_flight = self.ticks.call();
        arm(&mut self.store, timeout);
        let init = self.bindings.weft_filter_handler().func_init();
        let result = if self.needs_async {
            init.call_async(&mut self.store, (config,)).await
        } else {
            init.call(&mut self.store, (config,))
        };
        match result {
            Ok((Ok(info),)) => {
                let info = FilterInfo::try_from(info).map_err(|message| Start::Rejected {
                    path: String::new(),
                    message,
                })?;
                self.views = Views::for_reads(&info.reads);
                self.reads = Arc::new(info.reads.clone());
                Ok(info)
            }
            Ok((Err(wit::InitError::Config((path, message))),)) => {
                Err(Start::Rejected { path, message })
            }
            Ok((Err(wit::InitError::Other(message)),)) => Err(Start::Rejected {
                path: String::new(),
                message,
            }),
            Err(e) => Err(Start::Failed(classify(&e, self.store.data().memory.hit))),
        }
    }

    /// Calls the filter made into the host during the last call.
    pub(crate) fn host_calls(&self) -> u32 {
        self.store.data().host_calls
    }

    /// The instance's linear memory, in bytes.
    pub(crate) fn memory_size(&self) -> usize {
        self.store.data().memory.size
    }

    /// Lends the heads, runs one phase under the deadline, and takes the heads back.
    pub(crate) async fn invoke<P: PhaseCall>(
        &mut self,
        call: &P,
        request: &mut Option<Box<RequestCtx>>,
        response: &mut Option<Box<ResponseCtx>>,
        timeout: Duration,
    ) -> Result<P::Answer, FilterFailure> {
        let _in_flight = self.ticks.call();
        arm(&mut self.store, timeout);
        {
            let data = self.store.data_mut();
            data.request = request.take();
            data.response = response.take();
        }
        let result = call.run(self).await;
        let data = self.store.data_mut();
        *request = data.request.take();
        *response = data.response.take();
        match result {
            Ok(answer) => answer,
            Err(e) => Err(classify(&e, data.memory.hit)),
        }
    }
}

/// Starts a call's deadline: `timeout` in epoch ticks.
fn arm(store: &mut Store<HostState>, timeout: Duration) {
    let data = store.data_mut();
    data.waited = Duration::ZERO;
    data.credited = Duration::ZERO;
    data.memory.hit = false;
    data.host_calls = 0;
    store.set_epoch_deadline(ticks(timeout));
}
