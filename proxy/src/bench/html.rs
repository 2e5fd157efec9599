//! The micro report as one self-contained HTML page: a bar per filter (its time per
//! request, split by phase), the request with and without the chain, and the table.

use std::fmt::Write as _;

use super::micro::MicroReport;
use super::stats::{human, thousands};

const COLORS: [(&str, &str); 5] = [
    ("request-headers", "#4e79a7"),
    ("request-body", "#f28e2b"),
    ("response-headers", "#59a14f"),
    ("response-body", "#e15759"),
    ("log", "#b07aa1"),
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(phase: &str) -> &'static str {
    COLORS
        .iter()
        .find(|(p, _)| *p == phase)
        .map_or("#999", |(_, c)| c)
}

/// The page.
pub fn micro(r: &MicroReport) -> String {
    const LABEL: f64 = 170.0;
    const WIDTH: f64 = 560.0;
    const BAR: f64 = 22.0;
    const GAP: f64 = 10.0;
    let widest = r
        .filters
        .iter()
        .map(|f| f.ns_per_request)
        .chain([r.with_chain.mean_ns, r.without_filters.mean_ns])
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let scale = |ns: f64| ns / widest * WIDTH;
    let rows = r.filters.len() + 2;
    let height = rows as f64 * (BAR + GAP) + 40.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" role="img" aria-label="time per request by filter and phase">"#,
        w = LABEL + WIDTH + 120.0
    );
    let mut y = 10.0;
    let mut bar = |svg: &mut String, label: &str, parts: &[(String, &str, f64)], total: u64| {
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{ty}" text-anchor="end" font-size="13">{label}</text>"#,
            x = LABEL - 8.0,
            ty = y + BAR * 0.7,
            label = escape(label)
        );
        let mut x = LABEL;
        for (title, fill, ns) in parts {
            let w = scale(*ns).max(0.5);
            let _ = write!(
                svg,
                r#"<rect class="bar" x="{x:.1}" y="{y}" width="{w:.1}" height="{BAR}" fill="{fill}"><title>{title}</title></rect>"#,
                title = escape(title)
            );
            x += w;
        }
        let _ = write!(
            svg,
            r#"<text x="{tx:.1}" y="{ty}" font-size="12">{t}</text>"#,
            tx = x + 6.0,
            ty = y + BAR * 0.7,
            t = human(total)
        );
        y += BAR + GAP;
    };
    for f in &r.filters {
        let parts: Vec<(String, &str, f64)> = f
            .phases
            .iter()
            .map(|p| {
                let ns = p.time.mean_ns as f64 * p.calls_per_request;
                (
                    format!("{} {}: {} per request", f.name, p.phase, human(ns as u64)),
                    color(p.phase),
                    ns,
                )
            })
            .collect();
        bar(&mut svg, &f.name, &parts, f.ns_per_request);
    }
    bar(
        &mut svg,
        "request, no filters",
        &[(
            "the route without filters".to_owned(),
            "#bab0ac",
            r.without_filters.mean_ns as f64,
        )],
        r.without_filters.mean_ns,
    );
    bar(
        &mut svg,
        "request, with chain",
        &[
            (
                "the route without filters".to_owned(),
                "#bab0ac",
                r.without_filters.mean_ns as f64,
            ),
            (
                "what the chain adds".to_owned(),
                "#76b7b2",
                r.chain_ns as f64,
            ),
        ],
        r.with_chain.mean_ns,
    );
    svg.push_str("</svg>");

    let legend: String = COLORS
        .iter()
        .map(|(p, c)| {
            format!(
                r#"<span class="key"><span class="swatch" style="background:{c}"></span>{p}</span>"#
            )
        })
        .collect();
    let mut table = String::from(
        "<table><tr><th>filter</th><th>phase</th><th>calls/req</th><th>p50</th><th>p99</th>\
         <th>mean</th><th>host calls/call</th><th>allocs/call</th></tr>",
    );
    for f in &r.filters {
        for p in &f.phases {
            let _ = write!(
                table,
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                escape(&f.name),
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
    table.push_str("</table>");
    let mut instances = String::from(
        "<table><tr><th>filter</th><th>memory</th><th>instantiate</th><th>init</th></tr>",
    );
    for f in &r.filters {
        let _ = write!(
            instances,
            "<tr><td>{}</td><td>{} KiB</td><td>{}</td><td>{}</td></tr>",
            escape(&f.name),
            f.memory_bytes / 1024,
            human(f.instantiate_ns),
            human(f.init_ns)
        );
    }
    instances.push_str("</table>");
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>weft bench: {route}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ padding: 0.2em 0.8em; text-align: right; border-bottom: 1px solid #ddd; }}
td:first-child, th:first-child, td:nth-child(2), th:nth-child(2) {{ text-align: left; }}
.key {{ margin-right: 1.2em; font-size: 0.9em; }}
.swatch {{ display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em; vertical-align: middle; }}
</style></head>
<body>
<h1>weft bench: route {route}</h1>
<p>{config} · {request} · {requests} requests in {seconds:.1} s · mean time per request, by filter and phase</p>
<div>{legend}</div>
{svg}
<h2>Per call</h2>
{table}
<h2>Instances</h2>
{instances}
</body></html>
"#,
        route = escape(&r.route),
        config = escape(&r.config),
        request = escape(&r.request),
        requests = thousands(r.requests),
        seconds = r.seconds,
    )
}
