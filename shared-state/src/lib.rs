//! The semantics of weft's shared filter state: counters with a time-to-live, token
//! buckets and a key-value store with expiry.
//!
//! This crate holds one single-threaded [`Store`] whose every operation takes the
//! current time as an argument, so that it is deterministic and testable. The proxy
//! wraps shards of it in locks to share it across workers; the SDK's native test host
//! uses it directly with a manual clock. Both therefore behave the same way.

mod bucket;

use std::collections::HashMap;

use bucket::BucketState;
pub use bucket::{Bucket, TakeResult};

/// How many mutating operations run between two sweeps of expired entries.
const SWEEP_EVERY: u32 = 4096;

#[derive(Debug, Clone, Copy)]
struct Counter {
    value: i64,
    expires_at_ms: Option<u64>,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    expires_at_ms: Option<u64>,
}

fn live(expires_at_ms: Option<u64>, now_ms: u64) -> bool {
    expires_at_ms.is_none_or(|at| now_ms < at)
}

/// A counter as read: its value and when it expires, if it has a TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterValue {
    /// The value.
    pub value: i64,
    /// When it expires (on the caller's clock), if it has a TTL.
    pub expires_at_ms: Option<u64>,
}

/// Counters, token buckets and values, keyed by string. Times are milliseconds on any
/// monotonic clock, passed by the caller.
#[derive(Debug, Default)]
pub struct Store {
    counters: HashMap<String, Counter>,
    buckets: HashMap<String, BucketState>,
    values: HashMap<String, Entry>,
    ops_since_sweep: u32,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `delta` to a counter and returns it. A counter that is new or expired starts
    /// at 0 and, when `ttl_ms` is given, expires `ttl_ms` from now.
    pub fn counter_add(
        &mut self,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> CounterValue {
        self.tick(now_ms);
        let expires_at_ms = ttl_ms.map(|ttl| now_ms.saturating_add(ttl));
        let counter = match self.counters.get_mut(key) {
            Some(counter) if live(counter.expires_at_ms, now_ms) => {
                counter.value = counter.value.saturating_add(delta);
                *counter
            }
            Some(counter) => {
                *counter = Counter {
                    value: delta,
                    expires_at_ms,
                };
                *counter
            }
            None => {
                let counter = Counter {
                    value: delta,
                    expires_at_ms,
                };
                self.counters.insert(key.to_owned(), counter);
                counter
            }
        };
        CounterValue {
            value: counter.value,
            expires_at_ms: counter.expires_at_ms,
        }
    }

    /// A counter: value 0 and no expiry when absent or expired.
    pub fn counter_get(&self, key: &str, now_ms: u64) -> CounterValue {
        match self.counters.get(key) {
            Some(counter) if live(counter.expires_at_ms, now_ms) => CounterValue {
                value: counter.value,
                expires_at_ms: counter.expires_at_ms,
            },
            _ => CounterValue {
                value: 0,
                expires_at_ms: None,
            },
        }
    }

    /// Takes `tokens` from the bucket at `key`, all or nothing. A new bucket starts full.
    pub fn token_bucket_take(
        &mut self,
        key: &str,
        bucket: Bucket,
        tokens: u64,
        now_ms: u64,
    ) -> TakeResult {
        self.tick(now_ms);
        // Looked up by `&str` first: the key is copied only for a new bucket.
        if let Some(state) = self.buckets.get_mut(key) {
            return state.take(&bucket, tokens, now_ms);
        }
        let state = self
            .buckets
            .entry(key.to_owned())
            .or_insert_with(|| BucketState::full(&bucket, now_ms));
        state.take(&bucket, tokens, now_ms)
    }

    /// The value at `key`, if present and not expired.
    pub fn kv_get(&self, key: &str, now_ms: u64) -> Option<&[u8]> {
        match self.values.get(key) {
            Some(entry) if live(entry.expires_at_ms, now_ms) => Some(&entry.value),
            _ => None,
        }
    }

    /// Stores a value, expiring `ttl_ms` from now when given.
    pub fn kv_set(&mut self, key: &str, value: Vec<u8>, ttl_ms: Option<u64>, now_ms: u64) {
        self.tick(now_ms);
        let expires_at_ms = ttl_ms.map(|ttl| now_ms.saturating_add(ttl));
        self.values.insert(
            key.to_owned(),
            Entry {
                value,
                expires_at_ms,
            },
        );
    }

    /// Stores a value only if the key is absent or expired; returns whether it stored.
    pub fn kv_set_if_absent(
        &mut self,
        key: &str,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> bool {
        if self.kv_get(key, now_ms).is_some() {
            return false;
        }
        self.kv_set(key, value, ttl_ms, now_ms);
        true
    }

    /// Removes a value; returns whether a live one was there.
    pub fn kv_delete(&mut self, key: &str, now_ms: u64) -> bool {
        self.tick(now_ms);
        self.values
            .remove(key)
            .is_some_and(|entry| live(entry.expires_at_ms, now_ms))
    }

    /// How many entries of every kind the store holds, expired ones not yet swept
    /// included.
    pub fn len(&self) -> usize {
        self.counters.len() + self.buckets.len() + self.values.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired counters and values, and buckets that have refilled completely
    /// (a full bucket is the same as an absent one), so that keys such as client
    /// addresses cannot grow the store without bound.
    pub fn sweep(&mut self, now_ms: u64) {
        self.counters.retain(|_, c| live(c.expires_at_ms, now_ms));
        self.values.retain(|_, e| live(e.expires_at_ms, now_ms));
        self.buckets.retain(|_, b| !b.is_full_at(now_ms));
        self.ops_since_sweep = 0;
    }

    fn tick(&mut self, now_ms: u64) {
        self.ops_since_sweep += 1;
        if self.ops_since_sweep >= SWEEP_EVERY {
            self.sweep(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_adds_and_expires_as_a_fixed_window() {
        let mut s = Store::new();
        assert_eq!(s.counter_add("k", 1, Some(1000), 0).value, 1);
        assert_eq!(s.counter_add("k", 2, Some(1000), 500).value, 3);
        // The window is fixed from the first add: it ends at 1000, not 1500.
        assert_eq!(s.counter_get("k", 999).value, 3);
        assert_eq!(
            s.counter_get("k", 999).expires_at_ms,
            Some(1000),
            "the window of the first add"
        );
        assert_eq!(s.counter_get("k", 1000).value, 0);
        assert_eq!(s.counter_add("k", 5, Some(1000), 1000).value, 5);
        assert_eq!(s.counter_get("k", 1999).value, 5);
    }

    #[test]
    fn counter_without_ttl_never_expires_and_can_go_negative() {
        let mut s = Store::new();
        s.counter_add("k", -3, None, 0);
        assert_eq!(s.counter_get("k", u64::MAX / 2).value, -3);
        assert_eq!(s.counter_get("other", 0).value, 0);
    }

    #[test]
    fn kv_respects_ttl_and_set_if_absent() {
        let mut s = Store::new();
        s.kv_set("a", b"1".to_vec(), Some(100), 0);
        assert_eq!(s.kv_get("a", 99), Some(&b"1"[..]));
        assert_eq!(s.kv_get("a", 100), None);
        assert!(s.kv_set_if_absent("a", b"2".to_vec(), None, 100));
        assert!(!s.kv_set_if_absent("a", b"3".to_vec(), None, 101));
        assert_eq!(s.kv_get("a", 5000), Some(&b"2"[..]));
        assert!(s.kv_delete("a", 5000));
        assert!(!s.kv_delete("a", 5000));
    }

    #[test]
    fn sweep_drops_expired_entries_and_full_buckets() {
        let mut s = Store::new();
        let bucket = Bucket {
            capacity: 2,
            refill_tokens: 1,
            refill_interval_ms: 100,
        };
        s.counter_add("c", 1, Some(10), 0);
        s.kv_set("v", vec![1], Some(10), 0);
        s.kv_set("forever", vec![1], None, 0);
        s.token_bucket_take("b", bucket, 1, 0);
        assert_eq!(s.len(), 4);
        s.sweep(50);
        assert_eq!(s.len(), 2, "expired counter and value are gone");
        s.sweep(100);
        assert_eq!(
            s.len(),
            1,
            "the refilled bucket is gone, the value without ttl stays"
        );
        // A swept bucket comes back full.
        assert!(s.token_bucket_take("b", bucket, 2, 100).allowed);
    }
}
