//! The allocator filters use in wasm32: free lists by size class over the standard
//! allocator.
//!
//! A filter call allocates a handful of small objects (a header value, an edit, a
//! view) and frees them when the call ends. The standard allocator for
//! `wasm32-unknown-unknown` (dlmalloc) spends several hundred instructions on each
//! malloc/free pair; measured with callgrind, that was 40% of a small filter's
//! instructions per call. Here a block of a small size class comes off a free list and
//! goes back onto it, in a few instructions. Blocks are carved from 64 KiB chunks of
//! the standard allocator and never returned to it, so a class holds at most what the
//! filter once held at its peak (the proxy's memory cap bounds that). Larger or
//! over-aligned requests go to the standard allocator.
//!
//! On by default in the wasm32 build (the `fast-alloc` feature); a filter that brings
//! its own `#[global_allocator]` turns the feature off.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// The size classes: every request of at most 16 bytes of alignment and at most the
/// largest class is rounded up to the next class.
const CLASSES: [usize; 8] = [16, 32, 64, 128, 256, 512, 1024, 2048];
/// What a chunk taken from the standard allocator holds.
const CHUNK: usize = 64 << 10;
/// The alignment every block has (every class is a multiple of it, and so is every
/// chunk's start).
const ALIGN: usize = 16;

/// The class a layout is served from, if any.
#[inline]
fn class_of(layout: &Layout) -> Option<usize> {
    if layout.align() > ALIGN {
        return None;
    }
    let size = layout.size().max(1);
    if size > CLASSES[CLASSES.len() - 1] {
        return None;
    }
    // 16 -> 0, 17..=32 -> 1, ...: the bit length of (size - 1) >> 4.
    let c = (usize::BITS - ((size - 1) >> 4).leading_zeros()) as usize;
    Some(c)
}

struct State {
    /// Per class: the first free block; each free block starts with the next's address.
    free: [*mut u8; CLASSES.len()],
    /// The unused rest of the current chunk.
    bump: *mut u8,
    end: *mut u8,
}

/// The allocator. Single-threaded by construction: a wasm32 component instance runs one
/// call at a time on one thread, and the proxy never re-enters it.
pub struct FilterAlloc(UnsafeCell<State>);

// SAFETY: wasm32 component instances have one thread (see above); this type is only
// the global allocator of wasm32 builds.
unsafe impl Sync for FilterAlloc {}

impl FilterAlloc {
    /// An allocator with nothing taken yet.
    pub const fn new() -> Self {
        FilterAlloc(UnsafeCell::new(State {
            free: [ptr::null_mut(); CLASSES.len()],
            bump: ptr::null_mut(),
            end: ptr::null_mut(),
        }))
    }
}

impl Default for FilterAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks are handed out once until freed; a block of class `c` is `CLASSES[c]`
// bytes, 16-aligned, inside a chunk that is never freed; `dealloc` and `realloc` get
// the layout `alloc` got, so they find the same class (or the standard allocator).
unsafe impl GlobalAlloc for FilterAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class_of(&layout) else {
            // SAFETY: the caller's layout, passed on.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded (see `FilterAlloc`); no reference outlives the call.
        let s = unsafe { &mut *self.0.get() };
        let head = s.free[c];
        if !head.is_null() {
            // SAFETY: a free block starts with the next free block's address.
            s.free[c] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = CLASSES[c];
        if (s.end as usize) - (s.bump as usize) < size {
            // SAFETY: a valid, non-zero layout.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, ALIGN)) };
            if chunk.is_null() {
                return chunk;
            }
            s.bump = chunk;
            // SAFETY: within the chunk just taken.
            s.end = unsafe { chunk.add(CHUNK) };
        }
        let block = s.bump;
        // SAFETY: `size` bytes are left in the chunk (checked above).
        s.bump = unsafe { block.add(size) };
        block
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        let Some(c) = class_of(&layout) else {
            // SAFETY: allocated by the standard allocator with this layout.
            return unsafe { System.dealloc(p, layout) };
        };
        // SAFETY: single-threaded; `p` is a block of class `c` no longer in use, at
        // least 16 bytes and 16-aligned, so it can hold the next free block's address.
        unsafe {
            let s = &mut *self.0.get();
            p.cast::<*mut u8>().write(s.free[c]);
            s.free[c] = p;
        }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with this alignment is valid.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(&layout), class_of(&new)) {
            // The block already has room.
            (Some(a), Some(b)) if a == b => p,
            (None, None) => unsafe { System.realloc(p, layout, new_size) },
            _ => {
                // SAFETY: a fresh block for `new`, the old one's bytes copied, the old
                // one freed with its own layout.
                unsafe {
                    let q = self.alloc(new);
                    if !q.is_null() {
                        ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                        self.dealloc(p, layout);
                    }
                    q
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_the_smallest_class_that_holds_them() {
        let class = |size: usize, align: usize| {
            class_of(&Layout::from_size_align(size, align).unwrap()).map(|c| CLASSES[c])
        };
        assert_eq!(class(0, 1), Some(16));
        assert_eq!(class(1, 1), Some(16));
        assert_eq!(class(16, 8), Some(16));
        assert_eq!(class(17, 8), Some(32));
        assert_eq!(class(33, 16), Some(64));
        assert_eq!(class(2048, 4), Some(2048));
        assert_eq!(class(2049, 4), None);
        assert_eq!(class(8, 32), None, "over-aligned");
    }

    #[test]
    fn blocks_are_reused_and_never_overlap() {
        let a = FilterAlloc::new();
        let mut live = Vec::new();
        for round in 0..3 {
            for size in [1usize, 15, 16, 17, 100, 500, 2000, 5000] {
                let layout = Layout::from_size_align(size, 8).unwrap();
                // SAFETY: a valid layout; freed below with it.
                let p = unsafe { a.alloc(layout) };
                assert!(!p.is_null() && (p as usize).is_multiple_of(8));
                // SAFETY: `size` bytes were just allocated.
                unsafe { ptr::write_bytes(p, round as u8, size) };
                live.push((p, layout));
            }
            let mut spans: Vec<(usize, usize)> =
                live.iter().map(|(p, l)| (*p as usize, l.size())).collect();
            spans.sort();
            for w in spans.windows(2) {
                assert!(w[0].0 + w[0].1 <= w[1].0, "blocks overlap: {w:?}");
            }
            for (p, l) in live.drain(..) {
                // SAFETY: allocated above with `l`.
                unsafe { a.dealloc(p, l) };
            }
        }
        // A freed block of a class is the next one handed out for that class.
        let l = Layout::from_size_align(24, 8).unwrap();
        // SAFETY: valid layouts, each freed with its own.
        unsafe {
            let p = a.alloc(l);
            a.dealloc(p, l);
            assert_eq!(a.alloc(l), p);
            let grown = a.realloc(p, l, 30);
            assert_eq!(grown, p, "30 bytes still fit the 32-byte class");
            let moved = a.realloc(grown, Layout::from_size_align(30, 8).unwrap(), 100);
            assert_ne!(moved, p);
        }
    }
}
