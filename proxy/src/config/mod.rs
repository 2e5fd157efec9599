//! The configuration: a YAML document, parsed into typed structs and checked as a
//! whole before anything uses it. Every problem is reported with its file, line and
//! field.

pub mod access;
mod check;
mod error;
mod load;
mod locate;
pub mod model;
pub mod overload;
pub mod resilience;
pub mod route;
pub mod shared_state;

pub use check::{
    check, Checked, CheckedAccessLog, CheckedCluster, CheckedClusterTls, CheckedFilter,
    CheckedListener, CheckedRoute, CheckedTls, HttpOptions, DEFAULT_FILTER_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT, MAX_FILTER_MEMORY,
};
pub use error::{ConfigError, FieldError};
pub use load::LoadedConfig;
pub use locate::Locations;
pub use model::EscapedSlashes;

/// The fuzz target's entry: parses and checks `source` as a configuration file named
/// `fuzz.yaml` (host names are not resolved). Every refusal must be a [`ConfigError`]
/// naming that file; a panic is a bug.
#[doc(hidden)]
pub fn fuzz(source: &str) {
    check::LITERAL_ADDRESSES_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
    let path = std::path::Path::new("/nonexistent/fuzz.yaml");
    let result = LoadedConfig::parse(path, source.to_owned()).and_then(|l| check(&l).map(|_| ()));
    if let Err(e) = result {
        let text = e.to_string();
        assert!(
            text.starts_with("/nonexistent/fuzz.yaml") && !e.message.is_empty(),
            "a refusal without its file or message: {text:?}"
        );
    }
}
