//! `overload:` — how many connections the proxy holds, and what it gives up, in order,
//! as its memory or file descriptors run short (Envoy's overload manager), as
//! configured, and its checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::FieldError;
use super::model::{bytes_opt, duration_opt};
use crate::overload::Action;

/// `overload:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverloadConfig {
    /// Client connections open at once, all listeners and workers together; the next
    /// is closed as it is accepted (counted, reason `global_limit`). Default: none
    /// beyond the descriptor limit, which the actions guard.
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// The resident memory the memory thresholds are shares of (`512MiB`, `2GiB`).
    /// Absent: memory is not watched (descriptors still are).
    #[serde(default, deserialize_with = "bytes_opt")]
    pub memory_limit: Option<u64>,
    /// The pressure (the larger of resident memory over `memory_limit` and open
    /// descriptors over the descriptor limit) at which each action starts; below it
    /// again, the action stops.
    #[serde(default)]
    pub actions: ActionsConfig,
    /// How often memory is read. Default 100ms (descriptors: every 10th time).
    #[serde(default, with = "duration_opt")]
    pub check_interval: Option<Duration>,
}

/// `overload.actions:` — each a share from 0.0 to 1.0 of the limit; 1.0 or more never
/// fires.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    /// Listeners stop accepting (new connections wait in the kernel's backlog).
    /// Default 0.90.
    #[serde(default)]
    pub stop_accepting: Option<f64>,
    /// Connections without a request in progress are closed. Default 0.92.
    #[serde(default)]
    pub close_idle: Option<f64>,
    /// New requests are answered 503 with `x-weft-error: overload`. Default 0.95.
    #[serde(default)]
    pub refuse_requests: Option<f64>,
    /// Connections close after their request in progress (HTTP/1.1
    /// `Connection: close`, HTTP/2 GOAWAY). Default 0.98.
    #[serde(default)]
    pub disable_keepalive: Option<f64>,
}

/// Checked `overload:`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckedOverload {
    /// All listeners' connections at once.
    pub max_connections: Option<u64>,
    /// Memory the thresholds are shares of.
    pub memory_limit: Option<u64>,
    /// Thresholds of the actions, in [`Action::ALL`] order.
    pub thresholds: [f64; 4],
    /// How often memory is read.
    pub check_interval: Duration,
}

/// Default [`CheckedOverload::check_interval`].
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Default thresholds, in [`Action::ALL`] order.
pub const DEFAULT_THRESHOLDS: [f64; 4] = [0.90, 0.92, 0.95, 0.98];

impl Default for CheckedOverload {
    fn default() -> Self {
        CheckedOverload {
            max_connections: None,
            memory_limit: None,
            thresholds: DEFAULT_THRESHOLDS,
            check_interval: DEFAULT_CHECK_INTERVAL,
        }
    }
}

/// Checks `overload:`.
pub fn check(c: &OverloadConfig) -> Result<CheckedOverload, FieldError> {
    if c.max_connections == Some(0) {
        return Err(FieldError::new(
            "overload.max_connections",
            "must be more than 0",
        ));
    }
    if let Some(m) = c.memory_limit {
        if m < 4 << 20 {
            return Err(FieldError::new(
                "overload.memory_limit",
                format!("{m} bytes: must be at least 4MiB (write sizes as 512MiB or 2GiB)"),
            ));
        }
    }
    let given = [
        c.actions.stop_accepting,
        c.actions.close_idle,
        c.actions.refuse_requests,
        c.actions.disable_keepalive,
    ];
    let mut thresholds = DEFAULT_THRESHOLDS;
    for (i, v) in given.into_iter().enumerate() {
        let Some(v) = v else { continue };
        if !(v > 0.0 && v.is_finite()) {
            return Err(FieldError::new(
                format!("overload.actions.{}", Action::ALL[i].as_str()),
                format!("must be a share of the limit above 0 (0.9 is 90%), not {v}"),
            ));
        }
        thresholds[i] = v;
    }
    let check_interval = match c.check_interval {
        None => DEFAULT_CHECK_INTERVAL,
        Some(d) if (Duration::from_millis(10)..=Duration::from_secs(10)).contains(&d) => d,
        Some(d) => {
            return Err(FieldError::new(
                "overload.check_interval",
                format!("{d:?}: must be from 10ms to 10s"),
            ))
        }
    };
    Ok(CheckedOverload {
        max_connections: c.max_connections,
        memory_limit: c.memory_limit,
        thresholds,
        check_interval,
    })
}
