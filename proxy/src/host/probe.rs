//! What each filter call cost, for `weft bench`.
//!
//! Off unless a bench turns it on ([`enable`]); then every call on the calling thread
//! leaves a [`Sample`] in that thread's list until [`take`] collects them. Off, a call
//! pays one relaxed load.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::alloc_count;

static ON: AtomicBool = AtomicBool::new(false);

thread_local! {
    static SAMPLES: RefCell<Vec<Sample>> = const { RefCell::new(Vec::new()) };
}

/// The five phases a filter is called in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
    Log,
}

impl Phase {
    /// Every phase, in the order a request meets them.
    pub const ALL: [Phase; 5] = [
        Phase::RequestHeaders,
        Phase::RequestBody,
        Phase::ResponseHeaders,
        Phase::ResponseBody,
        Phase::Log,
    ];

    /// The phase's name as the contract spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::RequestHeaders => "request-headers",
            Phase::RequestBody => "request-body",
            Phase::ResponseHeaders => "response-headers",
            Phase::ResponseBody => "response-body",
            Phase::Log => "log",
        }
    }

    /// The phase's name as a metric label value and in the admin endpoint's JSON.
    pub fn label(self) -> &'static str {
        match self {
            Phase::RequestHeaders => "request_headers",
            Phase::RequestBody => "request_body",
            Phase::ResponseHeaders => "response_headers",
            Phase::ResponseBody => "response_body",
            Phase::Log => "log",
        }
    }

    /// Its place in [`Phase::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One call, measured from taking an instance from the pool to putting it back.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Which filter: the address of its `LoadedFilter` (compare with `Arc::as_ptr`).
    pub filter: usize,
    pub phase: Phase,
    /// Wall-clock nanoseconds.
    pub nanos: u64,
    /// Calls the filter made into the host during the call.
    pub host_calls: u32,
    /// Allocations on the proxy's side of the call (zero unless the process counts
    /// them: see [`crate::alloc_count`]).
    pub allocations: u32,
    /// The instance's linear memory after the call, in bytes.
    pub memory: usize,
}

/// Turns sampling on for every thread; also turns allocation counting on.
pub fn enable() {
    alloc_count::start();
    ON.store(true, Ordering::Relaxed);
}

/// The samples the calling thread collected since the last `take`.
pub fn take() -> Vec<Sample> {
    SAMPLES.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// A call being measured.
pub(crate) struct Measuring {
    start: Instant,
    allocations: u64,
}

/// Starts measuring a call, if sampling is on.
#[inline]
pub(crate) fn begin() -> Option<Measuring> {
    if !ON.load(Ordering::Relaxed) {
        return None;
    }
    Some(Measuring {
        allocations: alloc_count::allocations(),
        start: Instant::now(),
    })
}

impl Measuring {
    /// Records the call.
    pub(crate) fn end(self, filter: usize, phase: Phase, host_calls: u32, memory: usize) {
        let nanos = self.start.elapsed().as_nanos() as u64;
        let allocations = (alloc_count::allocations() - self.allocations) as u32;
        SAMPLES.with(|s| {
            s.borrow_mut().push(Sample {
                filter,
                phase,
                nanos,
                host_calls,
                allocations,
                memory,
            })
        });
    }
}
