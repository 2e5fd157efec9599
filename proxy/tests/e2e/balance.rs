//! Load balancing end to end: real upstreams on loopback behind the real `weft` binary,
//! one cluster per policy, traffic counted at the upstreams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::client::{self, empty, request, Conn, Version};
use crate::support::proxy::{weft_cli, TempDir, Weft};
use crate::support::upstream::Upstream;
use http::Method;

fn config(cluster: &str) -> String {
    format!(
        r#"
admin:
  address: 127.0.0.1:0
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ cluster: c }}]
clusters:
  c:
{cluster}
"#
    )
}

fn endpoints(ups: &[&Upstream]) -> String {
    ups.iter()
        .map(|u| format!("\"{}\"", u.addr))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which upstream answered each user's requests, for `users` users asking `times` each.
async fn placement(addr: SocketAddr, users: usize, times: usize) -> HashMap<String, String> {
    let mut c = Conn::open(addr, Version::H1).await;
    let mut placed = HashMap::new();
    for u in 0..users {
        let user = format!("user-{u}");
        for _ in 0..times {
            let r = c
                .send(request(
                    Version::H1,
                    addr,
                    Method::GET,
                    "/",
                    &[("x-user", user.as_str())],
                    empty(),
                ))
                .await;
            assert_eq!(r.status, 200);
            let server = r.json()["server"].as_str().unwrap().to_owned();
            let first = placed.entry(user.clone()).or_insert_with(|| server.clone());
            assert_eq!(*first, server, "{user} moved between requests");
        }
    }
    placed
}

#[tokio::test]
async fn ring_hash_keeps_each_key_on_one_endpoint_and_moves_a_fraction_when_one_joins() {
    let ups: Vec<Upstream> = ["a", "b", "c", "d"]
        .into_iter()
        .map(Upstream::start)
        .collect();
    let hashed = |n: usize| {
        let list: Vec<&Upstream> = ups.iter().take(n).collect();
        config(&format!(
            "    lb_policy: ring_hash\n    hash_on: {{ header: x-user }}\n    endpoints: [{}]",
            endpoints(&list)
        ))
    };
    // Two proxies: three endpoints, and the same three plus `d`. The hash is the same
    // on every proxy, so the second shows where keys go once `d` joins.
    let three = Weft::start(&hashed(3));
    let four = Weft::start(&hashed(4));
    let before = placement(three.addr("edge"), 200, 3).await;
    let after = placement(four.addr("edge"), 200, 2).await;
    let mut per_endpoint: HashMap<&str, usize> = HashMap::new();
    for server in before.values() {
        *per_endpoint.entry(server).or_default() += 1;
    }
    assert_eq!(per_endpoint.len(), 3, "{per_endpoint:?}");
    assert!(per_endpoint.values().all(|n| *n > 30), "{per_endpoint:?}");
    let moved: Vec<&String> = before.keys().filter(|u| before[*u] != after[*u]).collect();
    // Ideally a quarter (50 of 200) move, all of them to the new endpoint.
    assert!((20..=90).contains(&moved.len()), "{} moved", moved.len());
    assert!(
        moved.iter().all(|u| after[*u] == "d"),
        "keys moved between old endpoints"
    );
}

#[tokio::test]
async fn least_request_sends_a_ten_times_slower_endpoint_far_less_than_its_share() {
    let slow = Upstream::start_delayed("slow", Duration::from_millis(30));
    let fast1 = Upstream::start_delayed("fast1", Duration::from_millis(3));
    let fast2 = Upstream::start_delayed("fast2", Duration::from_millis(3));
    let weft = Weft::start(&config(&format!(
        "    lb_policy: least_request\n    endpoints: [{}]",
        endpoints(&[&slow, &fast1, &fast2])
    )));
    let addr = weft.addr("edge");
    // 8 clients, 40 requests each.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = Conn::open(addr, Version::H1).await;
                for _ in 0..40 {
                    let r = c
                        .send(request(Version::H1, addr, Method::GET, "/", &[], empty()))
                        .await;
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let (s, f1, f2) = (
        slow.requests.load(Ordering::Relaxed),
        fast1.requests.load(Ordering::Relaxed),
        fast2.requests.load(Ordering::Relaxed),
    );
    assert_eq!(s + f1 + f2, 320);
    // Round robin would give it 107; P2C with latency tries it, then avoids it.
    assert!(s < 30, "the slow endpoint got {s} (fast: {f1}, {f2})");
    assert!(f1 > 100 && f2 > 100, "fast endpoints: {f1}, {f2}");
}

#[tokio::test]
async fn weighted_round_robin_and_random_follow_the_weights() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    for policy in ["round_robin", "random"] {
        let weft = Weft::start(&config(&format!(
            "    lb_policy: {policy}\n    endpoints: [{{ address: \"{}\", weight: 3 }}, \"{}\"]",
            a.addr, b.addr
        )));
        let (a0, b0) = (
            a.requests.load(Ordering::Relaxed),
            b.requests.load(Ordering::Relaxed),
        );
        let addr = weft.addr("edge");
        let mut c = Conn::open(addr, Version::H2).await;
        for _ in 0..400 {
            let r = c
                .send(request(Version::H2, addr, Method::GET, "/", &[], empty()))
                .await;
            assert_eq!(r.status, 200);
        }
        let (na, nb) = (
            a.requests.load(Ordering::Relaxed) - a0,
            b.requests.load(Ordering::Relaxed) - b0,
        );
        match policy {
            // One schedule shared by the workers: exact over whole cycles.
            "round_robin" => assert_eq!((na, nb), (300, 100)),
            _ => assert!((250..350).contains(&na) && na + nb == 400, "{na} / {nb}"),
        }
    }
    // The admin endpoint shows the policy and each endpoint's weight.
    let weft = Weft::start(&config(&format!(
        "    lb_policy: least_request\n    endpoints: [{{ address: \"{}\", weight: 2 }}]",
        a.addr
    )));
    client::get(weft.addr("edge"), "/", &[]).await;
    let stats = client::get_text(&format!("http://{}/stats", weft.admin.unwrap())).await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let c = &stats["clusters"][0];
    assert_eq!(c["lb_policy"], "least_request", "{c}");
    assert_eq!(c["endpoints"][0]["weight"], 2, "{c}");
    assert!(
        c["endpoints"][0]["latency_ewma_ms"].as_f64().unwrap() > 0.0,
        "{c}"
    );
}

#[test]
fn balancing_config_errors_name_the_field_and_line() {
    for (cluster, field, line) in [
        (
            "    endpoints: [{ address: \"127.0.0.1:1\", weight: 0 }]",
            "clusters.c.endpoints[0].weight",
            10,
        ),
        (
            "    hash_on: { header: x-user }\n    endpoints: [\"127.0.0.1:1\"]",
            "clusters.c.hash_on",
            10,
        ),
        (
            "    lb_policy: maglev\n    hash_on: { header: x-user, cookie: s }\n    endpoints: [\"127.0.0.1:1\"]",
            "clusters.c.hash_on",
            11,
        ),
        (
            "    lb_policy: fastest\n    endpoints: [\"127.0.0.1:1\"]",
            "lb_policy",
            10,
        ),
        (
            "    endpoints: [\"127.0.0.1:1\"]\n    health_check: { path: /healthz, tcp: true }",
            "clusters.c.health_check",
            11,
        ),
        (
            "    endpoints: [\"127.0.0.1:1\"]\n    health_check:\n      path: /healthz\n      expected_statuses: [\"299-200\"]",
            "clusters.c.health_check.expected_statuses[0]",
            13,
        ),
        (
            "    endpoints: [\"127.0.0.1:1\"]\n    outlier_detection: { max_ejection_percent: 150 }",
            "clusters.c.outlier_detection.max_ejection_percent",
            11,
        ),
        (
            "    endpoints: [\"127.0.0.1:1\"]\n    circuit_breakers: { max_requests: 0 }",
            "clusters.c.circuit_breakers.max_requests",
            11,
        ),
    ] {
        let dir = TempDir::new("lb-config");
        let path = dir.0.join("weft.yaml");
        std::fs::write(&path, config(cluster)).unwrap();
        let (ok, _, err) = weft_cli(&["validate", "--config", &path.display().to_string()]);
        assert!(!ok, "{cluster} accepted");
        assert!(
            err.contains(field) && err.contains(&format!("weft.yaml:{line}:")),
            "{cluster}: {err}"
        );
    }
}
