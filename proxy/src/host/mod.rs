//! The WebAssembly filter host.
//!
//! One [`FilterHost`] per process owns the engine, the linker with every
//! `weft:filter` import, the compiled-module cache and the epoch ticker. Modules are
//! compiled once per content digest (on disk across restarts, in memory across
//! reloads) and pre-instantiated; each configured filter ([`LoadedFilter`]) keeps a
//! pool of idle instances, each with its own store, reused call after call. A call
//! runs under a deadline (epoch interruption) and a memory cap; an instance that traps
//! is dropped, and the filter's failure policy decides what the request sees.
//!
//! Filters that import neither `http-client` nor `global-kv` are called synchronously
//! (no fiber, no allocation per call); those that do are called with `call_async`, so a
//! filter waiting on an outbound call or the global store does not block its worker.

pub mod action;
pub(crate) mod answer;
pub mod bindings;
pub mod breaker;
pub mod cache;
pub mod call;
pub mod engine;
pub mod failure;
pub mod filter;
pub mod filter_clock;
pub mod global;
mod imports;
pub mod instance;
pub mod module;
pub mod probe;
pub mod services;
pub mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::Engine;

pub use action::{
    Action, BodyAction, BodyMode, ExchangeSummary, FilterInfo, LocalResponse, Phases,
};
pub use call::{RequestCtx, ResponseCtx};
pub use failure::FilterFailure;
pub use filter::{FilterLoadError, LoadedFilter};
/// Headers the proxy frames messages with: filters may read them, not change them.
pub use imports::header_text::MANAGED as MANAGED_HEADERS;
pub use module::{FileStamp, FilterModule, ModuleError};
pub use services::{CallError, HostServices, Outbound, OutboundRequest, OutboundResponse};

use bindings::{Filter, FilterPre};
use cache::DiskCache;
use engine::EpochTicker;
use state::HostState;

use crate::config::CheckedFilter;

/// The `weft:filter` contract this proxy speaks (the package version in `wit/`).
pub const CONTRACT_VERSION: &str = "0.3.0";

/// The filter host.
pub struct FilterHost {
    engine: Engine,
    linker: Linker<HostState>,
    cache: DiskCache,
    modules: Mutex<HashMap<String, Weak<FilterModule>>>,
    /// The digest of each module file read, by the file's stamp when read: a reload
    /// that names an unchanged file neither reads nor hashes it again.
    digests: Mutex<HashMap<PathBuf, (FileStamp, String)>>,
    /// Services every filter shares.
    pub services: Arc<HostServices>,
    ticker: EpochTicker,
}

impl FilterHost {
    /// Starts the host: builds the engine (with room for `max_instances` live
    /// instances), links the imports, starts the epoch ticker.
    pub fn new(
        cache_dir: Option<PathBuf>,
        max_instances: u32,
        services: Arc<HostServices>,
    ) -> anyhow::Result<FilterHost> {
        let engine = engine::build(max_instances)
            .map_err(|e| anyhow::anyhow!("cannot start the filter engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        Filter::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link the filter imports: {e:#}"))?;
        let cache = DiskCache::new(cache_dir.or_else(cache::default_dir), &engine);
        let ticker = EpochTicker::start(engine.clone())?;
        Ok(FilterHost {
            engine,
            linker,
            cache,
            modules: Mutex::new(HashMap::new()),
            digests: Mutex::new(HashMap::new()),
            services,
            ticker,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a component file: reuses an already-loaded module with the same digest,
    /// else compiles it (or reads it from the disk cache) and links it.
    pub fn load_module(&self, path: &Path) -> Result<Arc<FilterModule>, ModuleError> {
        // Stamped before reading: a write after this point changes the next stamp.
        let stamp = FileStamp::of(path);
        if let Some(stamp) = &stamp {
            let known = self
                .digests
                .lock()
                .get(path)
                .and_then(|(s, d)| (s == stamp).then(|| d.clone()));
            if let Some(m) = known.and_then(|d| self.modules.lock().get(&d).and_then(Weak::upgrade))
            {
                self.count_load("reused");
                return Ok(m);
            }
        }
        let bytes = std::fs::read(path).map_err(|source| ModuleError::Read {
            path: path.to_owned(),
            source,
        })?;
        module::classify(path, &bytes)?;
        let digest = module::digest(&bytes);
        if let Some(stamp) = stamp {
            self.remember(path, stamp, &digest);
        }
        if let Some(m) = self.modules.lock().get(&digest).and_then(Weak::upgrade) {
            self.count_load("reused");
            return Ok(m);
        }
        let (component, from_cache) = self
            .cache
            .get_or_compile(&self.engine, &digest, &bytes)
            .map_err(|e| ModuleError::Invalid {
                path: path.to_owned(),
                reason: format!("{e:#}"),
            })?;
        let link_err = |e: wasmtime::Error| ModuleError::Link {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        };
        // Another contract's component: say which, and how to fix it.
        if let Some(v) = FilterModule::contract_version(&component, &self.engine)
            .filter(|v| v != CONTRACT_VERSION)
        {
            return Err(ModuleError::Link {
                path: path.to_owned(),
                reason: format!(
                    "it was built for weft:filter@{v}, and this proxy speaks @{CONTRACT_VERSION}"
                ),
            });
        }
        let instance_pre = self.linker.instantiate_pre(&component).map_err(link_err)?;
        let pre = FilterPre::new(instance_pre).map_err(link_err)?;
        let module = Arc::new(FilterModule {
            path: path.to_owned(),
            digest: digest.clone(),
            size: bytes.len(),
            from_cache,
            needs_async: FilterModule::imports_async(&component, &self.engine),
            pre,
            ticks: self.ticker.ticks(),
        });
        self.count_load(if from_cache { "disk_cache" } else { "compiled" });
        let mut modules = self.modules.lock();
        modules.retain(|_, m| m.strong_count() > 0);
        modules.insert(digest, Arc::downgrade(&module));
        tracing::debug!(module = %path.display(), digest = %module.digest, from_cache, "filter module loaded");
        Ok(module)
    }

    /// Records a file's digest, forgetting files whose modules are gone.
    fn remember(&self, path: &Path, stamp: FileStamp, digest: &str) {
        let live = |d: &String| {
            self.modules
                .lock()
                .get(d)
                .is_some_and(|m| m.strong_count() > 0)
        };
        let mut digests = self.digests.lock();
        digests.retain(|_, (_, d)| live(d));
        digests.insert(path.to_owned(), (stamp, digest.to_owned()));
    }

    /// Whether the epoch ticker sleeps because no filter call has run for a while.
    pub fn ticker_asleep(&self) -> bool {
        self.ticker.asleep()
    }

    fn count_load(&self, how: &str) {
        self.services
            .metrics
            .counter(
                "weft_filter_module_loads_total",
                "Filter modules loaded, by how: reused (already loaded, same digest), \
                 disk_cache (precompiled on disk) or compiled.",
                &[("how", how)],
            )
            .inc();
    }

    /// Loads and starts a configured filter.
    pub async fn load_filter(
        &self,
        checked: &CheckedFilter,
        outbound: Arc<dyn Outbound>,
        previous: Option<&Arc<LoadedFilter>>,
    ) -> Result<Arc<LoadedFilter>, FilterLoadError> {
        let module = self.load_module(&checked.module)?;
        if let Some(kept) = previous.filter(|p| p.unchanged(checked, &module)) {
            return Ok(kept.clone());
        }
        let started = LoadedFilter::start(module, checked, self.services.clone(), outbound).await?;
        Ok(Arc::new(started))
    }
}
