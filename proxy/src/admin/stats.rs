//! `GET /stats`: what the admin page shows, as JSON: listeners and their connections,
//! routes with requests by status class and their latency histogram, clusters with
//! their endpoints, attempts, failures and attempt latency, filters with calls,
//! failures and call-time histograms per phase, reloads and the control plane. The
//! numbers are the same series `/metrics` exposes.

use serde_json::{json, Map, Value};

use crate::host::probe::Phase;
use crate::metrics::{Histogram, Registry};
use crate::reload::ReloadHandle;
use crate::snapshot::SnapshotHandle;

fn histogram(h: &Histogram) -> Value {
    let (bounds, counts, count, sum) = h.read();
    json!({ "bounds": bounds, "counts": counts, "count": count, "sum": sum })
}

/// The `/stats` document.
pub fn stats(
    handle: &SnapshotHandle,
    metrics: &Registry,
    reloads: &ReloadHandle,
    uptime: std::time::Duration,
) -> Value {
    let snapshot = handle.load();
    let reloads = reloads.status();
    let listeners: Vec<Value> = snapshot
        .listeners
        .iter()
        .map(|l| {
            json!({
                "name": &*l.name,
                "address": l.address.to_string(),
                "protocol": format!("{:?}", l.protocol).to_lowercase(),
                "connections_active": l.connections.active.get() as u64,
                "connections_total": l.connections.total.get(),
            })
        })
        .collect();
    let routes: Vec<Value> = snapshot
        .listeners
        .iter()
        .flat_map(|l| l.routes.iter().map(move |r| (l, r)))
        .map(|(l, r)| {
            let [c1, c2, c3, c4, c5] = r.stats.by_class();
            json!({
                "listener": &*l.name,
                "name": &*r.name,
                "cluster": &*r.cluster,
                "filters": r.chain.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
                "requests": { "1xx": c1, "2xx": c2, "3xx": c3, "4xx": c4, "5xx": c5 },
                "latency": histogram(&r.stats.latency),
            })
        })
        .collect();
    let clusters: Vec<Value> = snapshot
        .clusters
        .iter()
        .map(|(name, c)| {
            let failures: Map<String, Value> = c
                .stats
                .failures()
                .into_iter()
                .map(|(k, n)| (k.to_owned(), json!(n)))
                .collect();
            json!({
                "name": name,
                "lb_policy": c.balancer.policy(),
                "endpoints": c.balancer.endpoints().iter().map(|e| json!({
                    "address": e.addr.to_string(),
                    "weight": e.weight,
                    "in_flight": e.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                    "latency_ewma_ms": e.ewma_micros.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0,
                    "health": e.health(),
                })).collect::<Vec<_>>(),
                "health_checks": c.health.as_ref().map(|h| {
                    let (pass, fail) = h.results();
                    json!({ "pass": pass, "fail": fail })
                }),
                "outlier_ejections": c.outlier.as_ref().map(outlier),
                "panics": c.stats.panics.get(),
                "circuit_breakers": breakers(&c.breaker),
                "attempts": c.stats.attempts.get(),
                "failures": failures,
                "latency": histogram(&c.stats.latency),
            })
        })
        .collect();
    let filters: Vec<Value> = snapshot
        .filters
        .values()
        .map(|f| {
            let failures: Map<String, Value> = f
                .stats
                .failures()
                .into_iter()
                .map(|(r, n)| (r.to_owned(), json!(n)))
                .collect();
            let phases: Map<String, Value> = Phase::ALL
                .iter()
                .zip(&f.stats.durations)
                .filter_map(|(p, h)| Some((p.label().to_owned(), histogram(h.as_ref()?))))
                .collect();
            json!({
                "name": f.name,
                "calls": f.stats.calls.get(),
                "failures": failures,
                "phases": phases,
            })
        })
        .collect();
    let control = metrics.gauge_value("weft_control_connected").map(|up| {
        json!({
            "connected": up >= 1.0,
            "bundle": crate::control::bundle_version(),
        })
    });
    json!({
        "version": reloads.version,
        "uptime_seconds": uptime.as_secs_f64(),
        "listeners": listeners,
        "routes": routes,
        "clusters": clusters,
        "filters": filters,
        "reloads": reloads,
        "control": control,
        "overload": overload(&snapshot.overload),
    })
}

/// `GET /overload` (and `overload` in `/stats`): the monitor's last reading, the
/// connection count against its limit, and each action's threshold and state.
pub fn overload(settings: &crate::config::overload::CheckedOverload) -> Value {
    use crate::overload::Action;
    let reading = crate::server::overload::last_reading();
    let actions: Vec<Value> = Action::ALL
        .iter()
        .zip(settings.thresholds)
        .map(|(a, threshold)| {
            json!({
                "action": a.as_str(),
                "threshold": threshold,
                "active": crate::overload::active(*a),
            })
        })
        .collect();
    json!({
        "pressure": reading.pressure,
        "resident_bytes": reading.resident_bytes,
        "memory_limit": reading.memory_limit,
        "open_fds": reading.open_fds,
        "fd_limit": reading.fd_limit,
        "connections": crate::overload::connections(),
        "max_connections": settings.max_connections,
        "requests_refused": crate::overload::refused_requests(),
        "actions": actions,
    })
}

/// Outlier detection's counts.
fn outlier(d: &crate::upstream::outlier::Detector) -> Value {
    use crate::upstream::outlier::Reason;
    json!({
        "consecutive_5xx": d.ejections(Reason::FiveXx),
        "consecutive_gateway_failure": d.ejections(Reason::Gateway),
        "consecutive_connect_failure": d.ejections(Reason::Connect),
        "refused": d.refused.get(),
        "returns": d.returns.get(),
    })
}

/// Each circuit breaker's limit (null: none), places in use and refusals.
fn breakers(b: &crate::upstream::breaker::Breaker) -> Value {
    use crate::upstream::breaker::Limit;
    let limits = b.limits();
    let one = |l: Limit, max: Option<u32>| json!({ "max": max, "in_use": b.in_use(l), "overflows": b.overflows(l) });
    json!({
        "max_connections": one(Limit::Connections, limits.max_connections),
        "max_pending_requests": one(Limit::Pending, limits.max_pending),
        "max_requests": one(Limit::Requests, limits.max_requests),
        "max_retries": one(Limit::Retries, limits.max_retries),
    })
}
