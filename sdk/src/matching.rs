//! Which requests a rule applies to: the conditions every built-in filter shares, and a
//! helper for query strings.

use serde::Deserialize;

use crate::Request;

/// A condition on a header: give one of `exact`, `prefix` or `present`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeaderCondition {
    /// The header name.
    pub name: String,
    /// The value equals this.
    #[serde(default)]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The header is present (true) or absent (false).
    #[serde(default)]
    pub present: Option<bool>,
}

impl HeaderCondition {
    /// Whether a header value (or its absence) meets the condition.
    pub fn holds(&self, value: Option<&str>) -> bool {
        if let Some(p) = self.present {
            if value.is_some() != p {
                return false;
            }
        }
        if let Some(x) = &self.exact {
            if value != Some(x.as_str()) {
                return false;
            }
        }
        if let Some(x) = &self.prefix {
            if !value.is_some_and(|v| v.starts_with(x.as_str())) {
                return false;
            }
        }
        true
    }
}

/// What requests a rule applies to; every given condition must hold, and an empty match
/// takes every request.
///
/// ```yaml
/// match:
///   prefix: /api        # or path: /exact
///   methods: [GET, HEAD]
///   headers: [{ name: x-canary, exact: "1" }]
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The path (without query) starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The path (without query) is exactly this.
    #[serde(default)]
    pub path: Option<String>,
    /// The method is one of these (any when empty).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions.
    #[serde(default)]
    pub headers: Vec<HeaderCondition>,
}

impl Match {
    /// `reads` with what checking this match reads added (for
    /// [`Filter::reads`](crate::Filter::reads)).
    pub fn reads(&self, mut reads: crate::Reads) -> crate::Reads {
        if self.prefix.is_some() || self.path.is_some() {
            reads = reads.path();
        }
        if !self.methods.is_empty() {
            reads = reads.method();
        }
        for h in &self.headers {
            reads = reads.request_header(&h.name);
        }
        reads
    }

    /// Whether `req` meets every condition.
    pub fn matches(&self, req: &Request) -> bool {
        if self.prefix.is_some() || self.path.is_some() {
            let full = req.path();
            let path = path_only(&full);
            if self.prefix.as_deref().is_some_and(|p| !path.starts_with(p)) {
                return false;
            }
            if self.path.as_deref().is_some_and(|p| path != p) {
                return false;
            }
        }
        if !self.methods.is_empty() {
            let method = req.method();
            if !self.methods.iter().any(|m| m.eq_ignore_ascii_case(&method)) {
                return false;
            }
        }
        self.headers
            .iter()
            .all(|h| h.holds(req.header(&h.name).as_deref()))
    }
}

/// The path without its query string.
pub fn path_only(path_and_query: &str) -> &str {
    path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p)
}

/// The query parameters of a path, decoded (`+` as space, `%XX` escapes), in order.
pub fn query_params(path_and_query: &str) -> Vec<(String, String)> {
    let Some((_, query)) = path_and_query.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let escaped = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match escaped {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::TestRequest;

    fn on(m: &Match, req: TestRequest) -> bool {
        let mut req = req;
        crate::testing::with_request(&mut req, |r| m.matches(r))
    }

    #[test]
    fn conditions_combine() {
        let m: Match = serde_json::from_str(r#"{"prefix": "/api", "methods": ["POST"], "headers": [{"name": "x-a", "present": true}]}"#).unwrap();
        assert!(on(&m, TestRequest::post("/api/x?q=1").header("x-a", "1")));
        assert!(!on(&m, TestRequest::get("/api/x").header("x-a", "1")));
        assert!(!on(&m, TestRequest::post("/apx").header("x-a", "1")));
        assert!(!on(&m, TestRequest::post("/api/x")));
        assert!(on(&Match::default(), TestRequest::get("/anything")));
    }

    #[test]
    fn query_strings_decode() {
        assert_eq!(
            query_params("/p?a=1&b=x+y&c=%2Fz&d&e=%zz"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "/z".into()),
                ("d".into(), "".into()),
                ("e".into(), "%zz".into())
            ]
        );
        assert!(query_params("/p").is_empty());
    }
}
