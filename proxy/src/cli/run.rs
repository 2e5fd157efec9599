//! `weft run`: the proxy.

use std::path::PathBuf;

use clap::Args;

use crate::app::App;

/// `weft run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Worker threads (default: one per CPU core).
    #[arg(long)]
    pub workers: Option<usize>,
}

impl RunArgs {
    /// Runs the proxy until SIGINT or SIGTERM, then drains connections and exits.
    pub fn run(self) -> anyhow::Result<()> {
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let app = App::start(&self.config, workers)?;
        for (name, addr) in &app.server.bound {
            println!("weft listening: {name} http://{addr}");
        }
        if let Some(admin) = &app.admin {
            println!("weft admin: http://{}", admin.address);
        }
        println!(
            "weft ready: {} workers, config {}",
            workers,
            self.config.display()
        );
        tracing::info!(workers, config = %self.config.display(), "serving");
        wait_for_signal()?;
        tracing::info!("shutting down: draining connections");
        app.shutdown();
        Ok(())
    }
}

fn wait_for_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}
