//! `weft bench` on one route, in process: every call into every filter of the chain
//! timed, with what it asked of the host, what the proxy allocated for it, and the
//! whole request against the same route without filters.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::stats::{human, thousands, Nanos, Summary};
use crate::host::probe::{self, Phase, Sample};
use crate::host::LoadedFilter;
use crate::runner::{ChainRunner, RequestSpec};
use crate::upstream::Canned;

/// Requests served in a row before switching between the chain and no filters.
const BATCH: usize = 64;
/// Instances made to time instantiation and `init`.
const STARTS: usize = 10;

/// What to measure.
pub struct MicroOptions {
    pub config: PathBuf,
    /// The route (default: the first).
    pub route: Option<String>,
    /// The request; `None`: one the route takes, with `extra_headers`.
    pub request: Option<RequestSpec>,
    /// `name: value` headers added to the request.
    pub extra_headers: Vec<String>,
    /// A path instead of the route's.
    pub path: Option<String>,
    pub duration: Duration,
    pub upstream: Canned,
    pub client: SocketAddr,
    pub peer_identity: Option<String>,
    /// Print a progress line to stderr while it runs.
    pub progress: bool,
}

/// What one phase of one filter cost.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub phase: &'static str,
    pub calls: u64,
    pub calls_per_request: f64,
    #[serde(flatten)]
    pub time: Summary,
    pub host_calls_per_call: f64,
    pub allocations_per_call: f64,
}

/// What one filter cost.
#[derive(Debug, Clone, Serialize)]
pub struct FilterReport {
    pub name: String,
    pub module: String,
    pub phases: Vec<PhaseReport>,
    /// Its calls' mean time, summed over phases, per request.
    pub ns_per_request: u64,
    /// Largest linear memory of an instance, warm.
    pub memory_bytes: usize,
    /// Median time to instantiate one instance.
    pub instantiate_ns: u64,
    /// Median time of `init` on a fresh instance.
    pub init_ns: u64,
}

/// The whole measurement.
#[derive(Debug, Clone, Serialize)]
pub struct MicroReport {
    pub config: String,
    pub route: String,
    pub request: String,
    /// The first response: status, headers, body size.
    pub response: String,
    pub seconds: f64,
    pub requests: u64,
    /// Responses by status, with the chain.
    pub statuses: BTreeMap<u16, u64>,
    pub filters: Vec<FilterReport>,
    /// One request through the route, with its chain.
    pub with_chain: Summary,
    /// One request through the same route without filters.
    pub without_filters: Summary,
    /// What the chain adds to a request, from the means.
    pub chain_ns: u64,
}

#[derive(Default)]
struct PhaseStats {
    time: Nanos,
    host_calls: u64,
    allocations: u64,
    memory: usize,
}

/// Runs the measurement. Must be called inside a current-thread Tokio runtime (the
/// samples are the calling thread's).
pub async fn run(opts: MicroOptions) -> anyhow::Result<MicroReport> {
    let runner = ChainRunner::load(
        &opts.config,
        opts.route.as_deref(),
        opts.upstream,
        opts.client,
        opts.peer_identity,
    )
    .await?;
    let mut spec = opts
        .request
        .unwrap_or_else(|| RequestSpec::matching(&runner.route.matcher));
    if let Some(path) = opts.path {
        spec.path = path;
    }
    for h in &opts.extra_headers {
        spec.add_header(h)?;
    }
    let described = format!("{} {}{}", spec.method, spec.authority, spec.path);
    if !runner.takes(&spec) {
        anyhow::bail!(
            "route {} does not take {described}: give a request it takes (--path, -H, --request)",
            runner.route.name
        );
    }
    let chain: Vec<Arc<LoadedFilter>> = runner.chain().to_vec();

    // Instantiation and init, before anything else warms the caches for them.
    let mut starts = Vec::with_capacity(chain.len());
    for f in &chain {
        let mut inst = Vec::with_capacity(STARTS);
        let mut init = Vec::with_capacity(STARTS);
        for _ in 0..STARTS {
            let (i, n) = f
                .time_start()
                .await
                .map_err(|e| anyhow::anyhow!("filter {}: {e}", f.name))?;
            inst.push(i);
            init.push(n);
        }
        starts.push((median(&mut inst), median(&mut init)));
    }

    let first = runner.serve(&spec).await?;
    let response = format!(
        "{}, {} headers, {} bytes",
        first.status,
        first.headers.len(),
        first.body.len()
    );

    // Warm up: instances made, caches filled, the allocator settled.
    for _ in 0..200 {
        runner.serve(&spec).await?;
        runner.serve_without_filters(&spec).await?;
    }
    probe::enable();
    probe::take();

    let index: BTreeMap<usize, usize> = chain
        .iter()
        .enumerate()
        .map(|(i, f)| (Arc::as_ptr(f) as usize, i))
        .collect();
    let mut stats: BTreeMap<(usize, Phase), PhaseStats> = BTreeMap::new();
    let mut with_chain = Nanos::default();
    let mut without = Nanos::default();
    let mut statuses = BTreeMap::new();
    let started = Instant::now();
    let mut shown = started;
    let progress = opts.progress && std::io::stderr().is_terminal();
    while started.elapsed() < opts.duration {
        for _ in 0..BATCH {
            let t = Instant::now();
            let answer = runner.serve(&spec).await?;
            with_chain.record(t.elapsed().as_nanos() as u64);
            *statuses.entry(answer.status.as_u16()).or_insert(0u64) += 1;
        }
        for s in probe::take() {
            fold(&mut stats, &index, s);
        }
        for _ in 0..BATCH {
            let t = Instant::now();
            runner.serve_without_filters(&spec).await?;
            without.record(t.elapsed().as_nanos() as u64);
        }
        probe::take();
        if progress && shown.elapsed() >= Duration::from_millis(250) {
            shown = Instant::now();
            let left = opts.duration.saturating_sub(started.elapsed());
            eprint!(
                "\r  {:>4.1} s left · {} requests · with the chain p50 {} · without filters p50 {}   ",
                left.as_secs_f64(),
                thousands(with_chain.count()),
                human(with_chain.summary().p50_ns),
                human(without.summary().p50_ns),
            );
            let _ = std::io::stderr().flush();
        }
    }
    if progress {
        eprint!("\r{:100}\r", "");
    }
    let seconds = started.elapsed().as_secs_f64();
    let requests = with_chain.count();

    let filters = chain
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let phases: Vec<PhaseReport> = Phase::ALL
                .iter()
                .filter_map(|p| stats.get(&(i, *p)).map(|s| (*p, s)))
                .map(|(p, s)| {
                    let calls = s.time.count();
                    PhaseReport {
                        phase: p.as_str(),
                        calls,
                        calls_per_request: calls as f64 / requests.max(1) as f64,
                        time: s.time.summary(),
                        host_calls_per_call: s.host_calls as f64 / calls.max(1) as f64,
                        allocations_per_call: s.allocations as f64 / calls.max(1) as f64,
                    }
                })
                .collect();
            let ns_per_request = phases
                .iter()
                .map(|p| p.time.mean_ns as f64 * p.calls_per_request)
                .sum::<f64>()
                .round() as u64;
            let memory = Phase::ALL
                .iter()
                .filter_map(|p| stats.get(&(i, *p)).map(|s| s.memory))
                .max();
            FilterReport {
                name: f.name.clone(),
                module: f.module.path.display().to_string(),
                ns_per_request,
                phases,
                memory_bytes: memory.unwrap_or(0).max(f.instance_memory()),
                instantiate_ns: starts[i].0,
                init_ns: starts[i].1,
            }
        })
        .collect();
    let with_chain = with_chain.summary();
    let without_filters = without.summary();
    Ok(MicroReport {
        config: opts.config.display().to_string(),
        route: runner.route.name.to_string(),
        request: described,
        response,
        seconds,
        requests,
        statuses,
        filters,
        chain_ns: with_chain.mean_ns.saturating_sub(without_filters.mean_ns),
        with_chain,
        without_filters,
    })
}

fn fold(
    stats: &mut BTreeMap<(usize, Phase), PhaseStats>,
    index: &BTreeMap<usize, usize>,
    s: Sample,
) {
    let Some(&i) = index.get(&s.filter) else {
        return;
    };
    let entry = stats.entry((i, s.phase)).or_default();
    entry.time.record(s.nanos);
    entry.host_calls += u64::from(s.host_calls);
    entry.allocations += u64::from(s.allocations);
    entry.memory = entry.memory.max(s.memory);
}

fn median(v: &mut [Duration]) -> u64 {
    v.sort();
    v.get(v.len() / 2).map_or(0, |d| d.as_nanos() as u64)
}
