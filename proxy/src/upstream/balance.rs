//! Load balancing: which endpoint of a cluster an attempt goes to. One [`Balancer`] per
//! cluster, built when the snapshot is, holding the cluster's endpoints (each with its
//! in-flight count and latency estimate, [`Endpoint`]) and whatever table its policy
//! precomputes, so that a pick is a few loads:
//!
//! - `round_robin`: a smooth weighted schedule (nginx's), walked by one atomic counter.
//! - `random`: uniform, or by weight through cumulative weights.
//! - `least_request`: power of two choices over in-flight requests, each endpoint's
//!   count scaled by its latency (an EWMA of attempt times) and divided by its weight,
//!   as Linkerd's P2C + EWMA balancer does.
//! - `ring_hash`: a hash ring with points per endpoint in proportion to its weight; a
//!   key goes to the first point at or after its hash.
//! - `maglev`: Google's Maglev lookup table (65,537 entries), filled in turns weighted
//!   by the endpoints' weights; a key goes to the entry at its hash.
//!
//! The hashing policies take a key per request ([`hash_key`]); a request without one
//! goes to a random endpoint (as Envoy does).
//!
//! An endpoint that failed its health checks or was ejected as an outlier is
//! *unavailable* ([`Endpoint::state`]). While every endpoint is available (the common
//! case, one relaxed load tells) a pick is the policy's; otherwise a pick that lands on
//! an unavailable endpoint moves on by the policy's own rule: the schedule's next turn,
//! another draw, the ring's next point, or another probe of the Maglev table, so that
//! keys on available endpoints stay where they are. When no endpoint is available the
//! policy's pick stands (panic mode, as Envoy's) and the pick says so.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::model::LbPolicy;

/// One endpoint of a cluster and what the balancer knows of it.
#[derive(Debug)]
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its share of traffic relative to the cluster's other endpoints (at least 1).
    pub weight: u32,
    /// Attempts sent to it that have not ended.
    pub in_flight: AtomicU32,
    /// An exponentially weighted moving average of its attempt times, in microseconds
    /// (0 until the first attempt ends).
    pub ewma_micros: AtomicU64,
    /// Why it takes no new requests: [`FAILED_CHECK`] and [`EJECTED`] bits (0:
    /// available). Changed only through [`Balancer::mark`], which keeps count.
    pub state: AtomicU8,
    /// Active health checking's count of results in a row.
    pub checks: super::health::CheckRun,
    /// Outlier detection's counts of failures in a row and ejection.
    pub outlier: super::outlier::OutlierState,
}

/// [`Endpoint::state`]: failed its active health checks.
pub const FAILED_CHECK: u8 = 1;
/// [`Endpoint::state`]: ejected by outlier detection.
pub const EJECTED: u8 = 2;

impl Endpoint {
    /// An endpoint with nothing measured yet.
    pub fn new(addr: SocketAddr, weight: u32) -> Endpoint {
        Endpoint {
            addr,
            weight: weight.max(1),
            in_flight: AtomicU32::new(0),
            ewma_micros: AtomicU64::new(0),
            state: AtomicU8::new(0),
            checks: Default::default(),
            outlier: Default::default(),
        }
    }

    /// Whether it takes new requests (neither failing checks nor ejected).
    pub fn available(&self) -> bool {
        self.state.load(Ordering::Relaxed) == 0
    }

    /// What an admin page shows: `healthy`, `unhealthy` (failed its checks), `ejected`,
    /// or both of the last.
    pub fn health(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            0 => "healthy",
            FAILED_CHECK => "unhealthy",
            EJECTED => "ejected",
            _ => "unhealthy,ejected",
        }
    }

    /// Takes what was learnt about the same endpoint in a previous configuration, so
    /// that a reload forgets neither latency nor health: its state bits (only those
    /// `keep` names: a check or detection since removed no longer holds it back) and
    /// its counts.
    pub fn inherit(&self, old: &Endpoint, keep: u8) {
        self.ewma_micros
            .store(old.ewma_micros.load(Ordering::Relaxed), Ordering::Relaxed);
        self.state
            .store(old.state.load(Ordering::Relaxed) & keep, Ordering::Relaxed);
        self.checks.inherit(&old.checks);
        self.outlier.inherit(&old.outlier);
    }

    /// Folds an attempt's time into the latency estimate (a fifth of each new sample;
    /// racing updates may lose one, which an average can afford).
    pub fn observe(&self, took: Duration) {
        let sample = (took.as_micros() as u64).max(1);
        let old = self.ewma_micros.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 4 + sample) / 5
        };
        self.ewma_micros.store(new, Ordering::Relaxed);
    }
}

/// An attempt's hold on its endpoint: counted in flight until dropped. (A borrow, not
/// a reference count: the attempt holds its cluster for as long.)
#[derive(Debug)]
pub struct Picked<'a> {
    /// The endpoint chosen.
    pub endpoint: &'a Endpoint,
    /// No endpoint was available, and this one was chosen regardless (panic mode).
    pub panic: bool,
}

impl Picked<'_> {
    fn new(endpoint: &Endpoint, panic: bool) -> Picked<'_> {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Picked { endpoint, panic }
    }

    /// The endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr
    }
}

impl Drop for Picked<'_> {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The size of a Maglev table: a prime, so that every skip visits every entry.
const MAGLEV_SIZE: usize = 65_537;
/// Ring points per unit of weight.
const RING_POINTS: u32 = 128;

enum Table {
    RoundRobin {
        schedule: Vec<u32>,
        next: AtomicUsize,
    },
    Random {
        cumulative: Option<Vec<u64>>,
    },
    LeastRequest,
    Ring(Ring),
    Maglev {
        table: Vec<u32>,
    },
}

/// A cluster's endpoints and how one is chosen.
pub struct Balancer {
    endpoints: Vec<Arc<Endpoint>>,
    policy: LbPolicy,
    table: Table,
    /// Endpoints whose state is not 0.
    unavailable: AtomicU32,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("policy", &self.policy)
            .field("endpoints", &self.endpoints.len())
            .finish()
    }
}

impl Balancer {
    /// A balancer over `endpoints` (address and weight) with `policy`.
    pub fn new(policy: LbPolicy, endpoints: &[(SocketAddr, u32)]) -> Balancer {
        let endpoints: Vec<Arc<Endpoint>> = endpoints
            .iter()
            .map(|&(addr, w)| Arc::new(Endpoint::new(addr, w)))
            .collect();
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let table = match policy {
            LbPolicy::RoundRobin => Table::RoundRobin {
                schedule: smooth_schedule(&weights),
                next: AtomicUsize::new(fastrand::usize(..)),
            },
            LbPolicy::Random => Table::Random {
                cumulative: (!weights.iter().all(|w| *w == weights[0])).then(|| {
                    weights
                        .iter()
                        .scan(0u64, |sum, w| {
                            *sum += u64::from(*w);
                            Some(*sum)
                        })
                        .collect()
                }),
            },
            LbPolicy::LeastRequest => Table::LeastRequest,
            LbPolicy::RingHash => Table::Ring(Ring::new(&endpoints)),
            LbPolicy::Maglev => Table::Maglev {
                table: maglev(&endpoints),
            },
        };
        Balancer {
            endpoints,
            policy,
            table,
            unavailable: AtomicU32::new(0),
        }
    }

    /// Sets (`on`) or clears state bit `bit` of `e` (one of this balancer's endpoints),
    /// keeping count of unavailable endpoints. Returns whether the bit changed.
    pub fn mark(&self, e: &Endpoint, bit: u8, on: bool) -> bool {
        let before = if on {
            e.state.fetch_or(bit, Ordering::Relaxed)
        } else {
            e.state.fetch_and(!bit, Ordering::Relaxed)
        };
        let after = if on { before | bit } else { before & !bit };
        match (before == 0, after == 0) {
            (true, false) => {
                self.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            (false, true) => {
                self.unavailable.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        before != after
    }

    /// Recounts unavailable endpoints after their states were set directly (as
    /// [`Endpoint::inherit`] does, before the balancer is in use).
    pub fn recount(&self) {
        let n = self.endpoints.iter().filter(|e| !e.available()).count();
        self.unavailable.store(n as u32, Ordering::Relaxed);
    }

    /// Endpoints with `bit` set.
    pub fn count(&self, bit: u8) -> usize {
        self.endpoints
            .iter()
            .filter(|e| e.state.load(Ordering::Relaxed) & bit != 0)
            .count()
    }

    /// The endpoints, in configuration order.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// The policy.
    pub fn policy(&self) -> LbPolicy {
        self.policy
    }

    /// Chooses the endpoint for an attempt; `key` is the request's hash key (used by
    /// `ring_hash` and `maglev` only). `None` when the cluster has no endpoints.
    pub fn pick(&self, key: Option<u64>) -> Option<Picked<'_>> {
        let i = self.pick_index(key)?;
        if self.unavailable.load(Ordering::Relaxed) == 0 {
            return Some(Picked::new(&self.endpoints[i], false));
        }
        Some(self.pick_available(i, key))
    }

    /// A pick when some endpoints are unavailable: `first` if it is available, else
    /// the policy's next choice that is; `first` in panic mode when none is.
    #[cold]
    fn pick_available(&self, first: usize, key: Option<u64>) -> Picked<'_> {
        let n = self.endpoints.len();
        let ok = |i: usize| self.endpoints[i].available();
        if ok(first) {
            return Picked::new(&self.endpoints[first], false);
        }
        if self.unavailable.load(Ordering::Relaxed) as usize >= n
            || !self.endpoints.iter().any(|e| e.available())
        {
            return Picked::new(&self.endpoints[first], true);
        }
        let found = match (&self.table, key) {
            (Table::RoundRobin { schedule, next }, _) => (0..schedule.len()).find_map(|_| {
                let i = next.fetch_add(1, Ordering::Relaxed);
                Some(schedule[i % schedule.len()] as usize).filter(|i| ok(*i))
            }),
            (Table::Ring(ring), Some(h)) => ring.first_from(h, ok),
            (Table::Maglev { table }, Some(h)) => (1..=32u64).find_map(|k| {
                let i = table[(mix(h ^ k) % MAGLEV_SIZE as u64) as usize] as usize;
                Some(i).filter(|i| ok(*i))
            }),
            // Random, least request, and hashing without a key: draw again.
            _ => (0..8).find_map(|_| self.pick_index(key).filter(|i| ok(*i))),
        };
        // Draws can miss when few are available: the first available after a random
        // start is still a fair choice.
        let i = found.unwrap_or_else(|| {
            let start = fastrand::usize(..n);
            (0..n)
                .map(|k| (start + k) % n)
                .find(|i| ok(*i))
                .unwrap_or(first)
        });
        Picked::new(&self.endpoints[i], false)
    }

    fn pick_index(&self, key: Option<u64>) -> Option<usize> {
        let n = self.endpoints.len();
        if n <= 1 {
            return (n == 1).then_some(0);
        }
        Some(match &self.table {
            Table::RoundRobin { schedule, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                schedule[i % schedule.len()] as usize
            }
            Table::Random { cumulative } => random(n, cumulative.as_deref()),
            Table::LeastRequest => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                if self.load(b) < self.load(a) {
                    b
                } else {
                    a
                }
            }
            Table::Ring(ring) => match key {
                Some(h) => ring.owner(h),
                None => fastrand::usize(..n),
            },
            Table::Maglev { table } => match key {
                Some(h) => table[(h % MAGLEV_SIZE as u64) as usize] as usize,
                None => fastrand::usize(..n),
            },
        })
    }

    /// An endpoint's load for `least_request`: requests in flight (plus the one being
    /// placed) times its latency, per unit of weight. Unmeasured endpoints count as
    /// fast as the fastest can be (1 µs), so new ones get tried.
    fn load(&self, i: usize) -> u64 {
        let e = &self.endpoints[i];
        let in_flight = u64::from(e.in_flight.load(Ordering::Relaxed)) + 1;
        let latency = e.ewma_micros.load(Ordering::Relaxed).max(1);
        in_flight.saturating_mul(latency) / u64::from(e.weight)
    }
}

fn random(n: usize, cumulative: Option<&[u64]>) -> usize {
    match cumulative {
        None => fastrand::usize(..n),
        Some(c) => {
            let r = fastrand::u64(..c[c.len() - 1]);
            c.partition_point(|sum| *sum <= r)
        }
    }
}

/// Nginx's smooth weighted round robin, one full cycle: each endpoint appears
/// `weight` times, spread out rather than in runs. Weights are scaled down first if
/// the cycle would pass 65,536 entries.
fn smooth_schedule(weights: &[u32]) -> Vec<u32> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    let scale = total.div_ceil(65_536).max(1);
    let weights: Vec<i64> = weights
        .iter()
        .map(|w| (u64::from(*w) / scale).max(1) as i64)
        .collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            best as u32
        })
        .collect()
}

/// A stable 64-bit hash (FNV-1a, then a SplitMix64 finish so that nearby inputs land
/// far apart): the same on every proxy and every build.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn endpoint_hash(e: &Endpoint, salt: u64) -> u64 {
    mix(hash_bytes(e.addr.to_string().as_bytes()) ^ mix(salt))
}

/// A hash ring: sorted point hashes, who owns each, and an index from a hash's top
/// bits to the first point of that range, so a lookup reads a bucket or two instead of
/// binary-searching tens of thousands of points.
struct Ring {
    hashes: Vec<u64>,
    owners: Vec<u32>,
    /// `index[b]`: the first point whose hash's top bits are `b` or more.
    index: Vec<u32>,
    shift: u32,
}

impl Ring {
    fn new(endpoints: &[Arc<Endpoint>]) -> Ring {
        let mut points: Vec<(u64, u32)> = endpoints
            .iter()
            .enumerate()
            .flat_map(|(i, e)| {
                (0..RING_POINTS * e.weight).map(move |p| (endpoint_hash(e, u64::from(p)), i as u32))
            })
            .collect();
        points.sort_unstable();
        // About one point per bucket.
        let bits = (usize::BITS - points.len().leading_zeros()).clamp(4, 20);
        let shift = 64 - bits;
        let mut index = Vec::with_capacity(1 << bits);
        let mut at = 0;
        for b in 0..(1u64 << bits) {
            while at < points.len() && (points[at].0 >> shift) < b {
                at += 1;
            }
            index.push(at as u32);
        }
        Ring {
            hashes: points.iter().map(|p| p.0).collect(),
            owners: points.iter().map(|p| p.1).collect(),
            index,
            shift,
        }
    }

    /// The first point at or after `h` (wrapping around).
    fn point(&self, h: u64) -> usize {
        let mut at = self.index[(h >> self.shift) as usize] as usize;
        while at < self.hashes.len() && self.hashes[at] < h {
            at += 1;
        }
        if at == self.hashes.len() {
            0
        } else {
            at
        }
    }

    /// The endpoint owning the first point at or after `h`.
    fn owner(&self, h: u64) -> usize {
        self.owners[self.point(h)] as usize
    }

    /// The first endpoint `ok` takes, walking the ring from `h`.
    fn first_from(&self, h: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let start = self.point(h);
        let n = self.owners.len();
        (0..n)
            .map(|k| self.owners[(start + k) % n] as usize)
            .find(|i| ok(*i))
    }
}

fn maglev(endpoints: &[Arc<Endpoint>]) -> Vec<u32> {
    const EMPTY: u32 = u32::MAX;
    let m = MAGLEV_SIZE as u64;
    let perms: Vec<(u64, u64)> = endpoints
        .iter()
        .map(|e| {
            let offset = endpoint_hash(e, 0x6d61_676c) % m;
            let skip = endpoint_hash(e, 0x736b_6970) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; endpoints.len()];
    let mut table = vec![EMPTY; MAGLEV_SIZE];
    let mut filled = 0;
    'fill: loop {
        for (i, e) in endpoints.iter().enumerate() {
            // A heavier endpoint takes more entries per turn.
            for _ in 0..e.weight {
                let (offset, skip) = perms[i];
                loop {
                    let c = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if table[c] == EMPTY {
                        table[c] = i as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == MAGLEV_SIZE {
                    break 'fill;
                }
            }
        }
    }
    table
}

/// The key a request is hashed on: a header's value, a cookie's value, or the client's
/// address, as the cluster's `hash_on` says; a filter's `hash_key` request property
/// takes precedence. `None`: nothing to hash on (the request goes to a random endpoint).
pub fn hash_key(
    on: Option<&crate::config::model::HashOn>,
    headers: &http::HeaderMap,
    client: SocketAddr,
    property: Option<&str>,
) -> Option<u64> {
    if let Some(p) = property {
        return Some(hash_bytes(p.as_bytes()));
    }
    let on = on?;
    if let Some(name) = &on.header {
        return headers.get(name.as_str()).map(|v| hash_bytes(v.as_bytes()));
    }
    if let Some(name) = &on.cookie {
        return headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| hash_bytes(v.as_bytes()));
    }
    if on.client_address {
        return Some(match client.ip() {
            std::net::IpAddr::V4(a) => hash_bytes(&a.octets()),
            std::net::IpAddr::V6(a) => hash_bytes(&a.octets()),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn addrs(n: u16) -> Vec<(SocketAddr, u32)> {
        (0..n)
            .map(|i| {
                (
                    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 8080)),
                    1,
                )
            })
            .collect()
    }

    fn counts(b: &Balancer, picks: usize, key: impl Fn(usize) -> Option<u64>) -> Vec<usize> {
        let mut seen = HashMap::new();
        for i in 0..picks {
            *seen.entry(b.pick(key(i)).unwrap().addr()).or_insert(0) += 1;
        }
        b.endpoints()
            .iter()
            .map(|e| seen.get(&e.addr).copied().unwrap_or(0))
            .collect()
    }

    #[test]
    fn round_robin_follows_the_weights_and_spreads_them() {
        let mut eps = addrs(3);
        eps[0].1 = 5;
        eps[1].1 = 1;
        eps[2].1 = 1;
        let b = Balancer::new(LbPolicy::RoundRobin, &eps);
        assert_eq!(counts(&b, 700, |_| None), vec![500, 100, 100]);
        // Smooth: the heavy endpoint never takes more than 3 in a row (a, a, b, a, c, a, a).
        let order: Vec<u32> = smooth_schedule(&[5, 1, 1]);
        assert_eq!(order, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn random_follows_the_weights() {
        let mut eps = addrs(2);
        eps[0].1 = 3;
        let b = Balancer::new(LbPolicy::Random, &eps);
        let c = counts(&b, 40_000, |_| None);
        assert!((29_000..31_000).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn least_request_avoids_the_slow_and_the_busy() {
        let b = Balancer::new(LbPolicy::LeastRequest, &addrs(3));
        b.endpoints()[0].observe(Duration::from_millis(10));
        b.endpoints()[1].observe(Duration::from_millis(1));
        b.endpoints()[2].observe(Duration::from_millis(1));
        let c = counts(&b, 3000, |_| None);
        // The 10x slower endpoint loses every comparison; the others share.
        assert_eq!(c[0], 0, "{c:?}");
        assert!(c[1] > 1200 && c[2] > 1200, "{c:?}");
        // Busy: with many in flight, even a fast endpoint loses.
        let held: Vec<Picked> = (0..20)
            .map(|_| Picked::new(&b.endpoints()[1], false))
            .collect();
        let c = counts(&b, 3000, |_| None);
        assert!(c[1] < c[2] / 5, "{c:?}");
        drop(held);
        assert_eq!(b.endpoints()[1].in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn unavailable_endpoints_are_skipped_by_every_policy_until_none_is_left() {
        let policies = [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::LeastRequest,
            LbPolicy::RingHash,
            LbPolicy::Maglev,
        ];
        for policy in policies {
            let b = Balancer::new(policy, &addrs(5));
            let keys: Vec<u64> = (0..2000u32).map(|k| hash_bytes(&k.to_le_bytes())).collect();
            let home: Vec<usize> = keys
                .iter()
                .map(|k| b.pick_index(Some(*k)).unwrap())
                .collect();
            assert!(b.mark(&b.endpoints()[2], FAILED_CHECK, true));
            assert!(
                !b.mark(&b.endpoints()[2], FAILED_CHECK, true),
                "already set"
            );
            b.mark(&b.endpoints()[4], EJECTED, true);
            let mut moved = 0;
            for (k, home) in keys.iter().zip(&home) {
                let p = b.pick(Some(*k)).unwrap();
                assert!(!p.panic);
                let i = b
                    .endpoints()
                    .iter()
                    .position(|e| e.addr == p.addr())
                    .unwrap();
                assert!(i != 2 && i != 4, "{policy:?} picked unavailable {i}");
                if policy.hashes() && i != *home {
                    moved += 1;
                    assert!(
                        *home == 2 || *home == 4,
                        "{policy:?} moved a key it need not"
                    );
                }
            }
            if policy.hashes() {
                assert!(moved > 0);
            }
            // None available: panic mode spreads over all, and says so.
            for i in [0, 1, 3] {
                b.mark(&b.endpoints()[i], FAILED_CHECK, true);
            }
            let p = b.pick(Some(keys[0])).unwrap();
            assert!(p.panic, "{policy:?}");
            drop(p);
            // Back: the key goes home again.
            for i in 0..5 {
                b.mark(&b.endpoints()[i], FAILED_CHECK, false);
            }
            b.mark(&b.endpoints()[4], EJECTED, false);
            assert_eq!(b.unavailable.load(Ordering::Relaxed), 0);
            if policy.hashes() {
                assert_eq!(b.pick_index(Some(keys[0])), Some(home[0]));
            }
        }
    }

    #[test]
    fn hashing_policies_keep_keys_and_move_about_one_nth_when_an_endpoint_joins() {
        for policy in [LbPolicy::RingHash, LbPolicy::Maglev] {
            let before = Balancer::new(policy, &addrs(10));
            let after = Balancer::new(policy, &addrs(11));
            let keys: Vec<u64> = (0..20_000u32)
                .map(|k| hash_bytes(format!("user-{k}").as_bytes()))
                .collect();
            let mut moved = 0;
            for &k in &keys {
                let a = before.pick(Some(k)).unwrap().addr();
                assert_eq!(
                    before.pick(Some(k)).unwrap().addr(),
                    a,
                    "{policy:?} is stable"
                );
                if after.pick(Some(k)).unwrap().addr() != a {
                    moved += 1;
                }
            }
            // Ideal: 1/11 of the keys (1,818); allow for the hashes' spread.
            assert!((1_000..3_000).contains(&moved), "{policy:?} moved {moved}");
            // The ring's index finds what a search of all points finds.
            if let Table::Ring(ring) = &before.table {
                for &k in keys.iter().take(2000) {
                    let at = ring.hashes.partition_point(|p| *p < k);
                    let owner = ring.owners[at % ring.hashes.len()] as usize;
                    assert_eq!(ring.owner(k), owner);
                }
                assert_eq!(ring.owner(u64::MAX), ring.owners[0] as usize);
                assert_eq!(ring.owner(0), ring.owners[0] as usize);
            }
            // Balanced: every endpoint holds 10% +- 4%.
            let c = counts(&before, keys.len(), |i| Some(keys[i]));
            assert!(
                c.iter().all(|n| (1_200..2_800).contains(n)),
                "{policy:?} {c:?}"
            );
        }
    }

    #[test]
    fn hash_keys_come_from_the_property_header_cookie_or_client() {
        use crate::config::model::HashOn;
        let mut h = http::HeaderMap::new();
        h.insert("x-user", "alice".parse().unwrap());
        h.insert("cookie", "a=1; session=s42; b=2".parse().unwrap());
        let client: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let header = HashOn {
            header: Some("x-user".into()),
            ..HashOn::default()
        };
        let cookie = HashOn {
            cookie: Some("session".into()),
            ..HashOn::default()
        };
        let by_client = HashOn {
            client_address: true,
            ..HashOn::default()
        };
        assert_eq!(
            hash_key(Some(&header), &h, client, None),
            Some(hash_bytes(b"alice"))
        );
        assert_eq!(
            hash_key(Some(&cookie), &h, client, None),
            Some(hash_bytes(b"s42"))
        );
        assert_eq!(
            hash_key(Some(&by_client), &h, client, None),
            hash_key(Some(&by_client), &h, "192.0.2.7:1".parse().unwrap(), None)
        );
        assert_eq!(
            hash_key(Some(&header), &h, client, Some("bob")),
            Some(hash_bytes(b"bob"))
        );
        assert_eq!(
            hash_key(Some(&header), &http::HeaderMap::new(), client, None),
            None
        );
    }
}
