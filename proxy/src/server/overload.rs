//! The overload monitor: a thread that reads the process's resident memory and open
//! descriptors, turns them into a pressure (the larger share of its limit), and puts
//! the overload actions whose threshold the pressure reaches in force
//! (`crate::overload`); each undone once the pressure is below its threshold again.
//! Reads its settings from the current snapshot, so a reload changes them.

use std::sync::{Arc, Weak};

use crate::metrics::{Counter, Gauge, Registry};
use crate::overload::{self, Action};
use crate::snapshot::Snapshot;

/// What the monitor saw last, for the admin endpoint.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Reading {
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// `overload.memory_limit`, when memory is watched.
    pub memory_limit: Option<u64>,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft descriptor limit.
    pub fd_limit: u64,
    /// The larger of the two shares.
    pub pressure: f64,
}

/// The monitor's last reading.
static LAST: parking_lot::Mutex<Reading> = parking_lot::Mutex::new(Reading {
    resident_bytes: 0,
    memory_limit: None,
    open_fds: 0,
    fd_limit: 0,
    pressure: 0.0,
});

/// The monitor's last reading (zeros before its first).
pub fn last_reading() -> Reading {
    *LAST.lock()
}

/// Raises the soft descriptor limit to the hard one, saying what it is: a proxy holds
/// a descriptor per connection, and the default soft limit (often 1024) would refuse
/// connections long before memory runs short.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!("cannot read the file descriptor limit");
        return 1024;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            tracing::warn!(limit = before, "cannot raise the file descriptor limit");
            return before;
        }
    }
    tracing::info!(
        limit = lim.rlim_cur,
        was = before,
        "file descriptor limit (each connection takes one)"
    );
    lim.rlim_cur
}

/// Starts the monitor; it ends when `snapshot` is dropped.
pub fn spawn(
    snapshot: Weak<arc_swap::ArcSwap<Snapshot>>,
    metrics: Arc<Registry>,
    fd_limit: u64,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("weft-overload".into())
        .spawn(move || run(snapshot, &metrics, fd_limit))
        .map(drop)
}

/// The monitor's metric series.
struct Series {
    resident: Arc<Gauge>,
    fds: Arc<Gauge>,
    pressure: Arc<Gauge>,
    active: Vec<Arc<Gauge>>,
    activations: Vec<Arc<Counter>>,
    refused: Arc<Counter>,
}

impl Series {
    fn new(metrics: &Registry) -> Series {
        let labels = |a: &Action| [("action", a.as_str())];
        Series {
            resident: metrics.gauge(
                "weft_process_resident_memory_bytes",
                "Resident memory of the proxy process.",
                &[],
            ),
            fds: metrics.gauge(
                "weft_process_open_fds",
                "Open file descriptors of the proxy process.",
                &[],
            ),
            pressure: metrics.gauge(
                "weft_overload_pressure",
                "The larger of resident memory over overload.memory_limit and open descriptors over their limit.",
                &[],
            ),
            active: Action::ALL
                .iter()
                .map(|a| {
                    metrics.gauge(
                        "weft_overload_action_active",
                        "1 while the overload action is in force.",
                        &labels(a),
                    )
                })
                .collect(),
            activations: Action::ALL
                .iter()
                .map(|a| {
                    metrics.counter(
                        "weft_overload_action_activations_total",
                        "Times the overload action came into force.",
                        &labels(a),
                    )
                })
                .collect(),
            refused: metrics.counter(
                "weft_overload_requests_refused_total",
                "Requests answered 503 overload while refuse_requests was in force.",
                &[],
            ),
        }
    }
}

fn run(snapshot: Weak<arc_swap::ArcSwap<Snapshot>>, metrics: &Registry, fd_limit: u64) {
    let series = Series::new(metrics);
    let mut tick: u64 = 0;
    let mut fds = open_fds();
    let mut refused_seen = 0;
    loop {
        let Some(handle) = snapshot.upgrade() else {
            return;
        };
        let settings = handle.load().overload;
        drop(handle);
        overload::set_max_connections(settings.max_connections);
        tick += 1;
        if tick.is_multiple_of(10) {
            fds = open_fds();
        }
        let resident = resident_bytes();
        let memory = settings
            .memory_limit
            .map_or(0.0, |limit| resident as f64 / limit as f64);
        let pressure = memory.max(fds as f64 / fd_limit.max(1) as f64);
        let mut mask = 0;
        for (a, threshold) in Action::ALL.iter().zip(settings.thresholds) {
            if pressure >= threshold {
                mask |= a.bit();
            }
        }
        let before = overload::mask();
        if mask != before {
            for (i, a) in Action::ALL.iter().enumerate() {
                let (was, is) = (before & a.bit() != 0, mask & a.bit() != 0);
                if is && !was {
                    series.activations[i].inc();
                    tracing::warn!(
                        action = a.as_str(),
                        pressure,
                        resident,
                        fds,
                        "overload: action in force"
                    );
                } else if was && !is {
                    tracing::info!(action = a.as_str(), pressure, "overload: action undone");
                }
                series.active[i].set(if is { 1.0 } else { 0.0 });
            }
            overload::set_mask(mask);
        }
        let refused = overload::refused_requests();
        series.refused.add(refused - refused_seen);
        refused_seen = refused;
        series.resident.set(resident as f64);
        series.fds.set(fds as f64);
        series.pressure.set(pressure);
        *LAST.lock() = Reading {
            resident_bytes: resident,
            memory_limit: settings.memory_limit,
            open_fds: fds,
            fd_limit,
            pressure,
        };
        std::thread::sleep(settings.check_interval);
    }
}

/// Resident memory from `/proc/self/statm` (0 where it cannot be read).
pub fn resident_bytes() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(4096) as u64
}

/// Open descriptors, counted in `/proc/self/fd`.
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}
