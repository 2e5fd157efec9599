//! Kept-alive upstream connections, one pool per worker thread.
//!
//! Each worker runs its own single-threaded runtime, so its connections live on its
//! thread and the pool needs no lock. An HTTP/1.1 connection returns to the pool when
//! its response body has been read to the end; one dropped earlier is closed. HTTP/2
//! keeps one multiplexed connection per endpoint.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use hyper::client::conn::http2;

use crate::body::ProxyBody;
use crate::net::UpstreamConn;

/// A multiply-rotate hash (as rustc's FxHash) for endpoint addresses: the keys come
/// from the configuration and name resolution, not from clients, so SipHash's
/// flooding resistance buys nothing here and costs two hashes per request.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n as u64);
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(n as u64);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type AddrMap<V> = HashMap<SocketAddr, V, BuildHasherDefault<AddrHasher>>;

thread_local! {
    #[allow(
        clippy::vec_box,
        reason = "connections move between the pool and response bodies without copying, \
                  and the body enum that holds one stays small"
    )]
    static H1: RefCell<AddrMap<Vec<Box<UpstreamConn>>>> = RefCell::new(AddrMap::default());
    static H2: RefCell<AddrMap<http2::SendRequest<ProxyBody>>> = RefCell::new(AddrMap::default());
}

/// Takes an idle HTTP/1.1 connection to `addr`, skipping stale and closed ones.
pub fn take_h1(addr: SocketAddr, idle_timeout: Duration) -> Option<Box<UpstreamConn>> {
    H1.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(&addr)?;
        while let Some(conn) = idle.pop() {
            // The worker's recent time is this request's start: close enough for seconds.
            let idle = crate::clock::recent().saturating_duration_since(conn.since);
            if idle < idle_timeout && !conn.is_stale() {
                return Some(conn);
            }
        }
        None
    })
}

/// Returns an HTTP/1.1 connection to the pool, unless the pool is full or the
/// connection holds a circuit breaker's place that another attempt was just refused
/// (closed instead: see [`super::breaker::Slot::contended`]).
pub fn put_h1(addr: SocketAddr, mut conn: Box<UpstreamConn>, max_idle: usize) {
    if max_idle == 0 {
        return;
    }
    let held = conn
        .held
        .as_ref()
        .and_then(|h| h.downcast_ref::<super::breaker::Slot>());
    if held.is_some_and(|s| s.contended()) {
        return;
    }
    // At most one request's age behind: a connection looks idle longer, never shorter.
    conn.since = crate::clock::recent();
    H1.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(addr).or_default();
        if idle.len() < max_idle {
            idle.push(conn);
        }
    })
}

/// The worker's HTTP/2 connection to `addr`, if it is open.
pub fn get_h2(addr: SocketAddr) -> Option<http2::SendRequest<ProxyBody>> {
    H2.with(|pool| {
        let mut pool = pool.borrow_mut();
        match pool.get(&addr) {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                pool.remove(&addr);
                None
            }
            None => None,
        }
    })
}

/// Makes `send` the worker's HTTP/2 connection to `addr`.
pub fn set_h2(addr: SocketAddr, send: http2::SendRequest<ProxyBody>) {
    H2.with(|pool| {
        pool.borrow_mut().insert(addr, send);
    })
}
