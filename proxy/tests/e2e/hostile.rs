//! Hostile input that must hurt nobody: a browser page trying to drive the admin
//! endpoint, and configurations that would exhaust memory or hang a reload.

use crate::support::client;
use crate::support::proxy::{weft_cli, TempDir, Weft};
use crate::support::upstream::Upstream;

fn config(up: std::net::SocketAddr) -> String {
    format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: up
clusters:
  up: {{ endpoints: ["{up}"] }}
"#
    )
}

#[tokio::test]
async fn a_browser_page_cannot_drive_the_admin_endpoint() {
    let up = Upstream::start("up");
    let weft = Weft::start(&config(up.addr));
    let admin = weft.admin.expect("an admin endpoint");
    let port = admin.port();
    let reloads = || async {
        weft.metric("weft_config_reloads_total{outcome=\"applied\"}")
            .await
    };
    let status = |raw: String| raw.split(' ').nth(1).unwrap_or("").to_owned();

    // A DNS-rebinding page reaches it under its own name: refused, /config unread.
    let rebound = client::raw(
        admin,
        format!("GET /config HTTP/1.1\r\nhost: evil.example:{port}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(rebound.clone()), "403", "{rebound}");
    assert!(!rebound.contains("listeners"), "{rebound}");

    // A cross-origin form POST (text/plain needs no preflight): refused, nothing reloads.
    let before = reloads().await;
    for (extra, what) in [
        ("origin: http://evil.example\r\n", "cross-origin"),
        ("content-type: text/plain\r\n", "form content type"),
        (
            "content-type: application/x-www-form-urlencoded\r\n",
            "form content type",
        ),
        ("sec-fetch-site: cross-site\r\n", "cross-site"),
    ] {
        let raw = client::raw(
            admin,
            format!(
                "POST /reload HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{extra}content-length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(status(raw.clone()), "403", "{what}: {raw}");
    }
    assert_eq!(reloads().await, before, "no reload was applied");

    // What operators and scrapers send is served: curl's POST, GETs by IP or localhost.
    let raw = client::raw(
        admin,
        format!("POST /reload HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: 0\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(status(raw.clone()), "200", "{raw}");
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let raw = client::raw(
            admin,
            format!("GET /ready HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(status(raw.clone()), "200", "{host}: {raw}");
    }
    let same_origin = client::raw(
        admin,
        format!(
            "GET /ready HTTP/1.1\r\nhost: localhost:{port}\r\norigin: http://localhost:{port}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status(same_origin.clone()), "200", "{same_origin}");
}

#[test]
fn special_and_oversized_files_in_a_configuration_are_refused() {
    let dir = TempDir::new("hostile-files");
    let filter = crate::support::filters::component("request-id");
    let write = |files: &str, extra: &str| {
        let path = dir.0.join("weft.yaml");
        std::fs::write(
            &path,
            format!(
                r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - {{ cluster: up, filters: [f] }}
clusters:
  up: {{ endpoints: ["127.0.0.1:9"] }}
filters:
  f:
    module: {}
    files: {files}
{extra}
"#,
                filter.display()
            ),
        )
        .unwrap();
        path
    };
    // A device that never ends: refused at once, not read until memory runs out.
    let path = write("{ jwks: /dev/zero }", "");
    let (ok, _, err) = weft_cli(&["validate", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("filters.f.files.jwks"), "{err}");
    assert!(err.contains("not a regular file"), "{err}");

    // A FIFO nobody writes to: refused, not waited on.
    let fifo = dir.0.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let path = write(&format!("{{ jwks: {} }}", fifo.display()), "");
    let started = std::time::Instant::now();
    let (ok, _, err) = weft_cli(&["validate", "--config", path.to_str().unwrap()]);
    assert!(!ok && err.contains("not a regular file"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    // A file over the limit (configurable): refused, saying the limit.
    let big = dir.0.join("big.json");
    std::fs::write(&big, vec![b' '; 3 << 20]).unwrap();
    let path = write(
        &format!("{{ jwks: {} }}", big.display()),
        "filter_host: { max_file_size: 1MiB }",
    );
    let (ok, _, err) = weft_cli(&["validate", "--config", path.to_str().unwrap()]);
    assert!(!ok && err.contains("1048576"), "{err}");
    // Within the default limit it loads.
    let path = write(&format!("{{ jwks: {} }}", big.display()), "");
    let (ok, out, err) = weft_cli(&["validate", "--config", path.to_str().unwrap()]);
    assert!(ok, "{out} {err}");
}

#[tokio::test]
async fn path_tricks_do_not_walk_around_a_path_rule() {
    let up = Upstream::start("up");
    let weft = Weft::start(&format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - {{ cluster: up, filters: [authz] }}
  - name: strict
    address: 127.0.0.1:0
    escaped_slashes: reject
    routes:
      - {{ cluster: up }}
clusters:
  up: {{ endpoints: ["{}"] }}
filters:
  authz:
    module: {}
    config:
      rules:
        - name: no-admin
          action: deny
          when: {{ paths: [{{ prefix: /api/admin }}] }}
      default_action: allow
"#,
        up.addr,
        crate::support::filters::component("authz").display()
    ));
    let addr = weft.addr("edge");
    let get = |path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
        async move { client::raw(addr, req.as_bytes()).await }
    };
    for trick in [
        "/api/admin/x",
        "/api//admin/x",
        "/api/./admin/x",
        "/api/%61dmin/x",
        "/api/x/../admin/y",
        "/api/%2e%2e/api/admin",
    ] {
        let raw = get(trick).await;
        assert!(raw.starts_with("HTTP/1.1 403"), "{trick}: {raw}");
    }
    assert_eq!(up.requests.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Others pass, normalized for the upstream too; the query is left alone.
    let raw = get("/api//items/./a?next=//x/../y").await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        raw.contains(r#""uri":"/api/items/a?next=//x/../y""#),
        "{raw}"
    );
    // Escaped slashes: kept by default, refused where the listener says so.
    let raw = get("/api/a%2fb").await;
    assert!(raw.contains(r#""uri":"/api/a%2Fb""#), "{raw}");
    let strict = weft.addr("strict");
    let raw = client::raw(
        strict,
        b"GET /api/a%2Fb HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
}

#[tokio::test]
async fn a_looping_filter_is_cut_off_by_its_breaker_and_other_routes_keep_serving() {
    let up = Upstream::start("up");
    let weft = Weft::start_with(
        &format!(
            r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - {{ match: {{ prefix: /bad }}, cluster: up, filters: [misbehave] }}
      - {{ cluster: up }}
clusters:
  up: {{ endpoints: ["{}"] }}
filters:
  misbehave:
    module: {}
    failure_policy: fail_closed
    failure_status: 503
    timeout: 50ms
"#,
            up.addr,
            crate::support::filters::component("misbehave").display()
        ),
        &["--workers", "1"],
    );
    let addr = weft.addr("edge");
    // 16 connections asking the filter to loop, for 3 s: every call would take the one
    // worker for 50 ms.
    let stop = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let attackers: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = client::Conn::open(addr, client::Version::H1).await;
                let mut answers = 0u32;
                while std::time::Instant::now() < stop {
                    let req = client::request(
                        client::Version::H1,
                        addr,
                        http::Method::GET,
                        "/bad",
                        &[("x-misbehave", "loop")],
                        client::empty(),
                    );
                    match c.try_send(req).await {
                        Ok(r) => {
                            assert_eq!(r.status, 503);
                            answers += 1;
                        }
                        Err(_) => break,
                    }
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // Once the breaker is open, the healthy route is served without waiting behind
    // 16 deadlines of 50 ms (800 ms) per request.
    let mut slowest = std::time::Duration::ZERO;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        assert_eq!(client::get(addr, "/good", &[]).await.status, 200);
        slowest = slowest.max(started.elapsed());
    }
    let mut answered = 0;
    for a in attackers {
        answered += a.await.unwrap();
    }
    assert!(
        slowest < std::time::Duration::from_millis(400),
        "a healthy request waited {slowest:?}"
    );
    let skipped = weft
        .metric(r#"weft_filter_failures_total{filter="misbehave",reason="breaker_open"}"#)
        .await;
    let deadlines = weft
        .metric(r#"weft_filter_failures_total{filter="misbehave",reason="deadline"}"#)
        .await;
    assert!(skipped > 0.0, "the breaker opened");
    assert!(
        deadlines < 20.0,
        "deadline hits bounded by the breaker: {deadlines}"
    );
    assert!(
        answered as f64 >= skipped,
        "every attacker got its 503 at once"
    );
}
