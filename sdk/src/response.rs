//! The response a filter sees.

use crate::backend::ResponseHandle;
use crate::{Error, UpstreamFailure};

/// A response head: from the upstream, or made by the proxy when the upstream exchange
/// failed (then [`Response::upstream_failure`] says why).
pub struct Response<'a> {
    pub(crate) raw: ResponseHandle<'a>,
}

impl Response<'_> {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.raw.status()
    }

    /// Replaces the status code (100 to 999).
    pub fn set_status(&mut self, status: u16) -> Result<(), Error> {
        self.raw.set_status(status).map_err(Error)
    }

    /// The first value of a header, if present. Names are case-insensitive.
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw.header(name)
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.raw.header_all(name)
    }

    /// Every header, in order, names in lower case.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.raw.headers()
    }

    /// Sets a header, replacing all its values.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), Error> {
        self.raw.set_header(name, value).map_err(Error)
    }

    /// Adds a value to a header, keeping the ones it has.
    pub fn append_header(&mut self, name: &str, value: &str) -> Result<(), Error> {
        self.raw.append_header(name, value).map_err(Error)
    }

    /// Removes a header and all its values.
    pub fn remove_header(&mut self, name: &str) {
        self.raw.remove_header(name)
    }

    /// Set when the proxy made this response because the upstream exchange failed.
    pub fn upstream_failure(&self) -> Option<UpstreamFailure> {
        self.raw.upstream_failure()
    }

    /// The endpoint (`ip:port`) that answered or failed, if one was chosen.
    pub fn upstream_address(&self) -> Option<String> {
        self.raw.upstream_address()
    }
}
