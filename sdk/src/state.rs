//! State shared by every instance of this filter across all of the proxy's workers
//! (and, in the [`Scope::Global`] scope, across every proxy sharing the configured
//! global backend): counters with a time-to-live, token buckets and a key-value store.
//!
//! Keys are private to the filter (the proxy prefixes them with the filter's name, so
//! renaming a filter starts its state afresh); state survives configuration reloads.
//! Every operation is atomic. Under the native test harness, state lives in the
//! [`TestHost`](crate::testing::TestHost) and follows its manual clock, with the same
//! semantics as the proxy's (both use one implementation).
//!
//! ```
//! use std::time::Duration;
//! use weft_sdk::state::{self, Scope, TokenBucket};
//!
//! // A fixed window of one minute per tenant: the count, and when the window ends.
//! let hits = state::counter_add_in(Scope::Local, "tenant-a", 1, Some(Duration::from_secs(60)));
//! assert_eq!(hits.value, 1);
//! assert_eq!(hits.expires_in, Some(Duration::from_secs(60)));
//!
//! // 10 requests per second, bursts of 20, shared by every proxy on the global backend.
//! let bucket = TokenBucket::new(10, Duration::from_secs(1), 20);
//! assert!(bucket.take_in(Scope::Global, "tenant-a", 1).allowed);
//! ```

use std::time::Duration;

use crate::backend::host;

/// Where a counter or bucket lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// This proxy: exact across its workers and instances.
    #[default]
    Local,
    /// Every proxy sharing the configured global backend (`shared_state.global` in the
    /// proxy's configuration). Served from leases the proxy takes in batches, so it
    /// never waits on the backend; a limit holds across proxies to within
    /// (proxies x lease) per window. Without a backend it is the same as `Local`.
    Global,
}

/// A counter's value and how long its window has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// The value.
    pub value: i64,
    /// Until the counter expires (its TTL from when it was created), when it has one:
    /// what a fixed-window limiter puts in `Retry-After`.
    pub expires_in: Option<Duration>,
}

#[cfg(not(target_arch = "wasm32"))]
impl Counter {
    /// From the shared implementation's answer at `now_ms`.
    pub(crate) fn from_store(c: weft_shared_state::CounterValue, now_ms: u64) -> Counter {
        Counter {
            value: c.value,
            expires_in: c
                .expires_at_ms
                .map(|at| Duration::from_millis(at.saturating_sub(now_ms))),
        }
    }
}

/// Adds `delta` to the local counter at `key` (created at 0) and returns the new value.
/// When `ttl` is given and the counter is new or expired, it expires `ttl` later: a
/// fixed window, as for a count of requests per second.
pub fn counter_add(key: &str, delta: i64, ttl: Option<Duration>) -> i64 {
    counter_add_in(Scope::Local, key, delta, ttl).value
}

/// The local counter's value (0 when absent or expired).
pub fn counter_get(key: &str) -> i64 {
    counter_get_in(Scope::Local, key).value
}

/// [`counter_add`] in a scope, with how long the counter's window has left.
pub fn counter_add_in(scope: Scope, key: &str, delta: i64, ttl: Option<Duration>) -> Counter {
    host::state_counter_add(scope, key, delta, ttl)
}

/// [`counter_get`] in a scope, with how long the counter's window has left.
pub fn counter_get_in(scope: Scope, key: &str) -> Counter {
    host::state_counter_get(scope, key)
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

    /// Takes `tokens` from this proxy's bucket at `key` (created full), all or nothing.
    pub fn take(&self, key: &str, tokens: u64) -> TakeResult {
        self.take_in(Scope::Local, key, tokens)
    }

    /// [`TokenBucket::take`] in a scope.
    pub fn take_in(&self, scope: Scope, key: &str, tokens: u64) -> TakeResult {
        host::state_token_bucket_take(scope, key, self, tokens)
    }
}

/// The value at `key` in this proxy's state, if present and not expired.
pub fn get(key: &str) -> Option<Vec<u8>> {
    host::state_kv_get(key)
}

/// Stores a value, expiring after `ttl` when given.
pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) {
    host::state_kv_set(key, value, ttl)
}

/// Stores a value only if `key` is absent or expired; returns whether it stored.
pub fn set_if_absent(key: &str, value: &[u8], ttl: Option<Duration>) -> bool {
    host::state_kv_set_if_absent(key, value, ttl)
}

/// Removes a value; returns whether it was there.
pub fn delete(key: &str) -> bool {
    host::state_kv_delete(key)
}

/// The global backend did not answer in time (or is not reachable); the proxy's
/// `on_error` setting decides whether calls fail with this or use the local state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the global state backend is unavailable")
    }
}

impl std::error::Error for Unavailable {}

/// Keys with values shared by every proxy on the global backend. Each call is a round
/// trip to the backend, which the filter waits for without blocking the proxy's
/// worker; a filter that uses this module is called asynchronously (as one using
/// [`crate::http`]). Prefer [`counter_add_in`] and [`TokenBucket::take_in`] with
/// [`Scope::Global`] for limits: they need no round trip per request.
pub mod global {
    use std::time::Duration;

    use super::Unavailable;
    use crate::backend::host;

    /// The value at `key`, if present and not expired.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        host::global_get(key)
    }

    /// Stores a value, expiring after `ttl` when given.
    pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), Unavailable> {
        host::global_set(key, value, ttl)
    }

    /// Stores a value only if `key` is absent; returns whether it stored.
    pub fn set_if_absent(
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, Unavailable> {
        host::global_set_if_absent(key, value, ttl)
    }

    /// Removes a value; returns whether it was there.
    pub fn delete(key: &str) -> Result<bool, Unavailable> {
        host::global_delete(key)
    }
}
