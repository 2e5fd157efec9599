//! The reports as tables for a terminal.

use std::fmt::Write as _;

use super::load::{LoadReport, LoadRow};
use super::micro::MicroReport;
use super::stats::{human, thousands};

fn bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{} KiB", n / 1024)
    }
}

/// The per-filter table, the request totals and the instance costs.
pub fn micro(r: &MicroReport) -> String {
    let mut out = String::new();
    let statuses: Vec<String> = r
        .statuses
        .iter()
        .map(|(s, n)| format!("{s} ×{}", thousands(*n)))
        .collect();
    let _ = writeln!(
        out,
        "route {} of {}: {} requests in {:.1} s ({})\nrequest {} → {}",
        r.route,
        r.config,
        thousands(r.requests),
        r.seconds,
        statuses.join(", "),
        r.request,
        r.response
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<16} {:<17} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "filter", "phase", "calls/req", "p50", "p99", "mean", "host calls", "allocs"
    );
    for f in &r.filters {
        if f.phases.is_empty() {
            let _ = writeln!(out, "{:<16} (not called)", f.name);
        }
        for (i, p) in f.phases.iter().enumerate() {
            let name = if i == 0 { f.name.as_str() } else { "" };
            let _ = writeln!(
                out,
                "{:<16} {:<17} {:>9.2} {:>9} {:>9} {:>9} {:>10.2} {:>7.2}",
                name,
                p.phase,
                p.calls_per_request,
                human(p.time.p50_ns),
                human(p.time.p99_ns),
                human(p.time.mean_ns),
                p.host_calls_per_call,
                p.allocations_per_call
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<28} {:>9} {:>9} {:>9}",
        "one request", "p50", "p99", "mean"
    );
    for (label, s) in [
        ("with the chain", &r.with_chain),
        ("without filters", &r.without_filters),
    ] {
        let _ = writeln!(
            out,
            "{:<28} {:>9} {:>9} {:>9}",
            label,
            human(s.p50_ns),
            human(s.p99_ns),
            human(s.mean_ns)
        );
    }
    let _ = writeln!(
        out,
        "{:<28} {:>9} {:>9} {:>9}",
        "the chain adds",
        "",
        "",
        human(r.chain_ns)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<16} {:>12} {:>12} {:>12} {:>14}",
        "instance", "memory", "instantiate", "init", "per request"
    );
    for f in &r.filters {
        let _ = writeln!(
            out,
            "{:<16} {:>12} {:>12} {:>12} {:>14}",
            f.name,
            bytes(f.memory_bytes),
            human(f.instantiate_ns),
            human(f.init_ns),
            human(f.ns_per_request)
        );
    }
    out
}

fn row(out: &mut String, label: &str, r: &LoadRow, base: Option<&LoadRow>) {
    let relative = match base {
        Some(b) if b.requests_per_second > 0.0 => {
            format!("{:.2}x", r.requests_per_second / b.requests_per_second)
        }
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "{:<30} {:<7} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7}",
        label,
        r.protocol,
        thousands(r.requests_per_second.round() as u64),
        relative,
        human(r.latency.p50_ns),
        human(r.latency.p99_ns),
        human(r.latency.p999_ns),
        format!("{:.1} µs", r.cpu_us_per_request),
        if r.errors > 0 {
            thousands(r.errors)
        } else {
            "0".to_owned()
        },
    );
}

/// Requests/s, latency and proxy CPU per request, for each route and the route
/// without filters.
pub fn load(reports: &[LoadReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} {:<7} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "route", "proto", "req/s", "vs none", "p50", "p99", "p99.9", "cpu/req", "errors"
    );
    for report in reports {
        if reports.len() > 1 {
            let _ = writeln!(out, "{}:", report.config);
        }
        for p in &report.rows {
            row(&mut out, "(no filters)", &p.without_filters, None);
            for r in &p.routes {
                row(&mut out, &r.route, &r.row, Some(&p.without_filters));
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{} connections, {:.0} s per row; proxy on CPU {}, load and upstream on CPU {}",
        reports.first().map_or(0, |r| r.connections),
        reports.first().map_or(0.0, |r| r.seconds_per_row),
        reports.first().map_or("-", |r| r.proxy_cpus.as_str()),
        reports.first().map_or("-", |r| r.load_cpus.as_str()),
    );
    out
}
