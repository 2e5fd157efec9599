//! HTTP calls from a filter to a cluster the proxy knows, for example an external
//! authorization service.
//!
//! [`send`] reads as ordinary blocking code; in the proxy, the worker goes on serving
//! other requests while the filter waits. Under the native test harness, calls go to
//! the handlers a test registers with
//! [`TestHost::mock_cluster`](crate::testing::TestHost::mock_cluster).

use std::fmt;
use std::time::Duration;

use crate::backend::host;
use crate::UpstreamFailure;

/// A request to a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// The method.
    pub method: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// The `Host` to send; the cluster's name when `None`.
    pub authority: Option<String>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// A limit for the whole call; the cluster's request timeout when `None`.
    pub timeout: Option<Duration>,
}

impl OutboundRequest {
    /// A request with a method and a path, no headers and no body.
    pub fn new(method: &str, path: &str) -> Self {
        OutboundRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            authority: None,
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// A `GET` request.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// A `POST` request.
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the `Host` sent.
    pub fn authority(mut self, authority: &str) -> Self {
        self.authority = Some(authority.to_owned());
        self
    }

    /// Limits the whole call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The first value of a header, if set (names compare case-insensitively).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A cluster's whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundResponse {
    /// The status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body (at most 1 MiB).
    pub body: Vec<u8>,
}

impl OutboundResponse {
    /// A response with a status, no headers and no body.
    pub fn new(status: u16) -> Self {
        OutboundResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of a header, if present (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The cluster named is not in the proxy's configuration.
    UnknownCluster(String),
    /// The request could not be built (bad method, path or header).
    InvalidRequest(String),
    /// The exchange failed.
    Failed(UpstreamFailure),
    /// The response body was larger than the proxy accepts for filter calls (1 MiB).
    ResponseTooLarge,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::UnknownCluster(c) => write!(f, "unknown cluster {c:?}"),
            CallError::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            CallError::Failed(failure) => write!(f, "call failed: {}", failure.as_str()),
            CallError::ResponseTooLarge => f.write_str("response body larger than 1 MiB"),
        }
    }
}

impl std::error::Error for CallError {}

/// Sends a request to a cluster and waits for the whole response.
pub fn send(cluster: &str, request: &OutboundRequest) -> Result<OutboundResponse, CallError> {
    host::http_send(cluster, request)
}
