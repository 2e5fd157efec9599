//! The command line: `weft validate` reports the first problem with its file, line and
//! field; `weft filter new` and `weft filter build` make a filter a route can run.

use std::process::Command;

use crate::support::client;
use crate::support::filters::{component, repo};
use crate::support::proxy::{weft_cli, TempDir, Weft};
use crate::support::upstream::Upstream;

fn validate(dir: &TempDir, yaml: &str) -> (bool, String, String) {
    let path = dir.0.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    weft_cli(&["validate", "--config", path.to_str().unwrap()])
}

fn base(filters: &str, route_filters: &str) -> String {
    format!(
        "listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: api
        filters: [{route_filters}]
clusters:
  api:
    endpoints: [127.0.0.1:9]
{filters}"
    )
}

#[test]
fn validate_accepts_the_example_gateway_config() {
    component("request-id"); // built
    let example = repo().join("examples/gateway.yaml");
    let (ok, out, err) = weft_cli(&["validate", "--config", example.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("ok (1 listener(s), 2 route(s), 1 cluster(s), 1 filter(s) loaded)"),
        "{out}"
    );
}

#[test]
fn validate_names_file_line_and_field_of_the_first_problem() {
    let dir = TempDir::new("validate");
    let file = dir.0.join("config.yaml").display().to_string();
    let good_module = component("misbehave").display().to_string();
    let not_a_component = dir.0.join("core.wasm");
    std::fs::write(&not_a_component, b"\0asm\x01\0\0\0").unwrap();

    let cases: Vec<(String, usize, &str, &str)> = vec![
        // (config, line, field, message part)
        (base("", "").replace("    address:", "    adress:"), 3, "listeners[0].adress", "unknown field `adress`"),
        (base("", "").replace("127.0.0.1:0", "localhost"), 3, "listeners[0].address", "invalid address \"localhost\""),
        (base("", "").replace("      - cluster: api", "      - cluster: apl"), 5, "listeners[0].routes[0].cluster", "unknown cluster \"apl\" (clusters: api)"),
        (base("", "nope"), 6, "listeners[0].routes[0].filters[0]", "unknown filter \"nope\""),
        (
            base("filters:\n  m:\n    module: missing.wasm\n", "m"),
            12,
            "filters.m.module",
            "missing.wasm not found (build it with `weft filter build`)",
        ),
        (
            base(&format!("filters:\n  m:\n    module: {}\n", not_a_component.display()), "m"),
            12,
            "filters.m.module",
            "is a core WebAssembly module, not a component",
        ),
        (
            base(&format!("filters:\n  m:\n    module: {good_module}\n    config:\n      reject: limit must be positive\n"), "m"),
            14,
            "filters.m.config",
            "filter configuration rejected: limit must be positive",
        ),
        (
            base(&format!("filters:\n  m:\n    module: {good_module}\n    timeout: soon\n"), "m"),
            13,
            "filters.m.timeout",
            "invalid duration \"soon\"",
        ),
    ];
    for (yaml, line, field, message) in cases {
        let (ok, out, err) = validate(&dir, &yaml);
        assert!(!ok, "must fail:\n{yaml}\n{out}");
        let want = format!("{file}:{line}:");
        assert!(
            err.contains(&want),
            "expected {want} in: {err}\nfor:\n{yaml}"
        );
        assert!(
            err.contains(&format!(": {field}: ")),
            "expected field {field} in: {err}"
        );
        assert!(err.contains(message), "expected {message:?} in: {err}");
    }
}

#[test]
fn validate_reports_an_unreadable_file() {
    let (ok, _, err) = weft_cli(&["validate", "--config", "/nonexistent/weft.yaml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/weft.yaml: cannot read"), "{err}");
}

#[tokio::test]
async fn a_new_filter_builds_tests_and_runs_on_a_route() {
    let dir = TempDir::new("scaffold");
    let (ok, out, err) = weft_cli(&[
        "filter",
        "new",
        "hello-filter",
        "--dir",
        dir.0.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let crate_dir = dir.0.join("hello-filter");
    assert!(crate_dir.join("src/lib.rs").is_file());

    // Its own unit test passes natively (sharing one target dir between runs).
    let shared_target = repo().join("target/scaffold-test");
    let status = Command::new(env!("CARGO"))
        .args(["test", "--quiet", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &shared_target)
        .status()
        .unwrap();
    assert!(status.success(), "the scaffold's cargo test");

    // It builds into a component (reusing the wasm std the repo's filters built).
    let wasm_target = repo().join("target/weft-wasm");
    let (ok, out, err) = weft_cli(&[
        "filter",
        "build",
        crate_dir.to_str().unwrap(),
        "--target-dir",
        wasm_target.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let module = crate_dir.join("target/filters/hello-filter.wasm");
    assert!(module.is_file(), "{out}");

    // And a route runs it.
    let up = Upstream::start("a");
    let config = format!(
        "listeners:\n  - name: edge\n    address: 127.0.0.1:0\n    routes:\n      - cluster: a\n        filters: [hello]\nclusters:\n  a:\n    endpoints: [\"{}\"]\nfilters:\n  hello:\n    module: {}\n    config:\n      response_headers: {{ x-greeting: from hello-filter }}\n",
        up.addr,
        module.display()
    );
    let weft = Weft::start(&config);
    let reply = client::get(weft.addr("edge"), "/", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-greeting"), Some("from hello-filter"));
}

#[test]
fn validate_points_at_the_field_in_error_inside_a_filters_config() {
    let dir = TempDir::new("filter-config");
    let file = dir.0.join("config.yaml").display().to_string();
    let module = component("ratelimit").display().to_string();
    // Lines 1-16 are the same for every case; the rule's fields follow.
    let head = base(
        &format!("filters:\n  rl:\n    module: {module}\n    config:\n      rules:\n        - name: a\n          key: client_ip\n"),
        "rl",
    );
    let cases = [
        // (the rule's remaining lines, line:column, field, message)
        (
            "          rate: ten\n          per: 1s\n",
            "17:17",
            "filters.rl.config.rules[0].rate",
            "invalid type: string \"ten\", expected u64",
        ),
        (
            "          rate: 10\n          per: soon\n",
            "18:16",
            "filters.rl.config.rules[0].per",
            "invalid duration \"soon\"",
        ),
        (
            "          rate: 10\n",
            "15:11",
            "filters.rl.config.rules[0].per",
            "missing field `per`",
        ),
        (
            "          rate: 10\n          per: 1s\n          burts: 5\n",
            "19:18",
            "filters.rl.config.rules[0].burts",
            "unknown field `burts`, expected one of",
        ),
    ];
    for (rest, at, field, message) in cases {
        let yaml = format!("{head}{rest}");
        let (ok, out, err) = validate(&dir, &yaml);
        assert!(!ok, "must fail:\n{yaml}\n{out}");
        let want = format!("{file}:{at}: {field}: filter configuration rejected: {message}");
        assert!(
            err.contains(&want),
            "expected {want:?} in: {err}\nfor:\n{yaml}"
        );
    }
}
