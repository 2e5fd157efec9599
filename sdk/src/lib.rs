//! Write filters for the [weft] proxy in Rust.
//!
//! A filter is a type implementing [`Filter`]: it is built from its configuration (any
//! serde type) and answers the phases of a request it cares about. The
//! [`#[weft_sdk::filter]`](filter) attribute on the `impl` exports it as a WebAssembly
//! component and records which phases it implements, so the proxy calls only those.
//!
//! ```
//! use weft_sdk::{Action, Filter, InitContext, Request, Response};
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     header: String,
//! }
//!
//! /// Adds a header naming the proxy to every response.
//! struct Stamp {
//!     header: String,
//! }
//!
//! #[weft_sdk::filter]
//! impl Filter for Stamp {
//!     type Config = Config;
//!
//!     fn new(config: Config, _ctx: &InitContext) -> Result<Self, String> {
//!         Ok(Stamp { header: config.header })
//!     }
//!
//!     fn on_response_headers(&self, _req: &mut Request, resp: &mut Response) -> Action {
//!         resp.set_header(&self.header, "weft").ok();
//!         Action::Continue
//!     }
//! }
//!
//! // The same code runs natively under the test harness:
//! let harness = weft_sdk::testing::Harness::<Stamp>::new(r#"{"header": "x-via"}"#).unwrap();
//! let mut req = weft_sdk::testing::TestRequest::get("/");
//! let mut resp = weft_sdk::testing::TestResponse::new(200);
//! harness.on_response_headers(&mut req, &mut resp);
//! assert_eq!(resp.header_now("x-via").as_deref(), Some("weft"));
//! ```
//!
//! The [`guide`] has a worked example for each host module and the test harness.
//!
//! Build the component with `weft filter build` (it picks the wasm toolchain the machine
//! has) and list it under `filters:` in the proxy's configuration.
//!
//! What a filter can reach beyond the request is what the host gives it, each in its
//! own module: [`log`], [`clock`], [`random`], [`metrics`], [`state`] (shared across
//! instances and workers) and [`http`] (calls to clusters). A filter keeps per-request
//! data in request properties ([`Request::set_property`]) and cross-request data in
//! [`state`], never in its own fields: the proxy runs many instances of a filter and any
//! of them may serve any phase of any request.
//!
//! [weft]: https://github.com/weft-proxy/weft

#![deny(missing_docs)]

extern crate self as weft_sdk;

mod action;
#[cfg(any(target_arch = "wasm32", test))]
mod alloc;
mod backend;
mod call;
mod error;
mod filter;
#[cfg(not(target_arch = "wasm32"))]
mod record;
mod request;
mod response;
mod summary;

pub mod clock;
pub mod config;
pub mod http;
pub mod log;
pub mod matching;
pub mod metrics;
pub mod random;
pub mod state;
pub mod testing;

/// The SDK guide (`sdk/README.md`): a worked example per host module, each a doctest.
#[doc = include_str!("../README.md")]
pub mod guide {}
pub mod text;

#[doc(hidden)]
pub mod __private;

#[cfg(all(target_arch = "wasm32", feature = "fast-alloc"))]
#[global_allocator]
static ALLOC: alloc::FilterAlloc = alloc::FilterAlloc::new();

pub use action::{Action, BodyAction, LocalResponse};
pub use error::Error;
pub use filter::{BodyMode, Filter, InitContext, Phases, Reads};
pub use request::Request;
pub use response::Response;
pub use summary::{ExchangeSummary, UpstreamFailure};

/// Exports a [`Filter`] implementation as the component's filter.
///
/// Put it on the `impl Filter for T` block. It records which phase methods the block
/// defines (the proxy calls only those) and, when compiling for wasm32, exports the
/// filter. A crate exports exactly one filter.
pub use weft_sdk_macros::filter;
