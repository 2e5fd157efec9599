//! Binding listeners: one socket per worker, all on the same address.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::snapshot::Snapshot;

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Each listener's name and bound address, and its sockets (one per worker).
pub type Bound = (Vec<(String, SocketAddr)>, Vec<Vec<TcpListener>>);

/// Binds each listener `per_listener` times (port 0 is resolved by the first socket and
/// reused by the others). Returns each listener's name and address, and its sockets.
pub fn bind_all(snapshot: &Snapshot, per_listener: usize) -> std::io::Result<Bound> {
    let mut bound = Vec::new();
    let mut sockets = Vec::new();
    for l in &snapshot.listeners {
        let first = bind_one(l.address).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {} (listener {}): {e}", l.address, l.name),
            )
        })?;
        let addr = first.local_addr()?;
        let mut mine = vec![first];
        for _ in 1..per_listener {
            mine.push(bind_one(addr)?);
        }
        bound.push((l.name.to_string(), addr));
        sockets.push(mine);
    }
    Ok((bound, sockets))
}
