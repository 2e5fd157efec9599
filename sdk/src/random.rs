//! Randomness. A filter has no entropy of its own: the host provides it.
//!
//! [`u64`], [`f64`], [`chance`], [`below`] and [`bytes`] draw from a fast generator
//! (xoshiro256\*\*) inside the filter, seeded once per instance from the host's entropy,
//! so they cost no call into the proxy: right for sampling, load balancing, jitter and
//! request ids. For secrets (keys, nonces) use [`secure_bytes`], which asks the host's
//! cryptographically secure source every time.
//!
//! Under the native test harness the host's source is seeded and repeatable; see
//! [`TestHost::seed`](crate::testing::TestHost::seed).

use std::cell::Cell;

use crate::backend::host;

thread_local! {
    static STATE: Cell<Option<[u64; 4]>> = const { Cell::new(None) };
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    /// Draws made on this thread, so a recording for `weft filter test` can say which
    /// calls depended on chance.
    static DRAWS: Cell<u64> = const { Cell::new(0) };
}

/// Draws made on this thread so far (native builds only).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn draws() -> u64 {
    DRAWS.with(Cell::get)
}

fn count_draw() {
    #[cfg(not(target_arch = "wasm32"))]
    DRAWS.with(|d| d.set(d.get() + 1));
}

fn seeded() -> [u64; 4] {
    let mut s = [
        host::random_u64(),
        host::random_u64(),
        host::random_u64(),
        host::random_u64(),
    ];
    if s == [0; 4] {
        s[0] = 1; // xoshiro must not start all-zero
    }
    s
}

/// Forgets the generator's state, so the next draw seeds again from the host (the
/// native test harness does this when it switches hosts).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn reseed() {
    STATE.with(|c| c.set(None));
}

/// A uniformly random 64-bit number.
pub fn u64() -> u64 {
    count_draw();
    STATE.with(|cell| {
        let mut s = cell.get().unwrap_or_else(seeded);
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        cell.set(Some(s));
        result
    })
}

/// `len` random bytes from the fast generator.
pub fn bytes(len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    while out.len() < len as usize {
        out.extend_from_slice(&u64().to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

/// `len` bytes from the host's cryptographically secure source (one call into the
/// proxy each time).
pub fn secure_bytes(len: u32) -> Vec<u8> {
    count_draw();
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn draws_are_spread_and_bounded() {
        reseed();
        let n = 20_000;
        let hits = (0..n).filter(|_| chance(10.0)).count();
        assert!((1_600..2_400).contains(&hits), "10% of {n}: {hits}");
        assert!((0..1000).all(|_| below(7) < 7));
        assert!((0..1000).map(|_| f64()).all(|x| (0.0..1.0).contains(&x)));
        assert_eq!(bytes(13).len(), 13);
        assert!(!chance(0.0) && chance(100.0));
    }
}
