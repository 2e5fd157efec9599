//! Where access-log lines go: stdout or a file, written by a thread of its own so that a
//! slow disk never blocks a worker. Lines wait in a bounded queue; when it is full they
//! are dropped and counted (`weft_access_log_dropped_total`), not hidden. One sink per
//! destination for the life of the process (reloads reuse it); SIGUSR1 makes every file
//! sink reopen its file, for logrotate.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use crate::metrics::{Counter, Registry};

/// Lines that may wait for the writer.
const QUEUE: usize = 16 * 1024;

/// A destination for log lines.
pub struct Sink {
    tx: SyncSender<Message>,
    dropped: Arc<Counter>,
}

enum Message {
    Line(Vec<u8>),
    Reopen,
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
    let (tx, rx) = sync_channel(QUEUE);
    let path = match dest {
        Destination::Stdout => None,
        Destination::File(p) => Some(p.clone()),
    };
    std::thread::Builder::new()
        .name("weft-access-log".into())
        .spawn(move || write_loop(rx, out, path))?;
    let label = match dest {
        Destination::Stdout => "stdout".to_owned(),
        Destination::File(p) => p.display().to_string(),
    };
    let sink = Arc::new(Sink {
        tx,
        dropped: metrics.counter(
            "weft_access_log_dropped_total",
            "Access-log lines dropped because the writer fell behind.",
            &[("destination", &label)],
        ),
    });
    all.insert(dest.clone(), sink.clone());
    Ok(sink)
}

/// Asks every file sink to reopen its file (after logrotate moved it).
pub fn reopen_all() {
    let all = sinks().lock().unwrap_or_else(|p| p.into_inner());
    for s in all.values() {
        let _ = s.tx.try_send(Message::Reopen);
    }
}

impl Sink {
    /// Queues a line (with its newline); drops and counts it if the queue is full.
    pub fn write(&self, line: Vec<u8>) {
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

fn write_loop(rx: Receiver<Message>, mut out: Box<dyn Write + Send>, path: Option<PathBuf>) {
    let mut pending: Vec<u8> = Vec::with_capacity(64 << 10);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        // Everything queued goes out in one write.
        while let Some(m) = next.take() {
            match m {
                Message::Line(l) => pending.extend_from_slice(&l),
                Message::Reopen => {
                    let _ = out.write_all(&pending);
                    let _ = out.flush();
                    pending.clear();
                    if let Some(p) = &path {
                        match open(p) {
                            Ok(f) => out = Box::new(f),
                            Err(e) => {
                                tracing::error!(path = %p.display(), "cannot reopen the access log: {e}")
                            }
                        }
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        if out.write_all(&pending).is_err() {
            tracing::warn!("access log: a write failed");
        }
        let _ = out.flush();
        pending.clear();
    }
}
