//! Accepting connections: worker threads, listeners, and serving HTTP on each
//! connection.
//!
//! Each worker is a thread with its own single-threaded runtime and its own socket for
//! every listener (`SO_REUSEPORT`: the kernel spreads connections over the workers, as
//! nginx's workers do). A connection and everything it does stay on its worker's
//! thread, which keeps connection pools lock-free and caches warm.

mod conn;
mod listener;
mod worker;

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

pub use listener::bind_all;

use crate::snapshot::SnapshotHandle;

/// A running data plane.
pub struct Server {
    /// Each listener's name and the address it is bound to (ports resolved).
    pub bound: Vec<(String, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

/// How long connections get to finish after a shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(10);

impl Server {
    /// Binds every listener of the current snapshot on `workers` sockets each and
    /// starts the workers.
    pub fn start(handle: SnapshotHandle, workers: usize) -> std::io::Result<Server> {
        let workers = workers.max(1);
        let snapshot = handle.load_full();
        let (bound, mut sockets) = bind_all(&snapshot, workers)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(workers);
        for id in 0..workers {
            let mine: Vec<_> = sockets
                .iter_mut()
                .enumerate()
                .map(|(i, per)| (i, per.remove(0)))
                .collect();
            let handle = handle.clone();
            let rx = shutdown_rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("weft-worker-{id}"))
                .spawn(move || worker::run(id, mine, handle, rx))?;
            threads.push(t);
        }
        Ok(Server {
            bound,
            shutdown,
            workers: threads,
        })
    }

    /// Stops accepting, lets open connections finish (up to [`DRAIN`]), and waits for
    /// the workers.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.workers {
            let _ = t.join();
        }
    }
}
