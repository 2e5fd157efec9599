//! The `global` scope of filters' shared state, backed by Redis
//! (`shared_state.global`).
//!
//! Workers never wait on Redis. A bucket take or counter update is answered at once
//! from this proxy's lease (see [`lease`]); when a lease runs low, a grant is asked
//! for on the `weft-global` thread, which owns every Redis connection. Only
//! `global-kv` calls wait for Redis, and they wait asynchronously (the filter is on a
//! fiber), never longer than the configured timeout. While Redis is unreachable or
//! slow, every operation answers as `on_error` says, and a probe every 250 ms notices
//! when it is back.

pub mod lease;
mod redis;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use weft_shared_state::{Bucket, CounterValue, TakeResult};

use self::lease::{BucketLease, CounterLease, Flush};
use self::redis::{Failure, Pool};
use super::filter_clock::FilterClock;
use super::services::SharedStore;
use crate::config::shared_state::{CheckedGlobal, OnError};
use crate::metrics::{Counter, Gauge, Registry};

/// How often an unreachable backend is tried again.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Leases and counters unused this long are forgotten.
const IDLE_MS: u64 = 60_000;
const SHARDS: usize = 16;

/// Marks the keys of the `local` fallback, apart from the filter's local keys.
pub const FALLBACK: &str = "\0global\0";

/// A `global-kv` operation.
#[derive(Debug)]
pub enum KvOp {
    Get(String),
    Set(String, Vec<u8>, Option<u64>),
    SetIfAbsent(String, Vec<u8>, Option<u64>),
    Delete(String),
}

/// Redis did not answer a `global-kv` operation (down, slow or refusing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// A `global-kv` answer.
#[derive(Debug)]
pub enum KvAnswer {
    Value(Option<Vec<u8>>),
    Done,
    Changed(bool),
}

enum Job {
    Take {
        key: String,
        bucket: Bucket,
        want: u64,
    },
    Count {
        key: String,
        flush: Flush,
    },
    Kv {
        op: KvOp,
        reply: oneshot::Sender<Result<KvAnswer, Unavailable>>,
    },
}

struct Stats {
    round_trips: Arc<Counter>,
    failures_timeout: Arc<Counter>,
    failures_error: Arc<Counter>,
    fallbacks: Arc<Counter>,
    down_total: Arc<Counter>,
    up_total: Arc<Counter>,
    up: Arc<Gauge>,
}

impl Stats {
    fn new(m: &Registry, on_error: OnError) -> Stats {
        let fail = |reason| {
            m.counter(
                "weft_shared_state_global_failures_total",
                "Redis operations of the global shared state that failed, by reason.",
                &[("reason", reason)],
            )
        };
        let transitions = |to| {
            m.counter(
                "weft_shared_state_global_transitions_total",
                "Times the global shared state's Redis became unavailable (down) or \
                 available again (up).",
                &[("to", to)],
            )
        };
        Stats {
            round_trips: m.counter(
                "weft_shared_state_global_round_trips_total",
                "Redis operations of the global shared state (lease grants, counter \
                 updates, global-kv calls, probes).",
                &[],
            ),
            failures_timeout: fail("timeout"),
            failures_error: fail("error"),
            fallbacks: m.counter(
                "weft_shared_state_global_fallbacks_total",
                "Global shared-state operations answered by on_error while Redis was \
                 unavailable.",
                &[("on_error", on_error.as_str())],
            ),
            down_total: transitions("down"),
            up_total: transitions("up"),
            up: m.gauge(
                "weft_shared_state_global_up",
                "1 while the global shared state's Redis answers, 0 while on_error \
                 applies.",
                &[],
            ),
        }
    }
}

struct Shared {
    config: CheckedGlobal,
    buckets: Vec<Mutex<HashMap<String, BucketLease>>>,
    counters: Vec<Mutex<HashMap<String, CounterLease>>>,
    down: AtomicBool,
    clock: Arc<FilterClock>,
    stats: Stats,
}

fn shard(key: &str) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

impl Shared {
    fn now(&self) -> u64 {
        self.clock.monotonic_ms()
    }

    fn failed(&self, what: &str, f: &Failure) {
        match f {
            Failure::Timeout => self.stats.failures_timeout.inc(),
            Failure::Error(_) => self.stats.failures_error.inc(),
        }
        if !self.down.swap(true, Ordering::AcqRel) {
            self.stats.down_total.inc();
            self.stats.up.set(0.0);
            tracing::warn!(
                on_error = self.config.on_error.as_str(),
                "global shared state unavailable ({what}: {f}, reason {}); answering by on_error until Redis is back",
                f.reason()
            );
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            self.stats.up_total.inc();
            self.stats.up.set(1.0);
            tracing::info!("global shared state available again");
        }
    }
}

/// A configured global backend: the leases, and the thread that talks to Redis.
/// Dropping it stops the thread.
pub struct GlobalBackend {
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Job>,
}

impl GlobalBackend {
    /// Starts the `weft-global` thread for `config` (connecting lazily, so a Redis
    /// that is down at start is only `on_error` until it answers).
    pub fn start(
        config: &CheckedGlobal,
        metrics: &Registry,
        clock: Arc<FilterClock>,
    ) -> anyhow::Result<GlobalBackend> {
        let pool =
            Pool::new(config).map_err(|e| anyhow::anyhow!("shared_state.global.redis: {e}"))?;
        let stats = Stats::new(metrics, config.on_error);
        stats.up.set(1.0);
        let shared = Arc::new(Shared {
            config: config.clone(),
            buckets: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            counters: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            down: AtomicBool::new(false),
            clock,
            stats,
        });
        let (jobs, rx) = mpsc::unbounded_channel();
        let thread_shared = shared.clone();
        crate::background::spawn_thread("weft-global", move || {
            serve(thread_shared, Arc::new(pool), rx)
        })?;
        Ok(GlobalBackend { shared, jobs })
    }

    /// The configuration it runs.
    pub fn config(&self) -> &CheckedGlobal {
        &self.shared.config
    }

    fn down(&self) -> bool {
        self.shared.down.load(Ordering::Acquire)
    }

    fn lease_for(&self, b: &Bucket) -> u64 {
        self.shared
            .config
            .lease
            .unwrap_or_else(|| (b.capacity / 10).clamp(1, 1000))
    }

    /// Takes `tokens` from the global bucket at `key` (already the filter's own key).
    pub fn take(&self, key: &str, b: Bucket, tokens: u64, local: &SharedStore) -> TakeResult {
        if self.down() {
            self.shared.stats.fallbacks.inc();
            return match self.shared.config.on_error {
                OnError::Local => {
                    let key = fallback_key(key);
                    local.with(&key, |s, now| s.token_bucket_take(&key, b, tokens, now))
                }
                OnError::Allow => TakeResult {
                    allowed: true,
                    remaining: b.capacity,
                    retry_after_ms: 0,
                    reset_ms: 0,
                },
                OnError::Deny => TakeResult {
                    allowed: false,
                    remaining: 0,
                    retry_after_ms: PROBE_INTERVAL.as_millis() as u64,
                    reset_ms: PROBE_INTERVAL.as_millis() as u64,
                },
            };
        }
        let lease = self.lease_for(&b);
        let now = self.shared.now();
        let (result, want) = {
            let mut shard = self.shared.buckets[shard(key)].lock();
            match shard.get_mut(key) {
                Some(l) => l.take(tokens, lease, now),
                None => shard
                    .entry(key.to_owned())
                    .or_default()
                    .take(tokens, lease, now),
            }
        };
        if let Some(want) = want {
            self.send(Job::Take {
                key: key.to_owned(),
                bucket: b,
                want,
            });
        }
        result
    }

    /// Adds to the global counter at `key`.
    pub fn counter_add(&self, key: &str, delta: i64, ttl_ms: Option<u64>) -> CounterValue {
        let now = self.shared.now();
        if self.down() {
            self.shared.stats.fallbacks.inc();
            return match self.shared.config.on_error {
                OnError::Local => self.counter(key, |c| c.local_add(delta, ttl_ms, now)),
                OnError::Allow => CounterValue {
                    value: delta,
                    expires_at_ms: ttl_ms.map(|t| now + t),
                },
                OnError::Deny => exhausted(),
            };
        }
        let (value, flush) = self.counter(key, |c| c.add(delta, ttl_ms, now));
        self.flush(key, flush);
        value
    }

    /// The global counter at `key`, as this proxy last saw it.
    pub fn counter_get(&self, key: &str) -> CounterValue {
        let now = self.shared.now();
        if self.down() {
            self.shared.stats.fallbacks.inc();
            return match self.shared.config.on_error {
                OnError::Local => self.counter(key, |c| c.peek(now)),
                OnError::Allow => CounterValue {
                    value: 0,
                    expires_at_ms: None,
                },
                OnError::Deny => exhausted(),
            };
        }
        let (value, flush) = self.counter(key, |c| c.get(now));
        self.flush(key, flush);
        value
    }

    fn counter<R>(&self, key: &str, f: impl FnOnce(&mut CounterLease) -> R) -> R {
        let mut shard = self.shared.counters[shard(key)].lock();
        match shard.get_mut(key) {
            Some(c) => f(c),
            None => f(shard.entry(key.to_owned()).or_default()),
        }
    }

    fn flush(&self, key: &str, flush: Option<Flush>) {
        if let Some(flush) = flush {
            self.send(Job::Count {
                key: key.to_owned(),
                flush,
            });
        }
    }

    fn send(&self, job: Job) {
        // The thread ends only when this backend is dropped.
        let _ = self.jobs.send(job);
    }

    /// Runs a `global-kv` operation on Redis; `Err` when Redis is unavailable (the
    /// caller then answers by `on_error`).
    pub async fn kv(&self, op: KvOp) -> Result<KvAnswer, Unavailable> {
        if self.down() {
            self.shared.stats.fallbacks.inc();
            return Err(Unavailable);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Job::Kv { op, reply });
        answer.await.unwrap_or(Err(Unavailable))
    }

    /// What `global-kv` answers while Redis is unavailable.
    pub fn on_error(&self) -> OnError {
        self.shared.config.on_error
    }
}

/// What a counter reads as under `on_error: deny`.
fn exhausted() -> CounterValue {
    CounterValue {
        value: i64::MAX,
        expires_at_ms: None,
    }
}

/// The `local` fallback's key for the global key `key`.
pub fn fallback_key(key: &str) -> String {
    let mut k = String::with_capacity(FALLBACK.len() + key.len());
    k.push_str(FALLBACK);
    k.push_str(key);
    k
}

fn redis_key(kind: &str, key: &str) -> String {
    format!("weft:{kind}:{key}")
}

/// The `weft-global` thread: runs each job as a task, probes while Redis is down, and
/// forgets idle leases.
async fn serve(shared: Arc<Shared>, pool: Arc<Pool>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u64;
    let probing = Arc::new(AtomicBool::new(false));
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                None => return,
                Some(job) => {
                    tokio::spawn(run(shared.clone(), pool.clone(), job));
                }
            },
            _ = tick.tick() => {
                ticks += 1;
                if shared.down.load(Ordering::Acquire) && !probing.swap(true, Ordering::AcqRel) {
                    let (shared, pool, probing) = (shared.clone(), pool.clone(), probing.clone());
                    tokio::spawn(async move {
                        shared.stats.round_trips.inc();
                        match pool.query_one::<String>(::redis::cmd("PING")).await {
                            Ok(_) => shared.recovered(),
                            Err(e) => tracing::debug!("global shared state probe: {e}"),
                        }
                        probing.store(false, Ordering::Release);
                    });
                }
                if ticks.is_multiple_of(40) {
                    forget_idle(&shared);
                }
            }
        }
    }
}

fn forget_idle(shared: &Shared) {
    let now = shared.now();
    for s in &shared.buckets {
        s.lock()
            .retain(|_, l| l.fetching || now.saturating_sub(l.used_ms) < IDLE_MS);
    }
    for s in &shared.counters {
        s.lock()
            .retain(|_, c| c.flushing || now.saturating_sub(c.used_ms) < IDLE_MS);
    }
}

async fn run(shared: Arc<Shared>, pool: Arc<Pool>, job: Job) {
    shared.stats.round_trips.inc();
    match job {
        Job::Take { key, bucket, want } => {
            let answer = pool.take(&redis_key("b", &key), bucket, want).await;
            let now = shared.now();
            let mut shard = shared.buckets[shard(&key)].lock();
            let lease = shard.entry(key).or_default();
            match answer {
                Ok([granted, left, retry, full]) => {
                    lease.granted(want, granted, left, retry, full, now);
                    drop(shard);
                    shared.recovered();
                }
                Err(f) => {
                    lease.failed();
                    drop(shard);
                    shared.failed("bucket", &f);
                }
            }
        }
        Job::Count { key, mut flush } => loop {
            let answer = pool
                .count(&redis_key("c", &key), flush.delta, flush.ttl_ms)
                .await;
            let now = shared.now();
            let next = {
                let mut shard = shared.counters[shard(&key)].lock();
                let counter = shard.entry(key.clone()).or_default();
                match &answer {
                    Ok((value, ttl)) => counter.synced(*value, *ttl, now),
                    Err(_) => {
                        counter.failed();
                        None
                    }
                }
            };
            match answer {
                Ok(_) => shared.recovered(),
                Err(f) => return shared.failed("counter", &f),
            }
            match next {
                Some(n) => {
                    shared.stats.round_trips.inc();
                    flush = n;
                }
                None => return,
            }
        },
        Job::Kv { op, reply } => {
            let answer = kv(&pool, op).await;
            match &answer {
                Ok(_) => shared.recovered(),
                Err(f) => shared.failed("global-kv", f),
            }
            let _ = reply.send(answer.map_err(|_| Unavailable));
        }
    }
}

async fn kv(pool: &Pool, op: KvOp) -> Result<KvAnswer, Failure> {
    let px = |cmd: &mut ::redis::Cmd, ttl: Option<u64>| {
        if let Some(ns) = ttl {
            cmd.arg("PX").arg((ns / 1_000_000).max(1));
        }
    };
    match op {
        KvOp::Get(k) => {
            let mut cmd = ::redis::cmd("GET");
            cmd.arg(redis_key("k", &k));
            Ok(KvAnswer::Value(pool.query_one(cmd).await?))
        }
        KvOp::Set(k, v, ttl) => {
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(redis_key("k", &k)).arg(v);
            px(&mut cmd, ttl);
            pool.query_one::<()>(cmd).await?;
            Ok(KvAnswer::Done)
        }
        KvOp::SetIfAbsent(k, v, ttl) => {
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(redis_key("k", &k)).arg(v).arg("NX");
            px(&mut cmd, ttl);
            let stored: Option<String> = pool.query_one(cmd).await?;
            Ok(KvAnswer::Changed(stored.is_some()))
        }
        KvOp::Delete(k) => {
            let mut cmd = ::redis::cmd("DEL");
            cmd.arg(redis_key("k", &k));
            let n: i64 = pool.query_one(cmd).await?;
            Ok(KvAnswer::Changed(n > 0))
        }
    }
}
