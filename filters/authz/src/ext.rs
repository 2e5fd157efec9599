//! External authorization: ask a service in a cluster whether a request may pass, as
//! Envoy's HTTP ext_authz does. Written as straight-line code: the proxy's worker goes
//! on serving other requests while this filter waits for the answer.

use std::time::Duration;

use serde::Deserialize;
use weft_sdk::http::{self, OutboundRequest};
use weft_sdk::{LocalResponse, Request};

fn default_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_forward() -> Vec<String> {
    vec![
        "authorization".into(),
        "cookie".into(),
        "x-request-id".into(),
    ]
}

fn default_error_status() -> u16 {
    403
}

/// The ext-authz configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtConfig {
    /// The cluster of the authorization service.
    pub cluster: String,
    /// Put before the request's path in the check (the check is the request's method
    /// and path, with the forwarded headers).
    #[serde(default)]
    pub path_prefix: String,
    /// How long to wait for the service.
    #[serde(default = "default_timeout", with = "weft_sdk::config::duration")]
    pub timeout: Duration,
    /// Request headers sent to the service.
    #[serde(default = "default_forward")]
    pub forward_headers: Vec<String>,
    /// Headers of an allowing answer copied onto the request the upstream gets.
    #[serde(default)]
    pub upstream_headers: Vec<String>,
    /// Let requests through when the service cannot be asked.
    #[serde(default)]
    pub failure_mode_allow: bool,
    /// The status when the service cannot be asked (and `failure_mode_allow` is false).
    #[serde(default = "default_error_status")]
    pub status_on_error: u16,
}

/// What the service said.
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Denied, with the service's answer for the client.
    Deny(LocalResponse),
    /// The service could not be asked.
    Unavailable(String),
}

/// Headers of the service's answer the client may see.
const PASS_BACK_SKIP: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "date",
];

/// Asks the service about `req`; on allow, copies the chosen headers onto `req`.
pub fn check(cfg: &ExtConfig, req: &mut Request) -> Verdict {
    let mut check =
        OutboundRequest::new(&req.method(), &format!("{}{}", cfg.path_prefix, req.path()))
            .timeout(cfg.timeout)
            .header("x-forwarded-host", &req.authority())
            .header("x-forwarded-for", &req.client_ip());
    for h in &cfg.forward_headers {
        for v in req.header_all(h) {
            check = check.header(h, &v);
        }
    }
    match http::send(&cfg.cluster, &check) {
        Ok(resp) if (200..300).contains(&resp.status) => {
            for h in &cfg.upstream_headers {
                if let Some(v) = resp.header(h) {
                    req.set_header(h, v).ok();
                }
            }
            Verdict::Allow
        }
        Ok(resp) => {
            let mut local = LocalResponse::new(resp.status).body(resp.body.clone());
            for (k, v) in &resp.headers {
                if !PASS_BACK_SKIP.contains(&k.to_ascii_lowercase().as_str()) {
                    local = local.header(k.as_str(), v.as_str());
                }
            }
            Verdict::Deny(local)
        }
        Err(e) => Verdict::Unavailable(e.to_string()),
    }
}
