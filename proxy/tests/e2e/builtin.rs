//! The built-in filters through the real proxy, as a user sees them: canary splits,
//! retries over a flaky upstream and their budget in an outage, a rate limit across
//! workers, every JWT failure mode, external authorization, and fault injection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::client::{self, empty, request, Conn, Version};
use crate::support::filters::{component, repo};
use crate::support::proxy::Weft;
use crate::support::upstream::Upstream;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use http::Method;
use serde_json::{json, Value};

fn module(name: &str) -> String {
    component(name).display().to_string()
}

fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn a_canary_split_sends_its_share() {
    let stable = Upstream::start("stable");
    let canary = Upstream::start("canary");
    let config = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: stable
        filters: [split]
clusters:
  stable: {{ endpoints: ["{}"] }}
  canary: {{ endpoints: ["{}"] }}
filters:
  split:
    module: {}
    config:
      routes:
        - split: [{{ cluster: stable, weight: 90 }}, {{ cluster: canary, weight: 10 }}]
"#,
        stable.addr,
        canary.addr,
        module("router")
    );
    let weft = Weft::start(&config);
    let addr = weft.addr("edge");
    let mut c = Conn::open(addr, Version::H1).await;
    let mut to_canary = 0;
    for _ in 0..2000 {
        let r = c
            .send(request(Version::H1, addr, Method::GET, "/x", &[], empty()))
            .await;
        if r.json()["server"] == "canary" {
            to_canary += 1;
        }
    }
    // 10% of 2000 is 200, with a standard deviation of 13.4: 3.7 of them either way.
    assert!(
        (150..=250).contains(&to_canary),
        "canary got {to_canary} of 2000"
    );
    assert_eq!(canary.requests.load(Ordering::Relaxed), to_canary);
}

fn retry_config(up: SocketAddr, retry: &str) -> String {
    format!(
        r#"
admin:
  address: 127.0.0.1:0
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: a
        filters: [retry]
clusters:
  a: {{ endpoints: ["{up}"] }}
filters:
  retry:
    module: {}
    config: {retry}
"#,
        module("retry")
    )
}

#[tokio::test]
async fn retries_hide_a_flaky_upstream() {
    let up = Upstream::start("flaky");
    let retry = r#"{ max_attempts: 5, backoff: { base: 1ms, max: 5ms }, budget: { ratio: 1.0, min_per_second: 50, window: 10s } }"#;
    let weft = Weft::start(&retry_config(up.addr, retry));
    let addr = weft.addr("edge");
    let mut c = Conn::open(addr, Version::H1).await;
    let mut failed = 0;
    let mut retried_responses = 0;
    for _ in 0..1000 {
        let r = c
            .send(request(
                Version::H1,
                addr,
                Method::GET,
                "/flaky/30",
                &[],
                empty(),
            ))
            .await;
        if r.status != 200 {
            failed += 1;
        }
        if r.header("x-weft-attempts").is_some() {
            retried_responses += 1;
            if r.status == 200 {
                assert!(
                    r.upstream_saw("x-weft-retry-attempt").is_some(),
                    "a retry is marked upstream"
                );
            }
        }
    }
    assert!(
        failed < 10,
        "{failed} of 1000 requests failed against an upstream failing 30% of the time"
    );
    assert!(
        retried_responses > 200,
        "retries happened: {retried_responses}"
    );
    assert!(
        weft.metric(r#"weft_filter_retries_total{filter="retry",reason="status"}"#)
            .await
            > 250.0
    );
}

#[tokio::test]
async fn the_budget_stops_retries_when_everything_fails() {
    let up = Upstream::start("down");
    let retry = r#"{ max_attempts: 3, backoff: { base: 1ms, max: 2ms }, budget: { ratio: 0.2, min_per_second: 1, window: 10s } }"#;
    let weft = Weft::start(&retry_config(up.addr, retry));
    let addr = weft.addr("edge");
    let mut c = Conn::open(addr, Version::H1).await;
    for _ in 0..300 {
        let r = c
            .send(request(
                Version::H1,
                addr,
                Method::GET,
                "/status/503",
                &[],
                empty(),
            ))
            .await;
        assert_eq!(r.status, 503);
    }
    let attempts = up.requests.load(Ordering::Relaxed);
    // Without a budget: 900 attempts. With it: 300 + 0.2 x 300 + 1/s x 10 s = 370.
    assert!(
        (340..=380).contains(&attempts),
        "{attempts} attempts for 300 requests"
    );
    assert!(
        weft.metric(r#"weft_filter_retry_budget_exhausted_total{filter="retry"}"#)
            .await
            >= 200.0
    );
}

#[tokio::test]
async fn a_request_body_too_large_to_replay_is_not_retried() {
    let up = Upstream::start("down");
    let retry = r#"{ retry_on: [5xx], retry_non_idempotent: true, replay_limit: 1KiB, backoff: { base: 1ms, max: 1ms } }"#;
    let weft = Weft::start(&retry_config(up.addr, retry));
    let addr = weft.addr("edge");
    let mut c = Conn::open(addr, Version::H1).await;
    let small = c
        .send(request(
            Version::H1,
            addr,
            Method::POST,
            "/status/500",
            &[],
            client::bytes(vec![b'x'; 500]),
        ))
        .await;
    assert_eq!(
        small.header("x-weft-attempts"),
        Some("3"),
        "a small body is replayed"
    );
    let before = up.requests.load(Ordering::Relaxed);
    let big = c
        .send(request(
            Version::H1,
            addr,
            Method::POST,
            "/status/500",
            &[],
            client::bytes(vec![b'x'; 4096]),
        ))
        .await;
    assert_eq!(big.status, 500);
    assert_eq!(
        up.requests.load(Ordering::Relaxed) - before,
        1,
        "not retried"
    );
    assert_eq!(
        weft.metric(r#"weft_filter_retry_not_replayable_total{filter="retry"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn retries_cover_connection_failures_to_another_endpoint() {
    let up = Upstream::start("alive");
    let config = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: two
        filters: [retry]
clusters:
  two: {{ endpoints: ["{}", "{}"] }}
filters:
  retry:
    module: {}
    config: {{ backoff: {{ base: 1ms, max: 1ms }} }}
"#,
        closed_port(),
        up.addr,
        module("retry")
    );
    let weft = Weft::start(&config);
    let addr = weft.addr("edge");
    for _ in 0..20 {
        let r = client::get(addr, "/x", &[]).await;
        assert_eq!(
            r.status, 200,
            "the dead endpoint's connect failures are retried on the live one"
        );
    }
}

#[tokio::test]
async fn a_rate_limit_holds_across_all_workers() {
    let up = Upstream::start("a");
    let config = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: a
        filters: [limit]
clusters:
  a: {{ endpoints: ["{}"] }}
filters:
  limit:
    module: {}
    config:
      rules: [{{ name: all, key: global, rate: 100, per: 1s, burst: 100 }}]
"#,
        up.addr,
        module("ratelimit")
    );
    let weft = Weft::start_with(&config, &["--workers", "2"]);
    let addr = weft.addr("edge");
    let started = Instant::now();
    let run_for = Duration::from_secs(3);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut limited) = (0u64, 0u64);
            let mut c = Conn::open(addr, Version::H1).await;
            while started.elapsed() < run_for {
                let r = c
                    .send(request(Version::H1, addr, Method::GET, "/", &[], empty()))
                    .await;
                match r.status.as_u16() {
                    200 => ok += 1,
                    429 => {
                        assert!(r.header("retry-after").is_some());
                        assert!(r
                            .header("ratelimit")
                            .is_some_and(|v| v.starts_with("\"all\";r=0")));
                        limited += 1
                    }
                    other => panic!("status {other}"),
                }
            }
            (ok, limited)
        }));
    }
    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        let (o, l) = t.await.unwrap();
        ok += o;
        limited += l;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let expected = 100.0 + 100.0 * elapsed;
    assert!(
        limited > ok,
        "the clients asked for much more than the limit ({ok} allowed, {limited} limited)"
    );
    assert!(
        (ok as f64 - expected).abs() < expected * 0.1,
        "{ok} allowed in {elapsed:.2}s; 100 burst + 100/s is {expected:.0}"
    );
}

// --- authz -------------------------------------------------------------------------

const HS_SECRET: &[u8] = b"a shared secret of the test suite, 32+ bytes long";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(alg: &str, kid: &str, claims: &Value) -> String {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let testdata = repo().join("filters/authz/testdata");
    let sig = match alg {
        "HS256" => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HS_SECRET).unwrap();
            mac.update(signed.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "RS256" => {
            use rsa::pkcs8::DecodePrivateKey;
            use rsa::signature::{SignatureEncoding, Signer};
            let pem = std::fs::read_to_string(testdata.join("rsa.pk8.pem")).unwrap();
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
            rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)
                .sign(signed.as_bytes())
                .to_vec()
        }
        "ES256" => {
            use p256::ecdsa::signature::Signer;
            use p256::pkcs8::DecodePrivateKey;
            let pem = std::fs::read_to_string(testdata.join("ec.pk8.pem")).unwrap();
            let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).unwrap();
            let sig: p256::ecdsa::Signature = key.sign(signed.as_bytes());
            sig.to_bytes().to_vec()
        }
        other => panic!("{other}"),
    };
    format!("{signed}.{}", b64(&sig))
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": "https://issuer.test", "aud": "orders", "sub": "user-7", "exp": now() + 3600, "role": "reader"});
    if let (Value::Object(base), Value::Object(more)) = (&mut c, extra) {
        base.extend(more);
    }
    c
}

fn authz_config(up: SocketAddr) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - cluster: a
        filters: [authz]
clusters:
  a: {{ endpoints: ["{up}"] }}
filters:
  authz:
    module: {}
    files: {{ jwks: {} }}
    config:
      jwt:
        issuer: https://issuer.test
        audiences: [orders]
        jwks_file: jwks
        forward_claims: {{ sub: x-user-id }}
      rules:
        - name: admins
          action: allow
          when: {{ paths: [{{ prefix: /admin }}], claims: {{ role: admin }} }}
        - name: no-admin
          action: deny
          when: {{ paths: [{{ prefix: /admin }}] }}
      default_action: allow
"#,
        module("authz"),
        repo().join("filters/authz/testdata/jwks.json").display()
    )
}

#[tokio::test]
async fn every_jwt_failure_mode_is_answered_as_expected() {
    let up = Upstream::start("a");
    let weft = Weft::start(&authz_config(up.addr));
    let addr = weft.addr("edge");
    let bearer = |t: &str| format!("Bearer {t}");

    for (alg, kid) in [("HS256", "hs-1"), ("RS256", "rsa-1"), ("ES256", "ec-1")] {
        let token = sign(alg, kid, &claims(json!({})));
        let r = client::get(
            addr,
            "/orders",
            &[("authorization", &bearer(&token)), ("x-user-id", "forged")],
        )
        .await;
        assert_eq!(r.status, 200, "{alg}");
        assert_eq!(
            r.upstream_saw("x-user-id").as_deref(),
            Some("user-7"),
            "{alg}: the claim, not the forged header"
        );
    }

    let r = client::get(addr, "/orders", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"weft\""));

    let expired = sign("HS256", "hs-1", &claims(json!({"exp": now() - 600})));
    let tampered = {
        let t = sign("RS256", "rsa-1", &claims(json!({})));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims(json!({"role": "admin"})).to_string());
        parts[1] = &forged;
        parts.join(".")
    };
    let cases = [
        (expired, "token expired"),
        (
            sign("HS256", "hs-1", &claims(json!({"nbf": now() + 600}))),
            "token not yet valid",
        ),
        (
            sign(
                "ES256",
                "ec-1",
                &claims(json!({"iss": "https://other.test"})),
            ),
            "wrong issuer",
        ),
        (
            sign("ES256", "ec-1", &claims(json!({"aud": "billing"}))),
            "wrong audience",
        ),
        (tampered, "invalid signature"),
        (
            sign("RS256", "rsa-2", &claims(json!({}))),
            "no key matches the token",
        ),
        ("a.b".to_owned(), "malformed token"),
    ];
    for (token, reason) in cases {
        let r = client::get(addr, "/orders", &[("authorization", &bearer(&token))]).await;
        assert_eq!(r.status, 401, "{reason}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_token\"") && challenge.contains(reason),
            "{reason}: {challenge}"
        );
    }

    let reader = sign("HS256", "hs-1", &claims(json!({})));
    let admin = sign("HS256", "hs-1", &claims(json!({"role": "admin"})));
    assert_eq!(
        client::get(addr, "/admin/x", &[("authorization", &bearer(&reader))])
            .await
            .status,
        403
    );
    assert_eq!(
        client::get(addr, "/admin/x", &[("authorization", &bearer(&admin))])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn external_authorization_decides_in_a_call_to_a_cluster() {
    let app = Upstream::start("app");
    let authz = Upstream::start("authz");
    let config = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: strict
        match: {{ prefix: /strict }}
        cluster: app
        filters: [ext]
      - name: lenient
        match: {{ prefix: /lenient }}
        cluster: app
        filters: [ext-open]
clusters:
  app: {{ endpoints: ["{}"] }}
  authz: {{ endpoints: ["{}"] }}
  gone: {{ endpoints: ["{}"] }}
filters:
  ext:
    module: {m}
    config:
      ext_authz: {{ cluster: authz, path_prefix: /check, forward_headers: [authorization], upstream_headers: [x-tenant] }}
  ext-open:
    module: {m}
    config:
      ext_authz: {{ cluster: gone, failure_mode_allow: true }}
"#,
        app.addr,
        authz.addr,
        closed_port(),
        m = module("ext-authz")
    );
    let weft = Weft::start(&config);
    let addr = weft.addr("edge");
    for version in [Version::H1, Version::H2] {
        let mut c = Conn::open(addr, version).await;
        let ok = c
            .send(request(
                version,
                addr,
                Method::GET,
                "/strict/a",
                &[("authorization", "Bearer good")],
                empty(),
            ))
            .await;
        assert_eq!(ok.status, 200);
        assert_eq!(
            ok.upstream_saw("x-tenant").as_deref(),
            Some("acme"),
            "the service's header reached the upstream"
        );
        let denied = c
            .send(request(
                version,
                addr,
                Method::GET,
                "/strict/a",
                &[("authorization", "Bearer bad")],
                empty(),
            ))
            .await;
        assert_eq!(denied.status, 403);
        assert_eq!(denied.header("x-authz"), Some("denied"));
        assert_eq!(&denied.body[..], b"denied by the authorization service");
    }
    // Concurrent checks: the worker serves others while filters wait on the service.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(tokio::spawn(async move {
            client::get(addr, "/strict/b", &[("authorization", "Bearer good")])
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let open = client::get(addr, "/lenient", &[]).await;
    assert_eq!(
        open.status, 200,
        "the service is unreachable and failure_mode_allow is on"
    );
    assert!(app.requests.load(Ordering::Relaxed) >= 23);
}

#[tokio::test]
async fn faults_abort_and_delay_on_request() {
    let up = Upstream::start("a");
    let config = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ prefix: /chaos }}
        cluster: a
        filters: [chaos]
      - cluster: a
        filters: [asked]
clusters:
  a: {{ endpoints: ["{}"] }}
filters:
  chaos:
    module: {m}
    config: {{ abort: {{ percent: 100, status: 503 }} }}
  asked:
    module: {m}
    config: {{ abort: {{ percent: 0 }}, header_override: true }}
"#,
        up.addr,
        m = module("fault")
    );
    let weft = Weft::start(&config);
    let addr = weft.addr("edge");
    let r = client::get(addr, "/chaos/x", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-weft-fault"), Some("abort"));
    assert_eq!(
        client::get(addr, "/calm", &[]).await.status,
        200,
        "0% never aborts"
    );
    assert_eq!(
        client::get(addr, "/calm", &[("x-weft-fault-abort", "418")])
            .await
            .status,
        418
    );
    let started = Instant::now();
    let r = client::get(addr, "/calm", &[("x-weft-fault-delay", "300")]).await;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "delayed {:?}",
        started.elapsed()
    );
    assert_eq!(
        up.requests.load(Ordering::Relaxed),
        2,
        "aborted requests never reach the upstream"
    );
}
