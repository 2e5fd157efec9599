//! The [`Filter`] trait and what a filter declares about itself.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::{Action, BodyAction, ExchangeSummary, Request, Response};

/// How a filter wants a request or response body delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyMode {
    /// Not at all: the body streams past the filter.
    #[default]
    None,
    /// Chunk by chunk as it arrives, never held whole.
    Stream,
    /// Whole, in one call, up to this many bytes. A larger request body is answered with
    /// 413, a larger response body with 502.
    Buffer(u64),
}

/// The phases a filter implements. [`#[weft_sdk::filter]`](crate::filter) fills this in
/// from the methods an `impl Filter` block defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// `on_request_headers` is defined.
    pub request_headers: bool,
    /// `on_request_body` is defined.
    pub request_body: bool,
    /// `on_response_headers` is defined.
    pub response_headers: bool,
    /// `on_response_body` is defined.
    pub response_body: bool,
    /// `on_log` is defined.
    pub log: bool,
}

impl Phases {
    /// Every phase.
    pub const ALL: Phases = Phases {
        request_headers: true,
        request_body: true,
        response_headers: true,
        response_body: true,
        log: true,
    };
}

/// What the proxy hands a filter when it starts, besides its configuration.
#[derive(Debug, Clone, Default)]
pub struct InitContext {
    pub(crate) name: String,
    pub(crate) files: BTreeMap<String, Vec<u8>>,
}

impl InitContext {
    /// The filter's name in the proxy's configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A file the configuration lists under the filter's `files:` (for example a JWKS),
    /// read by the proxy: a filter has no file system of its own.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }
}

/// A proxy filter: built once per instance from its configuration, then asked about
/// each phase of each request it sees.
///
/// Every phase method has a default that lets the request go on, so a filter defines
/// only the phases it needs; [`#[weft_sdk::filter]`](crate::filter) tells the proxy
/// which those are, and the others cost nothing.
///
/// Methods take `&self`: keep per-request data in request properties
/// ([`Request::set_property`]) and cross-request data in [`crate::state`], because the
/// proxy runs many instances of a filter and any of them may serve any phase.
pub trait Filter: Sized + 'static {
    /// The filter's configuration: its `config:` section in the proxy's YAML, read with
    /// serde. A filter configured without a `config:` section gets `{}` (or `null` if
    /// the type does not accept `{}`).
    type Config: DeserializeOwned;

    /// Builds the filter. An error refuses the configuration: `weft validate` and a
    /// reload report it, with the line of the filter's `config:`.
    fn new(config: Self::Config, ctx: &InitContext) -> Result<Self, String>;

    /// How this filter wants request bodies, when it defines `on_request_body`.
    fn request_body_mode(&self) -> BodyMode {
        BodyMode::Stream
    }

    /// How this filter wants response bodies, when it defines `on_response_body`.
    fn response_body_mode(&self) -> BodyMode {
        BodyMode::Stream
    }

    /// The request head has arrived. Change it, answer it, delay it or route it.
    fn on_request_headers(&self, req: &mut Request) -> Action {
        let _ = req;
        Action::Continue
    }

    /// Request body data, as [`Filter::request_body_mode`] asks. `end_of_stream` is true
    /// for the last call of a request.
    fn on_request_body(&self, req: &mut Request, body: &[u8], end_of_stream: bool) -> BodyAction {
        let _ = (req, body, end_of_stream);
        BodyAction::Continue
    }

    /// The response head, from the upstream or made by the proxy when the upstream
    /// failed ([`Response::upstream_failure`]). Change it, replace it, or retry.
    fn on_response_headers(&self, req: &mut Request, resp: &mut Response) -> Action {
        let _ = (req, resp);
        Action::Continue
    }

    /// Response body data, as [`Filter::response_body_mode`] asks.
    fn on_response_body(
        &self,
        req: &mut Request,
        resp: &mut Response,
        body: &[u8],
        end_of_stream: bool,
    ) -> BodyAction {
        let _ = (req, resp, body, end_of_stream);
        BodyAction::Continue
    }

    /// The exchange is over: record metrics or write an access log.
    fn on_log(&self, req: &Request, summary: &ExchangeSummary) {
        let _ = (req, summary);
    }

    /// Which phases this implementation defines. Filled in by
    /// [`#[weft_sdk::filter]`](crate::filter); do not set it by hand.
    #[doc(hidden)]
    const __PHASES: Phases = Phases::ALL;
}

/// Reads a filter's configuration from the JSON the proxy hands over.
pub(crate) fn parse_config<C: DeserializeOwned>(json: &str) -> Result<C, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("configuration is not JSON: {e}"))?;
    if value.is_null() {
        if let Ok(config) = serde_json::from_value(serde_json::Value::Object(Default::default())) {
            return Ok(config);
        }
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct WithDefaults {
        #[serde(default)]
        n: u32,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Required {
        n: u32,
    }

    #[test]
    fn missing_config_reads_as_empty_object_when_possible() {
        assert_eq!(
            parse_config::<WithDefaults>("null"),
            Ok(WithDefaults { n: 0 })
        );
        assert_eq!(parse_config::<()>("null"), Ok(()));
        let err = parse_config::<Required>("null").unwrap_err();
        assert!(err.contains("invalid type: null"), "{err}");
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = parse_config::<Required>(r#"{"n": "x"}"#).unwrap_err();
        assert!(err.contains("invalid type: string"), "{err}");
        let err = parse_config::<Required>("{").unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
    }
}
