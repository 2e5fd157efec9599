//! What the host offers every filter: shared state, metrics, a clock origin and
//! outbound calls. One per proxy process, so state and metrics outlive configuration
//! reloads.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use weft_shared_state::Store;

use crate::error::UpstreamFailure;
use crate::metrics::Registry;

use super::filter_clock::FilterClock;
use super::global::GlobalBackend;
use crate::config::shared_state::CheckedGlobal;

/// How many locks the shared state is split over, so workers rarely wait on each other.
const SHARDS: usize = 32;

/// The shared state of every filter, correct across workers: each key lives in one
/// shard behind one lock, so every operation on it is atomic.
pub struct SharedStore {
    shards: Vec<Mutex<Store>>,
    clock: Arc<FilterClock>,
}

impl SharedStore {
    fn new(clock: Arc<FilterClock>) -> Self {
        SharedStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Store::new())).collect(),
            clock,
        }
    }

    /// Runs `f` on the shard holding `key`, with the current time in milliseconds.
    pub fn with<R>(&self, key: &str, f: impl FnOnce(&mut Store, u64) -> R) -> R {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let shard = &self.shards[(h.finish() as usize) % SHARDS];
        let now = self.clock.monotonic_ms();
        f(&mut shard.lock(), now)
    }

    /// Entries held, over all shards.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A boxed future, for the outbound-call interface.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How long a filter's call to a cluster may take when the filter sets no timeout
/// (and the request's deadline is further off).
pub const DEFAULT_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A filter's call to a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    pub method: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// The `Host` to send; the cluster's name when absent.
    pub authority: Option<String>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
    /// How long the whole call may take; the default when absent.
    pub timeout: Option<std::time::Duration>,
}

/// The whole answer to a filter's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    /// The status.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a filter's call got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No cluster of that name in the configuration.
    UnknownCluster(String),
    /// The request could not be built (bad method, path or header).
    InvalidRequest(String),
    /// The exchange failed.
    Failed(UpstreamFailure),
    /// The response body was larger than a filter call accepts.
    ResponseTooLarge,
}

/// Outbound HTTP calls from filters to clusters, served by the data plane.
pub trait Outbound: Send + Sync {
    /// Sends `request` to `cluster` and reads the whole response.
    fn send(
        &self,
        cluster: String,
        request: OutboundRequest,
    ) -> BoxFuture<Result<OutboundResponse, CallError>>;
}

/// Host services shared by all filters.
pub struct HostServices {
    pub metrics: Arc<Registry>,
    /// Shared state.
    pub state: SharedStore,
    /// The clock filters see.
    pub clock: Arc<FilterClock>,
    /// The `global` scope's backend, when `shared_state.global` is configured.
    pub global: ArcSwapOption<GlobalBackend>,
    /// Metric problems already logged, so a filter's bad metric warns once.
    warned: Mutex<HashSet<String>>,
}

impl HostServices {
    /// New services reporting into `metrics`.
    pub fn new(metrics: Arc<Registry>) -> Arc<HostServices> {
        Self::with_clock(metrics, FilterClock::real())
    }

    /// New services whose filters see `clock` (a manual one for `weft filter test`).
    pub fn with_clock(metrics: Arc<Registry>, clock: FilterClock) -> Arc<HostServices> {
        let clock = Arc::new(clock);
        Arc::new(HostServices {
            metrics,
            state: SharedStore::new(clock.clone()),
            clock,
            global: ArcSwapOption::empty(),
            warned: Mutex::new(HashSet::new()),
        })
    }

    /// Runs the `global` scope on `config`'s backend (or on this proxy's state when
    /// `None`). An unchanged configuration keeps the running backend and its leases.
    pub fn set_global(&self, config: Option<&CheckedGlobal>) -> anyhow::Result<()> {
        let current = self.global.load();
        match (config, current.as_deref()) {
            (None, None) => {}
            (Some(c), Some(g)) if g.config() == c => {}
            (None, Some(_)) => self.global.store(None),
            (Some(c), _) => {
                let backend = GlobalBackend::start(c, &self.metrics, self.clock.clone())?;
                self.global.store(Some(Arc::new(backend)));
            }
        }
        Ok(())
    }

    /// Whether this is the first time `what` is reported (for warn-once logging).
    pub fn first_warning(&self, what: String) -> bool {
        let mut warned = self.warned.lock();
        warned.len() < 10_000 && warned.insert(what)
    }
}
