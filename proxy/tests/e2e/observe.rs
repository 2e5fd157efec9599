//! Observability through real peers: Prometheus scrapes `/metrics` and answers rates
//! and quantiles from it (and `promtool check metrics` accepts the exposition); an
//! OTLP/HTTP receiver decoding with `opentelemetry-proto` gets one trace across two weft
//! hops; the admin page, opened in headless Chromium, shows the running routes and
//! filters with their counts.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::client;
use crate::support::filters::{component, repo};
use crate::support::proxy::{TempDir, Weft};
use crate::support::upstream::Upstream;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (by its pid) when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A proxy with an admin endpoint, routes `api` (the stamp filter), `plain` (none) and
/// `slow` (none; the upstream waits 30 ms).
fn observed_proxy(up: SocketAddr) -> Weft {
    Weft::start(&format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - {{ name: api, match: {{ prefix: /api }}, cluster: backend, filters: [stamp] }}
      - {{ name: slow, match: {{ prefix: /slow }}, cluster: backend }}
      - {{ name: plain, cluster: backend }}
clusters:
  backend: {{ endpoints: ["{up}"] }}
filters:
  stamp:
    module: {}
    config: {{ stamp: observed }}
"#,
        component("stamp").display()
    ))
}

async fn prometheus_query(addr: SocketAddr, query: &str) -> Vec<Value> {
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let text = client::get_text(&format!("http://{addr}/api/v1/query?query={q}")).await;
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["status"], "success", "{query}: {text}");
    v["data"]["result"].as_array().unwrap().clone()
}

/// The value of each series of a result, by the value of `label`.
fn by_label(result: &[Value], label: &str) -> Vec<(String, f64)> {
    result
        .iter()
        .map(|s| {
            let name = s["metric"][label].as_str().unwrap_or_default().to_owned();
            let v: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
            (name, v)
        })
        .collect()
}

fn value_of(series: &[(String, f64)], name: &str) -> f64 {
    series
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no series for {name}: {series:?}"))
        .1
}

#[tokio::test]
async fn prometheus_scrapes_weft_and_answers_rates_and_quantiles() {
    let up = Upstream::start("backend");
    let weft = observed_proxy(up.addr);
    let admin = weft.admin.unwrap();
    let edge = weft.addr("edge");

    // Traffic before the first check, so every family has series.
    for path in ["/api/x", "/plain", "/slow/30"] {
        assert_eq!(client::get(edge, path, &[]).await.status, 200);
    }
    // promtool accepts the exposition (format and naming conventions).
    let metrics = client::get_text(&format!("http://{admin}/metrics")).await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (scripts/install-test-peers.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        metrics.contains("weft_downstream_connections_total{listener=\"edge\"} 3"),
        "{metrics}"
    );

    // A real Prometheus scraping every second.
    let dir = TempDir::new("prometheus");
    let port = free_port();
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             scrape_configs:\n  - job_name: weft\n    static_configs: [{{ targets: ['{admin}'] }}]\n"
        ),
    )
    .unwrap();
    let _prometheus = Peer(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run prometheus (scripts/install-test-peers.sh installs it)"),
    );
    let prom: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut up_seen = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(prom).await.is_ok()
            && !prometheus_query(prom, "up{job=\"weft\"} == 1")
                .await
                .is_empty()
        {
            up_seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(up_seen, "Prometheus never scraped weft successfully");

    // Twice as many requests to `api` as to `plain`, a few slow ones, over 4 s.
    for _ in 0..20 {
        for _ in 0..10 {
            client::get(edge, "/api/x", &[]).await;
            client::get(edge, "/api/y", &[]).await;
            client::get(edge, "/plain", &[]).await;
        }
        client::get(edge, "/slow/30", &[]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Two more scrapes after the traffic.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let rates = by_label(
        &prometheus_query(
            prom,
            "sum by (route) (rate(weft_requests_total{class=\"2xx\"}[1m]))",
        )
        .await,
        "route",
    );
    let (api, plain) = (value_of(&rates, "api"), value_of(&rates, "plain"));
    assert!(api > 0.0 && plain > 0.0, "{rates:?}");
    let ratio = api / plain;
    assert!(
        (1.6..2.4).contains(&ratio),
        "api/plain rate {ratio}: {rates:?}"
    );

    let increase = by_label(
        &prometheus_query(
            prom,
            "sum by (route) (increase(weft_requests_total{cluster=\"backend\"}[1m]))",
        )
        .await,
        "route",
    );
    let api_requests = value_of(&increase, "api");
    assert!(
        (300.0..500.0).contains(&api_requests),
        "about 400 api requests counted: {increase:?}"
    );

    // Per-filter call time: a wasm call of the stamp filter takes microseconds.
    let p99 = by_label(
        &prometheus_query(
            prom,
            "histogram_quantile(0.99, sum by (le, filter, phase) \
             (rate(weft_filter_call_duration_seconds_bucket[1m])))",
        )
        .await,
        "phase",
    );
    let request_p99 = value_of(&p99, "request_headers");
    assert!(
        request_p99 > 0.0 && request_p99 < 0.05,
        "stamp's request_headers p99 {request_p99} s: {p99:?}"
    );
    assert!(value_of(&p99, "response_headers") > 0.0, "{p99:?}");

    // The slow route's p99 shows the upstream's 30 ms, the plain route's does not.
    let route_p99 = by_label(
        &prometheus_query(
            prom,
            "histogram_quantile(0.99, sum by (le, route) \
             (rate(weft_request_duration_seconds_bucket[1m])))",
        )
        .await,
        "route",
    );
    let slow = value_of(&route_p99, "slow");
    assert!(
        (0.025..0.1).contains(&slow),
        "slow p99 {slow}: {route_p99:?}"
    );
    assert!(value_of(&route_p99, "plain") < 0.025, "{route_p99:?}");

    let attempts = by_label(
        &prometheus_query(
            prom,
            "histogram_quantile(0.5, sum by (le, cluster) \
             (rate(weft_upstream_attempt_duration_seconds_bucket[1m])))",
        )
        .await,
        "cluster",
    );
    assert!(value_of(&attempts, "backend") > 0.0, "{attempts:?}");
}

/// Starts the OTLP receiver; spans arrive as JSON lines in `out`.
fn otlp_receiver(out: &Path) -> (Peer, u16) {
    let python = repo().join("target/test-tools/py/bin/python");
    let mut child = Command::new(&python)
        .arg(repo().join("proxy/tests/peers/otlp_receiver.py"))
        .arg(out)
        .arg("120")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "run {} (scripts/install-test-peers.sh makes it): {e}",
                python.display()
            )
        });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the receiver's port");
    (Peer(child), port)
}

/// The spans received so far with trace id `trace`, once there are at least `n`.
async fn spans_of(out: &Path, trace: &str, n: usize) -> Vec<Value> {
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|s| s["trace_id"] == trace)
            .collect();
        if spans.len() >= n {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} spans of trace {trace}: {spans:#?}");
}

fn find<'a>(spans: &'a [Value], service: &str, kind: i64, name_part: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| {
            s["service"] == service
                && s["kind"] == kind
                && s["name"].as_str().unwrap().contains(name_part)
        })
        .unwrap_or_else(|| {
            panic!("no {service} span of kind {kind} named *{name_part}*: {spans:#?}")
        })
}

const SERVER: i64 = 2;
const CLIENT: i64 = 3;
const INTERNAL: i64 = 1;

#[tokio::test]
async fn one_trace_across_two_weft_hops_reaches_an_otlp_receiver() {
    let up = Upstream::start("app");
    let dir = TempDir::new("otlp");
    let out = dir.0.join("spans.jsonl");
    let (_receiver, port) = otlp_receiver(&out);
    let tracing = |service: &str| {
        format!(
            "tracing: {{ sampling: 1.0, service_name: {service}, otlp: {{ endpoint: \"http://127.0.0.1:{port}\" }} }}"
        )
    };
    let back = Weft::start(&format!(
        r#"
{}
listeners:
  - name: in
    address: 127.0.0.1:0
    routes: [{{ name: app, cluster: app }}]
clusters:
  app: {{ endpoints: ["{}"] }}
"#,
        tracing("back"),
        up.addr
    ));
    let front = Weft::start(&format!(
        r#"
{}
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ name: api, cluster: back, filters: [stamp] }}]
clusters:
  back: {{ endpoints: ["{}"] }}
filters:
  stamp:
    module: {}
    config: {{ stamp: traced }}
"#,
        tracing("front"),
        back.addr("in"),
        component("stamp").display()
    ));
    let edge = front.addr("edge");

    // An incoming trace is continued.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let reply = client::get(
        edge,
        "/orders/7",
        &[
            ("traceparent", &format!("00-{trace}-{caller}-01")),
            ("tracestate", "vendor=opaque"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    let seen = reply
        .upstream_saw("traceparent")
        .expect("traceparent upstream");
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], trace, "the trace continues to the application");
    assert_ne!(parts[2], caller, "each hop sends a span id of its own");
    assert_eq!(parts[3], "01", "sampled flag kept");
    assert_eq!(
        reply.upstream_saw("tracestate").as_deref(),
        Some("vendor=opaque")
    );

    // front: request, filter request + response phases, attempt; back: request, attempt.
    let spans = spans_of(&out, trace, 6).await;
    let front_server = find(&spans, "front", SERVER, "GET api");
    let front_filter = find(&spans, "front", INTERNAL, "filter stamp request-headers");
    find(&spans, "front", INTERNAL, "filter stamp response-headers");
    let front_client = find(&spans, "front", CLIENT, "upstream back");
    let back_server = find(&spans, "back", SERVER, "GET app");
    let back_client = find(&spans, "back", CLIENT, "upstream app");

    assert_eq!(front_server["parent_span_id"], caller, "{front_server}");
    assert_eq!(front_filter["parent_span_id"], front_server["span_id"]);
    assert_eq!(front_client["parent_span_id"], front_server["span_id"]);
    assert_eq!(
        back_server["parent_span_id"], front_client["span_id"],
        "hop link"
    );
    assert_eq!(back_client["parent_span_id"], back_server["span_id"]);
    assert_eq!(
        back_client["span_id"], parts[2],
        "the app's parent is back's attempt"
    );
    assert_eq!(front_filter["attributes"]["weft.filter.name"], "stamp");
    assert_eq!(front_filter["attributes"]["weft.filter.outcome"], "ok");
    // The filter's own attribute, through the contract, on the request's span.
    assert_eq!(
        front_server["attributes"]["stamp"], "traced",
        "{front_server}"
    );
    assert_eq!(front_server["attributes"]["http.response.status_code"], 200);
    assert_eq!(front_server["attributes"]["url.path"], "/orders/7");
    assert_eq!(front_client["attributes"]["http.response.status_code"], 200);
    assert!(
        front_server["start"].as_u64() <= front_client["start"].as_u64()
            && front_client["end"].as_u64() <= front_server["end"].as_u64(),
        "the attempt lies within the request: {front_server} {front_client}"
    );

    // No traceparent: a new trace, started by the first hop, sampled (ratio 1.0).
    let reply = client::get(edge, "/fresh", &[]).await;
    let seen = reply
        .upstream_saw("traceparent")
        .expect("traceparent upstream");
    let new_trace = seen.split('-').nth(1).unwrap().to_owned();
    assert_ne!(new_trace, trace);
    let spans = spans_of(&out, &new_trace, 6).await;
    let root = find(&spans, "front", SERVER, "GET api");
    assert_eq!(
        root["parent_span_id"], "",
        "a new trace has no parent: {root}"
    );

    // Not sampled by the caller: propagated as such, and no spans made.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let reply = client::get(
        edge,
        "/quiet",
        &[(
            "traceparent",
            &format!("00-{unsampled}-b7ad6b7169203331-00"),
        )],
    )
    .await;
    let seen = reply.upstream_saw("traceparent").unwrap();
    assert!(
        seen.starts_with(&format!("00-{unsampled}-")) && seen.ends_with("-00"),
        "{seen}"
    );
    // A sampled request after it is exported; the unsampled one never is.
    let marker = "11111111111111111111111111111111";
    client::get(
        edge,
        "/m",
        &[("traceparent", &format!("00-{marker}-1111111111111111-01"))],
    )
    .await;
    spans_of(&out, marker, 6).await;
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        !text.contains(unsampled),
        "an unsampled request was exported"
    );
    assert_eq!(front.metric("weft_trace_spans_dropped_total").await, 0.0);
}

#[tokio::test]
async fn a_dead_collector_never_slows_or_fails_requests() {
    let up = Upstream::start("app");
    let closed = free_port();
    let weft = Weft::start(&format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
tracing: {{ sampling: 1.0, otlp: {{ endpoint: "http://127.0.0.1:{closed}", timeout: 200ms }} }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ name: app, cluster: app }}]
clusters:
  app: {{ endpoints: ["{}"] }}
"#,
        up.addr
    ));
    let edge = weft.addr("edge");
    let started = std::time::Instant::now();
    for _ in 0..200 {
        let reply = client::get(edge, "/", &[]).await;
        assert_eq!(reply.status, 200);
        assert!(reply.upstream_saw("traceparent").is_some());
    }
    // 200 requests on loopback take well under a second when nothing waits on export.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The failed exports are counted.
    let mut failed = 0.0;
    for _ in 0..50 {
        failed = weft.metric("weft_trace_spans_failed_total").await;
        if failed > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed > 0.0, "export failures not counted");
}

#[tokio::test]
async fn tracing_config_errors_name_the_field() {
    for (yaml, field) in [
        ("tracing: { sampling: 1.5 }", "tracing.sampling"),
        (
            "tracing: { otlp: { endpoint: \"grpc://collector:4317\" } }",
            "tracing.otlp.endpoint",
        ),
    ] {
        let dir = TempDir::new("tracing-config");
        let path = dir.0.join("weft.yaml");
        std::fs::write(
            &path,
            format!(
                "{yaml}\nlisteners:\n  - name: a\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  c: {{ endpoints: [\"127.0.0.1:1\"] }}\n"
            ),
        )
        .unwrap();
        let (ok, _, err) =
            crate::support::proxy::weft_cli(&["validate", "--config", &path.display().to_string()]);
        assert!(!ok, "{yaml} accepted");
        assert!(
            err.contains(field) && err.contains("weft.yaml:1:"),
            "{yaml}: {err}"
        );
    }
}

#[tokio::test]
async fn the_admin_page_shows_routes_and_filters_in_headless_chromium() {
    let up = Upstream::start("backend");
    let weft = observed_proxy(up.addr);
    let admin = weft.admin.unwrap();
    let edge = weft.addr("edge");
    for _ in 0..7 {
        client::get(edge, "/api/x", &[]).await;
        client::get(edge, "/plain", &[]).await;
    }
    // The page is one document: no script, style or image from elsewhere.
    let page = client::get_text(&format!("http://{admin}/")).await;
    assert!(page.contains("<title>weft admin</title>"), "{page}");
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));

    let dir = TempDir::new("admin-page");
    let artefacts = repo().join("target/artifacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let chromium = |args: &[String]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--virtual-time-budget=5000",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.0.join("chromium").display()
            ))
            .args(args)
            .arg(format!("http://{admin}/"))
            .output()
            .expect("run chromium (scripts/install-test-peers.sh installs it)")
    };
    let out = chromium(&["--dump-dom".to_owned()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();

    let cell = |row: &str, class: &str| -> u64 {
        let at = dom
            .find(row)
            .unwrap_or_else(|| panic!("no {row} in the page: {dom}"));
        let rest = &dom[at..];
        let end = rest.find("</tr>").unwrap();
        let row = &rest[..end];
        // The cell's class attribute ends with `class` (`n total`, `total`).
        let marker = format!(" {class}\">");
        let row = row.replace(&format!("class=\"{class}\">"), &marker);
        let start = row
            .find(&marker)
            .unwrap_or_else(|| panic!("no {class} cell: {row}"))
            + marker.len();
        row[start..start + row[start..].find('<').unwrap()]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{class} in {row}: {e}"))
    };
    assert_eq!(cell("data-route=\"api\"", "total"), 7, "{dom}");
    assert_eq!(cell("data-route=\"plain\"", "total"), 7);
    assert_eq!(cell("data-route=\"slow\"", "total"), 0);
    // stamp has two phases: 14 calls.
    assert_eq!(cell("data-filter=\"stamp\"", "calls"), 14);
    assert_eq!(cell("data-cluster=\"backend\"", "attempts"), 14);
    assert!(dom.contains("data-listener=\"edge\""));
    assert!(dom.contains(&up.addr.to_string()), "endpoints shown");

    let shot = artefacts.join("admin-page.png");
    let out = chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,1000".to_owned(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot"
    );
}
