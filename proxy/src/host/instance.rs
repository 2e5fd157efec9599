//! One instance of a filter: its own store, reused call after call until it fails.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::action::{Action, BodyAction, ExchangeSummary, FilterInfo};
use super::bindings::weft::filter::types as wit;
use super::bindings::Filter as Bindings;
use super::call::{RequestCtx, ResponseCtx};
use super::engine::{Ticks, EPOCH_TICK};
use super::failure::{classify, DeadlineExceeded, FilterFailure};
use super::module::FilterModule;
use super::state::HostState;

/// One call into a filter's export: what it hands over and what it answers, in the
/// core's own types (the WIT types stay in this file).
pub(crate) trait PhaseCall: Sync {
    /// What the filter answers.
    type Answer: Send;
    /// Runs the export on `instance` (its store already holds the lent heads).
    fn run<'a>(
        &'a self,
        instance: &'a mut FilterInstance,
    ) -> impl Future<Output = wasmtime::Result<Self::Answer>> + Send + 'a;
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
        let instance = $instance;
        let func = instance.bindings.weft_filter_handler().$func();
        if instance.needs_async {
            func.call_async(&mut instance.store, $args).await
        } else {
            func.call(&mut instance.store, $args)
        }
    }};
}

impl PhaseCall for RequestHeaders {
    type Answer = Action;
    async fn run(&self, instance: &mut FilterInstance) -> wasmtime::Result<Action> {
        Ok(call!(instance, func_on_request_headers, ())?.0.into())
    }
}

impl PhaseCall for ResponseHeaders {
    type Answer = Action;
    async fn run(&self, instance: &mut FilterInstance) -> wasmtime::Result<Action> {
        Ok(call!(instance, func_on_response_headers, ())?.0.into())
    }
}

impl PhaseCall for RequestBody<'_> {
    type Answer = BodyAction;
    async fn run(&self, instance: &mut FilterInstance) -> wasmtime::Result<BodyAction> {
        Ok(call!(instance, func_on_request_body, (self.0, self.1))?
            .0
            .into())
    }
}

impl PhaseCall for ResponseBody<'_> {
    type Answer = BodyAction;
    async fn run(&self, instance: &mut FilterInstance) -> wasmtime::Result<BodyAction> {
        Ok(call!(instance, func_on_response_body, (self.0, self.1))?
            .0
            .into())
    }
}

impl PhaseCall for Log<'_> {
    type Answer = ();
    async fn run(&self, instance: &mut FilterInstance) -> wasmtime::Result<()> {
        let summary = wit::ExchangeSummary::from(self.0);
        call!(instance, func_on_log, (&summary,))?;
        Ok(())
    }
}

/// A live instance.
pub struct FilterInstance {
    store: Store<HostState>,
    bindings: Bindings,
    needs_async: bool,
    ticks: Arc<Ticks>,
}

fn ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos() / EPOCH_TICK.as_nanos()) as u64 + 1
}

impl FilterInstance {
    /// Makes an instance and runs its `init` with the filter's configuration.
    pub async fn create(
        module: &FilterModule,
        state: HostState,
        config: &wit::FilterConfig,
        timeout: Duration,
    ) -> Result<(FilterInstance, FilterInfo), FilterFailure> {
        // Instantiation and `init` run under a deadline too.
        let _in_flight = module.ticks.call();
        let mut store = Store::new(module.pre.engine(), state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_callback(|ctx| {
            let s = ctx.data();
            let now = Instant::now();
            let end = s.deadline + s.waited;
            if now >= end {
                return Err(DeadlineExceeded.into());
            }
            Ok(UpdateDeadline::Continue(ticks(end - now)))
        });
        arm(&mut store, timeout);
        let instantiated = if module.needs_async {
            module.pre.instantiate_async(&mut store).await
        } else {
            module.pre.instantiate(&mut store)
        };
        let bindings = instantiated.map_err(|e| FilterFailure::Instantiate(format!("{e:#}")))?;
        let mut instance = FilterInstance {
            store,
            bindings,
            needs_async: module.needs_async,
            ticks: module.ticks.clone(),
        };
        arm(&mut instance.store, timeout);
        let init = instance.bindings.weft_filter_handler().func_init();
        let result = if instance.needs_async {
            init.call_async(&mut instance.store, (config,)).await
        } else {
            init.call(&mut instance.store, (config,))
        };
        match result {
            Ok((Ok(info),)) => Ok((instance, info.into())),
            Ok((Err(rejected),)) => Err(FilterFailure::Instantiate(format!(
                "configuration rejected: {rejected}"
            ))),
            Err(e) => Err(classify(&e, instance.store.data().memory.hit)),
        }
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
        result.map_err(|e| classify(&e, data.memory.hit))
    }
}

/// Starts a call's deadline clock.
fn arm(store: &mut Store<HostState>, timeout: Duration) {
    let data = store.data_mut();
    data.deadline = Instant::now() + timeout;
    data.waited = Duration::ZERO;
    data.memory.hit = false;
    store.set_epoch_deadline(ticks(timeout));
}
