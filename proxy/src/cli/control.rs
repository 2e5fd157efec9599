//! `weft control`: run the control plane, and operate it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::json;

use crate::bundle::Envelope;
use crate::control::client::call;
use crate::control::etcd::Etcd;
use crate::control::rules::Selector;
use crate::control::store::Store;

/// `weft control ...`.
#[derive(Debug, Subcommand)]
pub enum ControlCommand {
    /// Run the control plane.
    Serve(ServeArgs),
    /// Upload a bundle and roll it out to the proxies a selector picks (default: all).
    Push(PushArgs),
    /// Put the rule of a selector back to its previous bundle.
    Rollback(RollbackArgs),
    /// Show the rules and which proxy runs, or refused, which version.
    Status(StatusArgs),
}

/// `weft control serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9977")]
    pub listen: SocketAddr,
    /// The store directory (with `--etcd`: this replica's cache).
    #[arg(long)]
    pub store: PathBuf,
    /// Share the store through etcd (`host:port`, comma separated): run several
    /// replicas against the same etcd and proxies may use any of them.
    #[arg(long, value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// The prefix of weft's keys in etcd.
    #[arg(long, default_value = "/weft/")]
    pub etcd_prefix: String,
}

/// Which proxies: `--select key=value` (labels), `--name`, `--service`.
#[derive(Debug, Args, Default)]
pub struct SelectArgs {
    /// A label the proxies must carry (repeatable).
    #[arg(long = "select", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// One proxy, by name.
    #[arg(long)]
    pub name: Option<String>,
    /// The proxies of a service.
    #[arg(long)]
    pub service: Option<String>,
}

impl SelectArgs {
    fn selector(&self) -> anyhow::Result<Selector> {
        let mut labels = std::collections::BTreeMap::new();
        for l in &self.labels {
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--select {l:?}: expected KEY=VALUE"))?;
            labels.insert(k.to_owned(), v.to_owned());
        }
        Ok(Selector {
            labels,
            name: self.name.clone(),
            service: self.service.clone(),
        })
    }
}

/// `weft control push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The control plane, `host:port`.
    #[arg(long, default_value = "127.0.0.1:9977")]
    pub server: String,
    /// The bundle directory (`weft bundle pack`).
    pub bundle: PathBuf,
    /// Which proxies.
    #[command(flatten)]
    pub select: SelectArgs,
}

/// `weft control rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The control plane, `host:port`.
    #[arg(long, default_value = "127.0.0.1:9977")]
    pub server: String,
    /// Which rule.
    #[command(flatten)]
    pub select: SelectArgs,
}

/// `weft control status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The control plane, `host:port`.
    #[arg(long, default_value = "127.0.0.1:9977")]
    pub server: String,
    /// Print the JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn short(v: &serde_json::Value) -> String {
    v.as_str()
        .map_or("-".into(), |s| s[..s.len().min(12)].to_owned())
}

impl ControlCommand {
    /// Runs it.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            ControlCommand::Serve(a) => {
                let store = if a.etcd.is_empty() {
                    Store::open(a.store.clone())?
                } else {
                    let etcd = Etcd::new(&a.etcd, &a.etcd_prefix);
                    block_on(async { Ok(Store::open_etcd(a.store.clone(), etcd).await?) })?
                };
                let (addr, _control) = crate::control::service::start(a.listen, store)?;
                println!(
                    "weft control listening: http://{addr} (store {})",
                    a.store.display()
                );
                println!("weft ready");
                wait_for_termination()
            }
            ControlCommand::Push(a) => block_on(async {
                let env = Envelope::read(&a.bundle)?;
                let manifest = env.parse()?;
                for b in &manifest.blobs {
                    let bytes = std::fs::read(a.bundle.join("blobs").join(&b.sha256))?;
                    call(
                        &a.server,
                        Method::PUT,
                        &format!("/v1/blobs/{}", b.sha256),
                        bytes,
                    )
                    .await?;
                }
                let upload = json!({
                    "manifest": String::from_utf8(env.manifest.clone())?,
                    "signature": env.signature,
                });
                call(&a.server, Method::PUT, "/v1/bundles", upload.to_string()).await?;
                let selector = a.select.selector()?;
                let version = env.version();
                let body = json!({ "bundle": version, "selector": selector });
                call(&a.server, Method::POST, "/v1/rollout", body.to_string()).await?;
                println!(
                    "pushed {} version {version} to {}",
                    manifest.name,
                    selector.describe()
                );
                Ok(())
            }),
            ControlCommand::Rollback(a) => block_on(async {
                let selector = a.select.selector()?;
                let body = json!({ "selector": selector });
                let out = call(&a.server, Method::POST, "/v1/rollback", body.to_string()).await?;
                let v: serde_json::Value = serde_json::from_slice(&out)?;
                match v["bundle"].as_str() {
                    Some(b) => println!("{}: back to {b}", selector.describe()),
                    None => println!("{}: rule removed", selector.describe()),
                }
                Ok(())
            }),
            ControlCommand::Status(a) => block_on(async {
                let out = call(&a.server, Method::GET, "/v1/status", "").await?;
                let v: serde_json::Value = serde_json::from_slice(&out)?;
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    return Ok(());
                }
                println!(
                    "{:<24} {:<14} {:<14} {:<10} REFUSED",
                    "PROXY", "SENT", "RUNNING", "CONNECTED"
                );
                if let Some(proxies) = v["proxies"].as_object() {
                    for (name, p) in proxies {
                        let refused = match &p["refused"] {
                            serde_json::Value::Null => "-".to_owned(),
                            r => format!(
                                "{}: {}",
                                short(&r["version"]),
                                r["reason"].as_str().unwrap_or("")
                            ),
                        };
                        println!(
                            "{:<24} {:<14} {:<14} {:<10} {refused}",
                            name,
                            short(&p["sent"]),
                            short(&p["running"]),
                            p["connected"]
                        );
                    }
                }
                Ok(())
            }),
        }
    }
}

fn wait_for_termination() -> anyhow::Result<()> {
    block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        Ok(())
    })
}
