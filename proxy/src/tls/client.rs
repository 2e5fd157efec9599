//! A cluster's side of TLS: its rustls client config (trust bundle, the endpoints'
//! expected name or SPIFFE IDs, a client certificate for mTLS, ALPN), one per cluster
//! so that a session resumed with one cluster's endpoint never skips another cluster's
//! identity check.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::pem::{load_bundle, load_certified_key, MaterialError};
use super::spiffe::SpiffeId;
use super::verify::SpiffeServerVerifier;
use crate::config::{CheckedClusterTls, FieldError};

/// A cluster's TLS, ready to connect.
pub struct ClientTls {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
    /// Tells this config's connections apart in the worker's pools.
    pub id: usize,
}

impl ClientTls {
    /// Reads the cluster's trust bundle and client certificate and builds its config.
    pub fn build(t: &CheckedClusterTls) -> Result<ClientTls, FieldError> {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        let at = |field: &str| {
            let field = format!("{}.{field}", t.field);
            move |e: MaterialError| FieldError::new(field, e.to_string())
        };
        let roots = load_bundle(&t.ca).map_err(at("ca"))?;
        let server_name = t
            .server_name
            .as_ref()
            .map(|n| {
                ServerName::try_from(n.clone()).map_err(|_| {
                    FieldError::new(
                        format!("{}.server_name", t.field),
                        format!("{n:?} is not a DNS name"),
                    )
                })
            })
            .transpose()?;
        for (i, id) in t.spiffe_ids.iter().enumerate() {
            if SpiffeId::parse(id).is_none() {
                return Err(FieldError::new(
                    format!("{}.spiffe_ids[{i}]", t.field),
                    format!("{id:?} is not a valid SPIFFE ID"),
                ));
            }
        }
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let builder = ClientConfig::builder_with_provider(super::provider())
            .with_protocol_versions(&versions)
            .map_err(|e| FieldError::new(&t.field, e.to_string()))?;
        let builder = if t.spiffe_ids.is_empty() {
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(
                    roots,
                    t.spiffe_ids.clone(),
                )))
        };
        let mut config = match &t.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let ck = load_certified_key(cert, key).map_err(|e| {
                    let which = if e.path == *key { "key" } else { "cert" };
                    FieldError::new(format!("{}.{which}", t.field), e.to_string())
                })?;
                builder.with_client_cert_resolver(Arc::new(Presents(ck)))
            }
        };
        config.alpn_protocols = t.alpn.clone();
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The handshake on a connected socket; `true` when ALPN chose HTTP/2.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        tcp: TcpStream,
    ) -> std::io::Result<(TlsStream<TcpStream>, bool)> {
        // Without a name, the address: rustls then sends no SNI.
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let stream = self.connector.connect(name, tcp).await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((stream, h2))
    }
}

/// Presents the cluster's client certificate whenever an endpoint asks for one.
#[derive(Debug)]
struct Presents(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Presents {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
