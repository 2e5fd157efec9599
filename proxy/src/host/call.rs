//! What a filter call can see: the request and response heads the `request` and
//! `response` interfaces act on.
//!
//! The exchange owns a [`RequestCtx`] (and, in response phases, a [`ResponseCtx`]) and
//! moves it into the instance's store for the length of one call, then takes it back:
//! nothing is allocated per call, and no handle crosses into the guest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method};

use crate::error::UpstreamFailure;

/// The request as the chain sees and changes it.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub method: Method,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Host and optional port, from `:authority` or `Host`.
    pub authority: String,
    /// Path and query (kept as parsed: cloning it is a reference count, not a copy).
    pub path: PathAndQuery,
    /// Headers, without `Host` (see `authority`) and without hop-by-hop headers.
    pub headers: HeaderMap,
    /// The client's address.
    pub client_addr: SocketAddr,
    /// The client's verified identity (mTLS), if any.
    pub peer_identity: Option<String>,
    /// The listener's name.
    pub listener: Arc<str>,
    /// The route's name.
    pub route: Arc<str>,
    /// The cluster the request goes to.
    pub cluster: Arc<str>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Per-request values shared by the chain's filters.
    pub properties: Vec<(String, String)>,
    /// How much body to keep for replay, as a filter asked.
    pub replay_limit: Option<u64>,
    /// Whether the request can be sent again.
    pub body_replayable: bool,
    /// A filter's override of the route timeout.
    pub timeout: Option<Duration>,
    /// When the request arrived, for its deadline ([`RequestCtx::deadline`]); `None`
    /// leaves filters' delays and outbound calls unbounded by it.
    pub arrived: Option<std::time::Instant>,
    /// The route's timeout (shortened by a gRPC client's `grpc-timeout`).
    pub route_timeout: Duration,
    /// A filter's per-attempt timeout.
    pub try_timeout: Option<Duration>,
    /// Headers filters asked to add to whatever response the client gets.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// The HTTP version the client spoke.
    pub version: http::Version,
    /// The path as the client sent it, when the proxy's normalization changed it.
    pub original_path: Option<PathAndQuery>,
    /// The key a consistent-hash load balancer uses, as a filter set it.
    pub hash_key: Option<Vec<u8>>,
    /// Attributes filters added to the request's trace span.
    pub span_attributes: Vec<(String, String)>,
    /// The request's trace (when tracing is configured): filter calls record their
    /// spans in it when it is sampled.
    pub trace: Option<crate::trace::Trace>,
}

impl Default for RequestCtx {
    /// A `GET /` from `0.0.0.0:0` with no headers and nothing set, for building a
    /// request field by field.
    fn default() -> Self {
        RequestCtx {
            method: Method::GET,
            scheme: "http",
            authority: String::new(),
            path: PathAndQuery::from_static("/"),
            headers: HeaderMap::new(),
            client_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            peer_identity: None,
            listener: Arc::from(""),
            route: Arc::from(""),
            cluster: Arc::from(""),
            attempt: 1,
            properties: Vec::new(),
            replay_limit: None,
            body_replayable: true,
            timeout: None,
            arrived: None,
            route_timeout: Duration::MAX,
            try_timeout: None,
            response_headers: Vec::new(),
            version: http::Version::HTTP_11,
            original_path: None,
            hash_key: None,
            span_attributes: Vec::new(),
            trace: None,
        }
    }
}

impl RequestCtx {
    /// When the route's timeout (or a filter's override) runs out, counted from the
    /// request's arrival: filters' delays and outbound calls end there. (The upstream
    /// attempt's own clock starts at the body's end, as Envoy's route timeout.)
    pub fn deadline(&self) -> Option<std::time::Instant> {
        let total = self.timeout.unwrap_or(self.route_timeout);
        self.arrived.and_then(|a| a.checked_add(total))
    }

    /// The request's trace id (32 hex digits), when tracing is configured.
    pub fn trace_id(&self) -> Option<String> {
        self.trace.as_ref().map(|t| t.trace_id_hex())
    }

    /// The value of a property.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets a property.
    pub fn set_property(&mut self, key: String, value: String) {
        match self.properties.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.properties.push((key, value)),
        }
    }
}

/// The response head as the chain sees and changes it.
#[derive(Debug)]
pub struct ResponseCtx {
    /// The upstream's head, or the one the proxy made.
    pub head: http::response::Parts,
    /// Set when the proxy made this response because the upstream exchange failed.
    pub upstream_failure: Option<UpstreamFailure>,
    /// The endpoint that answered or failed.
    pub upstream_addr: Option<SocketAddr>,
}
