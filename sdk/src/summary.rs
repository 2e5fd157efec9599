//! What the log phase learns about an exchange, and why the proxy may have answered
//! instead of the upstream.

use std::time::Duration;

/// Why the proxy answered instead of the upstream (with 502, 503 or 504).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamFailure {
    /// No endpoint accepted the connection (refused, unreachable).
    ConnectFailure,
    /// Connecting took longer than the cluster's connect timeout.
    ConnectTimeout,
    /// The connection closed or was reset before a complete response head.
    Reset,
    /// No response head within the request's timeout or per-try timeout.
    Timeout,
    /// The upstream sent something that is not valid HTTP.
    ProtocolError,
    /// The cluster has no endpoint to send to.
    NoEndpoints,
    /// The request named a cluster the proxy does not know.
    UnknownCluster,
    /// A circuit breaker of the cluster refused the request (too many connections,
    /// pending or active requests, or retries): 503 with `x-weft-error: overflow`.
    Overflow,
}

impl UpstreamFailure {
    /// A short name, as used in metrics labels and in the proxy's `x-weft-error` header:
    /// `connect-failure`, `connect-timeout`, `reset`, `timeout`, `protocol-error`,
    /// `no-endpoints`, `unknown-cluster` or `overflow`.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::ConnectFailure => "connect-failure",
            UpstreamFailure::ConnectTimeout => "connect-timeout",
            UpstreamFailure::Reset => "reset",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::ProtocolError => "protocol-error",
            UpstreamFailure::NoEndpoints => "no-endpoints",
            UpstreamFailure::UnknownCluster => "unknown-cluster",
            UpstreamFailure::Overflow => "overflow",
        }
    }
}

/// What happened in an exchange, handed to [`crate::Filter::on_log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSummary {
    /// The status the client received.
    pub status: u16,
    /// Set when the proxy answered because the upstream exchange failed.
    pub upstream_failure: Option<UpstreamFailure>,
    /// The endpoint that answered last, if any.
    pub upstream_address: Option<String>,
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

impl Default for ExchangeSummary {
    fn default() -> Self {
        ExchangeSummary {
            status: 200,
            upstream_failure: None,
            upstream_address: None,
            attempts: 1,
            request_body_bytes: 0,
            response_body_bytes: 0,
            duration: Duration::ZERO,
            completed: true,
        }
    }
}
