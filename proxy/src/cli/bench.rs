//! `weft bench`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::bench::load::cpus::CpuSet;
use crate::bench::load::{self, LoadOptions, Protocol};
use crate::bench::{html, micro, table};
use crate::runner::RequestSpec;
use crate::upstream::Canned;

/// `weft bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The configuration (filters are loaded and started as `weft run` does).
    #[arg(long, short)]
    pub config: PathBuf,
    /// The route to measure (default: the first; with `--load`, every route; repeat
    /// to name several).
    #[arg(long)]
    pub route: Vec<String>,
    /// The request, as an HTTP/1.1 request file (request line, headers, empty line,
    /// body). Default: one the route takes.
    #[arg(long, value_name = "FILE")]
    pub request: Option<PathBuf>,
    /// A request header `name: value` (repeatable), added to the request.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The request's path and query instead of one the route takes.
    #[arg(long)]
    pub path: Option<String>,
    /// How long to measure (per row, with `--load`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The canned upstream response's status (in-process mode).
    #[arg(long, default_value_t = 200)]
    pub status: u16,
    /// The canned upstream response's body size in bytes (in-process mode).
    #[arg(long, default_value_t = 24)]
    pub body_size: usize,
    /// The client address filters see (in-process mode).
    #[arg(long, default_value = "127.0.0.1:40000")]
    pub client: SocketAddr,
    /// The client's verified identity (a SPIFFE ID) filters see (in-process mode).
    #[arg(long)]
    pub peer_identity: Option<String>,
    /// Write the results as JSON to this file (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the per-filter breakdown as an HTML page with a bar chart (in-process mode).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Measure under load instead: the proxy as its own process, a built-in upstream
    /// and load generator, every route next to the same proxy without filters.
    #[arg(long)]
    pub load: bool,
    /// With `--load`: requests in flight (HTTP/1.1 connections; HTTP/2 streams in all).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// With `--load`: HTTP/2 streams per connection.
    #[arg(long, default_value_t = 16)]
    pub streams: usize,
    /// With `--load`: protocols to load with (repeatable).
    #[arg(long = "protocol", value_enum, default_values_t = [Protocol::Http1])]
    pub protocols: Vec<Protocol>,
    /// With `--load`: load before each row's measured time.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// With `--load`: the proxy's cores (`0`, `0-1`).
    #[arg(long, default_value = "0")]
    pub proxy_cpus: String,
    /// With `--load`: the load generator's and upstream's cores (default: the rest).
    #[arg(long)]
    pub load_cpus: Option<String>,
    /// With `--load`: proxy workers (default: one per proxy core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// With `--load`: a second configuration measured in the same run, side by side.
    #[arg(long, value_name = "CONFIG")]
    pub compare: Option<PathBuf>,
}

fn write_out(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        println!("{text}");
        Ok(())
    } else {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

impl BenchArgs {
    /// Runs the measurement and prints the table.
    pub fn run(self) -> anyhow::Result<()> {
        if self.load {
            self.run_load()
        } else {
            self.run_micro()
        }
    }

    fn run_micro(self) -> anyhow::Result<()> {
        if self.route.len() > 1 {
            anyhow::bail!("--route: name one route (several only with --load)");
        }
        let status = http::StatusCode::from_u16(self.status)
            .with_context(|| format!("--status {}: not a status code", self.status))?;
        let request = match &self.request {
            Some(p) => Some(RequestSpec::from_file(p)?),
            None => None,
        };
        let opts = micro::MicroOptions {
            config: self.config.clone(),
            route: self.route.first().cloned(),
            request,
            extra_headers: self.headers.clone(),
            path: self.path.clone(),
            duration: self.duration,
            upstream: Canned::new(
                status,
                http::HeaderMap::new(),
                bytes::Bytes::from(vec![b'x'; self.body_size]),
            ),
            client: self.client,
            peer_identity: self.peer_identity.clone(),
            progress: true,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let report = rt.block_on(micro::run(opts))?;
        let to_stdout = self.json.as_deref() == Some(std::path::Path::new("-"));
        if !to_stdout {
            print!("{}", table::micro(&report));
        }
        if let Some(path) = &self.json {
            write_out(path, &serde_json::to_string_pretty(&report)?)?;
        }
        if let Some(path) = &self.html {
            write_out(path, &html::micro(&report))?;
            if !to_stdout {
                println!("\nwrote {}", path.display());
            }
        }
        Ok(())
    }

    fn run_load(self) -> anyhow::Result<()> {
        if self.html.is_some() {
            anyhow::bail!("--html draws the in-process breakdown; leave out --load");
        }
        let proxy_cpus = CpuSet::parse(&self.proxy_cpus)?;
        let load_cpus = match &self.load_cpus {
            Some(l) => CpuSet::parse(l)?,
            None => proxy_cpus.rest(),
        };
        let mut configs = vec![self.config.clone()];
        configs.extend(self.compare.clone());
        let opts = LoadOptions {
            configs,
            routes: self.route.clone(),
            connections: self.connections.max(1),
            streams: self.streams,
            protocols: self.protocols.clone(),
            duration: self.duration,
            warmup: self.warmup,
            extra_headers: self.headers.clone(),
            workers: self.workers.unwrap_or(proxy_cpus.0.len()),
            proxy_cpus,
            load_cpus,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        };
        let reports = load::run(&opts)?;
        let to_stdout = self.json.as_deref() == Some(std::path::Path::new("-"));
        if !to_stdout {
            print!("{}", table::load(&reports));
        }
        if let Some(path) = &self.json {
            write_out(path, &serde_json::to_string_pretty(&reports)?)?;
        }
        Ok(())
    }
}
