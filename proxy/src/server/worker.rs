//! One worker: a thread, a single-threaded runtime, an accept loop per listener.

use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use super::conn::serve_connection;
use super::DRAIN;
use crate::snapshot::SnapshotHandle;

/// Open connections of a worker, to know when draining is done.
#[derive(Default)]
pub struct Live {
    count: AtomicUsize,
    idle: Notify,
}

/// Counts a connection while alive.
pub struct LiveGuard(Arc<Live>);

impl Live {
    fn enter(self: &Arc<Self>) -> LiveGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        LiveGuard(self.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Runs a worker until shutdown and drain.
pub fn run(
    id: usize,
    sockets: Vec<(usize, StdListener)>,
    handle: SnapshotHandle,
    shutdown: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker = id, "cannot start the worker's runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let live = Arc::new(Live::default());
        let mut accepting = Vec::new();
        for (listener, socket) in sockets {
            let socket = match TcpListener::from_std(socket) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(worker = id, "cannot use a listening socket: {e}");
                    continue;
                }
            };
            accepting.push(tokio::spawn(accept_loop(
                socket,
                listener,
                handle.clone(),
                shutdown.clone(),
                live.clone(),
            )));
        }
        for a in accepting {
            let _ = a.await;
        }
        // Draining: connections were told to finish; wait for them, within limits.
        let drained = tokio::time::timeout(DRAIN, async {
            while live.count.load(Ordering::Acquire) > 0 {
                let idle = live.idle.notified();
                if live.count.load(Ordering::Acquire) == 0 {
                    break;
                }
                idle.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                worker = id,
                open = live.count.load(Ordering::Acquire),
                "connections still open after the drain period"
            );
        }
    });
}

async fn accept_loop(
    socket: TcpListener,
    listener: usize,
    handle: SnapshotHandle,
    mut shutdown: watch::Receiver<bool>,
    live: Arc<Live>,
) {
    loop {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let guard = live.enter();
                    tokio::spawn(serve_connection(stream, peer, listener, handle.clone(), shutdown.clone(), guard));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}
