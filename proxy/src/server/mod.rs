//! Accepting connections: worker threads, listeners, and serving HTTP on each
//! connection.
//!
//! Each worker is a thread with its own single-threaded runtime and its own socket for
//! every listener (`SO_REUSEPORT`: the kernel spreads connections over the workers, as
//! nginx's workers do). A connection and everything it does stay on its worker's
//! thread, which keeps connection pools lock-free and caches warm.
//!
//! Listeners can be added and removed while the proxy runs (a reload): new sockets are
//! bound before the new snapshot is swapped in, so a port that cannot be had refuses
//! the reload; a removed listener stops accepting and its connections finish their
//! requests and close. Listeners that stay keep their sockets and connections.

mod accepting;
mod conn;
mod h1;
mod listener;
pub mod overload;
mod quic;
mod rewind;
mod tunnel;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

pub use listener::bind_listener;
use worker::Command;

use crate::snapshot::{Snapshot, SnapshotHandle};

/// How long connections get to finish after a shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(10);

/// A listener being served.
struct Running {
    name: String,
    /// As configured (port 0 stays 0): what a reload compares.
    configured: SocketAddr,
    bound: SocketAddr,
    stop: watch::Sender<bool>,
    /// Alive while a worker still has the socket open.
    open: std::sync::Weak<()>,
}

/// How long a reload waits for removed listeners' sockets to close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Sockets bound for a reload, not yet served.
pub struct Prepared {
    new: Vec<(String, SocketAddr, SocketAddr, Vec<listener::ListenSocket>)>,
}

/// What a reload changed in the listeners: (name, address) added and removed.
#[derive(Debug, Default, Clone)]
pub struct ListenerChanges {
    /// Listeners now served.
    pub added: Vec<(String, SocketAddr)>,
    /// Listeners no longer served.
    pub removed: Vec<(String, SocketAddr)>,
}

/// A running data plane.
pub struct Server {
    running: Mutex<Vec<Running>>,
    commands: Vec<mpsc::UnboundedSender<Command>>,
    shutdown: watch::Sender<bool>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Server {
    /// Binds every listener of the current snapshot on `workers` sockets each and
    /// starts the workers.
    pub fn start(handle: SnapshotHandle, workers: usize) -> std::io::Result<Server> {
        let workers = workers.max(1);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(workers);
        let mut commands = Vec::with_capacity(workers);
        // "Ready" means every worker runs: each says so once its runtime is up.
        let (started_tx, started) = std::sync::mpsc::channel();
        for id in 0..workers {
            let started_tx = started_tx.clone();
            let (tx, rx) = mpsc::unbounded_channel();
            let handle = handle.clone();
            let shutdown = shutdown_rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("weft-worker-{id}"))
                .spawn(move || worker::run(id, rx, handle, shutdown, started_tx))?;
            threads.push(t);
            commands.push(tx);
        }
        drop(started_tx);
        for _ in 0..workers {
            if started.recv().is_err() {
                return Err(std::io::Error::other("a worker thread did not start"));
            }
        }
        let server = Server {
            running: Mutex::new(Vec::new()),
            commands,
            shutdown,
            workers: Mutex::new(threads),
        };
        let snapshot = handle.load_full();
        let prepared = server.prepare(&snapshot)?;
        server.apply(prepared, &snapshot);
        Ok(server)
    }

    /// Each listener's name and the address it is bound to (ports resolved).
    pub fn bound(&self) -> Vec<(String, SocketAddr)> {
        self.running
            .lock()
            .iter()
            .map(|r| (r.name.clone(), r.bound))
            .collect()
    }

    /// Binds the listeners of `next` that are not served yet. Nothing is served until
    /// [`Server::apply`]; dropping the result closes the sockets.
    pub fn prepare(&self, next: &Snapshot) -> std::io::Result<Prepared> {
        let running = self.running.lock();
        let mut new = Vec::new();
        for l in &next.listeners {
            if running
                .iter()
                .any(|r| r.name == *l.name && r.configured == l.address)
            {
                continue;
            }
            // A renamed listener on the same address binds beside the old one
            // (SO_REUSEPORT) and takes over when the old one stops.
            let udp = l.protocol == crate::config::model::ListenerProtocol::Http3;
            let (bound, sockets) =
                bind_listener(&l.name, l.address, self.commands.len(), udp, l.backlog)?;
            new.push((l.name.to_string(), l.address, bound, sockets));
        }
        Ok(Prepared { new })
    }

    /// After `next` is the current snapshot: serves the prepared listeners and stops
    /// those `next` no longer has (their connections finish their requests and close).
    /// Returns once the removed listeners' sockets are closed (or after [`CLOSE_WAIT`]);
    /// blocks, so call it off the workers.
    pub fn apply(&self, prepared: Prepared, next: &Snapshot) -> ListenerChanges {
        let mut changes = ListenerChanges::default();
        let mut running = self.running.lock();
        let mut closing = Vec::new();
        running.retain(|r| {
            let stays = next
                .listeners
                .iter()
                .any(|l| *l.name == r.name && l.address == r.configured);
            if !stays {
                let _ = r.stop.send(true);
                changes.removed.push((r.name.clone(), r.bound));
                closing.push(r.open.clone());
            }
            stays
        });
        for (name, configured, bound, sockets) in prepared.new {
            let (stop, stop_rx) = watch::channel(false);
            let hint = next
                .listeners
                .iter()
                .position(|l| *l.name == name)
                .unwrap_or(0);
            let shared: Arc<str> = name.as_str().into();
            let open = Arc::new(());
            for (tx, socket) in self.commands.iter().zip(sockets) {
                let _ = tx.send(Command::Listen {
                    name: shared.clone(),
                    hint,
                    socket,
                    stop: stop_rx.clone(),
                    open: open.clone(),
                });
            }
            changes.added.push((name.clone(), bound));
            running.push(Running {
                name,
                configured,
                bound,
                stop,
                open: Arc::downgrade(&open),
            });
        }
        drop(running);
        let deadline = std::time::Instant::now() + CLOSE_WAIT;
        while closing.iter().any(|w| w.strong_count() > 0) {
            if std::time::Instant::now() > deadline {
                tracing::warn!("removed listeners still open after {CLOSE_WAIT:?}");
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        changes
    }

    /// Stops accepting, lets open connections finish (up to [`DRAIN`]), and waits for
    /// the workers.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let workers = std::mem::take(&mut *self.workers.lock());
        for t in workers {
            let _ = t.join();
        }
    }
}
