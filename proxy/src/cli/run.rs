//! `weft run`: the proxy.

use std::path::PathBuf;

use clap::Args;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::app::App;
use crate::bundle::TrustedKeys;
use crate::control::agent::{bootstrap, AgentConfig};
use crate::control::Hello;
use crate::reload::{ReloadHandle, Trigger};

/// `weft run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (not with `--control`, where configuration comes in
    /// bundles).
    #[arg(
        long,
        short,
        required_unless_present = "control",
        conflicts_with = "control"
    )]
    pub config: Option<PathBuf>,
    /// Worker threads (default: one per CPU core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Do not reload when the configuration or a file it names changes (SIGHUP and
    /// `POST /reload` on the admin endpoint still reload).
    #[arg(long)]
    pub no_watch: bool,
    /// Take bundles from the control plane at these addresses (`host:port`, comma
    /// separated or repeated: replicas, tried in turn).
    #[arg(long, value_delimiter = ',')]
    pub control: Vec<String>,
    /// This proxy's name for the control plane (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// A label for the control plane's selectors, `KEY=VALUE` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// The service this proxy fronts, for the control plane's selectors.
    #[arg(long)]
    pub service: Option<String>,
    /// Where bundles and the last good configuration are kept (default:
    /// `$XDG_STATE_HOME/weft/<name>` or `~/.local/state/weft/<name>`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// A public key bundles must be signed with (repeatable); with none, unsigned
    /// bundles are accepted.
    #[arg(long)]
    pub trust: Vec<PathBuf>,
}

impl RunArgs {
    /// Runs the proxy until SIGINT or SIGTERM, then drains connections and exits;
    /// SIGHUP reloads the configuration.
    pub fn run(self) -> anyhow::Result<()> {
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let (app, config) = if self.control.is_empty() {
            let config = self.config.clone().expect("clap requires it");
            (App::start(&config, workers, !self.no_watch)?, config)
        } else {
            let agent = self.agent_config()?;
            // The last good configuration if there is one, else the first bundle.
            let had_config = agent.current_config().is_file();
            let config = bootstrap(&agent, Duration::from_secs(60))?;
            let app = match App::start(&config, workers, false) {
                Ok(app) => app,
                Err(e) => {
                    // A first bundle this proxy cannot run is not a "last good"
                    // configuration: forget it, so the next start asks again.
                    if !had_config {
                        agent.forget_current();
                    }
                    return Err(e);
                }
            };
            crate::control::agent::spawn(agent, app.reloads.clone(), app.metrics.clone())?;
            (app, config)
        };
        for (name, addr) in &app.server.bound() {
            println!("weft listening: {name} http://{addr}");
        }
        if let Some(admin) = &app.admin {
            println!("weft admin: http://{}", admin.address);
        }
        println!(
            "weft ready: {} workers, config {}",
            workers,
            config.display()
        );
        tracing::info!(workers, config = %config.display(), "serving");
        wait_for_signal(&app.reloads)?;
        tracing::info!("shutting down: draining connections");
        app.shutdown();
        crate::logsink::flush_all();
        Ok(())
    }
}

impl RunArgs {
    fn agent_config(&self) -> anyhow::Result<AgentConfig> {
        let name = match &self.name {
            Some(n) => n.clone(),
            None => std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "weft".into()),
        };
        let mut labels = BTreeMap::new();
        for l in &self.labels {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--label {l:?}: expected KEY=VALUE"))?;
            labels.insert(k.to_owned(), v.to_owned());
        }
        let state_dir = match &self.state_dir {
            Some(d) => d.clone(),
            None => std::env::var_os("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
                .ok_or_else(|| anyhow::anyhow!("no --state-dir, and no HOME to put one under"))?
                .join("weft")
                .join(&name),
        };
        std::fs::create_dir_all(&state_dir)?;
        Ok(AgentConfig {
            servers: self.control.clone(),
            hello: Hello {
                name,
                labels,
                service: self.service.clone(),
                version: None,
            },
            state_dir,
            trusted: TrustedKeys::read(&self.trust)?,
        })
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
        let mut usr1 = signal(SignalKind::user_defined1())?;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => return r,
                _ = term.recv() => return Ok(()),
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    reloads.trigger(Trigger::Signal);
                }
                _ = usr1.recv() => {
                    tracing::info!("SIGUSR1: reopening access log files");
                    crate::logsink::reopen_all();
                }
            }
        }
    })?;
    Ok(())
}
