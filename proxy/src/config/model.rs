//! The configuration document, as YAML maps onto it. Every struct refuses unknown
//! fields, so a typo is an error with its line, never a silently ignored setting.
//!
//! The README's configuration reference documents each field; keep the two in step.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The admin listener (metrics, live config, filter state).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Where the proxy accepts traffic.
    pub listeners: Vec<ListenerConfig>,
    /// Named groups of upstream endpoints.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Named filters: a module and its configuration. Routes refer to them by name.
    #[serde(default)]
    pub filters: BTreeMap<String, FilterConfig>,
    /// Settings of the WebAssembly filter host.
    #[serde(default)]
    pub filter_host: FilterHostConfig,
    /// Distributed tracing (W3C trace context, OTLP export). Absent: `traceparent`
    /// passes through untouched and no spans are made.
    #[serde(default)]
    pub tracing: Option<TracingConfig>,
    /// Where filters' `global` state lives (Redis). Absent: `global` is this proxy's.
    #[serde(default)]
    pub shared_state: super::shared_state::SharedStateConfig,
    /// Connection limits for the whole proxy, and what it gives up as memory or file
    /// descriptors run short.
    #[serde(default)]
    pub overload: super::overload::OverloadConfig,
}

/// Distributed tracing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Share of new traces (requests without a valid `traceparent`) that are sampled,
    /// from 0.0 to 1.0. Default 0.01. A request with a `traceparent` follows its
    /// sampled flag.
    #[serde(default)]
    pub sampling: Option<f64>,
    /// Where sampled spans are exported. Without it, trace context is still read and
    /// passed upstream (and shown to filters and access logs), but no spans are made.
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
    /// `service.name` of the exported spans. Default `weft`.
    #[serde(default)]
    pub service_name: Option<String>,
}

/// An OTLP/HTTP (protobuf) collector.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// `http://host:port` (then `/v1/traces` is added) or the full traces URL.
    pub endpoint: String,
    /// The longest one export request may take. Default 5s.
    #[serde(default, with = "duration_opt")]
    pub timeout: Option<Duration>,
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `ip:port` to listen on (port 0 picks a free port).
    pub address: String,
}

/// Which HTTP versions a listener speaks.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ListenerProtocol {
    /// HTTP/1.1, and HTTP/2 for clients that open with its preface (prior knowledge).
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only (prior knowledge when cleartext; ALPN `h2` over TLS).
    Http2,
    /// HTTP/3 over QUIC, on UDP; needs `tls` (ALPN `h3`, TLS 1.3).
    Http3,
}

/// What path normalization does with escaped slashes and backslashes.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// Left as they came (`%2F` stays, upper-cased).
    #[default]
    Keep,
    /// Decoded to `/` (and then merged and resolved like any slash).
    Decode,
    /// Refused with 400.
    Reject,
}

/// A listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Its name, in logs, metrics and the filters' `request.listener()`.
    pub name: String,
    /// `ip:port` to listen on (port 0 picks a free port).
    pub address: String,
    /// HTTP versions spoken.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// TLS termination (and mTLS); cleartext when absent.
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
    /// An `Alt-Svc` value set on every response (for example `h3=":8443"; ma=86400`,
    /// to point clients at an HTTP/3 listener).
    #[serde(default)]
    pub alt_svc: Option<String>,
    /// A line per request when its response ends; none when absent.
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// Filters run for every route of this listener, before the route's own.
    #[serde(default)]
    pub filters: Vec<String>,
    /// The largest request header section accepted, on every protocol (measured as
    /// HTTP/1.1 would carry it: request line and `name: value` lines). Larger gets 431.
    /// Default 64KiB; at most 1MiB.
    #[serde(default, deserialize_with = "bytes_opt")]
    pub max_request_headers: Option<u64>,
    /// Longest a request body may stall (no byte from the client) while it is being
    /// sent upstream; then 408. Default 60s. (A route's `timeout` counts from the end of
    /// the request body, as Envoy's does, so a slow upload is never a 504.)
    #[serde(default, with = "duration_opt")]
    pub body_idle_timeout: Option<Duration>,
    /// A client connection with no request in progress for this long is closed
    /// (HTTP/2: GOAWAY, streams in progress finish). Default 300s.
    #[serde(default, with = "duration_opt")]
    pub idle_timeout: Option<Duration>,
    /// `Expect: 100-continue` passed to the upstream, and its `100 Continue` relayed,
    /// so an upstream that refuses a request spares the client the upload (HTTP/1.1
    /// clients to HTTP/1.1 upstreams). Default false: the proxy answers `100 Continue`
    /// itself when the body is first read, as Envoy does by default.
    #[serde(default)]
    pub proxy_100_continue: bool,
    /// Normalize request paths before routing, filters and the upstream: percent-encoded
    /// unreserved characters decoded, dot segments removed (RFC 3986). Default true.
    #[serde(default)]
    pub normalize_path: Option<bool>,
    /// Merge repeated slashes in request paths (`/a//b` is `/a/b`). Default true.
    #[serde(default)]
    pub merge_slashes: Option<bool>,
    /// What normalization does with `%2F`, `%5C` and `\` in paths: `keep` (default),
    /// `decode` (to `/`) or `reject` (400).
    #[serde(default)]
    pub escaped_slashes: EscapedSlashes,
    /// A pseudonym (a token such as `weft` or `edge-1`) added as this hop to `Via` on
    /// requests and responses (RFC 9110 section 7.6.3). None by default, as Envoy.
    #[serde(default)]
    pub via: Option<String>,
    /// Connections open at once on this listener, all workers together; the next is
    /// closed as it is accepted (counted, reason `listener_limit`). Default: no limit
    /// of its own (`overload.max_connections` still applies).
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// The kernel's queue of connections not accepted yet (`listen(2)` backlog, capped
    /// by `net.core.somaxconn`). Default 1024.
    #[serde(default)]
    pub backlog: Option<u32>,
    /// Routes, tried in order; the first that matches serves the request.
    pub routes: Vec<RouteConfig>,
}

/// A listener's access log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `stdout`, or a file (appended to, created if missing, reopened on SIGUSR1).
    pub path: String,
    /// A format string with `%field%` placeholders; JSON lines with every field when
    /// absent.
    #[serde(default)]
    pub format: Option<String>,
}

/// A listener's TLS: its certificates, and whether and how clients prove who they are.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// Certificate chains and keys (PEM files). With several, the client's SNI picks
    /// the one whose DNS names (exact or `*.` wildcard) match; the first serves clients
    /// that send no SNI or a name none matches.
    pub certificates: Vec<CertificateConfig>,
    /// Whether clients must present a certificate.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// The trust bundle (PEM CA certificates) client certificates are verified against.
    /// Needed unless `client_auth` is `none`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Client certificates must carry a SPIFFE ID in this trust domain
    /// (`spiffe://<trust_domain>/...`); any trust domain when absent.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// What to do with `x-forwarded-client-cert`. A client's own is always removed.
    #[serde(default)]
    pub forward_client_cert: ForwardClientCert,
    /// Longest a handshake may take. Default 10s.
    #[serde(default, with = "duration_opt")]
    pub handshake_timeout: Option<Duration>,
    /// Most handshakes in progress at once on each worker; connections beyond it are
    /// closed at once (counted as `overloaded`). Default 1024.
    #[serde(default)]
    pub max_handshakes: Option<usize>,
}

/// One certificate chain and its private key, as PEM files (relative paths are from
/// the configuration file's directory).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// The chain: the end-entity certificate first, then intermediates.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// Whether a TLS listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// No client certificates: no peer identity.
    #[default]
    None,
    /// Asked for; a client without one is served without a peer identity, a client
    /// with a bad one is refused.
    Optional,
    /// Every client must present a valid certificate (mTLS).
    Required,
}

/// `x-forwarded-client-cert` handling (names as Envoy's).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ForwardClientCert {
    /// Remove it; the upstream learns nothing of the client's certificate.
    #[default]
    Sanitize,
    /// Remove the client's and set `By=<this listener's SPIFFE ID>;URI=<the client's
    /// SPIFFE ID>` when the client presented a verified certificate.
    SanitizeSet,
}

/// A route.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Its name; `<listener>-<index>` when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// What requests it takes; every request when absent.
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    /// The cluster it sends to.
    pub cluster: String,
    /// Filters run for this route, after the listener's.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Time from the request's arrival to the upstream's response head, retries
    /// included. Default 15s.
    #[serde(default, with = "duration_opt")]
    pub timeout: Option<Duration>,
}

/// What a route takes. All given conditions must hold.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// The host (authority without port): exact (`api.example.com`), a suffix wildcard
    /// (`*.example.com`) or `*`.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix, as Envoy's `prefix`: `/api` matches `/api`, `/api/x` and `/apix`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Exact path (the query string is ignored).
    #[serde(default)]
    pub path: Option<String>,
    /// Methods; any method when absent.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions.
    #[serde(default)]
    pub headers: Vec<HeaderMatchConfig>,
    /// A gRPC service, and optionally one of its methods: the path `/service/method`
    /// (or `/service/` as a prefix) of a request whose content type is gRPC's.
    #[serde(default)]
    pub grpc: Option<GrpcMatchConfig>,
}

/// A gRPC condition.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcMatchConfig {
    /// The fully qualified service (`helloworld.Greeter`).
    pub service: String,
    /// A method of it (`SayHello`); any of its methods when absent.
    #[serde(default)]
    pub method: Option<String>,
}

/// A header condition: give `exact`, `prefix` or `present`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchConfig {
    /// The header name.
    pub name: String,
    /// The value must equal this.
    #[serde(default)]
    pub exact: Option<String>,
    /// The value must start with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The header must be present (true) or absent (false).
    #[serde(default)]
    pub present: Option<bool>,
}

/// How the proxy talks to a cluster's endpoints.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with a pool of kept-alive connections.
    #[default]
    Http1,
    /// HTTP/2 cleartext (prior knowledge), one multiplexed connection per endpoint and
    /// worker.
    Http2,
}

/// A cluster.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Each endpoint: `host:port`, or `{ address: host:port, weight: N }`; names are
    /// resolved when the configuration loads.
    pub endpoints: Vec<EndpointConfig>,
    /// How an attempt's endpoint is chosen. Default `round_robin`.
    #[serde(default)]
    pub lb_policy: LbPolicy,
    /// What `ring_hash` and `maglev` hash a request on (one of the three).
    #[serde(default)]
    pub hash_on: Option<HashOn>,
    /// The protocol spoken to the endpoints.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Limit for establishing a connection. Default 5s.
    #[serde(default, with = "duration_opt")]
    pub connect_timeout: Option<Duration>,
    /// Idle kept-alive connections kept per endpoint and worker (HTTP/1.1). Default 64.
    #[serde(default)]
    pub max_idle_per_endpoint: Option<usize>,
    /// An idle connection older than this is closed instead of reused. Default 60s.
    #[serde(default, with = "duration_opt")]
    pub idle_timeout: Option<Duration>,
    /// TLS (and mTLS) to the endpoints; cleartext when absent.
    #[serde(default)]
    pub tls: Option<ClusterTlsConfig>,
    /// Active health checks of the endpoints; none when absent.
    #[serde(default)]
    pub health_check: Option<super::resilience::HealthCheckConfig>,
    /// Passive outlier detection: endpoints failing in a row are ejected for a while.
    #[serde(default)]
    pub outlier_detection: Option<super::resilience::OutlierConfig>,
    /// Limits on connections, pending requests, requests and retries in flight.
    #[serde(default)]
    pub circuit_breakers: Option<super::resilience::BreakersConfig>,
}

/// A cluster endpoint: an address, or an address with a weight.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EndpointConfig {
    /// `host:port`, weight 1.
    Address(String),
    /// `{ address: host:port, weight: N }`.
    Weighted(WeightedEndpoint),
}

/// An endpoint with a weight.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedEndpoint {
    /// `host:port`.
    pub address: String,
    /// Its share relative to the cluster's other endpoints, 1 to 1000. Default 1.
    #[serde(default)]
    pub weight: Option<u32>,
}

impl EndpointConfig {
    /// The `host:port` text.
    pub fn address(&self) -> &str {
        match self {
            EndpointConfig::Address(a) => a,
            EndpointConfig::Weighted(w) => &w.address,
        }
    }
}

/// A cluster's load-balancing policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// In turn, in proportion to the endpoints' weights.
    #[default]
    RoundRobin,
    /// At random, in proportion to the weights.
    Random,
    /// The less loaded of two random endpoints: requests in flight times latency
    /// (EWMA), per unit of weight.
    LeastRequest,
    /// Consistent hashing on a ring (`hash_on`); adding or removing an endpoint moves
    /// about 1/N of the keys.
    RingHash,
    /// Consistent hashing with Maglev's lookup table (`hash_on`).
    Maglev,
}

impl LbPolicy {
    /// Whether the policy places requests by a hash key (`ring_hash`, `maglev`).
    pub fn hashes(self) -> bool {
        matches!(self, LbPolicy::RingHash | LbPolicy::Maglev)
    }
}

/// What a hashing policy hashes a request on (exactly one of them). A filter may set
/// the request property `hash_key` to choose the key itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HashOn {
    /// A request header's value.
    #[serde(default)]
    pub header: Option<String>,
    /// A cookie's value.
    #[serde(default)]
    pub cookie: Option<String>,
    /// The client's IP address.
    #[serde(default)]
    pub client_address: bool,
}

/// How the proxy speaks TLS to a cluster's endpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// The trust bundle (PEM CA certificates) the endpoints' certificates are verified
    /// against.
    pub ca: PathBuf,
    /// Sent as SNI; without `spiffe_ids`, the DNS name the endpoints' certificates must
    /// be valid for.
    #[serde(default)]
    pub server_name: Option<String>,
    /// The SPIFFE IDs the endpoints may present (their certificate's URI SAN); any other
    /// is refused. Give this or `server_name`.
    #[serde(default)]
    pub spiffe_ids: Vec<String>,
    /// A client certificate chain (PEM) presented for mTLS, with `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// ALPN protocols offered, in order of preference (`h2`, `http/1.1`): the endpoint's
    /// choice decides HTTP/2 or HTTP/1.1. Default: the cluster's `protocol`.
    #[serde(default)]
    pub alpn: Option<Vec<String>>,
}

/// What the proxy does when a filter traps, overruns its deadline or its memory.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Answer the request with `failure_status` (default 503).
    #[default]
    FailClosed,
    /// Go on as if the filter had answered `continue`.
    FailOpen,
}

/// A filter: a module and its configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Path of the component (`.wasm`), relative to the configuration file.
    pub module: PathBuf,
    /// The filter's own configuration, handed to it as JSON.
    #[serde(default)]
    pub config: Option<serde_yaml::Value>,
    /// Files the filter may read at start (for example a JWKS), by name; paths are
    /// relative to the configuration file.
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    /// What happens when the filter fails. Default `fail_closed`.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// The status a fail-closed failure answers with. Default 503.
    #[serde(default)]
    pub failure_status: Option<u16>,
    /// Longest a single call into the filter may run. Default 50ms.
    #[serde(default, with = "duration_opt")]
    pub timeout: Option<Duration>,
    /// Most linear memory an instance may use, in bytes or with a unit (`16MiB`).
    /// Default 32MiB.
    #[serde(default, deserialize_with = "bytes_opt")]
    pub memory_limit: Option<u64>,
}

/// Settings of the WebAssembly filter host.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FilterHostConfig {
    /// Where compiled filters are cached. Default `$WEFT_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/weft`, else `~/.cache/weft`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Most filter instances alive at once, over all filters. Default 1000.
    #[serde(default)]
    pub max_instances: Option<u32>,
    /// Largest file a filter's `files:` may name. Default 16MiB.
    #[serde(default, deserialize_with = "bytes_opt")]
    pub max_file_size: Option<u64>,
    /// Largest filter module (`.wasm`). Default 128MiB.
    #[serde(default, deserialize_with = "bytes_opt")]
    pub max_module_size: Option<u64>,
}

/// `humantime` durations (`250ms`, `5s`, `1m 30s`), optional.
pub(crate) mod duration_opt {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| {
            humantime::parse_duration(&s).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}); write it as 250ms, 5s or 1m"
                ))
            })
        })
        .transpose()
    }

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

/// Sizes: a number of bytes, or a number with a unit (`512KiB`, `16MiB`, `1GiB`, `10MB`).
pub(crate) fn bytes_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(s)) => parse_size(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Parses `16MiB`, `512 KiB`, `10MB` or `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}; write it as 4096, 512KiB or 16MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KiB, MiB, GiB, KB, MB or GB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("10 parsecs")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_size("lots").is_err());
    }
}
