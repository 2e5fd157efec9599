//! Checks a parsed configuration as a whole and turns it into typed, ready-to-use
//! settings. Loading the filter modules themselves is the filter host's part (see
//! `crate::snapshot`); everything else a configuration can get wrong is caught here.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method, StatusCode};

use super::error::{ConfigError, FieldError};
use super::load::LoadedConfig;
use super::model::{
    ClientAuth, ClusterTlsConfig, EndpointConfig, FailurePolicy, ForwardClientCert, LbPolicy,
    ListenerProtocol, ListenerTlsConfig, MatchConfig, UpstreamProtocol,
};
use super::route::{HeaderRule, HostMatch, PathMatch, RouteMatch};

/// Default time from a request's arrival to its response head.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default longest single call into a filter.
pub const DEFAULT_FILTER_TIMEOUT: Duration = Duration::from_millis(50);
/// Default memory cap of a filter instance.
pub const DEFAULT_FILTER_MEMORY: u64 = 32 << 20;
/// Largest memory cap a filter may ask for.
pub const MAX_FILTER_MEMORY: u64 = 1 << 30;

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The admin listener's address.
    pub admin: Option<SocketAddr>,
    pub listeners: Vec<CheckedListener>,
    /// Clusters by name.
    pub clusters: BTreeMap<String, CheckedCluster>,
    /// Filters by name (only those some route uses are loaded).
    pub filters: BTreeMap<String, CheckedFilter>,
    /// Where compiled filters are cached.
    pub cache_dir: Option<PathBuf>,
    /// Most filter instances alive at once.
    pub max_instances: u32,
    /// Distributed tracing, when configured.
    pub tracing: Option<CheckedTracing>,
    /// The `global` shared-state backend, when configured.
    pub global: Option<super::shared_state::CheckedGlobal>,
    /// Connection limits and overload actions.
    pub overload: super::overload::CheckedOverload,
}

/// Checked `tracing`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedTracing {
    /// Share of new traces sampled.
    pub sampling: f64,
    /// The OTLP/HTTP traces URL, its request timeout and the service name, when spans
    /// are exported.
    pub otlp: Option<crate::trace::export::ExportTarget>,
}

/// A checked listener.
#[derive(Debug, Clone)]
pub struct CheckedListener {
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// HTTP versions spoken.
    pub protocol: ListenerProtocol,
    /// Its routes, in order.
    pub routes: Vec<CheckedRoute>,
    /// Its TLS, when it terminates TLS.
    pub tls: Option<CheckedTls>,
    /// `Alt-Svc` for its responses.
    pub alt_svc: Option<String>,
    /// Its access log.
    pub access_log: Option<CheckedAccessLog>,
    /// Its HTTP limits and options.
    pub http: HttpOptions,
    /// Its pseudonym in `Via`.
    pub via: Option<String>,
    /// Its own connection limit.
    pub max_connections: Option<u64>,
    /// Its `listen(2)` backlog.
    pub backlog: u32,
}

/// A listener's HTTP limits and options, the same on every protocol it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// The largest request header section, in bytes (431 beyond).
    pub max_request_headers: usize,
    /// Longest a request body may stall while it is sent upstream (408 then).
    pub body_idle_timeout: Duration,
    /// A client connection idle (no request in progress) this long is closed.
    pub idle_timeout: Duration,
    /// Whether `Expect: 100-continue` goes to the upstream and its 100 is relayed.
    pub proxy_100_continue: bool,
    /// Whether paths are normalized (RFC 3986 dot segments, unreserved escapes).
    pub normalize_path: bool,
    /// Whether repeated slashes are merged.
    pub merge_slashes: bool,
    /// What normalization does with escaped slashes and backslashes.
    pub escaped_slashes: super::model::EscapedSlashes,
}

/// Default [`CheckedListener::backlog`], as nginx's on Linux is 511 and Envoy's 1024.
pub const DEFAULT_BACKLOG: u32 = 1024;
/// Default [`HttpOptions::max_request_headers`].
pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 64 << 10;
/// Largest allowed [`HttpOptions::max_request_headers`].
pub const MAX_MAX_REQUEST_HEADERS: u64 = 1 << 20;
/// Default [`HttpOptions::body_idle_timeout`].
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`HttpOptions::idle_timeout`]: longer than clients' usual pool idle times
/// (weft's own is 60s), so that a client rarely reuses a connection as it closes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            proxy_100_continue: false,
            normalize_path: true,
            merge_slashes: true,
            escaped_slashes: super::model::EscapedSlashes::Keep,
        }
    }
}

/// A checked access log.
#[derive(Debug, Clone)]
pub struct CheckedAccessLog {
    /// The field, for errors opening it.
    pub field: String,
    pub destination: crate::logsink::Destination,
    /// The format; JSON lines when absent.
    pub format: Option<Vec<super::access::LogPiece>>,
}

/// Default longest TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener's checked TLS settings: paths resolved, each with the field it came
/// from (the certificate files are read when the snapshot is built).
#[derive(Debug, Clone)]
pub struct CheckedTls {
    /// The field of the listener's `tls`, for errors found when the files are read.
    pub field: String,
    /// (chain, key) per certificate, in order.
    pub certificates: Vec<(PathBuf, PathBuf)>,
    pub client_auth: ClientAuth,
    /// The trust bundle for client certificates.
    pub client_ca: Option<PathBuf>,
    pub trust_domain: Option<String>,
    pub forward_client_cert: ForwardClientCert,
    pub handshake_timeout: Duration,
    /// Most handshakes in progress per worker.
    pub max_handshakes: usize,
}

fn check_tls(
    loaded: &LoadedConfig,
    field: &str,
    t: &ListenerTlsConfig,
) -> Result<CheckedTls, FieldError> {
    if t.certificates.is_empty() {
        return Err(FieldError::new(
            format!("{field}.certificates"),
            "a TLS listener needs at least one certificate",
        ));
    }
    if t.client_auth != ClientAuth::None && t.client_ca.is_none() {
        return Err(FieldError::new(
            format!("{field}.client_ca"),
            "client_auth needs a trust bundle to verify client certificates against",
        ));
    }
    if t.client_auth == ClientAuth::None && (t.client_ca.is_some() || t.trust_domain.is_some()) {
        return Err(FieldError::new(
            format!("{field}.client_auth"),
            "client_ca and trust_domain apply to client certificates: set client_auth \
             to optional or required",
        ));
    }
    if let Some(td) = &t.trust_domain {
        let ok = !td.is_empty()
            && td
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'));
        if !ok {
            return Err(FieldError::new(
                format!("{field}.trust_domain"),
                format!(
                    "{td:?} is not a SPIFFE trust domain (lower-case letters, digits, \
                     '.', '-' and '_', without `spiffe://`)"
                ),
            ));
        }
    }
    Ok(CheckedTls {
        field: field.to_owned(),
        certificates: t
            .certificates
            .iter()
            .map(|c| (loaded.resolve(&c.cert), loaded.resolve(&c.key)))
            .collect(),
        client_auth: t.client_auth,
        client_ca: t.client_ca.as_ref().map(|p| loaded.resolve(p)),
        trust_domain: t.trust_domain.clone(),
        forward_client_cert: t.forward_client_cert,
        handshake_timeout: positive(
            &format!("{field}.handshake_timeout"),
            t.handshake_timeout,
            DEFAULT_HANDSHAKE_TIMEOUT,
        )?,
        max_handshakes: match t.max_handshakes {
            Some(0) => {
                return Err(FieldError::new(
                    format!("{field}.max_handshakes"),
                    "must be more than 0",
                ))
            }
            Some(n) => n,
            None => 1024,
        },
    })
}

/// A checked route.
#[derive(Debug, Clone)]
pub struct CheckedRoute {
    pub name: String,
    /// What it takes.
    pub matcher: RouteMatch,
    pub cluster: String,
    /// Its whole filter chain: the listener's filters, then its own.
    pub filters: Vec<String>,
    pub timeout: Duration,
}

/// A checked cluster.
#[derive(Debug, Clone)]
pub struct CheckedCluster {
    pub name: String,
    /// Resolved endpoints.
    pub endpoints: Vec<SocketAddr>,
    /// Each endpoint's weight (1 to 1000), in the same order.
    pub weights: Vec<u32>,
    /// How an attempt's endpoint is chosen.
    pub lb_policy: LbPolicy,
    /// What a hashing policy hashes on.
    pub hash_on: Option<crate::config::model::HashOn>,
    /// The protocol.
    pub protocol: UpstreamProtocol,
    /// The connect timeout.
    pub connect_timeout: Duration,
    /// Idle connections kept per endpoint and worker.
    pub max_idle_per_endpoint: usize,
    /// Idle connections older than this are not reused.
    pub idle_timeout: Duration,
    /// TLS to the endpoints.
    pub tls: Option<CheckedClusterTls>,
    /// Active health checks.
    pub health_check: Option<super::resilience::HealthCheck>,
    /// Passive outlier detection.
    pub outlier: Option<super::resilience::Outlier>,
    /// Circuit breakers.
    pub breakers: super::resilience::Breakers,
}

/// A cluster's checked TLS settings (files are read when the snapshot is built).
#[derive(Debug, Clone)]
pub struct CheckedClusterTls {
    /// The field of the cluster's `tls`, for errors found reading the files.
    pub field: String,
    /// The trust bundle.
    pub ca: PathBuf,
    pub server_name: Option<String>,
    /// Accepted SPIFFE IDs of the endpoints (empty: the name is checked instead).
    pub spiffe_ids: Vec<String>,
    /// The client certificate and key, for mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// ALPN protocols offered.
    pub alpn: Vec<Vec<u8>>,
}

fn check_cluster_tls(
    loaded: &LoadedConfig,
    field: &str,
    protocol: UpstreamProtocol,
    t: &ClusterTlsConfig,
) -> Result<CheckedClusterTls, FieldError> {
    if t.server_name.is_none() && t.spiffe_ids.is_empty() {
        return Err(FieldError::new(
            field,
            "say whom the endpoints must be: server_name (a DNS name their certificates \
             are valid for) or spiffe_ids",
        ));
    }
    for (i, id) in t.spiffe_ids.iter().enumerate() {
        if !id.starts_with("spiffe://") {
            return Err(FieldError::new(
                format!("{field}.spiffe_ids[{i}]"),
                format!("{id:?} is not a SPIFFE ID (spiffe://<trust domain>/<path>)"),
            ));
        }
    }
    let client_cert = match (&t.cert, &t.key) {
        (Some(c), Some(k)) => Some((loaded.resolve(c), loaded.resolve(k))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(FieldError::new(
                format!("{field}.key"),
                "cert needs its key",
            ))
        }
        (None, Some(_)) => {
            return Err(FieldError::new(
                format!("{field}.cert"),
                "key needs its cert",
            ))
        }
    };
    let alpn = match &t.alpn {
        None => vec![match protocol {
            UpstreamProtocol::Http1 => b"http/1.1".to_vec(),
            UpstreamProtocol::Http2 => b"h2".to_vec(),
        }],
        Some(list) => {
            let mut out = Vec::new();
            for (i, p) in list.iter().enumerate() {
                if p != "h2" && p != "http/1.1" {
                    return Err(FieldError::new(
                        format!("{field}.alpn[{i}]"),
                        format!("{p:?}: only h2 and http/1.1 are spoken"),
                    ));
                }
                out.push(p.as_bytes().to_vec());
            }
            if out.is_empty() {
                return Err(FieldError::new(
                    format!("{field}.alpn"),
                    "no protocol given",
                ));
            }
            out
        }
    };
    Ok(CheckedClusterTls {
        field: field.to_owned(),
        ca: loaded.resolve(&t.ca),
        server_name: t.server_name.clone(),
        spiffe_ids: t.spiffe_ids.clone(),
        client_cert,
        alpn,
    })
}

/// A checked filter definition.
#[derive(Debug, Clone)]
pub struct CheckedFilter {
    pub name: String,
    /// The component's path, resolved.
    pub module: PathBuf,
    /// Its configuration as JSON.
    pub config_json: String,
    /// The files it listed, read.
    pub files: Vec<(String, Vec<u8>)>,
    /// What happens when it fails.
    pub failure_policy: FailurePolicy,
    /// The status a fail-closed failure answers with.
    pub failure_status: StatusCode,
    /// Longest single call.
    pub timeout: Duration,
    /// Memory cap per instance.
    pub memory_limit: u64,
    /// Its path in the configuration (for locating errors): `filters.<name>`.
    pub field: String,
}

fn parse_addr(field: &str, text: &str) -> Result<SocketAddr, FieldError> {
    text.parse().map_err(|_| {
        FieldError::new(
            field,
            format!("invalid address {text:?}; write it as ip:port, for example 127.0.0.1:8080"),
        )
    })
}

/// Set by the fuzz targets: endpoints must be IP addresses, so that a fuzzed host name
/// never becomes a DNS query.
pub(crate) static LITERAL_ADDRESSES_ONLY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn resolve_endpoint(field: &str, text: &str) -> Result<SocketAddr, FieldError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if LITERAL_ADDRESSES_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(FieldError::new(field, "not resolved while fuzzing"));
    }
    if !text.contains(':') {
        return Err(FieldError::new(
            field,
            format!("endpoint {text:?} has no port; write it as host:port"),
        ));
    }
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| FieldError::new(field, format!("cannot resolve endpoint {text:?}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| FieldError::new(field, format!("endpoint {text:?} resolves to no address")))
}

/// The path a gRPC match stands for: `/service/method`, or `/service/` for a prefix.
fn grpc_path(
    field: &str,
    g: &crate::config::model::GrpcMatchConfig,
) -> Result<PathMatch, FieldError> {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    };
    if !name_ok(&g.service) || g.service.starts_with('.') || g.service.ends_with('.') {
        return Err(FieldError::new(
            format!("{field}.service"),
            format!(
                "{:?} is not a gRPC service name (package.Service: letters, digits, _ and .)",
                g.service
            ),
        ));
    }
    Ok(match &g.method {
        None => PathMatch::Prefix(format!("/{}/", g.service)),
        Some(m) if name_ok(m) && !m.contains('.') => {
            PathMatch::Exact(format!("/{}/{m}", g.service))
        }
        Some(m) => {
            return Err(FieldError::new(
                format!("{field}.method"),
                format!("{m:?} is not a gRPC method name (letters, digits and _)"),
            ))
        }
    })
}

fn check_matcher(field: &str, m: &MatchConfig) -> Result<RouteMatch, FieldError> {
    let host = match m.host.as_deref() {
        None | Some("*") => HostMatch::Any,
        Some(h) if h.starts_with("*.") && h.len() > 2 => {
            HostMatch::Suffix(h[1..].to_ascii_lowercase())
        }
        Some(h) if !h.is_empty() && !h.contains(['*', '/', ' ', ':']) => {
            HostMatch::Exact(h.to_ascii_lowercase())
        }
        Some(h) => {
            return Err(FieldError::new(
                format!("{field}.host"),
                format!("invalid host {h:?}; write api.example.com, *.example.com or * (no port)"),
            ))
        }
    };
    let path = match (&m.prefix, &m.path) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                format!("{field}.path"),
                "give either prefix or path, not both",
            ));
        }
        (Some(p), None) if p.starts_with('/') => PathMatch::Prefix(p.clone()),
        (None, Some(p)) if p.starts_with('/') => PathMatch::Exact(p.clone()),
        (Some(p), None) => {
            return Err(FieldError::new(
                format!("{field}.prefix"),
                format!("{p:?} must start with /"),
            ))
        }
        (None, Some(p)) => {
            return Err(FieldError::new(
                format!("{field}.path"),
                format!("{p:?} must start with /"),
            ))
        }
        (None, None) => PathMatch::Any,
    };
    let path = match (&m.grpc, path) {
        (None, path) => path,
        (Some(g), PathMatch::Any) => grpc_path(&format!("{field}.grpc"), g)?,
        (Some(_), _) => {
            return Err(FieldError::new(
                format!("{field}.grpc"),
                "a gRPC match sets the path itself: leave out prefix and path",
            ))
        }
    };
    let mut methods = Vec::new();
    for (i, text) in m.methods.iter().enumerate() {
        let method = Method::from_bytes(text.as_bytes()).map_err(|_| {
            FieldError::new(
                format!("{field}.methods[{i}]"),
                format!("invalid method {text:?}"),
            )
        })?;
        methods.push(method);
    }
    let mut headers = Vec::new();
    for (i, h) in m.headers.iter().enumerate() {
        let hfield = format!("{field}.headers[{i}]");
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
            FieldError::new(
                format!("{hfield}.name"),
                format!("invalid header name {:?}", h.name),
            )
        })?;
        let rule = match (&h.exact, &h.prefix, h.present) {
            (Some(x), None, None) => HeaderRule::Exact(x.clone()),
            (None, Some(x), None) => HeaderRule::Prefix(x.clone()),
            (None, None, Some(p)) => HeaderRule::Present(p),
            _ => {
                return Err(FieldError::new(
                    hfield,
                    "give exactly one of exact, prefix or present",
                ))
            }
        };
        headers.push((name, rule));
    }
    if m.grpc.is_some() {
        headers.push((
            http::header::CONTENT_TYPE,
            HeaderRule::Prefix("application/grpc".into()),
        ));
    }
    Ok(RouteMatch {
        host,
        path,
        methods,
        headers,
    })
}

fn positive(field: &str, d: Option<Duration>, default: Duration) -> Result<Duration, FieldError> {
    match d {
        None => Ok(default),
        Some(d) if d.is_zero() => Err(FieldError::new(field, "must be more than 0")),
        Some(d) => Ok(d),
    }
}

/// Checks everything but the filter modules' contents: addresses, references between
/// sections, names, matchers, limits, and that every referenced file exists.
pub fn check(loaded: &LoadedConfig) -> Result<Checked, ConfigError> {
    check_fields(loaded).map_err(|e| loaded.error(e))
}

/// Default `filter_host.max_file_size`.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 16 << 20;
/// Default `filter_host.max_module_size`.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 128 << 20;

/// Whether a file a configuration names may be read: a regular file (a FIFO would hang
/// the reload, a device never end) of at most `limit` bytes.
fn bounded(meta: &std::fs::Metadata, limit: u64) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("a special file")
    };
    if let Some(kind) = kind {
        return Err(format!("not a regular file ({kind})"));
    }
    if meta.len() > limit {
        return Err(format!(
            "{} bytes, more than the limit of {limit} (filter_host.max_file_size / max_module_size)",
            meta.len()
        ));
    }
    Ok(())
}

/// Reads a file a configuration names, if [`bounded`] allows it; never more than
/// `limit` bytes, even if it grows meanwhile.
pub(super) fn read_bounded(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    bounded(&meta, limit)?;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("grew past the limit of {limit} bytes while read"));
    }
    Ok(bytes)
}

fn check_fields(loaded: &LoadedConfig) -> Result<Checked, FieldError> {
    let cfg = &loaded.config;
    let admin = cfg
        .admin
        .as_ref()
        .map(|a| parse_addr("admin.address", &a.address))
        .transpose()?;

    let mut clusters = BTreeMap::new();
    for (name, c) in &cfg.clusters {
        let field = format!("clusters.{name}");
        if c.endpoints.is_empty() {
            return Err(FieldError::new(
                format!("{field}.endpoints"),
                "a cluster needs at least one endpoint",
            ));
        }
        let endpoints = c
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| resolve_endpoint(&format!("{field}.endpoints[{i}]"), e.address()))
            .collect::<Result<Vec<_>, _>>()?;
        let weights = c
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| match e {
                EndpointConfig::Address(_) => Ok(1),
                EndpointConfig::Weighted(w) => match w.weight.unwrap_or(1) {
                    w @ 1..=1000 => Ok(w),
                    other => Err(FieldError::new(
                        format!("{field}.endpoints[{i}].weight"),
                        format!("weight {other} is out of range: give 1 to 1000"),
                    )),
                },
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(h) = &c.hash_on {
            let given = usize::from(h.header.is_some())
                + usize::from(h.cookie.is_some())
                + usize::from(h.client_address);
            if given != 1 {
                return Err(FieldError::new(
                    format!("{field}.hash_on"),
                    "give exactly one of header, cookie or client_address",
                ));
            }
            if let Some(name) = &h.header {
                if HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(FieldError::new(
                        format!("{field}.hash_on.header"),
                        format!("{name:?} is not a header name"),
                    ));
                }
            }
            if !c.lb_policy.hashes() {
                return Err(FieldError::new(
                    format!("{field}.hash_on"),
                    "only the ring_hash and maglev policies hash requests: set lb_policy",
                ));
            }
        }
        clusters.insert(
            name.clone(),
            CheckedCluster {
                name: name.clone(),
                endpoints,
                weights,
                lb_policy: c.lb_policy,
                hash_on: c.hash_on.clone(),
                protocol: c.protocol,
                connect_timeout: positive(
                    &format!("{field}.connect_timeout"),
                    c.connect_timeout,
                    DEFAULT_CONNECT_TIMEOUT,
                )?,
                max_idle_per_endpoint: c.max_idle_per_endpoint.unwrap_or(64),
                idle_timeout: positive(
                    &format!("{field}.idle_timeout"),
                    c.idle_timeout,
                    Duration::from_secs(60),
                )?,
                tls: c
                    .tls
                    .as_ref()
                    .map(|t| check_cluster_tls(loaded, &format!("{field}.tls"), c.protocol, t))
                    .transpose()?,
                health_check: c
                    .health_check
                    .as_ref()
                    .map(|h| super::resilience::check_health(&format!("{field}.health_check"), h))
                    .transpose()?,
                outlier: c
                    .outlier_detection
                    .as_ref()
                    .map(|o| {
                        super::resilience::check_outlier(&format!("{field}.outlier_detection"), o)
                    })
                    .transpose()?,
                breakers: c
                    .circuit_breakers
                    .as_ref()
                    .map(|b| {
                        super::resilience::check_breakers(&format!("{field}.circuit_breakers"), b)
                    })
                    .transpose()?
                    .unwrap_or_default(),
            },
        );
    }

    let max_file = cfg
        .filter_host
        .max_file_size
        .unwrap_or(DEFAULT_MAX_FILE_SIZE);
    let max_module = cfg
        .filter_host
        .max_module_size
        .unwrap_or(DEFAULT_MAX_MODULE_SIZE);
    let mut filters = BTreeMap::new();
    for (name, f) in &cfg.filters {
        let field = format!("filters.{name}");
        let module = loaded.resolve(&f.module);
        if let Ok(meta) = std::fs::metadata(&module) {
            if let Err(why) = bounded(&meta, max_module) {
                return Err(FieldError::new(
                    format!("{field}.module"),
                    format!("{}: {why}", module.display()),
                ));
            }
        }
        if !module.is_file() {
            return Err(FieldError::new(
                format!("{field}.module"),
                format!(
                    "filter module {} not found (build it with `weft filter build`)",
                    module.display()
                ),
            ));
        }
        let config_json = match &f.config {
            None => "null".to_owned(),
            Some(v) => serde_json::to_string(v).map_err(|e| {
                FieldError::new(
                    format!("{field}.config"),
                    format!("cannot be expressed as JSON: {e}"),
                )
            })?,
        };
        let mut files = Vec::new();
        for (fname, path) in &f.files {
            let resolved = loaded.resolve(path);
            let bytes = read_bounded(&resolved, max_file).map_err(|why| {
                FieldError::new(
                    format!("{field}.files.{fname}"),
                    format!("cannot read {}: {why}", resolved.display()),
                )
            })?;
            files.push((fname.clone(), bytes));
        }
        let failure_status = match f.failure_status {
            None => StatusCode::SERVICE_UNAVAILABLE,
            Some(s) => StatusCode::from_u16(s)
                .ok()
                .filter(|s| s.as_u16() >= 200)
                .ok_or_else(|| {
                    FieldError::new(
                        format!("{field}.failure_status"),
                        format!("{s} is not a valid status"),
                    )
                })?,
        };
        let memory_limit = f.memory_limit.unwrap_or(DEFAULT_FILTER_MEMORY);
        if !(64 << 10..=MAX_FILTER_MEMORY).contains(&memory_limit) {
            return Err(FieldError::new(
                format!("{field}.memory_limit"),
                "must be between 64KiB and 1GiB",
            ));
        }
        filters.insert(
            name.clone(),
            CheckedFilter {
                name: name.clone(),
                module,
                config_json,
                files,
                failure_policy: f.failure_policy,
                failure_status,
                timeout: positive(
                    &format!("{field}.timeout"),
                    f.timeout,
                    DEFAULT_FILTER_TIMEOUT,
                )?,
                memory_limit,
                field,
            },
        );
    }

    if cfg.listeners.is_empty() {
        return Err(FieldError::new(
            "listeners",
            "at least one listener is needed",
        ));
    }
    let mut listener_names = HashSet::new();
    let mut addresses = HashSet::new();
    let mut listeners = Vec::new();
    for (li, l) in cfg.listeners.iter().enumerate() {
        let lfield = format!("listeners[{li}]");
        if !listener_names.insert(l.name.as_str()) {
            return Err(FieldError::new(
                format!("{lfield}.name"),
                format!("listener name {:?} is used twice", l.name),
            ));
        }
        let address = parse_addr(&format!("{lfield}.address"), &l.address)?;
        // HTTP/3 listens on UDP: it may share a port number with a TCP listener.
        let udp = l.protocol == ListenerProtocol::Http3;
        if udp && l.tls.is_none() {
            return Err(FieldError::new(
                format!("{lfield}.tls"),
                "protocol http3 needs tls (QUIC is always encrypted)",
            ));
        }
        if udp && l.alt_svc.is_some() {
            return Err(FieldError::new(
                format!("{lfield}.alt_svc"),
                "alt_svc is for TCP listeners, to point clients at an http3 one",
            ));
        }
        if let Some(v) = &l.alt_svc {
            if http::HeaderValue::from_str(v).is_err() {
                return Err(FieldError::new(
                    format!("{lfield}.alt_svc"),
                    format!("{v:?} is not a valid header value"),
                ));
            }
        }
        let max_request_headers = match l.max_request_headers {
            None => DEFAULT_MAX_REQUEST_HEADERS,
            Some(n) if (1024..=MAX_MAX_REQUEST_HEADERS).contains(&n) => n as usize,
            Some(n) => {
                return Err(FieldError::new(
                    format!("{lfield}.max_request_headers"),
                    format!("{n} bytes: must be from 1KiB to 1MiB"),
                ))
            }
        };
        let body_idle_timeout = match l.body_idle_timeout {
            None => DEFAULT_BODY_IDLE_TIMEOUT,
            Some(d) if d.is_zero() => {
                return Err(FieldError::new(
                    format!("{lfield}.body_idle_timeout"),
                    "must be more than 0",
                ))
            }
            Some(d) => d,
        };
        if let Some(v) = &l.via {
            let token = !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(FieldError::new(
                    format!("{lfield}.via"),
                    format!("{v:?} is not a token (letters, digits, `-`, `.`, `_`...)"),
                ));
            }
        }
        let http = HttpOptions {
            max_request_headers,
            body_idle_timeout,
            idle_timeout: positive(
                &format!("{lfield}.idle_timeout"),
                l.idle_timeout,
                DEFAULT_IDLE_TIMEOUT,
            )?,
            proxy_100_continue: l.proxy_100_continue,
            normalize_path: l.normalize_path.unwrap_or(true),
            merge_slashes: l.merge_slashes.unwrap_or(true),
            escaped_slashes: l.escaped_slashes,
        };
        if address.port() != 0 && !addresses.insert((address, udp)) {
            return Err(FieldError::new(
                format!("{lfield}.address"),
                format!("{address} is used by two listeners"),
            ));
        }
        if !udp && Some(address) == admin && address.port() != 0 {
            return Err(FieldError::new(
                format!("{lfield}.address"),
                format!("{address} is the admin address"),
            ));
        }
        for (i, f) in l.filters.iter().enumerate() {
            if !filters.contains_key(f) {
                return Err(unknown_filter(
                    &format!("{lfield}.filters[{i}]"),
                    f,
                    &filters,
                ));
            }
        }
        let mut route_names = HashSet::new();
        let mut routes = Vec::new();
        for (ri, r) in l.routes.iter().enumerate() {
            let rfield = format!("{lfield}.routes[{ri}]");
            let name = r.name.clone().unwrap_or_else(|| format!("{}-{ri}", l.name));
            if !route_names.insert(name.clone()) {
                return Err(FieldError::new(
                    format!("{rfield}.name"),
                    format!("route name {name:?} is used twice"),
                ));
            }
            if !clusters.contains_key(&r.cluster) {
                let known: Vec<&str> = clusters.keys().map(String::as_str).collect();
                return Err(FieldError::new(
                    format!("{rfield}.cluster"),
                    format!(
                        "unknown cluster {:?} (clusters: {})",
                        r.cluster,
                        list_or_none(&known)
                    ),
                ));
            }
            for (i, f) in r.filters.iter().enumerate() {
                if !filters.contains_key(f) {
                    return Err(unknown_filter(
                        &format!("{rfield}.filters[{i}]"),
                        f,
                        &filters,
                    ));
                }
            }
            let chain: Vec<String> = l.filters.iter().chain(&r.filters).cloned().collect();
            routes.push(CheckedRoute {
                name,
                matcher: check_matcher(&format!("{rfield}.match"), &r.matcher)?,
                cluster: r.cluster.clone(),
                filters: chain,
                timeout: positive(
                    &format!("{rfield}.timeout"),
                    r.timeout,
                    DEFAULT_ROUTE_TIMEOUT,
                )?,
            });
        }
        let tls = l
            .tls
            .as_ref()
            .map(|t| check_tls(loaded, &format!("{lfield}.tls"), t))
            .transpose()?;
        if l.max_connections == Some(0) {
            return Err(FieldError::new(
                format!("{lfield}.max_connections"),
                "must be more than 0",
            ));
        }
        let backlog = match l.backlog {
            None => DEFAULT_BACKLOG,
            Some(b) if (1..=65535).contains(&b) => b,
            Some(b) => {
                return Err(FieldError::new(
                    format!("{lfield}.backlog"),
                    format!("{b}: must be from 1 to 65535"),
                ))
            }
        };
        if udp && (l.max_connections.is_some() || l.backlog.is_some()) {
            return Err(FieldError::new(
                format!("{lfield}.max_connections"),
                "max_connections and backlog are for TCP listeners (HTTP/3 has no accept)",
            ));
        }
        listeners.push(CheckedListener {
            max_connections: l.max_connections,
            backlog,
            name: l.name.clone(),
            address,
            protocol: l.protocol,
            routes,
            tls,
            alt_svc: l.alt_svc.clone(),
            http,
            via: l.via.clone(),
            access_log: l
                .access_log
                .as_ref()
                .map(|a| {
                    let field = format!("{lfield}.access_log");
                    let destination = if a.path == "stdout" {
                        crate::logsink::Destination::Stdout
                    } else {
                        crate::logsink::Destination::File(
                            loaded.resolve(std::path::Path::new(&a.path)),
                        )
                    };
                    let format = a
                        .format
                        .as_deref()
                        .map(super::access::parse_format)
                        .transpose()
                        .map_err(|m| FieldError::new(format!("{field}.format"), m))?;
                    Ok::<_, FieldError>(CheckedAccessLog {
                        field,
                        destination,
                        format,
                    })
                })
                .transpose()?,
        });
    }

    let max_instances = cfg.filter_host.max_instances.unwrap_or(1000);
    if max_instances == 0 {
        return Err(FieldError::new(
            "filter_host.max_instances",
            "must be more than 0",
        ));
    }
    Ok(Checked {
        admin,
        listeners,
        clusters,
        filters,
        cache_dir: cfg
            .filter_host
            .cache_dir
            .as_ref()
            .map(|p| loaded.resolve(p)),
        max_instances,
        tracing: cfg.tracing.as_ref().map(check_tracing).transpose()?,
        global: super::shared_state::check(&cfg.shared_state, |p| loaded.resolve(p))?,
        overload: super::overload::check(&cfg.overload)?,
    })
}

fn check_tracing(t: &super::model::TracingConfig) -> Result<CheckedTracing, FieldError> {
    let sampling = t.sampling.unwrap_or(0.01);
    if !(0.0..=1.0).contains(&sampling) {
        return Err(FieldError::new(
            "tracing.sampling",
            format!("must be from 0.0 to 1.0 (a share of requests), not {sampling}"),
        ));
    }
    let otlp = match &t.otlp {
        None => None,
        Some(o) => {
            let uri: http::Uri = o
                .endpoint
                .parse()
                .map_err(|e| FieldError::new("tracing.otlp.endpoint", format!("not a URL: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(FieldError::new(
                    "tracing.otlp.endpoint",
                    "must be an http:// URL of an OTLP/HTTP collector (such as \
                     http://127.0.0.1:4318)",
                ));
            }
            let endpoint = match uri.path() {
                "" | "/" => format!("http://{}/v1/traces", uri.authority().expect("checked")),
                _ => o.endpoint.clone(),
            };
            Some(crate::trace::export::ExportTarget {
                endpoint,
                timeout: positive("tracing.otlp.timeout", o.timeout, Duration::from_secs(5))?,
                service_name: t.service_name.clone().unwrap_or_else(|| "weft".to_owned()),
            })
        }
    };
    Ok(CheckedTracing { sampling, otlp })
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none defined".to_owned()
    } else {
        names.join(", ")
    }
}

fn unknown_filter(
    field: &str,
    name: &str,
    filters: &BTreeMap<String, CheckedFilter>,
) -> FieldError {
    let known: Vec<&str> = filters.keys().map(String::as_str).collect();
    FieldError::new(
        field,
        format!(
            "unknown filter {name:?} (filters: {})",
            list_or_none(&known)
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn check_src(src: &str) -> Result<Checked, ConfigError> {
        let loaded = LoadedConfig::parse(Path::new("/nonexistent/t.yaml"), src.to_owned())?;
        check(&loaded)
    }

    const BASE: &str = "\
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { prefix: /api }
        cluster: api
      - cluster: web
clusters:
  api:
    endpoints: [127.0.0.1:9000]
  web:
    endpoints: [localhost:9001]
    protocol: http2
";

    #[test]
    fn a_good_config_checks() {
        let c = check_src(BASE).unwrap();
        assert_eq!(c.listeners[0].routes.len(), 2);
        assert_eq!(c.listeners[0].routes[1].name, "edge-1");
        assert_eq!(c.clusters["web"].protocol, UpstreamProtocol::Http2);
        assert_eq!(c.listeners[0].routes[0].timeout, DEFAULT_ROUTE_TIMEOUT);
    }

    #[test]
    fn unknown_cluster_points_at_its_line() {
        let err = check_src(&BASE.replace("cluster: web", "cluster: wbe")).unwrap_err();
        assert_eq!(err.field, "listeners[0].routes[1].cluster");
        assert_eq!(err.position.map(|p| p.0), Some(7));
        assert!(
            err.message
                .contains("unknown cluster \"wbe\" (clusters: api, web)"),
            "{err}"
        );
    }

    #[test]
    fn bad_address_points_at_its_line() {
        let err = check_src(&BASE.replace("127.0.0.1:0", "localhost")).unwrap_err();
        assert_eq!(err.field, "listeners[0].address");
        assert_eq!(err.position.map(|p| p.0), Some(3));
        assert!(err.message.contains("invalid address"), "{err}");
    }

    #[test]
    fn missing_filter_module_is_reported() {
        let src = format!("{BASE}filters:\n  rid:\n    module: missing.wasm\n");
        let err = check_src(&src).unwrap_err();
        assert_eq!(err.field, "filters.rid.module");
        assert_eq!(err.position.map(|p| p.0), Some(16));
        assert!(
            err.message.contains("/nonexistent/missing.wasm not found"),
            "{err}"
        );
    }

    #[test]
    fn unknown_filter_in_a_route_is_reported() {
        let src = BASE.replace("cluster: api\n", "cluster: api\n        filters: [nope]\n");
        let err = check_src(&src).unwrap_err();
        assert_eq!(err.field, "listeners[0].routes[0].filters[0]");
        assert!(
            err.message
                .contains("unknown filter \"nope\" (filters: none defined)"),
            "{err}"
        );
    }

    #[test]
    fn matcher_errors_name_the_field() {
        let err = check_src(&BASE.replace("prefix: /api", "prefix: api")).unwrap_err();
        assert_eq!(err.field, "listeners[0].routes[0].match.prefix");
        let err =
            check_src(&BASE.replace("{ prefix: /api }", "{ headers: [{ name: x }] }")).unwrap_err();
        assert_eq!(err.field, "listeners[0].routes[0].match.headers[0]");
    }

    #[test]
    fn endpoint_without_port_is_refused() {
        let err = check_src(&BASE.replace("127.0.0.1:9000", "backend")).unwrap_err();
        assert_eq!(err.field, "clusters.api.endpoints[0]");
        assert!(err.message.contains("has no port"), "{err}");
    }
}
