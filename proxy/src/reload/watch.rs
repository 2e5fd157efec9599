//! Reloading when a file the configuration depends on changes: the configuration
//! itself, a filter module, a file handed to a filter.
//!
//! Directories are watched rather than files, so that editors and deploy tools that
//! replace a file by renaming a new one over it are seen. Changes are debounced: a
//! reload starts once the files have been quiet for [`DEBOUNCE`], so that writing a
//! module and then the configuration that names it gives one reload, not two.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};

use super::{ReloadHandle, Trigger, DEBOUNCE};

/// A running watcher; stops when dropped.
pub struct FileWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `dir/name` with `dir` made absolute and free of symlinks, as the watcher reports
/// paths.
fn normal(path: &Path) -> PathBuf {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_owned();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    dir.canonicalize()
        .map(|d| d.join(name))
        .unwrap_or_else(|_| path.to_owned())
}

/// Starts watching the files `reloads` reports, reloading when one changes.
pub fn spawn(reloads: ReloadHandle) -> notify::Result<FileWatcher> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(tx)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    // Watching starts before this returns (and so before "weft ready"): a file changed
    // right after start is seen.
    let mut dirs = BTreeSet::new();
    let mut files = BTreeSet::new();
    resync(&mut watcher, &reloads, &mut dirs, &mut files);
    let thread = std::thread::Builder::new()
        .name("weft-watch".into())
        .spawn(move || {
            while !stopping.load(Ordering::Acquire) {
                let event = match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(e) => e,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                };
                if !relevant(&event, &files) {
                    continue;
                }
                // Wait for quiet, then reload once.
                loop {
                    match rx.recv_timeout(DEBOUNCE) {
                        Ok(_) => continue,
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                tracing::info!("a watched file changed: reloading");
                if reloads.reload_blocking(Trigger::FileChange).is_none() {
                    return;
                }
                resync(&mut watcher, &reloads, &mut dirs, &mut files);
            }
        })
        .map_err(notify::Error::io)?;
    Ok(FileWatcher {
        stop,
        thread: Some(thread),
    })
}

fn relevant(event: &notify::Result<notify::Event>, files: &BTreeSet<PathBuf>) -> bool {
    match event {
        Ok(e) => {
            !matches!(e.kind, EventKind::Access(_))
                && e.paths.iter().any(|p| files.contains(&normal(p)))
        }
        Err(err) => {
            tracing::warn!("file watcher: {err}");
            false
        }
    }
}

/// Watches the directories of the files the serving configuration depends on.
fn resync(
    watcher: &mut notify::RecommendedWatcher,
    reloads: &ReloadHandle,
    dirs: &mut BTreeSet<PathBuf>,
    files: &mut BTreeSet<PathBuf>,
) {
    *files = reloads.watched().iter().map(|p| normal(p)).collect();
    let wanted: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_owned))
        .collect();
    for gone in dirs.difference(&wanted) {
        let _ = watcher.unwatch(gone);
    }
    for new in wanted.difference(dirs) {
        if let Err(e) = watcher.watch(new, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %new.display(), "cannot watch for changes: {e}");
        }
    }
    *dirs = wanted;
}
