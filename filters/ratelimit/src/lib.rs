//! Rate limiting with token buckets, shared by every instance and worker of the proxy
//! (the host's shared state), keyed by client address, a header, the path, a request
//! property (such as a JWT claim the authz filter set) or the peer's identity.
//!
//! ```yaml
//! filters:
//!   limits:
//!     module: target/filters/ratelimit.wasm
//!     config:
//!       rules:
//!         - name: per-client              # in headers and metrics
//!           key: client_ip                 # client_ip | path | peer_identity | global
//!                                          # | header:<name> | property:<name>
//!           rate: 100                      # tokens per `per`
//!           per: 1s
//!           burst: 200                     # bucket size (default: rate)
//!           match: { prefix: /api }        # which requests it applies to (default all)
//!           scope: local                   # local: this proxy's workers share the bucket;
//!                                          # global: every proxy on the configured
//!                                          # shared_state.global backend (Redis) does
//!       shadow: false                      # count, never refuse
//!       status: 429
//!       headers: true                      # RateLimit headers on allowed responses too
//! ```
//!
//! Every matching rule takes a token; the first that has none refuses the request with
//! 429 (or `status`), `Retry-After` in seconds, and the IETF structured headers
//! `RateLimit-Policy: "<rule>";q=<rate>;w=<seconds>` and `RateLimit: "<rule>";r=<remaining>;t=<reset seconds>`.
//! A request missing its key (no such header) is not limited by that rule.
//!
//! A `global` rule is served from a lease of tokens each proxy takes from Redis in
//! batches, so requests never wait on Redis; together the proxies allow at most the
//! bucket's tokens plus `proxies × lease` (see `shared_state.global.lease`).
//!
//! Metrics: `weft_filter_ratelimit_requests_total{rule, decision="allowed"|"limited"|"shadow_limited"}`.

use std::time::Duration;

use serde::Deserialize;
use weft_sdk::matching::Match;
use weft_sdk::metrics::Counter;
use weft_sdk::state::{Scope, TokenBucket};
use weft_sdk::{Action, Filter, InitContext, LocalResponse, Reads, Request};

/// What a bucket is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The client's IP address.
    ClientIp,
    /// A request header's value.
    Header(String),
    /// The path (without query).
    Path,
    /// A request property (set by an earlier filter).
    Property(String),
    /// The client's verified identity.
    PeerIdentity,
    /// One bucket for all requests.
    Global,
}

impl std::str::FromStr for Key {
    type Err = String;
    fn from_str(s: &str) -> Result<Key, String> {
        Ok(match s {
            "client_ip" => Key::ClientIp,
            "path" => Key::Path,
            "peer_identity" => Key::PeerIdentity,
            "global" => Key::Global,
            _ => match s.split_once(':') {
                Some(("header", h)) if !h.is_empty() => Key::Header(h.to_ascii_lowercase()),
                Some(("property", p)) if !p.is_empty() => Key::Property(p.to_owned()),
                _ => {
                    return Err(format!(
                        "unknown key {s:?}: use client_ip, path, peer_identity, global, header:<name> or property:<name>"
                    ))
                }
            },
        })
    }
}

/// A rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Its name.
    pub name: String,
    /// What buckets are keyed by.
    pub key: String,
    /// Tokens per `per`.
    pub rate: u64,
    /// The refill period.
    #[serde(with = "weft_sdk::config::duration")]
    pub per: Duration,
    /// Bucket size (default: `rate`).
    #[serde(default)]
    pub burst: Option<u64>,
    /// Which requests it applies to.
    #[serde(default, rename = "match")]
    pub matcher: Match,
    /// Where its buckets live.
    #[serde(default)]
    pub scope: ScopeConfig,
}

/// `scope:` of a rule.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScopeConfig {
    /// This proxy (every worker shares the bucket).
    #[default]
    Local,
    /// Every proxy sharing the global backend.
    Global,
}

fn default_status() -> u16 {
    429
}

fn yes() -> bool {
    true
}

/// The configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The rules, all applied.
    pub rules: Vec<RuleConfig>,
    /// Count only.
    #[serde(default)]
    pub shadow: bool,
    /// Status of a refusal.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Put RateLimit headers on allowed responses too.
    #[serde(default = "yes")]
    pub headers: bool,
}

struct Rule {
    name: String,
    key: Key,
    bucket: TokenBucket,
    scope: Scope,
    policy: String,
    matcher: Match,
    allowed: Counter,
    limited: Counter,
    shadow_limited: Counter,
}

/// Limits request rates.
pub struct RateLimit {
    rules: Vec<Rule>,
    shadow: bool,
    status: u16,
    headers: bool,
}

fn key_value(key: &Key, req: &Request) -> Option<String> {
    match key {
        Key::ClientIp => Some(req.client_ip()),
        Key::Header(h) => req.header(h),
        Key::Path => Some(weft_sdk::matching::path_only(&req.path()).to_owned()),
        Key::Property(p) => req.property(p),
        Key::PeerIdentity => req.peer_identity(),
        Key::Global => Some(String::new()),
    }
}

fn seconds_up(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[weft_sdk::filter]
impl Filter for RateLimit {
    type Config = Config;

    fn new(config: Config, _ctx: &InitContext) -> Result<Self, String> {
        if config.rules.is_empty() {
            return Err("rules: at least one rule is needed".into());
        }
        if !(400..=599).contains(&config.status) {
            return Err(format!("status: {} is not an error status", config.status));
        }
        let mut rules = Vec::new();
        for (i, r) in config.rules.into_iter().enumerate() {
            let key: Key = r.key.parse().map_err(|e| format!("rules[{i}].key: {e}"))?;
            if r.rate == 0 || r.per.is_zero() {
                return Err(format!("rules[{i}]: rate and per must be more than 0"));
            }
            let burst = r.burst.unwrap_or(r.rate);
            if burst == 0 {
                return Err(format!("rules[{i}].burst: must be more than 0"));
            }
            let labels = |d: &str| {
                Counter::new(
                    "ratelimit_requests_total",
                    &[("rule", &r.name), ("decision", d)],
                )
            };
            rules.push(Rule {
                policy: format!("\"{}\";q={};w={}", r.name, r.rate, seconds_up(r.per)),
                allowed: labels("allowed"),
                limited: labels("limited"),
                shadow_limited: labels("shadow_limited"),
                name: r.name,
                key,
                bucket: TokenBucket::new(r.rate, r.per, burst),
                scope: match r.scope {
                    ScopeConfig::Local => Scope::Local,
                    ScopeConfig::Global => Scope::Global,
                },
                matcher: r.matcher,
            });
        }
        Ok(RateLimit {
            rules,
            shadow: config.shadow,
            status: config.status,
            headers: config.headers,
        })
    }

    fn reads(&self) -> Reads {
        self.rules.iter().fold(Reads::new(), |reads, rule| {
            let reads = rule.matcher.reads(reads);
            match &rule.key {
                Key::ClientIp => reads.client_address(),
                Key::Header(h) => reads.request_header(h),
                Key::Path => reads.path(),
                Key::PeerIdentity => reads.peer_identity(),
                Key::Property(_) | Key::Global => reads,
            }
        })
    }

    fn on_request_headers(&self, req: &mut Request) -> Action {
        for rule in &self.rules {
            if !rule.matcher.matches(req) {
                continue;
            }
            let Some(key) = key_value(&rule.key, req) else {
                continue;
            };
            // Built by hand: `format!` is a large share of a wasm filter's time.
            let mut bucket = String::with_capacity(rule.name.len() + 1 + key.len());
            bucket.push_str(&rule.name);
            bucket.push('\0');
            bucket.push_str(&key);
            let taken = rule.bucket.take_in(rule.scope, &bucket, 1);
            let state = || {
                let mut s = String::with_capacity(rule.name.len() + 24);
                s.push('"');
                s.push_str(&rule.name);
                s.push_str("\";r=");
                weft_sdk::text::push_u64(&mut s, taken.remaining);
                s.push_str(";t=");
                weft_sdk::text::push_u64(&mut s, seconds_up(taken.reset));
                s
            };
            if taken.allowed {
                rule.allowed.inc();
                if self.headers {
                    req.add_response_header("ratelimit-policy", &rule.policy)
                        .ok();
                    req.add_response_header("ratelimit", &state()).ok();
                }
                continue;
            }
            if self.shadow {
                rule.shadow_limited.inc();
                continue;
            }
            rule.limited.inc();
            return Action::Respond(
                LocalResponse::new(self.status)
                    .header("content-type", "text/plain; charset=utf-8")
                    .header("retry-after", seconds_up(taken.retry_after).to_string())
                    .header("ratelimit-policy", rule.policy.clone())
                    .header("ratelimit", state())
                    .body(format!("rate limit {} exceeded\n", rule.name)),
            );
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use weft_sdk::testing::{Harness, TestHost, TestRequest};

    const TEN_PER_SECOND: &str =
        r#"{"rules": [{"name": "ip", "key": "client_ip", "rate": 10, "per": "1s"}]}"#;

    fn allowed(h: &Harness<RateLimit>, req: TestRequest) -> bool {
        matches!(h.on_request_headers(&mut req.clone()), Action::Continue)
    }

    #[test]
    fn holds_the_rate_per_key_and_refills() {
        let h = Harness::<RateLimit>::new(TEN_PER_SECOND).unwrap();
        let a = || TestRequest::get("/").client_address("10.0.0.1:5000");
        let b = || TestRequest::get("/").client_address("10.0.0.2:5000");
        assert_eq!(
            (0..15).filter(|_| allowed(&h, a())).count(),
            10,
            "the burst"
        );
        assert!(allowed(&h, b()), "another client has its own bucket");
        h.host().advance(Duration::from_millis(300));
        assert_eq!(
            (0..5).filter(|_| allowed(&h, a())).count(),
            3,
            "3 tokens back after 300ms"
        );
        assert_eq!(
            h.host().metric(
                "ratelimit_requests_total",
                &[("rule", "ip"), ("decision", "limited")]
            ),
            7.0
        );
    }

    #[test]
    fn refusals_carry_retry_after_and_ratelimit_headers() {
        let h = Harness::<RateLimit>::new(TEN_PER_SECOND).unwrap();
        let mut last = None;
        for _ in 0..11 {
            last = Some(h.on_request_headers(&mut TestRequest::get("/")));
        }
        let Some(Action::Respond(r)) = last else {
            panic!("{last:?}")
        };
        assert_eq!(r.status, 429);
        assert_eq!(r.header_value("retry-after"), Some("1"));
        assert_eq!(r.header_value("ratelimit-policy"), Some("\"ip\";q=10;w=1"));
        assert_eq!(r.header_value("ratelimit"), Some("\"ip\";r=0;t=1"));
    }

    #[test]
    fn allowed_requests_learn_what_is_left() {
        let h = Harness::<RateLimit>::new(TEN_PER_SECOND).unwrap();
        let mut req = TestRequest::get("/");
        h.on_request_headers(&mut req);
        assert_eq!(req.response_header_now("ratelimit"), Some("\"ip\";r=9;t=1"));
    }

    #[test]
    fn state_is_shared_by_instances() {
        let host = TestHost::new();
        let one = Harness::<RateLimit>::with_host(TEN_PER_SECOND, host.clone()).unwrap();
        let two = Harness::<RateLimit>::with_host(TEN_PER_SECOND, host).unwrap();
        let n = (0..20)
            .filter(|i| allowed(if i % 2 == 0 { &one } else { &two }, TestRequest::get("/")))
            .count();
        assert_eq!(n, 10, "two instances, one bucket");
    }

    #[test]
    fn keys_by_header_property_and_identity() {
        let cfg = r#"{"rules": [
            {"name": "user", "key": "header:x-user", "rate": 1, "per": "1m"},
            {"name": "sub", "key": "property:jwt.sub", "rate": 1, "per": "1m"},
            {"name": "peer", "key": "peer_identity", "rate": 1, "per": "1m"}]}"#;
        let h = Harness::<RateLimit>::new(cfg).unwrap();
        assert!(
            allowed(&h, TestRequest::get("/")),
            "no keys present: no rule applies"
        );
        assert!(allowed(&h, TestRequest::get("/")));
        assert!(allowed(&h, TestRequest::get("/").header("x-user", "ann")));
        assert!(!allowed(&h, TestRequest::get("/").header("x-user", "ann")));
        assert!(allowed(&h, TestRequest::get("/").property("jwt.sub", "u1")));
        assert!(!allowed(
            &h,
            TestRequest::get("/").property("jwt.sub", "u1")
        ));
        assert!(allowed(
            &h,
            TestRequest::get("/").peer_identity("spiffe://a")
        ));
        assert!(!allowed(
            &h,
            TestRequest::get("/").peer_identity("spiffe://a")
        ));
    }

    #[test]
    fn shadow_mode_only_counts() {
        let cfg = r#"{"rules": [{"name": "g", "key": "global", "rate": 1, "per": "1s"}], "shadow": true}"#;
        let h = Harness::<RateLimit>::new(cfg).unwrap();
        assert_eq!(
            (0..5)
                .filter(|_| allowed(&h, TestRequest::get("/")))
                .count(),
            5
        );
        assert_eq!(
            h.host().metric(
                "ratelimit_requests_total",
                &[("rule", "g"), ("decision", "shadow_limited")]
            ),
            4.0
        );
    }

    #[test]
    fn bad_configurations_name_their_field() {
        let err = Harness::<RateLimit>::new(
            r#"{"rules": [{"name": "x", "key": "cookie", "rate": 1, "per": "1s"}]}"#,
        )
        .err()
        .unwrap();
        assert!(err.starts_with("rules[0].key: unknown key"), "{err}");
        let err = Harness::<RateLimit>::new(r#"{"rules": []}"#).err().unwrap();
        assert!(err.starts_with("rules:"), "{err}");
    }
}
