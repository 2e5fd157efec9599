//! State that every worker updates on the request path, split so that each worker
//! updates its own copy.
//!
//! One value written by all workers (a pool's lock, a count of calls in flight) moves
//! between their cores' caches at every write; with a filter chain that is several
//! such writes per call. A [`Sharded`] value keeps one copy per worker, each on its own
//! cache line; a worker uses the copy of its index ([`set_worker`]), other threads
//! (the reload and admin threads, tests) share the first.

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `index`, for [`Sharded::get`].
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// How many copies a [`Sharded`] value keeps: one per core (workers default to one per
/// core; more workers share copies).
fn shards() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 64)
    })
}

/// A value on a cache line of its own (128 bytes: adjacent-line prefetch pairs lines).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Line<T>(T);

/// One copy of a value per worker.
#[derive(Debug)]
pub struct Sharded<T> {
    copies: Box<[Line<T>]>,
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Sharded {
            copies: (0..shards()).map(|_| Line(T::default())).collect(),
        }
    }
}

impl<T> Sharded<T> {
    /// The current worker's copy.
    pub fn get(&self) -> &T {
        self.at(self.index())
    }

    /// The index of the current worker's copy, to come back to the same copy from
    /// another thread (see [`Sharded::at`]).
    pub fn index(&self) -> usize {
        WORKER.with(Cell::get) % self.copies.len()
    }

    /// The copy at `index` (from [`Sharded::index`]).
    pub fn at(&self, index: usize) -> &T {
        &self.copies[index % self.copies.len()].0
    }

    /// Every copy, to sum or drain them.
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.copies.iter().map(|c| &c.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn each_worker_writes_its_own_copy_and_reads_see_them_all() {
        let counts: std::sync::Arc<Sharded<AtomicUsize>> = Default::default();
        let threads: Vec<_> = (0..4)
            .map(|w| {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    set_worker(w);
                    for _ in 0..1000 {
                        counts.get().fetch_add(1, Ordering::Relaxed);
                    }
                    counts.get() as *const AtomicUsize as usize
                })
            })
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>();
        let total: usize = counts.all().map(|c| c.load(Ordering::Relaxed)).sum();
        assert_eq!(total, 4000);
        // Workers 0 and 1 use different copies whenever there are two or more, on
        // different cache lines.
        if counts.copies.len() > 1 {
            assert_ne!(threads[0], threads[1]);
            assert!(threads[0].abs_diff(threads[1]) >= 128);
        }
    }
}
