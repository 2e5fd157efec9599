//! Starting and stopping the proxy: configuration in, running listeners out.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::admin::AdminServer;
use crate::config::{check, Checked, ConfigError, LoadedConfig};
use crate::host::{FilterHost, HostServices};
use crate::metrics::Registry;
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
/// and `weft run` share.
pub async fn load(
    path: &Path,
    host: &FilterHost,
    metrics: &Registry,
) -> Result<Loaded, ConfigError> {
    let config = LoadedConfig::read(path)?;
    let checked = check(&config)?;
    let snapshot = Snapshot::build(&config, &checked, host, metrics).await?;
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
    pub server: Server,
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
    /// Loads `config` and starts serving it on `workers` workers.
    pub fn start(config: &Path, workers: usize) -> anyhow::Result<App> {
        let metrics = Registry::new();
        let host = Arc::new(host_for(config, &metrics)?);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let loaded = rt.block_on(load(config, &host, &metrics))?;
        let admin_addr = loaded.snapshot.admin;
        let snapshot: SnapshotHandle = Arc::new(ArcSwap::from_pointee(loaded.snapshot));
        let server = Server::start(snapshot.clone(), workers)?;
        let admin = admin_addr
            .map(|addr| AdminServer::start(addr, snapshot.clone(), metrics.clone()))
            .transpose()?;
        Ok(App {
            server,
            admin,
            snapshot,
            host,
            metrics,
        })
    }

    /// Stops accepting, drains connections and stops.
    pub fn shutdown(self) {
        self.server.shutdown();
        if let Some(a) = self.admin {
            a.shutdown();
        }
    }
}
