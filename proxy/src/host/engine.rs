//! The one wasmtime engine: component model, pooled instance allocation, epoch
//! interruption for call deadlines, and the thread that ticks the epoch.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::config::MAX_FILTER_MEMORY;
use crate::shard::Sharded;

/// How often the epoch advances; a call's deadline is checked at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Builds the engine. `max_instances` bounds the instances alive at once over all
/// filters: the pooling allocator reserves their slots up front (address space only;
/// memory is committed as instances use it).
pub fn build(max_instances: u32) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances.saturating_mul(4))
        .total_memories(max_instances)
        .total_tables(max_instances.saturating_mul(2))
        .total_stacks(max_instances)
        .max_memory_size(MAX_FILTER_MEMORY as usize)
        // Keep a few resident pages of each freed slot, so reusing it is cheap.
        .linear_memory_keep_resident(64 << 10)
        .table_keep_resident(16 << 10);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .max_wasm_stack(512 << 10);
    // The pool reserves address space up front (about 4 GiB per slot). Tools that cannot
    // map such reservations, valgrind among them, run with WEFT_FILTER_POOLING=off.
    if std::env::var("WEFT_FILTER_POOLING").as_deref() != Ok("off") {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config)
}

/// How many ticks without a call in flight before the ticker sleeps.
const PARK_AFTER_TICKS: u32 = 100;

/// What calls and the ticker share: how many calls are in flight (their deadlines need
/// the epoch to advance), whether a call started since the last tick, and whether the
/// ticker is asleep.
#[derive(Default)]
pub struct Ticks {
    /// Per worker: every call writes it twice.
    in_flight: Sharded<AtomicUsize>,
    /// Set by calls, cleared by the ticker at each tick: calls are far shorter than a
    /// tick, so `in_flight` alone would read 0 at almost every tick of a busy proxy.
    recent: AtomicBool,
    parked: AtomicBool,
    stop: AtomicBool,
    /// Times a call found the ticker asleep and woke it.
    wakeups: AtomicU64,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Ticks {
    /// Marks a call in flight until the guard is dropped, waking the ticker if it
    /// sleeps. Once woken, the ticker stays awake until no call has started for
    /// [`PARK_AFTER_TICKS`] ticks: a busy proxy wakes it once, not once per call.
    pub fn call(self: &Arc<Self>) -> InFlight {
        let shard = self.in_flight.index();
        self.in_flight.at(shard).fetch_add(1, Ordering::SeqCst);
        // Written only when clear (about once per tick), so workers do not keep
        // taking the line from each other.
        if !self.recent.load(Ordering::Relaxed) {
            self.recent.store(true, Ordering::Relaxed);
        }
        if self.parked.load(Ordering::SeqCst) {
            let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            if self.parked.swap(false, Ordering::SeqCst) {
                self.wakeups.fetch_add(1, Ordering::Relaxed);
                self.wake.notify_one();
            }
        }
        InFlight {
            ticks: self.clone(),
            shard,
        }
    }

    /// Calls in flight on every worker.
    fn in_flight(&self) -> usize {
        self.in_flight.all().map(|n| n.load(Ordering::SeqCst)).sum()
    }
}

/// A call in flight (see [`Ticks::call`]).
pub struct InFlight {
    ticks: Arc<Ticks>,
    /// The copy of the count it added to (it may end on another thread).
    shard: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.ticks
            .in_flight
            .at(self.shard)
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while filter calls run, until
/// dropped. With no call started for [`PARK_AFTER_TICKS`] ticks it sleeps until the
/// next call starts: an idle proxy does not wake a thousand times a second. A call's
/// deadline counts ticks from its start, so ticks missed while nothing ran change no
/// deadline.
pub struct EpochTicker {
    ticks: Arc<Ticks>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: Engine) -> std::io::Result<EpochTicker> {
        let ticks = Arc::new(Ticks::default());
        let shared = ticks.clone();
        let thread = std::thread::Builder::new()
            .name("weft-epoch".into())
            .spawn(move || tick(&engine, &shared))?;
        Ok(EpochTicker {
            ticks,
            thread: Some(thread),
        })
    }

    /// What calls register with.
    pub fn ticks(&self) -> Arc<Ticks> {
        self.ticks.clone()
    }

    /// Whether the ticker sleeps (no call has started for a while).
    pub fn asleep(&self) -> bool {
        self.ticks.parked.load(Ordering::SeqCst)
    }

    /// How many times a call woke the sleeping ticker.
    pub fn wakeups(&self) -> u64 {
        self.ticks.wakeups.load(Ordering::Relaxed)
    }
}

fn tick(engine: &Engine, t: &Ticks) {
    let mut quiet = 0;
    while !t.stop.load(Ordering::Relaxed) {
        std::thread::sleep(EPOCH_TICK);
        engine.increment_epoch();
        let started = t.recent.swap(false, Ordering::Relaxed);
        if started || t.in_flight() > 0 {
            quiet = 0;
            continue;
        }
        quiet += 1;
        if quiet < PARK_AFTER_TICKS {
            continue;
        }
        let mut held = t.lock.lock().unwrap_or_else(|e| e.into_inner());
        t.parked.store(true, Ordering::SeqCst);
        // A call that started before `parked` was set is seen here; one that starts
        // after sees `parked` and clears it under the lock (so not before this thread
        // waits), then wakes it.
        while t.parked.load(Ordering::SeqCst)
            && t.in_flight() == 0
            && !t.stop.load(Ordering::SeqCst)
        {
            held = t.wake.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        t.parked.store(false, Ordering::SeqCst);
        quiet = 0;
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.ticks.stop.store(true, Ordering::SeqCst);
        {
            let _held = self.ticks.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.ticks.wake.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn asleep_within(ticker: &EpochTicker, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !ticker.asleep() {
            assert!(Instant::now() < deadline, "the ticker never slept");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_busy_host_wakes_the_sleeping_ticker_once_not_at_every_call() {
        let ticker = EpochTicker::start(Engine::default()).unwrap();
        let ticks = ticker.ticks();
        asleep_within(&ticker, Duration::from_secs(5));
        // Calls far shorter than the ticker takes to wake, for longer than it waits
        // before sleeping: the first wakes it and it stays awake, rather than going
        // back to sleep to be woken by the next call (two context switches per call
        // on a busy worker).
        for _ in 0..60 {
            drop(ticks.call());
            std::thread::sleep(Duration::from_millis(3));
        }
        let woken = ticker.wakeups();
        assert!((1..=3).contains(&woken), "woken {woken} times for 60 calls");
        assert!(!ticker.asleep(), "awake while calls keep coming");
        // Idle again, it sleeps again; a call in flight keeps it awake.
        asleep_within(&ticker, Duration::from_secs(5));
        let long_call = ticks.call();
        std::thread::sleep(Duration::from_millis(300));
        assert!(!ticker.asleep(), "awake while a call runs");
        drop(long_call);
    }
}
