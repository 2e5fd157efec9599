//! Routing inside a route: pick a cluster by path (exact, prefix, regex), method,
//! headers and query parameters; split traffic by weight (canary, blue-green), keep a
//! client on one side of a split by hashing a header; let trusted requests choose their
//! cluster by header; rewrite the path and host.
//!
//! ```yaml
//! filters:
//!   routing:
//!     module: target/filters/router.wasm
//!     config:
//!       routes:                               # first match wins
//!         - match:
//!             path: { prefix: /v2 }           # or exact: ..., or regex: ...
//!             methods: [GET]
//!             headers: [{ name: x-beta, exact: "1" }]   # exact | prefix | regex | present
//!             query: [{ name: debug, present: true }]   # exact | regex | present
//!             # grpc: { service: helloworld.Greeter, method: SayHello }  # a gRPC call
//!             # (method optional; sets the path and requires gRPC's content type)
//!           cluster: api-v2
//!           rewrite: { prefix: /v1 }            # /v2/x -> /v1/x; or path: ..., regex: {pattern, to}
//!         - match: { path: { prefix: /api } }
//!           split:                            # weights need not sum to 100
//!             - { cluster: api-stable, weight: 90 }
//!             - { cluster: api-canary, weight: 10 }
//!           sticky: { header: x-user-id }     # same header value, same side
//!           rewrite: { host: api.internal }
//!       override: { header: x-weft-cluster, allowed: [api-canary] }
//! ```
//!
//! A request no route takes keeps the cluster of the proxy route it came in on. The
//! cluster chosen is visible upstream-bound as `x-weft-cluster-chosen` when
//! `annotate: true`.
//!
//! Metrics: `weft_filter_router_decisions_total{cluster}`.

use std::collections::HashMap;

use regex::Regex;
use serde::Deserialize;
use weft_sdk::matching::{path_only, query_params};
use weft_sdk::metrics::Counter;
use weft_sdk::{random, Action, Filter, InitContext, Reads, Request};

/// A path condition: one of `exact`, `prefix`, `regex` (the regex must match the whole
/// path).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PathConfig {
    /// Exactly this path.
    #[serde(default)]
    pub exact: Option<String>,
    /// Paths starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Paths matching this regular expression.
    #[serde(default)]
    pub regex: Option<String>,
}

/// A header or query condition: one of `exact`, `prefix` (headers), `regex`, `present`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueConfig {
    /// The header or parameter name.
    pub name: String,
    /// Its value equals this.
    #[serde(default)]
    pub exact: Option<String>,
    /// Its value starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Its value matches this regular expression (whole value).
    #[serde(default)]
    pub regex: Option<String>,
    /// It is present (true) or absent (false).
    #[serde(default)]
    pub present: Option<bool>,
}

/// A route's conditions.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// The path.
    #[serde(default)]
    pub path: Option<PathConfig>,
    /// Methods (any when empty).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions.
    #[serde(default)]
    pub headers: Vec<ValueConfig>,
    /// Query parameter conditions.
    #[serde(default)]
    pub query: Vec<ValueConfig>,
    /// A gRPC service and optionally its method: the path `/service/method` (or the
    /// prefix `/service/`) with a `content-type` of `application/grpc*`.
    #[serde(default)]
    pub grpc: Option<GrpcConfig>,
}

/// A gRPC condition.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// The fully qualified service (`helloworld.Greeter`).
    pub service: String,
    /// One of its methods (`SayHello`); any when absent.
    #[serde(default)]
    pub method: Option<String>,
}

/// One side of a split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// The cluster.
    pub cluster: String,
    /// Its weight.
    pub weight: u32,
}

/// Keeping a client on one side of a split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    /// The header whose value is hashed (requests without it are spread at random).
    pub header: String,
}

/// A regex rewrite of the path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    /// What to find.
    pub pattern: String,
    /// What to put instead (`$1` refers to groups).
    pub to: String,
}

/// Rewrites.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// Replace the matched path prefix with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Replace the whole path (the query is kept).
    #[serde(default)]
    pub path: Option<String>,
    /// Replace by regex.
    #[serde(default)]
    pub regex: Option<RegexRewrite>,
    /// Replace the host (authority).
    #[serde(default)]
    pub host: Option<String>,
}

/// A route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Conditions.
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    /// One cluster...
    #[serde(default)]
    pub cluster: Option<String>,
    /// ...or a weighted split.
    #[serde(default)]
    pub split: Vec<SplitConfig>,
    /// Sticky splits.
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    /// Rewrites.
    #[serde(default)]
    pub rewrite: Option<RewriteConfig>,
}

/// Letting requests choose their cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    /// The header naming the cluster.
    pub header: String,
    /// Clusters it may name.
    pub allowed: Vec<String>,
}

/// The configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Routes, first match wins.
    pub routes: Vec<RouteConfig>,
    /// Header overrides.
    #[serde(default, rename = "override")]
    pub header_override: Option<OverrideConfig>,
    /// Tell the upstream which cluster was chosen (`x-weft-cluster-chosen`).
    #[serde(default)]
    pub annotate: bool,
}

enum PathRule {
    Any,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

enum ValueRule {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    Present(bool),
}

impl ValueRule {
    fn holds(&self, value: Option<&str>) -> bool {
        match self {
            ValueRule::Present(p) => value.is_some() == *p,
            ValueRule::Exact(x) => value == Some(x.as_str()),
            ValueRule::Prefix(x) => value.is_some_and(|v| v.starts_with(x.as_str())),
            ValueRule::Regex(r) => value.is_some_and(|v| r.is_match(v)),
        }
    }
}

enum Destination {
    One(String),
    Split {
        sides: Vec<(String, u32)>,
        total: u64,
        sticky: Option<String>,
    },
}

struct Route {
    path: PathRule,
    methods: Vec<String>,
    headers: Vec<(String, ValueRule)>,
    query: Vec<(String, ValueRule)>,
    destination: Destination,
    rewrite: Option<Rewrite>,
}

struct Rewrite {
    prefix: Option<String>,
    path: Option<String>,
    regex: Option<(Regex, String)>,
    host: Option<String>,
}

/// Routes requests to clusters.
pub struct Router {
    routes: Vec<Route>,
    header_override: Option<OverrideConfig>,
    annotate: bool,
    decisions: HashMap<String, Counter>,
}

/// A regex that must match the whole value.
fn whole(field: &str, pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("{field}: invalid regex: {e}"))
}

fn value_rule(field: &str, v: &ValueConfig, allow_prefix: bool) -> Result<ValueRule, String> {
    let given = [
        v.exact.is_some(),
        v.prefix.is_some(),
        v.regex.is_some(),
        v.present.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(format!(
            "{field}: give exactly one of exact, {}regex or present",
            if allow_prefix { "prefix, " } else { "" }
        ));
    }
    Ok(if let Some(x) = &v.exact {
        ValueRule::Exact(x.clone())
    } else if let Some(x) = &v.prefix {
        if !allow_prefix {
            return Err(format!("{field}: prefix is not available here"));
        }
        ValueRule::Prefix(x.clone())
    } else if let Some(x) = &v.regex {
        ValueRule::Regex(whole(&format!("{field}.regex"), x)?)
    } else {
        ValueRule::Present(v.present.unwrap_or(true))
    })
}

/// FNV-1a: a small, stable hash, the same on every instance and restart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Route {
    fn matches(&self, req: &Request, path: &str, full_path: &str) -> bool {
        let path_ok = match &self.path {
            PathRule::Any => true,
            PathRule::Exact(p) => path == p,
            PathRule::Prefix(p) => path.starts_with(p.as_str()),
            PathRule::Regex(r) => r.is_match(path),
        };
        if !path_ok {
            return false;
        }
        if !self.methods.is_empty() {
            let m = req.method();
            if !self.methods.iter().any(|x| x.eq_ignore_ascii_case(&m)) {
                return false;
            }
        }
        if !self
            .headers
            .iter()
            .all(|(n, r)| r.holds(req.header(n).as_deref()))
        {
            return false;
        }
        if !self.query.is_empty() {
            let params = query_params(full_path);
            let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            if !self.query.iter().all(|(n, r)| r.holds(get(n))) {
                return false;
            }
        }
        true
    }

    fn pick(&self, req: &Request) -> &str {
        match &self.destination {
            Destination::One(c) => c,
            Destination::Split {
                sides,
                total,
                sticky,
            } => {
                let point = match sticky.as_deref().and_then(|h| req.header(h)) {
                    Some(v) => fnv1a(v.as_bytes()) % total,
                    None => random::below(*total),
                };
                let mut acc = 0u64;
                for (cluster, weight) in sides {
                    acc += u64::from(*weight);
                    if point < acc {
                        return cluster;
                    }
                }
                &sides[sides.len() - 1].0
            }
        }
    }

    fn apply_rewrite(&self, req: &mut Request, full_path: &str) {
        let Some(rw) = &self.rewrite else { return };
        let (path, query) = match full_path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (full_path, None),
        };
        let mut new_path = None;
        if let (Some(to), PathRule::Prefix(from)) = (&rw.prefix, &self.path) {
            new_path = Some(format!("{to}{}", &path[from.len().min(path.len())..]));
        }
        if let Some(p) = &rw.path {
            new_path = Some(p.clone());
        }
        if let Some((re, to)) = &rw.regex {
            new_path = Some(
                re.replace_all(new_path.as_deref().unwrap_or(path), to.as_str())
                    .into_owned(),
            );
        }
        if let Some(mut p) = new_path {
            if !p.starts_with('/') {
                p.insert(0, '/');
            }
            if let Some(q) = query {
                p.push('?');
                p.push_str(q);
            }
            if let Err(e) = req.set_path(&p) {
                weft_sdk::log::warn(&format!("rewrite produced an invalid path: {e}"));
            }
        }
        if let Some(h) = &rw.host {
            if let Err(e) = req.set_authority(h) {
                weft_sdk::log::warn(&format!("rewrite produced an invalid host: {e}"));
            }
        }
    }
}

impl Router {
    fn counted(&self, cluster: &str) {
        if let Some(c) = self.decisions.get(cluster) {
            c.inc();
        }
    }
}

#[weft_sdk::filter]
impl Filter for Router {
    type Config = Config;

    fn new(config: Config, _ctx: &InitContext) -> Result<Self, String> {
        let mut routes = Vec::new();
        let mut clusters = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            let f = format!("routes[{i}]");
            let path = match (&r.matcher.path, &r.matcher.grpc) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{f}.match.grpc: a gRPC match sets the path itself: leave out path"
                    ))
                }
                (None, Some(g)) => {
                    let ok = |s: &str| {
                        !s.is_empty()
                            && s.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                    };
                    if !ok(&g.service) {
                        return Err(format!(
                            "{f}.match.grpc.service: {:?} is not a gRPC service name",
                            g.service
                        ));
                    }
                    match &g.method {
                        None => PathRule::Prefix(format!("/{}/", g.service)),
                        Some(m) if ok(m) && !m.contains('.') => {
                            PathRule::Exact(format!("/{}/{m}", g.service))
                        }
                        Some(m) => {
                            return Err(format!(
                                "{f}.match.grpc.method: {m:?} is not a gRPC method name"
                            ))
                        }
                    }
                }
                (p, None) => match p {
                    None => PathRule::Any,
                    Some(p) => match (&p.exact, &p.prefix, &p.regex) {
                        (Some(x), None, None) => PathRule::Exact(x.clone()),
                        (None, Some(x), None) => PathRule::Prefix(x.clone()),
                        (None, None, Some(x)) => {
                            PathRule::Regex(whole(&format!("{f}.match.path.regex"), x)?)
                        }
                        _ => {
                            return Err(format!(
                                "{f}.match.path: give exactly one of exact, prefix or regex"
                            ))
                        }
                    },
                },
            };
            let mut headers = r
                .matcher
                .headers
                .iter()
                .enumerate()
                .map(|(j, h)| {
                    Ok((
                        h.name.to_ascii_lowercase(),
                        value_rule(&format!("{f}.match.headers[{j}]"), h, true)?,
                    ))
                })
                .collect::<Result<Vec<_>, String>>()?;
            if r.matcher.grpc.is_some() {
                headers.push((
                    "content-type".to_owned(),
                    ValueRule::Prefix("application/grpc".to_owned()),
                ));
            }
            let query = r
                .matcher
                .query
                .iter()
                .enumerate()
                .map(|(j, q)| {
                    Ok((
                        q.name.clone(),
                        value_rule(&format!("{f}.match.query[{j}]"), q, false)?,
                    ))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let destination = match (&r.cluster, r.split.is_empty()) {
                (Some(c), true) => Destination::One(c.clone()),
                (None, false) => {
                    let total: u64 = r.split.iter().map(|s| u64::from(s.weight)).sum();
                    if total == 0 {
                        return Err(format!("{f}.split: the weights add up to 0"));
                    }
                    Destination::Split {
                        sides: r
                            .split
                            .iter()
                            .map(|s| (s.cluster.clone(), s.weight))
                            .collect(),
                        total,
                        sticky: r.sticky.as_ref().map(|s| s.header.to_ascii_lowercase()),
                    }
                }
                _ => return Err(format!("{f}: give either cluster or split")),
            };
            match &destination {
                Destination::One(c) => clusters.push(c.clone()),
                Destination::Split { sides, .. } => {
                    clusters.extend(sides.iter().map(|(c, _)| c.clone()))
                }
            }
            let rewrite = match &r.rewrite {
                None => None,
                Some(rw) => {
                    if rw.prefix.is_some() && !matches!(path, PathRule::Prefix(_)) {
                        return Err(format!("{f}.rewrite.prefix: needs a match.path.prefix"));
                    }
                    let regex = match &rw.regex {
                        Some(x) => Some((
                            Regex::new(&x.pattern)
                                .map_err(|e| format!("{f}.rewrite.regex: invalid regex: {e}"))?,
                            x.to.clone(),
                        )),
                        None => None,
                    };
                    Some(Rewrite {
                        prefix: rw.prefix.clone(),
                        path: rw.path.clone(),
                        regex,
                        host: rw.host.clone(),
                    })
                }
            };
            routes.push(Route {
                path,
                methods: r.matcher.methods.clone(),
                headers,
                query,
                destination,
                rewrite,
            });
        }
        if let Some(o) = &config.header_override {
            clusters.extend(o.allowed.iter().cloned());
        }
        let decisions = clusters
            .into_iter()
            .map(|c| {
                let counter = Counter::new("router_decisions_total", &[("cluster", &c)]);
                (c, counter)
            })
            .collect();
        Ok(Router {
            routes,
            header_override: config.header_override,
            annotate: config.annotate,
            decisions,
        })
    }

    fn reads(&self) -> Reads {
        // Every request reads the path; the rest as the routes need.
        let mut reads = Reads::new().path();
        if let Some(o) = &self.header_override {
            reads = reads.request_header(&o.header);
        }
        for r in &self.routes {
            if !r.methods.is_empty() {
                reads = reads.method();
            }
            for (name, _) in &r.headers {
                reads = reads.request_header(name);
            }
            if let Destination::Split {
                sticky: Some(h), ..
            } = &r.destination
            {
                reads = reads.request_header(h);
            }
        }
        reads
    }

    fn on_request_headers(&self, req: &mut Request) -> Action {
        if let Some(o) = &self.header_override {
            if let Some(wanted) = req.header(&o.header) {
                if o.allowed.contains(&wanted) {
                    self.counted(&wanted);
                    if self.annotate {
                        req.set_header("x-weft-cluster-chosen", &wanted).ok();
                    }
                    return Action::RouteTo(wanted);
                }
            }
        }
        let full = req.path();
        let path = path_only(&full).to_owned();
        let Some(route) = self.routes.iter().find(|r| r.matches(req, &path, &full)) else {
            return Action::Continue;
        };
        let cluster = route.pick(req).to_owned();
        route.apply_rewrite(req, &full);
        self.counted(&cluster);
        if self.annotate {
            req.set_header("x-weft-cluster-chosen", &cluster).ok();
        }
        Action::RouteTo(cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::testing::{Harness, TestRequest};

    fn route(h: &Harness<Router>, req: &mut TestRequest) -> Option<String> {
        match h.on_request_headers(req) {
            Action::RouteTo(c) => Some(c),
            Action::Continue => None,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn matches_grpc_services_and_methods() {
        let h = Harness::<Router>::new(
            r#"{"routes": [
            {"match": {"grpc": {"service": "test.Echo", "method": "Unary"}}, "cluster": "unary"},
            {"match": {"grpc": {"service": "test.Echo"}}, "cluster": "echo"}]}"#,
        )
        .unwrap();
        let grpc =
            |path: &str| TestRequest::post(path).header("content-type", "application/grpc+proto");
        assert_eq!(
            route(&h, &mut grpc("/test.Echo/Unary")).as_deref(),
            Some("unary")
        );
        assert_eq!(
            route(&h, &mut grpc("/test.Echo/Bidi")).as_deref(),
            Some("echo")
        );
        assert_eq!(route(&h, &mut grpc("/test.Other/Unary")), None);
        // The same path without gRPC's content type is not a gRPC call.
        assert_eq!(route(&h, &mut TestRequest::post("/test.Echo/Unary")), None);
        let err = Harness::<Router>::new(
            r#"{"routes": [{"match": {"grpc": {"service": "test.Echo", "method": "a/b"}}, "cluster": "x"}]}"#,
        )
        .err()
        .unwrap();
        assert!(err.contains("routes[0].match.grpc.method"), "{err}");
    }

    #[test]
    fn matches_paths_methods_headers_and_query() {
        let h = Harness::<Router>::new(
            r#"{"routes": [
            {"match": {"path": {"regex": "/users/[0-9]+"}}, "cluster": "users"},
            {"match": {"path": {"exact": "/health"}, "methods": ["GET"]}, "cluster": "health"},
            {"match": {"headers": [{"name": "x-beta", "regex": "on|yes"}]}, "cluster": "beta"},
            {"match": {"query": [{"name": "v", "exact": "2"}]}, "cluster": "v2"},
            {"match": {"path": {"prefix": "/"}}, "cluster": "default"}]}"#,
        )
        .unwrap();
        assert_eq!(
            route(&h, &mut TestRequest::get("/users/42")).as_deref(),
            Some("users")
        );
        assert_eq!(
            route(&h, &mut TestRequest::get("/users/abc")).as_deref(),
            Some("default")
        );
        assert_eq!(
            route(&h, &mut TestRequest::get("/health")).as_deref(),
            Some("health")
        );
        assert_eq!(
            route(&h, &mut TestRequest::post("/health")).as_deref(),
            Some("default")
        );
        assert_eq!(
            route(&h, &mut TestRequest::get("/x").header("x-beta", "yes")).as_deref(),
            Some("beta")
        );
        assert_eq!(
            route(&h, &mut TestRequest::get("/x").header("x-beta", "nope")).as_deref(),
            Some("default")
        );
        assert_eq!(
            route(&h, &mut TestRequest::get("/x?a=1&v=2")).as_deref(),
            Some("v2")
        );
        assert_eq!(
            route(&h, &mut TestRequest::get("/users/42?v=2")).as_deref(),
            Some("users"),
            "first match wins"
        );
    }

    #[test]
    fn splits_by_weight() {
        let h = Harness::<Router>::new(r#"{"routes": [{"split": [{"cluster": "stable", "weight": 90}, {"cluster": "canary", "weight": 10}]}]}"#).unwrap();
        let canary = (0..10_000)
            .filter(|_| route(&h, &mut TestRequest::get("/")).as_deref() == Some("canary"))
            .count();
        assert!((850..1150).contains(&canary), "10% of 10000: {canary}");
        assert_eq!(
            h.host()
                .metric("router_decisions_total", &[("cluster", "canary")]),
            canary as f64
        );
    }

    #[test]
    fn sticky_splits_keep_a_client_on_one_side() {
        let h = Harness::<Router>::new(r#"{"routes": [{"split": [{"cluster": "a", "weight": 50}, {"cluster": "b", "weight": 50}], "sticky": {"header": "x-user"}}]}"#).unwrap();
        for user in ["ann", "bob", "cy", "dee"] {
            let first = route(&h, &mut TestRequest::get("/").header("x-user", user));
            for _ in 0..20 {
                assert_eq!(
                    route(&h, &mut TestRequest::get("/").header("x-user", user)),
                    first,
                    "{user}"
                );
            }
        }
        let sides: std::collections::HashSet<_> = (0..200)
            .map(|i| {
                route(
                    &h,
                    &mut TestRequest::get("/").header("x-user", &format!("u{i}")),
                )
            })
            .collect();
        assert_eq!(sides.len(), 2, "users spread over both sides");
    }

    #[test]
    fn rewrites_prefix_path_and_host_and_keeps_the_query() {
        let h = Harness::<Router>::new(r#"{"routes": [
            {"match": {"path": {"prefix": "/v2/"}}, "cluster": "api", "rewrite": {"prefix": "/v1/", "host": "api.internal"}},
            {"match": {"path": {"prefix": "/r"}}, "cluster": "api", "rewrite": {"regex": {"pattern": "^/r/([a-z]+)", "to": "/rooms/$1"}}}]}"#).unwrap();
        let mut req = TestRequest::get("/v2/items?limit=5");
        assert_eq!(route(&h, &mut req).as_deref(), Some("api"));
        assert_eq!(req.path_now(), "/v1/items?limit=5");
        assert_eq!(req.authority_now(), "api.internal");
        let mut req = TestRequest::get("/r/blue");
        route(&h, &mut req);
        assert_eq!(req.path_now(), "/rooms/blue");
    }

    #[test]
    fn a_header_may_choose_only_an_allowed_cluster() {
        let h = Harness::<Router>::new(r#"{"routes": [{"cluster": "stable"}], "override": {"header": "x-weft-cluster", "allowed": ["canary"]}}"#).unwrap();
        assert_eq!(
            route(
                &h,
                &mut TestRequest::get("/").header("x-weft-cluster", "canary")
            )
            .as_deref(),
            Some("canary")
        );
        assert_eq!(
            route(
                &h,
                &mut TestRequest::get("/").header("x-weft-cluster", "secret")
            )
            .as_deref(),
            Some("stable")
        );
    }

    #[test]
    fn no_route_keeps_the_proxy_route_cluster() {
        let h = Harness::<Router>::new(
            r#"{"routes": [{"match": {"path": {"prefix": "/api"}}, "cluster": "api"}]}"#,
        )
        .unwrap();
        assert_eq!(route(&h, &mut TestRequest::get("/web")), None);
    }

    #[test]
    fn bad_configurations_name_their_field() {
        let err = Harness::<Router>::new(
            r#"{"routes": [{"match": {"path": {"regex": "("}}, "cluster": "a"}]}"#,
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("routes[0].match.path.regex: invalid regex"),
            "{err}"
        );
        let err = Harness::<Router>::new(
            r#"{"routes": [{"cluster": "a", "split": [{"cluster": "b", "weight": 1}]}]}"#,
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("routes[0]: give either cluster or split"),
            "{err}"
        );
        let err =
            Harness::<Router>::new(r#"{"routes": [{"split": [{"cluster": "b", "weight": 0}]}]}"#)
                .err()
                .unwrap();
        assert!(err.contains("add up to 0"), "{err}");
    }
}
