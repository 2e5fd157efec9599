//! Where the control plane keeps blobs, bundles and rules: a local directory (the
//! default; nothing to install), and, when the control plane runs as several
//! replicas, etcd, which they share. With etcd the directory is each replica's cache:
//! writes go to both, reads fall back to etcd, and every replica watches etcd's rules
//! so that a rollout through one replica reaches the proxies connected to any.
//!
//! ```text
//! <dir>/blobs/<sha256>                     modules and files
//! <dir>/bundles/<version>/manifest.json    as signed
//! <dir>/bundles/<version>/manifest.sig     if signed
//! <dir>/rules.json                         the rules, with their history
//!
//! etcd, under the prefix (default /weft/):
//! blobs/<sha256>/<n>                       a blob in chunks of 512 KiB
//! bundles/<version>                        {"manifest": "...", "signature": {...}}
//! rules                                    the rules
//! proxies/<name>                           what the replica it is connected to knows
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::watch;

use super::etcd::Etcd;
use super::rules::Rules;
use crate::bundle::{check_blob, write_atomic, BundleError, Envelope, Signature};

/// Chunks of blobs in etcd (its default request limit is 1.5 MiB).
const CHUNK: usize = 512 << 10;

/// The store: a directory, and etcd if configured.
pub struct Store {
    dir: PathBuf,
    rules: Mutex<Rules>,
    changed: watch::Sender<u64>,
    etcd: Option<Etcd>,
}

fn remote(e: String) -> BundleError {
    BundleError::Pack(e)
}

impl Store {
    /// Opens (or creates) a store in `dir`.
    pub fn open(dir: PathBuf) -> Result<Store, BundleError> {
        for sub in ["blobs", "bundles"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|source| BundleError::Io { path: d, source })?;
        }
        let path = dir.join("rules.json");
        let rules = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| BundleError::Manifest(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Rules::default(),
            Err(source) => return Err(BundleError::Io { path, source }),
        };
        Ok(Store {
            dir,
            rules: Mutex::new(rules),
            changed: watch::channel(0).0,
            etcd: None,
        })
    }

    /// Opens a store shared through etcd, `dir` as this replica's cache. Reads the
    /// rules from etcd; [`Store::watch`] keeps them current.
    pub async fn open_etcd(dir: PathBuf, etcd: Etcd) -> Result<Store, BundleError> {
        let mut store = Store::open(dir)?;
        if let Some(bytes) = etcd.get("rules").await.map_err(remote)? {
            if !bytes.is_empty() {
                *store.rules.get_mut() = serde_json::from_slice(&bytes)
                    .map_err(|e| BundleError::Manifest(format!("etcd rules: {e}")))?;
            }
        }
        store.etcd = Some(etcd);
        Ok(store)
    }

    /// With etcd: follows the rules other replicas write, for the life of the process.
    pub async fn watch(self: Arc<Self>) {
        let Some(etcd) = self.etcd.clone() else {
            return;
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = etcd.clone();
        tokio::spawn(async move {
            watcher
                .watch("rules", move |_| {
                    let _ = tx.send(());
                })
                .await
        });
        while rx.recv().await.is_some() {
            while rx.try_recv().is_ok() {}
            match etcd.get("rules").await {
                Ok(Some(bytes)) if !bytes.is_empty() => {
                    match serde_json::from_slice::<Rules>(&bytes) {
                        Ok(rules) => {
                            let changed = {
                                let mut mine = self.rules.lock();
                                let changed = *mine != rules;
                                *mine = rules;
                                changed
                            };
                            if changed {
                                tracing::info!("rules changed in etcd");
                                self.changed.send_modify(|n| *n += 1);
                            }
                        }
                        Err(e) => tracing::warn!("etcd rules: {e}"),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("reading rules from etcd: {e}"),
            }
        }
    }

    /// The etcd client, if the store is shared.
    pub fn etcd(&self) -> Option<&Etcd> {
        self.etcd.as_ref()
    }

    fn blob_path(&self, sha256: &str) -> Option<PathBuf> {
        (sha256.len() == 64 && sha256.bytes().all(|c| c.is_ascii_hexdigit()))
            .then(|| self.dir.join("blobs").join(sha256))
    }

    /// A blob's content.
    pub async fn blob(&self, sha256: &str) -> Option<Bytes> {
        let path = self.blob_path(sha256)?;
        if let Ok(b) = std::fs::read(&path) {
            return Some(Bytes::from(b));
        }
        let etcd = self.etcd.as_ref()?;
        let chunks = etcd.list(&format!("blobs/{sha256}/")).await.ok()?;
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|(_, v)| v).collect();
        check_blob(sha256, &bytes).ok()?;
        let _ = write_atomic(&path, &bytes);
        Some(Bytes::from(bytes))
    }

    /// Whether a blob is stored.
    pub fn has_blob(&self, sha256: &str) -> bool {
        self.blob_path(sha256).is_some_and(|p| p.is_file())
    }

    /// Stores a blob after checking its digest.
    pub async fn put_blob(&self, sha256: &str, bytes: &[u8]) -> Result<(), BundleError> {
        check_blob(sha256, bytes)?;
        let path = self.blob_path(sha256).expect("checked digest");
        if path.is_file() {
            return Ok(());
        }
        if let Some(etcd) = &self.etcd {
            for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
                etcd.put(&format!("blobs/{sha256}/{i:05}"), chunk)
                    .await
                    .map_err(remote)?;
            }
        }
        write_atomic(&path, bytes)
    }

    /// Stores a bundle; its blobs must be stored already.
    pub async fn put_bundle(&self, env: &Envelope) -> Result<String, BundleError> {
        let manifest = env.parse()?;
        for b in &manifest.blobs {
            if !self.has_blob(&b.sha256) && self.blob(&b.sha256).await.is_none() {
                return Err(BundleError::Manifest(format!(
                    "blob {} is not uploaded",
                    b.sha256
                )));
            }
        }
        let version = env.version();
        if let Some(etcd) = &self.etcd {
            let doc = json!({
                "manifest": String::from_utf8_lossy(&env.manifest),
                "signature": env.signature,
            });
            etcd.put(&format!("bundles/{version}"), doc.to_string().as_bytes())
                .await
                .map_err(remote)?;
        }
        let dir = self.dir.join("bundles").join(&version);
        write_atomic(&dir.join("manifest.json"), &env.manifest)?;
        if let Some(sig) = &env.signature {
            let json = serde_json::to_vec_pretty(sig).expect("a signature serializes");
            write_atomic(&dir.join("manifest.sig"), &json)?;
        }
        Ok(version)
    }

    /// A stored bundle.
    pub async fn bundle(&self, version: &str) -> Option<Envelope> {
        if version.len() != 64 || !version.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let dir = self.dir.join("bundles").join(version);
        if let Ok(env) = Envelope::read(&dir) {
            return Some(env);
        }
        let bytes = self
            .etcd
            .as_ref()?
            .get(&format!("bundles/{version}"))
            .await
            .ok()??;
        #[derive(serde::Deserialize)]
        struct Doc {
            manifest: String,
            signature: Option<Signature>,
        }
        let doc: Doc = serde_json::from_slice(&bytes).ok()?;
        let env = Envelope {
            manifest: doc.manifest.into_bytes(),
            signature: doc.signature,
        };
        (env.version() == version).then_some(env)
    }

    /// The rules now.
    pub fn rules(&self) -> Rules {
        self.rules.lock().clone()
    }

    /// Changes the rules (persisted before anyone sees them: in etcd when shared),
    /// and tells every stream.
    pub async fn update_rules<R>(
        &self,
        f: impl FnOnce(&mut Rules) -> Result<R, String>,
    ) -> Result<R, String> {
        let mut next = self.rules.lock().clone();
        let r = f(&mut next)?;
        let json = serde_json::to_vec_pretty(&next).expect("rules serialize");
        if let Some(etcd) = &self.etcd {
            etcd.put("rules", &json).await?;
        }
        write_atomic(&self.dir.join("rules.json"), &json).map_err(|e| e.to_string())?;
        *self.rules.lock() = next;
        self.changed.send_modify(|n| *n += 1);
        Ok(r)
    }

    /// Bumped on every change of the rules.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
