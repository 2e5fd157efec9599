//! The running state: listeners, routes, clusters and started filters, built as a whole
//! from a checked configuration and never changed afterwards. A request loads the
//! current snapshot once and finishes on it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::model::{ClientAuth, ListenerProtocol};
use crate::config::route::RouteMatch;
use crate::config::{Checked, CheckedListener, ConfigError, FieldError, LoadedConfig};
use crate::host::{FilterHost, FilterLoadError, LoadedFilter};
use crate::metrics::{Counter, Histogram, Registry};
use crate::tls::{ClientTls, ServerTls};
use crate::upstream::{Cluster, Clusters};
use outbound::ClusterOutbound;

mod load;
mod outbound;

pub use load::{load, Loaded};

/// The current snapshot, replaceable as a whole.
pub type SnapshotHandle = Arc<ArcSwap<Snapshot>>;

/// What a route's chain needs from the exchange, worked out once.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainNeeds {
    /// Some filter has a response-headers phase.
    pub response_headers: bool,
    /// Some filter wants request bodies.
    pub request_body: bool,
    /// Some filter wants response bodies.
    pub response_body: bool,
    /// Some filter has a log phase.
    pub log: bool,
}

/// Counters of one route.
pub struct RouteStats {
    by_class: [Arc<Counter>; 5],
    /// Time from arrival to the response head.
    pub latency: Arc<Histogram>,
    /// Retries sent.
    pub retries: Arc<Counter>,
    refused_body: Arc<Counter>,
    refused_deadline: Arc<Counter>,
    refused_overflow: Arc<Counter>,
}

impl RouteStats {
    fn new(metrics: &Registry, listener: &str, route: &str, cluster: &str) -> RouteStats {
        let class = |c: &str| {
            metrics.counter(
                "weft_requests_total",
                "Requests served, by listener, route, the route's cluster and status class.",
                &[
                    ("listener", listener),
                    ("route", route),
                    ("cluster", cluster),
                    ("class", c),
                ],
            )
        };
        let refused = |reason: &str| {
            metrics.counter(
                "weft_retries_refused_total",
                "Retries filters asked for that the proxy could not send, by reason.",
                &[("listener", listener), ("route", route), ("reason", reason)],
            )
        };
        RouteStats {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            latency: metrics.histogram(
                "weft_request_duration_seconds",
                "Time from a request's arrival to its response head, by listener, route and \
                 the route's cluster.",
                &[
                    ("listener", listener),
                    ("route", route),
                    ("cluster", cluster),
                ],
            ),
            retries: metrics.counter(
                "weft_retries_total",
                "Retries sent because a filter asked for them, by listener and route.",
                &[("listener", listener), ("route", route)],
            ),
            refused_body: refused("body"),
            refused_deadline: refused("deadline"),
            refused_overflow: refused("overflow"),
        }
    }

    /// Counts a retry a filter asked for but the proxy could not send: the body could
    /// not be replayed (`body`) or the backoff would pass the route's deadline
    /// (`deadline`), or the cluster's `max_retries` circuit breaker was full
    /// (`overflow`).
    pub fn retry_refused(&self, reason: &str) {
        match reason {
            "body" => self.refused_body.inc(),
            "overflow" => self.refused_overflow.inc(),
            _ => self.refused_deadline.inc(),
        }
    }

    /// Responses by status class, 1xx to 5xx.
    pub fn by_class(&self) -> [u64; 5] {
        self.by_class.each_ref().map(|c| c.get())
    }

    /// Counts a response.
    pub fn count(&self, status: http::StatusCode) {
        let i = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.by_class[i].inc();
    }
}

/// A route, ready to serve.
pub struct Route {
    pub name: Arc<str>,
    /// What it takes.
    pub matcher: RouteMatch,
    pub cluster: Arc<str>,
    pub chain: Arc<[Arc<LoadedFilter>]>,
    /// What the chain needs.
    pub needs: ChainNeeds,
    pub timeout: Duration,
    pub stats: RouteStats,
}

impl Route {
    /// The same route with no filters: what a request costs without its chain.
    pub fn without_filters(&self, metrics: &Registry, listener: &str) -> Route {
        let name = format!("{}-without-filters", self.name);
        Route {
            stats: RouteStats::new(metrics, listener, &name, &self.cluster),
            name: name.into(),
            matcher: self.matcher.clone(),
            cluster: self.cluster.clone(),
            chain: Arc::new([]),
            needs: ChainNeeds::default(),
            timeout: self.timeout,
        }
    }
}

/// A listener's access log: where its lines go and how they look.
pub struct AccessLog {
    pub sink: Arc<crate::logsink::Sink>,
    /// JSON lines when absent.
    pub format: Option<Arc<[crate::config::access::LogPiece]>>,
}

/// A listener's part of the snapshot.
pub struct ListenerSnap {
    pub name: Arc<str>,
    /// Where it listens (as configured; port 0 is resolved when binding).
    pub address: SocketAddr,
    /// HTTP versions spoken.
    pub protocol: ListenerProtocol,
    /// Its TLS, read from the files when this snapshot was built (a reload re-reads
    /// them: new handshakes use new certificates, open connections keep theirs).
    pub tls: Option<Arc<ServerTls>>,
    /// `Alt-Svc` set on its responses.
    pub alt_svc: Option<http::HeaderValue>,
    /// Its access log.
    pub access_log: Option<Arc<AccessLog>>,
    /// Its HTTP limits and options.
    pub http: crate::config::HttpOptions,
    /// Its pseudonym in `Via`, when it adds itself.
    pub via: Option<Arc<str>>,
    /// Routes, in order.
    pub routes: Vec<Arc<Route>>,
    /// Requests no route took.
    pub no_route: Arc<Counter>,
    /// Its connections.
    pub connections: ConnStats,
    /// Its own connection limit.
    pub max_connections: Option<u64>,
    /// Its `listen(2)` backlog.
    pub backlog: u32,
}

/// A listener's connection counts (the same series across reloads).
#[derive(Clone)]
pub struct ConnStats {
    /// Connections open now.
    pub active: Arc<crate::metrics::Gauge>,
    /// Connections accepted.
    pub total: Arc<Counter>,
    /// Connections closed as accepted: over the listener's own limit.
    pub refused_listener: Arc<Counter>,
    /// Connections closed as accepted: over `overload.max_connections`.
    pub refused_global: Arc<Counter>,
}

/// An open connection, counted (by its listener and process-wide) until dropped.
pub struct ConnOpen(Arc<crate::metrics::Gauge>, crate::overload::Admitted);

impl Drop for ConnOpen {
    fn drop(&mut self) {
        self.0.add(-1.0);
    }
}

impl ConnStats {
    /// The counts of listener `name`.
    pub fn new(metrics: &Registry, name: &str) -> ConnStats {
        ConnStats {
            active: metrics.gauge(
                "weft_downstream_connections_active",
                "Client connections open now, by listener.",
                &[("listener", name)],
            ),
            total: metrics.counter(
                "weft_downstream_connections_total",
                "Client connections accepted, by listener.",
                &[("listener", name)],
            ),
            refused_listener: refused(metrics, name, "listener_limit"),
            refused_global: refused(metrics, name, "global_limit"),
        }
    }

    /// Counts a connection accepted if the listener's `max` and the process-wide
    /// limit let it in; it is open until the guard is dropped. `None`: refused (and
    /// counted by reason); close it.
    pub fn admit(&self, max: Option<u64>) -> Option<ConnOpen> {
        let Some(global) = crate::overload::admit() else {
            self.refused_global.inc();
            return None;
        };
        let open = self.active.add(1.0);
        if max.is_some_and(|max| open > max as f64) {
            self.active.add(-1.0);
            self.refused_listener.inc();
            return None;
        }
        self.total.inc();
        Some(ConnOpen(self.active.clone(), global))
    }
}

fn refused(metrics: &Registry, listener: &str, reason: &str) -> Arc<Counter> {
    metrics.counter(
        "weft_downstream_connections_refused_total",
        "Client connections closed as accepted, by listener and reason (listener_limit: its max_connections; global_limit: overload.max_connections).",
        &[("listener", listener), ("reason", reason)],
    )
}

impl ListenerSnap {
    /// The first route that takes the request.
    pub fn route_for(
        &self,
        method: &http::Method,
        host: &str,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Option<&Arc<Route>> {
        let path = crate::config::route::without_query(path);
        self.routes
            .iter()
            .find(|r| r.matcher.matches_path(method, host, path, headers))
    }
}

/// Everything a request needs.
pub struct Snapshot {
    /// Listeners, in configuration order.
    pub listeners: Vec<ListenerSnap>,
    /// Clusters by name.
    pub clusters: Arc<Clusters>,
    /// Started filters by name.
    pub filters: BTreeMap<String, Arc<LoadedFilter>>,
    /// The admin address.
    pub admin: Option<SocketAddr>,
    /// The configuration's text.
    pub source: Arc<str>,
    /// Distributed tracing, when configured.
    pub tracing: Option<Tracing>,
    /// Connection limits and overload thresholds.
    pub overload: crate::config::overload::CheckedOverload,
}

/// Distributed tracing as a snapshot runs it.
pub struct Tracing {
    /// Share of new traces sampled.
    pub sampling: f64,
    /// Where sampled spans go (none: context is propagated, no spans are made).
    pub tracer: Option<Arc<crate::trace::Tracer>>,
}

/// A filter that declared it reads the peer identity, on a listener that never has
/// one: refused, so that its identity rules do not silently never match.
fn identity_readers_refused(
    loaded: &LoadedConfig,
    li: usize,
    l: &CheckedListener,
    filters: &BTreeMap<String, Arc<LoadedFilter>>,
) -> Result<(), ConfigError> {
    let own = loaded.config.listeners[li].filters.len();
    for (ri, r) in l.routes.iter().enumerate() {
        for (k, name) in r.filters.iter().enumerate() {
            if !filters[name].info.reads.peer_identity {
                continue;
            }
            let field = if k < own {
                format!("listeners[{li}].filters[{k}]")
            } else {
                format!("listeners[{li}].routes[{ri}].filters[{}]", k - own)
            };
            let how = if l.tls.is_some() {
                "set its tls.client_auth to optional or required, with a client_ca"
            } else {
                "give it tls with client_auth optional or required and a client_ca"
            };
            return Err(loaded.error(FieldError::new(
                field,
                format!(
                    "filter {name:?} reads the client's peer identity (mTLS), but listener \
                     {:?} does not verify client certificates, so its identity rules would \
                     never match: {how}",
                    l.name
                ),
            )));
        }
    }
    Ok(())
}

impl Snapshot {
    /// The listener of this name; `hint` is where it is expected.
    pub fn listener(&self, name: &str, hint: usize) -> Option<&ListenerSnap> {
        match self.listeners.get(hint) {
            Some(l) if &*l.name == name => Some(l),
            _ => self.listeners.iter().find(|l| &*l.name == name),
        }
    }

    /// Builds a snapshot: clusters, then every filter a route uses (compiled, started,
    /// its configuration accepted), then routes. Any problem is reported against the
    /// configuration's line. A filter of `previous` that nothing about changed (see
    /// [`LoadedFilter::unchanged`]) is kept, instances and all, instead of started
    /// again: a reload costs what it changes.
    pub async fn build(
        loaded: &LoadedConfig,
        checked: &Checked,
        host: &FilterHost,
        metrics: &Registry,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, ConfigError> {
        let mut clusters = Clusters::new();
        for (name, c) in &checked.clusters {
            let mut cluster = Cluster::new(c, metrics);
            if let Some(t) = &c.tls {
                let tls = ClientTls::build(t).map_err(|e| loaded.error(e))?;
                cluster = cluster.with_tls(Arc::new(tls));
            }
            if let Some(old) = previous.and_then(|p| p.clusters.get(name)) {
                cluster.inherit(old);
            }
            let cluster = Arc::new(cluster);
            crate::upstream::health::watch(&cluster);
            clusters.insert(name.clone(), cluster);
        }
        let clusters = Arc::new(clusters);
        let outbound = ClusterOutbound::new(clusters.clone());

        let used: std::collections::BTreeSet<&String> = checked
            .listeners
            .iter()
            .flat_map(|l| l.routes.iter().flat_map(|r| r.filters.iter()))
            .collect();
        let mut filters = BTreeMap::new();
        for (name, f) in &checked.filters {
            if !used.contains(name) {
                continue;
            }
            let kept = previous.and_then(|p| p.filters.get(name));
            let started = host
                .load_filter(f, outbound.clone(), kept)
                .await
                .map_err(|e| {
                    let (field, message) = match &e {
                        FilterLoadError::Module(_) => {
                            (format!("{}.module", f.field), e.to_string())
                        }
                        // The field the filter named, within its `config:`: the error
                        // points at that field's line and column.
                        FilterLoadError::Rejected { path, message } => {
                            let sep = if path.starts_with('[') { "" } else { "." };
                            let field = if path.is_empty() {
                                format!("{}.config", f.field)
                            } else {
                                format!("{}.config{sep}{path}", f.field)
                            };
                            (field, format!("filter configuration rejected: {message}"))
                        }
                        FilterLoadError::Start(_) => (format!("{}.config", f.field), e.to_string()),
                    };
                    loaded.error(FieldError::new(field, message))
                })?;
            filters.insert(name.clone(), started);
        }

        let mut listeners = Vec::new();
        for (li, l) in checked.listeners.iter().enumerate() {
            let verifies = l
                .tls
                .as_ref()
                .is_some_and(|t| t.client_auth != ClientAuth::None);
            if !verifies {
                identity_readers_refused(loaded, li, l, &filters)?;
            }
            let mut routes = Vec::new();
            for r in &l.routes {
                let chain: Vec<Arc<LoadedFilter>> =
                    r.filters.iter().map(|n| filters[n].clone()).collect();
                let needs = ChainNeeds {
                    response_headers: chain.iter().any(|f| f.info.phases.response_headers),
                    request_body: chain.iter().any(|f| f.info.phases.request_body),
                    response_body: chain.iter().any(|f| f.info.phases.response_body),
                    log: chain.iter().any(|f| f.info.phases.log),
                };
                routes.push(Arc::new(Route {
                    name: r.name.as_str().into(),
                    matcher: r.matcher.clone(),
                    cluster: r.cluster.as_str().into(),
                    chain: chain.into(),
                    needs,
                    timeout: r.timeout,
                    stats: RouteStats::new(metrics, &l.name, &r.name, &r.cluster),
                }));
            }
            let tls = l
                .tls
                .as_ref()
                .map(|t| ServerTls::build(t, &l.name, l.protocol, metrics).map(Arc::new))
                .transpose()
                .map_err(|e| loaded.error(e))?;
            listeners.push(ListenerSnap {
                name: l.name.as_str().into(),
                address: l.address,
                protocol: l.protocol,
                tls,
                alt_svc: l
                    .alt_svc
                    .as_ref()
                    .and_then(|v| http::HeaderValue::from_str(v).ok()),
                http: l.http,
                via: l.via.as_deref().map(Into::into),
                access_log: l
                    .access_log
                    .as_ref()
                    .map(|a| {
                        let sink = crate::logsink::sink(&a.destination, metrics).map_err(|e| {
                            loaded.error(FieldError::new(
                                format!("{}.path", a.field),
                                format!("cannot open the access log: {e}"),
                            ))
                        })?;
                        Ok::<_, ConfigError>(Arc::new(AccessLog {
                            sink,
                            format: a.format.clone().map(Into::into),
                        }))
                    })
                    .transpose()?,
                routes,
                no_route: metrics.counter(
                    "weft_requests_no_route_total",
                    "Requests no route took (answered 404).",
                    &[("listener", &l.name)],
                ),
                connections: ConnStats::new(metrics, &l.name),
                max_connections: l.max_connections,
                backlog: l.backlog,
            });
        }
        Ok(Snapshot {
            listeners,
            clusters,
            filters,
            admin: checked.admin,
            source: loaded.source.as_str().into(),
            overload: checked.overload,
            tracing: checked
                .tracing
                .as_ref()
                .map(|t| {
                    let tracer = t
                        .otlp
                        .as_ref()
                        .map(|target| crate::trace::tracer(target, metrics))
                        .transpose()
                        .map_err(|e| loaded.error(FieldError::new("tracing.otlp.endpoint", e)))?;
                    Ok::<_, ConfigError>(Tracing {
                        sampling: t.sampling,
                        tracer,
                    })
                })
                .transpose()?,
        })
    }
}
