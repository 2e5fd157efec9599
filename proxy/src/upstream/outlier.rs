//! Passive outlier detection: every attempt's result is counted against its endpoint;
//! failures in a row past a threshold eject it (no new requests) for the base ejection
//! time times the number of times it was ejected, and a sweep every `interval` brings
//! back those whose time is up. At most `max_ejection_percent` of the cluster is out
//! at once (one endpoint always may be). Ejections, refusals and returns are logged
//! and counted. The names and rules are Envoy's.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::balance::{Balancer, Endpoint, EJECTED};
use crate::config::resilience::Outlier;
use crate::error::UpstreamFailure;
use crate::metrics::{Counter, Registry};

/// An endpoint's outlier bookkeeping.
#[derive(Debug, Default)]
pub struct OutlierState {
    five_xx: AtomicU32,
    gateway: AtomicU32,
    connect: AtomicU32,
    /// Times ejected; one less for every sweep that finds it available.
    times_ejected: AtomicU32,
    /// When the current ejection ends, in [`crate::clock::process_millis`].
    until_ms: AtomicU64,
}

impl OutlierState {
    /// Takes another configuration's counts for the same endpoint.
    pub fn inherit(&self, old: &OutlierState) {
        for (a, b) in [
            (&self.five_xx, &old.five_xx),
            (&self.gateway, &old.gateway),
            (&self.connect, &old.connect),
            (&self.times_ejected, &old.times_ejected),
        ] {
            a.store(b.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.until_ms
            .store(old.until_ms.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn clear_runs(&self) {
        for c in [&self.five_xx, &self.gateway, &self.connect] {
            if c.load(Ordering::Relaxed) != 0 {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `consecutive_5xx`.
    FiveXx,
    /// `consecutive_gateway_failure`.
    Gateway,
    /// `consecutive_connect_failure`.
    Connect,
}

impl Reason {
    const ALL: [Reason; 3] = [Reason::FiveXx, Reason::Gateway, Reason::Connect];

    /// The label in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FiveXx => "consecutive_5xx",
            Reason::Gateway => "consecutive_gateway_failure",
            Reason::Connect => "consecutive_connect_failure",
        }
    }
}

/// A cluster's outlier detector: its rules and counters.
pub struct Detector {
    /// The rules.
    pub config: Outlier,
    cluster: Arc<str>,
    ejections: [Arc<Counter>; 3],
    /// Ejections refused because `max_ejection_percent` was reached.
    pub refused: Arc<Counter>,
    /// Ejected endpoints brought back.
    pub returns: Arc<Counter>,
}

impl Detector {
    /// A detector for `cluster`, its counters registered.
    pub fn new(config: Outlier, cluster: &str, metrics: &Registry) -> Detector {
        let counter = |name: &str, help: &str, extra: Option<(&str, &str)>| {
            let mut labels = vec![("cluster", cluster)];
            labels.extend(extra);
            metrics.counter(name, help, &labels)
        };
        Detector {
            config,
            cluster: cluster.into(),
            ejections: Reason::ALL.map(|r| {
                counter(
                    "weft_outlier_ejections_total",
                    "Endpoints ejected by outlier detection, by cluster and rule.",
                    Some(("reason", r.as_str())),
                )
            }),
            refused: counter(
                "weft_outlier_ejections_refused_total",
                "Ejections not made because the cluster's max_ejection_percent was reached.",
                None,
            ),
            returns: counter(
                "weft_outlier_returns_total",
                "Ejected endpoints brought back when their ejection ended.",
                None,
            ),
        }
    }

    /// Ejections made for `reason`.
    pub fn ejections(&self, reason: Reason) -> u64 {
        self.ejections[reason as usize].get()
    }

    /// Counts an attempt's result against its endpoint: a response's status, or the
    /// failure that kept it from answering. Ejects the endpoint when a rule says so.
    pub fn observe(&self, balancer: &Balancer, e: &Endpoint, result: Result<u16, UpstreamFailure>) {
        use UpstreamFailure as F;
        let (gateway, connect) = match result {
            Ok(status) if status < 500 => {
                e.outlier.clear_runs();
                return;
            }
            Ok(status) => (matches!(status, 502..=504), false),
            Err(F::ConnectFailure | F::ConnectTimeout) => (true, true),
            Err(F::Reset | F::Timeout | F::ProtocolError) => (true, false),
            // Not the endpoint's doing.
            Err(_) => return,
        };
        let s = &e.outlier;
        let bump = |c: &AtomicU32, on: bool| {
            if on {
                c.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                c.store(0, Ordering::Relaxed);
                0
            }
        };
        let five_xx = bump(&s.five_xx, true);
        let gateways = bump(&s.gateway, gateway);
        let connects = bump(&s.connect, connect);
        let over = |n: u32, limit: u32| limit > 0 && n >= limit;
        let reason = if over(connects, self.config.consecutive_connect) {
            Reason::Connect
        } else if over(gateways, self.config.consecutive_gateway) {
            Reason::Gateway
        } else if over(five_xx, self.config.consecutive_5xx) {
            Reason::FiveXx
        } else {
            return;
        };
        self.eject(balancer, e, reason);
    }

    #[cold]
    fn eject(&self, balancer: &Balancer, e: &Endpoint, reason: Reason) {
        if e.state.load(Ordering::Relaxed) & EJECTED != 0 {
            return;
        }
        let n = balancer.endpoints().len();
        let ejected = balancer.count(EJECTED);
        if ejected > 0 && (ejected + 1) * 100 > self.config.max_ejection_percent as usize * n {
            self.refused.inc();
            tracing::debug!(
                cluster = %self.cluster,
                endpoint = %e.addr,
                reason = reason.as_str(),
                "outlier not ejected: max_ejection_percent reached"
            );
            return;
        }
        if !balancer.mark(e, EJECTED, true) {
            return;
        }
        let times = e.outlier.times_ejected.fetch_add(1, Ordering::Relaxed) + 1;
        let length = self
            .config
            .base_ejection
            .saturating_mul(times)
            .min(self.config.max_ejection);
        e.outlier.until_ms.store(
            crate::clock::process_millis() + length.as_millis() as u64,
            Ordering::Relaxed,
        );
        e.outlier.clear_runs();
        self.ejections[reason as usize].inc();
        tracing::warn!(
            cluster = %self.cluster,
            endpoint = %e.addr,
            reason = reason.as_str(),
            ejected_for = ?length,
            times,
            "outlier endpoint ejected"
        );
    }

    /// Brings back endpoints whose ejection ended, and lowers the ejection count of
    /// those that stayed available since the last sweep. Run every `interval`.
    pub fn sweep(&self, balancer: &Balancer) {
        let now = crate::clock::process_millis();
        for e in balancer.endpoints() {
            let s = &e.outlier;
            if e.state.load(Ordering::Relaxed) & EJECTED != 0 {
                if now >= s.until_ms.load(Ordering::Relaxed) && balancer.mark(e, EJECTED, false) {
                    s.clear_runs();
                    self.returns.inc();
                    tracing::info!(
                        cluster = %self.cluster,
                        endpoint = %e.addr,
                        "ejected endpoint returns"
                    );
                }
            } else if s.times_ejected.load(Ordering::Relaxed) > 0 {
                s.times_ejected.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The sweep's period.
    pub fn interval(&self) -> Duration {
        self.config.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::LbPolicy;
    use std::net::SocketAddr;

    fn detector(percent: u32) -> Detector {
        Detector::new(
            Outlier {
                consecutive_5xx: 3,
                consecutive_gateway: 0,
                consecutive_connect: 2,
                interval: Duration::from_millis(10),
                base_ejection: Duration::from_millis(30),
                max_ejection: Duration::from_secs(1),
                max_ejection_percent: percent,
            },
            "c",
            &Registry::default(),
        )
    }

    fn balancer(n: u16) -> Balancer {
        let eps: Vec<(SocketAddr, u32)> = (0..n)
            .map(|i| (SocketAddr::from(([127, 0, 0, 1], 1000 + i)), 1))
            .collect();
        Balancer::new(LbPolicy::RoundRobin, &eps)
    }

    #[test]
    fn failures_in_a_row_eject_and_a_success_resets_the_run() {
        let d = detector(100);
        let b = balancer(3);
        let e = &b.endpoints()[0];
        d.observe(&b, e, Ok(500));
        d.observe(&b, e, Ok(503));
        d.observe(&b, e, Ok(200));
        d.observe(&b, e, Ok(500));
        d.observe(&b, e, Ok(500));
        assert!(e.available(), "a success broke the run");
        d.observe(&b, e, Ok(500));
        assert!(!e.available());
        assert_eq!(d.ejections(Reason::FiveXx), 1);
        // No pick lands on it while it is out.
        for _ in 0..30 {
            assert_ne!(b.pick(None).unwrap().addr(), e.addr);
        }
        std::thread::sleep(Duration::from_millis(40));
        d.sweep(&b);
        assert!(e.available());
        assert_eq!(d.returns.get(), 1);

        let c = &b.endpoints()[1];
        d.observe(&b, c, Err(UpstreamFailure::ConnectFailure));
        d.observe(&b, c, Err(UpstreamFailure::ConnectFailure));
        assert_eq!(d.ejections(Reason::Connect), 1);
        // Not the endpoint's fault: never counted.
        d.observe(&b, e, Err(UpstreamFailure::Overflow));
        assert!(e.available());
    }

    #[test]
    fn the_ejected_share_is_capped_but_one_may_always_go() {
        let d = detector(10);
        let b = balancer(4);
        for e in b.endpoints() {
            for _ in 0..3 {
                d.observe(&b, e, Ok(500));
            }
        }
        assert_eq!(b.count(EJECTED), 1);
        assert_eq!(d.refused.get(), 3);
    }
}
