//! One worker: a thread, a single-threaded runtime, an accept loop per listener.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::accepting::{Accepting, Live};
use super::conn::serve_connection;
use super::listener::ListenSocket;
use super::DRAIN;
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

async fn accept_loop(
    socket: TcpListener,
    mut listener: Accepting,
    handle: SnapshotHandle,
    mut shutdown: watch::Receiver<bool>,
    live: Arc<Live>,
) {
    loop {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let guard = live.enter();
                    let counted = handle
                        .load()
                        .listener(&listener.name, listener.hint)
                        .map(|l| l.connections.open());
                    let conn = serve_connection(stream, peer, listener.clone(), handle.clone(), shutdown.clone(), guard);
                    tokio::spawn(async move {
                        conn.await;
                        drop(counted);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
            _ = listener.stop.changed() => {
                tracing::info!(listener = %listener.name, "listener removed: no longer accepting");
                return;
            }
        }
    }
}
