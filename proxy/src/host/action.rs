//! What filters answer, in the core's own types (the exchange never sees bindings).

use std::net::SocketAddr;
use std::time::Duration;

use super::bindings::weft::filter::types as wit;
use crate::error::UpstreamFailure;

/// A response a filter sends instead of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    /// Headers, in order; checked when the response is made.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// A filter's answer in a headers phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Go on.
    Continue,
    /// Answer with this response.
    Respond(LocalResponse),
    /// Wait, then go on.
    Delay(Duration),
    /// Send to this cluster.
    RouteTo(String),
    /// Send again after this backoff.
    Retry(Duration),
}

/// A filter's answer in a body phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyAction {
    /// Pass the chunk on.
    Continue,
    /// Pass these bytes on instead.
    Replace(Vec<u8>),
    /// Answer with this response.
    Respond(LocalResponse),
}

/// How a filter wants a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Not at all.
    None,
    /// Chunk by chunk.
    Stream,
    /// Whole, up to this many bytes.
    Buffer(u64),
}

/// The phases a filter implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Phases {
    /// Request headers.
    pub request_headers: bool,
    /// Request body.
    pub request_body: bool,
    /// Response headers.
    pub response_headers: bool,
    /// Response body.
    pub response_body: bool,
    pub log: bool,
}

/// What a filter reads on every request, handed over with each call (contract 0.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reads {
    /// The method.
    pub method: bool,
    /// The path (with its query).
    pub path: bool,
    /// The authority.
    pub authority: bool,
    /// The client's address.
    pub client_address: bool,
    /// The attempt number.
    pub attempt: bool,
    /// It reads the client's verified identity (declared; not handed over).
    pub peer_identity: bool,
    /// Request headers whose first values go with every call, in order.
    pub request_headers: Vec<http::HeaderName>,
    /// Response headers whose first values go with every response-phase call.
    pub response_headers: Vec<http::HeaderName>,
}

/// What a filter declared at `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterInfo {
    /// Its phases.
    pub phases: Phases,
    /// How it wants request bodies.
    pub request_body: BodyMode,
    /// How it wants response bodies.
    pub response_body: BodyMode,
    /// What it reads on every request.
    pub reads: Reads,
}

/// What happened, for the log phase, once the exchange is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSummary {
    /// The status the client received.
    pub status: u16,
    /// Set when the proxy answered because the upstream exchange failed.
    pub upstream_failure: Option<UpstreamFailure>,
    /// The endpoint that answered last, if any.
    pub upstream_address: Option<SocketAddr>,
    /// How many times the request was sent upstream.
    pub attempts: u32,
    /// Request body bytes received from the client.
    pub request_body_bytes: u64,
    /// Response body bytes sent to the client.
    pub response_body_bytes: u64,
    /// From the request's arrival to the end of the response.
    pub duration: Duration,
    /// False when the client or the upstream broke off the exchange.
    pub completed: bool,
}

impl From<&ExchangeSummary> for wit::ExchangeSummary {
    fn from(s: &ExchangeSummary) -> Self {
        wit::ExchangeSummary {
            status: s.status,
            upstream_failure: s.upstream_failure.map(Into::into),
            upstream_address: s.upstream_address.map(|a| a.to_string()),
            attempts: s.attempts,
            request_body_bytes: s.request_body_bytes,
            response_body_bytes: s.response_body_bytes,
            duration: u64::try_from(s.duration.as_nanos()).unwrap_or(u64::MAX),
            completed: s.completed,
        }
    }
}

impl From<wit::BodyMode> for BodyMode {
    fn from(m: wit::BodyMode) -> Self {
        match m {
            wit::BodyMode::None => BodyMode::None,
            wit::BodyMode::Stream => BodyMode::Stream,
            wit::BodyMode::Buffer(n) => BodyMode::Buffer(n),
        }
    }
}

/// Header names a filter declared, parsed; a name that is not a valid token is refused
/// (the filter's configuration with it).
fn names(list: Vec<String>) -> Result<Vec<http::HeaderName>, String> {
    list.into_iter()
        .map(|n| {
            http::HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| format!("the filter declared it reads an invalid header name {n:?}"))
        })
        .collect()
}

impl TryFrom<wit::FilterInfo> for FilterInfo {
    type Error = String;

    fn try_from(i: wit::FilterInfo) -> Result<Self, String> {
        let p = i.phases;
        let phases = Phases {
            request_headers: p.contains(wit::Phases::REQUEST_HEADERS),
            request_body: p.contains(wit::Phases::REQUEST_BODY),
            response_headers: p.contains(wit::Phases::RESPONSE_HEADERS),
            response_body: p.contains(wit::Phases::RESPONSE_BODY),
            log: p.contains(wit::Phases::LOG),
        };
        // A body mode without its phase means nothing; a phase without a mode gets none.
        let request_body = if phases.request_body {
            i.request_body.into()
        } else {
            BodyMode::None
        };
        let response_body = if phases.response_body {
            i.response_body.into()
        } else {
            BodyMode::None
        };
        let f = i.request_fields;
        Ok(FilterInfo {
            phases,
            request_body,
            response_body,
            reads: Reads {
                method: f.contains(wit::RequestFields::METHOD),
                path: f.contains(wit::RequestFields::PATH),
                authority: f.contains(wit::RequestFields::AUTHORITY),
                client_address: f.contains(wit::RequestFields::CLIENT_ADDRESS),
                attempt: f.contains(wit::RequestFields::ATTEMPT),
                peer_identity: f.contains(wit::RequestFields::PEER_IDENTITY),
                request_headers: names(i.request_headers)?,
                response_headers: names(i.response_headers)?,
            },
        })
    }
}
