//! Reading, checking and building a configuration into a snapshot: what `weft
//! validate`, `weft run` and every reload share.

use std::path::Path;

use super::Snapshot;
use crate::config::{check, Checked, ConfigError, LoadedConfig};
use crate::host::FilterHost;
use crate::metrics::Registry;

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
