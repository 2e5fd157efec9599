//! `weft control serve`: the control plane's HTTP API and the proxies' streams.
//!
//! - `POST /weft.control.v1.Control/Stream`: a proxy's stream (see [`super`]).
//! - `GET /v1/blobs/<sha256>`, `PUT /v1/blobs/<sha256>`: modules and files.
//! - `PUT /v1/bundles`: a bundle (`{"manifest": "...", "signature": {...}}`), once its
//!   blobs are uploaded; answers its version.
//! - `POST /v1/rollout` (`{"bundle": "<version>", "selector": {...}}`) and
//!   `POST /v1/rollback` (`{"selector": {...}}`): change the rules.
//! - `GET /v1/status`: the rules, and every proxy seen: what it was sent, what it
//!   runs (ACK), what it refused and why (NACK).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;

use super::grpc::{self, Decoder, StreamBody};
use super::rules::Selector;
use super::store::Store;
use super::{Hello, Push, Reply, STREAM_PATH};
use crate::bundle::{Envelope, Signature};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What the control plane knows of a proxy.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ProxyStatus {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its service.
    pub service: Option<String>,
    /// Whether its stream is open.
    pub connected: bool,
    /// The version last sent to it.
    pub sent: Option<String>,
    /// The version it runs (its last ACK, or what it said it ran when it connected).
    pub running: Option<String>,
    /// The last version it refused, and why.
    pub refused: Option<Refusal>,
    /// When it last said something, in milliseconds since the Unix epoch.
    pub last_seen_unix_ms: u64,
    /// The control-plane replica it is connected to.
    pub replica: String,
}

/// A NACK.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// The version refused.
    pub version: String,
    /// The proxy's reason.
    pub reason: String,
}

/// The control plane's state.
pub struct Control {
    /// Bundles and rules.
    pub store: Arc<Store>,
    proxies: Mutex<BTreeMap<String, ProxyStatus>>,
    address: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn full(status: StatusCode, body: impl Into<Bytes>, ctype: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}

fn json_reply(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    full(status, v.to_string(), "application/json")
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response<Body> {
    json_reply(status, json!({ "error": msg.to_string() }))
}

#[derive(Deserialize)]
struct BundleUpload {
    manifest: String,
    signature: Option<Signature>,
}

#[derive(Deserialize)]
struct Rollout {
    bundle: String,
    #[serde(default)]
    selector: Selector,
}

#[derive(Deserialize)]
struct Rollback {
    #[serde(default)]
    selector: Selector,
}

/// A request's body; the error is the reason, for a 400.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, String> {
    Limited::new(req.into_body(), grpc::MAX_MESSAGE * 4)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("reading the body: {e}"))
}

/// A request's JSON body; the error is the reason, for a 400.
async fn read_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, String> {
    let bytes = read_body(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

impl Control {
    /// A control plane over `store`, known to proxies as `address`.
    pub fn new(store: Store, address: String) -> Arc<Control> {
        Arc::new(Control {
            store: Arc::new(store),
            proxies: Mutex::new(BTreeMap::new()),
            address,
        })
    }

    /// Serves on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let control = self.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let c = control.clone();
                    async move { Ok::<_, Infallible>(c.route(req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    async fn route(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        match (req.method().clone(), path.as_str()) {
            (Method::POST, STREAM_PATH) => self.stream(req),
            (Method::GET, "/v1/status") => json_reply(StatusCode::OK, self.status().await),
            (Method::GET, p) if p.starts_with("/v1/blobs/") => {
                match self.store.blob(&p["/v1/blobs/".len()..]).await {
                    Some(b) => full(StatusCode::OK, b, "application/octet-stream"),
                    None => error(StatusCode::NOT_FOUND, "no such blob"),
                }
            }
            (Method::PUT, p) if p.starts_with("/v1/blobs/") => {
                let sha = p["/v1/blobs/".len()..].to_owned();
                let body = match read_body(req).await {
                    Ok(b) => b,
                    Err(e) => return error(StatusCode::BAD_REQUEST, e),
                };
                match self.store.put_blob(&sha, &body).await {
                    Ok(()) => json_reply(StatusCode::OK, json!({ "sha256": sha })),
                    Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
                }
            }
            (Method::PUT, "/v1/bundles") => {
                let up: BundleUpload = match read_json(req).await {
                    Ok(v) => v,
                    Err(e) => return error(StatusCode::BAD_REQUEST, e),
                };
                let env = Envelope {
                    manifest: up.manifest.into_bytes(),
                    signature: up.signature,
                };
                match self.store.put_bundle(&env).await {
                    Ok(v) => json_reply(StatusCode::OK, json!({ "version": v })),
                    Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
                }
            }
            (Method::POST, "/v1/rollout") => {
                let r: Rollout = match read_json(req).await {
                    Ok(v) => v,
                    Err(e) => return error(StatusCode::BAD_REQUEST, e),
                };
                if self.store.bundle(&r.bundle).await.is_none() {
                    return error(StatusCode::NOT_FOUND, format!("no bundle {}", r.bundle));
                }
                let described = r.selector.describe();
                let bundle = r.bundle.clone();
                let outcome = self
                    .store
                    .update_rules(|rules| {
                        rules.roll_out(r.selector, bundle);
                        Ok(())
                    })
                    .await;
                match outcome {
                    Ok(()) => {
                        tracing::info!(bundle = %r.bundle, selector = %described, "rolled out");
                        json_reply(
                            StatusCode::OK,
                            json!({ "bundle": r.bundle, "selector": described }),
                        )
                    }
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
                }
            }
            (Method::POST, "/v1/rollback") => {
                let r: Rollback = match read_json(req).await {
                    Ok(v) => v,
                    Err(e) => return error(StatusCode::BAD_REQUEST, e),
                };
                match self
                    .store
                    .update_rules(|rules| rules.roll_back(&r.selector))
                    .await
                {
                    Ok(now) => json_reply(
                        StatusCode::OK,
                        json!({ "selector": r.selector.describe(), "bundle": now }),
                    ),
                    Err(e) => error(StatusCode::NOT_FOUND, e),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }

    /// The rules and every proxy seen (by any replica, when the store is shared).
    pub async fn status(&self) -> serde_json::Value {
        let mut proxies: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        if let Some(etcd) = self.store.etcd() {
            for (key, value) in etcd.list("proxies/").await.unwrap_or_default() {
                if let Ok(v) = serde_json::from_slice(&value) {
                    proxies.insert(key["proxies/".len()..].to_owned(), v);
                }
            }
        }
        for (name, p) in self.proxies.lock().iter() {
            proxies.insert(name.clone(), json!(p));
        }
        json!({
            "replica": self.address,
            "rules": self.store.rules().rules,
            "proxies": proxies,
        })
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut ProxyStatus)) {
        let snapshot = {
            let mut proxies = self.proxies.lock();
            let p = proxies.entry(name.to_owned()).or_default();
            f(p);
            p.last_seen_unix_ms = now_ms();
            p.replica = self.address.clone();
            p.clone()
        };
        // Shared, so that every replica's status shows every proxy.
        if let Some(etcd) = self.store.etcd().cloned() {
            let key = format!("proxies/{name}");
            tokio::spawn(async move {
                if let Err(e) = etcd.put(&key, json!(snapshot).to_string().as_bytes()).await {
                    tracing::warn!("recording a proxy's status in etcd: {e}");
                }
            });
        }
    }

    fn stream(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let (tx, body) = StreamBody::new();
        tokio::spawn(async move {
            let mut incoming = req.into_body();
            let mut dec = Decoder::default();
            let hello: Hello = match next(&mut incoming, &mut dec).await {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("a proxy's stream: {e}");
                    return;
                }
            };
            let name = hello.name.clone();
            tracing::info!(proxy = %name, version = ?hello.version, "proxy connected");
            self.update(&name, |p| {
                p.labels = hello.labels.clone();
                p.service = hello.service.clone();
                p.connected = true;
                p.running = hello.version.clone();
            });
            let mut changes = self.store.changes();
            let mut sent: Option<String> = None;
            let mut nonce = 0;
            loop {
                let assigned = self.store.rules().assigned(&hello).map(str::to_owned);
                if let Some(version) = assigned.filter(|a| sent.as_ref() != Some(a)) {
                    let Some(env) = self.store.bundle(&version).await else {
                        tracing::error!(%version, "assigned bundle missing from the store");
                        break;
                    };
                    nonce += 1;
                    let push = Push {
                        version: version.clone(),
                        nonce,
                        manifest: String::from_utf8_lossy(&env.manifest).into_owned(),
                        signature: env.signature,
                    };
                    if tx.send(grpc::encode(&push)).is_err() {
                        break;
                    }
                    self.update(&name, |p| p.sent = Some(version.clone()));
                    sent = Some(version);
                }
                tokio::select! {
                    msg = next::<Reply>(&mut incoming, &mut dec) => match msg {
                        Ok(Some(reply)) => self.record(&name, reply),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::info!(proxy = %name, "stream ended: {e}");
                            break;
                        }
                    },
                    changed = changes.changed() => if changed.is_err() { break },
                }
            }
            tracing::info!(proxy = %name, "proxy disconnected");
            self.update(&name, |p| p.connected = false);
        });
        let mut r = Response::new(body.boxed_unsync());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(grpc::CONTENT_TYPE),
        );
        r
    }

    fn record(&self, name: &str, reply: Reply) {
        match reply.error {
            None => {
                tracing::info!(proxy = %name, version = %reply.version, "ACK");
                self.update(name, |p| {
                    p.running = Some(reply.version);
                    p.refused = None;
                });
            }
            Some(reason) => {
                tracing::warn!(proxy = %name, version = %reply.version, %reason, "NACK");
                self.update(name, |p| {
                    p.refused = Some(Refusal {
                        version: reply.version,
                        reason,
                    })
                });
            }
        }
    }
}

/// The next message of a stream: `None` when it ends.
pub async fn next<T: for<'de> Deserialize<'de>>(
    body: &mut Incoming,
    dec: &mut Decoder,
) -> Result<Option<T>, String> {
    loop {
        if let Some(m) = dec.next_message()? {
            return Ok(Some(m));
        }
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    dec.push(&data);
                }
            }
        }
    }
}

/// Binds `addr` and serves the control plane from `store` on a runtime of its own
/// thread. Returns the bound address.
pub fn start(addr: SocketAddr, store: Store) -> std::io::Result<(SocketAddr, Arc<Control>)> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    let control = Control::new(store, bound.to_string());
    let c = control.clone();
    crate::background::spawn_thread("weft-control", move || async move {
        tokio::spawn(c.store.clone().watch());
        match TcpListener::from_std(std_listener) {
            Ok(listener) => c.serve(listener).await,
            Err(e) => tracing::error!("control plane listener: {e}"),
        }
    })?;
    Ok((bound, control))
}
