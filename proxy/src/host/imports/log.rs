//! `weft:filter/log`: filter messages in the proxy's log, tagged with the filter and
//! held to the level `WEFT_LOG` gives it (`crate::logging`).

use crate::host::bindings::weft::filter::log::{Host, Level};
use crate::host::state::HostState;

/// Longest message kept; longer ones are cut, so a filter cannot flood the log.
const MAX_MESSAGE: usize = 8 << 10;

impl Host for HostState {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.host_calls += 1;
        let mut message = message;
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        let filter = self.identity.name.as_str();
        if !crate::logging::filter_enabled(filter, tracing_level(level)) {
            return Ok(());
        }
        match level {
            Level::Trace => tracing::trace!(target: "weft::filter", filter, "{message}"),
            Level::Debug => tracing::debug!(target: "weft::filter", filter, "{message}"),
            Level::Info => tracing::info!(target: "weft::filter", filter, "{message}"),
            Level::Warn => tracing::warn!(target: "weft::filter", filter, "{message}"),
            Level::Error => tracing::error!(target: "weft::filter", filter, "{message}"),
        }
        Ok(())
    }

    fn enabled(&mut self, level: Level) -> wasmtime::Result<bool> {
        self.host_calls += 1;
        let at = tracing_level(level);
        if !crate::logging::filter_enabled(self.identity.name.as_str(), at) {
            return Ok(false);
        }
        Ok(match level {
            Level::Trace => tracing::enabled!(target: "weft::filter", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "weft::filter", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "weft::filter", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "weft::filter", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "weft::filter", tracing::Level::ERROR),
        })
    }
}

fn tracing_level(level: Level) -> tracing::Level {
    match level {
        Level::Trace => tracing::Level::TRACE,
        Level::Debug => tracing::Level::DEBUG,
        Level::Info => tracing::Level::INFO,
        Level::Warn => tracing::Level::WARN,
        Level::Error => tracing::Level::ERROR,
    }
}
