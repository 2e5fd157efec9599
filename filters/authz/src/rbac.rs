//! Role-based access rules: the first rule whose conditions all hold decides.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use weft_sdk::matching::{path_only, HeaderCondition};
use weft_sdk::Request;

/// What a rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Let the request through.
    Allow,
    /// Refuse it (403, or 401 when the request is not authenticated).
    Deny,
}

/// A path condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathCondition {
    /// Paths starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Exactly this path.
    #[serde(default)]
    pub exact: Option<String>,
}

/// One value or several (any of them).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Any of these.
    Many(Vec<String>),
}

impl OneOrMany {
    fn any(&self, f: impl Fn(&str) -> bool) -> bool {
        match self {
            OneOrMany::One(v) => f(v),
            OneOrMany::Many(vs) => vs.iter().any(|v| f(v)),
        }
    }
}

/// When a rule applies; every given condition must hold (lists: any of their items).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Methods.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Paths (any of them).
    #[serde(default)]
    pub paths: Vec<PathCondition>,
    /// Header conditions (all of them).
    #[serde(default)]
    pub headers: Vec<HeaderCondition>,
    /// Claims of the token (all of them); a dotted name reaches into objects, and a claim
    /// that is a list holds if any of its items matches.
    #[serde(default)]
    pub claims: BTreeMap<String, OneOrMany>,
    /// The client's verified identity; a trailing `*` matches a prefix.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Whether the request carries a valid token.
    #[serde(default)]
    pub authenticated: Option<bool>,
}

/// A rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its name (in metrics and logs).
    pub name: String,
    /// What it decides.
    pub action: Decision,
    /// When it applies (always, when empty).
    #[serde(default)]
    pub when: Conditions,
}

/// A claim by dotted name.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let mut parts = name.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Conditions {
    /// `reads` with what checking these conditions reads added.
    pub fn reads(&self, mut reads: weft_sdk::Reads) -> weft_sdk::Reads {
        if !self.methods.is_empty() {
            reads = reads.method();
        }
        if !self.paths.is_empty() {
            reads = reads.path();
        }
        for h in &self.headers {
            reads = reads.request_header(&h.name);
        }
        if !self.peers.is_empty() {
            reads = reads.peer_identity();
        }
        reads
    }

    /// Whether every condition holds.
    pub fn hold(&self, req: &Request, claims: Option<&Map<String, Value>>) -> bool {
        if !self.methods.is_empty() {
            let m = req.method();
            if !self.methods.iter().any(|x| x.eq_ignore_ascii_case(&m)) {
                return false;
            }
        }
        if !self.paths.is_empty() {
            let full = req.path();
            let path = path_only(&full);
            let any = self.paths.iter().any(|p| {
                p.prefix.as_deref().is_none_or(|x| path.starts_with(x))
                    && p.exact.as_deref().is_none_or(|x| path == x)
            });
            if !any {
                return false;
            }
        }
        if !self
            .headers
            .iter()
            .all(|h| h.holds(req.header(&h.name).as_deref()))
        {
            return false;
        }
        if let Some(a) = self.authenticated {
            if claims.is_some() != a {
                return false;
            }
        }
        if !self.claims.is_empty() {
            let Some(claims) = claims else { return false };
            for (name, wanted) in &self.claims {
                let ok = match claim(claims, name) {
                    Some(Value::Array(items)) => items
                        .iter()
                        .filter_map(scalar)
                        .any(|have| wanted.any(|w| w == have)),
                    Some(v) => scalar(v).is_some_and(|have| wanted.any(|w| w == have)),
                    None => false,
                };
                if !ok {
                    return false;
                }
            }
        }
        if !self.peers.is_empty() {
            let Some(peer) = req.peer_identity() else {
                return false;
            };
            let any = self.peers.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => peer.starts_with(prefix),
                None => *p == peer,
            });
            if !any {
                return false;
            }
        }
        true
    }
}

/// The decision of the first rule that applies, and its name; `default` otherwise.
pub fn decide<'a>(
    rules: &'a [Rule],
    default: Decision,
    req: &Request,
    claims: Option<&Map<String, Value>>,
) -> (Decision, Option<&'a str>) {
    for r in rules {
        if r.when.hold(req, claims) {
            return (r.action, Some(&r.name));
        }
    }
    (default, None)
}
