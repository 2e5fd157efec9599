//! Starting and stopping the proxy: configuration in, running listeners out.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::admin::AdminServer;
use crate::config::{check, LoadedConfig};
use crate::host::{FilterHost, HostServices};
use crate::metrics::Registry;
use crate::reload::watch::FileWatcher;
use crate::reload::{ReloadHandle, Reloader};
use crate::server::Server;
use crate::snapshot::{load, Loaded, SnapshotHandle};

/// Reads and checks a configuration, then starts a filter host sized by it.
pub fn host_for(path: &Path, metrics: &Arc<Registry>) -> anyhow::Result<FilterHost> {
    host_with(path, HostServices::new(metrics.clone()))
}

/// [`host_for`] with given services (a manual clock's, for `weft filter test`).
pub fn host_with(path: &Path, services: Arc<HostServices>) -> anyhow::Result<FilterHost> {
    let config = LoadedConfig::read(path)?;
    let checked = check(&config)?;
    FilterHost::new(checked.cache_dir.clone(), checked.max_instances, services)
}

/// A running proxy.
pub struct App {
    /// The data plane.
    pub server: Arc<Server>,
    /// Asks for reloads.
    pub reloads: ReloadHandle,
    /// Reloads on file changes, if asked to.
    pub watcher: Option<FileWatcher>,
    /// The admin endpoint, if configured.
    pub admin: Option<AdminServer>,
    pub metrics: Arc<Registry>,
}

impl App {
    /// Loads `config` and starts serving it on `workers` workers; with `watch`, reloads
    /// when the configuration or a file it names changes.
    pub fn start(config: &Path, workers: usize, watch: bool) -> anyhow::Result<App> {
        let metrics = Registry::new();
        let host = Arc::new(host_for(config, &metrics)?);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let loaded = rt.block_on(load(config, &host, &metrics, None))?;
        let Loaded {
            config: parsed,
            checked,
            snapshot: first,
        } = loaded;
        host.services.set_global(checked.global.as_ref())?;
        let admin_addr = first.admin;
        let snapshot: SnapshotHandle = Arc::new(ArcSwap::from_pointee(first));
        let fd_limit = crate::server::overload::raise_fd_limit();
        let server = Arc::new(Server::start(snapshot.clone(), workers)?);
        crate::server::overload::spawn(Arc::downgrade(&snapshot), metrics.clone(), fd_limit)?;
        let reloads = Reloader::new(
            config,
            &parsed,
            &checked,
            host.clone(),
            metrics.clone(),
            snapshot.clone(),
            server.clone(),
        )
        .spawn()?;
        let watcher = if watch {
            Some(crate::reload::watch::spawn(reloads.clone())?)
        } else {
            None
        };
        let admin = admin_addr
            .map(|addr| {
                AdminServer::start(addr, snapshot.clone(), metrics.clone(), reloads.clone())
            })
            .transpose()?;
        Ok(App {
            server,
            reloads,
            watcher,
            admin,
            metrics,
        })
    }

    /// Stops accepting, drains connections and stops.
    pub fn shutdown(self) {
        drop(self.watcher);
        self.server.shutdown();
        if let Some(a) = self.admin {
            a.shutdown();
        }
        // Spans of the last requests go out before the process ends.
        crate::trace::flush_all();
    }
}
