//! The route model: what a route matches (host, path, methods, headers), as checked
//! from the configuration and as the snapshot's listeners run it.

use http::{HeaderMap, HeaderName, Method};

/// How a route matches the request's host (the authority without its port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Any host.
    Any,
    /// Exactly this host (lower case).
    Exact(String),
    /// Hosts ending with this suffix, which starts with a dot (`*.example.com`).
    Suffix(String),
}

/// How a route matches the request's path (without the query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Any path.
    Any,
    /// Paths starting with this.
    Prefix(String),
    /// Exactly this path.
    Exact(String),
}

/// A condition on a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRule {
    /// The first value equals this.
    Exact(String),
    /// The first value starts with this.
    Prefix(String),
    /// The header is present (true) or absent (false).
    Present(bool),
}

/// What a route takes; every condition must hold.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The host condition.
    pub host: HostMatch,
    /// The path condition.
    pub path: PathMatch,
    /// Allowed methods; any when empty.
    pub methods: Vec<Method>,
    /// Header conditions.
    pub headers: Vec<(HeaderName, HeaderRule)>,
}

impl RouteMatch {
    /// A condition every request meets.
    pub fn any() -> RouteMatch {
        RouteMatch {
            host: HostMatch::Any,
            path: PathMatch::Any,
            methods: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Whether a request matches. `host` is already lower case and without port.
    pub fn matches(&self, method: &Method, host: &str, path: &str, headers: &HeaderMap) -> bool {
        self.matches_path(method, host, without_query(path), headers)
    }

    /// [`RouteMatch::matches`] for a path already without its query.
    pub fn matches_path(
        &self,
        method: &Method,
        host: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> bool {
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => host == h,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        };
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
        };
        host_ok
            && path_ok
            && (self.methods.is_empty() || self.methods.contains(method))
            && self.headers.iter().all(|(name, rule)| {
                let value = headers.get(name).and_then(|v| v.to_str().ok());
                match rule {
                    HeaderRule::Present(want) => value.is_some() == *want,
                    HeaderRule::Exact(x) => value == Some(x.as_str()),
                    HeaderRule::Prefix(x) => value.is_some_and(|v| v.starts_with(x.as_str())),
                }
            })
    }
}

/// A request target's path, without its query.
pub fn without_query(path: &str) -> &str {
    match path.bytes().position(|b| b == b'?') {
        Some(at) => &path[..at],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: HostMatch, path: PathMatch) -> RouteMatch {
        RouteMatch {
            host,
            path,
            methods: vec![],
            headers: vec![],
        }
    }

    #[test]
    fn host_matching() {
        let h = HeaderMap::new();
        let exact = m(HostMatch::Exact("api.example.com".into()), PathMatch::Any);
        assert!(exact.matches(&Method::GET, "api.example.com", "/", &h));
        assert!(!exact.matches(&Method::GET, "example.com", "/", &h));
        let wild = m(HostMatch::Suffix(".example.com".into()), PathMatch::Any);
        assert!(wild.matches(&Method::GET, "a.example.com", "/", &h));
        assert!(!wild.matches(&Method::GET, "example.com", "/", &h));
        assert!(!wild.matches(&Method::GET, ".example.com", "/", &h));
    }

    #[test]
    fn path_matching_ignores_query() {
        let h = HeaderMap::new();
        let prefix = m(HostMatch::Any, PathMatch::Prefix("/api".into()));
        assert!(prefix.matches(&Method::GET, "", "/api/v1?x=1", &h));
        assert!(!prefix.matches(&Method::GET, "", "/ap", &h));
        let exact = m(HostMatch::Any, PathMatch::Exact("/health".into()));
        assert!(exact.matches(&Method::GET, "", "/health?full=1", &h));
        assert!(!exact.matches(&Method::GET, "", "/health/x", &h));
    }

    #[test]
    fn header_and_method_conditions() {
        let mut r = m(HostMatch::Any, PathMatch::Any);
        r.methods = vec![Method::POST];
        r.headers = vec![
            (
                HeaderName::from_static("x-canary"),
                HeaderRule::Exact("1".into()),
            ),
            (
                HeaderName::from_static("x-debug"),
                HeaderRule::Present(false),
            ),
        ];
        let mut h = HeaderMap::new();
        h.insert("x-canary", "1".parse().unwrap());
        assert!(r.matches(&Method::POST, "", "/", &h));
        assert!(!r.matches(&Method::GET, "", "/", &h));
        h.insert("x-debug", "y".parse().unwrap());
        assert!(!r.matches(&Method::POST, "", "/", &h));
    }
}
