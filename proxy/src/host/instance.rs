//! One instance of a filter: its own store, reused call after call until it fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::action::{Action, BodyAction, FilterInfo};
use super::bindings::weft::filter::types as wit;
use super::bindings::Filter as Bindings;
use super::call::{RequestCtx, ResponseCtx};
use super::engine::{Ticks, EPOCH_TICK};
use super::failure::{classify, DeadlineExceeded, FilterFailure};
use super::module::FilterModule;
use super::state::HostState;

/// One call into a filter.
pub enum PhaseCall<'a> {
    /// Phase 1.
    RequestHeaders,
    /// Phase 2, with a chunk.
    RequestBody(&'a [u8], bool),
    /// Phase 3.
    ResponseHeaders,
    /// Phase 4, with a chunk.
    ResponseBody(&'a [u8], bool),
    /// Phase 5.
    Log(&'a wit::ExchangeSummary),
}

/// What a call answered.
pub enum PhaseResult {
    /// A headers phase's action.
    Action(Action),
    /// A body phase's action.
    Body(BodyAction),
    /// The log phase answers nothing.
    Done,
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
    pub async fn invoke(
        &mut self,
        call: &PhaseCall<'_>,
        request: &mut Option<Box<RequestCtx>>,
        response: &mut Option<Box<ResponseCtx>>,
        timeout: Duration,
    ) -> Result<PhaseResult, FilterFailure> {
        let _in_flight = self.ticks.call();
        arm(&mut self.store, timeout);
        {
            let data = self.store.data_mut();
            data.request = request.take();
            data.response = response.take();
        }
        let result = self.run(call).await;
        let data = self.store.data_mut();
        *request = data.request.take();
        *response = data.response.take();
        result.map_err(|e| classify(&e, data.memory.hit))
    }

    async fn run(&mut self, call: &PhaseCall<'_>) -> wasmtime::Result<PhaseResult> {
        let h = self.bindings.weft_filter_handler();
        let store = &mut self.store;
        macro_rules! go {
            ($func:expr, $args:expr) => {
                if self.needs_async {
                    $func.call_async(&mut *store, $args).await?
                } else {
                    $func.call(&mut *store, $args)?
                }
            };
        }
        Ok(match call {
            PhaseCall::RequestHeaders => {
                PhaseResult::Action(go!(h.func_on_request_headers(), ()).0.into())
            }
            PhaseCall::RequestBody(chunk, eos) => {
                PhaseResult::Body(go!(h.func_on_request_body(), (*chunk, *eos)).0.into())
            }
            PhaseCall::ResponseHeaders => {
                PhaseResult::Action(go!(h.func_on_response_headers(), ()).0.into())
            }
            PhaseCall::ResponseBody(chunk, eos) => {
                PhaseResult::Body(go!(h.func_on_response_body(), (*chunk, *eos)).0.into())
            }
            PhaseCall::Log(summary) => {
                go!(h.func_on_log(), (*summary,));
                PhaseResult::Done
            }
        })
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

/// Keeps the filter's identity reachable for instances' logs.
pub fn identity_of(instance: &FilterInstance) -> Arc<super::state::FilterIdentity> {
    instance.store.data().identity.clone()
}
