//! Binding listeners: one socket per worker, all on the same address (`SO_REUSEPORT`:
//! the kernel spreads TCP connections, and QUIC's UDP datagrams by their address pair,
//! over the workers).

use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// One worker's socket of a listener.
pub enum ListenSocket {
    /// HTTP/1.1 and HTTP/2 (cleartext or TLS).
    Tcp(TcpListener),
    /// HTTP/3 over QUIC.
    Udp(UdpSocket),
}

impl ListenSocket {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            ListenSocket::Tcp(s) => s.local_addr(),
            ListenSocket::Udp(s) => s.local_addr(),
        }
    }
}

fn bind_one(addr: SocketAddr, udp: bool, backlog: u32) -> std::io::Result<ListenSocket> {
    let socket = if udp {
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?
    } else {
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?
    };
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if udp {
        return Ok(ListenSocket::Udp(socket.into()));
    }
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(ListenSocket::Tcp(socket.into()))
}

/// Binds `addr` `count` times, on UDP for QUIC (port 0 is resolved by the first socket
/// and reused by the others), TCP sockets with a `listen(2)` queue of `backlog`.
/// Returns the bound address and the sockets.
pub fn bind_listener(
    name: &str,
    addr: SocketAddr,
    count: usize,
    udp: bool,
    backlog: u32,
) -> std::io::Result<(SocketAddr, Vec<ListenSocket>)> {
    let first = bind_one(addr, udp, backlog).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {addr}{} (listener {name}): {e}",
                if udp { "/udp" } else { "" }
            ),
        )
    })?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count.max(1) {
        sockets.push(bind_one(bound, udp, backlog)?);
    }
    Ok((bound, sockets))
}
