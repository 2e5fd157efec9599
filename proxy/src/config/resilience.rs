//! A cluster's defences against sick endpoints, as configured: active health checks,
//! passive outlier detection and circuit breakers (the names and defaults are Envoy's
//! where Envoy has one), and their checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::FieldError;
use super::model::duration_opt;

/// `health_check:` — probes each endpoint from one place per proxy.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// An HTTP check: the request's path (`/healthz`). Give this or `tcp: true`.
    #[serde(default)]
    pub path: Option<String>,
    /// A TCP check: the endpoint passes when it accepts a connection.
    #[serde(default)]
    pub tcp: bool,
    /// The HTTP check's `Host`. Default: the endpoint's address.
    #[serde(default)]
    pub host: Option<String>,
    /// Statuses that pass the HTTP check: codes (`200`) or ranges (`"200-299"`).
    /// Default: 200 only.
    #[serde(default)]
    pub expected_statuses: Vec<StatusSpec>,
    /// Time between two checks of an endpoint. Default 5s.
    #[serde(default, with = "duration_opt")]
    pub interval: Option<Duration>,
    /// Up to this much is added to each interval at random, so that proxies started
    /// together do not probe in step. Default: a tenth of the interval.
    #[serde(default, with = "duration_opt")]
    pub jitter: Option<Duration>,
    /// A check that takes longer fails. Default 1s.
    #[serde(default, with = "duration_opt")]
    pub timeout: Option<Duration>,
    /// Checks in a row that pass before an unhealthy endpoint takes requests again.
    /// Default 1.
    #[serde(default)]
    pub healthy_threshold: Option<u32>,
    /// Checks in a row that fail before an endpoint stops taking requests. Default 3.
    #[serde(default)]
    pub unhealthy_threshold: Option<u32>,
}

/// A status code or an inclusive range of them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StatusSpec {
    /// One code.
    Code(u16),
    /// `"200-299"`, inclusive.
    Range(String),
}

/// `outlier_detection:` — endpoints that fail requests in a row are ejected for a while.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierConfig {
    /// 5xx answers (or failures to answer) in a row that eject. Default 5; 0 turns
    /// this rule off.
    #[serde(default)]
    pub consecutive_5xx: Option<u32>,
    /// 502, 503 and 504 answers, resets, timeouts and connect failures in a row that
    /// eject. Default 5; 0 turns it off.
    #[serde(default)]
    pub consecutive_gateway_failure: Option<u32>,
    /// Connect failures (refused, timed out) in a row that eject. Default 5; 0 off.
    #[serde(default)]
    pub consecutive_connect_failure: Option<u32>,
    /// How often ejected endpoints are looked at to bring them back. Default 1s.
    #[serde(default, with = "duration_opt")]
    pub interval: Option<Duration>,
    /// An ejection lasts this times the number of times the endpoint was ejected.
    /// Default 30s.
    #[serde(default, with = "duration_opt")]
    pub base_ejection_time: Option<Duration>,
    /// The longest an ejection lasts. Default 300s.
    #[serde(default, with = "duration_opt")]
    pub max_ejection_time: Option<Duration>,
    /// At most this share of the cluster's endpoints is ejected at once (one always
    /// may be). Default 10.
    #[serde(default)]
    pub max_ejection_percent: Option<u32>,
}

/// `circuit_breakers:` — limits on what a cluster may pile up; a request over one gets
/// 503 with `x-weft-error: overflow` at once. Each limit is off unless given.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BreakersConfig {
    /// Open connections to the cluster's endpoints, all workers together.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Attempts waiting for a new connection to open.
    #[serde(default)]
    pub max_pending_requests: Option<u32>,
    /// Attempts in flight, from their start to the end of the response body.
    #[serde(default)]
    pub max_requests: Option<u32>,
    /// Retries in flight (a filter's retries count here; over the limit the retry is
    /// not sent and the response that asked for it is delivered).
    #[serde(default)]
    pub max_retries: Option<u32>,
}

/// A checked health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What is probed.
    pub probe: Probe,
    /// Between checks.
    pub interval: Duration,
    /// Added at random to each interval, at most.
    pub jitter: Duration,
    /// The limit on one check.
    pub timeout: Duration,
    /// Passes in a row that make an endpoint healthy.
    pub healthy_threshold: u32,
    /// Failures in a row that make it unhealthy.
    pub unhealthy_threshold: u32,
}

/// What a health check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Connects, and closes.
    Tcp,
    /// `GET path` over the cluster's protocol (and TLS); passes on an expected status.
    Http {
        /// The path.
        path: String,
        /// The `Host`, when not the endpoint's address.
        host: Option<String>,
        /// Inclusive ranges of passing statuses.
        expected: Vec<(u16, u16)>,
    },
}

/// Checked outlier detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlier {
    /// 5xx in a row that eject (0: never).
    pub consecutive_5xx: u32,
    /// Gateway failures in a row that eject (0: never).
    pub consecutive_gateway: u32,
    /// Connect failures in a row that eject (0: never).
    pub consecutive_connect: u32,
    /// Between looks at ejected endpoints.
    pub interval: Duration,
    /// The first ejection's length.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
    /// The most of the cluster ejected at once, in percent.
    pub max_ejection_percent: u32,
}

/// Checked circuit breakers (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breakers {
    /// Open connections.
    pub max_connections: Option<u32>,
    /// Attempts waiting for a connection.
    pub max_pending: Option<u32>,
    /// Attempts in flight.
    pub max_requests: Option<u32>,
    /// Retries in flight.
    pub max_retries: Option<u32>,
}

fn duration(field: &str, d: Option<Duration>, default: Duration) -> Result<Duration, FieldError> {
    match d {
        None => Ok(default),
        Some(d) if d.is_zero() => Err(FieldError::new(field, "must be more than 0")),
        Some(d) => Ok(d),
    }
}

fn at_least_one(field: &str, n: Option<u32>, default: u32) -> Result<u32, FieldError> {
    match n {
        None => Ok(default),
        Some(0) => Err(FieldError::new(field, "must be at least 1")),
        Some(n) => Ok(n),
    }
}

/// Checks `field` (`clusters.NAME.health_check`).
pub fn check_health(field: &str, c: &HealthCheckConfig) -> Result<HealthCheck, FieldError> {
    let probe = match (&c.path, c.tcp) {
        (Some(_), true) | (None, false) => {
            return Err(FieldError::new(
                field,
                "give path (an HTTP check) or tcp: true (a TCP check), one of the two",
            ))
        }
        (None, true) => {
            if c.host.is_some() || !c.expected_statuses.is_empty() {
                return Err(FieldError::new(
                    field,
                    "host and expected_statuses belong to HTTP checks (path)",
                ));
            }
            Probe::Tcp
        }
        (Some(path), false) => {
            if !path.starts_with('/') || http::uri::PathAndQuery::try_from(path.as_str()).is_err() {
                return Err(FieldError::new(
                    format!("{field}.path"),
                    format!("{path:?} is not a request path (it starts with /)"),
                ));
            }
            if let Some(h) = &c.host {
                if http::uri::Authority::try_from(h.as_str()).is_err() {
                    return Err(FieldError::new(
                        format!("{field}.host"),
                        format!("{h:?} is not a host name"),
                    ));
                }
            }
            let expected = if c.expected_statuses.is_empty() {
                vec![(200, 200)]
            } else {
                c.expected_statuses
                    .iter()
                    .enumerate()
                    .map(|(i, s)| status_range(&format!("{field}.expected_statuses[{i}]"), s))
                    .collect::<Result<_, _>>()?
            };
            Probe::Http {
                path: path.clone(),
                host: c.host.clone(),
                expected,
            }
        }
    };
    let interval = duration(
        &format!("{field}.interval"),
        c.interval,
        Duration::from_secs(5),
    )?;
    let timeout = duration(
        &format!("{field}.timeout"),
        c.timeout,
        Duration::from_secs(1),
    )?;
    Ok(HealthCheck {
        probe,
        interval,
        jitter: c.jitter.unwrap_or(interval / 10),
        timeout,
        healthy_threshold: at_least_one(
            &format!("{field}.healthy_threshold"),
            c.healthy_threshold,
            1,
        )?,
        unhealthy_threshold: at_least_one(
            &format!("{field}.unhealthy_threshold"),
            c.unhealthy_threshold,
            3,
        )?,
    })
}

fn status_range(field: &str, s: &StatusSpec) -> Result<(u16, u16), FieldError> {
    let valid = |n: u16| (100..=599).contains(&n);
    let (lo, hi) = match s {
        StatusSpec::Code(n) => (*n, *n),
        StatusSpec::Range(r) => {
            let parsed = r
                .split_once('-')
                .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                .or_else(|| r.trim().parse().ok().map(|n| (n, n)));
            parsed.ok_or_else(|| {
                FieldError::new(
                    field,
                    format!("{r:?} is not a status or a range like 200-299"),
                )
            })?
        }
    };
    if !valid(lo) || !valid(hi) || lo > hi {
        return Err(FieldError::new(
            field,
            format!("{lo}-{hi} is not a range of HTTP statuses (100 to 599, low to high)"),
        ));
    }
    Ok((lo, hi))
}

/// Checks `field` (`clusters.NAME.outlier_detection`).
pub fn check_outlier(field: &str, c: &OutlierConfig) -> Result<Outlier, FieldError> {
    let percent = c.max_ejection_percent.unwrap_or(10);
    if percent > 100 {
        return Err(FieldError::new(
            format!("{field}.max_ejection_percent"),
            format!("{percent} is not a percentage (0 to 100)"),
        ));
    }
    let base = duration(
        &format!("{field}.base_ejection_time"),
        c.base_ejection_time,
        Duration::from_secs(30),
    )?;
    let max = duration(
        &format!("{field}.max_ejection_time"),
        c.max_ejection_time,
        Duration::from_secs(300).max(base),
    )?;
    if max < base {
        return Err(FieldError::new(
            format!("{field}.max_ejection_time"),
            "must be at least base_ejection_time",
        ));
    }
    Ok(Outlier {
        consecutive_5xx: c.consecutive_5xx.unwrap_or(5),
        consecutive_gateway: c.consecutive_gateway_failure.unwrap_or(5),
        consecutive_connect: c.consecutive_connect_failure.unwrap_or(5),
        interval: duration(
            &format!("{field}.interval"),
            c.interval,
            Duration::from_secs(1),
        )?,
        base_ejection: base,
        max_ejection: max,
        max_ejection_percent: percent,
    })
}

/// Checks `field` (`clusters.NAME.circuit_breakers`).
pub fn check_breakers(field: &str, c: &BreakersConfig) -> Result<Breakers, FieldError> {
    let limit = |name: &str, n: Option<u32>| match n {
        Some(0) if name != "max_retries" => Err(FieldError::new(
            format!("{field}.{name}"),
            "must be at least 1 (leave it out for no limit)",
        )),
        n => Ok(n),
    };
    Ok(Breakers {
        max_connections: limit("max_connections", c.max_connections)?,
        max_pending: limit("max_pending_requests", c.max_pending_requests)?,
        max_requests: limit("max_requests", c.max_requests)?,
        max_retries: limit("max_retries", c.max_retries)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(e: FieldError) -> String {
        format!("{}: {}", e.field, e.message)
    }

    #[test]
    fn health_checks_need_one_probe_and_sane_statuses() {
        let http = HealthCheckConfig {
            path: Some("/healthz".into()),
            expected_statuses: vec![StatusSpec::Code(204), StatusSpec::Range("200-299".into())],
            ..Default::default()
        };
        let h = check_health("h", &http).unwrap();
        assert_eq!(h.unhealthy_threshold, 3);
        assert_eq!(h.interval, Duration::from_secs(5));
        assert_eq!(h.jitter, Duration::from_millis(500));
        let Probe::Http { expected, .. } = h.probe else {
            panic!()
        };
        assert_eq!(expected, vec![(204, 204), (200, 299)]);

        let neither = HealthCheckConfig::default();
        assert!(check_health("h", &neither)
            .map_err(text)
            .unwrap_err()
            .contains("one of the two"));
        let bad = HealthCheckConfig {
            path: Some("/".into()),
            expected_statuses: vec![StatusSpec::Range("299-200".into())],
            ..Default::default()
        };
        let e = text(check_health("h", &bad).unwrap_err());
        assert!(e.contains("h.expected_statuses[0]"), "{e}");
        let relative = HealthCheckConfig {
            path: Some("healthz".into()),
            ..Default::default()
        };
        assert!(check_health("h", &relative)
            .map_err(text)
            .unwrap_err()
            .contains("h.path"));
        let zero = HealthCheckConfig {
            tcp: true,
            unhealthy_threshold: Some(0),
            ..Default::default()
        };
        assert!(check_health("h", &zero)
            .map_err(text)
            .unwrap_err()
            .contains("h.unhealthy_threshold"));
    }

    #[test]
    fn outlier_and_breaker_limits_are_checked() {
        let o = check_outlier("o", &OutlierConfig::default()).unwrap();
        assert_eq!(o.consecutive_5xx, 5);
        assert_eq!(o.max_ejection_percent, 10);
        let over = OutlierConfig {
            max_ejection_percent: Some(101),
            ..Default::default()
        };
        assert!(check_outlier("o", &over).is_err());
        let zero = BreakersConfig {
            max_requests: Some(0),
            ..Default::default()
        };
        assert!(check_breakers("b", &zero)
            .map_err(text)
            .unwrap_err()
            .contains("b.max_requests"));
        let no_retries = BreakersConfig {
            max_retries: Some(0),
            ..Default::default()
        };
        assert_eq!(
            check_breakers("b", &no_retries).unwrap().max_retries,
            Some(0)
        );
    }
}
