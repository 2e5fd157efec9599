//! Filter bundles: a configuration and the filter modules and files it names, packed
//! as content-addressed blobs under a manifest, and signed with ed25519.
//!
//! On disk a bundle is a directory:
//!
//! ```text
//! manifest.json     the manifest (its sha256 is the bundle's version)
//! manifest.sig      the signature of manifest.json's bytes (optional)
//! blobs/<sha256>    each module and file, named by the sha256 of its content
//! ```
//!
//! The manifest carries the configuration with every module and file path replaced by
//! `blobs/<sha256>`, and the digest and size of every blob, so a signature over the
//! manifest covers the whole bundle: a changed blob no longer matches its digest, a
//! changed manifest no longer matches its signature.

pub mod keys;
pub mod pack;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use keys::{SigningKey, TrustedKeys};
pub use pack::pack;

/// The manifest format this proxy reads and writes.
pub const FORMAT: &str = "weft-bundle/1";

/// What a bundle holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// A name for people (`weft bundle pack --name`).
    pub name: String,
    /// When it was packed, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// The configuration (YAML), module and file paths as `blobs/<sha256>`.
    pub config: String,
    /// Every blob the configuration names.
    pub blobs: Vec<Blob>,
}

/// A module or file of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Blob {
    /// The sha256 of its content, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A signature of a manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Signature {
    /// Which key signed: the first 16 hex digits of the sha256 of its public key.
    pub key_id: String,
    /// The ed25519 signature of the manifest's bytes, hex.
    pub signature: String,
}

/// Why a bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The manifest is not one.
    #[error("manifest: {0}")]
    Manifest(String),
    /// No signature, and the proxy requires one.
    #[error("the bundle is not signed, and signatures are required (--trust)")]
    Unsigned,
    /// A signature that does not verify with any trusted key.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// A blob whose content does not match its digest.
    #[error("blob {expected}: content has sha256 {actual}")]
    BlobDigest {
        /// The digest the manifest names.
        expected: String,
        /// The content's.
        actual: String,
    },
    /// The configuration could not be packed.
    #[error("{0}")]
    Pack(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The sha256 of some bytes, hex.
pub fn digest(bytes: &[u8]) -> String {
    crate::host::module::digest(bytes)
}

/// A bundle's manifest and signature, as read and before any trust is given.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The manifest's bytes, exactly as signed.
    pub manifest: Vec<u8>,
    /// The signature, if any.
    pub signature: Option<Signature>,
}

impl Envelope {
    /// The bundle's version: the sha256 of its manifest.
    pub fn version(&self) -> String {
        digest(&self.manifest)
    }

    /// The parsed manifest.
    pub fn parse(&self) -> Result<Manifest, BundleError> {
        let m: Manifest = serde_json::from_slice(&self.manifest)
            .map_err(|e| BundleError::Manifest(e.to_string()))?;
        if m.format != FORMAT {
            return Err(BundleError::Manifest(format!(
                "format {:?}, this proxy reads {FORMAT}",
                m.format
            )));
        }
        for b in &m.blobs {
            if b.sha256.len() != 64 || !b.sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(BundleError::Manifest(format!(
                    "blob digest {:?} is not a sha256",
                    b.sha256
                )));
            }
        }
        Ok(m)
    }

    /// Checks the signature against `trusted`, then parses the manifest. With no
    /// trusted keys, any bundle is accepted.
    pub fn verify(&self, trusted: &TrustedKeys) -> Result<Manifest, BundleError> {
        if !trusted.is_empty() {
            let sig = self.signature.as_ref().ok_or(BundleError::Unsigned)?;
            trusted.verify(&self.manifest, sig)?;
        }
        self.parse()
    }

    /// Reads `manifest.json` and `manifest.sig` (if present) from a bundle directory.
    pub fn read(dir: &Path) -> Result<Envelope, BundleError> {
        let mpath = dir.join("manifest.json");
        let manifest = std::fs::read(&mpath).map_err(io(&mpath))?;
        let spath = dir.join("manifest.sig");
        let signature = match std::fs::read(&spath) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| BundleError::BadSignature(format!("manifest.sig: {e}")))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&spath)(e)),
        };
        Ok(Envelope {
            manifest,
            signature,
        })
    }
}

/// Checks that `bytes` are the blob `sha256`.
pub fn check_blob(sha256: &str, bytes: &[u8]) -> Result<(), BundleError> {
    let actual = digest(bytes);
    if actual != sha256 {
        return Err(BundleError::BlobDigest {
            expected: sha256.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// Writes a file atomically (a reader sees the old or the new content, never a part).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Signs a bundle directory in place: writes `manifest.sig`.
pub fn sign(dir: &Path, key: &SigningKey) -> Result<Signature, BundleError> {
    let env = Envelope::read(dir)?;
    env.parse()?;
    let sig = key.sign(&env.manifest);
    let json = serde_json::to_vec_pretty(&sig).expect("a signature serializes");
    write_atomic(&dir.join("manifest.sig"), &json)?;
    Ok(sig)
}

/// Checks a bundle directory whole: signature (against `trusted`) and every blob.
pub fn verify_dir(dir: &Path, trusted: &TrustedKeys) -> Result<Manifest, BundleError> {
    let env = Envelope::read(dir)?;
    let m = env.verify(trusted)?;
    for b in &m.blobs {
        let p = dir.join("blobs").join(&b.sha256);
        let bytes = std::fs::read(&p).map_err(io(&p))?;
        check_blob(&b.sha256, &bytes)?;
    }
    Ok(m)
}

/// The fuzz target's entry. A manifest signed by a fixed key, which the target starts
/// from: (manifest, `manifest.sig` bytes).
#[doc(hidden)]
pub fn fuzz_seed() -> (Vec<u8>, Vec<u8>) {
    let manifest = br#"{"format":"weft-bundle/1","name":"fuzz","created_unix":0,"config":"listeners: []","blobs":[{"sha256":"0000000000000000000000000000000000000000000000000000000000000000","size":1}]}"#.to_vec();
    let sig = fuzz_key().sign(&manifest);
    (manifest, serde_json::to_vec(&sig).unwrap_or_default())
}

fn fuzz_key() -> SigningKey {
    SigningKey::from_seed([7; 32])
}

/// The fuzz target's entry: reads `manifest` and `sig` as a proxy reads a bundle it is
/// given, trusting only the fixed key of [`fuzz_seed`]. A manifest other than the seed's
/// must never verify; a panic is a bug.
#[doc(hidden)]
pub fn fuzz(manifest: &[u8], sig: &[u8]) {
    let signature = serde_json::from_slice::<Signature>(sig).ok();
    let envelope = Envelope {
        manifest: manifest.to_vec(),
        signature,
    };
    let _ = envelope.parse();
    let trusted = TrustedKeys::of(&[fuzz_key()]);
    if envelope.verify(&trusted).is_ok() {
        assert_eq!(
            manifest,
            &fuzz_seed().0[..],
            "a manifest the fixed key never signed was verified"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuzz_corpus_starts_from_a_manifest_the_fuzz_key_signed() {
        let (manifest, sig) = fuzz_seed();
        let envelope = Envelope {
            manifest: manifest.clone(),
            signature: serde_json::from_slice(&sig).ok(),
        };
        let trusted = TrustedKeys::of(&[fuzz_key()]);
        assert!(envelope.verify(&trusted).is_ok());
        let mut changed = envelope.clone();
        changed.manifest[10] ^= 1;
        assert!(changed.verify(&trusted).is_err());
        let corpus = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/corpus/bundle/signed"
        ))
        .unwrap();
        let mut expected = manifest;
        expected.push(0xff);
        expected.extend(sig);
        assert_eq!(
            corpus, expected,
            "fuzz/corpus/bundle/signed is not fuzz_seed()'s"
        );
    }
}
