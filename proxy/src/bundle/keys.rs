//! ed25519 keys for bundles: a signing key for operators, public keys proxies trust.
//!
//! Both are files of hex text: a signing key holds its 32-byte seed, a public key its
//! 32 bytes. A key is named by its id, the first 16 hex digits of the sha256 of the
//! public key.

use std::path::Path;

use ed25519_dalek::Signer;

use super::{BundleError, Signature};

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not 32 bytes of hex.
    #[error("{0}: not an ed25519 key (64 hex digits expected)")]
    Malformed(String),
}

fn read_32(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let bytes =
        hex::decode(text.trim()).map_err(|_| KeyError::Malformed(path.display().to_string()))?;
    bytes
        .try_into()
        .map_err(|_| KeyError::Malformed(path.display().to_string()))
}

fn key_id(public: &ed25519_dalek::VerifyingKey) -> String {
    super::digest(public.as_bytes())[..16].to_owned()
}

/// An operator's signing key.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A new random key.
    pub fn generate() -> SigningKey {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS random source");
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The key of a fixed seed (the fuzz target's).
    pub(crate) fn from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<SigningKey, KeyError> {
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&read_32(
            path,
        )?)))
    }

    /// Writes the key (`<stem>.key`, readable by its owner only) and its public key
    /// (`<stem>.pub`). Returns the key id.
    pub fn write(&self, stem: &Path) -> Result<String, KeyError> {
        let err = |p: &Path| {
            let path = p.display().to_string();
            move |source| KeyError::Io { path, source }
        };
        let secret = stem.with_extension("key");
        let public = stem.with_extension("pub");
        if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err(dir))?;
        }
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&secret)
                .map_err(err(&secret))?;
            writeln!(f, "{}", hex::encode(self.0.to_bytes())).map_err(err(&secret))?;
        }
        let vk = self.0.verifying_key();
        std::fs::write(&public, format!("{}\n", hex::encode(vk.as_bytes())))
            .map_err(err(&public))?;
        Ok(key_id(&vk))
    }

    /// Signs a manifest.
    pub fn sign(&self, manifest: &[u8]) -> Signature {
        Signature {
            key_id: key_id(&self.0.verifying_key()),
            signature: hex::encode(self.0.sign(manifest).to_bytes()),
        }
    }
}

/// The public keys a proxy accepts bundles from.
#[derive(Default, Clone)]
pub struct TrustedKeys(Vec<(String, ed25519_dalek::VerifyingKey)>);

impl TrustedKeys {
    /// Reads public key files.
    pub fn read(paths: &[impl AsRef<Path>]) -> Result<TrustedKeys, KeyError> {
        let mut keys = Vec::new();
        for p in paths {
            let p = p.as_ref();
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&read_32(p)?)
                .map_err(|_| KeyError::Malformed(p.display().to_string()))?;
            keys.push((key_id(&vk), vk));
        }
        Ok(TrustedKeys(keys))
    }

    /// Trusts the public halves of `keys` (the fuzz target's).
    pub(crate) fn of(keys: &[SigningKey]) -> TrustedKeys {
        TrustedKeys(
            keys.iter()
                .map(|k| {
                    let vk = k.0.verifying_key();
                    (key_id(&vk), vk)
                })
                .collect(),
        )
    }

    /// No keys: signatures are not checked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks a signature of `manifest` by one of these keys.
    pub fn verify(&self, manifest: &[u8], sig: &Signature) -> Result<(), BundleError> {
        let (_, key) = self
            .0
            .iter()
            .find(|(id, _)| *id == sig.key_id)
            .ok_or_else(|| {
                BundleError::BadSignature(format!("key {} is not trusted", sig.key_id))
            })?;
        let bytes: [u8; 64] = hex::decode(&sig.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| BundleError::BadSignature("not 64 bytes of hex".into()))?;
        key.verify_strict(manifest, &ed25519_dalek::Signature::from_bytes(&bytes))
            .map_err(|_| {
                BundleError::BadSignature(format!(
                    "does not verify with key {}: the manifest was changed after signing, or signed by another key",
                    sig.key_id
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let dir = std::env::temp_dir().join(format!("weft-keys-{}", std::process::id()));
        let a = SigningKey::generate();
        let b = SigningKey::generate();
        a.write(&dir.join("a")).unwrap();
        b.write(&dir.join("b")).unwrap();
        let a_again = SigningKey::read(&dir.join("a.key")).unwrap();
        let trusted_a = TrustedKeys::read(&[dir.join("a.pub")]).unwrap();
        let trusted_b = TrustedKeys::read(&[dir.join("b.pub")]).unwrap();
        let sig = a_again.sign(b"manifest");
        trusted_a.verify(b"manifest", &sig).unwrap();
        assert!(trusted_a.verify(b"manifest!", &sig).is_err());
        let err = trusted_b.verify(b"manifest", &sig).unwrap_err().to_string();
        assert!(err.contains("not trusted"), "{err}");
        std::fs::write(dir.join("bad.pub"), "xyz").unwrap();
        assert!(TrustedKeys::read(&[dir.join("bad.pub")]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
