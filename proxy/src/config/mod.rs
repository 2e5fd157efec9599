//! The configuration: a YAML document, parsed into typed structs and checked as a
//! whole before anything uses it. Every problem is reported with its file, line and
//! field.

pub mod access;
mod check;
mod error;
mod load;
mod locate;
pub mod model;
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
