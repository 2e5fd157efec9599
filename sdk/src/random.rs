//! Randomness from the host; a filter has no entropy of its own.
//!
//! Under the native test harness the sequence is seeded and repeatable; see
//! [`TestHost::seed`](crate::testing::TestHost::seed).

use crate::backend::host;

/// A uniformly random 64-bit number.
pub fn u64() -> u64 {
    host::random_u64()
}

/// `len` random bytes.
pub fn bytes(len: u32) -> Vec<u8> {
    host::random_fill(len)
}

/// A uniformly random number in `[0, 1)`.
pub fn f64() -> f64 {
    // 53 random bits make every representable value in [0, 1) equally spaced.
    (u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// True with the given probability in percent (`chance(10.0)` is true one time in ten).
/// 0 or less is never, 100 or more is always.
pub fn chance(percent: f64) -> bool {
    if percent <= 0.0 {
        return false;
    }
    if percent >= 100.0 {
        return true;
    }
    f64() * 100.0 < percent
}

/// A uniformly random number in `[0, n)`; 0 when `n` is 0.
pub fn below(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    // Widening multiply: unbiased enough for load balancing and sampling.
    ((u64() as u128 * n as u128) >> 64) as u64
}
