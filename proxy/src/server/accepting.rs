//! What a worker's connections share: the listener they came in on, and the count of
//! open connections that draining waits for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

/// A listener as a worker serves it.
#[derive(Clone)]
pub struct Accepting {
    pub name: Arc<str>,
    /// Where it is expected in the snapshot.
    pub hint: usize,
    /// Set when a reload removes it.
    pub stop: watch::Receiver<bool>,
}

/// Open connections of a worker, to know when draining is done.
#[derive(Default)]
pub struct Live {
    count: AtomicUsize,
    idle: Notify,
}

/// Counts a connection while alive.
pub struct LiveGuard(Arc<Live>);

impl Live {
    /// Counts a new connection until the guard drops.
    pub fn enter(self: &Arc<Self>) -> LiveGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        LiveGuard(self.clone())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Completes once no connection is open.
    pub async fn drained(&self) {
        while self.open() > 0 {
            let idle = self.idle.notified();
            if self.open() == 0 {
                break;
            }
            idle.await;
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
