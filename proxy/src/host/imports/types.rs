//! `weft:filter/request` and `weft:filter/response`: reads of the heads the exchange
//! lends to the instance's store for one phase call (what the filter did not ask to
//! have handed over with the call). Changes come back as edits with the answer
//! (`host::edits`).

use http::HeaderMap;

use crate::host::bindings::weft::filter::types::{
    HeaderField, Host, UpstreamFailure as WitFailure,
};
use crate::host::bindings::weft::filter::{request, response};
use crate::host::call::{RequestCtx, ResponseCtx};
use crate::host::state::HostState;

/// `ip:port` as `SocketAddr`'s `Display` writes it.
pub(crate) fn address_text(addr: std::net::SocketAddr) -> String {
    match address_v4(addr) {
        // ASCII digits, dots and a colon.
        Some((out, n)) => String::from_utf8(out[..n].to_vec()).unwrap_or_default(),
        None => addr.to_string(),
    }
}

/// [`address_text`] for the common IPv4 case without the formatting machinery and
/// without allocating (this runs per request for rate limits keyed by client): the
/// text in a stack buffer and its length. `None` for IPv6.
pub(crate) fn address_v4(addr: std::net::SocketAddr) -> Option<([u8; 21], usize)> {
    let std::net::SocketAddr::V4(v4) = addr else {
        return None;
    };
    let mut out = [0u8; 21];
    let mut n = 0;
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        n += write_decimal(&mut out[n..], u32::from(octet));
    }
    out[n] = b':';
    n += 1;
    n += write_decimal(&mut out[n..], u32::from(v4.port()));
    Some((out, n))
}

/// Writes `v` (below 100,000) in decimal at the start of `out`; returns the length.
fn write_decimal(out: &mut [u8], v: u32) -> usize {
    let len = match v {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    };
    let mut v = v;
    for i in (0..len).rev() {
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    len
}

fn is_host(name: &str) -> bool {
    name.eq_ignore_ascii_case("host")
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
            F::Overflow => WitFailure::Overflow,
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

fn bytes_of(map: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    map.get(name).map(|v| v.as_bytes().to_vec())
}

fn all_bytes(map: &HeaderMap, name: &str) -> Vec<Vec<u8>> {
    map.get_all(name)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

fn fields(map: &HeaderMap) -> Vec<HeaderField> {
    map.iter()
        .map(|(k, v)| HeaderField {
            name: k.as_str().to_owned(),
            value: v.as_bytes().to_vec(),
        })
        .collect()
}

fn version_text(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

impl request::Host for HostState {
    fn method(&mut self) -> wasmtime::Result<String> {
        self.host_calls += 1;
        Ok(self.req()?.method.as_str().to_owned())
    }

    fn scheme(&mut self) -> wasmtime::Result<String> {
        self.host_calls += 1;
        Ok(self.req()?.scheme.to_owned())
    }

    fn version(&mut self) -> wasmtime::Result<String> {
        self.host_calls += 1;
        Ok(version_text(self.req()?.version).to_owned())
    }

    fn authority(&mut self) -> wasmtime::Result<String> {
        self.host_calls += 1;
        Ok(self.req()?.authority.clone())
    }

    fn path(&mut self) -> wasmtime::Result<String> {
        self.host_calls += 1;
        Ok(self.req()?.path.as_str().to_owned())
    }

    fn original_path(&mut self) -> wasmtime::Result<String> {
        self.host_calls += 1;
        let req = self.req()?;
        Ok(req
            .original_path
            .as_ref()
            .unwrap_or(&req.path)
            .as_str()
            .to_owned())
    }

    fn header(&mut self, name: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.host_calls += 1;
        let req = self.req()?;
        if is_host(&name) {
            return Ok(Some(req.authority.as_bytes().to_vec()));
        }
        Ok(bytes_of(&req.headers, &name))
    }

    fn header_all(&mut self, name: String) -> wasmtime::Result<Vec<Vec<u8>>> {
        self.host_calls += 1;
        let req = self.req()?;
        if is_host(&name) {
            return Ok(vec![req.authority.as_bytes().to_vec()]);
        }
        Ok(all_bytes(&req.headers, &name))
    }

    fn headers(&mut self) -> wasmtime::Result<Vec<HeaderField>> {
        self.host_calls += 1;
        Ok(fields(&self.req()?.headers))
    }

    fn client_address(&mut self) -> wasmtime::Result<String> {
        self.host_calls += 1;
        Ok(address_text(self.req()?.client_addr))
    }

    fn peer_identity(&mut self) -> wasmtime::Result<Option<String>> {
        self.host_calls += 1;
        Ok(self.req()?.peer_identity.clone())
    }

    fn listener(&mut self) -> wasmtime::Result<String> {
        self.host_calls += 1;
        Ok(self.req()?.listener.to_string())
    }

    fn route(&mut self) -> wasmtime::Result<String> {
        self.host_calls += 1;
        Ok(self.req()?.route.to_string())
    }

    fn cluster(&mut self) -> wasmtime::Result<String> {
        self.host_calls += 1;
        Ok(self.req()?.cluster.to_string())
    }

    fn attempt(&mut self) -> wasmtime::Result<u32> {
        self.host_calls += 1;
        Ok(self.req()?.attempt)
    }

    fn trace_id(&mut self) -> wasmtime::Result<Option<String>> {
        self.host_calls += 1;
        Ok(self.req()?.trace_id())
    }

    fn property(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.host_calls += 1;
        Ok(self.req()?.property(&key).map(str::to_owned))
    }

    fn body_replayable(&mut self) -> wasmtime::Result<bool> {
        self.host_calls += 1;
        Ok(self.req()?.body_replayable)
    }
}

impl response::Host for HostState {
    fn header(&mut self, name: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.host_calls += 1;
        Ok(bytes_of(&self.resp()?.head.headers, &name))
    }

    fn header_all(&mut self, name: String) -> wasmtime::Result<Vec<Vec<u8>>> {
        self.host_calls += 1;
        Ok(all_bytes(&self.resp()?.head.headers, &name))
    }

    fn headers(&mut self) -> wasmtime::Result<Vec<HeaderField>> {
        self.host_calls += 1;
        Ok(fields(&self.resp()?.head.headers))
    }

    fn upstream_address(&mut self) -> wasmtime::Result<Option<String>> {
        self.host_calls += 1;
        Ok(self.resp()?.upstream_addr.map(|a| a.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
