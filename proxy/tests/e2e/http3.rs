//! HTTP/3 listeners, with Python's aioquic as the client: the same routes, filter
//! chains and TLS (client certificates, peer identity) as TCP listeners; bodies both
//! ways; TCP listeners pointing at it with Alt-Svc.

use std::process::Command;

use crate::support::filters::{component, repo};
use crate::support::proxy::Weft;
use crate::support::upstream::Upstream;
use crate::tls::{curl, Pki};

/// `h3get.py` (aioquic, installed by scripts/install-test-peers.sh): its JSON answer.
fn h3(pki: &Pki, port: u16, path: &str, args: &[&str]) -> serde_json::Value {
    let python = repo().join("target/test-tools/py/bin/python");
    let out = Command::new(&python)
        .arg(repo().join("proxy/tests/peers/h3get.py"))
        .arg(format!("https://h3.test:{port}{path}"))
        .args(["--connect", "127.0.0.1", "--ca", &pki.ca()])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} (run scripts/install-test-peers.sh): {e}",
                python.display()
            )
        });
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "h3get: {e}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn http3_serves_the_same_routes_filters_and_identities_as_tcp() {
    let pki = Pki::new("h3");
    let server = pki.svid("server", &["--dns", "h3.test"]);
    let web = pki.svid("web", &["--id", "spiffe://cluster.local/ns/shop/sa/web"]);
    let up = Upstream::start("a");
    // One port number for both: TCP for HTTP/1.1 and HTTP/2, UDP for HTTP/3.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tls = format!(
        r#"{{ certificates: [{{ cert: {}, key: {} }}], client_auth: optional, client_ca: {}, forward_client_cert: sanitize_set }}"#,
        server.0,
        server.1,
        pki.ca()
    );
    let weft = Weft::start(&format!(
        r#"
admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: quic
    address: 127.0.0.1:{port}
    protocol: http3
    tls: {tls}
    routes:
      - {{ cluster: a, filters: [request-id] }}
  - name: tcp
    address: 127.0.0.1:{port}
    alt_svc: 'h3=":{port}"; ma=86400'
    tls: {tls}
    routes:
      - {{ cluster: a, filters: [request-id] }}
clusters:
  a: {{ endpoints: ["{}"] }}
filters:
  request-id:
    module: {}
"#,
        up.addr,
        component("request-id").display()
    ));

    // A GET: routed, the filter ran (x-request-id on the answer and at the upstream).
    let r = h3(&pki, port, "/orders?x=1", &[]);
    assert_eq!(r["status"], 200, "{r}");
    let id = r["headers"]["x-request-id"].as_str().unwrap().to_owned();
    let echoed: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["headers"]["x-request-id"][0], id.as_str());
    assert_eq!(echoed["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(echoed["uri"], "/orders?x=1");
    // No client certificate: no identity, no x-forwarded-client-cert.
    assert!(echoed["headers"]["x-forwarded-client-cert"].is_null());

    // A client certificate: its SPIFFE ID reaches the upstream.
    let r = h3(&pki, port, "/", &["--cert", &web.0, "--key", &web.1]);
    let echoed: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    let xfcc = echoed["headers"]["x-forwarded-client-cert"][0]
        .as_str()
        .unwrap();
    assert!(
        xfcc.ends_with(";URI=spiffe://cluster.local/ns/shop/sa/web"),
        "{xfcc}"
    );

    // Bodies both ways, larger than a flow-control window.
    let r = h3(
        &pki,
        port,
        "/upload",
        &["--method", "POST", "--body-size", "300000"],
    );
    let echoed: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["body_len"], 300000, "{r}");
    let r = h3(&pki, port, "/bytes/2000000", &[]);
    assert_eq!(
        (r["status"].as_u64(), r["body_len"].as_u64()),
        (Some(200), Some(2_000_000))
    );
    // The upstream's status comes through.
    assert_eq!(h3(&pki, port, "/status/418", &[])["status"], 418);

    // The TCP listener on the same port number points clients at HTTP/3.
    let r = curl(&pki, "h3.test", weft.addr("tcp"), "/", &["-D", "-"]);
    assert!(
        r.body.to_ascii_lowercase().contains("alt-svc: h3=\":"),
        "{}",
        r.body
    );
    assert!(
        weft.metric("weft_tls_handshakes_total{listener=\"quic\"}")
            .await
            >= 4.0,
        "QUIC handshakes not counted"
    );
}
