//! Binding listeners: one socket per worker, all on the same address.

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

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

/// Binds `addr` `count` times (port 0 is resolved by the first socket and reused by
/// the others). Returns the bound address and the sockets.
pub fn bind_listener(
    name: &str,
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<(SocketAddr, Vec<TcpListener>)> {
    let first = bind_one(addr).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (listener {name}): {e}"),
        )
    })?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count.max(1) {
        sockets.push(bind_one(bound)?);
    }
    Ok((bound, sockets))
}
