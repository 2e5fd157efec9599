//! Counting allocations, for `weft bench`.
//!
//! [`Counting`] wraps the process's allocator. While nothing asked for counts (every
//! process but a `weft bench` run) an allocation costs one relaxed load more; while
//! [`start`] is in effect each thread counts its own allocations, and [`allocations`]
//! reads the calling thread's count.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// An allocator that counts, per thread, the allocations made through it (a
/// reallocation counts as one) while counting is on.
pub struct Counting<A>(pub A);

#[inline]
fn count() {
    if COUNTING.load(Ordering::Relaxed) {
        // `try_with`: a thread being torn down has no count left to add to.
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every method forwards to the wrapped allocator with the caller's arguments;
// counting touches only a thread-local `Cell`, which does not allocate.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is the wrapped allocator's.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

/// Turns counting on, for every thread, from now on.
pub fn start() {
    COUNTING.store(true, Ordering::Relaxed);
}

/// Allocations the calling thread made while counting was on. Zero in a process whose
/// global allocator is not [`Counting`].
pub fn allocations() -> u64 {
    COUNT.with(Cell::get)
}
