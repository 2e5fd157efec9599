//! Fault injection: abort a share of requests with a status, or delay them, to test how
//! clients and services cope.
//!
//! ```yaml
//! filters:
//!   chaos:
//!     module: target/filters/fault.wasm
//!     config:
//!       match: { prefix: /api }          # which requests may be faulted (default: all)
//!       abort: { percent: 5, status: 503, body: "injected" }   # or grpc_status: 14
//!       delay: { percent: 10, duration: 200ms }
//!       header_override: true            # let requests ask for a fault (tests)
//! ```
//!
//! With `header_override`, a matching request may ask for a fault with
//! `x-weft-fault-abort: <status>` (and `x-weft-fault-abort-percent: <0-100>`, default
//! 100) or `x-weft-fault-delay: <milliseconds>` (and `x-weft-fault-delay-percent`), as
//! Envoy's `x-envoy-fault-*` headers do. A request selected for both an abort and a
//! delay is aborted at once: the contract's `delay` goes on to the next filter.
//!
//! gRPC: `abort: { grpc_status: N }` (0 to 16) answers as gRPC does, HTTP 200 with
//! `content-type: application/grpc`, `grpc-status: N` and `grpc-message` (the body
//! text); with `header_override`, `x-weft-fault-abort-grpc-request: <N>` asks for it
//! (Envoy's `x-envoy-fault-abort-grpc-request`). An HTTP `status` abort of a gRPC
//! request is turned into a gRPC status by the proxy, as all its local answers are.
//!
//! Metrics: `weft_filter_faults_total{kind="abort"|"delay"}`.

use std::time::Duration;

use serde::Deserialize;
use weft_sdk::matching::Match;
use weft_sdk::metrics::Counter;
use weft_sdk::{random, Action, Filter, InitContext, LocalResponse, Reads, Request};

/// Aborting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Abort {
    /// Share of matching requests aborted, 0 to 100.
    pub percent: f64,
    /// The status they get (default 503).
    #[serde(default = "default_status")]
    pub status: u16,
    /// The body they get.
    #[serde(default)]
    pub body: Option<String>,
    /// Answer as gRPC with this status (0 to 16) instead of `status`.
    #[serde(default)]
    pub grpc_status: Option<u32>,
}

/// What an aborted request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aborted {
    /// An HTTP status.
    Http(u16),
    /// A gRPC status.
    Grpc(u32),
}

fn default_status() -> u16 {
    503
}

/// Delaying.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    /// Share of matching requests delayed, 0 to 100.
    pub percent: f64,
    /// How long.
    #[serde(with = "weft_sdk::config::duration")]
    pub duration: Duration,
}

/// The configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which requests may be faulted.
    #[serde(default, rename = "match")]
    pub matcher: Match,
    /// Abort a share of them.
    #[serde(default)]
    pub abort: Option<Abort>,
    /// Delay a share of them.
    #[serde(default)]
    pub delay: Option<Delay>,
    /// Let requests ask for faults with `x-weft-fault-*` headers.
    #[serde(default)]
    pub header_override: bool,
}

/// Injects faults.
pub struct Fault {
    config: Config,
    aborted: Counter,
    delayed: Counter,
}

fn check_percent(field: &str, p: f64) -> Result<(), String> {
    if (0.0..=100.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{field}: {p} is not a percentage (0 to 100)"))
    }
}

impl Fault {
    /// The abort this request gets, if any.
    fn abort_for(&self, req: &Request) -> Option<Aborted> {
        if self.config.header_override {
            if let Some(code) = req
                .header("x-weft-fault-abort-grpc-request")
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                let percent = header_percent(req, "x-weft-fault-abort-percent");
                if code <= 16 && random::chance(percent) {
                    return Some(Aborted::Grpc(code));
                }
            }
            if let Some(status) = req
                .header("x-weft-fault-abort")
                .and_then(|s| s.trim().parse::<u16>().ok())
            {
                let percent = header_percent(req, "x-weft-fault-abort-percent");
                if (100..=599).contains(&status) && random::chance(percent) {
                    return Some(Aborted::Http(status));
                }
            }
        }
        let abort = self.config.abort.as_ref()?;
        random::chance(abort.percent).then_some(match abort.grpc_status {
            Some(code) => Aborted::Grpc(code),
            None => Aborted::Http(abort.status),
        })
    }

    /// The delay this request gets, if any.
    fn delay_for(&self, req: &Request) -> Option<Duration> {
        if self.config.header_override {
            if let Some(ms) = req
                .header("x-weft-fault-delay")
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                let percent = header_percent(req, "x-weft-fault-delay-percent");
                if random::chance(percent) {
                    return Some(Duration::from_millis(ms.min(60_000)));
                }
            }
        }
        let delay = self.config.delay.as_ref()?;
        random::chance(delay.percent).then_some(delay.duration)
    }
}

/// gRPC's percent-encoding of a message's first line.
fn grpc_message(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let mut out = String::with_capacity(line.len());
    for b in line.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn header_percent(req: &Request, name: &str) -> f64 {
    req.header(name)
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

#[weft_sdk::filter]
impl Filter for Fault {
    type Config = Config;

    fn new(config: Config, _ctx: &InitContext) -> Result<Self, String> {
        if let Some(a) = &config.abort {
            check_percent("abort.percent", a.percent)?;
            if !(100..=599).contains(&a.status) {
                return Err(format!("abort.status: {} is not an HTTP status", a.status));
            }
            if a.grpc_status.is_some_and(|c| c > 16) {
                return Err(format!(
                    "abort.grpc_status: {} is not a gRPC status (0 to 16)",
                    a.grpc_status.unwrap_or_default()
                ));
            }
        }
        if let Some(d) = &config.delay {
            check_percent("delay.percent", d.percent)?;
        }
        Ok(Fault {
            config,
            aborted: Counter::new("faults_total", &[("kind", "abort")]),
            delayed: Counter::new("faults_total", &[("kind", "delay")]),
        })
    }

    fn reads(&self) -> Reads {
        let reads = self.config.matcher.reads(Reads::new());
        if !self.config.header_override {
            return reads;
        }
        [
            "x-weft-fault-abort",
            "x-weft-fault-abort-grpc-request",
            "x-weft-fault-abort-percent",
            "x-weft-fault-delay",
            "x-weft-fault-delay-percent",
        ]
        .into_iter()
        .fold(reads, Reads::request_header)
    }

    fn on_request_headers(&self, req: &mut Request) -> Action {
        if !self.config.matcher.matches(req) {
            return Action::Continue;
        }
        if let Some(aborted) = self.abort_for(req) {
            self.aborted.inc();
            let body = self
                .config
                .abort
                .as_ref()
                .and_then(|a| a.body.clone())
                .unwrap_or_else(|| "fault injected\n".to_owned());
            return Action::Respond(match aborted {
                Aborted::Http(status) => LocalResponse::new(status)
                    .header("content-type", "text/plain; charset=utf-8")
                    .header("x-weft-fault", "abort")
                    .body(body),
                // gRPC's trailers-only answer: the status in the headers, no body.
                Aborted::Grpc(code) => LocalResponse::new(200)
                    .header("content-type", "application/grpc")
                    .header("grpc-status", code.to_string())
                    .header("grpc-message", grpc_message(&body))
                    .header("x-weft-fault", "abort"),
            });
        }
        if let Some(d) = self.delay_for(req) {
            self.delayed.inc();
            return Action::Delay(d);
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::testing::{Harness, TestRequest};

    fn count(h: &Harness<Fault>, n: usize, req: impl Fn() -> TestRequest) -> (usize, usize) {
        let (mut aborts, mut delays) = (0, 0);
        for _ in 0..n {
            match h.on_request_headers(&mut req()) {
                Action::Respond(r) => {
                    assert_eq!(r.header_value("x-weft-fault"), Some("abort"));
                    aborts += 1
                }
                Action::Delay(_) => delays += 1,
                _ => {}
            }
        }
        (aborts, delays)
    }

    #[test]
    fn aborts_and_delays_their_share() {
        let h = Harness::<Fault>::new(r#"{"abort": {"percent": 10, "status": 500}, "delay": {"percent": 20, "duration": "50ms"}}"#).unwrap();
        let (aborts, delays) = count(&h, 10_000, || TestRequest::get("/"));
        assert!((850..1150).contains(&aborts), "10% aborted: {aborts}");
        // Delays are drawn among the requests not aborted: 20% of 90%.
        assert!((1600..2000).contains(&delays), "18% delayed: {delays}");
        assert_eq!(
            h.host().metric("faults_total", &[("kind", "abort")]),
            aborts as f64
        );
    }

    #[test]
    fn zero_percent_never_faults_and_match_limits_faults() {
        let h = Harness::<Fault>::new(r#"{"abort": {"percent": 0}}"#).unwrap();
        assert_eq!(count(&h, 1000, || TestRequest::get("/")), (0, 0));
        let h =
            Harness::<Fault>::new(r#"{"match": {"prefix": "/api"}, "abort": {"percent": 100}}"#)
                .unwrap();
        assert_eq!(count(&h, 10, || TestRequest::get("/web")), (0, 0));
        assert_eq!(count(&h, 10, || TestRequest::get("/api/x")), (10, 0));
    }

    #[test]
    fn headers_ask_for_faults_only_when_allowed() {
        let ask = || TestRequest::get("/").header("x-weft-fault-abort", "418");
        let h = Harness::<Fault>::new("null").unwrap();
        assert_eq!(count(&h, 10, ask), (0, 0), "not allowed by default");
        let h = Harness::<Fault>::new(r#"{"header_override": true}"#).unwrap();
        match h.on_request_headers(&mut ask()) {
            Action::Respond(r) => assert_eq!(r.status, 418),
            other => panic!("{other:?}"),
        }
        let delay =
            h.on_request_headers(&mut TestRequest::get("/").header("x-weft-fault-delay", "120"));
        assert_eq!(delay, Action::Delay(Duration::from_millis(120)));
        let (aborts, _) = count(&h, 4000, || {
            ask().header("x-weft-fault-abort-percent", "25")
        });
        assert!((850..1150).contains(&aborts), "25% of 4000: {aborts}");
    }

    #[test]
    fn grpc_aborts_answer_with_a_grpc_status() {
        let h = Harness::<Fault>::new(
            r#"{"abort": {"percent": 100, "grpc_status": 14, "body": "chaos 100%"}, "header_override": true}"#,
        )
        .unwrap();
        match h.on_request_headers(&mut TestRequest::post("/test.Echo/Unary")) {
            Action::Respond(r) => {
                assert_eq!(r.status, 200);
                assert_eq!(r.header_value("grpc-status"), Some("14"));
                assert_eq!(r.header_value("grpc-message"), Some("chaos 100%25"));
                assert_eq!(r.header_value("content-type"), Some("application/grpc"));
            }
            other => panic!("{other:?}"),
        }
        let asked = TestRequest::post("/x").header("x-weft-fault-abort-grpc-request", "8");
        let h = Harness::<Fault>::new(r#"{"header_override": true}"#).unwrap();
        match h.on_request_headers(&mut asked.clone()) {
            Action::Respond(r) => assert_eq!(r.header_value("grpc-status"), Some("8")),
            other => panic!("{other:?}"),
        }
        let err = Harness::<Fault>::new(r#"{"abort": {"percent": 5, "grpc_status": 17}}"#)
            .err()
            .unwrap();
        assert!(err.starts_with("abort.grpc_status"), "{err}");
    }

    #[test]
    fn bad_configurations_are_refused() {
        let err = Harness::<Fault>::new(r#"{"abort": {"percent": 150}}"#)
            .err()
            .unwrap();
        assert!(err.starts_with("abort.percent"), "{err}");
        let err = Harness::<Fault>::new(r#"{"abort": {"percent": 5, "status": 42}}"#)
            .err()
            .unwrap();
        assert!(err.starts_with("abort.status"), "{err}");
        let err = Harness::<Fault>::new(r#"{"delay": {"percent": 5, "duration": "soon"}}"#)
            .err()
            .unwrap();
        assert!(err.contains("invalid duration"), "{err}");
    }
}
