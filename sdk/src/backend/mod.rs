//! Where the SDK's calls go: the proxy's WIT imports when compiled to wasm32, the
//! native test host otherwise. Both sides offer the same handle types and host
//! functions, so the public API is written once.

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub use wasm::{bindings, glue};
#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::{host, RequestHandle, ResponseHandle};

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{host, RequestHandle, ResponseHandle};

/// Header checks shared by the native host, mirroring what the proxy accepts.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) mod headers {
    /// Checks a header name (an RFC 9110 token) and returns it in lower case.
    pub(crate) fn name(name: &str) -> Result<String, String> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if valid {
            Ok(name.to_ascii_lowercase())
        } else {
            Err(format!("invalid header name {name:?}"))
        }
    }

    /// Checks a header value: visible characters, spaces and tabs, no line breaks.
    pub(crate) fn value(value: &str) -> Result<(), String> {
        if value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        {
            Ok(())
        } else {
            Err(format!("invalid header value {value:?}"))
        }
    }
}
