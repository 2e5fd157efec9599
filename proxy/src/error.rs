//! Errors of the data plane, tagged with who caused them: their status and short code,
//! and nothing of a response body.
//!
//! Every failure on the request path ends as a [`ProxyError`]; the exchange turns one
//! into what the client sees in one place (`exchange::error_response`), as
//! linkerd2-proxy builds its error responses at the edge.

use http::StatusCode;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The client sent something the proxy cannot serve.
    Downstream,
    /// The upstream failed or could not be reached.
    Upstream,
    /// A filter failed or gave an answer the proxy cannot follow.
    Filter,
    /// The configuration cannot serve this request (no route, unknown cluster).
    Config,
    /// The proxy itself is short of memory or descriptors (an overload action).
    Proxy,
}

impl Source {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Downstream => "downstream",
            Source::Upstream => "upstream",
            Source::Filter => "filter",
            Source::Config => "config",
            Source::Proxy => "proxy",
        }
    }
}

/// Why the upstream exchange failed; mirrors the WIT `upstream-failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamFailure {
    /// No endpoint accepted the connection.
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
    /// A circuit breaker of the cluster refused the request.
    Overflow,
}

impl UpstreamFailure {
    /// The short name used in metrics and in `x-weft-error`.
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

    /// The status a client sees: 503 when there is nothing to send to, 504 when the
    /// upstream was too slow, 502 when it failed.
    pub fn status(self) -> StatusCode {
        match self {
            UpstreamFailure::NoEndpoints
            | UpstreamFailure::UnknownCluster
            | UpstreamFailure::Overflow => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamFailure::ConnectTimeout | UpstreamFailure::Timeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            UpstreamFailure::ConnectFailure
            | UpstreamFailure::Reset
            | UpstreamFailure::ProtocolError => StatusCode::BAD_GATEWAY,
        }
    }
}

/// A failure on the request path.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route of the listener matches the request.
    #[error("no route matches {authority}{path}")]
    NoRoute {
        /// The request's authority.
        authority: String,
        /// The request's path.
        path: String,
    },
    /// The request is malformed in a way hyper let through.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request head could not be read: malformed (400), too large (431), too slow
    /// (408), or framed in a way the proxy does not take (501).
    #[error("malformed request: {reason}")]
    Malformed {
        /// The status answered.
        status: StatusCode,
        /// What was wrong.
        reason: String,
    },
    /// The client's request body stalled: no byte for the listener's
    /// `body_idle_timeout` while the proxy was sending it upstream.
    #[error("the request body stalled: no data for {0:?}")]
    RequestBodyStalled(std::time::Duration),
    /// The request body is larger than a filter's buffer allows.
    #[error("request body larger than {limit} bytes, the most filter {filter} buffers")]
    RequestBodyTooLarge {
        /// The filter that asked for the whole body.
        filter: String,
        /// Its buffer limit.
        limit: u64,
    },
    /// The upstream exchange failed.
    #[error("upstream {failure}: {detail}", failure = .failure.as_str())]
    Upstream {
        failure: UpstreamFailure,
        /// What the proxy saw.
        detail: String,
    },
    /// The response body is larger than a filter's buffer allows.
    #[error("response body larger than {limit} bytes, the most filter {filter} buffers")]
    ResponseBodyTooLarge {
        /// The filter that asked for the whole body.
        filter: String,
        /// Its buffer limit.
        limit: u64,
    },
    /// A fail-closed filter failed.
    #[error("filter {filter} failed: {reason}")]
    FilterFailed {
        /// The filter's name.
        filter: String,
        /// Trap, deadline, memory, or a refused action.
        reason: String,
        /// The status its configuration answers with.
        status: StatusCode,
    },
    /// The request came in on a listener a reload removed; its connection is closing.
    #[error("listener {0} was removed by a configuration reload")]
    ListenerRemoved(String),
    /// The overload manager refuses new requests (memory or descriptors short).
    #[error("the proxy is overloaded: new requests are refused")]
    Overloaded,
}

impl ProxyError {
    /// Who caused it.
    pub fn source_of(&self) -> Source {
        match self {
            ProxyError::NoRoute { .. } | ProxyError::ListenerRemoved(_) => Source::Config,
            ProxyError::Upstream {
                failure: UpstreamFailure::UnknownCluster,
                ..
            } => Source::Config,
            ProxyError::BadRequest(_)
            | ProxyError::Malformed { .. }
            | ProxyError::RequestBodyStalled(_)
            | ProxyError::RequestBodyTooLarge { .. } => Source::Downstream,
            ProxyError::Upstream { .. } | ProxyError::ResponseBodyTooLarge { .. } => {
                Source::Upstream
            }
            ProxyError::FilterFailed { .. } => Source::Filter,
            ProxyError::Overloaded => Source::Proxy,
        }
    }

    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Malformed { status, .. } => *status,
            ProxyError::RequestBodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::RequestBodyStalled(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Upstream { failure, .. } => failure.status(),
            ProxyError::ResponseBodyTooLarge { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::FilterFailed { status, .. } => *status,
            ProxyError::ListenerRemoved(_) | ProxyError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The short cause put in `x-weft-error`.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no-route",
            ProxyError::BadRequest(_) => "bad-request",
            ProxyError::Malformed { .. } => "malformed-request",
            ProxyError::RequestBodyTooLarge { .. } => "request-body-too-large",
            ProxyError::RequestBodyStalled(_) => "request-body-timeout",
            ProxyError::Upstream { failure, .. } => failure.as_str(),
            ProxyError::ResponseBodyTooLarge { .. } => "response-body-too-large",
            ProxyError::FilterFailed { .. } => "filter-failed",
            ProxyError::ListenerRemoved(_) => "listener-removed",
            ProxyError::Overloaded => "overload",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_map_to_gateway_statuses() {
        assert_eq!(UpstreamFailure::ConnectFailure.status(), 502);
        assert_eq!(UpstreamFailure::Reset.status(), 502);
        assert_eq!(UpstreamFailure::ProtocolError.status(), 502);
        assert_eq!(UpstreamFailure::NoEndpoints.status(), 503);
        assert_eq!(UpstreamFailure::Timeout.status(), 504);
        assert_eq!(UpstreamFailure::ConnectTimeout.status(), 504);
    }
}
