//! Retries, as Envoy and Linkerd do them: on connection failures, resets, timeouts, 5xx
//! or chosen statuses; only for idempotent methods unless told otherwise; a number of
//! attempts, a timeout per attempt, exponential backoff with full jitter; and a retry
//! budget shared by every instance and worker, so that retries cannot multiply an
//! outage.
//!
//! ```yaml
//! filters:
//!   retry:
//!     module: target/filters/retry.wasm
//!     config:
//!       retry_on: [connect-failure, reset, timeout, gateway-error]   # the default
//!       # also: 5xx, retriable-status-codes, and the gRPC statuses cancelled,
//!       # deadline-exceeded, internal, resource-exhausted, unavailable
//!       retriable_status_codes: [409]
//!       max_attempts: 3                  # the first attempt included
//!       per_try_timeout: 1s
//!       backoff: { base: 25ms, max: 250ms }
//!       retry_non_idempotent: false      # POST and PATCH are not retried unless true
//!       replay_limit: 64KiB              # request bodies up to this are kept for replay
//!       budget: { ratio: 0.2, min_per_second: 10, window: 10s }   # or budget: null
//! ```
//!
//! - **connect-failure**: no connection (refused, unreachable, connect timeout);
//!   **reset**: the connection closed or broke before a response; **timeout**: no
//!   response within the per-try timeout; **5xx**: any 500-599; **gateway-error**: 502,
//!   503, 504; **retriable-status-codes**: the statuses listed.
//! - **gRPC** (`cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`,
//!   `unavailable`): a gRPC request whose response carries that `grpc-status` in its
//!   headers (a trailers-only answer, as servers send when they fail before any message,
//!   and as the proxy answers its own errors): as Envoy, a status that arrives in the
//!   trailers after messages is too late to retry. gRPC requests are POSTs; with a gRPC
//!   condition they are retried (and their bodies kept for replay) regardless of
//!   `retry_non_idempotent`, since gRPC's status says the call was not acted on.
//! - **Budget**: over the last `window`, retries may not exceed `ratio` × requests plus
//!   `min_per_second` × the window's seconds (Linkerd's retry budget). Counted in the
//!   host's shared state, so it holds across every worker and instance.
//! - **Bodies**: a request whose body is larger than `replay_limit` cannot be sent again;
//!   it is not retried, and that is counted.
//! - **Visibility**: each retry carries `x-weft-retry-attempt: <n>` upstream; a response
//!   that took more than one attempt carries `x-weft-attempts: <n>`.
//!
//! Metrics: `weft_filter_retries_total{reason}`, `weft_filter_retry_budget_exhausted_total`,
//! `weft_filter_retry_not_replayable_total`, `weft_filter_retry_attempts_exhausted_total`.

use std::time::Duration;

use serde::Deserialize;
use weft_sdk::metrics::Counter;
use weft_sdk::text::concat_u64;
use weft_sdk::{
    clock, random, state, Action, Filter, InitContext, Reads, Request, Response, UpstreamFailure,
};

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// The first backoff's cap.
    #[serde(with = "weft_sdk::config::duration")]
    pub base: Duration,
    /// The largest backoff.
    #[serde(with = "weft_sdk::config::duration")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        }
    }
}

/// The retry budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Retries allowed per request over the window.
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic.
    pub min_per_second: u64,
    /// How far back it counts.
    #[serde(with = "weft_sdk::config::duration")]
    pub window: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

fn default_retry_on() -> Vec<String> {
    ["connect-failure", "reset", "timeout", "gateway-error"]
        .map(String::from)
        .to_vec()
}

fn default_attempts() -> u32 {
    3
}

fn default_replay() -> u64 {
    64 << 10
}

fn default_budget() -> Option<Budget> {
    Some(Budget::default())
}

/// The configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// When to retry.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<String>,
    /// Statuses for `retriable-status-codes`.
    #[serde(default)]
    pub retriable_status_codes: Vec<u16>,
    /// Attempts in all, the first included.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// A timeout for each attempt.
    #[serde(default, with = "weft_sdk::config::duration::option")]
    pub per_try_timeout: Option<Duration>,
    /// Backoff between attempts.
    #[serde(default)]
    pub backoff: Backoff,
    /// Retry POST, PATCH and other methods that are not idempotent.
    #[serde(default)]
    pub retry_non_idempotent: bool,
    /// Largest request body kept for replay.
    #[serde(default = "default_replay", with = "weft_sdk::config::size")]
    pub replay_limit: u64,
    /// The retry budget (`null`: none).
    #[serde(default = "default_budget")]
    pub budget: Option<Budget>,
}

#[derive(Debug, Clone, Copy, Default)]
struct On {
    connect_failure: bool,
    reset: bool,
    timeout: bool,
    any_5xx: bool,
    gateway_error: bool,
    statuses: bool,
    /// gRPC status codes retried (bit per code).
    grpc: u32,
}

/// The gRPC conditions and their status codes.
const GRPC_CONDITIONS: [(&str, u32); 5] = [
    ("cancelled", 1),
    ("deadline-exceeded", 4),
    ("resource-exhausted", 8),
    ("internal", 13),
    ("unavailable", 14),
];

fn is_grpc(req: &Request) -> bool {
    req.header_ref("content-type")
        .is_some_and(|v| v.starts_with(b"application/grpc"))
}

/// Retries failed attempts.
pub struct Retry {
    on: On,
    statuses: Vec<u16>,
    max_attempts: u32,
    per_try_timeout: Option<Duration>,
    backoff: Backoff,
    retry_non_idempotent: bool,
    replay_limit: u64,
    budget: Option<Budget>,
    metrics: Metrics,
}

struct Metrics {
    by_reason: Vec<(&'static str, Counter)>,
    budget_exhausted: Counter,
    not_replayable: Counter,
    attempts_exhausted: Counter,
}

const REASONS: [&str; 6] = [
    "connect-failure",
    "reset",
    "timeout",
    "status",
    "grpc-status",
    "other",
];

fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

impl Retry {
    /// Why this response should be retried, if it should.
    fn reason(&self, req: &Request, resp: &Response) -> Option<&'static str> {
        let status = resp.status();
        if self.on.grpc != 0 && is_grpc(req) {
            // The status the client will see: the upstream's, or, for the proxy's own
            // failure, the one the proxy answers with (a connection never made is
            // UNAVAILABLE, a timeout DEADLINE_EXCEEDED).
            let code = match resp.upstream_failure() {
                Some(UpstreamFailure::ConnectFailure | UpstreamFailure::ConnectTimeout) => Some(14),
                Some(UpstreamFailure::Timeout) => Some(4),
                _ => resp
                    .header_bytes("grpc-status")
                    .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<u32>().ok()),
            };
            if let Some(code) = code.filter(|c| *c < 32) {
                return (self.on.grpc & (1 << code) != 0).then_some("grpc-status");
            }
        }
        match resp.upstream_failure() {
            Some(UpstreamFailure::ConnectFailure | UpstreamFailure::ConnectTimeout)
                if self.on.connect_failure =>
            {
                return Some("connect-failure")
            }
            Some(UpstreamFailure::Reset | UpstreamFailure::ProtocolError) if self.on.reset => {
                return Some("reset")
            }
            Some(UpstreamFailure::Timeout) if self.on.timeout => return Some("timeout"),
            _ => {}
        }
        if self.on.any_5xx && (500..=599).contains(&status) {
            return Some(if resp.upstream_failure().is_some() {
                "other"
            } else {
                "status"
            });
        }
        if self.on.gateway_error && matches!(status, 502..=504) {
            return Some(if resp.upstream_failure().is_some() {
                "other"
            } else {
                "status"
            });
        }
        if self.on.statuses && self.statuses.contains(&status) {
            return Some("status");
        }
        None
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff
            .base
            .saturating_mul(1u32 << (attempt - 1).min(20));
        exp.min(self.backoff.max).mul_f64(random::f64())
    }

    /// Takes a retry from the budget, if there is one left.
    fn budget_allows(&self) -> bool {
        let Some(b) = &self.budget else { return true };
        let now = clock::now_secs();
        let secs = b.window.as_secs().max(1);
        let (mut requests, mut retries) = (0i64, 0i64);
        for i in 0..secs {
            requests += state::counter_get(&concat_u64("req:", now - i));
            retries += state::counter_get(&concat_u64("rty:", now - i));
        }
        let allowance = b.ratio * requests as f64 + (b.min_per_second * secs) as f64;
        if (retries + 1) as f64 > allowance {
            return false;
        }
        state::counter_add(
            &concat_u64("rty:", now),
            1,
            Some(b.window + Duration::from_secs(1)),
        );
        true
    }
}

#[weft_sdk::filter]
impl Filter for Retry {
    type Config = Config;

    fn new(config: Config, _ctx: &InitContext) -> Result<Self, String> {
        let mut on = On::default();
        for (i, r) in config.retry_on.iter().enumerate() {
            match r.as_str() {
                "connect-failure" => on.connect_failure = true,
                "reset" => on.reset = true,
                "timeout" => on.timeout = true,
                "5xx" => on.any_5xx = true,
                "gateway-error" => on.gateway_error = true,
                "retriable-status-codes" => on.statuses = true,
                other => match GRPC_CONDITIONS.iter().find(|(name, _)| *name == other) {
                    Some((_, code)) => on.grpc |= 1 << code,
                    None => {
                        return Err(format!(
                            "retry_on[{i}]: unknown condition {other:?}; use connect-failure, reset, \
                             timeout, 5xx, gateway-error, retriable-status-codes, or a gRPC status: \
                             cancelled, deadline-exceeded, internal, resource-exhausted, unavailable"
                        ))
                    }
                },
            }
        }
        if on.statuses && config.retriable_status_codes.is_empty() {
            return Err(
                "retriable_status_codes: list the statuses for retriable-status-codes".into(),
            );
        }
        if config.max_attempts == 0 {
            return Err("max_attempts: at least 1".into());
        }
        if config.backoff.base > config.backoff.max {
            return Err("backoff: base is larger than max".into());
        }
        if let Some(b) = &config.budget {
            if !(0.0..=10.0).contains(&b.ratio) || b.window.as_secs() == 0 {
                return Err("budget: ratio must be 0 to 10 and window at least 1s".into());
            }
        }
        Ok(Retry {
            on,
            statuses: config.retriable_status_codes,
            max_attempts: config.max_attempts,
            per_try_timeout: config.per_try_timeout,
            backoff: config.backoff,
            retry_non_idempotent: config.retry_non_idempotent,
            replay_limit: config.replay_limit,
            budget: config.budget,
            metrics: Metrics {
                by_reason: REASONS
                    .iter()
                    .map(|r| (*r, Counter::new("retries_total", &[("reason", r)])))
                    .collect(),
                budget_exhausted: Counter::new("retry_budget_exhausted_total", &[]),
                not_replayable: Counter::new("retry_not_replayable_total", &[]),
                attempts_exhausted: Counter::new("retry_attempts_exhausted_total", &[]),
            },
        })
    }

    fn reads(&self) -> Reads {
        let reads = Reads::new().method().attempt();
        if self.on.grpc != 0 {
            reads
                .request_header("content-type")
                .response_header("grpc-status")
        } else {
            reads
        }
    }

    fn on_request_headers(&self, req: &mut Request) -> Action {
        if self.retry_non_idempotent
            || idempotent(&req.method())
            || (self.on.grpc != 0 && is_grpc(req))
        {
            req.set_replay_limit(self.replay_limit);
        }
        if let Some(t) = self.per_try_timeout {
            req.set_try_timeout(t);
        }
        if let Some(b) = &self.budget {
            state::counter_add(
                &concat_u64("req:", clock::now_secs()),
                1,
                Some(b.window + Duration::from_secs(1)),
            );
        }
        Action::Continue
    }

    fn on_response_headers(&self, req: &mut Request, resp: &mut Response) -> Action {
        let attempt = req.attempt();
        let Some(reason) = self.reason(req, resp) else {
            if attempt > 1 {
                resp.set_header("x-weft-attempts", &attempt.to_string())
                    .ok();
            }
            return Action::Continue;
        };
        let deliver = |resp: &mut Response| {
            if attempt > 1 {
                resp.set_header("x-weft-attempts", &attempt.to_string())
                    .ok();
            }
            Action::Continue
        };
        if attempt >= self.max_attempts {
            self.metrics.attempts_exhausted.inc();
            return deliver(resp);
        }
        if !self.retry_non_idempotent && !idempotent(&req.method()) && reason != "grpc-status" {
            return deliver(resp);
        }
        if !req.body_replayable() {
            self.metrics.not_replayable.inc();
            return deliver(resp);
        }
        if !self.budget_allows() {
            self.metrics.budget_exhausted.inc();
            return deliver(resp);
        }
        if let Some((_, c)) = self.metrics.by_reason.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
        req.set_header("x-weft-retry-attempt", &(attempt + 1).to_string())
            .ok();
        Action::Retry {
            backoff: self.backoff(attempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::testing::{Harness, TestRequest, TestResponse};

    fn decide(
        h: &Harness<Retry>,
        req: &mut TestRequest,
        resp: TestResponse,
    ) -> (Action, TestResponse) {
        let mut resp = resp;
        let a = h.on_response_headers(req, &mut resp);
        (a, resp)
    }

    #[test]
    fn grpc_statuses_are_retried_for_grpc_requests() {
        let h = Harness::<Retry>::new(r#"{"retry_on": ["unavailable", "resource-exhausted"]}"#)
            .unwrap();
        let grpc =
            || TestRequest::post("/test.Echo/Unary").header("content-type", "application/grpc");
        let mut req = grpc();
        h.on_request_headers(&mut req);
        assert_eq!(
            req.replay_limit(),
            Some(64 << 10),
            "a gRPC POST is kept for replay"
        );
        for (status, retried) in [("14", true), ("8", true), ("5", false), ("0", false)] {
            let (a, _) = decide(
                &h,
                &mut grpc(),
                TestResponse::new(200).header("grpc-status", status),
            );
            assert_eq!(
                matches!(a, Action::Retry { .. }),
                retried,
                "grpc-status {status}"
            );
        }
        // The proxy's own connect failure is what the client sees as UNAVAILABLE.
        let (a, _) = decide(
            &h,
            &mut grpc(),
            TestResponse::failed(UpstreamFailure::ConnectFailure),
        );
        assert!(matches!(a, Action::Retry { .. }));
        // Not a gRPC request: grpc-status means nothing.
        let (a, _) = decide(
            &h,
            &mut TestRequest::get("/"),
            TestResponse::new(200).header("grpc-status", "14"),
        );
        assert_eq!(a, Action::Continue);
        assert!(Harness::<Retry>::new(r#"{"retry_on": ["unavaliable"]}"#)
            .err()
            .unwrap()
            .contains("gRPC status"));
    }

    #[test]
    fn retries_failures_it_is_configured_for() {
        let h = Harness::<Retry>::new("null").unwrap();
        let mut req = TestRequest::get("/");
        h.on_request_headers(&mut req);
        assert_eq!(req.replay_limit(), Some(64 << 10));
        for failure in [
            UpstreamFailure::ConnectFailure,
            UpstreamFailure::Reset,
            UpstreamFailure::Timeout,
        ] {
            let (a, _) = decide(
                &h,
                &mut TestRequest::get("/"),
                TestResponse::failed(failure),
            );
            assert!(matches!(a, Action::Retry { .. }), "{failure:?}");
        }
        let (a, _) = decide(&h, &mut TestRequest::get("/"), TestResponse::new(503));
        assert!(
            matches!(a, Action::Retry { .. }),
            "gateway-error covers 503"
        );
        let (a, _) = decide(&h, &mut TestRequest::get("/"), TestResponse::new(500));
        assert_eq!(a, Action::Continue, "500 is not a gateway error");
        let (a, _) = decide(&h, &mut TestRequest::get("/"), TestResponse::new(200));
        assert_eq!(a, Action::Continue);
    }

    #[test]
    fn marks_retries_and_stops_after_max_attempts() {
        let h = Harness::<Retry>::new(r#"{"max_attempts": 3}"#).unwrap();
        let mut req = TestRequest::get("/");
        let (a, _) = decide(&h, &mut req, TestResponse::new(502));
        assert!(matches!(a, Action::Retry { .. }));
        assert_eq!(req.header_now("x-weft-retry-attempt").as_deref(), Some("2"));
        req.next_attempt();
        assert!(matches!(
            decide(&h, &mut req, TestResponse::new(502)).0,
            Action::Retry { .. }
        ));
        req.next_attempt();
        let (a, resp) = decide(&h, &mut req, TestResponse::new(502));
        assert_eq!(a, Action::Continue, "third attempt was the last");
        assert_eq!(resp.header_now("x-weft-attempts").as_deref(), Some("3"));
        assert_eq!(h.host().metric("retry_attempts_exhausted_total", &[]), 1.0);
    }

    #[test]
    fn only_idempotent_methods_unless_told() {
        let h = Harness::<Retry>::new("null").unwrap();
        let mut post = TestRequest::post("/");
        h.on_request_headers(&mut post);
        assert_eq!(
            post.replay_limit(),
            None,
            "no replay buffer for a request not retried"
        );
        assert_eq!(
            decide(&h, &mut post, TestResponse::new(503)).0,
            Action::Continue
        );
        let h = Harness::<Retry>::new(r#"{"retry_non_idempotent": true}"#).unwrap();
        assert!(matches!(
            decide(&h, &mut TestRequest::post("/"), TestResponse::new(503)).0,
            Action::Retry { .. }
        ));
    }

    #[test]
    fn a_body_too_large_to_replay_is_not_retried_and_counted() {
        let h = Harness::<Retry>::new("null").unwrap();
        let mut req = TestRequest::get("/").body_replayable(false);
        assert_eq!(
            decide(&h, &mut req, TestResponse::new(503)).0,
            Action::Continue
        );
        assert_eq!(h.host().metric("retry_not_replayable_total", &[]), 1.0);
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let h = Harness::<Retry>::new(
            r#"{"backoff": {"base": "10ms", "max": "40ms"}, "max_attempts": 10}"#,
        )
        .unwrap();
        let f = h.filter();
        for attempt in 1..8 {
            let cap = Duration::from_millis((10u64 << (attempt - 1)).min(40));
            for _ in 0..50 {
                assert!(f.backoff(attempt) <= cap, "attempt {attempt}");
            }
        }
        let spread: std::collections::HashSet<_> =
            (0..50).map(|_| f.backoff(3).as_micros()).collect();
        assert!(spread.len() > 40, "jitter");
    }

    #[test]
    fn the_budget_stops_retries_in_an_outage_and_refills() {
        let h = Harness::<Retry>::new(
            r#"{"budget": {"ratio": 0.2, "min_per_second": 1, "window": "10s"}}"#,
        )
        .unwrap();
        let mut retried = 0;
        for _ in 0..100 {
            let mut req = TestRequest::get("/");
            h.on_request_headers(&mut req);
            if matches!(
                decide(&h, &mut req, TestResponse::new(503)).0,
                Action::Retry { .. }
            ) {
                retried += 1;
            }
        }
        // 0.2 x 100 requests + 1/s x 10 s.
        assert_eq!(retried, 30);
        assert_eq!(h.host().metric("retry_budget_exhausted_total", &[]), 70.0);
        h.host().advance(Duration::from_secs(11));
        let mut req = TestRequest::get("/");
        h.on_request_headers(&mut req);
        assert!(
            matches!(
                decide(&h, &mut req, TestResponse::new(503)).0,
                Action::Retry { .. }
            ),
            "a new window"
        );
    }

    #[test]
    fn status_codes_and_5xx_conditions() {
        let h = Harness::<Retry>::new(
            r#"{"retry_on": ["retriable-status-codes"], "retriable_status_codes": [409]}"#,
        )
        .unwrap();
        assert!(matches!(
            decide(&h, &mut TestRequest::get("/"), TestResponse::new(409)).0,
            Action::Retry { .. }
        ));
        assert_eq!(
            decide(&h, &mut TestRequest::get("/"), TestResponse::new(503)).0,
            Action::Continue
        );
        let h = Harness::<Retry>::new(r#"{"retry_on": ["5xx"]}"#).unwrap();
        assert!(matches!(
            decide(&h, &mut TestRequest::get("/"), TestResponse::new(500)).0,
            Action::Retry { .. }
        ));
    }

    #[test]
    fn bad_configurations_name_their_field() {
        let err = Harness::<Retry>::new(r#"{"retry_on": ["sometimes"]}"#)
            .err()
            .unwrap();
        assert!(err.starts_with("retry_on[0]: unknown condition"), "{err}");
        let err = Harness::<Retry>::new(r#"{"retry_on": ["retriable-status-codes"]}"#)
            .err()
            .unwrap();
        assert!(err.starts_with("retriable_status_codes"), "{err}");
        let err = Harness::<Retry>::new(r#"{"replay_limit": "lots"}"#)
            .err()
            .unwrap();
        assert!(err.contains("invalid size"), "{err}");
    }
}
