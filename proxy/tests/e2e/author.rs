//! The filter author's loop: `weft filter new --template` for each common shape,
//! `weft filter test` (native tests, then the same calls through the real host), the
//! templates on routes of a running proxy, and logs a filter author can read.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::client;
use crate::support::filters::{built, repo};
use crate::support::proxy::{cache_dir, weft_cli, TempDir, Weft};
use crate::support::upstream::Upstream;

/// Every template `weft filter new --template` offers.
const TEMPLATES: [&str; 6] = ["header", "auth", "quota", "router", "body", "outbound"];

/// The target directory filter crates made by these tests share, so the SDK and its
/// dependencies are compiled once for all of them.
fn shared_target() -> PathBuf {
    repo().join("target/scaffold-test")
}

/// `weft filter test` on a crate; (success, stdout, stderr).
fn filter_test(crate_dir: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["filter", "test", "-q"])
        .arg(crate_dir)
        .args(extra)
        .env("CARGO_TARGET_DIR", shared_target())
        .env("WEFT_CACHE_DIR", cache_dir())
        .env("WEFT_LOG", "error")
        .output()
        .expect("run weft filter test");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates a crate called `name` from a template in `dir` (names differ between
/// tests: they share a target directory).
fn new_from(dir: &Path, template: &str, name: &str) -> PathBuf {
    let (ok, out, err) = weft_cli(&[
        "filter",
        "new",
        name,
        "--template",
        template,
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("from the {template} template")),
        "{out}"
    );
    dir.join(name)
}

/// The number of calls `weft filter test` says it compared.
fn compared(out: &str) -> usize {
    out.split("ok: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {out:?}"))
}

#[tokio::test]
async fn every_template_passes_filter_test_and_runs_on_a_route() {
    built(); // the repo's filters, and the wasm std, are built
    let dir = TempDir::new("templates");
    let mut modules = Vec::new();
    for t in TEMPLATES {
        let crate_dir = new_from(&dir.0, t, &format!("my-{t}"));
        let (ok, out, err) = filter_test(&crate_dir, &[]);
        assert!(ok, "template {t}: weft filter test failed:\n{out}\n{err}");
        assert!(
            compared(&out) > 0,
            "template {t}: nothing compared:\n{out}\n{err}"
        );
        assert!(!err.contains("DIFFERS"), "{err}");
        let module = shared_target().join(format!("filters/my-{t}.wasm"));
        assert!(module.is_file(), "{}", module.display());
        modules.push(module);
    }

    // With a deployed configuration's host settings for the filter, found by its module.
    let header = dir.0.join("my-header");
    let deployed = dir.0.join("deployed.yaml");
    std::fs::write(
        &deployed,
        "filters:\n  edge-headers:\n    module: /srv/filters/my-header.wasm\n    timeout: 20ms\n    memory_limit: 16MiB\n    failure_policy: fail_open\n",
    )
    .unwrap();
    let (ok, out, err) = filter_test(&header, &["--config", deployed.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = filter_test(
        &header,
        &["--config", deployed.to_str().unwrap(), "--filter", "nope"],
    );
    assert!(!ok);
    assert!(
        err.contains("deployed.yaml: no filter named nope under filters:"),
        "{err}"
    );

    // Each on a route of one proxy, in front of real upstreams.
    let app = Upstream::start("internal-a");
    let canary = Upstream::start("canary");
    let checker = Upstream::start("checker");
    let m = |t: &str| {
        modules[TEMPLATES.iter().position(|x| *x == t).unwrap()]
            .display()
            .to_string()
    };
    let route = |prefix: &str, filter: &str| {
        format!("      - match: {{ prefix: /{prefix} }}\n        cluster: app\n        filters: [{filter}]\n")
    };
    let mut config =
        String::from("listeners:\n  - name: edge\n    address: 127.0.0.1:0\n    routes:\n");
    for (prefix, filter) in [
        ("header", "header"),
        ("auth", "auth"),
        ("quota", "quota"),
        ("router", "router"),
        ("body", "body"),
        ("outbound", "outbound"),
    ] {
        config.push_str(&route(prefix, filter));
    }
    config.push_str(&format!(
        "clusters:\n  app: {{ endpoints: [\"{}\"] }}\n  canary: {{ endpoints: [\"{}\"] }}\n  checker: {{ endpoints: [\"{}\"] }}\n",
        app.addr, canary.addr, checker.addr
    ));
    config.push_str("filters:\n");
    for (name, module, filter_config) in [
        (
            "header",
            "header",
            "{ request_headers: { x-env: prod }, response_headers: { x-served-by: edge } }",
        ),
        ("auth", "auth", "{ keys: { k-1: team-a } }"),
        ("quota", "quota", "{ limit: 2, window: 1m }"),
        ("router", "router", "{ cluster: canary }"),
        ("body", "body", "{ replace: { internal-a: public-a } }"),
        ("outbound", "outbound", "{ cluster: checker, path: /check }"),
    ] {
        config.push_str(&format!(
            "  {name}:\n    module: {}\n    config: {filter_config}\n",
            m(module)
        ));
    }
    let weft = Weft::start(&config);
    let edge = weft.addr("edge");

    // header: set on the way in and on the way out.
    let r = client::get(edge, "/header/x", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_saw("x-env").as_deref(), Some("prod"));
    assert_eq!(r.header("x-served-by"), Some("edge"));

    // auth: 401 without a key, 403 with a wrong one, the caller's name with the right one.
    let r = client::get(edge, "/auth", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("ApiKey header=\"x-api-key\"")
    );
    assert_eq!(
        client::get(edge, "/auth", &[("x-api-key", "nope")])
            .await
            .status,
        403
    );
    let r = client::get(edge, "/auth", &[("x-api-key", "k-1")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_saw("x-caller").as_deref(), Some("team-a"));
    assert_eq!(
        r.upstream_saw("x-api-key"),
        None,
        "the key stays at the proxy"
    );

    // quota: two per tenant per minute, then 429 with retry-after.
    let t = [("x-tenant", "t1")];
    let first = client::get(edge, "/quota", &t).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-quota-remaining"), Some("1"));
    assert_eq!(client::get(edge, "/quota", &t).await.status, 200);
    let third = client::get(edge, "/quota", &t).await;
    assert_eq!(third.status, 429);
    let wait: u64 = third.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        client::get(edge, "/quota", &[("x-tenant", "t2")])
            .await
            .status,
        200
    );

    // router: the cookie sends a request to the canary cluster.
    let r = client::get(edge, "/router", &[("cookie", "a=b; canary=1")]).await;
    assert_eq!(r.json()["server"], "canary");
    let r = client::get(edge, "/router", &[]).await;
    assert_eq!(r.json()["server"], "internal-a");

    // body: the upstream's name is rewritten in its JSON answer.
    let r = client::get(edge, "/body", &[]).await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains("public-a") && !text.contains("internal-a"),
        "{text}"
    );

    // outbound: the checker (it allows `Bearer good`) is asked with the request's
    // credentials; its 2xx lets the request through, its refusal is passed on.
    let r = client::get(edge, "/outbound", &[("authorization", "Bearer good")]).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["server"], "internal-a");
    let r = client::get(edge, "/outbound", &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(&r.body[..], b"denied by the authorization service");
    assert_eq!(
        checker.requests.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[test]
fn filter_test_catches_a_filter_that_behaves_differently_in_wasm() {
    built();
    let dir = TempDir::new("differs");
    let crate_dir = new_from(&dir.0, "header", "wasm-differs");
    let lib = crate_dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    // Only the wasm build marks the request: the native tests still pass.
    let changed = source.replace(
        "    fn on_request_headers(&self, req: &mut Request) -> Action {\n",
        "    fn on_request_headers(&self, req: &mut Request) -> Action {\n        if cfg!(target_arch = \"wasm32\") {\n            req.set_header(\"x-wasm\", \"1\").ok();\n        }\n",
    );
    assert_ne!(changed, source, "the template changed shape");
    std::fs::write(&lib, changed).unwrap();
    let (ok, out, err) = filter_test(&crate_dir, &[]);
    assert!(!ok, "must fail:\n{out}\n{err}");
    assert!(
        out.contains("test result: ok"),
        "the native tests pass:\n{out}"
    );
    assert!(
        err.contains("DIFFERS: tests::sets_and_removes_request_headers, call 1: header x-wasm: native [], host [\"1\"]"),
        "{err}"
    );
    assert!(
        err.contains("differ between the native harness and the host"),
        "{err}"
    );
}

#[test]
fn filter_test_passes_on_the_repos_filters() {
    built();
    for f in ["ratelimit", "authz", "router", "fault", "retry"] {
        let crate_dir = repo().join("filters").join(f);
        // The repo's filters build in the workspace's target directory.
        let out = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["filter", "test", "-q", "--release"])
            .arg(&crate_dir)
            .env("WEFT_CACHE_DIR", cache_dir())
            .env("WEFT_LOG", "error")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{f}:\n{stdout}\n{stderr}");
        assert!(compared(&stdout) >= 5, "{f}: {stdout}");
    }
}

/// Starts `weft run` with `WEFT_LOG` set, its stderr going to `log`; returns the child
/// and the `edge` listener's address once it is ready.
fn run_logging(
    config: &Path,
    weft_log: &str,
    log: &Path,
    cache: &Path,
) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["run", "--workers", "1", "--config"])
        .arg(config)
        .env("WEFT_CACHE_DIR", cache)
        .env("WEFT_LOG", weft_log)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut addr = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("weft listening: edge ") {
            addr = Some(rest.trim_start_matches("http://").parse().unwrap());
        }
        if line.starts_with("weft ready") {
            break;
        }
    }
    (child, addr.expect("edge listening"))
}

#[tokio::test]
async fn logs_keep_dependencies_quiet_select_a_filter_and_have_no_colour_in_files() {
    built();
    let dir = TempDir::new("logs");
    let crate_dir = new_from(&dir.0, "outbound", "log-check");
    let (ok, out, err) = filter_test(&crate_dir, &[]);
    assert!(ok, "{out}{err}");
    let module = shared_target().join("filters/log-check.wasm");
    // Two filters whose checks fail (nothing listens on port 9), so each logs a warning.
    let config = dir.0.join("weft.yaml");
    let yaml = [
        "listeners:",
        "  - name: edge",
        "    address: 127.0.0.1:0",
        "    routes:",
        "      - match: { prefix: /loud }",
        "        cluster: app",
        "        filters: [loud]",
        "      - match: { prefix: /quiet }",
        "        cluster: app",
        "        filters: [quiet]",
        "clusters:",
        "  app: { endpoints: [\"127.0.0.1:9\"] }",
        "  checker: { endpoints: [\"127.0.0.1:9\"] }",
        "filters:",
        "  loud:",
        "    module: MODULE",
        "    config: { cluster: checker }",
        "  quiet:",
        "    module: MODULE",
        "    config: { cluster: checker }",
        "",
    ]
    .join("\n")
    .replace("MODULE", &module.display().to_string());
    std::fs::write(&config, yaml).unwrap();
    let log = dir.0.join("weft.log");
    // A fresh module cache: the modules compile, where cranelift would log.
    let cache = TempDir::new("fresh-cache");
    let (mut child, edge) = run_logging(&config, "debug,filter.quiet=error", &log, &cache.0);
    assert_eq!(client::get(edge, "/loud", &[]).await.status, 503);
    assert_eq!(client::get(edge, "/quiet", &[]).await.status, 503);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("check failed") && l.contains("filter=\"loud\"")),
        "the loud filter's warning:\n{text}"
    );
    assert!(
        !text.contains("filter=\"quiet\""),
        "filter.quiet=error hides its warning:\n{text}"
    );
    assert!(
        text.contains("DEBUG"),
        "weft's own debug lines are there:\n{text}"
    );
    let dependency_lines = text
        .lines()
        .filter(|l| l.contains("cranelift") || l.contains("wasmtime"))
        .count();
    assert_eq!(dependency_lines, 0, "dependencies stay at warn:\n{text}");
    assert!(!text.contains('\u{1b}'), "no colour codes in a file");
}
