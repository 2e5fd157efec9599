//! Reading certificates, keys and trust bundles from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why certificate material could not be used: which file, and what is wrong with it.
/// Never includes the file's contents (a key is a secret).
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct MaterialError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> MaterialError {
    MaterialError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The certificates of a PEM file, in order.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| err(path, pem_message(e)))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path, pem_message(e)))?;
    if certs.is_empty() {
        return Err(err(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn pem_message(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => format!("cannot read: {e}"),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM block of the expected kind".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// A certificate chain (end-entity first) and its private key, checked to belong
/// together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, MaterialError> {
    let chain = certificates(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, pem_message(e)))?;
    let certified = CertifiedKey::from_der(chain, key_der, &super::provider()).map_err(|e| {
        err(
            key,
            format!("does not match the certificate in {}: {e}", cert.display()),
        )
    })?;
    Ok(Arc::new(certified))
}

/// The CA certificates of a trust bundle.
pub fn load_bundle(path: &Path) -> Result<rustls::RootCertStore, MaterialError> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certificates(path)?);
    if added == 0 {
        return Err(err(path, "no usable CA certificate in the bundle"));
    }
    if ignored > 0 {
        tracing::warn!(bundle = %path.display(), ignored, "certificates in a trust bundle could not be parsed and were left out");
    }
    Ok(roots)
}
