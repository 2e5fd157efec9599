//! Active health checks, and the thread that runs them and outlier detection's sweeps.
//!
//! Each endpoint of a cluster with a `health_check` is probed every `interval` (plus up
//! to `jitter` at random) from one thread per proxy, not once per worker: an HTTP `GET`
//! over the cluster's own protocol and TLS, passing on an expected status, or a TCP
//! connect. `unhealthy_threshold` failures in a row take the endpoint out of load
//! balancing and `healthy_threshold` passes in a row bring it back; both changes are
//! logged and counted. Endpoints start available (they are probed at once, within one
//! jitter) and keep what an earlier configuration learnt of them across reloads.
//!
//! A task holds its cluster weakly: when a reload replaces the cluster and the last
//! request on it ends, its tasks end too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use super::balance::{Endpoint, FAILED_CHECK};
use super::cluster::Cluster;
use super::send::RequestHead;
use crate::body::ProxyBody;
use crate::config::resilience::{HealthCheck, Probe};
use crate::metrics::{Counter, Registry};

/// An endpoint's count of check results in a row.
#[derive(Debug, Default)]
pub struct CheckRun {
    passes: AtomicU32,
    fails: AtomicU32,
}

impl CheckRun {
    /// Takes another configuration's counts for the same endpoint.
    pub fn inherit(&self, old: &CheckRun) {
        self.passes
            .store(old.passes.load(Ordering::Relaxed), Ordering::Relaxed);
        self.fails
            .store(old.fails.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A cluster's health checking: what to probe and its counters.
pub struct Checker {
    /// The check.
    pub config: HealthCheck,
    passed: Arc<Counter>,
    failed: Arc<Counter>,
    to_unhealthy: Arc<Counter>,
    to_healthy: Arc<Counter>,
}

impl Checker {
    /// A checker for `cluster`, its counters registered.
    pub fn new(config: HealthCheck, cluster: &str, metrics: &Registry) -> Checker {
        let checks = |result: &str| {
            metrics.counter(
                "weft_health_checks_total",
                "Active health checks, by cluster and result.",
                &[("cluster", cluster), ("result", result)],
            )
        };
        let turned = |to: &str| {
            metrics.counter(
                "weft_health_transitions_total",
                "Endpoints that turned healthy or unhealthy by their health checks.",
                &[("cluster", cluster), ("to", to)],
            )
        };
        Checker {
            config,
            passed: checks("pass"),
            failed: checks("fail"),
            to_unhealthy: turned("unhealthy"),
            to_healthy: turned("healthy"),
        }
    }

    /// Checks run that passed and failed.
    pub fn results(&self) -> (u64, u64) {
        (self.passed.get(), self.failed.get())
    }

    /// Counts a check's result against `e`, turning it healthy or unhealthy at the
    /// thresholds.
    fn record(&self, cluster: &Cluster, e: &Endpoint, result: Result<(), String>) {
        let run = &e.checks;
        let failing = e.state.load(Ordering::Relaxed) & FAILED_CHECK != 0;
        match result {
            Ok(()) => {
                self.passed.inc();
                run.fails.store(0, Ordering::Relaxed);
                let passes = run.passes.fetch_add(1, Ordering::Relaxed) + 1;
                if failing
                    && passes >= self.config.healthy_threshold
                    && cluster.balancer.mark(e, FAILED_CHECK, false)
                {
                    self.to_healthy.inc();
                    tracing::info!(cluster = %cluster.name, endpoint = %e.addr, "endpoint passes its health checks again");
                }
            }
            Err(why) => {
                self.failed.inc();
                run.passes.store(0, Ordering::Relaxed);
                let fails = run.fails.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(cluster = %cluster.name, endpoint = %e.addr, "health check failed: {why}");
                if !failing
                    && fails >= self.config.unhealthy_threshold
                    && cluster.balancer.mark(e, FAILED_CHECK, true)
                {
                    self.to_unhealthy.inc();
                    tracing::warn!(cluster = %cluster.name, endpoint = %e.addr, fails, "endpoint failed its health checks: no more requests until it passes ({why})");
                }
            }
        }
    }
}

/// The runtime of the thread health checks and outlier sweeps run on, started the
/// first time a cluster needs it.
fn runtime() -> Option<&'static tokio::runtime::Handle> {
    static HANDLE: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            let started = crate::background::spawn_thread("weft-health", move || async move {
                let _ = tx.send(tokio::runtime::Handle::current());
                std::future::pending::<()>().await
            });
            if let Err(e) = started {
                tracing::error!("cannot start the health-check thread: {e}");
                return None;
            }
            rx.recv().ok()
        })
        .as_ref()
}

/// Starts `cluster`'s health checks and outlier sweeps, if it has them.
pub fn watch(cluster: &Arc<Cluster>) {
    if cluster.health.is_none() && cluster.outlier.is_none() {
        return;
    }
    let Some(rt) = runtime() else { return };
    if let Some(checker) = &cluster.health {
        for i in 0..cluster.balancer.endpoints().len() {
            let weak = Arc::downgrade(cluster);
            rt.spawn(check_endpoint(weak, i, checker.config.jitter));
        }
    }
    if let Some(d) = &cluster.outlier {
        let weak = Arc::downgrade(cluster);
        let interval = d.interval();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(c) = weak.upgrade() else { return };
                if let Some(d) = &c.outlier {
                    d.sweep(&c.balancer);
                }
            }
        });
    }
}

fn jittered(jitter: Duration) -> Duration {
    let micros = jitter.as_micros() as u64;
    Duration::from_micros(if micros == 0 {
        0
    } else {
        fastrand::u64(..=micros)
    })
}

/// Probes endpoint `i` of the cluster for as long as the cluster lives.
async fn check_endpoint(cluster: Weak<Cluster>, i: usize, jitter: Duration) {
    tokio::time::sleep(jittered(jitter)).await;
    loop {
        let Some(c) = cluster.upgrade() else { return };
        // `weft bench` and `weft filter test` answer from memory: nothing to probe.
        if c.canned.get().is_some() {
            return;
        }
        let Some(checker) = &c.health else { return };
        let e = c.balancer.endpoints()[i].clone();
        let cfg = &checker.config;
        let result = match tokio::time::timeout(cfg.timeout, probe(&c, e.addr, &cfg.probe)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", cfg.timeout)),
        };
        checker.record(&c, &e, result);
        let next = cfg.interval + jittered(cfg.jitter);
        drop(c);
        tokio::time::sleep(next).await;
    }
}

/// One check of `addr`.
async fn probe(cluster: &Cluster, addr: SocketAddr, probe: &Probe) -> Result<(), String> {
    match probe {
        Probe::Tcp => tokio::net::TcpStream::connect(addr)
            .await
            .map(drop)
            .map_err(|e| format!("connecting: {e}")),
        Probe::Http {
            path,
            host,
            expected,
        } => {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static("weft-health-check"),
            );
            let head = RequestHead {
                method: http::Method::GET,
                authority: host.clone().unwrap_or_else(|| addr.to_string()),
                path: http::uri::PathAndQuery::try_from(path.as_str())
                    .map_err(|e| e.to_string())?,
                headers,
                upgrade: None,
                raw_response: false,
                continue_relay: None,
                hash_key: None,
            };
            let response = super::send::send_to(cluster, addr, head, ProxyBody::Empty)
                .await
                .map_err(|e| format!("{}: {}", e.failure.as_str(), e.detail))?;
            let status = response.head.status.as_u16();
            // Read to the end so that the connection can be kept for the next check.
            let _ = http_body_util::BodyExt::collect(response.body).await;
            if expected
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&status))
            {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
    }
}
