//! The admin endpoint: metrics, readiness, the live configuration and filter state.
//!
//! - `GET /`: a live page of the numbers below (`page.html`: no external assets).
//! - `GET /stats`: listeners, routes, clusters, filters, reloads and the control plane
//!   with their counts and latency histograms (JSON; see [`stats`]).
//! - `GET /metrics`: Prometheus text format.
//! - `GET /ready`: 200 while serving.
//! - `GET /config`: the configuration the proxy runs, as written.
//! - `GET /filters`: each filter's module, digest, phases, policy and counters (JSON).
//! - `GET /reload`: the configuration version serving and the latest reloads (JSON).
//! - `POST /reload`: reload now; 200 with the outcome when applied, 422 with the reason
//!   when refused (the previous configuration keeps serving).
//!
//! A web page must not be able to drive it from a browser on the same machine: only
//! requests whose `Host` names the admin endpoint by IP address or `localhost` are
//! served (a DNS-rebinding page reaches it under its own name), cross-origin requests
//! (an `Origin` other than the endpoint's, `Sec-Fetch-Site: cross-site`) are refused,
//! and `POST /reload` with a content type a form can send without asking
//! (`text/plain`, `application/x-www-form-urlencoded`, `multipart/form-data`) is
//! refused: 403 in every case.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::ProxyBody;
use crate::host::BodyMode;
use crate::metrics::Registry;
use crate::reload::{ReloadHandle, Trigger};
use crate::snapshot::SnapshotHandle;

mod stats;

/// The admin page: it polls `/stats` and draws it.
const PAGE: &str = include_str!("page.html");

/// The running admin endpoint.
pub struct AdminServer {
    /// Where it listens.
    pub address: SocketAddr,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// A plain-text response.
fn text_response(status: StatusCode, body: impl std::fmt::Display) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(bytes::Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json_response(value: serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(value.to_string()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn mode(m: BodyMode) -> serde_json::Value {
    match m {
        BodyMode::None => json!("none"),
        BodyMode::Stream => json!("stream"),
        BodyMode::Buffer(n) => json!({ "buffer": n }),
    }
}

fn filters(handle: &SnapshotHandle) -> serde_json::Value {
    let snapshot = handle.load();
    let list: Vec<_> = snapshot
        .filters
        .values()
        .map(|f| {
            let p = f.info.phases;
            let failures: serde_json::Map<String, serde_json::Value> = f
                .stats
                .failures()
                .into_iter()
                .map(|(r, n)| (r.to_owned(), json!(n)))
                .collect();
            json!({
                "name": f.name,
                "module": f.module.path.display().to_string(),
                "sha256": f.module.digest,
                "size": f.module.size,
                "phases": {
                    "request_headers": p.request_headers,
                    "request_body": mode(f.info.request_body),
                    "response_headers": p.response_headers,
                    "response_body": mode(f.info.response_body),
                    "log": p.log,
                },
                "failure_policy": format!("{:?}", f.policy),
                "timeout_ms": f.timeout.as_millis() as u64,
                "calls": f.stats.calls.get(),
                "instances_created": f.stats.instances.get(),
                "idle_instances": f.idle_instances(),
                "failures": failures,
            })
        })
        .collect();
    json!({ "filters": list })
}

/// Why a request from a browser page is refused, if it is one.
fn cross_site(req: &Request<Incoming>, port: u16) -> Option<&'static str> {
    let h = req.headers();
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| h.get(http::header::HOST).and_then(|v| v.to_str().ok()));
    let Some(host) = host.filter(|host| names_us(host, port)) else {
        return Some("the Host must name the admin endpoint by IP address or localhost");
    };
    if let Some(origin) = h.get(http::header::ORIGIN) {
        let same = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Some("cross-origin requests are refused");
        }
    }
    if h.get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site")
    {
        return Some("cross-site requests are refused");
    }
    if req.method() == Method::POST {
        let simple = h
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|t| {
                matches!(
                    t.as_str(),
                    "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
                )
            });
        if simple {
            return Some("a POST with a content type a web form can send is refused");
        }
    }
    None
}

/// Whether `host` (`name:port`) names this endpoint: an IP address (which no DNS
/// rebinding can stand behind) or `localhost`, with its port.
fn names_us(host: &str, port: u16) -> bool {
    let (name, p) = match host.rsplit_once(':') {
        Some((n, p)) if !n.is_empty() && !p.contains(']') => (n, p.parse::<u16>().ok()),
        _ => (host, None),
    };
    if p.is_some_and(|p| p != port) || (p.is_none() && port != 80) {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

async fn route(
    req: Request<Incoming>,
    handle: SnapshotHandle,
    metrics: Arc<Registry>,
    reloads: ReloadHandle,
    port: u16,
    started: std::time::Instant,
) -> Response<ProxyBody> {
    if let Some(why) = cross_site(&req, port) {
        return text_response(StatusCode::FORBIDDEN, format!("{why}\n"));
    }
    if req.uri().path() == "/reload" && req.method() == Method::POST {
        return match reloads.reload(Trigger::Admin).await {
            Some(outcome) => {
                let status = if outcome.applied {
                    StatusCode::OK
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                let mut r = json_response(json!(outcome));
                *r.status_mut() = status;
                r
            }
            None => text_response(StatusCode::SERVICE_UNAVAILABLE, "reloads have stopped\n"),
        };
    }
    if req.method() != Method::GET {
        return text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "the admin endpoint answers GET, and POST on /reload\n",
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(ProxyBody::full(metrics.render()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/ready" => text_response(StatusCode::OK, "ready\n"),
        "/config" => text_response(StatusCode::OK, handle.load().source.to_string()),
        "/filters" => json_response(filters(&handle)),
        "/reload" => json_response(json!(reloads.status())),
        "/" => {
            let mut r = Response::new(ProxyBody::full(PAGE));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        "/stats" => json_response(stats::stats(&handle, &metrics, &reloads, started.elapsed())),
        "/overload" => json_response(stats::overload(&handle.load().overload)),
        _ => text_response(
            StatusCode::NOT_FOUND,
            "not found; try / /stats /metrics /ready /config /filters /reload /overload\n",
        ),
    }
}

impl AdminServer {
    /// Starts the admin endpoint on its own thread.
    pub fn start(
        addr: SocketAddr,
        handle: SnapshotHandle,
        metrics: Arc<Registry>,
        reloads: ReloadHandle,
    ) -> std::io::Result<AdminServer> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let address = std_listener.local_addr()?;
        let started = std::time::Instant::now();
        let (shutdown, mut rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("weft-admin".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    tracing::error!("cannot start the admin runtime");
                    return;
                };
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    loop {
                        let (stream, _) = tokio::select! {
                            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                            _ = rx.changed() => return,
                        };
                        let handle = handle.clone();
                        let metrics = metrics.clone();
                        let reloads = reloads.clone();
                        let port = address.port();
                        tokio::spawn(async move {
                            let svc = service_fn(move |req| {
                                let (h, m, r) = (handle.clone(), metrics.clone(), reloads.clone());
                                async move {
                                    Ok::<_, Infallible>(route(req, h, m, r, port, started).await)
                                }
                            });
                            let _ = auto::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                });
            })?;
        Ok(AdminServer {
            address,
            shutdown,
            thread: Some(thread),
        })
    }

    /// Stops it.
    pub fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::names_us;

    #[test]
    fn only_ip_addresses_and_localhost_name_the_endpoint() {
        assert!(names_us("127.0.0.1:9901", 9901));
        assert!(names_us("localhost:9901", 9901));
        assert!(names_us("[::1]:9901", 9901));
        assert!(names_us("10.1.2.3:9901", 9901));
        assert!(!names_us("127.0.0.1:9902", 9901));
        assert!(!names_us("evil.example:9901", 9901));
        assert!(!names_us("127.0.0.1.nip.io:9901", 9901));
        assert!(!names_us("127.0.0.1", 9901));
        assert!(names_us("localhost", 80));
    }
}
