//! `weft validate`: check a configuration completely without serving it.

use std::path::PathBuf;

use clap::Args;

use crate::app::host_for;
use crate::metrics::Registry;
use crate::snapshot::load;

/// `weft validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

impl ValidateArgs {
    /// Checks everything `weft run` would: syntax, fields, references, addresses, and
    /// every filter module compiled and started with its configuration. Prints the first
    /// problem as `file:line:column: field: message` and fails, or a summary.
    pub fn run(self) -> anyhow::Result<()> {
        let metrics = Registry::new();
        let host = host_for(&self.config, &metrics)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let loaded = rt.block_on(load(&self.config, &host, &metrics, None))?;
        let routes: usize = loaded
            .checked
            .listeners
            .iter()
            .map(|l| l.routes.len())
            .sum();
        println!(
            "{}: ok ({} listener(s), {} route(s), {} cluster(s), {} filter(s) loaded)",
            self.config.display(),
            loaded.checked.listeners.len(),
            routes,
            loaded.checked.clusters.len(),
            loaded.snapshot.filters.len()
        );
        Ok(())
    }
}
