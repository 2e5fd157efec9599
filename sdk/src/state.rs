//! State shared by every instance of this filter across all of the proxy's workers:
//! counters with a time-to-live, token buckets and a key-value store.
//!
//! Keys are private to the filter (the proxy prefixes them with the filter's name).
//! Every operation is atomic. Under the native test harness, state lives in the
//! [`TestHost`](crate::testing::TestHost) and follows its manual clock, with the same
//! semantics as the proxy's (both use one implementation).

use std::time::Duration;

use crate::backend::host;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Adds `delta` to the counter at `key` (created at 0) and returns the new value. When
/// `ttl` is given and the counter is new or expired, it expires `ttl` later: a fixed
/// window, as for a count of requests per second.
pub fn counter_add(key: &str, delta: i64, ttl: Option<Duration>) -> i64 {
    host::state_counter_add(key, delta, ttl.map(ms))
}

/// The counter's value (0 when absent or expired).
pub fn counter_get(key: &str) -> i64 {
    host::state_counter_get(key)
}

/// A token bucket's shape: at most `capacity` tokens, gaining `refill_tokens` every
/// `refill_interval`, continuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// The most tokens the bucket holds (the burst).
    pub capacity: u64,
    /// Tokens gained per interval.
    pub refill_tokens: u64,
    /// The interval.
    pub refill_interval: Duration,
}

/// The outcome of [`TokenBucket::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeResult {
    /// Whether the tokens were taken.
    pub allowed: bool,
    /// Tokens left after the call.
    pub remaining: u64,
    /// When refused: how long until enough tokens are back.
    pub retry_after: Duration,
    /// How long until the bucket is full again.
    pub reset: Duration,
}

impl TokenBucket {
    /// A bucket of `rate` tokens per `per`, holding at most `burst`.
    pub fn new(rate: u64, per: Duration, burst: u64) -> Self {
        TokenBucket {
            capacity: burst,
            refill_tokens: rate,
            refill_interval: per,
        }
    }

    /// Takes `tokens` from the bucket at `key` (created full), all or nothing.
    pub fn take(&self, key: &str, tokens: u64) -> TakeResult {
        let r = host::state_token_bucket_take(
            key,
            self.capacity,
            self.refill_tokens,
            ms(self.refill_interval),
            tokens,
        );
        TakeResult {
            allowed: r.allowed,
            remaining: r.remaining,
            retry_after: Duration::from_millis(r.retry_after_ms),
            reset: Duration::from_millis(r.reset_ms),
        }
    }
}

/// The value at `key`, if present and not expired.
pub fn get(key: &str) -> Option<Vec<u8>> {
    host::state_kv_get(key)
}

/// Stores a value, expiring after `ttl` when given.
pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) {
    host::state_kv_set(key, value, ttl.map(ms))
}

/// Stores a value only if `key` is absent or expired; returns whether it stored.
pub fn set_if_absent(key: &str, value: &[u8], ttl: Option<Duration>) -> bool {
    host::state_kv_set_if_absent(key, value, ttl.map(ms))
}

/// Removes a value; returns whether it was there.
pub fn delete(key: &str) -> bool {
    host::state_kv_delete(key)
}
