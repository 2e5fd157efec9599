//! A filter's breaker: a filter that keeps running into its deadline or its memory limit
//! is not called for a cool-down; its failure policy is applied at once instead.
//!
//! Filter calls run on the worker thread, so a call that loops until its deadline takes
//! that long from every other connection on the worker: with many such requests, one
//! route's filter would stall every route. Wasmtime's async yielding would let the
//! worker serve others meanwhile, but puts every call on a fiber (a cost on every
//! request, and the CPU is still spent); the breaker costs one atomic load per call.
//! After [`THRESHOLD`] costly failures within [`WINDOW`], the filter is skipped for
//! [`COOL_DOWN`]; then one call is let through as a probe, and the breaker closes if it
//! succeeds or stays open for another cool-down if it fails. Traps and invalid answers
//! are cheap and do not count: only deadlines and memory.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Costly failures within [`WINDOW`] that open the breaker.
pub const THRESHOLD: u32 = 3;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(1);
/// How long an open breaker skips the filter before a probe.
pub const COOL_DOWN: Duration = Duration::from_secs(5);

/// One filter's breaker, shared by every worker.
pub struct Breaker {
    base: Instant,
    /// Nanoseconds after `base` until which calls are skipped; 0 when closed.
    open_until: AtomicU64,
    /// Start of the current counting window (nanoseconds after `base`).
    window_start: AtomicU64,
    /// Costly failures in the current window.
    failures: AtomicU32,
    /// Whether a probe call is out (only one at a time).
    probing: AtomicBool,
}

/// What the breaker says about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed: call the filter.
    Call,
    /// Open, cool-down over: this call is the probe.
    Probe,
    /// Open: apply the failure policy without calling.
    Skip,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            base: Instant::now(),
            open_until: AtomicU64::new(0),
            window_start: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            probing: AtomicBool::new(false),
        }
    }
}

impl Breaker {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Whether a call may go ahead. Closed: one load.
    pub fn gate(&self) -> Gate {
        let until = self.open_until.load(Ordering::Relaxed);
        if until == 0 {
            return Gate::Call;
        }
        if self.now() < until {
            return Gate::Skip;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            Gate::Probe
        } else {
            Gate::Skip
        }
    }

    /// Whether the breaker is open now.
    pub fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Relaxed) != 0
    }

    /// A call (probe or not) ended. `costly`: it hit its deadline or memory limit.
    /// Returns true when this opened the breaker.
    pub fn record(&self, gate: Gate, costly: bool) -> bool {
        let now = self.now();
        if gate == Gate::Probe {
            if costly {
                self.open_until
                    .store(now + COOL_DOWN.as_nanos() as u64, Ordering::Relaxed);
            } else {
                self.failures.store(0, Ordering::Relaxed);
                self.open_until.store(0, Ordering::Relaxed);
            }
            self.probing.store(false, Ordering::Release);
            return false;
        }
        if !costly {
            return false;
        }
        let start = self.window_start.load(Ordering::Relaxed);
        let count = if now.saturating_sub(start) > WINDOW.as_nanos() as u64 {
            self.window_start.store(now, Ordering::Relaxed);
            self.failures.store(1, Ordering::Relaxed);
            1
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed) + 1
        };
        if count >= THRESHOLD && !self.is_open() {
            self.open_until
                .store(now + COOL_DOWN.as_nanos() as u64, Ordering::Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_costly_failures_and_probes_after_the_cool_down() {
        let b = Breaker::default();
        assert_eq!(b.gate(), Gate::Call);
        assert!(!b.record(Gate::Call, false), "successes never open it");
        assert!(!b.record(Gate::Call, true));
        assert!(!b.record(Gate::Call, true));
        assert!(
            b.record(Gate::Call, true),
            "the third costly failure opens it"
        );
        assert_eq!(b.gate(), Gate::Skip);
        // The cool-down over: one probe at a time.
        b.open_until.store(1, Ordering::Relaxed);
        assert_eq!(b.gate(), Gate::Probe);
        assert_eq!(b.gate(), Gate::Skip, "one probe at a time");
        b.record(Gate::Probe, true);
        assert_eq!(b.gate(), Gate::Skip, "a failed probe: another cool-down");
        b.open_until.store(1, Ordering::Relaxed);
        assert_eq!(b.gate(), Gate::Probe);
        b.record(Gate::Probe, false);
        assert_eq!(b.gate(), Gate::Call, "a good probe closes it");
    }
}
