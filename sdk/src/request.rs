//! The request a filter sees.

use std::time::Duration;

use crate::backend::RequestHandle;
use crate::Error;

/// The downstream request as it goes through the chain.
///
/// Reads see the changes earlier filters made. Changes made in the request phases are
/// what the upstream receives; changes made in the response phases apply to the next
/// attempt, if a filter asks for a retry.
pub struct Request<'a> {
    pub(crate) raw: RequestHandle<'a>,
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Request<'_> {
    /// The method, as sent (`GET`, `POST`, ...).
    pub fn method(&self) -> String {
        self.raw.method()
    }

    /// `http` or `https`: how the client reached the proxy.
    pub fn scheme(&self) -> String {
        self.raw.scheme()
    }

    /// The authority (host and optional port) from `:authority` or `Host`.
    pub fn authority(&self) -> String {
        self.raw.authority()
    }

    /// Replaces the authority sent upstream (a host rewrite).
    pub fn set_authority(&mut self, authority: &str) -> Result<(), Error> {
        self.raw.set_authority(authority).map_err(Error)
    }

    /// The path with its query string, for example `/v1/items?limit=10`.
    pub fn path(&self) -> String {
        self.raw.path()
    }

    /// Replaces the path (and query) sent upstream. It must start with `/`.
    pub fn set_path(&mut self, path: &str) -> Result<(), Error> {
        self.raw.set_path(path).map_err(Error)
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

    /// Adds a header to the response the client receives, whatever answers: the upstream,
    /// a filter, or the proxy on a failure. A filter that only annotates responses (with a
    /// request id, rate-limit headers, ...) can do it here and needs no response phase,
    /// which saves a call per request.
    pub fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), Error> {
        self.raw.add_response_header(name, value).map_err(Error)
    }

    /// The client's address as `ip:port`.
    pub fn client_address(&self) -> String {
        self.raw.client_address()
    }

    /// The client's IP address, without the port.
    pub fn client_ip(&self) -> String {
        let mut addr = self.client_address();
        let ip = strip_port(&addr);
        let (start, len) = (ip.as_ptr() as usize - addr.as_ptr() as usize, ip.len());
        // In place: no parsing and re-printing (which costs in wasm).
        addr.truncate(start + len);
        addr.drain(..start);
        addr
    }

    /// The client's verified identity (a SPIFFE ID from its mTLS certificate).
    pub fn peer_identity(&self) -> Option<String> {
        self.raw.peer_identity()
    }

    /// The name of the listener that accepted the request.
    pub fn listener(&self) -> String {
        self.raw.listener()
    }

    /// The name of the route that matched.
    pub fn route(&self) -> String {
        self.raw.route()
    }

    /// The cluster the request goes to: the route's, or one set by
    /// [`crate::Action::RouteTo`].
    pub fn cluster(&self) -> String {
        self.raw.cluster()
    }

    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.raw.attempt()
    }

    /// A per-request value shared by every filter of the chain.
    pub fn property(&self, key: &str) -> Option<String> {
        self.raw.property(key)
    }

    /// Sets a per-request value that later filters and phases can read.
    pub fn set_property(&mut self, key: &str, value: &str) {
        self.raw.set_property(key, value)
    }

    /// Asks the proxy to keep up to `limit_bytes` of the request body so the request can
    /// be sent again on retry. Call it in the request-headers phase.
    pub fn set_replay_limit(&mut self, limit_bytes: u64) {
        self.raw.set_replay_limit(limit_bytes)
    }

    /// Whether the request can be sent again (false once its body outgrew the replay
    /// limit).
    pub fn body_replayable(&self) -> bool {
        self.raw.body_replayable()
    }

    /// Overrides the route's timeout for the whole request.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.raw.set_timeout(millis(timeout))
    }

    /// Sets a timeout for each attempt; on expiry the attempt fails with
    /// [`crate::UpstreamFailure::Timeout`].
    pub fn set_try_timeout(&mut self, timeout: Duration) {
        self.raw.set_try_timeout(millis(timeout))
    }
}

/// `1.2.3.4:5` → `1.2.3.4`, `[::1]:5` → `::1`; an address without a port is kept.
fn strip_port(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(addr, |(ip, _)| ip);
    }
    match addr.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => addr,
    }
}

#[cfg(test)]
mod strip_port_tests {
    use super::strip_port;

    #[test]
    fn strips_the_port_of_v4_and_v6_addresses() {
        assert_eq!(strip_port("10.1.2.3:40000"), "10.1.2.3");
        assert_eq!(strip_port("[::1]:443"), "::1");
        assert_eq!(strip_port("[2001:db8::7]:8080"), "2001:db8::7");
        assert_eq!(strip_port("2001:db8::7"), "2001:db8::7");
        assert_eq!(strip_port("10.1.2.3"), "10.1.2.3");
    }
}
