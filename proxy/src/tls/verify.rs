//! Client certificates: the chain verified by webpki against the listener's trust
//! bundle (validity, signature, `clientAuth` use), then the SPIFFE ID it carries
//! checked against the listener's trust domain.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::spiffe::{spiffe_san, SpiffeSan};

/// Why a certificate that verified against the bundle was still refused.
#[derive(Debug, thiserror::Error)]
pub enum SpiffeRefusal {
    /// It carries no SPIFFE ID (no URI SAN), or one that is not valid.
    #[error("the certificate carries no valid SPIFFE ID (exactly one spiffe:// URI SAN)")]
    NoSpiffeId,
    /// Its SPIFFE ID is in another trust domain.
    #[error("SPIFFE ID {id} is outside trust domain {expected}")]
    WrongTrustDomain {
        /// The certificate's ID.
        id: String,
        /// The listener's trust domain.
        expected: String,
    },
    /// An upstream's SPIFFE ID is not one the cluster accepts.
    #[error("SPIFFE ID {id} is not one of the cluster's spiffe_ids ({accepted})")]
    NotAccepted {
        /// The certificate's ID.
        id: String,
        /// The accepted IDs, comma-separated.
        accepted: String,
    },
}

fn refuse(r: SpiffeRefusal) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(r))))
}

/// Verifies client certificates for one listener.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    mandatory: bool,
    trust_domain: Option<String>,
}

impl SpiffeClientVerifier {
    /// A verifier trusting `roots`; `mandatory` refuses clients without a certificate.
    pub fn new(
        roots: rustls::RootCertStore,
        mandatory: bool,
        trust_domain: Option<String>,
    ) -> Result<SpiffeClientVerifier, rustls::server::VerifierBuilderError> {
        let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::provider());
        if !mandatory {
            b = b.allow_unauthenticated();
        }
        Ok(SpiffeClientVerifier {
            inner: b.build()?,
            mandatory,
            trust_domain,
        })
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match spiffe_san(end_entity) {
            SpiffeSan::Id(id) => {
                if let Some(td) = &self.trust_domain {
                    if id.trust_domain != *td {
                        return Err(refuse(SpiffeRefusal::WrongTrustDomain {
                            id: id.to_string(),
                            expected: td.clone(),
                        }));
                    }
                }
                Ok(verified)
            }
            // Without a trust domain, a certificate with no URI SAN is still a verified
            // client, just without a peer identity.
            SpiffeSan::None if self.trust_domain.is_none() => Ok(verified),
            _ => Err(refuse(SpiffeRefusal::NoSpiffeId)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies an upstream's certificate by its SPIFFE ID instead of a DNS name: the chain
/// against the cluster's trust bundle (validity, signature, `serverAuth` use), then the
/// ID against the cluster's accepted list.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    roots: Arc<rustls::RootCertStore>,
    accepted: Vec<String>,
}

impl SpiffeServerVerifier {
    /// Accepts endpoints whose certificate chains to `roots` and carries one of `accepted`.
    pub fn new(roots: rustls::RootCertStore, accepted: Vec<String>) -> SpiffeServerVerifier {
        SpiffeServerVerifier {
            roots: Arc::new(roots),
            accepted,
        }
    }
}

impl rustls::client::danger::ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            super::provider().signature_verification_algorithms.all,
        )?;
        match spiffe_san(end_entity) {
            SpiffeSan::Id(id) => {
                let id = id.to_string();
                if self.accepted.contains(&id) {
                    Ok(rustls::client::danger::ServerCertVerified::assertion())
                } else {
                    Err(refuse(SpiffeRefusal::NotAccepted {
                        id,
                        accepted: self.accepted.join(", "),
                    }))
                }
            }
            _ => Err(refuse(SpiffeRefusal::NoSpiffeId)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &super::provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &super::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        super::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
