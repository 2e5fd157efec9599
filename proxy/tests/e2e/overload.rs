//! Connection scale end to end: a listener's and the process's `max_connections`
//! refuse the next connection as it is accepted and count it; the overload manager's
//! actions come into force in threshold order as memory pressure rises (new requests
//! answered 503 `overload`, keep-alive off, accepting stopped, idle connections
//! closed) and are undone once it falls, with the connection that waited in the
//! backlog served then; memory taken by 10,000 connections is given back once they
//! close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::client;
use crate::support::proxy::Weft;
use crate::support::upstream::Upstream;

/// A response read off a raw HTTP/1.1 connection: status, head text.
struct Answer {
    status: u16,
    head: String,
}

/// Sends a GET on `s` and reads its response (framed by Content-Length); `None` when
/// the connection was closed instead, or nothing came within `wait`.
async fn get_on(s: &mut TcpStream, wait: Duration) -> Option<Answer> {
    s.write_all(b"GET /scale HTTP/1.1\r\nHost: scale\r\n\r\n")
        .await
        .ok()?;
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < end + 4 + length {
                    let n = s.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let status = head.split(' ').nth(1)?.parse().ok()?;
                return Some(Answer { status, head });
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}

/// Whether the proxy closed `s` (end of stream or reset) within `wait`.
async fn closed_by_proxy(s: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, s.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn max_connections_refuse_the_next_connection_and_count_it() {
    let up = Upstream::start("up");
    let weft = Weft::start(&format!(
        r#"
admin:
  address: 127.0.0.1:0
overload:
  max_connections: 3
listeners:
  - name: edge
    address: 127.0.0.1:0
    max_connections: 2
    backlog: 64
    routes: [{{ cluster: up }}]
  - name: other
    address: 127.0.0.1:0
    routes: [{{ cluster: up }}]
clusters:
  up:
    endpoints: ["{}"]
"#,
        up.addr
    ));
    let (edge, other) = (weft.addr("edge"), weft.addr("other"));
    let mut a = connect(edge).await;
    let mut b = connect(edge).await;
    assert_eq!(get_on(&mut a, WAIT).await.map(|r| r.status), Some(200));
    assert_eq!(get_on(&mut b, WAIT).await.map(|r| r.status), Some(200));
    // The listener's third: closed as accepted, and counted.
    let mut c = connect(edge).await;
    assert!(
        get_on(&mut c, WAIT).await.is_none(),
        "a third connection on edge was served"
    );
    let refused =
        r#"weft_downstream_connections_refused_total{listener="edge",reason="listener_limit"}"#;
    assert_eq!(weft.metric(refused).await, 1.0);
    // The process's limit spans listeners: one more on `other`, then none.
    let mut d = connect(other).await;
    assert_eq!(get_on(&mut d, WAIT).await.map(|r| r.status), Some(200));
    let mut e = connect(other).await;
    assert!(
        get_on(&mut e, WAIT).await.is_none(),
        "a fourth connection was served"
    );
    let global =
        r#"weft_downstream_connections_refused_total{listener="other",reason="global_limit"}"#;
    assert_eq!(weft.metric(global).await, 1.0);
    let overload: serde_json::Value = serde_json::from_str(
        &client::get_text(&format!("http://{}/overload", weft.admin.unwrap())).await,
    )
    .unwrap();
    assert_eq!(overload["connections"], 3, "{overload}");
    assert_eq!(overload["max_connections"], 3, "{overload}");
    // A connection closing makes room again.
    drop(a);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut f = connect(edge).await;
        if let Some(r) = get_on(&mut f, Duration::from_secs(1)).await {
            assert_eq!(r.status, 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room after a connection closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((b, c, d, e));
}

/// The overload section with `memory_limit` and the test's thresholds (configured out
/// of the default order on purpose: the order is the thresholds').
fn overload_config(up: SocketAddr, memory_limit: u64) -> String {
    format!(
        r#"
admin:
  address: 127.0.0.1:0
overload:
  memory_limit: {memory_limit}
  check_interval: 10ms
  actions:
    refuse_requests: 0.5
    disable_keepalive: 0.6
    stop_accepting: 0.7
    close_idle: 0.8
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ cluster: up }}]
clusters:
  up:
    endpoints: ["{up}"]
"#
    )
}

async fn overload_state(weft: &Weft) -> serde_json::Value {
    let text = client::get_text(&format!("http://{}/overload", weft.admin.unwrap())).await;
    serde_json::from_str(&text).unwrap()
}

fn active(state: &serde_json::Value) -> Vec<String> {
    state["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["active"] == true)
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect()
}

/// Sets the memory limit so that the proxy's resident memory is `pressure` of it (a
/// reload; again, measured anew, while the reload itself moves the resident memory),
/// and waits until exactly `expect` are in force.
async fn press(weft: &Weft, up: SocketAddr, pressure: f64, expect: &[&str]) {
    let mut want: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
    want.sort();
    let mut state = overload_state(weft).await;
    for _ in 0..20 {
        let resident = state["resident_bytes"].as_u64().unwrap();
        let limit = (resident as f64 / pressure) as u64;
        std::fs::write(&weft.config, overload_config(up, limit)).unwrap();
        let (status, body) =
            client::post_text(&format!("http://{}/reload", weft.admin.unwrap())).await;
        assert_eq!(status, 200, "reload: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        state = overload_state(weft).await;
        let mut now = active(&state);
        now.sort();
        let seen = state["pressure"].as_f64().unwrap();
        if now == want && (seen - pressure).abs() < 0.04 {
            return;
        }
    }
    panic!(
        "at pressure {pressure}: {:?} in force, not {want:?}: {state}",
        active(&state)
    );
}

#[tokio::test]
async fn overload_actions_fire_in_order_and_are_undone() {
    let up = Upstream::start("up");
    let weft = Weft::start_with(&overload_config(up.addr, 8 << 30), &["--workers", "1"]);
    let addr = weft.addr("edge");
    let mut probe = connect(addr).await;
    assert_eq!(get_on(&mut probe, WAIT).await.map(|r| r.status), Some(200));
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut s = connect(addr).await;
        assert_eq!(get_on(&mut s, WAIT).await.map(|r| r.status), Some(200));
        idle.push(s);
    }
    let mut h2 = client::Conn::open(addr, client::Version::H2).await;
    let req = || {
        client::request(
            client::Version::H2,
            addr,
            http::Method::GET,
            "/",
            &[],
            client::empty(),
        )
    };
    assert_eq!(h2.send(req()).await.status, 200);

    // refuse_requests: 503 overload, the connection kept.
    press(&weft, up.addr, 0.55, &["refuse_requests"]).await;
    let r = get_on(&mut probe, WAIT).await.expect("an answer");
    assert_eq!(r.status, 503, "{}", r.head);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("x-weft-error: overload"),
        "{}",
        r.head
    );
    assert_eq!(get_on(&mut probe, WAIT).await.map(|r| r.status), Some(503));

    // disable_keepalive: an HTTP/2 connection gets GOAWAY; HTTP/1.1 responses close.
    press(
        &weft,
        up.addr,
        0.65,
        &["refuse_requests", "disable_keepalive"],
    )
    .await;
    let deadline = Instant::now() + WAIT;
    while h2.try_send(req()).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the HTTP/2 connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = get_on(&mut probe, WAIT).await.expect("an answer");
    assert_eq!(r.status, 503);
    assert!(
        closed_by_proxy(&mut probe, WAIT).await,
        "kept alive under disable_keepalive"
    );

    // stop_accepting: a new connection waits in the backlog, unserved.
    press(
        &weft,
        up.addr,
        0.75,
        &["refuse_requests", "disable_keepalive", "stop_accepting"],
    )
    .await;
    let mut waiting = connect(addr).await;
    assert!(
        get_on(&mut waiting, Duration::from_millis(500))
            .await
            .is_none(),
        "a connection was accepted while accepting was stopped"
    );

    // close_idle: the idle connections are closed.
    press(
        &weft,
        up.addr,
        0.85,
        &[
            "refuse_requests",
            "disable_keepalive",
            "stop_accepting",
            "close_idle",
        ],
    )
    .await;
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_proxy(s, WAIT).await,
            "idle connection {i} stayed open"
        );
    }

    // Pressure gone: every action undone, the waiting connection served.
    press(&weft, up.addr, 0.05, &[]).await;
    let r = tokio::time::timeout(WAIT, async {
        let mut buf = vec![0u8; 4096];
        let n = waiting.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .expect("the waiting connection was never served");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let mut fresh = connect(addr).await;
    assert_eq!(get_on(&mut fresh, WAIT).await.map(|r| r.status), Some(200));

    // Each came into force (more than once where a step overshot and came back).
    for action in [
        "refuse_requests",
        "disable_keepalive",
        "stop_accepting",
        "close_idle",
    ] {
        let series = format!(r#"weft_overload_action_activations_total{{action="{action}"}}"#);
        assert!(weft.metric(&series).await >= 1.0, "{action}");
    }
    assert!(weft.metric("weft_overload_requests_refused_total").await >= 3.0);
}

#[tokio::test]
async fn memory_of_ten_thousand_connections_is_given_back() {
    let up = Upstream::start("up");
    let weft = Weft::start_with(
        &format!(
            r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    backlog: 4096
    routes: [{{ cluster: up }}]
clusters:
  up:
    endpoints: ["{}"]
"#,
            up.addr
        ),
        &["--workers", "1"],
    );
    let addr = weft.addr("edge");
    let mut warm = connect(addr).await;
    assert_eq!(get_on(&mut warm, WAIT).await.map(|r| r.status), Some(200));
    drop(warm);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let start = weft.memory_kb("VmRSS");
    // 10,000 connections open at once, each answered once and then idle.
    let mut open = Vec::with_capacity(10_000);
    for batch in 0..100 {
        let mut tasks = Vec::new();
        for _ in 0..100 {
            tasks.push(tokio::spawn(async move {
                let mut s = connect(addr).await;
                let r = get_on(&mut s, Duration::from_secs(20)).await;
                (s, r.map(|r| r.status))
            }));
        }
        for t in tasks {
            let (s, status) = t.await.unwrap();
            assert_eq!(status, Some(200), "batch {batch}");
            // Reset on close: no TIME_WAIT left to hold the test's ports.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            open.push(s);
        }
    }
    let held = weft.memory_kb("VmRSS");
    drop(open);
    // The worker gives memory back within a second or two of the connections closing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = weft.memory_kb("VmRSS");
        if now <= start + 10 * 1024 || Instant::now() > deadline {
            break now;
        }
    };
    eprintln!("RSS: {start} kB at start, {held} kB with 10,000 connections, {after} kB after");
    assert!(
        after <= start + 10 * 1024,
        "RSS {after} kB after 10,000 connections closed, {start} kB before ({held} kB with them)"
    );
}
