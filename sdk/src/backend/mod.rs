//! Where the SDK's calls go: the proxy's WIT imports when compiled to wasm32, the
//! native test host otherwise. Both sides offer the same reader types and host
//! functions, so the public API is written once.

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub use wasm::{bindings, glue};
#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::{host, RequestHost, ResponseHost};

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{host, RequestHost, ResponseHost};
