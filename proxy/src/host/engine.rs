//! The one wasmtime engine: component model, pooled instance allocation, epoch
//! interruption for call deadlines, and the thread that ticks the epoch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::config::MAX_FILTER_MEMORY;

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

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weft-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
