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

/// What a filter reads on every request, declared once ([`Filter::reads`]) so that the
/// proxy hands it over with each call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    pub(crate) method: bool,
    pub(crate) path: bool,
    pub(crate) authority: bool,
    pub(crate) client_address: bool,
    pub(crate) attempt: bool,
    pub(crate) peer_identity: bool,
    pub(crate) request_headers: Vec<String>,
    pub(crate) response_headers: Vec<String>,
}

impl Reads {
    /// Nothing declared.
    pub fn new() -> Self {
        Reads::default()
    }

    /// The method.
    pub fn method(mut self) -> Self {
        self.method = true;
        self
    }

    /// The path (with its query).
    pub fn path(mut self) -> Self {
        self.path = true;
        self
    }

    /// The authority (`:authority` or `Host`).
    pub fn authority(mut self) -> Self {
        self.authority = true;
        self
    }

    /// The client's address (`ip:port`), as rate limits by client read it.
    pub fn client_address(mut self) -> Self {
        self.client_address = true;
        self
    }

    /// The attempt number (1 for the first), as retry filters read it.
    pub fn attempt(mut self) -> Self {
        self.attempt = true;
        self
    }

    /// The client's verified identity ([`crate::Request::peer_identity`]). Declare it
    /// whenever the filter's decisions depend on it: the proxy then refuses to run the
    /// filter on a listener that does not verify client certificates (where the
    /// identity would always be absent), instead of letting its rules silently never
    /// match. The value itself is still read with `peer_identity()`.
    pub fn peer_identity(mut self) -> Self {
        self.peer_identity = true;
        self
    }

    /// A request header (its first value; [`crate::Request::header_all`] still asks the
    /// proxy for every value).
    pub fn request_header(mut self, name: &str) -> Self {
        self.request_headers.push(name.to_ascii_lowercase());
        self
    }

    /// A response header, for the response phases.
    pub fn response_header(mut self, name: &str) -> Self {
        self.response_headers.push(name.to_ascii_lowercase());
        self
    }

    /// Lower-case, without repeats, in the order declared.
    pub(crate) fn normalized(mut self) -> Self {
        fn dedup(names: &mut Vec<String>) {
            let mut seen = Vec::new();
            names.retain(|n| {
                let fresh = !seen.contains(n);
                seen.push(n.clone());
                fresh
            });
        }
        dedup(&mut self.request_headers);
        dedup(&mut self.response_headers);
        self
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

    /// What this filter reads on every request: these parts and headers are handed over
    /// with each phase call instead of being asked for one by one (each read of
    /// something not declared is a call into the proxy). Reading more than declared
    /// still works; declaring saves the crossings. The default declares nothing.
    ///
    /// ```
    /// # use weft_sdk::Reads;
    /// let reads = Reads::new().path().request_header("x-request-id");
    /// ```
    fn reads(&self) -> Reads {
        Reads::default()
    }

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

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigError {
    /// A field is wrong: its path within `config:` (`limit`, `rules[2].rate`; empty for
    /// the section as a whole) and what serde said.
    Field { path: String, message: String },
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Field { path, message } if path.is_empty() => f.write_str(message),
            ConfigError::Field { path, message } => write!(f, "{path}: {message}"),
            ConfigError::Other(m) => f.write_str(m),
        }
    }
}

/// The path serde_path_to_error reports, as the proxy's field paths write it
/// (`rules[2].rate`; `.` for the section itself becomes empty).
fn field_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." {
        String::new()
    } else {
        text
    }
}

/// Reads a filter's configuration from the JSON the proxy hands over, naming the field
/// in error when there is one.
pub(crate) fn parse_config<C: DeserializeOwned>(json: &str) -> Result<C, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| ConfigError::Other(format!("configuration is not JSON: {e}")))?;
    if value.is_null() {
        if let Ok(config) = serde_json::from_value(serde_json::Value::Object(Default::default())) {
            return Ok(config);
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = field_path(e.path());
        let message = e.into_inner().to_string();
        // serde names a missing field in its message, at the path of the struct that
        // lacks it: the path names the field itself.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(field);
        }
        ConfigError::Field { path, message }
    })
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

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Nested {
        rules: Vec<Required>,
    }

    #[test]
    fn missing_config_reads_as_empty_object_when_possible() {
        assert_eq!(
            parse_config::<WithDefaults>("null"),
            Ok(WithDefaults { n: 0 })
        );
        assert_eq!(parse_config::<()>("null"), Ok(()));
        let err = parse_config::<Required>("null").unwrap_err().to_string();
        assert!(err.contains("invalid type: null"), "{err}");
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = parse_config::<Required>(r#"{"n": "x"}"#).unwrap_err();
        let ConfigError::Field { path, message } = err else {
            panic!("{err:?}")
        };
        assert_eq!(path, "n");
        assert!(message.contains("invalid type: string"), "{message}");
        let err = parse_config::<Nested>(r#"{"rules": [{"n": 1}, {"n": true}]}"#).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Field { path, .. } if path == "rules[1].n"),
            "{err:?}"
        );
        let err = parse_config::<Nested>(r#"{"rules": [], "extra": 1}"#).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Field { path, message } if path == "extra" && message.contains("unknown field")),
            "{err:?}"
        );
        let err = parse_config::<Nested>(r#"{"rules": [{}]}"#).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Field { path, message } if path == "rules[0].n" && message.contains("missing field")),
            "{err:?}"
        );
        let err = parse_config::<Required>("{").unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }

    #[test]
    fn reads_are_lower_case_without_repeats() {
        let r = Reads::new()
            .request_header("X-A")
            .request_header("x-a")
            .response_header("Grpc-Status")
            .path()
            .normalized();
        assert_eq!(r.request_headers, ["x-a"]);
        assert_eq!(r.response_headers, ["grpc-status"]);
        assert!(r.path && !r.method);
    }
}
