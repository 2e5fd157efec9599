//! Time, from the host: the same clock for every instance and worker.
//!
//! Under the native test harness the clock is manual: it starts at 2026-01-01T00:00:00Z
//! and moves only when a test calls [`TestHost::advance`](crate::testing::TestHost::advance).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::host;

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    host::clock_now_ns() / 1_000_000
}

/// Wall-clock time in whole seconds since the Unix epoch (as JWT `exp` and `nbf` use).
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Wall-clock time as a [`SystemTime`].
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(now_ms())
}

/// Monotonic time from an arbitrary start, for measuring durations.
pub fn monotonic() -> Duration {
    Duration::from_nanos(host::clock_monotonic_ns())
}
