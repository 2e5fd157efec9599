//! The proxy's overload state, as the data plane reads it: which overload actions are
//! in force, and the process-wide count of client connections against its limit.
//!
//! The monitor (`crate::server::overload`) decides; accept loops, connections and the
//! exchange only read, one relaxed atomic load each, and idle connections wait on
//! [`watch`] to hear when closing them begins.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::LazyLock;

use tokio::sync::watch;

/// An overload action, in the order their default thresholds fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Action {
    /// Listeners stop accepting connections.
    StopAccepting = 0,
    /// Connections without a request in progress are closed.
    CloseIdle = 1,
    /// New requests are answered 503 (`x-weft-error: overload`).
    RefuseRequests = 2,
    /// Connections close after their request in progress.
    DisableKeepalive = 3,
}

impl Action {
    /// Every action, in threshold order.
    pub const ALL: [Action; 4] = [
        Action::StopAccepting,
        Action::CloseIdle,
        Action::RefuseRequests,
        Action::DisableKeepalive,
    ];

    /// Its bit in the set of actions in force.
    pub const fn bit(self) -> u8 {
        1 << self as u8
    }

    /// Its name in configuration, metrics and the admin endpoint.
    pub fn as_str(self) -> &'static str {
        NAMES[self as usize]
    }
}

/// Names of the actions, in [`Action::ALL`] order.
const NAMES: [&str; 4] = [
    "stop_accepting",
    "close_idle",
    "refuse_requests",
    "disable_keepalive",
];

/// The actions in force, as bits.
static ACTIVE: AtomicU8 = AtomicU8::new(0);
/// Client connections open now, every listener and worker together.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
/// Their limit (`overload.max_connections`); `u64::MAX` when none.
static MAX_CONNECTIONS: AtomicU64 = AtomicU64::new(u64::MAX);
/// Requests answered 503 because of [`Action::RefuseRequests`].
static REFUSED_REQUESTS: AtomicU64 = AtomicU64::new(0);
/// Tells waiting connections and accept loops the actions changed.
static CHANGES: LazyLock<watch::Sender<u8>> = LazyLock::new(|| watch::Sender::new(0));

/// Whether `action` is in force.
#[inline]
pub fn active(action: Action) -> bool {
    ACTIVE.load(Ordering::Relaxed) & action.bit() != 0
}

/// The actions in force, as [`Action::bit`]s.
pub fn mask() -> u8 {
    ACTIVE.load(Ordering::Relaxed)
}

/// Whether a connection should end once its request in progress is answered: idle
/// connections are being closed, or keep-alive is off.
#[inline]
pub fn ends_after_response() -> bool {
    ACTIVE.load(Ordering::Relaxed) & (Action::CloseIdle.bit() | Action::DisableKeepalive.bit()) != 0
}

/// Whether a new request is refused now; counts it if so.
#[inline]
pub fn refuses_request() -> bool {
    if !active(Action::RefuseRequests) {
        return false;
    }
    REFUSED_REQUESTS.fetch_add(1, Ordering::Relaxed);
    true
}

/// Requests refused so far.
pub fn refused_requests() -> u64 {
    REFUSED_REQUESTS.load(Ordering::Relaxed)
}

/// Puts the actions in `mask` in force (and no others), waking whoever waits on
/// [`watch`]. For the monitor.
pub fn set_mask(mask: u8) {
    if ACTIVE.swap(mask, Ordering::Relaxed) != mask {
        CHANGES.send_replace(mask);
    }
}

/// Completes once [`Action::CloseIdle`] is in force (at once if it is).
pub async fn closing_idle() {
    let mut rx = watch();
    while *rx.borrow_and_update() & Action::CloseIdle.bit() == 0 {
        if rx.changed().await.is_err() {
            // (The sender is a static: never dropped.)
            return std::future::pending().await;
        }
    }
}

/// Changes of the actions in force.
pub fn watch() -> watch::Receiver<u8> {
    CHANGES.subscribe()
}

/// Sets the process-wide connection limit (`None`: none).
pub fn set_max_connections(max: Option<u64>) {
    MAX_CONNECTIONS.store(max.unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Client connections open now.
pub fn connections() -> u64 {
    CONNECTIONS.load(Ordering::Relaxed)
}

/// A connection counted against the process-wide limit until dropped.
pub struct Admitted(());

impl Drop for Admitted {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a new connection, or `None` when the process-wide limit is reached.
pub fn admit() -> Option<Admitted> {
    let before = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    if before >= MAX_CONNECTIONS.load(Ordering::Relaxed) {
        CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(Admitted(()))
}
