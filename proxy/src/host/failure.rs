//! How a filter call failed, as counted and logged.

use std::fmt;

/// Raised by the epoch callback when a call overruns its deadline.
#[derive(Debug)]
pub struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("filter call exceeded its deadline")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// Why a filter call did not produce an answer the proxy can follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterFailure {
    /// The filter trapped (a panic, an out-of-bounds access, ...).
    Trap(String),
    /// The call ran past the filter's timeout.
    Deadline,
    /// The filter asked for more memory than its limit.
    Memory,
    /// A new instance could not be made (instance limit reached, `init` failed).
    Instantiate(String),
    /// The filter answered with an action that is not allowed in that phase.
    InvalidAction(String),
    /// Not called: its breaker is open after repeated deadline or memory failures
    /// (see `host::breaker`).
    BreakerOpen,
}

impl FilterFailure {
    /// The `reason` label of `weft_filter_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            FilterFailure::Trap(_) => "trap",
            FilterFailure::Deadline => "deadline",
            FilterFailure::Memory => "memory",
            FilterFailure::Instantiate(_) => "instantiate",
            FilterFailure::InvalidAction(_) => "invalid_action",
            FilterFailure::BreakerOpen => "breaker_open",
        }
    }

    /// Whether the instance must be thrown away (it may be in a broken state).
    pub fn poisons_instance(&self) -> bool {
        matches!(
            self,
            FilterFailure::Trap(_) | FilterFailure::Deadline | FilterFailure::Memory
        )
    }
}

impl fmt::Display for FilterFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterFailure::Trap(t) => write!(f, "trapped: {t}"),
            FilterFailure::Deadline => f.write_str("exceeded its deadline"),
            FilterFailure::Memory => f.write_str("exceeded its memory limit"),
            FilterFailure::Instantiate(e) => write!(f, "could not be instantiated: {e}"),
            FilterFailure::InvalidAction(a) => write!(f, "answered with an invalid action: {a}"),
            FilterFailure::BreakerOpen => f.write_str(
                "skipped: its breaker is open after repeated deadline or memory failures",
            ),
        }
    }
}

/// Classifies an error from a call into a failure.
pub fn classify(err: &wasmtime::Error, memory_hit: bool) -> FilterFailure {
    if err.downcast_ref::<DeadlineExceeded>().is_some() {
        return FilterFailure::Deadline;
    }
    if memory_hit {
        return FilterFailure::Memory;
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => FilterFailure::Trap(trap.to_string()),
        None => FilterFailure::Trap(format!("{err:#}")),
    }
}
