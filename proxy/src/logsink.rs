//! Where access-log lines go: stdout or a file, written by a thread of its own so that a
//! slow disk never blocks a worker. Workers append lines to the sink's buffer (a short
//! lock, a copy); the writer thread takes the whole buffer every 50 ms and writes it in
//! one call, so a busy proxy pays neither a wake-up nor a system call per line. Past
//! `MAX_PENDING` bytes waiting, lines are dropped and counted
//! (`weft_access_log_dropped_total`), not hidden. One sink per destination for the life
//! of the process (reloads reuse it); SIGUSR1 makes every file sink reopen its file, for
//! logrotate.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::metrics::{Counter, Registry};

/// Bytes that may wait for the writer before lines are dropped.
const MAX_PENDING: usize = 8 << 20;
/// How often the writer writes what is waiting.
const TICK: Duration = Duration::from_millis(50);

/// A destination for log lines.
pub struct Sink {
    pending: parking_lot::Mutex<Vec<u8>>,
    reopen: AtomicBool,
    dropped: Arc<Counter>,
}

/// Where lines go: `stdout`, or a file path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// The process's standard output.
    Stdout,
    /// A file, appended to (created if missing).
    File(PathBuf),
}

fn sinks() -> &'static Mutex<HashMap<Destination, Arc<Sink>>> {
    static SINKS: OnceLock<Mutex<HashMap<Destination, Arc<Sink>>>> = OnceLock::new();
    SINKS.get_or_init(Default::default)
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The sink for `dest`, made (and its file opened, so that a bad path is an error now)
/// the first time it is asked for.
pub fn sink(dest: &Destination, metrics: &Registry) -> io::Result<Arc<Sink>> {
    let mut all = sinks().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = all.get(dest) {
        return Ok(s.clone());
    }
    let out: Box<dyn Write + Send> = match dest {
        Destination::Stdout => Box::new(io::stdout()),
        Destination::File(p) => Box::new(open(p)?),
    };
    let label = match dest {
        Destination::Stdout => "stdout".to_owned(),
        Destination::File(p) => p.display().to_string(),
    };
    let sink = Arc::new(Sink {
        pending: parking_lot::Mutex::new(Vec::with_capacity(64 << 10)),
        reopen: AtomicBool::new(false),
        dropped: metrics.counter(
            "weft_access_log_dropped_total",
            "Access-log lines dropped because the writer fell behind.",
            &[("destination", &label)],
        ),
    });
    let path = match dest {
        Destination::Stdout => None,
        Destination::File(p) => Some(p.clone()),
    };
    let writer = sink.clone();
    std::thread::Builder::new()
        .name("weft-access-log".into())
        .spawn(move || write_loop(&writer, out, path))?;
    all.insert(dest.clone(), sink.clone());
    Ok(sink)
}

/// Asks every file sink to reopen its file (after logrotate moved it).
pub fn reopen_all() {
    let all = sinks().lock().unwrap_or_else(|p| p.into_inner());
    for s in all.values() {
        s.reopen.store(true, Ordering::Release);
    }
}

/// Waits until what every sink holds now is written (at shutdown).
pub fn flush_all() {
    let all: Vec<Arc<Sink>> = {
        let all = sinks().lock().unwrap_or_else(|p| p.into_inner());
        all.values().cloned().collect()
    };
    for s in all {
        for _ in 0..40 {
            if s.pending.lock().is_empty() {
                break;
            }
            std::thread::sleep(TICK / 2);
        }
    }
    // The last swap's write.
    std::thread::sleep(TICK);
}

impl Sink {
    /// Appends a line (with its newline), or drops and counts it if too much waits.
    pub fn write(&self, line: &[u8]) {
        let mut pending = self.pending.lock();
        if pending.len() + line.len() > MAX_PENDING {
            drop(pending);
            self.dropped.inc();
            return;
        }
        pending.extend_from_slice(line);
    }
}

fn write_loop(sink: &Sink, mut out: Box<dyn Write + Send>, path: Option<PathBuf>) {
    let mut spare: Vec<u8> = Vec::with_capacity(64 << 10);
    loop {
        std::thread::sleep(TICK);
        if sink.reopen.swap(false, Ordering::AcqRel) {
            if let Some(p) = &path {
                match open(p) {
                    Ok(f) => out = Box::new(f),
                    Err(e) => {
                        tracing::error!(path = %p.display(), "cannot reopen the access log: {e}")
                    }
                }
            }
        }
        // Swap buffers: the workers go on appending while this one is written.
        std::mem::swap(&mut *sink.pending.lock(), &mut spare);
        if spare.is_empty() {
            continue;
        }
        if let Err(e) = out.write_all(&spare).and_then(|()| out.flush()) {
            tracing::warn!("access log: a write failed: {e}");
        }
        spare.clear();
    }
}
