//! A cluster: named endpoints, how one is chosen ([`super::balance`]) and how to reach
//! them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::model::UpstreamProtocol;
use crate::config::CheckedCluster;
use crate::error::UpstreamFailure;
use crate::metrics::{Counter, Histogram, Registry};
use crate::tls::ClientTls;

/// Clusters by name.
pub type Clusters = HashMap<String, Arc<Cluster>>;

/// Counters of one cluster.
pub struct ClusterStats {
    /// Attempts sent.
    pub attempts: Arc<Counter>,
    /// Connections opened.
    pub connects: Arc<Counter>,
    /// Time from an attempt's start to its response head (or failure).
    pub latency: Arc<Histogram>,
    /// Picks made with no endpoint available (panic mode: sent to one regardless).
    pub panics: Arc<Counter>,
    failures: Vec<(UpstreamFailure, Arc<Counter>)>,
}

const FAILURES: [UpstreamFailure; 6] = [
    UpstreamFailure::ConnectFailure,
    UpstreamFailure::ConnectTimeout,
    UpstreamFailure::Reset,
    UpstreamFailure::Timeout,
    UpstreamFailure::ProtocolError,
    UpstreamFailure::NoEndpoints,
];

impl ClusterStats {
    fn new(metrics: &Registry, name: &str) -> ClusterStats {
        ClusterStats {
            attempts: metrics.counter(
                "weft_upstream_attempts_total",
                "Attempts sent to each cluster.",
                &[("cluster", name)],
            ),
            connects: metrics.counter(
                "weft_upstream_connections_total",
                "Connections opened to each cluster's endpoints.",
                &[("cluster", name)],
            ),
            latency: metrics.histogram(
                "weft_upstream_attempt_duration_seconds",
                "Time from an upstream attempt's start to its response head or failure, by \
                 cluster (attempts cut short by the route's timeout are not included).",
                &[("cluster", name)],
            ),
            panics: metrics.counter(
                "weft_upstream_panic_total",
                "Attempts sent while no endpoint of the cluster was available (every one \
                 unhealthy or ejected): panic mode spreads them over all.",
                &[("cluster", name)],
            ),
            failures: FAILURES
                .iter()
                .map(|f| {
                    let c = metrics.counter(
                        "weft_upstream_failures_total",
                        "Attempts that failed, by cluster and kind.",
                        &[("cluster", name), ("kind", f.as_str())],
                    );
                    (*f, c)
                })
                .collect(),
        }
    }

    /// Failures by kind.
    pub fn failures(&self) -> Vec<(&'static str, u64)> {
        self.failures
            .iter()
            .map(|(f, c)| (f.as_str(), c.get()))
            .collect()
    }

    /// Counts a failure.
    pub fn failed(&self, failure: UpstreamFailure) {
        if let Some((_, c)) = self.failures.iter().find(|(f, _)| *f == failure) {
            c.inc();
        }
    }
}

/// A cluster.
pub struct Cluster {
    pub name: Arc<str>,
    /// How to talk to them.
    pub protocol: UpstreamProtocol,
    /// Limit for opening a connection.
    pub connect_timeout: Duration,
    /// Idle connections kept per endpoint and worker.
    pub max_idle: usize,
    /// Idle connections older than this are not reused.
    pub idle_timeout: Duration,
    pub stats: ClusterStats,
    /// A response every attempt gets at once, without I/O, instead of the endpoints'
    /// (`weft bench` runs chains against it).
    /// Set once, before any request (the runner sets it on every cluster of its
    /// snapshot, so filters' own calls get it too).
    pub canned: std::sync::OnceLock<Arc<Canned>>,
    /// TLS to the endpoints (the cluster's `tls`).
    pub tls: Option<Arc<ClientTls>>,
    /// The endpoints with their load, and the policy choosing among them.
    pub balancer: super::balance::Balancer,
    /// What a hashing policy hashes a request on.
    pub hash_on: Option<crate::config::model::HashOn>,
    /// Active health checks (run by [`super::health::watch`]).
    pub health: Option<super::health::Checker>,
    /// Passive outlier detection.
    pub outlier: Option<super::outlier::Detector>,
    /// Circuit breakers.
    pub breaker: super::breaker::Breaker,
}

/// A fixed upstream response.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    /// Set for `weft filter test`: the response answers with what the upstream
    /// received, and may be replaced for the next request.
    pub script: Option<Arc<CannedScript>>,
}

impl Canned {
    /// A fixed response.
    pub fn new(status: http::StatusCode, headers: http::HeaderMap, body: bytes::Bytes) -> Canned {
        Canned {
            status,
            headers,
            body,
            script: None,
        }
    }
}

/// A response a script gives: status, headers, body.
pub type ScriptedResponse = (http::StatusCode, http::HeaderMap, bytes::Bytes);

/// What `weft filter test` makes a canned upstream answer.
#[derive(Debug, Default)]
pub struct CannedScript {
    /// Answers for the next requests, first in first out, before anything else (the
    /// answers a test's mocked clusters gave the filter's own calls).
    pub calls:
        parking_lot::Mutex<std::collections::VecDeque<Result<ScriptedResponse, UpstreamFailure>>>,
    /// The response the next request gets instead of the echo (once).
    pub next: parking_lot::Mutex<Option<ScriptedResponse>>,
}

/// The header a scripted canned response names its cluster in.
pub const ECHO_CLUSTER: &str = "x-weft-test-cluster";

impl Cluster {
    /// A cluster from its checked configuration.
    pub fn new(c: &CheckedCluster, metrics: &Registry) -> Cluster {
        Cluster {
            name: c.name.as_str().into(),
            protocol: c.protocol,
            connect_timeout: c.connect_timeout,
            max_idle: c.max_idle_per_endpoint,
            idle_timeout: c.idle_timeout,
            stats: ClusterStats::new(metrics, &c.name),
            canned: std::sync::OnceLock::new(),
            tls: None,
            balancer: super::balance::Balancer::new(
                c.lb_policy,
                &c.endpoints
                    .iter()
                    .zip(&c.weights)
                    .map(|(a, w)| (*a, *w))
                    .collect::<Vec<_>>(),
            ),
            hash_on: c.hash_on.clone(),
            health: c
                .health_check
                .clone()
                .map(|h| super::health::Checker::new(h, &c.name, metrics)),
            outlier: c
                .outlier
                .clone()
                .map(|o| super::outlier::Detector::new(o, &c.name, metrics)),
            breaker: super::breaker::Breaker::new(c.breakers, &c.name, metrics),
        }
    }

    /// Takes what `previous` (the same cluster in the configuration this one replaces)
    /// learnt about endpoints both have: latency, health, ejections. A check or a
    /// detection no longer configured no longer holds an endpoint back.
    pub fn inherit(&self, previous: &Cluster) {
        use super::balance::{EJECTED, FAILED_CHECK};
        let keep = if self.health.is_some() {
            FAILED_CHECK
        } else {
            0
        } | if self.outlier.is_some() { EJECTED } else { 0 };
        for e in self.balancer.endpoints() {
            if let Some(old) = previous
                .balancer
                .endpoints()
                .iter()
                .find(|o| o.addr == e.addr)
            {
                e.inherit(old, keep);
            }
        }
        self.balancer.recount();
    }

    /// The same cluster, spoken to over TLS.
    pub fn with_tls(mut self, tls: Arc<ClientTls>) -> Cluster {
        self.tls = Some(tls);
        self
    }

    /// The endpoint for an attempt, by the cluster's policy (`key`: the request's hash
    /// key, for the hashing policies); held in flight until dropped.
    pub fn pick(&self, key: Option<u64>) -> Option<super::balance::Picked<'_>> {
        self.balancer.pick(key)
    }

    /// The key a request is placed by, when the cluster's policy hashes (`property`:
    /// a filter's `hash_key` request property, which takes precedence over `hash_on`).
    pub fn hash_key(
        &self,
        headers: &http::HeaderMap,
        client: std::net::SocketAddr,
        property: Option<&str>,
    ) -> Option<u64> {
        if !self.balancer.policy().hashes() {
            return None;
        }
        super::balance::hash_key(self.hash_on.as_ref(), headers, client, property)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_every_endpoint_evenly() {
        let checked = CheckedCluster {
            name: "c".into(),
            endpoints: vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
                "127.0.0.1:3".parse().unwrap(),
            ],
            weights: vec![1, 1, 1],
            lb_policy: crate::config::model::LbPolicy::RoundRobin,
            hash_on: None,
            protocol: UpstreamProtocol::Http1,
            connect_timeout: Duration::from_secs(1),
            max_idle_per_endpoint: 1,
            idle_timeout: Duration::from_secs(1),
            tls: None,
            health_check: None,
            outlier: None,
            breakers: Default::default(),
        };
        let c = Cluster::new(&checked, &Registry::default());
        let mut seen = HashMap::new();
        for _ in 0..300 {
            *seen.entry(c.pick(None).unwrap().addr()).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 3);
        assert!(seen.values().all(|n| *n == 100), "{seen:?}");
    }
}
