//! The request a runner serves: from an HTTP/1.1 request file, from flags, or made up
//! to match the route.

use std::path::Path;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version};

use crate::body::ProxyBody;
use crate::config::route::{HeaderRule, HostMatch, PathMatch, RouteMatch};

/// One request, reusable: each [`RequestSpec::to_request`] makes a fresh copy.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Host and optional port (sent as `Host`).
    pub authority: String,
    /// Headers other than `Host`.
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RequestSpec {
    /// A request the route takes: its first method (or GET), its exact path or prefix
    /// (or `/`), its exact host (or one its suffix takes, or `bench.local`), and a value
    /// for each header it requires.
    pub fn matching(matcher: &RouteMatch) -> RequestSpec {
        let method = matcher.methods.first().cloned().unwrap_or(Method::GET);
        let path = match &matcher.path {
            PathMatch::Any => "/".to_owned(),
            PathMatch::Prefix(p) | PathMatch::Exact(p) => p.clone(),
        };
        let authority = match &matcher.host {
            HostMatch::Any => "bench.local".to_owned(),
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Suffix(s) => format!("bench{s}"),
        };
        let mut headers = HeaderMap::new();
        for (name, rule) in &matcher.headers {
            let value = match rule {
                HeaderRule::Exact(v) | HeaderRule::Prefix(v) => v.as_str(),
                HeaderRule::Present(true) => "1",
                HeaderRule::Present(false) => continue,
            };
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name.clone(), v);
            }
        }
        RequestSpec {
            method,
            path,
            authority,
            headers,
            body: Bytes::new(),
        }
    }

    /// A request read from a file holding one HTTP/1.1 request as it would be sent:
    /// request line, headers (`Host` among them), an empty line, and the body (its
    /// length is whatever follows; `Content-Length` is set to it).
    pub fn from_file(path: &Path) -> anyhow::Result<RequestSpec> {
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&raw).with_context(|| format!("{}: not an HTTP/1.1 request", path.display()))
    }

    /// [`RequestSpec::from_file`] on bytes. Bare `\n` line ends are accepted.
    pub fn parse(raw: &[u8]) -> anyhow::Result<RequestSpec> {
        let (head_len, sep) = match find(raw, b"\r\n\r\n") {
            Some(i) => (i, 4),
            None => match find(raw, b"\n\n") {
                Some(i) => (i, 2),
                None => (raw.len(), 0),
            },
        };
        let head = String::from_utf8_lossy(&raw[..head_len]).replace("\r\n", "\n");
        let mut head_crlf = head.replace('\n', "\r\n");
        head_crlf.push_str("\r\n\r\n");
        let body = Bytes::copy_from_slice(&raw[(head_len + sep).min(raw.len())..]);
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Request::new(&mut fields);
        match parsed.parse(head_crlf.as_bytes()) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => bail!("the head is incomplete"),
            Err(e) => bail!("{e}"),
        }
        let method = Method::from_bytes(parsed.method.unwrap_or("GET").as_bytes())?;
        let path = parsed.path.unwrap_or("/").to_owned();
        let mut headers = HeaderMap::new();
        let mut authority = String::new();
        for f in parsed.headers.iter() {
            let name = HeaderName::from_bytes(f.name.as_bytes())?;
            if name == http::header::HOST {
                authority = String::from_utf8_lossy(f.value).into_owned();
                continue;
            }
            if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
                continue;
            }
            headers.append(name, HeaderValue::from_bytes(f.value)?);
        }
        if authority.is_empty() {
            bail!("no Host header");
        }
        Ok(RequestSpec {
            method,
            path,
            authority,
            headers,
            body,
        })
    }

    /// Adds a header given as `name: value`, replacing `Host` when it is that.
    pub fn add_header(&mut self, line: &str) -> anyhow::Result<()> {
        let Some((name, value)) = line.split_once(':') else {
            bail!("header {line:?}: expected `name: value`");
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("header {line:?}: invalid name"))?;
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("header {line:?}: invalid value"))?;
        if name == http::header::HOST {
            self.authority = value.to_str().unwrap_or_default().to_owned();
        } else {
            self.headers.append(name, value);
        }
        Ok(())
    }

    /// The request as a listener hands it to the exchange.
    pub fn to_request(&self) -> Request<ProxyBody> {
        let mut req = Request::new(ProxyBody::full(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self
            .path
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        *req.version_mut() = Version::HTTP_11;
        let headers = req.headers_mut();
        headers.reserve(self.headers.len() + 2);
        if let Ok(host) = HeaderValue::from_str(&self.authority) {
            headers.insert(http::header::HOST, host);
        }
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        if !self.body.is_empty() {
            headers.insert(
                http::header::CONTENT_LENGTH,
                HeaderValue::from(self.body.len()),
            );
        }
        req
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_file_is_read_with_either_line_end() {
        for raw in [
            &b"POST /orders?x=1 HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer t\r\n\r\n{\"a\":1}"
                [..],
            &b"POST /orders?x=1 HTTP/1.1\nHost: shop\nAuthorization: Bearer t\n\n{\"a\":1}"[..],
        ] {
            let spec = RequestSpec::parse(raw).unwrap();
            assert_eq!(spec.method, Method::POST);
            assert_eq!(spec.path, "/orders?x=1");
            assert_eq!(spec.authority, "shop");
            assert_eq!(spec.headers["authorization"], "Bearer t");
            assert_eq!(&spec.body[..], b"{\"a\":1}");
            let req = spec.to_request();
            assert_eq!(req.headers()["content-length"], "7");
            assert_eq!(req.headers()["host"], "shop");
        }
        assert!(
            RequestSpec::parse(b"GET / HTTP/1.1\r\n\r\n").is_err(),
            "no Host"
        );
    }
}
