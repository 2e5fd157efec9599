//! Transport security on rustls: certificates from PEM files, SNI selection (exact and
//! `*.` wildcard names), client certificates verified against a trust bundle with their
//! SPIFFE IDs checked, and handshake refusals sorted into reasons for logs and metrics.
//!
//! The crypto provider is *ring*: it builds with a C compiler alone (no CMake), is the
//! default of quinn and rcgen too, so one provider serves the whole dependency graph,
//! and published rustls measurements put it on par with aws-lc-rs for handshakes (ahead
//! for resumed ones); aws-lc-rs is faster for bulk AES-GCM on AVX-512 CPUs. Every config
//! names it explicitly ([`provider`]), so switching is a feature change and one line.

mod client;
mod issue;
mod pem;
mod refusal;
mod server;
mod sni;
mod spiffe;
mod verify;

use std::sync::{Arc, OnceLock};

pub use client::ClientTls;
pub use issue::{issue_ca, issue_svid, Issued, SvidRequest};
pub use refusal::describe;
pub use server::ServerTls;
pub use spiffe::SpiffeId;

/// The crypto provider every TLS config of the proxy uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
