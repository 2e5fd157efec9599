//! What a filter answers.

use std::time::Duration;

/// A response the filter sends instead of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// The status code.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl LocalResponse {
    /// A response with a status, no headers and no body.
    pub fn new(status: u16) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of a header, if set (names compare case-insensitively).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a filter answers in a headers phase.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Action {
    /// Go on to the next filter, then the upstream (or the client).
    #[default]
    Continue,
    /// Stop the chain and answer with this response.
    Respond(LocalResponse),
    /// Wait, then go on (fault injection). The proxy serves other requests meanwhile.
    Delay(Duration),
    /// Send the request to this cluster instead of the route's (request phase only).
    RouteTo(String),
    /// Discard this response and send the request again after a backoff (response
    /// phase only). The proxy refuses it when the body cannot be replayed, see
    /// [`crate::Request::body_replayable`].
    Retry {
        /// How long to wait before the next attempt.
        backoff: Duration,
    },
}

impl Action {
    /// Answers with a status and a plain-text body.
    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Action {
        Action::Respond(
            LocalResponse::new(status)
                .header("content-type", "text/plain; charset=utf-8")
                .body(body),
        )
    }
}

/// What a filter answers in a body phase.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BodyAction {
    /// Pass the data on unchanged.
    #[default]
    Continue,
    /// Pass these bytes on instead.
    Replace(Vec<u8>),
    /// Stop and answer with this response: always possible for request bodies, and for
    /// response bodies only in [`crate::BodyMode::Buffer`] mode.
    Respond(LocalResponse),
}
