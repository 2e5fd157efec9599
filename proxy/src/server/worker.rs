//! One worker: a thread, a single-threaded runtime, an accept loop per listener.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::accepting::{Accepting, Live};
use super::conn::serve_connection;
use super::listener::ListenSocket;
use super::DRAIN;
use crate::overload::Action;
use crate::snapshot::SnapshotHandle;

/// What the server asks of a worker.
pub enum Command {
    /// Accept connections on this socket for the listener `name` until `stop`.
    Listen {
        /// The listener's name.
        name: Arc<str>,
        /// Its position in the snapshot it was added with.
        hint: usize,
        /// This worker's socket for it.
        socket: ListenSocket,
        /// Set when the listener is removed.
        stop: watch::Receiver<bool>,
        /// Held while the socket is open, so the server knows when it is closed.
        open: Arc<()>,
    },
}

/// Runs a worker until shutdown and drain.
pub fn run(
    id: usize,
    mut commands: mpsc::UnboundedReceiver<Command>,
    handle: SnapshotHandle,
    mut shutdown: watch::Receiver<bool>,
    started: std::sync::mpsc::Sender<()>,
) {
    crate::shard::set_worker(id);
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
    let _ = started.send(());
    rt.block_on(async move {
        let live = Arc::new(Live::default());
        tokio::spawn(give_back(live.clone()));
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Listen { name, hint, socket: ListenSocket::Udp(socket), stop, open }) => {
                        let listener = Accepting { name, hint, stop };
                        let (handle, shutdown, live) = (handle.clone(), shutdown.clone(), live.clone());
                        tokio::spawn(async move {
                            super::quic::serve_endpoint(socket, listener, handle, shutdown, live).await;
                            drop(open);
                        });
                    }
                    Some(Command::Listen { name, hint, socket: ListenSocket::Tcp(socket), stop, open }) => {
                        let socket = match TcpListener::from_std(socket) {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::error!(worker = id, listener = %name, "cannot use a listening socket: {e}");
                                continue;
                            }
                        };
                        let listener = Accepting { name, hint, stop };
                        let (handle, shutdown, live) = (handle.clone(), shutdown.clone(), live.clone());
                        tokio::spawn(async move {
                            accept_loop(socket, listener, handle, shutdown, live).await;
                            drop(open); // after the socket: it is closed now
                        });
                    }
                    None => break,
                },
                _ = shutdown.changed() => break,
            }
        }
        // Draining: connections were told to finish; wait for them, within limits.
        let drained = tokio::time::timeout(DRAIN, live.drained()).await;
        if drained.is_err() {
            tracing::warn!(
                worker = id,
                open = live.open(),
                "connections still open after the drain period"
            );
        }
    });
}

/// How often a worker looks whether connections closed since it last gave memory back.
const GIVE_BACK_EVERY: Duration = Duration::from_secs(1);

/// Hands memory freed by closed connections back to the OS: the allocator keeps freed
/// pages for reuse, and purges them only as the thread allocates again, which a worker
/// whose connections went away may not do for a long time. Once a second, when the
/// worker holds a quarter fewer connections than its most since the last collection
/// (and at least 64 fewer), or none, the worker's heap is collected.
async fn give_back(live: Arc<Live>) {
    let mut tick = tokio::time::interval(GIVE_BACK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut high = 0;
    loop {
        tick.tick().await;
        let open = live.open();
        high = high.max(open);
        if open < high && (open == 0 || high - open >= (high / 4).max(64)) {
            crate::net::clear_spare_buffers();
            // SAFETY: mi_collect has no preconditions; it collects this thread's heap
            // (and is a no-op where mimalloc is not the allocator in use).
            unsafe { libmimalloc_sys::mi_collect(true) };
            high = open;
        }
    }
}

async fn accept_loop(
    socket: TcpListener,
    mut listener: Accepting,
    handle: SnapshotHandle,
    mut shutdown: watch::Receiver<bool>,
    live: Arc<Live>,
) {
    let mut overload = crate::overload::watch();
    loop {
        if crate::overload::active(Action::StopAccepting) {
            // New connections wait in the kernel's backlog until the pressure falls.
            tokio::select! {
                _ = overload.changed() => continue,
                _ = shutdown.changed() => return,
                _ = listener.stop.changed() => return,
            }
        }
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    // (A listener a reload just removed is not found: its connection is
                    // answered 503 `listener-removed`.)
                    let counted = match handle.load().listener(&listener.name, listener.hint) {
                        None => None,
                        Some(l) => match l.connections.admit(l.max_connections) {
                            Some(open) => Some(open),
                            None => {
                                // Over a limit: closed at once (counted by `admit`),
                                // never left to run the process out of descriptors.
                                tracing::debug!(listener = %listener.name, %peer, "connection refused: over max_connections");
                                drop(stream);
                                continue;
                            }
                        },
                    };
                    let guard = live.enter();
                    // Spawned as it is (a wrapper future would hold it twice over).
                    // Spawned as it is (a wrapper future would hold it twice over).
                    tokio::spawn(serve_connection(stream, peer, listener.clone(), handle.clone(), shutdown.clone(), guard, counted));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = overload.changed() => {}
            _ = shutdown.changed() => return,
            _ = listener.stop.changed() => {
                tracing::info!(listener = %listener.name, "listener removed: no longer accepting");
                return;
            }
        }
    }
}
