//! Access logs: a line per request with the fields an operator reads (JSON by default,
//! or a format string), for successes, retries, filter refusals, upstream failures and
//! unrouted requests; the client's SPIFFE ID on mTLS listeners; SIGUSR1 reopens the
//! file for logrotate.

use std::path::Path;
use std::time::Duration;

use crate::support::client;
use crate::support::filters::component;
use crate::support::proxy::{TempDir, Weft};
use crate::support::upstream::Upstream;
use crate::tls::{curl, Pki};

/// The file's lines once there are at least `n` (lines are written off the workers).
async fn lines(path: &Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} lines in {}: {:?}",
        path.display(),
        std::fs::read_to_string(path)
    );
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test]
async fn access_log_lines_say_what_happened_to_each_request() {
    let up = Upstream::start("a");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = TempDir::new("access-log");
    let log = dir.0.join("access.log");
    let text_log = dir.0.join("text.log");
    let weft = Weft::start(&format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    access_log: {{ path: {} }}
    routes:
      - {{ name: ok, match: {{ prefix: /ok }}, cluster: a }}
      - {{ name: retried, match: {{ prefix: /status }}, cluster: a, filters: [retry] }}
      - {{ name: refused, match: {{ prefix: /admin }}, cluster: a, filters: [authz] }}
      - {{ name: down, match: {{ prefix: /down }}, cluster: down }}
  - name: plain
    address: 127.0.0.1:0
    access_log: {{ path: {}, format: "%method% %path% %status% %route% %flags% %peer_identity%" }}
    routes:
      - {{ match: {{ prefix: /only }}, cluster: a }}
clusters:
  a: {{ endpoints: ["{}"] }}
  down: {{ endpoints: ["{closed}"] }}
filters:
  retry:
    module: {}
    config: {{ retry_on: [5xx], max_attempts: 2, backoff: {{ base: 1ms, max: 2ms }}, budget: null }}
  authz:
    module: {}
    config:
      rules: [{{ name: no-admin, action: deny, when: {{ paths: [{{ prefix: /admin }}] }} }}]
      default_action: allow
"#,
        log.display(),
        text_log.display(),
        up.addr,
        component("retry").display(),
        component("authz").display(),
    ));
    let edge = weft.addr("edge");
    assert_eq!(
        client::get(edge, "/ok?q=1", &[("host", "shop.test")])
            .await
            .status,
        200
    );
    assert_eq!(client::get(edge, "/status/503", &[]).await.status, 503);
    assert_eq!(client::get(edge, "/admin", &[]).await.status, 403);
    assert_eq!(client::get(edge, "/down", &[]).await.status, 502);
    assert_eq!(client::get(edge, "/nowhere", &[]).await.status, 404);
    let all = lines(&log, 5).await;
    let by_path = |p: &str| {
        all.iter()
            .map(|l| json(l))
            .find(|j| j["path"] == p)
            .unwrap_or_else(|| panic!("no line for {p}: {all:?}"))
    };

    let ok = by_path("/ok?q=1");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["authority"], "shop.test");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["route"], "ok");
    assert_eq!(ok["cluster"], "a");
    assert_eq!(ok["listener"], "edge");
    assert_eq!(ok["upstream"], up.addr.to_string());
    assert_eq!(ok["attempts"], 1);
    assert_eq!(ok["flags"], "-");
    assert!(ok["response_bytes"].as_u64().unwrap() > 0);
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));
    assert!(ok["peer_identity"].is_null());

    let retried = by_path("/status/503");
    assert_eq!(
        (retried["status"].as_u64(), retried["attempts"].as_u64()),
        (Some(503), Some(2))
    );
    assert_eq!(retried["flags"], "RX");

    let refused = by_path("/admin");
    assert_eq!(
        (refused["status"].as_u64(), refused["attempts"].as_u64()),
        (Some(403), Some(0))
    );
    assert!(refused["upstream"].is_null());

    let down = by_path("/down");
    assert_eq!(down["status"], 502);
    assert_eq!(down["flags"], "UF");
    assert_eq!(down["upstream"], closed.to_string());

    let nowhere = by_path("/nowhere");
    assert_eq!(
        (nowhere["status"].as_u64(), nowhere["flags"].as_str()),
        (Some(404), Some("NR"))
    );
    assert!(nowhere["route"].is_null());

    // The format string.
    let plain = weft.addr("plain");
    assert_eq!(client::get(plain, "/only/x", &[]).await.status, 200);
    assert_eq!(lines(&text_log, 1).await, ["GET /only/x 200 plain-0 - -"]);

    // logrotate: the file is moved away, SIGUSR1, and new lines go to a new file.
    std::fs::rename(&log, dir.0.join("access.log.1")).unwrap();
    let pid = weft.pid().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client::get(edge, "/ok/after", &[]).await.status, 200);
    let after = lines(&log, 1).await;
    assert_eq!(json(&after[0])["path"], "/ok/after");
    assert_eq!(lines(&dir.0.join("access.log.1"), 5).await.len(), 5);
}

#[tokio::test]
async fn access_logs_carry_the_clients_spiffe_id_on_mtls_listeners() {
    let pki = Pki::new("access-mtls");
    let server = pki.svid("server", &["--dns", "mesh.test"]);
    let web = pki.svid("web", &["--id", "spiffe://cluster.local/ns/shop/sa/web"]);
    let up = Upstream::start("a");
    let dir = TempDir::new("access-mtls-log");
    let log = dir.0.join("access.log");
    let weft = Weft::start(&format!(
        r#"
listeners:
  - name: mesh
    address: 127.0.0.1:0
    access_log: {{ path: {} }}
    tls:
      certificates: [{{ cert: {}, key: {} }}]
      client_auth: required
      client_ca: {}
    routes:
      - cluster: a
clusters:
  a: {{ endpoints: ["{}"] }}
"#,
        log.display(),
        server.0,
        server.1,
        pki.ca(),
        up.addr
    ));
    let r = curl(
        &pki,
        "mesh.test",
        weft.addr("mesh"),
        "/orders",
        &["--cert", &web.0, "--key", &web.1],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = json(&lines(&log, 1).await[0]);
    assert_eq!(
        line["peer_identity"],
        "spiffe://cluster.local/ns/shop/sa/web"
    );
    assert_eq!(line["path"], "/orders");
    assert_eq!(line["status"], 200);
}
