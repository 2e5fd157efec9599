//! Circuit breakers: per-cluster limits on open connections, attempts waiting for a
//! connection, attempts in flight and retries in flight, all workers together. Over a
//! limit the attempt is not made: the client gets 503 with `x-weft-error: overflow` at
//! once (a retry over its limit is not sent, and the response that asked for it is
//! delivered), counted per limit. A limit not configured costs nothing: no count is
//! kept for it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::resilience::Breakers;
use crate::metrics::{Counter, Registry};

/// One of the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_connections`.
    Connections,
    /// `max_pending_requests`.
    Pending,
    /// `max_requests`.
    Requests,
    /// `max_retries`.
    Retries,
}

impl Limit {
    const ALL: [Limit; 4] = [
        Limit::Connections,
        Limit::Pending,
        Limit::Requests,
        Limit::Retries,
    ];

    /// The configuration's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Connections => "max_connections",
            Limit::Pending => "max_pending_requests",
            Limit::Requests => "max_requests",
            Limit::Retries => "max_retries",
        }
    }
}

/// One limit's count of places taken, and when it last refused one.
#[derive(Debug, Default)]
struct Places {
    taken: AtomicU32,
    /// [`crate::clock::process_millis`] + 1 at the last refusal (0: never).
    refused_at: AtomicU64,
}

/// A place taken under a limit, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Places>);

/// How recent a refusal makes a place [`Slot::contended`].
const CONTENDED_MS: u64 = 1_000;

impl Slot {
    /// Whether its limit refused someone within the last second: an idle connection
    /// holding such a place is closed rather than kept in a worker's pool, so that the
    /// place goes to whichever worker needs one next (pools are per worker; the limit
    /// is for all of them).
    pub fn contended(&self) -> bool {
        let at = self.0.refused_at.load(Ordering::Relaxed);
        at != 0 && crate::clock::process_millis() + 1 < at + CONTENDED_MS
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A refusal: the limit that was reached.
#[derive(Debug, Clone, Copy)]
pub struct Overflow {
    /// Which.
    pub limit: Limit,
    /// Its value.
    pub max: u32,
}

/// A cluster's breakers.
pub struct Breaker {
    limits: Breakers,
    counts: [Arc<Places>; 4],
    overflows: [Arc<Counter>; 4],
}

impl Breaker {
    /// Breakers with `limits` for `cluster`, their counters registered.
    pub fn new(limits: Breakers, cluster: &str, metrics: &Registry) -> Breaker {
        Breaker {
            limits,
            counts: Default::default(),
            overflows: Limit::ALL.map(|l| {
                metrics.counter(
                    "weft_upstream_overflow_total",
                    "Attempts and retries refused by a cluster's circuit breakers, by limit.",
                    &[("cluster", cluster), ("limit", l.as_str())],
                )
            }),
        }
    }

    fn max(&self, limit: Limit) -> Option<u32> {
        match limit {
            Limit::Connections => self.limits.max_connections,
            Limit::Pending => self.limits.max_pending,
            Limit::Requests => self.limits.max_requests,
            Limit::Retries => self.limits.max_retries,
        }
    }

    /// Takes a place under `limit`: `Ok(None)` when the limit is not configured,
    /// `Err` (counted) when it is full.
    pub fn take(&self, limit: Limit) -> Result<Option<Slot>, Overflow> {
        let Some(max) = self.max(limit) else {
            return Ok(None);
        };
        let places = &self.counts[limit as usize];
        if places.taken.fetch_add(1, Ordering::Relaxed) >= max {
            places.taken.fetch_sub(1, Ordering::Relaxed);
            places
                .refused_at
                .store(crate::clock::process_millis() + 1, Ordering::Relaxed);
            self.overflows[limit as usize].inc();
            return Err(Overflow { limit, max });
        }
        Ok(Some(Slot(places.clone())))
    }

    /// How many places under `limit` are taken now (0 when it is not configured).
    pub fn in_use(&self, limit: Limit) -> u32 {
        self.counts[limit as usize].taken.load(Ordering::Relaxed)
    }

    /// Refusals under `limit` so far.
    pub fn overflows(&self, limit: Limit) -> u64 {
        self.overflows[limit as usize].get()
    }

    /// The limits, as configured.
    pub fn limits(&self) -> &Breakers {
        &self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_holds_until_a_place_is_given_back() {
        let b = Breaker::new(
            Breakers {
                max_requests: Some(2),
                ..Default::default()
            },
            "c",
            &Registry::default(),
        );
        let one = b.take(Limit::Requests).unwrap();
        let two = b.take(Limit::Requests).unwrap();
        assert!(one.is_some() && two.is_some());
        assert!(!one.as_ref().unwrap().contended());
        let refused = b.take(Limit::Requests).unwrap_err();
        assert!(
            one.as_ref().unwrap().contended(),
            "a refusal marks the places taken"
        );
        assert_eq!((refused.limit, refused.max), (Limit::Requests, 2));
        assert_eq!(b.overflows(Limit::Requests), 1);
        drop(one);
        assert!(b.take(Limit::Requests).is_ok());
        // No limit configured: nothing counted.
        assert!(b.take(Limit::Connections).unwrap().is_none());
        assert_eq!(b.in_use(Limit::Connections), 0);
    }
}
