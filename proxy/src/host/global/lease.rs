//! One proxy's share of a global token bucket or counter: what it may decide alone,
//! and when it must ask Redis again. Pure bookkeeping, so the bound is testable
//! without Redis.
//!
//! A bucket's lease of `L` tokens lets this proxy run at most `L` tokens ahead of
//! Redis: it holds up to `ceil(L/2)` tokens taken in advance, and lends up to
//! `floor(L/2)` more before Redis has confirmed them (the debt is repaid from the next
//! grant). So over any window, the proxies together allow at most the bucket's own
//! allowance plus `proxies × L`.

use weft_shared_state::{CounterValue, TakeResult};

/// A bucket's lease on one proxy.
#[derive(Debug, Default)]
pub struct BucketLease {
    /// Tokens held (above 0) or owed to Redis (below 0).
    balance: i64,
    /// A grant is being asked for.
    pub fetching: bool,
    /// Redis said the bucket was empty: no lending and no asking before this time.
    exhausted_until_ms: u64,
    /// Tokens Redis had left at its last answer.
    remaining: u64,
    /// When Redis's bucket is full again, as of its last answer.
    full_at_ms: u64,
    /// Last use, for forgetting idle leases.
    pub used_ms: u64,
}

impl BucketLease {
    /// Takes `tokens` under a lease of `lease`. Returns the answer and, when a grant
    /// should be asked for now, how many tokens to ask for (the caller sends the
    /// request and sets nothing else: `fetching` is set here).
    pub fn take(&mut self, tokens: u64, lease: u64, now_ms: u64) -> (TakeResult, Option<u64>) {
        self.used_ms = now_ms;
        let hold = lease.div_ceil(2) as i64;
        let lend = (lease / 2) as i64;
        let n = tokens.min(i64::MAX as u64) as i64;
        let exhausted = now_ms < self.exhausted_until_ms;
        let allowed = if self.balance >= n || (!exhausted && self.balance - n >= -lend) {
            self.balance -= n;
            true
        } else {
            false
        };
        let want = if !self.fetching && !exhausted && self.balance <= hold / 2 {
            self.fetching = true;
            Some((hold - self.balance).max(1) as u64)
        } else {
            None
        };
        let result = TakeResult {
            allowed,
            remaining: self.remaining + self.balance.max(0) as u64,
            retry_after_ms: if allowed {
                0
            } else {
                self.exhausted_until_ms.saturating_sub(now_ms).max(1)
            },
            reset_ms: self.full_at_ms.saturating_sub(now_ms),
        };
        (result, want)
    }

    /// Redis granted `granted` of the `wanted` tokens, had `remaining` left, would
    /// have one more in `retry_after_ms` (when it ran short) and is full in `reset_ms`.
    /// A grant short of the ask marks the bucket empty until `retry_after_ms`.
    pub fn granted(
        &mut self,
        wanted: u64,
        granted: u64,
        remaining: u64,
        retry_after_ms: u64,
        reset_ms: u64,
        now_ms: u64,
    ) {
        self.fetching = false;
        self.balance += granted as i64;
        self.remaining = remaining;
        self.full_at_ms = now_ms + reset_ms;
        if granted < wanted {
            self.exhausted_until_ms = now_ms + retry_after_ms.max(1);
        }
    }

    /// Asking failed; the next take may ask again.
    pub fn failed(&mut self) {
        self.fetching = false;
    }
}

/// A global counter on one proxy: Redis's last value plus what this proxy added since.
#[derive(Debug, Default)]
pub struct CounterLease {
    /// Redis's value at its last answer.
    known: i64,
    /// When Redis's counter expires (its window ends), as of the last answer.
    expires_at_ms: Option<u64>,
    /// Added here and being sent to Redis.
    sending: i64,
    /// Added here since, not yet sent.
    pending: i64,
    /// When Redis last answered.
    synced_ms: u64,
    /// An update or read is in flight.
    pub flushing: bool,
    /// Last use, for forgetting idle counters.
    pub used_ms: u64,
}

/// What to send Redis for a counter: `delta` to add (0: only read), and the TTL a new
/// counter gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flush {
    pub delta: i64,
    pub ttl_ms: Option<u64>,
}

/// How old a counter's view may get before a read asks Redis again.
pub const COUNTER_REFRESH_MS: u64 = 50;

impl CounterLease {
    fn expire(&mut self, now_ms: u64) {
        if self.expires_at_ms.is_some_and(|at| at <= now_ms) {
            self.known = 0;
            self.expires_at_ms = None;
        }
    }

    fn value(&self) -> CounterValue {
        CounterValue {
            value: self
                .known
                .saturating_add(self.sending)
                .saturating_add(self.pending),
            expires_at_ms: self.expires_at_ms,
        }
    }

    /// Adds `delta`; returns the counter as this proxy sees it and what to send.
    pub fn add(
        &mut self,
        delta: i64,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> (CounterValue, Option<Flush>) {
        let value = self.local_add(delta, ttl_ms, now_ms);
        (value, self.next_flush(ttl_ms, now_ms))
    }

    /// The counter as this proxy sees it, and a read to send when its view is stale.
    pub fn get(&mut self, now_ms: u64) -> (CounterValue, Option<Flush>) {
        let value = self.peek(now_ms);
        (value, self.next_flush(None, now_ms))
    }

    fn next_flush(&mut self, ttl_ms: Option<u64>, now_ms: u64) -> Option<Flush> {
        if self.flushing {
            return None;
        }
        if self.pending == 0 && now_ms.saturating_sub(self.synced_ms) < COUNTER_REFRESH_MS {
            return None;
        }
        self.flushing = true;
        self.sending = std::mem::take(&mut self.pending);
        Some(Flush {
            delta: self.sending,
            ttl_ms,
        })
    }

    /// Redis answered `value` with `ttl_ms` left; returns the next flush, when more was
    /// added meanwhile.
    pub fn synced(&mut self, value: i64, ttl_ms: Option<u64>, now_ms: u64) -> Option<Flush> {
        self.flushing = false;
        self.sending = 0;
        self.known = value;
        self.expires_at_ms = ttl_ms.map(|t| now_ms + t);
        self.synced_ms = now_ms;
        if self.pending != 0 {
            self.next_flush(ttl_ms, now_ms)
        } else {
            None
        }
    }

    /// Sending failed: what was being sent is pending again.
    pub fn failed(&mut self) {
        self.flushing = false;
        self.pending = self
            .pending
            .saturating_add(std::mem::take(&mut self.sending));
    }

    /// The counter as this proxy sees it, sending nothing (the `local` fallback's read
    /// while Redis is down: a flush started then would never be answered).
    pub fn peek(&mut self, now_ms: u64) -> CounterValue {
        self.used_ms = now_ms;
        self.expire(now_ms);
        self.value()
    }

    /// Adds `delta` here, sending nothing (the `local` fallback while Redis is down;
    /// [`CounterLease::add`] sends it).
    pub fn local_add(&mut self, delta: i64, ttl_ms: Option<u64>, now_ms: u64) -> CounterValue {
        self.peek(now_ms);
        if self.expires_at_ms.is_none() {
            self.expires_at_ms = ttl_ms.map(|t| now_ms + t);
        }
        self.pending = self.pending.saturating_add(delta);
        self.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grants from a simulated Redis bucket with `tokens` left and no refill.
    fn serve(lease: &mut BucketLease, want: u64, tokens: &mut u64, now: u64) {
        let granted = want.min(*tokens);
        *tokens -= granted;
        lease.granted(want, granted, *tokens, 1000, 1000, now);
    }

    #[test]
    fn proxies_together_allow_at_most_the_bucket_plus_their_leases() {
        for lease_size in [1, 2, 10, 33] {
            let mut redis = 100u64;
            let mut proxies: Vec<BucketLease> = (0..3).map(|_| BucketLease::default()).collect();
            let mut pending: Vec<Option<u64>> = vec![None; 3];
            let mut allowed = 0u64;
            // Interleaved takes; each proxy's grant arrives one step after it asked.
            for step in 0..2000u64 {
                let p = (step % 3) as usize;
                if let Some(want) = pending[p].take() {
                    serve(&mut proxies[p], want, &mut redis, step);
                }
                let (r, want) = proxies[p].take(1, lease_size, step);
                allowed += r.allowed as u64;
                pending[p] = want;
            }
            assert!(
                allowed <= 100 + 3 * lease_size,
                "lease {lease_size}: {allowed} allowed"
            );
            assert!(
                allowed >= 100 - 3 * lease_size,
                "lease {lease_size}: {allowed}"
            );
        }
    }

    #[test]
    fn a_take_asks_redis_only_once_per_half_lease() {
        let mut lease = BucketLease::default();
        let mut redis = u64::MAX / 2;
        let mut asks = 0;
        for now in 0..1000 {
            let (r, want) = lease.take(1, 100, now);
            assert!(r.allowed);
            if let Some(w) = want {
                asks += 1;
                serve(&mut lease, w, &mut redis, now);
            }
        }
        assert!(asks <= 1000 / 25 + 1, "{asks} round trips for 1000 takes");
    }

    #[test]
    fn an_empty_bucket_refuses_without_lending_or_asking_until_it_refills() {
        let mut lease = BucketLease::default();
        let (r, want) = lease.take(1, 10, 0);
        assert!(r.allowed, "lent before the first grant");
        lease.granted(want.unwrap(), 0, 0, 200, 5000, 0);
        let mut refused = 0;
        for now in 1..100 {
            let (r, want) = lease.take(1, 10, now);
            assert!(want.is_none(), "asked while Redis is known empty");
            if !r.allowed {
                refused += 1;
                assert!(r.retry_after_ms > 0 && r.retry_after_ms <= 200);
            }
        }
        assert_eq!(refused, 99);
        let (_, want) = lease.take(1, 10, 200);
        assert!(want.is_some(), "asks again once Redis has a token");
    }

    #[test]
    fn counter_adds_are_batched_while_one_update_is_in_flight() {
        let mut c = CounterLease::default();
        let (v, f) = c.add(1, Some(1000), 0);
        assert_eq!(v.value, 1);
        assert_eq!(
            f,
            Some(Flush {
                delta: 1,
                ttl_ms: Some(1000)
            })
        );
        for _ in 0..9 {
            assert!(c.add(1, Some(1000), 1).1.is_none());
        }
        // Another proxy added 5 meanwhile: Redis answers 6 for the first update.
        let next = c.synced(6, Some(999), 2);
        assert_eq!(
            next,
            Some(Flush {
                delta: 9,
                ttl_ms: Some(999)
            })
        );
        assert_eq!(c.get(3).0.value, 15);
        c.failed();
        assert_eq!(
            c.get(3).0.value,
            15,
            "a failed update is kept to send again"
        );
    }
}
