//! `weft bench --load`: the proxy as a separate process pinned to its cores, a built-in
//! upstream and a built-in load generator on the others, and each route measured in
//! turn (requests/s, latency percentiles, proxy CPU per request) next to the same proxy
//! on a listener without filters, in one run.

mod client;
pub mod cpus;
mod proxy;
mod upstream;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use self::client::{Tally, Window};
use self::cpus::CpuSet;
use self::proxy::{Proxy, BASELINE};
use super::stats::Summary;
use crate::config::{check, LoadedConfig};
use crate::runner::RequestSpec;

/// How the load generator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// HTTP/1.1, one request in flight per connection (as wrk).
    Http1,
    /// HTTP/2 with prior knowledge, `--streams` requests in flight per connection (as
    /// h2load).
    Http2,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
        }
    }
}

/// What to measure, and where.
#[derive(Clone)]
pub struct LoadOptions {
    /// The configurations: the first, and others to compare with it.
    pub configs: Vec<PathBuf>,
    /// Routes to measure (all when empty).
    pub routes: Vec<String>,
    /// Requests in flight: connections for HTTP/1.1, streams in all for HTTP/2.
    pub connections: usize,
    /// HTTP/2 streams per connection.
    pub streams: usize,
    pub protocols: Vec<Protocol>,
    /// Measured time per row.
    pub duration: Duration,
    /// Load before each row's measurement starts.
    pub warmup: Duration,
    /// `name: value` headers every request carries (a token, say).
    pub extra_headers: Vec<String>,
    pub proxy_cpus: CpuSet,
    pub load_cpus: CpuSet,
    pub workers: usize,
    pub progress: bool,
}

/// One row: one route, one protocol.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRow {
    pub protocol: &'static str,
    pub requests: u64,
    pub requests_per_second: f64,
    pub latency: Summary,
    /// The proxy's CPU time (user and system) per request, in microseconds.
    pub cpu_us_per_request: f64,
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
}

/// A route's row.
#[derive(Debug, Clone, Serialize)]
pub struct RouteRow {
    pub route: String,
    #[serde(flatten)]
    pub row: LoadRow,
}

/// The rows of one protocol: the baseline and every route.
#[derive(Debug, Clone, Serialize)]
pub struct ProtocolRows {
    pub protocol: &'static str,
    /// The same proxy on a listener without filters.
    pub without_filters: LoadRow,
    pub routes: Vec<RouteRow>,
}

/// One configuration's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub config: String,
    pub connections: usize,
    pub seconds_per_row: f64,
    pub proxy_cpus: String,
    pub load_cpus: String,
    pub workers: usize,
    pub rows: Vec<ProtocolRows>,
}

/// Measures every configuration in turn.
pub fn run(opts: &LoadOptions) -> anyhow::Result<Vec<LoadReport>> {
    let load_cpus = opts.load_cpus.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.load_cpus.0.len())
        .on_thread_start(move || load_cpus.pin_current_thread())
        .enable_all()
        .build()?;
    let upstream = rt
        .block_on(upstream::start())
        .context("starting the built-in upstream")?;
    opts.configs
        .iter()
        .map(|c| run_one(opts, &rt, c, upstream))
        .collect()
}

fn run_one(
    opts: &LoadOptions,
    rt: &tokio::runtime::Runtime,
    config: &Path,
    upstream: std::net::SocketAddr,
) -> anyhow::Result<LoadReport> {
    let loaded = LoadedConfig::read(config)?;
    let checked = check(&loaded)?;
    let mut targets = Vec::new();
    for l in &checked.listeners {
        for r in &l.routes {
            if opts.routes.is_empty() || opts.routes.contains(&r.name) {
                let mut spec = RequestSpec::matching(&r.matcher);
                for h in &opts.extra_headers {
                    spec.add_header(h)?;
                }
                targets.push((l.name.clone(), r.name.clone(), r.cluster.clone(), spec));
            }
        }
    }
    let Some((_, _, cluster, _)) = targets.first() else {
        anyhow::bail!("{}: no route to measure", config.display());
    };
    let proxy = Proxy::start(config, upstream, cluster, opts.workers, &opts.proxy_cpus)?;
    let mut baseline = RequestSpec::matching(&crate::config::route::RouteMatch::any());
    for h in &opts.extra_headers {
        baseline.add_header(h)?;
    }
    // The first row would otherwise also warm the proxy up (its pools, the upstream's
    // connections, the CPU's caches and clock).
    if let Some(&protocol) = opts.protocols.first() {
        let quiet = LoadOptions {
            progress: false,
            duration: opts.warmup,
            ..opts.clone()
        };
        let base_addr = proxy.address(BASELINE).context("the baseline listener")?;
        measure(
            &quiet, rt, &proxy, protocol, base_addr, &baseline, "warm-up",
        )?;
    }
    let mut rows = Vec::new();
    for &protocol in &opts.protocols {
        let base_addr = proxy.address(BASELINE).context("the baseline listener")?;
        let without_filters = measure(
            opts,
            rt,
            &proxy,
            protocol,
            base_addr,
            &baseline,
            "(no filters)",
        )?;
        let mut routes = Vec::new();
        for (listener, route, _, spec) in &targets {
            let addr = proxy.address(listener).context("a listener")?;
            let row = measure(opts, rt, &proxy, protocol, addr, spec, route)?;
            routes.push(RouteRow {
                route: route.clone(),
                row,
            });
        }
        rows.push(ProtocolRows {
            protocol: protocol.as_str(),
            without_filters,
            routes,
        });
    }
    Ok(LoadReport {
        config: config.display().to_string(),
        connections: opts.connections,
        seconds_per_row: opts.duration.as_secs_f64(),
        proxy_cpus: opts.proxy_cpus.to_string(),
        load_cpus: opts.load_cpus.to_string(),
        workers: opts.workers,
        rows,
    })
}

fn measure(
    opts: &LoadOptions,
    rt: &tokio::runtime::Runtime,
    proxy: &Proxy,
    protocol: Protocol,
    addr: std::net::SocketAddr,
    spec: &RequestSpec,
    label: &str,
) -> anyhow::Result<LoadRow> {
    if opts.progress {
        eprint!(
            "\r\x1b[2K  {label} over {} for {:.0} s ...",
            protocol.as_str(),
            (opts.warmup + opts.duration).as_secs_f64(),
        );
        let _ = std::io::stderr().flush();
    }
    let from = Instant::now() + opts.warmup;
    let window = Window {
        from,
        until: from + opts.duration,
    };
    let load = match protocol {
        Protocol::Http1 => {
            let request: Arc<[u8]> = client::encode_http1(spec).into();
            rt.spawn(client::http1(addr, request, opts.connections, window))
        }
        Protocol::Http2 => {
            let streams = opts.streams.max(1);
            let connections = opts.connections.div_ceil(streams).max(1);
            rt.spawn(client::http2(
                addr,
                Arc::new(spec.clone()),
                connections,
                streams,
                window,
            ))
        }
    };
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let cpu0 = proxy.cpu_time()?;
    std::thread::sleep(window.until.saturating_duration_since(Instant::now()));
    let cpu1 = proxy.cpu_time()?;
    let tally: Tally = rt.block_on(load).context("the load generator")?;
    if opts.progress {
        eprint!("\r\x1b[2K");
    }
    let requests = tally.responses();
    let seconds = opts.duration.as_secs_f64();
    Ok(LoadRow {
        protocol: protocol.as_str(),
        requests,
        requests_per_second: requests as f64 / seconds,
        latency: tally.latency.summary(),
        cpu_us_per_request: if requests == 0 {
            0.0
        } else {
            (cpu1 - cpu0).as_secs_f64() * 1e6 / requests as f64
        },
        errors: tally.errors,
        statuses: tally.statuses,
    })
}
