//! TLS and mTLS on listeners, with real peers: curl (HTTP/1.1 and HTTP/2 over TLS, with
//! and without client certificates) and `openssl s_client` (SNI, ALPN, versions,
//! resumption). Certificates come from `weft cert`, which these tests also check.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::support::filters::component;
use crate::support::proxy::{weft_cli, TempDir, Weft};
use crate::support::upstream::Upstream;

/// A development CA for `cluster.local` made by `weft cert ca`, and certificates it signs.
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = TempDir::new(tag);
        let (ok, out, err) = weft_cli(&[
            "cert",
            "ca",
            "--trust-domain",
            "cluster.local",
            "--out",
            dir.0.to_str().unwrap(),
        ]);
        assert!(ok, "weft cert ca: {out}{err}");
        Pki { dir }
    }

    pub fn ca(&self) -> String {
        self.dir.0.join("ca.pem").display().to_string()
    }

    /// `weft cert svid --out <dir>/<name> <args>`: (certificate, key) paths.
    pub fn svid(&self, name: &str, args: &[&str]) -> (String, String) {
        let out = self.dir.0.join(name);
        let mut all = vec![
            "cert",
            "svid",
            "--ca",
            self.dir.0.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let (ok, stdout, err) = weft_cli(&all);
        assert!(ok, "weft cert svid {args:?}: {stdout}{err}");
        (
            out.with_extension("pem").display().to_string(),
            out.with_extension("key").display().to_string(),
        )
    }
}

/// What curl got: its exit code, the body, and `<status> <http version>`.
pub struct Curl {
    pub code: i32,
    pub body: String,
    pub status: String,
    pub stderr: String,
}

impl Curl {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn upstream_saw(&self, header: &str) -> Option<String> {
        self.json()["headers"][header][0]
            .as_str()
            .map(str::to_owned)
    }
}

/// `curl https://<host>:<port><path>` with `host` resolved to the listener, trusting
/// the test CA.
pub fn curl(pki: &Pki, host: &str, addr: SocketAddr, path: &str, args: &[&str]) -> Curl {
    let port = addr.port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", &pki.ca()])
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .arg(format!("https://{host}:{port}{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs (scripts/install-test-peers.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Curl {
        code: out.status.code().unwrap_or(-1),
        body: body.to_owned(),
        status: status.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `openssl s_client` against the listener; (exit success, stdout + stderr).
fn s_client(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs (scripts/install-test-peers.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn refusals(weft: &Weft, listener: &str, reason: &str) -> f64 {
    weft.metric(&format!(
        "weft_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
    ))
    .await
}

#[tokio::test]
async fn a_tls_listener_picks_certificates_by_sni_and_speaks_http1_and_http2() {
    let pki = Pki::new("tls-sni");
    let (api_cert, api_key) = pki.svid("api", &["--dns", "api.example.test"]);
    let (wild_cert, wild_key) = pki.svid("wild", &["--dns", "*.apps.example.test"]);
    let up = Upstream::start("a");
    let weft = Weft::start(&format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: web
    address: 127.0.0.1:0
    tls:
      certificates:
        - {{ cert: {api_cert}, key: {api_key} }}
        - {{ cert: {wild_cert}, key: {wild_key} }}
    routes:
      - cluster: a
clusters:
  a: {{ endpoints: ["{}"] }}
"#,
        up.addr
    ));
    let addr = weft.addr("web");

    // The exact name, over HTTP/1.1 and over HTTP/2 (chosen by ALPN).
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let r = curl(&pki, "api.example.test", addr, "/x", &[flag]);
        assert_eq!(r.code, 0, "{flag}: {}", r.stderr);
        assert_eq!(r.status, format!("200 {version}"));
        assert_eq!(
            r.upstream_saw("x-forwarded-proto").as_deref(),
            Some("https")
        );
    }
    // The wildcard certificate for a name one label below it (curl checks the name).
    let r = curl(&pki, "shop.apps.example.test", addr, "/", &["--http2"]);
    assert_eq!((r.code, r.status.as_str()), (0, "200 2"), "{}", r.stderr);
    // Two labels below: the wildcard does not cover it, the first certificate is
    // served, and curl refuses it for the name (exit 60).
    let r = curl(&pki, "a.b.apps.example.test", addr, "/", &[]);
    assert_eq!(r.code, 60, "{}", r.stderr);

    // openssl: the SNI picks the wildcard certificate, ALPN h2, the chain verifies.
    let ca = pki.ca();
    let (ok, out) = s_client(
        addr,
        &[
            "-servername",
            "shop.apps.example.test",
            "-alpn",
            "h2",
            "-CAfile",
            &ca,
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("*.apps.example.test"), "{out}");

    // TLS 1.2 is spoken, and its sessions resume.
    let sess = pki.dir.0.join("session.pem");
    let sess = sess.to_str().unwrap();
    let (ok, out) = s_client(addr, &["-tls1_2", "-CAfile", &ca, "-sess_out", sess]);
    assert!(ok && out.contains("TLSv1.2"), "{out}");
    let (ok, out) = s_client(addr, &["-tls1_2", "-CAfile", &ca, "-sess_in", sess]);
    assert!(ok && out.contains("Reused, TLSv1.2"), "{out}");
    assert!(
        weft.metric("weft_tls_handshakes_resumed_total{listener=\"web\"}")
            .await
            >= 1.0
    );

    // TLS 1.1 is refused, and counted.
    let (ok, out) = s_client(addr, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!ok, "TLS 1.1 was accepted: {out}");
    assert!(refusals(&weft, "web", "incompatible").await >= 1.0);

    // A client that does not trust the certificate gives up; the proxy counts it.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("https://127.0.0.1:{}/", addr.port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(60));
    assert!(refusals(&weft, "web", "peer_alert").await >= 1.0);

    // Plain HTTP on a TLS port is not served as HTTP.
    let r = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{}/", addr.port()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "000");
    assert!(refusals(&weft, "web", "malformed").await >= 1.0);
}

fn mesh_config(pki: &Pki, server: &(String, String), up: SocketAddr, auth: &str) -> String {
    format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: mesh
    address: 127.0.0.1:0
    tls:
      certificates: [{{ cert: {}, key: {} }}]
      client_auth: {auth}
      client_ca: {}
      trust_domain: cluster.local
      forward_client_cert: sanitize_set
    routes:
      - cluster: a
        filters: [authz]
clusters:
  a: {{ endpoints: ["{up}"] }}
filters:
  authz:
    module: {}
    config:
      rules:
        - name: shop
          action: allow
          when: {{ peers: ["spiffe://cluster.local/ns/shop/*"] }}
        - name: anonymous-reads
          action: allow
          when: {{ paths: [{{ prefix: /public }}] }}
      default_action: deny
"#,
        server.0,
        server.1,
        pki.ca(),
        component("authz").display()
    )
}

#[tokio::test]
async fn mtls_peer_identities_reach_filters_and_the_upstream() {
    let pki = Pki::new("tls-mtls");
    let server = pki.svid(
        "orders",
        &[
            "--id",
            "spiffe://cluster.local/ns/shop/sa/orders",
            "--dns",
            "orders.shop.test",
        ],
    );
    let web = pki.svid("web", &["--id", "spiffe://cluster.local/ns/shop/sa/web"]);
    let batch = pki.svid(
        "batch",
        &["--id", "spiffe://cluster.local/ns/jobs/sa/batch"],
    );
    let up = Upstream::start("a");
    let weft = Weft::start(&mesh_config(&pki, &server, up.addr, "required"));
    let addr = weft.addr("mesh");
    let host = "orders.shop.test";

    // A workload of the shop namespace: the authz filter's `peers` rule sees its
    // SPIFFE ID; the upstream gets it in x-forwarded-client-cert, and the one the
    // client sent is not passed on.
    for flag in ["--http1.1", "--http2"] {
        let r = curl(
            &pki,
            host,
            addr,
            "/orders",
            &[
                flag,
                "--cert",
                &web.0,
                "--key",
                &web.1,
                "-H",
                "x-forwarded-client-cert: By=spiffe://forged;URI=spiffe://cluster.local/ns/admin",
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.status.starts_with("200"), "{}", r.status);
        let xfcc = r.upstream_saw("x-forwarded-client-cert").unwrap();
        assert!(
            xfcc.starts_with("By=spiffe://cluster.local/ns/shop/sa/orders;Hash="),
            "{xfcc}"
        );
        assert!(
            xfcc.ends_with(";URI=spiffe://cluster.local/ns/shop/sa/web"),
            "{xfcc}"
        );
        assert!(!xfcc.contains("forged"), "{xfcc}");
    }
    // Another namespace: verified, but the rule does not allow it.
    let r = curl(
        &pki,
        host,
        addr,
        "/orders",
        &["--cert", &batch.0, "--key", &batch.1],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.status.starts_with("403"), "{}", r.status);
    // No certificate: refused at the handshake (client_auth: required).
    let r = curl(&pki, host, addr, "/public", &[]);
    assert_ne!(r.code, 0);
    assert!(refusals(&weft, "mesh", "no_client_certificate").await >= 1.0);
    drop(weft);

    // client_auth: optional serves the client without a certificate, with no identity.
    let weft = Weft::start(&mesh_config(&pki, &server, up.addr, "optional"));
    let addr = weft.addr("mesh");
    let r = curl(
        &pki,
        host,
        addr,
        "/public",
        &[
            "-H",
            "x-forwarded-client-cert: URI=spiffe://cluster.local/ns/shop/sa/web",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.status.starts_with("200"), "{}", r.status);
    assert_eq!(r.upstream_saw("x-forwarded-client-cert"), None);
    let r = curl(&pki, host, addr, "/orders", &[]);
    assert!(
        r.status.starts_with("403"),
        "anonymous client allowed by a peers rule: {}",
        r.status
    );
    let r = curl(
        &pki,
        host,
        addr,
        "/orders",
        &["--cert", &web.0, "--key", &web.1],
    );
    assert!(r.status.starts_with("200"), "{}", r.status);
}

#[tokio::test]
async fn bad_client_certificates_are_refused_and_counted_by_reason() {
    let pki = Pki::new("tls-refuse");
    let other = Pki::new("tls-refuse-other");
    let server = pki.svid("server", &["--dns", "mesh.test"]);
    let up = Upstream::start("a");
    let weft = Weft::start(&format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: mesh
    address: 127.0.0.1:0
    tls:
      certificates: [{{ cert: {}, key: {} }}]
      client_auth: required
      client_ca: {}
      trust_domain: cluster.local
    routes:
      - cluster: a
clusters:
  a: {{ endpoints: ["{}"] }}
"#,
        server.0,
        server.1,
        pki.ca(),
        up.addr
    ));
    let addr = weft.addr("mesh");
    let id = ["--id", "spiffe://cluster.local/ns/shop/sa/web"];
    let cases: Vec<(&str, (String, String))> = vec![
        (
            "expired",
            pki.svid(
                "expired",
                &[&id[..], &["--start-days", "-10", "--days", "5"]].concat(),
            ),
        ),
        (
            "not_yet_valid",
            pki.svid("future", &[&id[..], &["--start-days", "2"]].concat()),
        ),
        ("untrusted", other.svid("stranger", &id)),
        (
            "wrong_trust_domain",
            pki.svid("evil", &["--id", "spiffe://evil.example/ns/shop/sa/web"]),
        ),
        ("no_spiffe_id", pki.svid("plain", &["--dns", "client.test"])),
    ];
    for (reason, (cert, key)) in &cases {
        let before = refusals(&weft, "mesh", reason).await;
        let r = curl(
            &pki,
            "mesh.test",
            addr,
            "/",
            &["--cert", cert, "--key", key],
        );
        assert_ne!(
            r.code, 0,
            "{reason}: a bad certificate was accepted: {}",
            r.status
        );
        assert_eq!(
            refusals(&weft, "mesh", reason).await,
            before + 1.0,
            "{reason} not counted"
        );
    }
    // The good one still works after all of that.
    let good = pki.svid("good", &id);
    let r = curl(
        &pki,
        "mesh.test",
        addr,
        "/",
        &["--cert", &good.0, "--key", &good.1],
    );
    assert_eq!((r.code, r.status.as_str()), (0, "200 2"), "{}", r.stderr);
}

#[test]
fn validate_refuses_identity_rules_on_listeners_that_cannot_verify_clients() {
    let pki = Pki::new("tls-validate");
    let server = pki.svid("server", &["--dns", "mesh.test"]);
    let dir = TempDir::new("tls-validate-config");
    let path: PathBuf = dir.0.join("weft.yaml");
    let check = |yaml: &str| {
        std::fs::write(&path, yaml).unwrap();
        weft_cli(&["validate", "--config", path.to_str().unwrap()])
    };
    let with_tls = mesh_config(&pki, &server, "127.0.0.1:9".parse().unwrap(), "required");
    let (ok, out, err) = check(&with_tls);
    assert!(ok, "{out}{err}");
    // The same authz rules on a listener without client verification.
    let plain = with_tls.replace("client_auth: required", "client_auth: none");
    let plain = plain
        .lines()
        .filter(|l| !l.contains("client_ca:") && !l.contains("trust_domain:"))
        .collect::<Vec<_>>()
        .join("\n");
    let (ok, _, err) = check(&plain);
    assert!(!ok);
    assert!(err.contains("listeners[0].routes[0].filters[0]"), "{err}");
    assert!(err.contains("peer identity"), "{err}");
    assert!(err.contains(":12:"), "no line number: {err}");
    // A certificate file that does not exist names its field.
    let missing = with_tls.replace(&server.0, "/nonexistent/cert.pem");
    let (ok, _, err) = check(&missing);
    assert!(!ok);
    assert!(
        err.contains("listeners[0].tls.certificates[0].cert"),
        "{err}"
    );
    // A key that is not the certificate's names the key, and never prints it.
    let other = pki.svid("other", &["--dns", "other.test"]);
    let wrong_key = with_tls.replace(&server.1, &other.1);
    let (ok, _, err) = check(&wrong_key);
    assert!(!ok);
    assert!(
        err.contains("listeners[0].tls.certificates[0].key"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "{err}");
}

/// A weft that sends to another over mTLS: the inbound one's filter and upstream see the
/// outbound one's SPIFFE ID; an endpoint with another ID is refused.
#[tokio::test]
async fn weft_to_weft_mtls_carries_the_callers_identity() {
    let pki = Pki::new("tls-w2w");
    let orders = pki.svid(
        "orders",
        &[
            "--id",
            "spiffe://cluster.local/ns/shop/sa/orders",
            "--dns",
            "orders.shop.test",
        ],
    );
    let web = pki.svid("web", &["--id", "spiffe://cluster.local/ns/shop/sa/web"]);
    let up = Upstream::start("a");
    let inbound = Weft::start(&mesh_config(&pki, &orders, up.addr, "required"));
    let mesh = inbound.addr("mesh");
    let cluster = |alpn: &str, id: &str| {
        format!(
            r#"{{ endpoints: ["{mesh}"], tls: {{ ca: {}, spiffe_ids: ["{id}"], cert: {}, key: {}, alpn: {alpn} }} }}"#,
            pki.ca(),
            web.0,
            web.1
        )
    };
    let good = "spiffe://cluster.local/ns/shop/sa/orders";
    let outbound = Weft::start(&format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: out
    address: 127.0.0.1:0
    routes:
      - {{ match: {{ prefix: /h2/ }}, cluster: orders-h2 }}
      - {{ match: {{ prefix: /h1/ }}, cluster: orders-h1 }}
      - {{ match: {{ prefix: /by-name/ }}, cluster: orders-by-name }}
      - {{ match: {{ prefix: /impostor/ }}, cluster: impostor }}
clusters:
  orders-h2: {}
  orders-h1: {}
  orders-by-name: {{ endpoints: ["{mesh}"], tls: {{ ca: {}, server_name: orders.shop.test, cert: {}, key: {} }} }}
  impostor: {}
"#,
        cluster("[h2]", good),
        cluster("[http/1.1]", good),
        pki.ca(),
        web.0,
        web.1,
        cluster(
            "[h2, http/1.1]",
            "spiffe://cluster.local/ns/shop/sa/payments"
        ),
    ));
    let out = outbound.addr("out");
    for path in ["/h2/orders", "/h1/orders", "/by-name/orders"] {
        for _ in 0..10 {
            let r = crate::support::client::get(out, path, &[]).await;
            assert_eq!(
                r.status,
                200,
                "{path}: {:?}",
                String::from_utf8_lossy(&r.body)
            );
            let xfcc = r.upstream_saw("x-forwarded-client-cert").unwrap();
            assert!(
                xfcc.ends_with(";URI=spiffe://cluster.local/ns/shop/sa/web"),
                "{xfcc}"
            );
        }
    }
    // Connections are pooled: 30 requests, a handful of handshakes (one per worker and
    // cluster at most, two workers).
    let handshakes = inbound
        .metric("weft_tls_handshakes_total{listener=\"mesh\"}")
        .await;
    assert!((3.0..=6.0).contains(&handshakes), "{handshakes} handshakes");
    // An endpoint whose certificate carries another SPIFFE ID is not sent the request.
    let before = up.requests.load(std::sync::atomic::Ordering::Relaxed);
    let r = crate::support::client::get(out, "/impostor/orders", &[]).await;
    assert_eq!(r.status, 502, "{:?}", String::from_utf8_lossy(&r.body));
    assert!(
        String::from_utf8_lossy(&r.body).contains("is not one of the cluster's spiffe_ids"),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        up.requests.load(std::sync::atomic::Ordering::Relaxed),
        before
    );
    assert!(
        outbound
            .metric("weft_upstream_failures_total{cluster=\"impostor\",kind=\"connect-failure\"}")
            .await
            >= 1.0
    );
}

/// A real nginx as a TLS upstream that verifies weft's client certificate, over HTTP/2
/// and HTTP/1.1 as ALPN decides.
#[tokio::test]
async fn nginx_over_tls_verifies_wefts_client_certificate() {
    let pki = Pki::new("tls-nginx");
    let server = pki.svid("nginx", &["--dns", "nginx.test"]);
    let client = pki.svid(
        "weft",
        &["--id", "spiffe://cluster.local/ns/edge/sa/gateway"],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = &pki.dir.0;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
# One process (no master): killing the child stops nginx, leaving no orphaned worker.
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {};
    ssl_certificate_key {};
    ssl_client_certificate {};
    ssl_verify_client on;
    location / {{ return 200 "verify=$ssl_client_verify protocol=$server_protocol"; }}
  }}
}}
"#,
            server.0,
            server.1,
            pki.ca(),
            d = dir.display()
        ),
    )
    .unwrap();
    let mut nginx = Command::new("nginx")
        .args(["-e", &format!("{}/error.log", dir.display())])
        .args(["-p", dir.to_str().unwrap(), "-c", conf.to_str().unwrap()])
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx runs (scripts/install-test-peers.sh installs it)");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _nginx = Kill(&mut nginx);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let tls = |alpn: &str, with_cert: bool| {
        let cert = if with_cert {
            format!(", cert: {}, key: {}", client.0, client.1)
        } else {
            String::new()
        };
        format!(
            r#"{{ endpoints: ["127.0.0.1:{port}"], tls: {{ ca: {}, server_name: nginx.test, alpn: {alpn}{cert} }} }}"#,
            pki.ca()
        )
    };
    let weft = Weft::start(&format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - {{ match: {{ prefix: /h2 }}, cluster: h2 }}
      - {{ match: {{ prefix: /h1 }}, cluster: h1 }}
      - {{ match: {{ prefix: /anonymous }}, cluster: anonymous }}
clusters:
  h2: {}
  h1: {}
  anonymous: {}
"#,
        tls("[h2, http/1.1]", true),
        tls("[http/1.1]", true),
        tls("[http/1.1]", false),
    ));
    let edge = weft.addr("edge");
    let body = |r: &crate::support::client::Reply| String::from_utf8_lossy(&r.body).into_owned();
    let r = crate::support::client::get(edge, "/h2", &[]).await;
    assert_eq!(
        (r.status.as_u16(), body(&r).as_str()),
        (200, "verify=SUCCESS protocol=HTTP/2.0")
    );
    let r = crate::support::client::get(edge, "/h1", &[]).await;
    assert_eq!(
        (r.status.as_u16(), body(&r).as_str()),
        (200, "verify=SUCCESS protocol=HTTP/1.1")
    );
    // Without weft's certificate nginx refuses the request (400, "No required SSL
    // certificate was sent"), and weft passes its answer on.
    let r = crate::support::client::get(edge, "/anonymous", &[]).await;
    assert_eq!(r.status, 400, "{}", body(&r));
}

/// Certificates and trust bundles rotate by replacing their files: each change is a
/// reload; new handshakes use the new material, open connections keep going. Ten
/// rotations of both under wrk over TLS, without one failed request.
#[tokio::test]
async fn rotating_certificates_and_bundles_under_load_fails_nothing() {
    let one = Pki::new("tls-rot-1");
    let two = Pki::new("tls-rot-2");
    let dir = TempDir::new("tls-rot-live");
    let live = |name: &str| dir.0.join(name).display().to_string();
    let install = |pki: &Pki, bundle: &[&Pki], round: usize| {
        let (cert, key) = pki.svid(&format!("server-{round}"), &["--dns", "rot.test"]);
        let pem: String = bundle
            .iter()
            .map(|p| std::fs::read_to_string(p.ca()).unwrap())
            .collect();
        // Each file replaced at once (written aside, renamed over), as deploy tools do.
        for (from, to) in [(cert, "server.pem"), (key, "server.key")] {
            std::fs::copy(&from, live(&format!("{to}.new"))).unwrap();
            std::fs::rename(live(&format!("{to}.new")), live(to)).unwrap();
        }
        std::fs::write(live("bundle.pem.new"), pem).unwrap();
        std::fs::rename(live("bundle.pem.new"), live("bundle.pem")).unwrap();
    };
    install(&one, &[&one], 0);
    let up = Upstream::start("a");
    let weft = Weft::start(&format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: rot
    address: 127.0.0.1:0
    tls:
      certificates: [{{ cert: {}, key: {} }}]
      client_auth: optional
      client_ca: {}
    routes:
      - cluster: a
clusters:
  a: {{ endpoints: ["{}"] }}
"#,
        live("server.pem"),
        live("server.key"),
        live("bundle.pem"),
        up.addr
    ));
    let addr = weft.addr("rot");
    let wrk = Command::new("wrk")
        .args(["-t1", "-c8", "-d12s", "--latency"])
        .arg(format!("https://127.0.0.1:{}/", addr.port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk runs (scripts/install-test-peers.sh installs it)");
    let started = std::time::Instant::now();
    for round in 1..=10 {
        // Alternate the CA that signs the server's certificate, and the bundle.
        let (signer, bundle): (&Pki, Vec<&Pki>) = if round % 2 == 1 {
            (&two, vec![&one, &two])
        } else {
            (&one, vec![&one])
        };
        install(signer, &bundle, round);
        // Served once a new handshake verifies against the new signer.
        let mut served = false;
        for _ in 0..100 {
            if curl(signer, "rot.test", addr, "/", &[]).code == 0 {
                served = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(served, "round {round}: the new certificate was not served");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(12),
        "the rotations outlasted the load"
    );
    let out = wrk.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}");
    assert!(!report.contains("Socket errors"), "{report}");
    let requests: u64 = report
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(requests > 1000, "{report}");
    assert!(
        weft.metric("weft_config_reloads_total{outcome=\"applied\"}")
            .await
            >= 10.0
    );

    // The last bundle trusts only the first CA: its clients get an identity, the
    // second CA's are refused.
    let a = one.svid("client-a", &["--id", "spiffe://cluster.local/ns/a/sa/a"]);
    let b = two.svid("client-b", &["--id", "spiffe://cluster.local/ns/b/sa/b"]);
    let r = curl(
        &one,
        "rot.test",
        addr,
        "/",
        &["--cert", &a.0, "--key", &a.1],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = curl(
        &one,
        "rot.test",
        addr,
        "/",
        &["--cert", &b.0, "--key", &b.1],
    );
    assert_ne!(r.code, 0, "a client of a CA no longer trusted was served");
}

/// Each worker runs at most `max_handshakes` handshakes at once: clients that open
/// connections and never finish the handshake cannot queue up CPU work without bound.
#[tokio::test]
async fn handshakes_beyond_a_workers_limit_are_refused_at_once() {
    let pki = Pki::new("tls-limit");
    let server = pki.svid("server", &["--dns", "limit.test"]);
    let up = Upstream::start("a");
    let weft = Weft::start_with(
        &format!(
            r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    tls:
      certificates: [{{ cert: {}, key: {} }}]
      max_handshakes: 2
      handshake_timeout: 5s
    routes:
      - cluster: a
clusters:
  a: {{ endpoints: ["{}"] }}
"#,
            server.0, server.1, up.addr
        ),
        &["--workers", "1"],
    );
    let addr = weft.addr("edge");
    // Two connections that never send a ClientHello hold both slots.
    let idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = curl(&pki, "limit.test", addr, "/", &[]);
    assert_ne!(r.code, 0, "a third handshake was run: {}", r.status);
    assert!(refusals(&weft, "edge", "overloaded").await >= 1.0);
    // Once they go, handshakes run again.
    drop(idle);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = curl(&pki, "limit.test", addr, "/", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}
