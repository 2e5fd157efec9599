//! `weft:filter/request` and `weft:filter/response`: the heads the exchange lends to
//! the instance's store for one phase call, which every function here acts on.

use std::str::FromStr;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

use super::header_text::value;
use crate::host::bindings::weft::filter::types::{Host, UpstreamFailure as WitFailure};
use crate::host::bindings::weft::filter::{request, response};
use crate::host::call::{RequestCtx, ResponseCtx};
use crate::host::state::HostState;

fn lossy(v: &HeaderValue) -> String {
    match v.to_str() {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
    }
}

fn get(map: &HeaderMap, name: &str) -> Option<String> {
    map.get(name).map(lossy)
}

fn get_all(map: &HeaderMap, name: &str) -> Vec<String> {
    map.get_all(name).iter().map(lossy).collect()
}

fn list(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| (k.as_str().to_owned(), lossy(v)))
        .collect()
}

/// `name` is checked first (see [`super::header_text::NameCache`]): it carries its
/// error.
fn set(map: &mut HeaderMap, name: Result<HeaderName, String>, v: String) -> Result<(), String> {
    map.insert(name?, value(v)?);
    Ok(())
}

fn append(map: &mut HeaderMap, name: Result<HeaderName, String>, v: String) -> Result<(), String> {
    map.append(name?, value(v)?);
    Ok(())
}

fn remove(map: &mut HeaderMap, name: Result<HeaderName, String>) {
    if let Ok(n) = name {
        map.remove(n);
    }
}

/// `ip:port` as `SocketAddr`'s `Display` writes it, without the formatting machinery
/// for the common IPv4 case (this runs per request for rate limits keyed by client).
fn address_text(addr: std::net::SocketAddr) -> String {
    let std::net::SocketAddr::V4(v4) = addr else {
        return addr.to_string();
    };
    let mut out = String::with_capacity(21);
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(&mut out, u32::from(octet));
    }
    out.push(':');
    push_decimal(&mut out, u32::from(v4.port()));
    out
}

fn push_decimal(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

fn is_host(name: &str) -> bool {
    name.eq_ignore_ascii_case("host")
}

fn valid_authority(a: &str) -> Result<(), String> {
    match http::uri::Authority::from_str(a) {
        Ok(parsed) if !a.is_empty() && !a.contains('@') && parsed.as_str() == a => Ok(()),
        _ => Err(format!("invalid authority {a:?}")),
    }
}

impl From<crate::error::UpstreamFailure> for WitFailure {
    fn from(f: crate::error::UpstreamFailure) -> Self {
        use crate::error::UpstreamFailure as F;
        match f {
            F::ConnectFailure => WitFailure::ConnectFailure,
            F::ConnectTimeout => WitFailure::ConnectTimeout,
            F::Reset => WitFailure::Reset,
            F::Timeout => WitFailure::Timeout,
            F::ProtocolError => WitFailure::ProtocolError,
            F::NoEndpoints => WitFailure::NoEndpoints,
            F::UnknownCluster => WitFailure::UnknownCluster,
        }
    }
}

impl HostState {
    fn req(&mut self) -> wasmtime::Result<&mut RequestCtx> {
        self.request
            .as_deref_mut()
            .ok_or_else(|| wasmtime::Error::msg("the request is only available during a call"))
    }

    fn resp(&mut self) -> wasmtime::Result<&mut ResponseCtx> {
        self.response.as_deref_mut().ok_or_else(|| {
            wasmtime::Error::msg("the response is only available in response phases")
        })
    }
}

impl Host for HostState {}

impl request::Host for HostState {
    fn method(&mut self) -> wasmtime::Result<String> {
        Ok(self.req()?.method.as_str().to_owned())
    }

    fn scheme(&mut self) -> wasmtime::Result<String> {
        Ok(self.req()?.scheme.to_owned())
    }

    fn authority(&mut self) -> wasmtime::Result<String> {
        Ok(self.req()?.authority.clone())
    }

    fn set_authority(&mut self, authority: String) -> wasmtime::Result<Result<(), String>> {
        let req = self.req()?;
        Ok(valid_authority(&authority).map(|()| req.authority = authority))
    }

    fn path(&mut self) -> wasmtime::Result<String> {
        Ok(self.req()?.path.as_str().to_owned())
    }

    fn set_path(&mut self, path: String) -> wasmtime::Result<Result<(), String>> {
        let req = self.req()?;
        Ok(match http::uri::PathAndQuery::from_str(&path) {
            Ok(p) if path.starts_with('/') && p.as_str() == path => {
                req.path = p;
                Ok(())
            }
            _ => Err(format!(
                "invalid path {path:?}: it must start with / and hold no spaces"
            )),
        })
    }

    fn header(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        let req = self.req()?;
        if is_host(&name) {
            return Ok(Some(req.authority.clone()));
        }
        Ok(get(&req.headers, &name))
    }

    fn header_all(&mut self, name: String) -> wasmtime::Result<Vec<String>> {
        let req = self.req()?;
        if is_host(&name) {
            return Ok(vec![req.authority.clone()]);
        }
        Ok(get_all(&req.headers, &name))
    }

    fn headers(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(list(&self.req()?.headers))
    }

    fn set_header(&mut self, name: String, value: String) -> wasmtime::Result<Result<(), String>> {
        if is_host(&name) {
            let req = self.req()?;
            return Ok(valid_authority(&value).map(|()| req.authority = value));
        }
        let name = self.names.for_change(&name);
        Ok(set(&mut self.req()?.headers, name, value))
    }

    fn append_header(
        &mut self,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        if is_host(&name) {
            self.req()?;
            return Ok(Err("a request has one host; use set-authority".to_owned()));
        }
        let name = self.names.for_change(&name);
        Ok(append(&mut self.req()?.headers, name, value))
    }

    fn remove_header(&mut self, name: String) -> wasmtime::Result<()> {
        if is_host(&name) {
            self.req()?;
            return Ok(());
        }
        let name = self.names.for_change(&name);
        remove(&mut self.req()?.headers, name);
        Ok(())
    }

    fn add_response_header(
        &mut self,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let name = self.names.for_change(&name);
        let req = self.req()?;
        if req.response_headers.len() >= 64 {
            return Ok(Err("at most 64 response headers can be added".to_owned()));
        }
        let header = name.and_then(|n| Ok((n, self::value(value)?)));
        Ok(header.map(|h| req.response_headers.push(h)))
    }

    fn client_address(&mut self) -> wasmtime::Result<String> {
        Ok(address_text(self.req()?.client_addr))
    }

    fn peer_identity(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.req()?.peer_identity.clone())
    }

    fn listener(&mut self) -> wasmtime::Result<String> {
        Ok(self.req()?.listener.to_string())
    }

    fn route(&mut self) -> wasmtime::Result<String> {
        Ok(self.req()?.route.to_string())
    }

    fn cluster(&mut self) -> wasmtime::Result<String> {
        Ok(self.req()?.cluster.to_string())
    }

    fn attempt(&mut self) -> wasmtime::Result<u32> {
        Ok(self.req()?.attempt)
    }

    fn property(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.req()?.property(&key).map(str::to_owned))
    }

    fn set_property(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        let req = self.req()?;
        if req.properties.len() >= 256 && req.property(&key).is_none() {
            return Err(wasmtime::Error::msg("more than 256 request properties"));
        }
        req.set_property(key, value);
        Ok(())
    }

    fn set_replay_limit(&mut self, limit_bytes: u64) -> wasmtime::Result<()> {
        let req = self.req()?;
        req.replay_limit = Some(req.replay_limit.map_or(limit_bytes, |l| l.max(limit_bytes)));
        Ok(())
    }

    fn body_replayable(&mut self) -> wasmtime::Result<bool> {
        Ok(self.req()?.body_replayable)
    }

    fn set_timeout(&mut self, ms: u32) -> wasmtime::Result<()> {
        self.req()?.timeout = Some(Duration::from_millis(ms.into()));
        Ok(())
    }

    fn set_try_timeout(&mut self, ms: u32) -> wasmtime::Result<()> {
        self.req()?.try_timeout = Some(Duration::from_millis(ms.into()));
        Ok(())
    }
}

impl response::Host for HostState {
    fn status(&mut self) -> wasmtime::Result<u16> {
        Ok(self.resp()?.head.status.as_u16())
    }

    fn set_status(&mut self, status: u16) -> wasmtime::Result<Result<(), String>> {
        let resp = self.resp()?;
        Ok(match StatusCode::from_u16(status) {
            Ok(s) => {
                resp.head.status = s;
                Ok(())
            }
            Err(_) => Err(format!("invalid status {status}")),
        })
    }

    fn header(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(get(&self.resp()?.head.headers, &name))
    }

    fn header_all(&mut self, name: String) -> wasmtime::Result<Vec<String>> {
        Ok(get_all(&self.resp()?.head.headers, &name))
    }

    fn headers(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(list(&self.resp()?.head.headers))
    }

    fn set_header(&mut self, name: String, value: String) -> wasmtime::Result<Result<(), String>> {
        let name = self.names.for_change(&name);
        Ok(set(&mut self.resp()?.head.headers, name, value))
    }

    fn append_header(
        &mut self,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let name = self.names.for_change(&name);
        Ok(append(&mut self.resp()?.head.headers, name, value))
    }

    fn remove_header(&mut self, name: String) -> wasmtime::Result<()> {
        let name = self.names.for_change(&name);
        remove(&mut self.resp()?.head.headers, name);
        Ok(())
    }

    fn failure(&mut self) -> wasmtime::Result<Option<WitFailure>> {
        Ok(self.resp()?.upstream_failure.map(Into::into))
    }

    fn upstream_address(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.resp()?.upstream_addr.map(|a| a.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::header_text::name_for_change;
    use super::*;

    #[test]
    fn managed_headers_cannot_change() {
        let n = name_for_change;
        let mut m = HeaderMap::new();
        assert!(set(&mut m, n("Transfer-Encoding"), "chunked".into())
            .unwrap_err()
            .contains("managed by the proxy"));
        assert!(set(&mut m, n("content-length"), "1".into()).is_err());
        assert!(set(&mut m, n("bad name"), "x".into())
            .unwrap_err()
            .contains("invalid header name"));
        assert!(set(&mut m, n("x-ok"), "line\nbreak".into())
            .unwrap_err()
            .contains("invalid header value"));
        set(&mut m, n("X-Ok"), "1".into()).unwrap();
        append(&mut m, n("x-ok"), "2".into()).unwrap();
        assert_eq!(get_all(&m, "x-ok"), vec!["1", "2"]);
    }

    #[test]
    fn addresses_read_as_display_writes_them() {
        for a in [
            "127.0.0.1:8080",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:443",
        ] {
            let addr: std::net::SocketAddr = a.parse().unwrap();
            assert_eq!(address_text(addr), a);
        }
    }

    #[test]
    fn authorities_are_checked() {
        assert!(valid_authority("example.com:8080").is_ok());
        assert!(valid_authority("user@example.com").is_err());
        assert!(valid_authority("a b").is_err());
        assert!(valid_authority("").is_err());
    }
}
