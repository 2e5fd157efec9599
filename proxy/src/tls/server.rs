//! A TLS listener's side of the handshake: its rustls config (certificates by SNI,
//! client verification, ALPN `h2` and `http/1.1`, TLS 1.2 and 1.3, resumption by
//! tickets and session IDs), shared by every worker so that a client resumes whichever
//! worker its next connection lands on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::pem::{load_bundle, load_certified_key, MaterialError};
use super::refusal::Refusal;
use super::sni::SniResolver;
use super::spiffe::spiffe_id_of;
use super::verify::SpiffeClientVerifier;
use crate::config::model::{ClientAuth, ForwardClientCert, ListenerProtocol};
use crate::config::{CheckedTls, FieldError};
use crate::metrics::{Counter, Registry};

/// Session IDs remembered for TLS 1.2 resumption (tickets need no memory).
const SESSION_CACHE: usize = 16 * 1024;

/// A listener's TLS, ready to accept handshakes.
pub struct ServerTls {
    acceptor: TlsAcceptor,
    /// Longest a handshake may take.
    pub handshake_timeout: Duration,
    /// Most handshakes in progress per worker.
    max_handshakes: usize,
    /// What to do with `x-forwarded-client-cert`.
    pub forward_client_cert: ForwardClientCert,
    /// The SPIFFE ID of the listener's first certificate (`By=` of the forwarded
    /// client certificate header).
    pub own_id: Option<String>,
    /// The same TLS for QUIC (ALPN `h3`, TLS 1.3), on an HTTP/3 listener.
    pub quic: Option<Arc<quinn::ServerConfig>>,
    handshakes: Arc<Counter>,
    resumed: Arc<Counter>,
    refused: Vec<Arc<Counter>>,
}

/// A completed handshake.
pub struct Accepted {
    /// The connection, decrypted.
    pub stream: TlsStream<TcpStream>,
    /// ALPN chose HTTP/2.
    pub h2: bool,
    /// The client's SPIFFE ID, when it presented a verified certificate with one.
    pub peer_identity: Option<String>,
    /// `x-forwarded-client-cert` to set on its requests, per the listener's setting.
    pub forward_client_cert: Option<http::HeaderValue>,
}

impl ServerTls {
    /// Reads the listener's certificates and trust bundle and builds its config.
    /// Problems name the field whose file is at fault.
    pub fn build(
        tls: &CheckedTls,
        listener: &str,
        protocol: ListenerProtocol,
        metrics: &Registry,
    ) -> Result<ServerTls, FieldError> {
        let material =
            |field: String| move |e: MaterialError| FieldError::new(field, e.to_string());
        let mut keys = Vec::new();
        for (i, (cert, key)) in tls.certificates.iter().enumerate() {
            let field = format!("{}.certificates[{i}]", tls.field);
            let k = load_certified_key(cert, key).map_err(|e| {
                // A key that does not match points at `key`, anything else at `cert`.
                let which = if e.path == *key { "key" } else { "cert" };
                FieldError::new(format!("{field}.{which}"), e.to_string())
            })?;
            keys.push(k);
        }
        let own_id = keys
            .first()
            .and_then(|k| k.cert.first())
            .and_then(spiffe_id_of)
            .map(|id| id.to_string());
        let resolver = SniResolver::new(keys).ok_or_else(|| {
            FieldError::new(format!("{}.certificates", tls.field), "no certificate")
        })?;
        let versions: &[&rustls::SupportedProtocolVersion] = match protocol {
            // QUIC is TLS 1.3 only.
            ListenerProtocol::Http3 => &[&rustls::version::TLS13],
            _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let builder = ServerConfig::builder_with_provider(super::provider())
            .with_protocol_versions(versions)
            .map_err(|e| FieldError::new(&tls.field, e.to_string()))?;
        let builder = match (tls.client_auth, &tls.client_ca) {
            (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
            (auth, Some(ca)) => {
                let roots =
                    load_bundle(ca).map_err(material(format!("{}.client_ca", tls.field)))?;
                let verifier = SpiffeClientVerifier::new(
                    roots,
                    auth == ClientAuth::Required,
                    tls.trust_domain.clone(),
                )
                .map_err(|e| FieldError::new(format!("{}.client_ca", tls.field), e.to_string()))?;
                builder.with_client_cert_verifier(Arc::new(verifier))
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = match protocol {
            ListenerProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ListenerProtocol::Http1 => vec![b"http/1.1".to_vec()],
            ListenerProtocol::Http2 => vec![b"h2".to_vec()],
            ListenerProtocol::Http3 => vec![b"h3".to_vec()],
        };
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| FieldError::new(&tls.field, format!("no session ticketer: {e}")))?;
        let config = Arc::new(config);
        let quic = match protocol {
            ListenerProtocol::Http3 => {
                let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config.clone())
                    .map_err(|e| {
                        FieldError::new(&tls.field, format!("not usable for QUIC: {e}"))
                    })?;
                let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
                let transport = Arc::get_mut(&mut server.transport)
                    .expect("a new server config's transport is not shared");
                transport.max_concurrent_bidi_streams(256u32.into());
                transport.max_idle_timeout(Some(
                    Duration::from_secs(60)
                        .try_into()
                        .expect("60 s is a valid QUIC idle timeout"),
                ));
                Some(Arc::new(server))
            }
            _ => None,
        };
        let labels = [("listener", listener)];
        let refused = Refusal::ALL
            .iter()
            .map(|r| {
                metrics.counter(
                    "weft_tls_handshake_failures_total",
                    "TLS handshakes that failed, by reason.",
                    &[("listener", listener), ("reason", r.as_str())],
                )
            })
            .collect();
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(config),
            quic,
            handshake_timeout: tls.handshake_timeout,
            max_handshakes: tls.max_handshakes,
            forward_client_cert: tls.forward_client_cert,
            own_id,
            handshakes: metrics.counter(
                "weft_tls_handshakes_total",
                "TLS handshakes completed.",
                &labels,
            ),
            resumed: metrics.counter(
                "weft_tls_handshakes_resumed_total",
                "TLS handshakes that resumed an earlier session.",
                &labels,
            ),
            refused,
        })
    }

    /// Runs the handshake on an accepted connection. A failure is logged with its
    /// reason, counted, and the connection dropped.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        client: SocketAddr,
        listener: &str,
    ) -> Option<Accepted> {
        // Handshakes cost CPU (key exchange, signatures) and are open to anyone: each
        // worker bounds how many it runs at once, so a flood of them cannot starve the
        // requests of established connections.
        let Some(_slot) = HandshakeSlot::take(self.max_handshakes) else {
            self.refuse(
                Refusal::Overloaded,
                client,
                listener,
                "too many handshakes in progress",
            );
            return None;
        };
        let result = tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp)).await;
        let stream = match result {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.refuse(Refusal::of_io(&e), client, listener, &super::describe(&e));
                return None;
            }
            Err(_) => {
                self.refuse(Refusal::Timeout, client, listener, "no handshake in time");
                return None;
            }
        };
        let conn = stream.get_ref().1;
        self.handshakes.inc();
        if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            self.resumed.inc();
        }
        let h2 = conn.alpn_protocol() == Some(b"h2");
        let leaf = conn.peer_certificates().and_then(|c| c.first());
        let (peer_identity, forward_client_cert) = self.identify(leaf);
        Some(Accepted {
            stream,
            h2,
            peer_identity,
            forward_client_cert,
        })
    }

    /// The peer identity of a client whose (verified) certificate is `leaf`, and the
    /// `x-forwarded-client-cert` its requests get.
    pub fn identify(
        &self,
        leaf: Option<&rustls::pki_types::CertificateDer<'_>>,
    ) -> (Option<String>, Option<http::HeaderValue>) {
        let peer_identity = leaf.and_then(spiffe_id_of).map(|id| id.to_string());
        let forward = match (self.forward_client_cert, leaf, &peer_identity) {
            (ForwardClientCert::SanitizeSet, Some(leaf), Some(id)) => {
                forwarded_client_cert(self.own_id.as_deref(), leaf.as_ref(), id)
            }
            _ => None,
        };
        (peer_identity, forward)
    }

    /// Counts a completed QUIC handshake (QUIC's own TLS runs inside quinn).
    pub fn quic_handshake_done(&self) {
        self.handshakes.inc();
    }

    /// Counts and logs a failed QUIC handshake.
    pub fn quic_handshake_failed(
        &self,
        e: &quinn::ConnectionError,
        client: SocketAddr,
        listener: &str,
    ) {
        let reason = match e {
            quinn::ConnectionError::TimedOut => Refusal::Timeout,
            quinn::ConnectionError::TransportError(t) => match t.code {
                // TLS alerts arrive as CRYPTO_ERROR(0x100 + alert).
                c if u64::from(c) == 0x100 + 116 => Refusal::NoClientCertificate,
                c if u64::from(c) == 0x100 + 45 => Refusal::Expired,
                c if u64::from(c) == 0x100 + 48 => Refusal::Untrusted,
                c if (0x100..0x200).contains(&u64::from(c)) => Refusal::BadCertificate,
                _ => Refusal::Malformed,
            },
            quinn::ConnectionError::ConnectionClosed(_)
            | quinn::ConnectionError::ApplicationClosed(_) => Refusal::PeerAlert,
            _ => Refusal::Closed,
        };
        self.refuse(reason, client, listener, &e.to_string());
    }

    fn refuse(&self, reason: Refusal, client: SocketAddr, listener: &str, detail: &str) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == reason) {
            self.refused[i].inc();
        }
        match reason {
            Refusal::Closed => {
                tracing::debug!(%client, listener, reason = reason.as_str(), "TLS handshake failed: {detail}")
            }
            _ => {
                tracing::warn!(%client, listener, reason = reason.as_str(), "TLS handshake refused: {detail}")
            }
        }
    }
}

thread_local! {
    /// Handshakes in progress on this worker (all its TLS listeners).
    static HANDSHAKES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One of the worker's handshake slots, given back when dropped.
struct HandshakeSlot;

impl HandshakeSlot {
    fn take(max: usize) -> Option<HandshakeSlot> {
        HANDSHAKES.with(|n| {
            if n.get() >= max {
                return None;
            }
            n.set(n.get() + 1);
            Some(HandshakeSlot)
        })
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        HANDSHAKES.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// `By=<ours>;Hash=<sha256 of the client's certificate>;URI=<theirs>`, as Envoy writes
/// `x-forwarded-client-cert`.
fn forwarded_client_cert(own: Option<&str>, leaf: &[u8], id: &str) -> Option<http::HeaderValue> {
    use sha2::Digest;
    let mut v = String::with_capacity(160);
    if let Some(own) = own {
        v.push_str("By=");
        v.push_str(own);
        v.push(';');
    }
    v.push_str("Hash=");
    v.push_str(&hex::encode(sha2::Sha256::digest(leaf)));
    v.push_str(";URI=");
    v.push_str(id);
    http::HeaderValue::from_str(&v).ok()
}
