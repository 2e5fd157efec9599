//! Tokens signed with the keys in testdata/ (test keys, never for real use), checked
//! through the native harness.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use serde_json::{json, Value};
use weft_sdk::testing::{Harness, TestHost, TestRequest};
use weft_sdk::Action;

use super::*;

const JWKS: &str = include_str!("../testdata/jwks.json");
const RSA_KEY: &str = include_str!("../testdata/rsa.pk8.pem");
const EC_KEY: &str = include_str!("../testdata/ec.pk8.pem");
const HS_SECRET: &[u8] = b"a shared secret of the test suite, 32+ bytes long";
/// The test host's clock: 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(alg: &str, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = match alg {
        "HS256" => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HS_SECRET).unwrap();
            mac.update(signed.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "RS256" => {
            use rsa::pkcs8::DecodePrivateKey;
            use rsa::signature::{SignatureEncoding, Signer};
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_KEY).unwrap();
            rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)
                .sign(signed.as_bytes())
                .to_vec()
        }
        "ES256" => {
            use p256::ecdsa::signature::Signer;
            use p256::pkcs8::DecodePrivateKey;
            let key = p256::ecdsa::SigningKey::from_pkcs8_pem(EC_KEY).unwrap();
            let sig: p256::ecdsa::Signature = key.sign(signed.as_bytes());
            sig.to_bytes().to_vec()
        }
        other => panic!("{other}"),
    };
    format!("{signed}.{}", b64(&sig))
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": "https://issuer.test", "aud": "orders", "sub": "user-7", "exp": NOW + 3600, "role": "reader"});
    if let (Value::Object(base), Value::Object(more)) = (&mut c, extra) {
        base.extend(more);
    }
    c
}

fn config(extra: Value) -> String {
    let mut jwt = json!({
        "issuer": "https://issuer.test",
        "audiences": ["orders"],
        "jwks": serde_json::from_str::<Value>(JWKS).unwrap(),
        "forward_claims": {"sub": "x-user-id"},
    });
    if let Some(Value::Object(j)) = extra.get("jwt") {
        jwt.as_object_mut().unwrap().extend(j.clone());
    }
    let mut c = json!({"jwt": jwt});
    if let Value::Object(more) = extra {
        for (k, v) in more {
            if k != "jwt" {
                c[k] = v;
            }
        }
    }
    c.to_string()
}

fn run(h: &Harness<Authz>, req: &mut TestRequest) -> Action {
    h.on_request_headers(req)
}

fn with_token(path: &str, token: &str) -> TestRequest {
    TestRequest::get(path).header("authorization", &format!("Bearer {token}"))
}

fn status(a: &Action) -> Option<u16> {
    match a {
        Action::Respond(r) => Some(r.status),
        _ => None,
    }
}

fn challenge(a: &Action) -> String {
    match a {
        Action::Respond(r) => r
            .header_value("www-authenticate")
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

#[test]
fn valid_tokens_of_every_algorithm_pass_and_forward_claims() {
    let h = Harness::<Authz>::new(&config(json!({}))).unwrap();
    for (alg, kid) in [("HS256", "hs-1"), ("RS256", "rsa-1"), ("ES256", "ec-1")] {
        let mut req = with_token("/orders", &sign(alg, kid, &claims(json!({}))));
        assert_eq!(run(&h, &mut req), Action::Continue, "{alg}");
        assert_eq!(
            req.header_now("x-user-id").as_deref(),
            Some("user-7"),
            "{alg}"
        );
        assert_eq!(req.property_now("jwt.sub"), Some("user-7"));
        assert_eq!(req.property_now("jwt.role"), Some("reader"));
    }
}

#[test]
fn a_missing_token_is_401_with_a_bearer_challenge() {
    let h = Harness::<Authz>::new(&config(json!({}))).unwrap();
    let a = run(&h, &mut TestRequest::get("/orders"));
    assert_eq!(status(&a), Some(401));
    assert_eq!(challenge(&a), "Bearer realm=\"weft\"");
    let a = run(
        &h,
        &mut TestRequest::get("/").header("authorization", "Basic dXNlcjpwdw=="),
    );
    assert_eq!(status(&a), Some(401), "not a bearer token");
}

#[test]
fn each_invalid_token_is_401_with_its_reason() {
    let h = Harness::<Authz>::new(&config(json!({}))).unwrap();
    let good = sign("RS256", "rsa-1", &claims(json!({})));
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        parts[1] = b64(claims(json!({"role": "admin"})).to_string().as_bytes());
        parts.join(".")
    };
    let none_alg = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims(json!({})).to_string().as_bytes())
    );
    let cases = [
        (
            sign("HS256", "hs-1", &claims(json!({"exp": NOW - 120}))),
            "token expired",
        ),
        (
            sign("HS256", "hs-1", &claims(json!({"nbf": NOW + 600}))),
            "token not yet valid",
        ),
        (
            sign(
                "HS256",
                "hs-1",
                &claims(json!({"iss": "https://evil.test"})),
            ),
            "wrong issuer",
        ),
        (
            sign("HS256", "hs-1", &claims(json!({"aud": ["billing"]}))),
            "wrong audience",
        ),
        (tampered, "invalid signature"),
        (none_alg, "algorithm none not accepted"),
        (
            sign("RS256", "rsa-unknown", &claims(json!({}))),
            "no key matches the token",
        ),
        ("not.a.jwt".to_owned(), "malformed token"),
    ];
    for (token, reason) in cases {
        let a = run(&h, &mut with_token("/", &token));
        assert_eq!(status(&a), Some(401), "{reason}");
        let c = challenge(&a);
        assert!(
            c.contains("error=\"invalid_token\"") && c.contains(reason),
            "{reason}: {c}"
        );
    }
}

#[test]
fn clock_skew_is_tolerated() {
    let h = Harness::<Authz>::new(&config(json!({"jwt": {"clock_skew": "60s"}}))).unwrap();
    let barely_expired = sign("ES256", "ec-1", &claims(json!({"exp": NOW - 30})));
    assert_eq!(
        run(&h, &mut with_token("/", &barely_expired)),
        Action::Continue
    );
}

#[test]
fn a_cached_token_is_still_refused_once_expired() {
    let h = Harness::<Authz>::new(&config(json!({}))).unwrap();
    let token = sign("RS256", "rsa-1", &claims(json!({"exp": NOW + 100})));
    assert_eq!(run(&h, &mut with_token("/", &token)), Action::Continue);
    assert_eq!(
        run(&h, &mut with_token("/", &token)),
        Action::Continue,
        "from the cache"
    );
    h.host().advance(Duration::from_secs(200));
    assert_eq!(status(&run(&h, &mut with_token("/", &token))), Some(401));
}

#[test]
fn forged_claim_headers_are_removed() {
    let h = Harness::<Authz>::new(&config(json!({"jwt": {"required": false}}))).unwrap();
    let mut req = TestRequest::get("/").header("x-user-id", "admin");
    assert_eq!(run(&h, &mut req), Action::Continue);
    assert_eq!(req.header_now("x-user-id"), None);
}

#[test]
fn rules_allow_and_deny_with_401_or_403() {
    let rules = json!({
        "jwt": {"required": false},
        "rules": [
            {"name": "admins", "action": "allow", "when": {"paths": [{"prefix": "/admin"}], "claims": {"role": ["admin", "ops"]}}},
            {"name": "no-admin", "action": "deny", "when": {"paths": [{"prefix": "/admin"}]}},
            {"name": "mesh", "action": "allow", "when": {"methods": ["GET"], "peers": ["spiffe://cluster.local/ns/shop/*"]}},
            {"name": "readers", "action": "allow", "when": {"authenticated": true}},
        ]
    });
    let h = Harness::<Authz>::new(&config(rules)).unwrap();
    let admin = sign("HS256", "hs-1", &claims(json!({"role": "admin"})));
    let reader = sign("HS256", "hs-1", &claims(json!({})));
    assert_eq!(
        run(&h, &mut with_token("/admin/users", &admin)),
        Action::Continue
    );
    assert_eq!(
        status(&run(&h, &mut with_token("/admin/users", &reader))),
        Some(403),
        "authenticated, not allowed"
    );
    assert_eq!(
        status(&run(&h, &mut TestRequest::get("/admin/users"))),
        Some(401),
        "anonymous: authenticate first"
    );
    assert_eq!(
        run(&h, &mut with_token("/orders", &reader)),
        Action::Continue
    );
    let mesh = TestRequest::get("/orders").peer_identity("spiffe://cluster.local/ns/shop/sa/web");
    assert_eq!(
        run(&h, &mut mesh.clone()),
        Action::Continue,
        "peer identity rule"
    );
    let outsider =
        TestRequest::get("/orders").peer_identity("spiffe://cluster.local/ns/other/sa/x");
    assert_eq!(
        status(&run(&h, &mut outsider.clone())),
        Some(401),
        "default deny, anonymous"
    );
    assert_eq!(
        h.host()
            .metric("authz_decisions_total", &[("decision", "forbidden")]),
        1.0
    );
}

#[test]
fn without_jwt_rules_deny_with_403() {
    let h = Harness::<Authz>::new(
        r#"{"rules": [{"name": "get-only", "action": "allow", "when": {"methods": ["GET"]}}]}"#,
    )
    .unwrap();
    assert_eq!(run(&h, &mut TestRequest::get("/")), Action::Continue);
    assert_eq!(status(&run(&h, &mut TestRequest::post("/"))), Some(403));
}

#[test]
fn keys_can_come_from_a_file() {
    let cfg = r#"{"jwt": {"jwks_file": "keys"}}"#;
    let files = [("keys".to_owned(), JWKS.as_bytes().to_vec())]
        .into_iter()
        .collect();
    let h = Harness::<Authz>::with_context(cfg, "authz", files, TestHost::new()).unwrap();
    let token = sign("ES256", "ec-1", &claims(json!({})));
    assert_eq!(run(&h, &mut with_token("/", &token)), Action::Continue);
}

#[test]
fn bad_configurations_name_their_field() {
    let err = Harness::<Authz>::new(r#"{"jwt": {}}"#).err().unwrap();
    assert!(
        err.starts_with("jwt: give exactly one of jwks or jwks_file"),
        "{err}"
    );
    let err = Harness::<Authz>::new(r#"{"jwt": {"jwks_file": "missing"}}"#)
        .err()
        .unwrap();
    assert!(
        err.starts_with("jwt.jwks_file: no file named \"missing\""),
        "{err}"
    );
    let err = Harness::<Authz>::new(
        r#"{"jwt": {"jwks": {"keys": [{"kty": "RSA", "kid": "k", "n": "!!", "e": "AQAB"}]}}}"#,
    )
    .err()
    .unwrap();
    assert!(
        err.starts_with("jwt.jwks: key k: n is not base64url"),
        "{err}"
    );
    let err = Harness::<Authz>::new(
        r#"{"rules": [{"name": "r", "action": "allow", "when": {"claims": {"a": "b"}}}]}"#,
    )
    .err()
    .unwrap();
    assert!(err.starts_with("rules[0].when.claims"), "{err}");
    #[cfg(not(feature = "ext-authz"))]
    {
        let err = Harness::<Authz>::new(r#"{"ext_authz": {"cluster": "a"}}"#)
            .err()
            .unwrap();
        assert!(err.contains("use the ext-authz module"), "{err}");
    }
}

#[cfg(feature = "ext-authz")]
mod ext_authz {
    use super::*;
    use weft_sdk::http::{CallError, OutboundResponse};
    use weft_sdk::UpstreamFailure;

    fn harness(extra: &str) -> Harness<Authz> {
        let cfg = format!(
            r#"{{"ext_authz": {{"cluster": "authz", "path_prefix": "/check", "upstream_headers": ["x-tenant"]{extra}}}}}"#
        );
        Harness::<Authz>::new(&cfg).unwrap()
    }

    #[test]
    fn the_service_allows_and_its_headers_reach_the_upstream() {
        let h = harness("");
        h.host().mock_cluster("authz", |req| {
            assert_eq!(req.path, "/check/orders/1");
            assert_eq!(req.header_value("authorization"), Some("Bearer t"));
            Ok(OutboundResponse::new(200).with_header("x-tenant", "acme"))
        });
        let mut req = TestRequest::get("/orders/1").header("authorization", "Bearer t");
        assert_eq!(run(&h, &mut req), Action::Continue);
        assert_eq!(req.header_now("x-tenant").as_deref(), Some("acme"));
    }

    #[test]
    fn the_services_refusal_is_what_the_client_gets() {
        let h = harness("");
        h.host().mock_cluster("authz", |_| {
            Ok(OutboundResponse::new(403)
                .with_body("no entry")
                .with_header("x-why", "policy"))
        });
        let Action::Respond(r) = run(&h, &mut TestRequest::get("/")) else {
            panic!()
        };
        assert_eq!(r.status, 403);
        assert_eq!(r.body, b"no entry");
        assert_eq!(r.header_value("x-why"), Some("policy"));
    }

    #[test]
    fn an_unreachable_service_fails_closed_or_open_as_configured() {
        let h = harness("");
        h.host().mock_cluster("authz", |_| {
            Err(CallError::Failed(UpstreamFailure::ConnectFailure))
        });
        assert_eq!(status(&run(&h, &mut TestRequest::get("/"))), Some(403));
        let h = harness(r#", "failure_mode_allow": true"#);
        h.host().mock_cluster("authz", |_| {
            Err(CallError::Failed(UpstreamFailure::Timeout))
        });
        assert_eq!(run(&h, &mut TestRequest::get("/")), Action::Continue);
        assert_eq!(
            h.host()
                .metric("authz_decisions_total", &[("decision", "ext_unavailable")]),
            1.0
        );
    }
}
