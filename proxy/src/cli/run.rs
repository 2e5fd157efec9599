//! `weft run`: the proxy.

use std::path::PathBuf;

use clap::Args;

use crate::app::App;
use crate::reload::{ReloadHandle, Trigger};

/// `weft run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Worker threads (default: one per CPU core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Do not reload when the configuration or a file it names changes (SIGHUP and
    /// `POST /reload` on the admin endpoint still reload).
    #[arg(long)]
    pub no_watch: bool,
}

impl RunArgs {
    /// Runs the proxy until SIGINT or SIGTERM, then drains connections and exits;
    /// SIGHUP reloads the configuration.
    pub fn run(self) -> anyhow::Result<()> {
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let app = App::start(&self.config, workers, !self.no_watch)?;
        for (name, addr) in &app.server.bound() {
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
        wait_for_signal(&app.reloads)?;
        tracing::info!("shutting down: draining connections");
        app.shutdown();
        Ok(())
    }
}

fn wait_for_signal(reloads: &ReloadHandle) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => return r,
                _ = term.recv() => return Ok(()),
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    reloads.trigger(Trigger::Signal);
                }
            }
        }
    })?;
    Ok(())
}
