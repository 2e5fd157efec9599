//! The proxy's side of the control plane (`weft run --control ADDR`).
//!
//! The agent keeps a stream open to one of the control-plane replicas, trying them in
//! turn. For each push it verifies the bundle (the signature, against the trusted
//! keys), fetches the blobs it does not already have (kept by digest in the state
//! directory), writes the bundle's configuration as the state directory's
//! `current.yaml`, and reloads through the hot-reload path. It answers ACK when the
//! reload was applied, NACK with the reason when anything refused it; a refused bundle
//! leaves the running configuration serving. While no replica answers, the proxy keeps
//! serving its last good configuration, and a restarted proxy starts from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::grpc::{self, Decoder, StreamBody};
use super::service::next;
use super::{Hello, Push, Reply, STREAM_PATH};
use crate::bundle::{check_blob, write_atomic, Envelope, TrustedKeys};
use crate::metrics::{Counter, Gauge, Registry};
use crate::reload::{ReloadHandle, Trigger};

type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;
type Sender = http2::SendRequest<Body>;

/// How the proxy talks to the control plane.
#[derive(Clone)]
pub struct AgentConfig {
    /// Control-plane replicas, `host:port`, tried in turn.
    pub servers: Vec<String>,
    /// Who the proxy is (its `version` is filled in by the agent).
    pub hello: Hello,
    /// Where bundles' blobs and the current configuration are kept.
    pub state_dir: PathBuf,
    /// Keys bundles must be signed with (none: signatures are not required).
    pub trusted: TrustedKeys,
}

impl AgentConfig {
    /// The configuration the proxy serves.
    pub fn current_config(&self) -> PathBuf {
        self.state_dir.join("current.yaml")
    }

    fn current_version_file(&self) -> PathBuf {
        self.state_dir.join("current.version")
    }

    /// Removes the configuration on disk (and its version).
    pub fn forget_current(&self) {
        let _ = std::fs::remove_file(self.current_config());
        let _ = std::fs::remove_file(self.current_version_file());
    }

    /// The version of the configuration on disk, if any.
    pub fn current_version(&self) -> Option<String> {
        std::fs::read_to_string(self.current_version_file())
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }
}

async fn connect(server: &str) -> Result<Sender, String> {
    let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(server))
        .await
        .map_err(|_| format!("{server}: connect timed out"))?
        .map_err(|e| format!("{server}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// Gets a blob the proxy does not have yet; returns whether it had to be fetched.
async fn ensure_blob(
    send: &mut Sender,
    server: &str,
    dir: &Path,
    sha256: &str,
) -> Result<bool, String> {
    let path = dir.join("blobs").join(sha256);
    if let Ok(bytes) = std::fs::read(&path) {
        if check_blob(sha256, &bytes).is_ok() {
            return Ok(false);
        }
    }
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{server}/v1/blobs/{sha256}"))
        .body(Empty::new().boxed_unsync())
        .map_err(|e| format!("{server}: not a control-plane address: {e}"))?;
    send.ready().await.map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status != StatusCode::OK {
        return Err(format!(
            "blob {sha256}: the control plane answered {status}"
        ));
    }
    check_blob(sha256, &bytes).map_err(|e| e.to_string())?;
    write_atomic(&path, &bytes).map_err(|e| e.to_string())?;
    Ok(true)
}

/// Verifies a push and writes its blobs under the state directory. Returns the
/// configuration's text and how many blobs had to be fetched.
async fn materialize(
    cfg: &AgentConfig,
    send: &mut Sender,
    server: &str,
    push: &Push,
) -> Result<(String, u64), String> {
    let env = Envelope {
        manifest: push.manifest.clone().into_bytes(),
        signature: push.signature.clone(),
    };
    if env.version() != push.version {
        return Err(format!(
            "the manifest's sha256 is {}, not the version pushed",
            env.version()
        ));
    }
    let manifest = env.verify(&cfg.trusted).map_err(|e| e.to_string())?;
    let mut fetched = 0;
    for b in &manifest.blobs {
        if ensure_blob(send, server, &cfg.state_dir, &b.sha256).await? {
            fetched += 1;
        }
    }
    tracing::info!(
        version = %push.version,
        blobs = manifest.blobs.len(),
        fetched,
        "bundle verified"
    );
    Ok((manifest.config, fetched))
}

/// Applies a push: verify, fetch, write, reload. The previous configuration is put
/// back if the reload is refused.
async fn apply(
    cfg: &AgentConfig,
    send: &mut Sender,
    server: &str,
    push: &Push,
    reloads: &ReloadHandle,
    stats: &AgentStats,
) -> Result<(), String> {
    let (config, fetched) = materialize(cfg, send, server, push).await?;
    stats.fetched.add(fetched);
    let path = cfg.current_config();
    let previous = std::fs::read(&path).ok();
    write_atomic(&path, config.as_bytes()).map_err(|e| e.to_string())?;
    let outcome = reloads
        .reload(Trigger::Control)
        .await
        .ok_or("the proxy is shutting down")?;
    if outcome.applied {
        write_atomic(&cfg.current_version_file(), push.version.as_bytes())
            .map_err(|e| e.to_string())?;
        super::set_bundle_version(&push.version);
        return Ok(());
    }
    if let Some(prev) = previous {
        let _ = write_atomic(&path, &prev);
    }
    Err(outcome.error.unwrap_or_else(|| "refused".into()))
}

/// Waits for the first bundle when the proxy has no configuration yet: connects (to
/// each replica in turn, for up to `patience`), takes the first push, and writes its
/// configuration. Returns the configuration's path.
pub fn bootstrap(cfg: &AgentConfig, patience: Duration) -> anyhow::Result<PathBuf> {
    let path = cfg.current_config();
    if path.is_file() {
        tracing::info!(config = %path.display(), "starting from the last configuration received");
        return Ok(path);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + patience;
        let mut last_error = String::from("no control-plane address");
        loop {
            for server in &cfg.servers {
                match first_push(cfg, server).await {
                    Ok((version, config)) => {
                        write_atomic(&path, config.as_bytes())?;
                        write_atomic(&cfg.current_version_file(), version.as_bytes())?;
                        super::set_bundle_version(&version);
                        return Ok(path.clone());
                    }
                    Err(e) => last_error = e,
                }
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("no bundle from the control plane after {patience:?}: {last_error}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// The first bundle pushed: its version and configuration.
async fn first_push(cfg: &AgentConfig, server: &str) -> Result<(String, String), String> {
    let mut send = connect(server).await?;
    let (tx, mut body, mut dec) = open(&mut send, server, &cfg.hello).await?;
    let push: Push = next(&mut body, &mut dec)
        .await?
        .ok_or("the control plane closed the stream before any bundle")?;
    let config = materialize(cfg, &mut send, server, &push)
        .await
        .map(|(config, _)| (push.version.clone(), config));
    if let Err(e) = &config {
        let _ = tx.send(grpc::encode(&Reply {
            nonce: push.nonce,
            version: push.version.clone(),
            error: Some(e.clone()),
        }));
    }
    config
}

async fn open(
    send: &mut Sender,
    server: &str,
    hello: &Hello,
) -> Result<
    (
        tokio::sync::mpsc::UnboundedSender<Bytes>,
        hyper::body::Incoming,
        Decoder,
    ),
    String,
> {
    let (tx, body) = StreamBody::new();
    tx.send(grpc::encode(hello)).map_err(|e| e.to_string())?;
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{server}{STREAM_PATH}"))
        .header(http::header::CONTENT_TYPE, grpc::CONTENT_TYPE)
        .body(body.boxed_unsync())
        .map_err(|e| format!("{server}: not a control-plane address: {e}"))?;
    send.ready().await.map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != StatusCode::OK {
        return Err(format!(
            "{server}: the control plane answered {}",
            resp.status()
        ));
    }
    Ok((tx, resp.into_body(), Decoder::default()))
}

/// One stream's life: pushes in, replies out, until it breaks.
async fn session(
    cfg: &AgentConfig,
    server: &str,
    reloads: &ReloadHandle,
    stats: &AgentStats,
) -> Result<(), String> {
    let mut send = connect(server).await?;
    let mut hello = cfg.hello.clone();
    hello.version = cfg.current_version();
    let (tx, mut body, mut dec) = open(&mut send, server, &hello).await?;
    tracing::info!(%server, "connected to the control plane");
    stats.connected.set(1.0);
    let result = serve_pushes(
        cfg, server, reloads, stats, &mut send, &tx, &mut body, &mut dec,
    )
    .await;
    stats.connected.set(0.0);
    result
}

#[allow(
    clippy::too_many_arguments,
    reason = "the stream's state, passed as it is; bundled into a type when it grows"
)]
async fn serve_pushes(
    cfg: &AgentConfig,
    server: &str,
    reloads: &ReloadHandle,
    stats: &AgentStats,
    send: &mut Sender,
    tx: &tokio::sync::mpsc::UnboundedSender<Bytes>,
    body: &mut hyper::body::Incoming,
    dec: &mut Decoder,
) -> Result<(), String> {
    while let Some(push) = next::<Push>(body, dec).await? {
        let error = if cfg.current_version().as_deref() == Some(push.version.as_str()) {
            stats.pushes("unchanged").inc();
            None
        } else {
            match apply(cfg, send, server, &push, reloads, stats).await {
                Ok(()) => {
                    tracing::info!(version = %push.version, "bundle applied");
                    stats.pushes("applied").inc();
                    None
                }
                Err(e) => {
                    tracing::error!(version = %push.version, "bundle refused: {e}");
                    stats.pushes("refused").inc();
                    Some(e)
                }
            }
        };
        let reply = Reply {
            nonce: push.nonce,
            version: push.version,
            error,
        };
        tx.send(grpc::encode(&reply))
            .map_err(|_| "the stream closed".to_owned())?;
    }
    Err(format!("{server}: the control plane closed the stream"))
}

/// The agent's metrics.
struct AgentStats {
    metrics: Arc<Registry>,
    fetched: Arc<Counter>,
    connected: Arc<Gauge>,
}

impl AgentStats {
    fn new(metrics: Arc<Registry>) -> AgentStats {
        AgentStats {
            fetched: metrics.counter(
                "weft_control_blobs_fetched_total",
                "Blobs fetched from the control plane (those on disk by digest are not).",
                &[],
            ),
            connected: metrics.gauge(
                "weft_control_connected",
                "1 while a stream to a control-plane replica is open.",
                &[],
            ),
            metrics,
        }
    }

    fn pushes(&self, outcome: &str) -> Arc<Counter> {
        self.metrics.counter(
            "weft_control_pushes_total",
            "Bundles pushed by the control plane, by outcome: applied, refused (NACK) or \
             unchanged (already running).",
            &[("outcome", outcome)],
        )
    }
}

/// Keeps a stream to the control plane open for the life of the process, on a thread
/// of its own.
pub fn spawn(
    cfg: AgentConfig,
    reloads: ReloadHandle,
    metrics: Arc<Registry>,
) -> std::io::Result<()> {
    let stats = AgentStats::new(metrics);
    crate::background::spawn_thread("weft-control-agent", move || async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            for server in &cfg.servers {
                let started = tokio::time::Instant::now();
                if let Err(e) = session(&cfg, server, &reloads, &stats).await {
                    tracing::warn!("control plane: {e}; serving the last good configuration");
                }
                if started.elapsed() > Duration::from_secs(5) {
                    backoff = Duration::from_millis(100);
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    })?;
    Ok(())
}
