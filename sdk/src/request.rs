//! The request a filter sees.

use std::borrow::Cow;
use std::time::Duration;

use weft_abi::answer::Edit;

use crate::backend::RequestHost;
use crate::call::{self, PhaseKind, RequestCall};
use crate::Error;

/// The downstream request as it goes through the chain.
///
/// Reads see the changes earlier filters made, and this filter's own changes made
/// earlier in the same call. Changes go back to the proxy with the filter's answer and
/// apply together, before the answer is followed: a call that traps changes nothing.
/// Changes made in the request phases are what the upstream receives; changes made in
/// the response phases apply to the next attempt, if a filter asks for a retry.
///
/// What the filter declared in [`Filter::reads`](crate::Filter::reads) is handed over
/// with each call; anything else is asked of the proxy when read (one host call each),
/// so declaring the headers a filter reads on every request makes it cheaper.
pub struct Request<'a> {
    pub(crate) call: &'a mut RequestCall,
    pub(crate) host: RequestHost<'a>,
}

fn lossy(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Request<'_> {
    fn edit(&mut self, edit: Edit<'_>) -> Result<(), Error> {
        self.call.writable()?;
        call::write(|w| w.edit(edit));
        Ok(())
    }

    fn nanos(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The method, as sent (`GET`, `POST`, ...).
    pub fn method(&self) -> String {
        self.call
            .view
            .method()
            .unwrap_or_else(|| self.host.method())
    }

    /// `http` or `https`: how the client reached the proxy.
    pub fn scheme(&self) -> String {
        self.host.scheme()
    }

    /// The HTTP version the client spoke: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2` or `HTTP/3`.
    pub fn version(&self) -> String {
        self.host.version()
    }

    /// The authority (host and optional port) from `:authority` or `Host`.
    pub fn authority(&self) -> String {
        let set = call::last(|e| match e {
            Edit::SetAuthority(a) => Some((*a).to_owned()),
            _ => None,
        });
        set.or_else(|| self.call.view.authority())
            .unwrap_or_else(|| self.host.authority())
    }

    /// Replaces the authority sent upstream (a host rewrite).
    pub fn set_authority(&mut self, authority: &str) -> Result<(), Error> {
        call::authority(authority)?;
        self.edit(Edit::SetAuthority(authority))
    }

    /// The path with its query string, for example `/v1/items?limit=10`, after the
    /// proxy normalized it (dot segments removed, slashes merged, unreserved characters
    /// decoded) and after earlier filters' rewrites.
    pub fn path(&self) -> String {
        let set = call::last(|e| match e {
            Edit::SetPath(p) => Some((*p).to_owned()),
            _ => None,
        });
        set.or_else(|| self.call.view.path())
            .unwrap_or_else(|| self.host.path())
    }

    /// The path as the client sent it, before the proxy normalized it.
    pub fn original_path(&self) -> String {
        self.host.original_path()
    }

    /// Replaces the path (and query) sent upstream. It must start with `/`.
    pub fn set_path(&mut self, path: &str) -> Result<(), Error> {
        call::path(path)?;
        self.edit(Edit::SetPath(path))
    }

    /// The first value of a header, if present, as bytes. Names are case-insensitive.
    pub fn header_bytes(&self, name: &str) -> Option<Vec<u8>> {
        if name.eq_ignore_ascii_case("host") {
            return Some(self.authority().into_bytes());
        }
        call::first_value(name, true, || match self.call.view.header(name) {
            Some(v) => v,
            None => self.host.header(name),
        })
    }

    /// The first value of a header, if present, borrowed from what the proxy handed
    /// over when it can be (a header the filter declared it reads, not changed earlier
    /// in this call), else copied. Names are case-insensitive. The cheapest way to read
    /// a header on every request: no allocation for a declared header.
    ///
    /// ```ignore
    /// let Some(token) = req.header_ref("authorization") else { return Action::Continue };
    /// if token.starts_with(b"Bearer ") { /* ... */ }
    /// ```
    pub fn header_ref(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        if !name.eq_ignore_ascii_case("host") && call::unchanged() {
            if let Some(found) = self.call.view.header_ref(name) {
                return found.map(Cow::Borrowed);
            }
        }
        self.header_bytes(name).map(Cow::Owned)
    }

    /// The first value of a header, if present, as text (bytes that are not UTF-8 read
    /// as replacement characters). Names are case-insensitive.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name).map(lossy)
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        if name == "host" {
            return vec![self.authority()];
        }
        call::all_values(&name, true, || self.host.header_all(&name))
            .into_iter()
            .map(lossy)
            .collect()
    }

    /// Every header, in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        call::all_headers(true, self.host.headers())
            .into_iter()
            .map(|(n, v)| (n, lossy(v)))
            .collect()
    }

    /// Sets a header, replacing all its values.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), Error> {
        self.set_header_bytes(name, value.as_bytes())
    }

    /// Sets a header to a value given as bytes (any byte a header value may hold).
    pub fn set_header_bytes(&mut self, name: &str, value: &[u8]) -> Result<(), Error> {
        let name = call::header_name(name)?;
        call::header_value(value)?;
        self.edit(Edit::SetRequestHeader(name.as_bytes(), value))
    }

    /// Adds a value to a header, keeping the ones it has.
    pub fn append_header(&mut self, name: &str, value: &str) -> Result<(), Error> {
        let name = call::header_name(name)?;
        call::header_value(value.as_bytes())?;
        self.edit(Edit::AppendRequestHeader(name.as_bytes(), value.as_bytes()))
    }

    /// Removes a header and all its values. Headers the proxy manages are left alone.
    pub fn remove_header(&mut self, name: &str) {
        if let Ok(name) = call::header_name(name) {
            let _ = self.edit(Edit::RemoveRequestHeader(name.as_bytes()));
        }
    }

    /// Adds a header to the response the client receives, whatever answers: the
    /// upstream, a filter, or the proxy on a failure. A filter that only annotates
    /// responses (a request id, rate-limit headers) needs no response phase.
    pub fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), Error> {
        let name = call::header_name(name)?;
        call::header_value(value.as_bytes())?;
        self.edit(Edit::AddClientResponseHeader(
            name.as_bytes(),
            value.as_bytes(),
        ))
    }

    /// The client's address as `ip:port` (the TCP peer of the proxy).
    pub fn client_address(&self) -> String {
        self.call
            .view
            .client_address()
            .unwrap_or_else(|| self.host.client_address())
    }

    /// The client's IP address, without the port.
    pub fn client_ip(&self) -> String {
        let addr = self.client_address();
        match addr.rsplit_once(':') {
            Some((ip, _)) => ip.trim_start_matches('[').trim_end_matches(']').to_owned(),
            None => addr,
        }
    }

    /// The client's verified identity (a SPIFFE ID from its mTLS certificate), if it
    /// presented one.
    pub fn peer_identity(&self) -> Option<String> {
        self.host.peer_identity()
    }

    /// The name of the listener that accepted the request.
    pub fn listener(&self) -> String {
        self.host.listener()
    }

    /// The name of the route that matched.
    pub fn route(&self) -> String {
        self.host.route()
    }

    /// The cluster the request goes to: the route's, or an earlier filter's
    /// [`Action::RouteTo`](crate::Action::RouteTo).
    pub fn cluster(&self) -> String {
        self.host.cluster()
    }

    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.call
            .view
            .attempt()
            .unwrap_or_else(|| self.host.attempt())
    }

    /// The request's trace id (32 hex digits), when the request is traced.
    pub fn trace_id(&self) -> Option<String> {
        self.host.trace_id()
    }

    /// A per-request value set by a filter of the chain (for example a claim an authz
    /// filter read, for a rate-limit filter after it).
    pub fn property(&self, key: &str) -> Option<String> {
        call::last(|e| match e {
            Edit::SetProperty(k, v) if *k == key => Some((*v).to_owned()),
            _ => None,
        })
        .or_else(|| self.host.property(key))
    }

    /// Sets a per-request value; see [`Request::property`].
    pub fn set_property(&mut self, key: &str, value: &str) {
        let _ = self.edit(Edit::SetProperty(key, value));
    }

    /// Asks the proxy to keep up to `limit_bytes` of the request body so that the
    /// request can be sent again on retry. Request-headers phase only.
    pub fn set_replay_limit(&mut self, limit_bytes: u64) {
        if self.call.phase == PhaseKind::RequestHeaders {
            let _ = self.edit(Edit::SetReplayLimit(limit_bytes));
        }
    }

    /// Whether the request can be sent again: false once its body outgrew the replay
    /// limit (or no limit was set and the request has a body).
    pub fn body_replayable(&self) -> bool {
        self.host.body_replayable()
    }

    /// Overrides the route's timeout for the whole request.
    pub fn set_timeout(&mut self, timeout: Duration) {
        let _ = self.edit(Edit::SetTimeout(Self::nanos(timeout)));
    }

    /// Sets a timeout for each attempt; on expiry the attempt fails with
    /// [`UpstreamFailure::Timeout`](crate::UpstreamFailure::Timeout) and a response
    /// phase may retry it.
    pub fn set_try_timeout(&mut self, timeout: Duration) {
        let _ = self.edit(Edit::SetTryTimeout(Self::nanos(timeout)));
    }

    /// The key a consistent-hash load balancer (`ring_hash`, `maglev`) uses for this
    /// request, instead of the cluster's configured hash key.
    pub fn set_hash_key(&mut self, key: &[u8]) {
        let _ = self.edit(Edit::SetHashKey(key));
    }

    /// Adds an attribute to the request's trace span (and its access-log entry).
    pub fn span_attribute(&mut self, key: &str, value: &str) {
        let _ = self.edit(Edit::SpanAttribute(key, value));
    }
}
