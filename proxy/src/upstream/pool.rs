//! Kept-alive upstream connections, one pool per worker thread.
//!
//! Each worker runs its own single-threaded runtime, so its connections live on its
//! thread and the pool needs no lock. An HTTP/1.1 connection returns to the pool when
//! its response body has been read to the end; one dropped earlier is closed. HTTP/2
//! keeps one multiplexed connection per endpoint.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::client::conn::http2;

use super::h1::H1Conn;
use crate::body::ProxyBody;

thread_local! {
    // Boxed: connections move between the pool and response bodies without copying, and
    // the body enum that holds one stays small.
    #[allow(clippy::vec_box)]
    static H1: RefCell<HashMap<SocketAddr, Vec<Box<H1Conn>>>> = RefCell::new(HashMap::new());
    static H2: RefCell<HashMap<SocketAddr, http2::SendRequest<ProxyBody>>> = RefCell::new(HashMap::new());
}

/// Takes an idle HTTP/1.1 connection to `addr`, skipping stale and closed ones.
pub fn take_h1(addr: SocketAddr, idle_timeout: Duration) -> Option<Box<H1Conn>> {
    H1.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(&addr)?;
        while let Some(conn) = idle.pop() {
            if conn.since.elapsed() < idle_timeout && !conn.is_stale() {
                return Some(conn);
            }
        }
        None
    })
}

/// Returns an HTTP/1.1 connection to the pool, unless the pool is full.
pub fn put_h1(addr: SocketAddr, mut conn: Box<H1Conn>, max_idle: usize) {
    if max_idle == 0 {
        return;
    }
    conn.since = Instant::now();
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

/// Idle HTTP/1.1 connections this worker holds to `addr` (for tests and the admin API).
pub fn idle_h1(addr: SocketAddr) -> usize {
    H1.with(|pool| pool.borrow().get(&addr).map_or(0, Vec::len))
}
