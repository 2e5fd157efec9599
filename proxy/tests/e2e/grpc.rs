//! gRPC end to end with Python's grpcio as both server and client
//! (`tests/peers/grpc_peer.py`): unary and the three streaming kinds through weft over
//! h2c and over TLS, statuses and trailing metadata reaching the client, weft's own
//! failures answered as gRPC statuses, `UNAVAILABLE` retried, faults injected as gRPC
//! statuses, and `grpc-timeout` honoured.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};

use crate::support::client::{bytes, request, Conn, Version};
use crate::support::filters::{component, repo};
use crate::support::proxy::Weft;
use crate::support::sick::spawn_peer;
use crate::tls::Pki;
use http::Method;

fn python() -> PathBuf {
    repo().join("target/test-tools/py/bin/python")
}

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/grpc_peer.py")
}

/// A grpcio server serving `test.Echo` (see the script) on h2c.
struct GrpcServer {
    child: Child,
    addr: SocketAddr,
}

impl GrpcServer {
    fn start(name: &str) -> GrpcServer {
        let mut command = Command::new(python());
        command.args([script(), "serve", name]);
        let (child, addr) = spawn_peer(
            command,
            "grpc_peer.py (grpcio from scripts/install-test-peers.sh)",
        );
        GrpcServer { child, addr }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client scenario against `target`; its JSON answer.
fn call(target: SocketAddr, scenario: &str, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .args([script(), "call", &target.to_string(), scenario])
        .args(extra)
        .output()
        .expect("grpc_peer.py call runs");
    assert!(
        out.status.success(),
        "{scenario}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{scenario}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn texts(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// Every kind of call through `target`, checked.
fn every_kind(target: SocketAddr, tls: &[&str]) {
    let r = call(target, "unary", tls);
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(texts(&r["responses"]), ["g:hello"]);
    assert_eq!(r["initial"]["x-server"], "g", "initial metadata");
    assert_eq!(r["trailing"]["x-trailer"], "done", "trailing metadata");

    let r = call(target, "client_stream", tls);
    assert_eq!(texts(&r["responses"]), ["a+b+c"], "{r}");
    let r = call(target, "server_stream", tls);
    assert_eq!(texts(&r["responses"]), ["0", "1", "2", "3", "4"], "{r}");
    // Each answer comes back before the next request leaves: nothing buffered.
    let r = call(target, "bidi", tls);
    assert_eq!(
        texts(&r["responses"]),
        ["echo:m0", "echo:m1", "echo:m2", "echo:m3"],
        "{r}"
    );
    // A status from the server, with its details and trailing metadata.
    let r = call(target, "fail", tls);
    assert_eq!(r["code"], "NOT_FOUND", "{r}");
    assert_eq!(r["details"], "no such thing");
    assert_eq!(r["trailing"]["x-why"], "testing");
}

#[tokio::test]
async fn every_kind_of_grpc_call_passes_through_over_h2c_and_tls() {
    let g = GrpcServer::start("g");
    let pki = Pki::new("grpc");
    let (cert, key) = pki.svid("api", &["--dns", "api.example.test"]);
    let weft = Weft::start(&format!(
        r#"
listeners:
  - name: plain
    address: 127.0.0.1:0
    routes: [{{ match: {{ grpc: {{ service: test.Echo }} }}, cluster: g }}]
  - name: secure
    address: 127.0.0.1:0
    tls: {{ certificates: [{{ cert: {cert}, key: {key} }}] }}
    routes: [{{ match: {{ grpc: {{ service: test.Echo }} }}, cluster: g }}]
clusters:
  g: {{ endpoints: ["{}"], protocol: http2 }}
"#,
        g.addr
    ));
    every_kind(weft.addr("plain"), &[]);
    let ca = pki.ca();
    every_kind(
        weft.addr("secure"),
        &["--ca", &ca, "--authority", "api.example.test"],
    );
    // A service no route names: weft's 404, as gRPC's UNIMPLEMENTED.
    let r = call(weft.addr("plain"), "unary", &["--service", "test.Other"]);
    assert_eq!(r["code"], "UNIMPLEMENTED", "{r}");
}

#[tokio::test]
async fn weft_answers_its_own_failures_as_grpc_statuses_and_retries_unavailable() {
    let g = GrpcServer::start("g");
    let flaky = GrpcServer::start("g");
    let slow = crate::support::sick::Sick::start("slow");
    slow.set("mode/slow:2000").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let weft = Weft::start(&format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: plain
    address: 127.0.0.1:0
    routes:
      - {{ match: {{ grpc: {{ service: test.Dead }} }}, cluster: dead }}
      - {{ match: {{ grpc: {{ service: test.Chaos }} }}, cluster: g, filters: [chaos] }}
      - {{ match: {{ grpc: {{ service: test.Deny }} }}, cluster: g, filters: [deny] }}
      - {{ match: {{ grpc: {{ service: test.Slow }} }}, cluster: slow }}
      - {{ cluster: g }}
  - name: retrying
    address: 127.0.0.1:0
    routes: [{{ cluster: flaky, filters: [retry] }}]
clusters:
  g: {{ endpoints: ["{g}"], protocol: http2 }}
  flaky: {{ endpoints: ["{flaky}"], protocol: http2 }}
  dead: {{ endpoints: ["{dead}"], protocol: http2 }}
  slow: {{ endpoints: ["{slow}"] }}
filters:
  retry:
    module: {retry}
    config: {{ retry_on: [unavailable], backoff: {{ base: 1ms, max: 2ms }}, budget: {{ ratio: 1.0, min_per_second: 50, window: 10s }} }}
  chaos:
    module: {fault}
    config: {{ abort: {{ percent: 100, grpc_status: 8, body: "quota gone" }} }}
  deny:
    module: {fault}
    config: {{ abort: {{ percent: 100, status: 403 }} }}
"#,
        g = g.addr,
        flaky = flaky.addr,
        slow = slow.addr,
        retry = component("retry").display(),
        fault = component("fault").display(),
    ));
    let plain = weft.addr("plain");

    // No upstream to reach: UNAVAILABLE, saying why, marked as weft's.
    let r = call(plain, "unary", &["--service", "test.Dead"]);
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");
    assert!(
        r["details"].as_str().unwrap().contains("connect-failure"),
        "{r}"
    );
    // (A trailers-only answer: its headers reach the client as trailing metadata.)
    let marked = [
        &r["initial"]["x-weft-error"],
        &r["trailing"]["x-weft-error"],
    ];
    assert!(
        marked.contains(&&serde_json::json!("connect-failure")),
        "{r}"
    );

    // The fault filter aborts with a gRPC status; an HTTP-status abort of a gRPC call
    // is turned into the matching gRPC status.
    let r = call(plain, "unary", &["--service", "test.Chaos"]);
    assert_eq!(r["code"], "RESOURCE_EXHAUSTED", "{r}");
    assert_eq!(r["details"], "quota gone");
    let r = call(plain, "unary", &["--service", "test.Deny"]);
    assert_eq!(r["code"], "PERMISSION_DENIED", "{r}");

    // grpc-timeout: a 300 ms deadline bounds weft's wait for a 2 s upstream (the
    // route's own timeout is 15 s); weft answers DEADLINE_EXCEEDED itself. (A plain
    // HTTP/2 client with no deadline of its own, and an upstream that ignores
    // grpc-timeout: grpcio on either side would give up at the same instant, and which
    // one did first would be a race.)
    let start = std::time::Instant::now();
    let mut c = Conn::open(plain, Version::H2).await;
    let r = c
        .send(request(
            Version::H2,
            plain,
            Method::POST,
            "/test.Slow/Call",
            &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("grpc-timeout", "300m"),
            ],
            bytes(&b"\x00\x00\x00\x00\x05hello"[..]),
        ))
        .await;
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("4"), "DEADLINE_EXCEEDED");
    assert_eq!(r.header("x-weft-error"), Some("timeout"));
    assert!(
        took >= std::time::Duration::from_millis(280)
            && took < std::time::Duration::from_millis(1500),
        "{took:?}"
    );

    // A trailers-only UNAVAILABLE is retried; the second attempt succeeds.
    let r = call(weft.addr("retrying"), "flaky", &[]);
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(
        weft.metric(r#"weft_filter_retries_total{filter="retry",reason="grpc-status"}"#)
            .await,
        1.0
    );
}
