//! The time filters see: the real clock, or, under `weft filter test`, a manual one
//! that moves only when told (as the SDK's native `TestHost` does), so that a test
//! that advances its clock by a minute replays the same way in the real host.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The clocks of one host: wall time, a monotonic clock and shared state's expiries.
pub struct FilterClock {
    /// The start of the monotonic clock.
    origin: Instant,
    /// A manual clock's wall time now and when it started, in milliseconds.
    manual: Option<(AtomicU64, u64)>,
}

impl FilterClock {
    /// The real clock.
    pub fn real() -> FilterClock {
        FilterClock {
            origin: Instant::now(),
            manual: None,
        }
    }

    /// A manual clock reading `start_ms` (milliseconds since the Unix epoch) until
    /// [`FilterClock::set_ms`] moves it.
    pub fn manual(start_ms: u64) -> FilterClock {
        FilterClock {
            origin: Instant::now(),
            manual: Some((AtomicU64::new(start_ms), start_ms)),
        }
    }

    /// Moves a manual clock to `now_ms` (never backwards); the real clock ignores it.
    pub fn set_ms(&self, now_ms: u64) {
        if let Some((now, _)) = &self.manual {
            now.fetch_max(now_ms, Ordering::Relaxed);
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn wall_ns(&self) -> u64 {
        match &self.manual {
            Some((now, _)) => now.load(Ordering::Relaxed).saturating_mul(1_000_000),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        }
    }

    /// Nanoseconds since the host started.
    pub fn monotonic_ns(&self) -> u64 {
        match &self.manual {
            Some((now, start)) => now
                .load(Ordering::Relaxed)
                .saturating_sub(*start)
                .saturating_mul(1_000_000),
            None => self.origin.elapsed().as_nanos() as u64,
        }
    }

    /// Milliseconds since the host started, as shared state keeps time.
    pub fn monotonic_ms(&self) -> u64 {
        match &self.manual {
            Some((now, start)) => now.load(Ordering::Relaxed).saturating_sub(*start),
            None => self.origin.elapsed().as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_forward_and_only_when_told() {
        let c = FilterClock::manual(1_000);
        assert_eq!(c.wall_ns(), 1_000_000_000);
        assert_eq!(c.monotonic_ms(), 0);
        c.set_ms(61_000);
        assert_eq!(c.monotonic_ms(), 60_000);
        assert_eq!(c.monotonic_ns(), 60_000_000_000);
        c.set_ms(5_000);
        assert_eq!(c.monotonic_ms(), 60_000, "never backwards");
    }

    #[test]
    fn the_real_clock_is_now() {
        let c = FilterClock::real();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(c.wall_ns().abs_diff(wall) < 5_000_000_000);
        c.set_ms(0);
        assert!(c.monotonic_ms() < 5_000);
    }
}
