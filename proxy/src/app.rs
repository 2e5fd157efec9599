//! Starting and stopping the proxy: configuration in, running listeners out.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::admin::AdminServer;
use crate::config::{check, Checked, ConfigError, LoadedConfig};
use crate::host::{FilterHost, HostServices};
use crate::metrics::Registry;
use crate::reload::watch::FileWatcher;
use crate::reload::{ReloadHandle, Reloader};
use crate::server::Server;
use crate::snapshot::{Snapshot, SnapshotHandle};

/// A configuration read, checked and built into a snapshot.
pub struct Loaded {
    /// The parsed document.
    pub config: LoadedConfig,
    /// The checked settings.
    pub checked: Checked,
    /// The snapshot, ready to serve.
    pub snapshot: Snapshot,
}

/// Reads, checks and builds a configuration with `host`'s filters. What `weft validate`
/// and `weft run` share. A reload passes the snapshot it replaces, whose unchanged
/// filters are kept (see [`Snapshot::build`]).
pub async fn load(
    path: &Path,
    host: &FilterHost,
    metrics: &Registry,
    previous: Option<&Snapshot>,
) -> Result<Loaded, ConfigError> {
    let config = LoadedConfig::read(path)?;
    let checked = check(&config)?;
    let snapshot = Snapshot::build(&config, &checked, host, metrics, previous).await?;
    Ok(Loaded {
        config,
        checked,
        snapshot,
    })
}

/// Reads and checks a configuration, then starts a filter host sized by it.
pub fn host_for(path: &Path, metrics: &Arc<Registry>) -> anyhow::Result<FilterHost> {
    let config = LoadedConfig::read(path)?;
    let checked = check(&config)?;
    FilterHost::new(
        checked.cache_dir.clone(),
        checked.max_instances,
        HostServices::new(metrics.clone()),
    )
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
    /// The current snapshot.
    pub snapshot: SnapshotHandle,
    /// The filter host.
    pub host: Arc<FilterHost>,
    /// Metrics.
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
        let admin_addr = first.admin;
        let snapshot: SnapshotHandle = Arc::new(ArcSwap::from_pointee(first));
        let server = Arc::new(Server::start(snapshot.clone(), workers)?);
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
            snapshot,
            host,
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
    }
}
