//! Reloading the configuration and filters while traffic flows.
//!
//! A reload reads the configuration file again, checks it whole, compiles and starts
//! every filter it uses (modules whose content digest is already loaded are reused, not
//! recompiled), binds any new listener, and only then swaps the new snapshot in. A
//! request loads the snapshot once when it arrives and finishes on it, so requests in
//! flight are untouched; new requests, on new or kept-alive connections, see the new
//! one. A reload that fails at any step changes nothing: the reason is logged, counted
//! and shown on the admin endpoint, and the old snapshot keeps serving. Old snapshots,
//! with their filter instances, are freed when their last request ends.
//!
//! Triggers: the configuration file or a file it names changing on disk
//! ([`watch`]), SIGHUP, and `POST /reload` on the admin endpoint. Reloads run one at a
//! time on their own thread.

pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Checked, LoadedConfig};
use crate::host::FilterHost;
use crate::metrics::{Counter, Gauge, Registry};
use crate::server::Server;
use crate::snapshot::{load, SnapshotHandle};

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A file the configuration depends on changed.
    FileChange,
    /// SIGHUP.
    Signal,
    /// `POST /reload` on the admin endpoint.
    Admin,
    /// A bundle from the control plane.
    Control,
}

/// The result of one reload.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    /// Whether the new configuration now serves.
    pub applied: bool,
    /// The version serving after this reload (unchanged when refused).
    pub version: u64,
    /// What asked for it.
    pub trigger: Trigger,
    /// When it finished, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// How long it took, reading to swap.
    pub duration_ms: f64,
    /// Why it was refused (the file, line and field where the configuration says).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Listeners started, as `name address`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners_added: Vec<String>,
    /// Listeners stopped, as `name address`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners_removed: Vec<String>,
    /// Settings that changed but only take effect on a restart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs_restart: Vec<String>,
}

/// What the admin endpoint shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The version serving: 1 for the configuration the proxy started with, one more
    /// for each applied reload.
    pub version: u64,
    /// When that version was applied, in milliseconds since the Unix epoch.
    pub applied_at_unix_ms: u64,
    /// Reloads applied since start.
    pub applied: u64,
    /// Reloads refused since start.
    pub refused: u64,
    /// The latest reloads, newest first (at most [`HISTORY`]).
    pub recent: Vec<ReloadOutcome>,
}

/// Outcomes kept for the admin endpoint.
pub const HISTORY: usize = 16;

struct Stats {
    applied: Arc<Counter>,
    refused: Arc<Counter>,
    version: Arc<Gauge>,
    last_success: Arc<Gauge>,
    last_time: Arc<Gauge>,
}

impl Stats {
    fn new(metrics: &Registry) -> Stats {
        let reloads = |outcome: &str| {
            metrics.counter(
                "weft_config_reloads_total",
                "Configuration reloads, by outcome (applied or refused).",
                &[("outcome", outcome)],
            )
        };
        Stats {
            applied: reloads("applied"),
            refused: reloads("refused"),
            version: metrics.gauge(
                "weft_config_version",
                "The configuration version serving (1 at start, +1 per applied reload).",
                &[],
            ),
            last_success: metrics.gauge(
                "weft_config_last_reload_successful",
                "1 if the latest reload was applied, 0 if it was refused.",
                &[],
            ),
            last_time: metrics.gauge(
                "weft_config_last_reload_timestamp_seconds",
                "When the latest reload finished, in seconds since the Unix epoch.",
                &[],
            ),
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Settings read once at start, which a reload cannot change.
#[derive(PartialEq)]
struct Fixed {
    admin: Option<std::net::SocketAddr>,
    cache_dir: Option<PathBuf>,
    max_instances: u32,
}

impl Fixed {
    fn of(checked: &Checked) -> Fixed {
        Fixed {
            admin: checked.admin,
            cache_dir: checked.cache_dir.clone(),
            max_instances: checked.max_instances,
        }
    }

    fn differences(&self, other: &Fixed) -> Vec<String> {
        let mut d = Vec::new();
        if self.admin != other.admin {
            d.push("admin.address".to_owned());
        }
        if self.cache_dir != other.cache_dir {
            d.push("filter_host.cache_dir".to_owned());
        }
        if self.max_instances != other.max_instances {
            d.push("filter_host.max_instances".to_owned());
        }
        d
    }
}

/// Reloads, one at a time.
pub struct Reloader {
    config: PathBuf,
    host: Arc<FilterHost>,
    metrics: Arc<Registry>,
    handle: SnapshotHandle,
    server: Arc<Server>,
    status: Arc<Mutex<Status>>,
    stats: Stats,
    fixed: Fixed,
    /// Files the serving configuration depends on (for the watcher).
    watched: Arc<Mutex<Vec<PathBuf>>>,
}

struct Request {
    trigger: Trigger,
    reply: Option<oneshot::Sender<ReloadOutcome>>,
}

/// Asks the reloader for reloads; cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle {
    tx: mpsc::UnboundedSender<Request>,
    status: Arc<Mutex<Status>>,
    watched: Arc<Mutex<Vec<PathBuf>>>,
}

impl ReloadHandle {
    /// Asks for a reload without waiting for it.
    pub fn trigger(&self, trigger: Trigger) {
        let _ = self.tx.send(Request {
            trigger,
            reply: None,
        });
    }

    fn ask(&self, trigger: Trigger) -> Option<oneshot::Receiver<ReloadOutcome>> {
        let (reply, rx) = oneshot::channel();
        let request = Request {
            trigger,
            reply: Some(reply),
        };
        self.tx.send(request).ok().map(|()| rx)
    }

    /// Reloads and returns the outcome (`None` if the reloader has stopped).
    pub async fn reload(&self, trigger: Trigger) -> Option<ReloadOutcome> {
        self.ask(trigger)?.await.ok()
    }

    /// [`ReloadHandle::reload`] for threads outside any runtime.
    pub fn reload_blocking(&self, trigger: Trigger) -> Option<ReloadOutcome> {
        self.ask(trigger)?.blocking_recv().ok()
    }

    /// The current version and the latest outcomes.
    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }

    /// The files the serving configuration depends on.
    pub fn watched(&self) -> Vec<PathBuf> {
        self.watched.lock().clone()
    }
}

/// The files a configuration depends on: itself, its filter modules and their files.
pub fn dependencies(config: &LoadedConfig, checked: &Checked) -> Vec<PathBuf> {
    let mut paths = vec![config.path.clone()];
    for f in checked.filters.values() {
        paths.push(f.module.clone());
    }
    for f in config.config.filters.values() {
        for p in f.files.values() {
            paths.push(config.resolve(p));
        }
    }
    // Certificates and trust bundles: rotating one is a reload.
    for tls in checked.listeners.iter().filter_map(|l| l.tls.as_ref()) {
        for (cert, key) in &tls.certificates {
            paths.push(cert.clone());
            paths.push(key.clone());
        }
        paths.extend(tls.client_ca.iter().cloned());
    }
    paths.sort();
    paths.dedup();
    paths
}

impl Reloader {
    /// A reloader for the proxy started from `parsed` and `checked` (version 1).
    pub fn new(
        config: &Path,
        parsed: &LoadedConfig,
        checked: &Checked,
        host: Arc<FilterHost>,
        metrics: Arc<Registry>,
        handle: SnapshotHandle,
        server: Arc<Server>,
    ) -> Reloader {
        let stats = Stats::new(&metrics);
        stats.version.set(1.0);
        let now = unix_ms(SystemTime::now());
        Reloader {
            config: config.to_owned(),
            host,
            metrics,
            handle,
            server,
            status: Arc::new(Mutex::new(Status {
                version: 1,
                applied_at_unix_ms: now,
                applied: 0,
                refused: 0,
                recent: Vec::new(),
            })),
            stats,
            fixed: Fixed::of(checked),
            watched: Arc::new(Mutex::new(dependencies(parsed, checked))),
        }
    }

    /// Starts the reload thread; reloads stop when every handle is dropped.
    pub fn spawn(self) -> std::io::Result<ReloadHandle> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
        let handle = ReloadHandle {
            tx,
            status: self.status.clone(),
            watched: self.watched.clone(),
        };
        crate::background::spawn_thread("weft-reload", move || async move {
            while let Some(req) = rx.recv().await {
                let outcome = self.reload(req.trigger).await;
                if let Some(reply) = req.reply {
                    let _ = reply.send(outcome);
                }
            }
        })?;
        Ok(handle)
    }

    /// Reloads now: validates the whole configuration and its modules, binds new
    /// listeners, swaps, then stops removed listeners.
    pub async fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        let started = Instant::now();
        let result = self.try_reload().await;
        let mut status = self.status.lock();
        let (applied, error, changes, needs_restart) = match result {
            Ok((changes, needs_restart)) => {
                status.version += 1;
                status.applied += 1;
                status.applied_at_unix_ms = unix_ms(SystemTime::now());
                (true, None, changes, needs_restart)
            }
            Err(e) => {
                status.refused += 1;
                (false, Some(e), Default::default(), Vec::new())
            }
        };
        let outcome = ReloadOutcome {
            applied,
            version: status.version,
            trigger,
            at_unix_ms: unix_ms(SystemTime::now()),
            duration_ms: started.elapsed().as_secs_f64() * 1e3,
            error,
            listeners_added: fmt_listeners(&changes.added),
            listeners_removed: fmt_listeners(&changes.removed),
            needs_restart,
        };
        status.recent.insert(0, outcome.clone());
        status.recent.truncate(HISTORY);
        drop(status);
        self.record(&outcome);
        outcome
    }

    fn record(&self, o: &ReloadOutcome) {
        self.stats.last_time.set(o.at_unix_ms as f64 / 1e3);
        if o.applied {
            self.stats.applied.inc();
            self.stats.version.set(o.version as f64);
            self.stats.last_success.set(1.0);
            tracing::info!(
                version = o.version,
                trigger = ?o.trigger,
                ms = format!("{:.1}", o.duration_ms),
                added = ?o.listeners_added,
                removed = ?o.listeners_removed,
                "configuration reloaded"
            );
            if !o.needs_restart.is_empty() {
                tracing::warn!(settings = ?o.needs_restart, "changed settings take effect on restart only");
            }
        } else {
            self.stats.refused.inc();
            self.stats.last_success.set(0.0);
            tracing::error!(
                trigger = ?o.trigger,
                version = o.version,
                "reload refused, still serving the previous configuration: {}",
                o.error.as_deref().unwrap_or("")
            );
        }
    }

    async fn try_reload(&self) -> Result<(crate::server::ListenerChanges, Vec<String>), String> {
        let current = self.handle.load_full();
        let loaded = load(&self.config, &self.host, &self.metrics, Some(&current))
            .await
            .map_err(|e| e.to_string())?;
        let needs_restart = self.fixed.differences(&Fixed::of(&loaded.checked));
        let prepared = self
            .server
            .prepare(&loaded.snapshot)
            .map_err(|e| e.to_string())?;
        self.host
            .services
            .set_global(loaded.checked.global.as_ref())
            .map_err(|e| e.to_string())?;
        let deps = dependencies(&loaded.config, &loaded.checked);
        let next = Arc::new(loaded.snapshot);
        self.handle.store(next.clone());
        let changes = self.server.apply(prepared, &next);
        *self.watched.lock() = deps;
        Ok((changes, needs_restart))
    }
}

fn fmt_listeners(l: &[(String, std::net::SocketAddr)]) -> Vec<String> {
    l.iter().map(|(n, a)| format!("{n} {a}")).collect()
}

/// How long file changes must be quiet before a reload starts.
pub const DEBOUNCE: Duration = Duration::from_millis(250);
