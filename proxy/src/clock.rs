//! A worker's recent time, for bookkeeping that needs seconds, not nanoseconds.
//!
//! Reading the clock costs a few tens of nanoseconds in a VM (a vDSO call), and a
//! request read it six or seven times. Where a value from earlier in the same request
//! is good enough (how long an upstream connection has been idle, against timeouts of
//! seconds), code asks for [`recent`]: the time the worker last read with [`now`].

use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static RECENT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The time now, remembered as this thread's recent time.
pub fn now() -> Instant {
    let now = Instant::now();
    RECENT.with(|r| r.set(Some(now)));
    now
}

/// The time this thread last read with [`now`] (never later than now); the time now if
/// it never did.
pub fn recent() -> Instant {
    RECENT.with(|r| r.get()).unwrap_or_else(now)
}

/// Milliseconds since this process first asked (a process-wide base, unlike
/// [`recent`]'s per-thread time): for deadlines shared between threads in an atomic.
pub fn process_millis() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_is_the_last_reading_and_never_ahead() {
        let first = recent();
        assert!(first <= Instant::now());
        let read = now();
        assert_eq!(recent(), read);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(recent(), read, "not read again");
        assert!(now() > read);
    }
}
