//! The authz filter built with its `ext_authz` mode: the same filter and configuration
//! as `authz`, plus calls to an external authorization service. A separate module
//! because a filter that can make outbound calls is called asynchronously, which costs
//! more per call; `authz.wasm` stays synchronous. See the authz crate for the
//! configuration.

pub use authz::Authz;
