//! Logging through the proxy's own log, tagged with the filter's name.
//!
//! Under the native test harness, messages are captured by the
//! [`TestHost`](crate::testing::TestHost) instead.

use crate::backend::host;

/// How important a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal events.
    Info,
    /// Something unexpected that the filter handled.
    Warn,
    /// Something failed.
    Error,
}

/// Writes a message at a level.
pub fn write(level: Level, message: &str) {
    host::log_write(level, message)
}

/// Whether a message at this level would be written; check it before building an
/// expensive message.
pub fn enabled(level: Level) -> bool {
    host::log_enabled(level)
}

/// Writes a message at [`Level::Trace`].
pub fn trace(message: &str) {
    write(Level::Trace, message)
}

/// Writes a message at [`Level::Debug`].
pub fn debug(message: &str) {
    write(Level::Debug, message)
}

/// Writes a message at [`Level::Info`].
pub fn info(message: &str) {
    write(Level::Info, message)
}

/// Writes a message at [`Level::Warn`].
pub fn warn(message: &str) {
    write(Level::Warn, message)
}

/// Writes a message at [`Level::Error`].
pub fn error(message: &str) {
    write(Level::Error, message)
}
