//! The in-process chain runner: one route of a configuration, its filters started as
//! `weft run` starts them, serving requests through the real exchange (every phase the
//! filters declare, the same failure policies) against a canned upstream response,
//! without sockets. `weft bench` measures with it.

pub mod replay;
pub mod request;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt as _;

use crate::app::host_with;
use crate::config::model::ListenerProtocol;
use crate::exchange::{self, ConnInfo};
use crate::host::filter_clock::FilterClock;
use crate::host::services::HostServices;
use crate::host::LoadedFilter;
use crate::metrics::Registry;
use crate::snapshot::{load, ListenerSnap, Route, Snapshot};
use crate::upstream::Canned;

pub use request::RequestSpec;

/// The listener name requests arrive on.
const LISTENER: &str = "bench";

/// A route of a configuration, ready to serve requests in this thread.
pub struct ChainRunner {
    /// The route with its filters.
    with_chain: Arc<Snapshot>,
    /// The same route without filters.
    without: Arc<Snapshot>,
    /// The route as loaded.
    pub route: Arc<Route>,
    conn: ConnInfo,
    services: Arc<HostServices>,
}

/// A response, read to its end (the log phase has run).
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl ChainRunner {
    /// Loads `config` (every check `weft validate` makes, every filter started) and
    /// picks the route called `route` (the first route when `None`). Every cluster
    /// answers `canned` at once. Must be called inside a Tokio runtime.
    pub async fn load(
        config: &Path,
        route: Option<&str>,
        canned: Canned,
        client: SocketAddr,
        peer_identity: Option<String>,
    ) -> anyhow::Result<ChainRunner> {
        Self::load_with_clock(
            config,
            route,
            canned,
            client,
            peer_identity,
            FilterClock::real(),
        )
        .await
    }

    /// [`ChainRunner::load`] with the filters seeing `clock` (a manual one, which
    /// [`ChainRunner::set_clock_ms`] moves).
    pub async fn load_with_clock(
        config: &Path,
        route: Option<&str>,
        canned: Canned,
        client: SocketAddr,
        peer_identity: Option<String>,
        clock: FilterClock,
    ) -> anyhow::Result<ChainRunner> {
        let metrics = Registry::new();
        let services = HostServices::with_clock(metrics.clone(), clock);
        let host = host_with(config, services.clone())?;
        let loaded = load(config, &host, &metrics, None).await?;
        let snapshot = loaded.snapshot;
        let all: Vec<&Arc<Route>> = snapshot
            .listeners
            .iter()
            .flat_map(|l| l.routes.iter())
            .collect();
        let found = match route {
            Some(name) => all.iter().find(|r| &*r.name == name).copied(),
            None => all.first().copied(),
        };
        let Some(found) = found else {
            let names: Vec<&str> = all.iter().map(|r| &*r.name).collect();
            anyhow::bail!(
                "{}: no route {} (routes: {})",
                config.display(),
                route.map_or_else(|| "at all".to_owned(), |n| format!("named {n:?}")),
                names.join(", ")
            );
        };
        let route = found.clone();
        // Every cluster answers `canned`: the route's requests and the filters' own
        // calls alike (they share these clusters).
        let canned = Arc::new(canned);
        for cluster in snapshot.clusters.values() {
            let _ = cluster.canned.set(canned.clone());
        }
        let clusters = snapshot.clusters.clone();
        let one = |route: Arc<Route>| Snapshot {
            listeners: vec![ListenerSnap {
                name: LISTENER.into(),
                address: SocketAddr::from(([127, 0, 0, 1], 0)),
                protocol: ListenerProtocol::Auto,
                tls: None,
                alt_svc: None,
                access_log: None,
                http: Default::default(),
                via: None,
                routes: vec![route],
                no_route: metrics.counter("weft_bench_no_route_total", "Unmatched.", &[]),
                connections: crate::snapshot::ConnStats::new(&metrics, LISTENER),
                max_connections: None,
                backlog: 1024,
            }],
            clusters: Arc::clone(&clusters),
            filters: snapshot.filters.clone(),
            admin: None,
            source: snapshot.source.clone(),
            tracing: None,
            overload: Default::default(),
        };
        let without = Arc::new(route.without_filters(&metrics, LISTENER));
        Ok(ChainRunner {
            with_chain: Arc::new(one(route.clone())),
            without: Arc::new(one(without)),
            route,
            conn: ConnInfo {
                client_text: Default::default(),
                client,
                client_ip: ConnInfo::client_ip_value(client),
                listener: LISTENER.into(),
                listener_hint: 0,
                scheme: "http",
                peer_identity,
                forward_client_cert: None,
                own_h1: true,
            },
            services,
        })
    }

    /// Moves the filters' manual clock to `now_ms` (milliseconds since the Unix epoch).
    pub fn set_clock_ms(&self, now_ms: u64) {
        self.services.clock.set_ms(now_ms);
    }

    /// Serves one request through the route's chain as if from `client` with
    /// `peer_identity`.
    pub async fn serve_as(
        &self,
        spec: &RequestSpec,
        client: SocketAddr,
        peer_identity: Option<String>,
    ) -> anyhow::Result<Answer> {
        let conn = ConnInfo {
            client_text: Default::default(),
            client,
            client_ip: ConnInfo::client_ip_value(client),
            listener: self.conn.listener.clone(),
            listener_hint: 0,
            scheme: self.conn.scheme,
            peer_identity,
            forward_client_cert: None,
            own_h1: true,
        };
        serve_on(&self.with_chain, &conn, spec).await
    }

    /// The route's filters, in chain order.
    pub fn chain(&self) -> &[Arc<LoadedFilter>] {
        &self.route.chain
    }

    /// Whether the route takes `spec` (else every request would be a 404).
    pub fn takes(&self, spec: &RequestSpec) -> bool {
        let host = spec.authority.split(':').next().unwrap_or("");
        self.route
            .matcher
            .matches(&spec.method, host, &spec.path, &spec.headers)
    }

    /// Serves one request through the route's chain, and reads the response to its
    /// end.
    pub async fn serve(&self, spec: &RequestSpec) -> anyhow::Result<Answer> {
        serve_on(&self.with_chain, &self.conn, spec).await
    }

    /// Serves one request on the same route without its filters.
    pub async fn serve_without_filters(&self, spec: &RequestSpec) -> anyhow::Result<Answer> {
        serve_on(&self.without, &self.conn, spec).await
    }
}

async fn serve_on(
    snapshot: &Arc<Snapshot>,
    conn: &ConnInfo,
    spec: &RequestSpec,
) -> anyhow::Result<Answer> {
    let response = exchange::serve(snapshot.clone(), conn, spec.to_request()).await;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the response body: {e}"))?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
