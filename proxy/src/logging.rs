//! The proxy's own log: what `WEFT_LOG` selects, and the level each filter logs at.
//!
//! `WEFT_LOG` takes `tracing`'s directives, read the way a filter author means them:
//! - a bare level (`debug`) applies to weft itself and to every filter; dependencies
//!   (wasmtime, cranelift, hyper, rustls...) stay at `warn` unless a directive names
//!   them (`WEFT_LOG=debug,cranelift=debug`);
//! - `filter=LEVEL` sets every filter's level, `filter.NAME=LEVEL` one filter's (its
//!   name in `filters:`), so `WEFT_LOG=warn,filter.tenant-quota=debug` shows one
//!   filter's debug lines and little else;
//! - anything else is a `tracing` directive as written (`weft::server=trace`).
//!
//! Unset, the level is `info` for weft and its filters. Colour codes are written only
//! when stderr is a terminal.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// The `tracing` target filter messages are written under.
pub const FILTER_TARGET: &str = "weft::filter";

/// What `WEFT_LOG` says, split into the directives `tracing` reads and filters' levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSpec {
    /// Directives for `EnvFilter`.
    pub directives: String,
    /// Every filter's level, when `filter=LEVEL` or a bare level set it.
    pub filters: Option<LevelFilter>,
    /// Levels of filters named one by one (`filter.NAME=LEVEL`).
    pub by_filter: HashMap<String, LevelFilter>,
}

/// The levels filters log at, set once at start.
static FILTER_LEVELS: OnceLock<LogSpec> = OnceLock::new();

/// Why `WEFT_LOG` was not understood.
#[derive(Debug, thiserror::Error)]
#[error("WEFT_LOG: {0}")]
pub struct LogSpecError(String);

fn level(text: &str) -> Option<LevelFilter> {
    text.parse::<LevelFilter>().ok()
}

impl LogSpec {
    /// Reads a `WEFT_LOG` value (`None`: unset).
    pub fn parse(value: Option<&str>) -> Result<LogSpec, LogSpecError> {
        let mut weft = LevelFilter::INFO;
        let mut filters = None;
        let mut by_filter = HashMap::new();
        let mut rest = Vec::new();
        for part in value.unwrap_or("").split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            if let Some(l) = level(part) {
                weft = l;
                filters = Some(l);
                continue;
            }
            let (target, lvl) = part.split_once('=').unwrap_or((part, "trace"));
            if target == "filter" {
                let l = level(lvl).ok_or_else(|| LogSpecError(format!("{part}: unknown level")))?;
                filters = Some(l);
            } else if let Some(name) = target.strip_prefix("filter.") {
                let l = level(lvl).ok_or_else(|| LogSpecError(format!("{part}: unknown level")))?;
                by_filter.insert(name.to_owned(), l);
            } else {
                rest.push(part.to_owned());
            }
        }
        // Filter messages pass `tracing` at the most detailed level any filter asks
        // for; `filter_enabled` then holds each filter to its own.
        let filter_max = by_filter
            .values()
            .copied()
            .chain(filters)
            .chain(std::iter::once(weft))
            .max()
            .unwrap_or(weft);
        let mut directives = vec![
            "warn".to_owned(),
            format!("weft={weft}"),
            format!("{FILTER_TARGET}={filter_max}"),
        ];
        directives.extend(rest);
        let spec = LogSpec {
            directives: directives.join(","),
            filters: filters.or(Some(weft)),
            by_filter,
        };
        EnvFilter::try_new(&spec.directives).map_err(|e| LogSpecError(e.to_string()))?;
        Ok(spec)
    }

    /// Whether the filter called `name` writes messages at `at`.
    pub fn filter_enabled(&self, name: &str, at: tracing::Level) -> bool {
        let limit = self
            .by_filter
            .get(name)
            .copied()
            .or(self.filters)
            .unwrap_or(LevelFilter::INFO);
        at <= limit
    }
}

/// Starts the log on stderr as `WEFT_LOG` says.
pub fn init() -> Result<(), LogSpecError> {
    let value = std::env::var("WEFT_LOG").ok();
    let spec = LogSpec::parse(value.as_deref())?;
    let filter = EnvFilter::new(&spec.directives);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let _ = FILTER_LEVELS.set(spec);
    Ok(())
}

/// Whether the filter called `name` writes messages at `at` (as `WEFT_LOG` says, or
/// `info` when the log was never started, as in tests).
pub fn filter_enabled(name: &str, at: tracing::Level) -> bool {
    match FILTER_LEVELS.get() {
        Some(spec) => spec.filter_enabled(name, at),
        None => at <= tracing::Level::INFO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn a_bare_level_is_weft_and_its_filters_not_dependencies() {
        let spec = LogSpec::parse(Some("debug")).unwrap();
        assert_eq!(spec.directives, "warn,weft=debug,weft::filter=debug");
        assert!(spec.filter_enabled("any", Level::DEBUG));
        assert!(!spec.filter_enabled("any", Level::TRACE));
    }

    #[test]
    fn unset_is_info() {
        let spec = LogSpec::parse(None).unwrap();
        assert_eq!(spec.directives, "warn,weft=info,weft::filter=info");
        assert!(spec.filter_enabled("x", Level::INFO));
        assert!(!spec.filter_enabled("x", Level::DEBUG));
    }

    #[test]
    fn one_filter_can_be_selected() {
        let spec = LogSpec::parse(Some("warn,filter.tenant-quota=debug")).unwrap();
        assert_eq!(spec.directives, "warn,weft=warn,weft::filter=debug");
        assert!(spec.filter_enabled("tenant-quota", Level::DEBUG));
        assert!(!spec.filter_enabled("other", Level::INFO));
        assert!(spec.filter_enabled("other", Level::WARN));
    }

    #[test]
    fn every_filter_and_dependencies_when_named() {
        let spec = LogSpec::parse(Some("filter=trace,cranelift=debug")).unwrap();
        assert_eq!(
            spec.directives,
            "warn,weft=info,weft::filter=trace,cranelift=debug"
        );
        assert!(spec.filter_enabled("x", Level::TRACE));
    }

    #[test]
    fn a_bad_level_is_named() {
        let e = LogSpec::parse(Some("filter.a=loud")).unwrap_err();
        assert_eq!(e.to_string(), "WEFT_LOG: filter.a=loud: unknown level");
    }
}
