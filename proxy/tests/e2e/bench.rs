//! `weft bench` on the repository's filters: in process (per filter and phase, JSON,
//! HTML opened in headless Chromium) and under load (the proxy as a process, the
//! built-in upstream and load generator, HTTP/1.1 and HTTP/2).

use std::process::Command;

use serde_json::Value;

use crate::support::filters::{built, repo};
use crate::support::proxy::{weft_cli, TempDir};

fn chains() -> String {
    repo().join("benches/chains.yaml").display().to_string()
}

fn chain5_request() -> String {
    repo().join("benches/chain5.http").display().to_string()
}

/// Runs `weft bench` in process on `route` and returns its JSON report and table.
fn micro(route: &str, extra: &[&str], dir: &TempDir) -> (Value, String) {
    built();
    let json = dir.0.join(format!("{route}.json"));
    let config = chains();
    let json_arg = json.display().to_string();
    let mut args = vec![
        "bench",
        "--config",
        &config,
        "--route",
        route,
        "--duration",
        "1s",
        "--json",
        &json_arg,
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = weft_cli(&args);
    assert!(ok, "weft bench failed:\n{out}\n{err}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON written")).expect("JSON parses");
    (report, out)
}

fn phase<'a>(report: &'a Value, filter: &str, phase: &str) -> &'a Value {
    report["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == filter)
        .unwrap_or_else(|| panic!("no filter {filter} in {report}"))["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == phase)
        .unwrap_or_else(|| panic!("no phase {phase} of {filter}"))
}

#[test]
fn bench_measures_every_filter_and_phase_of_a_chain() {
    let dir = TempDir::new("bench-micro");
    let request = chain5_request();
    let (chain5, table) = micro("chain5", &["--request", &request], &dir);
    let (noop, _) = micro("noop", &[], &dir);

    // The five built-ins, in chain order, each called once per request in its request
    // phase, and every request answered by the canned upstream (the token was valid).
    let names: Vec<&str> = chain5["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["authz", "ratelimit", "fault", "router", "retry"]);
    let requests = chain5["requests"].as_u64().unwrap();
    assert!(requests > 1000, "{requests} requests in a second");
    assert_eq!(
        chain5["statuses"]["200"].as_u64(),
        Some(requests),
        "{chain5}"
    );
    for f in &names {
        let p = phase(&chain5, f, "request-headers");
        assert_eq!(p["calls"].as_u64(), Some(requests), "{f}: {p}");
        let (p50, p99) = (p["p50_ns"].as_u64().unwrap(), p["p99_ns"].as_u64().unwrap());
        assert!(p50 > 0 && p99 >= p50, "{f}: {p}");
        assert!(table.contains(f), "the table names {f}:\n{table}");
    }
    // The retry filter decides on responses too; the rate limiter takes a token from
    // the host's shared state on every call.
    assert_eq!(
        phase(&chain5, "retry", "response-headers")["calls"].as_u64(),
        Some(requests)
    );
    assert!(
        phase(&chain5, "ratelimit", "request-headers")["host_calls_per_call"].as_f64() >= Some(1.0)
    );
    for f in chain5["filters"].as_array().unwrap() {
        assert!(f["memory_bytes"].as_u64() > Some(0), "{f}");
        assert!(f["instantiate_ns"].as_u64() > Some(0), "{f}");
        assert!(f["init_ns"].as_u64() > Some(0), "{f}");
    }

    // Sane ordering: a request costs more with the chain than without, and five
    // filters add more than one no-op filter does.
    let mean = |r: &Value, k: &str| r[k]["mean_ns"].as_u64().unwrap();
    assert!(mean(&chain5, "with_chain") > mean(&chain5, "without_filters"));
    let (five, one) = (
        chain5["chain_ns"].as_u64().unwrap(),
        noop["chain_ns"].as_u64().unwrap(),
    );
    assert!(
        five > one,
        "five built-ins add {five} ns, one no-op {one} ns"
    );
    assert_eq!(noop["filters"].as_array().unwrap().len(), 1);
}

#[test]
fn bench_refuses_a_request_its_route_does_not_take() {
    built();
    let config = chains();
    let (ok, _, err) = weft_cli(&[
        "bench",
        "--config",
        &config,
        "--route",
        "chain5",
        "--path",
        "/elsewhere",
        "--duration",
        "1s",
    ]);
    assert!(!ok);
    assert!(err.contains("route chain5 does not take"), "{err}");
    let (ok, _, err) = weft_cli(&["bench", "--config", &config, "--route", "nope"]);
    assert!(!ok);
    assert!(
        err.contains("no route named \"nope\"") && err.contains("chain5"),
        "{err}"
    );
}

#[test]
fn bench_html_report_opens_in_headless_chromium() {
    let dir = TempDir::new("bench-html");
    let html = dir.0.join("report.html");
    let html_arg = html.display().to_string();
    let request = chain5_request();
    let (report, _) = micro(
        "chain5",
        &["--request", &request, "--html", &html_arg],
        &dir,
    );
    let page = std::fs::read_to_string(&html).unwrap();
    // Nothing fetched from elsewhere: the only URL is the SVG namespace.
    let outside = page
        .matches("http")
        .count()
        .saturating_sub(page.matches("http://www.w3.org/2000/svg").count());
    assert_eq!(outside, 0, "external references in the report");

    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.0.join("chromium").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium (scripts/install-test-peers.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    // One bar segment per filter phase, and two for the request with its chain, one for
    // the request without: all laid out by the browser.
    let segments: usize = report["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["phases"].as_array().unwrap().len())
        .sum();
    assert_eq!(dom.matches("class=\"bar\"").count(), segments + 3, "{dom}");
    for f in ["authz", "ratelimit", "fault", "router", "retry"] {
        assert!(dom.contains(f), "{f} missing from the page");
    }
}

#[test]
fn bench_under_load_puts_each_route_next_to_the_proxy_without_filters() {
    let dir = TempDir::new("bench-load");
    built();
    let json = dir.0.join("load.json");
    let json_arg = json.display().to_string();
    let config = chains();
    let token_line = std::fs::read_to_string(chain5_request()).unwrap();
    let auth = token_line
        .lines()
        .find(|l| l.starts_with("Authorization"))
        .unwrap()
        .trim()
        .to_owned();
    let (ok, out, err) = weft_cli(&[
        "bench",
        "--config",
        &config,
        "--load",
        "--route",
        "noop",
        "--route",
        "chain5",
        "-H",
        &auth,
        "--protocol",
        "http1",
        "--protocol",
        "http2",
        "--connections",
        "8",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--compare",
        &config,
        "--json",
        &json_arg,
    ]);
    assert!(ok, "weft bench --load failed:\n{out}\n{err}");
    let reports: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2, "the configuration and the one compared");
    for report in reports {
        let rows = report["rows"].as_array().unwrap();
        let protocols: Vec<&str> = rows
            .iter()
            .map(|r| r["protocol"].as_str().unwrap())
            .collect();
        assert_eq!(protocols, ["http1", "http2"]);
        for p in rows {
            let mut all = vec![&p["without_filters"]];
            all.extend(p["routes"].as_array().unwrap());
            assert_eq!(all.len(), 3);
            for row in all {
                let requests = row["requests"].as_u64().unwrap();
                assert!(requests > 100, "{row}");
                assert_eq!(row["statuses"]["200"].as_u64(), Some(requests), "{row}");
                assert_eq!(row["errors"].as_u64(), Some(0), "{row}");
                assert!(row["cpu_us_per_request"].as_f64() > Some(0.0), "{row}");
                assert!(row["latency"]["p999_ns"].as_u64() >= row["latency"]["p50_ns"].as_u64());
            }
        }
    }
    assert!(
        out.contains("chain5") && out.contains("(no filters)"),
        "{out}"
    );
    // The rewritten configuration the proxy ran on is gone.
    let leftovers: Vec<_> = std::fs::read_dir(repo().join("benches"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".weft-bench-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
