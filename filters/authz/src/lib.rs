//! Authentication and authorization: JWT validation (HS256, RS256, ES256, keys from an
//! inline or file JWKS; issuer, audience, expiry with clock skew), claims forwarded as
//! headers and request properties, RBAC rules on method, path, headers, claims and peer
//! identity; and, in the `ext-authz` build, a call to an external authorization service.
//!
//! ```yaml
//! filters:
//!   authz:
//!     module: target/filters/authz.wasm          # ext-authz.wasm for ext_authz
//!     files: { jwks: keys/jwks.json }            # or config.jwt.jwks inline
//!     config:
//!       jwt:
//!         issuer: https://issuer.example
//!         audiences: [orders-api]
//!         jwks_file: jwks                        # a name under `files:`
//!         clock_skew: 60s
//!         required: true                         # no token: 401
//!         forward_claims: { sub: x-user-id }     # claim -> request header
//!         cache: 5m                              # verified tokens, in shared state
//!       rules:                                   # first rule that applies decides
//!         - name: admins
//!           action: allow
//!           when: { paths: [{ prefix: /admin }], claims: { role: admin } }
//!         - name: no-admin
//!           action: deny
//!           when: { paths: [{ prefix: /admin }] }
//!         - name: mesh-readers
//!           action: allow
//!           when: { methods: [GET], peers: ["spiffe://cluster.local/ns/shop/*"] }
//!       default_action: allow                    # when no rule applies (default: deny
//!                                                # if there are rules, allow if not)
//!       ext_authz:                               # ext-authz.wasm only
//!         cluster: authz
//!         path_prefix: /check
//!         timeout: 200ms
//!         forward_headers: [authorization]
//!         upstream_headers: [x-tenant]
//!         failure_mode_allow: false
//! ```
//!
//! Answers, as users expect them:
//! - **401** with `WWW-Authenticate: Bearer ...` when a token is required and missing,
//!   or present and invalid (bad signature, expired, not yet valid, wrong issuer or
//!   audience, unknown key, `alg: none`); also when a rule denies a request that carries
//!   no valid token, since authenticating may help;
//! - **403** when the request is authenticated (or there is no JWT section) and a rule
//!   denies it;
//! - ext-authz: the service's own status and body when it denies; `status_on_error`
//!   (403) when it cannot be asked, unless `failure_mode_allow`.
//!
//! Headers named in `forward_claims` are always removed from incoming requests, so a
//! client cannot forge them. Scalar claims are also set as request properties
//! `jwt.<claim>` (for the rate-limit filter's `property:jwt.sub` key).
//!
//! Metrics: `weft_filter_authz_decisions_total{decision}`, decision one of `allowed`,
//! `unauthenticated`, `forbidden`, `ext_denied`, `ext_unavailable`.

mod jwks;
mod jwt;
mod rbac;
mod recent;

#[cfg(feature = "ext-authz")]
mod ext;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest;
use weft_sdk::metrics::Counter;
use weft_sdk::{clock, log, state, Action, Filter, InitContext, LocalResponse, Reads, Request};

pub use jwt::TokenError;
pub use rbac::{Conditions, Decision, Rule};

fn default_skew() -> Duration {
    Duration::from_secs(60)
}

fn default_header() -> String {
    "authorization".into()
}

fn yes() -> bool {
    true
}

fn default_cache() -> Option<Duration> {
    Some(Duration::from_secs(300))
}

/// JWT validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` tokens must carry.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Audiences accepted (any; none: not checked).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// An inline JWKS.
    #[serde(default)]
    pub jwks: Option<Value>,
    /// The name of a file (under the filter's `files:`) holding the JWKS.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// Clock difference tolerated on `exp` and `nbf`.
    #[serde(default = "default_skew", with = "weft_sdk::config::duration")]
    pub clock_skew: Duration,
    /// The header carrying `Bearer <token>`.
    #[serde(default = "default_header")]
    pub header: String,
    /// Refuse requests without a token (401).
    #[serde(default = "yes")]
    pub required: bool,
    /// Claims copied into request headers: claim name -> header name.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// Remove the token before the request goes upstream.
    #[serde(default)]
    pub strip_token: bool,
    /// Keep verified tokens this long in shared state, so each is verified once (never
    /// past its expiry). `0s` turns the cache off.
    #[serde(default = "default_cache", with = "weft_sdk::config::duration::option")]
    pub cache: Option<Duration>,
}

/// The configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// JWT validation.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// RBAC rules, the first that applies decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// The decision when no rule applies.
    #[serde(default)]
    pub default_action: Option<Decision>,
    /// External authorization (the `ext-authz` build).
    #[serde(default)]
    pub ext_authz: Option<Value>,
}

struct Jwt {
    keys: Vec<jwks::Entry>,
    config: JwtConfig,
    /// Tokens this instance verified recently, with their claims: a hit costs no host
    /// call, no hashing and no JSON. Bounded; emptied when full.
    recent: RefCell<recent::Recent<Rc<Verified>>>,
}

/// A verified token's claims, with what every request presenting the token is given:
/// its `jwt.<claim>` properties and its forwarded claim headers, worked out once.
struct Verified {
    claims: Map<String, Value>,
    properties: Vec<(String, String)>,
    forwarded: Vec<(String, String)>,
}

impl Verified {
    fn new(claims: Map<String, Value>, config: &JwtConfig) -> Verified {
        let properties = claims
            .iter()
            .filter_map(|(name, v)| {
                let mut property = String::with_capacity(4 + name.len());
                property.push_str("jwt.");
                property.push_str(name);
                Some((property, scalar(v)?))
            })
            .collect();
        let forwarded = config
            .forward_claims
            .iter()
            .filter_map(|(claim, header)| Some((header.clone(), scalar(claims.get(claim)?)?)))
            .collect();
        Verified {
            claims,
            properties,
            forwarded,
        }
    }
}

struct Metrics {
    allowed: Counter,
    unauthenticated: Counter,
    forbidden: Counter,
    #[cfg(feature = "ext-authz")]
    ext_denied: Counter,
    #[cfg(feature = "ext-authz")]
    ext_unavailable: Counter,
}

/// Authenticates and authorizes requests.
pub struct Authz {
    jwt: Option<Jwt>,
    rules: Vec<Rule>,
    default: Decision,
    #[cfg(feature = "ext-authz")]
    ext: Option<ext::ExtConfig>,
    metrics: Metrics,
}

/// What authentication found.
enum Principal {
    /// A valid token.
    Token(Rc<Verified>),
    /// No token (and none required).
    Anonymous,
}

fn unauthorized(description: Option<&str>) -> Action {
    let challenge = match description {
        Some(d) => {
            format!("Bearer realm=\"weft\", error=\"invalid_token\", error_description=\"{d}\"")
        }
        None => "Bearer realm=\"weft\"".to_owned(),
    };
    Action::Respond(
        LocalResponse::new(401)
            .header("www-authenticate", challenge)
            .header("content-type", "text/plain; charset=utf-8")
            .body(format!(
                "unauthorized: {}\n",
                description.unwrap_or("a bearer token is required")
            )),
    )
}

fn forbidden() -> Action {
    Action::respond(403, "access denied\n")
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Jwt {
    fn load(config: JwtConfig, ctx: &InitContext) -> Result<Jwt, String> {
        let raw = match (&config.jwks, &config.jwks_file) {
            (Some(inline), None) => {
                serde_json::to_vec(inline).map_err(|e| format!("jwt.jwks: {e}"))?
            }
            (None, Some(name)) => ctx
                .file(name)
                .ok_or_else(|| {
                    format!("jwt.jwks_file: no file named {name:?} under the filter's files")
                })?
                .to_vec(),
            _ => return Err("jwt: give exactly one of jwks or jwks_file".into()),
        };
        let field = if config.jwks.is_some() {
            "jwt.jwks"
        } else {
            "jwt.jwks_file"
        };
        let keys = jwks::parse(&raw).map_err(|e| format!("{field}: {e}"))?;
        Ok(Jwt {
            keys,
            config,
            recent: RefCell::default(),
        })
    }

    /// Verifies (or finds in a cache) a token.
    fn verify(&self, token: &str) -> Result<Rc<Verified>, TokenError> {
        let now = clock::now_secs();
        let expect = jwt::Expectations {
            issuer: self.config.issuer.as_deref(),
            audiences: &self.config.audiences,
            skew_secs: self.config.clock_skew.as_secs(),
            now_secs: now,
        };
        let Some(ttl) = self.config.cache.filter(|d| !d.is_zero()) else {
            let claims = jwt::verify(token, &self.keys, &expect)?;
            return Ok(Rc::new(Verified::new(claims, &self.config)));
        };
        if let Some(verified) = self.recent.borrow().get(token) {
            // Still checked: a cache may hold a token across its nbf or exp.
            jwt::check_claims(&verified.claims, &expect)?;
            return Ok(verified.clone());
        }
        let claims = self.verify_shared(token, ttl, &expect)?;
        let verified = Rc::new(Verified::new(claims, &self.config));
        self.recent.borrow_mut().insert(token, verified.clone());
        Ok(verified)
    }

    /// Verifies a token or finds it in the cache all workers share, keyed by its
    /// digest.
    fn verify_shared(
        &self,
        token: &str,
        ttl: Duration,
        expect: &jwt::Expectations<'_>,
    ) -> Result<Map<String, Value>, TokenError> {
        let digest = sha2::Sha256::digest(token.as_bytes());
        let mut key = String::with_capacity(4 + 64);
        key.push_str("tok:");
        weft_sdk::text::push_hex(&mut key, &digest);
        if let Some(bytes) = state::get(&key) {
            if let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(&bytes) {
                jwt::check_claims(&claims, expect)?;
                return Ok(claims);
            }
        }
        let claims = jwt::verify(token, &self.keys, expect)?;
        let until_exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map(|exp| Duration::from_secs_f64((exp - expect.now_secs as f64).max(0.0)));
        let ttl = until_exp.map_or(ttl, |u| u.min(ttl));
        if !ttl.is_zero() {
            if let Ok(bytes) = serde_json::to_vec(&claims) {
                state::set(&key, &bytes, Some(ttl));
            }
        }
        Ok(claims)
    }

    /// Reads and checks the request's token; `Err` is the response to send.
    fn authenticate(&self, req: &mut Request) -> Result<Principal, Action> {
        // Read before anything changes, so the header is borrowed, not copied.
        let verified = match req.header_ref(&self.config.header) {
            None => None,
            Some(value) => {
                let Some(token) = std::str::from_utf8(&value).ok().and_then(bearer) else {
                    return Err(unauthorized(Some(
                        "the authorization header is not a bearer token",
                    )));
                };
                Some(
                    self.verify(token)
                        .map_err(|e| unauthorized(Some(&e.describe())))?,
                )
            }
        };
        for header in self.config.forward_claims.values() {
            req.remove_header(header);
        }
        let Some(verified) = verified else {
            return if self.config.required {
                Err(unauthorized(None))
            } else {
                Ok(Principal::Anonymous)
            };
        };
        for (header, v) in &verified.forwarded {
            req.set_header(header, v).ok();
        }
        for (property, v) in &verified.properties {
            req.set_property(property, v);
        }
        if self.config.strip_token {
            req.remove_header(&self.config.header);
        }
        Ok(Principal::Token(verified))
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[weft_sdk::filter]
impl Filter for Authz {
    type Config = Config;

    fn new(config: Config, ctx: &InitContext) -> Result<Self, String> {
        let jwt = config.jwt.map(|j| Jwt::load(j, ctx)).transpose()?;
        #[cfg(feature = "ext-authz")]
        let ext = config
            .ext_authz
            .map(|v| {
                serde_json::from_value::<ext::ExtConfig>(v).map_err(|e| format!("ext_authz: {e}"))
            })
            .transpose()?;
        #[cfg(not(feature = "ext-authz"))]
        if config.ext_authz.is_some() {
            return Err("ext_authz: this build of authz has no external authorization; use the ext-authz module".into());
        }
        for (i, r) in config.rules.iter().enumerate() {
            if !r.when.claims.is_empty() && jwt.is_none() {
                return Err(format!(
                    "rules[{i}].when.claims: needs a jwt section to read claims from"
                ));
            }
        }
        let default = config.default_action.unwrap_or(if config.rules.is_empty() {
            Decision::Allow
        } else {
            Decision::Deny
        });
        let counter = |d: &str| Counter::new("authz_decisions_total", &[("decision", d)]);
        Ok(Authz {
            jwt,
            rules: config.rules,
            default,
            #[cfg(feature = "ext-authz")]
            ext,
            metrics: Metrics {
                allowed: counter("allowed"),
                unauthenticated: counter("unauthenticated"),
                forbidden: counter("forbidden"),
                #[cfg(feature = "ext-authz")]
                ext_denied: counter("ext_denied"),
                #[cfg(feature = "ext-authz")]
                ext_unavailable: counter("ext_unavailable"),
            },
        })
    }

    fn reads(&self) -> Reads {
        let reads = match &self.jwt {
            Some(jwt) => Reads::new().request_header(&jwt.config.header),
            None => Reads::new(),
        };
        self.rules.iter().fold(reads, |r, rule| rule.when.reads(r))
    }

    fn on_request_headers(&self, req: &mut Request) -> Action {
        let principal = match &self.jwt {
            None => Principal::Anonymous,
            Some(jwt) => match jwt.authenticate(req) {
                Ok(p) => p,
                Err(refusal) => {
                    self.metrics.unauthenticated.inc();
                    return refusal;
                }
            },
        };
        #[cfg(feature = "ext-authz")]
        if let Some(cfg) = &self.ext {
            match ext::check(cfg, req) {
                ext::Verdict::Allow => {}
                ext::Verdict::Deny(resp) => {
                    self.metrics.ext_denied.inc();
                    return Action::Respond(resp);
                }
                ext::Verdict::Unavailable(why) => {
                    self.metrics.ext_unavailable.inc();
                    log::warn(&format!("authorization service unavailable: {why}"));
                    if !cfg.failure_mode_allow {
                        return Action::respond(
                            cfg.status_on_error,
                            "authorization service unavailable\n",
                        );
                    }
                }
            }
        }
        let claims = match &principal {
            Principal::Token(v) => Some(&v.claims),
            Principal::Anonymous => None,
        };
        match rbac::decide(&self.rules, self.default, req, claims) {
            (Decision::Allow, _) => {
                self.metrics.allowed.inc();
                Action::Continue
            }
            (Decision::Deny, rule) => {
                if log::enabled(log::Level::Debug) {
                    log::debug(&format!(
                        "denied by {}",
                        rule.unwrap_or("the default action")
                    ));
                }
                if claims.is_none() && self.jwt.is_some() {
                    self.metrics.unauthenticated.inc();
                    unauthorized(None)
                } else {
                    self.metrics.forbidden.inc();
                    forbidden()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
