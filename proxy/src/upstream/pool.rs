//! Kept-alive upstream connections, one pool per worker thread.
//!
//! Each worker runs its own single-threaded runtime, so its connections and their
//! tasks live on its thread and the pool needs no lock. An HTTP/1.1 connection returns
//! to the pool when its response body has been read to the end; one that is dropped
//! earlier is closed. HTTP/2 keeps one multiplexed connection per endpoint.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};

use crate::body::{BoxError, ProxyBody};

struct Idle {
    send: http1::SendRequest<ProxyBody>,
    since: Instant,
}

thread_local! {
    static H1: RefCell<HashMap<SocketAddr, Vec<Idle>>> = RefCell::new(HashMap::new());
    static H2: RefCell<HashMap<SocketAddr, http2::SendRequest<ProxyBody>>> = RefCell::new(HashMap::new());
}

/// Takes an idle HTTP/1.1 connection to `addr`, skipping closed and stale ones.
pub fn take_h1(addr: SocketAddr, idle_timeout: Duration) -> Option<http1::SendRequest<ProxyBody>> {
    H1.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(&addr)?;
        while let Some(conn) = idle.pop() {
            if !conn.send.is_closed() && conn.since.elapsed() < idle_timeout {
                return Some(conn.send);
            }
        }
        None
    })
}

/// Returns an HTTP/1.1 connection to the pool, unless it is closed or the pool is full.
pub fn put_h1(addr: SocketAddr, send: http1::SendRequest<ProxyBody>, max_idle: usize) {
    if send.is_closed() || max_idle == 0 {
        return;
    }
    H1.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(addr).or_default();
        if idle.len() < max_idle {
            idle.push(Idle {
                send,
                since: Instant::now(),
            });
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

struct Return {
    addr: SocketAddr,
    send: http1::SendRequest<ProxyBody>,
    max_idle: usize,
}

/// An upstream response body that gives its connection back at its end.
pub struct UpstreamBody {
    inner: Incoming,
    ret: Option<Return>,
}

impl UpstreamBody {
    /// A body from an HTTP/1.1 connection, returned to the pool at the end.
    pub fn pooled(
        inner: Incoming,
        addr: SocketAddr,
        send: http1::SendRequest<ProxyBody>,
        max_idle: usize,
    ) -> ProxyBody {
        let mut body = UpstreamBody {
            inner,
            ret: Some(Return {
                addr,
                send,
                max_idle,
            }),
        };
        if body.inner.is_end_stream() {
            body.give_back();
        }
        ProxyBody::Upstream(body)
    }

    fn give_back(&mut self) {
        if let Some(r) = self.ret.take() {
            put_h1(r.addr, r.send, r.max_idle);
        }
    }

    pub(crate) fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.give_back(),
            Poll::Ready(Some(Err(_))) => this.ret = None,
            _ => {}
        }
        polled.map_err(Into::into)
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
