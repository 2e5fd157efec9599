//! Token buckets with continuous refill.

/// A bucket's shape: at most `capacity` tokens, gaining `refill_tokens` every
/// `refill_interval_ms`, continuously (a bucket of 10 per 1000 ms gains one token every
/// 100 ms, not ten at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// The most tokens the bucket holds (the burst).
    pub capacity: u64,
    /// Tokens gained per interval.
    pub refill_tokens: u64,
    /// The interval, in milliseconds.
    pub refill_interval_ms: u64,
}

impl Bucket {
    /// Tokens gained per millisecond; 0 for a bucket that never refills.
    fn rate_per_ms(&self) -> f64 {
        if self.refill_interval_ms == 0 {
            return 0.0;
        }
        self.refill_tokens as f64 / self.refill_interval_ms as f64
    }
}

/// The outcome of taking tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeResult {
    /// Whether the tokens were taken.
    pub allowed: bool,
    /// Whole tokens left after the call.
    pub remaining: u64,
    /// When refused: milliseconds until enough tokens are back (`u64::MAX` if never).
    pub retry_after_ms: u64,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
}

/// One bucket's level at a point in time.
#[derive(Debug, Clone)]
pub(crate) struct BucketState {
    tokens: f64,
    updated_ms: u64,
    capacity: f64,
    rate_per_ms: f64,
}

/// Milliseconds to gain `missing` tokens at `rate`, rounded up.
fn millis_for(missing: f64, rate_per_ms: f64) -> u64 {
    if missing <= 0.0 {
        return 0;
    }
    if rate_per_ms <= 0.0 {
        return u64::MAX;
    }
    (missing / rate_per_ms).ceil() as u64
}

impl BucketState {
    pub(crate) fn full(bucket: &Bucket, now_ms: u64) -> Self {
        Self {
            tokens: bucket.capacity as f64,
            updated_ms: now_ms,
            capacity: bucket.capacity as f64,
            rate_per_ms: bucket.rate_per_ms(),
        }
    }

    fn refill(&mut self, bucket: &Bucket, now_ms: u64) {
        // The newest shape wins if callers disagree about it.
        self.capacity = bucket.capacity as f64;
        self.rate_per_ms = bucket.rate_per_ms();
        let elapsed = now_ms.saturating_sub(self.updated_ms) as f64;
        self.tokens = (self.tokens + elapsed * self.rate_per_ms).min(self.capacity);
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    pub(crate) fn take(&mut self, bucket: &Bucket, tokens: u64, now_ms: u64) -> TakeResult {
        self.refill(bucket, now_ms);
        let wanted = tokens as f64;
        let allowed = self.tokens >= wanted;
        if allowed {
            self.tokens -= wanted;
        }
        TakeResult {
            allowed,
            remaining: self.tokens.floor() as u64,
            retry_after_ms: if allowed {
                0
            } else if wanted > self.capacity {
                u64::MAX
            } else {
                millis_for(wanted - self.tokens, self.rate_per_ms)
            },
            reset_ms: millis_for(self.capacity - self.tokens, self.rate_per_ms),
        }
    }

    pub(crate) fn is_full_at(&self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.updated_ms) as f64;
        self.tokens + elapsed * self.rate_per_ms >= self.capacity
    }
}

#[cfg(test)]
mod tests {
    use crate::{Bucket, Store};

    const TEN_PER_SECOND: Bucket = Bucket {
        capacity: 10,
        refill_tokens: 10,
        refill_interval_ms: 1000,
    };

    #[test]
    fn a_new_bucket_allows_its_burst_then_refuses() {
        let mut s = Store::new();
        for i in 0..10 {
            let r = s.token_bucket_take("k", TEN_PER_SECOND, 1, 0);
            assert!(r.allowed, "take {i}");
            assert_eq!(r.remaining, 9 - i);
        }
        let r = s.token_bucket_take("k", TEN_PER_SECOND, 1, 0);
        assert!(!r.allowed);
        assert_eq!(r.retry_after_ms, 100, "one token comes back every 100 ms");
        assert_eq!(r.reset_ms, 1000);
    }

    #[test]
    fn refill_is_continuous_and_capped_at_capacity() {
        let mut s = Store::new();
        assert!(s.token_bucket_take("k", TEN_PER_SECOND, 10, 0).allowed);
        assert!(!s.token_bucket_take("k", TEN_PER_SECOND, 1, 99).allowed);
        assert!(s.token_bucket_take("k", TEN_PER_SECOND, 1, 100).allowed);
        // A long pause refills to capacity, not beyond.
        let r = s.token_bucket_take("k", TEN_PER_SECOND, 1, 1_000_000);
        assert_eq!(r.remaining, 9);
    }

    #[test]
    fn taking_more_than_capacity_is_never_possible() {
        let mut s = Store::new();
        let r = s.token_bucket_take("k", TEN_PER_SECOND, 11, 0);
        assert!(!r.allowed);
        assert_eq!(r.retry_after_ms, u64::MAX);
        assert_eq!(r.remaining, 10, "a refused take takes nothing");
    }

    #[test]
    fn steady_rate_is_held_over_time() {
        // 100/s with a burst of 100, asked 1000 times a second for 10 s: 100 burst plus
        // 10 s of refill.
        let bucket = Bucket {
            capacity: 100,
            refill_tokens: 100,
            refill_interval_ms: 1000,
        };
        let mut s = Store::new();
        let allowed = (0..10_000u64)
            .filter(|i| s.token_bucket_take("k", bucket, 1, *i).allowed)
            .count();
        assert_eq!(allowed, 100 + 999);
    }
}
